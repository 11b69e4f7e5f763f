//! Property tests of the pure codec: round trip, and every single-byte mutation or truncation
//! of a line is detected.

use felhom_journal::codec::{decode_line, encode_line, scan, Tail};
use proptest::prelude::*;

use crate::Rec;

fn arb_rec() -> impl Strategy<Value = Rec> {
    (
        any::<u64>(),
        ".{0,40}",
        proptest::collection::vec(".{0,8}", 0..4),
    )
        .prop_map(|(n, name, tags)| Rec { n, name, tags })
}

fn encode_all(first: &[Rec]) -> Vec<u8> {
    let mut buf = Vec::new();
    for (i, r) in first.iter().enumerate() {
        encode_line(i as u64 + 1, r, &mut buf).unwrap();
    }
    buf
}

fn decode_all(
    buf: &[u8],
) -> Result<(Vec<Rec>, felhom_journal::codec::Scanned), felhom_journal::codec::ScanError> {
    let mut out = Vec::new();
    let s = scan(buf, |_, l| {
        out.push(serde_json::from_slice::<Rec>(l.rec).map_err(|e| e.to_string())?);
        Ok(())
    })?;
    Ok((out, s))
}

proptest! {
    #[test]
    fn round_trip(recs in proptest::collection::vec(arb_rec(), 0..8), seq in 1u64..u64::MAX) {
        let buf = encode_all(&recs);
        let (back, s) = decode_all(&buf).unwrap();
        prop_assert_eq!(&back, &recs);
        prop_assert_eq!(s.tail, Tail::Clean);
        prop_assert_eq!(s.good_len, buf.len() as u64);

        if let Some(r) = recs.first() {
            let mut line = Vec::new();
            encode_line(seq, r, &mut line).unwrap();
            prop_assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            let l = decode_line(&line[..line.len() - 1]).unwrap();
            prop_assert_eq!(l.seq, seq);
            prop_assert_eq!(&serde_json::from_slice::<Rec>(l.rec).unwrap(), r);
        }
    }

    #[test]
    fn any_single_byte_mutation_of_the_last_line_is_detected(
        recs in proptest::collection::vec(arb_rec(), 1..5),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let buf = encode_all(&recs);
        let last_start = buf[..buf.len() - 1].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let i = last_start + at.index(buf.len() - last_start);
        prop_assume!(buf[i] != byte);
        let mut m = buf.clone();
        m[i] = byte;
        // Never accepted as a good record. A complete (newline-terminated) bad line is
        // corruption at its line; only damage to the final newline itself leaves a line
        // without one, which is a torn tail dropping exactly that record.
        match decode_all(&m) {
            Err(e) => {
                prop_assert!(i != buf.len() - 1, "a lost final newline is a torn tail");
                prop_assert_eq!(e.line, recs.len() as u64);
            }
            Ok((back, s)) => {
                prop_assert_eq!(i, buf.len() - 1, "mutation at {} accepted", i);
                let torn = matches!(s.tail, Tail::Torn { .. });
                prop_assert!(torn, "mutation at {} accepted", i);
                prop_assert_eq!(&back[..], &recs[..recs.len() - 1]);
                prop_assert_eq!(s.good_len, last_start as u64);
            }
        }
    }

    #[test]
    fn any_single_byte_mutation_before_the_last_line_is_refused_at_its_line(
        recs in proptest::collection::vec(arb_rec(), 2..5),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let buf = encode_all(&recs);
        let last_start = buf[..buf.len() - 1].iter().rposition(|&b| b == b'\n').unwrap() + 1;
        let i = at.index(last_start);
        prop_assume!(buf[i] != byte);
        let mut m = buf.clone();
        m[i] = byte;
        let line = buf[..i].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        let e = decode_all(&m).unwrap_err();
        prop_assert_eq!(e.line, line);
    }

    #[test]
    fn any_truncation_of_the_last_line_drops_exactly_it(
        recs in proptest::collection::vec(arb_rec(), 1..5),
        at in any::<prop::sample::Index>(),
    ) {
        let buf = encode_all(&recs);
        let last_start = buf[..buf.len() - 1].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let cut = last_start + at.index(buf.len() - last_start);
        let (back, s) = decode_all(&buf[..cut]).unwrap();
        prop_assert_eq!(&back[..], &recs[..recs.len() - 1]);
        prop_assert_eq!(s.good_len, last_start as u64);
        if cut == last_start {
            prop_assert_eq!(s.tail, Tail::Clean);
        } else {
            let dropped = matches!(s.tail, Tail::Torn { bytes, .. } if bytes == (cut - last_start) as u64);
            prop_assert!(dropped, "cut at {}: {:?}", cut, s.tail);
        }
    }
}
