//! The restore-test results: durable and bounded on the journal's [`Log`] (`restore-tests.log`
//! beside the op journal), so the report's `restore_tests`, the round cadence and startup
//! recovery ("did this scratch op end?") survive a restart. Each record is one finished test
//! with the `create_guest` op id of its scratch guest, if one was made.
//!
//! Kept: the latest result per source guest, at most [`REPORT_LEN`]; the file is compacted to
//! that when it reaches twice as many records. Without a file (it could not be opened) the
//! results live in memory only and the daemon says so once.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use felhom_hub_proto::RestoreTest;
use felhom_journal::{JournalError, Log};
use serde::{Deserialize, Serialize};

use super::plan::{latest_per_guest, REPORT_LEN};

/// The file's name, in the op journal's directory.
pub const FILE_NAME: &str = "restore-tests.log";

/// One durable record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord {
    /// The scratch guest's `create_guest` op id, when one was journaled.
    #[serde(default)]
    pub op_id: Option<String>,
    /// The round the test belonged to (unix seconds it started).
    pub round: u64,
    /// The result as reported.
    pub test: RestoreTest,
}

#[derive(Debug)]
struct Inner {
    log: Option<Log<ResultRecord>>,
    records: Vec<ResultRecord>,
}

/// The results store.
#[derive(Debug)]
pub struct ResultStore {
    inner: Mutex<Inner>,
}

impl ResultStore {
    /// Opens (creating) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let opened = Log::<ResultRecord>::open(path)?;
        if let Some(torn) = &opened.repaired {
            tracing::warn!(
                line = torn.line,
                "restore-test results: dropped a torn trailing record"
            );
        }
        Ok(Self {
            inner: Mutex::new(Inner {
                log: Some(opened.log),
                records: opened.records,
            }),
        })
    }

    /// A store in memory only.
    pub fn in_memory() -> Self {
        Self {
            inner: Mutex::new(Inner {
                log: None,
                records: Vec::new(),
            }),
        }
    }

    /// Records a finished test (fsync'd when durable). Blocking: call it off the async
    /// workers. A failed write keeps the result in memory and is returned.
    pub fn record(&self, record: ResultRecord) -> Result<(), JournalError> {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let inner = &mut *guard;
        inner.records.push(record.clone());
        let written = match inner.log.as_mut() {
            Some(log) => log.append(&record),
            None => Ok(()),
        };
        if inner.records.len() >= 2 * REPORT_LEN {
            inner.records = kept(&inner.records);
            if let Some(log) = inner.log.as_mut() {
                log.compact(&inner.records)?;
            }
        }
        written
    }

    /// The report's `restore_tests`: latest per source guest, ascending vmid, bounded.
    pub fn tail(&self) -> Vec<RestoreTest> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let tests: Vec<RestoreTest> = inner.records.iter().map(|r| r.test.clone()).collect();
        latest_per_guest(&tests, REPORT_LEN)
    }

    /// When the latest round started, if any was recorded.
    pub fn last_round(&self) -> Option<u64> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.records.iter().map(|r| r.round).max()
    }

    /// Whether a result names this scratch op (its test ended, whatever the outcome).
    pub fn has_op(&self, op_id: &str) -> bool {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner
            .records
            .iter()
            .any(|r| r.op_id.as_deref() == Some(op_id))
    }
}

/// The records to keep: the latest per source guest (oldest first, like the file).
fn kept(records: &[ResultRecord]) -> Vec<ResultRecord> {
    let tests: Vec<RestoreTest> = records.iter().map(|r| r.test.clone()).collect();
    let latest = latest_per_guest(&tests, REPORT_LEN);
    records
        .iter()
        .rev()
        .filter(|r| latest.iter().any(|l| l == &r.test))
        .fold(Vec::<ResultRecord>::new(), |mut acc, r| {
            if !acc.iter().any(|a| a.test.vmid == r.test.vmid) {
                acc.push(r.clone());
            }
            acc
        })
        .into_iter()
        .rev()
        .collect()
}

#[cfg(test)]
mod tests {
    use felhom_hub_proto::Timestamp;

    use super::*;

    fn record(vmid: u32, t: u64, op: Option<&str>) -> ResultRecord {
        ResultRecord {
            op_id: op.map(Into::into),
            round: t,
            test: RestoreTest {
                volid: format!("local:backup/vzdump-lxc-{vmid}-x.tar.zst"),
                vmid,
                tested_at: Timestamp::from_unix_seconds(t),
                ok: true,
                detail: "ok".into(),
                outcome: "ok".into(),
                reason: None,
                error: None,
                backup_ctime: 1,
                scratch_vmid: Some(9000),
                started_at: Some(Timestamp::from_unix_seconds(t)),
                duration_seconds: 0,
            },
        }
    }

    #[test]
    fn results_survive_a_reopen_and_the_file_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let store = ResultStore::open(&path).unwrap();
        assert_eq!(store.last_round(), None);
        for t in 0..(3 * REPORT_LEN as u64) {
            store
                .record(record(
                    100 + (t % 3) as u32,
                    1000 + t,
                    Some(&format!("op{t}")),
                ))
                .unwrap();
        }
        let last = 1000 + 3 * REPORT_LEN as u64 - 1;
        assert_eq!(store.last_round(), Some(last));
        let tail = store.tail();
        assert_eq!(
            tail.iter().map(|t| t.vmid).collect::<Vec<_>>(),
            [100, 101, 102]
        );
        assert!(store.has_op(&format!("op{}", 3 * REPORT_LEN - 1)));
        drop(store);
        let store = ResultStore::open(&path).unwrap();
        assert_eq!(store.tail().len(), 3);
        assert_eq!(store.last_round(), Some(last));
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines < 2 * REPORT_LEN, "{lines} lines");
    }
}
