//! The audit of the reversibility gate: every decision (allowed, refused, pending) and every
//! signed op's outcome, as a [`felhom_hub_proto::AuditEntry`].
//!
//! The audit is a signal, never the guard: the gate decides first and records after, a sink's
//! error is logged and dropped, so a failing sink can neither turn a refusal into an allow nor
//! hold back a benign action.
//!
//! Sinks: [`TracingAudit`] (the log), [`LogAudit`] (durable and bounded on the journal's
//! [`Log`], whose latest entries fill the host report's `audit_tail`), [`MemoryAudit`] (tests,
//! previews) and [`Tee`] to feed several.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use felhom_hub_proto::{AuditEntry, Timestamp};
use felhom_journal::{JournalError, Log};

/// Entries the host report carries by default.
pub const AUDIT_TAIL_LEN: usize = 64;

/// Where gate decisions are recorded.
pub trait AuditSink: Send + Sync + 'static {
    /// Records one entry. May block (a durable sink fsyncs): call it off the async workers.
    fn record(&self, entry: &AuditEntry) -> Result<(), AuditError>;
}

/// A sink that could not record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The durable audit log failed (it is poisoned after a failed write: reopen it).
    #[error("audit log: {0}")]
    Log(#[from] JournalError),
}

/// Records `entry` in `sink`; an error is logged, never returned (the audit is not the guard).
pub fn record(sink: &dyn AuditSink, entry: &AuditEntry) {
    if let Err(error) = sink.record(entry) {
        tracing::error!(%error, action = %entry.action, decision = %entry.decision, "audit entry not recorded");
    }
}

/// [`record`] off the async workers (a durable sink fsyncs).
pub async fn record_async(sink: Arc<dyn AuditSink>, entry: AuditEntry) {
    let joined = tokio::task::spawn_blocking(move || record(&*sink, &entry)).await;
    if let Err(error) = joined {
        tracing::error!(%error, "audit write task did not complete");
    }
}

/// Logs each entry through `tracing` (warn for refusals and unknown outcomes).
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingAudit;

impl AuditSink for TracingAudit {
    fn record(&self, e: &AuditEntry) -> Result<(), AuditError> {
        let quiet = matches!(e.decision.as_str(), "allowed" | "executed");
        if quiet {
            tracing::info!(
                target: "felhom::audit",
                action = %e.action, vmid = ?e.vmid, class = %e.class, decision = %e.decision,
                reason = ?e.reason, key_id = ?e.key_id, nonce = ?e.nonce, "gate"
            );
        } else {
            tracing::warn!(
                target: "felhom::audit",
                action = %e.action, vmid = ?e.vmid, class = %e.class, decision = %e.decision,
                reason = ?e.reason, detail = ?e.detail, key_id = ?e.key_id, nonce = ?e.nonce,
                "gate"
            );
        }
        Ok(())
    }
}

/// Keeps every entry in memory.
#[derive(Debug, Default)]
pub struct MemoryAudit(Mutex<Vec<AuditEntry>>);

impl MemoryAudit {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every entry so far.
    pub fn entries(&self) -> Vec<AuditEntry> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl AuditSink for MemoryAudit {
    fn record(&self, entry: &AuditEntry) -> Result<(), AuditError> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry.clone());
        Ok(())
    }
}

/// Feeds every sink; the first error is returned after all were tried.
#[allow(missing_debug_implementations)] // trait objects without Debug
pub struct Tee(pub Vec<Arc<dyn AuditSink>>);

impl AuditSink for Tee {
    fn record(&self, entry: &AuditEntry) -> Result<(), AuditError> {
        let mut first = None;
        for sink in &self.0 {
            if let Err(e) = sink.record(entry) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// Whether an entry belongs in the durable tail: everything but plain benign allows (a start
/// or resize each pass would push out what the hub must see — signed-op outcomes, refusals,
/// pending destructive intent). Those go to the log through [`TracingAudit`].
pub fn is_notable(entry: &AuditEntry) -> bool {
    !(entry.class == "benign" && entry.reason.is_none() && entry.decision == "allowed")
}

/// The durable audit log: notable entries ([`is_notable`]) appended (fsync'd) to a journal
/// [`Log`], bounded to the latest `keep` (compacted atomically when it reaches twice that).
///
/// What is not appended again, so that intent the hub keeps serving cannot push out what it
/// must see:
/// - an entry without a nonce repeating the latest nonce-less decision on the same action and
///   guest (a delta held pending every pass, whatever signed ops were decided in between);
/// - an entry carrying a nonce (a signed op's decision) when the tail already holds the same
///   decision for that nonce, wherever it is: a signed op the hub serves on every report gets
///   one entry per distinct decision (e.g. `executed`, then `refused`/`already_applied` once),
///   not one per serve, even when several ops interleave.
///
/// So each op costs the tail at most a few entries, the hub reads every op's outcome by its
/// nonce and retires it; an entry that scrolled out of the tail may be appended once more if
/// the hub still serves its op (which then tells the hub again what it has not acted on).
/// Its [`LogAudit::tail`] fills the host report's `audit_tail`.
#[derive(Debug)]
pub struct LogAudit {
    inner: Mutex<LogAuditInner>,
    keep: usize,
}

#[derive(Debug)]
struct LogAuditInner {
    log: Log<AuditEntry>,
    tail: VecDeque<AuditEntry>,
}

impl LogAudit {
    /// Opens (creating if absent) the audit log at `path`, keeping the latest `keep` entries
    /// (at least one). A torn trailing record is dropped and logged, like every journal file.
    pub fn open(path: impl AsRef<Path>, keep: usize) -> Result<Self, AuditError> {
        let keep = keep.max(1);
        let opened = Log::<AuditEntry>::open(path)?;
        if let Some(torn) = &opened.repaired {
            tracing::warn!(
                line = torn.line,
                "audit log: dropped a torn trailing record"
            );
        }
        let skip = opened.records.len().saturating_sub(keep);
        let tail: VecDeque<AuditEntry> = opened.records.into_iter().skip(skip).collect();
        Ok(Self {
            inner: Mutex::new(LogAuditInner {
                log: opened.log,
                tail,
            }),
            keep,
        })
    }

    /// The latest `n` entries, oldest first.
    pub fn tail(&self, n: usize) -> Vec<AuditEntry> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let skip = inner.tail.len().saturating_sub(n);
        inner.tail.iter().skip(skip).cloned().collect()
    }
}

impl AuditSink for LogAudit {
    fn record(&self, entry: &AuditEntry) -> Result<(), AuditError> {
        if !is_notable(entry) {
            return Ok(());
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        // The same decision again for the same action (a delta held pending each pass): the
        // tail already says it, and repeating it would push out what the hub must see.
        let same_target = |e: &&AuditEntry| e.action == entry.action && e.vmid == entry.vmid;
        let repeated = match &entry.nonce {
            // A signed op's decision: once per nonce and decision in the whole tail.
            Some(_) => inner
                .tail
                .iter()
                .filter(same_target)
                .any(|e| same_decision(e, entry)),
            // An unsigned decision (a delta held each pass): against the latest unsigned one
            // on the same target, so signed ops' entries in between do not re-open it.
            None => inner
                .tail
                .iter()
                .rev()
                .filter(same_target)
                .find(|e| e.nonce.is_none())
                .is_some_and(|e| same_decision(e, entry)),
        };
        if repeated {
            return Ok(());
        }
        inner.log.append(entry)?;
        inner.tail.push_back(entry.clone());
        while inner.tail.len() > self.keep {
            inner.tail.pop_front();
        }
        if inner.log.len() >= 2 * self.keep as u64 {
            let keep: Vec<AuditEntry> = inner.tail.iter().cloned().collect();
            inner.log.compact(&keep)?;
        }
        Ok(())
    }
}

fn same_decision(a: &AuditEntry, b: &AuditEntry) -> bool {
    (
        &a.class,
        &a.decision,
        &a.reason,
        &a.detail,
        &a.key_id,
        &a.nonce,
    ) == (
        &b.class,
        &b.decision,
        &b.reason,
        &b.detail,
        &b.key_id,
        &b.nonce,
    )
}

/// An entry's fields, built by the gate and the signed-job runner.
#[derive(Debug, Clone)]
pub(crate) struct EntryBuilder {
    pub(crate) at: u64,
    pub(crate) action: String,
    pub(crate) vmid: Option<u32>,
    pub(crate) class: &'static str,
}

impl EntryBuilder {
    pub(crate) fn entry(
        &self,
        decision: &str,
        reason: Option<&str>,
        detail: Option<String>,
        key_id: Option<String>,
        nonce: Option<String>,
    ) -> AuditEntry {
        AuditEntry {
            at: Timestamp::from_unix_seconds(self.at),
            action: self.action.clone(),
            vmid: self.vmid,
            class: self.class.to_owned(),
            decision: decision.to_owned(),
            reason: reason.map(str::to_owned),
            detail,
            key_id,
            nonce,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64, class: &str, reason: Option<&str>) -> AuditEntry {
        EntryBuilder {
            at: n,
            action: "destroy_guest".into(),
            vmid: Some(105),
            class: if class == "benign" {
                "benign"
            } else {
                "destructive"
            },
        }
        .entry("refused", reason, None, None, Some(format!("n{n}")))
    }

    #[test]
    fn signed_ops_served_again_and_again_add_one_entry_per_nonce_and_decision() {
        let dir = tempfile::tempdir().unwrap();
        let audit = LogAudit::open(dir.path().join("audit.log"), 8).unwrap();
        let decided = |n: u64, nonce: &str, decision: &str, reason: Option<&str>| {
            let mut e = entry(n, "destructive", reason);
            e.decision = decision.into();
            e.nonce = Some(nonce.into());
            e
        };
        // Two ops on one guest, interleaved on every serve (the same-action rule alone would
        // append each one every time), plus one pending delta without a nonce.
        audit.record(&decided(1, "a", "executed", None)).unwrap();
        for n in 2..40 {
            let mut pending = entry(n, "destructive", Some("pending_signature"));
            pending.decision = "pending_signature".into();
            pending.nonce = None;
            audit.record(&pending).unwrap();
            audit
                .record(&decided(n, "a", "refused", Some("already_applied")))
                .unwrap();
            audit
                .record(&decided(n, "b", "refused", Some("bad_signature")))
                .unwrap();
        }
        let tail = audit.tail(8);
        let seen: Vec<(Option<String>, String)> = tail
            .iter()
            .map(|e| (e.nonce.clone(), e.decision.clone()))
            .collect();
        assert_eq!(
            seen,
            [
                (Some("a".into()), "executed".into()),
                (None, "pending_signature".into()),
                (Some("a".into()), "refused".into()),
                (Some("b".into()), "refused".into()),
            ]
        );
        // the first time each was decided is what stays
        assert_eq!(
            tail.iter().map(|e| e.at.to_string()).collect::<Vec<_>>()[1..],
            [2, 2, 2].map(|n| Timestamp::from_unix_seconds(n).to_string())
        );
    }

    #[test]
    fn the_durable_log_is_bounded_survives_reopen_and_skips_plain_benign_allows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let audit = LogAudit::open(&path, 3).unwrap();
        for n in 0..10 {
            audit
                .record(&entry(n, "destructive", Some("replay")))
                .unwrap();
        }
        // the same decision again is not repeated
        audit
            .record(&entry(9, "destructive", Some("replay")))
            .unwrap();
        let mut benign = entry(99, "benign", None);
        benign.decision = "allowed".into();
        audit.record(&benign).unwrap();
        let nonces =
            |v: Vec<AuditEntry>| -> Vec<String> { v.into_iter().filter_map(|e| e.nonce).collect() };
        assert_eq!(nonces(audit.tail(10)), ["n7", "n8", "n9"]);
        drop(audit);
        let reopened = LogAudit::open(&path, 3).unwrap();
        assert_eq!(nonces(reopened.tail(2)), ["n8", "n9"]);
        // compaction kept the file bounded: fewer than 2 × keep records on disk
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines < 6, "{lines} lines");
    }
}
