//! An armored SSHSIG (`-----BEGIN SSH SIGNATURE-----`): armor decoding, its round trip, and
//! the envelope split behind it.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    felhom_authz::fuzz::armor_and_envelope(data);
});
