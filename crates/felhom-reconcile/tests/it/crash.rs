//! A signed op killed between its request and its terminal record (the runner's fault seam),
//! then a restart: startup recovery closes it from PVE's real outcome, and it is never sent
//! again.

use std::sync::Arc;

use felhom_journal::OpState;
use felhom_pve_sim::{GuestSpec, HttpFault, SimConfig};
use felhom_reconcile::recovery::{audit_recovery, NOT_SENT, OUTCOME_UNKNOWN};
use felhom_reconcile::{
    recover_with, CrashPoint, RecoveryOptions, Resolution, SignedJobOutcome, SignerSpec,
    SignerStore,
};
use serde_json::json;

use crate::signing::*;
use crate::support::host;

async fn crash_at(agent: Agent, at: CrashPoint, op: felhom_reconcile::SignedOp) {
    let Agent { jobs, .. } = agent;
    let jobs = jobs.with_fault(Arc::new(move |point| point == at));
    let out = jobs.submit(op, UNIX_NOW).await.unwrap();
    assert!(
        matches!(out, SignedJobOutcome::Crashed { at: p, .. } if p == at),
        "{out:?}"
    );
}

/// A host with guest 102 and its snapshot `before`, to roll back to.
async fn snapshot_host() -> crate::support::Host {
    host(
        SimConfig::default().guest(
            GuestSpec::new(102, "app")
                .snapshot("before", "known good", 1_700_000_000)
                .running(false),
        ),
    )
    .await
}

/// Anna's signed rollback of 102 to `before`.
fn rollback_op(nonce: &str) -> felhom_reconcile::SignedOp {
    signed(
        ANNA,
        blob(
            "rollback",
            Some(102),
            json!({"snapname": "before", "start": false}),
            nonce,
        ),
    )
}

/// The agent killed at `at` running `op`, then reopened from the same files (a restart).
async fn restarted_after(
    host: &crate::support::Host,
    files: &Files,
    at: CrashPoint,
    op: felhom_reconcile::SignedOp,
) -> Agent {
    crash_at(Agent::open(host, files, signers()), at, op).await;
    Agent::open(host, files, signers())
}

/// Served again: answered from the journal, never run.
async fn assert_already_applied(agent: &Agent, op: felhom_reconcile::SignedOp) {
    let again = agent.jobs.submit(op, UNIX_NOW).await.unwrap();
    assert!(
        matches!(again, SignedJobOutcome::AlreadyApplied { .. }),
        "{again:?}"
    );
}

fn recovery_options() -> RecoveryOptions {
    RecoveryOptions {
        wait: fast_wait(),
        // the window a request that reached pve has to show its task (real time here)
        settle: std::time::Duration::from_millis(50),
        ..RecoveryOptions::default()
    }
}

#[tokio::test]
async fn killed_after_the_task_was_journaled_is_closed_from_the_task_and_never_resent() {
    let host = sim_host().await;
    let files = Files::new();
    let op = signed(ANNA, blob("destroy_guest", Some(101), json!({}), "n-crash"));
    crash_at(
        Agent::open(&host, &files, signers()),
        CrashPoint::AfterTaskRecorded,
        op.clone(),
    )
    .await;

    // restart
    let agent = Agent::open(&host, &files, signers());
    let summary = recover_with(&*host.api, &agent.journal, UNIX_NOW, &recovery_options())
        .await
        .unwrap();
    assert_eq!(summary.ops.len(), 1);
    assert!(
        matches!(&summary.ops[0].resolution, Resolution::Succeeded { exitstatus } if exitstatus == "OK"),
        "{summary:?}"
    );
    assert_already_applied(&agent, op).await;
    assert_eq!(
        host.sim
            .state()
            .requests_to("DELETE /nodes/{node}/lxc/{vmid}"),
        1,
        "sent exactly once"
    );
    assert!(host.sim.state().guest(101).is_none());
}

#[tokio::test]
async fn killed_before_its_task_was_journaled_a_destroy_is_closed_from_the_guest_being_gone() {
    let host = sim_host().await;
    let files = Files::new();
    let op = signed(ANNA, blob("destroy_guest", Some(101), json!({}), "n-post"));
    let agent = restarted_after(&host, &files, CrashPoint::AfterPost, op.clone()).await;
    // the destroy task may still be running server-side; wait for the sim to finish it
    for _ in 0..200 {
        if host.sim.state().guest(101).is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let summary = recover_with(&*host.api, &agent.journal, UNIX_NOW, &recovery_options())
        .await
        .unwrap();
    assert!(
        matches!(&summary.ops[0].resolution, Resolution::Succeeded { .. }),
        "{summary:?}"
    );
    assert_eq!(
        host.sim
            .state()
            .requests_to("DELETE /nodes/{node}/lxc/{vmid}"),
        1
    );
    assert_already_applied(&agent, op).await;
}

#[tokio::test]
async fn killed_before_its_task_was_journaled_a_rollback_is_closed_from_its_listed_task() {
    let host = snapshot_host().await;
    let files = Files::new();
    let op = rollback_op("n-listed");
    let agent = restarted_after(&host, &files, CrashPoint::AfterPost, op.clone()).await;
    let summary = recover_with(&*host.api, &agent.journal, UNIX_NOW, &recovery_options())
        .await
        .unwrap();
    assert_eq!(
        summary.ops[0].resolution,
        Resolution::Succeeded {
            exitstatus: "OK".to_owned()
        },
        "closed from the vzrollback task pve lists"
    );
    audit_recovery(&summary, &*agent.audit, UNIX_NOW);
    let last = agent.audit.entries().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.decision.as_str()),
        ("rollback", "executed")
    );
    {
        let j = agent.journal.lock().unwrap();
        let entry = j.entries().find(|e| e.action == "rollback").unwrap();
        assert_eq!(entry.state, OpState::Succeeded);
    }
    assert_eq!(
        host.sim
            .state()
            .requests_to("POST /nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback"),
        1,
        "never re-sent"
    );
}

#[tokio::test]
async fn an_unprovable_outcome_is_recorded_outcome_unknown_audited_and_not_resent() {
    let host = snapshot_host().await;
    let files = Files::new();
    let op = rollback_op("n-unknown");
    crash_at(
        Agent::open(&host, &files, signers()),
        CrashPoint::AfterPost,
        op.clone(),
    )
    .await;
    let rollbacks = host
        .sim
        .state()
        .requests_to("POST /nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback");
    assert_eq!(rollbacks, 1);

    let agent = Agent::open(&host, &files, signers());
    // PVE's task list cannot be read, so the rollback's task is not found: nothing else proves
    // how it ended.
    // (both lookups: the first, and the one after the settle window)
    host.sim.faults().fail_next(
        2,
        HttpFault::status(500, "task list unavailable").only(Some("GET"), Some("/tasks")),
    );
    let summary = recover_with(&*host.api, &agent.journal, UNIX_NOW, &recovery_options())
        .await
        .unwrap();
    let Resolution::OutcomeUnknown { error } = &summary.ops[0].resolution else {
        panic!("{summary:?}")
    };
    assert!(error.starts_with(OUTCOME_UNKNOWN), "{error}");
    audit_recovery(&summary, &*agent.audit, UNIX_NOW);
    let last = agent.audit.entries().pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.decision.as_str()),
        ("rollback", OUTCOME_UNKNOWN)
    );
    assert_eq!(
        last.nonce.as_deref(),
        Some("n-unknown"),
        "the hub matches the outcome by nonce"
    );
    {
        let j = agent.journal.lock().unwrap();
        let entry = j.entries().find(|e| e.action == "rollback").unwrap();
        assert!(
            matches!(&entry.state, OpState::Failed { error } if error.starts_with(OUTCOME_UNKNOWN))
        );
    }
    // not re-sent by recovery, and the signed op itself is spent
    let out = agent.jobs.submit(op, UNIX_NOW).await.unwrap();
    assert!(
        matches!(out, SignedJobOutcome::Refused { .. }),
        "the nonce is spent: {out:?}"
    );
    assert_eq!(
        host.sim
            .state()
            .requests_to("POST /nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback"),
        rollbacks
    );
}

/// Recovery's resolution of the one op in flight, after a restart from `files`.
async fn recovered(
    host: &crate::support::Host,
    agent: &Agent,
    options: &RecoveryOptions,
) -> Resolution {
    let summary = recover_with(&*host.api, &agent.journal, UNIX_NOW, options)
        .await
        .unwrap();
    assert_eq!(summary.ops.len(), 1, "{summary:?}");
    audit_recovery(&summary, &*agent.audit, UNIX_NOW);
    summary.ops[0].resolution.clone()
}

#[tokio::test]
async fn killed_before_its_request_a_destroy_is_proven_not_sent_and_runs_once_when_served_again() {
    let host = sim_host().await;
    let files = Files::new();
    let op = signed(
        ANNA,
        blob("destroy_guest", Some(101), json!({}), "n-before"),
    );
    crash_at(
        Agent::open(&host, &files, signers()),
        CrashPoint::BeforePost,
        op.clone(),
    )
    .await;
    const DELETE: &str = "DELETE /nodes/{node}/lxc/{vmid}";
    assert_eq!(host.sim.state().requests_to(DELETE), 0);

    let agent = Agent::open(&host, &files, signers());
    let resolution = recovered(&host, &agent, &recovery_options()).await;
    let Resolution::NotSent { error } = &resolution else {
        panic!("{resolution:?}")
    };
    assert!(error.starts_with(NOT_SENT), "{error}");
    assert!(error.contains("guest 101 still exists"), "{error}");
    assert!(
        agent.audit.entries().is_empty(),
        "no outcome to tell the hub yet: {:?}",
        agent.decisions()
    );
    assert_eq!(
        host.sim.state().requests_to(DELETE),
        0,
        "recovery sends nothing"
    );

    // The hub serves the op again: verified again, its spent nonce accepted once, executed.
    let out = agent.jobs.submit(op.clone(), UNIX_NOW).await.unwrap();
    assert!(matches!(out, SignedJobOutcome::Executed { .. }), "{out:?}");
    assert!(host.sim.state().guest(101).is_none());
    let allowed = agent
        .decisions()
        .into_iter()
        .find(|(_, d, _)| d == "allowed")
        .unwrap();
    assert_eq!(allowed.2.as_deref(), Some("resumed"));
    // … and never again, also after another restart.
    assert_already_applied(&agent, op.clone()).await;
    drop(agent);
    let agent = Agent::open(&host, &files, signers());
    assert_already_applied(&agent, op).await;
    assert_eq!(host.sim.state().requests_to(DELETE), 1, "exactly once");
}

#[tokio::test]
async fn a_resumed_op_killed_before_its_request_again_still_runs_exactly_once() {
    let host = snapshot_host().await;
    let files = Files::new();
    let op = rollback_op("n-twice");
    const ROLLBACK: &str = "POST /nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback";
    for life in 0..2 {
        crash_at(
            Agent::open(&host, &files, signers()),
            CrashPoint::BeforePost,
            op.clone(),
        )
        .await;
        let agent = Agent::open(&host, &files, signers());
        let resolution = recovered(&host, &agent, &recovery_options()).await;
        assert!(
            matches!(&resolution, Resolution::NotSent { error } if error.starts_with(NOT_SENT)),
            "life {life}: {resolution:?}"
        );
    }
    assert_eq!(host.sim.state().requests_to(ROLLBACK), 0);
    let agent = Agent::open(&host, &files, signers());
    let out = agent.jobs.submit(op.clone(), UNIX_NOW).await.unwrap();
    assert!(matches!(out, SignedJobOutcome::Executed { .. }), "{out:?}");
    assert_already_applied(&agent, op).await;
    assert_eq!(host.sim.state().requests_to(ROLLBACK), 1, "exactly once");
}

#[tokio::test]
async fn a_resumed_op_is_verified_again_and_a_failed_one_is_not_resumed() {
    let host = sim_host().await;
    let files = Files::new();
    let op = signed(ANNA, blob("destroy_guest", Some(101), json!({}), "n-edit"));
    let agent = restarted_after(&host, &files, CrashPoint::BeforePost, op.clone()).await;
    let resolution = recovered(&host, &agent, &recovery_options()).await;
    assert!(
        matches!(resolution, Resolution::NotSent { .. }),
        "{resolution:?}"
    );
    // the same op with its blob re-serialised (one more byte): fails crypto, as ever
    let mut edited = op.clone();
    edited.blob.push(b' ');
    let out = agent.jobs.submit(edited, UNIX_NOW).await.unwrap();
    assert!(matches!(out, SignedJobOutcome::Refused { .. }), "{out:?}");
    // another signed op destroys the guest meanwhile
    let other = signed(ANNA, blob("destroy_guest", Some(101), json!({}), "n-other"));
    let out = agent.jobs.submit(other, UNIX_NOW).await.unwrap();
    assert!(matches!(out, SignedJobOutcome::Executed { .. }), "{out:?}");
    // the original now fails at pve (its guest is gone): failed, and not resumable
    let out = agent.jobs.submit(op.clone(), UNIX_NOW).await.unwrap();
    assert!(matches!(out, SignedJobOutcome::Failed { .. }), "{out:?}");
    let out = agent.jobs.submit(op, UNIX_NOW).await.unwrap();
    assert!(
        matches!(&out, SignedJobOutcome::Refused { reason, .. } if reason.code() == "replay"),
        "a failed op needs a fresh signature: {out:?}"
    );
    // one destroy request: the resumed op failed reading its (gone) guest before sending one
    assert_eq!(
        host.sim
            .state()
            .requests_to("DELETE /nodes/{node}/lxc/{vmid}"),
        1
    );
}

#[tokio::test]
async fn an_interrupted_rotation_is_decided_by_the_signers_file() {
    let host = sim_host().await;
    let files = Files::new();
    let set = vec![SignerSpec {
        key_id: "ops-rec".into(),
        role: felhom_authz::Role::Recovery,
        public_key: line(RECOVERY),
    }];
    let rotate = signed(
        RECOVERY,
        blob("rotate_signers", None, json!({ "signers": set }), "n-rot"),
    );
    let agent = restarted_after(&host, &files, CrashPoint::BeforePost, rotate.clone()).await;
    let options = RecoveryOptions {
        signer_set_nonce: SignerStore::read_set(files.signers())
            .unwrap()
            .map(|s| s.nonce),
        ..recovery_options()
    };
    let resolution = recovered(&host, &agent, &options).await;
    assert!(
        matches!(resolution, Resolution::NotSent { .. }),
        "{resolution:?}"
    );
    let out = agent.jobs.submit(rotate.clone(), UNIX_NOW).await.unwrap();
    assert!(matches!(out, SignedJobOutcome::Executed { .. }), "{out:?}");
    assert_eq!(
        SignerStore::read_set(files.signers())
            .unwrap()
            .unwrap()
            .nonce,
        "n-rot"
    );
    assert_already_applied(&agent, rotate).await;

    // a rotation persisted before its end was journaled closes as succeeded
    let files = Files::new();
    let agent = Agent::open(&host, &files, signers());
    agent
        .journal
        .lock()
        .unwrap()
        .started(
            None,
            "rotate_signers",
            Some("signed:n-x".to_owned()),
            UNIX_NOW,
        )
        .unwrap();
    let options = RecoveryOptions {
        signer_set_nonce: Some("n-x".to_owned()),
        ..recovery_options()
    };
    let resolution = recovered(&host, &agent, &options).await;
    assert!(
        matches!(resolution, Resolution::Succeeded { .. }),
        "{resolution:?}"
    );
    let last = agent.audit.entries().pop().unwrap();
    assert_eq!(
        (last.decision.as_str(), last.nonce.as_deref()),
        ("executed", Some("n-x"))
    );
}

#[tokio::test]
async fn killed_between_its_journaled_start_and_the_gate_an_op_is_resumed_not_lost() {
    let host = sim_host().await;
    let files = Files::new();
    let op = signed(ANNA, blob("destroy_guest", Some(101), json!({}), "n-gate"));
    let agent = restarted_after(&host, &files, CrashPoint::BeforeGate, op.clone()).await;
    use felhom_authz::NonceStore;
    assert!(
        !agent.gate.nonce_store().seen("n-gate"),
        "killed before the gate: the nonce is unused"
    );
    assert!(agent.audit.entries().is_empty());
    let resolution = recovered(&host, &agent, &recovery_options()).await;
    assert!(
        matches!(resolution, Resolution::NotSent { .. }),
        "{resolution:?}"
    );
    let out = agent.jobs.submit(op.clone(), UNIX_NOW).await.unwrap();
    assert!(matches!(out, SignedJobOutcome::Executed { .. }), "{out:?}");
    assert!(agent.gate.nonce_store().seen("n-gate"));
    assert_already_applied(&agent, op).await;
    assert_eq!(
        host.sim
            .state()
            .requests_to("DELETE /nodes/{node}/lxc/{vmid}"),
        1
    );
}

#[tokio::test]
async fn an_op_the_gate_refuses_never_reaches_the_journal() {
    let host = sim_host().await;
    let files = Files::new();
    let agent = Agent::open(&host, &files, signers());
    let stranger = signed(STRANGER, blob("destroy_guest", Some(101), json!({}), "n-x"));
    let unsigned = felhom_reconcile::SignedOp {
        blob: blob("destroy_guest", Some(101), json!({}), "n-y"),
        signature: Vec::new(),
    };
    for op in [stranger.clone(), stranger, unsigned] {
        let out = agent.jobs.submit(op, UNIX_NOW).await.unwrap();
        assert!(matches!(out, SignedJobOutcome::Refused { .. }), "{out:?}");
    }
    assert_eq!(agent.journal.lock().unwrap().len(), 0, "nothing journaled");
    let decisions: Vec<String> = agent.decisions().into_iter().map(|d| d.1).collect();
    assert_eq!(decisions, ["refused", "refused", "pending_signature"]);
    assert!(host.mutating_requests().is_empty());
}
