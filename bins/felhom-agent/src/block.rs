//! The hub's block, made sticky and durable: a block ends only when a well-formed envelope says
//! `"blocked": false` (an empty 200, a 204 or an envelope without the field keeps it; an
//! unparseable one never reaches here), and it survives a restart — a hub that blocked a host
//! must not be undone by a reboot.
//!
//! Stored as a one-record felhom-journal log beside the op journal (`hub-block.log`), rewritten
//! with the log's atomic compaction (temp file, fsync, rename, fsync dir) on each change. A
//! file that exists but cannot be read fails safe: blocked, until the hub says otherwise.

use std::path::{Path, PathBuf};

use felhom_journal::Log;
use serde::{Deserialize, Serialize};

/// The file's name, in the op journal's directory.
pub const FILE_NAME: &str = "hub-block.log";

/// One record: the state and when it was set (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRecord {
    /// Whether the hub blocks this host.
    pub blocked: bool,
    /// When the hub said so.
    pub since: u64,
}

/// The block state and its file.
#[derive(Debug)]
pub struct HubBlock {
    path: PathBuf,
    log: Option<Log<BlockRecord>>,
    blocked: bool,
}

impl HubBlock {
    /// The file beside `journal_path`.
    pub fn path_beside(journal_path: &Path) -> PathBuf {
        journal_path.with_file_name(FILE_NAME)
    }

    /// Opens (creating) the state at `path`; logs what it found. Never fails: a file that
    /// cannot be opened leaves the state in memory only (blocked if the file exists, since
    /// what it says is unknown).
    pub fn open(path: &Path) -> Self {
        match Log::<BlockRecord>::open(path) {
            Ok(opened) => {
                let blocked = opened.records.last().is_some_and(|r| r.blocked);
                if blocked {
                    tracing::warn!(
                        path = %path.display(),
                        "the hub blocked this host before the restart: still blocked (no \
                         reconcile pass) until the hub answers \"blocked\": false"
                    );
                }
                Self {
                    path: path.to_owned(),
                    log: Some(opened.log),
                    blocked,
                }
            }
            Err(e) => {
                let blocked = path.exists();
                tracing::error!(
                    path = %path.display(),
                    error = %e,
                    blocked,
                    "hub block state cannot be opened: it is kept in memory only{}",
                    if blocked {
                        "; the file exists, so this host counts as blocked until the hub \
                         answers \"blocked\": false"
                    } else {
                        ""
                    }
                );
                Self {
                    path: path.to_owned(),
                    log: None,
                    blocked,
                }
            }
        }
    }

    /// Whether the hub blocks this host.
    pub fn blocked(&self) -> bool {
        self.blocked
    }

    /// The hub's answer said `said` (`None`: nothing). Returns whether the state changed; a
    /// change is logged once and written durably (once per change: a short fsync on the
    /// caller's thread is acceptable for so rare an event).
    pub fn observe(&mut self, said: Option<bool>, now: u64) -> bool {
        let Some(blocked) = said else {
            return false;
        };
        if blocked == self.blocked {
            return false;
        }
        self.blocked = blocked;
        if blocked {
            tracing::warn!(
                "the hub has blocked this host: reporting continues, no desired state is applied"
            );
        } else {
            tracing::warn!("the hub has lifted its block: desired state is applied again");
        }
        if let Some(log) = &mut self.log {
            if let Err(e) = log.compact(&[BlockRecord {
                blocked,
                since: now,
            }]) {
                tracing::error!(
                    path = %self.path.display(),
                    error = %e,
                    blocked,
                    "cannot persist the hub's block state: a restart may not keep it"
                );
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_explicit_answer_changes_it_and_a_reopen_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = HubBlock::path_beside(&dir.path().join("journal.log"));
        assert_eq!(path, dir.path().join(FILE_NAME));
        let mut b = HubBlock::open(&path);
        assert!(!b.blocked());
        assert!(b.observe(Some(true), 10));
        assert!(!b.observe(Some(true), 11), "no change, no write");
        assert!(
            !b.observe(None, 12),
            "an answer without the field keeps the block"
        );
        assert!(b.blocked());
        drop(b);

        let mut b = HubBlock::open(&path);
        assert!(b.blocked(), "the block survives a restart");
        assert!(b.observe(Some(false), 20));
        drop(b);
        assert!(!HubBlock::open(&path).blocked());
    }

    #[test]
    fn an_unreadable_file_fails_safe() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        // Damage before the last line: corruption, not a torn tail.
        std::fs::write(&path, "not a log record\nnor this\n").unwrap();
        let mut b = HubBlock::open(&path);
        assert!(b.blocked(), "unknown content counts as blocked");
        assert!(b.observe(Some(false), 1), "the hub can still lift it");
        assert!(!b.blocked());
        // No directory: nothing to read, nothing persisted, not blocked.
        let b = HubBlock::open(&dir.path().join("missing/hub-block.log"));
        assert!(!b.blocked());
    }
}
