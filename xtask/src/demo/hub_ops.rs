//! The hub-served signed-op story of `cargo xtask demo`, while the hub-driven daemon runs: the
//! hub asks to destroy a scratch guest with no signature (held pending, audited in the next
//! report); an operator signs the op with the real `ssh-keygen -Y sign -n felhom-op-v1` (a
//! throwaway key made in the demo's temp dir and pinned as the daemon's `ops-operator` signer);
//! the hub serves it → executed once; served again → refused, not executed; the hub sets
//! `blocked` → nothing moves; unblocked → the new desired state converges.
//!
//! Where `ssh-keygen` is absent the signing and replay steps are reported skipped, never passed
//! (the rest of the story still runs). Everything is checked from the hub's received reports and the PVE
//! simulator's state, not from log lines.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use felhom_hub_proto::{
    AuditEntry, DesiredGuestEntry, DesiredStateBody, OpBlob, OpKind, SignedOpEntry, Timestamp,
    DESIRED_STATE_PATH, OP_SIGNATURE_NAMESPACE, SIGNED_OPS_PATH,
};
use felhom_pve_sim::GuestSpec;

use super::Demo;

/// The scratch guest the hub asks to destroy.
pub const SCRATCH_VMID: u32 = 9001;
/// The key id the throwaway operator key is pinned under.
pub const OPERATOR_KEY_ID: &str = "ops-operator";
const DESTROY: &str = "DELETE /nodes/{node}/lxc/{vmid}";
/// Longest wait for anything the daemon should do (a few of the demo's 2 s polls).
const WAIT: Duration = Duration::from_secs(20);
/// The host id the demo's config names.
const HOST_ID: &str = felhom_testkit::config::HOST_ID;

/// The steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubOpsStep {
    /// The hub's desired state wants the scratch guest gone; no signature: pending.
    Ask,
    /// The operator signs with ssh-keygen; the hub serves it; executed once.
    Sign,
    /// The hub serves the same op again: refused, not executed.
    Replay,
    /// `blocked`: a new generation is neither fetched nor applied.
    Block,
    /// Unblocked: it converges.
    Unblock,
}

impl HubOpsStep {
    /// Every step with its title.
    pub fn all() -> [(&'static str, HubOpsStep); 5] {
        [
            (
                "the hub asks to destroy scratch guest 9001 (desired present:false) with no \
                 signature: held pending, audited in the next host report",
                HubOpsStep::Ask,
            ),
            (
                "the operator signs the destroy with ssh-keygen -Y sign -n felhom-op-v1; the hub \
                 serves it: executed once, audited with its nonce",
                HubOpsStep::Sign,
            ),
            (
                "the hub serves the same signed op again: refused as a replay, not executed",
                HubOpsStep::Replay,
            ),
            (
                "the hub sets blocked: a new desired generation is neither fetched nor applied",
                HubOpsStep::Block,
            ),
            (
                "the hub lifts the block: the new desired generation converges",
                HubOpsStep::Unblock,
            ),
        ]
    }
}

/// What the steps share: the signed op once made (`None` without ssh-keygen).
#[derive(Default)]
pub struct HubOpsState {
    signed: std::sync::Mutex<Option<SignedOpEntry>>,
}

/// Runs one step.
pub async fn run(demo: &Demo, step: HubOpsStep) -> Result<()> {
    match step {
        HubOpsStep::Ask => ask(demo).await,
        HubOpsStep::Sign => sign(demo).await,
        HubOpsStep::Replay => replay(demo).await,
        HubOpsStep::Block => block(demo).await,
        HubOpsStep::Unblock => unblock(demo).await,
    }
}

fn key_path(dir: &Path) -> PathBuf {
    dir.join("operator-key")
}

/// The throwaway operator key's public line, made with `ssh-keygen` in `dir` on first use;
/// `None` (with a note) where ssh-keygen is absent or fails. The hub-driven daemon pins it as
/// [`OPERATOR_KEY_ID`] (operational).
pub fn operator_public_key(dir: &Path) -> Option<String> {
    let key = key_path(dir);
    let public = key.with_extension("pub");
    if !public.exists() {
        let made = std::process::Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "felhom-demo-operator",
                "-f",
            ])
            .arg(&key)
            .stdin(Stdio::null())
            .status();
        match made {
            Ok(s) if s.success() => {}
            Ok(s) => {
                println!("note: ssh-keygen exited with {s}: no operator key, the signing steps are skipped");
                return None;
            }
            Err(e) => {
                println!("note: ssh-keygen is not available ({e}): no operator key, the signing steps are skipped");
                return None;
            }
        }
    }
    std::fs::read_to_string(&public)
        .ok()
        .map(|s| s.trim().to_owned())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The hub's desired state with `cores` for guest 100, the scratch guest absent.
fn desired(generation: u64, cores: u64) -> DesiredStateBody {
    let mut body = super::agent::hub_desired_state();
    body.generation = generation;
    if let Some(spec) = body.guests.iter_mut().find(|g| g.vmid == 100) {
        spec.spec.get_or_insert_with(Default::default).cores = Some(cores);
    }
    body.guests.push(DesiredGuestEntry {
        vmid: u64::from(SCRATCH_VMID),
        present: Some(false),
        ..DesiredGuestEntry::default()
    });
    body
}

/// Waits for a report whose audit tail holds an entry `found` accepts; that entry.
async fn wait_entry(
    demo: &Demo,
    what: &str,
    found: impl Fn(&AuditEntry) -> bool,
) -> Result<AuditEntry> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let hit = demo
            .hub
            .reports()
            .last()
            .and_then(|r| r.report.audit_tail.iter().find(|e| found(e)).cloned());
        if let Some(entry) = hit {
            return Ok(entry);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("no report carried {what} in its audit_tail within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn more_reports(demo: &Demo, n: usize) -> Result<()> {
    let seen = demo.hub.report_count();
    demo.hub
        .wait_for_reports(seen + n, WAIT)
        .await
        .with_context(|| format!("waiting for {n} more reports"))?;
    Ok(())
}

fn show(entry: &AuditEntry) -> String {
    serde_json::to_string(entry).unwrap_or_default()
}

async fn ask(demo: &Demo) -> Result<()> {
    let state = demo.sim.state();
    state.add_guest(GuestSpec::new(SCRATCH_VMID, "scratch-2").running(true));
    println!(
        "guest {SCRATCH_VMID} exists (created outside the agent: destroying it needs a signature)"
    );
    let body = desired(2, 2);
    demo.hub.publish_desired(body.clone());
    println!(
        "hub publishes generation 2: {}",
        serde_json::to_string(&body)?
    );
    let deletes = state.requests_to(DESTROY);
    let entry = wait_entry(demo, "the pending destroy", |e| {
        e.vmid == Some(SCRATCH_VMID) && e.decision == "pending_signature"
    })
    .await?;
    println!("report audit_tail: {}", show(&entry));
    ensure!(
        state.guest(SCRATCH_VMID).is_some() && state.requests_to(DESTROY) == deletes,
        "the scratch guest was destroyed without a signature"
    );
    println!("guest {SCRATCH_VMID} is still there: the hub's intent alone destroys nothing");
    Ok(())
}

async fn sign(demo: &Demo) -> Result<()> {
    if operator_public_key(&demo.dir).is_none() {
        return Err(super::Skipped(
            "ssh-keygen is absent: the operator cannot sign here".to_owned(),
        )
        .into());
    }
    let now = unix_now();
    let nonce = format!("demo-destroy-{now}");
    // The hub composes the blob once, canonically, and serves it verbatim.
    let blob = OpBlob {
        op: OpKind::DestroyGuest,
        host_id: HOST_ID.to_owned(),
        guest_id: Some(SCRATCH_VMID),
        params: Default::default(),
        nonce: nonce.clone(),
        not_before: Timestamp::from_unix_seconds(now.saturating_sub(60)),
        not_after: Timestamp::from_unix_seconds(now + 3600),
        key_id: OPERATOR_KEY_ID.to_owned(),
    }
    .to_canonical_json();
    let file = demo.dir.join("destroy-op.json");
    std::fs::write(&file, &blob).context("writing the op blob")?;
    println!("op blob  {blob}");
    let key = key_path(&demo.dir);
    println!(
        "$ ssh-keygen -Y sign -n {OP_SIGNATURE_NAMESPACE} -f {} {}",
        key.display(),
        file.display()
    );
    let status = tokio::process::Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", OP_SIGNATURE_NAMESPACE, "-f"])
        .arg(&key)
        .arg(&file)
        .stdin(Stdio::null())
        .status()
        .await
        .context("running ssh-keygen -Y sign")?;
    ensure!(status.success(), "ssh-keygen -Y sign exited with {status}");
    let sig_file = PathBuf::from(format!("{}.sig", file.display()));
    let signature = std::fs::read_to_string(&sig_file)
        .with_context(|| format!("reading {}", sig_file.display()))?;
    let op = SignedOpEntry { blob, signature };
    *demo
        .ops
        .signed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(op.clone());

    let state = demo.sim.state();
    let deletes = state.requests_to(DESTROY);
    demo.hub.set_signed_ops(vec![op]);
    println!("hub serves it at GET {SIGNED_OPS_PATH} (envelope has_signed_ops=true)");
    let entry = wait_entry(demo, "the executed destroy", |e| {
        e.nonce.as_deref() == Some(nonce.as_str()) && e.decision == "executed"
    })
    .await?;
    println!("report audit_tail: {}", show(&entry));
    ensure!(
        state.guest(SCRATCH_VMID).is_none(),
        "guest {SCRATCH_VMID} still exists"
    );
    let sent = state.requests_to(DESTROY) - deletes;
    ensure!(sent == 1, "{sent} DELETE requests, expected exactly one");
    println!("guest {SCRATCH_VMID} destroyed: one DELETE reached PVE");
    Ok(())
}

async fn replay(demo: &Demo) -> Result<()> {
    let op = demo
        .ops
        .signed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let Some(op) = op else {
        return Err(super::Skipped("no signed op (ssh-keygen is absent)".to_owned()).into());
    };
    let nonce = serde_json::from_str::<serde_json::Value>(&op.blob)?["nonce"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let state = demo.sim.state();
    let deletes = state.requests_to(DESTROY);
    let fetches = demo.hub.request_count(SIGNED_OPS_PATH);
    let entry = wait_entry(demo, "the refused repeat", |e| {
        e.nonce.as_deref() == Some(nonce.as_str()) && e.decision == "refused"
    })
    .await?;
    println!("report audit_tail: {}", show(&entry));
    more_reports(demo, 2).await?;
    ensure!(
        state.requests_to(DESTROY) == deletes,
        "the replayed op reached PVE"
    );
    let reports = demo.hub.reports();
    let tail = &reports.last().context("no report")?.report.audit_tail;
    let entries = tail
        .iter()
        .filter(|e| e.nonce.as_deref() == Some(nonce.as_str()))
        .count();
    println!(
        "served {} more times, never sent again; {entries} audit entries carry its nonce \
         (allowed, executed, refused once: not one per serve)",
        demo.hub.request_count(SIGNED_OPS_PATH) - fetches
    );
    ensure!(
        entries <= 3,
        "the tail grows with the serves: {entries} entries"
    );
    Ok(())
}

fn cores_of_100(demo: &Demo) -> Option<String> {
    demo.sim
        .state()
        .guest(100)
        .and_then(|g| g.config.get("cores").cloned())
}

async fn block(demo: &Demo) -> Result<()> {
    let mut envelope = demo.hub.envelope();
    envelope.blocked = Some(true);
    demo.hub.set_envelope(envelope);
    println!("hub answers every report with blocked=true");
    more_reports(demo, 1).await?;
    let state = demo.sim.state();
    let (mutations, fetches, ops) = (
        state.accepted_mutations(),
        demo.hub.request_count(DESIRED_STATE_PATH),
        demo.hub.request_count(SIGNED_OPS_PATH),
    );
    let cores = cores_of_100(demo);
    demo.hub.publish_desired(desired(3, 3));
    println!("hub publishes generation 3: guest 100 at 3 cores");
    more_reports(demo, 3).await?;
    ensure!(
        state.accepted_mutations() == mutations,
        "a mutation reached PVE while blocked"
    );
    ensure!(
        demo.hub.request_count(DESIRED_STATE_PATH) == fetches
            && demo.hub.request_count(SIGNED_OPS_PATH) == ops,
        "the daemon fetched intent while blocked"
    );
    ensure!(
        cores_of_100(demo) == cores,
        "guest 100 changed while blocked"
    );
    println!(
        "3 reports later: reports continue, nothing fetched, nothing sent (guest 100 still at {} \
         cores)",
        cores.as_deref().unwrap_or("?")
    );
    Ok(())
}

async fn unblock(demo: &Demo) -> Result<()> {
    let mut envelope = demo.hub.envelope();
    envelope.blocked = Some(false);
    demo.hub.set_envelope(envelope);
    println!("hub answers with blocked=false");
    let deadline = tokio::time::Instant::now() + WAIT;
    while cores_of_100(demo).as_deref() != Some("3") {
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "guest 100 did not converge to 3 cores within {WAIT:?} (cores {:?})",
                cores_of_100(demo)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("generation 3 fetched and applied: guest 100 now at 3 cores");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hub_asks_for_the_scratch_guest_gone_and_each_generation_resizes_guest_100() {
        let body = desired(3, 3);
        assert_eq!(body.generation, 3);
        let scratch = body
            .guests
            .iter()
            .find(|g| g.vmid == u64::from(SCRATCH_VMID))
            .unwrap();
        assert_eq!(scratch.present, Some(false));
        let web = body.guests.iter().find(|g| g.vmid == 100).unwrap();
        assert_eq!(web.spec.as_ref().unwrap().cores, Some(3));
        let steps = HubOpsStep::all().map(|(_, s)| s);
        assert_eq!(
            steps,
            [
                HubOpsStep::Ask,
                HubOpsStep::Sign,
                HubOpsStep::Replay,
                HubOpsStep::Block,
                HubOpsStep::Unblock
            ]
        );
    }
}
