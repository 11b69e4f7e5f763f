//! Shared test plumbing: simulators and clients wired together, a `ProxmoxApi` wrapper that
//! measures concurrent config reads; the log capture and the golden-shape check are the
//! testkit's and hub-proto's.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use felhom_hub::hub::{HubClient, HubClientConfig};
use felhom_hub_proto::golden_file::report_shape_check;
use felhom_proxmox::{
    GuestSummary, LxcConfig, NodeStatus, ProxmoxApi, ProxmoxError, PveClient, Secret,
    StorageContent, StorageInfo,
};
use felhom_pve_sim::{HubSim, HubSimConfig, PveSim, SimConfig};
use felhom_testkit::logs::LogCapture;
use felhom_testkit::pve::{client_with, ClientOpts};
use felhom_types::HttpsUrl as Url;
use serde_json::Value;
use tempfile::TempDir;

/// The hub key of these tests: distinctive, so a leak is easy to find.
pub const KEY: &str = "hub-it-key-Zq9xW3vB7nM2kL5pR8tY";

/// A PVE simulator with the default host.
pub async fn pve() -> PveSim {
    pve_with(SimConfig::default()).await
}

pub async fn pve_with(config: SimConfig) -> PveSim {
    PveSim::start(config).await.expect("pve simulator starts")
}

/// The agent's PVE client for `sim`, pinned to its certificate, with a 10 s timeout.
pub fn pve_client(sim: &PveSim) -> PveClient {
    client_with(
        sim,
        ClientOpts {
            timeout: Duration::from_secs(10),
            ..ClientOpts::default()
        },
    )
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
    /// With a list gate, the guest list is not read before this many config reads started.
    list_gate: Option<usize>,
    started: tokio::sync::watch::Sender<usize>,
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
            list_gate: None,
            started: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Like [`CountingApi::new`], but the guest list is read only once `reads` config reads
    /// have started: a collector that waits for the list before reading any config hangs (the
    /// test bounds it with a timeout).
    pub fn list_after_reads(inner: A, reads: usize) -> Self {
        CountingApi {
            list_gate: Some(reads),
            ..CountingApi::new(inner)
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

    fn caller(&self) -> Option<&str> {
        self.inner.caller()
    }

    async fn node_status(&self) -> Result<NodeStatus, ProxmoxError> {
        self.inner.node_status().await
    }

    async fn list_lxc(&self) -> Result<Vec<GuestSummary>, ProxmoxError> {
        if let Some(reads) = self.list_gate {
            let _ = self.started.subscribe().wait_for(|n| *n >= reads).await;
        }
        self.inner.list_lxc().await
    }

    async fn guest_config(&self, vmid: u32) -> Result<LxcConfig, ProxmoxError> {
        let reads = self.config_reads.fetch_add(1, Ordering::SeqCst) + 1;
        self.started.send_replace(reads);
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

/// The log capture of this test binary (the testkit's: one global subscriber, every level).
/// Tests find their own lines by a marker unique to them (their simulator's URL).
pub fn logs() -> LogCapture {
    LogCapture::start()
}

/// Asserts that a report as received has the golden shape (hub-proto's one check).
#[track_caller]
pub fn assert_golden_shape(raw: &Value) {
    if let Err(e) = report_shape_check(raw) {
        panic!("{e}");
    }
}
