//! The verifier: the fixed pipeline from armored signature and blob bytes to a [`VerifiedOp`].
//! Every stage but the last is a pure decision over its inputs and the injected `now`; the
//! nonce store is the only I/O and is touched last.

use std::fmt;
use std::time::Duration;

use ssh_key::encoding::{Decode, Reader};
use ssh_key::public::KeyData;
use ssh_key::{Algorithm, HashAlg, Signature, SshSig};
use time::OffsetDateTime;

use crate::error::{AuthzError, BadSignatureReason, Malformed, ReplayReason};
use crate::nonce::{NonceOutcome, NonceStore};
use crate::op::{BindingField, Expectation, Op};
use crate::signer::{check_key_policy, KeyPolicyError, Signer};
use crate::{armor, blob, envelope, BlobError, NAMESPACE};

/// Default clock-skew tolerance on both ends of a blob's window.
pub const DEFAULT_SKEW: Duration = Duration::from_secs(60);
/// Default longest window (`not_after - not_before`) a blob may ask for: a signature is meant
/// to be fresh, not a standing permission.
pub const DEFAULT_MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// Largest op blob accepted (checked before hashing).
pub const MAX_BLOB_LEN: usize = 64 * 1024;
/// Largest armored signature accepted (an RSA-16384 SSHSIG is about 6 KiB).
pub const MAX_SIGNATURE_LEN: usize = 64 * 1024;

/// FIDO authenticator flag: the user touched the key.
const SK_USER_PRESENCE: u8 = 0x01;
/// flags (u8) and counter (u32) trail an sk signature.
const SK_TRAILER_LEN: usize = 5;

/// A signed op that passed every stage.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedOp {
    /// The operation name, e.g. `destroy_guest`.
    pub op: String,
    /// The target host (equal to this verifier's host id).
    pub host_id: String,
    /// The target guest's vmid, or `None` for a host-level op.
    pub guest_id: Option<u32>,
    /// The op's parameters, as signed.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// The blob's `key_id`: the signer's claim, informational only. The trusted identity is
    /// `signer.key_id` (from config), matched by key material; see
    /// [`VerifiedOp::key_id_mismatch`].
    pub key_id: String,
    /// The blob's nonce, now recorded (by [`Verifier::verify`]; not by [`Verifier::check`]).
    pub nonce: String,
    /// Start of the signed window.
    pub not_before: OffsetDateTime,
    /// End of the signed window.
    pub not_after: OffsetDateTime,
    /// The pinned signer whose key made the signature, with its role.
    pub signer: Signer,
}

impl VerifiedOp {
    /// What was accepted, for a person: the op and its target, the signer (role, algorithm,
    /// fingerprint), the blob's `key_id` against the signer's, the window as evaluated at `at`,
    /// and the params. One line each, two-space indented after the first; the nonce is left to
    /// the caller, which knows whether it was recorded.
    pub fn describe(&self, at: OffsetDateTime) -> String {
        let target = match self.guest_id {
            Some(vmid) => format!("guest {vmid} of host {}", self.host_id),
            None => format!("host {}", self.host_id),
        };
        let mut lines = vec![
            format!("accepted: {} on {target}", self.op),
            format!(
                "  signer  {} ({}, {} {})",
                self.signer.key_id,
                self.signer.role,
                self.signer.algorithm(),
                self.signer.fingerprint()
            ),
        ];
        // key_id is advisory (the key material picked the signer), but a blob naming someone
        // else is worth a loud line: wrong key, or a wrong name.
        lines.push(if self.key_id_mismatch() {
            format!(
                "  key_id  {:?} in the blob, but signed by {:?}: MISMATCH (advisory: the key \
                 material decides; check which key signed this)",
                self.key_id,
                self.signer_key_id()
            )
        } else {
            format!(
                "  key_id  {:?} in the blob (matches the signer)",
                self.key_id
            )
        });
        lines.push(format!(
            "  window  {} .. {} (evaluated at {})",
            crate::error::rfc3339(self.not_before),
            crate::error::rfc3339(self.not_after),
            crate::error::rfc3339(at)
        ));
        lines.push(format!(
            "  params  {}",
            serde_json::Value::Object(self.params.clone())
        ));
        lines.join("\n")
    }

    /// Whether the blob's `key_id` names someone other than the pinned signer whose key made
    /// the signature (another signer, or nobody). Not a refusal — SPEC keeps `key_id`
    /// advisory — but worth showing: the operator may have picked the wrong key or name.
    pub fn key_id_mismatch(&self) -> bool {
        self.key_id != self.signer.key_id
    }

    /// The matched pinned signer's `key_id` (the trusted identity).
    pub fn signer_key_id(&self) -> &str {
        &self.signer.key_id
    }
}

/// Verifies operator-signed ops against pinned signers for one host.
///
/// Stages, in order (each refuses with its own [`AuthzError`] variant):
/// 1. parse the armor and the SSHSIG envelope (version 1, empty reserved, sha256/sha512);
/// 2. the namespace must be [`NAMESPACE`];
/// 3. parse the signer's public key from the envelope;
/// 4. allow-list: that key's material must be a pinned signer's (never by key_id/comment);
/// 5. crypto over the raw received blob bytes, with the algorithm policy (no `ssh-rsa`,
///    algorithm matches the key, RSA ≥ 2048, security keys need user presence);
/// 6. parse the blob; 7. its `host_id` must be this host; 8. `now` within the window, give
///    or take the skew;
/// 9. with an [`Expectation`] ([`Verifier::verify_for`]): role scope — the signer's role must
///    allow the blob's op ([`crate::Role::allows`]; an unknown op is denied);
/// 10. with an [`Expectation`]: binding — the blob's `op`, `guest_id` and `params` must equal
///     the action about to run (the host was bound at 7);
/// 11. record the nonce — last, so an op refused by any stage never burns it.
///
/// Concurrency: stages 1–10 are pure, and recording is the store's atomic check-and-insert, so
/// of two concurrent verifies of one blob exactly one gets `Ok`.
pub struct Verifier<N: NonceStore> {
    signers: Vec<Signer>,
    nonce_store: N,
    host_id: String,
    skew: Duration,
    max_window: Duration,
    require_user_presence: bool,
}

impl<N: NonceStore> fmt::Debug for Verifier<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("host_id", &self.host_id)
            .field("signers", &self.signers)
            .field("skew", &self.skew)
            .field("max_window", &self.max_window)
            .field("require_user_presence", &self.require_user_presence)
            .finish_non_exhaustive()
    }
}

impl<N: NonceStore> Verifier<N> {
    /// A verifier for `host_id` trusting exactly `signers`.
    ///
    /// Signers pinning the same key material twice would make the role ambiguous: all copies
    /// of such a key are disabled (logged as an error) so it verifies nothing. Validate config
    /// with [`crate::check_signers`] to report this up front.
    pub fn new(signers: Vec<Signer>, nonce_store: N, host_id: impl Into<String>) -> Self {
        let ambiguous: Vec<bool> = signers
            .iter()
            .enumerate()
            .map(|(i, s)| {
                signers
                    .iter()
                    .enumerate()
                    .any(|(j, t)| i != j && s.same_key(t))
            })
            .collect();
        let signers = signers
            .into_iter()
            .zip(ambiguous)
            .filter_map(|(signer, ambiguous)| {
                if ambiguous {
                    tracing::error!(
                        key_id = %signer.key_id,
                        fingerprint = %signer.fingerprint(),
                        "signer key is pinned more than once: disabled, it verifies nothing"
                    );
                    None
                } else {
                    Some(signer)
                }
            })
            .collect();
        Verifier {
            signers,
            nonce_store,
            host_id: host_id.into(),
            skew: DEFAULT_SKEW,
            max_window: DEFAULT_MAX_WINDOW,
            require_user_presence: true,
        }
    }

    /// Sets the clock-skew tolerance applied to both ends of the window.
    pub fn with_skew(mut self, skew: Duration) -> Self {
        self.skew = skew;
        self
    }

    /// Sets the longest window a blob may ask for (longer is refused as malformed).
    pub fn with_max_window(mut self, max_window: Duration) -> Self {
        self.max_window = max_window;
        self
    }

    /// Whether security-key (sk-*) signatures need the user-presence flag (default: yes).
    /// Turn off only for keys enrolled with `no-touch-required`.
    pub fn require_user_presence(mut self, required: bool) -> Self {
        self.require_user_presence = required;
        self
    }

    /// The signers in force (ambiguous ones removed).
    pub fn signers(&self) -> &[Signer] {
        &self.signers
    }

    /// The nonce store, e.g. to [`NonceStore::prune`] it on the poll cadence.
    pub fn nonce_store(&self) -> &N {
        &self.nonce_store
    }

    /// This host's id.
    pub fn host_id(&self) -> &str {
        &self.host_id
    }

    /// Authenticates a signed op and records its nonce, without binding it to an action: `Ok`
    /// means a pinned signer signed this op for this host, now, for the first time. It does
    /// not check the role or what the op names — a caller about to run an action uses
    /// [`Verifier::verify_for`].
    ///
    /// `blob` must be the exact bytes that were signed; `armored_sig` the `ssh-keygen -Y sign`
    /// output. The nonce is on stable storage (for a durable store) before this returns `Ok`.
    pub fn verify(
        &self,
        blob: &[u8],
        armored_sig: &[u8],
        now: OffsetDateTime,
    ) -> Result<VerifiedOp, AuthzError> {
        self.verify_nonce(blob, armored_sig, now, None, false)
    }

    /// Runs every stage, role scope and binding to `expected` included, and records the nonce:
    /// `Ok` means the signature authorizes exactly `expected`, once. A refusal for role or
    /// binding leaves the nonce unused, so the same signature still authorizes the action it
    /// does name.
    pub fn verify_for(
        &self,
        blob: &[u8],
        armored_sig: &[u8],
        now: OffsetDateTime,
        expected: &Expectation,
    ) -> Result<VerifiedOp, AuthzError> {
        self.verify_nonce(blob, armored_sig, now, Some(expected), false)
    }

    /// [`Verifier::verify_for`] for an op the caller **resumes**: its earlier verification
    /// recorded the nonce, and the caller's own durable record proves that use never reached
    /// its target (felhom-reconcile's startup recovery: journaled, killed before the request,
    /// no task of it on the node). Every stage runs again (signer, host, time window, role,
    /// binding); a nonce already recorded is then accepted instead of refused as a replay, a
    /// fresh one is recorded. Never call it without that proof: it is the one way past the
    /// replay check, and the caller's journal is what keeps the resumed op one-shot.
    pub fn verify_resumed_for(
        &self,
        blob: &[u8],
        armored_sig: &[u8],
        now: OffsetDateTime,
        expected: &Expectation,
    ) -> Result<VerifiedOp, AuthzError> {
        self.verify_nonce(blob, armored_sig, now, Some(expected), true)
    }

    fn verify_nonce(
        &self,
        blob: &[u8],
        armored_sig: &[u8],
        now: OffsetDateTime,
        expected: Option<&Expectation>,
        resumed: bool,
    ) -> Result<VerifiedOp, AuthzError> {
        let (op, keep_until) = self
            .decide(blob, armored_sig, now, expected)
            .inspect_err(log_refusal)?;
        match self.nonce_store.record(&op.nonce, keep_until) {
            Ok(NonceOutcome::Seen) if resumed => {
                tracing::warn!(
                    op = %op.op,
                    guest_id = ?op.guest_id,
                    signer = %op.signer.key_id,
                    nonce = %op.nonce,
                    "signed op verified again and resumed: its earlier use never reached pve"
                );
                Ok(op)
            }
            Ok(NonceOutcome::Fresh) => {
                tracing::info!(
                    op = %op.op,
                    guest_id = ?op.guest_id,
                    signer = %op.signer.key_id,
                    blob_key_id = %op.key_id,
                    role = %op.signer.role,
                    nonce = %op.nonce,
                    bound = expected.is_some(),
                    "signed op verified"
                );
                Ok(op)
            }
            Ok(NonceOutcome::Seen) => Err(AuthzError::Replay {
                nonce: op.nonce,
                reason: ReplayReason::Seen,
            }),
            Err(e) => {
                tracing::error!(nonce = %op.nonce, error = %e, "nonce store failed: op refused");
                Err(AuthzError::Replay {
                    nonce: op.nonce,
                    reason: ReplayReason::StoreFailed(e),
                })
            }
        }
        .inspect_err(log_refusal)
    }

    /// Dry run: every stage, with the nonce only looked up (a used or unknowable nonce still
    /// refuses), never recorded. Serves `felhom-agent verify-op`.
    pub fn check(
        &self,
        blob: &[u8],
        armored_sig: &[u8],
        now: OffsetDateTime,
    ) -> Result<VerifiedOp, AuthzError> {
        self.check_inner(blob, armored_sig, now, None)
    }

    /// Dry run of [`Verifier::verify_for`]: every stage including role scope and binding,
    /// nothing recorded. Previews what the gate would decide for `expected`.
    pub fn check_for(
        &self,
        blob: &[u8],
        armored_sig: &[u8],
        now: OffsetDateTime,
        expected: &Expectation,
    ) -> Result<VerifiedOp, AuthzError> {
        self.check_inner(blob, armored_sig, now, Some(expected))
    }

    fn check_inner(
        &self,
        blob: &[u8],
        armored_sig: &[u8],
        now: OffsetDateTime,
        expected: Option<&Expectation>,
    ) -> Result<VerifiedOp, AuthzError> {
        let (op, _) = self.decide(blob, armored_sig, now, expected)?;
        if self.nonce_store.seen(&op.nonce) {
            return Err(AuthzError::Replay {
                nonce: op.nonce,
                reason: ReplayReason::Seen,
            });
        }
        Ok(op)
    }

    /// Stages 1–10: pure. Returns the op and how long its nonce must be kept.
    fn decide(
        &self,
        blob_bytes: &[u8],
        armored_sig: &[u8],
        now: OffsetDateTime,
        expected: Option<&Expectation>,
    ) -> Result<(VerifiedOp, OffsetDateTime), AuthzError> {
        let signer = self.authenticate(blob_bytes, armored_sig)?;

        // 6. The blob, parsed from the very bytes that were verified.
        let blob = blob::parse(blob_bytes, self.max_window)
            .map_err(|e| AuthzError::Malformed(Malformed::Blob(e)))?;
        if blob.key_id != signer.key_id {
            // Advisory only (identity is the key material), but an operator should see it.
            tracing::warn!(
                blob_key_id = %blob.key_id,
                signer = %signer.key_id,
                fingerprint = %signer.fingerprint(),
                "blob key_id names another signer than the one whose key signed it; \
                 the key material decides"
            );
        }

        // 7. Target.
        if blob.host_id != self.host_id {
            return Err(AuthzError::Target {
                expected: self.host_id.clone(),
                got: blob.host_id,
            });
        }

        // 8. Time window, widened by the skew tolerance on both ends.
        let skew = time::Duration::try_from(self.skew).unwrap_or(time::Duration::MAX);
        if blob
            .not_before
            .checked_sub(skew)
            .is_some_and(|start| now < start)
        {
            return Err(AuthzError::NotYetValid {
                not_before: blob.not_before,
                now,
                skew: self.skew,
            });
        }
        let end = blob.not_after.checked_add(skew);
        if end.is_some_and(|end| now > end) {
            return Err(AuthzError::Expired {
                not_after: blob.not_after,
                now,
                skew: self.skew,
            });
        }
        // After `end` the window alone refuses the op, so the nonce may be forgotten then.
        let keep_until = end.unwrap_or(blob.not_after);

        if let Some(expected) = expected {
            // 9. Role scope. An op this agent does not know is denied for every role.
            if !Op::from_wire(&blob.op).is_some_and(|op| signer.role.allows(op)) {
                return Err(AuthzError::RoleDenied {
                    key_id: signer.key_id.clone(),
                    role: signer.role,
                    op: blob.op,
                });
            }
            // 10. Binding: the signature names exactly the action about to run. Params are
            //     compared as JSON values (object key order is not significant).
            let field = if blob.op != expected.op.wire_name() {
                Some(BindingField::Op)
            } else if blob.guest_id != expected.guest_id {
                Some(BindingField::GuestId)
            } else if expected.params.as_object() != Some(&blob.params) {
                Some(BindingField::Params)
            } else {
                None
            };
            if let Some(field) = field {
                return Err(AuthzError::BindingMismatch { field });
            }
        }

        Ok((
            VerifiedOp {
                op: blob.op,
                host_id: blob.host_id,
                guest_id: blob.guest_id,
                params: blob.params,
                key_id: blob.key_id,
                nonce: blob.nonce,
                not_before: blob.not_before,
                not_after: blob.not_after,
                signer: signer.clone(),
            },
            keep_until,
        ))
    }

    /// Stages 1–5: from armor to a pinned signer whose signature verifies over `blob`.
    fn authenticate(&self, blob: &[u8], armored_sig: &[u8]) -> Result<&Signer, AuthzError> {
        let malformed = AuthzError::Malformed;
        if armored_sig.len() > MAX_SIGNATURE_LEN {
            return Err(malformed(Malformed::SignatureTooLarge {
                len: armored_sig.len(),
                max: MAX_SIGNATURE_LEN,
            }));
        }
        // Bounded before anything hashes it.
        if blob.len() > MAX_BLOB_LEN {
            return Err(malformed(Malformed::Blob(BlobError::TooLarge {
                len: blob.len(),
                max: MAX_BLOB_LEN,
            })));
        }

        // 1. Armor and envelope.
        let bytes = armor::decode(armored_sig).map_err(|e| malformed(Malformed::Armor(e)))?;
        let env = envelope::parse(&bytes).map_err(malformed)?;

        // 2. Namespace.
        if env.namespace != NAMESPACE.as_bytes() {
            return Err(AuthzError::Namespace {
                got: String::from_utf8_lossy(env.namespace)
                    .chars()
                    .take(64)
                    .collect(),
            });
        }

        // 3. Public key.
        let mut reader = env.public_key;
        let key = KeyData::decode(&mut reader)
            .map_err(|e| malformed(Malformed::PublicKey(e.to_string())))?;
        if reader.remaining_len() != 0 {
            return Err(malformed(Malformed::PublicKey(format!(
                "{} trailing bytes after the key",
                reader.remaining_len()
            ))));
        }

        // 4. Allow-list by key material (KeyData carries no comment; sk keys include their
        //    application string, so the same ed25519 point under another application differs).
        let Some(signer) = self.signers.iter().find(|s| s.key_data() == &key) else {
            return Err(AuthzError::UnknownSigner {
                algorithm: key.algorithm().as_str().to_string(),
                fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
            });
        };

        // 5. Crypto, with the algorithm policy first.
        let bad = |reason| AuthzError::BadSignature {
            key_id: signer.key_id.clone(),
            reason,
        };
        let mut reader = env.signature;
        let signature = Signature::decode(&mut reader)
            .map_err(|e| bad(BadSignatureReason::Encoding(e.to_string())))?;
        if reader.remaining_len() != 0 {
            return Err(bad(BadSignatureReason::Encoding(format!(
                "{} trailing bytes after the signature",
                reader.remaining_len()
            ))));
        }
        check_algorithm(&key, &signature.algorithm()).map_err(bad)?;
        match check_key_policy(&key) {
            Ok(()) => {}
            Err(KeyPolicyError::WeakRsa(bits)) => {
                return Err(bad(BadSignatureReason::WeakRsaKey { bits }))
            }
            Err(KeyPolicyError::Unsupported(algorithm)) => {
                return Err(bad(BadSignatureReason::AlgorithmMismatch {
                    key: algorithm,
                    signature: signature.algorithm().as_str().to_string(),
                }))
            }
        }
        let sk_trailer = sk_trailer(&signature);
        // The envelope's version (1) and empty reserved field were enforced at stage 1, so
        // rebuilding it from its parts verifies exactly what was received.
        let sshsig = SshSig::new(key, NAMESPACE, env.hash_alg, signature)
            .map_err(|e| bad(BadSignatureReason::Encoding(e.to_string())))?;
        signer
            .public_key()
            .verify(NAMESPACE, blob, &sshsig)
            .map_err(|_| bad(BadSignatureReason::Invalid))?;

        // The flags are signed data: only meaningful once the signature verified.
        if let Some((flags, counter)) = sk_trailer {
            if self.require_user_presence && flags & SK_USER_PRESENCE == 0 {
                return Err(bad(BadSignatureReason::UserPresenceMissing { flags }));
            }
            tracing::info!(
                signer = %signer.key_id,
                counter,
                flags,
                "security-key signature (a counter that goes backwards suggests a cloned key)"
            );
        }
        Ok(signer)
    }
}

/// The signature algorithm must be the one the key type signs with.
fn check_algorithm(key: &KeyData, signature: &Algorithm) -> Result<(), BadSignatureReason> {
    let ok = match (key, signature) {
        (KeyData::Rsa(_), Algorithm::Rsa { hash: None }) => {
            return Err(BadSignatureReason::Sha1Rsa)
        }
        (KeyData::Rsa(_), Algorithm::Rsa { hash: Some(_) }) => true,
        (KeyData::Ed25519(_), Algorithm::Ed25519) => true,
        (KeyData::SkEd25519(_), Algorithm::SkEd25519) => true,
        (KeyData::Ecdsa(k), Algorithm::Ecdsa { curve }) => k.curve() == *curve,
        (KeyData::SkEcdsaSha2NistP256(_), Algorithm::SkEcdsaSha2NistP256) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(BadSignatureReason::AlgorithmMismatch {
            key: key.algorithm().as_str().to_string(),
            signature: signature.as_str().to_string(),
        })
    }
}

/// `(flags, counter)` of a security-key signature.
fn sk_trailer(signature: &Signature) -> Option<(u8, u32)> {
    if !matches!(
        signature.algorithm(),
        Algorithm::SkEd25519 | Algorithm::SkEcdsaSha2NistP256
    ) {
        return None;
    }
    let bytes = signature.as_bytes();
    let trailer = bytes.get(bytes.len().checked_sub(SK_TRAILER_LEN)?..)?;
    Some((
        trailer[0],
        u32::from_be_bytes([trailer[1], trailer[2], trailer[3], trailer[4]]),
    ))
}

fn log_refusal(e: &AuthzError) {
    tracing::debug!(error = %e, "signed op refused");
}
