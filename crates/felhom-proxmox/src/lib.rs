//! felhom-proxmox: the typed Proxmox VE API client of the felhom agent, UPIDs and task waiting.
//! HTTPS and TLS trust come from `felhom-http`; the root-CLI backend is `felhom-privileged`.
//!
//! Never: spawn a process (its dependency tree has no process-spawning crate of ours, and a test
//! checks it), disable TLS verification silently, or let the token secret reach a log, an error
//! or `Debug` output.
//!
//! Map: [`client`] ([`PveClient`], implementing [`ProxmoxApi`] from [`api`]) over
//! `felhom_http::HttpsClient`, decoding into [`types`] (lenient serde helpers in [`lenient`]);
//! [`task`] waits on a [`Upid`]; [`error`] holds [`ProxmoxError`].

pub mod api;
pub mod client;
pub mod error;
pub mod lenient;
pub mod privileges;
pub mod task;
pub mod types;
pub mod upid;

pub use api::{
    ConfigUpdate, ProxmoxApi, RestoreRequest, SetConfigOutcome, VzdumpCompress, VzdumpMode,
    VzdumpOutcome, VzdumpRequest,
};
pub use client::{
    check_node_name, ApiToken, ApiUrl, ClientConfigError, NodeNameError, PveClient,
    PveClientConfig, TokenError,
};
pub use error::{ApiError, MissingPrivilege, ProxmoxError, TaskError};
pub use felhom_types::{HttpsUrl, UrlError, Vmid};
pub use task::{wait_task, PollSchedule, TaskOutcome, WaitOptions};
pub use types::{
    GuestStatus, GuestSummary, LxcConfig, NodeInfo, NodeStatus, Permissions, Snapshot,
    StorageContent, StorageInfo, TaskExit, TaskFilter, TaskList, TaskListItem, TaskLog,
    TaskLogLine, TaskSource, TaskState, TaskStatus, Version,
};
pub use upid::Upid;

// The HTTPS types that appear in this crate's API (client config, errors), re-exported so a
// caller of the Proxmox client needs no second import path for them.
pub use felhom_http::{
    Fingerprint, FingerprintError, HttpError, HttpRequest, HttpResponse, HttpsClient, HttpsConfig,
    HttpsConfigError, Secret, TlsConfigError, TlsFailure, TlsTrust,
};
