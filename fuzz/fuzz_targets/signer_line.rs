//! An authorized_keys line as the config pins a signer: parsed, and if accepted its OpenSSH
//! rendering parses back to the same key.
#![no_main]
use felhom_authz::{check_signers, Role, Signer};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    // The first line is the key id (checked too), the rest the authorized_keys line.
    let (key_id, line) = line.split_once('\n').unwrap_or(("ops", line));
    match Signer::from_authorized_key(key_id, Role::Operational, line) {
        Ok(signer) => {
            let _ = (signer.fingerprint(), signer.algorithm());
            let again =
                Signer::from_authorized_key("again", Role::Recovery, &signer.public_key_openssh())
                    .expect("a signer's own OpenSSH line parses");
            assert!(
                again.same_key(&signer),
                "OpenSSH round trip changed the key"
            );
            let _ = check_signers(&[signer, again]);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
