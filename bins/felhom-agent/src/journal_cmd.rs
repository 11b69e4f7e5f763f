//! `felhom-agent journal inspect|repair [--path P]`: an operator's view of a damaged journal
//! and the way to fix it. Thin over `felhom_journal::repair`: resolves the path (default: the
//! configured `journal.path`), tells the op journal from the nonce store by its first intact
//! record, renders the result. Exit: 0 healthy or repaired, 1 corruption found (inspect), 2
//! usage, config, a journal held by a running agent, or I/O failure.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use felhom_authz::NonceRecord;
use felhom_journal::repair::{self, DamageKind, Inspection};
use felhom_journal::{codec, ops, JournalError, OpRecord};
use serde::de::DeserializeOwned;

use crate::cli::JournalAction;

const EXIT_CORRUPT: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// Which of the agent's logs a file is (their records differ; the line format is the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ops,
    Nonces,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ops => "op journal",
            Kind::Nonces => "nonce store",
        }
    }
}

/// Runs the subcommand and maps the outcome to the exit status.
pub fn main(config: &Path, action: &JournalAction) -> ExitCode {
    let given = match action {
        JournalAction::Inspect { path } | JournalAction::Repair { path } => path.clone(),
    };
    let path = match given {
        Some(p) => p,
        None => match crate::setup::load(config) {
            Ok((config, _)) => config.journal.path.clone(),
            Err(problems) => {
                eprintln!("felhom-agent: {problems}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
    };
    let kind = match sniff(&path) {
        Ok(kind) => kind,
        Err(e) => {
            eprintln!("felhom-agent: journal: cannot read {}: {e}", path.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let repairing = matches!(action, JournalAction::Repair { .. });
    let (code, out) = match kind {
        Kind::Ops => run::<OpRecord>(&path, kind, repairing, in_flight_ops),
        Kind::Nonces => run::<NonceRecord>(&path, kind, repairing, |_| String::new()),
    };
    print!("{out}");
    ExitCode::from(code)
}

/// The file's kind, from its first complete line that passes its checksum (default: the op
/// journal, e.g. for an empty file).
fn sniff(path: &Path) -> std::io::Result<Kind> {
    let bytes = std::fs::read(path)?;
    for line in bytes.split(|&b| b == b'\n') {
        if let Ok(l) = codec::decode_line(line) {
            if serde_json::from_slice::<OpRecord>(l.rec).is_ok() {
                return Ok(Kind::Ops);
            }
            if serde_json::from_slice::<NonceRecord>(l.rec).is_ok() {
                return Ok(Kind::Nonces);
            }
        }
    }
    Ok(Kind::Ops)
}

fn run<R: DeserializeOwned>(
    path: &Path,
    kind: Kind,
    repairing: bool,
    extra: impl Fn(&Inspection<R>) -> String,
) -> (u8, String) {
    if !repairing {
        return match repair::inspect::<R>(path) {
            Ok(i) => {
                let code = if i.opens() { 0 } else { EXIT_CORRUPT };
                (code, render_inspection(&i, kind) + &extra(&i))
            }
            Err(e) => failed(&e),
        };
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match repair::repair::<R>(path, now) {
        Ok(report) => {
            let i = &report.inspection;
            let mut out = render_inspection(i, kind);
            match &report.aside {
                None => out.push_str("nothing to repair: the file is healthy\n"),
                Some(aside) => {
                    let _ = writeln!(
                        out,
                        "repaired: kept {} records ({} before the damage, {} intact after it), \
                         dropped {} lines ({} bytes): {}\n\
                         the damaged file is kept as {}",
                        i.before.len() + i.after.len(),
                        i.before.len(),
                        i.after.len(),
                        i.dropped_lines.len(),
                        i.dropped_bytes,
                        line_list(&i.dropped_lines),
                        aside.display()
                    );
                    if kind == Kind::Nonces {
                        out.push_str(
                            "note: a nonce on a dropped line is forgotten; an op signed with it \
                             could be accepted again until its signature window ends\n",
                        );
                    }
                    out.push_str("restart the agent to use the repaired file\n");
                }
            }
            (0, out + &extra(i))
        }
        Err(e) => failed(&e),
    }
}

fn failed(e: &JournalError) -> (u8, String) {
    let msg = match e {
        JournalError::Locked { path } => format!(
            "felhom-agent: journal {} is held by a running felhom-agent (or another process); \
             stop it first (systemctl stop felhom-agent), then repair",
            path.display()
        ),
        other => format!("felhom-agent: {other}"),
    };
    eprintln!("{msg}");
    (EXIT_USAGE, String::new())
}

/// The report's common part: good records, the damage, what repair keeps.
fn render_inspection<R>(i: &Inspection<R>, kind: Kind) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} ({} bytes)",
        kind.name(),
        i.path.display(),
        i.file_len
    );
    let _ = writeln!(out, "good records: {}", i.before.len());
    match &i.damage {
        None => out.push_str("damage: none\n"),
        Some(d) => {
            let what = match d.kind {
                DamageKind::Torn => "torn tail (an interrupted write; cut off on the next open)",
                DamageKind::Corrupt => "CORRUPT (the agent refuses this file until it is repaired)",
            };
            let _ = writeln!(out, "damage: {what}");
            let _ = writeln!(
                out,
                "  line {} at byte {}: {}\n  excerpt: {}",
                d.line, d.offset, d.reason, d.excerpt
            );
            let _ = writeln!(
                out,
                "  after it: {} intact records (repair keeps them), {} lines dropped: {}",
                i.after.len(),
                i.dropped_lines.len(),
                line_list(&i.dropped_lines)
            );
        }
    }
    out
}

/// In-flight ops of the records repair keeps (op journal only).
fn in_flight_ops(i: &Inspection<OpRecord>) -> String {
    let ops = ops::in_flight_of(i.kept());
    let mut out = format!("in-flight ops: {}\n", ops.len());
    for op in ops {
        let upid = match &op.state {
            felhom_journal::OpState::TaskRunning { upid } => upid.as_str(),
            _ => "-",
        };
        let guest = op.vmid.map_or_else(|| "host".to_owned(), |v| v.to_string());
        let _ = writeln!(
            out,
            "  op {} guest {} action {} state {} upid {}",
            op.op_id,
            guest,
            op.action,
            op.state.name(),
            upid
        );
    }
    out
}

/// `2, 5-7, 9` (at most 20 items shown).
fn line_list(lines: &[u64]) -> String {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &l in lines {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == l => *end = l,
            _ => runs.push((l, l)),
        }
    }
    let mut parts: Vec<String> = runs
        .iter()
        .take(20)
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    if runs.len() > 20 {
        parts.push("…".to_owned());
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_lists_collapse_runs() {
        assert_eq!(line_list(&[]), "none");
        assert_eq!(line_list(&[2, 5, 6, 7, 9]), "2, 5-7, 9");
    }
}
