//! felhom-reconcile: converges the host's guests toward the operator's desired state.
//!
//! It holds the per-guest [`queue::Queue`] every mutation goes through, the desired model and
//! its providers ([`desired`]; the hub-served one in [`hub_provider`]), the per-field normalizers that keep PVE's round-trip quirks
//! from reading as drift ([`normalize`]), the pure planner ([`mod@plan`]) that turns
//! desired × actual into the minimal benign actions, the [`engine`] that runs one pass (read,
//! plan, execute every action as a gated, journaled queue job; [`actual`] maps the Proxmox
//! client's types to the plan's), and startup [`recovery`] of the ops a crash left in flight.
//!
//! What it must never do: mutate a guest outside the queue; treat a failed desired-state read
//! as "desire nothing"; write a config it could not read first; touch disk size; destroy or
//! overwrite customer data without a verified operator signature (phase B's signature check
//! plugs into the engine's [`Gate`] seam).

pub mod actual;
pub mod desired;
pub mod engine;
pub mod hub_provider;
pub mod normalize;
pub mod plan;
pub mod queue;
pub mod recovery;

pub use desired::{
    DesiredError, DesiredGuest, DesiredProvider, DesiredState, EmptyProvider, FileProvider,
    GuestSpec, InvalidDesired, InvalidGuest, Rounded, RunState, StaticProvider, FILE_READ_TIMEOUT,
};
pub use engine::{
    action_name, runs_without_journal, ActionReport, BenignGate, Engine, EngineError,
    EngineOptions, Gate, GateDecision, GuestError, JournalWriteError, OpStep, PassSummary,
    SharedJournal, StepProbe,
};
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
