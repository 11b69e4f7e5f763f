//! Typed PVE responses, tolerant of PVE's quirks: numbers as strings, 0/1 booleans, keys that
//! are only present when set (all such keys are `Option`, never defaulted to a fake value).
//!
//! Units follow PVE and are named in the docs: LXC config `memory`/`swap` are MiB, status and
//! list `maxmem`/`maxswap`/`mem` are bytes.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::lenient;
use felhom_http::{Fingerprint, FingerprintError};

/// `GET /version`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Version {
    /// Full pve-manager version, e.g. `8.2.4` (older: `7.2-3`).
    pub version: String,
    /// Point release, e.g. `8.2`.
    #[serde(default)]
    pub release: Option<String>,
    /// Short git revision.
    #[serde(default)]
    pub repoid: Option<String>,
    /// Default console viewer, when set in datacenter.cfg.
    #[serde(default)]
    pub console: Option<String>,
}

/// A state string PVE sends: known values typed, anything else kept verbatim.
macro_rules! state_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $variant,)+
            /// A value this client does not know, kept verbatim.
            Unknown(String),
        }

        impl $name {
            /// The string PVE uses.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Unknown(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($text => $name::$variant,)+
                    other => $name::Unknown(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok($name::from(String::deserialize(d)?.as_str()))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::Unknown(String::new())
            }
        }
    };
}

state_enum! {
    /// A cluster node's state in `GET /nodes`.
    NodeState { Online = "online", Offline = "offline" }
}

state_enum! {
    /// A guest's run state.
    GuestStatus {
        /// Running.
        Running = "running",
        /// Stopped.
        Stopped = "stopped",
    }
}

state_enum! {
    /// A task's state in `GET .../tasks/{upid}/status`.
    TaskState {
        /// Still running: no exit status yet.
        Running = "running",
        /// Finished: see `exitstatus`.
        Stopped = "stopped",
    }
}

/// One item of `GET /nodes`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct NodeInfo {
    /// Node name.
    pub node: String,
    /// Online state.
    #[serde(default)]
    pub status: NodeState,
    /// SHA-256 fingerprint of the node's certificate, `AB:CD:…` (see [`NodeInfo::fingerprint`]).
    #[serde(default)]
    pub ssl_fingerprint: Option<String>,
    /// Subscription level (`""` means none).
    #[serde(default)]
    pub level: Option<String>,
    /// Seconds since boot.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub uptime: Option<u64>,
    /// CPU utilisation, fraction of `maxcpu`.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub cpu: Option<f64>,
    /// Logical CPUs.
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    pub maxcpu: Option<u32>,
    /// Used memory, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub mem: Option<u64>,
    /// Total memory, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub maxmem: Option<u64>,
    /// Used root disk, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub disk: Option<u64>,
    /// Root disk size, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub maxdisk: Option<u64>,
}

impl NodeInfo {
    /// The parsed certificate fingerprint, if the node reported one.
    pub fn fingerprint(&self) -> Option<Result<Fingerprint, FingerprintError>> {
        self.ssl_fingerprint.as_deref().map(str::parse)
    }
}

/// `cpuinfo` of `GET /nodes/{node}/status`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct CpuInfo {
    /// CPU model name.
    #[serde(default)]
    pub model: Option<String>,
    /// Sockets.
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    pub sockets: Option<u32>,
    /// Physical cores.
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    pub cores: Option<u32>,
    /// Logical CPUs (threads).
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    pub cpus: Option<u32>,
    /// Clock in MHz (sent as a string, e.g. `"2895.985"`).
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub mhz: Option<f64>,
    /// Hardware virtualisation available (sent as `"1"`).
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub hvm: Option<bool>,
    /// Kernel clock ticks per second.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub user_hz: Option<u64>,
    /// CPU flags, space separated.
    #[serde(default)]
    pub flags: Option<String>,
}

/// `memory` of `GET /nodes/{node}/status`, bytes. `used = total - MemAvailable`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct MemoryInfo {
    /// Total bytes.
    #[serde(deserialize_with = "lenient::u64")]
    pub total: u64,
    /// Used bytes.
    #[serde(deserialize_with = "lenient::u64")]
    pub used: u64,
    /// Free bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub free: Option<u64>,
    /// Available bytes (PVE 9 and later).
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub available: Option<u64>,
}

/// A filesystem's usage (`rootfs`) or swap, bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct SpaceUsage {
    /// Total bytes.
    #[serde(deserialize_with = "lenient::u64")]
    pub total: u64,
    /// Used bytes.
    #[serde(deserialize_with = "lenient::u64")]
    pub used: u64,
    /// Bytes available to unprivileged users (rootfs only).
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub avail: Option<u64>,
    /// Free bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub free: Option<u64>,
}

/// `current-kernel` of `GET /nodes/{node}/status` (PVE 8 and later).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct KernelInfo {
    /// e.g. `Linux`.
    #[serde(default)]
    pub sysname: Option<String>,
    /// e.g. `6.8.12-15-pve`.
    #[serde(default)]
    pub release: Option<String>,
    /// Build string.
    #[serde(default)]
    pub version: Option<String>,
    /// e.g. `x86_64`.
    #[serde(default)]
    pub machine: Option<String>,
}

/// `boot-info` of `GET /nodes/{node}/status` (PVE 8 and later).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct BootInfo {
    /// `efi` or `legacy-bios`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Secure boot active (EFI only).
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub secureboot: Option<bool>,
}

/// `GET /nodes/{node}/status`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct NodeStatus {
    /// CPU utilisation, fraction.
    #[serde(deserialize_with = "lenient::f64")]
    pub cpu: f64,
    /// 1, 5 and 15 minute load averages (PVE sends them as strings).
    #[serde(default, deserialize_with = "lenient::vec_f64")]
    pub loadavg: Vec<f64>,
    /// Seconds since boot.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub uptime: Option<u64>,
    /// I/O wait, fraction.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub wait: Option<f64>,
    /// `uname`-style kernel string.
    #[serde(default)]
    pub kversion: Option<String>,
    /// e.g. `pve-manager/8.4.14/b502d23c55afcba1`.
    pub pveversion: String,
    /// CPU description.
    pub cpuinfo: CpuInfo,
    /// Memory, bytes.
    pub memory: MemoryInfo,
    /// Swap, bytes.
    #[serde(default)]
    pub swap: Option<SpaceUsage>,
    /// Root filesystem, bytes.
    pub rootfs: SpaceUsage,
    /// Running kernel (PVE 8+).
    #[serde(default, rename = "current-kernel")]
    pub current_kernel: Option<KernelInfo>,
    /// Boot mode (PVE 8+).
    #[serde(default, rename = "boot-info")]
    pub boot_info: Option<BootInfo>,
}

/// One item of `GET /nodes/{node}/lxc`, or `GET .../lxc/{vmid}/status/current`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct GuestSummary {
    /// Guest id (a string in the list before pve-container 5.0.10).
    #[serde(deserialize_with = "lenient::u32")]
    pub vmid: u32,
    /// Hostname, or `CT<vmid>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Run state.
    #[serde(default)]
    pub status: GuestStatus,
    /// Usable CPUs: `cores`, else `cpulimit` (may be fractional), else the host's count.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub cpus: Option<f64>,
    /// CPU utilisation, fraction of `cpus`.
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub cpu: Option<f64>,
    /// Memory limit, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub maxmem: Option<u64>,
    /// Memory in use, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub mem: Option<u64>,
    /// Swap limit, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub maxswap: Option<u64>,
    /// Swap in use, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub swap: Option<u64>,
    /// Root disk size, bytes (the configured size when stopped, df total when running).
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub maxdisk: Option<u64>,
    /// Root disk used, bytes (0 when stopped).
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub disk: Option<u64>,
    /// Seconds since start.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub uptime: Option<u64>,
    /// Init process id when running.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub pid: Option<u64>,
    /// Config lock (`backup`, `snapshot`, ...), only when set.
    #[serde(default)]
    pub lock: Option<String>,
    /// A template (the key is absent otherwise).
    #[serde(default, deserialize_with = "lenient::flag")]
    pub template: bool,
    /// Tags (PVE sends `"a;b"`).
    #[serde(default, deserialize_with = "lenient::list")]
    pub tags: Vec<String>,
    /// Guest type (`lxc`), not in the schema but sent.
    #[serde(default, rename = "type")]
    pub guest_type: Option<String>,
}

/// `GET /nodes/{node}/lxc/{vmid}/config`. Keys are present only when set in the config file;
/// everything not typed here is kept in `extra` as PVE sent it.
///
/// Decoded by hand (see the `Deserialize` impl below) rather than with `#[serde(flatten)]`,
/// which buffers the whole object into an intermediate tree first: that buffering was about a
/// fifth of the agent's work per config read at a heartbeat's full resync.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LxcConfig {
    /// Cores assigned.
    pub cores: Option<u32>,
    /// Memory limit in **MiB**.
    pub memory: Option<u64>,
    /// Swap limit in **MiB**.
    pub swap: Option<u64>,
    /// Hostname.
    pub hostname: Option<String>,
    /// Description as PVE returns it: every line gets a trailing `\n` on read.
    pub description: Option<String>,
    /// Start at boot.
    pub onboot: Option<bool>,
    /// Root volume property string, e.g. `local-lvm:vm-100-disk-0,size=8G`.
    pub rootfs: Option<String>,
    /// Config lock, only when set.
    pub lock: Option<String>,
    /// SHA-1 of the raw config file; pass it back to `set_config` to refuse lost updates.
    pub digest: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Every other key (`net0`, `features`, `cpulimit`, `lxc`, `mp0`, ...), verbatim.
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// [`LxcConfig`]'s typed keys, each decoded as its field says (lenient where PVE is).
mod lxc_config_de {
    use super::*;
    use serde::de::{self, DeserializeSeed, MapAccess, Visitor};

    #[derive(Deserialize)]
    struct OptU32(#[serde(deserialize_with = "lenient::opt_u32")] Option<u32>);
    #[derive(Deserialize)]
    struct OptU64(#[serde(deserialize_with = "lenient::opt_u64")] Option<u64>);
    #[derive(Deserialize)]
    struct OptBool(#[serde(deserialize_with = "lenient::opt_bool")] Option<bool>);
    #[derive(Deserialize)]
    struct List(#[serde(deserialize_with = "lenient::list")] Vec<String>);

    const TYPED: [&str; 10] = [
        "cores",
        "memory",
        "swap",
        "hostname",
        "description",
        "onboot",
        "rootfs",
        "lock",
        "digest",
        "tags",
    ];

    /// A key: one of [`TYPED`] by index (no allocation), or another key by name.
    enum Key {
        Typed(usize),
        Other(String),
    }

    struct KeySeed;

    impl<'de> DeserializeSeed<'de> for KeySeed {
        type Value = Key;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl Visitor<'_> for KeySeed {
        type Value = Key;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a config key")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
            Ok(match TYPED.iter().position(|k| *k == v) {
                Some(i) => Key::Typed(i),
                None => Key::Other(v.to_owned()),
            })
        }
    }

    struct ConfigVisitor;

    impl<'de> Visitor<'de> for ConfigVisitor {
        type Value = LxcConfig;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an LXC config object")
        }
        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<LxcConfig, M::Error> {
            let mut c = LxcConfig::default();
            let mut seen = [false; TYPED.len()];
            while let Some(key) = map.next_key_seed(KeySeed)? {
                let i = match key {
                    Key::Other(name) => {
                        let value = map.next_value()?;
                        c.extra.insert(name, value);
                        continue;
                    }
                    Key::Typed(i) => i,
                };
                if std::mem::replace(&mut seen[i], true) {
                    return Err(de::Error::duplicate_field(TYPED[i]));
                }
                match TYPED[i] {
                    "cores" => c.cores = map.next_value::<OptU32>()?.0,
                    "memory" => c.memory = map.next_value::<OptU64>()?.0,
                    "swap" => c.swap = map.next_value::<OptU64>()?.0,
                    "hostname" => c.hostname = map.next_value()?,
                    "description" => c.description = map.next_value()?,
                    "onboot" => c.onboot = map.next_value::<OptBool>()?.0,
                    "rootfs" => c.rootfs = map.next_value()?,
                    "lock" => c.lock = map.next_value()?,
                    "digest" => c.digest = map.next_value()?,
                    _ => c.tags = map.next_value::<List>()?.0,
                }
            }
            Ok(c)
        }
    }

    impl<'de> Deserialize<'de> for LxcConfig {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_map(ConfigVisitor)
        }
    }
}

impl LxcConfig {
    /// The root volume size in bytes, from the `size=` option of `rootfs`.
    pub fn rootfs_size_bytes(&self) -> Option<u64> {
        let rootfs = self.rootfs.as_deref()?;
        rootfs
            .split(',')
            .find_map(|opt| opt.strip_prefix("size="))
            .and_then(parse_pve_size)
    }
}

/// Parses a PVE disk size (`8G`, `512M`, `0.5T`, `1073741824`): binary units, bare = bytes.
pub fn parse_pve_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        'T' | 't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult);
    }
    let f: f64 = num.parse().ok()?;
    let bytes = (f * mult as f64).round();
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// A storage, from `GET /storage` (config) or `GET /nodes/{node}/storage` (status): the
/// status-only fields are `None` in the config listing and vice versa.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct StorageInfo {
    /// Storage id.
    pub storage: String,
    /// Plugin type (`dir`, `lvmthin`, `zfspool`, `nfs`, `pbs`, ...).
    #[serde(default, rename = "type")]
    pub storage_type: Option<String>,
    /// Allowed content types (`backup`, `rootdir`, `images`, `vztmpl`, `iso`, ...).
    #[serde(default, deserialize_with = "lenient::list")]
    pub content: Vec<String>,
    /// Shared between nodes.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub shared: Option<bool>,
    /// Accessible now (status only).
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub active: Option<bool>,
    /// Enabled in the config (status only).
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub enabled: Option<bool>,
    /// Disabled in the config (config only; absent when enabled).
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub disable: Option<bool>,
    /// Total bytes (status only).
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub total: Option<u64>,
    /// Used bytes (status only).
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub used: Option<u64>,
    /// Available bytes (status only).
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub avail: Option<u64>,
    /// used / total (status only).
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub used_fraction: Option<f64>,
    /// Filesystem path (dir-like storages, config only).
    #[serde(default)]
    pub path: Option<String>,
    /// Nodes the storage is restricted to; empty means all (config only).
    #[serde(default, deserialize_with = "lenient::list")]
    pub nodes: Vec<String>,
    /// Digest of storage.cfg (config only).
    #[serde(default)]
    pub digest: Option<String>,
    /// Plugin-specific keys (`datastore`, `server`, `prune-backups`, ...), verbatim.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Last verification of a PBS backup.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Verification {
    /// `ok` or `failed`.
    #[serde(default)]
    pub state: Option<String>,
    /// The verify task (a PBS UPID, not parsed as a PVE one).
    #[serde(default)]
    pub upid: Option<String>,
}

/// One item of `GET /nodes/{node}/storage/{storage}/content`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct StorageContent {
    /// Volume id, e.g. `local:backup/vzdump-lxc-100-2025_01_02-03_04_05.tar.zst`.
    pub volid: String,
    /// `backup`, `vztmpl`, `iso`, `images`, `rootdir`, `snippets`, `import`.
    #[serde(default)]
    pub content: Option<String>,
    /// Format (`tar.zst`, `tzst`, `raw`, `pbs-ct`, ...).
    #[serde(default)]
    pub format: Option<String>,
    /// Size, bytes.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub size: Option<u64>,
    /// Used bytes (rarely meaningful).
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub used: Option<u64>,
    /// Creation time, seconds since the epoch (for backups parsed from the file name, in the
    /// server's local time).
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub ctime: Option<u64>,
    /// Owning guest.
    #[serde(default, deserialize_with = "lenient::opt_u32")]
    pub vmid: Option<u32>,
    /// Backup guest type: `lxc`, `qemu`, ...
    #[serde(default)]
    pub subtype: Option<String>,
    /// First line of the notes.
    #[serde(default)]
    pub notes: Option<String>,
    /// Protected from pruning and deletion (the key is absent otherwise).
    #[serde(default, deserialize_with = "lenient::flag")]
    pub protected: bool,
    /// PBS: key fingerprint or `"1"` when encrypted.
    #[serde(default)]
    pub encrypted: Option<String>,
    /// PBS: last verification.
    #[serde(default)]
    pub verification: Option<Verification>,
    /// Parent volume of a linked clone.
    #[serde(default)]
    pub parent: Option<String>,
}

/// How a finished task ended, classified as PVE's `status_is_error` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskExit {
    /// `OK`.
    Ok,
    /// `WARNINGS: n`: success, with warnings in the log.
    Warnings(u32),
    /// Anything else: the error text.
    Failed(String),
}

impl TaskExit {
    /// Classifies an `exitstatus`.
    pub fn parse(exitstatus: &str) -> Self {
        if exitstatus == "OK" {
            return TaskExit::Ok;
        }
        if let Some(n) = exitstatus.strip_prefix("WARNINGS: ") {
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(n) = n.parse() {
                    return TaskExit::Warnings(n);
                }
            }
        }
        TaskExit::Failed(exitstatus.to_owned())
    }

    /// `Ok` or `Warnings`.
    pub fn is_success(&self) -> bool {
        !matches!(self, TaskExit::Failed(_))
    }
}

/// `GET /nodes/{node}/tasks/{upid}/status`. `endtime` is not part of this answer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct TaskStatus {
    /// `running` or `stopped`.
    pub status: TaskState,
    /// Present only once stopped: `OK`, `WARNINGS: n`, or the error text.
    #[serde(default)]
    pub exitstatus: Option<String>,
    /// The UPID as PVE echoes it.
    #[serde(default)]
    pub upid: Option<String>,
    /// Node.
    #[serde(default)]
    pub node: Option<String>,
    /// Worker pid.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub pid: Option<u64>,
    /// Worker start in clock ticks.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub pstart: Option<u64>,
    /// Start, seconds since the epoch.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub starttime: Option<u64>,
    /// Worker type.
    #[serde(default, rename = "type")]
    pub worker_type: Option<String>,
    /// Worker id (a string by design, may be empty).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub id: Option<String>,
    /// User (without the token part for token tasks).
    #[serde(default)]
    pub user: Option<String>,
    /// Token name, for tasks a token started (not in the schema).
    #[serde(default)]
    pub tokenid: Option<String>,
}

impl TaskStatus {
    /// Still running (or in a state this client does not know, which is not "finished").
    pub fn is_running(&self) -> bool {
        self.status != TaskState::Stopped
    }

    /// How it ended, once stopped. A stopped task without an exit status counts as failed
    /// with PVE's own fallback text.
    pub fn exit(&self) -> Option<TaskExit> {
        (self.status == TaskState::Stopped)
            .then(|| TaskExit::parse(self.exitstatus.as_deref().unwrap_or("unexpected status")))
    }
}

/// One item of `GET /nodes/{node}/tasks`. Unlike [`TaskStatus`], `status` here is the exit
/// text (`OK`, `WARNINGS: n`, the error) of a finished task, or `RUNNING` for an active one
/// (listed with [`TaskSource::Active`] or [`TaskSource::All`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct TaskListItem {
    /// The task's UPID.
    pub upid: String,
    /// Node.
    #[serde(default)]
    pub node: Option<String>,
    /// Worker pid.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub pid: Option<u64>,
    /// Worker start in clock ticks.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub pstart: Option<u64>,
    /// Start, seconds since the epoch.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub starttime: Option<u64>,
    /// End, seconds since the epoch (finished tasks only).
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub endtime: Option<u64>,
    /// Worker type (`vzstart`, `vzdestroy`, ...).
    #[serde(default, rename = "type")]
    pub worker_type: Option<String>,
    /// Worker id (usually the vmid; a string by design, may be empty).
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub id: Option<String>,
    /// User (without the token part for token tasks).
    #[serde(default)]
    pub user: Option<String>,
    /// Token name, for tasks a token started (not in the schema).
    #[serde(default)]
    pub tokenid: Option<String>,
    /// Exit text, or `RUNNING`.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub status: Option<String>,
}

impl TaskListItem {
    /// Listed as active (`RUNNING`).
    pub fn is_running(&self) -> bool {
        self.status.as_deref() == Some("RUNNING")
    }

    /// How it ended, unless it is running. A finished task without a status counts as failed
    /// with PVE's own fallback text.
    pub fn exit(&self) -> Option<TaskExit> {
        (!self.is_running())
            .then(|| TaskExit::parse(self.status.as_deref().unwrap_or("unexpected status")))
    }
}

/// Which tasks `GET /nodes/{node}/tasks` lists (`source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TaskSource {
    /// Finished tasks only (PVE's default).
    #[default]
    Archive,
    /// Running tasks only.
    Active,
    /// Both.
    All,
}

impl TaskSource {
    /// PVE's parameter value.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskSource::Archive => "archive",
            TaskSource::Active => "active",
            TaskSource::All => "all",
        }
    }
}

/// The filters of `GET /nodes/{node}/tasks` the agent uses; `None` leaves one out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskFilter {
    /// Only tasks of this guest.
    pub vmid: Option<u32>,
    /// Only tasks of this worker type (`vzstart`, ...).
    pub typefilter: Option<String>,
    /// Only tasks started at or after this unix time.
    pub since: Option<u64>,
    /// Archived, active or all tasks.
    pub source: TaskSource,
    /// At most this many (PVE's default: 50; `0`: no limit).
    pub limit: Option<u64>,
}

/// A page of the task list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskList {
    /// The tasks returned, newest first as PVE sorts them.
    pub tasks: Vec<TaskListItem>,
    /// How many tasks matched the filters, when PVE says.
    pub total: Option<u64>,
}

/// One task log line. `n` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct TaskLogLine {
    /// Line number, from 1.
    #[serde(deserialize_with = "lenient::u64")]
    pub n: u64,
    /// Text.
    #[serde(default)]
    pub t: String,
}

/// A page of a task log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskLog {
    /// The lines returned.
    pub lines: Vec<TaskLogLine>,
    /// Total lines in the log, when PVE says.
    pub total: Option<u64>,
}

/// `GET /access/permissions`: ACL path → privilege → propagate flag. A privilege listed at a
/// path is granted there; the flag says whether it also applies below.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Permissions(pub BTreeMap<String, BTreeMap<String, bool>>);

impl<'de> Deserialize<'de> for Permissions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Flag(#[serde(deserialize_with = "lenient::bool")] bool);
        let raw = BTreeMap::<String, BTreeMap<String, Flag>>::deserialize(d)?;
        Ok(Permissions(
            raw.into_iter()
                .map(|(path, privs)| (path, privs.into_iter().map(|(p, f)| (p, f.0)).collect()))
                .collect(),
        ))
    }
}

impl Permissions {
    /// The privileges listed at exactly this path.
    pub fn at(&self, path: &str) -> Option<&BTreeMap<String, bool>> {
        self.0.get(path)
    }

    /// Whether `privilege` holds on `path`: decided by the path's own entry if listed (an ACL
    /// there overrides what is inherited), else by the nearest listed ancestor, where the
    /// privilege must propagate.
    pub fn allows(&self, path: &str, privilege: &str) -> bool {
        let path = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        if let Some(privs) = self.0.get(path) {
            return privs.contains_key(privilege);
        }
        let mut cur = path;
        while cur != "/" && !cur.is_empty() {
            cur = match cur.rfind('/') {
                Some(0) | None => "/",
                Some(i) => &cur[..i],
            };
            if let Some(privs) = self.0.get(cur) {
                return privs.get(privilege).copied().unwrap_or(false);
            }
        }
        false
    }
}

/// One item of `GET /nodes/{node}/lxc/{vmid}/snapshot`; includes the synthetic `current`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct Snapshot {
    /// Snapshot name; `current` is the live state.
    pub name: String,
    /// Description (PVE appends `\n` to each line; `current` has `You are here!`).
    #[serde(default)]
    pub description: Option<String>,
    /// Parent snapshot.
    #[serde(default)]
    pub parent: Option<String>,
    /// Creation time, seconds since the epoch.
    #[serde(default, deserialize_with = "lenient::opt_u64")]
    pub snaptime: Option<u64>,
    /// For `current`: whether the guest runs.
    #[serde(default, deserialize_with = "lenient::opt_bool")]
    pub running: Option<bool>,
}

impl Snapshot {
    /// The synthetic entry for the live state, not a real snapshot.
    pub fn is_current(&self) -> bool {
        self.name == "current"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;

    /// Decodes a `testdata/pve` file's `data`.
    fn data<T: DeserializeOwned>(name: &str) -> T {
        #[derive(Deserialize)]
        struct Envelope<T> {
            data: T,
        }
        let path = format!("{}/../../testdata/pve/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str::<Envelope<T>>(&text)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .data
    }

    #[test]
    fn version() {
        let v: Version = data("version.json");
        assert_eq!(v.version, "8.2.4");
        assert_eq!(v.release.as_deref(), Some("8.2"));
        assert_eq!(v.console, None);
    }

    #[test]
    fn nodes_with_fingerprint() {
        let n: Vec<NodeInfo> = data("nodes.json");
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].node, "pve");
        assert_eq!(n[0].status, NodeState::Online);
        assert_eq!(n[0].maxcpu, Some(16));
        assert_eq!(n[0].maxmem, Some(16_718_958_592));
        assert_eq!(n[0].level.as_deref(), Some(""));
        let fp = n[0].fingerprint().unwrap().unwrap();
        assert_eq!(fp.to_string(), n[0].ssl_fingerprint.as_deref().unwrap());
    }

    #[test]
    fn node_status_8_4_with_string_numbers() {
        let s: NodeStatus = data("node-status-8.4.json");
        assert_eq!(s.loadavg, [0.16, 0.10, 0.02]);
        assert_eq!(s.cpuinfo.mhz, Some(800.0));
        assert_eq!(s.cpuinfo.hvm, Some(true));
        assert_eq!(s.cpuinfo.cpus, Some(8));
        assert_eq!(s.memory.total, 33_537_990_656);
        assert_eq!(s.memory.available, None, "8.4 has no memory.available");
        assert_eq!(s.rootfs.used, 12_836_352_000);
        assert_eq!(s.uptime, Some(23433));
        assert_eq!(s.pveversion, "pve-manager/8.4.14/b502d23c55afcba1");
        assert!(s.kversion.unwrap().starts_with("Linux 6.8.12-15-pve"));
        assert_eq!(s.boot_info.unwrap().mode.as_deref(), Some("legacy-bios"));
        assert_eq!(
            s.current_kernel.unwrap().release.as_deref(),
            Some("6.8.12-15-pve")
        );
        assert_eq!(s.swap.unwrap().total, 1_073_737_728);
    }

    #[test]
    fn node_status_9_1() {
        let s: NodeStatus = data("node-status-9.1-derived.json");
        assert_eq!(s.memory.available, Some(3_868_946_432));
        assert_eq!(s.boot_info.unwrap().secureboot, Some(false));
        assert_eq!(s.cpuinfo.mhz, Some(2895.985));
        assert_eq!(s.cpu, 0.0123);
    }

    #[test]
    fn node_status_requires_its_core_fields() {
        let err = serde_json::from_str::<NodeStatus>(r#"{"cpu":0,"loadavg":[]}"#).unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
    }

    #[test]
    fn lxc_list_with_string_vmids_and_template_flag() {
        let l: Vec<GuestSummary> = data("lxc-list-pve7.json");
        assert_eq!(l.len(), 2);
        let running = l.iter().find(|g| g.vmid == 106).unwrap();
        assert_eq!(running.status, GuestStatus::Running);
        assert_eq!(running.pid, Some(248_173));
        assert!(!running.template);
        assert!(running.tags.is_empty());
        let tmpl = l.iter().find(|g| g.vmid == 101).unwrap();
        assert_eq!(tmpl.status, GuestStatus::Stopped);
        assert!(tmpl.template);
        assert_eq!(tmpl.maxmem, Some(536_870_912));
        assert_eq!(tmpl.guest_type.as_deref(), Some("lxc"));
    }

    #[test]
    fn lxc_status_current() {
        let g: GuestSummary = data("lxc-status-current.json");
        assert_eq!(g.vmid, 101);
        assert_eq!(g.cpus, Some(2.0));
        assert_eq!(g.tags, ["tag1", "tag2"]);
        assert_eq!(g.name.as_deref(), Some("test-container"));
    }

    #[test]
    fn unknown_guest_status_is_kept() {
        let g: GuestSummary = serde_json::from_str(r#"{"vmid":100,"status":"paused"}"#).unwrap();
        assert_eq!(g.status, GuestStatus::Unknown("paused".into()));
        assert_eq!(g.status.to_string(), "paused");
        let g: GuestSummary = serde_json::from_str(r#"{"vmid":100}"#).unwrap();
        assert_eq!(g.status, GuestStatus::Unknown(String::new()));
    }

    #[test]
    fn lxc_config_typed_and_extra() {
        let c: LxcConfig = data("lxc-config.json");
        assert_eq!(c.cores, Some(2));
        assert_eq!(c.memory, Some(4096));
        assert_eq!(c.swap, Some(512));
        assert_eq!(c.onboot, Some(true));
        assert_eq!(c.hostname.as_deref(), Some("test-container"));
        assert_eq!(
            c.digest.as_deref(),
            Some("5911baea29f4c0073fb063fd9ab29e75892832bf")
        );
        assert_eq!(c.tags, ["tag1", "tag2"]);
        assert_eq!(c.description, None);
        assert_eq!(c.rootfs_size_bytes(), Some(30 << 30));
        assert_eq!(c.extra["features"], "fuse=1,mknod=1,nesting=1");
        assert_eq!(c.extra["lxc"][0][0], "lxc.cgroup2.devices.allow");
        assert!(c.extra.contains_key("net0") && c.extra.contains_key("mp0"));
        assert!(
            !c.extra.contains_key("memory"),
            "typed keys are not duplicated in extra"
        );
    }

    #[test]
    fn lxc_config_by_hand_keeps_the_typed_and_lenient_keys_apart_from_extra() {
        let c: LxcConfig = serde_json::from_str(
            r#"{"cores":"4","memory":2048.0,"swap":null,"onboot":"on","tags":"a;b",
                "net0":"name=eth0","cpulimit":"1.5","description":"x\n","lxc":[["k","v"]]}"#,
        )
        .unwrap();
        assert_eq!((c.cores, c.memory, c.swap), (Some(4), Some(2048), None));
        assert_eq!(c.onboot, Some(true));
        assert_eq!(c.tags, ["a", "b"]);
        assert_eq!(c.description.as_deref(), Some("x\n"));
        assert_eq!(
            c.extra.keys().collect::<Vec<_>>(),
            ["cpulimit", "lxc", "net0"],
            "only the untyped keys, verbatim"
        );
        assert_eq!(c.extra["lxc"][0][1], "v");
        assert_eq!(
            serde_json::from_str::<LxcConfig>("{}").unwrap(),
            LxcConfig::default()
        );
        let dup = serde_json::from_str::<LxcConfig>(r#"{"cores":1,"cores":2}"#).unwrap_err();
        assert!(dup.to_string().contains("duplicate field `cores`"), "{dup}");
        let bad = serde_json::from_str::<LxcConfig>(r#"{"cores":"many"}"#).unwrap_err();
        assert!(bad.to_string().contains("many"), "{bad}");
        assert!(serde_json::from_str::<LxcConfig>("[]").is_err());
    }

    #[test]
    fn lxc_config_quirks() {
        let c: LxcConfig = data("lxc-config-quirks-derived.json");
        assert_eq!(c.cores, Some(2));
        assert_eq!(c.memory, Some(2048));
        assert_eq!(c.swap, Some(0));
        assert_eq!(c.onboot, Some(true));
        assert_eq!(c.lock.as_deref(), Some("backup"));
        assert_eq!(
            c.description.as_deref(),
            Some("web frontend\nowned by ops\n")
        );
        assert_eq!(c.extra["cpulimit"], "1.5");
        assert_eq!(c.rootfs_size_bytes(), Some(8 << 30));
    }

    #[test]
    fn pve_sizes() {
        assert_eq!(parse_pve_size("8G"), Some(8 << 30));
        assert_eq!(parse_pve_size("512M"), Some(512 << 20));
        assert_eq!(parse_pve_size("0.5T"), Some(1 << 39));
        assert_eq!(parse_pve_size("4096"), Some(4096));
        assert_eq!(parse_pve_size("1K"), Some(1024));
        for bad in ["", "G", "-1G", "1X", "1.2.3G", "99999999999T"] {
            assert_eq!(parse_pve_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn storage_content_backups_and_templates() {
        let c: Vec<StorageContent> = data("storage-content.json");
        assert_eq!(c[0].vmid, Some(100));
        assert!(c[0].protected);
        assert_eq!(c[0].notes.as_deref(), Some("nightly"));
        assert_eq!(c[0].subtype.as_deref(), Some("lxc"));
        assert_eq!(c[0].ctime, Some(1_735_787_045));
        assert_eq!(c[1].content.as_deref(), Some("vztmpl"));
        assert!(!c[1].protected);
        assert_eq!(c[1].vmid, None);
    }

    #[test]
    fn storage_content_pbs() {
        let c: Vec<StorageContent> = data("storage-content-pbs-derived.json");
        assert_eq!(c[0].size, Some(2_147_483_648));
        assert_eq!(c[0].vmid, Some(100));
        assert_eq!(c[0].format.as_deref(), Some("pbs-ct"));
        assert_eq!(
            c[0].verification.as_ref().unwrap().state.as_deref(),
            Some("ok")
        );
        assert_eq!(c[0].encrypted.as_deref(), Some("1"));
    }

    #[test]
    fn node_storage_with_quirky_numbers() {
        let s: Vec<StorageInfo> = data("storage-node-derived.json");
        assert_eq!(s[0].content, ["backup", "iso", "vztmpl"]);
        assert_eq!(s[0].active, Some(true));
        assert_eq!(s[0].shared, Some(false));
        assert_eq!(
            s[1].total,
            Some(1_200_000_000_000_000),
            "scientific notation"
        );
        assert_eq!(s[1].used, Some(0), "numeric string");
        assert_eq!(s[2].enabled, Some(false));
        assert_eq!(s[2].total, None, "inactive storage has no usage");
        assert_eq!(s[1].storage_type.as_deref(), Some("lvmthin"));
    }

    #[test]
    fn cluster_storage_config() {
        let s: Vec<StorageInfo> = data("storage-cluster-derived.json");
        assert_eq!(s[0].path.as_deref(), Some("/var/lib/vz"));
        assert_eq!(s[0].extra["prune-backups"], "keep-all=1");
        assert!(s[0].nodes.is_empty());
        assert_eq!(s[1].nodes, ["pve"]);
        assert_eq!(s[1].extra["datastore"], "store1");
        assert_eq!(s[1].total, None);
    }

    #[test]
    fn task_status_samples() {
        let t: TaskStatus = data("task-status-warnings.json");
        assert!(!t.is_running());
        assert_eq!(t.exit(), Some(TaskExit::Warnings(1)));
        assert_eq!(t.pid, Some(29475));
        assert_eq!(t.id.as_deref(), Some("100"));
        let r: TaskStatus = data("task-status-running.json");
        assert!(r.is_running());
        assert_eq!(r.exit(), None);
        assert_eq!(r.exitstatus, None);
        let e: TaskStatus = data("task-status-token-error-derived.json");
        assert_eq!(e.tokenid.as_deref(), Some("agent"));
        assert_eq!(
            e.exit(),
            Some(TaskExit::Failed(
                "Permission check failed (/vms/100, VM.Backup)".into()
            ))
        );
    }

    #[test]
    fn task_exit_classification() {
        assert_eq!(TaskExit::parse("OK"), TaskExit::Ok);
        assert_eq!(TaskExit::parse("WARNINGS: 12"), TaskExit::Warnings(12));
        assert!(TaskExit::parse("WARNINGS: 1").is_success());
        for failed in [
            "WARNINGS:1",
            "WARNINGS: ",
            "WARNINGS: x",
            "ok",
            "unexpected status",
            "CT is locked (backup)",
        ] {
            assert_eq!(
                TaskExit::parse(failed),
                TaskExit::Failed(failed.into()),
                "{failed}"
            );
        }
        let stopped_without_exit = TaskStatus {
            status: TaskState::Stopped,
            ..Default::default()
        };
        assert_eq!(
            stopped_without_exit.exit(),
            Some(TaskExit::Failed("unexpected status".into()))
        );
        let odd = TaskStatus {
            status: TaskState::Unknown("zombie".into()),
            ..Default::default()
        };
        assert!(
            odd.is_running(),
            "an unknown state is not treated as finished"
        );
    }

    #[test]
    fn task_logs() {
        let l: Vec<TaskLogLine> = data("task-log-ok.json");
        assert_eq!(l.len(), 7);
        assert_eq!(l[0].n, 1);
        assert_eq!(l[6].t, "TASK OK");
        let w: Vec<TaskLogLine> = data("task-log-warnings.json");
        assert!(w[1].t.starts_with("WARN: "));
    }

    #[test]
    fn permissions_and_inheritance() {
        let p: Permissions = data("permissions-derived.json");
        assert!(p.allows("/nodes/pve", "Sys.Audit"));
        assert!(
            p.allows("/vms/100", "VM.Config.Options"),
            "\"1\" string flag"
        );
        assert!(
            p.allows("/vms/100", "VM.Snapshot"),
            "listed at the path itself: granted"
        );
        assert!(
            p.allows("/vms/101", "VM.PowerMgmt"),
            "inherited from /vms with propagate"
        );
        assert!(!p.allows("/vms/100", "VM.Backup"));
        assert!(!p.allows("/vms/100/", "VM.Backup"));
        assert!(
            !p.allows("/nodes/other", "Sys.Audit"),
            "/ lists Sys.Audit without propagate"
        );
        assert!(p.allows("/", "Sys.Audit"));
        assert!(!p.allows("/storage/other", "Datastore.Audit"));
        assert_eq!(p.at("/vms").unwrap().len(), 2);
    }

    #[test]
    fn snapshots() {
        let s: Vec<Snapshot> = data("snapshots-derived.json");
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].description.as_deref(), Some("felhom self-test\n"));
        assert_eq!(s[1].snaptime, Some(1_735_790_000));
        assert!(s[2].is_current());
        assert_eq!(s[2].running, Some(true));
        assert_eq!(s[2].snaptime, None);
    }
}
