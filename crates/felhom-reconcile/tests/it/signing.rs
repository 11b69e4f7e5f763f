//! Real OpenSSH signatures minted in-process (what `ssh-keygen -Y sign -n felhom-op-v1` makes
//! with the same key), op blobs, and a rig: the simulator, the real client, a file-backed
//! journal and nonce store, the gate, the PVE executor and the signed-job runner — reopenable
//! from the same files, as a daemon restart would.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use felhom_authz::{FileNonceStore, Role, Signer, NAMESPACE};
use felhom_journal::OpJournal;
use felhom_proxmox::{PollSchedule, WaitOptions};
use felhom_pve_sim::SimConfig;
use felhom_reconcile::{
    MemoryAudit, PveExecutor, Queue, ReversibilityGate, SharedJournal, SignedJobs, SignedOp,
    SignerStore,
};
use serde_json::{json, Value};
use ssh_key::private::Ed25519Keypair;
use ssh_key::{HashAlg, LineEnding, PrivateKey};
use time::macros::datetime;
use time::OffsetDateTime;

use crate::support::{host, Host};

pub const HOST_ID: &str = "pve-01";
/// The gate's clock; blobs are valid 11:55–12:10.
pub const CLOCK: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);
pub const UNIX_NOW: u64 = 1_780_315_200;

pub fn key(seed: u8) -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
}

/// Operational "ops-anna" (seed 1), recovery "ops-rec" (seed 2); seed 9 is pinned by nobody.
pub const ANNA: u8 = 1;
pub const RECOVERY: u8 = 2;
pub const STRANGER: u8 = 9;

pub fn line(seed: u8) -> String {
    key(seed).public_key().to_openssh().unwrap()
}

pub fn signer(seed: u8, key_id: &str, role: Role) -> Signer {
    Signer::from_authorized_key(key_id, role, &line(seed)).unwrap()
}

pub fn signers() -> Vec<Signer> {
    vec![
        signer(ANNA, "ops-anna", Role::Operational),
        signer(RECOVERY, "ops-rec", Role::Recovery),
    ]
}

pub fn sign_ns(seed: u8, namespace: &str, blob: &[u8]) -> Vec<u8> {
    key(seed)
        .sign(namespace, HashAlg::Sha512, blob)
        .unwrap()
        .to_pem(LineEnding::LF)
        .unwrap()
        .into_bytes()
}

/// A blob for `op` on `guest` with `params`, nonce `nonce`, valid around [`CLOCK`]; `edit`
/// changes any field before it is serialized.
pub fn blob_with(
    op: &str,
    guest: Option<u32>,
    params: Value,
    nonce: &str,
    edit: impl FnOnce(&mut Value),
) -> Vec<u8> {
    let mut v = json!({
        "op": op,
        "host_id": HOST_ID,
        "guest_id": guest,
        "params": params,
        "nonce": nonce,
        "not_before": "2026-06-01T11:55:00Z",
        "not_after": "2026-06-01T12:10:00Z",
        "key_id": "ops-anna",
    });
    edit(&mut v);
    serde_json::to_vec(&v).unwrap()
}

pub fn blob(op: &str, guest: Option<u32>, params: Value, nonce: &str) -> Vec<u8> {
    blob_with(op, guest, params, nonce, |_| {})
}

pub fn signed(seed: u8, blob: Vec<u8>) -> SignedOp {
    let signature = sign_ns(seed, NAMESPACE, &blob);
    SignedOp { blob, signature }
}

pub fn fast_wait() -> WaitOptions {
    WaitOptions {
        timeout: Duration::from_secs(10),
        schedule: PollSchedule {
            initial: Duration::from_millis(5),
            factor: 1.0,
            max: Duration::from_millis(5),
        },
        ..WaitOptions::default()
    }
}

/// Files that survive a "restart".
pub struct Files {
    pub dir: tempfile::TempDir,
}

impl Files {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn journal(&self) -> PathBuf {
        self.dir.path().join("journal.log")
    }
    pub fn nonces(&self) -> PathBuf {
        self.dir.path().join("nonces.log")
    }
    pub fn signers(&self) -> PathBuf {
        SignerStore::path_next_to(&self.nonces())
    }
}

pub type Gate = ReversibilityGate<FileNonceStore>;

/// Everything a daemon holds, over files that outlive it.
pub struct Agent {
    pub journal: SharedJournal,
    pub audit: Arc<MemoryAudit>,
    pub gate: Arc<Gate>,
    pub jobs: SignedJobs<FileNonceStore, PveExecutor<felhom_proxmox::PveClient>>,
    pub queue: Queue,
}

impl Agent {
    /// Opens the agent's state from `files` (a restart when they already exist). Signers: the
    /// signers file when present, else `configured`.
    pub fn open(host: &Host, files: &Files, configured: Vec<Signer>) -> Agent {
        let (journal, _) = OpJournal::open(files.journal()).unwrap();
        let journal: SharedJournal = Arc::new(Mutex::new(journal));
        let store = Arc::new(FileNonceStore::open(files.nonces()).unwrap());
        let signer_store = SignerStore::open(files.signers()).unwrap();
        let signers = signer_store.signers().unwrap().unwrap_or(configured);
        let audit = Arc::new(MemoryAudit::new());
        let gate = Arc::new(
            ReversibilityGate::new(
                signers,
                store,
                HOST_ID,
                Some(Arc::clone(&journal)),
                audit.clone(),
            )
            .with_clock(|| CLOCK),
        );
        let queue = Queue::new(std::num::NonZeroUsize::new(4).unwrap());
        let jobs = SignedJobs::new(
            Arc::clone(&gate),
            Arc::new(PveExecutor::new(Arc::clone(&host.api), fast_wait())),
            queue.clone(),
            Arc::clone(&journal),
            Some(Arc::new(Mutex::new(signer_store))),
        );
        Agent {
            journal,
            audit,
            gate,
            jobs,
            queue,
        }
    }

    /// Audit decisions so far, as `(action, decision, reason)`.
    pub fn decisions(&self) -> Vec<(String, String, Option<String>)> {
        self.audit
            .entries()
            .into_iter()
            .map(|e| (e.action, e.decision, e.reason))
            .collect()
    }
}

pub async fn sim_host() -> Host {
    host(SimConfig::default()).await
}
