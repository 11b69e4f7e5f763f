//! felhom-privileged: the fenced root-CLI backend of the felhom agent, for exactly the operations
//! the PVE API cannot do (a golden LXC with keyctl via `pct create`, mounting a USB disk by
//! filesystem UUID, SMART health, sensors).
//!
//! Every operation documents why it cannot be an API call. Commands run through a
//! [`CommandRunner`] (live: [`TokioCommandRunner`]), never through a shell, with every argument
//! validated first and a timeout on each run.
//!
//! Never: make a network call — the fence is a fact of this crate's manifest (no HTTP or TLS
//! crate in its dependency tree, checked by `tests/it/deps.rs`); run a command through a shell;
//! pass an argument that was not validated.
//!
//! Modules by concern: `runner` (one program, no shell, under a timeout), `validate` (every
//! argument), `files` (the host files it edits), `fstab`, `smart`, `sensors`, and `backend`
//! (the `Privileged` facade tying them together). Unit tests are in `tests.rs`.

mod backend;
mod error;
mod files;
mod fstab;
mod runner;
mod sensors;
mod smart;
pub mod validate;

#[cfg(any(test, feature = "test-support"))]
mod recording;
#[cfg(test)]
mod tests;

pub use backend::{GoldenLxcSpec, Privileged};
pub use error::PrivilegedError;
pub use files::{HostFiles, RootedFiles};
pub use fstab::{fstab_with_entry, MountOutcome};
#[cfg(any(test, feature = "test-support"))]
pub use recording::{RecordedCall, RecordingRunner};
pub use runner::{CommandOutput, CommandRunner, TokioCommandRunner};
pub use sensors::{parse_sensors, SensorChip, SensorKind, SensorReading};
pub use smart::{parse_smartctl, NvmeHealth, SmartAttribute, SmartHealth};
