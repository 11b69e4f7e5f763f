//! The SSHSIG armor (`-----BEGIN SSH SIGNATURE-----`): normalized and base64-decoded by hand,
//! because signers wrap at different widths (ssh-keygen 70, PROTOCOL.sshsig 76, Go tools 64),
//! Windows tools write CRLF, and copy-paste drops the final newline.

const BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";
const END: &str = "-----END SSH SIGNATURE-----";

/// Decodes an armored SSHSIG into its binary envelope. Pure; the caller bounds the input size.
///
/// Accepts any line width, LF or CRLF, leading/trailing blank lines and surrounding
/// whitespace, with or without a final newline. Refuses anything else: text before BEGIN or
/// after END, PEM headers, characters outside base64, non-canonical base64.
pub(crate) fn decode(input: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(input)
        .map_err(|e| format!("armor is not utf-8 (byte {})", e.valid_up_to()))?;
    let mut lines = text
        .split('\n')
        .map(|line| line.trim_matches(|c: char| c == '\r' || c == ' ' || c == '\t'))
        .filter(|line| !line.is_empty());

    match lines.next() {
        Some(BEGIN) => {}
        Some(other) => {
            return Err(format!(
                "armor must start with {BEGIN:?}, found {:?}",
                truncate(other)
            ))
        }
        None => return Err("armor is empty".to_string()),
    }

    let mut body = String::with_capacity(text.len());
    let mut ended = false;
    for line in lines.by_ref() {
        if line == END {
            ended = true;
            break;
        }
        if let Some(bad) = line
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=')))
        {
            return Err(format!("armor body holds {bad:?}, which is not base64"));
        }
        body.push_str(line);
    }
    if !ended {
        return Err(format!("armor has no {END:?} line"));
    }
    if let Some(extra) = lines.next() {
        return Err(format!("text after the armor: {:?}", truncate(extra)));
    }
    if body.is_empty() {
        return Err("armor body is empty".to_string());
    }

    use ssh_key::encoding::base64::{Base64, Encoding};
    Base64::decode_vec(&body).map_err(|e| format!("armor body is not valid base64: {e}"))
}

/// Encodes a binary envelope as armor at the given width and line ending. Used by tests and by
/// tools that need a canonical form; `decode(encode(x, ..)) == x` for every width ≥ 1.
pub(crate) fn encode(envelope: &[u8], width: usize, eol: &str) -> String {
    use ssh_key::encoding::base64::{Base64, Encoding};
    let body = Base64::encode_string(envelope);
    let mut out = String::with_capacity(body.len() + body.len() / width.max(1) * 2 + 64);
    out.push_str(BEGIN);
    out.push_str(eol);
    for chunk in body.as_bytes().chunks(width.max(1)) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ascii"));
        out.push_str(eol);
    }
    out.push_str(END);
    out.push_str(eol);
    out
}

/// Keeps error messages short and free of whatever else the input carried.
fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ssh_keygen_layout() {
        let armored = encode(b"SSHSIG-example-bytes", 70, "\n");
        assert_eq!(decode(armored.as_bytes()).unwrap(), b"SSHSIG-example-bytes");
    }

    #[test]
    fn accepts_crlf_missing_final_newline_and_blank_lines() {
        let armored = encode(&[7u8; 300], 64, "\r\n");
        let trimmed = armored.trim_end();
        let padded = format!("\n\r\n  {trimmed}  ");
        assert_eq!(decode(padded.as_bytes()).unwrap(), vec![7u8; 300]);
    }

    #[test]
    fn refuses_text_outside_the_armor() {
        let armored = encode(b"x", 70, "\n");
        let before = format!("hello\n{armored}");
        assert!(decode(before.as_bytes())
            .unwrap_err()
            .contains("must start with"));
        let after = format!("{armored}trailer\n");
        assert!(decode(after.as_bytes())
            .unwrap_err()
            .contains("text after the armor"));
    }

    #[test]
    fn refuses_headers_and_junk() {
        let with_header = format!("{BEGIN}\nComment: hi\nAAAA\n{END}\n");
        assert!(decode(with_header.as_bytes())
            .unwrap_err()
            .contains("not base64"));
        let missing_end = format!("{BEGIN}\nAAAA\n");
        assert!(decode(missing_end.as_bytes()).unwrap_err().contains("no"));
        let empty_body = format!("{BEGIN}\n{END}\n");
        assert_eq!(
            decode(empty_body.as_bytes()).unwrap_err(),
            "armor body is empty"
        );
        assert_eq!(decode(b"").unwrap_err(), "armor is empty");
        assert!(decode(&[0xff, 0xfe]).unwrap_err().contains("utf-8"));
        // Missing padding is not canonical base64.
        let unpadded = format!("{BEGIN}\nAA\n{END}\n");
        assert!(decode(unpadded.as_bytes()).unwrap_err().contains("base64"));
    }

    proptest! {
        #[test]
        fn any_width_and_line_ending_round_trips(
            bytes in proptest::collection::vec(any::<u8>(), 1..600),
            width in 1usize..200,
            crlf in any::<bool>(),
            final_newline in any::<bool>(),
        ) {
            let mut armored = encode(&bytes, width, if crlf { "\r\n" } else { "\n" });
            if !final_newline {
                armored.truncate(armored.trim_end().len());
            }
            prop_assert_eq!(decode(armored.as_bytes()).unwrap(), bytes);
        }
    }
}
