//! The reversibility gate: benign actions pass unsigned; destructive ones need a fresh operator
//! signature that names exactly that action, from a key whose role allows it.
//!
//! For a destructive action the order is fixed: the verifier's locked pipeline up to the time
//! window (armor, namespace, key, allow-list, crypto over the raw bytes, blob, target, window)
//! → **role scope** → **binding** (`op`, `host_id`, `guest_id`, `params` equal the gated
//! action's; params compared as JSON values) → the nonce recorded **last**. Role scope and
//! binding are stages of felhom-authz's [`Verifier::verify_for`], before the nonce is recorded
//! by the store's atomic check-and-insert, so a signature refused for role or binding never
//! burns its nonce, and of two concurrent uses of one signature exactly one passes.
//!
//! Without a signature a destructive action is [`GateReason::PendingSignature`]; with no
//! signers configured it is [`GateReason::NoSigners`]. Every decision is audited after it is
//! taken ([`crate::audit`]: a signal, never the guard).
//!
//! The signer set can be replaced at run time by a signed `rotate_signers`
//! ([`ReversibilityGate::rotate`], persisted first by [`crate::signers::SignerStore`]); the
//! nonce store is shared across rotations, so a rotation never re-opens a used nonce.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};

use felhom_authz::{AuthzError, NonceStore, ReplayReason, Signer, Verifier};
use felhom_hub_proto::AuditEntry;
use time::OffsetDateTime;

use crate::audit::{self, AuditSink, EntryBuilder};
use crate::classify::{classify, classify_destructive, BenignWhy, Class, Provenance};
use crate::destructive::DestructiveAction;
use crate::engine::{action_name, Gate, GateDecision, SharedJournal};
use crate::plan::Action;

/// A signed op as received: the exact signed bytes and the armored SSHSIG.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedOp {
    /// The blob, byte for byte as signed.
    pub blob: Vec<u8>,
    /// `ssh-keygen -Y sign -n felhom-op-v1` output.
    pub signature: Vec<u8>,
}

impl fmt::Debug for SignedOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedOp")
            .field("blob", &String::from_utf8_lossy(&self.blob))
            .field("signature_len", &self.signature.len())
            .finish()
    }
}

/// Why the gate did not allow an action.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GateReason {
    /// Destructive, and no signed op was presented: held, never executed.
    #[error("destructive action held: pending an operator signature")]
    PendingSignature,
    /// Destructive, and this host trusts no signer: nothing can authorize it.
    #[error("destructive action refused: no signers are configured (authz.signers)")]
    NoSigners,
    /// The signed op was refused by the verifier: any pipeline stage, role scope
    /// ([`AuthzError::RoleDenied`]) or binding ([`AuthzError::BindingMismatch`]).
    #[error(transparent)]
    Authz(AuthzError),
}

impl GateReason {
    /// The audit's stable code for it.
    pub fn code(&self) -> &'static str {
        match self {
            GateReason::PendingSignature => "pending_signature",
            GateReason::NoSigners => "no_signers",
            GateReason::Authz(e) => authz_code(e),
        }
    }

    /// The audit's decision: `pending_signature` or `refused`.
    pub fn decision(&self) -> &'static str {
        match self {
            GateReason::PendingSignature => "pending_signature",
            GateReason::NoSigners | GateReason::Authz(_) => "refused",
        }
    }
}

/// The audit code of a verifier refusal.
pub fn authz_code(e: &AuthzError) -> &'static str {
    e.code()
}

/// What allowed an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// Benign (and why), or destructive with a signature.
    pub class: Class,
    /// The verified signature's signer and nonce; `None` when allowed unsigned.
    pub signed: Option<Authorization>,
}

/// The signature that authorized a destructive action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The pinned signer's key id (from config, matched by key material).
    pub key_id: String,
    /// The blob's nonce, now recorded.
    pub nonce: String,
}

/// The gate's answer for one action.
pub type Verdict = Result<Allowed, GateReason>;

/// The reversibility gate over the agent's verifier, its op journal (provenance) and an audit
/// sink.
pub struct ReversibilityGate<N: NonceStore + 'static> {
    verifier: RwLock<Arc<Verifier<Arc<N>>>>,
    store: Arc<N>,
    host_id: String,
    journal: Option<SharedJournal>,
    audit: Arc<dyn AuditSink>,
    clock: Arc<dyn Fn() -> OffsetDateTime + Send + Sync>,
}

impl<N: NonceStore + 'static> fmt::Debug for ReversibilityGate<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReversibilityGate")
            .field("host_id", &self.host_id)
            .field("signers", &self.signers().len())
            .field("journal", &self.journal.is_some())
            .finish_non_exhaustive()
    }
}

impl<N: NonceStore + 'static> ReversibilityGate<N> {
    /// A gate for `host_id` trusting `signers` (empty: every destructive action is
    /// [`GateReason::NoSigners`]), recording nonces in `store`, reading provenance from
    /// `journal` (`None`: no guest is agent-created) and auditing into `audit`. The clock is
    /// the system's; see [`ReversibilityGate::with_clock`].
    pub fn new(
        signers: Vec<Signer>,
        store: Arc<N>,
        host_id: impl Into<String>,
        journal: Option<SharedJournal>,
        audit: Arc<dyn AuditSink>,
    ) -> Self {
        let host_id = host_id.into();
        let verifier = Verifier::new(signers, Arc::clone(&store), host_id.clone());
        Self {
            verifier: RwLock::new(Arc::new(verifier)),
            store,
            host_id,
            journal,
            audit,
            clock: Arc::new(OffsetDateTime::now_utc),
        }
    }

    /// Replaces the clock (tests).
    pub fn with_clock(
        mut self,
        clock: impl Fn() -> OffsetDateTime + Send + Sync + 'static,
    ) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The current time by the gate's clock.
    pub fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    /// This host's id.
    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    /// The nonce store (shared by every signer set), e.g. to prune it on the poll cadence.
    pub fn nonce_store(&self) -> &Arc<N> {
        &self.store
    }

    /// The audit sink.
    pub fn audit(&self) -> &Arc<dyn AuditSink> {
        &self.audit
    }

    /// The op journal provenance is read from.
    pub fn journal(&self) -> Option<&SharedJournal> {
        self.journal.as_ref()
    }

    /// The signers in force.
    pub fn signers(&self) -> Vec<Signer> {
        self.current().signers().to_vec()
    }

    fn current(&self) -> Arc<Verifier<Arc<N>>> {
        Arc::clone(&self.verifier.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the signer set in force (after it was persisted: see
    /// [`crate::signers::SignerStore::save`]). The nonce store stays.
    pub fn rotate(&self, signers: Vec<Signer>) {
        let verifier = Verifier::new(signers, Arc::clone(&self.store), self.host_id.clone());
        *self
            .verifier
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(verifier);
    }

    /// Provenance from the journal now (no I/O: the journal's index).
    pub fn provenance(&self) -> Provenance {
        match &self.journal {
            Some(j) => {
                let j = j.lock().unwrap_or_else(PoisonError::into_inner);
                Provenance::from_entries(j.entries())
            }
            None => Provenance::default(),
        }
    }

    /// Decides on a destructive-kind action, recording the nonce of a signature that passes,
    /// and audits the decision. Blocking (crypto, the nonce's fsync, the audit's): call it off
    /// the async workers. `signed: None` allows only what is benign by provenance.
    ///
    /// A presented signature is always verified, even for an action benign by provenance: a
    /// signed op is one-shot, so its nonce must be spent when it runs.
    pub fn decide_destructive(
        &self,
        action: &DestructiveAction,
        signed: Option<&SignedOp>,
        now: u64,
    ) -> Verdict {
        self.decide_with(action, signed, now, Nonce::Record)
    }

    /// [`decide_destructive`](Self::decide_destructive) for a signed op the caller
    /// **resumes**: its journal proves the op's earlier, allowed use never reached PVE
    /// (startup recovery closed it [`crate::recovery::NOT_SENT`]). Every stage is checked
    /// again; only the nonce that earlier use recorded is accepted rather than refused as a
    /// replay ([`felhom_authz::Verifier::verify_resumed_for`]).
    pub fn decide_destructive_resumed(
        &self,
        action: &DestructiveAction,
        signed: &SignedOp,
        now: u64,
    ) -> Verdict {
        self.decide_with(action, Some(signed), now, Nonce::Resume)
    }

    fn decide_with(
        &self,
        action: &DestructiveAction,
        signed: Option<&SignedOp>,
        now: u64,
        nonce: Nonce,
    ) -> Verdict {
        let class = classify_destructive(action, &self.provenance());
        let verdict = self.judge(action, &class, signed, nonce);
        audit::record(
            &*self.audit,
            &self.entry(action, &class, &verdict, now, signed, nonce),
        );
        verdict
    }

    /// The signed-job runner's first look: every stage of
    /// [`decide_destructive`](Self::decide_destructive) with the nonce only looked up (for a
    /// `resumed` op, whose nonce its first run recorded, not even that). A refusal is final and
    /// audited as `decide_destructive` audits it (nothing recorded, so an op the gate refuses
    /// never reaches the op journal); a pass records nothing — the runner journals the op, then
    /// decides for real.
    pub fn precheck(
        &self,
        action: &DestructiveAction,
        signed: Option<&SignedOp>,
        now: u64,
        resumed: bool,
    ) -> Result<(), GateReason> {
        let class = classify_destructive(action, &self.provenance());
        let verdict = match self.judge(action, &class, signed, Nonce::LookUp) {
            // The nonce is looked up last: every other stage passed.
            Err(GateReason::Authz(AuthzError::Replay {
                reason: ReplayReason::Seen,
                ..
            })) if resumed => return Ok(()),
            verdict => verdict,
        };
        if verdict.is_err() {
            audit::record(
                &*self.audit,
                &self.entry(action, &class, &verdict, now, signed, Nonce::LookUp),
            );
        }
        verdict.map(|_| ())
    }

    /// What [`decide_destructive`](Self::decide_destructive) would answer, recording nothing
    /// (no nonce, no audit): `felhom-agent verify-op --expect`.
    pub fn preview(&self, action: &DestructiveAction, signed: Option<&SignedOp>) -> Verdict {
        let class = classify_destructive(action, &self.provenance());
        self.judge(action, &class, signed, Nonce::LookUp)
    }

    fn judge(
        &self,
        action: &DestructiveAction,
        class: &Class,
        signed: Option<&SignedOp>,
        nonce: Nonce,
    ) -> Verdict {
        // An empty signature is no signature: held, not refused as malformed.
        let signed = signed.filter(|s| !s.signature.iter().all(u8::is_ascii_whitespace));
        let Some(signed) = signed else {
            return match class {
                Class::Benign(_) => Ok(Allowed {
                    class: class.clone(),
                    signed: None,
                }),
                Class::Destructive if self.current().signers().is_empty() => {
                    Err(GateReason::NoSigners)
                }
                Class::Destructive => Err(GateReason::PendingSignature),
            };
        };
        let verifier = self.current();
        if verifier.signers().is_empty() {
            return Err(GateReason::NoSigners);
        }
        let expected = action.expectation();
        let now = self.now();
        let (blob, sig) = (&signed.blob, &signed.signature);
        let verified = match nonce {
            Nonce::Record => verifier.verify_for(blob, sig, now, &expected),
            Nonce::LookUp => verifier.check_for(blob, sig, now, &expected),
            Nonce::Resume => verifier.verify_resumed_for(blob, sig, now, &expected),
        }
        .map_err(GateReason::Authz)?;
        Ok(Allowed {
            class: class.clone(),
            signed: Some(Authorization {
                key_id: verified.signer.key_id,
                nonce: verified.nonce,
            }),
        })
    }

    fn entry(
        &self,
        action: &DestructiveAction,
        class: &Class,
        verdict: &Verdict,
        now: u64,
        signed: Option<&SignedOp>,
        nonce: Nonce,
    ) -> AuditEntry {
        let b = EntryBuilder {
            at: now,
            action: action.wire_name().to_owned(),
            vmid: action.guest_id(),
            class: class.as_str(),
        };
        match verdict {
            Ok(allowed) => b.entry(
                "allowed",
                if nonce == Nonce::Resume {
                    Some("resumed")
                } else {
                    matches!(class, Class::Benign(BenignWhy::AgentCreated))
                        .then_some("agent_created")
                },
                None,
                allowed.signed.as_ref().map(|s| s.key_id.clone()),
                allowed.signed.as_ref().map(|s| s.nonce.clone()),
            ),
            Err(reason) => b.entry(
                reason.decision(),
                Some(reason.code()),
                (!matches!(reason, GateReason::PendingSignature)).then(|| reason.to_string()),
                None,
                signed.and_then(|s| crate::signed::peek_nonce(&s.blob)),
            ),
        }
    }
}

/// What the gate does with a verified signature's nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nonce {
    /// Record it (refusing a replay): a decision that runs the op.
    Record,
    /// Only look it up (a used one still refuses): a preview.
    LookUp,
    /// Accept it already recorded: a resumed op (see `decide_destructive_resumed`).
    Resume,
}

impl<N: NonceStore + 'static> Gate for ReversibilityGate<N> {
    /// Reconcile actions carry no signature: benign ones (and a destroy of a guest the agent
    /// created) are allowed; a destructive one is held as pending (or refused with no
    /// signers) — a matching signed job executes it instead, and the next pass finds it done.
    fn decide(&self, action: &Action) -> impl Future<Output = GateDecision> + Send {
        let provenance = self.provenance();
        let class = classify(action, &provenance);
        match (action, &class) {
            (Action::SetConfig { .. } | Action::Start { .. } | Action::Stop { .. }, _) => {
                let entry = EntryBuilder {
                    at: self.now().unix_timestamp().max(0) as u64,
                    action: action_name(action).to_owned(),
                    vmid: Some(action.vmid()),
                    class: class.as_str(),
                }
                .entry("allowed", None, None, None, None);
                // Plain benign allows go to the log only (no fsync on this path).
                audit::record(&audit::TracingAudit, &entry);
                futures::future::Either::Right(std::future::ready(GateDecision::Allow))
            }
            (Action::Destroy { vmid }, _) => {
                let now = self.now().unix_timestamp().max(0) as u64;
                let destroy = DestructiveAction::DestroyGuest { vmid: *vmid };
                let verdict = self.judge(&destroy, &class, None, Nonce::Record);
                let entry = self.entry(&destroy, &class, &verdict, now, None, Nonce::Record);
                let sink = Arc::clone(&self.audit);
                let decision = match verdict {
                    Ok(_) => GateDecision::Allow,
                    Err(reason @ GateReason::PendingSignature) => GateDecision::Pending {
                        reason: reason.to_string(),
                    },
                    Err(reason) => GateDecision::Refuse {
                        reason: reason.to_string(),
                    },
                };
                // The durable sink fsyncs: off the async workers, after the decision.
                futures::future::Either::Left(async move {
                    audit::record_async(sink, entry).await;
                    decision
                })
            }
        }
    }
}
