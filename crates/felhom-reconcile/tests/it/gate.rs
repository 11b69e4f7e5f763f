//! The adversarial matrix of the reversibility gate, against the real `Verifier`, real OpenSSH
//! signatures, a file-backed nonce store and journal, and the simulator over TLS. Every row
//! asserts the typed reason and that no mutating request reached the simulator.

use felhom_authz::{AuthzError, BindingField, Role};
use felhom_journal::{KeyState, OpState};
use felhom_reconcile::signed::idempotency_key;
use felhom_reconcile::{
    DesiredGuest, DestructiveAction, Engine, GateReason, SignedJobOutcome, SignedOp, SignerSpec,
    CREATE_GUEST_ACTION,
};
use serde_json::json;

use crate::signing::*;
use crate::support::provider;

fn destroy(vmid: u32, nonce: &str) -> Vec<u8> {
    blob("destroy_guest", Some(vmid), json!({}), nonce)
}

fn refused_with(outcome: SignedJobOutcome) -> GateReason {
    match outcome {
        SignedJobOutcome::Refused { reason, .. } => reason,
        other => panic!("not refused: {other:?}"),
    }
}

#[tokio::test]
async fn unsigned_job_and_unsigned_present_false_delta_are_pending_and_never_sent() {
    let host = sim_host().await;
    let files = Files::new();
    let agent = Agent::open(&host, &files, signers());

    let unsigned = SignedOp {
        blob: destroy(101, "n-unsigned"),
        signature: Vec::new(),
    };
    let out = agent.jobs.submit(unsigned, UNIX_NOW).await.unwrap();
    assert_eq!(refused_with(out), GateReason::PendingSignature);

    let engine = Engine::new(
        host.api.clone(),
        agent.queue.clone(),
        Some(agent.journal.clone()),
    )
    .with_gate(GateHandle(agent.gate.clone()));
    let mut gone = DesiredGuest::new(101);
    gone.present = false;
    let summary = engine
        .run_pass(&provider(vec![gone]), UNIX_NOW)
        .await
        .unwrap();
    assert_eq!(summary.pending_signature.len(), 1, "{summary}");
    assert_eq!(summary.pending_signature[0].vmid, 101);
    assert!(summary.changed_nothing());
    assert!(
        host.mutating_requests().is_empty(),
        "{:?}",
        host.mutating_requests()
    );
    assert!(host.sim.state().guest(101).is_some());
    let pending: Vec<_> = agent
        .decisions()
        .into_iter()
        .filter(|(_, d, _)| d == "pending_signature")
        .collect();
    assert_eq!(pending.len(), 2, "both audited: {:?}", agent.decisions());
}

/// The engine's gate seam takes the gate by value; this forwards to the shared one.
struct GateHandle(std::sync::Arc<Gate>);

impl felhom_reconcile::Gate for GateHandle {
    fn decide(
        &self,
        action: &felhom_reconcile::Action,
    ) -> impl std::future::Future<Output = felhom_reconcile::GateDecision> + Send {
        self.0.decide(action)
    }
}

#[tokio::test]
async fn every_authz_refusal_is_typed_and_sends_nothing() {
    let host = sim_host().await;
    let files = Files::new();
    let agent = Agent::open(&host, &files, signers());
    let b = destroy(101, "n-authz");

    type Expected = fn(&AuthzError) -> bool;
    let cases: Vec<(&str, SignedOp, Expected)> = vec![
        ("unknown signer", signed(STRANGER, b.clone()), |e| {
            matches!(e, AuthzError::UnknownSigner { .. })
        }),
        (
            "bad signature",
            SignedOp {
                blob: b.clone(),
                signature: signed(ANNA, destroy(101, "n-other")).signature,
            },
            |e| matches!(e, AuthzError::BadSignature { .. }),
        ),
        (
            "wrong namespace",
            SignedOp {
                blob: b.clone(),
                signature: sign_ns(ANNA, "file", &b),
            },
            |e| matches!(e, AuthzError::Namespace { .. }),
        ),
        (
            "expired",
            signed(
                ANNA,
                blob_with("destroy_guest", Some(101), json!({}), "n-exp", |v| {
                    v["not_before"] = json!("2026-06-01T10:00:00Z");
                    v["not_after"] = json!("2026-06-01T10:15:00Z");
                }),
            ),
            |e| matches!(e, AuthzError::Expired { .. }),
        ),
        (
            "not yet valid",
            signed(
                ANNA,
                blob_with("destroy_guest", Some(101), json!({}), "n-nyv", |v| {
                    v["not_before"] = json!("2026-06-01T14:00:00Z");
                    v["not_after"] = json!("2026-06-01T14:15:00Z");
                }),
            ),
            |e| matches!(e, AuthzError::NotYetValid { .. }),
        ),
        (
            "wrong host",
            signed(
                ANNA,
                blob_with("destroy_guest", Some(101), json!({}), "n-host", |v| {
                    v["host_id"] = json!("pve-02");
                }),
            ),
            |e| matches!(e, AuthzError::Target { .. }),
        ),
    ];
    for (name, op, expected) in cases {
        match refused_with(agent.jobs.submit(op, UNIX_NOW).await.unwrap()) {
            GateReason::Authz(e) => assert!(expected(&e), "{name}: {e}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(host.mutating_requests().is_empty());
    assert!(host.sim.state().guest(101).is_some());
    let refused = agent
        .audit
        .entries()
        .into_iter()
        .filter(|e| e.decision == "refused")
        .count();
    assert_eq!(refused, 6);
}

#[tokio::test]
async fn a_valid_bound_fresh_op_runs_once_journaled_audited_and_replays_are_refused_across_restart()
{
    let host = sim_host().await;
    let files = Files::new();
    let op = signed(ANNA, destroy(100, "n-once"));
    {
        let agent = Agent::open(&host, &files, signers());
        let out = agent.jobs.submit(op.clone(), UNIX_NOW).await.unwrap();
        let SignedJobOutcome::Executed { key_id, nonce, .. } = &out else {
            panic!("not executed: {out:?}")
        };
        assert_eq!((key_id.as_str(), nonce.as_str()), ("ops-anna", "n-once"));
        assert!(host.sim.state().guest(100).is_none(), "destroyed");
        // running guest: stopped first, then destroyed
        assert_eq!(host.task_types(), ["vzstop", "vzdestroy"]);
        {
            let j = agent.journal.lock().unwrap();
            assert!(j.already_applied(&idempotency_key("n-once")));
            let entry = j
                .entries()
                .find(|e| e.action == "destroy_guest")
                .unwrap()
                .clone();
            assert_eq!(entry.state, OpState::Succeeded);
            assert_eq!(entry.vmid, Some(100));
        }
        let decisions = agent.decisions();
        assert!(decisions.contains(&("destroy_guest".into(), "allowed".into(), None)));
        assert!(decisions.contains(&("destroy_guest".into(), "executed".into(), None)));

        // replay in the same run: deduped by the journal's key
        let again = agent.jobs.submit(op.clone(), UNIX_NOW).await.unwrap();
        assert!(
            matches!(
                again,
                SignedJobOutcome::AlreadyApplied {
                    in_flight: false,
                    ..
                }
            ),
            "{again:?}"
        );
    }
    // restart: same files
    let agent = Agent::open(&host, &files, signers());
    let again = agent.jobs.submit(op.clone(), UNIX_NOW).await.unwrap();
    assert!(
        matches!(again, SignedJobOutcome::AlreadyApplied { .. }),
        "{again:?}"
    );
    drop(agent);
    // even with the journal lost, the durable nonce store refuses it
    std::fs::remove_file(files.journal()).unwrap();
    let agent = Agent::open(&host, &files, signers());
    match refused_with(agent.jobs.submit(op, UNIX_NOW).await.unwrap()) {
        GateReason::Authz(AuthzError::Replay { nonce, .. }) => assert_eq!(nonce, "n-once"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        host.sim
            .state()
            .requests_to("DELETE /nodes/{node}/lxc/{vmid}"),
        1,
        "executed exactly once"
    );
}

#[tokio::test]
async fn a_mis_bound_signature_is_refused_naming_the_field_without_burning_its_nonce() {
    let host = sim_host().await;
    let files = Files::new();
    let agent = Agent::open(&host, &files, signers());
    let rollback = signed(
        ANNA,
        blob(
            "rollback",
            Some(101),
            json!({"snapname": "before", "start": true}),
            "n-bind",
        ),
    );
    let gate = agent.gate.clone();
    let check =
        |action: DestructiveAction| gate.decide_destructive(&action, Some(&rollback), UNIX_NOW);
    let field = |r: Result<_, GateReason>| match r {
        Err(GateReason::Authz(AuthzError::BindingMismatch { field })) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field(check(DestructiveAction::Rollback {
            vmid: 100,
            snapname: "before".into(),
            start: true
        })),
        BindingField::GuestId
    );
    assert_eq!(
        field(check(DestructiveAction::DestroyGuest { vmid: 101 })),
        BindingField::Op
    );
    assert_eq!(
        field(check(DestructiveAction::Rollback {
            vmid: 101,
            snapname: "before".into(),
            start: false
        })),
        BindingField::Params
    );
    assert!(host.mutating_requests().is_empty());
    // the nonce is unburned: the action it names is accepted with the same signature
    let allowed = check(DestructiveAction::Rollback {
        vmid: 101,
        snapname: "before".into(),
        start: true,
    })
    .expect("the bound action is allowed");
    assert_eq!(allowed.signed.unwrap().nonce, "n-bind");
    let binding = agent
        .audit
        .entries()
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("binding_mismatch"))
        .count();
    assert_eq!(binding, 3);
}

#[tokio::test]
async fn a_recovery_key_may_rotate_signers_but_not_destroy() {
    let host = sim_host().await;
    let files = Files::new();
    let agent = Agent::open(&host, &files, signers());
    let out = agent
        .jobs
        .submit(signed(RECOVERY, destroy(101, "n-rec")), UNIX_NOW)
        .await
        .unwrap();
    match refused_with(out) {
        GateReason::Authz(AuthzError::RoleDenied { role, key_id, .. }) => {
            assert_eq!((role, key_id.as_str()), (Role::Recovery, "ops-rec"));
        }
        other => panic!("{other:?}"),
    }
    assert!(host.mutating_requests().is_empty());

    // rotate to a new operational key (seed 3) plus the recovery key
    let set = vec![
        SignerSpec {
            key_id: "ops-carl".into(),
            role: Role::Operational,
            public_key: line(3),
        },
        SignerSpec {
            key_id: "ops-rec".into(),
            role: Role::Recovery,
            public_key: line(RECOVERY),
        },
    ];
    let rotate = signed(
        RECOVERY,
        blob("rotate_signers", None, json!({ "signers": set }), "n-rot"),
    );
    let out = agent.jobs.submit(rotate, UNIX_NOW).await.unwrap();
    assert!(matches!(out, SignedJobOutcome::Executed { .. }), "{out:?}");
    let ids: Vec<String> = agent.gate.signers().into_iter().map(|s| s.key_id).collect();
    assert_eq!(ids, ["ops-carl", "ops-rec"]);
    assert!(
        host.mutating_requests().is_empty(),
        "rotation sends nothing to pve"
    );
    drop(agent);

    // after a restart the signers file overrides the configured set: anna is retired
    let agent = Agent::open(&host, &files, signers());
    let out = agent
        .jobs
        .submit(signed(ANNA, destroy(101, "n-anna")), UNIX_NOW)
        .await
        .unwrap();
    assert!(matches!(
        refused_with(out),
        GateReason::Authz(AuthzError::UnknownSigner { .. })
    ));
    let out = agent
        .jobs
        .submit(signed(3, destroy(101, "n-carl")), UNIX_NOW)
        .await
        .unwrap();
    assert!(matches!(out, SignedJobOutcome::Executed { .. }), "{out:?}");
}

#[tokio::test]
async fn provenance_comes_from_the_journal_never_from_tags_or_descriptions() {
    let host = sim_host().await;
    let files = Files::new();
    let agent = Agent::open(&host, &files, vec![]);
    let state = host.sim.state();
    // what a hub or anyone with VM.Config.Options could write
    state.set_config(101, "tags", "felhom-scratch");
    state.set_config(101, "description", "created by felhom (scratch)");
    let before = host.mutating_requests().len();

    let engine = Engine::new(
        host.api.clone(),
        agent.queue.clone(),
        Some(agent.journal.clone()),
    )
    .with_gate(GateHandle(agent.gate.clone()));
    let mut gone = DesiredGuest::new(101);
    gone.present = false;
    let desired = provider(vec![gone]);
    let summary = engine.run_pass(&desired, UNIX_NOW).await.unwrap();
    assert_eq!(summary.not_run.len(), 1, "no signers: refused — {summary}");
    assert!(summary.not_run[0].detail.contains("no signers"));
    assert_eq!(host.mutating_requests().len(), before);
    assert!(state.guest(101).is_some());

    // the agent's own journaled creation makes the same destroy benign
    {
        let mut j = agent.journal.lock().unwrap();
        let op = j
            .started(Some(101), CREATE_GUEST_ACTION, None, UNIX_NOW)
            .unwrap();
        j.succeeded(&op, UNIX_NOW).unwrap();
    }
    let summary = engine.run_pass(&desired, UNIX_NOW).await.unwrap();
    assert_eq!(summary.succeeded, 1, "{summary}");
    assert!(state.guest(101).is_none());
    let last = agent.audit.entries().pop().unwrap();
    assert_eq!(
        (
            last.class.as_str(),
            last.decision.as_str(),
            last.reason.as_deref()
        ),
        ("benign", "allowed", Some("agent_created"))
    );
    // converged: the guest is gone and nothing more is planned
    let summary = engine.run_pass(&desired, UNIX_NOW).await.unwrap();
    assert_eq!(summary.planned, 0);
    let j = agent.journal.lock().unwrap();
    assert_eq!(j.key_state("anything"), KeyState::Unknown);
}
