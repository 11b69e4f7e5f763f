//! Shared helpers: the committed ssh-keygen vectors, and keys and signatures minted in-process
//! (security-key signatures, rsa-sha2-256, envelopes bent one field at a time, malleated ECDSA).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use felhom_authz::{MemoryNonceStore, Role, Signer, Verifier, NAMESPACE};
use signature::Signer as _;
use ssh_key::encoding::base64::{Base64, Encoding};
use ssh_key::encoding::Encode;
use ssh_key::private::{EcdsaKeypair, Ed25519Keypair, KeypairData, RsaKeypair};
use ssh_key::public::{KeyData, SkEcdsaSha2NistP256, SkEd25519};
use ssh_key::{
    Algorithm, EcdsaCurve, HashAlg, LineEnding, PrivateKey, PublicKey, Signature, SshSig,
};
use time::macros::datetime;
use time::OffsetDateTime;

/// The injected clock for minted blobs (their window is 2026-06-01 11:55 … 12:10).
pub const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);
/// The injected clock for the committed ssh-keygen vectors: inside their 15-minute window
/// (2026-11-23T10:00:00Z … 10:15:00Z).
pub const VECTOR_NOW: OffsetDateTime = datetime!(2026-11-23 10:05 UTC);
/// The vectors' window fits the default policy; tests still name it to make that explicit.
pub const VECTOR_WINDOW: Duration = felhom_authz::DEFAULT_MAX_WINDOW;
pub const HOST: &str = "pve-01";

pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/sshsig")
}

pub fn read_vector(file: &str) -> Vec<u8> {
    let path = vectors_dir().join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading vector {}: {e}", path.display()))
}

/// A committed case: blob bytes, armored signature, and the signer's authorized_keys line.
pub struct Vector {
    pub blob: Vec<u8>,
    pub sig: Vec<u8>,
    pub public_key: String,
}

pub fn vector(case: &str, key: &str) -> Vector {
    Vector {
        blob: read_vector(&format!("{case}.json")),
        sig: read_vector(&format!("{case}.sig")),
        public_key: String::from_utf8(read_vector(&format!("{key}.pub"))).unwrap(),
    }
}

pub fn vector_signer(key: &str, key_id: &str, role: Role) -> Signer {
    let line = String::from_utf8(read_vector(&format!("{key}.pub"))).unwrap();
    Signer::from_authorized_key(key_id, role, &line).unwrap()
}

/// A verifier for `pve-01` over a fresh memory store that accepts the vectors' long window.
pub fn verifier(signers: Vec<Signer>) -> Verifier<MemoryNonceStore> {
    Verifier::new(signers, MemoryNonceStore::new(), HOST).with_max_window(VECTOR_WINDOW)
}

// ---------------------------------------------------------------------------------------------
// Blobs

static NONCE: AtomicU64 = AtomicU64::new(1);

/// A fresh, unique nonce.
pub fn nonce() -> String {
    format!("test-nonce-{:08}", NONCE.fetch_add(1, Ordering::Relaxed))
}

/// A valid blob for `pve-01`, window NOW-5min … NOW+10min, with `overrides` merged in.
pub fn blob_json(overrides: serde_json::Value) -> Vec<u8> {
    let mut v = serde_json::json!({
        "op": "destroy_guest", "host_id": HOST, "guest_id": 105, "params": {},
        "nonce": nonce(), "not_before": "2026-06-01T11:55:00Z",
        "not_after": "2026-06-01T12:10:00Z", "key_id": "ops-test"
    });
    for (k, val) in overrides.as_object().expect("overrides are an object") {
        v[k] = val.clone();
    }
    serde_json::to_vec(&v).unwrap()
}

pub fn blob() -> Vec<u8> {
    blob_json(serde_json::json!({}))
}

// ---------------------------------------------------------------------------------------------
// Keys

pub fn ed25519_key(seed: u8) -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
}

fn rng() -> ssh_key::rand_core::UnwrapErr<ssh_key::getrandom::SysRng> {
    ssh_key::rand_core::UnwrapErr(ssh_key::getrandom::SysRng)
}

pub fn ecdsa_key(curve: EcdsaCurve) -> PrivateKey {
    PrivateKey::from(EcdsaKeypair::random(&mut rng(), curve).unwrap())
}

/// One RSA-2048 key per test binary: generation is slow in debug builds.
pub fn rsa_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::from(RsaKeypair::random(&mut rng(), 2048).unwrap()))
}

pub fn openssh_line(key: &KeyData, comment: &str) -> String {
    PublicKey::new(key.clone(), comment).to_openssh().unwrap()
}

pub fn signer_for(key: &KeyData, key_id: &str, role: Role) -> Signer {
    Signer::from_authorized_key(key_id, role, &openssh_line(key, "minted")).unwrap()
}

pub fn signer_of(private: &PrivateKey, key_id: &str) -> Signer {
    signer_for(private.public_key().key_data(), key_id, Role::Operational)
}

// ---------------------------------------------------------------------------------------------
// Signatures

/// What `ssh-keygen -Y sign -n felhom-op-v1` would produce with this key.
pub fn sign(private: &PrivateKey, blob: &[u8], hash: HashAlg) -> Vec<u8> {
    sign_ns(private, NAMESPACE, blob, hash)
}

pub fn sign_ns(private: &PrivateKey, namespace: &str, blob: &[u8], hash: HashAlg) -> Vec<u8> {
    private
        .sign(namespace, hash, blob)
        .unwrap()
        .to_pem(LineEnding::LF)
        .unwrap()
        .into_bytes()
}

/// An SSHSIG over `blob` with an RSA key and the rsa-sha2-256 signature algorithm (which
/// ssh-keygen never emits for SSHSIG: it always uses rsa-sha2-512).
pub fn sign_rsa_sha256(private: &PrivateKey, blob: &[u8], hash: HashAlg) -> Vec<u8> {
    let KeypairData::Rsa(rsa) = private.key_data() else {
        panic!("not an rsa key")
    };
    let signed = SshSig::signed_data(NAMESPACE, hash, blob).unwrap();
    let sig = (rsa, Some(HashAlg::Sha256)).try_sign(&signed).unwrap();
    assert_eq!(sig.algorithm().as_str(), "rsa-sha2-256");
    SshSig::new(
        private.public_key().key_data().clone(),
        NAMESPACE,
        hash,
        sig,
    )
    .unwrap()
    .to_pem(LineEnding::LF)
    .unwrap()
    .into_bytes()
}

/// A security key, minted: an ed25519 or P-256 key under an application string.
pub enum SkKey {
    Ed25519(Ed25519Keypair),
    EcdsaP256(EcdsaKeypair),
}

pub struct MintedSk {
    pub key: SkKey,
    pub application: String,
}

impl MintedSk {
    pub fn ed25519(seed: u8, application: &str) -> Self {
        MintedSk {
            key: SkKey::Ed25519(Ed25519Keypair::from_seed(&[seed; 32])),
            application: application.to_string(),
        }
    }

    pub fn ecdsa_p256(application: &str) -> Self {
        MintedSk {
            key: SkKey::EcdsaP256(EcdsaKeypair::random(&mut rng(), EcdsaCurve::NistP256).unwrap()),
            application: application.to_string(),
        }
    }

    /// The same key pair under another application string.
    pub fn with_application(&self, application: &str) -> Self {
        MintedSk {
            key: match &self.key {
                SkKey::Ed25519(k) => SkKey::Ed25519(k.clone()),
                SkKey::EcdsaP256(k) => SkKey::EcdsaP256(k.clone()),
            },
            application: application.to_string(),
        }
    }

    pub fn key_data(&self) -> KeyData {
        match &self.key {
            SkKey::Ed25519(k) => {
                KeyData::SkEd25519(SkEd25519::new(k.public, self.application.clone()))
            }
            SkKey::EcdsaP256(EcdsaKeypair::NistP256 { public, .. }) => {
                KeyData::SkEcdsaSha2NistP256(SkEcdsaSha2NistP256::new(
                    *public,
                    self.application.clone(),
                ))
            }
            SkKey::EcdsaP256(_) => unreachable!("minted as P-256"),
        }
    }

    /// What a FIDO authenticator signs (PROTOCOL.u2f): SHA256(application) ‖ flags ‖
    /// counter ‖ SHA256(message), where the message is the SSHSIG signed data.
    pub fn sign(&self, blob: &[u8], hash: HashAlg, flags: u8, counter: u32) -> Vec<u8> {
        use ssh_key::sha2::{Digest, Sha256};
        let signed = SshSig::signed_data(NAMESPACE, hash, blob).unwrap();
        let mut assertion = Sha256::digest(self.application.as_bytes()).to_vec();
        assertion.push(flags);
        assertion.extend(counter.to_be_bytes());
        assertion.extend(Sha256::digest(&signed));
        let (algorithm, raw) = match &self.key {
            SkKey::Ed25519(k) => (Algorithm::SkEd25519, k.try_sign(&assertion).unwrap()),
            SkKey::EcdsaP256(k) => (
                Algorithm::SkEcdsaSha2NistP256,
                k.try_sign(&assertion).unwrap(),
            ),
        };
        let mut data = raw.as_bytes().to_vec();
        data.push(flags);
        data.extend(counter.to_be_bytes());
        let sig = Signature::new(algorithm, data).unwrap();
        SshSig::new(self.key_data(), NAMESPACE, hash, sig)
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap()
            .into_bytes()
    }
}

// ---------------------------------------------------------------------------------------------
// Envelopes and armor

/// The binary SSHSIG inside an armored signature.
pub fn envelope_of(armored: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(armored).unwrap();
    let body: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect();
    Base64::decode_vec(&body).unwrap()
}

/// Armors an envelope at `width` columns with `eol` line endings.
pub fn armor(envelope: &[u8], width: usize, eol: &str) -> Vec<u8> {
    let body = Base64::encode_string(envelope);
    let mut out = format!("-----BEGIN SSH SIGNATURE-----{eol}");
    for chunk in body.as_bytes().chunks(width) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push_str(eol);
    }
    out.push_str("-----END SSH SIGNATURE-----");
    out.push_str(eol);
    out.into_bytes()
}

fn put_string(out: &mut Vec<u8>, field: &[u8]) {
    out.extend(u32::try_from(field.len()).unwrap().to_be_bytes());
    out.extend(field);
}

/// The parts of an envelope, to bend one at a time.
#[derive(Clone)]
pub struct Parts {
    pub version: u32,
    pub public_key: Vec<u8>,
    pub namespace: Vec<u8>,
    pub reserved: Vec<u8>,
    pub hash: Vec<u8>,
    pub signature: Vec<u8>,
}

impl Parts {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = b"SSHSIG".to_vec();
        out.extend(self.version.to_be_bytes());
        put_string(&mut out, &self.public_key);
        put_string(&mut out, &self.namespace);
        put_string(&mut out, &self.reserved);
        put_string(&mut out, &self.hash);
        put_string(&mut out, &self.signature);
        out
    }

    pub fn armored(&self) -> Vec<u8> {
        armor(&self.encode(), 70, "\n")
    }
}

/// Splits an armored SSHSIG into its parts.
pub fn parts_of(armored: &[u8]) -> Parts {
    let sig = SshSig::from_pem(armored).unwrap();
    Parts {
        version: sig.version(),
        public_key: sig.public_key().encode_vec().unwrap(),
        namespace: sig.namespace().as_bytes().to_vec(),
        reserved: sig.reserved().to_vec(),
        hash: sig.hash_alg().as_str().as_bytes().to_vec(),
        signature: sig.signature().encode_vec().unwrap(),
    }
}

/// Signs the SSHSIG signed data by hand, so `reserved` can be non-empty and still verify: what
/// bare `ssh-key` accepts and this verifier must not.
pub fn sign_with_reserved(private: &PrivateKey, blob: &[u8], reserved: &[u8]) -> Parts {
    use ssh_key::sha2::{Digest, Sha512};
    let mut signed = b"SSHSIG".to_vec();
    put_string(&mut signed, NAMESPACE.as_bytes());
    put_string(&mut signed, reserved);
    put_string(&mut signed, b"sha512");
    put_string(&mut signed, &Sha512::digest(blob));
    let sig = private.key_data().try_sign(&signed).unwrap();
    Parts {
        version: 1,
        public_key: private.public_key().key_data().encode_vec().unwrap(),
        namespace: NAMESPACE.as_bytes().to_vec(),
        reserved: reserved.to_vec(),
        hash: b"sha512".to_vec(),
        signature: sig.encode_vec().unwrap(),
    }
}

// ---------------------------------------------------------------------------------------------
// ECDSA malleability

/// The group orders n of the NIST curves.
fn curve_order(curve: EcdsaCurve) -> Vec<u8> {
    hex::decode(match curve {
        EcdsaCurve::NistP256 => "FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551",
        EcdsaCurve::NistP384 => concat!(
            "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF",
            "581A0DB248B0A77AECEC196ACCC52973"
        ),
        EcdsaCurve::NistP521 => concat!(
            "01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "fa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409"
        ),
    })
    .unwrap()
}

/// Big-endian `a - b` for `a >= b`, minimal length.
fn sub_be(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut b_padded = vec![0u8; a.len() - b.len()];
    b_padded.extend(b);
    let mut out = vec![0u8; a.len()];
    let mut borrow = 0i16;
    for i in (0..a.len()).rev() {
        let mut d = i16::from(a[i]) - i16::from(b_padded[i]) - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = u8::try_from(d).unwrap();
    }
    assert_eq!(borrow, 0, "a < b");
    let first = out.iter().position(|&x| x != 0).unwrap_or(out.len());
    out.split_off(first)
}

fn mpint(positive: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    if positive.first().is_some_and(|&b| b & 0x80 != 0) {
        v.push(0);
    }
    v.extend(positive);
    let mut out = Vec::new();
    put_string(&mut out, &v);
    out
}

fn read_mpint(data: &mut &[u8]) -> Vec<u8> {
    let len = usize::try_from(u32::from_be_bytes(data[..4].try_into().unwrap())).unwrap();
    let value = data[4..4 + len].to_vec();
    *data = &data[4 + len..];
    let first = value.iter().position(|&x| x != 0).unwrap_or(value.len());
    value[first..].to_vec()
}

/// The other valid ECDSA signature over the same message: (r, s) → (r, n − s).
pub fn malleate_ecdsa(armored: &[u8]) -> Vec<u8> {
    let sig = SshSig::from_pem(armored).unwrap();
    let Algorithm::Ecdsa { curve } = sig.algorithm() else {
        panic!("not an ecdsa signature")
    };
    let mut data = sig.signature().as_bytes();
    let r = read_mpint(&mut data);
    let s = read_mpint(&mut data);
    assert!(data.is_empty());
    let s2 = sub_be(&curve_order(curve), &s);
    assert_ne!(s, s2);
    let mut raw = mpint(&r);
    raw.extend(mpint(&s2));
    let new_sig = Signature::new(sig.algorithm(), raw).unwrap();
    SshSig::new(
        sig.public_key().clone(),
        sig.namespace(),
        sig.hash_alg(),
        new_sig,
    )
    .unwrap()
    .to_pem(LineEnding::LF)
    .unwrap()
    .into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Logs

/// A tracing writer that keeps what was logged, to assert on it.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether `program` is an executable file in a `PATH` directory.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}
