//! The SSHSIG binary envelope (PROTOCOL.sshsig), split into its fields by hand so that each
//! policy check (version, reserved, hash, namespace) runs at its own stage with its own error,
//! before any key or signature is decoded.

use crate::error::Malformed;

const MAGIC: &[u8] = b"SSHSIG";
/// The only SSHSIG version there is; `ssh-key` also accepts 0, this verifier does not.
pub(crate) const VERSION: u32 = 1;

/// The envelope's fields, borrowed from the decoded armor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Envelope<'a> {
    pub(crate) namespace: &'a [u8],
    pub(crate) hash_alg: ssh_key::HashAlg,
    /// The SSH wire encoding of the signer's public key.
    pub(crate) public_key: &'a [u8],
    /// The SSH wire encoding of the signature (algorithm name, then the raw signature).
    pub(crate) signature: &'a [u8],
}

/// Splits an envelope and applies the stage-one policy: magic, version 1, empty reserved
/// field, hash sha256 or sha512, no trailing bytes. The namespace is returned unchecked.
pub(crate) fn parse(bytes: &[u8]) -> Result<Envelope<'_>, Malformed> {
    let mut r = WireReader { rest: bytes };
    let magic = r.take(MAGIC.len(), "magic preamble")?;
    if magic != MAGIC {
        return Err(Malformed::Envelope(
            "not an SSHSIG: the magic preamble is not \"SSHSIG\"".to_string(),
        ));
    }
    let version = r.u32("version")?;
    if version != VERSION {
        return Err(Malformed::UnsupportedVersion(version));
    }
    let public_key = r.string("public key")?;
    let namespace = r.string("namespace")?;
    let reserved = r.string("reserved")?;
    if !reserved.is_empty() {
        return Err(Malformed::ReservedNotEmpty(reserved.len()));
    }
    let hash = r.string("hash algorithm")?;
    let hash_alg = match hash {
        b"sha256" => ssh_key::HashAlg::Sha256,
        b"sha512" => ssh_key::HashAlg::Sha512,
        other => {
            return Err(Malformed::HashAlgorithm(
                String::from_utf8_lossy(other).chars().take(40).collect(),
            ))
        }
    };
    let signature = r.string("signature")?;
    if !r.rest.is_empty() {
        return Err(Malformed::Envelope(format!(
            "{} trailing bytes after the signature",
            r.rest.len()
        )));
    }
    Ok(Envelope {
        namespace,
        hash_alg,
        public_key,
        signature,
    })
}

/// A minimal reader for SSH wire types (RFC 4251 §5): `uint32` and length-prefixed `string`.
struct WireReader<'a> {
    rest: &'a [u8],
}

impl<'a> WireReader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], Malformed> {
        if self.rest.len() < n {
            return Err(Malformed::Envelope(format!(
                "truncated at the {what}: need {n} bytes, {} left",
                self.rest.len()
            )));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u32(&mut self, what: &str) -> Result<u32, Malformed> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, what: &str) -> Result<&'a [u8], Malformed> {
        let len = self.u32(what)?;
        let len = usize::try_from(len).map_err(|_| {
            Malformed::Envelope(format!("the {what} length {len} does not fit in memory"))
        })?;
        self.take(len, what)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds an envelope from raw parts, for tests that need to bend one field.
    pub(crate) fn build(
        version: u32,
        public_key: &[u8],
        namespace: &[u8],
        reserved: &[u8],
        hash: &[u8],
        signature: &[u8],
    ) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend(version.to_be_bytes());
        for field in [public_key, namespace, reserved, hash, signature] {
            out.extend(u32::try_from(field.len()).unwrap().to_be_bytes());
            out.extend(field);
        }
        out
    }

    #[test]
    fn splits_a_well_formed_envelope() {
        let bytes = build(1, b"KEY", b"felhom-op-v1", b"", b"sha512", b"SIG");
        let env = parse(&bytes).unwrap();
        assert_eq!(env.public_key, b"KEY");
        assert_eq!(env.namespace, b"felhom-op-v1");
        assert_eq!(env.hash_alg, ssh_key::HashAlg::Sha512);
        assert_eq!(env.signature, b"SIG");
    }

    #[test]
    fn refuses_other_versions_reserved_and_hashes() {
        for version in [0, 2, u32::MAX] {
            let bytes = build(version, b"K", b"n", b"", b"sha256", b"S");
            assert_eq!(
                parse(&bytes).unwrap_err(),
                Malformed::UnsupportedVersion(version)
            );
        }
        let bytes = build(1, b"K", b"n", b"tag", b"sha256", b"S");
        assert_eq!(parse(&bytes).unwrap_err(), Malformed::ReservedNotEmpty(3));
        for hash in [&b"sha1"[..], b"SHA256", b"sha384", b""] {
            let bytes = build(1, b"K", b"n", b"", hash, b"S");
            assert!(matches!(
                parse(&bytes).unwrap_err(),
                Malformed::HashAlgorithm(_)
            ));
        }
    }

    #[test]
    fn refuses_truncation_trailing_bytes_and_bad_magic() {
        let bytes = build(1, b"K", b"n", b"", b"sha256", b"S");
        for cut in 0..bytes.len() {
            assert!(
                parse(&bytes[..cut]).is_err(),
                "prefix of {cut} bytes parsed"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(
            matches!(parse(&longer).unwrap_err(), Malformed::Envelope(m) if m.contains("trailing"))
        );
        let mut wrong = bytes;
        wrong[0] = b'X';
        assert!(
            matches!(parse(&wrong).unwrap_err(), Malformed::Envelope(m) if m.contains("magic"))
        );
        // A length prefix larger than the input is truncation, not an allocation.
        let mut huge = MAGIC.to_vec();
        huge.extend(1u32.to_be_bytes());
        huge.extend(u32::MAX.to_be_bytes());
        assert!(
            matches!(parse(&huge).unwrap_err(), Malformed::Envelope(m) if m.contains("truncated"))
        );
    }
}
