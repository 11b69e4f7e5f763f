//! Replay is keyed by the blob's nonce, never by signature bytes: malleated ECDSA signatures,
//! re-wrapped armor and concurrent submissions of one op all run it at most once, also across
//! a restart of the file-backed store.

use felhom_authz::{AuthzError, FileNonceStore, MemoryNonceStore, ReplayReason, Role, Verifier};
use ssh_key::HashAlg;

use crate::support::*;

const ECDSA: &[(&str, &str)] = &[
    ("ecdsa256-sha512", "ecdsa256"),
    ("ecdsa384-sha256", "ecdsa384"),
    ("ecdsa521-sha512", "ecdsa521"),
];

#[test]
fn malleated_ecdsa_signatures_are_valid_but_still_a_replay() {
    for (case, key) in ECDSA {
        let v = vector(case, key);
        let malleated = malleate_ecdsa(&v.sig);
        assert_ne!(envelope_of(&malleated), envelope_of(&v.sig), "{case}");
        let signers = vec![vector_signer(key, "ops", Role::Operational)];

        // On its own the malleated signature verifies: the bytes differ, the op is the same.
        verifier(signers.clone())
            .verify(&v.blob, &malleated, VECTOR_NOW)
            .unwrap();

        let verifier = verifier(signers);
        verifier.verify(&v.blob, &v.sig, VECTOR_NOW).unwrap();
        let err = verifier
            .verify(&v.blob, &malleated, VECTOR_NOW)
            .unwrap_err();
        assert_eq!(
            err,
            AuthzError::Replay {
                nonce: format!("vector-{case}-0001"),
                reason: ReplayReason::Seen
            },
            "{case}"
        );
    }
}

#[test]
fn a_second_signature_over_the_same_blob_is_a_replay() {
    // ECDSA signing with a fresh key gives new bytes; so does re-wrapping the armor.
    let key = ecdsa_key(ssh_key::EcdsaCurve::NistP256);
    let verifier = Verifier::new(vec![signer_of(&key, "ops")], MemoryNonceStore::new(), HOST);
    let blob = blob();
    let first = sign(&key, &blob, HashAlg::Sha512);
    let second = sign(&key, &blob, HashAlg::Sha256);
    assert_ne!(first, second);
    verifier.verify(&blob, &first, NOW).unwrap();
    for again in [second, armor(&envelope_of(&first), 64, "\r\n")] {
        let err = verifier.verify(&blob, &again, NOW).unwrap_err();
        assert!(
            matches!(
                err,
                AuthzError::Replay {
                    reason: ReplayReason::Seen,
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn replay_is_refused_after_reopening_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nonces.log");
    let v = vector("ed25519-sha512", "ed25519");
    let signers = vec![vector_signer("ed25519", "ops", Role::Operational)];
    {
        let store = FileNonceStore::open(&path).unwrap();
        let verifier = Verifier::new(signers.clone(), store, HOST).with_max_window(VECTOR_WINDOW);
        verifier.verify(&v.blob, &v.sig, VECTOR_NOW).unwrap();
    }
    let store = FileNonceStore::open(&path).unwrap();
    let verifier = Verifier::new(signers, store, HOST).with_max_window(VECTOR_WINDOW);
    let err = verifier.verify(&v.blob, &v.sig, VECTOR_NOW).unwrap_err();
    assert!(
        matches!(
            err,
            AuthzError::Replay {
                reason: ReplayReason::Seen,
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        verifier.check(&v.blob, &v.sig, VECTOR_NOW),
        Err(AuthzError::Replay { .. })
    ));
    // Other ops still run.
    let other = vector("ed25519-sha256", "ed25519");
    verifier
        .verify(&other.blob, &other.sig, VECTOR_NOW)
        .unwrap();
}

#[test]
fn concurrent_submissions_of_one_op_run_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileNonceStore::open(dir.path().join("nonces.log")).unwrap();
    let key = ed25519_key(5);
    let verifier = Verifier::new(vec![signer_of(&key, "ops")], store, HOST);
    let blob = blob();
    let sig = sign(&key, &blob, HashAlg::Sha512);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| verifier.verify(&blob, &sig, NOW)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(
            e,
            AuthzError::Replay {
                reason: ReplayReason::Seen,
                ..
            }
        )));
}
