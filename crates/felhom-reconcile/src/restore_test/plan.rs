//! The pure half of restore tests: which backup of which guest, which scratch vmid, whether
//! there is room, how a result reads. No I/O; the runner feeds it what it read.

use std::collections::{BTreeMap, BTreeSet};

use felhom_hub_proto::{RestoreTest, Timestamp};
use felhom_types::VmidRange;

/// The prefix of every scratch guest's provenance (and of its `create_guest` op id).
pub const PROVENANCE_PREFIX: &str = "agent scratch, restore test of ";

/// One backup to test: the source guest's latest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The guest the backup belongs to.
    pub vmid: u32,
    /// The backup's volid.
    pub volid: String,
    /// Its creation time, unix seconds.
    pub ctime: u64,
    /// Its size in bytes.
    pub size: u64,
}

/// A backup as listed on a storage (what the runner read; the collector reads the same).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupListing {
    /// Volid.
    pub volid: String,
    /// Owning guest, when PVE names one.
    pub vmid: Option<u32>,
    /// `lxc`, `qemu`, … when PVE says.
    pub subtype: Option<String>,
    /// Creation time.
    pub ctime: u64,
    /// Size.
    pub size: u64,
}

/// The latest container backup of every guest in `guests` (ascending vmid). Scratch guests
/// (inside `range`) are never sources; a backup PVE marks as another guest type, or one named
/// `vzdump-qemu-…`, is not a container's; ties on `ctime` go to the greater volid.
pub fn latest_backups(
    guests: &BTreeSet<u32>,
    backups: &[BackupListing],
    range: VmidRange,
) -> Vec<Candidate> {
    let mut latest: BTreeMap<u32, &BackupListing> = BTreeMap::new();
    for b in backups {
        let Some(vmid) = b.vmid else { continue };
        if range.contains(vmid) || !guests.contains(&vmid) || !is_lxc_backup(b) {
            continue;
        }
        let newer = latest
            .get(&vmid)
            .is_none_or(|cur| (b.ctime, &b.volid) > (cur.ctime, &cur.volid));
        if newer {
            latest.insert(vmid, b);
        }
    }
    latest
        .into_iter()
        .map(|(vmid, b)| Candidate {
            vmid,
            volid: b.volid.clone(),
            ctime: b.ctime,
            size: b.size,
        })
        .collect()
}

fn is_lxc_backup(b: &BackupListing) -> bool {
    match b.subtype.as_deref() {
        Some(t) => t == "lxc",
        None => !b.volid.contains("vzdump-qemu-"),
    }
}

/// The free scratch vmids of the range: taken one per test, given back after the scratch guest
/// was destroyed. A vmid PVE lists (anyone's guest) is never free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScratchPool {
    range: VmidRange,
    free: BTreeSet<u32>,
}

impl ScratchPool {
    /// The range minus every vmid in `existing`.
    pub fn new(range: VmidRange, existing: impl IntoIterator<Item = u32>) -> Self {
        let taken: BTreeSet<u32> = existing.into_iter().collect();
        Self {
            range,
            free: range.iter().filter(|v| !taken.contains(v)).collect(),
        }
    }

    /// The lowest free vmid, now taken.
    pub fn take(&mut self) -> Option<u32> {
        self.free.pop_first()
    }

    /// Gives `vmid` back (its scratch guest is gone). A vmid outside the range is ignored.
    pub fn give_back(&mut self, vmid: u32) {
        if self.range.contains(vmid) {
            self.free.insert(vmid);
        }
    }

    /// How many are free.
    pub fn free(&self) -> usize {
        self.free.len()
    }
}

/// Whether the scratch storage has room: at least twice the backup's size free (a restore
/// unpacks to more than the compressed archive). `Err` carries the skip detail.
pub fn room_for(avail: Option<u64>, backup_size: u64, storage: &str) -> Result<(), String> {
    let need = backup_size.saturating_mul(2);
    match avail {
        Some(free) if free >= need => Ok(()),
        Some(free) => Err(format!(
            "storage {storage} has {free} bytes free, below twice the backup's {backup_size} bytes"
        )),
        None => Err(format!(
            "storage {storage}'s free space is unknown (not listed or inactive)"
        )),
    }
}

/// The provenance of a scratch guest: what the journal records as its creation.
pub fn provenance(source: u32, volid: &str) -> String {
    format!("{PROVENANCE_PREFIX}{source} from {volid}")
}

/// The `create_guest` op id of a scratch guest: its provenance, the scratch vmid and the start
/// time (unique per test).
pub fn scratch_op_id(source: u32, volid: &str, scratch: u32, now: u64) -> String {
    format!("{} into {scratch} at {now}", provenance(source, volid))
}

/// The source guest and backup a scratch op id names (`None`: not a restore test's op).
pub fn parse_scratch_op_id(op_id: &str) -> Option<(u32, String)> {
    let rest = op_id.strip_prefix(PROVENANCE_PREFIX)?;
    let (source, rest) = rest.split_once(" from ")?;
    let (volid, _) = rest.rsplit_once(" into ")?;
    Some((source.parse().ok()?, volid.to_owned()))
}

/// How a test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Restored, booted, cleaned up.
    Ok,
    /// The restore (or isolating its network) failed.
    RestoreFailed,
    /// The start failed or the guest did not come up in time.
    BootFailed,
    /// The scratch guest could not be destroyed: it may be left.
    CleanupFailed,
    /// The agent stopped mid-test; found at startup.
    Interrupted,
    /// Not run (low space, no free vmid).
    Skipped,
}

impl Outcome {
    /// The report's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::RestoreFailed => "restore_failed",
            Outcome::BootFailed => "boot_failed",
            Outcome::CleanupFailed => "cleanup_failed",
            Outcome::Interrupted => "interrupted",
            Outcome::Skipped => "skipped",
        }
    }
}

/// Everything a result says, before it becomes a report entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// The backup tested.
    pub candidate: Candidate,
    /// The scratch guest, when one was (or may have been) created.
    pub scratch: Option<u32>,
    /// Outcome.
    pub outcome: Outcome,
    /// Stable code of the failing step or skip.
    pub reason: Option<&'static str>,
    /// The error line.
    pub error: Option<String>,
    /// What happened, step by step, for the human line.
    pub steps: Vec<String>,
    /// Unix seconds.
    pub started: u64,
    /// Unix seconds.
    pub finished: u64,
}

/// Longest error line kept in a report.
pub const MAX_ERROR_LEN: usize = 300;

/// The report entry of a result. The error is one line, bounded.
pub fn report_entry(r: &TestResult) -> RestoreTest {
    let error = r.error.as_deref().map(one_line);
    let mut detail = r.steps.join(", ");
    if detail.is_empty() {
        detail = r.outcome.as_str().to_owned();
    }
    RestoreTest {
        volid: r.candidate.volid.clone(),
        vmid: r.candidate.vmid,
        tested_at: Timestamp::from_unix_seconds(r.finished),
        ok: r.outcome == Outcome::Ok,
        detail: one_line(&detail),
        outcome: r.outcome.as_str().to_owned(),
        reason: r.reason.map(str::to_owned),
        error,
        backup_ctime: r.candidate.ctime,
        scratch_vmid: r.scratch,
        started_at: Some(Timestamp::from_unix_seconds(r.started)),
        duration_seconds: r.finished.saturating_sub(r.started),
    }
}

fn one_line(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= MAX_ERROR_LEN {
        flat
    } else {
        let mut cut: String = flat.chars().take(MAX_ERROR_LEN - 1).collect();
        cut.push('…');
        cut
    }
}

/// Entries the report carries at most.
pub const REPORT_LEN: usize = 64;

/// The report's `restore_tests` from results oldest first: the latest per source guest,
/// ascending vmid, at most `cap` (the most recently finished kept).
pub fn latest_per_guest(results: &[RestoreTest], cap: usize) -> Vec<RestoreTest> {
    let mut latest: BTreeMap<u32, &RestoreTest> = BTreeMap::new();
    for r in results {
        latest.insert(r.vmid, r);
    }
    let mut keep: Vec<&RestoreTest> = latest.into_values().collect();
    if keep.len() > cap {
        keep.sort_by_key(|r| std::cmp::Reverse(r.tested_at.unix_seconds()));
        keep.truncate(cap);
        keep.sort_by_key(|r| r.vmid);
    }
    keep.into_iter().cloned().collect()
}

/// Whether a round is due: never run, or `every` seconds since the last round started.
pub fn round_due(last_round: Option<u64>, now: u64, every_secs: u64) -> bool {
    last_round.is_none_or(|last| now >= last.saturating_add(every_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> VmidRange {
        "9000-9003".parse().unwrap()
    }

    fn listing(volid: &str, vmid: u32, ctime: u64, subtype: Option<&str>) -> BackupListing {
        BackupListing {
            volid: volid.into(),
            vmid: Some(vmid),
            subtype: subtype.map(Into::into),
            ctime,
            size: 1000,
        }
    }

    #[test]
    fn the_latest_container_backup_of_each_present_guest_outside_the_range() {
        let guests: BTreeSet<u32> = [100, 101, 102, 9001].into();
        let backups = [
            listing(
                "local:backup/vzdump-lxc-100-a.tar.zst",
                100,
                10,
                Some("lxc"),
            ),
            listing(
                "local:backup/vzdump-lxc-100-b.tar.zst",
                100,
                30,
                Some("lxc"),
            ),
            listing("nfs:backup/vzdump-lxc-100-c.tar.zst", 100, 20, None),
            listing("local:backup/vzdump-qemu-101-a.vma.zst", 101, 50, None),
            listing(
                "local:backup/vzdump-lxc-101-x.tar.zst",
                101,
                5,
                Some("qemu"),
            ),
            // a scratch guest's own backup is never a source
            listing(
                "local:backup/vzdump-lxc-9001-a.tar.zst",
                9001,
                60,
                Some("lxc"),
            ),
            // a backup of a guest that is gone
            listing(
                "local:backup/vzdump-lxc-555-a.tar.zst",
                555,
                60,
                Some("lxc"),
            ),
            BackupListing {
                vmid: None,
                ..listing("local:backup/orphan.tar", 1, 99, None)
            },
            listing("local:backup/vzdump-lxc-102-b.tar.zst", 102, 7, None),
            listing("local:backup/vzdump-lxc-102-a.tar.zst", 102, 7, None),
        ];
        let got = latest_backups(&guests, &backups, range());
        let names: Vec<(u32, &str)> = got.iter().map(|c| (c.vmid, c.volid.as_str())).collect();
        assert_eq!(
            names,
            [
                (100, "local:backup/vzdump-lxc-100-b.tar.zst"),
                (102, "local:backup/vzdump-lxc-102-b.tar.zst"),
            ]
        );
    }

    #[test]
    fn the_pool_hands_out_only_free_vmids_of_the_range() {
        let mut pool = ScratchPool::new(range(), [9000, 9002, 100]);
        assert_eq!(pool.free(), 2);
        assert_eq!(pool.take(), Some(9001));
        assert_eq!(pool.take(), Some(9003));
        assert_eq!(pool.take(), None);
        pool.give_back(9003);
        pool.give_back(105); // outside: never handed out
        assert_eq!(pool.take(), Some(9003));
        assert_eq!(pool.take(), None);
    }

    #[test]
    fn room_needs_twice_the_backup() {
        assert!(room_for(Some(2000), 1000, "s").is_ok());
        let e = room_for(Some(1999), 1000, "local-lvm").unwrap_err();
        assert!(e.contains("local-lvm") && e.contains("1999"), "{e}");
        assert!(room_for(None, 1, "s").is_err());
        assert!(room_for(Some(u64::MAX), u64::MAX, "s").is_ok());
    }

    #[test]
    fn op_ids_carry_the_provenance_and_read_back() {
        let id = scratch_op_id(100, "local:backup/vzdump-lxc-100-x.tar.zst", 9000, 77);
        assert_eq!(
            id,
            "agent scratch, restore test of 100 from local:backup/vzdump-lxc-100-x.tar.zst \
             into 9000 at 77"
        );
        assert_eq!(
            parse_scratch_op_id(&id),
            Some((100, "local:backup/vzdump-lxc-100-x.tar.zst".to_owned()))
        );
        assert_eq!(parse_scratch_op_id("1700000000-1"), None);
    }

    #[test]
    fn entries_are_one_bounded_line_and_the_tail_keeps_the_latest_per_guest() {
        let r = TestResult {
            candidate: Candidate {
                vmid: 100,
                volid: "v".into(),
                ctime: 5,
                size: 1,
            },
            scratch: Some(9000),
            outcome: Outcome::BootFailed,
            reason: Some("start"),
            error: Some(format!("line one\nline two {}", "x".repeat(400))),
            steps: vec!["restored into 9000".into(), "start failed".into()],
            started: 100,
            finished: 130,
        };
        let e = report_entry(&r);
        assert_eq!(
            (e.outcome.as_str(), e.ok, e.duration_seconds),
            ("boot_failed", false, 30)
        );
        let err = e.error.unwrap();
        assert!(
            !err.contains('\n') && err.chars().count() == MAX_ERROR_LEN,
            "{err}"
        );
        assert_eq!(e.detail, "restored into 9000, start failed");

        let at = |vmid, t| RestoreTest {
            tested_at: Timestamp::from_unix_seconds(t),
            vmid,
            ..report_entry(&r)
        };
        let all = [at(101, 1), at(100, 2), at(101, 3), at(102, 4)];
        let tail = latest_per_guest(&all, 64);
        let got: Vec<(u32, i64)> = tail
            .iter()
            .map(|r| (r.vmid, r.tested_at.unix_seconds()))
            .collect();
        assert_eq!(got, [(100, 2), (101, 3), (102, 4)]);
        let tail = latest_per_guest(&all, 2);
        let got: Vec<u32> = tail.iter().map(|r| r.vmid).collect();
        assert_eq!(got, [101, 102]);
        assert!(round_due(None, 0, 10));
        assert!(!round_due(Some(100), 109, 10));
        assert!(round_due(Some(100), 110, 10));
    }
}
