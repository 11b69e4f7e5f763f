//! Per-stage rejection, each with an otherwise valid signature, and the pipeline order: the
//! first failing stage is the one reported, and no refused op burns its nonce.

use std::time::Duration;

use felhom_authz::{
    AuthzError, BadSignatureReason, BlobError, Malformed, MemoryNonceStore, NonceStore, Role,
    Signer, Verifier, DEFAULT_SKEW, MAX_BLOB_LEN, MAX_SIGNATURE_LEN, NAMESPACE,
};
use ssh_key::{HashAlg, PrivateKey, SshSig};
use time::macros::datetime;

use crate::support::*;

fn pinned() -> (PrivateKey, Verifier<MemoryNonceStore>) {
    let key = ed25519_key(1);
    let verifier = Verifier::new(
        vec![signer_of(&key, "ops-test")],
        MemoryNonceStore::new(),
        HOST,
    );
    (key, verifier)
}

fn assert_no_nonce_burned(verifier: &Verifier<MemoryNonceStore>) {
    assert!(
        verifier.nonce_store().is_empty(),
        "a refused op burned its nonce"
    );
}

#[test]
fn the_first_failing_stage_is_reported_and_nothing_is_recorded() {
    #[derive(Debug, PartialEq, Clone, Copy)]
    enum Stage {
        Namespace,
        Signer,
        Crypto,
        Blob,
        Target,
        Window,
    }
    let pinned_key = ed25519_key(1);
    let other_key = ed25519_key(2);
    for combo in 0u32..64 {
        let ok = |bit: u32| combo & (1 << bit) == 0;
        let (ns_ok, signer_ok, crypto_ok, blob_ok, target_ok, window_ok) =
            (ok(0), ok(1), ok(2), ok(3), ok(4), ok(5));
        let blob = if blob_ok {
            blob_json(serde_json::json!({
                "host_id": if target_ok { HOST } else { "pve-02" },
                "not_after": if window_ok { "2026-06-01T12:10:00Z" } else { "2026-06-01T11:56:00Z" },
            }))
        } else {
            br#"{"op":"destroy_guest"}"#.to_vec()
        };
        let key = if signer_ok { &pinned_key } else { &other_key };
        let namespace = if ns_ok { NAMESPACE } else { "file" };
        let signed = if crypto_ok {
            blob.clone()
        } else {
            [&blob[..], b" "].concat()
        };
        let sig = sign_ns(key, namespace, &signed, HashAlg::Sha512);

        let verifier = Verifier::new(
            vec![signer_of(&pinned_key, "ops-test")],
            MemoryNonceStore::new(),
            HOST,
        );
        let result = verifier.verify(&blob, &sig, NOW);
        let expected = [
            (ns_ok, Stage::Namespace),
            (signer_ok, Stage::Signer),
            (crypto_ok, Stage::Crypto),
            (blob_ok, Stage::Blob),
            (target_ok, Stage::Target),
            (window_ok, Stage::Window),
        ]
        .into_iter()
        .find(|(ok, _)| !ok)
        .map(|(_, stage)| stage);
        let got = result.as_ref().err().map(|e| match e {
            AuthzError::Namespace { .. } => Stage::Namespace,
            AuthzError::UnknownSigner { .. } => Stage::Signer,
            AuthzError::BadSignature {
                reason: BadSignatureReason::Invalid,
                ..
            } => Stage::Crypto,
            AuthzError::Malformed(Malformed::Blob(_)) => Stage::Blob,
            AuthzError::Target { .. } => Stage::Target,
            AuthzError::Expired { .. } => Stage::Window,
            other => panic!("combo {combo:06b}: unexpected {other}"),
        });
        assert_eq!(got, expected, "combo {combo:06b}");
        if let Err(e) = &result {
            let msg = e.to_string();
            assert!(msg.starts_with("signed op refused: "), "{msg}");
            assert!(!msg.ends_with('.'), "{msg}");
            assert_no_nonce_burned(&verifier);
        } else {
            assert_eq!(verifier.nonce_store().len(), 1);
            // 9. The nonce, last: the same op again is a replay.
            let again = verifier.verify(&blob, &sig, NOW).unwrap_err();
            assert!(matches!(again, AuthzError::Replay { .. }), "{again}");
        }
    }
}

#[test]
fn malformed_armor_and_oversized_inputs() {
    let (key, verifier) = pinned();
    let blob = blob();
    let sig = sign(&key, &blob, HashAlg::Sha512);
    for garbage in [
        &b""[..],
        b"hello",
        b"-----BEGIN SSH SIGNATURE-----\n!!!!\n-----END SSH SIGNATURE-----\n",
    ] {
        let err = verifier.verify(&blob, garbage, NOW).unwrap_err();
        assert!(
            matches!(err, AuthzError::Malformed(Malformed::Armor(_))),
            "{err}"
        );
    }
    let huge_sig = vec![b'A'; MAX_SIGNATURE_LEN + 1];
    let err = verifier.verify(&blob, &huge_sig, NOW).unwrap_err();
    assert!(
        matches!(
            err,
            AuthzError::Malformed(Malformed::SignatureTooLarge { .. })
        ),
        "{err}"
    );
    let huge_blob = vec![b' '; MAX_BLOB_LEN + 1];
    let err = verifier.verify(&huge_blob, &sig, NOW).unwrap_err();
    assert!(
        matches!(
            err,
            AuthzError::Malformed(Malformed::Blob(BlobError::TooLarge { .. }))
        ),
        "{err}"
    );
    assert_no_nonce_burned(&verifier);
}

#[test]
fn sshsig_versions_other_than_1_are_refused_though_ssh_key_accepts_version_0() {
    let (key, verifier) = pinned();
    let blob = blob();
    let mut parts = parts_of(&sign(&key, &blob, HashAlg::Sha512));
    for version in [0, 2] {
        parts.version = version;
        let err = verifier.verify(&blob, &parts.armored(), NOW).unwrap_err();
        assert_eq!(
            err,
            AuthzError::Malformed(Malformed::UnsupportedVersion(version))
        );
    }
    // The version is not covered by the signature: bare ssh-key verifies version 0 fine.
    parts.version = 0;
    let bare = SshSig::from_pem(parts.armored()).unwrap();
    key.public_key().verify(NAMESPACE, &blob, &bare).unwrap();
    assert_no_nonce_burned(&verifier);
}

#[test]
fn a_non_empty_reserved_field_is_refused_though_the_signature_is_valid() {
    let (key, verifier) = pinned();
    let blob = blob();
    let parts = sign_with_reserved(&key, &blob, b"future-tag");
    let bare = SshSig::from_pem(parts.armored()).unwrap();
    key.public_key().verify(NAMESPACE, &blob, &bare).unwrap();
    let err = verifier.verify(&blob, &parts.armored(), NOW).unwrap_err();
    assert_eq!(err, AuthzError::Malformed(Malformed::ReservedNotEmpty(10)));
}

#[test]
fn hash_algorithms_other_than_sha256_and_sha512_are_refused() {
    let (key, verifier) = pinned();
    let blob = blob();
    let mut parts = parts_of(&sign(&key, &blob, HashAlg::Sha512));
    for hash in ["sha1", "sha384", "SHA512", "md5"] {
        parts.hash = hash.as_bytes().to_vec();
        let err = verifier.verify(&blob, &parts.armored(), NOW).unwrap_err();
        assert_eq!(
            err,
            AuthzError::Malformed(Malformed::HashAlgorithm(hash.to_string()))
        );
    }
    for hash in [HashAlg::Sha256, HashAlg::Sha512] {
        let blob = crate::support::blob();
        verifier
            .verify(&blob, &sign(&key, &blob, hash), NOW)
            .unwrap();
    }
}

#[test]
fn other_namespaces_are_refused() {
    let (key, verifier) = pinned();
    let blob = blob();
    for ns in ["file", "git", "felhom-op-v2", "felhom-op-v1 "] {
        let err = verifier
            .verify(&blob, &sign_ns(&key, ns, &blob, HashAlg::Sha512), NOW)
            .unwrap_err();
        assert_eq!(
            err,
            AuthzError::Namespace {
                got: ns.to_string()
            }
        );
    }
    assert_no_nonce_burned(&verifier);
}

#[test]
fn an_undecodable_public_key_or_signature_is_refused() {
    let (key, verifier) = pinned();
    let blob = blob();
    let good = parts_of(&sign(&key, &blob, HashAlg::Sha512));

    let mut parts = good.clone();
    parts.public_key = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x03abc".to_vec();
    let err = verifier.verify(&blob, &parts.armored(), NOW).unwrap_err();
    assert!(
        matches!(err, AuthzError::Malformed(Malformed::PublicKey(_))),
        "{err}"
    );

    let mut parts = good.clone();
    parts.public_key.push(0);
    let err = verifier.verify(&blob, &parts.armored(), NOW).unwrap_err();
    assert!(
        matches!(err, AuthzError::Malformed(Malformed::PublicKey(m)) if m.contains("trailing"))
    );

    let mut parts = good;
    parts.signature.truncate(parts.signature.len() - 1);
    let err = verifier.verify(&blob, &parts.armored(), NOW).unwrap_err();
    assert!(
        matches!(
            err,
            AuthzError::BadSignature {
                reason: BadSignatureReason::Encoding(_),
                ..
            }
        ),
        "{err}"
    );
    assert_no_nonce_burned(&verifier);
}

#[test]
fn an_unknown_signer_is_named_by_fingerprint() {
    let (_, verifier) = pinned();
    let stranger = ed25519_key(9);
    let blob = blob();
    let err = verifier
        .verify(&blob, &sign(&stranger, &blob, HashAlg::Sha512), NOW)
        .unwrap_err();
    assert_eq!(
        err,
        AuthzError::UnknownSigner {
            algorithm: "ssh-ed25519".to_string(),
            fingerprint: stranger
                .public_key()
                .fingerprint(HashAlg::Sha256)
                .to_string(),
        }
    );
}

#[test]
fn a_bad_signature_never_burns_the_nonce() {
    let (key, verifier) = pinned();
    let blob = blob();
    let sig = sign(&key, &blob, HashAlg::Sha512);
    let mut tampered = blob.clone();
    let at = tampered.iter().position(|&b| b == b'5').unwrap(); // guest 105 → 106
    tampered[at] = b'6';
    let err = verifier.verify(&tampered, &sig, NOW).unwrap_err();
    assert_eq!(
        err,
        AuthzError::BadSignature {
            key_id: "ops-test".to_string(),
            reason: BadSignatureReason::Invalid
        }
    );
    assert_no_nonce_burned(&verifier);
    // The genuine op, same nonce, still goes through.
    assert_eq!(
        verifier.verify(&blob, &sig, NOW).unwrap().guest_id,
        Some(105)
    );
}

#[test]
fn a_validly_signed_but_malformed_blob_is_refused() {
    let (key, verifier) = pinned();
    for (blob, needle) in [
        (b"not json".to_vec(), "expected"),
        (
            blob_json(serde_json::json!({"extra": true})),
            "unknown field",
        ),
        (
            blob_json(serde_json::json!({"guest_id": "105"})),
            "invalid type",
        ),
        (
            blob_json(serde_json::json!({"not_before": "2026-06-01T12:11:00Z"})),
            "after",
        ),
    ] {
        let err = verifier
            .verify(&blob, &sign(&key, &blob, HashAlg::Sha512), NOW)
            .unwrap_err();
        assert!(
            matches!(&err, AuthzError::Malformed(Malformed::Blob(e)) if e.to_string().contains(needle)),
            "{needle}: {err}"
        );
    }
    assert_no_nonce_burned(&verifier);
}

#[test]
fn the_window_edges_with_skew() {
    let key = ed25519_key(1);
    let skew = Duration::from_secs(90);
    let verifier =
        Verifier::new(vec![signer_of(&key, "ops")], MemoryNonceStore::new(), HOST).with_skew(skew);
    let not_before = datetime!(2026-06-01 11:55 UTC);
    let not_after = datetime!(2026-06-01 12:10 UTC);
    let one = time::Duration::SECOND;
    let skew_t = time::Duration::seconds(90);
    let cases = [
        (not_before - skew_t - one, Some("not yet")),
        (not_before - skew_t, None),
        (not_before, None),
        (not_after, None),
        (not_after + skew_t, None),
        (not_after + skew_t + one, Some("expired")),
    ];
    for (now, refusal) in cases {
        let blob = blob();
        let sig = sign(&key, &blob, HashAlg::Sha512);
        match (verifier.check(&blob, &sig, now), refusal) {
            (Ok(_), None) => {}
            (
                Err(AuthzError::NotYetValid {
                    not_before: nb,
                    now: n,
                    skew: s,
                }),
                Some("not yet"),
            ) => {
                assert_eq!((nb, n, s), (not_before, now, skew));
            }
            (
                Err(AuthzError::Expired {
                    not_after: na,
                    now: n,
                    skew: s,
                }),
                Some("expired"),
            ) => {
                assert_eq!((na, n, s), (not_after, now, skew));
            }
            (other, expected) => panic!("at {now}: expected {expected:?}, got {other:?}"),
        }
    }
    // Zero tolerance: one second past not_after is expired.
    let strict = Verifier::new(vec![signer_of(&key, "ops")], MemoryNonceStore::new(), HOST)
        .with_skew(Duration::ZERO);
    let blob = blob();
    let sig = sign(&key, &blob, HashAlg::Sha512);
    assert!(strict.check(&blob, &sig, not_after).is_ok());
    assert!(matches!(
        strict.check(&blob, &sig, not_after + one),
        Err(AuthzError::Expired { .. })
    ));
    assert_eq!(DEFAULT_SKEW, Duration::from_secs(60));
}

#[test]
fn the_nonce_is_kept_until_the_window_plus_skew_has_passed() {
    let (key, verifier) = pinned();
    let blob = blob();
    verifier
        .verify(&blob, &sign(&key, &blob, HashAlg::Sha512), NOW)
        .unwrap();
    let store = verifier.nonce_store();
    let end = datetime!(2026-06-01 12:10 UTC) + time::Duration::seconds(60);
    assert_eq!(store.prune(end).unwrap(), 0);
    assert_eq!(store.prune(end + time::Duration::SECOND).unwrap(), 1);
}

#[test]
fn check_is_a_dry_run_that_records_nothing() {
    let (key, verifier) = pinned();
    let blob = blob();
    let sig = sign(&key, &blob, HashAlg::Sha512);
    let dry = verifier.check(&blob, &sig, NOW).unwrap();
    verifier.check(&blob, &sig, NOW).unwrap();
    assert_no_nonce_burned(&verifier);
    let real = verifier.verify(&blob, &sig, NOW).unwrap();
    assert_eq!(dry, real);
    for result in [
        verifier.check(&blob, &sig, NOW),
        verifier.verify(&blob, &sig, NOW),
    ] {
        assert!(
            matches!(result, Err(AuthzError::Replay { .. })),
            "{result:?}"
        );
    }
}

#[test]
fn a_key_pinned_twice_is_disabled_rather_than_given_a_guessed_role() {
    let key = ed25519_key(1);
    let other = ed25519_key(2);
    let signers = vec![
        signer_for(
            key.public_key().key_data(),
            "as-operational",
            Role::Operational,
        ),
        signer_for(key.public_key().key_data(), "as-recovery", Role::Recovery),
        signer_of(&other, "other"),
    ];
    assert!(felhom_authz::check_signers(&signers).is_err());
    let verifier = Verifier::new(signers, MemoryNonceStore::new(), HOST);
    assert_eq!(
        verifier
            .signers()
            .iter()
            .map(|s| s.key_id.as_str())
            .collect::<Vec<_>>(),
        ["other"]
    );
    let blob = blob();
    let err = verifier
        .verify(&blob, &sign(&key, &blob, HashAlg::Sha512), NOW)
        .unwrap_err();
    assert!(matches!(err, AuthzError::UnknownSigner { .. }), "{err}");
    verifier
        .verify(&blob, &sign(&other, &blob, HashAlg::Sha512), NOW)
        .unwrap();
}

#[test]
fn signers_refuse_dsa() {
    let line = "ssh-dss AAAAB3NzaC1kc3MAAACBALKOhTG2X4G3hVClw3lMyzckuhk1l8A2bnLl87/yBCywFbILuncZy6Yxv5jaoc7zFhRf22//oi2hrvfQwITtFTg5tAOL0O9C/fgDt73hvyf0Nuk0Dt5A1D3TBnAiAXHQSSV+BOWGcR1gLHJUlLv9RYCX07uHDShXAJfKg8GXpVpxAAAAFQDGPub73aEGOTnUN0P6oynij7pb+QAAAIB2EVOS95dbVu57xNvhqK6IkkEWGfPZ3py0VGWj3o656+gECV3iAG3D460YlWMfhqOZFfIzTlDbmESkF/uGdtx02DT/hNqC99c6qrmeQT/rJARnwxG/lJBy8L3g0PSXbTQ7wS+QsZVD5Nl0ZkSDKjPZIBOv6Oeh9KPW6XDSz1V4LQAAAIBO/quTwA7fFTw/5/tgUAfppOAUWy+MUt7mRpowWnbjJ7Er+4351jDAn4fIBj3EoNA/WCU9HIYYjT1HDoo5dmRPrawJJQfUD8Q5Dq+NCQ1qFb8Pul8qpBlbm6qqWT6GrhjALF71ozc9BrT0dwmUWrHLI4UMaEHBw/t5xjHDhYm8rQ==";
    let err = Signer::from_authorized_key("old", Role::Operational, line).unwrap_err();
    assert!(
        matches!(err, felhom_authz::SignerError::UnsupportedKeyType { .. }),
        "{err}"
    );
}
