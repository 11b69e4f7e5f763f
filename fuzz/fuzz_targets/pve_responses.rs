//! A PVE API response body decoded as every response type the client reads (lenient
//! decoders), under a success and an error status.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    felhom_proxmox::client::fuzz_decode_every_response(200, None, data);
    felhom_proxmox::client::fuzz_decode_every_response(500, Some("Internal error"), data);
});
