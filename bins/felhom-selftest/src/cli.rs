//! The command line: global options (`--config`, `--json`, `-v`) and one subcommand per check
//! family. Adding a subcommand is a variant here plus a module with its `run`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, Subcommand};

/// Where the agent's config lives on a host.
pub const DEFAULT_CONFIG: &str = "/etc/felhom-agent/agent.json";

/// felhom-selftest: checks that this host's Proxmox API, token and privileges are ready for
/// the felhom agent.
///
/// Exit status: 0 every check passed, 1 a check failed, 2 usage or config error.
#[derive(Debug, Parser)]
#[command(name = "felhom-selftest", version, about, long_about)]
pub struct Cli {
    /// The agent's config file (the `proxmox` section; `hub` too for the hub test).
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    /// Print the checks as one JSON document on stdout instead of a list.
    #[arg(long, global = true)]
    pub json: bool,

    /// More log output on stderr: -v info, -vv debug, -vvv trace (default: warnings only).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// What to check (default: read).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The self-tests.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Read-only: version, nodes (and the certificate fingerprint), node status, guests and
    /// their configs, storage, and whether the token can see every guest and storage.
    Read,
    /// Reversible writes on ONE guest: snapshot -> rollback -> delete the snapshot, then a
    /// description write -> verify -> restore -> verify. Use a scratch guest: the rollback
    /// discards whatever the guest wrote since the snapshot moments before and restarts a
    /// running guest.
    Task {
        /// The guest to test on (an LXC container on this node).
        #[arg(long, value_parser = clap::value_parser!(u32).range(100..=999_999_999))]
        vmid: u32,
        /// Longest wait for each PVE task (`90`, `120s`, `5m`). A task still running then is
        /// reported, cleaned up where possible, and the commands to finish by hand are printed.
        #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_duration)]
        task_timeout: Duration,
    },
    /// For each capability of the agent: ready, or which privilege is missing on which path
    /// (from /access/permissions).
    Privileges,
    /// One round trip to the hub: collects this host's report (read-only, as the agent does),
    /// POSTs it to hub.url with hub.api_key, decodes the envelope the hub answers, and prints
    /// both. The hub records the report like any other. Needs the `hub` section.
    Hub,
}

/// `90`, `90s` or `5m`: whole seconds or minutes, at least one second.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (digits, unit) = match s.strip_suffix('m') {
        Some(d) => (d, 60),
        None => (s.strip_suffix('s').unwrap_or(s), 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("expected seconds like 120s or minutes like 5m, got {s:?}"))?;
    match n.checked_mul(unit) {
        Some(secs) if secs > 0 => Ok(Duration::from_secs(secs)),
        _ => Err(format!("must be at least 1s, got {s:?}")),
    }
}

impl Command {
    /// Who needs the config's `hub` section, if this command does (for the error naming it).
    pub fn needs_hub(&self) -> Option<&'static str> {
        match self {
            Command::Read | Command::Task { .. } | Command::Privileges => None,
            Command::Hub => Some("the hub self-test"),
        }
    }

    /// The subcommand's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Read => "read",
            Command::Task { .. } => "task",
            Command::Privileges => "privileges",
            Command::Hub => "hub",
        }
    }
}

impl Cli {
    /// The subcommand, `read` when none was given.
    pub fn subcommand(&self) -> Command {
        self.command.clone().unwrap_or(Command::Read)
    }

    /// The tracing filter for `-v` (`RUST_LOG`, when set, wins over the default).
    pub fn log_filter(&self, rust_log: Option<&str>) -> String {
        match (self.verbose, rust_log) {
            (0, Some(env)) if !env.trim().is_empty() => env.to_owned(),
            (0, _) => "warn".to_owned(),
            (1, _) => "info".to_owned(),
            (2, _) => "debug".to_owned(),
            _ => "trace".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("felhom-selftest").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        <Cli as CommandFactory>::command().debug_assert();
    }

    #[test]
    fn read_is_the_default_and_config_has_a_default() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.subcommand(), Command::Read);
        assert_eq!(cli.config, PathBuf::from(DEFAULT_CONFIG));
        assert!(!cli.json);
    }

    #[test]
    fn global_options_go_before_or_after_the_subcommand() {
        let before = parse(&["--config", "/tmp/a.json", "--json", "privileges"]).unwrap();
        let after = parse(&["privileges", "--config", "/tmp/a.json", "--json"]).unwrap();
        for cli in [before, after] {
            assert_eq!(cli.subcommand(), Command::Privileges);
            assert_eq!(cli.config, PathBuf::from("/tmp/a.json"));
            assert!(cli.json);
        }
        let t = parse(&["-vv", "task", "--vmid", "100"]).unwrap();
        assert_eq!(
            t.subcommand(),
            Command::Task {
                vmid: 100,
                task_timeout: Duration::from_secs(120)
            }
        );
        assert_eq!(t.log_filter(None), "debug");
        let t = parse(&["task", "--vmid", "100", "--task-timeout", "5m"]).unwrap();
        assert_eq!(
            t.subcommand(),
            Command::Task {
                vmid: 100,
                task_timeout: Duration::from_secs(300)
            }
        );
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse(&["task", "--vmid", "100", "--task-timeout", "-1"]).is_err());
    }

    #[test]
    fn task_needs_a_valid_vmid_and_usage_errors_exit_2() {
        for args in [
            &["task"][..],
            &["task", "--vmid", "99"],
            &["task", "--vmid", "abc"],
            &["hub", "--vmid", "100"],
            &["read", "--bogus"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
        assert_eq!(parse(&["--help"]).unwrap_err().exit_code(), 0);
    }

    #[test]
    fn log_filter_defaults_to_warnings_and_honours_rust_log() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.log_filter(None), "warn");
        assert_eq!(
            cli.log_filter(Some("felhom_proxmox=debug")),
            "felhom_proxmox=debug"
        );
        assert_eq!(cli.log_filter(Some(" ")), "warn");
        let loud = parse(&["-vvvv"]).unwrap();
        assert_eq!(loud.log_filter(Some("warn")), "trace");
    }

    #[test]
    fn only_the_hub_test_needs_the_hub_section() {
        for c in [
            Command::Read,
            Command::Task {
                vmid: 100,
                task_timeout: Duration::from_secs(1),
            },
            Command::Privileges,
        ] {
            assert_eq!(c.needs_hub(), None, "{}", c.name());
        }
        let hub = parse(&["--json", "hub"]).unwrap();
        assert_eq!(hub.subcommand(), Command::Hub);
        assert_eq!(hub.subcommand().name(), "hub");
        assert_eq!(Command::Hub.needs_hub(), Some("the hub self-test"));
    }
}
