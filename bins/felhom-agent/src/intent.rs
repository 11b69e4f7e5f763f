//! Hub-served intent in the daemon: the heartbeat hands each well-formed envelope here
//! ([`HubIntent::observe`]); before each reconcile pass [`HubIntent::before_pass`] acts on the
//! latest one — fetch the desired state when `desired_generation` differs from the held one
//! (through the [`HubProvider`]), fetch the signed ops when `has_signed_ops`, and hand each to
//! the [`SignedOpSink`]. While the hub blocks this host neither happens (reports continue).
//!
//! A failed or malformed fetch is logged and changes nothing; the next envelope retries.

use std::sync::{Arc, Mutex, PoisonError};

use felhom_hub::hub::HubClient;
use felhom_hub_proto::{ControlEnvelope, SignedOpEntry};
use felhom_reconcile::{HubProvider, SyncOutcome};

/// Where signed ops fetched from the hub go: the gate's signed-job entry point once it lands.
pub trait SignedOpSink: Send + Sync + std::fmt::Debug {
    /// One op as served (the blob string untouched).
    fn submit(&self, op: SignedOpEntry);
}

/// The sink until the reconcile gate is wired: every op is logged (never silently) and dropped.
#[derive(Debug, Default)]
pub struct NotExecutedSink;

impl SignedOpSink for NotExecutedSink {
    fn submit(&self, op: SignedOpEntry) {
        // The nonce, if the blob names one, lets an operator match the line; nothing is parsed
        // for trust here.
        let nonce = serde_json::from_str::<serde_json::Value>(&op.blob)
            .ok()
            .and_then(|v| v.get("nonce").and_then(|n| n.as_str()).map(str::to_owned))
            .unwrap_or_default();
        tracing::warn!(
            nonce = %nonce,
            blob_bytes = op.blob.len(),
            "signed op from the hub dropped: signed ops are not executed until the gate lands"
        );
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
                        self.sink.submit(op);
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
