//! What the privileged backend can fail with.

use std::path::PathBuf;
use std::time::Duration;

/// What the privileged backend can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrivilegedError {
    /// An argument failed validation; nothing ran.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidArgument {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    /// The program could not be started; nothing ran. Safe to retry once the cause is fixed.
    #[error("cannot run {program}: {detail}")]
    Spawn { program: String, detail: String },
    /// The program did not finish in time and was killed; it may have acted partially.
    #[error("{program} did not finish within {after:?} and was killed")]
    Timeout { program: String, after: Duration },
    /// The program exited unsuccessfully.
    #[error("{program} failed with exit status {}: {stderr}", status.map_or_else(|| "none (killed by a signal)".to_owned(), |s| s.to_string()))]
    Failed {
        program: String,
        status: Option<i32>,
        stderr: String,
    },
    /// The program wrote more output than accepted.
    #[error("{program} wrote more than {limit} bytes of output")]
    OutputTooLarge { program: String, limit: usize },
    /// The program's output could not be understood.
    #[error("cannot parse the output of {program}: {detail}")]
    Parse { program: String, detail: String },
    /// A host file could not be read or written.
    #[error("{path}: {detail}")]
    Files { path: PathBuf, detail: String },
    /// fstab already uses the UUID or the mountpoint differently.
    #[error("fstab conflict: {reason}: {line:?}")]
    FstabConflict { line: String, reason: &'static str },
}
