//! Nonce stores: the one piece of I/O in the verifier. The trait, its error, and the in-memory
//! store for tests and tools that must not touch disk.

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;

/// What recording a nonce found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceOutcome {
    /// Not seen before; now recorded (durably, for a durable store).
    Fresh,
    /// Recorded by an earlier op: a replay.
    Seen,
}

/// A nonce store failed; the verifier treats this as "seen" (fails safe: nothing runs).
///
/// Not retried: after an I/O error a durable store refuses every nonce until it is reopened,
/// because a failed fsync may have lost data the kernel already reported written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NonceStoreError {
    /// Opening, replaying, appending to or compacting the store's file failed.
    #[error("nonce store {path}: {operation} failed: {message}")]
    Io {
        /// The store's file.
        path: String,
        /// What was being done (`open`, `append`, `compact`).
        operation: &'static str,
        /// The underlying error, as text (journal errors are not `Clone`).
        message: String,
    },
    /// An earlier I/O error disabled the store; reopen it (restart the agent) to recover.
    #[error("nonce store {path}: disabled after an earlier failure ({first_failure}), reopen it")]
    Disabled {
        /// The store's file.
        path: String,
        /// The failure that disabled it.
        first_failure: String,
    },
    /// The in-memory store's lock was poisoned by a panic.
    #[error("nonce store: lock poisoned by an earlier panic")]
    Poisoned,
}

/// Where used nonces are kept, so an op verified once is refused ever after.
///
/// Contract: `record` returns [`NonceOutcome::Fresh`] only once per nonce, and — for a durable
/// store — only after the nonce is on stable storage. Any doubt is an error, never `Fresh`.
pub trait NonceStore: Send + Sync {
    /// Records `nonce` unless present. `keep_until` is when the entry may be pruned: the
    /// verifier passes `not_after` plus its skew tolerance, after which the time window alone
    /// refuses the op.
    fn record(
        &self,
        nonce: &str,
        keep_until: OffsetDateTime,
    ) -> Result<NonceOutcome, NonceStoreError>;

    /// Whether `nonce` was recorded. A store that cannot tell answers `true` (fails safe).
    fn seen(&self, nonce: &str) -> bool;

    /// Drops entries whose `keep_until` is before `now`; returns how many were dropped.
    fn prune(&self, now: OffsetDateTime) -> Result<usize, NonceStoreError>;
}

/// A store in memory: replay protection for one process lifetime. For tests and dry runs; the
/// daemon uses [`crate::FileNonceStore`] so protection survives restarts.
#[derive(Debug, Default)]
pub struct MemoryNonceStore {
    entries: Mutex<HashMap<String, OffsetDateTime>>,
}

impl MemoryNonceStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many nonces are held.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// Whether no nonce is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds an entry as loaded from elsewhere (a snapshot of the file store).
    pub(crate) fn insert(&self, nonce: String, keep_until: OffsetDateTime) {
        if let Ok(mut entries) = self.entries.lock() {
            let entry = entries.entry(nonce).or_insert(keep_until);
            *entry = (*entry).max(keep_until);
        }
    }
}

impl NonceStore for MemoryNonceStore {
    fn record(
        &self,
        nonce: &str,
        keep_until: OffsetDateTime,
    ) -> Result<NonceOutcome, NonceStoreError> {
        let mut entries = self.entries.lock().map_err(|_| NonceStoreError::Poisoned)?;
        if entries.contains_key(nonce) {
            return Ok(NonceOutcome::Seen);
        }
        entries.insert(nonce.to_string(), keep_until);
        Ok(NonceOutcome::Fresh)
    }

    fn seen(&self, nonce: &str) -> bool {
        self.entries
            .lock()
            .map(|e| e.contains_key(nonce))
            .unwrap_or(true)
    }

    fn prune(&self, now: OffsetDateTime) -> Result<usize, NonceStoreError> {
        let mut entries = self.entries.lock().map_err(|_| NonceStoreError::Poisoned)?;
        let before = entries.len();
        entries.retain(|_, keep_until| *keep_until >= now);
        Ok(before - entries.len())
    }
}

impl<S: NonceStore + ?Sized> NonceStore for std::sync::Arc<S> {
    fn record(
        &self,
        nonce: &str,
        keep_until: OffsetDateTime,
    ) -> Result<NonceOutcome, NonceStoreError> {
        (**self).record(nonce, keep_until)
    }

    fn seen(&self, nonce: &str) -> bool {
        (**self).seen(nonce)
    }

    fn prune(&self, now: OffsetDateTime) -> Result<usize, NonceStoreError> {
        (**self).prune(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn records_once_then_reports_seen() {
        let store = MemoryNonceStore::new();
        let t = datetime!(2026-01-01 00:00 UTC);
        assert_eq!(store.record("n1", t).unwrap(), NonceOutcome::Fresh);
        assert_eq!(store.record("n1", t).unwrap(), NonceOutcome::Seen);
        assert!(store.seen("n1"));
        assert!(!store.seen("n2"));
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn prunes_only_expired_entries() {
        let store = MemoryNonceStore::new();
        let t = datetime!(2026-01-01 00:00 UTC);
        store.record("old", t).unwrap();
        store.record("new", t + time::Duration::hours(1)).unwrap();
        assert_eq!(
            store.prune(t).unwrap(),
            0,
            "keep_until itself is still kept"
        );
        assert_eq!(store.prune(t + time::Duration::minutes(1)).unwrap(), 1);
        assert!(!store.seen("old"));
        assert!(store.seen("new"));
    }
}
