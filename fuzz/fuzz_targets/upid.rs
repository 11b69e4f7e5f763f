//! A Proxmox task id (UPID) as PVE answers it: parsed, and an accepted one reads back the same.
#![no_main]
use felhom_proxmox::Upid;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    match raw.parse::<Upid>() {
        Ok(upid) => {
            assert_eq!(upid.as_str(), raw);
            let _ = (upid.node(), upid.pid(), upid.pstart(), upid.starttime());
            let _ = (
                upid.worker_type(),
                upid.id(),
                upid.user_id(),
                upid.token_name(),
            );
            let again: Upid = upid.to_string().parse().expect("a UPID's text parses");
            assert_eq!(again.as_str(), upid.as_str());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = serde_json::from_slice::<Upid>(data);
});
