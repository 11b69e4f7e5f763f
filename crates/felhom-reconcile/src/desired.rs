//! The desired model (what the operator wants of each guest) and the providers that supply it.
//!
//! Every field is optional: absent means unmanaged, and the plan leaves it alone. Domain types are
//! built only through validation; the operator's JSON file is parsed into separate wire structs
//! first and converted with `TryFrom`, so a bad file is a typed error naming the place.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::normalize::MIB;

/// Lowest vmid PVE accepts (`pve-vmid`): [`felhom_types::Vmid`]'s rule.
pub const VMID_MIN: u32 = felhom_types::Vmid::MIN;
/// Highest vmid PVE accepts (`pve-vmid`): [`felhom_types::Vmid`]'s rule.
pub const VMID_MAX: u32 = felhom_types::Vmid::MAX;
/// PVE's LXC `cores` range.
pub const CORES_MAX: u32 = 8192;
/// PVE's LXC minimum `memory` (16 MiB), in bytes.
pub const MEMORY_MIN_BYTES: u64 = 16 * MIB;
/// Ceiling for memory and swap (1 PiB): far above any container, and it keeps the byte and MiB
/// arithmetic well inside `i64`.
pub const SIZE_MAX_BYTES: u64 = 1 << 50;
/// PVE's `description` maxLength, in characters.
pub const DESCRIPTION_MAX_CHARS: usize = 8192;
/// Largest desired-state file read (4 MiB); anything bigger is refused, not truncated.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Whether a guest should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunState {
    /// Started.
    Running,
    /// Stopped.
    Stopped,
}

/// Sizes the operator manages; each `None` is unmanaged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestSpec {
    /// CPU cores (1..=8192).
    pub cores: Option<u32>,
    /// Memory in bytes (at least 16 MiB); PVE stores whole MiB, so it is rounded up.
    pub memory_bytes: Option<u64>,
    /// Swap in bytes; rounded up to whole MiB like memory.
    pub swap_bytes: Option<u64>,
    /// Root disk size in bytes. Recorded and validated but never reconciled: growing a disk is
    /// not benign to plan blindly and shrinking is impossible.
    pub disk_bytes: Option<u64>,
}

/// What the operator wants of one guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredGuest {
    /// The guest's vmid (100..=999999999).
    pub vmid: u32,
    /// Whether it should run; `None` is unmanaged.
    pub run_state: Option<RunState>,
    /// Its sizes; `None` is unmanaged.
    pub spec: Option<GuestSpec>,
    /// Its description; `None` is unmanaged, `Some("")` means "no description".
    pub description: Option<String>,
    /// Whether it should exist (default `true`). `false` asks for its destruction, which the
    /// gate holds pending an operator signature; a guest merely missing from the desired
    /// state stays unmanaged (the file is partial: never destroy by omission).
    pub present: bool,
}

impl DesiredGuest {
    /// A guest with nothing managed yet.
    pub fn new(vmid: u32) -> Self {
        Self {
            vmid,
            run_state: None,
            spec: None,
            description: None,
            present: true,
        }
    }

    /// Checks every field against PVE's limits.
    pub fn validate(&self) -> Result<(), InvalidGuest> {
        if let Err(e) = felhom_types::Vmid::try_from(self.vmid) {
            return Err(InvalidGuest::Vmid { got: e.got });
        }
        if !self.present
            && (self.run_state.is_some() || self.spec.is_some() || self.description.is_some())
        {
            return Err(InvalidGuest::AbsentWithFields);
        }
        if let Some(spec) = &self.spec {
            if let Some(cores) = spec.cores {
                if !(1..=CORES_MAX).contains(&cores) {
                    return Err(InvalidGuest::Cores {
                        got: u64::from(cores),
                    });
                }
            }
            if let Some(memory) = spec.memory_bytes {
                if memory < MEMORY_MIN_BYTES {
                    return Err(InvalidGuest::MemoryTooSmall { got: memory });
                }
                if memory > SIZE_MAX_BYTES {
                    return Err(InvalidGuest::TooLarge {
                        field: "spec.memory_bytes",
                        got: memory,
                    });
                }
            }
            if let Some(swap) = spec.swap_bytes {
                if swap > SIZE_MAX_BYTES {
                    return Err(InvalidGuest::TooLarge {
                        field: "spec.swap_bytes",
                        got: swap,
                    });
                }
            }
            if spec.disk_bytes == Some(0) {
                return Err(InvalidGuest::DiskZero);
            }
        }
        if let Some(description) = &self.description {
            let chars = description.chars().count();
            if chars > DESCRIPTION_MAX_CHARS {
                return Err(InvalidGuest::DescriptionTooLong { got: chars });
            }
        }
        Ok(())
    }
}

/// A validated desired state: unique vmids, every guest within PVE's limits, sorted by vmid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredState {
    guests: Vec<DesiredGuest>,
}

impl DesiredState {
    /// Validates `guests` (in the order given, so errors name the operator's index) and sorts
    /// them by vmid.
    pub fn new(guests: Vec<DesiredGuest>) -> Result<Self, InvalidDesired> {
        let mut first_index: BTreeMap<u32, usize> = BTreeMap::new();
        for (index, guest) in guests.iter().enumerate() {
            guest
                .validate()
                .map_err(|error| InvalidDesired::Guest { index, error })?;
            if let Some(first) = first_index.insert(guest.vmid, index) {
                return Err(InvalidDesired::DuplicateVmid {
                    index,
                    vmid: guest.vmid,
                    first,
                });
            }
        }
        let mut guests = guests;
        guests.sort_unstable_by_key(|guest| guest.vmid);
        Ok(Self { guests })
    }

    /// Desire nothing: the explicit empty state.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The guests, sorted by vmid.
    pub fn guests(&self) -> &[DesiredGuest] {
        &self.guests
    }

    /// The guest with `vmid`, if desired.
    pub fn get(&self, vmid: u32) -> Option<&DesiredGuest> {
        self.guests
            .binary_search_by_key(&vmid, |guest| guest.vmid)
            .ok()
            .map(|index| &self.guests[index])
    }

    /// Number of guests.
    pub fn len(&self) -> usize {
        self.guests.len()
    }

    /// Whether no guest is desired.
    pub fn is_empty(&self) -> bool {
        self.guests.is_empty()
    }
}

/// One guest breaks a limit; the message starts with the field's path inside the guest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidGuest {
    /// vmid outside PVE's range.
    #[error("vmid: must be between 100 and 999999999, got {got}")]
    Vmid {
        /// The value found.
        got: u64,
    },
    /// cores outside PVE's range.
    #[error("spec.cores: must be between 1 and 8192, got {got}")]
    Cores {
        /// The value found.
        got: u64,
    },
    /// memory below PVE's minimum.
    #[error("spec.memory_bytes: must be at least 16777216 (16 MiB), got {got}")]
    MemoryTooSmall {
        /// The value found.
        got: u64,
    },
    /// A size above [`SIZE_MAX_BYTES`].
    #[error("{field}: must be at most 1125899906842624 (1 PiB), got {got}")]
    TooLarge {
        /// The field's path, e.g. `spec.swap_bytes`.
        field: &'static str,
        /// The value found.
        got: u64,
    },
    /// A zero disk size.
    #[error("spec.disk_bytes: must be greater than 0")]
    DiskZero,
    /// `present: false` together with fields to manage: contradictory.
    #[error(
        "present: false destroys the guest, so run_state, spec and description must be absent"
    )]
    AbsentWithFields,
    /// description longer than PVE accepts.
    #[error("description: must be at most 8192 characters, got {got}")]
    DescriptionTooLong {
        /// The length found, in characters.
        got: usize,
    },
}

/// A desired state breaks a rule; the message names the guest by its index in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidDesired {
    /// One guest is invalid.
    #[error("guests[{index}].{error}")]
    Guest {
        /// Position in the input list.
        index: usize,
        /// What is wrong with it.
        error: InvalidGuest,
    },
    /// Two entries name the same vmid.
    #[error("guests[{index}].vmid: {vmid} is already desired by guests[{first}]")]
    DuplicateVmid {
        /// Position of the second entry.
        index: usize,
        /// The repeated vmid.
        vmid: u32,
        /// Position of the first entry.
        first: usize,
    },
}

/// Why a pass has no desired state. Never "desire nothing": the caller skips the pass.
/// Every variant is safe to retry: the next pass reads again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DesiredError {
    /// The file could not be opened or read (missing, permissions, I/O).
    #[error("desired state file {}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The path is not a regular file (a FIFO, a device, a directory): never opened for
    /// reading, since that could block the daemon.
    #[error("desired state file {}: is {kind}, not a regular file: not read", path.display())]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// The read did not finish within its timeout (a hung network mount): nothing is known.
    #[error("desired state file {}: the read did not finish within {after:?} (a hung mount?)", path.display())]
    Stalled {
        /// The file.
        path: PathBuf,
        /// The timeout that passed.
        after: Duration,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("desired state file {}: larger than the {limit} byte limit", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// The file is not the expected JSON (syntax, unknown key, wrong type, missing `guests`).
    #[error("desired state file {}: line {line}, column {column}: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// serde's description of it.
        message: String,
    },
    /// The file parses but breaks a rule.
    #[error("desired state file {}: {error}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: InvalidDesired,
    },
}

/// A size PVE cannot hold exactly: it stores memory and swap in whole MiB, so the engine writes
/// `bytes` rounded up to `mib`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rounded {
    /// The guest.
    pub vmid: u32,
    /// `spec.memory_bytes` or `spec.swap_bytes`.
    pub field: &'static str,
    /// The desired bytes.
    pub bytes: u64,
    /// What is written instead, in MiB.
    pub mib: u64,
}

/// Every desired memory or swap size that is not a whole number of MiB (so it is rounded up).
pub fn unaligned_sizes(state: &DesiredState) -> Vec<Rounded> {
    let mut out = Vec::new();
    for guest in state.guests() {
        let Some(spec) = &guest.spec else { continue };
        for (field, bytes) in [
            ("spec.memory_bytes", spec.memory_bytes),
            ("spec.swap_bytes", spec.swap_bytes),
        ] {
            if let Some(bytes) = bytes.filter(|b| b % MIB != 0) {
                out.push(Rounded {
                    vmid: guest.vmid,
                    field,
                    bytes,
                    mib: bytes.div_ceil(MIB),
                });
            }
        }
    }
    out
}

/// Where desired state comes from; asked once per reconcile pass.
pub trait DesiredProvider: Send + Sync {
    /// The desired state for this pass. An error means "unknown this pass", never "nothing".
    fn desired(&self) -> impl Future<Output = Result<DesiredState, DesiredError>> + Send;
}

impl<P: DesiredProvider> DesiredProvider for Arc<P> {
    fn desired(&self) -> impl Future<Output = Result<DesiredState, DesiredError>> + Send {
        (**self).desired()
    }
}

/// Desires nothing: the live default until the hub serves desired state.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmptyProvider;

impl DesiredProvider for EmptyProvider {
    fn desired(&self) -> impl Future<Output = Result<DesiredState, DesiredError>> + Send {
        std::future::ready(Ok(DesiredState::empty()))
    }
}

/// A fixed desired state (fixtures, tests); replaceable between passes.
#[derive(Debug, Default)]
pub struct StaticProvider {
    state: Mutex<DesiredState>,
}

impl StaticProvider {
    /// Serves `state` until replaced.
    pub fn new(state: DesiredState) -> Self {
        Self {
            state: Mutex::new(state),
        }
    }

    /// Serves `state` from the next pass on.
    pub fn replace(&self, state: DesiredState) {
        // The lock guards a plain value: a poisoned lock still holds a whole state.
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }

    fn current(&self) -> DesiredState {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl DesiredProvider for StaticProvider {
    fn desired(&self) -> impl Future<Output = Result<DesiredState, DesiredError>> + Send {
        std::future::ready(Ok(self.current()))
    }
}

/// Longest a desired-state read may take before the pass gives up on it (a hung NFS mount, a
/// FIFO swapped in after the type check). Far above a local read of [`MAX_FILE_BYTES`].
pub const FILE_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// An operator-written JSON file, re-read on every pass (see [`parse_desired`] for the format).
///
/// Only a regular file is read (checked before the open and again on the open handle), opened
/// `O_NONBLOCK` so a FIFO cannot block the open, and read on the blocking pool under
/// [`FILE_READ_TIMEOUT`]: a read that stalls fails the pass ([`DesiredError::Stalled`]) and is
/// logged, and while it stays stuck the next passes fail at once instead of piling up threads.
/// The stuck thread cannot be killed; the daemon's exit does not wait for it.
#[derive(Debug, Clone)]
pub struct FileProvider {
    path: PathBuf,
    timeout: Duration,
    /// A read still running on the blocking pool (a stalled one, once the timeout passed).
    reading: Arc<AtomicBool>,
}

impl FileProvider {
    /// Reads `path` on each pass; nothing is read now.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            timeout: FILE_READ_TIMEOUT,
            reading: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The same provider with another read timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn read(&self) -> Result<DesiredState, DesiredError> {
        let stalled = || DesiredError::Stalled {
            path: self.path.clone(),
            after: self.timeout,
        };
        if self.reading.swap(true, Ordering::SeqCst) {
            tracing::warn!(path = %self.path.display(), "desired state file: the previous read is still stuck; not reading again");
            return Err(stalled());
        }
        let path = self.path.clone();
        let reading = Arc::clone(&self.reading);
        let read = tokio::task::spawn_blocking(move || {
            let result = read_regular_file(&path);
            reading.store(false, Ordering::SeqCst);
            result
        });
        let bytes = match tokio::time::timeout(self.timeout, read).await {
            Ok(Ok(result)) => result?,
            Ok(Err(join)) => {
                self.reading.store(false, Ordering::SeqCst);
                return Err(DesiredError::Read {
                    path: self.path.clone(),
                    source: std::io::Error::other(join.to_string()),
                });
            }
            Err(_) => {
                tracing::error!(
                    path = %self.path.display(),
                    timeout_secs = self.timeout.as_secs_f64(),
                    "desired state file: the read did not finish (a hung mount?); this pass \
                     fails and changes nothing"
                );
                return Err(stalled());
            }
        };
        parse_desired(&bytes).map_err(|error| error.at(&self.path))
    }
}

/// Reads `path` if, and only if, it is a regular file, without ever blocking on the open; at
/// most [`MAX_FILE_BYTES`].
fn read_regular_file(path: &Path) -> Result<Vec<u8>, DesiredError> {
    use std::os::unix::fs::OpenOptionsExt;
    let read_error = |source| DesiredError::Read {
        path: path.to_path_buf(),
        source,
    };
    let not_regular = |meta: &std::fs::Metadata| DesiredError::NotRegular {
        path: path.to_path_buf(),
        kind: file_kind(meta),
    };
    let meta = std::fs::metadata(path).map_err(read_error)?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    // O_NONBLOCK: a FIFO swapped in after the check opens at once instead of waiting for a
    // writer; the handle's own type is checked again below.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    let mut bytes = Vec::new();
    // Read one byte past the limit so "exactly at the limit" and "over it" differ.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(DesiredError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE_BYTES,
        });
    }
    Ok(bytes)
}

/// What a non-regular file is, for the error.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

impl DesiredProvider for FileProvider {
    fn desired(&self) -> impl Future<Output = Result<DesiredState, DesiredError>> + Send {
        self.read()
    }
}

/// Why bytes are not a desired state (before a file path is attached).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Not the expected JSON shape.
    #[error("line {line}, column {column}: {message}")]
    Malformed {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// serde's description.
        message: String,
    },
    /// Well-formed but breaks a rule.
    #[error("{0}")]
    Invalid(InvalidDesired),
}

impl ParseError {
    /// Attaches the file the bytes came from.
    pub fn at(self, path: &Path) -> DesiredError {
        let path = path.to_path_buf();
        match self {
            Self::Malformed {
                line,
                column,
                message,
            } => DesiredError::Malformed {
                path,
                line,
                column,
                message,
            },
            Self::Invalid(error) => DesiredError::Invalid { path, error },
        }
    }
}

/// Parses the desired-state file format (pure):
///
/// ```json
/// {"guests": [{"vmid": 101, "run_state": "running"},
///             {"vmid": 100, "spec": {"cores": 4, "memory_bytes": 4294967296},
///              "description": "web"}]}
/// ```
///
/// `guests` is required (an empty list is the explicit "desire nothing"); unknown keys anywhere
/// are rejected so a typo never silently unmanages a field.
pub fn parse_desired(bytes: &[u8]) -> Result<DesiredState, ParseError> {
    let file: wire::DesiredFile =
        serde_json::from_slice(bytes).map_err(|error| ParseError::Malformed {
            line: error.line(),
            column: error.column(),
            message: strip_position(&error.to_string()),
        })?;
    DesiredState::try_from(file).map_err(ParseError::Invalid)
}

/// serde_json appends " at line L column C"; the error carries both already.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// The file's wire structs: serde only, converted to the domain types through `TryFrom`.
pub mod wire {
    use serde::Deserialize;

    /// The whole file.
    #[derive(Debug, Clone, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct DesiredFile {
        /// Required, may be empty.
        pub guests: Vec<GuestEntry>,
    }

    /// One guest entry. Integers are read wide and range-checked in conversion, so an
    /// out-of-range value gets a message naming the field rather than serde's type error.
    #[derive(Debug, Clone, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct GuestEntry {
        /// vmid.
        pub vmid: u64,
        /// `"running"` or `"stopped"`.
        #[serde(default)]
        pub run_state: Option<RunStateEntry>,
        /// Sizes.
        #[serde(default)]
        pub spec: Option<SpecEntry>,
        /// Description.
        #[serde(default)]
        pub description: Option<String>,
        /// `false`: destroy it (signed). Absent: `true`.
        #[serde(default)]
        pub present: Option<bool>,
    }

    /// `run_state`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum RunStateEntry {
        /// `"running"`.
        Running,
        /// `"stopped"`.
        Stopped,
    }

    /// The `spec` object.
    #[derive(Debug, Clone, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct SpecEntry {
        /// Cores.
        #[serde(default)]
        pub cores: Option<u64>,
        /// Memory in bytes.
        #[serde(default)]
        pub memory_bytes: Option<u64>,
        /// Swap in bytes.
        #[serde(default)]
        pub swap_bytes: Option<u64>,
        /// Disk in bytes.
        #[serde(default)]
        pub disk_bytes: Option<u64>,
    }
}

impl From<wire::RunStateEntry> for RunState {
    fn from(wire: wire::RunStateEntry) -> Self {
        match wire {
            wire::RunStateEntry::Running => Self::Running,
            wire::RunStateEntry::Stopped => Self::Stopped,
        }
    }
}

impl TryFrom<wire::SpecEntry> for GuestSpec {
    type Error = InvalidGuest;

    fn try_from(wire: wire::SpecEntry) -> Result<Self, Self::Error> {
        let cores = match wire.cores {
            None => None,
            Some(got) => Some(
                u32::try_from(got)
                    .ok()
                    .filter(|cores| (1..=CORES_MAX).contains(cores))
                    .ok_or(InvalidGuest::Cores { got })?,
            ),
        };
        Ok(Self {
            cores,
            memory_bytes: wire.memory_bytes,
            swap_bytes: wire.swap_bytes,
            disk_bytes: wire.disk_bytes,
        })
    }
}

impl TryFrom<wire::GuestEntry> for DesiredGuest {
    type Error = InvalidGuest;

    fn try_from(wire: wire::GuestEntry) -> Result<Self, Self::Error> {
        let vmid = felhom_types::Vmid::new(wire.vmid)
            .map_err(|e| InvalidGuest::Vmid { got: e.got })?
            .get();
        let guest = Self {
            vmid,
            run_state: wire.run_state.map(RunState::from),
            spec: wire.spec.map(GuestSpec::try_from).transpose()?,
            description: wire.description,
            present: wire.present.unwrap_or(true),
        };
        guest.validate()?;
        Ok(guest)
    }
}

impl TryFrom<wire::DesiredFile> for DesiredState {
    type Error = InvalidDesired;

    fn try_from(wire: wire::DesiredFile) -> Result<Self, Self::Error> {
        let guests = wire
            .guests
            .into_iter()
            .enumerate()
            .map(|(index, entry)| {
                DesiredGuest::try_from(entry)
                    .map_err(|error| InvalidDesired::Guest { index, error })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(guests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * MIB;

    fn parse(text: &str) -> Result<DesiredState, ParseError> {
        parse_desired(text.as_bytes())
    }

    fn parse_err(text: &str) -> String {
        parse(text).expect_err(text).to_string()
    }

    #[test]
    fn parses_the_documented_example() {
        let state = parse(
            r#"{"guests": [{"vmid": 101, "run_state": "running"},
               {"vmid": 100, "spec": {"cores": 4, "memory_bytes": 4294967296}, "description": "web"}]}"#,
        )
        .expect("valid");
        assert_eq!(
            state.guests(),
            &[
                DesiredGuest {
                    vmid: 100,
                    run_state: None,
                    spec: Some(GuestSpec {
                        cores: Some(4),
                        memory_bytes: Some(4 * GIB),
                        swap_bytes: None,
                        disk_bytes: None,
                    }),
                    description: Some("web".to_owned()),
                    present: true,
                },
                DesiredGuest {
                    vmid: 101,
                    run_state: Some(RunState::Running),
                    spec: None,
                    description: None,
                    present: true,
                },
            ]
        );
        assert_eq!(
            state.get(101).map(|g| g.run_state),
            Some(Some(RunState::Running))
        );
        assert!(state.get(102).is_none());
    }

    #[test]
    fn explicit_empty_list_is_the_only_way_to_desire_nothing() {
        assert!(parse(r#"{"guests": []}"#).expect("valid").is_empty());
        assert_eq!(parse_err(""), "line 1, column 0: EOF while parsing a value");
        assert_eq!(parse_err("{}"), "line 1, column 2: missing field `guests`");
        assert!(parse_err("null").contains("expected struct DesiredFile"));
        assert!(parse_err(r#"{"guests": null}"#).contains("expected a sequence"));
    }

    #[test]
    fn malformed_input_names_the_place() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"guests": [{"vmid": 100, "run_sate": "running"}]}"#,
                "line 1, column 36: unknown field `run_sate`",
            ),
            (
                r#"{"guests": [], "extra": 1}"#,
                "line 1, column 22: unknown field `extra`",
            ),
            (
                "{\"guests\": [\n {\"vmid\": 100, \"spec\": {\"ram\": 1}}]}",
                "line 2, column 29: unknown field `ram`",
            ),
            (
                r#"{"guests": [{"vmid": 100, "run_state": "paused"}]}"#,
                "line 1, column 47: unknown variant `paused`, expected `running` or `stopped`",
            ),
            (
                r#"{"guests": [{"vmid": -1}]}"#,
                "line 1, column 23: invalid value: integer `-1`, expected u64",
            ),
            (
                r#"{"guests": [{"vmid": 100}"#,
                "line 1, column 25: EOF while parsing a list",
            ),
        ];
        for (text, expect) in cases {
            let message = parse_err(text);
            assert!(
                message.starts_with(expect),
                "{text}\n got:    {message}\n expect: {expect}"
            );
        }
    }

    #[test]
    fn invalid_values_name_the_guest_and_field() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"guests": [{"vmid": 99}]}"#,
                "guests[0].vmid: must be between 100 and 999999999, got 99",
            ),
            (
                r#"{"guests": [{"vmid": 100}, {"vmid": 4294967396}]}"#,
                "guests[1].vmid: must be between 100 and 999999999, got 4294967396",
            ),
            (
                r#"{"guests": [{"vmid": 100, "spec": {"cores": 0}}]}"#,
                "guests[0].spec.cores: must be between 1 and 8192, got 0",
            ),
            (
                r#"{"guests": [{"vmid": 100, "spec": {"cores": 8193}}]}"#,
                "guests[0].spec.cores: must be between 1 and 8192, got 8193",
            ),
            (
                r#"{"guests": [{"vmid": 100, "spec": {"memory_bytes": 16777215}}]}"#,
                "guests[0].spec.memory_bytes: must be at least 16777216 (16 MiB), got 16777215",
            ),
            (
                r#"{"guests": [{"vmid": 100, "spec": {"swap_bytes": 1125899906842625}}]}"#,
                "guests[0].spec.swap_bytes: must be at most 1125899906842624 (1 PiB), got 1125899906842625",
            ),
            (
                r#"{"guests": [{"vmid": 100, "spec": {"disk_bytes": 0}}]}"#,
                "guests[0].spec.disk_bytes: must be greater than 0",
            ),
            (
                r#"{"guests": [{"vmid": 100}, {"vmid": 101}, {"vmid": 100}]}"#,
                "guests[2].vmid: 100 is already desired by guests[0]",
            ),
        ];
        for (text, expect) in cases {
            assert_eq!(parse_err(text), *expect, "{text}");
        }
        let long = format!(
            r#"{{"guests": [{{"vmid": 100, "description": "{}"}}]}}"#,
            "x".repeat(8193)
        );
        assert_eq!(
            parse_err(&long),
            "guests[0].description: must be at most 8192 characters, got 8193"
        );
        let at_limit = format!(
            r#"{{"guests": [{{"vmid": 100, "description": "{}"}}]}}"#,
            "é".repeat(8192)
        );
        assert!(parse(&at_limit).is_ok());
    }

    #[test]
    fn null_fields_are_unmanaged_and_limits_are_inclusive() {
        let state = parse(
            r#"{"guests": [{"vmid": 100, "run_state": null,
                "spec": {"cores": null, "memory_bytes": 16777216, "swap_bytes": 0},
                "description": null},
               {"vmid": 999999999, "spec": {"cores": 8192}, "description": ""}]}"#,
        )
        .expect("valid");
        let first = state.get(100).expect("100");
        assert_eq!(first.run_state, None);
        assert_eq!(first.description, None);
        let spec = first.spec.as_ref().expect("spec");
        assert_eq!(
            (spec.cores, spec.memory_bytes, spec.swap_bytes),
            (None, Some(16 * MIB), Some(0))
        );
        assert_eq!(
            state
                .get(999_999_999)
                .and_then(|g| g.description.as_deref()),
            Some("")
        );
    }

    #[test]
    fn state_new_validates_and_sorts() {
        let state =
            DesiredState::new(vec![DesiredGuest::new(300), DesiredGuest::new(100)]).expect("valid");
        let vmids: Vec<u32> = state.guests().iter().map(|g| g.vmid).collect();
        assert_eq!(vmids, [100, 300]);
        assert_eq!(state.len(), 2);
        let bad = DesiredGuest {
            spec: Some(GuestSpec {
                memory_bytes: Some(1),
                ..GuestSpec::default()
            }),
            ..DesiredGuest::new(100)
        };
        assert_eq!(
            DesiredState::new(vec![DesiredGuest::new(101), bad]),
            Err(InvalidDesired::Guest {
                index: 1,
                error: InvalidGuest::MemoryTooSmall { got: 1 }
            })
        );
        assert!(matches!(
            DesiredState::new(vec![DesiredGuest::new(1_000_000_000)]),
            Err(InvalidDesired::Guest {
                error: InvalidGuest::Vmid { .. },
                ..
            })
        ));
    }

    #[tokio::test]
    async fn empty_and_static_providers() {
        assert!(EmptyProvider.desired().await.expect("empty").is_empty());
        let one = DesiredState::new(vec![DesiredGuest::new(100)]).expect("valid");
        let provider = Arc::new(StaticProvider::new(one.clone()));
        assert_eq!(provider.desired().await.expect("static"), one);
        provider.replace(DesiredState::empty());
        assert!(provider.desired().await.expect("static").is_empty());
    }

    #[test]
    fn unaligned_sizes_are_named_with_what_is_written() {
        let mut a = DesiredGuest::new(100);
        a.spec = Some(GuestSpec {
            memory_bytes: Some(2048 * MIB + 1),
            swap_bytes: Some(512 * MIB),
            ..GuestSpec::default()
        });
        let mut b = DesiredGuest::new(101);
        b.spec = Some(GuestSpec {
            swap_bytes: Some(MIB - 1),
            ..GuestSpec::default()
        });
        let state = DesiredState::new(vec![a, b, DesiredGuest::new(102)]).expect("valid");
        assert_eq!(
            unaligned_sizes(&state),
            [
                Rounded {
                    vmid: 100,
                    field: "spec.memory_bytes",
                    bytes: 2048 * MIB + 1,
                    mib: 2049
                },
                Rounded {
                    vmid: 101,
                    field: "spec.swap_bytes",
                    bytes: MIB - 1,
                    mib: 1
                },
            ]
        );
    }

    #[tokio::test]
    async fn a_fifo_or_a_directory_is_refused_without_blocking() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("desired.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        // Today's open() of a FIFO waits for a writer forever; bound the test instead.
        let provider = FileProvider::new(&fifo);
        let err = tokio::time::timeout(Duration::from_secs(5), provider.desired())
            .await
            .expect("does not block on the FIFO")
            .expect_err("a FIFO is no desired state");
        assert!(
            matches!(err, DesiredError::NotRegular { kind: "a FIFO", .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("is a FIFO, not a regular file"),
            "{err}"
        );
        // No read is left running: the next pass asks again (and is refused again).
        let again = provider.desired().await.expect_err("still a FIFO");
        assert!(
            matches!(again, DesiredError::NotRegular { .. }),
            "{again:?}"
        );

        let err = FileProvider::new(dir.path())
            .desired()
            .await
            .expect_err("a directory");
        assert!(
            matches!(
                err,
                DesiredError::NotRegular {
                    kind: "a directory",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn file_provider_rereads_each_pass() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("desired.json");
        let provider = FileProvider::new(&path);
        assert_eq!(provider.path(), path);

        // missing: an error naming the file, never "desire nothing"
        let err = provider.desired().await.expect_err("missing");
        assert!(matches!(err, DesiredError::Read { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "desired state file {}: cannot read: ",
                path.display()
            )),
            "{message}"
        );

        std::fs::write(
            &path,
            r#"{"guests": [{"vmid": 101, "run_state": "stopped"}]}"#,
        )
        .expect("write");
        let state = provider.desired().await.expect("valid");
        assert_eq!(
            state.get(101).and_then(|g| g.run_state),
            Some(RunState::Stopped)
        );

        // the operator breaks the file: this pass fails, it does not desire nothing
        std::fs::write(&path, r#"{"guests": [{"vmid": 101, "run_state": "stopped""#)
            .expect("write");
        let err = provider.desired().await.expect_err("malformed");
        assert_eq!(
            err.to_string(),
            format!(
                "desired state file {}: line 1, column 48: EOF while parsing an object",
                path.display()
            )
        );

        std::fs::write(&path, r#"{"guests": [{"vmid": 5}]}"#).expect("write");
        let err = provider.desired().await.expect_err("invalid");
        assert_eq!(
            err.to_string(),
            format!(
                "desired state file {}: guests[0].vmid: must be between 100 and 999999999, got 5",
                path.display()
            )
        );

        // and fixes it: the next pass sees the fix
        std::fs::write(&path, r#"{"guests": []}"#).expect("write");
        assert!(provider.desired().await.expect("valid").is_empty());
    }

    #[tokio::test]
    async fn file_provider_refuses_oversized_and_unreadable_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.json");
        let mut body = String::from(r#"{"guests": []}"#);
        body.push_str(&" ".repeat(MAX_FILE_BYTES as usize));
        std::fs::write(&path, body).expect("write");
        let err = FileProvider::new(&path)
            .desired()
            .await
            .expect_err("too large");
        assert!(
            matches!(err, DesiredError::TooLarge { limit, .. } if limit == MAX_FILE_BYTES),
            "{err:?}"
        );

        // a directory cannot be read as a file
        let err = FileProvider::new(dir.path())
            .desired()
            .await
            .expect_err("directory");
        assert!(matches!(err, DesiredError::NotRegular { .. }), "{err:?}");
    }
}
