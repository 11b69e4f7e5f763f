//! `Log` through `FaultyFs`: call order (sync before ack), injected write/fsync/rename failures,
//! poisoning, and what survives a reopen.

use std::fs;
use std::sync::Arc;

use felhom_journal::{FaultyFs, FileSystem, FsCall, JournalError, Log, RealFs};

use crate::{rec, recs, Rec};

fn faulty() -> Arc<FaultyFs> {
    Arc::new(FaultyFs::new(RealFs))
}

fn open(path: &std::path::Path, fs: &Arc<FaultyFs>) -> Log<Rec> {
    Log::<Rec>::open_with(path, fs.clone()).unwrap().log
}

fn is_io(e: &JournalError, want: &str) -> bool {
    matches!(e, JournalError::Io { op, .. } if *op == want)
}

#[test]
fn append_writes_then_syncs_before_returning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    let fs = faulty();
    let mut log = open(&path, &fs);
    for n in 1..=3 {
        fs.clear_calls();
        log.append(&rec(n)).unwrap();
        let calls = fs.calls();
        // Exactly one write and then one fdatasync, and nothing after: the fsync completed
        // before append returned Ok.
        assert!(
            matches!(calls.as_slice(), [FsCall::WriteAll { len }, FsCall::SyncData] if *len > 0),
            "{calls:?}"
        );
    }
    // The bytes the write carried are the whole line.
    drop(log);
    assert_eq!(Log::<Rec>::open(&path).unwrap().records, recs(1..=3));
}

/// A file system that fails `sync_data` unless the test says the disk is healthy, and counts
/// whether any append was acknowledged while its sync had not completed.
#[derive(Debug, Default)]
struct OrderProbe {
    unsynced_writes: std::sync::atomic::AtomicU64,
}

impl FileSystem for OrderProbe {
    fn open(&self, p: &std::path::Path) -> std::io::Result<fs::File> {
        RealFs.open(p)
    }
    fn create_new(&self, p: &std::path::Path) -> std::io::Result<fs::File> {
        RealFs.create_new(p)
    }
    fn read_to_end(&self, f: &mut fs::File, b: &mut Vec<u8>) -> std::io::Result<()> {
        RealFs.read_to_end(f, b)
    }
    fn write_all(&self, f: &mut fs::File, b: &[u8]) -> std::io::Result<()> {
        self.unsynced_writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        RealFs.write_all(f, b)
    }
    fn sync_data(&self, f: &fs::File) -> std::io::Result<()> {
        RealFs.sync_data(f)?;
        self.unsynced_writes
            .store(0, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
    fn sync_dir(&self, d: &std::path::Path) -> std::io::Result<()> {
        RealFs.sync_dir(d)
    }
    fn rename(&self, a: &std::path::Path, b: &std::path::Path) -> std::io::Result<()> {
        RealFs.rename(a, b)
    }
    fn remove_file(&self, p: &std::path::Path) -> std::io::Result<()> {
        RealFs.remove_file(p)
    }
    fn truncate(&self, f: &fs::File, l: u64) -> std::io::Result<()> {
        RealFs.truncate(f, l)
    }
    fn try_lock(&self, f: &fs::File) -> std::io::Result<bool> {
        RealFs.try_lock(f)
    }
    fn is_same_file(&self, f: &fs::File, p: &std::path::Path) -> std::io::Result<bool> {
        RealFs.is_same_file(f, p)
    }
}

#[test]
fn no_append_is_acknowledged_with_an_unsynced_write() {
    let dir = tempfile::tempdir().unwrap();
    let probe = Arc::new(OrderProbe::default());
    let mut log = Log::<Rec>::open_with(dir.path().join("j.log"), probe.clone())
        .unwrap()
        .log;
    for n in 1..=20 {
        log.append(&rec(n)).unwrap();
        assert_eq!(
            probe
                .unsynced_writes
                .load(std::sync::atomic::Ordering::SeqCst),
            0,
            "append {n}"
        );
    }
    log.compact(&recs(1..=5)).unwrap();
    assert_eq!(
        probe
            .unsynced_writes
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[test]
fn a_failed_fsync_is_an_error_poisons_the_log_and_is_never_retried() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    let fs = faulty();
    let mut log = open(&path, &fs);
    log.append(&rec(1)).unwrap();
    fs.fail_sync(true);
    fs.clear_calls();
    let e = log.append(&rec(2)).unwrap_err();
    assert!(is_io(&e, "sync_data"), "{e}");
    assert!(e.to_string().contains("injected sync_data failure"), "{e}");
    assert!(log.is_poisoned());

    // Healthy again, but the log stays poisoned: no write, no second fsync.
    fs.fail_sync(false);
    fs.clear_calls();
    assert!(matches!(
        log.append(&rec(3)),
        Err(JournalError::Poisoned { .. })
    ));
    assert!(matches!(
        log.compact(&[]),
        Err(JournalError::Poisoned { .. })
    ));
    assert!(fs.calls().is_empty(), "{:?}", fs.calls());
    assert_eq!(log.len(), 1, "an unacknowledged record is not counted");

    // Reopening reads what reached the file (here the kernel did keep the write).
    drop(log);
    let o = Log::<Rec>::open(&path).unwrap();
    assert_eq!(o.records, recs(1..=2));
}

#[test]
fn a_failed_write_is_an_error_and_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    let fs = faulty();
    let mut log = open(&path, &fs);
    log.append(&rec(1)).unwrap();
    fs.fail_write(true);
    fs.clear_calls();
    let e = log.append(&rec(2)).unwrap_err();
    assert!(is_io(&e, "write"), "{e}");
    assert_eq!(
        fs.calls().len(),
        1,
        "no fsync after a failed write: {:?}",
        fs.calls()
    );
    fs.fail_write(false);
    assert!(matches!(
        log.append(&rec(3)),
        Err(JournalError::Poisoned { .. })
    ));
    drop(log);
    assert_eq!(Log::<Rec>::open(&path).unwrap().records, recs(1..=1));
}

#[test]
fn a_torn_write_is_an_error_and_reopen_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    let fs = faulty();
    let mut log = open(&path, &fs);
    log.append(&rec(1)).unwrap();
    fs.tear_write(true);
    assert!(is_io(&log.append(&rec(2)).unwrap_err(), "write"));
    drop(log);

    let mut o = Log::<Rec>::open(&path).unwrap();
    assert_eq!(o.records, recs(1..=1));
    let t = o.repaired.clone().expect("half a record is a torn tail");
    assert_eq!(t.line, 2);
    assert!(t.bytes_dropped > 0);
    o.log.append(&rec(3)).unwrap();
    drop(o);
    assert_eq!(
        Log::<Rec>::open(&path).unwrap().records,
        vec![rec(1), rec(3)]
    );
}

#[test]
fn creating_a_log_syncs_the_file_and_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    let fs = faulty();
    drop(open(&path, &fs));
    let calls = fs.calls();
    let create = calls
        .iter()
        .position(|c| *c == FsCall::CreateNew(path.clone()))
        .unwrap();
    let sync = calls.iter().position(|c| *c == FsCall::SyncData).unwrap();
    let sync_dir = calls
        .iter()
        .position(|c| *c == FsCall::SyncDir(dir.path().to_owned()))
        .unwrap();
    assert!(create < sync && sync < sync_dir, "{calls:?}");

    // Opening an existing, non-empty file creates nothing and syncs no directory.
    let mut log = open(&path, &fs);
    log.append(&rec(1)).unwrap();
    drop(log);
    fs.clear_calls();
    drop(open(&path, &fs));
    assert!(
        !fs.calls()
            .iter()
            .any(|c| matches!(c, FsCall::CreateNew(_) | FsCall::SyncDir(_))),
        "{:?}",
        fs.calls()
    );

    // An existing empty file (its creator may have died before the directory fsync) is
    // treated like a new one.
    let empty = dir.path().join("empty.log");
    std::fs::write(&empty, b"").unwrap();
    fs.clear_calls();
    drop(open(&empty, &fs));
    assert!(
        fs.calls().contains(&FsCall::SyncDir(dir.path().to_owned())),
        "{:?}",
        fs.calls()
    );

    // A failed directory fsync on create is an error, not a silently undurable file.
    let other = dir.path().join("k.log");
    fs.fail_sync_dir(true);
    let e = Log::<Rec>::open_with(&other, fs.clone()).unwrap_err();
    assert!(is_io(&e, "sync_dir"), "{e}");
}

#[test]
fn open_failures_surface_as_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    let fs = faulty();
    let mut log = open(&path, &fs);
    log.append(&rec(1)).unwrap();
    drop(log);

    fs.fail_read(true);
    assert!(is_io(
        &Log::<Rec>::open_with(&path, fs.clone()).unwrap_err(),
        "read"
    ));
    fs.fail_read(false);
    fs.fail_open(true);
    assert!(is_io(
        &Log::<Rec>::open_with(&path, fs.clone()).unwrap_err(),
        "open"
    ));
    fs.fail_open(false);

    // A torn tail whose repair cannot be made durable is an error, and the file is kept as is.
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"seq\":2,\"cr");
    fs::write(&path, &bytes).unwrap();
    fs.fail_truncate(true);
    assert!(is_io(
        &Log::<Rec>::open_with(&path, fs.clone()).unwrap_err(),
        "truncate"
    ));
    assert_eq!(fs::read(&path).unwrap(), bytes);
    fs.fail_truncate(false);
    fs.fail_sync(true);
    assert!(is_io(
        &Log::<Rec>::open_with(&path, fs.clone()).unwrap_err(),
        "sync_data"
    ));
}

#[test]
fn compaction_is_temp_write_fsync_rename_fsync_dir() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    let tmp = dir.path().join("j.log.compact-tmp");
    let fs = faulty();
    let mut log = open(&path, &fs);
    for r in recs(1..=4) {
        log.append(&r).unwrap();
    }
    fs.clear_calls();
    log.compact(&recs(3..=4)).unwrap();
    let calls = fs.calls();
    let want_tail = [
        FsCall::CreateNew(tmp.clone()),
        FsCall::TryLock,
        FsCall::SyncData,
        FsCall::Rename {
            from: tmp.clone(),
            to: path.clone(),
        },
        FsCall::SyncDir(dir.path().to_owned()),
    ];
    let without_writes: Vec<_> = calls
        .iter()
        .filter(|c| !matches!(c, FsCall::WriteAll { .. } | FsCall::RemoveFile(_)))
        .cloned()
        .collect();
    assert_eq!(without_writes, want_tail, "{calls:?}");
    let create = calls.iter().position(|c| *c == want_tail[0]).unwrap();
    let write = calls
        .iter()
        .position(|c| matches!(c, FsCall::WriteAll { .. }))
        .unwrap();
    let sync = calls.iter().position(|c| *c == FsCall::SyncData).unwrap();
    assert!(create < write && write < sync, "{calls:?}");
}

#[test]
fn a_failed_rename_keeps_the_old_file_and_the_log_usable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    let fs = faulty();
    let mut log = open(&path, &fs);
    for r in recs(1..=4) {
        log.append(&r).unwrap();
    }
    fs.fail_rename(true);
    assert!(is_io(&log.compact(&recs(4..=4)).unwrap_err(), "rename"));
    fs.fail_rename(false);
    assert!(!log.is_poisoned());
    assert_eq!(log.len(), 4);
    log.append(&rec(5)).unwrap();
    drop(log);
    assert_eq!(Log::<Rec>::open(&path).unwrap().records, recs(1..=5));
    assert!(!dir.path().join("j.log.compact-tmp").exists());
}

#[test]
fn a_failed_write_of_the_temp_file_keeps_the_log_usable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    let fs = faulty();
    let mut log = open(&path, &fs);
    log.append(&rec(1)).unwrap();
    fs.fail_write(true);
    assert!(is_io(&log.compact(&recs(1..=3)).unwrap_err(), "write"));
    fs.fail_write(false);
    log.append(&rec(2)).unwrap();
    drop(log);
    assert_eq!(Log::<Rec>::open(&path).unwrap().records, recs(1..=2));
}

#[test]
fn a_failed_fsync_during_compaction_poisons_and_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    let fs = faulty();
    let mut log = open(&path, &fs);
    for r in recs(1..=3) {
        log.append(&r).unwrap();
    }
    fs.fail_sync(true);
    assert!(is_io(&log.compact(&recs(3..=3)).unwrap_err(), "sync_data"));
    assert!(
        !fs.calls()
            .iter()
            .any(|c| matches!(c, FsCall::Rename { .. })),
        "never renamed an unsynced file"
    );
    assert!(matches!(
        log.append(&rec(4)),
        Err(JournalError::Poisoned { .. })
    ));
    drop(log);
    assert_eq!(Log::<Rec>::open(&path).unwrap().records, recs(1..=3));
}

#[test]
fn a_failed_directory_fsync_after_rename_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.log");
    let fs = faulty();
    let mut log = open(&path, &fs);
    for r in recs(1..=3) {
        log.append(&r).unwrap();
    }
    fs.fail_sync_dir(true);
    assert!(is_io(&log.compact(&recs(2..=3)).unwrap_err(), "sync_dir"));
    assert!(log.is_poisoned());
    drop(log);
    // The rename itself happened; the reopened file is the compacted one.
    assert_eq!(Log::<Rec>::open(&path).unwrap().records, recs(2..=3));
}
