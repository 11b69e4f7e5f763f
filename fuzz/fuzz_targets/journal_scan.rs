//! The journal's line codec over arbitrary bytes: the pure scan every open runs, with the op
//! record decoder as its visitor, and each line decoded alone.
#![no_main]
use felhom_journal::{codec, OpRecord};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = codec::scan(data, |_, line| {
        serde_json::from_slice::<OpRecord>(line.rec)
            .map(drop)
            .map_err(|e| e.to_string())
    });
    let _ = codec::scan(data, |_, _| Ok(()));
    for line in data.split_inclusive(|&b| b == b'\n') {
        let _ = codec::decode_line(line);
    }
});
