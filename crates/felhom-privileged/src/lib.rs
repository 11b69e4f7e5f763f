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

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncReadExt;

#[cfg(any(test, feature = "test-support"))]
mod recording;
#[cfg(any(test, feature = "test-support"))]
pub use recording::{RecordedCall, RecordingRunner};

/// The output of a finished command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutput {
    /// Exit code; `None` if a signal ended it.
    pub status: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

impl CommandOutput {
    /// A successful run with this standard output (for [`RecordingRunner`] replies).
    pub fn ok(stdout: impl Into<Vec<u8>>) -> Self {
        CommandOutput {
            status: Some(0),
            stdout: stdout.into(),
            stderr: Vec::new(),
        }
    }

    /// A run that exited with `code`.
    pub fn exit(code: i32, stdout: impl Into<Vec<u8>>, stderr: impl Into<Vec<u8>>) -> Self {
        CommandOutput {
            status: Some(code),
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// The last few hundred characters of standard error, for error messages.
    fn stderr_tail(&self) -> String {
        let s = String::from_utf8_lossy(&self.stderr);
        let s = s.trim();
        let mut start = s.len().saturating_sub(500);
        while !s.is_char_boundary(start) {
            start += 1;
        }
        s[start..].to_owned()
    }
}

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

/// Runs one program with arguments (no shell) under a timeout.
pub trait CommandRunner: Send + Sync {
    /// Runs `program` with `args`, killing it after `timeout`.
    fn run(
        &self,
        program: &str,
        args: &[String],
        timeout: Duration,
    ) -> impl Future<Output = Result<CommandOutput, PrivilegedError>> + Send;
}

/// The live runner: `tokio::process`, no shell, a fixed `PATH` and the C locale (stable output
/// to parse), stdin closed, the child killed if the run is dropped or times out.
#[derive(Debug, Clone)]
pub struct TokioCommandRunner {
    /// Largest stdout (and, separately, stderr) accepted.
    pub max_output_bytes: usize,
}

impl Default for TokioCommandRunner {
    fn default() -> Self {
        TokioCommandRunner {
            max_output_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Reads at most `limit + 1` bytes, so an overflow is detected without unbounded memory.
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(
    r: Option<R>,
    limit: usize,
) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    if let Some(r) = r {
        r.take(limit as u64 + 1).read_to_end(&mut buf).await?;
    }
    Ok(buf)
}

impl CommandRunner for TokioCommandRunner {
    async fn run(
        &self,
        program: &str,
        args: &[String],
        timeout: Duration,
    ) -> Result<CommandOutput, PrivilegedError> {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| PrivilegedError::Spawn {
                program: program.to_owned(),
                detail: e.to_string(),
            })?;
        let limit = self.max_output_bytes;
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let run = async {
            let (out, err) = tokio::join!(read_capped(stdout, limit), read_capped(stderr, limit));
            let status = child.wait().await?;
            Ok::<_, io::Error>((out?, err?, status))
        };
        let (stdout, stderr, status) = match tokio::time::timeout(timeout, run).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                return Err(PrivilegedError::Spawn {
                    program: program.to_owned(),
                    detail: e.to_string(),
                })
            }
            Err(_) => {
                // Dropping `run` released the borrow; kill now rather than at drop time.
                let _ = child.start_kill();
                return Err(PrivilegedError::Timeout {
                    program: program.to_owned(),
                    after: timeout,
                });
            }
        };
        if stdout.len() > limit || stderr.len() > limit {
            return Err(PrivilegedError::OutputTooLarge {
                program: program.to_owned(),
                limit,
            });
        }
        Ok(CommandOutput {
            status: status.code(),
            stdout,
            stderr,
        })
    }
}

/// The host files the backend edits, behind a trait so tests use a temporary directory.
pub trait HostFiles: Send + Sync {
    /// Reads `/etc/fstab`.
    fn read_fstab(&self) -> impl Future<Output = Result<String, PrivilegedError>> + Send;
    /// Replaces `/etc/fstab` atomically and durably.
    fn write_fstab(
        &self,
        contents: String,
    ) -> impl Future<Output = Result<(), PrivilegedError>> + Send;
    /// Creates a directory and its parents.
    fn create_dir_all(
        &self,
        path: &Path,
    ) -> impl Future<Output = Result<(), PrivilegedError>> + Send;
}

/// Host files under a root directory: `/` live, a temporary directory in tests.
#[derive(Debug, Clone)]
pub struct RootedFiles {
    root: PathBuf,
}

impl RootedFiles {
    /// The real host.
    pub fn host() -> Self {
        RootedFiles {
            root: PathBuf::from("/"),
        }
    }

    /// Files under `root` (absolute paths are re-rooted there).
    pub fn under(root: impl Into<PathBuf>) -> Self {
        RootedFiles { root: root.into() }
    }

    fn path(&self, absolute: &Path) -> PathBuf {
        self.root
            .join(absolute.strip_prefix("/").unwrap_or(absolute))
    }

    fn fstab(&self) -> PathBuf {
        self.path(Path::new("/etc/fstab"))
    }
}

fn files_error(path: &Path, e: impl fmt::Display) -> PrivilegedError {
    PrivilegedError::Files {
        path: path.to_owned(),
        detail: e.to_string(),
    }
}

/// Write temp, fsync, rename over, fsync the directory: a crash leaves the old or the new
/// fstab, never a torn one (a torn fstab can stop the host from booting).
fn replace_file_durably(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(".fstab.felhom-agent.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
    }
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(&tmp, meta.permissions())?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl HostFiles for RootedFiles {
    async fn read_fstab(&self) -> Result<String, PrivilegedError> {
        let path = self.fstab();
        match tokio::fs::read_to_string(&path).await {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(files_error(&path, e)),
        }
    }

    async fn write_fstab(&self, contents: String) -> Result<(), PrivilegedError> {
        let path = self.fstab();
        let p = path.clone();
        tokio::task::spawn_blocking(move || replace_file_durably(&p, contents.as_bytes()))
            .await
            .map_err(|e| files_error(&path, e))?
            .map_err(|e| files_error(&path, e))
    }

    async fn create_dir_all(&self, path: &Path) -> Result<(), PrivilegedError> {
        let full = self.path(path);
        tokio::fs::create_dir_all(&full)
            .await
            .map_err(|e| files_error(&full, e))
    }
}

/// Argument validation: everything that reaches a command line passes one of these.
pub mod validate {
    use super::PrivilegedError;

    fn bad(what: &'static str, value: &str, reason: &'static str) -> PrivilegedError {
        PrivilegedError::InvalidArgument {
            what,
            value: value.to_owned(),
            reason,
        }
    }

    /// A guest id, 100..=999999999.
    pub fn vmid(vmid: u32) -> Result<String, PrivilegedError> {
        if let Ok(vmid) = felhom_types::Vmid::try_from(vmid) {
            Ok(vmid.to_string())
        } else {
            Err(bad(
                "vmid",
                &vmid.to_string(),
                "must be within 100..=999999999",
            ))
        }
    }

    /// A filesystem UUID: RFC 4122 form (ext4, xfs, btrfs), FAT/exFAT `XXXX-XXXX`, or NTFS's 16
    /// hex digits. Returned as given (PVE and `blkid` print lowercase for ext4, uppercase for FAT).
    pub fn fs_uuid(uuid: &str) -> Result<String, PrivilegedError> {
        let groups: Vec<&str> = uuid.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        let hex = groups
            .iter()
            .all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_hexdigit()));
        let shape = matches!(lens.as_slice(), [8, 4, 4, 4, 12] | [4, 4] | [16]);
        if hex && shape {
            Ok(uuid.to_owned())
        } else {
            Err(bad(
                "filesystem uuid",
                uuid,
                "must be 8-4-4-4-12 hex, XXXX-XXXX (FAT) or 16 hex digits (NTFS)",
            ))
        }
    }

    /// A whole-disk device: `/dev/sdX`, `/dev/nvmeNnM`, or `/dev/disk/by-id/<name>`.
    pub fn device(dev: &str) -> Result<String, PrivilegedError> {
        let ok = if let Some(letters) = dev.strip_prefix("/dev/sd") {
            !letters.is_empty()
                && letters.len() <= 3
                && letters.bytes().all(|b| b.is_ascii_lowercase())
        } else if let Some(rest) = dev.strip_prefix("/dev/nvme") {
            match rest.split_once('n') {
                Some((ctrl, ns)) => {
                    !ctrl.is_empty()
                        && !ns.is_empty()
                        && ctrl.bytes().all(|b| b.is_ascii_digit())
                        && ns.bytes().all(|b| b.is_ascii_digit())
                }
                None => false,
            }
        } else if let Some(name) = dev.strip_prefix("/dev/disk/by-id/") {
            !name.is_empty()
                && name != "."
                && name != ".."
                && !name.starts_with('-')
                && name.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'+')
                })
        } else {
            false
        };
        if ok && !dev.contains("..") {
            Ok(dev.to_owned())
        } else {
            Err(bad(
                "device",
                dev,
                "must be /dev/sdX, /dev/nvmeNnM or /dev/disk/by-id/<name>",
            ))
        }
    }

    /// A mountpoint under `/mnt/`: plain path components only (no `..`, no spaces, which fstab
    /// would need escaped).
    pub fn mountpoint(mp: &str) -> Result<String, PrivilegedError> {
        let rest = mp.strip_prefix("/mnt/").unwrap_or("");
        let ok = !rest.is_empty()
            && mp.len() <= 255
            && rest.split('/').all(|c| {
                !c.is_empty()
                    && c != "."
                    && c != ".."
                    && !c.starts_with('-')
                    && c.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            });
        if ok {
            Ok(mp.to_owned())
        } else {
            Err(bad(
                "mountpoint",
                mp,
                "must be /mnt/<name>[/<name>...] with letters, digits, '-', '_' or '.'",
            ))
        }
    }

    /// A DNS hostname: labels of `[a-z0-9-]`, not starting or ending with `-`, at most 253.
    pub fn hostname(h: &str) -> Result<String, PrivilegedError> {
        let ok = !h.is_empty()
            && h.len() <= 253
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if ok {
            Ok(h.to_owned())
        } else {
            Err(bad("hostname", h, "must be a dns name"))
        }
    }

    /// A PVE storage id: `[a-z][a-z0-9-_.]*[a-z0-9]`.
    pub fn storage(s: &str) -> Result<String, PrivilegedError> {
        let b = s.as_bytes();
        let ok = b.len() >= 2
            && b[0].is_ascii_alphabetic()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
        if ok {
            Ok(s.to_owned())
        } else {
            Err(bad("storage", s, "must be a pve storage id"))
        }
    }

    /// A container template as a volume id: `<storage>:vztmpl/<file>.tar.{gz,xz,zst}`.
    pub fn template(volid: &str) -> Result<String, PrivilegedError> {
        let reason = "must be <storage>:vztmpl/<file>.tar.gz|.tar.xz|.tar.zst";
        let (storage, file) = volid
            .split_once(":vztmpl/")
            .ok_or_else(|| bad("template", volid, reason))?;
        let file_ok = !file.starts_with(['-', '.'])
            && !file.contains("..")
            && file
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'))
            && [".tar.gz", ".tar.xz", ".tar.zst"]
                .iter()
                .any(|ext| file.ends_with(ext));
        if storage_ok(storage) && file_ok {
            Ok(volid.to_owned())
        } else {
            Err(bad("template", volid, reason))
        }
    }

    fn storage_ok(s: &str) -> bool {
        storage(s).is_ok()
    }

    /// A Linux bridge name such as `vmbr0`.
    pub fn bridge(b: &str) -> Result<String, PrivilegedError> {
        let bytes = b.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 15
            && bytes[0].is_ascii_alphabetic()
            && bytes
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if ok {
            Ok(b.to_owned())
        } else {
            Err(bad("bridge", b, "must be an interface name such as vmbr0"))
        }
    }

    /// A number within `range`.
    pub fn within(
        what: &'static str,
        n: u32,
        range: std::ops::RangeInclusive<u32>,
    ) -> Result<String, PrivilegedError> {
        if range.contains(&n) {
            Ok(n.to_string())
        } else {
            Err(bad(what, &n.to_string(), "is out of range"))
        }
    }
}

/// The golden container: the template guests are restored from. Unprivileged, with `nesting`
/// and `keyctl` (Docker inside LXC needs both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldenLxcSpec {
    /// Guest id.
    pub vmid: u32,
    /// OS template volume, e.g. `local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst`.
    pub template: String,
    /// Hostname.
    pub hostname: String,
    /// Storage for the root volume.
    pub storage: String,
    /// Root volume size, GiB.
    pub disk_gib: u32,
    /// Memory, MiB.
    pub memory_mib: u32,
    /// Cores.
    pub cores: u32,
    /// Bridge for `net0` (DHCP).
    pub bridge: String,
}

/// What `mount_usb_by_uuid` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountOutcome {
    /// An fstab entry was added (false: it was already there).
    pub fstab_changed: bool,
    /// The filesystem was already mounted there.
    pub already_mounted: bool,
}

/// Adds `UUID=<uuid> <mountpoint> ...` to fstab text. `None` if that exact entry exists;
/// an error if the UUID or the mountpoint is already used otherwise.
pub fn fstab_with_entry(
    existing: &str,
    uuid: &str,
    mountpoint: &str,
) -> Result<Option<String>, PrivilegedError> {
    let spec = format!("UUID={uuid}");
    for line in existing.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let mut fields = t.split_whitespace();
        let (Some(src), Some(target)) = (fields.next(), fields.next()) else {
            continue;
        };
        let same_src = src.eq_ignore_ascii_case(&spec);
        let same_target = target == mountpoint;
        match (same_src, same_target) {
            (true, true) => return Ok(None),
            (true, false) => {
                return Err(PrivilegedError::FstabConflict {
                    line: line.to_owned(),
                    reason: "the uuid is already mounted elsewhere",
                })
            }
            (false, true) => {
                return Err(PrivilegedError::FstabConflict {
                    line: line.to_owned(),
                    reason: "the mountpoint is already used by another filesystem",
                })
            }
            (false, false) => {}
        }
    }
    let mut out = existing.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    // nofail + a short device timeout: a missing USB disk must never hold up boot; pass 0:
    // no boot-time fsck of a backup disk.
    out.push_str(&format!(
        "{spec} {mountpoint} auto defaults,nofail,x-systemd.device-timeout=10s 0 0 # felhom-agent\n"
    ));
    Ok(Some(out))
}

/// SMART health of one disk, from `smartctl --json -H -A`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SmartHealth {
    /// Device as asked.
    pub device: String,
    /// Model name.
    pub model: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// Overall self-assessment; `None` if the disk did not report one.
    pub passed: Option<bool>,
    /// Current temperature, °C.
    pub temperature_c: Option<i64>,
    /// Power-on hours.
    pub power_on_hours: Option<u64>,
    /// ATA attributes (empty for NVMe).
    pub attributes: Vec<SmartAttribute>,
    /// NVMe health log (absent for ATA).
    pub nvme: Option<NvmeHealth>,
    /// smartctl's exit status bits (bit 3: disk failing; bits 4–7: prefail/old-age/error-log
    /// warnings).
    pub exit_status: i32,
    /// smartctl's own messages.
    pub messages: Vec<String>,
}

/// One ATA SMART attribute.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct SmartAttribute {
    /// Attribute id.
    pub id: u32,
    /// Name, e.g. `Reallocated_Sector_Ct`.
    #[serde(default)]
    pub name: String,
    /// Normalised value.
    #[serde(default)]
    pub value: i64,
    /// Worst normalised value.
    #[serde(default)]
    pub worst: i64,
    /// Failure threshold.
    #[serde(default)]
    pub thresh: i64,
    /// `""`, `now` or `past`.
    #[serde(default)]
    pub when_failed: String,
    /// Raw value.
    #[serde(default)]
    pub raw: i64,
}

/// The NVMe health information log.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct NvmeHealth {
    /// Critical warning bits (0: none).
    #[serde(default)]
    pub critical_warning: u32,
    /// Percentage of rated endurance used.
    #[serde(default)]
    pub percentage_used: u32,
    /// Available spare, percent.
    #[serde(default)]
    pub available_spare: u32,
    /// Media and data integrity errors.
    #[serde(default)]
    pub media_errors: u64,
}

/// smartctl's JSON, the parts we read.
#[derive(Deserialize)]
struct SmartJson {
    #[serde(default)]
    smartctl: Option<SmartctlMeta>,
    #[serde(default)]
    model_name: Option<String>,
    #[serde(default)]
    serial_number: Option<String>,
    #[serde(default)]
    smart_status: Option<SmartStatus>,
    #[serde(default)]
    temperature: Option<Temperature>,
    #[serde(default)]
    power_on_time: Option<PowerOn>,
    #[serde(default)]
    ata_smart_attributes: Option<AtaAttributes>,
    #[serde(default)]
    nvme_smart_health_information_log: Option<NvmeHealth>,
}

#[derive(Deserialize)]
struct SmartctlMeta {
    #[serde(default)]
    messages: Vec<SmartMessage>,
}

#[derive(Deserialize)]
struct SmartMessage {
    #[serde(default)]
    string: String,
}

#[derive(Deserialize)]
struct SmartStatus {
    passed: Option<bool>,
}

#[derive(Deserialize)]
struct Temperature {
    current: Option<i64>,
}

#[derive(Deserialize)]
struct PowerOn {
    hours: Option<u64>,
}

#[derive(Deserialize)]
struct AtaAttributes {
    #[serde(default)]
    table: Vec<AtaAttribute>,
}

#[derive(Deserialize)]
struct AtaAttribute {
    id: u32,
    #[serde(default)]
    name: String,
    #[serde(default)]
    value: i64,
    #[serde(default)]
    worst: i64,
    #[serde(default)]
    thresh: i64,
    #[serde(default)]
    when_failed: String,
    #[serde(default)]
    raw: Option<RawValue>,
}

#[derive(Deserialize)]
struct RawValue {
    #[serde(default)]
    value: i64,
}

/// Parses smartctl's JSON output (pure).
pub fn parse_smartctl(
    device: &str,
    exit_status: i32,
    json: &[u8],
) -> Result<SmartHealth, PrivilegedError> {
    let parsed: SmartJson = serde_json::from_slice(json).map_err(|e| PrivilegedError::Parse {
        program: "smartctl".to_owned(),
        detail: e.to_string(),
    })?;
    Ok(SmartHealth {
        device: device.to_owned(),
        model: parsed.model_name,
        serial: parsed.serial_number,
        passed: parsed.smart_status.and_then(|s| s.passed),
        temperature_c: parsed.temperature.and_then(|t| t.current),
        power_on_hours: parsed.power_on_time.and_then(|p| p.hours),
        attributes: parsed
            .ata_smart_attributes
            .map(|a| {
                a.table
                    .into_iter()
                    .map(|a| SmartAttribute {
                        id: a.id,
                        name: a.name,
                        value: a.value,
                        worst: a.worst,
                        thresh: a.thresh,
                        when_failed: a.when_failed,
                        raw: a.raw.map_or(0, |r| r.value),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        nvme: parsed.nvme_smart_health_information_log,
        exit_status,
        messages: parsed
            .smartctl
            .map(|m| m.messages.into_iter().map(|m| m.string).collect())
            .unwrap_or_default(),
    })
}

/// Kind of a sensor reading, from its subfeature prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorKind {
    /// `temp*`, °C.
    Temperature,
    /// `fan*`, RPM.
    Fan,
    /// `in*`, volts.
    Voltage,
    /// `power*`, watts.
    Power,
    /// `curr*`, amperes.
    Current,
    /// Anything else.
    Other,
}

/// One feature of a chip (e.g. `Package id 0`), with its input and limits.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorReading {
    /// Feature label.
    pub label: String,
    /// What it measures.
    pub kind: SensorKind,
    /// Current value.
    pub input: Option<f64>,
    /// Upper limit.
    pub max: Option<f64>,
    /// Critical limit.
    pub crit: Option<f64>,
}

/// One sensor chip from `sensors -j`.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorChip {
    /// Chip name, e.g. `coretemp-isa-0000`.
    pub name: String,
    /// Adapter description.
    pub adapter: Option<String>,
    /// Its readings, in label order.
    pub readings: Vec<SensorReading>,
}

/// Parses `sensors -j` (pure).
pub fn parse_sensors(json: &[u8]) -> Result<Vec<SensorChip>, PrivilegedError> {
    let parse_err = |detail: String| PrivilegedError::Parse {
        program: "sensors".to_owned(),
        detail,
    };
    let chips: BTreeMap<String, BTreeMap<String, serde_json::Value>> =
        serde_json::from_slice(json).map_err(|e| parse_err(e.to_string()))?;
    let mut out = Vec::new();
    for (name, features) in chips {
        let mut chip = SensorChip {
            name,
            adapter: None,
            readings: Vec::new(),
        };
        for (label, value) in features {
            match value {
                serde_json::Value::String(s) if label == "Adapter" => chip.adapter = Some(s),
                serde_json::Value::Object(subs) => {
                    let mut reading = SensorReading {
                        label,
                        kind: SensorKind::Other,
                        input: None,
                        max: None,
                        crit: None,
                    };
                    for (sub, v) in subs {
                        let Some(v) = v.as_f64() else { continue };
                        let prefix: String = sub
                            .chars()
                            .take_while(|c| c.is_ascii_alphabetic())
                            .collect();
                        reading.kind = match prefix.as_str() {
                            "temp" => SensorKind::Temperature,
                            "fan" => SensorKind::Fan,
                            "in" => SensorKind::Voltage,
                            "power" => SensorKind::Power,
                            "curr" => SensorKind::Current,
                            _ => reading.kind,
                        };
                        if sub.ends_with("_input") || sub.ends_with("_average") {
                            reading.input = reading.input.or(Some(v));
                        } else if sub.ends_with("_max") {
                            reading.max = Some(v);
                        } else if sub.ends_with("_crit") {
                            reading.crit = Some(v);
                        }
                    }
                    chip.readings.push(reading);
                }
                _ => {}
            }
        }
        out.push(chip);
    }
    Ok(out)
}

const PCT_TIMEOUT: Duration = Duration::from_secs(600);
const MOUNT_TIMEOUT: Duration = Duration::from_secs(60);
const SMARTCTL_TIMEOUT: Duration = Duration::from_secs(60);
const SENSORS_TIMEOUT: Duration = Duration::from_secs(10);

/// The privileged backend: root-only host operations the PVE API does not offer.
#[derive(Debug)]
pub struct Privileged<R: CommandRunner, F: HostFiles = RootedFiles> {
    runner: R,
    files: F,
}

impl<R: CommandRunner> Privileged<R, RootedFiles> {
    /// The backend acting on the real host.
    pub fn on_host(runner: R) -> Self {
        Privileged {
            runner,
            files: RootedFiles::host(),
        }
    }
}

impl<R: CommandRunner, F: HostFiles> Privileged<R, F> {
    /// A backend with its own file access (tests: a temporary root).
    pub fn new(runner: R, files: F) -> Self {
        Privileged { runner, files }
    }

    /// The runner (tests inspect a [`RecordingRunner`] through it).
    pub fn runner(&self) -> &R {
        &self.runner
    }

    async fn run_ok(
        &self,
        program: &str,
        args: Vec<String>,
        timeout: Duration,
    ) -> Result<CommandOutput, PrivilegedError> {
        let out = self.runner.run(program, &args, timeout).await?;
        if out.success() {
            Ok(out)
        } else {
            Err(PrivilegedError::Failed {
                program: program.to_owned(),
                status: out.status,
                stderr: out.stderr_tail(),
            })
        }
    }

    /// Creates the golden container with `pct create`.
    ///
    /// Why not the API: PVE lets only `root@pam` set container features other than `nesting`
    /// (`keyctl` included), and the agent's token is never `root@pam`; `pct` runs as root.
    pub async fn create_golden_lxc(&self, spec: &GoldenLxcSpec) -> Result<(), PrivilegedError> {
        let storage = validate::storage(&spec.storage)?;
        let disk = validate::within("disk size (GiB)", spec.disk_gib, 1..=65_536)?;
        let args = vec![
            "create".to_owned(),
            validate::vmid(spec.vmid)?,
            validate::template(&spec.template)?,
            "--hostname".to_owned(),
            validate::hostname(&spec.hostname)?,
            "--rootfs".to_owned(),
            format!("{storage}:{disk}"),
            "--memory".to_owned(),
            validate::within("memory (MiB)", spec.memory_mib, 16..=1_048_576)?,
            "--cores".to_owned(),
            validate::within("cores", spec.cores, 1..=8192)?,
            "--net0".to_owned(),
            format!(
                "name=eth0,bridge={},ip=dhcp",
                validate::bridge(&spec.bridge)?
            ),
            "--unprivileged".to_owned(),
            "1".to_owned(),
            "--features".to_owned(),
            "keyctl=1,nesting=1".to_owned(),
            "--onboot".to_owned(),
            "0".to_owned(),
        ];
        self.run_ok("pct", args, PCT_TIMEOUT).await.map(|_| ())
    }

    /// Mounts a USB disk by filesystem UUID at `mountpoint` (under `/mnt/`) and records it in
    /// fstab (with `nofail`) so it comes back after a reboot. Idempotent.
    ///
    /// Why not the API: PVE's disk API only initialises disks (wiping them) into new storages;
    /// it cannot mount an existing filesystem or edit fstab.
    pub async fn mount_usb_by_uuid(
        &self,
        uuid: &str,
        mountpoint: &str,
    ) -> Result<MountOutcome, PrivilegedError> {
        let uuid = validate::fs_uuid(uuid)?;
        let mountpoint = validate::mountpoint(mountpoint)?;
        self.files.create_dir_all(Path::new(&mountpoint)).await?;
        let fstab = self.files.read_fstab().await?;
        let fstab_changed = match fstab_with_entry(&fstab, &uuid, &mountpoint)? {
            Some(updated) => {
                self.files.write_fstab(updated).await?;
                true
            }
            None => false,
        };
        // `mount <mountpoint>` mounts what fstab says, which also proves the entry works.
        let out = self
            .runner
            .run("mount", std::slice::from_ref(&mountpoint), MOUNT_TIMEOUT)
            .await?;
        if out.success() {
            return Ok(MountOutcome {
                fstab_changed,
                already_mounted: false,
            });
        }
        // util-linux: exit 32 "... already mounted on <mountpoint>".
        let stderr = out.stderr_tail();
        if out.status == Some(32) && stderr.contains("already mounted") {
            return Ok(MountOutcome {
                fstab_changed,
                already_mounted: true,
            });
        }
        Err(PrivilegedError::Failed {
            program: "mount".to_owned(),
            status: out.status,
            stderr,
        })
    }

    /// SMART health of a disk via `smartctl --json -H -A`.
    ///
    /// Why not the API: PVE's `disks/smart` returns the health string and ATA attributes
    /// parsed from text, NVMe data only as an unparsed text blob, and only for disks PVE lists;
    /// smartctl's JSON gives the structured report (temperature, power-on hours, NVMe log) for
    /// any disk, including USB backup disks.
    pub async fn smart_health(&self, device: &str) -> Result<SmartHealth, PrivilegedError> {
        let device = validate::device(device)?;
        let args = vec![
            "--json".to_owned(),
            "-H".to_owned(),
            "-A".to_owned(),
            device.clone(),
        ];
        let out = self.runner.run("smartctl", &args, SMARTCTL_TIMEOUT).await?;
        let status = out.status.unwrap_or(-1);
        // Bits 0 and 1: bad command line, or the device could not be opened: no report.
        // Higher bits describe the disk's health and still come with a full report.
        if out.status.is_none() || status & 0b11 != 0 {
            return Err(PrivilegedError::Failed {
                program: "smartctl".to_owned(),
                status: out.status,
                stderr: if out.stderr.is_empty() {
                    String::from_utf8_lossy(&out.stdout)
                        .chars()
                        .take(500)
                        .collect()
                } else {
                    out.stderr_tail()
                },
            });
        }
        parse_smartctl(&device, status, &out.stdout)
    }

    /// Hardware sensors via `sensors -j`.
    ///
    /// Why not the API: no PVE endpoint exposes lm-sensors readings.
    pub async fn sensors(&self) -> Result<Vec<SensorChip>, PrivilegedError> {
        let out = self
            .run_ok("sensors", vec!["-j".to_owned()], SENSORS_TIMEOUT)
            .await?;
        parse_sensors(&out.stdout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden() -> GoldenLxcSpec {
        GoldenLxcSpec {
            vmid: 9000,
            template: "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".into(),
            hostname: "golden".into(),
            storage: "local-lvm".into(),
            disk_gib: 8,
            memory_mib: 1024,
            cores: 2,
            bridge: "vmbr0".into(),
        }
    }

    fn backend(dir: &Path) -> Privileged<RecordingRunner, RootedFiles> {
        Privileged::new(RecordingRunner::new(), RootedFiles::under(dir))
    }

    #[tokio::test]
    async fn golden_lxc_runs_pct_create_with_keyctl() {
        let dir = tempfile::tempdir().unwrap();
        let p = backend(dir.path());
        p.runner().reply(Ok(CommandOutput::ok("")));
        p.create_golden_lxc(&golden()).await.unwrap();
        let calls = p.runner().calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].program, "pct");
        assert_eq!(
            calls[0].args,
            [
                "create",
                "9000",
                "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
                "--hostname",
                "golden",
                "--rootfs",
                "local-lvm:8",
                "--memory",
                "1024",
                "--cores",
                "2",
                "--net0",
                "name=eth0,bridge=vmbr0,ip=dhcp",
                "--unprivileged",
                "1",
                "--features",
                "keyctl=1,nesting=1",
                "--onboot",
                "0"
            ]
        );
        assert_eq!(calls[0].timeout, PCT_TIMEOUT);
    }

    #[tokio::test]
    async fn golden_lxc_failures_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let p = backend(dir.path());
        p.runner().reply(Ok(CommandOutput::exit(
            255,
            "",
            "CT 9000 already exists on node 'pve'\n",
        )));
        let err = p.create_golden_lxc(&golden()).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "pct failed with exit status 255: CT 9000 already exists on node 'pve'"
        );
        let bad_specs = [
            GoldenLxcSpec {
                vmid: 99,
                ..golden()
            },
            GoldenLxcSpec {
                template: "local:iso/x.iso".into(),
                ..golden()
            },
            GoldenLxcSpec {
                template: "local:vztmpl/../../etc/passwd.tar.gz".into(),
                ..golden()
            },
            GoldenLxcSpec {
                template: "--help:vztmpl/x.tar.zst".into(),
                ..golden()
            },
            GoldenLxcSpec {
                hostname: "-bad".into(),
                ..golden()
            },
            GoldenLxcSpec {
                hostname: "a b".into(),
                ..golden()
            },
            GoldenLxcSpec {
                storage: "local lvm".into(),
                ..golden()
            },
            GoldenLxcSpec {
                bridge: "vmbr0;reboot".into(),
                ..golden()
            },
            GoldenLxcSpec {
                memory_mib: 8,
                ..golden()
            },
            GoldenLxcSpec {
                cores: 0,
                ..golden()
            },
            GoldenLxcSpec {
                disk_gib: 0,
                ..golden()
            },
        ];
        for spec in bad_specs {
            let err = p.create_golden_lxc(&spec).await.unwrap_err();
            assert!(
                matches!(err, PrivilegedError::InvalidArgument { .. }),
                "{spec:?}: {err}"
            );
        }
        assert_eq!(p.runner().calls().len(), 1, "refused specs run nothing");
    }

    #[tokio::test]
    async fn usb_mount_adds_fstab_entry_then_mounts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/fstab"),
            "/dev/pve/root / ext4 errors=remount-ro 0 1",
        )
        .unwrap();
        let p = backend(dir.path());
        p.runner().reply(Ok(CommandOutput::ok("")));
        let uuid = "0f3c6d1e-8b2a-4c5d-9e7f-112233445566";
        let out = p.mount_usb_by_uuid(uuid, "/mnt/usb-backup").await.unwrap();
        assert_eq!(
            out,
            MountOutcome {
                fstab_changed: true,
                already_mounted: false
            }
        );
        let fstab = std::fs::read_to_string(dir.path().join("etc/fstab")).unwrap();
        assert_eq!(
            fstab,
            format!(
                "/dev/pve/root / ext4 errors=remount-ro 0 1\nUUID={uuid} /mnt/usb-backup auto defaults,nofail,x-systemd.device-timeout=10s 0 0 # felhom-agent\n"
            )
        );
        assert!(dir.path().join("mnt/usb-backup").is_dir());
        let calls = p.runner().calls();
        assert_eq!(
            (calls[0].program.as_str(), calls[0].args.as_slice()),
            ("mount", &["/mnt/usb-backup".to_owned()][..])
        );

        // Again: fstab untouched, "already mounted" is fine.
        p.runner().reply(Ok(CommandOutput::exit(
            32,
            "",
            "mount: /mnt/usb-backup: /dev/sdb1 already mounted on /mnt/usb-backup.\n",
        )));
        let again = p.mount_usb_by_uuid(uuid, "/mnt/usb-backup").await.unwrap();
        assert_eq!(
            again,
            MountOutcome {
                fstab_changed: false,
                already_mounted: true
            }
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("etc/fstab")).unwrap(),
            fstab
        );
    }

    #[tokio::test]
    async fn usb_mount_refusals_and_failures() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        let p = backend(dir.path());
        for (uuid, mp) in [
            ("not-a-uuid", "/mnt/usb"),
            ("0f3c6d1e-8b2a-4c5d-9e7f-11223344556", "/mnt/usb"),
            ("0f3c6d1e-8b2a-4c5d-9e7f-112233445566", "/media/usb"),
            ("0f3c6d1e-8b2a-4c5d-9e7f-112233445566", "/mnt/../etc"),
            ("0f3c6d1e-8b2a-4c5d-9e7f-112233445566", "/mnt/"),
            ("0f3c6d1e-8b2a-4c5d-9e7f-112233445566", "/mnt/my disk"),
            ("0f3c6d1e-8b2a-4c5d-9e7f-112233445566", "/mnt/-o"),
        ] {
            let err = p.mount_usb_by_uuid(uuid, mp).await.unwrap_err();
            assert!(
                matches!(err, PrivilegedError::InvalidArgument { .. }),
                "{uuid} {mp}: {err}"
            );
        }
        assert!(p.runner().calls().is_empty());
        assert!(
            !dir.path().join("etc/fstab").exists(),
            "nothing written for refused arguments"
        );

        p.runner().reply(Ok(CommandOutput::exit(
            32,
            "",
            "mount: /mnt/usb: can't find UUID=ABCD-1234.\n",
        )));
        let err = p
            .mount_usb_by_uuid("ABCD-1234", "/mnt/usb")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("can't find UUID"), "{err}");
    }

    #[test]
    fn fstab_conflicts() {
        let existing = "# comment\nUUID=abcd-1234 /mnt/a auto defaults 0 0\n/dev/sdc1 /mnt/b ext4 defaults 0 2\n";
        assert_eq!(
            fstab_with_entry(existing, "ABCD-1234", "/mnt/a").unwrap(),
            None,
            "uuid case-insensitive"
        );
        let err = fstab_with_entry(existing, "ABCD-1234", "/mnt/other").unwrap_err();
        assert!(
            err.to_string().contains("already mounted elsewhere"),
            "{err}"
        );
        let err = fstab_with_entry(existing, "1111-2222", "/mnt/b").unwrap_err();
        assert!(
            err.to_string().contains("mountpoint is already used"),
            "{err}"
        );
        let added = fstab_with_entry(existing, "1111-2222", "/mnt/c")
            .unwrap()
            .unwrap();
        assert!(
            added.starts_with(existing)
                && added.ends_with(
                    "/mnt/c auto defaults,nofail,x-systemd.device-timeout=10s 0 0 # felhom-agent\n"
                )
        );
        assert!(fstab_with_entry("", "1111-2222", "/mnt/c")
            .unwrap()
            .unwrap()
            .starts_with("UUID=1111-2222 "));
    }

    #[test]
    fn validators() {
        for ok in [
            "0f3c6d1e-8b2a-4c5d-9e7f-112233445566",
            "ABCD-1234",
            "0123456789ABCDEF",
        ] {
            assert!(validate::fs_uuid(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ABCD1234",
            "ABCD-123G",
            "0f3c6d1e-8b2a-4c5d-9e7f",
            "abcd-1234-",
            "--all",
        ] {
            assert!(validate::fs_uuid(bad).is_err(), "{bad}");
        }
        for ok in [
            "/dev/sda",
            "/dev/sdab",
            "/dev/nvme0n1",
            "/dev/nvme12n3",
            "/dev/disk/by-id/ata-WDC_WD40EFRX-68N32N0_WD-WCC7K1234567",
            "/dev/disk/by-id/usb-Seagate_Expansion_NAAB1234-0:0",
        ] {
            assert!(validate::device(ok).is_ok(), "{ok}");
        }
        for bad in [
            "/dev/sda1",
            "/dev/sd",
            "/dev/nvme0",
            "/dev/nvme0n1p1",
            "/dev/disk/by-id/../../sda",
            "/dev/disk/by-id/",
            "/dev/disk/by-id/a/b",
            "/dev/mem",
            "sda",
            "/dev/disk/by-id/-x",
            "/dev/SDA",
        ] {
            assert!(validate::device(bad).is_err(), "{bad}");
        }
        for ok in ["/mnt/usb", "/mnt/backup/disk-1", "/mnt/a.b_c"] {
            assert!(validate::mountpoint(ok).is_ok(), "{ok}");
        }
        for ok in ["golden", "web-01.example.com", "a"] {
            assert!(validate::hostname(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a..b", "-a", "a-", "a_b", &"x".repeat(64)] {
            assert!(validate::hostname(bad).is_err(), "{bad}");
        }
        assert!(
            validate::template("local:vztmpl/alpine-3.20-default_20240908_amd64.tar.xz").is_ok()
        );
        assert!(validate::template("local:vztmpl/x.iso").is_err());
        assert!(validate::template("local:vztmpl/.hidden.tar.gz").is_err());
        assert!(validate::vmid(100).is_ok() && validate::vmid(999_999_999).is_ok());
        assert!(validate::vmid(1_000_000_000).is_err());
    }

    const SMART_ATA: &str = r#"{
      "json_format_version": [1, 0],
      "smartctl": {"version": [7, 3], "exit_status": 0, "messages": []},
      "device": {"name": "/dev/sda", "type": "sat"},
      "model_name": "WDC WD40EFRX-68N32N0",
      "serial_number": "WD-WCC7K1234567",
      "smart_status": {"passed": true},
      "ata_smart_attributes": {"revision": 16, "table": [
        {"id": 5, "name": "Reallocated_Sector_Ct", "value": 200, "worst": 200, "thresh": 140, "when_failed": "", "flags": {"value": 51}, "raw": {"value": 0, "string": "0"}},
        {"id": 194, "name": "Temperature_Celsius", "value": 114, "worst": 103, "thresh": 0, "when_failed": "", "raw": {"value": 36, "string": "36"}}
      ]},
      "power_on_time": {"hours": 31337},
      "temperature": {"current": 36}
    }"#;

    const SMART_NVME: &str = r#"{
      "smartctl": {"exit_status": 4, "messages": [{"string": "Read Self-test Log failed", "severity": "error"}]},
      "model_name": "Samsung SSD 980 PRO 1TB",
      "smart_status": {"passed": false, "nvme": {"value": 4}},
      "nvme_smart_health_information_log": {"critical_warning": 4, "temperature": 41, "available_spare": 100, "percentage_used": 7, "media_errors": 0},
      "temperature": {"current": 41},
      "power_on_time": {"hours": 812}
    }"#;

    #[tokio::test]
    async fn smart_health_ata_and_nvme() {
        let dir = tempfile::tempdir().unwrap();
        let p = backend(dir.path());
        p.runner().reply(Ok(CommandOutput::ok(SMART_ATA)));
        let h = p.smart_health("/dev/sda").await.unwrap();
        assert_eq!(
            p.runner().calls()[0].args,
            ["--json", "-H", "-A", "/dev/sda"]
        );
        assert_eq!(h.passed, Some(true));
        assert_eq!(h.temperature_c, Some(36));
        assert_eq!(h.power_on_hours, Some(31337));
        assert_eq!(h.attributes.len(), 2);
        assert_eq!(
            (
                h.attributes[0].id,
                h.attributes[0].raw,
                h.attributes[0].thresh
            ),
            (5, 0, 140)
        );
        assert_eq!(h.model.as_deref(), Some("WDC WD40EFRX-68N32N0"));

        // Exit bit 2 (a command failed) and bit 3 (disk failing) still carry a report.
        p.runner()
            .reply(Ok(CommandOutput::exit(12, SMART_NVME, "")));
        let h = p.smart_health("/dev/nvme0n1").await.unwrap();
        assert_eq!(h.passed, Some(false));
        assert_eq!(h.exit_status, 12);
        assert_eq!(h.nvme.as_ref().unwrap().percentage_used, 7);
        assert_eq!(h.nvme.unwrap().critical_warning, 4);
        assert_eq!(h.messages, ["Read Self-test Log failed"]);
        assert!(h.attributes.is_empty());

        // Bit 1: the device could not be opened: no report.
        p.runner().reply(Ok(CommandOutput::exit(
            2,
            r#"{"smartctl":{"exit_status":2}}"#,
            "Smartctl open device: /dev/sdb failed: No such device",
        )));
        let err = p.smart_health("/dev/sdb").await.unwrap_err();
        assert!(
            matches!(
                err,
                PrivilegedError::Failed {
                    status: Some(2),
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("No such device"));

        p.runner().reply(Ok(CommandOutput::ok("not json")));
        assert!(matches!(
            p.smart_health("/dev/sda").await,
            Err(PrivilegedError::Parse { .. })
        ));
        assert!(matches!(
            p.smart_health("/dev/sda; reboot").await,
            Err(PrivilegedError::InvalidArgument { .. })
        ));
    }

    const SENSORS: &str = r#"{
      "coretemp-isa-0000": {
        "Adapter": "ISA adapter",
        "Package id 0": {"temp1_input": 45.000, "temp1_max": 80.000, "temp1_crit": 100.000, "temp1_crit_alarm": 0.000},
        "Core 0": {"temp2_input": 43.000, "temp2_max": 80.000, "temp2_crit": 100.000, "temp2_crit_alarm": 0.000}
      },
      "nct6775-isa-0290": {
        "Adapter": "ISA adapter",
        "fan2": {"fan2_input": 1205.000, "fan2_min": 0.000},
        "in0": {"in0_input": 0.880, "in0_min": 0.000, "in0_max": 1.744},
        "intrusion0": {"intrusion0_alarm": 1.000}
      },
      "acpitz-acpi-0": {"Adapter": "ACPI interface", "temp1": {}}
    }"#;

    #[tokio::test]
    async fn sensors_are_parsed_per_chip() {
        let dir = tempfile::tempdir().unwrap();
        let p = backend(dir.path());
        p.runner().reply(Ok(CommandOutput::ok(SENSORS)));
        let chips = p.sensors().await.unwrap();
        assert_eq!(p.runner().calls()[0].args, ["-j"]);
        let core = chips
            .iter()
            .find(|c| c.name == "coretemp-isa-0000")
            .unwrap();
        assert_eq!(core.adapter.as_deref(), Some("ISA adapter"));
        let pkg = core
            .readings
            .iter()
            .find(|r| r.label == "Package id 0")
            .unwrap();
        assert_eq!(
            (pkg.kind, pkg.input, pkg.max, pkg.crit),
            (SensorKind::Temperature, Some(45.0), Some(80.0), Some(100.0))
        );
        let nct = chips.iter().find(|c| c.name.starts_with("nct")).unwrap();
        let fan = nct.readings.iter().find(|r| r.label == "fan2").unwrap();
        assert_eq!((fan.kind, fan.input), (SensorKind::Fan, Some(1205.0)));
        let volt = nct.readings.iter().find(|r| r.label == "in0").unwrap();
        assert_eq!((volt.kind, volt.max), (SensorKind::Voltage, Some(1.744)));
        let intrusion = nct
            .readings
            .iter()
            .find(|r| r.label == "intrusion0")
            .unwrap();
        assert_eq!((intrusion.kind, intrusion.input), (SensorKind::Other, None));
        let acpi = chips.iter().find(|c| c.name.starts_with("acpitz")).unwrap();
        assert_eq!(
            acpi.readings[0].input, None,
            "a reading that failed is absent, not zero"
        );

        p.runner()
            .reply(Ok(CommandOutput::exit(1, "", "No sensors found!")));
        let err = p.sensors().await.unwrap_err();
        assert!(err.to_string().contains("No sensors found!"));
        p.runner().reply(Ok(CommandOutput::ok("[1,2]")));
        assert!(matches!(
            p.sensors().await,
            Err(PrivilegedError::Parse { .. })
        ));
    }

    #[tokio::test]
    async fn recording_runner_without_reply_errors() {
        let r = RecordingRunner::new();
        let err = r.run("x", &[], Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(err, PrivilegedError::Spawn { .. }));
        assert_eq!(r.calls().len(), 1);
    }

    #[tokio::test]
    async fn tokio_runner_runs_without_a_shell_and_times_out() {
        let r = TokioCommandRunner::default();
        // `echo` gets its argument verbatim: no shell expands `$HOME` or `;`.
        let out = r
            .run("echo", &["$HOME; true".to_owned()], Duration::from_secs(10))
            .await
            .unwrap();
        assert!(out.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "$HOME; true\n");

        let out = r.run("false", &[], Duration::from_secs(10)).await.unwrap();
        assert_eq!(out.status, Some(1));

        let err = r
            .run("sleep", &["5".to_owned()], Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, PrivilegedError::Timeout { .. }), "{err}");

        let err = r
            .run("/nonexistent/program", &[], Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, PrivilegedError::Spawn { .. }), "{err}");

        let small = TokioCommandRunner {
            max_output_bytes: 4,
        };
        let err = small
            .run("echo", &["0123456789".to_owned()], Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(
            matches!(err, PrivilegedError::OutputTooLarge { limit: 4, .. }),
            "{err}"
        );
    }
}
