//! Signed-job kill points of `cargo xtask crashpoints`: a hub-served, operator-signed
//! `destroy_guest` killed with SIGKILL at each step of its signed job (the daemon's crash seam,
//! `FELHOM_AGENT_TEST_CRASH_AT=signed-<step>:1`), then restarted while the hub keeps serving it.
//!
//! Steps: `signed-before-gate` (journaled `started`, nonce not yet recorded), `signed-before-post`
//! (journaled `started`, nonce spent, no request), `signed-after-post`
//! (PVE answered the DELETE with a task, not yet journaled), `signed-after-task-recorded` (the
//! task journaled, before the terminal record). The check is stricter than for benign ops — a
//! one-shot op is sent exactly once over both lives, whatever the hub serves:
//! * at the kill, the op's journaled state and the DELETEs sent match the step;
//! * after the restart, nothing is left in flight, one DELETE was sent over both lives, the
//!   guest is gone, and the hub reads `executed` by the op's nonce in the audit tail: killed
//!   after its request, recovery closed it from PVE's task or the guest's absence; killed
//!   before, recovery proved it never reached PVE (`not_sent`: no task, the guest still there)
//!   and the hub's next serve ran it — each decision once, however often it is served.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use felhom_hub_proto::{
    AuditEntry, OpBlob, OpKind, SignedOpEntry, Timestamp, OP_SIGNATURE_NAMESPACE,
};
use felhom_journal::ops::OpState;
use felhom_pve_sim::{GuestSpec, HubSim, ListOrder, PveSim, SimConfig};
use serde_json::json;
use ssh_key::private::Ed25519Keypair;
use ssh_key::{HashAlg, LineEnding, PrivateKey};

use super::{ensure_none_in_flight, journal_ops, tail, WAIT};
use crate::agentproc::{
    hub_and_config, killed_by_sigkill, write_json, Daemon, CRASH_AT_ENV, POLL_FLOOR_ENV,
};

const DESTROY: &str = "DELETE /nodes/{node}/lxc/{vmid}";
const NONCE: &str = "crash-destroy";

/// A step of a signed job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SignedKill {
    BeforeGate,
    BeforePost,
    AfterPost,
    AfterTaskRecorded,
}

impl SignedKill {
    pub const ALL: [SignedKill; 4] = [
        SignedKill::BeforeGate,
        SignedKill::BeforePost,
        SignedKill::AfterPost,
        SignedKill::AfterTaskRecorded,
    ];

    /// The crash seam's name.
    pub fn name(self) -> &'static str {
        match self {
            SignedKill::BeforeGate => "signed-before-gate",
            SignedKill::BeforePost => "signed-before-post",
            SignedKill::AfterPost => "signed-after-post",
            SignedKill::AfterTaskRecorded => "signed-after-task-recorded",
        }
    }

    /// The op's journaled state at the kill, the DELETEs sent by then, and the decision that
    /// closes it after the restart.
    fn expect(self) -> (&'static str, u64, &'static str) {
        match self {
            SignedKill::BeforeGate | SignedKill::BeforePost => ("started", 0, "executed"),
            SignedKill::AfterPost => ("started", 1, "executed"),
            SignedKill::AfterTaskRecorded => ("task_running", 1, "executed"),
        }
    }
}

/// What one signed kill point found.
#[derive(Debug, Clone)]
pub struct SignedOutcome {
    /// DELETEs over both lives.
    pub destroys: u64,
    /// The decision that closed the op.
    pub closed: &'static str,
    /// Audit entries the op has in the last report's tail.
    pub entries: usize,
    pub took: Duration,
}

fn key() -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&[7; 32]))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The served op: a destroy of `vmid`, canonical, valid for an hour, signed with [`key`].
fn served_op(vmid: u32) -> Result<SignedOpEntry> {
    let now = unix_now();
    let blob = OpBlob {
        op: OpKind::DestroyGuest,
        host_id: felhom_testkit::config::HOST_ID.to_owned(),
        guest_id: Some(vmid),
        params: Default::default(),
        nonce: NONCE.to_owned(),
        not_before: Timestamp::from_unix_seconds(now.saturating_sub(300)),
        not_after: Timestamp::from_unix_seconds(now + 3600),
        key_id: "ops-crash".to_owned(),
    }
    .to_canonical_json();
    let signature = key()
        .sign(OP_SIGNATURE_NAMESPACE, HashAlg::Sha512, blob.as_bytes())
        .context("signing the op")?
        .to_pem(LineEnding::LF)
        .context("armoring the signature")?;
    Ok(SignedOpEntry { blob, signature })
}

fn nonce_entries(hub: &HubSim) -> Vec<AuditEntry> {
    hub.reports()
        .last()
        .map(|r| {
            r.report
                .audit_tail
                .iter()
                .filter(|e| e.nonce.as_deref() == Some(NONCE))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Runs one signed kill point of `round` with the daemon `bin`.
pub async fn run_point(bin: &Path, round: u32, kill: SignedKill) -> Result<SignedOutcome> {
    let started = Instant::now();
    let (want_state, want_sent, closed) = kill.expect();
    let vmid = 300 + 10 * (round % 7);
    // Rounds alternate a running guest (the destroy stops it first) and a stopped one.
    let sim = PveSim::start(
        SimConfig::default()
            .list_order(ListOrder::Shuffled(u64::from(round) + 1))
            .guest(GuestSpec::new(vmid, "scratch").running(round.is_multiple_of(2))),
    )
    .await
    .context("starting pve-sim")?;
    let (hub, dir, mut doc) = hub_and_config(&sim, 1).await?;
    hub.set_signed_ops(vec![served_op(vmid)?]);
    let config = dir.path().join("agent.json");
    doc["authz"]["signers"] = json!([{
        "key_id": "ops-crash",
        "role": "operational",
        "public_key": key().public_key().to_openssh().context("public key")?,
    }]);
    write_json(&config, &doc)?;
    write_json(&dir.path().join("desired.json"), &json!({ "guests": [] }))?;
    let journal = dir.path().join("journal.log");
    let floor = (POLL_FLOOR_ENV, "200".to_owned());

    // First life: dies at the step.
    let spec = format!("{}:1", kill.name());
    let mut first = Daemon::spawn(
        bin,
        &config,
        &[floor.clone(), (CRASH_AT_ENV, spec.clone())],
        None,
    )?;
    let status = first.wait_exit(WAIT).await?;
    let lines = first.lines();
    ensure!(
        lines
            .iter()
            .any(|l| l.contains(&format!("TEST crash point {spec} (signed job)"))),
        "the daemon ended ({status}) without reaching {spec}: {}",
        tail(&lines)
    );
    ensure!(
        killed_by_sigkill(&status),
        "the daemon ended with {status}, not SIGKILL"
    );
    let at_kill = journal_ops(&journal)?;
    let op = at_kill
        .values()
        .find(|r| r.action == "destroy_guest" && r.vmid == Some(vmid))
        .context("the destroy was not journaled before the kill")?;
    ensure!(
        op.idempotency_key.as_deref() == Some(&format!("signed:{NONCE}")[..]),
        "the destroy was journaled without its nonce's key: {:?}",
        op.idempotency_key
    );
    let sent = sim.state().requests_to(DESTROY);
    ensure!(
        op.state.name() == want_state && sent == want_sent,
        "at the kill the op was {} with {sent} DELETEs; {} means {want_state} and {want_sent}",
        op.state.name(),
        kill.name()
    );

    // Second life: recovery closes (or releases) it; the hub keeps serving it; it runs once.
    let mut second = Daemon::spawn(bin, &config, &[floor], None)?;
    let deadline = Instant::now() + WAIT;
    loop {
        if nonce_entries(&hub).iter().any(|e| e.decision == closed) {
            break;
        }
        if let Some(status) = second.exited() {
            bail!(
                "the restarted daemon exited ({status}): {}",
                tail(&second.lines())
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "no report showed the op {closed} within {WAIT:?}: {:?}\n  {}",
                nonce_entries(&hub),
                tail(&second.lines())
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Served on more reports after it was closed.
    let seen = hub.report_count();
    hub.wait_for_reports(seen + 3, WAIT)
        .await
        .context("waiting for more reports")?;
    let exit = second.terminate(WAIT).await?;
    ensure!(exit.success(), "the restarted daemon exited with {exit}");

    let destroys = sim.state().requests_to(DESTROY);
    ensure!(
        destroys == 1,
        "{destroys} DELETEs over both lives: a signed op runs exactly once"
    );
    ensure!(
        sim.state().guest(vmid).is_none(),
        "the guest is still there after its one DELETE"
    );
    let after = journal_ops(&journal)?;
    ensure_none_in_flight(&after)?;
    let closed_op = after
        .get(op.op_id.as_str())
        .context("the op was lost from the journal")?;
    // Killed before its request: closed not_sent, and a second op under the same nonce ran it.
    let resumed = matches!(kill, SignedKill::BeforeGate | SignedKill::BeforePost);
    let closed_as_expected = match &closed_op.state {
        OpState::Failed { error } => resumed && error.starts_with("not_sent"),
        OpState::Succeeded => !resumed,
        _ => false,
    };
    ensure!(
        closed_as_expected,
        "the op was closed {:?} in the journal after a kill {}",
        closed_op.state,
        kill.name()
    );
    let key = format!("signed:{NONCE}");
    let succeeded = after
        .values()
        .filter(|r| r.idempotency_key.as_deref() == Some(key.as_str()))
        .filter(|r| r.state == OpState::Succeeded)
        .count();
    ensure!(
        succeeded == 1,
        "{succeeded} ops under the nonce's key succeeded, not one"
    );
    let entries = nonce_entries(&hub);
    let count = |d: &str| entries.iter().filter(|e| e.decision == d).count();
    // an allow before the kill unless it came before the gate, and the resumed run's
    let allows = if kill == SignedKill::BeforePost { 2 } else { 1 };
    ensure!(
        count("allowed") == allows && count(closed) == 1 && count("refused") <= 1,
        "the op's audit entries are not one per decision: {:?}",
        entries
            .iter()
            .map(|e| format!("{} {:?}", e.decision, e.reason))
            .collect::<Vec<_>>()
    );
    sim.shutdown().await;
    hub.shutdown().await;
    Ok(SignedOutcome {
        destroys,
        closed,
        entries: entries.len(),
        took: started.elapsed(),
    })
}

/// Runs every signed point of `rounds` rounds; a line per point when `verbose`.
pub async fn run_points(
    bin: &Path,
    rounds: u32,
    verbose: bool,
) -> Vec<(u32, SignedKill, Result<SignedOutcome>)> {
    let mut out = Vec::new();
    let total = rounds as usize * SignedKill::ALL.len();
    for round in 0..rounds {
        for kill in SignedKill::ALL {
            let result = run_point(bin, round, kill).await;
            if verbose {
                let i = out.len() + 1;
                match &result {
                    Ok(o) => println!(
                        "[{i:>3}/{total}] round {round:>2} destroy_guest {:<26} ok: {} DELETE over \
                         both lives, closed {}, {} audit entries for its nonce ({:.1} s)",
                        kill.name(),
                        o.destroys,
                        o.closed,
                        o.entries,
                        o.took.as_secs_f64()
                    ),
                    Err(e) => println!(
                        "[{i:>3}/{total}] round {round:>2} destroy_guest {:<26} FAILED: {e:#}",
                        kill.name()
                    ),
                }
            }
            out.push((round, kill, result));
        }
    }
    out
}

/// The table of the signed points; how many failed.
pub fn summarize(outcomes: &[(u32, SignedKill, Result<SignedOutcome>)]) -> usize {
    println!(
        "\n{:<14} {:<26} {:>6} {:>9} {:<16} {:>7}",
        "signed job", "killed at", "points", "DELETEs", "closed as", "failed"
    );
    for kill in SignedKill::ALL {
        let rows: Vec<_> = outcomes.iter().filter(|(_, k, _)| *k == kill).collect();
        let destroys: u64 = rows
            .iter()
            .filter_map(|(_, _, r)| r.as_ref().ok())
            .map(|o| o.destroys)
            .sum();
        let failed = rows.iter().filter(|(_, _, r)| r.is_err()).count();
        println!(
            "{:<14} {:<26} {:>6} {:>9} {:<16} {:>7}",
            "destroy_guest",
            kill.name(),
            rows.len(),
            destroys,
            kill.expect().2,
            failed
        );
    }
    println!(
        "a signed op runs exactly once: killed after its request, it is closed from PVE's task \
         or the guest's absence; killed before, recovery proves it never reached PVE (no task, \
         guest unchanged) and the hub's next serve runs it"
    );
    outcomes.iter().filter(|(_, _, r)| r.is_err()).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_expects_a_state_a_request_count_and_a_closing_decision() {
        let names: Vec<&str> = SignedKill::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
                "signed-before-gate",
                "signed-before-post",
                "signed-after-post",
                "signed-after-task-recorded"
            ]
        );
        assert_eq!(SignedKill::BeforePost.expect(), ("started", 0, "executed"));
        assert_eq!(SignedKill::AfterTaskRecorded.expect().1, 1);
    }
}
