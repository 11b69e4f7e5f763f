//! The op blob an operator signs: the verifier's parser, and the hub-proto contract type whose
//! canonical serialisation must read back to the same blob.
#![no_main]
use felhom_hub_proto::OpBlob;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    felhom_authz::fuzz::op_blob(data);
    if let Ok(blob) = serde_json::from_slice::<OpBlob>(data) {
        blob.validate().expect("a deserialized blob is valid");
        let canonical = blob.to_canonical_json();
        let again: OpBlob =
            serde_json::from_str(&canonical).expect("the canonical form reads back");
        assert_eq!(again, blob, "canonical round trip");
        assert_eq!(
            again.to_canonical_json(),
            canonical,
            "canonical is a fixed point"
        );
    }
});
