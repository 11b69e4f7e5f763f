//! What crosses the hub link: the `ControlEnvelope` the hub answers with (read leniently) and
//! the `HostReport` body (the hub's side reads it); an accepted report re-serialises and reads
//! back.
#![no_main]
use felhom_hub_proto::{ControlEnvelope, HostReport};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = serde_json::from_slice::<ControlEnvelope>(data) {
        let text = serde_json::to_string(&envelope).expect("an envelope serialises");
        let again: ControlEnvelope = serde_json::from_str(&text).expect("and reads back");
        assert_eq!(again, envelope);
    }
    if let Ok(report) = serde_json::from_slice::<HostReport>(data) {
        let text = serde_json::to_string(&report).expect("a report serialises");
        serde_json::from_str::<HostReport>(&text).expect("and reads back");
    }
});
