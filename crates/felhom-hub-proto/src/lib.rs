//! felhom-hub-proto: the wire contract between the felhom host agent and the hub.
//!
//! `HostReport` (what the agent POSTs to `/api/v1/host-report`) and `ControlEnvelope` (what the
//! hub answers), plus the fixed sample that `testdata/host-report.golden.json` pins and a
//! serde-only `shape` tool that names drift between two versions of the contract.
//!
//! Never: depend on anything but serde (no tokio, no hyper, no filesystem, no JSON library at
//! run time), so the hub team's server and our agent compile the same types.

pub mod envelope;
pub mod golden;
pub mod report;
pub mod shape;
pub mod timestamp;

pub use envelope::ControlEnvelope;
pub use report::{
    AuditEntry, BackupEntry, GuestReport, GuestSpec, GuestStatus, HostInfo, HostReport,
    PbsSnapshot, RestoreTest, ServiceState, StorageTarget, SCHEMA_VERSION,
};
pub use timestamp::{InvalidTimestamp, Timestamp};

/// Where the agent POSTs a [`HostReport`], relative to the hub's base URL.
pub const HOST_REPORT_PATH: &str = "/api/v1/host-report";
