//! Hub-served intent end to end: the built daemon against HubSim and the PVE simulator over
//! real TLS. The envelope's `desired_generation` drives fetches (counted at the hub), the
//! served desired state converges the guests, every hub fault changes nothing, a restart
//! during a hub outage converges toward the last served intent, `blocked` stops both paths
//! while reports continue, and signed ops are fetched and submitted to the gate (with no signers
//! configured: refused `no_signers`, audited, never executed; the signed-op matrix is in
//! `signed_ops.rs`).

use std::time::Duration;

use felhom_hub_proto::{
    ControlEnvelope, DesiredGuestEntry, DesiredRunState, DesiredSpec, DesiredStateBody,
    SignedOpEntry, DESIRED_STATE_PATH, HOST_REPORT_PATH, SIGNED_OPS_PATH,
};
use felhom_pve_sim::{reserialized_blob, HubFault};

use crate::support::{Daemon, Env};

const FLOOR: [(&str, &str); 1] = [("FELHOM_AGENT_TEST_POLL_FLOOR_MS", "200")];
const WAIT: Duration = Duration::from_secs(20);
const GIB: u64 = 1024 * 1024 * 1024;

fn desired(generation: u64, run_101: DesiredRunState, cores_100: u64) -> DesiredStateBody {
    DesiredStateBody {
        generation,
        guests: vec![
            DesiredGuestEntry {
                vmid: 101,
                run_state: Some(run_101),
                ..DesiredGuestEntry::default()
            },
            DesiredGuestEntry {
                vmid: 100,
                spec: Some(DesiredSpec {
                    cores: Some(cores_100),
                    memory_bytes: Some(4 * GIB),
                    ..DesiredSpec::default()
                }),
                present: Some(true),
                ..DesiredGuestEntry::default()
            },
        ],
    }
}

fn cores(env: &Env, vmid: u32) -> Option<String> {
    env.pve
        .state()
        .guest(vmid)
        .and_then(|g| g.config.get("cores").cloned())
}

async fn wait_line(daemon: &Daemon, needles: &[&str]) {
    daemon.wait_for_lines(needles, 1, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_desired_state_converges_once_per_generation_and_hub_faults_change_nothing() {
    let env = Env::start(1).await;
    assert!(!env.pve.state().guest(101).unwrap().running);
    env.hub
        .publish_desired(desired(1, DesiredRunState::Running, 4));
    let daemon = env.spawn(&[], &FLOOR);
    // A start and a resize converge; later passes plan nothing.
    wait_line(&daemon, &["reconcile pass done", "planned 2:"]).await;
    daemon
        .wait_for_lines(&["reconcile pass done", "planned 0:"], 2, WAIT)
        .await;
    assert!(env.pve.state().guest(101).unwrap().running);
    assert_eq!(cores(&env, 100).as_deref(), Some("4"));
    // Generation caching: many reports, one fetch.
    env.more_reports(3, WAIT).await;
    assert_eq!(env.hub.request_count(DESIRED_STATE_PATH), 1);
    assert_eq!(
        env.hub.request_count(SIGNED_OPS_PATH),
        0,
        "has_signed_ops is false"
    );

    // A new generation is fetched once and converges.
    env.hub
        .publish_desired(desired(2, DesiredRunState::Running, 2));
    wait_line(&daemon, &["reconcile pass done", "planned 1:"]).await;
    assert_eq!(cores(&env, 100).as_deref(), Some("2"));
    env.more_reports(2, WAIT).await;
    assert_eq!(env.hub.request_count(DESIRED_STATE_PATH), 2);

    // Every fault below serves generation 3 (guest 101 stopped, 8 cores) in a form the agent
    // must not act on; the guests stay exactly as generation 2 left them.
    let mutations = env.pve.state().accepted_mutations();
    let fetches = env.hub.request_count(DESIRED_STATE_PATH);
    let faults = env.hub.faults();
    // 5xx, twice.
    faults.fail_next_on(DESIRED_STATE_PATH, 2, HubFault::Status(503));
    env.hub
        .publish_desired(desired(3, DesiredRunState::Stopped, 8));
    daemon
        .wait_for_lines(
            &["hub desired state: fetch failed", "answered 503"],
            2,
            WAIT,
        )
        .await;
    // A malformed body (unknown run_state), then one with a typo'd key, then one that is not
    // JSON at all.
    for body in [
        r#"{"generation":3,"guests":[{"vmid":101,"run_state":"paused"}]}"#,
        r#"{"generation":3,"guests":[{"vmid":101,"runstate":"stopped"}]}"#,
        "<html>proxy error</html>",
    ] {
        faults.fail_next_on(DESIRED_STATE_PATH, 1, HubFault::Body(200, body.to_owned()));
    }
    daemon
        .wait_for_lines(
            &["hub desired state: fetch failed", "malformed body"],
            3,
            WAIT,
        )
        .await;
    // A dropped connection.
    faults.fail_next_on(DESIRED_STATE_PATH, 1, HubFault::Drop);
    daemon
        .wait_for_lines(&["hub desired state: fetch failed"], 6, WAIT)
        .await;
    // A body whose generation went backwards (the hub restored an old database).
    env.hub.set_desired(Some(DesiredStateBody {
        generation: 1,
        ..desired(1, DesiredRunState::Stopped, 8)
    }));
    daemon
        .wait_for_lines(&["older than the held generation 2"], 1, WAIT)
        .await;
    // An announcement that goes backwards is not even fetched.
    env.hub.set_envelope(ControlEnvelope {
        poll_interval_seconds: Some(1),
        desired_generation: 1,
        ..ControlEnvelope::default()
    });
    wait_line(&daemon, &["announces an older desired-state generation"]).await;
    let before_older = env.hub.request_count(DESIRED_STATE_PATH);
    env.more_reports(3, WAIT).await;
    assert_eq!(env.hub.request_count(DESIRED_STATE_PATH), before_older);
    assert!(env.hub.request_count(DESIRED_STATE_PATH) > fetches);

    let state = env.pve.state();
    assert!(
        state.guest(101).unwrap().running,
        "no fault stopped the guest"
    );
    assert_eq!(cores(&env, 100).as_deref(), Some("2"));
    assert_eq!(
        state.accepted_mutations(),
        mutations,
        "no fault mutated anything"
    );
    // The daemon is alive and still reporting.
    env.more_reports(1, WAIT).await;
    let log = daemon.stop().await;
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_a_hub_outage_converges_toward_the_last_served_intent() {
    let env = Env::start(1).await;
    env.hub
        .publish_desired(desired(4, DesiredRunState::Running, 3));
    let daemon = env.spawn(&[], &FLOOR);
    wait_line(&daemon, &["reconcile pass done", "planned 2:"]).await;
    daemon.stop().await;
    assert!(env.pve.state().guest(101).unwrap().running);

    // Drift while the agent is down, and the hub goes dark for every request.
    env.pve.state().set_running(101, false);
    env.pve.state().set_config(100, "cores", "1");
    env.hub.faults().fail_next(10_000, HubFault::Status(503));
    let daemon = env.spawn(&[], &FLOOR);
    wait_line(
        &daemon,
        &["hub desired state restored from disk", "generation=4"],
    )
    .await;
    wait_line(&daemon, &["reconcile pass done", "planned 2:"]).await;
    assert!(env.pve.state().guest(101).unwrap().running);
    assert_eq!(cores(&env, 100).as_deref(), Some("3"));
    assert_eq!(
        env.hub.request_count(DESIRED_STATE_PATH),
        1,
        "converged from disk: the hub was never reachable since"
    );
    assert!(env.hub.request_count(HOST_REPORT_PATH) > env.hub.report_count());
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_stops_both_paths_while_reports_continue() {
    let env = Env::start(1).await;
    env.hub
        .publish_desired(desired(1, DesiredRunState::Running, 4));
    let blob = r#"{"op":"destroy_guest","host_id":"pve-01","guest_id":101,"params":{},"nonce":"n-1","not_before":"2026-11-23T10:00:00Z","not_after":"2026-11-23T11:00:00Z","key_id":"ops"}"#;
    env.hub.set_signed_ops(vec![
        SignedOpEntry {
            blob: blob.to_owned(),
            signature: "-----BEGIN SSH SIGNATURE-----\nAA==\n-----END SSH SIGNATURE-----\n".into(),
        },
        SignedOpEntry {
            blob: reserialized_blob(blob),
            signature: "-----BEGIN SSH SIGNATURE-----\nAA==\n-----END SSH SIGNATURE-----\n".into(),
        },
    ]);
    let mut envelope = env.hub.envelope();
    envelope.blocked = Some(true);
    env.hub.set_envelope(envelope.clone());
    let daemon = env.spawn(&[], &FLOOR);
    env.more_reports(3, WAIT).await;
    assert_eq!(env.hub.request_count(DESIRED_STATE_PATH), 0);
    assert_eq!(env.hub.request_count(SIGNED_OPS_PATH), 0);
    assert_eq!(env.pve.state().accepted_mutations(), 0);
    assert!(!env.pve.state().guest(101).unwrap().running);

    // Unblocked: the desired state converges; the signed ops are fetched on every report that
    // announces them (the same ops served again and again) and refused by the gate (this host
    // trusts no signer), never executed; the refusal reaches the hub once, with its nonce.
    envelope.blocked = Some(false);
    env.hub.set_envelope(envelope.clone());
    wait_line(&daemon, &["reconcile pass done", "planned 2:"]).await;
    daemon
        .wait_for_lines(&["signed op from the hub refused", "no_signers"], 4, WAIT)
        .await;
    env.more_reports(1, WAIT).await;
    let tail = env.hub.reports().last().unwrap().report.audit_tail.clone();
    let refusals: Vec<_> = tail
        .iter()
        .filter(|e| e.nonce.as_deref() == Some("n-1"))
        .map(|e| e.reason.as_deref())
        .collect();
    assert_eq!(refusals, [Some("no_signers")], "{tail:#?}");
    assert!(env.pve.state().guest(101).unwrap().running);
    assert!(env.hub.request_count(SIGNED_OPS_PATH) >= 2);
    let destroys = env
        .pve
        .state()
        .request_log()
        .iter()
        .filter(|r| r.method == "DELETE")
        .count();
    assert_eq!(destroys, 0, "no destructive request reached PVE");

    // Blocked again mid-run: a new generation is neither fetched nor applied.
    envelope.blocked = Some(true);
    env.hub.set_envelope(envelope);
    wait_line(&daemon, &["the hub has blocked this host"]).await;
    env.more_reports(1, WAIT).await;
    let fetches = env.hub.request_count(DESIRED_STATE_PATH);
    let ops_fetches = env.hub.request_count(SIGNED_OPS_PATH);
    let mutations = env.pve.state().accepted_mutations();
    env.hub
        .publish_desired(desired(2, DesiredRunState::Stopped, 1));
    env.more_reports(3, WAIT).await;
    assert_eq!(env.hub.request_count(DESIRED_STATE_PATH), fetches);
    assert_eq!(env.hub.request_count(SIGNED_OPS_PATH), ops_fetches);
    assert_eq!(env.pve.state().accepted_mutations(), mutations);
    assert!(env.pve.state().guest(101).unwrap().running);
    daemon.stop().await;
}
