//! felhom-hub-proto: the wire contract between the felhom host agent and the hub.
//!
//! `HostReport` (what the agent POSTs to `/api/v1/host-report`) and `ControlEnvelope` (what the
//! hub answers), the hub-served intent the envelope points at ([`intent`]: `DesiredStateBody`
//! from `/api/v1/desired-state`, `SignedOpsBody` from `/api/v1/signed-ops`). `OpBlob` (the JSON an operator signs for a destructive op), the op catalogue
//! (`OpKind`) and the blob's one canonical serialisation. With the `golden` feature (tests and `cargo xtask golden` only): the fixed
//! samples that `testdata/host-report.golden.json` and `testdata/intent.golden.json` pin, the `shape` diff that names drift between
//! two versions of the contract, and the one golden-file check.
//!
//! Never: depend on anything but serde by default (no tokio, no hyper, no filesystem, no JSON
//! library at run time), so the hub team's server and our agent compile the same types.

#![warn(missing_docs)]

pub mod envelope;
#[cfg(feature = "golden")]
pub mod golden;
#[cfg(feature = "golden")]
pub mod golden_file;
pub mod intent;
pub mod op;
pub mod report;
#[cfg(feature = "golden")]
pub mod shape;
pub mod timestamp;

pub use envelope::ControlEnvelope;
pub use intent::{
    DesiredGuestEntry, DesiredRunState, DesiredSpec, DesiredStateBody, SignedOpEntry,
    SignedOpsBody, DESIRED_STATE_PATH, SIGNED_OPS_PATH,
};
pub use op::{
    OpBlob, OpBlobError, OpKind, OpTarget, ParamKind, ParamSpec, ParamValue, SignerEntry,
    SignerRole, UnknownOp, OP_SIGNATURE_NAMESPACE,
};
pub use report::{
    AuditEntry, BackupEntry, GuestReport, GuestSpec, GuestStatus, HostInfo, HostReport,
    JournalState, JournalStatus, PbsSnapshot, RestoreTest, ServiceState, StorageTarget,
    SCHEMA_VERSION,
};
pub use timestamp::{InvalidTimestamp, Timestamp};

/// Where the agent POSTs a [`HostReport`], relative to the hub's base URL.
pub const HOST_REPORT_PATH: &str = "/api/v1/host-report";
