//! Property tests: any change to a signed blob or to a signature's bytes is refused (and burns
//! no nonce); changes to armor layout only are not. Case counts are modest for RSA and ECDSA,
//! whose verification is slow in debug builds.

use std::sync::OnceLock;

use felhom_authz::{MemoryNonceStore, Role, Signer, Verifier};
use proptest::prelude::*;
use ssh_key::HashAlg;

use crate::support::*;

struct Fixture {
    signer: Signer,
    blob: Vec<u8>,
    sig: Vec<u8>,
}

fn ed25519_fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = ed25519_key(7);
        let blob = blob_json(serde_json::json!({"params": {"storage": "local", "force": true}}));
        let sig = sign(&key, &blob, HashAlg::Sha512);
        Fixture {
            signer: signer_of(&key, "ops"),
            blob,
            sig,
        }
    })
}

fn vector_fixture(case: &str, key: &str) -> Fixture {
    let v = vector(case, key);
    Fixture {
        signer: vector_signer(key, "ops", Role::Operational),
        blob: v.blob,
        sig: v.sig,
    }
}

fn verifier_for(f: &Fixture) -> Verifier<MemoryNonceStore> {
    verifier(vec![f.signer.clone()])
}

/// Refused, and nothing recorded.
fn assert_refused(f: &Fixture, blob: &[u8], sig: &[u8]) -> Result<(), TestCaseError> {
    let verifier = verifier_for(f);
    let result = verifier.verify(blob, sig, NOW);
    prop_assert!(result.is_err(), "a mutated input verified: {:?}", result);
    prop_assert!(verifier.nonce_store().is_empty());
    Ok(())
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, xor: u8 },
    Insert { at: usize, byte: u8 },
    Delete { at: usize },
    Truncate { len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 1u8..=255).prop_map(|(at, xor)| Mutation::Flip { at, xor }),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        1 => any::<usize>().prop_map(|at| Mutation::Delete { at }),
        1 => any::<usize>().prop_map(|len| Mutation::Truncate { len }),
    ]
}

fn apply(bytes: &[u8], m: &Mutation) -> Vec<u8> {
    let mut out = bytes.to_vec();
    match *m {
        Mutation::Flip { at, xor } => out[at % bytes.len()] ^= xor,
        Mutation::Insert { at, byte } => out.insert(at % (bytes.len() + 1), byte),
        Mutation::Delete { at } => {
            out.remove(at % bytes.len());
        }
        Mutation::Truncate { len } => out.truncate(len % bytes.len()),
    }
    out
}

proptest! {
    #[test]
    fn ed25519_any_mutated_blob_is_refused(m in mutation()) {
        let f = ed25519_fixture();
        assert_refused(f, &apply(&f.blob, &m), &f.sig)?;
    }

    #[test]
    fn ed25519_any_mutated_signature_is_refused(m in mutation()) {
        let f = ed25519_fixture();
        let envelope = apply(&envelope_of(&f.sig), &m);
        assert_refused(f, &f.blob, &armor(&envelope, 70, "\n"))?;
    }

    #[test]
    fn arbitrary_bytes_as_a_signature_are_refused(junk in proptest::collection::vec(any::<u8>(), 0..400)) {
        let f = ed25519_fixture();
        assert_refused(f, &f.blob, &junk)?;
        if !junk.is_empty() {
            assert_refused(f, &f.blob, &armor(&junk, 70, "\n"))?;
        }
    }

    #[test]
    fn armor_layout_alone_never_changes_the_verdict(
        width in 1usize..300,
        crlf in any::<bool>(),
        final_newline in any::<bool>(),
    ) {
        let f = ed25519_fixture();
        let mut armored = armor(&envelope_of(&f.sig), width, if crlf { "\r\n" } else { "\n" });
        if !final_newline {
            armored.truncate(armored.trim_ascii_end().len());
        }
        prop_assert!(verifier_for(f).verify(&f.blob, &armored, NOW).is_ok());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn rsa_any_mutated_blob_or_signature_is_refused(m in mutation(), on_sig in any::<bool>()) {
        static F: OnceLock<Fixture> = OnceLock::new();
        let f = F.get_or_init(|| vector_fixture("rsa2048-sha512", "rsa2048"));
        if on_sig {
            assert_refused(f, &f.blob, &armor(&apply(&envelope_of(&f.sig), &m), 70, "\n"))?;
        } else {
            assert_refused(f, &apply(&f.blob, &m), &f.sig)?;
        }
    }

    #[test]
    fn ecdsa_any_mutated_blob_or_signature_is_refused(m in mutation(), on_sig in any::<bool>()) {
        static F: OnceLock<Fixture> = OnceLock::new();
        let f = F.get_or_init(|| vector_fixture("ecdsa384-sha512", "ecdsa384"));
        if on_sig {
            assert_refused(f, &f.blob, &armor(&apply(&envelope_of(&f.sig), &m), 70, "\n"))?;
        } else {
            assert_refused(f, &apply(&f.blob, &m), &f.sig)?;
        }
    }
}
