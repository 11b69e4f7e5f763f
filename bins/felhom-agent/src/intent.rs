//! Hub-served intent in the daemon: the heartbeat hands each well-formed envelope here
//! ([`HubIntent::observe`]); before each reconcile pass [`HubIntent::before_pass`] acts on the
//! latest one — fetch the desired state when `desired_generation` differs from the held one
//! (through the [`HubProvider`]), fetch the signed ops when `has_signed_ops`, and hand each to
//! the [`SignedOpSink`]. While the hub blocks this host neither happens (reports continue).
//!
//! The daemon's sink is [`GatedSink`]: each served op becomes a signed job
//! ([`SignedJobs::submit`]) — nonce dedupe in the op journal → the reversibility gate (crypto
//! over the blob string's UTF-8 bytes exactly as served, role scope, binding, nonce recorded
//! last) → journal-wrapped execution through the PVE executor, inside the queue job of the
//! op's guest (so it is serialized with reconcile on that guest). Every outcome is audited and
//! reaches the hub in the next reports' `audit_tail`, carrying the op's nonce. The loop waits
//! [`OP_WAIT`] on each op; one that runs longer finishes in its queue job while the pass goes
//! on, and is not resubmitted while it runs.
//!
//! A failed or malformed fetch is logged and changes nothing; the next envelope retries.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use felhom_authz::{FileNonceStore, MemoryNonceStore, NonceStore};
use felhom_hub::hub::HubClient;
use felhom_hub_proto::{AuditEntry, ControlEnvelope, SignedOpEntry, Timestamp};
use felhom_proxmox::PveClient;
use felhom_reconcile::signed::peek_nonce;
use felhom_reconcile::{
    AuditSink, DestructiveExecutor, HubProvider, PveExecutor, SignedJobOutcome, SignedJobs,
    SignedOp, SyncOutcome,
};

use crate::status::DaemonStatus;

/// A boxed future of a sink's submission.
pub type Submitted<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Where signed ops fetched from the hub go.
pub trait SignedOpSink: Send + Sync + std::fmt::Debug {
    /// One op as served (the blob string untouched); resolves once it was decided (and, when
    /// allowed, executed).
    fn submit(&self, op: SignedOpEntry) -> Submitted<'_>;
}

/// The PVE executor the daemon runs signed jobs through: over the daemon's metered client, so
/// a signed job's requests are counted too.
pub type DaemonExecutor = PveExecutor<crate::metrics::MeteredApi<PveClient>>;

/// The daemon's signed-job runner, over whichever nonce store the gate has.
pub enum DaemonJobs {
    /// Over the file nonce store (the normal case).
    File(SignedJobs<FileNonceStore, DaemonExecutor>),
    /// The nonce store could not be opened: the gate trusts no signer, every op is refused
    /// (`no_signers`), audited.
    Memory(SignedJobs<MemoryNonceStore, DaemonExecutor>),
    /// No op journal: a signed job never runs journal-less; every op is refused
    /// (`journal_less`), audited.
    JournalLess,
}

impl std::fmt::Debug for DaemonJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DaemonJobs::File(_) => "DaemonJobs::File",
            DaemonJobs::Memory(_) => "DaemonJobs::Memory",
            DaemonJobs::JournalLess => "DaemonJobs::JournalLess",
        })
    }
}

/// How long the reconcile loop waits on one served op before its pass goes on: a destroy of a
/// large guest may run for minutes; it finishes in its guest's queue job meanwhile (an op served
/// again while it runs is not submitted twice) and is audited when it ends.
pub const OP_WAIT: Duration = Duration::from_secs(30);

/// Submits each served op as a signed job (see the module docs). Never while the hub blocks
/// this host: checked before each op, so a block that arrives mid-list stops the rest (an op
/// already executing finishes).
pub struct GatedSink {
    jobs: Arc<DaemonJobs>,
    status: Arc<DaemonStatus>,
    audit: Arc<dyn AuditSink>,
    /// Nonces of the ops submitted and not yet decided.
    running: Arc<Mutex<HashSet<String>>>,
    wait: Duration,
}

impl std::fmt::Debug for GatedSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatedSink")
            .field("jobs", &self.jobs)
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl DaemonJobs {
    /// Runs one op as a signed job; `None` when there is no journal to run it with.
    async fn submit(
        &self,
        op: SignedOp,
        now: u64,
    ) -> Option<Result<SignedJobOutcome, felhom_reconcile::JobError>> {
        match self {
            DaemonJobs::File(jobs) => Some(submit(jobs, op, now).await),
            DaemonJobs::Memory(jobs) => Some(submit(jobs, op, now).await),
            DaemonJobs::JournalLess => None,
        }
    }
}

impl GatedSink {
    /// A sink running `jobs`, skipping everything while `status` says blocked, auditing its
    /// own refusals (journal-less) into `audit`, waiting [`OP_WAIT`] on each op.
    pub fn new(jobs: DaemonJobs, status: Arc<DaemonStatus>, audit: Arc<dyn AuditSink>) -> Self {
        Self {
            jobs: Arc::new(jobs),
            status,
            audit,
            running: Arc::default(),
            wait: OP_WAIT,
        }
    }

    /// How long one served op holds the pass (tests; the daemon uses [`OP_WAIT`]).
    #[cfg(test)]
    fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    async fn run(&self, op: SignedOpEntry) {
        if self.status.blocked() {
            tracing::debug!("the hub has blocked this host: signed op not submitted");
            return;
        }
        let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
        // The blob's UTF-8 bytes exactly as served: never parsed and re-serialized.
        let signed = SignedOp {
            blob: op.blob.into_bytes(),
            signature: op.signature.into_bytes(),
        };
        if matches!(*self.jobs, DaemonJobs::JournalLess) {
            let entry = journal_less_entry(&signed.blob, now);
            felhom_reconcile::audit::record_async(Arc::clone(&self.audit), entry).await;
            return;
        }
        // An op still running from an earlier serve is not submitted again (it would only be
        // refused as already applied once it ends, after waiting in its guest's queue).
        let nonce = peek_nonce(&signed.blob);
        if let Some(n) = &nonce {
            let fresh = self
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(n.clone());
            if !fresh {
                tracing::debug!(nonce = %n, "signed op served again while it runs: not resubmitted");
                return;
            }
        }
        let (jobs, running) = (Arc::clone(&self.jobs), Arc::clone(&self.running));
        let job = tokio::spawn(async move {
            let outcome = jobs.submit(signed, now).await;
            if let Some(n) = &nonce {
                running
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(n);
            }
            if let Some(outcome) = outcome {
                log_outcome(outcome);
            }
        });
        if tokio::time::timeout(self.wait, job).await.is_err() {
            tracing::info!(
                wait_secs = self.wait.as_secs(),
                "signed op still running: the reconcile pass goes on; its outcome is audited when \
                 it ends"
            );
        }
    }
}

impl SignedOpSink for GatedSink {
    fn submit(&self, op: SignedOpEntry) -> Submitted<'_> {
        Box::pin(self.run(op))
    }
}

async fn submit<N: NonceStore + 'static, E: DestructiveExecutor>(
    jobs: &SignedJobs<N, E>,
    op: SignedOp,
    now: u64,
) -> Result<SignedJobOutcome, felhom_reconcile::JobError> {
    jobs.submit(op, now).await
}

/// The audit entry of an op refused because the daemon runs without its journal.
fn journal_less_entry(blob: &[u8], now: u64) -> AuditEntry {
    let head: Option<serde_json::Value> = serde_json::from_slice(blob).ok();
    let field = |name: &str| head.as_ref().and_then(|v| v.get(name).cloned());
    AuditEntry {
        at: Timestamp::from_unix_seconds(now),
        action: field("op")
            .and_then(|v| v.as_str().map(|s| s.chars().take(64).collect()))
            .unwrap_or_else(|| "unknown".to_owned()),
        vmid: field("guest_id")
            .and_then(|v| v.as_u64())
            .and_then(|v| u32::try_from(v).ok()),
        class: "destructive".to_owned(),
        decision: "refused".to_owned(),
        reason: Some("journal_less".to_owned()),
        detail: Some(
            "the agent runs without its op journal: a signed op never runs journal-less".to_owned(),
        ),
        key_id: None,
        nonce: peek_nonce(blob),
    }
}

/// One line per outcome (the audit already recorded the decision; an op served again is quiet).
fn log_outcome(outcome: Result<SignedJobOutcome, felhom_reconcile::JobError>) {
    match outcome {
        Ok(SignedJobOutcome::Executed {
            op_id,
            action,
            key_id,
            nonce,
            ..
        }) => tracing::info!(
            %op_id, action = action.wire_name(), %key_id, %nonce,
            "signed op from the hub executed"
        ),
        Ok(SignedJobOutcome::AlreadyApplied { nonce, op_id, .. }) => tracing::debug!(
            %nonce, %op_id, "signed op served again: already applied, not run again"
        ),
        Ok(SignedJobOutcome::NotAnAction(reason)) => {
            tracing::warn!(%reason, "signed op from the hub refused")
        }
        Ok(SignedJobOutcome::Refused { action, reason }) => tracing::warn!(
            action = action.wire_name(),
            reason = reason.code(),
            "signed op from the hub refused"
        ),
        Ok(SignedJobOutcome::Failed { action, error, .. }) => tracing::warn!(
            action = action.wire_name(), %error, "signed op from the hub failed"
        ),
        Ok(other) => tracing::warn!(outcome = ?other, "signed op from the hub"),
        Err(e) => tracing::warn!(error = %e, "signed op not run: the queue is closing"),
    }
}

/// The daemon's hub-intent state: the latest envelope, the provider, the client, the sink.
#[derive(Debug)]
pub struct HubIntent {
    /// `Some` with `reconcile.source = "hub"`.
    pub provider: Option<Arc<HubProvider>>,
    /// The hub client (the report's own: same TLS trust and key).
    pub hub: HubClient,
    /// Where signed ops go.
    pub sink: Arc<dyn SignedOpSink>,
    latest: Mutex<Option<ControlEnvelope>>,
}

impl HubIntent {
    /// Nothing observed yet.
    pub fn new(
        provider: Option<Arc<HubProvider>>,
        hub: HubClient,
        sink: Arc<dyn SignedOpSink>,
    ) -> Self {
        Self {
            provider,
            hub,
            sink,
            latest: Mutex::new(None),
        }
    }

    /// A well-formed envelope arrived (called on the heartbeat's task: just stores it).
    pub fn observe(&self, envelope: &ControlEnvelope) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(envelope.clone());
    }

    /// Acts on the latest envelope, once: syncs the desired state and fetches signed ops. With
    /// `blocked`, nothing is fetched or submitted (the envelope that lifts the block carries
    /// what to fetch).
    pub async fn before_pass(&self, blocked: bool) {
        let Some(envelope) = self
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        if blocked {
            tracing::debug!("the hub has blocked this host: no desired-state or signed-op fetch");
            return;
        }
        if let Some(provider) = &self.provider {
            let outcome = provider
                .sync(envelope.desired_generation, || self.hub.desired_state())
                .await;
            if let SyncOutcome::Updated { from, to, .. } = outcome {
                tracing::info!(from, to, "following the hub's desired state");
            }
        }
        if envelope.has_signed_ops {
            match self.hub.signed_ops().await {
                Ok(body) => {
                    for op in body.ops {
                        self.sink.submit(op).await;
                    }
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "hub signed ops: fetch failed; nothing submitted, the next report retries"
                ),
            }
        }
    }
}

/// The daemon's signed-job runner: the gate's nonce store, the real PVE executor, the daemon's
/// one queue, its op journal (`None`: [`DaemonJobs::JournalLess`]), the signers file a
/// `rotate_signers` writes (next to the nonce store), and the crash seam when set (tests).
pub fn daemon_jobs(
    gate: &crate::gate::DaemonGate,
    api: Arc<crate::metrics::MeteredApi<PveClient>>,
    queue: felhom_reconcile::Queue,
    journal: Option<felhom_reconcile::SharedJournal>,
    nonce_store: &std::path::Path,
    fault: Option<felhom_reconcile::FaultSeam>,
) -> DaemonJobs {
    let Some(journal) = journal else {
        return DaemonJobs::JournalLess;
    };
    let executor = Arc::new(PveExecutor::new(
        api,
        felhom_proxmox::WaitOptions::default(),
    ));
    let signers_path = felhom_reconcile::SignerStore::path_next_to(nonce_store);
    let signers = match felhom_reconcile::SignerStore::open(&signers_path) {
        Ok(store) => Some(Arc::new(Mutex::new(store))),
        Err(e) => {
            tracing::error!(path = %signers_path.display(), error = %e, "signers file cannot be opened: a signed rotate_signers will fail");
            None
        }
    };
    match gate {
        crate::gate::DaemonGate::Signed(g) => {
            let jobs = SignedJobs::new(Arc::clone(g), executor, queue, journal, signers);
            DaemonJobs::File(match fault {
                Some(seam) => jobs.with_fault(seam),
                None => jobs,
            })
        }
        crate::gate::DaemonGate::Unsigned(g) => {
            let jobs = SignedJobs::new(Arc::clone(g), executor, queue, journal, signers);
            DaemonJobs::Memory(match fault {
                Some(seam) => jobs.with_fault(seam),
                None => jobs,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use felhom_reconcile::MemoryAudit;

    use super::*;

    fn op(nonce: &str) -> SignedOpEntry {
        SignedOpEntry {
            blob: format!(
                r#"{{"op":"destroy_guest","host_id":"pve-01","guest_id":105,"params":{{}},"nonce":"{nonce}","not_before":"2026-11-23T10:00:00Z","not_after":"2026-11-23T11:00:00Z","key_id":"ops"}}"#
            ),
            signature: "-----BEGIN SSH SIGNATURE-----\nAA==\n-----END SSH SIGNATURE-----\n".into(),
        }
    }

    /// A served op whose PVE task runs past the wait: the pass goes on (the submit returns),
    /// the op keeps running in its guest's queue, and the same op served again meanwhile is not
    /// submitted a second time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_op_releases_the_pass_after_the_wait_and_is_not_resubmitted_meanwhile() {
        use felhom_pve_sim::{GuestSpec, PveSim, SimConfig};
        use felhom_reconcile::{Queue, ReversibilityGate, SignedJobs};

        let sim = PveSim::start(SimConfig::default().guest(GuestSpec::new(105, "scratch")))
            .await
            .unwrap();
        sim.faults()
            .slow_tasks(Some("vzdestroy"), Duration::from_secs(3600));
        let key = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[1; 32]));
        let signer = felhom_authz::Signer::from_authorized_key(
            "ops",
            felhom_authz::Role::Operational,
            &key.public_key().to_openssh().unwrap(),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (journal, _) = felhom_journal::OpJournal::open(dir.path().join("journal.log")).unwrap();
        let journal: felhom_reconcile::SharedJournal = Arc::new(Mutex::new(journal));
        let audit = Arc::new(MemoryAudit::new());
        let gate = Arc::new(ReversibilityGate::new(
            vec![signer],
            Arc::new(MemoryNonceStore::new()),
            "pve-01",
            Some(Arc::clone(&journal)),
            audit.clone(),
        ));
        let api = Arc::new(crate::metrics::MeteredApi::new(
            felhom_testkit::pve::client(&sim),
            felhom_metrics::Metrics::new("test"),
        ));
        let executor = Arc::new(PveExecutor::new(
            api,
            felhom_proxmox::WaitOptions::default(),
        ));
        let queue = Queue::new(std::num::NonZeroUsize::new(2).unwrap());
        let jobs = SignedJobs::new(gate, executor, queue, journal, None);
        let status = Arc::new(DaemonStatus::new(None));
        let sink = GatedSink::new(DaemonJobs::Memory(jobs), status, audit.clone())
            .with_wait(Duration::from_millis(300));

        let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
        let blob = felhom_hub_proto::OpBlob {
            op: felhom_hub_proto::OpKind::DestroyGuest,
            host_id: "pve-01".to_owned(),
            guest_id: Some(105),
            params: Default::default(),
            nonce: "n-long".to_owned(),
            not_before: Timestamp::from_unix_seconds(now - 60),
            not_after: Timestamp::from_unix_seconds(now + 3600),
            key_id: "ops".to_owned(),
        }
        .to_canonical_json();
        let signature = key
            .sign(
                felhom_hub_proto::OP_SIGNATURE_NAMESPACE,
                ssh_key::HashAlg::Sha512,
                blob.as_bytes(),
            )
            .unwrap()
            .to_pem(ssh_key::LineEnding::LF)
            .unwrap();
        let served = SignedOpEntry { blob, signature };

        // Returns after the wait although the destroy's task runs on (an hour).
        sink.submit(served.clone()).await;
        let deletes = || sim.state().requests_to("DELETE /nodes/{node}/lxc/{vmid}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while deletes() == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(deletes(), 1, "the op was sent");
        assert!(sim.state().guest(105).is_some(), "its task still runs");
        // Served again while it runs: not submitted, so not even decided again.
        let decided = audit.entries().len();
        sink.submit(served).await;
        assert_eq!(audit.entries().len(), decided, "{:?}", audit.entries());
        assert_eq!(deletes(), 1);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn nothing_is_submitted_while_blocked_and_journal_less_refusals_are_audited() {
        let status = Arc::new(DaemonStatus::new(Some("disk full".into())));
        let audit = Arc::new(MemoryAudit::new());
        let sink = GatedSink::new(DaemonJobs::JournalLess, Arc::clone(&status), audit.clone());
        status.set_blocked(true);
        sink.submit(op("n-1")).await;
        assert!(audit.entries().is_empty(), "blocked: not even decided");
        status.set_blocked(false);
        sink.submit(op("n-1")).await;
        let entries = audit.entries();
        assert_eq!(entries.len(), 1, "{entries:?}");
        let e = &entries[0];
        assert_eq!(
            (
                e.action.as_str(),
                e.vmid,
                e.decision.as_str(),
                e.reason.as_deref(),
                e.nonce.as_deref()
            ),
            (
                "destroy_guest",
                Some(105),
                "refused",
                Some("journal_less"),
                Some("n-1")
            )
        );
    }
}
