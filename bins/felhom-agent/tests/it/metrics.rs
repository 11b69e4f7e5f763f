//! `/metrics` end to end: the built daemon against pve-sim and hub-sim, scraped over a plain
//! TCP GET and read with a Prometheus text parser (`felhom_testkit::metrics`, a grammar, not
//! string matching); the values are checked against what the simulators saw. And the endpoint
//! is off by default: no listening socket at all.

use std::collections::BTreeSet;
use std::time::Duration;

use felhom_pve_sim::HubFault;
use felhom_testkit::metrics::{self, Scrape};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::Env;

const FLOOR: [(&str, &str); 1] = [("FELHOM_AGENT_TEST_POLL_FLOOR_MS", "200")];
const WAIT: Duration = Duration::from_secs(25);

/// Sets `metrics.listen` in the config the env wrote.
fn listen_on(env: &Env, listen: &str) {
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&env.config).unwrap()).unwrap();
    doc["metrics"] = json!({ "listen": listen });
    env.write_config(doc);
}

/// `GET /metrics`: status line and body.
async fn scrape(addr: &str) -> (String, String) {
    metrics::get(addr, WAIT).await.expect("scraped")
}

/// Inodes of the TCP sockets in LISTEN state on this host (`/proc/net/tcp{,6}`).
fn listening_inodes() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if cols.len() > 9 && cols[3] == "0A" {
                out.insert(cols[9].to_owned());
            }
        }
    }
    out
}

/// How many listening TCP sockets process `pid` holds.
fn listening_sockets_of(pid: u32) -> usize {
    let listening = listening_inodes();
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the daemon's fds")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy().into_owned();
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .filter(|inode| listening.contains(inode))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_after_a_converging_run_matches_what_the_simulators_saw() {
    let env = Env::start(1).await;
    env.desire(json!({ "guests": [
        { "vmid": 101, "run_state": "running" },
        { "vmid": 100, "spec": { "cores": 4 }, "description": "web, managed by felhom" }
    ]}));
    listen_on(&env, "127.0.0.1:0");
    let started_unix = time::OffsetDateTime::now_utc().unix_timestamp();
    let daemon = env.spawn(&[], &FLOOR);
    let addr = daemon.metrics_addr(WAIT).await;
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    // Once the 1 s interval is adopted, one report is refused: a failure by reason, then
    // reports flow again.
    env.hub
        .wait_for_reports(1, WAIT)
        .await
        .expect("first report");
    env.hub.faults().fail_next(1, HubFault::Status(503));
    env.hub
        .wait_for_reports(3, WAIT)
        .await
        .expect("reports after the 503");
    daemon
        .wait_for_lines(&["reconcile pass done", "planned 2:"], 1, WAIT)
        .await;
    daemon
        .wait_for_lines(&["reconcile pass done", "planned 0:"], 2, WAIT)
        .await;
    // The listener is the daemon's one listening socket.
    assert_eq!(listening_sockets_of(daemon.pid()), 1);

    // The daemon keeps polling every second: compare a scrape taken between two identical
    // readings of the simulators (no request answered meanwhile) once the agent has recorded
    // every answer (no request in flight), retrying until such a moment.
    let deadline = tokio::time::Instant::now() + WAIT;
    let (scrape_text, sim_counts, hub_reports) = loop {
        let before = env.pve.state().requests_by_template();
        let reports_before = env.hub.report_count();
        let (status, body) = scrape(&addr).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let after = env.pve.state().requests_by_template();
        if before == after && reports_before == env.hub.report_count() {
            let s = Scrape::parse(&body).expect("the scrape parses");
            let agent_total: f64 = s.sum("felhom_pve_requests_total", &[]);
            let sim_total: u64 = after.values().sum();
            let sent = s.value("felhom_reports_sent_total", &[]);
            if agent_total == sim_total as f64 && sent == Some(reports_before as f64) {
                break (body, after, reports_before);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no quiet moment to compare in"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let s = Scrape::parse(&scrape_text).unwrap();

    // Reports: every accepted one counted, the refused one by its reason, the time recent.
    let sent = s.value("felhom_reports_sent_total", &[]).unwrap();
    assert!(sent >= 3.0, "{sent}");
    assert_eq!(sent, hub_reports as f64);
    assert_eq!(
        s.value("felhom_reports_failed_total", &[("reason", "http")]),
        Some(1.0)
    );
    let last = s
        .value("felhom_last_report_success_timestamp_seconds", &[])
        .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        last >= started_unix as f64 && last <= now as f64,
        "{last} not in [{started_unix}, {now}]"
    );
    // The hub's 1 s wish, adopted through the test floor (counted from the beat's start).
    let next_in = s.value("felhom_report_interval_seconds", &[]).unwrap();
    assert!(next_in > 0.0 && next_in <= 1.0, "{next_in}");

    // Actions: one start and one config write, each accepted by PVE and ended ok.
    let mutations = env.pve.state().accepted_mutations();
    assert_eq!(mutations, 2);
    assert_eq!(s.sum("felhom_actions_started_total", &[]), mutations as f64);
    assert_eq!(
        s.value("felhom_actions_started_total", &[("kind", "start")]),
        Some(1.0)
    );
    assert_eq!(
        s.sum("felhom_actions_finished_total", &[("outcome", "ok")]),
        2.0
    );
    assert_eq!(
        s.value("felhom_pve_task_wait_seconds", &[("kind", "start")]),
        Some(1.0)
    );
    // Both went through the gate as plain benign allows.
    assert_eq!(
        s.value(
            "felhom_gate_decisions_total",
            &[("class", "benign"), ("decision", "allowed")]
        ),
        Some(2.0)
    );
    assert!(s.sum("felhom_reconcile_passes_total", &[("result", "ok")]) >= 3.0);

    // PVE requests: per endpoint template, exactly what the simulator answered for the same
    // schema template (its `METHOD /path/{param}` key).
    let mut agent_templates = BTreeSet::new();
    for series in s.series() {
        if series.family != "felhom_pve_requests_total" {
            continue;
        }
        let key = format!(
            "{} {}",
            series.label("method").unwrap(),
            series.label("endpoint").unwrap()
        );
        agent_templates.insert(key.clone());
        let agent = s.sum(
            "felhom_pve_requests_total",
            &[
                ("method", series.label("method").unwrap()),
                ("endpoint", series.label("endpoint").unwrap()),
            ],
        );
        assert_eq!(
            Some(agent as u64),
            sim_counts.get(&key).copied(),
            "{key}: agent {agent}, sim {sim_counts:?}"
        );
    }
    assert_eq!(
        agent_templates,
        sim_counts.keys().cloned().collect::<BTreeSet<_>>()
    );
    assert!(
        agent_templates.contains("POST /nodes/{node}/lxc/{vmid}/status/start"),
        "{agent_templates:?}"
    );
    assert!(
        s.value(
            "felhom_pve_request_duration_seconds",
            &[
                ("endpoint", "/nodes/{node}/lxc/{vmid}/config"),
                ("method", "GET")
            ]
        )
        .unwrap()
            >= 1.0
    );

    // Bounded cardinality: no label names a guest or a task.
    assert_eq!(s.instance_labels(), Vec::<String>::new());

    // The journal: each op's transitions written and fsynced; nothing queued now.
    let appends = s.value("felhom_journal_appends_total", &[]).unwrap();
    assert!(appends >= 4.0, "{appends}");
    assert!(s.value("felhom_journal_fsync_seconds", &[]).unwrap() >= appends);
    assert_eq!(s.value("felhom_queue_depth", &[]), Some(0.0));
    assert_eq!(
        s.value(
            "felhom_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    // Restore tests are not run by this version yet: every outcome is there, at 0.
    for outcome in [
        "ok",
        "restore_failed",
        "boot_failed",
        "cleanup_failed",
        "interrupted",
    ] {
        assert_eq!(
            s.value("felhom_restore_tests_total", &[("outcome", outcome)]),
            Some(0.0),
            "{outcome}"
        );
    }

    // Another path is a 404, and the daemon still stops cleanly with the listener up.
    let mut other = tokio::net::TcpStream::connect(&addr).await.unwrap();
    other
        .write_all(b"GET /nodes/pve/lxc/101 HTTP/1.1\r\nHost: agent\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    other.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_is_off_by_default() {
    let env = Env::start(1).await;
    let daemon = env.spawn(&[], &FLOOR);
    env.hub.wait_for_reports(2, WAIT).await.expect("reports");
    assert_eq!(
        listening_sockets_of(daemon.pid()),
        0,
        "no listener without metrics.listen"
    );
    let log = daemon.stop().await;
    assert!(!log.contains("metrics listening"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_logged_and_the_daemon_runs_on_without_metrics() {
    let env = Env::start(1).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    listen_on(&env, &addr.to_string());
    let daemon = env.spawn(&[], &FLOOR);
    env.hub
        .wait_for_reports(2, WAIT)
        .await
        .expect("reports flow without metrics");
    assert_eq!(listening_sockets_of(daemon.pid()), 0);
    let log = daemon.stop().await;
    assert!(
        log.contains(&format!("metrics.listen {addr}: cannot listen"))
            && log.contains("metrics endpoint disabled"),
        "{log}"
    );
    drop(taken);
}
