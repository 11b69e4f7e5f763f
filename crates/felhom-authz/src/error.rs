//! The verifier's error family: one variant per pipeline stage, each carrying what was wrong.
//!
//! None of these carry a secret: the inputs are public keys, signatures and op blobs.

use std::time::Duration;

use time::OffsetDateTime;

use crate::blob::BlobError;
use crate::nonce::NonceStoreError;
use crate::op::BindingField;
use crate::Role;

/// Why a signed op was refused, by the stage that refused it (in pipeline order).
///
/// Retrying: every variant except [`AuthzError::NotYetValid`] and a
/// [`ReplayReason::StoreFailed`] replay is deterministic — the same bytes get the same answer,
/// so retrying without new input is pointless (never harmful: nothing ran).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthzError {
    /// The signature or the blob could not be parsed, or breaks the format policy.
    #[error("signed op refused: malformed {0}")]
    Malformed(Malformed),
    /// The signature was made for another purpose than felhom ops.
    #[error("signed op refused: signature namespace is {got:?}, expected \"felhom-op-v1\"")]
    Namespace {
        /// The namespace the signature carries (lossily decoded, at most 64 characters).
        got: String,
    },
    /// The signing key's material is not among the pinned signers.
    #[error("signed op refused: signer {algorithm} {fingerprint} is not pinned in authz.signers")]
    UnknownSigner {
        /// Key algorithm name, e.g. `ssh-ed25519`.
        algorithm: String,
        /// `SHA256:…` fingerprint, as `ssh-keygen -l` prints it.
        fingerprint: String,
    },
    /// The key is pinned, but the signature does not verify under this verifier's policy.
    #[error("signed op refused: signature by pinned signer {key_id:?} is not valid: {reason}")]
    BadSignature {
        /// The pinned signer's `key_id` (from config, not from the blob).
        key_id: String,
        /// What was wrong.
        reason: BadSignatureReason,
    },
    /// The op is for another host.
    #[error("signed op refused: it targets host {got:?}, this host is {expected:?}")]
    Target {
        /// This host's id.
        expected: String,
        /// The blob's `host_id`.
        got: String,
    },
    /// The op's window closed (beyond the skew tolerance). Never succeeds later.
    #[error(
        "signed op refused: expired at {} (now {}, clock-skew tolerance {}s)",
        rfc3339(*not_after), rfc3339(*now), skew.as_secs()
    )]
    Expired {
        /// The blob's `not_after`.
        not_after: OffsetDateTime,
        /// The injected current time.
        now: OffsetDateTime,
        /// The tolerance that was allowed.
        skew: Duration,
    },
    /// The op's window has not opened yet (beyond the skew tolerance). May succeed later.
    #[error(
        "signed op refused: not valid before {} (now {}, clock-skew tolerance {}s)",
        rfc3339(*not_before), rfc3339(*now), skew.as_secs()
    )]
    NotYetValid {
        /// The blob's `not_before`.
        not_before: OffsetDateTime,
        /// The injected current time.
        now: OffsetDateTime,
        /// The tolerance that was allowed.
        skew: Duration,
    },
    /// The signer's role may not authorize this op (role scope; only checked when the caller
    /// says what it is about to run, [`crate::Verifier::verify_for`]). The nonce is not burned.
    #[error(
        "signed op refused: signer {key_id:?} has role {role}, which may not authorize {op:?}"
    )]
    RoleDenied {
        /// The pinned signer's `key_id`.
        key_id: String,
        /// Its role.
        role: Role,
        /// The blob's `op` (an op this agent does not know is denied for every role).
        op: String,
    },
    /// The signed blob names another action than the one it was presented for. The nonce is
    /// not burned: the same signature still authorizes the action it does name.
    #[error("signed op refused: its {field} differs from the action about to run")]
    BindingMismatch {
        /// The first field that differs (op, then guest_id, then params).
        field: BindingField,
    },
    /// The nonce was used before, or could not be proven unused (fails safe).
    #[error("signed op refused: nonce {nonce:?} {reason}")]
    Replay {
        /// The blob's nonce.
        nonce: String,
        /// Seen before, or the store failed.
        reason: ReplayReason,
    },
}

/// What made a signature or blob malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// The armored signature exceeds [`crate::MAX_SIGNATURE_LEN`].
    #[error("signature: {len} bytes, the limit is {max}")]
    SignatureTooLarge {
        /// Received length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The `-----BEGIN SSH SIGNATURE-----` armor is broken.
    #[error("signature armor: {0}")]
    Armor(String),
    /// The binary SSHSIG envelope is truncated or otherwise broken.
    #[error("signature envelope: {0}")]
    Envelope(String),
    /// SSHSIG version other than 1.
    #[error("signature envelope: version {0} is not supported (only 1)")]
    UnsupportedVersion(u32),
    /// The envelope's reserved field is not empty.
    #[error("signature envelope: the reserved field holds {0} bytes, it must be empty")]
    ReservedNotEmpty(usize),
    /// A message hash other than sha256 or sha512.
    #[error("signature envelope: hash algorithm {0:?} is not allowed (sha256 or sha512)")]
    HashAlgorithm(String),
    /// The public key inside the signature cannot be decoded.
    #[error("signature public key: {0}")]
    PublicKey(String),
    /// The op blob is not a valid op.
    #[error("op blob: {0}")]
    Blob(BlobError),
}

/// Why a pinned signer's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadSignatureReason {
    /// The signature field cannot be decoded.
    #[error("the signature encoding is invalid: {0}")]
    Encoding(String),
    /// `ssh-rsa` means PKCS#1 v1.5 over SHA-1.
    #[error("ssh-rsa (sha-1) signatures are refused: sign with rsa-sha2-512 or rsa-sha2-256")]
    Sha1Rsa,
    /// e.g. an ecdsa-sha2-nistp384 signature claimed by a P-256 key.
    #[error("signature algorithm {signature} does not match the {key} key")]
    AlgorithmMismatch {
        /// Key algorithm.
        key: String,
        /// Signature algorithm.
        signature: String,
    },
    /// Defence in depth: pinned signers are checked too, this catches a policy change.
    #[error("the rsa key has {bits} bits, the minimum is 2048")]
    WeakRsaKey {
        /// Modulus length.
        bits: u32,
    },
    /// A security key signed without the user touching it.
    #[error("the security key signed without user presence (flags {flags:#04x})")]
    UserPresenceMissing {
        /// The authenticator flags byte.
        flags: u8,
    },
    /// The cryptographic check failed: wrong bytes, wrong key, or a forged signature.
    #[error("the signature does not match the signed bytes")]
    Invalid,
}

/// Why a nonce was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayReason {
    /// The nonce was recorded by an earlier op.
    #[error("was already used")]
    Seen,
    /// The store could not record it durably, so it cannot be proven unused. Retrying against
    /// the same store is refused until it is reopened (a failed fsync is not retried).
    #[error("could not be recorded, so the op is refused: {0}")]
    StoreFailed(NonceStoreError),
}

impl AuthzError {
    /// The stage that refused, as the variant is called (`UnknownSigner`, `BindingMismatch`, …):
    /// what `felhom-agent verify-op` and `felhom-sign check` print.
    pub fn stage(&self) -> &'static str {
        match self {
            AuthzError::Malformed(_) => "Malformed",
            AuthzError::Namespace { .. } => "Namespace",
            AuthzError::UnknownSigner { .. } => "UnknownSigner",
            AuthzError::BadSignature { .. } => "BadSignature",
            AuthzError::Target { .. } => "Target",
            AuthzError::Expired { .. } => "Expired",
            AuthzError::NotYetValid { .. } => "NotYetValid",
            AuthzError::RoleDenied { .. } => "RoleDenied",
            AuthzError::BindingMismatch { .. } => "BindingMismatch",
            AuthzError::Replay { .. } => "Replay",
        }
    }

    /// The same stage as a stable snake_case code (`unknown_signer`, …): the audit's reason.
    pub fn code(&self) -> &'static str {
        match self {
            AuthzError::Malformed(_) => "malformed",
            AuthzError::Namespace { .. } => "namespace",
            AuthzError::UnknownSigner { .. } => "unknown_signer",
            AuthzError::BadSignature { .. } => "bad_signature",
            AuthzError::Target { .. } => "target",
            AuthzError::Expired { .. } => "expired",
            AuthzError::NotYetValid { .. } => "not_yet_valid",
            AuthzError::RoleDenied { .. } => "role_denied",
            AuthzError::BindingMismatch { .. } => "binding_mismatch",
            AuthzError::Replay { .. } => "replay",
        }
    }
}

/// RFC 3339 for messages; falls back to the `Debug` form for years RFC 3339 cannot express.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{t:?}"))
}
