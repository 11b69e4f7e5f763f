//! The daemon end to end: the built binary against pve-sim and hub-sim on loopback.
//!
//! Interval adoption runs in real time, so these tests set the test-only environment variable
//! `FELHOM_AGENT_TEST_POLL_FLOOR_MS`: the hub's envelope asks for 1 s and the floor lets the
//! daemon take it. Without it, a 60 s envelope is shown not to cause a second report within
//! seconds.

use std::time::Duration;

use felhom_hub_proto::golden_file::report_shape_check;
use felhom_hub_proto::ControlEnvelope;
use felhom_journal::{OpJournal, OpState};
use felhom_pve_sim::{HttpFault, HubFault, DEFAULT_TOKEN_SECRET};
use serde_json::{json, Value};

use crate::support::{Env, HOST_ID, HUB_KEY};

const FLOOR: [(&str, &str); 1] = [("FELHOM_AGENT_TEST_POLL_FLOOR_MS", "200")];
/// The real-time bound on anything awaited: generous for a slow CI, and under half the 60 s
/// interval these runs configure, so arriving within it still means "without waiting an
/// interval".
const WAIT: Duration = Duration::from_secs(25);

/// The line of `log` warning about the test-only poll floor ("" if none).
fn daemon_warning(log: &str) -> &str {
    log.lines()
        .find(|l| l.contains("WARN") && l.contains("FELHOM_AGENT_TEST_POLL_FLOOR_MS"))
        .unwrap_or_default()
}

/// No secret in any output of a run.
fn assert_no_secrets(log: &str) {
    assert!(
        !log.contains(DEFAULT_TOKEN_SECRET),
        "token secret in the log:\n{log}"
    );
    assert!(!log.contains(HUB_KEY), "hub key in the log:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_report_comes_at_once_with_the_bearer_key_in_the_golden_shape() {
    let env = Env::start(60).await;
    let daemon = env.spawn(&[], &[]);
    // At once: within WAIT, less than the 60 s interval.
    let reports = env.hub.wait_for_reports(1, WAIT).await.expect("a report");
    let first = &reports[0];
    assert_eq!(
        first.authorization(),
        Some(format!("Bearer {HUB_KEY}").as_str())
    );
    assert_eq!(first.report.host_id, HOST_ID);
    assert_eq!(first.report.guests.len(), 2);

    // The golden contract (hub-proto's one check): every key the daemon sends is in the golden
    // file with the same type, and every golden field of every object it sends is there
    // (collections as arrays, never null) unless the contract makes it optional.
    if let Err(e) = report_shape_check(&first.raw) {
        panic!("{e}");
    }

    // The hub asked for 60 s: the daemon's heartbeat goes to sleep for 60 s after the first
    // report (its own log says so; the heartbeat's paused-clock tests prove it keeps to it),
    // and nothing more was reported by the time it stopped.
    daemon
        .wait_for_lines(&["first host report accepted"], 1, WAIT)
        .await;
    let log = daemon.stop().await;
    assert_eq!(env.hub.report_count(), 1);
    assert!(
        !daemon_lines(&log, &["heartbeat started", "interval_seconds=60"]).is_empty(),
        "{log}"
    );
    assert!(!log.contains("poll interval changed"), "{log}");
    assert!(
        log.contains("first host report accepted by the hub"),
        "{log}"
    );
    assert!(log.contains("felhom-agent ready"), "{log}");
    assert!(log.contains("queue drained"), "{log}");
    assert_no_secrets(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adopted_interval_is_honoured() {
    let env = Env::start(1).await;
    let daemon = env.spawn(&[], &FLOOR);
    // Three reports within WAIT (under half the configured 60 s): the hub's 1 s was adopted.
    // The exact interval is the log's (`to_seconds=1`, not the 200 ms floor); that the loop
    // keeps to it is the heartbeat's paused-clock tests' to prove, not a wall-clock gap's.
    env.hub
        .wait_for_reports(3, WAIT)
        .await
        .expect("three reports");
    let log = daemon.stop().await;
    assert!(log.contains("poll interval changed"), "{log}");
    assert!(log.contains("to_seconds=1"), "{log}");
    let warned = daemon_warning(&log);
    assert!(
        warned.contains("FELHOM_AGENT_TEST_POLL_FLOOR_MS is set: test-only poll interval floor")
            && warned.contains("floor_ms=200"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_outage_is_logged_and_the_next_report_still_goes() {
    let env = Env::start(1).await;
    let daemon = env.spawn(&[], &FLOOR);
    env.hub
        .wait_for_reports(1, WAIT)
        .await
        .expect("first report");
    env.hub.faults().fail_next(1, HubFault::Status(500));
    env.hub
        .wait_for_reports(2, WAIT)
        .await
        .expect("a report after the 500");
    env.hub.faults().drop_next(1);
    env.hub
        .wait_for_reports(3, WAIT)
        .await
        .expect("a report after the drop");
    let statuses: Vec<u16> = env.hub.requests().iter().map(|r| r.status).collect();
    assert!(statuses.contains(&500), "{statuses:?}");
    assert!(statuses.contains(&0), "{statuses:?}");
    let log = daemon.stop().await;
    assert!(
        !daemon_lines(&log, &["host report failed", "500"]).is_empty(),
        "{log}"
    );
    assert!(log.contains("host report accepted again"), "{log}");
    assert_no_secrets(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_status_failure_skips_the_post_and_the_loop_goes_on() {
    let env = Env::start(1).await;
    let daemon = env.spawn(&[], &FLOOR);
    env.hub
        .wait_for_reports(1, WAIT)
        .await
        .expect("first report");
    let node_status = format!("/nodes/{}/status", env.pve.node());
    env.pve.faults().fail_next(
        2,
        HttpFault::internal("simulated node status failure").only(Some("GET"), Some(&node_status)),
    );
    daemon
        .wait_for_lines(&["host report skipped: collecting failed"], 1, WAIT)
        .await;
    env.hub
        .wait_for_reports(2, WAIT)
        .await
        .expect("a report after the failure");
    // Nothing was POSTed for the failed collections: every request the hub saw was an
    // accepted report, and no report failed.
    let statuses: Vec<u16> = env.hub.requests().iter().map(|r| r.status).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let log = daemon.stop().await;
    assert!(log.contains("simulated node status failure"), "{log}");
    assert!(!log.contains("host report failed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desired_state_file_converges_the_guests_and_the_next_pass_plans_nothing() {
    let env = Env::start(1).await;
    assert!(!env.pve.state().guest(101).unwrap().running);
    env.desire(json!({ "guests": [
        { "vmid": 101, "run_state": "running" },
        { "vmid": 100, "spec": { "cores": 4, "memory_bytes": 4_294_967_296u64 },
          "description": "web, managed by felhom" }
    ]}));
    let daemon = env.spawn(&[], &FLOOR);
    // The converging pass, then two passes that plan nothing: no flapping on the description
    // PVE hands back with a trailing newline.
    daemon
        .wait_for_lines(&["reconcile pass done", "planned 2:"], 1, WAIT)
        .await;
    daemon
        .wait_for_lines(&["reconcile pass done", "planned 0:"], 2, WAIT)
        .await;

    let state = env.pve.state();
    let web = state.guest(100).unwrap();
    assert!(state.guest(101).unwrap().running);
    assert_eq!(web.config.get("cores").map(String::as_str), Some("4"));
    assert_eq!(web.config.get("memory").map(String::as_str), Some("4096"));
    assert_eq!(web.description.as_deref(), Some("web, managed by felhom\n"));
    let config_path = format!("/nodes/{}/lxc/100/config", env.pve.node());
    assert_eq!(
        state.requests("PUT", &config_path),
        1,
        "one config write, no flapping"
    );

    let log = daemon.stop().await;
    assert_no_secrets(&log);
    // Every op journaled and closed.
    let (journal, _) = OpJournal::open(env.path("journal.log")).unwrap();
    assert!(journal.in_flight().is_empty());
    assert_eq!(journal.len(), 2);
}

/// The reports read configs incrementally (a full resync only every 10th beat), so a write the
/// list does not reveal — a description — must invalidate the cache: the agent's own write shows
/// in the next report, not ten beats later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_own_description_write_shows_in_the_next_reports() {
    let env = Env::start(1).await;
    env.desire(json!({ "guests": [
        { "vmid": 100, "description": "written by the agent" }
    ]}));
    let daemon = env.spawn(&[], &FLOOR);
    daemon
        .wait_for_lines(&["reconcile pass done", "planned 1:"], 1, WAIT)
        .await;
    // Two more passes, so at least two beats ran after the write (a pass follows each beat).
    daemon
        .wait_for_lines(&["reconcile pass done", "planned 0:"], 2, WAIT)
        .await;
    let reports = env.hub.reports();
    let last = &reports.last().expect("reports arrived").report;
    let web = last
        .guests
        .iter()
        .find(|g| g.vmid == 100)
        .expect("guest 100");
    assert_eq!(
        web.description.as_deref().map(str::trim_end),
        Some("written by the agent"),
        "{} reports so far",
        reports.len()
    );
    assert!(
        reports.len() < 10,
        "the slow resync must not be what showed it"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_host_keeps_reporting_and_applies_no_desired_state() {
    let env = Env::start(1).await;
    env.hub.set_envelope(ControlEnvelope {
        poll_interval_seconds: Some(1),
        blocked: Some(true),
        ..ControlEnvelope::default()
    });
    env.desire(json!({ "guests": [{ "vmid": 101, "run_state": "running" }] }));
    // This run also logs as JSON lines.
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&env.config).unwrap()).unwrap();
    doc["log"]["format"] = json!("json");
    env.write_config(doc);
    let daemon = env.spawn(&[], &FLOOR);
    env.hub
        .wait_for_reports(2, WAIT)
        .await
        .expect("reports go on");
    daemon
        .wait_for_lines(&["blocked this host: reconcile pass skipped"], 2, WAIT)
        .await;
    assert!(!env.pve.state().guest(101).unwrap().running);
    // Unblocked (explicitly: an envelope without `blocked` keeps the block): the next pass
    // applies the desired state.
    env.hub.set_envelope(ControlEnvelope {
        poll_interval_seconds: Some(1),
        blocked: Some(false),
        ..ControlEnvelope::default()
    });
    daemon
        .wait_for_lines(&["reconcile pass done", "planned 1:"], 1, WAIT)
        .await;
    assert!(env.pve.state().guest(101).unwrap().running);
    let log = daemon.stop().await;
    assert!(
        log.contains("the hub has blocked this host: reporting continues"),
        "{log}"
    );
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_queue_and_exits_0() {
    let env = Env::start(60).await;
    // A start that takes 1.5 s inside PVE.
    env.pve
        .faults()
        .slow_tasks(Some("vzstart"), Duration::from_millis(1500));
    env.desire(json!({ "guests": [{ "vmid": 101, "run_state": "running" }] }));
    let daemon = env.spawn(&[], &[]);
    let deadline = std::time::Instant::now() + WAIT;
    while !env
        .pve
        .state()
        .tasks()
        .iter()
        .any(|t| t.task_type == "vzstart")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no start task; log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.sigterm();
    // Exiting within WAIT (under the 60 s interval) means the drain did not sleep a beat.
    let (status, log) = daemon.wait(WAIT).await;
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("draining the queue"), "{log}");
    assert!(log.contains("queue drained"), "{log}");
    // The running job was waited for, not abandoned: the op is closed in the journal.
    let (journal, _) = OpJournal::open(env.path("journal.log")).unwrap();
    assert!(journal.in_flight().is_empty(), "{:?}", journal.in_flight());
    assert_eq!(journal.len(), 1);
    let op = journal.get(&journal_op_id(&env)).unwrap();
    assert_eq!(op.state, OpState::Succeeded);
    assert!(env.pve.state().guest(101).unwrap().running);
    // Guests are never stopped on the way out.
    assert!(env.pve.state().guest(100).unwrap().running);
}

/// The drain grace (`DRAIN_GRACE`, 20 s, then `CANCEL_GRACE`, 3 s) bounds a stop: a PVE task
/// that never ends is not waited for past it; the op stays in flight in the journal for the
/// next start's recovery, and the exit is still clean. Runs the real 20 s (a stop waits for
/// real); the only time bound asserted is a generous upper one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_outlives_the_drain_grace_is_left_in_flight_and_the_exit_is_clean() {
    let env = Env::start(60).await;
    env.pve
        .faults()
        .slow_tasks(Some("vzstart"), Duration::from_secs(24 * 3600));
    env.desire(json!({ "guests": [{ "vmid": 101, "run_state": "running" }] }));
    let daemon = env.spawn(&[], &[]);
    let deadline = std::time::Instant::now() + WAIT;
    while !env
        .pve
        .state()
        .tasks()
        .iter()
        .any(|t| t.task_type == "vzstart")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no start task; log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    daemon.sigterm();
    // 20 s of grace, 3 s for jobs to notice the cancel, and WAIT of slack.
    let (status, log) = daemon.wait(Duration::from_secs(23) + WAIT).await;
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("grace_secs=20"), "{log}");
    assert!(log.contains("drain grace over"), "{log}");
    assert!(!log.contains("queue drained"), "{log}");
    // Left for recovery, with the task it belongs to: not closed, not forgotten.
    let (journal, _) = OpJournal::open(env.path("journal.log")).unwrap();
    let in_flight = journal.in_flight();
    assert_eq!(in_flight.len(), 1, "{in_flight:?}");
    assert!(
        matches!(in_flight[0].state, OpState::TaskRunning { .. }),
        "{in_flight:?}"
    );
    // Nothing was sent to PVE to stop or cancel anything on the way out.
    let deletes: Vec<_> = env
        .pve
        .state()
        .request_log()
        .into_iter()
        .filter(|r| r.method == "DELETE" || r.path.ends_with("/status/stop"))
        .collect();
    assert!(deletes.is_empty(), "{deletes:?}");
}

/// The only op in a run's journal.
fn journal_op_id(env: &Env) -> felhom_journal::OpId {
    let text = std::fs::read_to_string(env.path("journal.log")).unwrap();
    let line = text.lines().next().expect("a record");
    let v: Value = serde_json::from_str(line).unwrap();
    let id = v["rec"]["op_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no op id in {line}"));
    felhom_journal::OpId::new(id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_sees_ready_watchdog_and_stopping() {
    let env = Env::start(60).await;
    let socket_path = env.path("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let daemon = env.spawn(
        &[],
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut seen: Vec<String> = Vec::new();
    recv_until(&socket, &mut seen, "READY=1").await;
    // Ready only once the first poll happened: the report is at the hub by then.
    assert_eq!(env.hub.report_count(), 1, "{seen:?}");
    let ready = seen.iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(ready.contains("STATUS=reports: 1 sent"), "{ready}");
    recv_until(&socket, &mut seen, "WATCHDOG=1").await;
    daemon.sigterm();
    recv_until(&socket, &mut seen, "STOPPING=1").await;
    let (status, log) = daemon.wait(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{log}");
    let order: Vec<&str> = seen
        .iter()
        .flat_map(|m| m.lines())
        .filter(|l| matches!(*l, "READY=1" | "STOPPING=1"))
        .collect();
    assert_eq!(order, ["READY=1", "STOPPING=1"], "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_cannot_open_degrades_loudly_and_the_daemon_runs_on() {
    let env = Env::start(60).await;
    let mut doc = env.config_doc();
    // A parent directory that does not exist: the journal cannot be created.
    doc["journal"]["path"] = json!(env.path("missing-dir/journal.log"));
    doc["proxmox"]["tls"] = json!({ "insecure_skip_verify": true });
    let desired = env.path("desired.json");
    std::fs::write(
        &desired,
        r#"{"guests": [{"vmid": 101, "run_state": "running"}]}"#,
    )
    .unwrap();
    doc["reconcile"] = json!({ "desired_state_file": desired });
    env.write_config(doc);
    let daemon = env.spawn(&[], &[]);
    env.hub
        .wait_for_reports(1, WAIT)
        .await
        .expect("reports anyway");
    // Journal-less mode still runs convergent benign actions.
    daemon
        .wait_for_lines(&["reconcile pass done", "planned 1:"], 1, WAIT)
        .await;
    assert!(env.pve.state().guest(101).unwrap().running);
    let log = daemon.stop().await;
    assert!(
        !daemon_lines(
            &log,
            &["ERROR", "JOURNAL-LESS MODE", "missing-dir/journal.log"]
        )
        .is_empty(),
        "{log}"
    );
    assert!(
        !daemon_lines(&log, &["WARN", "insecure_skip_verify is true"]).is_empty(),
        "{log}"
    );
    assert!(!env.path("missing-dir").exists());
    assert_no_secrets(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_recovery_closes_an_op_a_crash_left_in_flight() {
    let env = Env::start(60).await;
    // A start PVE ran while "the previous daemon" crashed after journaling its UPID.
    let client = felhom_config::pve::client(
        &felhom_config::Config::load(&env.config, std::iter::empty::<(String, String)>())
            .unwrap()
            .proxmox,
    )
    .unwrap();
    use felhom_proxmox::ProxmoxApi as _;
    let upid = client.start(101).await.expect("start posted");
    {
        let (mut journal, _) = OpJournal::open(env.path("journal.log")).unwrap();
        let id = journal.started(Some(101), "start", None, 1).unwrap();
        journal.task_running(&id, &upid.to_string(), 2).unwrap();
        let before_crash = journal.started(Some(100), "set_config", None, 3).unwrap();
        assert_eq!(journal.in_flight().len(), 2, "{before_crash}");
    }
    let daemon = env.spawn(&[], &[]);
    daemon
        .wait_for_lines(&["startup recovery closed the ops"], 1, WAIT)
        .await;
    env.hub
        .wait_for_reports(1, WAIT)
        .await
        .expect("then reports");
    // The hub records a report before the daemon has read the answer: wait for the daemon's
    // own line, or a stop could cancel the beat between the two.
    daemon
        .wait_for_lines(&["first host report accepted"], 1, WAIT)
        .await;
    let log = daemon.stop().await;
    // Recovery came before the first report.
    let recovered = log.find("startup recovery closed the ops").unwrap();
    let reported = log.find("first host report accepted").unwrap();
    assert!(recovered < reported, "{log}");
    let (journal, _) = OpJournal::open(env.path("journal.log")).unwrap();
    assert!(journal.in_flight().is_empty(), "{:?}", journal.in_flight());
}

/// Receives notifications into `seen` until one has the line `want`.
async fn recv_until(socket: &tokio::net::UnixDatagram, seen: &mut Vec<String>, want: &str) {
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + WAIT;
    while !seen.iter().any(|m| m.lines().any(|l| l == want)) {
        let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {want} in {seen:?}"))
            .unwrap();
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
}

fn daemon_lines(log: &str, needles: &[&str]) -> Vec<String> {
    log.lines()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .map(str::to_owned)
        .collect()
}
