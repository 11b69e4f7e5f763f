//! `SimConfig` and its parts: the host a `PveSim` starts with (node, tokens and ACLs, guests,
//! storage and volumes, task timing, quirk modes), with a ready-to-use default.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Node name of the default host.
pub const DEFAULT_NODE: &str = "pve";
/// Owning user of the default token.
pub const DEFAULT_USER: &str = "felhom@pve";
/// Full id of the default API token (`user@realm!name`).
pub const DEFAULT_TOKEN_ID: &str = "felhom@pve!agent";
/// Secret of the default API token. A test value: never a real credential.
pub const DEFAULT_TOKEN_SECRET: &str = "00000000-0000-4000-8000-000000000000";
/// `pve-manager` version the default host reports.
pub const DEFAULT_PVE_VERSION: &str = "9.1.2";
/// Fixed creation time of the default backup of guest 100 (2025-01-02 03:04:05 UTC).
pub const DEFAULT_BACKUP_CTIME: u64 = 1_735_787_045;

/// Everything the felhom agent needs (SPEC §2 privilege table). The default token holds these on
/// `/` with propagate; its owning user holds [`ADMINISTRATOR_PRIVILEGES`].
pub const AGENT_PRIVILEGES: &[&str] = &[
    "Datastore.AllocateSpace",
    "Datastore.Audit",
    "Sys.Audit",
    "VM.Allocate",
    "VM.Audit",
    "VM.Backup",
    "VM.Config.CPU",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.PowerMgmt",
    "VM.Snapshot",
    "VM.Snapshot.Rollback",
];

/// The privileges of PVE 9's built-in `Administrator` role (what `root@pam` has everywhere).
pub const ADMINISTRATOR_PRIVILEGES: &[&str] = &[
    "Datastore.Allocate",
    "Datastore.AllocateSpace",
    "Datastore.AllocateTemplate",
    "Datastore.Audit",
    "Group.Allocate",
    "Mapping.Audit",
    "Mapping.Modify",
    "Mapping.Use",
    "Permissions.Modify",
    "Pool.Allocate",
    "Pool.Audit",
    "Realm.Allocate",
    "Realm.AllocateUser",
    "SDN.Allocate",
    "SDN.Audit",
    "SDN.Use",
    "Sys.AccessNetwork",
    "Sys.Audit",
    "Sys.Console",
    "Sys.Incoming",
    "Sys.Modify",
    "Sys.PowerMgmt",
    "Sys.Syslog",
    "User.Modify",
    "VM.Allocate",
    "VM.Audit",
    "VM.Backup",
    "VM.Clone",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Cloudinit",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
    "VM.Console",
    "VM.GuestAgent.Audit",
    "VM.GuestAgent.FileRead",
    "VM.GuestAgent.FileSystemMgmt",
    "VM.GuestAgent.FileWrite",
    "VM.GuestAgent.Unrestricted",
    "VM.Migrate",
    "VM.PowerMgmt",
    "VM.Replicate",
    "VM.Snapshot",
    "VM.Snapshot.Rollback",
];

/// One ACL entry. The simulator grants privileges directly (each entry acts as one role holding
/// `privs`), which is all the permission algorithm needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    /// ACL path: `/`, `/vms`, `/vms/100`, `/storage/local`, `/nodes/pve`, ...
    pub path: String,
    /// Privilege names, e.g. `VM.Audit`.
    pub privs: Vec<String>,
    /// Whether the entry also applies below `path` (PVE's propagate flag).
    pub propagate: bool,
}

impl Acl {
    /// An entry granting `privs` on `path`.
    pub fn new(path: &str, privs: &[&str], propagate: bool) -> Acl {
        Acl {
            path: path.to_string(),
            privs: privs.iter().map(|p| p.to_string()).collect(),
            propagate,
        }
    }
}

/// An API token and, for the intersection PVE computes, the ACLs of its owning user.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// Full token id, `user@realm!name`.
    pub id: String,
    /// The secret (a UUID on real PVE). Never printed by `Debug`.
    pub secret: String,
    /// Privilege separation: with `true` the token has (its own ACLs ∩ the user's), with `false`
    /// exactly the user's privileges.
    pub privsep: bool,
    /// ACL entries for the token itself (used only with `privsep`).
    pub acl: Vec<Acl>,
    /// ACL entries for the owning user. Tokens of the same user contribute to one user.
    pub user_acl: Vec<Acl>,
}

impl fmt::Debug for TokenSpec {
    // Hand-written so the secret can never reach a log or a test failure message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSpec")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("privsep", &self.privsep)
            .field("acl", &self.acl)
            .field("user_acl", &self.user_acl)
            .finish()
    }
}

impl TokenSpec {
    /// A privsep token with no ACLs (it sees nothing until given some).
    pub fn new(id: &str, secret: &str) -> TokenSpec {
        TokenSpec {
            id: id.to_string(),
            secret: secret.to_string(),
            privsep: true,
            acl: Vec::new(),
            user_acl: Vec::new(),
        }
    }

    /// The default agent token: privsep, [`AGENT_PRIVILEGES`] on `/` for the token,
    /// [`ADMINISTRATOR_PRIVILEGES`] on `/` for its user.
    pub fn agent_default() -> TokenSpec {
        TokenSpec::new(DEFAULT_TOKEN_ID, DEFAULT_TOKEN_SECRET)
            .acl(Acl::new("/", AGENT_PRIVILEGES, true))
            .user_acl(Acl::new("/", ADMINISTRATOR_PRIVILEGES, true))
    }

    /// Sets privilege separation.
    pub fn privsep(mut self, on: bool) -> TokenSpec {
        self.privsep = on;
        self
    }

    /// Adds an ACL entry for the token.
    pub fn acl(mut self, acl: Acl) -> TokenSpec {
        self.acl.push(acl);
        self
    }

    /// Adds an ACL entry for the owning user.
    pub fn user_acl(mut self, acl: Acl) -> TokenSpec {
        self.user_acl.push(acl);
        self
    }

    /// The owning user (`user@realm`), or the whole id if it has no `!`.
    pub fn user(&self) -> &str {
        self.id.rsplit_once('!').map(|(u, _)| u).unwrap_or(&self.id)
    }
}

/// A snapshot to pre-load on a guest: the guest's config at the moment `GuestSpec::snapshot` was
/// called, plus a comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotSpec {
    /// Snapshot name (`pve-configid`).
    pub name: String,
    /// Snapshot comment (PVE stores it as the snapshot section's description).
    pub description: Option<String>,
    /// Creation time, seconds since the epoch.
    pub snaptime: u64,
    /// The guest config keys at snapshot time.
    pub config: BTreeMap<String, String>,
}

/// An LXC guest. Config keys are the raw values of the PVE config file (`memory` in MiB,
/// booleans `1`/`0`, property strings as written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestSpec {
    /// Guest id (100–999999999).
    pub vmid: u32,
    /// Whether the guest starts out running.
    pub running: bool,
    /// Description (stored as comment lines; read back with a trailing newline).
    pub description: Option<String>,
    /// Config keys other than the description.
    pub config: BTreeMap<String, String>,
    /// Pre-loaded snapshots, oldest first (each one's parent is the previous).
    pub snapshots: Vec<SnapshotSpec>,
}

impl GuestSpec {
    /// A stopped unprivileged Debian CT with 1 core, 512 MiB memory and swap, and an 8 GiB rootfs
    /// on `local-lvm`.
    pub fn new(vmid: u32, hostname: &str) -> GuestSpec {
        let mut config = BTreeMap::new();
        for (k, v) in [
            ("arch", "amd64".to_string()),
            ("cores", "1".to_string()),
            ("hostname", hostname.to_string()),
            ("memory", "512".to_string()),
            (
                "net0",
                "name=eth0,bridge=vmbr0,firewall=1,ip=dhcp,type=veth".to_string(),
            ),
            ("ostype", "debian".to_string()),
            ("rootfs", format!("local-lvm:vm-{vmid}-disk-0,size=8G")),
            ("swap", "512".to_string()),
            ("unprivileged", "1".to_string()),
        ] {
            config.insert(k.to_string(), v);
        }
        GuestSpec {
            vmid,
            running: false,
            description: None,
            config,
            snapshots: Vec::new(),
        }
    }

    /// Sets `cores`.
    pub fn cores(self, cores: u32) -> GuestSpec {
        self.set("cores", &cores.to_string())
    }

    /// Sets `memory` (MiB).
    pub fn memory_mib(self, mib: u64) -> GuestSpec {
        self.set("memory", &mib.to_string())
    }

    /// Sets `swap` (MiB).
    pub fn swap_mib(self, mib: u64) -> GuestSpec {
        self.set("swap", &mib.to_string())
    }

    /// Sets `rootfs` (e.g. `local-lvm:vm-100-disk-0,size=8G`).
    pub fn rootfs(self, rootfs: &str) -> GuestSpec {
        self.set("rootfs", rootfs)
    }

    /// Sets the description (an empty one removes it, as PVE does).
    pub fn description(mut self, description: &str) -> GuestSpec {
        self.description = if description.is_empty() {
            None
        } else {
            Some(description.to_string())
        };
        self
    }

    /// Sets whether the guest starts out running.
    pub fn running(mut self, running: bool) -> GuestSpec {
        self.running = running;
        self
    }

    /// Sets any config key to its raw value.
    pub fn set(mut self, key: &str, value: &str) -> GuestSpec {
        self.config.insert(key.to_string(), value.to_string());
        self
    }

    /// Removes a config key.
    pub fn unset(mut self, key: &str) -> GuestSpec {
        self.config.remove(key);
        self
    }

    /// Records a snapshot of the config as it is now.
    pub fn snapshot(mut self, name: &str, description: &str, snaptime: u64) -> GuestSpec {
        self.snapshots.push(SnapshotSpec {
            name: name.to_string(),
            description: (!description.is_empty()).then(|| description.to_string()),
            snaptime,
            config: self.config.clone(),
        });
        self
    }
}

/// A volume on a storage, as `GET .../storage/{storage}/content` lists it. Guest disks are not
/// volumes here: they are derived from the guests' `rootfs`/`mpN` keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSpec {
    /// Volume name after `storage:`, e.g. `backup/vzdump-lxc-100-2025_01_02-03_04_05.tar.zst`.
    pub name: String,
    /// Content type: `backup`, `vztmpl`, `iso`, ...
    pub content: String,
    /// Format as PVE reports it (`tar.zst`, `tzst`, `iso`, ...).
    pub format: String,
    /// Size in bytes.
    pub size: u64,
    /// Creation time, seconds since the epoch.
    pub ctime: u64,
    /// Owning guest, if any.
    pub vmid: Option<u32>,
    /// `lxc` / `qemu` for backups.
    pub subtype: Option<String>,
    /// Backup notes (only the first line is listed).
    pub notes: Option<String>,
    /// Backup protection flag.
    pub protected: bool,
    /// For a backup: the guest config it restores to. When absent and `vmid` names a configured
    /// guest, the simulator uses that guest's config at start.
    pub guest_config: Option<BTreeMap<String, String>>,
    /// For a backup: the description it restores to.
    pub guest_description: Option<String>,
}

impl VolumeSpec {
    /// A container template `vztmpl/<file>`.
    pub fn vztmpl(file: &str, size: u64, ctime: u64) -> VolumeSpec {
        let format = if file.ends_with(".tar.zst") {
            "tzst"
        } else if file.ends_with(".tar.gz") {
            "tgz"
        } else if file.ends_with(".tar.xz") {
            "txz"
        } else {
            "tar"
        };
        VolumeSpec {
            name: format!("vztmpl/{file}"),
            content: "vztmpl".to_string(),
            format: format.to_string(),
            size,
            ctime,
            vmid: None,
            subtype: None,
            notes: None,
            protected: false,
            guest_config: None,
            guest_description: None,
        }
    }

    /// An LXC backup of `vmid` taken at `ctime`, named like vzdump names it (UTC).
    pub fn lxc_backup(vmid: u32, ctime: u64) -> VolumeSpec {
        VolumeSpec {
            name: format!(
                "backup/vzdump-lxc-{vmid}-{}.tar.zst",
                crate::clock::vzdump_timestamp(ctime)
            ),
            content: "backup".to_string(),
            format: "tar.zst".to_string(),
            size: 123_456_789,
            ctime,
            vmid: Some(vmid),
            subtype: Some("lxc".to_string()),
            notes: None,
            protected: false,
            guest_config: None,
            guest_description: None,
        }
    }

    /// Sets the notes.
    pub fn notes(mut self, notes: &str) -> VolumeSpec {
        self.notes = Some(notes.to_string());
        self
    }

    /// Sets the protection flag.
    pub fn protected(mut self, protected: bool) -> VolumeSpec {
        self.protected = protected;
        self
    }

    /// Sets the size in bytes.
    pub fn size(mut self, size: u64) -> VolumeSpec {
        self.size = size;
        self
    }
}

/// A storage (storage.cfg section plus its status and volumes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageSpec {
    /// Storage id (`pve-storage-id`).
    pub id: String,
    /// Plugin type: `dir`, `lvmthin`, `zfspool`, `nfs`, `pbs`, ...
    pub storage_type: String,
    /// Allowed content types (`backup`, `vztmpl`, `iso`, `rootdir`, `images`, ...).
    pub content: Vec<String>,
    /// Other storage.cfg keys (`path`, `thinpool`, `vgname`, ...), as `GET /storage` lists them.
    pub settings: BTreeMap<String, String>,
    /// Shared flag.
    pub shared: bool,
    /// Enabled flag (a disabled storage is inactive and has no status figures).
    pub enabled: bool,
    /// Total size in bytes.
    pub total: u64,
    /// Bytes used by things the simulator does not model (volumes add to it).
    pub base_used: u64,
    /// Volumes on the storage.
    pub volumes: Vec<VolumeSpec>,
}

impl StorageSpec {
    /// A directory storage at `path`.
    pub fn dir(id: &str, path: &str) -> StorageSpec {
        let mut settings = BTreeMap::new();
        settings.insert("path".to_string(), path.to_string());
        StorageSpec {
            id: id.to_string(),
            storage_type: "dir".to_string(),
            content: vec!["backup".into(), "iso".into(), "vztmpl".into()],
            settings,
            shared: false,
            enabled: true,
            total: 100 * GIB,
            base_used: 10 * GIB,
            volumes: Vec::new(),
        }
    }

    /// An LVM-thin storage on `vgname`/`thinpool`.
    pub fn lvmthin(id: &str, vgname: &str, thinpool: &str) -> StorageSpec {
        let mut settings = BTreeMap::new();
        settings.insert("thinpool".to_string(), thinpool.to_string());
        settings.insert("vgname".to_string(), vgname.to_string());
        StorageSpec {
            id: id.to_string(),
            storage_type: "lvmthin".to_string(),
            content: vec!["images".into(), "rootdir".into()],
            settings,
            shared: false,
            enabled: true,
            total: 350 * GIB,
            base_used: 0,
            volumes: Vec::new(),
        }
    }

    /// Replaces the content types.
    pub fn content(mut self, content: &[&str]) -> StorageSpec {
        self.content = content.iter().map(|c| c.to_string()).collect();
        self
    }

    /// Adds a volume.
    pub fn volume(mut self, volume: VolumeSpec) -> StorageSpec {
        self.volumes.push(volume);
        self
    }

    /// Sets the enabled flag.
    pub fn enabled(mut self, enabled: bool) -> StorageSpec {
        self.enabled = enabled;
        self
    }

    /// Sets total size and the unmodelled used bytes.
    pub fn size(mut self, total: u64, base_used: u64) -> StorageSpec {
        self.total = total;
        self.base_used = base_used;
        self
    }
}

pub(crate) const GIB: u64 = 1024 * 1024 * 1024;

/// Configuration of a simulated host. `Default` is a ready-to-use host (see the crate docs).
#[derive(Clone)]
pub struct SimConfig {
    pub(crate) node: String,
    pub(crate) tokens: Vec<TokenSpec>,
    pub(crate) guests: BTreeMap<u32, GuestSpec>,
    pub(crate) storages: Vec<StorageSpec>,
    pub(crate) pve_version: String,
    pub(crate) task_duration: Duration,
    pub(crate) legacy_types: bool,
    pub(crate) pre_52_errors: bool,
    pub(crate) auth_failure_delay: Duration,
    pub(crate) epoch: Option<u64>,
    pub(crate) cpus: u32,
    pub(crate) memory_total: u64,
    pub(crate) list_order: ListOrder,
}

/// The seed [`ListOrder::default`] shuffles with.
pub const DEFAULT_LIST_SEED: u64 = 0x5EED_F31B_0A11_0001;

/// The order index endpoints (guests, storages, storage content, snapshots) list their
/// entries in. PVE builds these lists from Perl hashes, so their order is unspecified and
/// changes between hosts and versions; a client must not depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListOrder {
    /// Ascending by id (vmid, storage id, volid, snapshot name): only for a test that truly
    /// needs a fixed order.
    Sorted,
    /// A deterministic shuffle from this seed, per endpoint and list length, never left in
    /// ascending order (a list of two or more entries).
    Shuffled(u64),
}

impl Default for ListOrder {
    fn default() -> ListOrder {
        ListOrder::Shuffled(DEFAULT_LIST_SEED)
    }
}

impl fmt::Debug for SimConfig {
    // Tokens print through TokenSpec's redacting Debug.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("node", &self.node)
            .field("tokens", &self.tokens)
            .field("guests", &self.guests.keys().collect::<Vec<_>>())
            .field(
                "storages",
                &self.storages.iter().map(|s| &s.id).collect::<Vec<_>>(),
            )
            .field("pve_version", &self.pve_version)
            .field("task_duration", &self.task_duration)
            .field("legacy_types", &self.legacy_types)
            .field("pre_52_errors", &self.pre_52_errors)
            .field("auth_failure_delay", &self.auth_failure_delay)
            .field("epoch", &self.epoch)
            .field("list_order", &self.list_order)
            .finish()
    }
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        let web = GuestSpec::new(100, "web")
            .cores(2)
            .memory_mib(2048)
            .swap_mib(512)
            .rootfs("local-lvm:vm-100-disk-0,size=8G")
            .description("web server")
            .running(true);
        let db = GuestSpec::new(101, "db")
            .cores(1)
            .memory_mib(1024)
            .rootfs("local-lvm:vm-101-disk-0,size=8G");
        let local = StorageSpec::dir("local", "/var/lib/vz")
            .content(&["backup", "iso", "rootdir", "vztmpl"])
            .volume(VolumeSpec::vztmpl(
                "debian-12-standard_12.7-1_amd64.tar.zst",
                126_969_330,
                1_700_000_000,
            ))
            .volume(VolumeSpec::lxc_backup(100, DEFAULT_BACKUP_CTIME).notes("web nightly"));
        let local_lvm = StorageSpec::lvmthin("local-lvm", "pve", "data");
        let mut guests = BTreeMap::new();
        guests.insert(100, web);
        guests.insert(101, db);
        SimConfig {
            node: DEFAULT_NODE.to_string(),
            tokens: vec![TokenSpec::agent_default()],
            guests,
            storages: vec![local, local_lvm],
            pve_version: DEFAULT_PVE_VERSION.to_string(),
            task_duration: Duration::from_millis(50),
            legacy_types: false,
            pre_52_errors: false,
            auth_failure_delay: Duration::ZERO,
            epoch: None,
            cpus: 8,
            memory_total: 32 * GIB,
            list_order: ListOrder::default(),
        }
    }
}

impl SimConfig {
    /// The default host (same as `Default`).
    pub fn new() -> SimConfig {
        SimConfig::default()
    }

    /// Sets the node name.
    pub fn node(mut self, name: &str) -> SimConfig {
        self.node = name.to_string();
        self
    }

    /// Adds a token, replacing one with the same id.
    pub fn token(mut self, token: TokenSpec) -> SimConfig {
        self.tokens.retain(|t| t.id != token.id);
        self.tokens.push(token);
        self
    }

    /// Removes every token (add your own with [`SimConfig::token`]).
    pub fn without_tokens(mut self) -> SimConfig {
        self.tokens.clear();
        self
    }

    /// Adds a guest, replacing one with the same vmid.
    pub fn guest(mut self, guest: GuestSpec) -> SimConfig {
        self.guests.insert(guest.vmid, guest);
        self
    }

    /// Removes every guest.
    pub fn without_guests(mut self) -> SimConfig {
        self.guests.clear();
        self
    }

    /// Adds a storage, replacing one with the same id.
    pub fn storage(mut self, storage: StorageSpec) -> SimConfig {
        self.storages.retain(|s| s.id != storage.id);
        self.storages.push(storage);
        self
    }

    /// Removes every storage.
    pub fn without_storage(mut self) -> SimConfig {
        self.storages.clear();
        self
    }

    /// The order of index lists (default: shuffled with [`DEFAULT_LIST_SEED`]).
    pub fn list_order(mut self, order: ListOrder) -> SimConfig {
        self.list_order = order;
        self
    }

    /// Sets the reported `pve-manager` version (e.g. `8.4.14`).
    pub fn pve_version(mut self, version: &str) -> SimConfig {
        self.pve_version = version.to_string();
        self
    }

    /// How long every task runs (tokio time; default 50 ms).
    pub fn task_duration(mut self, duration: Duration) -> SimConfig {
        self.task_duration = duration;
        self
    }

    /// PVE < 8.2 shapes: `vmid` in the LXC list as a string.
    pub fn legacy_types(mut self, on: bool) -> SimConfig {
        self.legacy_types = on;
        self
    }

    /// pve-http-server < 5.2 errors: no `message` in JSON error bodies, empty bodies for
    /// HTTP-layer errors; the reason phrase is the only message.
    pub fn pre_52_errors(mut self, on: bool) -> SimConfig {
        self.pre_52_errors = on;
        self
    }

    /// Delay before every 401 (real PVE waits 3 s; the simulator defaults to none).
    pub fn auth_failure_delay(mut self, delay: Duration) -> SimConfig {
        self.auth_failure_delay = delay;
        self
    }

    /// Wall-clock time (seconds since the epoch) of the simulator's start; default: now. UPIDs,
    /// backup names and uptimes count from it on tokio time.
    pub fn epoch(mut self, epoch_secs: u64) -> SimConfig {
        self.epoch = Some(epoch_secs);
        self
    }

    /// Host CPU threads and memory, as node status reports them.
    pub fn host_resources(mut self, cpus: u32, memory_bytes: u64) -> SimConfig {
        self.cpus = cpus;
        self.memory_total = memory_bytes;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_debug_never_shows_the_secret() {
        let t = TokenSpec::agent_default();
        let dbg = format!("{t:?}");
        assert!(!dbg.contains(DEFAULT_TOKEN_SECRET), "{dbg}");
        assert!(dbg.contains("<redacted>"));
        let cfg = format!("{:?}", SimConfig::default());
        assert!(!cfg.contains(DEFAULT_TOKEN_SECRET), "{cfg}");
    }

    #[test]
    fn default_host_matches_the_documented_shape() {
        let c = SimConfig::default();
        assert_eq!(c.node, "pve");
        let web = &c.guests[&100];
        assert!(web.running);
        assert_eq!(web.config["memory"], "2048");
        assert_eq!(web.config["hostname"], "web");
        assert!(!c.guests[&101].running);
        assert_eq!(c.storages.len(), 2);
        assert_eq!(c.tokens[0].user(), "felhom@pve");
        assert!(c.tokens[0].privsep);
    }

    #[test]
    fn builders_replace_by_identity() {
        let c = SimConfig::default()
            .guest(GuestSpec::new(100, "other"))
            .token(TokenSpec::new(DEFAULT_TOKEN_ID, "x"))
            .storage(StorageSpec::dir("local", "/srv"));
        assert_eq!(c.guests[&100].config["hostname"], "other");
        assert_eq!(c.tokens.len(), 1);
        assert_eq!(c.storages.len(), 2);
    }
}
