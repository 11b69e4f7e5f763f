//! The daemon's reversibility gate: built at startup from the configured signers (or the
//! signers file a `rotate_signers` left, which overrides them), the file nonce store, the op
//! journal (provenance) and the audit sinks (the log, and the durable audit log next to the
//! journal whose tail fills each host report's `audit_tail`).
//!
//! Fails safe: no signers, an unopenable nonce store or a damaged signers file → every
//! destructive action is refused (`no_signers`); benign reconcile is unchanged.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use felhom_authz::{FileNonceStore, MemoryNonceStore, Signer};
use felhom_hub::collector::AuditTail;
use felhom_reconcile::{
    Action, AuditSink, Gate, GateDecision, LogAudit, ReversibilityGate, SharedJournal, SignerStore,
    Tee, TracingAudit, AUDIT_TAIL_LEN,
};

/// The durable audit log's file name, next to the op journal.
pub const AUDIT_FILE: &str = "audit.log";

/// The gate the engine runs behind.
#[derive(Debug, Clone)]
pub enum DaemonGate {
    /// Over the file nonce store.
    Signed(Arc<ReversibilityGate<FileNonceStore>>),
    /// The nonce store could not be opened: no signed op can be accepted (no signers).
    Unsigned(Arc<ReversibilityGate<MemoryNonceStore>>),
}

impl Gate for DaemonGate {
    fn decide(&self, action: &Action) -> impl Future<Output = GateDecision> + Send {
        let gate = self.clone();
        let action = action.clone();
        async move {
            match &gate {
                DaemonGate::Signed(g) => g.decide(&action).await,
                DaemonGate::Unsigned(g) => g.decide(&action).await,
            }
        }
    }
}

/// What [`open`] built.
pub struct GateParts {
    /// The gate.
    pub gate: DaemonGate,
    /// The file nonce store, pruned on the cadence; `None` when it could not be opened.
    pub nonces: Option<Arc<FileNonceStore>>,
    /// Every audit sink together (for startup recovery's entries too).
    pub audit: Arc<dyn AuditSink>,
    /// The report's `audit_tail` reader.
    pub tail: AuditTail,
}

/// Builds the gate (see the module docs).
pub fn open(
    nonce_store: &Path,
    journal_path: &Path,
    configured: Vec<Signer>,
    host_id: &str,
    journal: Option<SharedJournal>,
    metrics: &felhom_metrics::Metrics,
) -> GateParts {
    let counted: Arc<dyn AuditSink> = Arc::new(crate::metrics::MetricsAudit(metrics.clone()));
    let audit_path = journal_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(AUDIT_FILE);
    let (audit, tail): (Arc<dyn AuditSink>, AuditTail) = match LogAudit::open(
        &audit_path,
        AUDIT_TAIL_LEN,
    ) {
        Ok(log) => {
            let log = Arc::new(log);
            let reader = Arc::clone(&log);
            (
                Arc::new(Tee(vec![Arc::new(TracingAudit), log, counted])),
                AuditTail::new(move || reader.tail(AUDIT_TAIL_LEN)),
            )
        }
        Err(e) => {
            tracing::error!(path = %audit_path.display(), error = %e, "audit log cannot be opened: gate decisions go to the log only, audit_tail stays empty");
            (
                Arc::new(Tee(vec![Arc::new(TracingAudit), counted])),
                AuditTail::default(),
            )
        }
    };
    let signers = match SignerStore::read(SignerStore::path_next_to(nonce_store)) {
        Ok(Some(rotated)) => {
            tracing::warn!(
                signers = rotated.len(),
                "signers file from a rotation overrides authz.signers"
            );
            rotated
        }
        Ok(None) => configured,
        Err(e) => {
            tracing::error!(error = %e, "signers file unusable: no signer is trusted, destructive ops are refused");
            Vec::new()
        }
    };
    if signers.is_empty() {
        tracing::info!(
            "no signers: destructive actions are refused (no_signers); benign reconcile runs"
        );
    }
    match FileNonceStore::open(nonce_store) {
        Ok(store) => {
            let store = Arc::new(store);
            let gate = ReversibilityGate::new(
                signers,
                Arc::clone(&store),
                host_id,
                journal,
                Arc::clone(&audit),
            );
            GateParts {
                gate: DaemonGate::Signed(Arc::new(gate)),
                nonces: Some(store),
                audit,
                tail,
            }
        }
        Err(e) => {
            tracing::error!(path = %nonce_store.display(), error = %e, "nonce store cannot be opened: signed ops are refused until it can");
            let gate = ReversibilityGate::new(
                Vec::new(),
                Arc::new(MemoryNonceStore::new()),
                host_id,
                journal,
                Arc::clone(&audit),
            );
            GateParts {
                gate: DaemonGate::Unsigned(Arc::new(gate)),
                nonces: None,
                audit,
                tail,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_signers_refuses_a_destroy_and_the_tail_shows_it() {
        let dir = tempfile::tempdir().unwrap();
        let parts = open(
            &dir.path().join("nonces.log"),
            &dir.path().join("journal.log"),
            Vec::new(),
            "pve-01",
            None,
            &felhom_metrics::Metrics::new("test"),
        );
        assert!(parts.nonces.is_some());
        let decision = parts.gate.decide(&Action::Destroy { vmid: 105 }).await;
        assert!(
            matches!(decision, GateDecision::Refuse { ref reason } if reason.contains("no signers")),
            "{decision:?}"
        );
        assert_eq!(
            parts.gate.decide(&Action::Start { vmid: 105 }).await,
            GateDecision::Allow
        );
        let tail = parts.tail.read();
        assert_eq!(tail.len(), 1, "benign allows stay out of the durable tail");
        assert_eq!(
            (tail[0].decision.as_str(), tail[0].reason.as_deref()),
            ("refused", Some("no_signers"))
        );
    }
}
