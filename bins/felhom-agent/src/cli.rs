//! The command line: the global `--config`, the daemon (`run`, the default), `check-config`,
//! `verify-op` and `journal inspect|repair`. Test knobs stay out of it: the poll floor for
//! end-to-end tests is the environment variable `FELHOM_AGENT_TEST_POLL_FLOOR_MS` (see `daemon`),
//! the crash seam `FELHOM_AGENT_TEST_CRASH_AT` (see `crash`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Where the agent's config lives on a host.
pub const DEFAULT_CONFIG: &str = "/etc/felhom-agent/agent.json";

/// felhom-agent: the felhom host agent. Reports this Proxmox VE host to the hub and converges its
/// guests toward the operator's desired state; destructive changes need an operator signature.
///
/// Exit status: 0 success (the daemon: a clean stop on SIGTERM/SIGINT), 1 `verify-op` refused
/// the op, 2 usage or config error.
#[derive(Debug, Parser)]
#[command(name = "felhom-agent", version, about, long_about)]
pub struct Cli {
    /// The agent's config file.
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    /// What to do (default: run the daemon).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the daemon (the default): report to the hub on the poll cadence and reconcile the
    /// guests toward the desired state. SIGTERM or SIGINT stops it cleanly.
    Run,
    /// Validate the config and print it with every secret redacted; exit 2 listing every
    /// problem.
    CheckConfig,
    /// Dry-run a signed op against the configured signers and a read-only copy of the nonce
    /// store: print the verdict and the reason. Exit 0 accepted, 1 refused, 2 usage or config
    /// error. Nothing runs and no nonce is used.
    VerifyOp {
        /// The op blob: the exact bytes that were signed.
        #[arg(long, value_name = "FILE")]
        blob: PathBuf,
        /// The armored signature (`ssh-keygen -Y sign -n felhom-op-v1` output).
        #[arg(long, value_name = "FILE")]
        sig: PathBuf,
        /// Evaluate the op's time window at this instant (RFC 3339, e.g. 2026-11-23T10:05:00Z)
        /// instead of now: for checking an op prepared for later. Every other check is the
        /// same.
        #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
        at: Option<OffsetDateTime>,
        /// Preview the reversibility gate's decision for this action: role scope and binding
        /// too, e.g. `op=destroy_guest,guest=105` or
        /// `op=rollback,guest=105,params={"snapname":"before","start":false}` (`params`, last,
        /// defaults to the blob's own; `guest` absent for a host-level op). Records nothing.
        #[arg(long, value_name = "op=…,guest=…[,params=JSON]", value_parser = crate::verify_op::parse_expect)]
        expect: Option<crate::verify_op::Expect>,
    },
    /// Inspect or repair the op journal (or, with --path, the nonce store) offline.
    #[command(subcommand)]
    Journal(JournalAction),
}

/// `journal inspect|repair`. Exit 0 healthy or repaired, 1 corruption found (inspect), 2
/// usage or config error, or the journal is held by a running agent (repair).
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum JournalAction {
    /// Print the good records, the first damaged line (number, byte offset, excerpt), what a
    /// repair would keep, and the in-flight ops. Read-only; works while the agent runs.
    Inspect {
        /// The file (default: the configured journal.path).
        #[arg(long, value_name = "PATH")]
        path: Option<PathBuf>,
    },
    /// Move the damaged file aside (<path>.corrupt-<UTC time>, never deleted) and write a new
    /// one with every record that can be kept. Refused while the agent holds the file.
    Repair {
        /// The file (default: the configured journal.path).
        #[arg(long, value_name = "PATH")]
        path: Option<PathBuf>,
    },
}

impl Cli {
    /// The subcommand, `run` when none was given.
    pub fn subcommand(&self) -> Command {
        self.command.clone().unwrap_or(Command::Run)
    }
}

/// `--at`: an RFC 3339 instant.
fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| format!("expected an RFC 3339 time like 2026-11-23T10:05:00Z: {e}"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("felhom-agent").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        <Cli as CommandFactory>::command().debug_assert();
    }

    #[test]
    fn run_is_the_default_and_config_has_a_default() {
        let cli = parse(&[]).unwrap();
        assert_eq!(cli.subcommand(), Command::Run);
        assert_eq!(cli.config, PathBuf::from(DEFAULT_CONFIG));
    }

    #[test]
    fn config_goes_before_or_after_the_subcommand() {
        for args in [
            &["--config", "/tmp/a.json", "check-config"][..],
            &["check-config", "--config", "/tmp/a.json"],
        ] {
            let cli = parse(args).unwrap();
            assert_eq!(cli.subcommand(), Command::CheckConfig);
            assert_eq!(cli.config, PathBuf::from("/tmp/a.json"));
        }
        let cli = parse(&["run", "--config", "/x.json"]).unwrap();
        assert_eq!(cli.subcommand(), Command::Run);
        assert_eq!(cli.config, PathBuf::from("/x.json"));
    }

    #[test]
    fn verify_op_takes_files_and_an_optional_instant() {
        let cli = parse(&[
            "verify-op",
            "--blob",
            "/b.json",
            "--sig",
            "/b.sig",
            "--at",
            "2026-11-23T10:05:00Z",
        ])
        .unwrap();
        let Command::VerifyOp {
            blob,
            sig,
            at,
            expect,
        } = cli.subcommand()
        else {
            panic!("{cli:?}")
        };
        assert_eq!(expect, None);
        assert_eq!(blob, PathBuf::from("/b.json"));
        assert_eq!(sig, PathBuf::from("/b.sig"));
        assert_eq!(at.unwrap().unix_timestamp(), 1_795_428_300);
        let cli = parse(&["verify-op", "--blob", "b", "--sig", "s"]).unwrap();
        assert!(matches!(
            cli.subcommand(),
            Command::VerifyOp { at: None, .. }
        ));
        let cli = parse(&[
            "verify-op",
            "--blob",
            "b",
            "--sig",
            "s",
            "--expect",
            r#"op=rollback,guest=105,params={"snapname":"a","start":false}"#,
        ])
        .unwrap();
        let Command::VerifyOp { expect, .. } = cli.subcommand() else {
            panic!("{cli:?}")
        };
        let expect = expect.unwrap();
        assert_eq!((expect.op.as_str(), expect.guest), ("rollback", Some(105)));
        assert_eq!(
            expect.params.as_deref(),
            Some(r#"{"snapname":"a","start":false}"#)
        );
        assert!(parse(&[
            "verify-op",
            "--blob",
            "b",
            "--sig",
            "s",
            "--expect",
            "guest=x"
        ])
        .is_err());
    }

    #[test]
    fn usage_errors_exit_2() {
        for args in [
            &["verify-op"][..],
            &["verify-op", "--blob", "b"],
            &["verify-op", "--blob", "b", "--sig", "s", "--at", "tomorrow"],
            &["bogus"],
        ] {
            assert_eq!(parse(args).unwrap_err().exit_code(), 2, "{args:?}");
        }
        assert_eq!(parse(&["--help"]).unwrap_err().exit_code(), 0);
        assert_eq!(parse(&["--version"]).unwrap_err().exit_code(), 0);
    }

    #[test]
    fn the_old_poll_floor_flag_is_rejected() {
        // The test-only floor is an environment variable now; the shipped CLI has no such knob.
        for args in [
            &["--poll-floor-ms", "250"][..],
            &["run", "--poll-floor-ms", "250"],
            &["--poll-floor-ms=250", "check-config"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
            assert!(err.to_string().contains("--poll-floor-ms"), "{err}");
        }
        let help = <Cli as CommandFactory>::command()
            .render_long_help()
            .to_string();
        assert!(!help.contains("poll-floor"), "{help}");
        assert!(help.contains("--config"), "{help}");
    }
}
