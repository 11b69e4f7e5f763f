//! felhom-pve-sim: an in-process Proxmox VE 9 simulator over real HTTPS on loopback, for the
//! agent's tests, benchmarks and demo, and [`HubSim`], a felhom hub simulator (`hub`) on the
//! same TLS plumbing.
//!
//! It behaves like PVE, not like any client: the `/api2/json` (and `/api2/extjs`) envelopes,
//! reason phrases as error messages, API tokens with privilege separation and ACL inheritance,
//! parameter checking from the official schema, LXC guests with config/digest/description
//! quirks, snapshots, vzdump backups and restores, worker tasks with real UPIDs and logs, and
//! fault injection ([`Faults`]). The README lists what is modelled and what is not.
//!
//! It must never: listen beyond 127.0.0.1, touch the host's files or processes, block a
//! runtime thread on `std::thread::sleep` (all time is tokio time, so a paused test clock
//! drives tasks; injected latency is also woken early by a timer thread of its own for
//! sub-millisecond precision, and still follows a paused clock), or let a token secret or hub
//! API key reach `Debug` output or an error.
//!
//! ```no_run
//! # async fn demo() -> Result<(), felhom_pve_sim::SimError> {
//! let sim = felhom_pve_sim::PveSim::start(felhom_pve_sim::SimConfig::default()).await?;
//! println!("{} pinned to {}", sim.base_url(), sim.fingerprint());
//! # Ok(()) }
//! ```

mod acl;
mod api;
mod clock;
mod config;
mod error;
mod faults;
pub mod hub;
mod latency;
mod lxcconf;
mod params;
mod server;
mod state;
mod task;
mod tls;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{
    Acl, GuestSpec, ListOrder, SimConfig, SnapshotSpec, StorageSpec, TokenSpec, VolumeSpec,
    ADMINISTRATOR_PRIVILEGES, AGENT_PRIVILEGES, DEFAULT_BACKUP_CTIME, DEFAULT_LIST_SEED,
    DEFAULT_NODE, DEFAULT_PVE_VERSION, DEFAULT_TOKEN_ID, DEFAULT_TOKEN_SECRET, DEFAULT_USER,
};
pub use error::SimError;
pub use faults::{Faults, HttpFault, TaskFault};
pub use hub::{
    reserialized_blob, HubFault, HubFaults, HubRequest, HubSim, HubSimConfig, ReceivedReport,
    WaitTimeout, DEFAULT_HUB_API_KEY, DEFAULT_HUB_MAX_BODY_BYTES,
};
pub use state::{GuestView, RequestRecord, SimState, SnapshotView, TaskView, VolumeView};

/// A running simulator. Dropping it (or [`PveSim::shutdown`]) stops serving.
pub struct PveSim {
    addr: SocketAddr,
    node: String,
    fingerprint: String,
    ca_pem: String,
    faults: Faults,
    state: SimState,
    shutdown: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl fmt::Debug for PveSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PveSim")
            .field("addr", &self.addr)
            .field("node", &self.node)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl PveSim {
    /// Generates certificates, binds `127.0.0.1:0` and starts serving on the current tokio
    /// runtime.
    pub async fn start(config: SimConfig) -> Result<PveSim, SimError> {
        if let Some(e) = params::table_error() {
            return Err(SimError::Config(e));
        }
        let cert = tls::generate(&config.node)?;
        let server_config = tls::server_config(&cert)?;
        let inner = state::Inner::from_config(&config, cert.fingerprint.clone())?;
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(SimError::Bind)?;
        let addr = listener.local_addr().map_err(SimError::Bind)?;
        let state = SimState::new(inner);
        let faults = Faults::with_modes(config.pre_52_errors, config.legacy_types);
        let shared = Arc::new(server::Shared {
            state: state.clone(),
            faults: faults.clone(),
        });
        let (tx, rx) = watch::channel(false);
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
        let server = tokio::spawn(server::serve(listener, acceptor, shared, rx));
        tracing::debug!(%addr, node = %config.node, "pve-sim started");
        Ok(PveSim {
            addr,
            node: config.node.clone(),
            fingerprint: cert.fingerprint,
            ca_pem: cert.ca_pem,
            faults,
            state,
            shutdown: tx,
            server: Some(server),
        })
    }

    /// `https://127.0.0.1:PORT` (append `/api2/json/...`).
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// TCP connections accepted since start: a client that reuses its connections opens none
    /// on a steady beat.
    pub fn connections_accepted(&self) -> u64 {
        self.state.connections_accepted()
    }

    /// SHA-256 of the served leaf certificate (DER), `AB:CD:…` uppercase, as `/nodes` reports
    /// it in `ssl_fingerprint`.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// PEM of the simulator's cluster CA, which signed the leaf.
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// The node name.
    pub fn node(&self) -> String {
        self.node.clone()
    }

    /// Fault injection, changeable while running.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// A handle to inspect and change guests, storage, tasks and counters.
    pub fn state(&self) -> SimState {
        self.state.clone()
    }

    /// Stops accepting, closes open connections and waits for the server task.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for PveSim {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
