//! Restore tests in the daemon (issue 16): the built binary against pve-sim and hub-sim, a
//! round right after start, its result in the next reports in the golden shape; a SIGKILL in
//! the middle of a test (the crash seam), and the next start destroying the scratch guest and
//! reporting the test `interrupted`.

use std::time::Duration;

use felhom_hub_proto::golden_file::report_shape_check;
use felhom_hub_proto::RestoreTest;
use felhom_journal::OpJournal;
use serde_json::{json, Value};

use crate::support::Env;

const FLOOR: (&str, &str) = ("FELHOM_AGENT_TEST_POLL_FLOOR_MS", "200");
const WAIT: Duration = Duration::from_secs(25);

fn enable(env: &Env) {
    let mut doc: Value = env.config_doc();
    doc["restore_tests"] = json!({
        "enabled": true,
        "storage": "local-lvm",
        "vmid_range": "9000-9009",
        "boot_timeout_seconds": 10
    });
    // Any free port: the test reads it from the daemon's log.
    doc["metrics"] = json!({ "listen": "127.0.0.1:0" });
    env.write_config(doc);
}

/// The first report whose `restore_tests` is not empty, waiting for it.
async fn first_with_tests(env: &Env) -> (Vec<RestoreTest>, Value) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(r) = env
            .hub
            .reports()
            .into_iter()
            .find(|r| !r.report.restore_tests.is_empty())
        {
            return (r.report.restore_tests.clone(), r.raw.clone());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no report with restore_tests within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_tests_a_backup_and_reports_it_in_the_golden_shape() {
    let env = Env::start(1).await;
    enable(&env);
    let daemon = env.spawn(&[], &[FLOOR]);
    let (tests, raw) = first_with_tests(&env).await;
    // The same result is counted in the metrics, by outcome.
    let addr = daemon.metrics_addr(WAIT).await;
    // The round is counted when it returns, a moment after its result reached the report.
    let deadline = tokio::time::Instant::now() + WAIT;
    let (ok, boot_failed, body) = loop {
        let (status, body) = felhom_testkit::metrics::get(&addr, WAIT)
            .await
            .expect("scraped");
        assert!(status.contains("200"), "{status}");
        let scrape = felhom_testkit::metrics::Scrape::parse(&body).expect("the scrape parses");
        let count = |outcome: &str| {
            scrape
                .value("felhom_restore_tests_total", &[("outcome", outcome)])
                .unwrap_or(-1.0)
        };
        let (ok, boot_failed) = (count("ok"), count("boot_failed"));
        if ok >= 1.0 || tokio::time::Instant::now() > deadline {
            break (ok, boot_failed, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((ok, boot_failed), (1.0, 0.0), "{body}");
    let log = daemon.stop().await;
    assert_eq!(tests.len(), 1, "{tests:?}\n{log}");
    let t = &tests[0];
    assert_eq!(
        (t.vmid, t.ok, t.outcome.as_str(), t.scratch_vmid),
        (100, true, "ok", Some(9000)),
        "{t:?}\n{log}"
    );
    assert!(t.volid.starts_with("local:backup/vzdump-lxc-100-"), "{t:?}");
    if let Err(e) = report_shape_check(&raw) {
        panic!("{e}");
    }
    let state = env.pve.state();
    assert!(state.guest(9000).is_none(), "the scratch guest is gone");
    let tasks: Vec<String> = state
        .tasks()
        .into_iter()
        .map(|t| format!("{}:{}", t.task_type, t.id))
        .collect();
    assert_eq!(
        tasks,
        [
            "vzrestore:9000",
            "vzstart:9000",
            "vzstop:9000",
            "vzdestroy:9000"
        ]
    );
    assert!(log.contains("restore tests: round done"), "{log}");
    // The destroy was benign by provenance: audited as such in the gate's durable tail.
    let reports = env.hub.reports();
    let audit = &reports.last().unwrap().report.audit_tail;
    assert!(
        audit.iter().any(|e| e.action == "destroy_guest"
            && e.vmid == Some(9000)
            && e.decision == "allowed"
            && e.reason.as_deref() == Some("agent_created")),
        "{audit:?}"
    );
    // Every op closed; the results file holds the test for the next start.
    let (journal, _) = OpJournal::open(env.path("journal.log")).unwrap();
    assert!(journal.in_flight().is_empty(), "{:?}", journal.in_flight());
    assert!(env.path("restore-tests.log").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_test_is_recovered_at_the_next_start_and_reported_interrupted() {
    let env = Env::start(1).await;
    enable(&env);
    // SIGKILL once the scratch guest's start task has ended, before it is journaled.
    let crashing = env.spawn(
        &[],
        &[
            FLOOR,
            ("FELHOM_AGENT_TEST_CRASH_AT", "after-task-end@start:1"),
        ],
    );
    let (status, log) = crashing.wait(WAIT).await;
    assert!(!status.success(), "{log}");
    let state = env.pve.state();
    assert!(
        state.guest(9000).is_some_and(|g| g.running),
        "the scratch guest was left running\n{log}"
    );

    let daemon = env.spawn(&[], &[FLOOR]);
    let (tests, raw) = first_with_tests(&env).await;
    let log = daemon.stop().await;
    let t = &tests[0];
    assert_eq!(
        (
            t.vmid,
            t.outcome.as_str(),
            t.reason.as_deref(),
            t.scratch_vmid
        ),
        (100, "interrupted", Some("scratch_destroyed"), Some(9000)),
        "{t:?}\n{log}"
    );
    assert!(state.guest(9000).is_none(), "destroyed at startup\n{log}");
    if let Err(e) = report_shape_check(&raw) {
        panic!("{e}");
    }
    // The interrupted test counts as this round: no new test ran after the restart.
    let restores = state
        .tasks()
        .into_iter()
        .filter(|t| t.task_type == "vzrestore")
        .count();
    assert_eq!(restores, 1, "{log}");
    let (journal, _) = OpJournal::open(env.path("journal.log")).unwrap();
    assert!(journal.in_flight().is_empty(), "{:?}", journal.in_flight());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_restore_test_runs_while_the_hub_blocks_the_host() {
    let env = Env::start(1).await;
    let mut envelope = env.hub.envelope();
    envelope.blocked = Some(true);
    env.hub.set_envelope(envelope.clone());
    enable(&env);
    let daemon = env.spawn(&[], &[FLOOR]);
    // Several reports while blocked: no restore was attempted.
    env.hub.wait_for_reports(4, WAIT).await.expect("reports");
    let restores = |env: &Env| {
        env.pve
            .state()
            .tasks()
            .into_iter()
            .filter(|t| t.task_type == "vzrestore")
            .count()
    };
    assert_eq!(restores(&env), 0, "{}", daemon.log());
    assert!(env
        .hub
        .reports()
        .iter()
        .all(|r| r.report.restore_tests.is_empty()));
    // Unblocked: the round runs.
    envelope.blocked = Some(false);
    env.hub.set_envelope(envelope);
    let (tests, _) = first_with_tests(&env).await;
    let log = daemon.stop().await;
    assert_eq!(tests[0].outcome, "ok", "{log}");
    assert_eq!(restores(&env), 1, "{log}");
}
