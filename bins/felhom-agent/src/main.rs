//! felhom-agent: the felhom host agent daemon, one per Proxmox VE host.
//!
//! Thin: parses the command line and hands over — `run` (the default) to [`daemon`],
//! `check-config`, `verify-op` and `journal` to their modules — then maps the outcome to the exit status:
//! 0 success, 1 `verify-op` refused the op, 2 usage or config error. Composition lives in the
//! modules; secrets (token secret, hub key) never reach stdout, stderr or the logs.

mod block;
mod cli;
mod crash;
mod daemon;
mod durable;
mod gate;
mod heap;
mod intent;
mod journal_cmd;
mod logging;
mod metrics;
mod notify;
mod reconcile;
mod restore;
mod setup;
mod signals;
mod status;
mod verify_op;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use time::OffsetDateTime;

use crate::cli::{Cli, Command};

/// Exit status for a usage or config error (clap uses the same for its usage errors).
const EXIT_USAGE: u8 = 2;
/// Exit status when `verify-op` refuses the op.
const EXIT_REFUSED: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.subcommand() {
        Command::Run => daemon::main(&cli.config),
        Command::CheckConfig => check_config(&cli),
        Command::VerifyOp {
            blob,
            sig,
            at,
            ref expect,
        } => verify_op(&cli, &blob, &sig, at, expect.as_ref()),
        Command::Journal(action) => journal_cmd::main(&cli.config, &action),
    }
}

/// `check-config`: the redacted effective config on stdout (exit 0), or every problem on stderr
/// (exit 2).
fn check_config(cli: &Cli) -> ExitCode {
    match setup::load(&cli.config) {
        Ok((config, _)) => {
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{}", config.redacted()).is_err() {
                return ExitCode::from(EXIT_USAGE);
            }
            eprintln!("felhom-agent: config {} is valid", cli.config.display());
            ExitCode::SUCCESS
        }
        Err(problems) => {
            match daemon::no_config_line(&cli.config) {
                Some(line) => eprintln!("{line}"),
                None => eprintln!("felhom-agent: {problems}"),
            }
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// `verify-op`: the verdict on stdout; exit 0 accepted, 1 refused, 2 when it cannot judge.
fn verify_op(
    cli: &Cli,
    blob: &std::path::Path,
    sig: &std::path::Path,
    at: Option<OffsetDateTime>,
    expect: Option<&verify_op::Expect>,
) -> ExitCode {
    let (config, signers) = match setup::load(&cli.config) {
        Ok(loaded) => loaded,
        Err(problems) => {
            eprintln!("felhom-agent: {problems}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let count = signers.len();
    let at = at.unwrap_or_else(OffsetDateTime::now_utc);
    match verify_op::run(&config, signers, blob, sig, at, expect) {
        Ok(verdict) => {
            print!("{}", verify_op::render(&verdict, at, count));
            match verdict {
                verify_op::Verdict::Accepted(_) => ExitCode::SUCCESS,
                verify_op::Verdict::Refused(_) | verify_op::Verdict::NotAnAction(_) => {
                    ExitCode::from(EXIT_REFUSED)
                }
            }
        }
        Err(e) => {
            eprintln!("felhom-agent: verify-op: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
