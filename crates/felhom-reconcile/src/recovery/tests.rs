//! Recovery unit tests: the pure judgements, then whole runs against the in-memory fake with a
//! real journal in a temp dir, under tokio's paused clock.

use std::sync::{Arc, Mutex};

use felhom_journal::{FaultyFs, KeyState, OpJournal, RealFs};
use felhom_proxmox::TaskState;
use tokio::time::Instant;

use super::*;
use crate::engine::fake::{upid, FakePve};

const NOW: u64 = 1_700_000_000;

fn status(state: TaskState, exitstatus: Option<&str>) -> TaskStatus {
    TaskStatus {
        status: state,
        exitstatus: exitstatus.map(str::to_owned),
        ..TaskStatus::default()
    }
}

fn a_upid() -> Upid {
    upid(7, "vzstart", 101).parse().expect("upid")
}

#[test]
fn a_stopped_task_is_judged_by_its_exit_status() {
    let upid = a_upid();
    assert_eq!(
        judge_status(&upid, &status(TaskState::Running, None)),
        None,
        "still running: wait"
    );
    assert_eq!(
        judge_status(&upid, &status(TaskState::Stopped, Some("OK"))),
        Some(Resolution::Succeeded {
            exitstatus: "OK".to_owned()
        })
    );
    assert_eq!(
        judge_status(&upid, &status(TaskState::Stopped, Some("WARNINGS: 3"))),
        Some(Resolution::Succeeded {
            exitstatus: "WARNINGS: 3".to_owned()
        })
    );
    assert_eq!(
        judge_status(
            &upid,
            &status(TaskState::Stopped, Some("CT is locked (backup)"))
        ),
        Some(Resolution::Failed {
            error: format!("pve task {upid} failed: CT is locked (backup)")
        })
    );
    assert_eq!(
        judge_status(&upid, &status(TaskState::Stopped, None)),
        Some(Resolution::Failed {
            error: format!("pve task {upid} failed: unexpected status")
        })
    );
}

#[test]
fn errors_close_only_what_is_known() {
    let upid = a_upid();
    let unknown = crate::engine::fake::no_such_task("/tasks");
    assert_eq!(
        judge_error(&upid, &unknown, false),
        Resolution::Failed {
            error: format!("task unknown after restart: pve has no task {upid}")
        }
    );
    let unreachable = ProxmoxError::Proxy {
        method: "GET".to_owned(),
        path: "/tasks".to_owned(),
        status: 596,
        reason: None,
    };
    assert!(matches!(
        judge_error(&upid, &unreachable, false),
        Resolution::LeftInFlight { reason } if reason.contains("596")
    ));
    let timeout = ProxmoxError::WaitTimeout {
        upid: upid.clone(),
        waited: DEFAULT_RECOVERY_WAIT,
    };
    assert!(matches!(
        judge_error(&upid, &timeout, false),
        Resolution::Failed { error } if error.ends_with("the next reconcile pass re-checks")
    ));
    assert!(
        matches!(
            judge_error(&upid, &timeout, true),
            Resolution::LeftInFlight { .. }
        ),
        "a one-shot op's key is never released on a guess"
    );
    assert_eq!(
        interrupted_before_request(false),
        Resolution::Failed {
            error: INTERRUPTED_BEFORE_REQUEST.to_owned()
        }
    );
    assert!(matches!(
        interrupted_before_request(true),
        Resolution::LeftInFlight { .. }
    ));
}

struct Fixture {
    _dir: tempfile::TempDir,
    journal: SharedJournal,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let (journal, _) = OpJournal::open(dir.path().join("ops.log")).expect("open journal");
    Fixture {
        _dir: dir,
        journal: Arc::new(Mutex::new(journal)),
    }
}

impl Fixture {
    fn op(&self, vmid: u32, action: &str, key: Option<&str>, upid: Option<&str>) -> OpId {
        let mut journal = self.journal.lock().expect("journal");
        let op = journal
            .started(Some(vmid), action, key.map(str::to_owned), NOW - 100)
            .expect("started");
        if let Some(upid) = upid {
            journal
                .task_running(&op, upid, NOW - 99)
                .expect("task_running");
        }
        op
    }

    fn state(&self, op: &OpId) -> OpState {
        self.journal
            .lock()
            .expect("journal")
            .get(op)
            .expect("op")
            .state
    }
}

#[tokio::test(start_paused = true)]
async fn every_in_flight_op_is_closed_from_what_pve_says() {
    let fake = FakePve::host();
    let fx = fixture();
    let ok = upid(1, "vzstart", 101);
    let failed = upid(2, "vzstart", 102);
    let warned = upid(3, "vzstop", 100);
    let unknown = upid(4, "vzstart", 103);
    fake.add_task(&ok, Duration::ZERO, "OK");
    fake.add_task(
        &failed,
        Duration::ZERO,
        "startup for container '102' failed",
    );
    fake.add_task(&warned, Duration::ZERO, "WARNINGS: 1");
    let op_ok = fx.op(101, "start", None, Some(&ok));
    let op_failed = fx.op(102, "start", None, Some(&failed));
    let op_warned = fx.op(100, "stop", None, Some(&warned));
    let op_unknown = fx.op(103, "start", None, Some(&unknown));
    let op_started = fx.op(104, "set_config", None, None);
    let done = fx.op(105, "start", None, None);
    fx.journal
        .lock()
        .expect("journal")
        .succeeded(&done, NOW - 50)
        .expect("succeeded");

    let summary = recover(&fake, &fx.journal, NOW).await.expect("recovery");
    let resolved: Vec<(OpId, Resolution)> = summary
        .ops
        .iter()
        .map(|op| (op.op_id.clone(), op.resolution.clone()))
        .collect();
    assert_eq!(
        resolved,
        [
            (
                op_ok.clone(),
                Resolution::Succeeded {
                    exitstatus: "OK".to_owned()
                }
            ),
            (
                op_failed.clone(),
                Resolution::Failed {
                    error: format!("pve task {failed} failed: startup for container '102' failed")
                }
            ),
            (
                op_warned.clone(),
                Resolution::Succeeded {
                    exitstatus: "WARNINGS: 1".to_owned()
                }
            ),
            (
                op_unknown.clone(),
                Resolution::Failed {
                    error: format!("task unknown after restart: pve has no task {unknown}")
                }
            ),
            (
                op_started.clone(),
                Resolution::Failed {
                    error: INTERRUPTED_BEFORE_REQUEST.to_owned()
                }
            ),
        ]
    );
    assert_eq!(
        (
            summary.succeeded(),
            summary.failed(),
            summary.left_in_flight()
        ),
        (2, 3, 0)
    );
    assert_eq!(summary.ops[0].vmid, Some(101));
    assert_eq!(summary.ops[4].action, "set_config");
    assert!(fx.journal.lock().expect("journal").in_flight().is_empty());
    assert_eq!(fx.state(&op_ok), OpState::Succeeded);
    assert!(matches!(fx.state(&op_failed), OpState::Failed { error } if error.contains("102")));
    assert_eq!(
        fx.state(&op_started),
        OpState::Failed {
            error: INTERRUPTED_BEFORE_REQUEST.to_owned()
        }
    );
    // one status read per task; nothing mutating
    let calls = fake.calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("task_status"))
            .count(),
        4
    );
    assert!(fake.mutations().is_empty());
    let at = fx
        .journal
        .lock()
        .expect("journal")
        .get(&op_ok)
        .expect("op")
        .at;
    assert_eq!(at, NOW);
}

#[tokio::test(start_paused = true)]
async fn a_running_task_is_waited_on_then_closed() {
    let fake = FakePve::host();
    let fx = fixture();
    let running = upid(1, "vzstart", 101);
    fake.add_task(&running, Duration::from_secs(30), "OK");
    let op = fx.op(101, "start", None, Some(&running));
    let started = Instant::now();
    let summary = recover(&fake, &fx.journal, NOW).await.expect("recovery");
    assert!(started.elapsed() >= Duration::from_secs(30));
    assert_eq!(summary.succeeded(), 1);
    let entry = fx.journal.lock().expect("journal").get(&op).expect("op");
    assert_eq!(entry.state, OpState::Succeeded);
    assert!(entry.at >= NOW + 30, "recorded when it ended: {}", entry.at);
}

#[tokio::test(start_paused = true)]
async fn a_task_still_running_after_the_bound_is_failed_unless_one_shot() {
    let fake = FakePve::host();
    let fx = fixture();
    let slow = upid(1, "vzstart", 101);
    let slow_keyed = upid(2, "vzrestore", 105);
    fake.add_task(&slow, Duration::from_secs(3600), "OK");
    fake.add_task(&slow_keyed, Duration::from_secs(3600), "OK");
    let op = fx.op(101, "start", None, Some(&slow));
    let keyed = fx.op(105, "restore_guest", Some("job-7"), Some(&slow_keyed));
    let options = RecoveryOptions {
        wait: WaitOptions {
            timeout: Duration::from_secs(60),
            ..WaitOptions::default()
        },
        ..RecoveryOptions::default()
    };
    let started = Instant::now();
    let summary = recover_with(&fake, &fx.journal, NOW, &options)
        .await
        .expect("recovery");
    assert!(
        started.elapsed() <= Duration::from_secs(61),
        "waits run side by side, each bounded: {:?}",
        started.elapsed()
    );
    assert_eq!((summary.failed(), summary.left_in_flight()), (1, 1));
    assert!(
        matches!(fx.state(&op), OpState::Failed { error } if error.contains("may still be running"))
    );
    assert!(matches!(fx.state(&keyed), OpState::TaskRunning { .. }));
    assert_eq!(
        fx.journal.lock().expect("journal").key_state("job-7"),
        KeyState::InFlight(keyed)
    );
}

#[tokio::test(start_paused = true)]
async fn unknowable_outcomes_stay_in_flight() {
    let fake = FakePve::host();
    let fx = fixture();
    let unreachable = upid(1, "vzstart", 101);
    fake.add_task(&unreachable, Duration::ZERO, "OK");
    fake.state().status_unreachable.insert(unreachable.clone());
    let op = fx.op(101, "start", None, Some(&unreachable));
    // a non-destructive one-shot op (destructive ones are closed from observed state: see
    // tests/it/crash.rs)
    let keyed = fx.op(105, "provision_guest", Some("job-9"), None);
    let summary = recover(&fake, &fx.journal, NOW).await.expect("recovery");
    assert_eq!(summary.left_in_flight(), 2);
    match &summary.ops[0].resolution {
        Resolution::LeftInFlight { reason } => {
            assert!(reason.contains("596"), "{reason}");
        }
        other => panic!("expected left in flight, got {other:?}"),
    }
    assert!(matches!(fx.state(&op), OpState::TaskRunning { .. }));
    assert_eq!(fx.state(&keyed), OpState::Started);
    assert_eq!(fx.journal.lock().expect("journal").in_flight().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_garbled_upid_is_closed_as_failed() {
    let fake = FakePve::host();
    let fx = fixture();
    let op = fx.op(101, "start", None, Some("not-a-upid"));
    let summary = recover(&fake, &fx.journal, NOW).await.expect("recovery");
    assert_eq!(summary.failed(), 1);
    assert!(
        matches!(fx.state(&op), OpState::Failed { error } if error.starts_with("journaled task id \"not-a-upid\" is not a upid")),
        "{:?}",
        fx.state(&op)
    );
    assert!(fake.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn nothing_in_flight_asks_nothing() {
    let fake = FakePve::host();
    let fx = fixture();
    let summary = recover(&fake, &fx.journal, NOW).await.expect("recovery");
    assert_eq!(summary, RecoverySummary::default());
    assert!(fake.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_journal_that_cannot_record_fails_recovery() {
    let fake = FakePve::host();
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = Arc::new(FaultyFs::new(RealFs));
    let (mut journal, _) =
        OpJournal::open_with(dir.path().join("ops.log"), Arc::clone(&fs) as _).expect("open");
    let op = journal
        .started(Some(104), "start", None, NOW)
        .expect("started");
    fs.fail_sync(true);
    let journal: SharedJournal = Arc::new(Mutex::new(journal));
    let err = recover(&fake, &journal, NOW)
        .await
        .expect_err("cannot record");
    let RecoveryError::Journal { op_id, .. } = &err;
    assert_eq!(op_id, &op);
    assert!(
        err.to_string().starts_with(&format!(
            "startup recovery: cannot close op {op} in the journal: "
        )),
        "{err}"
    );
}

/// A UPID that started at `start` (unix seconds).
fn upid_at(pid: u32, kind: &str, vmid: u32, start: u64) -> String {
    format!("UPID:pve:{pid:08X}:00ABCDEF:{start:08X}:{kind}:{vmid}:felhom@pve!agent:")
}

fn listed(upid: &str, kind: &str, vmid: u32, start: u64, status: &str) -> TaskListItem {
    TaskListItem {
        upid: upid.to_owned(),
        starttime: Some(start),
        worker_type: Some(kind.to_owned()),
        id: Some(vmid.to_string()),
        status: Some(status.to_owned()),
        ..TaskListItem::default()
    }
}

fn started(vmid: Option<u32>, action: &str) -> OpEntry {
    OpEntry {
        op_id: OpId::new("op-1").expect("op id"),
        vmid,
        action: action.to_owned(),
        idempotency_key: None,
        state: OpState::Started,
        at: NOW,
    }
}

#[test]
fn actions_map_to_pve_task_types_and_a_filter_since_the_op() {
    assert_eq!(task_type("start"), Some("vzstart"));
    assert_eq!(task_type("stop"), Some("vzstop"));
    assert_eq!(task_type("destroy_guest"), Some("vzdestroy"));
    assert_eq!(task_type("rollback"), Some("vzrollback"));
    assert_eq!(
        task_type("set_config"),
        None,
        "synchronous: no task to find"
    );
    let filter = task_filter(&started(Some(101), "start")).expect("a filter");
    assert_eq!(
        filter,
        TaskFilter {
            vmid: Some(101),
            typefilter: Some("vzstart".to_owned()),
            since: Some(NOW - TASK_LOOKUP_SKEW),
            source: TaskSource::All,
            limit: Some(TASK_LOOKUP_LIMIT),
        }
    );
    assert_eq!(task_filter(&started(None, "start")), None, "no guest");
    assert_eq!(task_filter(&started(Some(101), "set_config")), None);
    let mut running = started(Some(101), "start");
    running.state = OpState::TaskRunning {
        upid: upid(1, "vzstart", 101),
    };
    assert_eq!(task_filter(&running), None, "its upid is journaled");
}

#[test]
fn exactly_one_matching_task_is_adopted() {
    let filter = task_filter(&started(Some(101), "start")).expect("a filter");
    let ours = upid_at(1, "vzstart", 101, NOW + 1);
    let done = listed(&ours, "vzstart", 101, NOW + 1, "OK");
    assert_eq!(
        pick_task(&filter, std::slice::from_ref(&done), Some(1), None),
        TaskLookup::One {
            upid: ours.parse().expect("upid"),
            exit: Some((TaskExit::Ok, "OK".to_owned())),
        }
    );
    let running = listed(&ours, "vzstart", 101, NOW, "RUNNING");
    assert_eq!(
        pick_task(&filter, &[running], None, None),
        TaskLookup::One {
            upid: ours.parse().expect("upid"),
            exit: None,
        }
    );
    let failed = listed(
        &ours,
        "vzstart",
        101,
        NOW,
        "startup for container '101' failed",
    );
    assert!(matches!(
        pick_task(&filter, &[failed], Some(1), None),
        TaskLookup::One {
            exit: Some((TaskExit::Failed(_), _)),
            ..
        }
    ));
    // What the server should have filtered out is not a candidate: another guest, another
    // type, a task from before the op (beyond the skew).
    let other_guest = listed(&upid_at(2, "vzstart", 102, NOW), "vzstart", 102, NOW, "OK");
    let other_type = listed(&upid_at(3, "vzstop", 101, NOW), "vzstop", 101, NOW, "OK");
    let before = NOW - TASK_LOOKUP_SKEW - 1;
    let older = listed(
        &upid_at(4, "vzstart", 101, before),
        "vzstart",
        101,
        before,
        "OK",
    );
    assert_eq!(
        pick_task(
            &filter,
            &[other_guest.clone(), other_type, older],
            None,
            None
        ),
        TaskLookup::None
    );
    assert_eq!(pick_task(&filter, &[], None, None), TaskLookup::None);
    assert!(matches!(
        pick_task(&filter, &[other_guest, done.clone()], None, None),
        TaskLookup::One { .. }
    ));
}

#[test]
fn several_candidates_or_a_bad_upid_adopt_nothing() {
    let filter = task_filter(&started(Some(101), "start")).expect("a filter");
    let a = listed(&upid_at(1, "vzstart", 101, NOW), "vzstart", 101, NOW, "OK");
    let b = listed(
        &upid_at(2, "vzstart", 101, NOW + 1),
        "vzstart",
        101,
        NOW + 1,
        "RUNNING",
    );
    assert_eq!(
        pick_task(&filter, &[a.clone(), b], None, None),
        TaskLookup::Ambiguous { candidates: 2 }
    );
    // One on the page, but PVE counted more.
    assert_eq!(
        pick_task(&filter, std::slice::from_ref(&a), Some(3), None),
        TaskLookup::Ambiguous { candidates: 3 }
    );
    let garbled = TaskListItem {
        upid: "not a upid".to_owned(),
        ..a
    };
    assert_eq!(
        pick_task(&filter, &[garbled], Some(1), None),
        TaskLookup::Ambiguous { candidates: 1 }
    );
}

#[tokio::test(start_paused = true)]
async fn an_op_interrupted_before_its_upid_is_closed_from_its_task() {
    let fake = FakePve::host();
    let fx = fixture();
    // Journaled at NOW - 100 without a UPID; PVE started their tasks a second later.
    let done = upid_at(1, "vzstart", 101, NOW - 99);
    let running = upid_at(2, "vzstop", 100, NOW - 99);
    fake.add_task(&done, Duration::ZERO, "OK");
    fake.add_task(&running, Duration::from_secs(3), "OK");
    let op_done = fx.op(101, "start", None, None);
    let op_running = fx.op(100, "stop", None, None);
    // A start whose request never reached PVE: no task, closed as before.
    let op_lost = fx.op(102, "start", None, None);

    let summary = recover(&fake, &fx.journal, NOW).await.expect("recovery");
    let ok = Resolution::Succeeded {
        exitstatus: "OK".to_owned(),
    };
    assert_eq!(summary.ops[0].resolution, ok);
    assert_eq!(summary.ops[1].resolution, ok, "waited on");
    assert_eq!(
        summary.ops[2].resolution,
        Resolution::Failed {
            error: INTERRUPTED_BEFORE_REQUEST.to_owned()
        }
    );
    assert_eq!(fx.state(&op_done), OpState::Succeeded);
    assert_eq!(fx.state(&op_running), OpState::Succeeded);
    assert!(matches!(fx.state(&op_lost), OpState::Failed { .. }));
    // Looked up once each; only the adopted running task polled; nothing sent.
    let calls = fake.calls();
    for vmid in [101, 100, 102] {
        assert!(calls.contains(&format!("list_tasks {vmid}")), "{calls:?}");
    }
    assert!(!calls.contains(&"task_status 101".to_owned()), "{calls:?}");
    assert!(fake.mutations().is_empty(), "{:?}", fake.calls());
}

#[test]
fn only_a_signed_op_closed_not_sent_may_be_resumed() {
    let entry = |key: Option<&str>, state: OpState| OpEntry {
        op_id: OpId::new("op-1").unwrap(),
        vmid: Some(101),
        action: "destroy_guest".to_owned(),
        idempotency_key: key.map(str::to_owned),
        state,
        at: 0,
    };
    let failed = |error: &str| OpState::Failed {
        error: error.to_owned(),
    };
    let released = format!("{NOT_SENT}: destroy_guest interrupted before its request");
    assert!(is_not_sent(&entry(Some("signed:n"), failed(&released))));
    for (key, state) in [
        (None, failed(&released)),
        (Some("restore:101"), failed(&released)),
        (Some("signed:n"), failed("not_sent_by_anyone")),
        (Some("signed:n"), failed("pve task failed: not_sent: x")),
        (Some("signed:n"), failed(&format!("{OUTCOME_UNKNOWN}: x"))),
        (Some("signed:n"), OpState::Started),
        (Some("signed:n"), OpState::Succeeded),
    ] {
        let e = entry(key, state);
        assert!(!is_not_sent(&e), "{e:?}");
    }
}

#[test]
fn only_the_callers_own_task_is_adopted_and_a_foreign_one_is_never_read_as_none() {
    let filter = task_filter(&started(Some(101), "destroy_guest")).expect("a filter");
    let ours = listed(
        &upid_at(1, "vzdestroy", 101, NOW),
        "vzdestroy",
        101,
        NOW,
        "OK",
    );
    let admin_upid = upid_at(2, "vzdestroy", 101, NOW).replace("felhom@pve!agent", "root@pam");
    let admin = listed(&admin_upid, "vzdestroy", 101, NOW, "OK");
    let me = Some("felhom@pve!agent");
    assert!(matches!(
        pick_task(&filter, &[admin.clone(), ours.clone()], None, me),
        TaskLookup::One { upid, .. } if upid.to_string() == ours.upid
    ));
    assert_eq!(
        pick_task(&filter, std::slice::from_ref(&admin), None, me),
        TaskLookup::Foreign { candidates: 1 }
    );
    // A caller that cannot tell takes any matching task, as before.
    assert!(matches!(
        pick_task(&filter, std::slice::from_ref(&admin), None, None),
        TaskLookup::One { .. }
    ));
    assert_eq!(pick_task(&filter, &[], None, me), TaskLookup::None);
}
