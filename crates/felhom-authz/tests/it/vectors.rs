//! The committed ssh-keygen vectors (testdata/sshsig): every key type accepted, the negative
//! vectors refused at their stage, armor variants, and algorithm-policy bends of real signatures.

use felhom_authz::{
    AuthzError, BadSignatureReason, MemoryNonceStore, Role, Signer, SignerError, Verifier,
};
use ssh_key::HashAlg;

use crate::support::*;

/// Every valid vector: (case, key file stem, op, guest).
const VALID: &[(&str, &str, &str, Option<u32>)] = &[
    ("ed25519-sha512", "ed25519", "destroy_guest", Some(105)),
    ("ed25519-sha256", "ed25519", "destroy_guest", Some(105)),
    ("rsa2048-sha512", "rsa2048", "restore_guest", Some(210)),
    ("rsa2048-sha256", "rsa2048", "restore_guest", Some(210)),
    ("rsa4096-sha512", "rsa4096", "rotate_keys", None),
    ("rsa4096-sha256", "rsa4096", "rotate_keys", None),
    ("ecdsa256-sha512", "ecdsa256", "destroy_guest", Some(105)),
    ("ecdsa256-sha256", "ecdsa256", "destroy_guest", Some(105)),
    ("ecdsa384-sha512", "ecdsa384", "restore_guest", Some(210)),
    ("ecdsa384-sha256", "ecdsa384", "restore_guest", Some(210)),
    ("ecdsa521-sha512", "ecdsa521", "rotate_keys", None),
    ("ecdsa521-sha256", "ecdsa521", "rotate_keys", None),
    // FIDO sk-ecdsa, minted by `cargo xtask vectors` and checked there by ssh-keygen.
    (
        "sk-ecdsa256-sha512",
        "sk-ecdsa256",
        "destroy_guest",
        Some(105),
    ),
];

const KEYS: &[&str] = &[
    "ed25519",
    "rsa2048",
    "rsa4096",
    "ecdsa256",
    "ecdsa384",
    "ecdsa521",
    "sk-ecdsa256",
];

fn all_signers() -> Vec<Signer> {
    KEYS.iter()
        .map(|k| vector_signer(k, &format!("pinned-{k}"), Role::Operational))
        .collect()
}

#[test]
fn every_key_type_signed_by_ssh_keygen_is_accepted_and_matched_to_its_signer() {
    let verifier = verifier(all_signers());
    for (case, key, op, guest) in VALID {
        let v = vector(case, key);
        let verified = verifier
            .verify(&v.blob, &v.sig, VECTOR_NOW)
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(verified.op, *op, "{case}");
        assert_eq!(verified.guest_id, *guest, "{case}");
        assert_eq!(verified.host_id, HOST);
        assert_eq!(verified.nonce, format!("vector-{case}-0001"));
        assert_eq!(verified.key_id, format!("ops-{key}"), "the blob's claim");
        assert_eq!(
            verified.signer.key_id,
            format!("pinned-{key}"),
            "the pinned signer"
        );
        assert_eq!(verified.signer.role, Role::Operational);
    }
    assert_eq!(verifier.nonce_store().len(), VALID.len());
}

#[test]
fn params_are_returned_as_signed() {
    let v = vector("rsa2048-sha512", "rsa2048");
    let verified = verifier(all_signers())
        .check(&v.blob, &v.sig, VECTOR_NOW)
        .unwrap();
    assert_eq!(
        serde_json::Value::Object(verified.params),
        serde_json::json!({"archive": "local:backup/vzdump-lxc-210.tar.zst", "storage": "local-lvm"})
    );
}

#[test]
fn negative_vectors_are_refused_at_their_stage() {
    let mut signers = all_signers();
    let v = vector("wrong-namespace", "ed25519");
    let err = verifier(signers.clone())
        .verify(&v.blob, &v.sig, VECTOR_NOW)
        .unwrap_err();
    assert_eq!(
        err,
        AuthzError::Namespace {
            got: "file".to_string()
        }
    );

    let v = vector("wrong-host", "ed25519");
    let err = verifier(signers.clone())
        .verify(&v.blob, &v.sig, VECTOR_NOW)
        .unwrap_err();
    assert_eq!(
        err,
        AuthzError::Target {
            expected: "pve-01".to_string(),
            got: "pve-02".to_string()
        }
    );

    let v = vector("expired", "ed25519");
    let err = verifier(signers.clone())
        .verify(&v.blob, &v.sig, VECTOR_NOW)
        .unwrap_err();
    assert!(matches!(err, AuthzError::Expired { .. }), "{err}");

    // ssh-keygen makes 1024-bit RSA keys; they can't be pinned, so their signatures come
    // from an unknown signer.
    let v = vector("rsa1024-sha512", "rsa1024");
    let err = Signer::from_authorized_key("weak", Role::Operational, &v.public_key).unwrap_err();
    assert_eq!(
        err,
        SignerError::WeakRsaKey {
            key_id: "weak".to_string(),
            bits: 1024
        }
    );
    signers.push(vector_signer("ed25519", "another", Role::Recovery));
    let err = verifier(signers)
        .verify(&v.blob, &v.sig, VECTOR_NOW)
        .unwrap_err();
    assert!(
        matches!(&err, AuthzError::UnknownSigner { algorithm, fingerprint }
            if algorithm == "ssh-rsa" && fingerprint.starts_with("SHA256:")),
        "{err}"
    );
}

#[test]
fn the_default_policy_accepts_the_vectors_fifteen_minute_window() {
    // The vectors carry a realistic window, so the daemon's default verifier (no widened
    // policy) accepts them, and one minute past not_after (beyond the skew) refuses them.
    let v = vector("ed25519-sha512", "ed25519");
    let verifier = Verifier::new(all_signers(), MemoryNonceStore::new(), HOST);
    verifier.check(&v.blob, &v.sig, VECTOR_NOW).unwrap();
    let late = VECTOR_NOW + time::Duration::minutes(12);
    let err = verifier.check(&v.blob, &v.sig, late).unwrap_err();
    assert!(matches!(err, AuthzError::Expired { .. }), "{err}");
    assert!(verifier.nonce_store().is_empty());
}

#[test]
fn armor_of_any_width_crlf_and_missing_final_newline_is_accepted() {
    for (case, key, ..) in VALID.iter().step_by(2) {
        let v = vector(case, key);
        let envelope = envelope_of(&v.sig);
        for (width, eol) in [
            (64, "\n"),
            (76, "\n"),
            (70, "\r\n"),
            (1, "\n"),
            (4096, "\r\n"),
        ] {
            let armored = armor(&envelope, width, eol);
            verifier(all_signers())
                .verify(&v.blob, &armored, VECTOR_NOW)
                .unwrap_or_else(|e| panic!("{case} width {width} {eol:?}: {e}"));
        }
        let trimmed = v.sig.trim_ascii_end();
        verifier(all_signers())
            .verify(&v.blob, trimmed, VECTOR_NOW)
            .unwrap();
    }
}

#[test]
fn a_re_serialized_blob_fails_crypto() {
    let v = vector("ed25519-sha512", "ed25519");
    let value: serde_json::Value = serde_json::from_slice(&v.blob).unwrap();
    let pretty = serde_json::to_vec_pretty(&value).unwrap();
    let compact_no_newline = v.blob.trim_ascii_end().to_vec();
    let mut spaced = v.blob.clone();
    spaced.insert(1, b' ');
    for (what, blob) in [
        ("pretty", pretty),
        ("no newline", compact_no_newline),
        ("space", spaced),
    ] {
        let verifier = verifier(all_signers());
        let err = verifier.verify(&blob, &v.sig, VECTOR_NOW).unwrap_err();
        assert_eq!(
            err,
            AuthzError::BadSignature {
                key_id: "pinned-ed25519".to_string(),
                reason: BadSignatureReason::Invalid
            },
            "{what}"
        );
        assert!(
            verifier.nonce_store().is_empty(),
            "{what}: a bad signature burned a nonce"
        );
    }
}

#[test]
fn signer_is_matched_by_key_material_whatever_its_key_id_comment_or_options() {
    let v = vector("ed25519-sha512", "ed25519");
    let material: Vec<&str> = v.public_key.split_whitespace().take(2).collect();
    let line = format!(
        "restrict,command=\"echo a, b\" {} {} a-completely-different comment",
        material[0], material[1]
    );
    let signer = Signer::from_authorized_key("someone-else", Role::Recovery, &line).unwrap();
    let verified = verifier(vec![signer])
        .verify(&v.blob, &v.sig, VECTOR_NOW)
        .unwrap();
    assert_eq!(verified.key_id, "ops-ed25519");
    assert_eq!(verified.signer.key_id, "someone-else");
    assert_eq!(verified.signer.role, Role::Recovery);
}

/// Replaces the algorithm name at the head of an encoded signature.
fn relabel(signature: &[u8], algorithm: &str) -> Vec<u8> {
    let len = usize::try_from(u32::from_be_bytes(signature[..4].try_into().unwrap())).unwrap();
    let mut out = u32::try_from(algorithm.len())
        .unwrap()
        .to_be_bytes()
        .to_vec();
    out.extend(algorithm.as_bytes());
    out.extend(&signature[4 + len..]);
    out
}

#[test]
fn rsa_signatures_relabelled_as_ssh_rsa_or_rsa_sha2_256_are_refused() {
    let v = vector("rsa2048-sha512", "rsa2048");
    let mut parts = parts_of(&v.sig);
    let original = parts.signature.clone();

    parts.signature = relabel(&original, "ssh-rsa");
    let err = verifier(all_signers())
        .verify(&v.blob, &parts.armored(), VECTOR_NOW)
        .unwrap_err();
    assert_eq!(
        err,
        AuthzError::BadSignature {
            key_id: "pinned-rsa2048".to_string(),
            reason: BadSignatureReason::Sha1Rsa
        }
    );

    parts.signature = relabel(&original, "rsa-sha2-256");
    let err = verifier(all_signers())
        .verify(&v.blob, &parts.armored(), VECTOR_NOW)
        .unwrap_err();
    assert!(
        matches!(
            err,
            AuthzError::BadSignature {
                reason: BadSignatureReason::Invalid,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn rsa_sha2_256_signatures_are_accepted() {
    let key = rsa_key();
    let signer = signer_of(key, "rsa-minted");
    for hash in [HashAlg::Sha256, HashAlg::Sha512] {
        let blob = blob();
        let sig = sign_rsa_sha256(key, &blob, hash);
        let verified = verifier(vec![signer.clone()])
            .verify(&blob, &sig, NOW)
            .unwrap();
        assert_eq!(verified.signer.key_id, "rsa-minted");
    }
}

#[test]
fn a_signature_algorithm_that_does_not_match_the_key_is_refused() {
    // A P-256 signature relabelled as P-384 (the raw scalars fit both).
    let v = vector("ecdsa256-sha512", "ecdsa256");
    let mut parts = parts_of(&v.sig);
    parts.signature = relabel(&parts.signature, "ecdsa-sha2-nistp384");
    let err = verifier(all_signers())
        .verify(&v.blob, &parts.armored(), VECTOR_NOW)
        .unwrap_err();
    assert_eq!(
        err,
        AuthzError::BadSignature {
            key_id: "pinned-ecdsa256".to_string(),
            reason: BadSignatureReason::AlgorithmMismatch {
                key: "ecdsa-sha2-nistp256".to_string(),
                signature: "ecdsa-sha2-nistp384".to_string(),
            }
        }
    );

    // An ed25519 key carrying an ECDSA signature.
    let ed = parts_of(&vector("ed25519-sha512", "ed25519").sig);
    let mut mixed = parts_of(&v.sig);
    mixed.public_key = ed.public_key;
    let err = verifier(all_signers())
        .verify(&v.blob, &mixed.armored(), VECTOR_NOW)
        .unwrap_err();
    assert!(
        matches!(&err, AuthzError::BadSignature {
            reason: BadSignatureReason::AlgorithmMismatch { key, .. }, ..
        } if key == "ssh-ed25519"),
        "{err}"
    );
}
