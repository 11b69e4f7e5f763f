//! felhom-authz: operator-signed ops. Verifies an SSHSIG (`ssh-keygen -Y sign -n felhom-op-v1`)
//! over an op blob against signer keys pinned in the host's own config, then checks the blob's
//! target, time window and nonce, and records the nonce durably so the op runs at most once.
//!
//! The pipeline order is fixed and load-bearing (see [`Verifier`]): armor → namespace → public
//! key → allow-list by key material → crypto over the raw received bytes → blob → target →
//! time window → (when the caller names the action: role scope → binding) → nonce recorded
//! last.
//!
//! This crate must never: trust the hub or a blob's `key_id` to pick a signer, re-serialize the
//! blob before verifying it, burn a nonce for an op that failed any earlier stage, report a
//! nonce as fresh when it could not be recorded durably, or do any I/O besides the nonce store.

mod armor;
mod blob;
mod envelope;
mod error;
mod file_store;
#[doc(hidden)]
pub mod fuzz;
mod nonce;
mod op;
mod signer;
mod verifier;

pub use blob::BlobError;
pub use error::{AuthzError, BadSignatureReason, Malformed, ReplayReason};
pub use file_store::{FileNonceStore, NonceRecord};
pub use nonce::{MemoryNonceStore, NonceOutcome, NonceStore, NonceStoreError};
pub use op::{BindingField, Expectation, Op, UnknownOp, DESTRUCTIVE_OPS};
pub use signer::{check_signers, Role, Signer, SignerError};
pub use verifier::{
    VerifiedOp, Verifier, DEFAULT_MAX_WINDOW, DEFAULT_SKEW, MAX_BLOB_LEN, MAX_SIGNATURE_LEN,
};

/// The SSHSIG namespace every operator signature must carry. A signature made for any other
/// purpose (git commits, files: `-n file`) is refused, so it can never be replayed as an op.
pub const NAMESPACE: &str = "felhom-op-v1";
