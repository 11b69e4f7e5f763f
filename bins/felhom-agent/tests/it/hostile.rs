//! The daemon in a hostile environment (issue 10), end to end: a second instance on the same
//! config, a desired-state file that blocks on open, signals other than SIGTERM, a hub whose
//! answers say nothing about a block, a broken journal, and silent desired-state cases.

use std::time::Duration;

use felhom_hub_proto::ControlEnvelope;
use felhom_pve_sim::HubFault;
use serde_json::json;

use crate::support::Env;

const FLOOR: (&str, &str) = ("FELHOM_AGENT_TEST_POLL_FLOOR_MS", "200");
const WAIT: Duration = Duration::from_secs(15);
const START: &str = "POST /nodes/{node}/lxc/{vmid}/status/start";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_config_refuses_to_start_and_names_the_first() {
    let env = Env::start(1).await;
    // A start slow enough that both daemons would plan it, were both running.
    env.pve
        .faults()
        .slow_tasks(Some("vzstart"), Duration::from_millis(1500));
    env.desire(json!({ "guests": [{ "vmid": 101, "run_state": "running" }] }));
    let first = env.spawn(&[], &[FLOOR]);
    first.wait_for_lines(&["op journal opened"], 1, WAIT).await;
    let second = env.spawn(&[], &[FLOOR]);
    let (status, log) = second.wait(WAIT).await;
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(
        log.contains(&format!("is locked by process {}", first.pid())),
        "{log}"
    );
    assert!(log.contains("Refusing to start a second daemon"), "{log}");
    assert!(!log.contains("JOURNAL-LESS"), "{log}");

    // The first converges alone: one start request, then passes that plan nothing.
    first
        .wait_for_lines(&["reconcile pass done", "planned 1:"], 1, WAIT)
        .await;
    first
        .wait_for_lines(&["reconcile pass done", "planned 0:"], 2, WAIT)
        .await;
    assert_eq!(env.pve.state().requests_to(START), 1);
    assert!(env.pve.state().guest(101).unwrap().running);
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_as_desired_state_is_refused_and_sigterm_still_exits_in_time() {
    let env = Env::start(1).await;
    let fifo = env.path("desired.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let mut doc = env.config_doc();
    doc["reconcile"] = json!({ "desired_state_file": fifo });
    env.write_config(doc);
    let daemon = env.spawn(&[], &[FLOOR]);
    // Each pass fails with a line naming the file; reports go on.
    daemon
        .wait_for_lines(
            &["reconcile pass failed", "is a FIFO, not a regular file"],
            2,
            WAIT,
        )
        .await;
    env.hub
        .wait_for_reports(2, WAIT)
        .await
        .expect("reports go on");
    let stopping = std::time::Instant::now();
    let log = daemon.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(5), "{log}");
    assert_eq!(env.pve.state().accepted_mutations(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_sigusr1_and_sigquit_are_logged_and_the_daemon_runs_on() {
    let env = Env::start(1).await;
    let daemon = env.spawn(&[], &[FLOOR]);
    daemon
        .wait_for_lines(&["felhom-agent ready"], 1, WAIT)
        .await;
    for (name, line) in [
        (
            "HUP",
            "SIGHUP: the desired-state file is re-read on every pass",
        ),
        ("USR1", "signal=\"SIGUSR1\""),
        ("QUIT", "signal=\"SIGQUIT\""),
    ] {
        let before = env.hub.report_count();
        daemon.signal(name);
        daemon.wait_for_lines(&[line], 1, WAIT).await;
        // Still alive and reporting.
        env.hub
            .wait_for_reports(before + 1, WAIT)
            .await
            .unwrap_or_else(|_| panic!("no report after SIG{name}; log:\n{}", daemon.log()));
    }
    let log = daemon.stop().await;
    assert!(log.contains("queue drained"), "{log}");
    assert_eq!(log.matches("Running on").count(), 3, "{log}");
}

fn blocked(b: Option<bool>) -> ControlEnvelope {
    ControlEnvelope {
        poll_interval_seconds: Some(1),
        blocked: b,
        ..ControlEnvelope::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_explicit_false_lifts_a_block_and_a_restart_keeps_it() {
    let env = Env::start(1).await;
    env.hub.set_envelope(blocked(Some(true)));
    env.desire(json!({ "guests": [{ "vmid": 101, "run_state": "running" }] }));
    let daemon = env.spawn(&[], &[FLOOR]);
    daemon
        .wait_for_lines(
            &["the hub has blocked this host: reporting continues"],
            1,
            WAIT,
        )
        .await;
    // A truncated envelope, envelopes without `blocked`, then a 204: none lifts it. (An empty
    // answer carries no interval either, so the 204 comes last: the next beat is 60 s away.)
    let n = env.hub.report_count();
    env.hub
        .faults()
        .fail_next(1, HubFault::Body(200, r#"{"blocked":fa"#.into()));
    env.hub.set_envelope(blocked(None));
    env.hub
        .wait_for_reports(n + 3, WAIT)
        .await
        .expect("reports go on");
    daemon
        .wait_for_lines(&["host report failed", "invalid envelope"], 1, WAIT)
        .await;
    env.hub
        .faults()
        .fail_next(1, HubFault::Body(204, String::new()));
    // The 204 carries no interval, so the daemon goes back to its configured 60 s: that line
    // marks the 204's beat; the pass after it must still be skipped.
    daemon
        .wait_for_lines(&["poll interval changed", "to_seconds=60"], 1, WAIT)
        .await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let log = daemon.log();
        let beat = log.rfind("to_seconds=60").unwrap();
        if log[beat..].contains("reconcile pass skipped") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no pass after the 204:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let requests = env.hub.requests();
    assert!(requests.iter().any(|r| r.status == 204), "{requests:?}");
    assert_eq!(env.pve.state().requests_to(START), 0);
    assert!(!env.pve.state().guest(101).unwrap().running);
    let log = daemon.stop().await;
    assert_eq!(
        log.matches("the hub has blocked this host: reporting continues")
            .count(),
        1,
        "logged once per change:\n{log}"
    );
    assert!(!log.contains("lifted"), "{log}");

    // Restarted while the hub says nothing about a block: still blocked.
    let daemon = env.spawn(&[], &[FLOOR]);
    daemon
        .wait_for_lines(&["blocked this host before the restart"], 1, WAIT)
        .await;
    let n = env.hub.report_count();
    env.hub
        .wait_for_reports(n + 2, WAIT)
        .await
        .expect("reports go on");
    assert_eq!(env.pve.state().requests_to(START), 0);

    // An explicit `false` lifts it; the next pass applies the desired state.
    env.hub.set_envelope(blocked(Some(false)));
    daemon
        .wait_for_lines(&["reconcile pass done", "planned 1:"], 1, WAIT)
        .await;
    assert!(env.pve.state().guest(101).unwrap().running);
    let log = daemon.stop().await;
    assert!(log.contains("the hub has lifted its block"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_less_mode_is_in_every_report_and_in_systemds_status() {
    let env = Env::start(1).await;
    // Damage in the middle of the journal: corruption, not a torn tail.
    std::fs::write(env.path("journal.log"), "garbage\nmore garbage\n").unwrap();
    let socket_path = env.path("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&socket_path).unwrap();
    let daemon = env.spawn(
        &[],
        &[FLOOR, ("NOTIFY_SOCKET", socket_path.to_str().unwrap())],
    );
    let reports = env.hub.wait_for_reports(2, WAIT).await.expect("reports");
    for r in &reports {
        assert_eq!(r.raw["journal"]["state"], "journal_less", "{}", r.raw);
        let reason = r.raw["journal"]["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("journal.log"), "{reason}");
    }
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, socket.recv(&mut buf))
        .await
        .expect("a notification")
        .unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.contains("STATUS=JOURNAL-LESS MODE ("), "{first}");
    let log = daemon.stop().await;
    assert!(log.contains("felhom-agent journal inspect"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_journal_is_reported_ok() {
    let env = Env::start(60).await;
    let daemon = env.spawn(&[], &[]);
    let reports = env.hub.wait_for_reports(1, WAIT).await.expect("a report");
    assert_eq!(reports[0].raw["journal"], json!({ "state": "ok" }));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desired_guest_not_on_the_host_and_an_unaligned_size_are_said() {
    let env = Env::start(1).await;
    env.desire(json!({ "guests": [
        { "vmid": 555, "run_state": "running" },
        { "vmid": 100, "spec": { "memory_bytes": 2_147_483_649u64 } }
    ]}));
    let daemon = env.spawn(&[], &[FLOOR]);
    daemon
        .wait_for_lines(&["reconcile pass done"], 3, WAIT)
        .await;
    let log = daemon.stop().await;
    let passes = log.matches("reconcile pass done").count();
    let missing: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("not on this host") && l.contains("555"))
        .collect();
    // Once per pass (a last pass may have been cut short by the stop after its warning).
    assert!(
        passes >= 3 && (passes..=passes + 1).contains(&missing.len()),
        "{passes} passes, {} warnings:\n{log}",
        missing.len()
    );
    let rounded: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("not a whole MiB"))
        .collect();
    assert_eq!(rounded.len(), 1, "once, not every pass:\n{log}");
    assert!(
        rounded[0].contains("vmid=100") && rounded[0].contains("written_mib=2049"),
        "{}",
        rounded[0]
    );
    assert_eq!(
        env.pve
            .state()
            .guest(100)
            .unwrap()
            .config
            .get("memory")
            .map(String::as_str),
        Some("2049")
    );
}
