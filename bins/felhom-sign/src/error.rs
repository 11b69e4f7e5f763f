//! The one error type of felhom-sign: every failure names what was wrong and where.

use std::path::PathBuf;

use felhom_hub_proto::{InvalidTimestamp, OpBlobError, OpKind};

/// Why a felhom-sign command could not do its job (exit 2). A refused op in `check` is not an
/// error: it is a verdict (exit 1).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// A guest op without `--guest`.
    #[error("{op} acts on a guest: pass --guest VMID")]
    GuestRequired {
        /// The op.
        op: OpKind,
    },
    /// A host op with `--guest`.
    #[error("{op} acts on the host, not on a guest: drop --guest")]
    GuestNotTaken {
        /// The op.
        op: OpKind,
    },
    /// `--param` without `=`.
    #[error("--param {arg:?} is not NAME=VALUE")]
    ParamSyntax {
        /// The argument as given.
        arg: String,
    },
    /// A param the op does not take.
    #[error("{op} does not take the param {name:?} (it takes: {})", op.describe_params())]
    ParamNotTaken {
        /// The op.
        op: OpKind,
        /// The param's name.
        name: String,
    },
    /// A param given twice (twice on the command line, or both there and in --params-json).
    #[error("the param {name:?} is given twice")]
    ParamTwice {
        /// The param's name.
        name: String,
    },
    /// A `--param` value that does not fit the param's type.
    #[error("--param {name}={value:?}: {name} is {}", expected)]
    ParamValue {
        /// The param's name.
        name: String,
        /// The value as given.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
    /// `--params-json` is not a JSON object of params.
    #[error("--params-json {}: {problem}", path.display())]
    ParamsJson {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The composed op does not pass the catalogue's checks.
    #[error(transparent)]
    Op(#[from] OpBlobError),
    /// A `--valid` that is not a duration.
    #[error("--valid {input:?}: {problem} (write e.g. 15m, 1h30m, 2d)")]
    Duration {
        /// As given.
        input: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The window is empty.
    #[error("--valid must be longer than zero")]
    WindowEmpty,
    /// The window is longer than the agent accepts: it would refuse the op as malformed.
    #[error(
        "--valid {valid_secs}s is longer than the agent accepts (at most {max_secs}s = {} days): \
         a signature is meant to be fresh, not a standing permission",
        max_secs / 86_400
    )]
    WindowTooLong {
        /// The requested window.
        valid_secs: u64,
        /// The agent's maximum.
        max_secs: u64,
    },
    /// `--not-before` + `--valid` ends before now.
    #[error(
        "the window {not_before} .. {not_after} has already ended (now {now}): \
         pick a later --not-before or a longer --valid"
    )]
    AlreadyExpired {
        /// The window's start.
        not_before: String,
        /// The window's end.
        not_after: String,
        /// Now.
        now: String,
    },
    /// A time flag that is not RFC 3339 UTC with whole seconds.
    #[error("{flag}: {problem}")]
    Time {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A timestamp that does not parse.
    #[error("{flag}: {source}")]
    Timestamp {
        /// The flag.
        flag: &'static str,
        /// The parse error.
        #[source]
        source: InvalidTimestamp,
    },
    /// The operating system's random source failed.
    #[error("cannot draw a random nonce from the operating system: {0}")]
    Random(String),
    /// A file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// What the file is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an op blob the agent would act on.
    #[error("{} is not a valid op blob: {problem}", path.display())]
    NotABlob {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The signature file is not an SSHSIG.
    #[error("{} is not an SSH signature (ssh-keygen -Y sign output): {problem}", path.display())]
    NotASignature {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The key given to `sign -f` does not exist.
    #[error(
        "key file {} does not exist (give the private key, or its .pub with the key loaded in \
         ssh-agent)",
        path.display()
    )]
    KeyMissing {
        /// The path given.
        path: PathBuf,
    },
    /// ssh-keygen is not installed (or not on PATH).
    #[error("ssh-keygen was not found on PATH (install OpenSSH); to sign by hand run: {manual}")]
    SshKeygenMissing {
        /// The command to run by hand.
        manual: String,
    },
    /// ssh-keygen could not be started for another reason.
    #[error("cannot run ssh-keygen: {source}; to sign by hand run: {manual}")]
    SshKeygenSpawn {
        /// The command to run by hand.
        manual: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// ssh-keygen ran and failed (wrong passphrase, no touch, unreadable key…).
    #[error("ssh-keygen failed ({status}); its message is above. The command was: {manual}")]
    SshKeygenFailed {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The command that was run.
        manual: String,
    },
    /// The signers file is not usable.
    #[error("signers file {}: {problem}", path.display())]
    Signers {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}
