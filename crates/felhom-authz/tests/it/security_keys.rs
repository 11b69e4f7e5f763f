//! FIDO security keys (sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com), with
//! signatures minted as an authenticator would make them: user presence, the counter, and the
//! application string as part of the key.

use felhom_authz::{AuthzError, BadSignatureReason, MemoryNonceStore, Role, Verifier};
use ssh_key::HashAlg;

use crate::support::*;

const USER_PRESENT: u8 = 0x01;

fn verifier_for(sk: &MintedSk) -> Verifier<MemoryNonceStore> {
    Verifier::new(
        vec![signer_for(&sk.key_data(), "ops-yubikey", Role::Operational)],
        MemoryNonceStore::new(),
        HOST,
    )
}

#[test]
fn minted_security_key_signatures_are_accepted() {
    for sk in [MintedSk::ed25519(3, "ssh:"), MintedSk::ecdsa_p256("ssh:")] {
        let verifier = verifier_for(&sk);
        for hash in [HashAlg::Sha512, HashAlg::Sha256] {
            let blob = blob();
            let sig = sk.sign(&blob, hash, USER_PRESENT, 7);
            let op = verifier.verify(&blob, &sig, NOW).unwrap();
            assert_eq!(op.signer.key_id, "ops-yubikey");
            assert!(
                op.signer.algorithm().starts_with("sk-"),
                "{}",
                op.signer.algorithm()
            );
        }
    }
}

#[test]
fn user_presence_is_required_by_default() {
    for sk in [MintedSk::ed25519(3, "ssh:"), MintedSk::ecdsa_p256("ssh:")] {
        let blob = blob();
        let sig = sk.sign(&blob, HashAlg::Sha512, 0x04, 7); // user verified, not present
        let verifier = verifier_for(&sk);
        let err = verifier.verify(&blob, &sig, NOW).unwrap_err();
        assert_eq!(
            err,
            AuthzError::BadSignature {
                key_id: "ops-yubikey".to_string(),
                reason: BadSignatureReason::UserPresenceMissing { flags: 0x04 }
            }
        );
        assert!(verifier.nonce_store().is_empty());
        // A key enrolled with no-touch-required can be allowed explicitly.
        verifier_for(&sk)
            .require_user_presence(false)
            .verify(&blob, &sig, NOW)
            .unwrap();
    }
}

#[test]
fn the_flags_are_signed_so_setting_user_presence_afterwards_fails() {
    let sk = MintedSk::ed25519(3, "ssh:");
    let blob = blob();
    let sig = sk.sign(&blob, HashAlg::Sha512, 0x00, 7);
    let mut parts = parts_of(&sig);
    let flags_at = parts.signature.len() - 5;
    parts.signature[flags_at] = USER_PRESENT;
    let err = verifier_for(&sk)
        .verify(&blob, &parts.armored(), NOW)
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
fn the_application_string_is_part_of_the_key() {
    let pinned = MintedSk::ed25519(3, "ssh:");
    let same_point_other_app = MintedSk::ed25519(3, "ssh:felhom");
    let blob = blob();
    let sig = same_point_other_app.sign(&blob, HashAlg::Sha512, USER_PRESENT, 1);
    let err = verifier_for(&pinned).verify(&blob, &sig, NOW).unwrap_err();
    assert!(matches!(err, AuthzError::UnknownSigner { .. }), "{err}");
    // Nor is a plain ed25519 key with the same point the same key.
    let plain = ed25519_key(3);
    let err = verifier_for(&pinned)
        .verify(&blob, &sign(&plain, &blob, HashAlg::Sha512), NOW)
        .unwrap_err();
    assert!(matches!(err, AuthzError::UnknownSigner { .. }), "{err}");
}

#[test]
fn the_counter_is_logged() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let sk = MintedSk::ed25519(3, "ssh:");
    let blob = blob();
    let sig = sk.sign(&blob, HashAlg::Sha512, USER_PRESENT, 4242);
    tracing::subscriber::with_default(subscriber, || {
        verifier_for(&sk).verify(&blob, &sig, NOW).unwrap();
    });
    let logs = captured.text();
    assert!(logs.contains("counter=4242"), "{logs}");
    assert!(logs.contains("signer=ops-yubikey"), "{logs}");
}

/// Opt-in (`FELHOM_AUTHZ_SSH_KEYGEN=1`, needs OpenSSH's ssh-keygen): proves the minting matches
/// what OpenSSH itself verifies, so the tests above test real-world signatures.
///
/// Observed with OpenSSH 9.2: `ssh-keygen -Y verify` also accepts an sk signature *without*
/// the user-presence flag (its `no-touch-required` policy applies to sshd logins only), so the
/// presence requirement is this verifier's own, stricter policy.
#[test]
fn minted_security_key_signatures_verify_with_ssh_keygen() {
    if std::env::var_os("FELHOM_AUTHZ_SSH_KEYGEN").is_none() {
        eprintln!("skipped: set FELHOM_AUTHZ_SSH_KEYGEN=1 to cross-check with ssh-keygen");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, sk) in [
        ("ed25519", MintedSk::ed25519(3, "ssh:")),
        ("ecdsa", MintedSk::ecdsa_p256("ssh:")),
    ] {
        for (hash, hash_name) in [(HashAlg::Sha512, "sha512"), (HashAlg::Sha256, "sha256")] {
            let blob = blob();
            let sig = sk.sign(&blob, hash, USER_PRESENT, 7);
            let blob_path = dir.path().join(format!("{name}-{hash_name}.json"));
            let sig_path = dir.path().join(format!("{name}-{hash_name}.sig"));
            let allowed = dir.path().join(format!("{name}.allowed"));
            std::fs::write(&blob_path, &blob).unwrap();
            std::fs::write(&sig_path, &sig).unwrap();
            std::fs::write(
                &allowed,
                format!("op@felhom {}\n", openssh_line(&sk.key_data(), "minted")),
            )
            .unwrap();
            let out = std::process::Command::new("ssh-keygen")
                .args([
                    "-Y",
                    "verify",
                    "-n",
                    felhom_authz::NAMESPACE,
                    "-I",
                    "op@felhom",
                    "-f",
                ])
                .arg(&allowed)
                .arg("-s")
                .arg(&sig_path)
                .stdin(std::fs::File::open(&blob_path).unwrap())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name} {hash_name}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
