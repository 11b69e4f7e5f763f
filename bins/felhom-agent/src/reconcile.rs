//! The reconcile side of the daemon: the desired-state source from config, one pass after each
//! poll (woken by the heartbeat) and nonce-store pruning on the same cadence. The engine does
//! the work and logs it; this module decides when.

use std::sync::Arc;

use felhom_authz::{FileNonceStore, NonceStore};
use felhom_proxmox::ProxmoxApi;
use felhom_reconcile::{
    DesiredError, DesiredProvider, DesiredState, EmptyProvider, Engine, FileProvider, HubProvider,
    PassSummary,
};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use felhom_metrics::{Metrics, PassResult};

use crate::metrics::MeteredGate;
use crate::status::DaemonStatus;

/// Where desired state comes from: the hub (`reconcile.source = "hub"`), the operator's file
/// when `reconcile.desired_state_file` is set, else nothing.
#[derive(Debug, Clone)]
pub enum Desired {
    /// The hub's desired state, held by generation and persisted.
    Hub(Arc<HubProvider>),
    /// `reconcile.desired_state_file`, re-read each pass.
    File(FileProvider),
    /// No desired state configured.
    Empty(EmptyProvider),
}

impl Desired {
    /// From the config's optional file.
    pub fn from_config(file: Option<&std::path::Path>) -> Self {
        match file {
            Some(path) => Desired::File(FileProvider::new(path)),
            None => Desired::Empty(EmptyProvider),
        }
    }

    /// Whether anything can be desired (otherwise passes are quiet): for the hub, once it
    /// served (or the disk held) a desired state.
    pub fn is_configured(&self) -> bool {
        match self {
            Desired::Hub(p) => p.holds_state(),
            Desired::File(_) => true,
            Desired::Empty(_) => false,
        }
    }
}

impl DesiredProvider for Desired {
    async fn desired(&self) -> Result<DesiredState, DesiredError> {
        match self {
            Desired::Hub(p) => p.desired().await,
            Desired::File(p) => p.desired().await,
            Desired::Empty(p) => p.desired().await,
        }
    }
}

/// One reconcile pass per wake-up, plus the cadence chores.
pub struct Reconciler<A: ProxmoxApi + 'static> {
    /// The engine (shares the daemon's one queue), behind the reversibility gate.
    pub engine: Engine<A, MeteredGate<crate::gate::DaemonGate>>,
    /// The desired-state source.
    pub desired: Desired,
    /// The gate's nonce store, pruned on the cadence.
    pub nonces: Option<Arc<FileNonceStore>>,
    /// Shared status (for systemd's STATUS= and the watchdog).
    pub status: Arc<DaemonStatus>,
    /// The op journal (compacted on the cadence when it passes its size threshold).
    pub journal: Option<felhom_reconcile::SharedJournal>,
    /// Hub-served intent, acted on before each pass.
    pub intent: Option<Arc<crate::intent::HubIntent>>,
    /// The heartbeat's guest-config cache: the agent's own writes invalidate it, so the next
    /// report shows what the agent wrote instead of waiting for the slow resync.
    pub guest_cache: felhom_hub::collector::GuestCache,
    /// Counts passes.
    pub metrics: Metrics,
}

impl<A: ProxmoxApi + 'static> std::fmt::Debug for Reconciler<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("engine", &self.engine)
            .field("desired", &self.desired)
            .finish_non_exhaustive()
    }
}

impl<A: ProxmoxApi + 'static> Reconciler<A> {
    /// Runs one pass now; the summary, or `None` when the pass did not run. The engine logs
    /// the pass and each action. With no desired state configured nothing can be planned, so no
    /// pass runs at all (a normal, quiet state: no API calls, no log lines); while the hub's last
    /// answer blocks this host, no desired state is applied either.
    pub async fn pass(&self, now: OffsetDateTime) -> Option<PassSummary> {
        if !self.desired.is_configured() {
            tracing::trace!("no desired state configured: no reconcile pass");
            return None;
        }
        if self.status.blocked() {
            // Logged once, when the block began (see `block`), not every pass.
            tracing::debug!("the hub has blocked this host: reconcile pass skipped");
            return None;
        }
        let unix = u64::try_from(now.unix_timestamp()).unwrap_or_default();
        let _running = self.status.pass_started();
        let result = self.engine.run_pass(&self.desired, unix).await;
        match result {
            Ok(summary) => {
                if summary.mutations > 0 {
                    // The summary counts writes but does not list every written guest, so the
                    // whole cache goes: one full config read at the next beat, after a write.
                    self.guest_cache.clear();
                }
                self.status.pass_done(Ok(&summary));
                self.metrics.reconcile_pass(PassResult::Ok);
                Some(summary)
            }
            Err(e) => {
                tracing::warn!(error = %e, "reconcile pass failed; the next poll retries");
                self.status.pass_done(Err(&e.to_string()));
                self.metrics.reconcile_pass(PassResult::Failed);
                None
            }
        }
    }

    /// Drops expired nonces (off the async workers: it may compact and fsync the file).
    pub async fn prune_nonces(&self, now: OffsetDateTime) {
        let Some(nonces) = self.nonces.clone() else {
            return;
        };
        let pruned = tokio::task::spawn_blocking(move || nonces.prune(now)).await;
        match pruned {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(pruned = n, "nonce store: expired nonces dropped"),
            Ok(Err(e)) => tracing::error!(error = %e, "nonce store: pruning failed"),
            Err(e) => tracing::error!(error = %e, "nonce store: pruning task did not finish"),
        }
    }

    /// Compacts the op journal when it has grown past its threshold (off the async workers).
    pub async fn compact_journal(&self, now: OffsetDateTime) {
        let Some(journal) = self.journal.clone() else {
            return;
        };
        let unix = u64::try_from(now.unix_timestamp()).unwrap_or_default();
        let done = tokio::task::spawn_blocking(move || {
            crate::durable::compact_journal(&journal, unix, false);
        })
        .await;
        if let Err(e) = done {
            tracing::error!(error = %e, "op journal: compaction task did not finish");
        }
    }

    /// Runs a pass (and the chores) each time `wake` fires, until `stop` is cancelled. A wake-up
    /// during a pass is kept and runs the next pass right after (never two at once).
    pub async fn run(&self, wake: Arc<Notify>, stop: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                () = stop.cancelled() => return,
                () = wake.notified() => {}
            }
            if let Some(intent) = &self.intent {
                intent.before_pass(self.status.blocked()).await;
            }
            let now = OffsetDateTime::now_utc();
            self.pass(now).await;
            self.prune_nonces(now).await;
            self.compact_journal(now).await;
            // The beat and the pass are done until the next beat: idle at what is held.
            crate::heap::release_freed();
        }
    }
}
