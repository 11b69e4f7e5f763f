//! felhom-selftest: checks a Proxmox host's API, token and privileges for the felhom agent.
//!
//! Thin: parses the command line, sets up logging, loads the config, builds the clients and
//! hands over to the subcommand's module (`read`, `task`, `privileges`, `hub`), then prints
//! the check list (and any attached documents) and exits 0 (all passed), 1 (a check failed)
//! or 2 (usage or config error).
//!
//! Never: change anything on the host outside `task` (and there only what it undoes), or
//! print the token secret or the hub key (the config, the clients and their errors all redact
//! them).

mod cli;
mod hub;
mod privileges;
mod read;
mod report;
mod task;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use felhom_config::pve;
use felhom_config::{Config, ConfigError};
use felhom_hub::cloudflared::SystemctlProber;
use felhom_hub::hub::{HubClient, HubClientError};
use felhom_proxmox::{PveClient, TlsTrust, WaitOptions};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command};
use crate::report::Report;

/// Exit status for a usage or config error (clap uses the same for its usage errors).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let command = cli.subcommand();

    let Setup {
        config,
        client,
        trust,
        hub,
    } = match setup(&cli.config, &command) {
        Ok(s) => s,
        Err(problem) => {
            problem.print(cli.json);
            return ExitCode::from(EXIT_USAGE);
        }
    };

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("felhom-selftest: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };

    if !cli.json {
        println!(
            "felhom-selftest {} {}: {} (node {}, token {})",
            env!("CARGO_PKG_VERSION"),
            command.name(),
            config.proxmox.api_url,
            config.proxmox.node,
            config.proxmox.token.token_id()
        );
    }
    let mut report = Report::new(command.name(), !cli.json);
    let ctx = Ctx {
        config: &config,
        client: &client,
        trust: &trust,
        hub: hub.as_ref(),
    };
    runtime.block_on(run(&command, &ctx, &mut report));

    let mut out = std::io::stdout().lock();
    let printed = if cli.json {
        writeln!(out, "{:#}", report.to_json())
    } else {
        write!(out, "{}", report.attachments_text())
            .and_then(|()| writeln!(out, "{}", report.summary_line()))
    };
    if printed.is_err() {
        // The verdict still reaches the caller through the exit status.
        eprintln!("felhom-selftest: cannot write the report to stdout");
    }
    if report.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// What every subcommand may use.
struct Ctx<'a> {
    config: &'a Config,
    client: &'a PveClient,
    /// The configured TLS trust, for comparing pins with what the node reports.
    trust: &'a TlsTrust,
    /// The hub client, built only for the hub test.
    hub: Option<&'a HubClient>,
}

/// Runs one subcommand: each lives in its own module.
async fn run(command: &Command, ctx: &Ctx<'_>, report: &mut Report) {
    match command {
        Command::Read => {
            let token_id = ctx.config.proxmox.token.token_id();
            read::run(ctx.client, ctx.trust, token_id, report).await
        }
        Command::Privileges => privileges::run(ctx.client, report).await,
        Command::Hub => match (&ctx.config.hub, ctx.hub) {
            (Some(config), Some(client)) => {
                let prober = SystemctlProber::new();
                hub::run(
                    ctx.client,
                    &prober,
                    config,
                    client,
                    SystemTime::now(),
                    report,
                )
                .await
            }
            // `setup` requires the section for this command and builds the client with it.
            _ => report.fail("hub_config", "the config has no hub section"),
        },
        Command::Task { vmid, task_timeout } => {
            let test = task::TaskTest {
                vmid: *vmid,
                now_unix: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default(),
                wait: WaitOptions {
                    timeout: *task_timeout,
                    ..WaitOptions::default()
                },
                // Bounded too: a task that never ends must not hold the cleanup (or a Ctrl-C).
                cleanup_wait: WaitOptions {
                    timeout: *task_timeout,
                    ..WaitOptions::default()
                },
                by_hand: task::ByHand::default(),
            };
            tokio::spawn(on_interrupt(test.wait.cancel.clone(), test.by_hand.clone()));
            task::run(ctx.client, &test, report).await;
        }
    }
}

/// First Ctrl-C: stop starting new steps, give the running task at most `--task-timeout` to
/// finish, and clean up. Second: print what is left to undo by hand and exit at once.
async fn on_interrupt(cancel: CancellationToken, by_hand: task::ByHand) {
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    eprintln!(
        "felhom-selftest: interrupted; undoing the test's changes (Ctrl-C again to abort and \
         leave them)"
    );
    cancel.cancel();
    if tokio::signal::ctrl_c().await.is_ok() {
        eprintln!(
            "felhom-selftest: aborted; the guest may keep the test's snapshot or description"
        );
        eprint!("{}", by_hand.render());
        std::process::exit(130);
    }
}

/// Why the tests could not start: the config (all its problems) or a client's settings.
enum SetupError {
    Config { path: String, error: ConfigError },
    Client(pve::PveConfigError),
    Hub(HubClientError),
}

impl SetupError {
    fn print(&self, json: bool) {
        let (message, problems) = match self {
            SetupError::Config {
                path,
                error: ConfigError::Invalid(problems),
            } => (
                format!("config {path}: {}", ConfigError::Invalid(problems.clone())),
                problems
                    .iter()
                    .map(|p| json!({ "key": p.key, "problem": p.msg }))
                    .collect(),
            ),
            SetupError::Config { error, .. } => (error.to_string(), Vec::new()),
            SetupError::Client(e) => (e.to_string(), Vec::new()),
            SetupError::Hub(e) => (e.to_string(), Vec::new()),
        };
        eprintln!("felhom-selftest: {message}");
        if json {
            let doc = json!({ "ok": false, "error": message, "problems": problems });
            println!("{doc:#}");
        }
    }
}

/// What `setup` builds: the config, the Proxmox client and its trust, and the hub client
/// (only for the hub test).
struct Setup {
    config: Config,
    client: PveClient,
    trust: TlsTrust,
    hub: Option<HubClient>,
}

/// Loads the config for `command` (the process environment overlays it) and builds the
/// clients it needs.
fn setup(path: &Path, command: &Command) -> Result<Setup, SetupError> {
    // A FELHOM_AGENT_* variable that is not UTF-8 is a config problem naming it.
    let config = Config::load(path, std::env::vars_os()).map_err(|error| SetupError::Config {
        path: path.display().to_string(),
        error,
    })?;
    let trust = config.proxmox.tls.clone();
    let client = pve::client(&config.proxmox).map_err(SetupError::Client)?;
    let hub = match command.needs_hub() {
        Some(who) => {
            // Reported like any config problem: one line, and `{"key": "hub"}` in JSON.
            let hub = config.hub(who).map_err(|e| SetupError::Config {
                path: path.display().to_string(),
                error: ConfigError::Invalid(vec![e.problem()]),
            })?;
            Some(HubClient::new(hub.client_config()).map_err(SetupError::Hub)?)
        }
        None => None,
    };
    Ok(Setup {
        config,
        client,
        trust,
        hub,
    })
}

/// Logs go to stderr (stdout is the report), warnings only unless `-v` or `RUST_LOG` asks.
fn init_logging(cli: &Cli) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = tracing_subscriber::EnvFilter::try_new(cli.log_filter(rust_log.as_deref()))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(cli.verbose > 1)
        .init();
}
