//! felhom-reconcile: converges the host's guests toward the operator's desired state.
//!
//! It holds the per-guest [`queue::Queue`] every mutation goes through, the desired model and
//! its providers ([`desired`]), the per-field normalizers that keep PVE's round-trip quirks
//! from reading as drift ([`normalize`]), and the pure planner ([`mod@plan`]) that turns
//! desired × actual into the minimal benign actions.
//!
//! What it must never do: mutate a guest outside the queue; treat a failed desired-state read
//! as "desire nothing"; write a config it could not read first; touch disk size; destroy or
//! overwrite customer data without a verified operator signature (the gate comes later).

pub mod desired;
pub mod normalize;
pub mod plan;
pub mod queue;

pub use desired::{
    DesiredError, DesiredGuest, DesiredProvider, DesiredState, EmptyProvider, FileProvider,
    GuestSpec, InvalidDesired, InvalidGuest, RunState, StaticProvider,
};
pub use normalize::{Normalizer, NormalizerRegistry, Value};
pub use plan::{
    apply, plan, Action, ActualConfig, ActualGuest, ConfigChanges, GuestStatus, Plan, Skip,
    SkipReason,
};
pub use queue::{JobError, JobHandle, Queue, SubmitError};
