//! Hub-served signed ops end to end: the built daemon, ops served by HubSim over real TLS, the
//! PVE simulator, operator signatures minted here with the ssh-key crate (what
//! `ssh-keygen -Y sign -n felhom-op-v1` makes with the same key).
//!
//! The adversarial matrix of the gate, repeated with ops the hub serves on every report
//! (unsigned, tampered by the hub, signed for another host, wrong role, unknown signer,
//! expired, re-serialised blob): each is audited with its typed reason and its nonce in the
//! next reports' `audit_tail`, and zero destructive requests reach PVE. A hub desired-state
//! `present: false` stays pending until the matching signed op arrives; that op is executed
//! exactly once however often it is served, across a restart, and across a SIGKILL at each
//! step of the signed job.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use felhom_hub_proto::{
    AuditEntry, DesiredGuestEntry, DesiredStateBody, OpBlob, OpKind, SignedOpEntry, Timestamp,
    OP_SIGNATURE_NAMESPACE,
};
use felhom_pve_sim::{reserialized_blob, GuestSpec, SimConfig};
use serde_json::json;
use ssh_key::private::Ed25519Keypair;
use ssh_key::{HashAlg, LineEnding, PrivateKey};

use crate::support::{Daemon, Env, HOST_ID};

const FLOOR: [(&str, &str); 1] = [("FELHOM_AGENT_TEST_POLL_FLOOR_MS", "200")];
const WAIT: Duration = Duration::from_secs(30);
/// The scratch guest the hub wants gone.
const SCRATCH: u32 = 105;
const DESTROY: &str = "DELETE /nodes/{node}/lxc/{vmid}";

/// Operational "ops-anna" (seed 1), recovery "ops-rec" (seed 2); seed 9 is pinned by nobody.
const ANNA: u8 = 1;
const RECOVERY: u8 = 2;
const STRANGER: u8 = 9;

fn key(seed: u8) -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
}

fn public(seed: u8) -> String {
    key(seed).public_key().to_openssh().unwrap()
}

fn sign(seed: u8, blob: &str) -> String {
    key(seed)
        .sign(OP_SIGNATURE_NAMESPACE, HashAlg::Sha512, blob.as_bytes())
        .unwrap()
        .to_pem(LineEnding::LF)
        .unwrap()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A destroy blob as the hub composes it (the canonical serialisation), valid from 5 minutes
/// ago for `valid_for` seconds.
fn destroy_blob(host: &str, vmid: u32, nonce: &str, from: u64, to: u64) -> String {
    OpBlob {
        op: OpKind::DestroyGuest,
        host_id: host.to_owned(),
        guest_id: Some(vmid),
        params: Default::default(),
        nonce: nonce.to_owned(),
        not_before: Timestamp::from_unix_seconds(from),
        not_after: Timestamp::from_unix_seconds(to),
        key_id: "ops-anna".to_owned(),
    }
    .to_canonical_json()
}

fn fresh_destroy(vmid: u32, nonce: &str) -> String {
    let now = unix_now();
    destroy_blob(HOST_ID, vmid, nonce, now - 300, now + 3600)
}

fn entry(blob: String, signature: String) -> SignedOpEntry {
    SignedOpEntry { blob, signature }
}

/// The simulated host plus the scratch guest (running: a destroy stops it first), the two
/// operator keys pinned, the hub asking for the scratch guest to be gone.
async fn env() -> Env {
    let sim = SimConfig::default().guest(GuestSpec::new(SCRATCH, "scratch").running(true));
    let env = Env::with(sim, 1).await;
    let mut doc = env.config_doc();
    doc["authz"]["signers"] = json!([
        { "key_id": "ops-anna", "role": "operational", "public_key": public(ANNA) },
        { "key_id": "ops-rec", "role": "recovery", "public_key": public(RECOVERY) },
    ]);
    env.write_config(doc);
    env.hub.publish_desired(DesiredStateBody {
        generation: 1,
        guests: vec![DesiredGuestEntry {
            vmid: u64::from(SCRATCH),
            present: Some(false),
            ..DesiredGuestEntry::default()
        }],
    });
    env
}

/// The latest report's audit tail.
fn tail(env: &Env) -> Vec<AuditEntry> {
    env.hub
        .reports()
        .last()
        .map(|r| r.report.audit_tail.clone())
        .unwrap_or_default()
}

/// Waits until a report's audit tail satisfies `done`; panics with the daemon's log otherwise.
async fn wait_tail(env: &Env, daemon: &Daemon, what: &str, done: impl Fn(&[AuditEntry]) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if done(&tail(env)) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "no report's audit_tail showed {what} within {WAIT:?}; tail: {:#?}\nlog:\n{}",
                tail(env),
                daemon.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `(decision, reason)` of the entries for `nonce`, oldest first.
fn decisions(tail: &[AuditEntry], nonce: &str) -> Vec<(String, Option<String>)> {
    tail.iter()
        .filter(|e| e.nonce.as_deref() == Some(nonce))
        .map(|e| (e.decision.clone(), e.reason.clone()))
        .collect()
}

fn has(tail: &[AuditEntry], nonce: &str, decision: &str, reason: Option<&str>) -> bool {
    decisions(tail, nonce)
        .iter()
        .any(|(d, r)| d == decision && r.as_deref() == reason)
}

fn destroys(env: &Env) -> u64 {
    env.pve.state().requests_to(DESTROY)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_ops_the_gate_refuses_reach_no_pve_and_the_valid_one_runs_exactly_once() {
    let env = env().await;
    let daemon = env.spawn(&[], &FLOOR);
    // The hub's present:false alone: pending, audited, nothing sent.
    wait_tail(&env, &daemon, "the pending destroy", |t| {
        t.iter().any(|e| {
            e.action == "destroy_guest"
                && e.vmid == Some(SCRATCH)
                && e.decision == "pending_signature"
        })
    })
    .await;

    let now = unix_now();
    let valid = fresh_destroy(SCRATCH, "n-valid");
    let valid_sig = sign(ANNA, &valid);
    // The hub re-targets a valid signature at another guest / host (edits the blob's bytes).
    let retargeted = valid.replace(&format!("\"guest_id\":{SCRATCH}"), "\"guest_id\":101");
    assert_ne!(retargeted, valid);
    let rehosted = valid.replace(HOST_ID, "pve-02");
    assert_ne!(rehosted, valid);
    let other_host = destroy_blob("pve-02", SCRATCH, "n-host", now - 300, now + 3600);
    let recovery = fresh_destroy(SCRATCH, "n-rec");
    let stranger = fresh_destroy(SCRATCH, "n-stranger");
    let expired = destroy_blob(HOST_ID, SCRATCH, "n-expired", now - 7200, now - 3600);
    let unsigned = fresh_destroy(SCRATCH, "n-unsigned");
    let attacks = vec![
        entry(unsigned, String::new()),
        entry(retargeted, valid_sig.clone()),
        entry(rehosted, valid_sig.clone()),
        entry(reserialized_blob(&valid), valid_sig.clone()),
        entry(other_host.clone(), sign(ANNA, &other_host)),
        entry(recovery.clone(), sign(RECOVERY, &recovery)),
        entry(stranger.clone(), sign(STRANGER, &stranger)),
        entry(expired.clone(), sign(ANNA, &expired)),
    ];
    env.hub.set_signed_ops(attacks.clone());
    wait_tail(&env, &daemon, "every refusal", |t| {
        has(
            t,
            "n-unsigned",
            "pending_signature",
            Some("pending_signature"),
        ) && has(t, "n-valid", "refused", Some("bad_signature"))
            && has(t, "n-host", "refused", Some("target"))
            && has(t, "n-rec", "refused", Some("role_denied"))
            && has(t, "n-stranger", "refused", Some("unknown_signer"))
            && has(t, "n-expired", "refused", Some("expired"))
    })
    .await;
    // Served again and again: nothing reaches PVE, the tail does not grow with the serves.
    env.more_reports(4, WAIT).await;
    let state = env.pve.state();
    assert_eq!(destroys(&env), 0, "no destructive request reached PVE");
    assert_eq!(state.accepted_mutations(), 0, "not even the stop before it");
    assert!(state.guest(SCRATCH).unwrap().running);
    let t = tail(&env);
    let bad = ("refused".to_owned(), Some("bad_signature".to_owned()));
    assert_eq!(
        decisions(&t, "n-valid"),
        [bad.clone(), bad.clone()],
        "three tampered forms of one op (one naming guest 101), served on every report: one \
         entry per target\n{t:#?}"
    );
    let pending = t
        .iter()
        .filter(|e| e.decision == "pending_signature" && e.nonce.is_none())
        .count();
    assert_eq!(pending, 1, "the held delta, once\n{t:#?}");
    assert!(env.hub.request_count(felhom_hub_proto::SIGNED_OPS_PATH) >= 5);

    // The signature the hub tried to re-target is unspent: the op as signed runs, once.
    let mut served = attacks;
    served.push(entry(valid.clone(), valid_sig.clone()));
    env.hub.set_signed_ops(served.clone());
    wait_tail(&env, &daemon, "the executed destroy", |t| {
        has(t, "n-valid", "executed", None)
    })
    .await;
    assert!(env.pve.state().guest(SCRATCH).is_none(), "destroyed");
    // The hub keeps serving it: refused as already applied, once in the tail.
    wait_tail(&env, &daemon, "the repeat refused", |t| {
        has(t, "n-valid", "refused", Some("already_applied"))
    })
    .await;
    env.more_reports(4, WAIT).await;
    assert_eq!(destroys(&env), 1, "executed exactly once");
    // Per target (the tampered blob naming guest 101 shares the nonce): each decision once.
    let t = tail(&env);
    let mut seen: Vec<(Option<u32>, String, Option<String>)> = t
        .iter()
        .filter(|e| e.nonce.as_deref() == Some("n-valid"))
        .map(|e| (e.vmid, e.decision.clone(), e.reason.clone()))
        .collect();
    seen.sort();
    let row = |vmid: u32, decision: &str, reason: Option<&str>| {
        (Some(vmid), decision.to_owned(), reason.map(str::to_owned))
    };
    assert_eq!(
        seen,
        [
            row(101, "refused", Some("already_applied")),
            row(101, "refused", Some("bad_signature")),
            row(SCRATCH, "allowed", None),
            row(SCRATCH, "executed", None),
            row(SCRATCH, "refused", Some("already_applied")),
            row(SCRATCH, "refused", Some("bad_signature")),
        ],
        "{t:#?}"
    );
    drop(bad);
    let executed = t
        .iter()
        .find(|e| e.decision == "executed")
        .expect("executed entry");
    assert_eq!(
        (executed.key_id.as_deref(), executed.vmid),
        (Some("ops-anna"), Some(SCRATCH))
    );
    // The present:false is now satisfied: the passes plan nothing for it.
    daemon
        .wait_for_lines(&["reconcile pass done", "planned 0:"], 1, WAIT)
        .await;
    let log = daemon.stop().await;
    assert!(!log.contains("panicked"), "{log}");

    // Replayed across a restart (the op journal answers), and again with the journal gone (the
    // durable nonce store answers): never executed again.
    let daemon = env.spawn(&[], &FLOOR);
    env.more_reports(3, WAIT).await;
    daemon.stop().await;
    std::fs::remove_file(env.path("journal.log")).unwrap();
    let daemon = env.spawn(&[], &FLOOR);
    wait_tail(&env, &daemon, "the replay refused", |t| {
        has(t, "n-valid", "refused", Some("replay"))
    })
    .await;
    assert_eq!(destroys(&env), 1, "executed exactly once over three lives");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_op_runs_exactly_once_across_a_sigkill_at_each_signed_step() {
    // (point, destroys before the kill, the audit decision that closes it). Killed before its
    // request, the op is proven never sent (no task, the guest still there) and the hub's next
    // serve runs it; killed after, recovery closes it from pve's task. Either way: one destroy.
    let points = [
        ("signed-before-gate", 0, "executed"),
        ("signed-before-post", 0, "executed"),
        ("signed-after-post", 1, "executed"),
        ("signed-after-task-recorded", 1, "executed"),
    ];
    for (point, before, closed) in points {
        let sent = 1;
        let env = env().await;
        let valid = fresh_destroy(SCRATCH, "n-crash");
        env.hub
            .set_signed_ops(vec![entry(valid.clone(), sign(ANNA, &valid))]);
        let crash = format!("{point}:1");
        let env_vars = [FLOOR[0], ("FELHOM_AGENT_TEST_CRASH_AT", crash.as_str())];
        let daemon = env.spawn(&[], &env_vars);
        let (status, log) = daemon.wait(WAIT).await;
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{point}: SIGKILLed\n{log}");
        assert!(log.contains("TEST crash point"), "{point}\n{log}");
        assert_eq!(destroys(&env), before, "{point}: requests before the kill");

        // Restart: recovery closes the op from PVE before anything can mutate; the hub keeps
        // serving the op; it runs once in all.
        let daemon = env.spawn(&[], &FLOOR);
        wait_tail(&env, &daemon, closed, |t| {
            decisions(t, "n-crash").iter().any(|(d, _)| d == closed)
        })
        .await;
        env.more_reports(4, WAIT).await;
        assert_eq!(destroys(&env), sent, "{point}: exactly once");
        assert!(
            env.pve.state().guest(SCRATCH).is_none(),
            "{point}: the guest is gone"
        );
        let t = tail(&env);
        let seen = decisions(&t, "n-crash");
        // The gate's allow before the kill (none when killed before the gate decided; and the
        // resumed one), the outcome, and one refusal of the op served again (already applied).
        let count = |d: &str| seen.iter().filter(|(x, _)| x == d).count();
        let allows = match point {
            "signed-before-gate" => 1,
            "signed-before-post" => 2,
            _ => 1,
        };
        assert_eq!(
            (count("allowed"), count(closed), count("refused")),
            (allows, 1, 1),
            "{point}: {seen:?}"
        );
        assert_eq!(seen.len(), allows + 2, "{point}: bounded: {seen:?}");
        daemon.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_arriving_mid_list_lets_the_running_op_finish_and_starts_no_other() {
    const OTHER: u32 = 106;
    let sim = SimConfig::default()
        .guest(GuestSpec::new(SCRATCH, "scratch").running(false))
        .guest(GuestSpec::new(OTHER, "other").running(false));
    let env = Env::with(sim, 1).await;
    let mut doc = env.config_doc();
    doc["authz"]["signers"] =
        json!([{ "key_id": "ops-anna", "role": "operational", "public_key": public(ANNA) }]);
    env.write_config(doc);
    // Each destroy runs 6 s at PVE: the block arrives while the first one runs.
    env.pve
        .faults()
        .slow_tasks(Some("vzdestroy"), Duration::from_secs(6));
    let (first, second) = (
        fresh_destroy(SCRATCH, "n-first"),
        fresh_destroy(OTHER, "n-second"),
    );
    env.hub.set_signed_ops(vec![
        entry(first.clone(), sign(ANNA, &first)),
        entry(second.clone(), sign(ANNA, &second)),
    ]);
    let daemon = env.spawn(&[], &FLOOR);
    let deadline = tokio::time::Instant::now() + WAIT;
    while destroys(&env) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut envelope = env.hub.envelope();
    envelope.blocked = Some(true);
    env.hub.set_envelope(envelope.clone());
    daemon
        .wait_for_lines(&["the hub has blocked this host"], 1, WAIT)
        .await;
    assert!(
        env.pve.state().guest(SCRATCH).is_some(),
        "the block arrived while the first destroy ran"
    );
    // The running op finishes and its outcome is reported; the second never starts.
    wait_tail(&env, &daemon, "the first op executed", |t| {
        has(t, "n-first", "executed", None)
    })
    .await;
    env.more_reports(4, WAIT).await;
    assert!(env.pve.state().guest(SCRATCH).is_none());
    assert!(env.pve.state().guest(OTHER).is_some());
    assert_eq!(destroys(&env), 1, "nothing new started while blocked");
    assert!(
        decisions(&tail(&env), "n-second").is_empty(),
        "not even decided"
    );

    // Lifted: the hub still serves the second op, which now runs.
    envelope.blocked = Some(false);
    env.hub.set_envelope(envelope);
    wait_tail(&env, &daemon, "the second op executed", |t| {
        has(t, "n-second", "executed", None)
    })
    .await;
    assert!(env.pve.state().guest(OTHER).is_none());
    assert_eq!(destroys(&env), 2);
    daemon.stop().await;
}
