//! `FileNonceStore`: used nonces on felhom-journal's durable log, so replay protection survives
//! restarts. Each nonce is fsync'd before `record` answers `Fresh`; the index is rebuilt from
//! the file on open; expired entries are pruned and the file compacted; any I/O failure
//! disables the store, which then answers "seen" to everything (nothing runs) until reopened.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use felhom_journal::{FileSystem, JournalError, Log, RealFs};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::nonce::{MemoryNonceStore, NonceOutcome, NonceStore, NonceStoreError};

/// One used nonce, as a journal record (a compatibility boundary: field names are the file
/// format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NonceRecord {
    /// The op blob's nonce.
    pub nonce: String,
    /// Unix seconds (rounded up) after which the entry may be pruned.
    pub keep_until: i64,
}

/// A durable [`NonceStore`] on a [`felhom_journal::Log`]. One per file: the journal's exclusive
/// lock refuses a second writer, in this process or another.
pub struct FileNonceStore {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    log: Log<NonceRecord>,
    /// nonce → keep_until (unix seconds).
    index: HashMap<String, i64>,
    /// Set by the first I/O failure; from then on the store refuses everything.
    failure: Option<String>,
}

impl fmt::Debug for FileNonceStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("FileNonceStore");
        d.field("path", &self.path);
        if let Ok(state) = self.state.lock() {
            d.field("entries", &state.index.len())
                .field("records_in_file", &state.log.len())
                .field("failure", &state.failure);
        }
        d.finish_non_exhaustive()
    }
}

impl FileNonceStore {
    /// Opens (creating if absent) the store at `path`; its directory must exist. Replays every
    /// record into the index; a torn last record (a crash mid-append, so that op never got
    /// `Ok`) is dropped and logged by the journal.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, NonceStoreError> {
        Self::open_with(path, Arc::new(RealFs))
    }

    /// [`FileNonceStore::open`] through the given file system (fault injection in tests).
    pub fn open_with(
        path: impl AsRef<Path>,
        fs: Arc<dyn FileSystem>,
    ) -> Result<Self, NonceStoreError> {
        let path = path.as_ref().to_owned();
        let mut index = HashMap::new();
        let (log, repaired) = Log::<NonceRecord>::open_visit(&path, fs, |rec: NonceRecord| {
            let entry = index.entry(rec.nonce).or_insert(rec.keep_until);
            *entry = (*entry).max(rec.keep_until);
        })
        .map_err(|e| io_error(&path, "open", &e))?;
        if let Some(torn) = repaired {
            tracing::warn!(
                path = %path.display(),
                line = torn.line,
                reason = %torn.reason,
                "nonce store: dropped a torn last record (its op was never acknowledged)"
            );
        }
        tracing::debug!(path = %path.display(), entries = index.len(), "nonce store opened");
        Ok(FileNonceStore {
            path,
            state: Mutex::new(State {
                log,
                index,
                failure: None,
            }),
        })
    }

    /// A read-only copy of the used nonces in the file at `path`, without taking the writer's
    /// lock: for `felhom-agent verify-op` (a dry run, [`crate::Verifier::check`]) while the
    /// daemon holds the store open. A missing file is an empty store; a torn last line (an
    /// append in progress) is ignored; damage before it is refused like [`FileNonceStore::open`].
    pub fn snapshot(path: impl AsRef<Path>) -> Result<MemoryNonceStore, NonceStoreError> {
        let path = path.as_ref();
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(NonceStoreError::Io {
                    path: path.display().to_string(),
                    operation: "read",
                    message: e.to_string(),
                })
            }
        };
        let store = MemoryNonceStore::new();
        felhom_journal::codec::scan(&bytes, |_, line| {
            let rec: NonceRecord = serde_json::from_slice(line.rec)
                .map_err(|e| format!("record does not decode: {e}"))?;
            let keep_until = OffsetDateTime::from_unix_timestamp(rec.keep_until)
                .map_err(|e| format!("keep_until {} is out of range: {e}", rec.keep_until))?;
            store.insert(rec.nonce, keep_until);
            Ok(())
        })
        .map_err(|e| NonceStoreError::Io {
            path: path.display().to_string(),
            operation: "read",
            message: format!("line {} is corrupt: {}", e.line, e.reason),
        })?;
        Ok(store)
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many nonces are held (0 if the lock is poisoned).
    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.index.len()).unwrap_or(0)
    }

    /// Whether no nonce is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rewrites the file with only the entries held now (atomic: temp file, fsync, rename,
    /// directory fsync). [`NonceStore::prune`] calls this when at least half the file is
    /// dead; call it directly to force one.
    pub fn compact(&self) -> Result<(), NonceStoreError> {
        let mut state = self.lock()?;
        state.check_usable(&self.path)?;
        self.compact_locked(&mut state)
    }

    fn compact_locked(&self, state: &mut State) -> Result<(), NonceStoreError> {
        let mut keep: Vec<NonceRecord> = state
            .index
            .iter()
            .map(|(nonce, &keep_until)| NonceRecord {
                nonce: nonce.clone(),
                keep_until,
            })
            .collect();
        // Deterministic file content: oldest expiry first.
        keep.sort_by(|a, b| (a.keep_until, &a.nonce).cmp(&(b.keep_until, &b.nonce)));
        state.log.compact(&keep).map_err(|e| {
            let err = io_error(&self.path, "compact", &e);
            // A failure before the rename leaves the old file whole and the log usable; a
            // failed fsync poisons the log, and then the store must stop answering.
            if state.log.is_poisoned() {
                state.disable(&err);
            }
            err
        })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, NonceStoreError> {
        self.state.lock().map_err(|_| NonceStoreError::Poisoned)
    }
}

impl State {
    fn check_usable(&self, path: &Path) -> Result<(), NonceStoreError> {
        match &self.failure {
            Some(first_failure) => Err(NonceStoreError::Disabled {
                path: path.display().to_string(),
                first_failure: first_failure.clone(),
            }),
            None => Ok(()),
        }
    }

    fn disable(&mut self, err: &NonceStoreError) {
        tracing::error!(
            error = %err,
            "nonce store disabled: every signed op is refused until it is reopened"
        );
        self.failure = Some(err.to_string());
    }
}

impl NonceStore for FileNonceStore {
    fn record(
        &self,
        nonce: &str,
        keep_until: OffsetDateTime,
    ) -> Result<NonceOutcome, NonceStoreError> {
        // Held across lookup and append, so two verifications of one nonce cannot both win.
        let mut state = self.lock()?;
        state.check_usable(&self.path)?;
        if state.index.contains_key(nonce) {
            return Ok(NonceOutcome::Seen);
        }
        let record = NonceRecord {
            nonce: nonce.to_string(),
            keep_until: unix_ceil(keep_until),
        };
        if let Err(e) = state.log.append(&record) {
            // Whether the record reached the disk is unknown: never retried, never Fresh.
            let err = io_error(&self.path, "append", &e);
            state.disable(&err);
            return Err(err);
        }
        state.index.insert(record.nonce, record.keep_until);
        Ok(NonceOutcome::Fresh)
    }

    fn seen(&self, nonce: &str) -> bool {
        match self.state.lock() {
            Ok(state) => state.failure.is_some() || state.index.contains_key(nonce),
            Err(_) => true,
        }
    }

    fn prune(&self, now: OffsetDateTime) -> Result<usize, NonceStoreError> {
        let mut state = self.lock()?;
        state.check_usable(&self.path)?;
        let now = now.unix_timestamp();
        let before = state.index.len();
        state.index.retain(|_, keep_until| *keep_until >= now);
        let removed = before - state.index.len();
        let total = usize::try_from(state.log.len()).unwrap_or(usize::MAX);
        let dead = total.saturating_sub(state.index.len());
        if removed > 0 && dead.saturating_mul(2) >= total {
            self.compact_locked(&mut state)?;
        }
        Ok(removed)
    }
}

/// Rounded up, so an entry is never pruned before its `keep_until`.
fn unix_ceil(t: OffsetDateTime) -> i64 {
    let secs = t.unix_timestamp();
    if t.nanosecond() > 0 {
        secs.saturating_add(1)
    } else {
        secs
    }
}

fn io_error(path: &Path, operation: &'static str, e: &JournalError) -> NonceStoreError {
    NonceStoreError::Io {
        path: path.display().to_string(),
        operation,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn keep_until_rounds_up() {
        assert_eq!(unix_ceil(datetime!(1970-01-01 00:00:01 UTC)), 1);
        assert_eq!(unix_ceil(datetime!(1970-01-01 00:00:01.000001 UTC)), 2);
    }

    #[test]
    fn records_survive_reopen_and_duplicates_keep_the_latest_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nonces.log");
        let t = datetime!(2026-01-01 00:00 UTC);
        {
            let store = FileNonceStore::open(&path).unwrap();
            assert_eq!(store.record("a", t).unwrap(), NonceOutcome::Fresh);
            assert_eq!(store.record("a", t).unwrap(), NonceOutcome::Seen);
            assert_eq!(store.record("b", t).unwrap(), NonceOutcome::Fresh);
        }
        let store = FileNonceStore::open(&path).unwrap();
        assert_eq!(store.len(), 2);
        assert!(store.seen("a") && store.seen("b") && !store.seen("c"));
        assert_eq!(store.record("a", t).unwrap(), NonceOutcome::Seen);
    }

    #[test]
    fn a_snapshot_reads_the_file_while_the_writer_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nonces.log");
        assert!(
            FileNonceStore::snapshot(&path).unwrap().is_empty(),
            "missing file"
        );
        let t = datetime!(2026-01-01 00:00 UTC);
        let store = FileNonceStore::open(&path).unwrap();
        store.record("a", t).unwrap();
        store.record("b", t + time::Duration::hours(1)).unwrap();
        // A torn append in progress is ignored.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"seq\":3,\"cr"))
            .unwrap();
        let snapshot = FileNonceStore::snapshot(&path).unwrap();
        assert_eq!(snapshot.len(), 2);
        assert!(snapshot.seen("a") && snapshot.seen("b"));
        assert_eq!(snapshot.prune(t + time::Duration::minutes(1)).unwrap(), 1);
        assert!(store.seen("a"), "the snapshot is a copy");
    }
}
