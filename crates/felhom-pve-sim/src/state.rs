//! The simulated host's state (guests, storage, tokens, tasks, request counters) behind one
//! `std::sync::Mutex`, and `SimState`, the handle tests use to inspect and change it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::acl::{split_tokenid, Principals};
use crate::clock::Clock;
use crate::config::{GuestSpec, ListOrder, SimConfig, StorageSpec, TokenSpec, VolumeSpec};
use crate::error::SimError;
use crate::lxcconf::{self, Section};
use crate::params::valid_node_name;
use crate::server::ConnStats;
use crate::task::Task;

/// How many request records `SimState::request_log` keeps (oldest are dropped).
const REQUEST_LOG_CAP: usize = 10_000;

/// An LXC guest.
#[derive(Clone, Debug)]
pub(crate) struct Guest {
    pub(crate) vmid: u32,
    pub(crate) conf: Section,
    pub(crate) snapshots: BTreeMap<String, Section>,
    pub(crate) running: bool,
    pub(crate) started_at: u64,
    pub(crate) pid: u32,
}

impl Guest {
    pub(crate) fn from_spec(spec: &GuestSpec, now: u64, pid: u32) -> Guest {
        let mut snapshots = BTreeMap::new();
        let mut parent: Option<String> = None;
        for s in &spec.snapshots {
            let mut keys = s.config.clone();
            keys.insert("snaptime".to_string(), s.snaptime.to_string());
            if let Some(p) = &parent {
                keys.insert("parent".to_string(), p.clone());
            }
            snapshots.insert(s.name.clone(), Section::new(s.description.as_deref(), keys));
            parent = Some(s.name.clone());
        }
        let mut keys = spec.config.clone();
        if let Some(p) = parent {
            keys.insert("parent".to_string(), p);
        }
        Guest {
            vmid: spec.vmid,
            conf: Section::new(spec.description.as_deref(), keys),
            snapshots,
            running: spec.running,
            started_at: now,
            pid,
        }
    }

    pub(crate) fn raw(&self) -> String {
        lxcconf::raw_config(&self.conf, &self.snapshots)
    }

    pub(crate) fn digest(&self) -> String {
        lxcconf::digest(&self.raw())
    }

    pub(crate) fn lock(&self) -> Option<&str> {
        self.conf.keys.get("lock").map(String::as_str)
    }

    pub(crate) fn set_lock(&mut self, lock: Option<&str>) {
        match lock {
            Some(l) => self.conf.keys.insert("lock".to_string(), l.to_string()),
            None => self.conf.keys.remove("lock"),
        };
    }

    /// `name` as vmstatus reports it: the hostname, or `CT<vmid>`.
    pub(crate) fn name(&self) -> String {
        self.conf
            .keys
            .get("hostname")
            .map(|h| h.split_whitespace().collect::<String>())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| format!("CT{}", self.vmid))
    }

    pub(crate) fn is_template(&self) -> bool {
        self.conf.keys.get("template").map(String::as_str) == Some("1")
    }

    /// `rootfs` and `mpN` volumes with their sizes.
    pub(crate) fn volumes(&self) -> Vec<lxcconf::MountPoint> {
        self.conf
            .keys
            .iter()
            .filter(|(k, _)| {
                *k == "rootfs"
                    || k.strip_prefix("mp")
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .filter_map(|(_, v)| lxcconf::parse_mountpoint(v))
            .collect()
    }
}

/// A storage and its (non-guest-disk) volumes by name.
#[derive(Clone, Debug)]
pub(crate) struct Storage {
    pub(crate) spec: StorageSpec,
    pub(crate) volumes: BTreeMap<String, VolumeSpec>,
}

impl Storage {
    pub(crate) fn supports(&self, content: &str) -> bool {
        self.spec.content.iter().any(|c| c == content)
    }

    /// Whether guest volumes here support snapshots (LVM-thin, ZFS, Ceph RBD, btrfs do).
    pub(crate) fn snapshots_supported(&self) -> bool {
        matches!(
            self.spec.storage_type.as_str(),
            "lvmthin" | "zfspool" | "rbd" | "btrfs"
        )
    }
}

/// One answered request, for tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Percent-decoded path below `/api2/<format>` (or the whole path outside the API).
    pub path: String,
    /// Status sent (0 for a dropped connection).
    pub status: u16,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    by_route: HashMap<(String, String), u64>,
    by_template: HashMap<&'static str, u64>,
    log: VecDeque<RequestRecord>,
    total: u64,
    mutations_ok: u64,
}

/// Everything the simulator knows; lives behind `SimState`'s mutex.
pub(crate) struct Inner {
    pub(crate) node: String,
    pub(crate) pve_version: String,
    pub(crate) task_duration: Duration,
    pub(crate) auth_failure_delay: Duration,
    pub(crate) cpus: u32,
    pub(crate) memory_total: u64,
    pub(crate) fingerprint: String,
    pub(crate) clock: Clock,
    pub(crate) boot_epoch: u64,
    pub(crate) principals: Principals,
    pub(crate) guests: BTreeMap<u32, Guest>,
    pub(crate) storages: BTreeMap<String, Storage>,
    pub(crate) tasks: Vec<Task>,
    pub(crate) task_index: HashMap<String, usize>,
    pub(crate) next_pid: u32,
    pub(crate) counters: Counters,
    pub(crate) list_order: ListOrder,
}

fn config_error(msg: String) -> SimError {
    SimError::Config(msg)
}

impl Inner {
    pub(crate) fn from_config(cfg: &SimConfig, fingerprint: String) -> Result<Inner, SimError> {
        if !valid_node_name(&cfg.node) {
            return Err(config_error(format!(
                "node '{}': not a valid node name",
                cfg.node
            )));
        }
        for t in &cfg.tokens {
            if split_tokenid(&t.id).is_none() {
                return Err(config_error(format!(
                    "token '{}': id must look like user@realm!name",
                    t.id
                )));
            }
        }
        let clock = Clock::new(cfg.epoch);
        let now = clock.now();
        let mut guests = BTreeMap::new();
        let mut pid = 0x0001_2000u32;
        for (vmid, spec) in &cfg.guests {
            if felhom_types::Vmid::try_from(*vmid).is_err() {
                return Err(config_error(format!(
                    "guest {vmid}: vmid must be 100-999999999"
                )));
            }
            for key in spec
                .config
                .keys()
                .chain(spec.snapshots.iter().map(|s| &s.name))
            {
                if !crate::params::valid_configid(key) {
                    return Err(config_error(format!(
                        "guest {vmid}: '{key}' is not a valid config key or snapshot name"
                    )));
                }
            }
            if let Some((k, _)) = spec.config.iter().find(|(_, v)| v.contains('\n')) {
                return Err(config_error(format!(
                    "guest {vmid}: value of '{k}' contains a newline"
                )));
            }
            pid += 311;
            guests.insert(*vmid, Guest::from_spec(spec, now.saturating_sub(3600), pid));
        }
        let mut storages = BTreeMap::new();
        for s in &cfg.storages {
            if !lxcconf::valid_storage_id(&s.id) {
                return Err(config_error(format!(
                    "storage '{}': not a valid storage id",
                    s.id
                )));
            }
            let mut volumes = BTreeMap::new();
            for v in &s.volumes {
                let mut v = v.clone();
                if v.content == "backup" && v.guest_config.is_none() {
                    if let Some(g) = v.vmid.and_then(|id| cfg.guests.get(&id)) {
                        v.guest_config = Some(g.config.clone());
                        v.guest_description = g.description.clone();
                    }
                }
                volumes.insert(v.name.clone(), v);
            }
            let mut spec = s.clone();
            spec.volumes.clear();
            storages.insert(s.id.clone(), Storage { spec, volumes });
        }
        Ok(Inner {
            node: cfg.node.clone(),
            pve_version: cfg.pve_version.clone(),
            task_duration: cfg.task_duration,
            auth_failure_delay: cfg.auth_failure_delay,
            cpus: cfg.cpus,
            memory_total: cfg.memory_total,
            fingerprint,
            clock,
            // a host that has been up for a day and a bit
            boot_epoch: now.saturating_sub(93_784),
            principals: Principals::from_tokens(&cfg.tokens),
            guests,
            storages,
            tasks: Vec::new(),
            task_index: HashMap::new(),
            next_pid: 0x000A_4000,
            counters: Counters::default(),
            list_order: cfg.list_order,
        })
    }

    pub(crate) fn uptime(&self) -> u64 {
        self.clock.now().saturating_sub(self.boot_epoch)
    }

    pub(crate) fn next_guest_pid(&mut self) -> u32 {
        self.next_pid = self.next_pid.wrapping_add(23);
        self.next_pid
    }

    pub(crate) fn record_request(&mut self, method: &str, path: &str, status: u16) {
        let c = &mut self.counters;
        c.total += 1;
        *c.by_route
            .entry((method.to_string(), path.to_string()))
            .or_insert(0) += 1;
        if let Some(template) = crate::api::route_template(method, path) {
            *c.by_template.entry(template).or_insert(0) += 1;
        }
        if method != "GET" && (200..300).contains(&status) {
            c.mutations_ok += 1;
        }
        if c.log.len() == REQUEST_LOG_CAP {
            c.log.pop_front();
        }
        c.log.push_back(RequestRecord {
            method: method.to_string(),
            path: path.to_string(),
            status,
        });
    }
}

/// A guest as tests see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestView {
    /// Guest id.
    pub vmid: u32,
    /// Run state.
    pub running: bool,
    /// Raw config keys of the current section (no description, no digest).
    pub config: BTreeMap<String, String>,
    /// Description as the API returns it (trailing newline included).
    pub description: Option<String>,
    /// SHA-1 of the config file, as `GET .../config` reports it.
    pub digest: String,
    /// Config lock (`backup`, `snapshot`, ...).
    pub lock: Option<String>,
    /// Snapshots by name order.
    pub snapshots: Vec<SnapshotView>,
}

/// A snapshot as tests see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotView {
    /// Snapshot name.
    pub name: String,
    /// Snapshot comment as the API returns it.
    pub description: Option<String>,
    /// Creation time.
    pub snaptime: u64,
    /// Parent snapshot.
    pub parent: Option<String>,
    /// Config keys saved in the snapshot (without `snaptime` and `parent`).
    pub config: BTreeMap<String, String>,
}

/// A task as tests see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskView {
    /// The UPID string.
    pub upid: String,
    /// Worker type (`vzdump`, `vzstart`, ...).
    pub task_type: String,
    /// Worker id (usually the vmid).
    pub id: String,
    /// Full auth id that started it.
    pub user: String,
    /// Still running.
    pub running: bool,
    /// `OK`, `WARNINGS: n` or the error, once stopped.
    pub exitstatus: Option<String>,
    /// Log lines.
    pub log: Vec<String>,
    /// How many times its status was polled.
    pub status_polls: u64,
}

/// A storage volume as tests see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeView {
    /// `storage:name`.
    pub volid: String,
    /// Content type.
    pub content: String,
    /// Format.
    pub format: String,
    /// Size in bytes.
    pub size: u64,
    /// Creation time.
    pub ctime: u64,
    /// Owning guest.
    pub vmid: Option<u32>,
    /// Notes.
    pub notes: Option<String>,
    /// Protection flag.
    pub protected: bool,
}

/// A cheap, cloneable handle on the running simulator's state. Every read first completes the
/// tasks whose time has come, so what it shows is what the API would answer now.
#[derive(Clone)]
pub struct SimState {
    pub(crate) inner: Arc<Mutex<Inner>>,
    pub(crate) conns: Arc<ConnStats>,
}

impl fmt::Debug for SimState {
    // Inner holds token secrets: show only counts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("SimState")
            .field("node", &s.node)
            .field("guests", &s.guests.len())
            .field("tasks", &s.tasks.len())
            .finish()
    }
}

fn guest_view(g: &Guest) -> GuestView {
    GuestView {
        vmid: g.vmid,
        running: g.running,
        config: g.conf.keys.clone(),
        description: g.conf.description(),
        digest: g.digest(),
        lock: g.lock().map(str::to_string),
        snapshots: g
            .snapshots
            .iter()
            .map(|(name, s)| {
                let mut config = s.keys.clone();
                let snaptime = config
                    .remove("snaptime")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                let parent = config.remove("parent");
                SnapshotView {
                    name: name.clone(),
                    description: s.description(),
                    snaptime,
                    parent,
                    config,
                }
            })
            .collect(),
    }
}

fn task_view(t: &Task) -> TaskView {
    TaskView {
        upid: t.upid.clone(),
        task_type: t.task_type.clone(),
        id: t.id.clone(),
        user: t.user.clone(),
        running: t.running(),
        exitstatus: t.exitstatus.clone(),
        log: t.log.clone(),
        status_polls: t.polls,
    }
}

impl SimState {
    pub(crate) fn new(inner: Inner) -> SimState {
        SimState {
            inner: Arc::new(Mutex::new(inner)),
            conns: Arc::default(),
        }
    }

    /// Locks without completing tasks.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        // state stays consistent per request even if a handler panicked: keep serving
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks and completes due tasks.
    pub(crate) fn current(&self) -> MutexGuard<'_, Inner> {
        let mut g = self.lock();
        g.advance();
        g
    }

    /// The node name.
    pub fn node(&self) -> String {
        self.lock().node.clone()
    }

    /// Simulated wall-clock time, seconds since the epoch.
    pub fn now(&self) -> u64 {
        self.lock().clock.now()
    }

    /// Every guest, by vmid.
    pub fn guests(&self) -> Vec<GuestView> {
        self.current().guests.values().map(guest_view).collect()
    }

    /// One guest.
    pub fn guest(&self, vmid: u32) -> Option<GuestView> {
        self.current().guests.get(&vmid).map(guest_view)
    }

    /// Adds or replaces a guest.
    pub fn add_guest(&self, spec: GuestSpec) {
        let mut s = self.current();
        let now = s.clock.now();
        let pid = s.next_guest_pid();
        s.guests
            .insert(spec.vmid, Guest::from_spec(&spec, now, pid));
    }

    /// Removes a guest; `false` if it did not exist.
    pub fn remove_guest(&self, vmid: u32) -> bool {
        self.current().guests.remove(&vmid).is_some()
    }

    /// Sets a config key directly, as another user editing the file would (`description`
    /// sets the description). Changes the digest. `false` if the guest does not exist.
    pub fn set_config(&self, vmid: u32, key: &str, value: &str) -> bool {
        let mut s = self.current();
        let Some(g) = s.guests.get_mut(&vmid) else {
            return false;
        };
        if key == "description" {
            g.conf.set_description(value);
        } else {
            g.conf.keys.insert(key.to_string(), value.to_string());
        }
        true
    }

    /// Removes a config key directly. `false` if the guest does not exist.
    pub fn delete_config(&self, vmid: u32, key: &str) -> bool {
        let mut s = self.current();
        let Some(g) = s.guests.get_mut(&vmid) else {
            return false;
        };
        if key == "description" {
            g.conf.set_description("");
        } else {
            g.conf.keys.remove(key);
        }
        true
    }

    /// Sets the run state directly. `false` if the guest does not exist.
    pub fn set_running(&self, vmid: u32, running: bool) -> bool {
        let mut s = self.current();
        let now = s.clock.now();
        let pid = s.next_guest_pid();
        let Some(g) = s.guests.get_mut(&vmid) else {
            return false;
        };
        if running && !g.running {
            g.started_at = now;
            g.pid = pid;
        }
        g.running = running;
        true
    }

    /// Sets or clears the config lock directly. `false` if the guest does not exist.
    pub fn set_lock(&self, vmid: u32, lock: Option<&str>) -> bool {
        let mut s = self.current();
        match s.guests.get_mut(&vmid) {
            Some(g) => {
                g.set_lock(lock);
                true
            }
            None => false,
        }
    }

    /// Every task, oldest first.
    pub fn tasks(&self) -> Vec<TaskView> {
        self.current().tasks.iter().map(task_view).collect()
    }

    /// One task by UPID.
    pub fn task(&self, upid: &str) -> Option<TaskView> {
        self.current().task(upid).map(task_view)
    }

    /// Waits (on tokio time) until the task has stopped; `None` for an unknown UPID.
    pub async fn wait_task(&self, upid: &str) -> Option<TaskView> {
        loop {
            let deadline = {
                let s = self.current();
                let t = s.task(upid)?;
                if !t.running() {
                    return Some(task_view(t));
                }
                s.task_deadline(upid)?
            };
            tokio::time::sleep_until(deadline).await;
        }
    }

    /// How many times a task's status was polled.
    pub fn task_polls(&self, upid: &str) -> u64 {
        self.lock().task(upid).map(|t| t.polls).unwrap_or(0)
    }

    /// Volumes on a storage (unfiltered; guest disks are not included). Empty for an unknown
    /// storage.
    pub fn storage_content(&self, storage: &str) -> Vec<VolumeView> {
        let s = self.current();
        let Some(st) = s.storages.get(storage) else {
            return Vec::new();
        };
        st.volumes
            .values()
            .map(|v| VolumeView {
                volid: format!("{storage}:{}", v.name),
                content: v.content.clone(),
                format: v.format.clone(),
                size: v.size,
                ctime: v.ctime,
                vmid: v.vmid,
                notes: v.notes.clone(),
                protected: v.protected,
            })
            .collect()
    }

    /// Adds or replaces a volume. `false` for an unknown storage.
    pub fn add_volume(&self, storage: &str, volume: VolumeSpec) -> bool {
        let mut s = self.current();
        match s.storages.get_mut(storage) {
            Some(st) => {
                st.volumes.insert(volume.name.clone(), volume);
                true
            }
            None => false,
        }
    }

    /// Adds or replaces a token (and merges its user ACLs into the owning user).
    pub fn add_token(&self, token: TokenSpec) {
        self.lock().principals.add_token(token);
    }

    /// How many requests were answered for `method` + decoded path (below `/api2/json`, e.g.
    /// `/nodes/pve/lxc/100/config`).
    pub fn requests(&self, method: &str, path: &str) -> u64 {
        self.lock()
            .counters
            .by_route
            .get(&(method.to_string(), path.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// How many requests were answered (or dropped) for one endpoint template, named as the
    /// schema names it: `GET /nodes/{node}/lxc/{vmid}/config`. Requests that match no served
    /// endpoint are not counted here.
    pub fn requests_to(&self, template: &str) -> u64 {
        self.lock()
            .counters
            .by_template
            .get(template)
            .copied()
            .unwrap_or(0)
    }

    /// Requests per endpoint template (see [`SimState::requests_to`]), for tests and benches.
    pub fn requests_by_template(&self) -> BTreeMap<String, u64> {
        self.lock()
            .counters
            .by_template
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect()
    }

    /// TCP connections accepted so far. A client with a warm pool opens none per request.
    pub fn connections_accepted(&self) -> u64 {
        self.conns.accepted.load(Ordering::Relaxed)
    }

    /// TLS handshakes completed so far (a resumed session counts as a handshake too).
    pub fn tls_handshakes(&self) -> u64 {
        self.conns.handshakes.load(Ordering::Relaxed)
    }

    /// All requests answered so far.
    pub fn total_requests(&self) -> u64 {
        self.lock().counters.total
    }

    /// Non-GET requests that were answered with 2xx (accepted mutations).
    pub fn accepted_mutations(&self) -> u64 {
        self.lock().counters.mutations_ok
    }

    /// The most recent requests (up to 10,000), oldest first.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.lock().counters.log.iter().cloned().collect()
    }
}
