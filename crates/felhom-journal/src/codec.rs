//! The pure line codec of the log: encode one record line, decode one line, scan a whole buffer.
//!
//! # Line format
//!
//! One record per line, exactly:
//!
//! ```text
//! {"seq":17,"crc":"1a2b3c4d","rec":{...}}\n
//! ```
//!
//! * `seq` is the record's position in the file, in canonical decimal (no sign, no leading
//!   zero), starting at 1 on the first line and rising by exactly 1 per line. A gap, a repeat or
//!   a first line that is not 1 is corruption: it means a line was lost or spliced in.
//! * `crc` is the CRC-32 (IEEE, as `crc32fast` computes it), 8 lowercase hex digits, over the
//!   bytes of the `seq` digits immediately followed by the exact bytes of the `rec` JSON as
//!   written. Any single changed byte inside those is a burst shorter than 32 bits, which
//!   CRC-32 always detects; a changed byte anywhere else breaks the fixed framing.
//! * `rec` is the record as compact `serde_json`, which never contains a raw newline.
//!
//! The framing is fixed byte for byte, so decoding never runs a JSON parser over the envelope:
//! it checks the literal prefix, the digits, the hex and the closing `}` and hands back a slice
//! of the record bytes (no allocation per record).
//!
//! # Tail rules (see [`scan`])
//!
//! Because every append is fsync'd before the next begins, only the last record can be torn by
//! a crash, and a torn write never got its final newline onto the disk. So after the last good
//! line, the rest of the buffer may be a *torn tail*: bytes with no newline at all, possibly
//! ending in zero bytes (space the file system allocated but never wrote). A complete,
//! newline-terminated line that is bad (checksum, framing, sequence, or a record that does not
//! decode) is *corruption* wherever it is, the last line included: its append was acknowledged,
//! so dropping it would silently forget a record (for the nonce store, a used nonce). A bad
//! tail with a complete good line inside it (a damaged newline that merged two lines) is
//! corruption too.

use std::fmt;

const SEQ_PREFIX: &[u8] = b"{\"seq\":";
const CRC_PREFIX: &[u8] = b",\"crc\":\"";
const REC_PREFIX: &[u8] = b"\",\"rec\":";
const CRC_LEN: usize = 8;
/// `u64::MAX` has 20 digits.
const MAX_SEQ_DIGITS: usize = 20;
const HEX: &[u8; 16] = b"0123456789abcdef";

/// Why a record could not be encoded. Nothing was appended to the output.
#[derive(Debug)]
#[non_exhaustive]
pub enum EncodeError {
    /// `serde_json` refused the record (e.g. a map with non-string keys).
    Json(serde_json::Error),
    /// The serialized record contained a raw newline (only possible with a hand-made raw JSON
    /// value); it would break the one-record-per-line framing.
    Newline,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Json(e) => write!(f, "{e}"),
            EncodeError::Newline => {
                f.write_str("serialized record is empty or contains a raw newline")
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// Why one line did not decode. Pure framing/checksum facts; the caller decides whether the
/// line is a torn tail or corruption.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineError {
    /// The fixed envelope is not there (`what` names the missing part).
    Framing {
        /// The part of the envelope that is missing or malformed.
        what: &'static str,
    },
    /// The envelope is intact but the checksum does not match the bytes.
    Checksum {
        /// The checksum written in the line.
        stored: u32,
        /// The checksum of the bytes actually present.
        computed: u32,
    },
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::Framing { what } => write!(f, "bad framing: {what}"),
            LineError::Checksum { stored, computed } => write!(
                f,
                "checksum mismatch: line says {stored:08x}, bytes give {computed:08x}"
            ),
        }
    }
}

/// One good line, borrowed from the scanned buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// The record's sequence number.
    pub seq: u64,
    /// The exact JSON bytes of the record.
    pub rec: &'a [u8],
}

fn checksum(seq_digits: &[u8], rec: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(seq_digits);
    h.update(rec);
    h.finalize()
}

/// Writes `n` in decimal into `out`; returns nothing, appends only digits.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; MAX_SEQ_DIGITS];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends one complete line (with its final `\n`) for `rec` at `seq` to `out`.
///
/// On error `out` is left exactly as it was.
pub fn encode_line<R: serde::Serialize + ?Sized>(
    seq: u64,
    rec: &R,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.extend_from_slice(SEQ_PREFIX);
    let digits_start = out.len();
    push_decimal(out, seq);
    let digits_end = out.len();
    out.extend_from_slice(CRC_PREFIX);
    let crc_at = out.len();
    out.extend_from_slice(&[b'0'; CRC_LEN]);
    out.extend_from_slice(REC_PREFIX);
    let rec_start = out.len();
    if let Err(e) = serde_json::to_writer(&mut *out, rec) {
        out.truncate(start);
        return Err(EncodeError::Json(e));
    }
    if memchr::memchr(b'\n', &out[rec_start..]).is_some() {
        out.truncate(start);
        return Err(EncodeError::Newline);
    }
    let crc = checksum(&out[digits_start..digits_end], &out[rec_start..]);
    for (i, slot) in out[crc_at..crc_at + CRC_LEN].iter_mut().enumerate() {
        *slot = HEX[((crc >> (28 - 4 * i)) & 0xf) as usize];
    }
    out.extend_from_slice(b"}\n");
    Ok(())
}

/// Appends one complete line for the already-serialized record `rec` (exact JSON bytes, as
/// [`decode_line`] hands them back) at `seq`: how a repair renumbers intact records without
/// re-serializing them. Refused, leaving `out` as it was, if `rec` is empty or holds a newline.
pub fn encode_raw_line(seq: u64, rec: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
    if rec.is_empty() || memchr::memchr(b'\n', rec).is_some() {
        return Err(EncodeError::Newline);
    }
    out.extend_from_slice(SEQ_PREFIX);
    let digits_start = out.len();
    push_decimal(out, seq);
    let digits_end = out.len();
    let crc = checksum(&out[digits_start..digits_end], rec);
    out.extend_from_slice(CRC_PREFIX);
    out.extend((0..CRC_LEN).map(|i| HEX[((crc >> (28 - 4 * i)) & 0xf) as usize]));
    out.extend_from_slice(REC_PREFIX);
    out.extend_from_slice(rec);
    out.extend_from_slice(b"}\n");
    Ok(())
}

fn hex_value(b: u8) -> Option<u32> {
    match b {
        b'0'..=b'9' => Some(u32::from(b - b'0')),
        b'a'..=b'f' => Some(u32::from(b - b'a' + 10)),
        _ => None,
    }
}

/// Decodes one line given WITHOUT its final `\n`: checks the framing, the canonical `seq` and
/// the checksum, and returns the record bytes. Does not check the sequence order.
pub fn decode_line(line: &[u8]) -> Result<Line<'_>, LineError> {
    let framing = |what| LineError::Framing { what };
    let rest = line
        .strip_prefix(SEQ_PREFIX)
        .ok_or(framing("line does not start with {\"seq\":"))?;
    let n_digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if n_digits == 0 || n_digits > MAX_SEQ_DIGITS {
        return Err(framing("seq is not a decimal number"));
    }
    let (digits, rest) = rest.split_at(n_digits);
    if digits[0] == b'0' {
        // Canonical form only, so the checksummed digits are the only spelling of a seq.
        return Err(framing("seq has a leading zero or is 0"));
    }
    let mut seq: u64 = 0;
    for &d in digits {
        seq = seq
            .checked_mul(10)
            .and_then(|s| s.checked_add(u64::from(d - b'0')))
            .ok_or(framing("seq overflows"))?;
    }
    let rest = rest
        .strip_prefix(CRC_PREFIX)
        .ok_or(framing("missing ,\"crc\":\" after seq"))?;
    if rest.len() < CRC_LEN {
        return Err(framing("crc is cut short"));
    }
    let (hex, rest) = rest.split_at(CRC_LEN);
    let mut stored: u32 = 0;
    for &h in hex {
        stored =
            (stored << 4) | hex_value(h).ok_or(framing("crc is not 8 lowercase hex digits"))?;
    }
    let rest = rest
        .strip_prefix(REC_PREFIX)
        .ok_or(framing("missing \",\"rec\": after crc"))?;
    let rec = rest
        .strip_suffix(b"}")
        .ok_or(framing("line does not end with }"))?;
    if rec.is_empty() {
        return Err(framing("rec is empty"));
    }
    let computed = checksum(digits, rec);
    if computed != stored {
        return Err(LineError::Checksum { stored, computed });
    }
    Ok(Line { seq, rec })
}

/// Where, inside a bad tail, a complete good line starts (other than at its first byte).
///
/// A damaged newline merges a good line into the bad one before it; the merged line then ends
/// the buffer and would pass for a torn tail, silently dropping two records. Only the tail is
/// ever searched, so this costs nothing on a clean replay.
fn embedded_line(bad: &[u8]) -> Option<usize> {
    let end = bad.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let bad = &bad[..end];
    memchr::memmem::find_iter(bad, SEQ_PREFIX)
        .filter(|&at| at > 0)
        .find(|&at| decode_line(&bad[at..]).is_ok())
}

/// How a scanned buffer ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Every byte belongs to a good line.
    Clean,
    /// The buffer ends in a torn record, to be dropped by truncating to [`Scanned::good_len`].
    Torn {
        /// 1-based line number where the torn record starts.
        line: u64,
        /// Bytes after the last good line.
        bytes: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// The outcome of a successful [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// Number of good records visited (equal to the last good `seq`).
    pub records: u64,
    /// Byte length of the good prefix (end of the last good line, newline included).
    pub good_len: u64,
    /// Whether a torn tail follows the good prefix.
    pub tail: Tail,
}

/// A scan refused the buffer: damage before the last record, a sequence gap, or a record the
/// visitor rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    /// 1-based line number of the offending line.
    pub line: u64,
    /// Byte offset of the start of the offending line.
    pub offset: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// Scans a whole log buffer: every good line is handed to `visit(line_no, line)` in order; a
/// visitor error (e.g. the record does not deserialize) stops the scan as corruption at that
/// line. Pure: no I/O, no allocation per good record.
pub fn scan<F>(buf: &[u8], mut visit: F) -> Result<Scanned, ScanError>
where
    F: FnMut(u64, Line<'_>) -> Result<(), String>,
{
    let mut pos = 0usize;
    let mut line_no = 0u64;
    let mut expected = 1u64;
    loop {
        if pos == buf.len() {
            return Ok(Scanned {
                records: expected - 1,
                good_len: pos as u64,
                tail: Tail::Clean,
            });
        }
        line_no += 1;
        let rest = &buf[pos..];
        let torn = |reason: String| {
            Ok(Scanned {
                records: expected - 1,
                good_len: pos as u64,
                tail: Tail::Torn {
                    line: line_no,
                    bytes: rest.len() as u64,
                    reason,
                },
            })
        };
        let Some(nl) = memchr::memchr(b'\n', rest) else {
            if let Some(at) = embedded_line(rest) {
                return Err(ScanError {
                    line: line_no,
                    offset: pos as u64,
                    reason: format!("bad record with a good one inside it at byte {at}"),
                });
            }
            let reason = if rest.iter().all(|&b| b == 0) {
                format!("{} trailing zero bytes", rest.len())
            } else {
                format!("last record has no final newline ({} bytes)", rest.len())
            };
            return torn(reason);
        };
        match decode_line(&rest[..nl]) {
            Ok(line) => {
                if line.seq != expected {
                    return Err(ScanError {
                        line: line_no,
                        offset: pos as u64,
                        reason: format!(
                            "sequence gap: expected seq {expected}, found {}",
                            line.seq
                        ),
                    });
                }
                visit(line_no, line).map_err(|reason| ScanError {
                    line: line_no,
                    offset: pos as u64,
                    reason,
                })?;
                expected += 1;
                pos += nl + 1;
            }
            Err(e) => {
                // Newline-terminated, so its append completed: damage, never a torn write.
                let reason = if let Some(at) = embedded_line(&rest[..nl]) {
                    format!("{e}, with a good record inside it at byte {at}")
                } else if nl + 1 == rest.len() {
                    format!("{e} (a complete last line: corruption, not a torn write)")
                } else {
                    format!("{e}, and more data follows it")
                };
                return Err(ScanError {
                    line: line_no,
                    offset: pos as u64,
                    reason,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, rec: &serde_json::Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_line(seq, rec, &mut out).unwrap();
        out
    }

    fn file(n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for seq in 1..=n {
            encode_line(seq, &serde_json::json!({"n": seq, "s": "x\ny"}), &mut out).unwrap();
        }
        out
    }

    fn count(buf: &[u8]) -> Result<Scanned, ScanError> {
        scan(buf, |_, _| Ok(()))
    }

    #[test]
    fn encoded_line_has_the_documented_shape() {
        let l = line(17, &serde_json::json!({"a": 1}));
        let crc = checksum(b"17", br#"{"a":1}"#);
        assert_eq!(
            String::from_utf8(l).unwrap(),
            format!("{{\"seq\":17,\"crc\":\"{crc:08x}\",\"rec\":{{\"a\":1}}}}\n")
        );
    }

    #[test]
    fn a_raw_line_is_byte_identical_to_an_encoded_one() {
        let l = line(42, &serde_json::json!({"a": [1, "é"]}));
        let rec = decode_line(&l[..l.len() - 1]).unwrap().rec;
        let mut raw = b"x".to_vec();
        encode_raw_line(42, rec, &mut raw).unwrap();
        assert_eq!(&raw[1..], &l[..]);
        assert!(encode_raw_line(1, b"{\n}", &mut raw).is_err());
        assert!(encode_raw_line(1, b"", &mut raw).is_err());
        assert_eq!(&raw[1..], &l[..], "untouched on error");
    }

    #[test]
    fn decode_returns_exact_record_bytes() {
        let l = line(3, &serde_json::json!(["é", null]));
        let got = decode_line(&l[..l.len() - 1]).unwrap();
        assert_eq!(got.seq, 3);
        assert_eq!(got.rec, "[\"é\",null]".as_bytes());
    }

    #[test]
    fn decimal_encoding_covers_edges() {
        for n in [1u64, 9, 10, 99, 100, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn decode_refuses_non_canonical_or_broken_envelopes() {
        let good = line(5, &serde_json::json!({"k": "v"}));
        let good = std::str::from_utf8(&good[..good.len() - 1])
            .unwrap()
            .to_owned();
        let cases = [
            good.replacen("\"seq\":5", "\"seq\":05", 1),
            good.replacen("\"seq\":5", "\"seq\":", 1),
            good.replacen("\"seq\":5", "\"seq\":0", 1),
            good.replacen("\"seq\":5", "\"seq\":99999999999999999999", 1),
            good.to_uppercase(),
            good[..good.len() - 1].to_owned(),
            format!(" {good}"),
        ];
        for c in &cases {
            assert!(decode_line(c.as_bytes()).is_err(), "accepted {c}");
        }
        let empty_rec = r#"{"seq":1,"crc":"00000000","rec":}"#;
        assert_eq!(
            decode_line(empty_rec.as_bytes()),
            Err(LineError::Framing {
                what: "rec is empty"
            })
        );
    }

    #[test]
    fn encode_failure_leaves_buffer_untouched() {
        let mut bad = std::collections::HashMap::new();
        bad.insert(vec![1u8], 1);
        let mut out = b"keep".to_vec();
        assert!(matches!(
            encode_line(1, &bad, &mut out),
            Err(EncodeError::Json(_))
        ));
        assert_eq!(out, b"keep");
    }

    #[test]
    fn clean_buffer_scans_every_record_in_order() {
        let buf = file(5);
        let mut seen = Vec::new();
        let s = scan(&buf, |no, l| {
            seen.push((no, l.seq));
            Ok(())
        })
        .unwrap();
        assert_eq!(s.records, 5);
        assert_eq!(s.good_len, buf.len() as u64);
        assert_eq!(s.tail, Tail::Clean);
        assert_eq!(seen, (1..=5).map(|i| (i, i)).collect::<Vec<_>>());
        assert_eq!(count(b"").unwrap().tail, Tail::Clean);
    }

    #[test]
    fn missing_newline_and_trailing_zeros_are_torn_tails() {
        let good = file(2);
        let third = line(3, &serde_json::json!({"n": 3}));
        let mut buf = good.clone();
        buf.extend_from_slice(&third[..third.len() - 1]);
        let s = count(&buf).unwrap();
        assert_eq!((s.records, s.good_len), (2, good.len() as u64));
        assert!(matches!(&s.tail, Tail::Torn { line: 3, bytes, reason }
            if *bytes == third.len() as u64 - 1 && reason.contains("no final newline")));

        let mut zeros = good.clone();
        zeros.extend_from_slice(&[0; 4096]);
        let s = count(&zeros).unwrap();
        assert!(
            matches!(&s.tail, Tail::Torn { line: 3, bytes: 4096, reason }
            if reason.contains("zero bytes"))
        );

        let mut partial_then_zeros = good.clone();
        partial_then_zeros.extend_from_slice(b"{\"seq\":3,\"cr\0\0\0");
        let s = count(&partial_then_zeros).unwrap();
        assert!(matches!(
            &s.tail,
            Tail::Torn {
                line: 3,
                bytes: 15,
                ..
            }
        ));
        assert_eq!(s.good_len, good.len() as u64);
    }

    #[test]
    fn a_complete_bad_last_line_is_corruption_not_a_torn_tail() {
        let good = file(2);
        // A bit flip inside the last record, newline intact.
        let mut flipped = file(3);
        let at = good.len() + 40;
        flipped[at] ^= 0x01;
        let e = count(&flipped).unwrap_err();
        assert_eq!((e.line, e.offset), (3, good.len() as u64));
        assert!(e.reason.contains("complete last line"), "{}", e.reason);

        // A bad complete line followed by zero bytes: the zeros may be torn, the line is not.
        let mut bad_then_zeros = good.clone();
        bad_then_zeros.extend_from_slice(b"{\"seq\":3,garbage\n\0\0\0");
        let e = count(&bad_then_zeros).unwrap_err();
        assert_eq!((e.line, e.offset), (3, good.len() as u64));

        // A checksummed record the visitor rejects on the last line, too.
        let e = scan(
            &file(3),
            |no, _| if no == 3 { Err("no".into()) } else { Ok(()) },
        )
        .unwrap_err();
        assert_eq!(e.line, 3);
    }

    #[test]
    fn bad_line_followed_by_anything_is_corruption_with_its_line() {
        let mut buf = file(4);
        // Flip a byte inside the record of line 2.
        let second_start = buf.iter().position(|&b| b == b'\n').unwrap() + 1;
        let at = second_start + 30;
        buf[at] ^= 0x01;
        let e = count(&buf).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("more data follows"), "{}", e.reason);

        // A bad line followed by a second bad line is not a single torn record either.
        let mut two_bad = file(1);
        two_bad.extend_from_slice(b"junk\njunk\n");
        assert_eq!(count(&two_bad).unwrap_err().line, 2);
    }

    #[test]
    fn a_damaged_newline_merging_the_last_two_lines_is_corruption_not_a_torn_tail() {
        let mut buf = file(3);
        let starts: Vec<usize> = buf
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .map(|(i, _)| i)
            .collect();
        buf[starts[1]] = b'x';
        let e = count(&buf).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("good record inside"), "{}", e.reason);

        // Same without the final newline, and with zeros after it.
        buf.pop();
        buf.extend_from_slice(&[0; 16]);
        assert_eq!(count(&buf).unwrap_err().line, 2);
    }

    #[test]
    fn sequence_gaps_and_wrong_start_are_corruption() {
        let mut buf = file(2);
        buf.extend_from_slice(&line(4, &serde_json::json!(1)));
        let e = count(&buf).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.reason.contains("expected seq 3, found 4"));

        let e = count(&line(2, &serde_json::json!(1))).unwrap_err();
        assert_eq!(e.line, 1);
    }

    #[test]
    fn visitor_rejection_is_corruption_at_that_line() {
        let buf = file(3);
        let e = scan(
            &buf,
            |no, _| if no == 2 { Err("nope".into()) } else { Ok(()) },
        )
        .unwrap_err();
        let second = buf.iter().position(|&b| b == b'\n').unwrap() as u64 + 1;
        assert_eq!(
            e,
            ScanError {
                line: 2,
                offset: second,
                reason: "nope".into()
            }
        );
    }
}
