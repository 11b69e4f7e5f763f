//! Signed jobs: an operator-signed destructive op, run exactly once.
//!
//! `SignedOp { blob, signature }` → the action the blob names (a proposal, read from the
//! unverified bytes) → **dedupe by nonce**: the op journal's idempotency store
//! ([`felhom_journal::OpJournal::key_state`] of key `signed:<nonce>`) → **precheck**
//! ([`ReversibilityGate::precheck`]: every stage, nothing recorded; a refusal ends here,
//! audited, never journaled) → journal `started` with the key → **gate**
//! ([`ReversibilityGate::decide_destructive`]: verify, role scope, bind to that very action,
//! record the nonce) → the request through the injected [`DestructiveExecutor`] →
//! `task_running(upid)` → wait → `succeeded` / `failed`, audited.
//! All of it inside the queue job of the action's guest (host-level ops on
//! [`crate::destructive::HOST_QUEUE_KEY`]), so it is serialized with reconcile on that guest.
//!
//! A signed job never runs journal-less: the runner takes a journal, not an option.
//!
//! The nonce is recorded before the request is sent: a signed op is one-shot, so one that
//! failed at PVE needs a fresh signature. The journal's key then stays free (failed), and the
//! verifier's nonce store refuses the old signature as a replay.
//!
//! One exception makes a served op run **exactly** once across a crash: an op killed after
//! its nonce was recorded but before its request reached PVE, which startup recovery closed
//! [`crate::recovery::NOT_SENT`] (no task of it on the node after the settle window, its guest
//! unchanged). When the hub serves it again, the journal's latest use of its key says so, and
//! the gate verifies it again in full but accepts its already-recorded nonce
//! ([`ReversibilityGate::decide_destructive_resumed`]); the new op takes the key before its
//! request, so the resumed op is as one-shot as the first.
//!
//! `rotate_signers` sends nothing to PVE: the new set is validated, written to the signers
//! file atomically ([`SignerStore::save`]) and then put in force ([`ReversibilityGate::rotate`]).
//!
//! A fault seam ([`SignedJobs::with_fault`]) stops a job at a [`CrashPoint`] as if the process
//! died there — nothing more is written — so tests can reopen the journal and prove startup
//! recovery closes the op from PVE's real outcome and never re-sends it.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use felhom_authz::NonceStore;
use felhom_journal::{KeyState, OpId};
use felhom_proxmox::Upid;
use serde_json::{Map, Value};

use crate::audit::{self, EntryBuilder};
use crate::destructive::{ActionFromBlobError, DestructiveAction};
use crate::engine::{journal_write, JournalWriteError, SharedJournal};
use crate::executor::DestructiveExecutor;
use crate::gate::{Allowed, GateReason, ReversibilityGate, SignedOp};
use crate::queue::{JobError, Queue};
use crate::signers::{SignerSet, SignerStore};

/// The idempotency key of a signed op: its nonce.
pub fn idempotency_key(nonce: &str) -> String {
    format!("signed:{nonce}")
}

/// The blob's nonce, read without verifying (for the audit and the dedupe key only).
pub fn peek_nonce(blob: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(blob).ok()?;
    v.get("nonce")?
        .as_str()
        .map(|s| s.chars().take(128).collect())
}

/// What an unverified blob proposes: the action it names and its nonce.
pub fn peek(blob: &[u8]) -> Result<(DestructiveAction, String), NotAnAction> {
    #[derive(serde::Deserialize)]
    struct Head {
        op: String,
        guest_id: Option<u32>,
        params: Map<String, Value>,
        nonce: String,
    }
    let head: Head = serde_json::from_slice(blob).map_err(|e| NotAnAction::Blob(e.to_string()))?;
    let action = DestructiveAction::from_parts(&head.op, head.guest_id, &head.params)
        .map_err(NotAnAction::Action)?;
    if let DestructiveAction::RotateSigners { signers } = &action {
        crate::signers::parse_signers(signers).map_err(|e| NotAnAction::Signers(e.to_string()))?;
    }
    Ok((action, head.nonce))
}

/// A signed op that names no action this agent can run. Nothing was verified or recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotAnAction {
    /// The blob is not a JSON op blob.
    #[error("signed op refused: blob is not an op: {0}")]
    Blob(String),
    /// Its op, guest or params name no runnable action.
    #[error("signed op refused: {0}")]
    Action(ActionFromBlobError),
    /// `rotate_signers` names an invalid signer set.
    #[error("signed op refused: rotate_signers: {0}")]
    Signers(String),
}

/// Where the fault seam can stop a job, as if the process died there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After `started` was journaled, before the gate recorded the nonce.
    BeforeGate,
    /// After the gate recorded the nonce (and audited `allowed`), before the request.
    BeforePost,
    /// After PVE answered the request with a task, before the task was journaled.
    AfterPost,
    /// After `task_running(upid)` was journaled, before the terminal record.
    AfterTaskRecorded,
}

/// How a signed job ended.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SignedJobOutcome {
    /// Executed and succeeded (journaled, audited, its key applied).
    Executed {
        /// The journal's op.
        op_id: OpId,
        /// What ran.
        action: DestructiveAction,
        /// The signer.
        key_id: String,
        /// The nonce.
        nonce: String,
        /// PVE's task warnings.
        warnings: Vec<String>,
    },
    /// Its nonce's op already ran (or runs): not run again.
    AlreadyApplied {
        /// The nonce.
        nonce: String,
        /// The op that applied it.
        op_id: OpId,
        /// Whether that op is still in flight rather than succeeded.
        in_flight: bool,
    },
    /// Not an action: refused before any verification.
    NotAnAction(NotAnAction),
    /// The gate refused it (typed); nothing was sent.
    Refused {
        /// The action the blob named.
        action: DestructiveAction,
        /// Why.
        reason: GateReason,
    },
    /// Allowed, then failed (at the journal before sending, at PVE, or in its task).
    Failed {
        /// The journal's op, when it was journaled.
        op_id: Option<OpId>,
        /// What ran.
        action: DestructiveAction,
        /// What went wrong.
        error: String,
    },
    /// Stopped by the fault seam (tests): nothing after that point was written.
    Crashed {
        /// The op.
        op_id: OpId,
        /// Where.
        at: CrashPoint,
    },
}

/// The fault seam: `true` stops the job at that point.
pub type FaultSeam = Arc<dyn Fn(CrashPoint) -> bool + Send + Sync>;

/// Runs signed jobs through the queue, the gate, the journal and the executor.
pub struct SignedJobs<N: NonceStore + 'static, E> {
    gate: Arc<ReversibilityGate<N>>,
    executor: Arc<E>,
    queue: Queue,
    journal: SharedJournal,
    signers: Option<Arc<Mutex<SignerStore>>>,
    fault: Option<FaultSeam>,
}

impl<N: NonceStore + 'static, E> fmt::Debug for SignedJobs<N, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedJobs")
            .field("gate", &self.gate)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl<N: NonceStore + 'static, E: DestructiveExecutor> SignedJobs<N, E> {
    /// A runner. `signers`: the signers file `rotate_signers` writes (`None`: rotation fails,
    /// since an unpersisted rotation would be undone by a restart).
    pub fn new(
        gate: Arc<ReversibilityGate<N>>,
        executor: Arc<E>,
        queue: Queue,
        journal: SharedJournal,
        signers: Option<Arc<Mutex<SignerStore>>>,
    ) -> Self {
        Self {
            gate,
            executor,
            queue,
            journal,
            signers,
            fault: None,
        }
    }

    /// Installs the fault seam (tests).
    pub fn with_fault(mut self, fault: FaultSeam) -> Self {
        self.fault = Some(fault);
        self
    }

    /// The gate.
    pub fn gate(&self) -> &Arc<ReversibilityGate<N>> {
        &self.gate
    }

    /// Runs one signed op to its end; `now` is unix seconds (journal and audit).
    pub async fn submit(&self, op: SignedOp, now: u64) -> Result<SignedJobOutcome, JobError> {
        let (action, nonce) = match peek(&op.blob) {
            Ok(proposed) => proposed,
            Err(refusal) => {
                let entry = EntryBuilder {
                    at: now,
                    action: peek_op_name(&op.blob),
                    vmid: None,
                    class: "destructive",
                }
                .entry(
                    "refused",
                    Some("malformed"),
                    Some(refusal.to_string()),
                    None,
                    peek_nonce(&op.blob),
                );
                audit::record_async(Arc::clone(self.gate.audit()), entry).await;
                return Ok(SignedJobOutcome::NotAnAction(refusal));
            }
        };
        let run = Run {
            gate: Arc::clone(&self.gate),
            executor: Arc::clone(&self.executor),
            journal: Arc::clone(&self.journal),
            signers: self.signers.clone(),
            fault: self.fault.clone(),
            now,
        };
        let key = action.queue_key();
        match self.queue.submit(key, move || run.run(op, action, nonce)) {
            Ok(handle) => handle.await,
            Err(_) => Err(JobError::Cancelled { vmid: key }),
        }
    }
}

fn peek_op_name(blob: &[u8]) -> String {
    serde_json::from_slice::<Value>(blob)
        .ok()
        .and_then(|v| v.get("op")?.as_str().map(|s| s.chars().take(64).collect()))
        .unwrap_or_else(|| "unknown".to_owned())
}

struct Run<N: NonceStore + 'static, E> {
    gate: Arc<ReversibilityGate<N>>,
    executor: Arc<E>,
    journal: SharedJournal,
    signers: Option<Arc<Mutex<SignerStore>>>,
    fault: Option<FaultSeam>,
    now: u64,
}

impl<N: NonceStore + 'static, E: DestructiveExecutor> Run<N, E> {
    fn crash(&self, at: CrashPoint) -> bool {
        self.fault.as_ref().is_some_and(|f| f(at))
    }

    fn builder(&self, action: &DestructiveAction, class: &'static str) -> EntryBuilder {
        EntryBuilder {
            at: self.now,
            action: action.wire_name().to_owned(),
            vmid: action.guest_id(),
            class,
        }
    }

    async fn audit(&self, entry: felhom_hub_proto::AuditEntry) {
        audit::record_async(Arc::clone(self.gate.audit()), entry).await;
    }

    async fn run(self, op: SignedOp, action: DestructiveAction, nonce: String) -> SignedJobOutcome {
        let key = idempotency_key(&nonce);
        // Dedupe first: an op this journal applied is answered without crypto or PVE. A nonce
        // whose latest use recovery proved never reached PVE is resumed, not refused.
        let (state, resumed) = {
            let j = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
            let resumed = j
                .last_with_key(&key)
                .is_some_and(crate::recovery::is_not_sent);
            (j.key_state(&key), resumed)
        };
        match state {
            KeyState::Unknown => {}
            KeyState::Applied(ref op_id) | KeyState::InFlight(ref op_id) => {
                let in_flight = !matches!(state, KeyState::Applied(_));
                let op_id = op_id.clone();
                let detail = format!(
                    "nonce {nonce:?} was {} by op {op_id}",
                    if in_flight {
                        "taken (still in flight)"
                    } else {
                        "applied"
                    }
                );
                let entry = self.builder(&action, "destructive").entry(
                    "refused",
                    Some("already_applied"),
                    Some(detail),
                    None,
                    Some(nonce.clone()),
                );
                self.audit(entry).await;
                return SignedJobOutcome::AlreadyApplied {
                    nonce,
                    op_id,
                    in_flight,
                };
            }
        }

        // A first look (crypto, nothing recorded): an op the gate refuses is audited and
        // never journaled — so a bad copy served in between (a re-serialised blob) cannot
        // take a resumable op's place in the journal.
        let precheck = {
            let gate = Arc::clone(&self.gate);
            let (action, op, now) = (action.clone(), op.clone(), self.now);
            tokio::task::spawn_blocking(move || gate.precheck(&action, Some(&op), now, resumed))
                .await
        };
        match precheck {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => return SignedJobOutcome::Refused { action, reason },
            Err(join) => {
                return SignedJobOutcome::Failed {
                    op_id: None,
                    action,
                    error: format!("gate task did not complete: {join}"),
                }
            }
        }

        // Journaled before the nonce is recorded: a crash between the two leaves a `started`
        // op with no task, which recovery proves not sent, so the op is resumed, never lost.
        let (vmid, name, now) = (action.guest_id(), action.wire_name(), self.now);
        let started_key = key.clone();
        let op_id = match journal_write(&self.journal, move |j| {
            j.started(vmid, name, Some(started_key), now)
        })
        .await
        {
            Ok(op_id) => op_id,
            Err(error) => {
                let error = format!("not sent: cannot journal its start: {error}");
                self.audit(self.builder(&action, "destructive").entry(
                    "failed",
                    Some("journal"),
                    Some(error.clone()),
                    None,
                    Some(nonce.clone()),
                ))
                .await;
                return SignedJobOutcome::Failed {
                    op_id: None,
                    action,
                    error,
                };
            }
        };
        if self.crash(CrashPoint::BeforeGate) {
            return SignedJobOutcome::Crashed {
                op_id,
                at: CrashPoint::BeforeGate,
            };
        }

        // The gate: crypto and the nonce's fsync, off the async workers.
        let verdict = {
            let gate = Arc::clone(&self.gate);
            let (action, now) = (action.clone(), self.now);
            tokio::task::spawn_blocking(move || {
                if resumed {
                    gate.decide_destructive_resumed(&action, &op, now)
                } else {
                    gate.decide_destructive(&action, Some(&op), now)
                }
            })
            .await
        };
        let allowed: Allowed = match verdict {
            Ok(Ok(allowed)) => allowed,
            Ok(Err(reason)) => {
                // Refused after the first look passed (its window closed, or another job used
                // the nonce meanwhile): nothing was sent, and the key is free again. A resumed
                // op stays resumable: its nonce is still unused at PVE.
                let error = if resumed {
                    format!(
                        "{}: refused by the gate when resumed: {reason}",
                        crate::recovery::NOT_SENT
                    )
                } else {
                    format!("refused by the gate: {reason}")
                };
                let op = op_id.clone();
                if let Err(e) =
                    journal_write(&self.journal, move |j| j.failed(&op, &error, now)).await
                {
                    log_journal_error(&op_id, &e);
                }
                return SignedJobOutcome::Refused { action, reason };
            }
            Err(join) => {
                let (op, error) = (op_id.clone(), format!("gate task did not complete: {join}"));
                let text = error.clone();
                if let Err(e) =
                    journal_write(&self.journal, move |j| j.failed(&op, &text, now)).await
                {
                    log_journal_error(&op_id, &e);
                }
                return SignedJobOutcome::Failed {
                    op_id: Some(op_id),
                    action,
                    error,
                };
            }
        };
        let auth = allowed
            .signed
            .expect("a presented signature is always verified, so an allow carries it");
        let class = allowed.class.as_str();

        if self.crash(CrashPoint::BeforePost) {
            return SignedJobOutcome::Crashed {
                op_id,
                at: CrashPoint::BeforePost,
            };
        }

        let result = match &action {
            DestructiveAction::RotateSigners { signers } => {
                self.rotate(signers.clone(), &nonce).map(|()| Vec::new())
            }
            _ => match self.execute(&action, &op_id).await {
                Ok(warnings) => Ok(warnings),
                Err(Stop::Crashed(at)) => return SignedJobOutcome::Crashed { op_id, at },
                Err(Stop::Failed(error)) => Err(error),
            },
        };

        let terminal = match &result {
            Ok(_) => {
                let op = op_id.clone();
                journal_write(&self.journal, move |j| j.succeeded(&op, now)).await
            }
            Err(error) => {
                let (op, error) = (op_id.clone(), error.clone());
                journal_write(&self.journal, move |j| j.failed(&op, &error, now)).await
            }
        };
        if let Err(error) = terminal {
            // PVE acted; the op stays in flight for startup recovery to close.
            tracing::error!(op_id = %op_id, %error, "cannot journal a signed op's end");
        }
        match result {
            Ok(warnings) => {
                self.audit(self.builder(&action, class).entry(
                    "executed",
                    None,
                    (!warnings.is_empty()).then(|| warnings.join("; ")),
                    Some(auth.key_id.clone()),
                    Some(nonce.clone()),
                ))
                .await;
                SignedJobOutcome::Executed {
                    op_id,
                    action,
                    key_id: auth.key_id,
                    nonce,
                    warnings,
                }
            }
            Err(error) => {
                self.audit(self.builder(&action, class).entry(
                    "failed",
                    Some("execution"),
                    Some(error.clone()),
                    Some(auth.key_id),
                    Some(nonce),
                ))
                .await;
                SignedJobOutcome::Failed {
                    op_id: Some(op_id),
                    action,
                    error,
                }
            }
        }
    }

    /// The request, its task recorded, the wait.
    async fn execute(&self, action: &DestructiveAction, op_id: &OpId) -> Result<Vec<String>, Stop> {
        let upid: Upid = self
            .executor
            .send(action)
            .await
            .map_err(|e| Stop::Failed(e.to_string()))?;
        if self.crash(CrashPoint::AfterPost) {
            return Err(Stop::Crashed(CrashPoint::AfterPost));
        }
        let (op, text, now) = (op_id.clone(), upid.to_string(), self.now);
        if let Err(error) =
            journal_write(&self.journal, move |j| j.task_running(&op, &text, now)).await
        {
            // Not fatal: the task runs anyway, and recovery closes the op from observed state.
            log_journal_error(op_id, &error);
        }
        if self.crash(CrashPoint::AfterTaskRecorded) {
            return Err(Stop::Crashed(CrashPoint::AfterTaskRecorded));
        }
        self.executor
            .wait(&upid)
            .await
            .map_err(|e| Stop::Failed(e.to_string()))
    }

    /// Persists the new set, then puts it in force.
    fn rotate(
        &self,
        signers: Vec<crate::destructive::SignerSpec>,
        nonce: &str,
    ) -> Result<(), String> {
        let Some(store) = &self.signers else {
            return Err(
                "no signers file is configured: a rotation would not survive a restart".to_owned(),
            );
        };
        let set = SignerSet {
            signers,
            nonce: nonce.to_owned(),
            at: self.now,
        };
        let installed = store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .save(set)
            .map_err(|e| e.to_string())?;
        tracing::warn!(
            signers = installed.len(),
            "signer set rotated by a signed op"
        );
        self.gate.rotate(installed);
        Ok(())
    }
}

enum Stop {
    Crashed(CrashPoint),
    Failed(String),
}

fn log_journal_error(op_id: &OpId, error: &JournalWriteError) {
    tracing::error!(op_id = %op_id, %error, "cannot journal a signed op's task");
}
