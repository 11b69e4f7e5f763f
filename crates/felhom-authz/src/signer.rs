//! Pinned signers: an operator key from the host's config (an authorized_keys line) with its
//! `key_id` and role, and the key policy every signer must pass.
//!
//! The line is parsed by hand: `ssh-key`'s `AuthorizedKeys` fails on quoted options with
//! spaces and returns `cert-authority` lines as plain keys, which would turn a CA into a signer.

use std::fmt;
use std::str::FromStr;

use ssh_key::encoding::{Decode, Reader};
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, PublicKey};

/// The RSA modulus floor (NIST SP 800-57; OpenSSH's own default is 3072).
pub(crate) const MIN_RSA_BITS: u32 = 2048;
const MAX_KEY_ID_LEN: usize = 128;
/// An RSA 16384-bit key line is about 2.8 KB; anything far beyond is not a key.
const MAX_LINE_LEN: usize = 16 * 1024;

/// What a signer may authorize (the gate in felhom-reconcile enforces the scopes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Ordinary destructive ops and planned key rotation.
    Operational,
    /// Key rotation only: the break-glass key.
    Recovery,
}

impl Role {
    /// The config spelling: `operational` or `recovery`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operational => "operational",
            Role::Recovery => "recovery",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = SignerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "operational" => Ok(Role::Operational),
            "recovery" => Ok(Role::Recovery),
            other => Err(SignerError::Role(other.chars().take(40).collect())),
        }
    }
}

/// Why a signer from config was refused. Config errors: fix the config, retrying is pointless.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// `role` is neither `operational` nor `recovery`.
    #[error("signer role {0:?} is unknown (expected \"operational\" or \"recovery\")")]
    Role(String),
    /// `key_id` is empty, too long or holds control characters.
    #[error("signer key_id {key_id:?}: {problem}")]
    KeyId {
        /// The offending key_id (at most 40 characters of it).
        key_id: String,
        /// What is wrong.
        problem: String,
    },
    /// The public_key line is not a usable authorized_keys line.
    #[error("signer {key_id:?}: public_key {problem}")]
    Line {
        /// The signer's key_id.
        key_id: String,
        /// What is wrong.
        problem: String,
    },
    /// A `cert-authority` line trusts every key the CA signs: refused.
    #[error("signer {key_id:?}: cert-authority lines are refused, pin the operator's own key")]
    CertAuthority {
        /// The signer's key_id.
        key_id: String,
    },
    /// An OpenSSH certificate instead of a plain key: refused.
    #[error(
        "signer {key_id:?}: certificates are refused ({algorithm}), pin the operator's own key"
    )]
    Certificate {
        /// The signer's key_id.
        key_id: String,
        /// The certificate type.
        algorithm: String,
    },
    /// A key type outside ed25519, ecdsa p256/p384/p521, rsa, and their FIDO (sk-) forms.
    #[error(
        "signer {key_id:?}: key type {algorithm} is not supported (use ssh-ed25519, \
         sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com, \
         ecdsa-sha2-nistp256/384/521 or ssh-rsa of 2048+ bits)"
    )]
    UnsupportedKeyType {
        /// The signer's key_id.
        key_id: String,
        /// The key type.
        algorithm: String,
    },
    /// An RSA key below 2048 bits.
    #[error("signer {key_id:?}: the rsa key has {bits} bits, the minimum is 2048")]
    WeakRsaKey {
        /// The signer's key_id.
        key_id: String,
        /// Modulus length.
        bits: u32,
    },
    /// Two signers pin the same key material; the role would be ambiguous.
    #[error("signers {first:?} and {second:?} pin the same key")]
    DuplicateKey {
        /// The first signer's key_id.
        first: String,
        /// The second signer's key_id.
        second: String,
    },
    /// Two signers share a key_id; audits would be ambiguous.
    #[error("two signers are named {0:?}")]
    DuplicateKeyId(String),
}

/// An operator key pinned in the host's config, with its name and role.
///
/// Equality and matching look at key material only, never at the line's comment: `ssh-key`'s
/// `PublicKey` equality also compares comments, so the comment is dropped on parse.
#[derive(Clone, PartialEq, Eq)]
pub struct Signer {
    /// The config's name for this key (audit logs use it; a blob's `key_id` is only a claim).
    pub key_id: String,
    /// What the key may authorize.
    pub role: Role,
    /// Comment cleared: compared and used by key material only.
    key: PublicKey,
}

impl Signer {
    /// Parses an authorized_keys line (`[options] type base64 [comment]`), tolerating options
    /// (quoted values may hold spaces and commas; they are ignored) and refusing
    /// `cert-authority` lines, certificates, unsupported key types and RSA under 2048 bits.
    pub fn from_authorized_key(
        key_id: &str,
        role: Role,
        line: &str,
    ) -> Result<Signer, SignerError> {
        check_key_id(key_id)?;
        let line_err = |problem: String| SignerError::Line {
            key_id: key_id.to_string(),
            problem,
        };
        if line.len() > MAX_LINE_LEN {
            return Err(line_err(format!(
                "is {} bytes long, the limit is {MAX_LINE_LEN}",
                line.len()
            )));
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Err(line_err("is empty".to_string()));
        }
        if line.contains(['\n', '\r']) {
            return Err(line_err("holds more than one line".to_string()));
        }

        let (options, rest) = split_options(line).map_err(line_err)?;
        if let Some(options) = options {
            for option in split_option_list(options).map_err(line_err)? {
                let name = option.split('=').next().unwrap_or_default();
                if name.eq_ignore_ascii_case("cert-authority") {
                    return Err(SignerError::CertAuthority {
                        key_id: key_id.to_string(),
                    });
                }
            }
        }

        let mut fields = rest.split_ascii_whitespace();
        let declared = fields
            .next()
            .ok_or_else(|| line_err("has options but no key".to_string()))?;
        if declared.ends_with("-cert-v01@openssh.com") {
            return Err(SignerError::Certificate {
                key_id: key_id.to_string(),
                algorithm: declared.to_string(),
            });
        }
        let encoded = fields
            .next()
            .ok_or_else(|| line_err(format!("has the key type {declared} but no key data")))?;
        // Whatever follows is the comment: ignored on purpose (it never identifies a signer).

        use ssh_key::encoding::base64::{Base64, Encoding};
        let blob = Base64::decode_vec(encoded)
            .map_err(|e| line_err(format!("key data is not valid base64: {e}")))?;
        let mut reader = blob.as_slice();
        let key_data = KeyData::decode(&mut reader)
            .map_err(|e| line_err(format!("key data cannot be decoded: {e}")))?;
        if reader.remaining_len() != 0 {
            return Err(line_err(format!(
                "key data has {} trailing bytes",
                reader.remaining_len()
            )));
        }
        if let KeyData::Certificate(cert) = &key_data {
            return Err(SignerError::Certificate {
                key_id: key_id.to_string(),
                algorithm: cert.algorithm().to_certificate_type(),
            });
        }
        let actual = key_data.algorithm();
        if actual.as_str() != declared {
            return Err(line_err(format!(
                "says {declared} but the key data is {}",
                actual.as_str()
            )));
        }
        check_key_policy(&key_data).map_err(|e| match e {
            KeyPolicyError::Unsupported(algorithm) => SignerError::UnsupportedKeyType {
                key_id: key_id.to_string(),
                algorithm,
            },
            KeyPolicyError::WeakRsa(bits) => SignerError::WeakRsaKey {
                key_id: key_id.to_string(),
                bits,
            },
        })?;

        Ok(Signer {
            key_id: key_id.to_string(),
            role,
            key: PublicKey::new(key_data, ""),
        })
    }

    /// The rule for a signer's `key_id` (1 to 128 characters, no control characters), the one
    /// [`Signer::from_authorized_key`] applies; public so config checks it with the same words.
    pub fn check_key_id(key_id: &str) -> Result<(), SignerError> {
        check_key_id(key_id)
    }

    /// The key's `SHA256:…` fingerprint, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// The key type, e.g. `ssh-ed25519` or `sk-ssh-ed25519@openssh.com`.
    pub fn algorithm(&self) -> String {
        self.key.algorithm().as_str().to_string()
    }

    /// The key as an authorized_keys line without options or comment.
    pub fn public_key_openssh(&self) -> String {
        self.key
            .to_openssh()
            .unwrap_or_else(|_| format!("{} {}", self.algorithm(), self.fingerprint()))
    }

    /// Whether both signers pin the same key material (names, roles and comments aside).
    pub fn same_key(&self, other: &Signer) -> bool {
        self.key.key_data() == other.key.key_data()
    }

    pub(crate) fn key_data(&self) -> &KeyData {
        self.key.key_data()
    }

    pub(crate) fn public_key(&self) -> &PublicKey {
        &self.key
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .field("role", &self.role)
            .field("algorithm", &self.algorithm())
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

/// Checks a signer list as a whole: no two signers with the same key material (the role would
/// be ambiguous) or the same key_id. Config validation calls this; [`crate::Verifier::new`]
/// also defends against it by disabling ambiguous keys.
pub fn check_signers(signers: &[Signer]) -> Result<(), SignerError> {
    for (i, a) in signers.iter().enumerate() {
        for b in &signers[i + 1..] {
            if a.same_key(b) {
                return Err(SignerError::DuplicateKey {
                    first: a.key_id.clone(),
                    second: b.key_id.clone(),
                });
            }
            if a.key_id == b.key_id {
                return Err(SignerError::DuplicateKeyId(a.key_id.clone()));
            }
        }
    }
    Ok(())
}

fn check_key_id(key_id: &str) -> Result<(), SignerError> {
    let problem = if key_id.trim().is_empty() {
        "must not be empty"
    } else if key_id.chars().count() > MAX_KEY_ID_LEN {
        "is longer than 128 characters"
    } else if key_id.chars().any(char::is_control) {
        "holds control characters"
    } else {
        return Ok(());
    };
    Err(SignerError::KeyId {
        key_id: key_id.chars().take(40).collect(),
        problem: problem.to_string(),
    })
}

/// Why a key fails the policy (shared by signer parsing and the verifier's defence in depth).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyPolicyError {
    Unsupported(String),
    WeakRsa(u32),
}

/// ed25519, ecdsa p256/p384/p521, their FIDO forms, and RSA of at least 2048 bits.
pub(crate) fn check_key_policy(key: &KeyData) -> Result<(), KeyPolicyError> {
    match key {
        KeyData::Ed25519(_)
        | KeyData::SkEd25519(_)
        | KeyData::Ecdsa(_)
        | KeyData::SkEcdsaSha2NistP256(_) => Ok(()),
        KeyData::Rsa(rsa) => {
            let bits = rsa_bits(rsa);
            if bits < MIN_RSA_BITS {
                Err(KeyPolicyError::WeakRsa(bits))
            } else {
                Ok(())
            }
        }
        other => Err(KeyPolicyError::Unsupported(
            other.algorithm().as_str().to_string(),
        )),
    }
}

/// The exact modulus length: `ssh-key`'s `key_size` rounds up to whole bytes, which would
/// let a 2041-bit key pass as 2048.
pub(crate) fn rsa_bits(key: &ssh_key::public::RsaPublicKey) -> u32 {
    let bytes = key.n().as_positive_bytes().unwrap_or_default();
    let Some(pos) = bytes.iter().position(|&b| b != 0) else {
        return 0;
    };
    let significant = &bytes[pos..];
    let len = u32::try_from(significant.len()).unwrap_or(u32::MAX / 8);
    len.saturating_mul(8) - significant[0].leading_zeros()
}

/// Key types as they appear as the first field of an authorized_keys line without options.
fn is_key_type(token: &str) -> bool {
    matches!(
        token,
        "ssh-ed25519"
            | "ssh-rsa"
            | "ssh-dss"
            | "ssh-ed448"
            | "ecdsa-sha2-nistp256"
            | "ecdsa-sha2-nistp384"
            | "ecdsa-sha2-nistp521"
            | "sk-ssh-ed25519@openssh.com"
            | "sk-ecdsa-sha2-nistp256@openssh.com"
    ) || token.ends_with("-cert-v01@openssh.com")
}

/// Splits `[options] rest`: options run to the first whitespace outside double quotes
/// (`\"` escapes a quote inside them), as sshd reads them.
fn split_options(line: &str) -> Result<(Option<&str>, &str), String> {
    let first = line.split_ascii_whitespace().next().unwrap_or_default();
    if is_key_type(first) {
        return Ok((None, line));
    }
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            c if c.is_ascii_whitespace() && !in_quotes => {
                return Ok((Some(&line[..i]), line[i..].trim_start()));
            }
            _ => {}
        }
    }
    if in_quotes {
        Err("options have an unterminated quote".to_string())
    } else {
        Err("has options but no key".to_string())
    }
}

/// Splits an options field on commas outside double quotes.
fn split_option_list(options: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in options.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => {
                out.push(&options[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&options[start..]);
    if let Some(empty) = out.iter().position(|o| o.is_empty()) {
        return Err(format!("option {} is empty", empty + 1));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILYCP8Hzw999pOq3WBzlqL2Ia34wk7Ccl2eQoq+rwXM0";

    fn parse(line: &str) -> Result<Signer, SignerError> {
        Signer::from_authorized_key("ops-anna", Role::Operational, line)
    }

    #[test]
    fn roles_parse_from_config_spelling() {
        assert_eq!("operational".parse::<Role>().unwrap(), Role::Operational);
        assert_eq!("recovery".parse::<Role>().unwrap(), Role::Recovery);
        assert_eq!(Role::Recovery.to_string(), "recovery");
        assert!(matches!(
            "Operational".parse::<Role>(),
            Err(SignerError::Role(_))
        ));
    }

    #[test]
    fn plain_line_with_and_without_comment() {
        let plain = parse(ED25519).unwrap();
        let commented = parse(&format!("{ED25519} anna@laptop and more words")).unwrap();
        assert_eq!(plain, commented);
        assert_eq!(plain.algorithm(), "ssh-ed25519");
        assert!(plain.fingerprint().starts_with("SHA256:"));
        assert_eq!(plain.public_key_openssh(), ED25519);
    }

    #[test]
    fn options_are_tolerated_even_quoted_with_spaces_and_commas() {
        for options in [
            "restrict",
            "no-pty,no-port-forwarding",
            r#"command="echo hello, world",from="10.0.0.1,10.0.0.2""#,
            r#"environment="NAME=a \"quoted\" value",no-agent-forwarding"#,
        ] {
            let signer = parse(&format!("{options} {ED25519} anna")).unwrap();
            assert_eq!(signer.public_key_openssh(), ED25519, "{options}");
        }
    }

    #[test]
    fn cert_authority_and_certificates_are_refused() {
        for line in [
            format!("cert-authority {ED25519}"),
            format!("no-pty,CERT-AUTHORITY,principals=\"a b\" {ED25519}"),
        ] {
            assert!(
                matches!(parse(&line), Err(SignerError::CertAuthority { .. })),
                "{line}"
            );
        }
        let cert =
            "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29t";
        assert!(matches!(parse(cert), Err(SignerError::Certificate { .. })));
    }

    #[test]
    fn broken_lines_are_refused_with_a_reason() {
        for (line, needle) in [
            ("", "empty"),
            ("# a comment", "empty"),
            ("ssh-ed25519", "no key data"),
            ("restrict", "options but no key"),
            ("command=\"unterminated ssh-ed25519 AAAA", "unterminated quote"),
            ("no-pty,,restrict ssh-ed25519 AAAA", "empty"),
            ("ssh-ed25519 not-base64!", "base64"),
            ("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAILYCP8Hzw999pOq3WBzlqL2Ia34wk7Ccl2eQoq+rwXM0", "says ssh-rsa"),
            ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILYCP8Hzw999pOq3WBzlqL2Ia34wk7Ccl2eQoq+rwXM0AAAA", "trailing"),
        ] {
            let err = parse(line).unwrap_err();
            assert!(err.to_string().contains(needle), "{line:?}: {err}");
        }
        let two_lines = format!("{ED25519}\n{ED25519}");
        assert!(parse(&two_lines)
            .unwrap_err()
            .to_string()
            .contains("more than one line"));
    }

    #[test]
    fn a_line_over_the_length_bound_is_refused_before_parsing() {
        // Options may pad a real key line up to the bound; one byte more is refused unparsed.
        let pad = |len: usize| {
            let filler = len - ED25519.len() - "from=\"\" ".len();
            format!("from=\"{}\" {ED25519}", "a".repeat(filler))
        };
        let at_limit = pad(MAX_LINE_LEN);
        assert_eq!(at_limit.len(), MAX_LINE_LEN);
        parse(&at_limit).expect("a line of exactly the bound parses");
        let over = pad(MAX_LINE_LEN + 1);
        let err = parse(&over).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "is {} bytes long, the limit is {MAX_LINE_LEN}",
                MAX_LINE_LEN + 1
            )),
            "{err}"
        );
    }

    #[test]
    fn key_ids_are_validated() {
        for bad in ["", "  ", "a\u{7}b"] {
            assert!(matches!(
                Signer::from_authorized_key(bad, Role::Recovery, ED25519),
                Err(SignerError::KeyId { .. })
            ));
        }
        let long = "k".repeat(129);
        assert!(Signer::from_authorized_key(&long, Role::Recovery, ED25519).is_err());
    }

    #[test]
    fn duplicate_keys_and_names_are_reported() {
        let a = parse(ED25519).unwrap();
        let mut b = a.clone();
        b.key_id = "ops-bela".to_string();
        b.role = Role::Recovery;
        assert!(a.same_key(&b));
        assert!(matches!(
            check_signers(&[a.clone(), b]),
            Err(SignerError::DuplicateKey { .. })
        ));
        assert_eq!(check_signers(std::slice::from_ref(&a)), Ok(()));
    }

    #[test]
    fn debug_names_the_key_by_fingerprint() {
        let signer = parse(&format!("{ED25519} secret-looking-comment")).unwrap();
        let debug = format!("{signer:?}");
        assert!(
            debug.contains("ops-anna") && debug.contains("SHA256:"),
            "{debug}"
        );
        assert!(!debug.contains("secret-looking-comment"));
    }
}
