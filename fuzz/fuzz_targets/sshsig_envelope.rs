//! A binary SSHSIG envelope through every verifier stage up to the signature check, against
//! the test vectors' pinned keys (so mutated seeds reach key and signature decoding).
#![no_main]
use std::sync::OnceLock;

use felhom_authz::{Role, Signer};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/sshsig");

fn signers() -> &'static (Vec<Signer>, Vec<u8>) {
    static SIGNERS: OnceLock<(Vec<Signer>, Vec<u8>)> = OnceLock::new();
    SIGNERS.get_or_init(|| {
        let mut signers = Vec::new();
        let mut names: Vec<_> = std::fs::read_dir(VECTORS)
            .expect("testdata/sshsig")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "pub"))
            .collect();
        names.sort();
        for (i, path) in names.iter().enumerate() {
            let line = std::fs::read_to_string(path).expect("a .pub file");
            // rsa1024.pub is a vector for the key policy's refusal: it cannot be pinned.
            if let Ok(signer) =
                Signer::from_authorized_key(&format!("ops-{i}"), Role::Operational, line.trim())
            {
                signers.push(signer);
            }
        }
        assert!(signers.len() >= 7, "the vector keys are pinned");
        let blob = std::fs::read(format!("{VECTORS}/ed25519-sha256.json")).expect("a blob");
        (signers, blob)
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (signers, blob) = signers();
    felhom_authz::fuzz::envelope_through_verifier(data, blob, signers);
});
