//! The collector: reads the host through `ProxmoxApi` (node status, guests and their configs,
//! storages and their backups) and the cloudflared probe, and builds one `HostReport`.
//!
//! What fails how: the node status and the guest list are required (a report without them
//! would mislead the hub: no host figures, or guests that seem gone), so their failure is a
//! [`CollectError`] and no report is sent. Everything else degrades and is logged: a guest
//! whose config cannot be read keeps its run status and has no `spec` ("unknown"); a storage
//! list or content failure leaves those storages or backups out; a failed probe is `unknown`.
//! Guest configs (and backup listings) are fetched with bounded concurrency; the node status,
//! the guest list and the storage list are read at once, side by side.
//!
//! Incremental collection ([`collect_cached`] with a [`GuestCache`], informer-style as
//! Kubernetes' client-go): the guest list is read every beat and already carries status, name,
//! cpus, maxmem, maxswap and maxdisk; a guest's config is re-read only when its list entry
//! changed, when the agent itself wrote to it ([`GuestCache::invalidate`], called by the
//! reconcile engine), or at a full resync every `resync_every`-th beat. Bound: a change that
//! the list does not show (a description edited out-of-band, say) appears at the latest at the
//! next full resync, i.e. within `resync_every` beats (10 beats = 10 min at the default 60 s).
//! A full resync starts reading the configs of the guests it knows at once, beside the list,
//! rather than after it (see `collect_guests`).
//! The cache feeds reports only: reconcile always reads a fresh config (and its digest) before
//! it writes.
//!
//! The conversions from PVE's types to the report's (`host_info`, `guest_spec`,
//! `storage_target`, `backup_entry`, ...) are pure and tested without I/O.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use felhom_hub_proto::{
    BackupEntry, GuestReport, GuestSpec, GuestStatus, HostInfo, HostReport, JournalStatus,
    StorageTarget, Timestamp,
};
use felhom_proxmox::{
    GuestStatus as PveGuestStatus, GuestSummary, LxcConfig, NodeStatus, ProxmoxApi, ProxmoxError,
    StorageContent, StorageInfo,
};
use futures::stream::{self, StreamExt};
use futures::FutureExt;

use crate::cloudflared::CloudflaredProber;

/// Guest configs read at once by default (PVE serves a handful of parallel reads well; a
/// thousand at once would queue in pveproxy's workers anyway).
pub const DEFAULT_CONFIG_CONCURRENCY: usize = 8;

const MIB: u64 = 1024 * 1024;
/// PVE's schema default for an LXC's `memory` and `swap` (MiB) when the key is not set.
const PVE_DEFAULT_MEMORY_MIB: u64 = 512;
const PVE_DEFAULT_SWAP_MIB: u64 = 512;

/// A full resync (every guest config re-read) every this many beats by default.
pub const DEFAULT_RESYNC_EVERY: u32 = 10;

/// The guest configs kept between beats. Cheap to clone: clones share one cache, so the
/// reconcile engine can hold a clone and [`GuestCache::invalidate`] what it writes.
#[derive(Debug, Clone)]
pub struct GuestCache {
    inner: Arc<Mutex<CacheInner>>,
}

#[derive(Debug)]
struct CacheInner {
    /// Full resync every this many beats (0 or 1: every beat is a full read).
    resync_every: u32,
    /// Beats collected through this cache.
    beats: u64,
    /// vmid → the list entry its config was read with, and what the report takes from that
    /// config. Boxed: the map's slots (a power of two, up to twice the guests) then cost a
    /// pointer each instead of a whole entry.
    guests: HashMap<u32, Box<CachedGuest>>,
    /// Guests the agent wrote to since their config was read.
    invalidated: HashSet<u32>,
}

#[derive(Debug)]
struct CachedGuest {
    entry: ListEntry,
    facts: ConfigFacts,
}

/// What a report takes from a guest's config (see [`guest_spec`] and [`description`]): the
/// cache keeps this, not the whole config. A full [`LxcConfig`] with its `extra` keys, in a
/// map slot sized for it, cost the daemon about 1 MiB of heap for 1,000 guests (issue 14's
/// RSS budget); this is a few dozen bytes and the description per guest.
#[derive(Debug, Clone, PartialEq)]
struct ConfigFacts {
    cores: Option<u32>,
    memory_mib: Option<u64>,
    swap_mib: Option<u64>,
    rootfs_bytes: Option<u64>,
    description: Option<Box<str>>,
}

impl ConfigFacts {
    fn of(config: &LxcConfig) -> Self {
        ConfigFacts {
            cores: config.cores,
            memory_mib: config.memory,
            swap_mib: config.swap,
            rootfs_bytes: config.rootfs_size_bytes(),
            description: description(config).map(String::into_boxed_str),
        }
    }

    /// [`guest_spec`] from the facts.
    fn spec(&self, summary: &GuestSummary, host_cpus: u32) -> Option<GuestSpec> {
        let mib = |v: u64| v.checked_mul(MIB);
        let memory_bytes = match self.memory_mib {
            Some(m) => mib(m)?,
            None => summary.maxmem.or_else(|| mib(PVE_DEFAULT_MEMORY_MIB))?,
        };
        let swap_bytes = match self.swap_mib {
            Some(s) => mib(s)?,
            None => summary.maxswap.or_else(|| mib(PVE_DEFAULT_SWAP_MIB))?,
        };
        let disk_bytes = self.rootfs_bytes.or(summary.maxdisk)?;
        Some(GuestSpec {
            cores: self.cores.unwrap_or(host_cpus),
            memory_bytes,
            swap_bytes,
            disk_bytes,
        })
    }
}

/// What of a guest-list entry follows its config (usage figures, which move every beat, are
/// left out): when any of this changes, the config is read again.
#[derive(Debug, Clone, PartialEq)]
struct ListEntry {
    name: Option<String>,
    status: PveGuestStatus,
    cpus: Option<u64>,
    maxmem: Option<u64>,
    maxswap: Option<u64>,
    maxdisk: Option<u64>,
}

impl ListEntry {
    fn of(summary: &GuestSummary) -> Self {
        ListEntry {
            name: summary.name.clone(),
            status: summary.status.clone(),
            cpus: summary.cpus.map(f64::to_bits),
            maxmem: summary.maxmem,
            maxswap: summary.maxswap,
            maxdisk: summary.maxdisk,
        }
    }
}

/// What one beat read, for tests and the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Whether this beat was a full resync.
    pub full_resync: bool,
    /// Guest configs read from the API this beat.
    pub configs_read: usize,
    /// Guest configs taken from the cache.
    pub configs_cached: usize,
}

impl Default for GuestCache {
    fn default() -> Self {
        GuestCache::new(DEFAULT_RESYNC_EVERY)
    }
}

impl GuestCache {
    /// An empty cache (the first beat reads everything) resyncing every `resync_every` beats.
    pub fn new(resync_every: u32) -> Self {
        GuestCache {
            inner: Arc::new(Mutex::new(CacheInner {
                resync_every,
                beats: 0,
                guests: HashMap::new(),
                invalidated: HashSet::new(),
            })),
        }
    }

    /// The agent wrote to guest `vmid` (or is about to): its config is read again next beat.
    pub fn invalidate(&self, vmid: u32) {
        self.lock().invalidated.insert(vmid);
    }

    /// Forget everything: the next beat reads every config.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.guests.clear();
        inner.invalidated.clear();
    }

    /// Configs held now.
    pub fn len(&self) -> usize {
        self.lock().guests.len()
    }

    /// Whether no config is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, CacheInner> {
        // The data is a cache: a panic elsewhere cannot leave it worse than stale.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a beat: whether it is a full resync, and the guests invalidated until now (an
    /// invalidation arriving during the beat stays for the next one).
    fn begin_beat(&self) -> (bool, HashSet<u32>) {
        let mut inner = self.lock();
        let full =
            inner.resync_every <= 1 || inner.beats.is_multiple_of(u64::from(inner.resync_every));
        inner.beats += 1;
        (full, std::mem::take(&mut inner.invalidated))
    }

    /// What the report needs of this guest's cached config, unless it must be read again.
    fn lookup(&self, summary: &GuestSummary) -> Option<ConfigFacts> {
        let inner = self.lock();
        let cached = inner.guests.get(&summary.vmid)?;
        (cached.entry == ListEntry::of(summary)).then(|| cached.facts.clone())
    }
}

/// Why no report could be collected. Both are reads: collecting again later is always safe.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CollectError {
    /// `GET /nodes/{node}/status` failed; without the host's own figures nothing is sent.
    #[error("collect: node status of {node} unreadable: {source}")]
    NodeStatus {
        /// The node.
        node: String,
        /// What the API said.
        #[source]
        source: ProxmoxError,
    },
    /// `GET /nodes/{node}/lxc` failed; a report without guests would tell the hub they are
    /// gone.
    #[error("collect: guest list of {node} unreadable: {source}")]
    GuestList {
        /// The node.
        node: String,
        /// What the API said.
        #[source]
        source: ProxmoxError,
    },
}

/// What a collection is stamped with and how hard it may press the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectOptions {
    /// `HostReport::host_id` (`hub.host_id`).
    pub host_id: String,
    /// `HostReport::agent_version`.
    pub agent_version: String,
    /// Most guest configs (and storage listings) read at once; at least 1.
    pub concurrency: usize,
    /// `HostReport::journal`: the daemon's op journal state (it alone knows it; others leave
    /// the default, `unknown`).
    pub journal: JournalStatus,
    /// `HostReport::audit_tail`: read at each collection from the daemon's durable audit log
    /// (the reversibility gate's latest decisions); none → `[]`.
    pub audit_tail: AuditTail,
    /// `HostReport::restore_tests`: read at each collection from the daemon's restore-test
    /// results (the latest per source guest); none → `[]`.
    pub restore_tests: RestoreTail,
}

/// A collection the daemon keeps and a report copies at each collection: a reader of one of
/// its durable logs (the gate's audit, the restore-test results).
pub struct Tail<T>(Option<std::sync::Arc<dyn Fn() -> Vec<T> + Send + Sync>>);

/// Where a report's `audit_tail` comes from: a reader of the daemon's audit log.
pub type AuditTail = Tail<felhom_hub_proto::AuditEntry>;

/// Where a report's `restore_tests` come from: a reader of the daemon's restore-test results.
pub type RestoreTail = Tail<felhom_hub_proto::RestoreTest>;

impl<T> Tail<T> {
    /// A tail read by `read` at each collection.
    pub fn new(read: impl Fn() -> Vec<T> + Send + Sync + 'static) -> Self {
        Tail(Some(std::sync::Arc::new(read)))
    }

    /// The entries now (`[]` without a reader).
    pub fn read(&self) -> Vec<T> {
        self.0.as_ref().map(|read| read()).unwrap_or_default()
    }
}

impl<T> Default for Tail<T> {
    fn default() -> Self {
        Tail(None)
    }
}

impl<T> Clone for Tail<T> {
    fn clone(&self) -> Self {
        Tail(self.0.clone())
    }
}

impl<T> std::fmt::Debug for Tail<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Tail(reader)"
        } else {
            "Tail(none)"
        })
    }
}

impl<T> PartialEq for Tail<T> {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl<T> Eq for Tail<T> {}

impl CollectOptions {
    /// This crate's version as the agent version, [`DEFAULT_CONFIG_CONCURRENCY`].
    pub fn new(host_id: impl Into<String>) -> Self {
        CollectOptions {
            host_id: host_id.into(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            concurrency: DEFAULT_CONFIG_CONCURRENCY,
            journal: JournalStatus::default(),
            audit_tail: AuditTail::default(),
            restore_tests: RestoreTail::default(),
        }
    }
}

/// Collects one report with the default options, stamped `now`.
pub async fn collect<A, P>(
    api: &A,
    prober: &P,
    host_id: &str,
    now: SystemTime,
) -> Result<HostReport, CollectError>
where
    A: ProxmoxApi + ?Sized,
    P: CloudflaredProber + ?Sized,
{
    collect_with(api, prober, &CollectOptions::new(host_id), now).await
}

/// Collects one report, stamped `now` (whole seconds), reading every guest config.
pub async fn collect_with<A, P>(
    api: &A,
    prober: &P,
    options: &CollectOptions,
    now: SystemTime,
) -> Result<HostReport, CollectError>
where
    A: ProxmoxApi + ?Sized,
    P: CloudflaredProber + ?Sized,
{
    let cache = GuestCache::new(1);
    collect_cached(api, prober, options, &cache, now)
        .await
        .map(|(report, _)| report)
}

/// Collects one report, stamped `now`, reading only the guest configs `cache` cannot vouch
/// for (see the module doc); returns what this beat read.
pub async fn collect_cached<A, P>(
    api: &A,
    prober: &P,
    options: &CollectOptions,
    cache: &GuestCache,
    now: SystemTime,
) -> Result<(HostReport, CacheStats), CollectError>
where
    A: ProxmoxApi + ?Sized,
    P: CloudflaredProber + ?Sized,
{
    let node = api.node().to_owned();
    let concurrency = options.concurrency.max(1);
    // Everything independent at once: the node status no longer holds up the guest list. The
    // two required reads fail the whole collection as soon as either fails (the rest is
    // dropped: all reads).
    let status = async {
        api.node_status()
            .await
            .map_err(|source| CollectError::NodeStatus {
                node: node.clone(),
                source,
            })
    };
    let guests = async {
        collect_guests(api, cache, concurrency)
            .await
            .map_err(|source| CollectError::GuestList {
                node: node.clone(),
                source,
            })
    };
    let others = async {
        Ok::<_, CollectError>(futures::join!(
            collect_storage(api, concurrency),
            prober.probe()
        ))
    };
    let (status, (read, stats), ((storage_targets, backups), cloudflared)) =
        futures::try_join!(status, guests, others)?;
    let host = host_info(&status, &node);
    let mut guests: Vec<GuestReport> = read
        .iter()
        .map(|(summary, facts)| report_of(summary, facts.as_ref(), host.cpu_count))
        .collect();
    guests.sort_by_key(|g| g.vmid);
    let mut report = HostReport::new(
        options.host_id.clone(),
        options.agent_version.clone(),
        timestamp(now),
        host,
    );
    report.guests = guests;
    report.cloudflared = cloudflared;
    report.storage_targets = storage_targets;
    report.backups = backups;
    report.journal = options.journal.clone();
    report.audit_tail = options.audit_tail.read();
    report.restore_tests = options.restore_tests.read();
    Ok((report, stats))
}

/// The guest list and what the report takes from each guest's config (`None`: unreadable
/// this time), configs read with at most `concurrency` at once and only where `cache` cannot
/// vouch for them. The host's CPU count is applied later, since the node status is read
/// alongside.
///
/// A full resync reads every listed guest, so the configs of the guests the cache knows are
/// read from the start, beside the list, instead of after it (with 1,000 guests the list is the
/// slowest read of the beat); guests new in the list follow as soon as it arrives, and a guest
/// gone since the beat before costs one failed read (PVE's 500, counted in the request
/// metrics, not logged as a warning). Such an early read is older than the list it is reported
/// with, so the cache keeps it under the list entry of the beat before: if the list changed in
/// between, the next beat reads the config again rather than trust facts that may predate the
/// change.
async fn collect_guests<A: ProxmoxApi + ?Sized>(
    api: &A,
    cache: &GuestCache,
    concurrency: usize,
) -> Result<(Vec<(GuestSummary, Option<ConfigFacts>)>, CacheStats), ProxmoxError> {
    let (full, invalidated) = cache.begin_beat();
    // vmid → the list entry its cached config was read under.
    let known: HashMap<u32, ListEntry> = if full {
        cache
            .lock()
            .guests
            .iter()
            .map(|(vmid, g)| (*vmid, g.entry.clone()))
            .collect()
    } else {
        HashMap::new()
    };
    let mut early: Vec<u32> = known.keys().copied().collect();
    early.sort_unstable();
    let (more, later) = futures::channel::mpsc::unbounded::<u32>();
    let reads = stream::iter(early)
        .chain(later)
        .map(|vmid| async move {
            // The whole config is dropped here: only what the report takes is kept.
            let facts = api.guest_config(vmid).await.map(|c| ConfigFacts::of(&c));
            (vmid, facts)
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>();
    let invalidated_now = &invalidated;
    let listed = async move {
        let list = api.list_lxc().await?;
        let mut done = Vec::with_capacity(list.len());
        let mut to_read = Vec::new();
        for summary in list {
            if known.contains_key(&summary.vmid) {
                to_read.push(summary);
                continue;
            }
            let cached = (!full && !invalidated_now.contains(&summary.vmid))
                .then(|| cache.lookup(&summary))
                .flatten();
            match cached {
                Some(facts) => done.push((summary, Some(facts))),
                None => {
                    // the receiver lives until this future ends: a send cannot fail here
                    let _ = more.unbounded_send(summary.vmid);
                    to_read.push(summary);
                }
            }
        }
        // Closed explicitly (a captured value would live as long as this future): the reads
        // end with the last guest the list asked for.
        drop(more);
        Ok::<_, ProxmoxError>((done, to_read, known))
    };
    // A failed list ends the beat at once: the reads still running are dropped.
    let result = futures::future::try_join(listed, reads.map(Ok)).await;
    let ((mut done, to_read, known), read) = match result {
        Ok(r) => r,
        Err(e) => {
            // Not consumed: they are read again when the list is back.
            cache.lock().invalidated.extend(invalidated);
            return Err(e);
        }
    };
    let stats = CacheStats {
        full_resync: full,
        configs_cached: done.len(),
        configs_read: read.len(),
    };
    let mut read: HashMap<u32, Result<ConfigFacts, ProxmoxError>> = read.into_iter().collect();
    let mut inner = cache.lock();
    for summary in to_read {
        let facts = match read.remove(&summary.vmid) {
            Some(Ok(facts)) => Some(facts),
            Some(Err(e)) => {
                tracing::warn!(vmid = summary.vmid, error = %e, "guest config unreadable: reporting its run status without spec");
                None
            }
            // every guest in `to_read` was read (early or after the list)
            None => None,
        };
        match &facts {
            Some(f) => {
                let entry = known
                    .get(&summary.vmid)
                    .cloned()
                    .unwrap_or_else(|| ListEntry::of(&summary));
                inner.guests.insert(
                    summary.vmid,
                    Box::new(CachedGuest {
                        entry,
                        facts: f.clone(),
                    }),
                );
            }
            // Unreadable: read again next beat.
            None => {
                inner.guests.remove(&summary.vmid);
            }
        }
        done.push((summary, facts));
    }
    // Guests gone from the list are forgotten (an early read of one is simply dropped).
    let listed: HashSet<u32> = done.iter().map(|(s, _)| s.vmid).collect();
    inner.guests.retain(|vmid, _| listed.contains(vmid));
    Ok((done, stats))
}

/// The node's storages, and the backups on the active backup-capable ones. Failures leave
/// things out and are logged.
async fn collect_storage<A: ProxmoxApi + ?Sized>(
    api: &A,
    concurrency: usize,
) -> (Vec<StorageTarget>, Vec<BackupEntry>) {
    let storages = match api.node_storage().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "storage list unreadable: reporting no storages and no backups");
            return (Vec::new(), Vec::new());
        }
    };
    // PVE lists storages in no particular order: sort by id so reports compare stably
    let mut targets: Vec<StorageTarget> = storages.iter().map(storage_target).collect();
    targets.sort_by(|a, b| a.id.cmp(&b.id));
    // Collected first: a borrowing iterator held across the awaits below would make the
    // future fail to be `Send` for every lifetime (and so unusable in `tokio::spawn`).
    let with_backups: Vec<String> = storages
        .iter()
        .filter(|s| holds_backups(s))
        .map(|s| s.storage.clone())
        .collect();
    let lists: Vec<Vec<BackupEntry>> = stream::iter(with_backups)
        .map(|id| async move {
            match api.storage_content(&id, Some("backup"), None).await {
                Ok(items) => items.iter().filter_map(backup_entry).collect(),
                Err(e) => {
                    tracing::warn!(storage = %id, error = %e, "storage content unreadable: its backups are left out");
                    Vec::new()
                }
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut backups: Vec<BackupEntry> = lists.into_iter().flatten().collect();
    backups.sort_by(|a, b| (a.vmid, a.ctime, &a.volid).cmp(&(b.vmid, b.ctime, &b.volid)));
    (targets, backups)
}

/// Whole seconds since the epoch as a report timestamp (a clock before 1970 reads as 1970).
pub fn timestamp(now: SystemTime) -> Timestamp {
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Timestamp::from_unix_seconds(secs)
}

/// The host part of the report from `GET /nodes/{node}/status`.
///
/// Missing figures read as 0 (PVE always sends them; an older or odd node may not): the load
/// averages beyond what was sent, the uptime, and the CPU count when neither `cpus` nor
/// `sockets × cores` is given.
pub fn host_info(status: &NodeStatus, node: &str) -> HostInfo {
    let mut load_average = [0.0; 3];
    for (slot, v) in load_average.iter_mut().zip(&status.loadavg) {
        *slot = *v;
    }
    let cpu = &status.cpuinfo;
    let cpu_count = cpu
        .cpus
        .or_else(|| cpu.sockets?.checked_mul(cpu.cores?))
        .unwrap_or(0);
    HostInfo {
        node: node.to_owned(),
        pve_version: pve_version(&status.pveversion),
        kernel: kernel_release(status),
        uptime_seconds: status.uptime.unwrap_or(0),
        cpu_usage: status.cpu,
        cpu_count,
        load_average,
        memory_total_bytes: status.memory.total,
        memory_used_bytes: status.memory.used,
        rootfs_total_bytes: status.rootfs.total,
        rootfs_used_bytes: status.rootfs.used,
    }
}

/// `pve-manager/9.1.2/9d436f37a0ac4172` → `9.1.2`; anything else is kept as sent.
pub fn pve_version(pveversion: &str) -> String {
    let mut parts = pveversion.split('/');
    match (parts.next(), parts.next()) {
        (Some("pve-manager"), Some(v)) if !v.is_empty() => v.to_owned(),
        _ => pveversion.to_owned(),
    }
}

/// The running kernel's release: `current-kernel.release` (PVE 8+), else the second word of
/// `kversion` (`Linux 6.8.12-4-pve #1 SMP …`), else empty.
pub fn kernel_release(status: &NodeStatus) -> String {
    if let Some(release) = status
        .current_kernel
        .as_ref()
        .and_then(|k| k.release.as_deref())
        .filter(|r| !r.is_empty())
    {
        return release.to_owned();
    }
    status
        .kversion
        .as_deref()
        .and_then(|k| k.split_whitespace().nth(1))
        .unwrap_or("")
        .to_owned()
}

/// PVE's run state as the report's.
pub fn guest_status(status: &PveGuestStatus) -> GuestStatus {
    match status {
        PveGuestStatus::Running => GuestStatus::Running,
        PveGuestStatus::Stopped => GuestStatus::Stopped,
        PveGuestStatus::Unknown(_) => GuestStatus::Unknown,
    }
}

/// One guest: name and status from the list; spec and description from its config when it
/// could be read (`None`: unknown this time).
pub fn guest_report(
    summary: &GuestSummary,
    config: Option<&LxcConfig>,
    host_cpus: u32,
) -> GuestReport {
    report_of(summary, config.map(ConfigFacts::of).as_ref(), host_cpus)
}

/// [`guest_report`] from what the cache keeps of the config.
fn report_of(summary: &GuestSummary, facts: Option<&ConfigFacts>, host_cpus: u32) -> GuestReport {
    GuestReport {
        vmid: summary.vmid,
        name: summary.name.clone().unwrap_or_default(),
        status: guest_status(&summary.status),
        spec: facts.and_then(|f| f.spec(summary, host_cpus)),
        description: facts.and_then(|f| f.description.as_deref().map(str::to_owned)),
    }
}

/// The guest's resources in the report's units.
///
/// - `cores`: the config's; unset means "no limit", reported as the host's CPU count;
/// - `memory_bytes` / `swap_bytes`: the config's MiB × 1 MiB; unset, what PVE applies (the
///   list's `maxmem` / `maxswap`), else PVE's default of 512 MiB;
/// - `disk_bytes`: the `size=` of `rootfs`, else the list's `maxdisk`.
///
/// `None` when the disk size is unknown or a figure overflows: a spec is reported whole or not
/// at all.
pub fn guest_spec(config: &LxcConfig, summary: &GuestSummary, host_cpus: u32) -> Option<GuestSpec> {
    ConfigFacts::of(config).spec(summary, host_cpus)
}

/// The description without the trailing newline PVE appends on read; `None` when unset or
/// empty.
pub fn description(config: &LxcConfig) -> Option<String> {
    let d = config.description.as_deref()?;
    let d = d.strip_suffix('\n').unwrap_or(d);
    (!d.is_empty()).then(|| d.to_owned())
}

/// Whether the storage is active and may hold backups.
pub fn holds_backups(storage: &StorageInfo) -> bool {
    storage.active == Some(true) && storage.content.iter().any(|c| c == "backup")
}

/// One storage of `GET /nodes/{node}/storage`; absent figures (an inactive storage) read as 0.
pub fn storage_target(storage: &StorageInfo) -> StorageTarget {
    StorageTarget {
        id: storage.storage.clone(),
        storage_type: storage.storage_type.clone().unwrap_or_default(),
        content: storage.content.clone(),
        total_bytes: storage.total.unwrap_or(0),
        used_bytes: storage.used.unwrap_or(0),
        avail_bytes: storage.avail.unwrap_or(0),
        active: storage.active.unwrap_or(false),
    }
}

/// One backup volume; `None` for a volume that is not a backup or names no guest (it could
/// not be attributed). A missing `ctime` or `size` reads as 0, a missing format as empty.
pub fn backup_entry(item: &StorageContent) -> Option<BackupEntry> {
    if item.content.as_deref().is_some_and(|c| c != "backup") {
        return None;
    }
    Some(BackupEntry {
        volid: item.volid.clone(),
        vmid: item.vmid?,
        ctime: item.ctime.unwrap_or(0),
        size_bytes: item.size.unwrap_or(0),
        format: item.format.clone().unwrap_or_default(),
        protected: item.protected,
        notes: item.notes.clone().filter(|n| !n.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * MIB;

    fn node_status(json: &str) -> NodeStatus {
        serde_json::from_str(json).unwrap()
    }

    const STATUS_91: &str = r##"{"boot-info":{"secureboot":0,"mode":"efi"},"cpu":0.0123,
        "cpuinfo":{"cores":4,"cpus":8,"hvm":"1","mhz":"2895.985","model":"i7","sockets":1,"user_hz":100},
        "current-kernel":{"machine":"x86_64","release":"6.17.2-1-pve","sysname":"Linux","version":"#1 SMP"},
        "kversion":"Linux 6.17.2-1-pve #1 SMP PREEMPT_DYNAMIC PMX 6.17.2-1",
        "loadavg":["1.05","0.80","0.61"],
        "memory":{"available":3868946432,"free":1231867904,"total":8233918464,"used":4364972032},
        "pveversion":"pve-manager/9.1.2/9d436f37a0ac4172",
        "rootfs":{"avail":52209455104,"free":56520269824,"total":68959993856,"used":12439724032},
        "uptime":1209600,"wait":0.0004}"##;

    #[test]
    fn host_info_from_a_pve_9_node_status() {
        let h = host_info(&node_status(STATUS_91), "pve");
        assert_eq!(h.node, "pve");
        assert_eq!(h.pve_version, "9.1.2");
        assert_eq!(h.kernel, "6.17.2-1-pve");
        assert_eq!(h.uptime_seconds, 1_209_600);
        assert_eq!(h.cpu_usage, 0.0123);
        assert_eq!(h.cpu_count, 8);
        assert_eq!(h.load_average, [1.05, 0.80, 0.61]);
        assert_eq!(h.memory_total_bytes, 8_233_918_464);
        assert_eq!(h.memory_used_bytes, 4_364_972_032);
        assert_eq!(h.rootfs_total_bytes, 68_959_993_856);
        assert_eq!(h.rootfs_used_bytes, 12_439_724_032);
    }

    #[test]
    fn host_info_from_an_older_sparser_node_status() {
        // PVE 7: no current-kernel; here also no cpus, one load average, no uptime.
        let h = host_info(
            &node_status(
                r##"{"cpu":"0.5","cpuinfo":{"cores":2,"sockets":2},"kversion":"Linux 5.15.108-1-pve #1 SMP",
                "loadavg":["0.25"],"memory":{"total":100,"used":40},"pveversion":"7.4-3",
                "rootfs":{"total":10,"used":1}}"##,
            ),
            "old",
        );
        assert_eq!(h.kernel, "5.15.108-1-pve");
        assert_eq!(h.pve_version, "7.4-3");
        assert_eq!(h.cpu_count, 4);
        assert_eq!(h.load_average, [0.25, 0.0, 0.0]);
        assert_eq!(h.uptime_seconds, 0);
        assert_eq!(h.cpu_usage, 0.5);
    }

    #[test]
    fn pve_versions_and_kernels() {
        assert_eq!(pve_version("pve-manager/8.4.14/b502d23c55afcba1"), "8.4.14");
        assert_eq!(pve_version("pve-manager/"), "pve-manager/");
        assert_eq!(pve_version("something else"), "something else");
        let mut s = node_status(STATUS_91);
        s.current_kernel = None;
        assert_eq!(kernel_release(&s), "6.17.2-1-pve");
        s.kversion = None;
        assert_eq!(kernel_release(&s), "");
    }

    fn summary(json: &str) -> GuestSummary {
        serde_json::from_str(json).unwrap()
    }

    fn config(json: &str) -> LxcConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_cache_keeps_only_what_the_report_takes_from_a_config() {
        let lean = config(
            r##"{"cores":2,"memory":2048,"rootfs":"local-lvm:vm-100-disk-0,size=8G",
                "description":"web server\n"}"##,
        );
        let full = config(
            r##"{"cores":2,"memory":2048,"rootfs":"local-lvm:vm-100-disk-0,size=8G",
                "description":"web server\n","hostname":"web","digest":"abc","tags":"a;b",
                "net0":"name=eth0,bridge=vmbr0,ip=dhcp","features":"nesting=1","onboot":1}"##,
        );
        let facts = ConfigFacts::of(&full);
        assert_eq!(facts, ConfigFacts::of(&lean));
        assert_eq!(facts.rootfs_bytes, Some(8 * GIB));
        assert_eq!(facts.description.as_deref(), Some("web server"));
        assert_eq!(facts.swap_mib, None);
        // A changed figure the report uses is a different entry.
        let more = config(
            r##"{"cores":4,"memory":2048,"rootfs":"local-lvm:vm-100-disk-0,size=8G","description":"web server\n"}"##,
        );
        assert_ne!(ConfigFacts::of(&more), facts);
    }

    #[test]
    fn spec_converts_mib_and_the_rootfs_size() {
        let s = summary(r##"{"vmid":100,"name":"web","status":"running","maxdisk":1}"##);
        let c = config(
            r##"{"cores":2,"memory":2048,"swap":512,"rootfs":"local-lvm:vm-100-disk-0,size=8G",
                "description":"web server\n","hostname":"web"}"##,
        );
        let g = guest_report(&s, Some(&c), 16);
        assert_eq!(g.vmid, 100);
        assert_eq!(g.name, "web");
        assert_eq!(g.status, GuestStatus::Running);
        assert_eq!(
            g.spec,
            Some(GuestSpec {
                cores: 2,
                memory_bytes: 2 * GIB,
                swap_bytes: 512 * MIB,
                disk_bytes: 8 * GIB,
            })
        );
        assert_eq!(g.description.as_deref(), Some("web server"));
    }

    #[test]
    fn unset_config_keys_fall_back_to_what_pve_applies() {
        let s = summary(
            r##"{"vmid":"101","status":"stopped","maxmem":1073741824,"maxswap":0,"maxdisk":4294967296}"##,
        );
        let c = config(r##"{"hostname":"db","rootfs":"local:101/vm-101-disk-0.raw"}"##);
        let spec = guest_spec(&c, &s, 12).unwrap();
        assert_eq!(spec.cores, 12, "no cores limit reports the host's cpus");
        assert_eq!(spec.memory_bytes, GIB);
        assert_eq!(spec.swap_bytes, 0);
        assert_eq!(spec.disk_bytes, 4 * GIB, "no size= falls back to maxdisk");
        // Without list figures either: PVE's defaults.
        let bare = summary(r##"{"vmid":102,"status":"stopped"}"##);
        let c = config(r##"{"rootfs":"local-lvm:vm-102-disk-0,size=512M"}"##);
        let spec = guest_spec(&c, &bare, 1).unwrap();
        assert_eq!(spec.memory_bytes, 512 * MIB);
        assert_eq!(spec.swap_bytes, 512 * MIB);
        assert_eq!(spec.disk_bytes, 512 * MIB);
    }

    #[test]
    fn an_unknown_disk_or_an_overflow_omits_the_spec() {
        let bare = summary(r##"{"vmid":102,"status":"stopped"}"##);
        assert_eq!(guest_spec(&config(r##"{"memory":512}"##), &bare, 1), None);
        let huge = config(r##"{"memory":18446744073709551615,"rootfs":"x:y,size=1G"}"##);
        assert_eq!(guest_spec(&huge, &bare, 1), None);
    }

    #[test]
    fn an_unreadable_config_keeps_status_and_omits_spec_and_description() {
        let s = summary(r##"{"vmid":103,"name":"cache","status":"running"}"##);
        let g = guest_report(&s, None, 4);
        assert_eq!(g.status, GuestStatus::Running);
        assert_eq!(g.spec, None);
        assert_eq!(g.description, None);
        let odd = summary(r##"{"vmid":104,"status":"paused"}"##);
        let g = guest_report(&odd, None, 4);
        assert_eq!(g.status, GuestStatus::Unknown);
        assert_eq!(g.name, "");
    }

    #[test]
    fn descriptions_lose_one_trailing_newline_and_empty_is_none() {
        let d = |s: &str| {
            description(&config(
                &serde_json::json!({ "description": s }).to_string(),
            ))
        };
        assert_eq!(d("two\nlines\n").as_deref(), Some("two\nlines"));
        assert_eq!(d("kept\n\n").as_deref(), Some("kept\n"));
        assert_eq!(d("no newline").as_deref(), Some("no newline"));
        assert_eq!(d("\n"), None);
        assert_eq!(d(""), None);
        assert_eq!(description(&config("{}")), None);
    }

    fn storages() -> Vec<StorageInfo> {
        serde_json::from_str(
            r##"[{"storage":"local","type":"dir","content":"backup,iso,vztmpl","shared":0,"active":1,"enabled":1,"total":68959993856,"used":12439724032,"avail":52209455104},
                {"storage":"local-lvm","type":"lvmthin","content":"rootdir,images","active":1,"total":1.2e+15,"used":"0","avail":1.2e+15},
                {"storage":"nfs-off","type":"nfs","content":"backup","shared":1,"active":0,"enabled":0}]"##,
        )
        .unwrap()
    }

    #[test]
    fn storage_targets_and_which_hold_backups() {
        let s = storages();
        let t: Vec<StorageTarget> = s.iter().map(storage_target).collect();
        assert_eq!(t[0].id, "local");
        assert_eq!(t[0].storage_type, "dir");
        assert_eq!(t[0].content, ["backup", "iso", "vztmpl"]);
        assert_eq!(
            (t[0].total_bytes, t[0].used_bytes, t[0].avail_bytes),
            (68_959_993_856, 12_439_724_032, 52_209_455_104)
        );
        assert!(t[0].active);
        assert_eq!(t[1].total_bytes, 1_200_000_000_000_000);
        assert_eq!(t[2].total_bytes, 0);
        assert!(!t[2].active);
        let with: Vec<bool> = s.iter().map(holds_backups).collect();
        assert_eq!(with, [true, false, false], "inactive nfs is skipped");
    }

    #[test]
    fn backup_entries_from_storage_content() {
        let items: Vec<StorageContent> = serde_json::from_str(
            r##"[{"volid":"local:backup/vzdump-lxc-100-2025_01_02-03_04_05.tar.zst","content":"backup","format":"tar.zst","size":123456789,"ctime":1735787045,"vmid":100,"subtype":"lxc","notes":"nightly","protected":1},
                {"volid":"local:backup/vzdump-lxc-101-2025_01_03-03_04_05.tar.zst","content":"backup","format":"tar.zst","size":"5","ctime":"1735873445","vmid":"101","notes":""},
                {"volid":"local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst","content":"vztmpl","format":"tzst","size":123456,"ctime":1700000000},
                {"volid":"local:backup/orphan.tar","content":"backup"}]"##,
        )
        .unwrap();
        let b: Vec<BackupEntry> = items.iter().filter_map(backup_entry).collect();
        assert_eq!(
            b,
            [
                BackupEntry {
                    volid: "local:backup/vzdump-lxc-100-2025_01_02-03_04_05.tar.zst".into(),
                    vmid: 100,
                    ctime: 1_735_787_045,
                    size_bytes: 123_456_789,
                    format: "tar.zst".into(),
                    protected: true,
                    notes: Some("nightly".into()),
                },
                BackupEntry {
                    volid: "local:backup/vzdump-lxc-101-2025_01_03-03_04_05.tar.zst".into(),
                    vmid: 101,
                    ctime: 1_735_873_445,
                    size_bytes: 5,
                    format: "tar.zst".into(),
                    protected: false,
                    notes: None,
                },
            ]
        );
    }

    #[test]
    fn timestamps_are_whole_utc_seconds() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_795_428_000_999);
        assert_eq!(timestamp(t).as_str(), "2026-11-23T10:00:00Z");
        let before = SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(5);
        assert_eq!(timestamp(before).as_str(), "1970-01-01T00:00:00Z");
    }
}
