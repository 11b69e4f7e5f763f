//! Integration tests of felhom-journal: real temp dirs, real fsync, injected faults.

mod codec_props;
mod faults;
mod log;
mod ops;

use serde::{Deserialize, Serialize};

/// A record shaped like the nonce store's: a few strings and numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rec {
    pub n: u64,
    pub name: String,
    pub tags: Vec<String>,
}

pub fn rec(n: u64) -> Rec {
    Rec {
        n,
        name: format!("nonce-{n:08}"),
        tags: vec!["a".into(), "é\n\"q\"".into()],
    }
}

pub fn recs(range: std::ops::RangeInclusive<u64>) -> Vec<Rec> {
    range.map(rec).collect()
}

/// Byte offsets where each line of the file starts, plus the file length at the end.
pub fn line_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            starts.push(i + 1);
        }
    }
    starts
}
