//! Engine unit tests against the in-memory fake, under tokio's paused clock.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use felhom_journal::{FaultyFs, Log, OpJournal, OpRecord, OpState, RealFs};

use super::fake::{FakeGuest, FakePve};
use super::*;
use crate::desired::{
    DesiredGuest, EmptyProvider, FileProvider, GuestSpec, RunState, StaticProvider,
};
use crate::normalize::MIB;
use crate::plan::SkipReason;

const NOW: u64 = 1_700_000_000;

fn queue() -> Queue {
    Queue::new(NonZeroUsize::new(4).expect("cap"))
}

fn provider(guests: Vec<DesiredGuest>) -> StaticProvider {
    StaticProvider::new(DesiredState::new(guests).expect("valid desired state"))
}

fn running(vmid: u32) -> DesiredGuest {
    DesiredGuest {
        run_state: Some(RunState::Running),
        ..DesiredGuest::new(vmid)
    }
}

fn stopped(vmid: u32) -> DesiredGuest {
    DesiredGuest {
        run_state: Some(RunState::Stopped),
        ..DesiredGuest::new(vmid)
    }
}

fn cores(vmid: u32, cores: u32) -> DesiredGuest {
    DesiredGuest {
        spec: Some(GuestSpec {
            cores: Some(cores),
            ..GuestSpec::default()
        }),
        ..DesiredGuest::new(vmid)
    }
}

fn stopped_guest() -> FakeGuest {
    FakeGuest {
        cores: Some(1),
        memory: Some(512),
        digest: 1,
        ..FakeGuest::default()
    }
}

struct Journal {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    shared: SharedJournal,
}

fn journal() -> Journal {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ops.log");
    let (journal, torn) = OpJournal::open(&path).expect("open journal");
    assert!(torn.is_none());
    Journal {
        _dir: dir,
        path,
        shared: Arc::new(Mutex::new(journal)),
    }
}

impl Journal {
    /// Every record written, in order, as `(vmid, action, state name)`; closes the journal
    /// (every other handle must be gone).
    fn lifecycle(self) -> Vec<(Option<u32>, String, OpState)> {
        let journal = Arc::try_unwrap(self.shared).expect("journal still shared");
        drop(journal);
        let opened = Log::<OpRecord>::open(&self.path).expect("reopen journal");
        opened
            .records
            .into_iter()
            .map(|r| (r.vmid, r.action, r.state))
            .collect()
    }

    fn in_flight(&self) -> Vec<felhom_journal::OpEntry> {
        self.shared.lock().expect("journal").in_flight()
    }
}

fn state_names(
    records: &[(Option<u32>, String, OpState)],
    vmid: u32,
    action: &str,
) -> Vec<&'static str> {
    records
        .iter()
        .filter(|(v, a, _)| *v == Some(vmid) && a == action)
        .map(|(_, _, state)| state.name())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn converges_in_one_pass_and_journals_each_lifecycle() {
    let fake = Arc::new(FakePve::host());
    let journal = journal();
    let engine = Engine::new(
        Arc::clone(&fake),
        queue(),
        Some(Arc::clone(&journal.shared)),
    );
    let desired = provider(vec![
        DesiredGuest {
            spec: Some(GuestSpec {
                cores: Some(4),
                // 2 GiB + 1 byte: rounds up to 2049 MiB, written once.
                memory_bytes: Some(2048 * MIB + 1),
                ..GuestSpec::default()
            }),
            // PVE reads back "web\n": no drift.
            description: Some("web".to_owned()),
            ..running(100)
        },
        running(101),
    ]);

    let summary = engine.run_pass(&desired, NOW).await.expect("pass");
    assert_eq!(summary.planned, 2, "{summary:#?}");
    assert_eq!(summary.succeeded, 2, "{summary:#?}");
    assert!(summary.failed.is_empty() && summary.not_run.is_empty());
    assert_eq!(summary.mutations, 2);
    assert_eq!((summary.desired_guests, summary.actual_guests), (2, 2));
    // Different guests run in parallel on the queue: their order is not fixed.
    let mut mutations = fake.mutations();
    mutations.sort();
    assert_eq!(
        mutations,
        ["set_config 100 cores=4,memory=2049", "start 101"]
    );
    assert_eq!(fake.guest(100).memory, Some(2049));
    assert!(fake.guest(101).running);

    let again = engine.run_pass(&desired, NOW + 60).await.expect("pass");
    assert_eq!(again.planned, 0, "not converged: {again:#?}");
    assert!(again.changed_nothing());
    assert_eq!(fake.mutations().len(), 2);

    drop(engine);
    let records = journal.lifecycle();
    // synchronous config: no task_running; start: the full task lifecycle
    assert_eq!(
        state_names(&records, 100, "set_config"),
        ["started", "succeeded"]
    );
    assert_eq!(
        state_names(&records, 101, "start"),
        ["started", "task_running", "succeeded"]
    );
    let upid = records.iter().find_map(|(_, _, state)| match state {
        OpState::TaskRunning { upid } => Some(upid.clone()),
        _ => None,
    });
    assert!(upid.is_some_and(|u| u.contains(":vzstart:101:")));
}

#[tokio::test(start_paused = true)]
async fn a_config_task_is_waited_on() {
    let fake = Arc::new(FakePve::host());
    fake.state().config_as_task = true;
    let journal = journal();
    let engine = Engine::new(
        Arc::clone(&fake),
        queue(),
        Some(Arc::clone(&journal.shared)),
    );
    let started = Instant::now();
    let summary = engine
        .run_pass(&provider(vec![cores(100, 3)]), NOW)
        .await
        .expect("pass");
    assert_eq!(summary.succeeded, 1, "{summary:#?}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "returned before the task stopped"
    );
    assert!(fake.calls().iter().any(|c| c.starts_with("task_status ")));
    drop(engine);
    assert_eq!(
        state_names(&journal.lifecycle(), 100, "set_config"),
        ["started", "task_running", "succeeded"]
    );
}

#[tokio::test(start_paused = true)]
async fn failures_are_counted_and_other_guests_still_converge() {
    let fake = Arc::new(FakePve::host());
    fake.add(102, stopped_guest());
    fake.add(103, stopped_guest());
    fake.state().power_denied.insert(101);
    fake.state()
        .task_exit
        .insert(102, "startup for container '102' failed".to_owned());
    let journal = journal();
    let engine = Engine::new(
        Arc::clone(&fake),
        queue(),
        Some(Arc::clone(&journal.shared)),
    );
    let summary = engine
        .run_pass(
            &provider(vec![running(101), running(102), running(103), stopped(100)]),
            NOW,
        )
        .await
        .expect("a failed action never fails the pass");
    assert_eq!(summary.planned, 4);
    assert_eq!(summary.succeeded, 2, "{summary:#?}");
    let failed: Vec<(u32, &str)> = summary.failed.iter().map(|f| (f.vmid, f.action)).collect();
    assert_eq!(failed, [(101, "start"), (102, "start")]);
    assert!(
        summary.failed[0].detail.contains("VM.PowerMgmt"),
        "{}",
        summary.failed[0].detail
    );
    assert!(summary.failed[1]
        .detail
        .contains("startup for container '102' failed"));
    assert!(fake.guest(103).running);
    assert!(!fake.guest(100).running);

    drop(engine);
    let records = journal.lifecycle();
    assert_eq!(state_names(&records, 101, "start"), ["started", "failed"]);
    assert_eq!(
        state_names(&records, 102, "start"),
        ["started", "task_running", "failed"]
    );
    assert_eq!(
        state_names(&records, 100, "stop"),
        ["started", "task_running", "succeeded"]
    );
    let error_101 = records.iter().find_map(|(vmid, _, state)| match state {
        OpState::Failed { error } if *vmid == Some(101) => Some(error.clone()),
        _ => None,
    });
    assert!(error_101.is_some_and(|e| e.contains("403")));
}

#[tokio::test(start_paused = true)]
async fn warnings_are_success_and_surfaced() {
    let fake = Arc::new(FakePve::host());
    fake.state().task_exit.insert(101, "WARNINGS: 2".to_owned());
    let engine = Engine::new(Arc::clone(&fake), queue(), None);
    let summary = engine
        .run_pass(&provider(vec![running(101)]), NOW)
        .await
        .expect("pass");
    assert_eq!(summary.succeeded, 1);
    assert_eq!(summary.warnings.len(), 1);
    assert_eq!(summary.warnings[0].detail, "warning 0; warning 1");
    assert!(fake.guest(101).running);
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_desired_state_fails_the_pass_before_any_request() {
    let fake = Arc::new(FakePve::host());
    let engine = Engine::new(Arc::clone(&fake), queue(), None);
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = FileProvider::new(dir.path().join("absent.json"));
    let err = engine
        .run_pass(&missing, NOW)
        .await
        .expect_err("no desired state");
    assert!(
        matches!(err, EngineError::Desired(DesiredError::Read { .. })),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with("reconcile pass: desired state unavailable, nothing changed: "));
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

#[tokio::test(start_paused = true)]
async fn a_failed_guest_list_fails_the_pass_with_zero_mutations() {
    let fake = Arc::new(FakePve::host());
    fake.state().list_fails = true;
    let journal = journal();
    let engine = Engine::new(
        Arc::clone(&fake),
        queue(),
        Some(Arc::clone(&journal.shared)),
    );
    let err = engine
        .run_pass(&provider(vec![running(101)]), NOW)
        .await
        .expect_err("list failed");
    match &err {
        EngineError::ListGuests { node, source } => {
            assert_eq!(node, "pve");
            assert_eq!(source.status(), Some(500));
        }
        other => panic!("expected ListGuests, got {other}"),
    }
    assert!(err
        .to_string()
        .contains("cannot list guests on node pve, nothing changed"));
    assert_eq!(fake.calls(), ["list_lxc"]);
    drop(engine);
    assert!(journal.lifecycle().is_empty(), "nothing journaled");
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_config_is_not_written_but_run_state_still_converges() {
    let fake = Arc::new(FakePve::host());
    fake.state().config_fails.insert(101);
    let engine = Engine::new(Arc::clone(&fake), queue(), None);
    let summary = engine
        .run_pass(
            &provider(vec![DesiredGuest {
                description: Some("db".to_owned()),
                run_state: Some(RunState::Running),
                ..cores(101, 2)
            }]),
            NOW,
        )
        .await
        .expect("pass");
    assert_eq!(summary.config_errors.len(), 1);
    assert_eq!(summary.config_errors[0].vmid, 101);
    assert!(summary.config_errors[0]
        .error
        .contains("config read failed"));
    assert!(summary.skipped.contains(&Skip {
        vmid: 101,
        reason: SkipReason::ConfigUnreadable
    }));
    assert_eq!(fake.mutations(), ["start 101"]);
}

#[tokio::test(start_paused = true)]
async fn configs_are_read_only_for_desired_guests_and_with_bounded_concurrency() {
    let fake = Arc::new(FakePve::new());
    for vmid in 100..130 {
        fake.add(vmid, stopped_guest());
    }
    fake.state().read_delay = Duration::from_millis(10);
    let options = EngineOptions {
        read_concurrency: NonZeroUsize::new(3).expect("cap"),
        ..EngineOptions::default()
    };
    let engine = Engine::new(Arc::clone(&fake), queue(), None).with_options(options);
    let desired: Vec<DesiredGuest> = (100..120).map(|vmid| cores(vmid, 1)).collect();
    let summary = engine
        .run_pass(&provider(desired), NOW)
        .await
        .expect("pass");
    assert_eq!(summary.planned, 0, "cores already 1: {summary:#?}");
    let reads = fake
        .calls()
        .iter()
        .filter(|c| c.starts_with("guest_config "))
        .count();
    assert_eq!(reads, 20, "only desired guests' configs are read");
    assert_eq!(fake.state().max_reads_in_flight, 3);
    assert_eq!(
        summary
            .skipped
            .iter()
            .filter(|s| s.reason == SkipReason::NotDesired)
            .count(),
        10
    );
}

#[tokio::test(start_paused = true)]
async fn the_empty_provider_changes_nothing() {
    let fake = Arc::new(FakePve::host());
    let journal = journal();
    let engine = Engine::new(
        Arc::clone(&fake),
        queue(),
        Some(Arc::clone(&journal.shared)),
    );
    let summary = engine.run_pass(&EmptyProvider, NOW).await.expect("pass");
    assert!(summary.changed_nothing());
    assert_eq!(summary.planned, 0);
    assert_eq!(summary.desired_guests, 0);
    assert_eq!(
        summary.skipped.len(),
        2,
        "both guests reported as not desired"
    );
    assert_eq!(fake.calls(), ["list_lxc"], "no config read, no mutation");
    drop(engine);
    assert!(journal.lifecycle().is_empty());
}

#[tokio::test(start_paused = true)]
async fn journal_less_mode_runs_the_benign_actions() {
    let fake = Arc::new(FakePve::host());
    let engine = Engine::new(Arc::clone(&fake), queue(), None);
    let summary = engine
        .run_pass(&provider(vec![running(101), cores(100, 8)]), NOW)
        .await
        .expect("pass");
    assert_eq!(summary.succeeded, 2, "{summary:#?}");
    assert_eq!(summary.journal_errors, 0);
    assert!(fake.guest(101).running);
    assert_eq!(fake.guest(100).cores, Some(8));
}

#[derive(Debug)]
struct RefuseStops;

impl Gate for RefuseStops {
    async fn decide(&self, action: &Action) -> GateDecision {
        match action {
            Action::Stop { .. } => GateDecision::Refuse {
                reason: "stops need a signature in this test".to_owned(),
            },
            _ => GateDecision::Allow,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_refusing_gate_stops_the_action_before_journal_and_request() {
    let fake = Arc::new(FakePve::host());
    let journal = journal();
    let engine = Engine::new(
        Arc::clone(&fake),
        queue(),
        Some(Arc::clone(&journal.shared)),
    )
    .with_gate(RefuseStops);
    let summary = engine
        .run_pass(&provider(vec![stopped(100), running(101)]), NOW)
        .await
        .expect("pass");
    assert_eq!(summary.succeeded, 1);
    assert_eq!(
        summary.not_run,
        [ActionReport {
            vmid: 100,
            action: "stop",
            detail: "refused by the gate: stops need a signature in this test".to_owned(),
        }]
    );
    assert_eq!(fake.mutations(), ["start 101"]);
    assert!(fake.guest(100).running);
    drop(engine);
    let records = journal.lifecycle();
    assert!(state_names(&records, 100, "stop").is_empty());
}

#[tokio::test(start_paused = true)]
async fn benign_gate_allows_every_planned_action() {
    for action in [
        Action::Start { vmid: 100 },
        Action::Stop { vmid: 100 },
        Action::SetConfig {
            vmid: 100,
            changes: crate::plan::ConfigChanges::default(),
            digest: None,
        },
    ] {
        assert_eq!(BenignGate.decide(&action).await, GateDecision::Allow);
        assert!(runs_without_journal(&action));
    }
    assert_eq!(action_name(&Action::Start { vmid: 1 }), "start");
    assert_eq!(action_name(&Action::Stop { vmid: 1 }), "stop");
    assert_eq!(
        action_name(&Action::SetConfig {
            vmid: 1,
            changes: crate::plan::ConfigChanges::default(),
            digest: None
        }),
        "set_config"
    );
}

#[tokio::test(start_paused = true)]
async fn cancelling_while_waiting_leaves_the_op_for_recovery() {
    let fake = Arc::new(FakePve::host());
    fake.state().task_duration = Duration::from_secs(3600);
    let journal = journal();
    let options = EngineOptions::default();
    let cancel = options.cancel.clone();
    let engine = Engine::new(
        Arc::clone(&fake),
        queue(),
        Some(Arc::clone(&journal.shared)),
    )
    .with_options(options);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        cancel.cancel();
    });
    let summary = engine
        .run_pass(&provider(vec![running(101)]), NOW)
        .await
        .expect("pass");
    assert_eq!(summary.interrupted.len(), 1, "{summary:#?}");
    assert!(summary.interrupted[0]
        .detail
        .contains("may still be running"));
    assert_eq!(summary.mutations, 1);
    let in_flight = journal.in_flight();
    assert_eq!(in_flight.len(), 1);
    assert!(
        matches!(&in_flight[0].state, OpState::TaskRunning { upid } if upid.contains("vzstart"))
    );

    // A pass after the cancel sends nothing and journals nothing.
    let after = engine
        .run_pass(&provider(vec![stopped(100)]), NOW)
        .await
        .expect("pass");
    assert_eq!(after.not_run.len(), 1);
    assert_eq!(after.not_run[0].detail, "cancelled before it started");
    assert_eq!(after.mutations, 0);
    assert!(fake.guest(100).running);
    assert_eq!(journal.in_flight().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_action_whose_start_cannot_be_journaled_is_not_sent() {
    let fake = Arc::new(FakePve::host());
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = Arc::new(FaultyFs::new(RealFs));
    let (journal, _) = OpJournal::open_with(dir.path().join("ops.log"), Arc::clone(&fs) as _)
        .expect("open journal");
    fs.fail_write(true);
    let engine = Engine::new(
        Arc::clone(&fake),
        queue(),
        Some(Arc::new(Mutex::new(journal))),
    );
    let summary = engine
        .run_pass(&provider(vec![running(101)]), NOW)
        .await
        .expect("pass");
    assert_eq!(summary.failed.len(), 1);
    assert!(
        summary.failed[0]
            .detail
            .starts_with("not sent: cannot journal its start: "),
        "{}",
        summary.failed[0].detail
    );
    assert_eq!(summary.mutations, 0);
    assert!(fake.mutations().is_empty());
    assert!(!fake.guest(101).running);
}

#[tokio::test(start_paused = true)]
async fn a_closed_queue_runs_nothing() {
    let fake = Arc::new(FakePve::host());
    let queue = queue();
    queue.close().await;
    let engine = Engine::new(Arc::clone(&fake), queue, None);
    let summary = engine
        .run_pass(&provider(vec![running(101)]), NOW)
        .await
        .expect("pass");
    assert_eq!(summary.not_run.len(), 1);
    assert_eq!(summary.not_run[0].detail, "job queue is closed");
    assert!(fake.mutations().is_empty());
}

#[tokio::test]
async fn summary_and_engine_read_well() {
    let summary = PassSummary {
        desired_guests: 3,
        actual_guests: 4,
        planned: 2,
        succeeded: 1,
        failed: vec![ActionReport {
            vmid: 101,
            action: "start",
            detail: "x".to_owned(),
        }],
        mutations: 2,
        ..PassSummary::default()
    };
    assert_eq!(
        summary.to_string(),
        "3 desired, 4 on host; planned 2: 1 succeeded (0 with warnings), 1 failed, \
         0 interrupted, 0 not run, 0 pending signature, 0 still running, 0 busy; 0 skipped; 2 \
         mutating requests"
    );
    assert!(!summary.changed_nothing());
    let engine = Engine::new(Arc::new(FakePve::new()), queue(), None);
    let debug = format!("{engine:?}");
    assert!(debug.starts_with("Engine { queue: Queue {"), "{debug}");
    assert!(debug.contains("journal: false"), "{debug}");
}

#[tokio::test(start_paused = true)]
async fn pass_clock_advances_with_tokio_time() {
    let clock = PassClock::new(NOW);
    assert_eq!(clock.now(), NOW);
    tokio::time::sleep(Duration::from_secs(90)).await;
    assert_eq!(clock.now(), NOW + 90);
}

fn assert_send<T: Send>(_: &T) {}

#[tokio::test]
async fn pass_and_recovery_futures_can_be_spawned() {
    let engine = Engine::new(Arc::new(FakePve::new()), queue(), None);
    let desired = provider(vec![running(100)]);
    let pass = engine.run_pass(&desired, NOW);
    assert_send(&pass);
    let journal = journal();
    let fake = FakePve::new();
    let recovery = crate::recovery::recover(&fake, &journal.shared, NOW);
    assert_send(&recovery);
    // and they still run
    assert!(pass.await.is_ok());
    assert!(recovery.await.is_ok());
}

/// What the probe saw at one step: the step, the guest, the action, and the latest state of
/// that op already on disk.
type Seen = (OpStep, u32, &'static str, Option<&'static str>);

#[tokio::test(start_paused = true)]
async fn the_step_probe_sees_each_step_with_the_journal_already_on_disk() {
    let fake = Arc::new(FakePve::host());
    let journal = journal();
    let path = journal.path.clone();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let probe = StepProbe::new(move |step, vmid, action| {
        let on_disk = felhom_journal::repair::inspect::<OpRecord>(&path).expect("inspect");
        let latest = on_disk
            .before
            .iter()
            .rev()
            .find(|r| r.vmid == Some(vmid) && r.action == action)
            .map(|r| r.state.name());
        sink.lock()
            .expect("probe log")
            .push((step, vmid, action, latest));
    });
    let engine = Engine::new(
        Arc::clone(&fake),
        queue(),
        Some(Arc::clone(&journal.shared)),
    )
    .with_options(EngineOptions {
        step_probe: Some(probe),
        ..EngineOptions::default()
    });
    let summary = engine
        .run_pass(&provider(vec![running(101), cores(100, 3)]), NOW)
        .await
        .expect("pass");
    assert_eq!(summary.succeeded, 2, "{summary:#?}");
    let seen = seen.lock().expect("probe log").clone();
    let of = |vmid: u32| -> Vec<(&'static str, Option<&'static str>)> {
        seen.iter()
            .filter(|s| s.1 == vmid)
            .map(|s| (s.0.name(), s.3))
            .collect()
    };
    assert_eq!(
        of(101),
        [
            ("before-started", None),
            ("after-started", Some("started")),
            ("after-request", Some("started")),
            ("after-task-running", Some("task_running")),
            ("after-task-end", Some("task_running")),
        ]
    );
    // A synchronous config write has no task: its steps end at the answer.
    assert_eq!(
        of(100),
        [
            ("before-started", None),
            ("after-started", Some("started")),
            ("after-request", Some("started")),
        ]
    );
    assert!(seen
        .iter()
        .all(|s| s.2 == if s.1 == 101 { "start" } else { "set_config" }));
    for step in OpStep::ALL {
        assert_eq!(OpStep::from_name(step.name()), Some(step));
    }
    assert_eq!(OpStep::from_name("after-post"), None);
}
