//! The `Privileged` facade: each root-only host operation the PVE API does not offer, its
//! arguments validated, run through the `CommandRunner` with its timeout.

use std::path::Path;
use std::time::Duration;

use crate::{
    fstab_with_entry, parse_sensors, parse_smartctl, validate, CommandOutput, CommandRunner,
    HostFiles, MountOutcome, PrivilegedError, RootedFiles, SensorChip, SmartHealth,
};

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

pub(crate) const PCT_TIMEOUT: Duration = Duration::from_secs(600);
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
