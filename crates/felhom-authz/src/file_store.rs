//! `FileNonceStore`: used nonces on felhom-journal's durable log, so replay protection survives
//! restarts. Each nonce is fsync'd before `record` answers `Fresh`; the index is rebuilt from
//! the file on open; expired entries are pruned and the file compacted; any I/O failure
//! disables the store, which then answers "seen" to everything (nothing runs) until reopened.
//!
//! A corrupt file (a bad complete line anywhere, the last one included: see felhom-journal's
//! tail rules) is not an open error but a store that opens *disabled*: every nonce reads as
//! seen and every signed op is refused until an operator repairs the file
//! (`felhom-agent journal repair --path …`) and restarts the agent. It never drops the damaged
//! line and carries on, which could forget a used nonce and let its op run again.
//!
//! The index holds a 128-bit key per nonce (the first 16 bytes of its SHA-256), not its text:
//! a million nonces then open in well under a second, with no allocation per record. Two
//! nonces sharing a key (never expected at 128 bits) can only make a fresh nonce read as
//! "seen", the fail-safe direction: that op is refused, never run twice. The file keeps the
//! nonce text ([`NonceRecord`]), so compaction reads the texts back from it.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use felhom_journal::{FileSystem, JournalError, Log, RealFs};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
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
    /// The log's file system, kept to read the nonce texts back when compacting.
    fs: Arc<dyn FileSystem>,
    state: Mutex<State>,
}

/// A nonce's index key: the first 16 bytes of its SHA-256 (see the module docs on collisions).
type NonceKey = [u8; 16];

fn nonce_key(nonce: &str) -> NonceKey {
    let digest = Sha256::digest(nonce.as_bytes());
    let mut key = [0; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// The log's record type: written from a nonce's text in [`NonceRecord`]'s format, replayed as
/// only the nonce's key, so opening a big file allocates nothing per record.
#[derive(Debug)]
enum Stored {
    /// What `record` appends and `compact` writes.
    Text(NonceRecord),
    /// What every record replays as.
    Key { key: NonceKey, keep_until: i64 },
}

impl Serialize for Stored {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Text(record) => record.serialize(serializer),
            Self::Key { .. } => Err(serde::ser::Error::custom(
                "a replayed nonce record holds only its key and cannot be written",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Stored {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// [`NonceRecord`]'s fields and checks, with the nonce hashed as it is read.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Replayed {
            nonce: KeyOf,
            keep_until: i64,
        }
        let Replayed { nonce, keep_until } = Replayed::deserialize(deserializer)?;
        Ok(Self::Key {
            key: nonce.0,
            keep_until,
        })
    }
}

/// A JSON string deserialized straight into its [`NonceKey`] (serde_json hands over the
/// unescaped text without allocating a `String`).
struct KeyOf(NonceKey);

impl<'de> Deserialize<'de> for KeyOf {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = KeyOf;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a nonce string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<KeyOf, E> {
                Ok(KeyOf(nonce_key(v)))
            }
        }
        deserializer.deserialize_str(Visit)
    }
}

/// Nonce key → keep_until (unix seconds). The keys replayed at open sit in one sorted vector,
/// built by a single sort: a million random inserts into a hash table cost more than the
/// replay itself (a cache miss each). Keys recorded since go in a hash map.
#[derive(Debug, Default)]
struct Index {
    /// Sorted by key, one entry per key.
    replayed: Vec<(NonceKey, i64)>,
    /// Never holds a key `replayed` holds (`insert` is only called for an absent key).
    recorded: HashMap<NonceKey, i64>,
}

impl Index {
    /// From the replayed records in file order, a key repeated keeping its latest expiry.
    fn from_replay(mut replayed: Vec<(NonceKey, i64)>) -> Self {
        replayed.sort_unstable();
        // Equal keys are adjacent, their expiries ascending: keep one, with the last expiry.
        replayed.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 = kept.1.max(later.1);
            }
            same
        });
        Self {
            replayed,
            recorded: HashMap::new(),
        }
    }

    fn get(&self, key: &NonceKey) -> Option<i64> {
        match self.replayed.binary_search_by(|(k, _)| k.cmp(key)) {
            Ok(at) => Some(self.replayed[at].1),
            Err(_) => self.recorded.get(key).copied(),
        }
    }

    fn contains_key(&self, key: &NonceKey) -> bool {
        self.get(key).is_some()
    }

    /// Records an absent key (the caller checked `contains_key`).
    fn insert(&mut self, key: NonceKey, keep_until: i64) {
        self.recorded.insert(key, keep_until);
    }

    fn len(&self) -> usize {
        self.replayed.len() + self.recorded.len()
    }

    /// Keeps the entries whose expiry satisfies `keep` (the vector stays sorted).
    fn retain(&mut self, keep: impl Fn(i64) -> bool) {
        self.replayed.retain(|(_, keep_until)| keep(*keep_until));
        self.recorded.retain(|_, keep_until| keep(*keep_until));
    }
}

struct State {
    /// `None` only when the file was corrupt at open (then `failure` is set and stays set).
    log: Option<Log<Stored>>,
    index: Index,
    /// Set by the first I/O failure (or a corrupt file at open); from then on the store
    /// refuses everything.
    failure: Option<String>,
    /// The corrupt line found at open, if any.
    corrupt_line: Option<u64>,
}

impl fmt::Debug for FileNonceStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("FileNonceStore");
        d.field("path", &self.path);
        if let Ok(state) = self.state.lock() {
            d.field("entries", &state.index.len())
                .field("records_in_file", &state.log.as_ref().map(Log::len))
                .field("failure", &state.failure);
        }
        d.finish_non_exhaustive()
    }
}

impl FileNonceStore {
    /// Opens (creating if absent) the store at `path`; its directory must exist. Replays every
    /// record into the index; a torn last record (a crash mid-append, so that op never got
    /// `Ok`) is dropped and logged by the journal.
    ///
    /// A corrupt file opens as a *disabled* store (see the module docs; logged at error naming
    /// the file and line, and [`FileNonceStore::corruption`] says why): every nonce reads as
    /// seen until the file is repaired. Other failures (I/O, another writer's lock) are errors.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, NonceStoreError> {
        Self::open_with(path, Arc::new(RealFs))
    }

    /// [`FileNonceStore::open`] through the given file system (fault injection in tests).
    pub fn open_with(
        path: impl AsRef<Path>,
        fs: Arc<dyn FileSystem>,
    ) -> Result<Self, NonceStoreError> {
        let path = path.as_ref().to_owned();
        let mut replayed = Vec::with_capacity(record_count_hint(&path));
        let opened = Log::<Stored>::open_visit(&path, Arc::clone(&fs), |rec| {
            if let Stored::Key { key, keep_until } = rec {
                replayed.push((key, keep_until));
            }
        });
        let (log, repaired) = match opened {
            Ok(opened) => opened,
            Err(JournalError::Corrupt { line, reason, .. }) => {
                return Ok(Self::corrupt(path, fs, line, &reason));
            }
            Err(e) => return Err(io_error(&path, "open", &e)),
        };
        let index = Index::from_replay(replayed);
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
            fs,
            state: Mutex::new(State {
                log: Some(log),
                index,
                failure: None,
                corrupt_line: None,
            }),
        })
    }

    /// The fail-safe store for a corrupt file: no index (what it would hold cannot be trusted
    /// to be complete), every nonce seen, every change refused.
    fn corrupt(path: PathBuf, fs: Arc<dyn FileSystem>, line: u64, reason: &str) -> Self {
        let failure = format!(
            "{}: line {line} is corrupt: {reason}; signed ops are refused until it is repaired \
             (felhom-agent journal repair --path {}) and the agent restarted",
            path.display(),
            path.display()
        );
        tracing::error!(
            path = %path.display(),
            line,
            %reason,
            "nonce store is corrupt: every signed op is refused until it is repaired \
             (felhom-agent journal repair --path {}); no used nonce is forgotten",
            path.display()
        );
        FileNonceStore {
            path,
            fs,
            state: Mutex::new(State {
                log: None,
                index: Index::default(),
                failure: Some(failure),
                corrupt_line: Some(line),
            }),
        }
    }

    /// The 1-based line at which the file was found corrupt on open, if it was: the store is
    /// then disabled (every nonce seen) until the file is repaired and the store reopened.
    pub fn corruption(&self) -> Option<u64> {
        self.state.lock().map_or(None, |s| s.corrupt_line)
    }

    /// Whether the store refuses everything (a corrupt file at open, or an I/O failure since).
    pub fn is_disabled(&self) -> bool {
        self.state.lock().map_or(true, |s| s.failure.is_some())
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
        let mut keep = self.live_records(&state.index)?;
        // Deterministic file content: oldest expiry first.
        keep.sort_by(|a, b| (a.keep_until, &a.nonce).cmp(&(b.keep_until, &b.nonce)));
        let keep: Vec<Stored> = keep.into_iter().map(Stored::Text).collect();
        let log = state.log_mut(&self.path)?;
        let result = log.compact(&keep);
        let poisoned = log.is_poisoned();
        result.map_err(|e| {
            let err = io_error(&self.path, "compact", &e);
            // A failure before the rename leaves the old file whole and the log usable; a
            // failed fsync poisons the log, and then the store must stop answering.
            if poisoned {
                state.disable(&err);
            }
            err
        })
    }

    /// The file's records that `index` still holds, one per key (the latest expiry), read back
    /// for their text. Every indexed key must be found, or nothing is rewritten: a compaction
    /// must never forget a nonce. Reads only, so a failure leaves the store usable.
    fn live_records(&self, index: &Index) -> Result<Vec<NonceRecord>, NonceStoreError> {
        let failed = |message: String| NonceStoreError::Io {
            path: self.path.display().to_string(),
            operation: "compact",
            message,
        };
        let mut bytes = Vec::new();
        // A second handle to the locked file: the `flock` belongs to the log's handle, and
        // closing this one does not release it.
        let mut file = self
            .fs
            .open(&self.path)
            .map_err(|e| failed(format!("reading back the nonces: {e}")))?;
        self.fs
            .read_to_end(&mut file, &mut bytes)
            .map_err(|e| failed(format!("reading back the nonces: {e}")))?;
        drop(file);
        let mut keep = Vec::with_capacity(index.len());
        let mut taken: HashMap<NonceKey, ()> = HashMap::with_capacity(index.len());
        felhom_journal::codec::scan(&bytes, |_, line| {
            let rec: NonceRecord = serde_json::from_slice(line.rec)
                .map_err(|e| format!("record does not decode: {e}"))?;
            let key = nonce_key(&rec.nonce);
            if index.get(&key) == Some(rec.keep_until) && taken.insert(key, ()).is_none() {
                keep.push(rec);
            }
            Ok(())
        })
        .map_err(|e| failed(format!("line {} is corrupt: {}", e.line, e.reason)))?;
        if keep.len() != index.len() {
            return Err(failed(format!(
                "{} of {} held nonces are not in the file",
                index.len() - keep.len(),
                index.len()
            )));
        }
        Ok(keep)
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

    /// The log of a usable store (the caller checked `check_usable`; a corrupt store has none).
    fn log_mut(&mut self, path: &Path) -> Result<&mut Log<Stored>, NonceStoreError> {
        self.check_usable(path)?;
        self.log.as_mut().ok_or_else(|| NonceStoreError::Disabled {
            path: path.display().to_string(),
            first_failure: "the file was corrupt at open".to_owned(),
        })
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
        let key = nonce_key(nonce);
        if state.index.contains_key(&key) {
            return Ok(NonceOutcome::Seen);
        }
        let keep_until = unix_ceil(keep_until);
        let record = Stored::Text(NonceRecord {
            nonce: nonce.to_string(),
            keep_until,
        });
        if let Err(e) = state.log_mut(&self.path)?.append(&record) {
            // Whether the record reached the disk is unknown: never retried, never Fresh.
            let err = io_error(&self.path, "append", &e);
            state.disable(&err);
            return Err(err);
        }
        state.index.insert(key, keep_until);
        Ok(NonceOutcome::Fresh)
    }

    fn seen(&self, nonce: &str) -> bool {
        match self.state.lock() {
            Ok(state) => state.failure.is_some() || state.index.contains_key(&nonce_key(nonce)),
            Err(_) => true,
        }
    }

    fn prune(&self, now: OffsetDateTime) -> Result<usize, NonceStoreError> {
        let mut state = self.lock()?;
        state.check_usable(&self.path)?;
        let now = now.unix_timestamp();
        let before = state.index.len();
        state.index.retain(|keep_until| keep_until >= now);
        let removed = before - state.index.len();
        let total = usize::try_from(state.log_mut(&self.path)?.len()).unwrap_or(usize::MAX);
        let dead = total.saturating_sub(state.index.len());
        if removed > 0 && dead.saturating_mul(2) >= total {
            self.compact_locked(&mut state)?;
        }
        Ok(removed)
    }
}

/// A capacity for the replayed keys from the file's size, so a big replay does not regrow and
/// copy them (an overestimate only reserves address space). Only a hint: a missing or
/// unreadable file (the open reports real errors) gives 0.
fn record_count_hint(path: &Path) -> usize {
    // The shortest record line (one-character nonce, small numbers) is about 60 bytes.
    const MIN_LINE: u64 = 60;
    let len = std::fs::metadata(path).map_or(0, |m| m.len());
    usize::try_from(len / MIN_LINE).unwrap_or(0)
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

    /// The file's records, decoded as the public record type (the on-disk format).
    fn file_records(path: &Path) -> Vec<NonceRecord> {
        let bytes = std::fs::read(path).unwrap();
        let mut out = Vec::new();
        felhom_journal::codec::scan(&bytes, |_, line| {
            out.push(serde_json::from_slice(line.rec).map_err(|e| e.to_string())?);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn a_file_in_the_record_format_opens_and_escaped_nonces_match() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nonces.log");
        // Written with the public record type only, as an older agent wrote it.
        let mut bytes = Vec::new();
        let records = [("plain", 10), ("quo\"te\\é\u{1}", 20), ("plain", 30)];
        for (seq, (nonce, keep_until)) in records.iter().enumerate() {
            let rec = NonceRecord {
                nonce: (*nonce).to_owned(),
                keep_until: *keep_until,
            };
            felhom_journal::codec::encode_line(seq as u64 + 1, &rec, &mut bytes).unwrap();
        }
        std::fs::write(&path, &bytes).unwrap();

        let store = FileNonceStore::open(&path).unwrap();
        assert_eq!(store.len(), 2);
        assert!(store.seen("plain") && store.seen("quo\"te\\é\u{1}") && !store.seen("quote"));
        let t = datetime!(2026-01-01 00:00 UTC);
        assert_eq!(
            store.record("quo\"te\\é\u{1}", t).unwrap(),
            NonceOutcome::Seen
        );
        assert_eq!(store.record("new", t).unwrap(), NonceOutcome::Fresh);
        drop(store);
        let store = FileNonceStore::open(&path).unwrap();
        assert_eq!(store.len(), 3);
        assert!(store.seen("new") && store.seen("plain"));
    }

    #[test]
    fn compaction_reads_the_texts_back_keeping_the_latest_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nonces.log");
        let mut bytes = Vec::new();
        let records = [("b", 50), ("a", 40), ("b", 70), ("c", 40), ("b", 60)];
        for (seq, (nonce, keep_until)) in records.iter().enumerate() {
            let rec = NonceRecord {
                nonce: (*nonce).to_owned(),
                keep_until: *keep_until,
            };
            felhom_journal::codec::encode_line(seq as u64 + 1, &rec, &mut bytes).unwrap();
        }
        std::fs::write(&path, &bytes).unwrap();

        let store = FileNonceStore::open(&path).unwrap();
        store.compact().unwrap();
        let got: Vec<(String, i64)> = file_records(&path)
            .into_iter()
            .map(|r| (r.nonce, r.keep_until))
            .collect();
        let want = [("a", 40), ("c", 40), ("b", 70)].map(|(n, k)| (n.to_owned(), k));
        assert_eq!(
            got, want,
            "one record per nonce, latest expiry, oldest first"
        );
        // Pruning by the kept expiry, not an older duplicate's.
        assert_eq!(
            store
                .prune(OffsetDateTime::from_unix_timestamp(65).unwrap())
                .unwrap(),
            2
        );
        assert!(store.seen("b") && !store.seen("a"));
        drop(store);
        let store = FileNonceStore::open(&path).unwrap();
        assert_eq!(store.len(), 1);
        assert!(store.seen("b"));
    }

    #[test]
    fn a_compaction_that_cannot_find_a_held_nonce_rewrites_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nonces.log");
        let t = datetime!(2026-01-01 00:00 UTC);
        let store = FileNonceStore::open(&path).unwrap();
        store.record("a", t).unwrap();
        let before = std::fs::read(&path).unwrap();
        // A key the file does not hold (cannot happen through the API): refusing beats
        // writing a file that forgets it.
        store
            .state
            .lock()
            .unwrap()
            .index
            .insert(nonce_key("ghost"), 0);
        let err = store.compact().unwrap_err();
        assert!(
            matches!(&err, NonceStoreError::Io { operation: "compact", message, .. }
                if message.contains("1 of 2 held nonces are not in the file")),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before, "file untouched");
        assert_eq!(
            store.record("b", t).unwrap(),
            NonceOutcome::Fresh,
            "still usable"
        );
    }

    #[test]
    fn a_key_collision_reads_as_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nonces.log");
        let t = datetime!(2026-01-01 00:00 UTC);
        let store = FileNonceStore::open(&path).unwrap();
        // No SHA-256 prefix collision is known, so plant what one would leave behind: the
        // index holding "victim"'s key for some other nonce.
        store
            .state
            .lock()
            .unwrap()
            .index
            .insert(nonce_key("victim"), unix_ceil(t));
        assert!(store.seen("victim"));
        assert_eq!(store.record("victim", t).unwrap(), NonceOutcome::Seen);
        assert!(std::fs::read(&path).unwrap().is_empty(), "nothing appended");
    }

    #[test]
    fn keys_are_the_sha256_prefix_and_replayed_records_cannot_be_written() {
        let key = nonce_key("abc");
        // SHA-256("abc") = ba7816bf 8f01cfea 414140de 5dae2223 ...
        assert_eq!(hex::encode(key), "ba7816bf8f01cfea414140de5dae2223");
        let replayed = Stored::Key { key, keep_until: 1 };
        assert!(serde_json::to_vec(&replayed).is_err());
        let stored: Stored = serde_json::from_str(r#"{"nonce":"abc","keep_until":7}"#).unwrap();
        assert!(matches!(stored, Stored::Key { key: k, keep_until: 7 } if k == key));
        // The record format's checks hold on replay too.
        for bad in [
            r#"{"nonce":"abc","keep_until":7,"extra":1}"#,
            r#"{"nonce":"abc"}"#,
            r#"{"nonce":3,"keep_until":7}"#,
        ] {
            assert!(serde_json::from_str::<Stored>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_replayed_index_is_sorted_unique_and_answers_with_the_recorded_keys() {
        let k = |n: &str| nonce_key(n);
        let mut index = Index::from_replay(vec![
            (k("b"), 5),
            (k("a"), 9),
            (k("b"), 7),
            (k("c"), 1),
            (k("b"), 6),
        ]);
        assert_eq!(index.len(), 3);
        assert!(index.replayed.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(
            index.get(&k("b")),
            Some(7),
            "the latest expiry of a repeated key"
        );
        assert_eq!(index.get(&k("d")), None);
        index.insert(k("d"), 3);
        assert_eq!((index.get(&k("d")), index.len()), (Some(3), 4));
        index.retain(|keep_until| keep_until >= 4);
        assert_eq!(index.len(), 2);
        assert!(index.contains_key(&k("a")) && index.contains_key(&k("b")));
        assert!(!index.contains_key(&k("c")) && !index.contains_key(&k("d")));
    }
}
