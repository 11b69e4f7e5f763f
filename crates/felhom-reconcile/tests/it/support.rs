//! Shared fixtures: a simulated PVE host with the real client pinned to its certificate, and an
//! op journal in a temp dir whose records can be read back in order.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use felhom_journal::{Log, OpJournal, OpRecord, OpState};
use felhom_proxmox::PveClient;
use felhom_pve_sim::{PveSim, SimConfig};
use felhom_reconcile::{DesiredGuest, DesiredState, SharedJournal, StaticProvider};

/// Unix seconds handed to the engine and recovery.
pub const NOW: u64 = 1_700_000_000;

/// A running simulator and a client for it over real TLS, pinned to its fingerprint.
pub struct Host {
    pub sim: PveSim,
    pub api: Arc<PveClient>,
}

pub async fn host(config: SimConfig) -> Host {
    let sim = PveSim::start(config).await.expect("simulator starts");
    let api = Arc::new(felhom_testkit::pve::client(&sim));
    Host { sim, api }
}

impl Host {
    /// Requests the simulator answered with any method but GET: attempted mutations.
    pub fn mutating_requests(&self) -> Vec<String> {
        self.sim
            .state()
            .request_log()
            .into_iter()
            .filter(|r| r.method != "GET")
            .map(|r| format!("{} {} {}", r.method, r.path, r.status))
            .collect()
    }

    /// Task types the simulator ran, oldest first.
    pub fn task_types(&self) -> Vec<String> {
        self.sim
            .state()
            .tasks()
            .into_iter()
            .map(|t| t.task_type)
            .collect()
    }
}

pub fn provider(guests: Vec<DesiredGuest>) -> StaticProvider {
    StaticProvider::new(DesiredState::new(guests).expect("valid desired state"))
}

/// An op journal in a temp dir.
pub struct Journal {
    _dir: tempfile::TempDir,
    path: PathBuf,
    pub shared: SharedJournal,
}

pub fn journal() -> Journal {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("journal.log");
    let (journal, torn) = OpJournal::open(&path).expect("open journal");
    assert!(torn.is_none());
    Journal {
        _dir: dir,
        path,
        shared: Arc::new(Mutex::new(journal)),
    }
}

/// One op's lifecycle as written: `(vmid, action, states in order)`.
pub type Lifecycle = (Option<u32>, String, Vec<OpState>);

impl Journal {
    /// Closes the journal (every other handle must be gone) and reads back each op's records,
    /// ops in order of first appearance.
    pub fn lifecycles(self) -> Vec<Lifecycle> {
        let journal = Arc::try_unwrap(self.shared).expect("journal still shared");
        drop(journal);
        let records = Log::<OpRecord>::open(&self.path).expect("reopen").records;
        let mut ops: Vec<(String, Lifecycle)> = Vec::new();
        for record in records {
            let id = record.op_id.to_string();
            match ops.iter_mut().find(|(op, _)| *op == id) {
                Some((_, (_, _, states))) => states.push(record.state),
                None => ops.push((id, (record.vmid, record.action, vec![record.state]))),
            }
        }
        ops.into_iter().map(|(_, lifecycle)| lifecycle).collect()
    }
}

/// The state names of one lifecycle.
pub fn names(states: &[OpState]) -> Vec<&'static str> {
    states.iter().map(OpState::name).collect()
}

/// The lifecycle of the op for `vmid` + `action` (exactly one expected).
pub fn lifecycle_of<'a>(all: &'a [Lifecycle], vmid: u32, action: &str) -> &'a [OpState] {
    let mut found = all
        .iter()
        .filter(|(v, a, _)| *v == Some(vmid) && a == action);
    let (_, _, states) = found
        .next()
        .unwrap_or_else(|| panic!("no {action} op for {vmid} in {all:?}"));
    assert!(found.next().is_none(), "several {action} ops for {vmid}");
    states
}
