//! Fuzzing entry points for the `fuzz/` crate (not an API: hidden, no stability promise). Each
//! takes arbitrary bytes, drives one parser the verifier uses, and panics only when a property
//! the verifier relies on is broken — a panic is a finding, an error is the expected answer.

use std::time::Duration;

use time::OffsetDateTime;

use crate::{armor, blob, envelope, MemoryNonceStore, Signer, Verifier, MAX_SIGNATURE_LEN};

/// Armor then envelope, as stage 1 runs them; a decoded armor re-encodes to the same bytes.
pub fn armor_and_envelope(input: &[u8]) {
    if input.len() > MAX_SIGNATURE_LEN {
        return; // the verifier refuses larger input before decoding it
    }
    let Ok(bytes) = armor::decode(input) else {
        return;
    };
    for (width, eol) in [(70, "\n"), (1, "\r\n")] {
        let again = armor::decode(armor::encode(&bytes, width, eol).as_bytes());
        assert_eq!(again.as_deref(), Ok(&bytes[..]), "armor round trip");
    }
    let _ = envelope::parse(&bytes);
}

/// A binary envelope through every verifier stage up to the signature check, against
/// `signers` (so a seed carrying a pinned key reaches key, signature and algorithm decoding).
/// Never accepts: `blob` was not signed by the fuzzer.
pub fn envelope_through_verifier(envelope_bytes: &[u8], blob: &[u8], signers: &[Signer]) {
    let _ = envelope::parse(envelope_bytes);
    let armored = armor::encode(envelope_bytes, 70, "\n");
    let verifier = Verifier::new(signers.to_vec(), MemoryNonceStore::new(), "pve-01");
    let now = OffsetDateTime::from_unix_timestamp(1_795_428_300).expect("a valid instant");
    if let Err(e) = verifier.check(blob, armored.as_bytes(), now) {
        let _ = e.to_string();
    }
}

/// The op blob parser (stage 6), with the default and the tightest window policy.
pub fn op_blob(bytes: &[u8]) {
    for window in [crate::DEFAULT_MAX_WINDOW, Duration::ZERO] {
        match blob::parse(bytes, window) {
            Ok(b) => assert!(b.not_before <= b.not_after, "window out of order"),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}
