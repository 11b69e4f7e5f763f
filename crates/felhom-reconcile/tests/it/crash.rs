//! A signed op killed between its request and its terminal record (the runner's fault seam),
//! then a restart: startup recovery closes it from PVE's real outcome, and it is never sent
//! again.

use std::sync::Arc;

use felhom_journal::OpState;
use felhom_pve_sim::{GuestSpec, HttpFault, SimConfig};
use felhom_reconcile::recovery::{audit_recovery, OUTCOME_UNKNOWN};
use felhom_reconcile::{recover_with, CrashPoint, RecoveryOptions, Resolution, SignedJobOutcome};
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

fn recovery_options() -> RecoveryOptions {
    RecoveryOptions { wait: fast_wait() }
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
    let again = agent.jobs.submit(op, UNIX_NOW).await.unwrap();
    assert!(
        matches!(again, SignedJobOutcome::AlreadyApplied { .. }),
        "{again:?}"
    );
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
    crash_at(
        Agent::open(&host, &files, signers()),
        CrashPoint::AfterPost,
        op.clone(),
    )
    .await;
    let agent = Agent::open(&host, &files, signers());
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
    let again = agent.jobs.submit(op, UNIX_NOW).await.unwrap();
    assert!(
        matches!(again, SignedJobOutcome::AlreadyApplied { .. }),
        "{again:?}"
    );
}

#[tokio::test]
async fn killed_before_its_task_was_journaled_a_rollback_is_closed_from_its_listed_task() {
    let host = host(
        SimConfig::default().guest(
            GuestSpec::new(102, "app")
                .snapshot("before", "known good", 1_700_000_000)
                .running(false),
        ),
    )
    .await;
    let files = Files::new();
    let op = signed(
        ANNA,
        blob(
            "rollback",
            Some(102),
            json!({"snapname": "before", "start": false}),
            "n-listed",
        ),
    );
    crash_at(
        Agent::open(&host, &files, signers()),
        CrashPoint::AfterPost,
        op.clone(),
    )
    .await;
    let agent = Agent::open(&host, &files, signers());
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
    let host = host(
        SimConfig::default().guest(
            GuestSpec::new(102, "app")
                .snapshot("before", "known good", 1_700_000_000)
                .running(false),
        ),
    )
    .await;
    let files = Files::new();
    let op = signed(
        ANNA,
        blob(
            "rollback",
            Some(102),
            json!({"snapname": "before", "start": false}),
            "n-unknown",
        ),
    );
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
    host.sim.faults().fail_next(
        1,
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
