//! Shared test plumbing: simulators and clients wired together, a `ProxmoxApi` wrapper that
//! measures concurrent config reads, a log capture, and the golden-shape check of a raw report.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use felhom_hub::hub::{HubClient, HubClientConfig};
use felhom_hub_proto::shape::{shape_of, Kind};
use felhom_proxmox::{
    ApiToken, GuestSummary, LxcConfig, NodeStatus, ProxmoxApi, ProxmoxError, PveClient,
    PveClientConfig, Secret, StorageContent, StorageInfo, TlsTrust,
};
use felhom_pve_sim::{
    HubSim, HubSimConfig, PveSim, SimConfig, DEFAULT_TOKEN_ID, DEFAULT_TOKEN_SECRET,
};
use felhom_types::HttpsUrl as Url;
use serde_json::Value;
use tempfile::TempDir;

/// The hub key of these tests: distinctive, so a leak is easy to find.
pub const KEY: &str = "hub-it-key-Zq9xW3vB7nM2kL5pR8tY";

const GOLDEN: &str = include_str!("../../../../testdata/host-report.golden.json");

/// A PVE simulator with the default host.
pub async fn pve() -> PveSim {
    pve_with(SimConfig::default()).await
}

pub async fn pve_with(config: SimConfig) -> PveSim {
    PveSim::start(config).await.expect("pve simulator starts")
}

/// The agent's PVE client for `sim`, pinned to its certificate.
pub fn pve_client(sim: &PveSim) -> PveClient {
    let token = ApiToken::new(DEFAULT_TOKEN_ID, Secret::new(DEFAULT_TOKEN_SECRET)).unwrap();
    let pin = sim.fingerprint().parse().unwrap();
    let mut cfg = PveClientConfig::new(
        sim.base_url(),
        sim.node(),
        token,
        TlsTrust::Pinned(vec![pin]),
    );
    cfg.timeout = Duration::from_secs(10);
    PveClient::new(cfg).unwrap()
}

/// A hub simulator accepting [`KEY`].
pub async fn hub() -> HubSim {
    HubSim::start(HubSimConfig {
        api_key: KEY.into(),
        ..HubSimConfig::default()
    })
    .await
    .expect("hub simulator starts")
}

/// Writes `pem` to a file in `dir` and returns its path.
pub fn write_ca(dir: &TempDir, name: &str, pem: &str) -> std::path::PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

/// The agent's hub client for `hub`, trusting its CA, with `key` and `timeout`.
pub fn hub_client_with(hub: &HubSim, dir: &TempDir, key: &str, timeout: Duration) -> HubClient {
    HubClient::new(HubClientConfig {
        url: Url::parse(&hub.base_url()).unwrap(),
        api_key: Secret::new(key),
        trust: felhom_proxmox::TlsTrust::CaFile(write_ca(dir, "hub-ca.pem", &hub.ca_pem())),
        host_id: "pve-01".into(),
        timeout,
    })
    .unwrap()
}

/// The agent's hub client for `hub` with [`KEY`] and a 10 s timeout.
pub fn hub_client(hub: &HubSim, dir: &TempDir) -> HubClient {
    hub_client_with(hub, dir, KEY, Duration::from_secs(10))
}

/// Forwards to a real client, counting guest config reads and the most at once.
pub struct CountingApi<A> {
    pub inner: A,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    config_reads: AtomicUsize,
    /// With a gate, each config read waits until this many were in flight at once (the peak
    /// is published on `peak`): proof of overlap from events, not from timing.
    gate: Option<usize>,
    peak: tokio::sync::watch::Sender<usize>,
}

impl<A> CountingApi<A> {
    pub fn new(inner: A) -> Self {
        CountingApi {
            inner,
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            config_reads: AtomicUsize::new(0),
            gate: None,
            peak: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Like [`CountingApi::new`], but no config read returns before `level` reads have been
    /// in flight together: a collector that overlaps fewer than `level` reads hangs (the test
    /// bounds it with a timeout), one that overlaps more shows in [`CountingApi::max_in_flight`].
    pub fn gated(inner: A, level: usize) -> Self {
        CountingApi {
            gate: Some(level),
            ..CountingApi::new(inner)
        }
    }

    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn config_reads(&self) -> usize {
        self.config_reads.load(Ordering::SeqCst)
    }
}

impl<A: ProxmoxApi> ProxmoxApi for CountingApi<A> {
    fn node(&self) -> &str {
        self.inner.node()
    }

    async fn node_status(&self) -> Result<NodeStatus, ProxmoxError> {
        self.inner.node_status().await
    }

    async fn list_lxc(&self) -> Result<Vec<GuestSummary>, ProxmoxError> {
        self.inner.list_lxc().await
    }

    async fn guest_config(&self, vmid: u32) -> Result<LxcConfig, ProxmoxError> {
        self.config_reads.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        if let Some(level) = self.gate {
            let mut peak = self.peak.subscribe();
            self.peak.send_modify(|p| *p = (*p).max(now));
            // Once reached the gate stays open: later reads pass at once.
            let _ = peak.wait_for(|p| *p >= level).await;
        }
        let result = self.inner.guest_config(vmid).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }

    async fn node_storage(&self) -> Result<Vec<StorageInfo>, ProxmoxError> {
        self.inner.node_storage().await
    }

    async fn storage_content(
        &self,
        storage: &str,
        content: Option<&str>,
        vmid: Option<u32>,
    ) -> Result<Vec<StorageContent>, ProxmoxError> {
        self.inner.storage_content(storage, content, vmid).await
    }
}

/// Everything every test logged (see [`logs`]).
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// All captured output so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The captured lines containing `marker` (e.g. a simulator's unique URL).
    pub fn lines_with(&self, marker: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(marker))
            .map(str::to_owned)
            .collect()
    }
}

pub struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log capture of this test binary: one global subscriber taking every event at every
/// level (hyper's and rustls' too) from every test. Global, because a per-test scoped
/// subscriber races with tracing's process-wide callsite cache when tests run in parallel.
/// Tests find their own lines by a marker unique to them (their simulator's URL).
pub fn logs() -> &'static Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let sink = logs.0.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
        logs
    })
}

/// Paths with element indexes folded (`guests[3].spec` → `guests[].spec`), each with the JSON
/// kinds seen there.
fn folded(value: &Value) -> BTreeMap<String, BTreeSet<Kind>> {
    let mut out: BTreeMap<String, BTreeSet<Kind>> = BTreeMap::new();
    for (path, leaf) in shape_of(value).unwrap().0 {
        let mut p = String::new();
        let mut in_index = false;
        for c in path.chars() {
            match c {
                '[' => {
                    in_index = true;
                    p.push('[');
                }
                ']' => {
                    in_index = false;
                    p.push(']');
                }
                _ if in_index => {}
                c => p.push(c),
            }
        }
        out.entry(p).or_default().insert(leaf.kind);
    }
    out
}

/// Fields the contract lets the agent omit (`spec` and `description` of a guest, a backup's
/// `notes`), and everything under them.
fn optional(path: &str) -> bool {
    [
        "guests[].spec",
        "guests[].description",
        "backups[].notes",
        "journal.reason",
    ]
    .iter()
    .any(|o| path == *o || path.starts_with(&format!("{o}.")))
}

/// Asserts that a report as received has the golden file's shape: every path it has exists in
/// the golden file with the same JSON type, and every golden field of every object it has is
/// present unless optional.
pub fn assert_golden_shape(raw: &Value) {
    let golden = folded(&serde_json::from_str(GOLDEN).unwrap());
    let got = folded(raw);
    let mut problems = Vec::new();
    for (path, kinds) in &got {
        match golden.get(path) {
            None => problems.push(format!("{path}: not in the golden file")),
            Some(g) if !kinds.is_subset(g) => {
                problems.push(format!("{path}: {kinds:?} where the golden file has {g:?}"))
            }
            Some(_) => {}
        }
    }
    for path in golden.keys() {
        let parent = match path.rfind(['.', '[']) {
            Some(i) => &path[..i],
            None => "",
        };
        let parent_present = got.contains_key(parent);
        if parent_present && !got.contains_key(path) && !optional(path) && !path.ends_with("[]") {
            problems.push(format!("{path}: missing"));
        }
    }
    assert!(
        problems.is_empty(),
        "report shape differs from the golden file:\n  {}",
        problems.join("\n  ")
    );
}
