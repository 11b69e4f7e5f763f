//! `HostReport` and its parts: what the agent POSTs to the hub at `/api/v1/host-report`.

use serde::{Deserialize, Deserializer, Serialize};

use crate::Timestamp;

/// The contract version this crate writes in [`HostReport::schema_version`].
///
/// Adding an optional field does not change it; removing, renaming or retyping a field does
/// (see the crate README).
pub const SCHEMA_VERSION: u32 = 1;

/// One heartbeat of one Proxmox VE host: the body of `POST /api/v1/host-report`.
///
/// Collections are always JSON arrays, `[]` when empty, never `null`. On read, an absent or
/// `null` collection is taken as empty and unknown fields are ignored, so an older hub accepts
/// a newer agent's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    /// The contract version the sender wrote; [`SCHEMA_VERSION`] for this crate.
    pub schema_version: u32,
    /// The host's id at the hub (`hub.host_id` in the agent's config); stable across restarts.
    pub host_id: String,
    /// The agent's version (`CARGO_PKG_VERSION` of the daemon, e.g. `0.1.0`).
    pub agent_version: String,
    /// When the agent collected this report (RFC 3339 UTC, whole seconds).
    pub collected_at: Timestamp,
    /// The Proxmox VE node itself.
    pub host: HostInfo,
    /// Every LXC guest the agent's token can see, in ascending vmid order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub guests: Vec<GuestReport>,
    /// Whether the host's `cloudflared` service runs.
    pub cloudflared: ServiceState,
    /// Storages of the node (PVE `GET /nodes/{node}/storage`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub storage_targets: Vec<StorageTarget>,
    /// vzdump backups found on the node's backup-capable storages.
    #[serde(default, deserialize_with = "null_as_default")]
    pub backups: Vec<BackupEntry>,
    /// Results of test restores of backups: the latest per source guest (see [`RestoreTest`]).
    #[serde(default, deserialize_with = "null_as_default")]
    pub restore_tests: Vec<RestoreTest>,
    /// Reserved: the agent sends `[]` today. Snapshots held on a Proxmox Backup Server.
    #[serde(default, deserialize_with = "null_as_default")]
    pub pbs_snapshots: Vec<PbsSnapshot>,
    /// Reserved: the agent sends `[]` today. The latest authorization decisions on this host.
    #[serde(default, deserialize_with = "null_as_default")]
    pub audit_tail: Vec<AuditEntry>,
    /// Whether the agent's op journal works. `journal_less` is the state to alert on: the agent
    /// keeps reporting and runs only convergent benign actions, but cannot recover an
    /// interrupted op. Absent (an older agent): `unknown`.
    #[serde(default)]
    pub journal: JournalStatus,
}

impl HostReport {
    /// A report at [`SCHEMA_VERSION`] with no guests, no collections and `cloudflared` unknown;
    /// the collector fills in the rest.
    pub fn new(
        host_id: impl Into<String>,
        agent_version: impl Into<String>,
        collected_at: Timestamp,
        host: HostInfo,
    ) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            host_id: host_id.into(),
            agent_version: agent_version.into(),
            collected_at,
            host,
            guests: Vec::new(),
            cloudflared: ServiceState::Unknown,
            storage_targets: Vec::new(),
            backups: Vec::new(),
            restore_tests: Vec::new(),
            pbs_snapshots: Vec::new(),
            audit_tail: Vec::new(),
            journal: JournalStatus::default(),
        }
    }
}

/// The agent's op journal as the hub sees it: a state to alert on and, when it is not `ok`,
/// why (one line, e.g. the open error and the path).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct JournalStatus {
    /// The state.
    pub state: JournalState,
    /// Why the journal is not `ok` (absent when it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl JournalStatus {
    /// The journal is open and recording.
    pub fn ok() -> Self {
        Self {
            state: JournalState::Ok,
            reason: None,
        }
    }

    /// The agent runs without its journal, for `reason`.
    pub fn journal_less(reason: impl Into<String>) -> Self {
        Self {
            state: JournalState::JournalLess,
            reason: Some(reason.into()),
        }
    }
}

/// State of the agent's op journal. Read leniently: any other value reads as `unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalState {
    /// Open and recording every op: interrupted ops are recovered on restart.
    Ok,
    /// The journal could not be opened or written (e.g. corrupt): the agent runs only
    /// convergent benign actions and cannot recover an interrupted op. Alert on it; the
    /// operator repairs with `felhom-agent journal inspect|repair`.
    JournalLess,
    /// Not reported (an older agent) or not known.
    #[default]
    #[serde(other)]
    Unknown,
}

/// The Proxmox VE node (PVE `GET /nodes/{node}/status` and `GET /version`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    /// The node name as Proxmox knows it (e.g. `pve`).
    pub node: String,
    /// The Proxmox VE release (`GET /version` `version`, e.g. `9.0.3`).
    pub pve_version: String,
    /// The running kernel (node status `kversion`, or its release part).
    pub kernel: String,
    /// Seconds since the node booted.
    pub uptime_seconds: u64,
    /// CPU usage as a fraction of all cores, `0.0..=1.0` (PVE's `cpu`).
    pub cpu_usage: f64,
    /// Logical CPUs of the node.
    pub cpu_count: u32,
    /// Load averages over 1, 5 and 15 minutes, in that order.
    pub load_average: [f64; 3],
    /// Physical memory in bytes.
    pub memory_total_bytes: u64,
    /// Memory in use in bytes.
    pub memory_used_bytes: u64,
    /// Size of the root filesystem in bytes.
    pub rootfs_total_bytes: u64,
    /// Bytes used on the root filesystem.
    pub rootfs_used_bytes: u64,
}

/// One LXC guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestReport {
    /// The Proxmox guest id (100..=999999999).
    pub vmid: u32,
    /// The guest's hostname (PVE `name`); empty when Proxmox reports none.
    pub name: String,
    /// The run state.
    pub status: GuestStatus,
    /// Resources from the guest's config. Omitted (the key is absent, never `null`) when the
    /// agent could not read the config this time: "unknown", not "none".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<GuestSpec>,
    /// The guest's description (PVE `description`, without the trailing newline PVE appends).
    /// Omitted when the guest has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A guest's run state. Read leniently: any other value reads as `unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestStatus {
    /// Running.
    Running,
    /// Stopped.
    Stopped,
    /// Not known (Proxmox said something else, or the status could not be read).
    #[serde(other)]
    Unknown,
}

/// A guest's resources, in bytes where the unit is not a count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestSpec {
    /// CPU cores the guest may use. PVE leaves `cores` unset for "no limit"; the agent then
    /// reports the host's `cpu_count`.
    pub cores: u32,
    /// Memory limit in bytes (PVE `memory`, MiB, times 1 MiB).
    pub memory_bytes: u64,
    /// Swap limit in bytes (PVE `swap`, MiB, times 1 MiB).
    pub swap_bytes: u64,
    /// Size of the root disk in bytes (the `size=` of PVE `rootfs`).
    pub disk_bytes: u64,
}

/// State of a host service (`systemctl is-active`). Read leniently: any other value reads as
/// `unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// The service runs.
    Active,
    /// The service is installed but does not run (or is not installed).
    Inactive,
    /// The agent could not tell (the probe failed).
    #[serde(other)]
    Unknown,
}

/// One storage of the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageTarget {
    /// The storage id (PVE `storage`, e.g. `local-lvm`).
    pub id: String,
    /// The storage type (PVE `type`: `dir`, `lvmthin`, `zfspool`, `pbs`, `nfs`, …).
    #[serde(rename = "type")]
    pub storage_type: String,
    /// The content kinds it holds (PVE `content`, split: `images`, `rootdir`, `backup`, …).
    pub content: Vec<String>,
    /// Capacity in bytes (0 when inactive).
    pub total_bytes: u64,
    /// Bytes used.
    pub used_bytes: u64,
    /// Bytes available.
    pub avail_bytes: u64,
    /// Whether the storage is active (mounted, reachable) on this node.
    pub active: bool,
}

/// One vzdump backup archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupEntry {
    /// The volume id (`storage:backup/vzdump-lxc-105-2026_11_23-10_00_00.tar.zst`).
    pub volid: String,
    /// The guest it backs up.
    pub vmid: u32,
    /// Creation time, Unix seconds (PVE `ctime`).
    pub ctime: u64,
    /// Archive size in bytes.
    pub size_bytes: u64,
    /// Archive format (PVE `format`, e.g. `tar.zst`).
    pub format: String,
    /// Whether the backup is protected from pruning and deletion.
    pub protected: bool,
    /// The backup's notes; omitted when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// The outcome of a test restore of one backup: the backup was restored into a scratch guest
/// (no network), started, checked running, stopped and destroyed. The report carries the latest
/// result per source guest (bounded; see the agent's `restore_tests` config).
///
/// The first five fields are the original contract; the rest were added (issue 16) with
/// defaults, so a report from an older agent still reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreTest {
    /// The backup that was restored (a [`BackupEntry::volid`]).
    pub volid: String,
    /// The guest the backup belongs to.
    pub vmid: u32,
    /// When the test finished (or was skipped).
    pub tested_at: Timestamp,
    /// Whether the restore and its checks succeeded (`outcome` is `ok`).
    pub ok: bool,
    /// A one-line human summary (the failing step, or what was checked).
    pub detail: String,
    /// `ok`, `restore_failed`, `boot_failed`, `cleanup_failed`, `interrupted` or `skipped`
    /// (open set: read as text). Empty from an older agent.
    #[serde(default)]
    pub outcome: String,
    /// A stable code: for a failure the step that failed (`restore`, `isolate`, `start`,
    /// `boot_timeout`, `destroy`), for `skipped` why (`low_space`, `no_free_vmid`), for
    /// `interrupted` what was found (`scratch_destroyed`, `scratch_left`, `scratch_absent`); `null`
    /// for `ok`.
    #[serde(default)]
    pub reason: Option<String>,
    /// The failing step's error line (a PVE task's `TASK ERROR` text, a timeout); `null` when
    /// nothing failed.
    #[serde(default)]
    pub error: Option<String>,
    /// The backup's creation time, Unix seconds (its [`BackupEntry::ctime`]).
    #[serde(default)]
    pub backup_ctime: u64,
    /// The scratch guest the backup was restored into; `null` when none was created.
    #[serde(default)]
    pub scratch_vmid: Option<u32>,
    /// When the test started; `null` from an older agent.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// Whole seconds from start to finish.
    #[serde(default)]
    pub duration_seconds: u64,
}

/// Reserved: the agent sends `[]` today. One backup snapshot on a Proxmox Backup Server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PbsSnapshot {
    /// The volume id as PVE lists it (`pbs-store:backup/ct/105/2026-11-23T10:00:00Z`).
    pub volid: String,
    /// The guest it backs up.
    pub vmid: u32,
    /// The snapshot's backup time, Unix seconds.
    pub backup_time: u64,
    /// Snapshot size in bytes.
    pub size_bytes: u64,
    /// Whether PBS's last verification of the snapshot passed.
    pub verified: bool,
}

/// One decision of the host's reversibility gate, or the outcome of a signed op it allowed.
/// The report carries the latest entries (`audit_tail`, oldest first, bounded); the hub matches
/// signed-op entries to its ops by `nonce`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When the decision was taken.
    pub at: Timestamp,
    /// The action decided on: a signed-op wire name (`destroy_guest`, `rollback`,
    /// `delete_snapshot`, `restore_over`, `rotate_signers`) or a benign action (`start`, …).
    pub action: String,
    /// The guest concerned; `null` for a host-level action.
    pub vmid: Option<u32>,
    /// `benign` or `destructive` (the classifier's verdict).
    pub class: String,
    /// `allowed`, `refused`, `pending_signature`, `executed`, `failed` or `outcome_unknown`
    /// (open set; read as text).
    pub decision: String,
    /// Why, as a stable code (`pending_signature`, `no_signers`, `role_denied`,
    /// `binding_mismatch`, `replay`, `already_applied`, `expired`, `not_yet_valid`, `target`,
    /// `unknown_signer`, `bad_signature`, `namespace`, `malformed`, `agent_created`, …);
    /// `null` for a plain allow.
    pub reason: Option<String>,
    /// Human-readable detail (the typed error's message); `null` when there is none. Never a
    /// secret: signatures, keys and blobs are public.
    pub detail: Option<String>,
    /// The pinned signer's key id when the action was signed; `null` otherwise.
    pub key_id: Option<String>,
    /// The signed op's nonce when there was one; `null` otherwise.
    pub nonce: Option<String>,
}

/// `null` reads like an absent field: the default (empty collections).
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> HostReport {
        HostReport::new(
            "pve-01",
            "0.1.0",
            Timestamp::from_unix_seconds(1_795_428_000),
            HostInfo {
                node: "pve".into(),
                pve_version: "9.0.3".into(),
                kernel: "6.14.8-2-pve".into(),
                uptime_seconds: 1,
                cpu_usage: 0.0,
                cpu_count: 1,
                load_average: [0.0; 3],
                memory_total_bytes: 1,
                memory_used_bytes: 0,
                rootfs_total_bytes: 1,
                rootfs_used_bytes: 0,
            },
        )
    }

    #[test]
    fn empty_collections_serialize_as_arrays() {
        let v = serde_json::to_value(minimal()).unwrap();
        for key in [
            "guests",
            "storage_targets",
            "backups",
            "restore_tests",
            "pbs_snapshots",
            "audit_tail",
        ] {
            assert_eq!(v[key], serde_json::json!([]), "{key}");
        }
        assert_eq!(v["schema_version"], SCHEMA_VERSION);
        assert_eq!(v["cloudflared"], "unknown");
        assert_eq!(v["collected_at"], "2026-11-23T10:00:00Z");
    }

    #[test]
    fn absent_or_null_collections_read_as_empty() {
        let mut v = serde_json::to_value(minimal()).unwrap();
        let obj = v.as_object_mut().unwrap();
        obj.remove("guests");
        obj.remove("backups");
        obj.insert("storage_targets".into(), serde_json::Value::Null);
        obj.insert("audit_tail".into(), serde_json::Value::Null);
        obj.insert("from_a_newer_agent".into(), serde_json::json!({"x": 1}));
        let back: HostReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, minimal());
    }

    #[test]
    fn unknown_spec_and_description_are_omitted_not_null() {
        let guest = GuestReport {
            vmid: 100,
            name: "web".into(),
            status: GuestStatus::Running,
            spec: None,
            description: None,
        };
        let v = serde_json::to_value(&guest).unwrap();
        let obj = v.as_object().unwrap();
        assert!(!obj.contains_key("spec"));
        assert!(!obj.contains_key("description"));
        assert_eq!(v["status"], "running");
        let back: GuestReport = serde_json::from_value(v).unwrap();
        assert_eq!(back, guest);
    }

    #[test]
    fn enums_are_lowercase_and_read_unknown_values_as_unknown() {
        assert_eq!(
            serde_json::to_value(ServiceState::Inactive).unwrap(),
            "inactive"
        );
        assert_eq!(
            serde_json::to_value(GuestStatus::Stopped).unwrap(),
            "stopped"
        );
        let s: GuestStatus = serde_json::from_str("\"paused\"").unwrap();
        assert_eq!(s, GuestStatus::Unknown);
        let s: ServiceState = serde_json::from_str("\"failed\"").unwrap();
        assert_eq!(s, ServiceState::Unknown);
    }

    #[test]
    fn storage_type_is_named_type_on_the_wire() {
        let t = StorageTarget {
            id: "local".into(),
            storage_type: "dir".into(),
            content: vec!["backup".into()],
            total_bytes: 3,
            used_bytes: 1,
            avail_bytes: 2,
            active: true,
        };
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["type"], "dir");
        assert!(v.get("storage_type").is_none());
    }

    #[test]
    fn a_bad_timestamp_is_refused_on_read() {
        let mut v = serde_json::to_value(minimal()).unwrap();
        v["collected_at"] = "2026-11-23T10:00:00+01:00".into();
        let err = serde_json::from_value::<HostReport>(v).unwrap_err();
        assert!(err.to_string().contains("the offset must be Z"), "{err}");
    }
}
