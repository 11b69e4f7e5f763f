//! The `felhom-sign` command line: argument parsing and file I/O around the library.

use std::ffi::OsStr;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use felhom_authz::{MAX_BLOB_LEN, MAX_SIGNATURE_LEN};
use felhom_hub_proto::{OpKind, Timestamp};
use felhom_sign::check::{self, Verdict};
use felhom_sign::compose::{self, NewOp};
use felhom_sign::duration::parse_duration;
use felhom_sign::{keygen, read_limited, show, SignError};
use time::OffsetDateTime;

/// felhom-sign: compose, show, sign and check a felhom signed op on the operator's
/// workstation.
///
/// The usual flow: `new` writes the op blob, `show` says what it will do, `sign` runs
/// `ssh-keygen -Y sign -n felhom-op-v1` over it, and the blob and its `.sig` go to the hub (or
/// to `felhom-agent verify-op` on the host). `check` runs the agent's verifier over them first.
///
/// Exit status: 0 success (check: accepted), 1 check refused the op, 2 usage or input error.
#[derive(Debug, Parser)]
#[command(name = "felhom-sign", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compose an op blob in canonical form: fresh 128-bit nonce, window from now (UTC, whole
    /// seconds). Writes exactly the bytes to sign.
    ///
    /// Ops: destroy_guest (no params), rollback (snapname, start), delete_snapshot (snapname),
    /// restore_over (archive, storage) act on a guest (--guest); rotate_signers (signers, a
    /// list: --params-json) acts on the host.
    New {
        /// The op: destroy_guest, rollback, delete_snapshot, restore_over or rotate_signers.
        #[arg(long, value_parser = parse_op)]
        op: OpKind,
        /// The host that must execute it: the agent's hub.host_id.
        #[arg(long, value_name = "HOST_ID")]
        host: String,
        /// The guest's vmid (guest ops only).
        #[arg(long, value_name = "VMID")]
        guest: Option<u32>,
        /// A param as NAME=VALUE (repeatable), e.g. --param snapname=pre-upgrade --param
        /// start=false.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// A JSON object of params, e.g. {"signers": [...]} for rotate_signers.
        #[arg(long, value_name = "FILE")]
        params_json: Option<PathBuf>,
        /// The signer's name (informational: the agent identifies the signer by its key).
        #[arg(long, value_name = "NAME")]
        key_id: String,
        /// How long the op stays valid: 90s, 15m, 2h, 1d, 1h30m (at most the agent's 7d).
        #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse_valid)]
        valid: u64,
        /// Start of the window (RFC 3339 UTC, whole seconds) instead of now.
        #[arg(long, value_name = "RFC3339", value_parser = parse_timestamp)]
        not_before: Option<Timestamp>,
        /// Write the blob to FILE instead of stdout.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Say in plain language what the op will do when the agent accepts it, and with SIG which
    /// key signed it (type and SHA-256 fingerprint, as `ssh-keygen -l` prints them).
    Show {
        /// The op blob.
        file: PathBuf,
        /// Its signature (FILE.sig from `felhom-sign sign`).
        sig: Option<PathBuf>,
        /// Describe the window relative to this instant (RFC 3339) instead of now.
        #[arg(long, value_name = "RFC3339", value_parser = parse_timestamp)]
        at: Option<Timestamp>,
    },
    /// Sign FILE with `ssh-keygen -Y sign -n felhom-op-v1 -f KEY FILE`, writing FILE.sig.
    ///
    /// KEY is a private key, or a public key whose private half is in ssh-agent or on a
    /// security key; ssh-keygen asks for a passphrase or a touch as usual.
    Sign {
        /// The signing key (as ssh-keygen's -f).
        #[arg(short = 'f', value_name = "KEY")]
        key: PathBuf,
        /// The op blob.
        file: PathBuf,
    },
    /// Run the agent's verifier (dry run, nothing recorded) over FILE and SIG against a
    /// signers file, and print the verdict with its typed reason.
    ///
    /// The signers file: a JSON list of {key_id, role, public_key} (as the agent config's
    /// authz.signers), an agent config itself, or authorized_keys lines (operational, named by
    /// their comment). Exit 0 accepted, 1 refused, 2 usage or input error.
    Check {
        /// The signers file.
        #[arg(long, value_name = "FILE")]
        signers: PathBuf,
        /// The op blob: the exact bytes that were signed.
        file: PathBuf,
        /// Its signature.
        sig: PathBuf,
        /// The host to check for (default: the agent config's hub.host_id, else the blob's).
        #[arg(long, value_name = "HOST_ID")]
        host: Option<String>,
        /// Evaluate the time window at this instant (RFC 3339) instead of now.
        #[arg(long, value_name = "RFC3339", value_parser = parse_timestamp)]
        at: Option<Timestamp>,
    },
}

fn parse_op(s: &str) -> Result<OpKind, String> {
    s.parse()
        .map_err(|e: felhom_hub_proto::UnknownOp| e.to_string())
}

fn parse_valid(s: &str) -> Result<u64, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn parse_timestamp(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse(s).map_err(|e| e.to_string())
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            // Every SignError names its cause in its own message; `{:#}` would repeat it.
            eprintln!("felhom-sign: error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::New {
            op,
            host,
            guest,
            params,
            params_json,
            key_id,
            valid,
            not_before,
            output,
        } => {
            let json = params_json
                .as_deref()
                .map(|p| read_limited("--params-json", p, MAX_BLOB_LEN).map(|b| (p, b)))
                .transpose()?;
            let req = NewOp {
                op,
                host,
                guest,
                params,
                key_id,
                valid_secs: valid,
                not_before,
            };
            let blob = compose::compose(
                &req,
                json.as_ref().map(|(p, b)| (*p, b.as_slice())),
                compose::fresh_nonce()?,
                now(),
            )?;
            let bytes = blob.to_canonical_json();
            match output {
                Some(path) => {
                    std::fs::write(&path, &bytes).map_err(|source| SignError::Write {
                        path: path.clone(),
                        source,
                    })?;
                    eprintln!("wrote {}", path.display());
                    eprintln!("{}", show::statement(&blob, now()));
                }
                None => {
                    let mut stdout = std::io::stdout().lock();
                    stdout
                        .write_all(bytes.as_bytes())
                        .and_then(|()| stdout.flush())
                        .map_err(|e| anyhow::anyhow!("cannot write the blob to stdout: {e}"))?;
                    // The bytes carry no newline (they are what gets signed); keep a
                    // terminal's prompt off the blob's line.
                    if stdout.is_terminal() {
                        eprintln!();
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { file, sig, at } => {
            let bytes = read_limited("blob", &file, MAX_BLOB_LEN)?;
            let blob = show::parse_blob(&file, &bytes)?;
            let info = sig
                .map(|path| {
                    let s = read_limited("signature", &path, MAX_SIGNATURE_LEN)?;
                    show::signature_info(&path, &s, &bytes)
                })
                .transpose()?;
            let at = at.map_or_else(now, |t| t.unix_seconds());
            print!("{}", show::render(&bytes, &blob, info.as_ref(), at));
            Ok(ExitCode::SUCCESS)
        }
        Command::Sign { key, file } => {
            let bytes = read_limited("blob", &file, MAX_BLOB_LEN)?;
            let blob = show::parse_blob(&file, &bytes)?;
            // What you see is what you sign.
            eprintln!("signing: {}", show::statement(&blob, now()));
            let sig = keygen::sign(OsStr::new("ssh-keygen"), &key, &file)?;
            println!("{}", sig.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            signers,
            file,
            sig,
            host,
            at,
        } => {
            let text = std::fs::read_to_string(&signers).map_err(|source| SignError::Read {
                what: "signers file",
                path: signers.clone(),
                source,
            })?;
            let pinned = check::parse_signers(&signers, &text)?;
            let blob = read_limited("blob", &file, MAX_BLOB_LEN)?;
            let signature = read_limited("signature", &sig, MAX_SIGNATURE_LEN)?;
            let (host, note) = match (host, pinned.host_id) {
                (Some(h), _) => (h, "from --host".to_owned()),
                (None, Some(h)) => (h, format!("from {}", signers.display())),
                (None, None) => {
                    // Without a host to hold it to, the target stage checks the blob against
                    // itself: say so.
                    let h = serde_json::from_slice::<serde_json::Value>(&blob)
                        .ok()
                        .and_then(|v| v.get("host_id")?.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    (
                        h,
                        "from the blob itself: pass --host to check the target".to_owned(),
                    )
                }
            };
            let at = match at {
                Some(t) => OffsetDateTime::from_unix_timestamp(t.unix_seconds())
                    .context("--at out of range")?,
                None => OffsetDateTime::now_utc(),
            };
            let verdict = check::check(pinned.signers, &host, &blob, &signature, at);
            print!(
                "{}",
                check::render(&verdict, at, &format!("{host} ({note})"))
            );
            Ok(match verdict {
                Verdict::Accepted(_) => ExitCode::SUCCESS,
                Verdict::Refused(_) => ExitCode::from(1),
            })
        }
    }
}
