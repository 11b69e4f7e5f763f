//! Role scope and action binding (`verify_for` / `check_for`): a signature authorizes exactly
//! the action it names, from a key whose role allows it, and a refusal for either never burns
//! its nonce. Also the advisory `key_id`: accepted when it names someone else, but exposed.

use std::sync::{Arc, Barrier};

use felhom_authz::{
    AuthzError, BindingField, Expectation, MemoryNonceStore, NonceStore, Op, Role, Signer, Verifier,
};
use serde_json::json;
use ssh_key::HashAlg;

use crate::support::*;

fn expect(op: Op, guest: Option<u32>, params: serde_json::Value) -> Expectation {
    Expectation::new(op, guest, params)
}

fn nonce_of(blob: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(blob).unwrap()["nonce"]
        .as_str()
        .unwrap()
        .to_string()
}

fn operational() -> (ssh_key::PrivateKey, Verifier<MemoryNonceStore>) {
    let key = ed25519_key(21);
    let v = Verifier::new(
        vec![signer_of(&key, "ops-test")],
        MemoryNonceStore::new(),
        HOST,
    );
    (key, v)
}

#[test]
fn mis_bound_signatures_name_the_field_and_leave_the_nonce_unburned() {
    let (key, verifier) = operational();
    let params = json!({"snapname": "before-upgrade", "start": true});
    let blob = blob_json(json!({"op": "rollback", "guest_id": 105, "params": params}));
    let sig = sign(&key, &blob, HashAlg::Sha512);
    let nonce = nonce_of(&blob);

    let wrong = [
        (
            expect(Op::DestroyGuest, Some(105), json!({})),
            BindingField::Op,
        ),
        (
            expect(Op::Rollback, Some(106), params.clone()),
            BindingField::GuestId,
        ),
        (
            expect(Op::Rollback, None, params.clone()),
            BindingField::GuestId,
        ),
        (
            expect(
                Op::Rollback,
                Some(105),
                json!({"snapname": "before-upgrade", "start": false}),
            ),
            BindingField::Params,
        ),
        (
            expect(
                Op::Rollback,
                Some(105),
                json!({"snapname": "before-upgrade"}),
            ),
            BindingField::Params,
        ),
        // Not an object at all.
        (
            expect(Op::Rollback, Some(105), json!(null)),
            BindingField::Params,
        ),
    ];
    for (expectation, field) in wrong {
        for result in [
            verifier.check_for(&blob, &sig, NOW, &expectation),
            verifier.verify_for(&blob, &sig, NOW, &expectation),
        ] {
            assert_eq!(
                result.unwrap_err(),
                AuthzError::BindingMismatch { field },
                "{expectation:?}"
            );
        }
        assert!(!verifier.nonce_store().seen(&nonce), "{expectation:?}");
    }
    let err = verifier
        .verify_for(
            &blob,
            &sig,
            NOW,
            &expect(Op::Rollback, Some(106), params.clone()),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "signed op refused: its guest_id differs from the action about to run"
    );

    // The right action, with the same signature: accepted, params compared as values (key
    // order differs from the signed bytes), and now the nonce is spent.
    let right = expect(
        Op::Rollback,
        Some(105),
        json!({"start": true, "snapname": "before-upgrade"}),
    );
    verifier.check_for(&blob, &sig, NOW, &right).unwrap();
    assert!(
        !verifier.nonce_store().seen(&nonce),
        "check_for records nothing"
    );
    let op = verifier.verify_for(&blob, &sig, NOW, &right).unwrap();
    assert_eq!(op.op, "rollback");
    assert!(verifier.nonce_store().seen(&nonce));
    assert!(matches!(
        verifier.verify_for(&blob, &sig, NOW, &right),
        Err(AuthzError::Replay { .. })
    ));
}

#[test]
fn recovery_keys_may_rotate_signers_and_nothing_else() {
    let key = ed25519_key(22);
    let recovery = signer_for(key.public_key().key_data(), "break-glass", Role::Recovery);
    let verifier = Verifier::new(vec![recovery], MemoryNonceStore::new(), HOST);

    for op in [
        Op::DestroyGuest,
        Op::Rollback,
        Op::DeleteSnapshot,
        Op::RestoreOver,
    ] {
        let blob = blob_json(json!({"op": op.wire_name(), "guest_id": 105}));
        let sig = sign(&key, &blob, HashAlg::Sha512);
        let err = verifier
            .verify_for(&blob, &sig, NOW, &expect(op, Some(105), json!({})))
            .unwrap_err();
        assert_eq!(
            err,
            AuthzError::RoleDenied {
                key_id: "break-glass".to_string(),
                role: Role::Recovery,
                op: op.wire_name().to_string(),
            }
        );
        assert!(!verifier.nonce_store().seen(&nonce_of(&blob)), "{op}");
        // The unbound API authenticates only; role scope is the caller's to ask for.
        verifier.check(&blob, &sig, NOW).unwrap();
    }

    let params = json!({"signers": [{"key_id": "ops-new", "role": "operational",
        "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILYCP8Hzw999pOq3WBzlqL2Ia34wk7Ccl2eQoq+rwXM0"}]});
    let blob = blob_json(json!({"op": "rotate_signers", "guest_id": null, "params": params}));
    let sig = sign(&key, &blob, HashAlg::Sha512);
    let op = verifier
        .verify_for(&blob, &sig, NOW, &expect(Op::RotateSigners, None, params))
        .unwrap();
    assert_eq!(op.signer.role, Role::Recovery);
    assert!(verifier.nonce_store().seen(&nonce_of(&blob)));
}

#[test]
fn operational_keys_may_do_every_destructive_op_but_no_unknown_one() {
    let (key, verifier) = operational();
    for op in Op::ALL {
        let guest = op.targets_guest().then_some(105);
        let blob = blob_json(json!({"op": op.wire_name(), "guest_id": guest}));
        let sig = sign(&key, &blob, HashAlg::Sha256);
        verifier
            .verify_for(&blob, &sig, NOW, &expect(op, guest, json!({})))
            .unwrap_or_else(|e| panic!("{op}: {e}"));
    }
    // An op this agent does not know is denied for every role, before binding.
    let blob = blob_json(json!({"op": "restore_guest"}));
    let sig = sign(&key, &blob, HashAlg::Sha256);
    let err = verifier
        .verify_for(
            &blob,
            &sig,
            NOW,
            &expect(Op::RestoreOver, Some(105), json!({})),
        )
        .unwrap_err();
    assert!(
        matches!(&err, AuthzError::RoleDenied { role: Role::Operational, op, .. } if op == "restore_guest"),
        "{err}"
    );
    assert!(!verifier.nonce_store().seen(&nonce_of(&blob)));
}

#[test]
fn role_and_binding_run_after_the_time_window_and_earlier_stages_win() {
    let key = ed25519_key(23);
    let verifier = Verifier::new(
        vec![signer_for(
            key.public_key().key_data(),
            "bg",
            Role::Recovery,
        )],
        MemoryNonceStore::new(),
        HOST,
    );
    // Role-denied and mis-bound, but expired: the window refuses first.
    let blob = blob_json(json!({"op": "destroy_guest"}));
    let sig = sign(&key, &blob, HashAlg::Sha512);
    let later = NOW + time::Duration::hours(1);
    let err = verifier
        .verify_for(
            &blob,
            &sig,
            later,
            &expect(Op::Rollback, Some(7), json!({})),
        )
        .unwrap_err();
    assert!(matches!(err, AuthzError::Expired { .. }), "{err}");
    // Role before binding.
    let err = verifier
        .verify_for(&blob, &sig, NOW, &expect(Op::Rollback, Some(7), json!({})))
        .unwrap_err();
    assert!(matches!(err, AuthzError::RoleDenied { .. }), "{err}");
}

#[test]
fn concurrent_bound_verifies_of_one_blob_accept_exactly_once() {
    let key = ed25519_key(24);
    let verifier = Arc::new(Verifier::new(
        vec![signer_of(&key, "ops-test")],
        MemoryNonceStore::new(),
        HOST,
    ));
    let blob = Arc::new(blob());
    let sig = Arc::new(sign(&key, &blob, HashAlg::Sha512));
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (verifier, blob, sig, barrier) =
                (verifier.clone(), blob.clone(), sig.clone(), barrier.clone());
            std::thread::spawn(move || {
                let right = expect(Op::DestroyGuest, Some(105), json!({}));
                barrier.wait();
                verifier.verify_for(&blob, &sig, NOW, &right)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, AuthzError::Replay { .. })));
}

#[test]
fn a_key_id_naming_another_signer_or_nobody_is_accepted_but_exposed() {
    let anna = ed25519_key(25);
    let bela = ed25519_key(26);
    let signers: Vec<Signer> = vec![signer_of(&anna, "ops-anna"), signer_of(&bela, "ops-bela")];
    let verifier = Verifier::new(signers, MemoryNonceStore::new(), HOST);

    let honest = blob_json(json!({"key_id": "ops-anna"}));
    let op = verifier
        .verify(&honest, &sign(&anna, &honest, HashAlg::Sha512), NOW)
        .unwrap();
    assert!(!op.key_id_mismatch());

    for claimed in ["ops-bela", "nobody-at-all"] {
        let blob = blob_json(json!({"key_id": claimed}));
        let sig = sign(&anna, &blob, HashAlg::Sha512);
        let checked = verifier.check(&blob, &sig, NOW).unwrap();
        let op = verifier
            .verify_for(
                &blob,
                &sig,
                NOW,
                &expect(Op::DestroyGuest, Some(105), json!({})),
            )
            .unwrap();
        for op in [checked, op] {
            assert_eq!(op.key_id, claimed);
            assert_eq!(op.signer_key_id(), "ops-anna");
            assert!(op.key_id_mismatch(), "{claimed}");
        }
    }
}

#[test]
fn a_key_id_mismatch_is_logged_as_a_warning() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let (key, verifier) = operational();
    let blob = blob_json(json!({"key_id": "ops-someone-else"}));
    let sig = sign(&key, &blob, HashAlg::Sha512);
    tracing::subscriber::with_default(subscriber, || {
        verifier.verify(&blob, &sig, NOW).unwrap();
    });
    let logs = captured.text();
    assert!(logs.contains("WARN"), "{logs}");
    assert!(logs.contains("blob_key_id=ops-someone-else"), "{logs}");
    assert!(logs.contains("signer=ops-test"), "{logs}");

    // No warning when they agree.
    let quiet = Captured::default();
    let writer = quiet.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_writer(move || writer.clone())
        .finish();
    let blob = blob_json(json!({"key_id": "ops-test"}));
    let sig = sign(&key, &blob, HashAlg::Sha512);
    tracing::subscriber::with_default(subscriber, || {
        verifier.verify(&blob, &sig, NOW).unwrap();
    });
    assert_eq!(quiet.text(), "");
}

#[test]
fn a_refusal_for_role_or_binding_leaves_the_durable_store_untouched_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nonces.log");
    let key = ed25519_key(27);
    let open = || {
        Verifier::new(
            vec![signer_of(&key, "ops-test")],
            felhom_authz::FileNonceStore::open(&path).unwrap(),
            HOST,
        )
    };
    let blob = blob();
    let sig = sign(&key, &blob, HashAlg::Sha512);
    {
        let verifier = open();
        let err = verifier
            .verify_for(
                &blob,
                &sig,
                NOW,
                &expect(Op::DestroyGuest, Some(999), json!({})),
            )
            .unwrap_err();
        assert_eq!(
            err,
            AuthzError::BindingMismatch {
                field: BindingField::GuestId
            }
        );
    }
    // After a restart the nonce is still unused: the right action is accepted once, and a
    // replay after another restart is refused.
    open()
        .verify_for(
            &blob,
            &sig,
            NOW,
            &expect(Op::DestroyGuest, Some(105), json!({})),
        )
        .unwrap();
    let err = open()
        .verify_for(
            &blob,
            &sig,
            NOW,
            &expect(Op::DestroyGuest, Some(105), json!({})),
        )
        .unwrap_err();
    assert!(matches!(err, AuthzError::Replay { .. }), "{err}");
}

#[test]
fn a_resumed_verification_passes_a_recorded_nonce_but_every_other_stage_still_runs() {
    let (key, verifier) = operational();
    let blob = blob_json(json!({"op": "destroy_guest", "guest_id": 105}));
    let sig = sign(&key, &blob, HashAlg::Sha512);
    let nonce = nonce_of(&blob);
    let destroy = expect(Op::DestroyGuest, Some(105), json!({}));

    // A resumed op whose nonce was never recorded records it: one-shot from here on.
    let fresh_blob = blob_json(json!({"op": "destroy_guest", "guest_id": 105}));
    let fresh_sig = sign(&key, &fresh_blob, HashAlg::Sha512);
    verifier
        .verify_resumed_for(&fresh_blob, &fresh_sig, NOW, &destroy)
        .unwrap();
    assert!(verifier.nonce_store().seen(&nonce_of(&fresh_blob)));

    verifier.verify_for(&blob, &sig, NOW, &destroy).unwrap();
    // The plain path refuses the spent nonce; the resumed one accepts it …
    assert!(matches!(
        verifier.verify_for(&blob, &sig, NOW, &destroy),
        Err(AuthzError::Replay { .. })
    ));
    let op = verifier
        .verify_resumed_for(&blob, &sig, NOW, &destroy)
        .unwrap();
    assert_eq!(op.nonce, nonce);
    // … but not past any other stage: binding, time window, an edited blob.
    assert!(matches!(
        verifier.verify_resumed_for(
            &blob,
            &sig,
            NOW,
            &expect(Op::DestroyGuest, Some(106), json!({}))
        ),
        Err(AuthzError::BindingMismatch { .. })
    ));
    let later = NOW + time::Duration::hours(1);
    assert!(matches!(
        verifier.verify_resumed_for(&blob, &sig, later, &destroy),
        Err(AuthzError::Expired { .. })
    ));
    let mut edited = blob.clone();
    let at = edited.iter().position(|&b| b == b'5').unwrap();
    edited[at] = b'6';
    assert!(verifier
        .verify_resumed_for(&edited, &sig, NOW, &destroy)
        .is_err());
}
