//! felhom-reconcile: converges the host's guests toward the operator's desired state.
//!
//! It holds the per-guest [`queue::Queue`] every mutation goes through, the desired model and
//! its providers ([`desired`]; the hub-served one in [`hub_provider`]), the per-field normalizers that keep PVE's round-trip quirks
//! from reading as drift ([`normalize`]), the pure planner ([`mod@plan`]) that turns
//! desired × actual into the minimal benign actions, the [`engine`] that runs one pass (read,
//! plan, execute every action as a gated, journaled queue job; [`actual`] maps the Proxmox
//! client's types to the plan's), and startup [`recovery`] of the ops a crash left in flight.
//!
//! Phase B, the reversibility gate: the [`destructive`] actions and their signed-op wire form,
//! the pure [classifier](mod@classify) (benign vs destructive by journal provenance, never by verb or tag),
//! the [`gate`] (verify → role scope → binding → nonce last; typed [`GateReason`]s), the
//! [`audit`] of every decision, [`signed`] jobs (nonce dedupe through the idempotency store,
//! journal-wrapped execution through the injected [`executor`], a crash fault seam) and the
//! persisted [`signers`] set a `rotate_signers` installs.
//!
//! [`restore_test`]: restore each guest's latest backup into a scratch guest of a reserved
//! range, boot it without network, destroy it (benign only by the journal's provenance).
//!
//! The gate's property test at scale (a smaller count runs by default):
//! `PROPTEST_CASES=10000 cargo test --release -p felhom-reconcile gate_props`.
//!
//! What it must never do: mutate a guest outside the queue; treat a failed desired-state read
//! as "desire nothing"; write a config it could not read first; touch disk size; destroy or
//! overwrite customer data without a verified, role-scoped, action-bound operator signature
//! (unless the agent's own journal proves it created that guest); run a signed job without the
//! op journal; re-send a one-shot op whose outcome a crash left unknown.

pub mod actual;
pub mod audit;
pub mod classify;
pub mod desired;
pub mod destructive;
pub mod engine;
pub mod executor;
pub mod gate;
pub mod hub_provider;
pub mod normalize;
pub mod plan;
pub mod queue;
pub mod recovery;
pub mod restore_test;
pub mod signed;
pub mod signers;

pub use audit::{AuditError, AuditSink, LogAudit, MemoryAudit, Tee, TracingAudit, AUDIT_TAIL_LEN};
pub use classify::{
    classify, classify_destructive, BenignWhy, Class, Provenance, CREATE_GUEST_ACTION,
};
pub use desired::{
    DesiredError, DesiredGuest, DesiredProvider, DesiredState, EmptyProvider, FileProvider,
    GuestSpec, InvalidDesired, InvalidGuest, Rounded, RunState, StaticProvider, FILE_READ_TIMEOUT,
};
pub use destructive::{ActionFromBlobError, DestructiveAction, SignerSpec, HOST_QUEUE_KEY};
pub use engine::{
    action_name, runs_without_journal, ActionReport, BenignGate, Engine, EngineError,
    EngineOptions, Gate, GateDecision, GuestError, JournalWriteError, OpStep, PassSummary,
    SharedJournal, StepProbe,
};
pub use executor::{DestructiveExecutor, ExecError, PveExecutor};
pub use gate::{Allowed, Authorization, GateReason, ReversibilityGate, SignedOp, Verdict};
pub use hub_provider::{HubIntentError, HubProvider, HubStateFileError, SyncOutcome};
pub use normalize::{Normalizer, NormalizerRegistry, Value};
pub use plan::{
    apply, plan, Action, ActualConfig, ActualGuest, ConfigChanges, GuestStatus, Plan, Skip,
    SkipReason,
};
pub use queue::{JobError, JobHandle, Queue, SubmitError};
pub use recovery::{
    recover, recover_with, RecoveredOp, RecoveryError, RecoveryOptions, RecoverySummary, Resolution,
};
pub use signed::{CrashPoint, FaultSeam, NotAnAction, SignedJobOutcome, SignedJobs};
pub use signers::{SignerSet, SignerStore, SignerStoreError, SIGNERS_FILE};
