//! The op journal and idempotency store: each op's lifecycle on a `Log<OpRecord>`.
//!
//! An op moves `Started → TaskRunning(upid) → Succeeded | Failed`; every transition is one
//! durable record carrying the op's whole identity (id, guest, action, key), so the latest
//! record of an op says everything about it and compaction can keep just that one.
//! `in_flight()` lists ops whose latest state is not terminal: what a crash interrupted.
//!
//! Idempotency: an op may carry a key (one-shot, operator-signed work). A key is *applied* once
//! an op with it succeeded, *in flight* while one is running, and unknown otherwise: a failed
//! op's key is not applied and may run again. Starting an op whose key is applied or in flight
//! is refused, so a one-shot op never runs twice across retries and restarts. Reconcile
//! actions carry no key: they are convergent and must re-run on real drift.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::JournalError;
use crate::fs::{FileSystem, RealFs};
use crate::log::{Log, TornTail};

/// How long [`OpJournal::compact_expired`] keeps the lifecycle of a finished op by default:
/// long enough to answer "what happened to op X" for a week of incidents, short enough that a
/// host reconciling for years holds only recent history. Applied idempotency keys are not
/// subject to it (see [`OpJournal::compact_pruning`]).
pub const DEFAULT_RETENTION_SECS: u64 = 7 * 24 * 3600;

/// The journal size past which [`OpJournal::needs_compaction`] says to compact by default:
/// about 20 000 records, replayed in milliseconds; a rewrite of it costs one fsync'd write.
pub const DEFAULT_COMPACT_THRESHOLD_BYTES: u64 = 4 << 20;

/// What one compaction did, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// Ops known before.
    pub ops_before: usize,
    /// Ops kept.
    pub ops_after: usize,
    /// File size before, in bytes.
    pub bytes_before: u64,
    /// File size after, in bytes.
    pub bytes_after: u64,
}

/// Longest accepted op id, idempotency key, action or upid, in bytes: these are identifiers,
/// and a bound keeps one bad caller from bloating every record.
const MAX_ID_LEN: usize = 512;

/// Unique id of one op.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpId(String);

impl OpId {
    /// An op id from the caller (e.g. the hub's job id): non-empty, at most 512 bytes, no
    /// control characters.
    pub fn new(id: impl Into<String>) -> Result<Self, OpError> {
        let id = id.into();
        check_ident("op_id", &id)?;
        Ok(OpId(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an op is in its lifecycle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OpState {
    /// Recorded before anything was sent to Proxmox.
    Started,
    /// Proxmox accepted it and runs it as this task.
    TaskRunning {
        /// The Proxmox task id.
        upid: String,
    },
    /// Finished successfully (terminal).
    Succeeded,
    /// Finished unsuccessfully (terminal).
    Failed {
        /// What went wrong.
        error: String,
    },
}

impl OpState {
    /// Whether no further transition is allowed.
    pub fn is_terminal(&self) -> bool {
        matches!(self, OpState::Succeeded | OpState::Failed { .. })
    }

    /// Short lowercase name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            OpState::Started => "started",
            OpState::TaskRunning { .. } => "task_running",
            OpState::Succeeded => "succeeded",
            OpState::Failed { .. } => "failed",
        }
    }
}

/// One durable record of the op journal: an op's full identity plus its new state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRecord {
    /// The op.
    pub op_id: OpId,
    /// The guest it acts on, or `None` for a host-level op.
    pub vmid: Option<u32>,
    /// What it does (e.g. `start`, `destroy_guest`).
    pub action: String,
    /// Idempotency key of a one-shot op; `None` for convergent reconcile actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The state this record moves the op to.
    pub state: OpState,
    /// When, in unix seconds.
    pub at: u64,
}

/// An op as the journal knows it now (its latest record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpEntry {
    /// The op.
    pub op_id: OpId,
    /// The guest it acts on, or `None` for a host-level op.
    pub vmid: Option<u32>,
    /// What it does.
    pub action: String,
    /// Idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// Latest state.
    pub state: OpState,
    /// When the latest state was recorded, in unix seconds.
    pub at: u64,
}

impl From<OpRecord> for OpEntry {
    fn from(r: OpRecord) -> Self {
        OpEntry {
            op_id: r.op_id,
            vmid: r.vmid,
            action: r.action,
            idempotency_key: r.idempotency_key,
            state: r.state,
            at: r.at,
        }
    }
}

impl OpEntry {
    fn to_record(&self) -> OpRecord {
        OpRecord {
            op_id: self.op_id.clone(),
            vmid: self.vmid,
            action: self.action.clone(),
            idempotency_key: self.idempotency_key.clone(),
            state: self.state.clone(),
            at: self.at,
        }
    }
}

/// What the idempotency store knows of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// No op with this key succeeded or is running: it may be started.
    Unknown,
    /// An op with this key is running (or was interrupted): do not start a duplicate; find out
    /// how that one ended first.
    InFlight(OpId),
    /// An op with this key succeeded: never run it again.
    Applied(OpId),
}

/// Errors of the op journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    /// The underlying log failed; see [`JournalError`] for whether retrying is safe (after a
    /// failed write or fsync it is not: reopen the journal).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// No op with this id is in the journal. Not retryable.
    #[error("op journal: unknown op {op_id}")]
    UnknownOp {
        /// The id asked for.
        op_id: OpId,
    },
    /// The op already ended; its state cannot change. Not retryable.
    #[error("op journal: op {op_id} already {state}, cannot move it to {to}")]
    Finished {
        /// The op.
        op_id: OpId,
        /// Its terminal state.
        state: &'static str,
        /// The refused transition.
        to: &'static str,
    },
    /// An op with this id already exists. Not retryable with the same id.
    #[error("op journal: op {op_id} already exists")]
    DuplicateOp {
        /// The id.
        op_id: OpId,
    },
    /// The idempotency key is already applied or in flight: starting would run it twice.
    /// Retry only after the in-flight op ended in failure.
    #[error("op journal: idempotency key {key} is {}", describe_key(state))]
    KeyInUse {
        /// The key.
        key: String,
        /// Its state (never `Unknown`).
        state: KeyState,
    },
    /// An argument is not acceptable (empty, too long, control characters).
    #[error("op journal: {field}: {reason}")]
    Invalid {
        /// The argument.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

fn describe_key(state: &KeyState) -> String {
    match state {
        KeyState::Unknown => "unknown".to_owned(),
        KeyState::InFlight(id) => format!("in flight as op {id}"),
        KeyState::Applied(id) => format!("already applied by op {id}"),
    }
}

fn check_ident(field: &'static str, value: &str) -> Result<(), OpError> {
    let reason = if value.is_empty() {
        "must not be empty".to_owned()
    } else if value.len() > MAX_ID_LEN {
        format!("must be at most {MAX_ID_LEN} bytes, got {}", value.len())
    } else if value.chars().any(char::is_control) {
        "must not contain control characters".to_owned()
    } else {
        return Ok(());
    };
    Err(OpError::Invalid { field, reason })
}

/// The in-memory view of the journal, rebuilt from records (pure: no I/O).
#[derive(Debug, Default, Clone)]
struct Index {
    /// Ops in order of first appearance (stable order for `in_flight`).
    entries: Vec<OpEntry>,
    by_id: HashMap<OpId, usize>,
    /// Entry positions of the ops carrying each key.
    by_key: HashMap<String, Vec<usize>>,
}

impl Index {
    /// Applies one record: latest wins for everything about the op.
    fn apply(&mut self, rec: OpRecord) {
        match self.by_id.get(&rec.op_id) {
            Some(&i) => {
                let old_key = self.entries[i].idempotency_key.take();
                if old_key != rec.idempotency_key {
                    if let Some(k) = old_key {
                        if let Some(v) = self.by_key.get_mut(&k) {
                            v.retain(|&j| j != i);
                        }
                    }
                    if let Some(k) = &rec.idempotency_key {
                        self.by_key.entry(k.clone()).or_default().push(i);
                    }
                }
                self.entries[i] = rec.into();
            }
            None => {
                let i = self.entries.len();
                self.by_id.insert(rec.op_id.clone(), i);
                if let Some(k) = &rec.idempotency_key {
                    self.by_key.entry(k.clone()).or_default().push(i);
                }
                self.entries.push(rec.into());
            }
        }
    }

    fn get(&self, id: &OpId) -> Option<&OpEntry> {
        self.by_id.get(id).map(|&i| &self.entries[i])
    }

    fn last_with_key(&self, key: &str) -> Option<&OpEntry> {
        let i = *self.by_key.get(key)?.last()?;
        self.entries.get(i)
    }

    fn key_state(&self, key: &str) -> KeyState {
        let Some(ops) = self.by_key.get(key) else {
            return KeyState::Unknown;
        };
        let mut in_flight = None;
        for &i in ops {
            let e = &self.entries[i];
            match e.state {
                OpState::Succeeded => return KeyState::Applied(e.op_id.clone()),
                OpState::Failed { .. } => {}
                OpState::Started | OpState::TaskRunning { .. } => {
                    in_flight = Some(e.op_id.clone());
                }
            }
        }
        in_flight.map_or(KeyState::Unknown, KeyState::InFlight)
    }

    /// Whether compaction that prunes ops finished before `cutoff` keeps this entry.
    fn keeps(e: &OpEntry, finished_before: Option<u64>) -> bool {
        match finished_before {
            None => true,
            Some(cutoff) => {
                !e.state.is_terminal()
                    || e.at >= cutoff
                    // An applied key is forever: dropping it would let the op run again.
                    || (e.state == OpState::Succeeded && e.idempotency_key.is_some())
            }
        }
    }
}

/// The ops whose latest record is not terminal, in start order, from records in file order:
/// what [`OpJournal::in_flight`] answers, for records read offline (an inspection).
pub fn in_flight_of<'a>(records: impl IntoIterator<Item = &'a OpRecord>) -> Vec<OpEntry> {
    let mut index = Index::default();
    for rec in records {
        index.apply(rec.clone());
    }
    index
        .entries
        .into_iter()
        .filter(|e| !e.state.is_terminal())
        .collect()
}

/// The op journal over a [`Log<OpRecord>`], with the idempotency store on the same records.
#[derive(Debug)]
pub struct OpJournal {
    log: Log<OpRecord>,
    index: Index,
    /// Suffix for generated op ids; bumped until the id is new.
    counter: u64,
}

impl OpJournal {
    /// Opens (creating if absent) the op journal at `path` and replays it. Returns the torn
    /// tail dropped on open, if any (at most the one transition a crash interrupted).
    pub fn open(path: impl AsRef<Path>) -> Result<(OpJournal, Option<TornTail>), JournalError> {
        Self::open_with(path, Arc::new(RealFs))
    }

    /// [`OpJournal::open`] through the given file system.
    pub fn open_with(
        path: impl AsRef<Path>,
        fs: Arc<dyn FileSystem>,
    ) -> Result<(OpJournal, Option<TornTail>), JournalError> {
        let mut index = Index::default();
        let (log, torn) = Log::open_visit(path, fs, |rec| index.apply(rec))?;
        let counter = index.entries.len() as u64;
        Ok((
            OpJournal {
                log,
                index,
                counter,
            },
            torn,
        ))
    }

    /// Records a new op as started, with a generated id (`<now>-<n>`), and returns the id.
    /// Refused if `idempotency_key` is already applied or in flight.
    pub fn started(
        &mut self,
        vmid: Option<u32>,
        action: &str,
        idempotency_key: Option<String>,
        now: u64,
    ) -> Result<OpId, OpError> {
        let id = loop {
            self.counter += 1;
            let id = OpId(format!("{now}-{}", self.counter));
            if self.index.get(&id).is_none() {
                break id;
            }
        };
        self.started_with_id(id.clone(), vmid, action, idempotency_key, now)?;
        Ok(id)
    }

    /// Records a new op as started under a caller-chosen id.
    pub fn started_with_id(
        &mut self,
        op_id: OpId,
        vmid: Option<u32>,
        action: &str,
        idempotency_key: Option<String>,
        now: u64,
    ) -> Result<(), OpError> {
        check_ident("action", action)?;
        if let Some(k) = &idempotency_key {
            check_ident("idempotency_key", k)?;
            match self.index.key_state(k) {
                KeyState::Unknown => {}
                state => {
                    return Err(OpError::KeyInUse {
                        key: k.clone(),
                        state,
                    })
                }
            }
        }
        if self.index.get(&op_id).is_some() {
            return Err(OpError::DuplicateOp { op_id });
        }
        self.record(OpRecord {
            op_id,
            vmid,
            action: action.to_owned(),
            idempotency_key,
            state: OpState::Started,
            at: now,
        })
    }

    /// Records that Proxmox runs the op as task `upid`.
    pub fn task_running(&mut self, op_id: &OpId, upid: &str, now: u64) -> Result<(), OpError> {
        check_ident("upid", upid)?;
        self.transition(
            op_id,
            OpState::TaskRunning {
                upid: upid.to_owned(),
            },
            now,
        )
    }

    /// Records that the op succeeded (its key, if any, is now applied).
    pub fn succeeded(&mut self, op_id: &OpId, now: u64) -> Result<(), OpError> {
        self.transition(op_id, OpState::Succeeded, now)
    }

    /// Records that the op failed (its key, if any, is free again).
    pub fn failed(&mut self, op_id: &OpId, error: &str, now: u64) -> Result<(), OpError> {
        self.transition(
            op_id,
            OpState::Failed {
                error: error.to_owned(),
            },
            now,
        )
    }

    /// Ops whose latest state is not terminal, in the order they were started.
    pub fn in_flight(&self) -> Vec<OpEntry> {
        self.index
            .entries
            .iter()
            .filter(|e| !e.state.is_terminal())
            .cloned()
            .collect()
    }

    /// Every op the journal knows (terminal or not), each at its latest state, in the order
    /// they were started: what a reader of provenance (which guests the agent itself created)
    /// walks. No I/O.
    pub fn entries(&self) -> impl Iterator<Item = &OpEntry> + '_ {
        self.index.entries.iter()
    }

    /// The op's latest state.
    pub fn get(&self, op_id: &OpId) -> Option<OpEntry> {
        self.index.get(op_id).cloned()
    }

    /// The latest op carrying `key` (the last one started with it), whatever its state: tells
    /// how the key's most recent use ended, e.g. that it failed before anything was sent.
    pub fn last_with_key(&self, key: &str) -> Option<&OpEntry> {
        self.index.last_with_key(key)
    }

    /// Whether an op with this idempotency key succeeded.
    pub fn already_applied(&self, key: &str) -> bool {
        matches!(self.index.key_state(key), KeyState::Applied(_))
    }

    /// What the idempotency store knows of `key`.
    pub fn key_state(&self, key: &str) -> KeyState {
        self.index.key_state(key)
    }

    /// Number of ops known (every op, terminal or not).
    pub fn len(&self) -> usize {
        self.index.entries.len()
    }

    /// Whether no op is known.
    pub fn is_empty(&self) -> bool {
        self.index.entries.is_empty()
    }

    /// The underlying log's file.
    pub fn path(&self) -> &Path {
        self.log.path()
    }

    /// Rewrites the file with the latest record of every op (applied keys included).
    pub fn compact(&mut self) -> Result<(), OpError> {
        self.compact_inner(None)
    }

    /// Like [`compact`](Self::compact), and also forgets ops that ended before
    /// `finished_before` (unix seconds), except succeeded ops with a key: an applied key is
    /// kept forever.
    ///
    /// Why forever: a key guards a one-shot op (a signed destroy, a restore) against running
    /// twice, and the same signed op may be re-delivered for as long as its signature is valid
    /// — and the journal cannot know the longest validity window any signer will use. One
    /// record per applied key (a few hundred bytes) is cheap; a one-shot op run twice is not.
    /// In-flight ops are always kept (crash recovery needs them); a failed op's key is free
    /// anyway, so its record goes with the retention like any other finished op.
    pub fn compact_pruning(&mut self, finished_before: u64) -> Result<(), OpError> {
        self.compact_inner(Some(finished_before))
    }

    /// The daemon's compaction: [`compact_pruning`](Self::compact_pruning) of ops that ended
    /// more than `retention_secs` before `now`, through the log's atomic rewrite (temp file,
    /// fsync, rename, directory fsync; a crash at any point leaves the old or the new file,
    /// both valid). Call it at startup and whenever [`needs_compaction`](Self::needs_compaction).
    pub fn compact_expired(
        &mut self,
        now: u64,
        retention_secs: u64,
    ) -> Result<Compaction, OpError> {
        let ops_before = self.len();
        let bytes_before = self.log.file_len()?;
        self.compact_pruning(now.saturating_sub(retention_secs))?;
        Ok(Compaction {
            ops_before,
            ops_after: self.len(),
            bytes_before,
            bytes_after: self.log.file_len()?,
        })
    }

    /// Whether the file has grown past `threshold_bytes`, so that
    /// [`compact_expired`](Self::compact_expired) is worth its rewrite.
    pub fn needs_compaction(&self, threshold_bytes: u64) -> Result<bool, OpError> {
        Ok(self.log.file_len()? > threshold_bytes)
    }

    /// The journal file's size in bytes.
    pub fn file_len(&self) -> Result<u64, OpError> {
        Ok(self.log.file_len()?)
    }

    fn compact_inner(&mut self, finished_before: Option<u64>) -> Result<(), OpError> {
        let keep: Vec<OpRecord> = self
            .index
            .entries
            .iter()
            .filter(|e| Index::keeps(e, finished_before))
            .map(OpEntry::to_record)
            .collect();
        self.log.compact(&keep)?;
        let mut index = Index::default();
        for rec in keep {
            index.apply(rec);
        }
        self.index = index;
        Ok(())
    }

    fn transition(&mut self, op_id: &OpId, state: OpState, now: u64) -> Result<(), OpError> {
        let Some(e) = self.index.get(op_id) else {
            return Err(OpError::UnknownOp {
                op_id: op_id.clone(),
            });
        };
        if e.state.is_terminal() {
            return Err(OpError::Finished {
                op_id: op_id.clone(),
                state: e.state.name(),
                to: state.name(),
            });
        }
        let rec = OpRecord {
            op_id: e.op_id.clone(),
            vmid: e.vmid,
            action: e.action.clone(),
            idempotency_key: e.idempotency_key.clone(),
            state,
            at: now,
        };
        self.record(rec)
    }

    /// Durable first, then visible: the index changes only once the record is on disk.
    fn record(&mut self, rec: OpRecord) -> Result<(), OpError> {
        self.log.append(&rec)?;
        self.index.apply(rec);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, key: Option<&str>, state: OpState, at: u64) -> OpRecord {
        OpRecord {
            op_id: OpId(id.into()),
            vmid: Some(100),
            action: "start".into(),
            idempotency_key: key.map(Into::into),
            state,
            at,
        }
    }

    fn index(recs: Vec<OpRecord>) -> Index {
        let mut i = Index::default();
        for r in recs {
            i.apply(r);
        }
        i
    }

    #[test]
    fn latest_record_wins_and_order_is_first_appearance() {
        let i = index(vec![
            rec("a", None, OpState::Started, 1),
            rec("b", None, OpState::Started, 2),
            rec("a", None, OpState::TaskRunning { upid: "U".into() }, 3),
            rec("b", None, OpState::Succeeded, 4),
        ]);
        let ids: Vec<_> = i.entries.iter().map(|e| e.op_id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        let a = i.get(&OpId("a".into())).unwrap();
        assert_eq!(
            (a.state.clone(), a.at),
            (OpState::TaskRunning { upid: "U".into() }, 3)
        );
    }

    #[test]
    fn key_state_follows_the_ops_carrying_it() {
        let k = Some("k");
        let cases: Vec<(Vec<OpRecord>, KeyState)> = vec![
            (vec![], KeyState::Unknown),
            (
                vec![rec("a", k, OpState::Started, 1)],
                KeyState::InFlight(OpId("a".into())),
            ),
            (
                vec![
                    rec("a", k, OpState::Started, 1),
                    rec("a", k, OpState::Failed { error: "x".into() }, 2),
                ],
                KeyState::Unknown,
            ),
            (
                vec![
                    rec("a", k, OpState::Failed { error: "x".into() }, 1),
                    rec("b", k, OpState::Started, 2),
                    rec("b", k, OpState::Succeeded, 3),
                ],
                KeyState::Applied(OpId("b".into())),
            ),
            (
                vec![
                    rec("a", k, OpState::Started, 1),
                    rec("a", None, OpState::Started, 2),
                ],
                KeyState::Unknown,
            ),
        ];
        for (recs, want) in cases {
            let dbg = format!("{recs:?}");
            assert_eq!(index(recs).key_state("k"), want, "{dbg}");
        }
    }

    #[test]
    fn the_last_op_with_a_key_is_its_latest_use() {
        let k = Some("k");
        let i = index(vec![
            rec("a", k, OpState::Started, 1),
            rec("b", None, OpState::Started, 2),
            rec("a", k, OpState::Failed { error: "x".into() }, 3),
            rec("c", k, OpState::Started, 4),
        ]);
        assert_eq!(i.last_with_key("k").unwrap().op_id.as_str(), "c");
        assert!(i.last_with_key("other").is_none());
        // an op that drops its key is no longer the key's
        let i = index(vec![
            rec("a", k, OpState::Started, 1),
            rec("c", k, OpState::Started, 2),
            rec("c", None, OpState::Started, 3),
        ]);
        assert_eq!(i.last_with_key("k").unwrap().op_id.as_str(), "a");
    }

    #[test]
    fn pruning_keeps_running_recent_and_applied_ops() {
        let keep = |state: OpState, key: Option<&str>, at: u64| {
            let e: OpEntry = rec("a", key, state, at).into();
            Index::keeps(&e, Some(100))
        };
        assert!(keep(OpState::Started, None, 1));
        assert!(keep(OpState::TaskRunning { upid: "U".into() }, None, 1));
        assert!(keep(OpState::Succeeded, Some("k"), 1));
        assert!(keep(OpState::Succeeded, None, 100));
        assert!(!keep(OpState::Succeeded, None, 99));
        assert!(!keep(OpState::Failed { error: "x".into() }, Some("k"), 99));
        assert!(!keep(OpState::Failed { error: "x".into() }, None, 99));
    }

    #[test]
    fn record_json_shape_is_stable() {
        let r = rec("a", Some("k"), OpState::TaskRunning { upid: "U".into() }, 7);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"op_id":"a","vmid":100,"action":"start","idempotency_key":"k","state":{"kind":"task_running","upid":"U"},"at":7}"#
        );
        let no_key = rec("a", None, OpState::Started, 7);
        let json = serde_json::to_string(&no_key).unwrap();
        assert!(!json.contains("idempotency_key"));
        assert_eq!(serde_json::from_str::<OpRecord>(&json).unwrap(), no_key);
    }

    #[test]
    fn identifiers_are_validated() {
        assert!(OpId::new("").is_err());
        assert!(OpId::new("a\nb").is_err());
        assert!(OpId::new("x".repeat(513)).is_err());
        assert_eq!(OpId::new("job-1").unwrap().as_str(), "job-1");
        let e = check_ident("action", "").unwrap_err();
        assert_eq!(e.to_string(), "op journal: action: must not be empty");
    }
}
