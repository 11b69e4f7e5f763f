//! The op journal and idempotency store: lifecycle, reopen, keys, compaction, faults.

use std::sync::Arc;

use felhom_journal::{FaultyFs, JournalError, KeyState, OpError, OpId, OpJournal, OpState, RealFs};

fn journal(dir: &tempfile::TempDir) -> OpJournal {
    let (j, torn) = OpJournal::open(dir.path().join("ops.log")).unwrap();
    assert!(torn.is_none());
    j
}

#[test]
fn lifecycle_and_latest_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal(&dir);
    let id = j
        .started(Some(105), "destroy_guest", Some("job-1".into()), 1000)
        .unwrap();
    let e = j.get(&id).unwrap();
    assert_eq!(
        (e.vmid, e.action.as_str(), e.state.clone(), e.at),
        (Some(105), "destroy_guest", OpState::Started, 1000)
    );
    assert_eq!(j.in_flight().len(), 1);
    assert_eq!(j.key_state("job-1"), KeyState::InFlight(id.clone()));

    j.task_running(&id, "UPID:pve:0001:destroy", 1001).unwrap();
    assert_eq!(
        j.get(&id).unwrap().state,
        OpState::TaskRunning {
            upid: "UPID:pve:0001:destroy".into()
        }
    );
    assert!(!j.already_applied("job-1"));

    j.succeeded(&id, 1005).unwrap();
    assert!(j.in_flight().is_empty());
    assert!(j.already_applied("job-1"));
    assert_eq!(j.key_state("job-1"), KeyState::Applied(id.clone()));
    assert_eq!(j.get(&id).unwrap().at, 1005);
}

#[test]
fn in_flight_ops_survive_reopen_in_start_order() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c);
    {
        let mut j = journal(&dir);
        a = j.started(Some(100), "start", None, 10).unwrap();
        b = j.started(Some(101), "stop", None, 10).unwrap();
        c = j.started(None, "host_check", None, 11).unwrap();
        j.task_running(&a, "UPID:a", 12).unwrap();
        j.failed(&b, "task error: locked", 13).unwrap();
    }
    let j = journal(&dir);
    let inf = j.in_flight();
    let ids: Vec<_> = inf.iter().map(|e| e.op_id.clone()).collect();
    assert_eq!(ids, vec![a.clone(), c.clone()]);
    assert_eq!(
        inf[0].state,
        OpState::TaskRunning {
            upid: "UPID:a".into()
        }
    );
    assert_eq!((inf[0].vmid, inf[0].action.as_str()), (Some(100), "start"));
    assert_eq!(inf[1].vmid, None);
    assert_eq!(
        j.get(&b).unwrap().state,
        OpState::Failed {
            error: "task error: locked".into()
        }
    );
    assert_eq!(j.len(), 3);
}

#[test]
fn idempotency_survives_reopen_and_a_failed_key_is_not_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, running);
    {
        let mut j = journal(&dir);
        ok = j
            .started(Some(1), "restore", Some("k-ok".into()), 1)
            .unwrap();
        j.succeeded(&ok, 2).unwrap();
        let bad = j
            .started(Some(1), "restore", Some("k-bad".into()), 3)
            .unwrap();
        j.failed(&bad, "boom", 4).unwrap();
        running = j
            .started(Some(2), "destroy_guest", Some("k-run".into()), 5)
            .unwrap();
    }
    let mut j = journal(&dir);
    assert!(j.already_applied("k-ok"));
    assert!(!j.already_applied("k-bad"));
    assert!(!j.already_applied("k-run"));
    assert!(!j.already_applied("never"));
    assert_eq!(j.key_state("k-bad"), KeyState::Unknown);
    assert_eq!(j.key_state("k-run"), KeyState::InFlight(running.clone()));

    // A duplicate of an applied or in-flight key is refused before anything is written.
    match j.started(Some(1), "restore", Some("k-ok".into()), 6) {
        Err(OpError::KeyInUse { key, state }) => {
            assert_eq!((key.as_str(), state), ("k-ok", KeyState::Applied(ok)))
        }
        other => panic!("{other:?}"),
    }
    let e = j
        .started(Some(2), "destroy_guest", Some("k-run".into()), 6)
        .unwrap_err();
    assert!(e.to_string().contains("in flight"), "{e}");
    assert_eq!(j.len(), 3);

    // A failed key may run again, and then is applied.
    let retry = j
        .started(Some(1), "restore", Some("k-bad".into()), 7)
        .unwrap();
    j.succeeded(&retry, 8).unwrap();
    drop(j);
    assert!(journal(&dir).already_applied("k-bad"));
}

#[test]
fn terminal_and_unknown_ops_refuse_transitions() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal(&dir);
    let id = j.started(Some(1), "start", None, 1).unwrap();
    j.failed(&id, "x", 2).unwrap();
    let e = j.succeeded(&id, 3).unwrap_err();
    assert!(
        matches!(
            &e,
            OpError::Finished {
                state: "failed",
                to: "succeeded",
                ..
            }
        ),
        "{e}"
    );
    assert!(j.task_running(&id, "UPID:x", 3).is_err());
    let ghost = OpId::new("ghost").unwrap();
    assert!(matches!(
        j.succeeded(&ghost, 3),
        Err(OpError::UnknownOp { .. })
    ));
    assert!(matches!(
        j.task_running(&id, "", 3),
        Err(OpError::Invalid { field: "upid", .. })
    ));
    assert!(matches!(
        j.started(None, "", None, 3),
        Err(OpError::Invalid {
            field: "action",
            ..
        })
    ));

    // Caller-chosen ids are unique.
    let mine = OpId::new("hub-job-7").unwrap();
    j.started_with_id(mine.clone(), Some(1), "start", None, 4)
        .unwrap();
    assert!(matches!(
        j.started_with_id(mine, Some(1), "start", None, 5),
        Err(OpError::DuplicateOp { .. })
    ));
}

#[test]
fn generated_ids_stay_unique_across_reopen_at_the_same_second() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        let mut j = journal(&dir);
        for _ in 0..3 {
            assert!(seen.insert(j.started(None, "noop", None, 42).unwrap()));
        }
    }
    assert_eq!(journal(&dir).len(), 9);
}

#[test]
fn compaction_keeps_the_latest_record_per_op() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ops.log");
    let mut j = journal(&dir);
    let a = j.started(Some(1), "start", Some("ka".into()), 1).unwrap();
    j.task_running(&a, "UPID:a", 2).unwrap();
    j.succeeded(&a, 3).unwrap();
    let b = j.started(Some(2), "stop", None, 4).unwrap();
    j.task_running(&b, "UPID:b", 5).unwrap();
    let c = j.started(Some(3), "stop", None, 6).unwrap();
    j.failed(&c, "nope", 7).unwrap();
    let before: Vec<_> = [&a, &b, &c].iter().map(|id| j.get(id).unwrap()).collect();

    j.compact().unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
    let after: Vec<_> = [&a, &b, &c].iter().map(|id| j.get(id).unwrap()).collect();
    assert_eq!(before, after);
    j.succeeded(&b, 8).unwrap();
    drop(j);

    let mut j = journal(&dir);
    assert!(j.already_applied("ka"));
    assert!(j.in_flight().is_empty());
    assert_eq!(j.get(&b).unwrap().state, OpState::Succeeded);

    // Pruning forgets old finished ops, but never an applied key.
    let d = j.started(Some(4), "start", None, 100).unwrap();
    j.compact_pruning(50).unwrap();
    assert!(j.get(&a).is_some(), "applied key kept");
    assert!(j.get(&b).is_none() && j.get(&c).is_none());
    assert!(j.get(&d).is_some(), "running op kept");
    drop(j);
    let j = journal(&dir);
    assert!(j.already_applied("ka"));
    assert_eq!(j.len(), 2);
    assert_eq!(j.in_flight()[0].op_id, d);
}

#[test]
fn a_torn_last_transition_leaves_the_op_in_its_previous_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ops.log");
    let id;
    {
        let mut j = journal(&dir);
        id = j
            .started(Some(7), "destroy_guest", Some("k".into()), 1)
            .unwrap();
        j.succeeded(&id, 2).unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    let (j, torn) = OpJournal::open(&path).unwrap();
    assert_eq!(torn.unwrap().line, 2);
    assert_eq!(j.get(&id).unwrap().state, OpState::Started);
    assert_eq!(j.key_state("k"), KeyState::InFlight(id));
}

#[test]
fn a_failed_fsync_does_not_change_the_view_and_poisons() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FaultyFs::new(RealFs));
    let (mut j, _) = OpJournal::open_with(dir.path().join("ops.log"), fs.clone()).unwrap();
    let id = j.started(Some(1), "start", Some("k".into()), 1).unwrap();
    fs.fail_sync(true);
    let e = j.succeeded(&id, 2).unwrap_err();
    assert!(
        matches!(
            e,
            OpError::Journal(JournalError::Io {
                op: "sync_data",
                ..
            })
        ),
        "{e}"
    );
    assert_eq!(
        j.get(&id).unwrap().state,
        OpState::Started,
        "not acknowledged, not visible"
    );
    assert!(!j.already_applied("k"));
    fs.fail_sync(false);
    assert!(matches!(
        j.succeeded(&id, 3),
        Err(OpError::Journal(JournalError::Poisoned { .. }))
    ));
    assert!(matches!(
        j.started(None, "x", None, 3),
        Err(OpError::Journal(JournalError::Poisoned { .. }))
    ));
}

#[test]
fn a_bit_flip_in_the_last_complete_transition_is_refused_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ops.log");
    {
        let mut j = journal(&dir);
        let id = j
            .started(Some(7), "destroy_guest", Some("k".into()), 1)
            .unwrap();
        j.succeeded(&id, 2).unwrap();
    }
    // Dropping the damaged `succeeded` would make the applied key look in flight (or, after a
    // later failure, free to run again): the journal must refuse the file instead.
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .unwrap()
        + 1;
    bytes[last + 50] ^= 0x02;
    std::fs::write(&path, &bytes).unwrap();
    let e = OpJournal::open(&path).unwrap_err();
    assert!(
        matches!(&e, felhom_journal::JournalError::Corrupt { line: 2, .. }),
        "{e}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "file untouched");
}

/// A year of hourly reconcile ops (all finished), one applied one-shot op long ago, one op a
/// crash interrupted, and a recent failure.
fn busy_journal(dir: &tempfile::TempDir) -> (OpJournal, OpId, OpId, OpId) {
    let mut j = journal(dir);
    let applied = j
        .started(Some(9), "destroy_guest", Some("job-old".into()), 10)
        .unwrap();
    j.succeeded(&applied, 11).unwrap();
    for hour in 0..2000u64 {
        let at = 100 + hour * 3600;
        let id = j.started(Some(100), "start", None, at).unwrap();
        j.task_running(&id, &format!("UPID:pve:{hour:08X}:qmstart"), at + 1)
            .unwrap();
        j.succeeded(&id, at + 2).unwrap();
    }
    let now = 100 + 2000 * 3600;
    let running = j
        .started(Some(7), "restore", Some("job-live".into()), 50)
        .unwrap();
    j.task_running(&running, "UPID:pve:live", 51).unwrap();
    let recent = j.started(Some(8), "stop", None, now - 60).unwrap();
    j.failed(&recent, "timeout", now - 30).unwrap();
    (j, applied, running, recent)
}

#[test]
fn compaction_by_retention_keeps_in_flight_ops_and_applied_keys_and_shrinks_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ops.log");
    let (mut j, applied, running, recent) = busy_journal(&dir);
    let now = 100 + 2000 * 3600;
    let size = std::fs::metadata(&path).unwrap().len();
    assert_eq!(j.file_len().unwrap(), size);
    assert!(j.needs_compaction(size / 2).unwrap());
    assert!(!j.needs_compaction(size).unwrap());

    let c = j
        .compact_expired(now, felhom_journal::DEFAULT_RETENTION_SECS)
        .unwrap();
    // The 168 hourly ops that ended within the last 7 days survive, the 1832 before go.
    assert_eq!(c.ops_before, 2003);
    assert_eq!(c.ops_after, 3 + 168, "{c:?}");
    assert_eq!(c.bytes_before, size);
    assert_eq!(c.bytes_after, std::fs::metadata(&path).unwrap().len());
    assert!(c.bytes_after * 10 < c.bytes_before, "{c:?}");
    assert!(!j.needs_compaction(c.bytes_after).unwrap());
    drop(j);

    let (mut j, torn) = OpJournal::open(&path).unwrap();
    assert!(torn.is_none());
    assert_eq!(j.len(), 171);
    assert!(
        j.already_applied("job-old"),
        "an applied key outlives any retention"
    );
    assert_eq!(j.get(&applied).unwrap().state, OpState::Succeeded);
    let in_flight = j.in_flight();
    assert_eq!(in_flight.len(), 1);
    assert_eq!(in_flight[0].op_id, running);
    assert_eq!(
        in_flight[0].state,
        OpState::TaskRunning {
            upid: "UPID:pve:live".into()
        }
    );
    assert_eq!(j.key_state("job-live"), KeyState::InFlight(running.clone()));
    assert!(j.get(&recent).is_some(), "inside the retention window");
    // The one-shot ops are still refused after compaction and reopen.
    for key in ["job-old", "job-live"] {
        assert!(matches!(
            j.started(None, "destroy_guest", Some(key.into()), now),
            Err(OpError::KeyInUse { .. })
        ));
    }
    // And the journal keeps working: the interrupted op ends, and the next compaction keeps
    // its key (now applied) while the retention drops the rest.
    j.succeeded(&running, now + 1).unwrap();
    let c = j.compact_expired(now + 400 * 24 * 3600, 0).unwrap();
    assert_eq!(c.ops_after, 2, "only the two applied keys: {c:?}");
    drop(j);
    let (j, _) = OpJournal::open(&path).unwrap();
    assert!(j.already_applied("job-old") && j.already_applied("job-live"));
}

#[test]
fn a_crash_between_the_temp_write_and_the_rename_leaves_a_valid_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ops.log");
    let (j, _, running, _) = busy_journal(&dir);
    let now = 100 + 2000 * 3600;
    drop(j);
    let before = std::fs::read(&path).unwrap();

    // The rename never happens (the crash): the temp file is written and fsync'd, the log is
    // the old one, byte for byte.
    let fs = Arc::new(FaultyFs::new(RealFs));
    let (mut j, _) = OpJournal::open_with(&path, fs.clone()).unwrap();
    fs.fail_rename(true);
    let e = j.compact_expired(now, 3600).unwrap_err();
    assert!(e.to_string().contains("rename"), "{e}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    drop(j);

    // What a real crash leaves: a complete temp file next to the old log. Reopening ignores
    // (and removes) it and replays the old log whole.
    let tmp = dir.path().join("ops.log.compact-tmp");
    std::fs::write(&tmp, &before[..before.len() / 3]).unwrap();
    let (mut j, torn) = OpJournal::open(&path).unwrap();
    assert!(torn.is_none());
    assert!(!tmp.exists(), "stale temp file removed");
    assert_eq!(j.len(), 2003);
    assert_eq!(j.in_flight()[0].op_id, running);
    assert!(j.already_applied("job-old"));
    // And the compaction then succeeds.
    let c = j.compact_expired(now, 3600).unwrap();
    assert_eq!(
        c.ops_after, 4,
        "applied, in flight, the recent failure, the last hour: {c:?}"
    );
}
