//! felhom-proxmox: the typed Proxmox VE API client of the felhom agent, its TLS trust, UPIDs and
//! task waiting, and the fenced root-CLI backend for the few things the API cannot do.
//!
//! Never: spawn a process outside `privileged`, make an HTTP call from `privileged`, disable TLS
//! verification silently, or let the token secret reach a log, an error or `Debug` output.
//!
//! Map: [`tls`] (trust modes, pinning verifier) → [`http`] (the project's one HTTPS client) →
//! [`client`] ([`PveClient`], implementing [`ProxmoxApi`] from [`api`]) decoding into [`types`]
//! (lenient serde helpers in [`lenient`]); [`task`] waits on a [`Upid`]; [`error`] holds
//! [`ProxmoxError`]. [`privileged`] is separate and shares nothing with the HTTP side.

pub mod api;
pub mod client;
pub mod error;
pub mod http;
pub mod lenient;
pub mod privileged;
pub mod privileges;
pub mod secret;
pub mod task;
pub mod tls;
pub mod types;
pub mod upid;

pub use api::{
    ConfigUpdate, ProxmoxApi, RestoreRequest, SetConfigOutcome, VzdumpCompress, VzdumpMode,
    VzdumpOutcome, VzdumpRequest,
};
pub use client::{ApiToken, ClientConfigError, PveClient, PveClientConfig, TokenError};
pub use error::{ApiError, MissingPrivilege, ProxmoxError, TaskError};
pub use http::{
    HttpError, HttpRequest, HttpResponse, HttpsClient, HttpsConfig, HttpsConfigError, TlsFailure,
};
pub use privileged::{
    CommandOutput, CommandRunner, GoldenLxcSpec, HostFiles, MountOutcome, Privileged,
    PrivilegedError, RecordingRunner, RootedFiles, SensorChip, SmartHealth, TokioCommandRunner,
};
pub use secret::Secret;
pub use task::{wait_task, PollSchedule, TaskOutcome, WaitOptions};
pub use tls::{Fingerprint, FingerprintError, TlsConfigError, TlsTrust};
pub use types::{
    GuestStatus, GuestSummary, LxcConfig, NodeInfo, NodeStatus, Permissions, Snapshot,
    StorageContent, StorageInfo, TaskExit, TaskLog, TaskLogLine, TaskState, TaskStatus, Version,
};
pub use upid::Upid;
