//! TLS trust: SHA-256 leaf pinning, a CA file, system roots, or an explicitly named insecure mode.
//!
//! PVE serves a certificate signed by the cluster's own CA, which no public root trusts, so the
//! usual choice is pinning the leaf's SHA-256 fingerprint as `/nodes` reports it. Every mode
//! uses the ring provider explicitly and still verifies the TLS 1.2/1.3 handshake signature:
//! a verifier that only compares fingerprints would accept an impostor that replays the pinned
//! certificate without holding its key.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, OtherError, RootCertStore,
    SignatureScheme,
};
use sha2::{Digest, Sha256};

/// A SHA-256 certificate fingerprint: written `AB:CD:…` (32 octets), case-insensitive, or as 64
/// hex digits without separators. Displays in PVE's form: uppercase with colons.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

/// Why a string is not a SHA-256 fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FingerprintError {
    /// Wrong length or a character that is neither a hex digit nor a separating colon.
    #[error("invalid sha-256 fingerprint {input:?}: expected 32 hex octets as AB:CD:... or 64 hex digits")]
    Syntax { input: String },
}

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }

    /// The 32 raw octets.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Equality without an early exit, so the time taken does not reveal how many leading
    /// octets of a pin matched.
    pub fn ct_eq(&self, other: &Fingerprint) -> bool {
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

impl FromStr for Fingerprint {
    type Err = FingerprintError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = || FingerprintError::Syntax {
            input: input.to_owned(),
        };
        let s = input.trim();
        let hex_digits: String = if s.contains(':') {
            // Colon form: exactly 32 groups of 2 hex digits.
            let groups: Vec<&str> = s.split(':').collect();
            if groups.len() != 32 || groups.iter().any(|g| g.len() != 2) {
                return Err(err());
            }
            groups.concat()
        } else {
            s.to_owned()
        };
        if hex_digits.len() != 64 {
            return Err(err());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(&hex_digits, &mut out).map_err(|_| err())?;
        Ok(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How the server's certificate is trusted. Exactly one mode; there is no default, so
/// [`TlsTrust::InsecureSkipVerify`] can only be had by naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsTrust {
    /// Accept a leaf certificate whose SHA-256 matches any of these pins (a list, because
    /// certificates are renewed). The handshake signature is still verified.
    Pinned(Vec<Fingerprint>),
    /// Verify the chain and name against the CA certificates in this PEM file (e.g. PVE's
    /// `/etc/pve/pve-root-ca.pem`).
    CaFile(PathBuf),
    /// Verify the chain and name against the operating system's roots.
    SystemRoots,
    /// Accept any certificate. Logs a warning every time a client is built with it; meant only
    /// for a first connection to learn the fingerprint.
    InsecureSkipVerify,
}

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// `Pinned` with an empty list would trust nothing (or, if mishandled, everything).
    #[error("tls trust: pinned mode needs at least one sha-256 fingerprint")]
    NoPins,
    /// The CA file could not be read.
    #[error("tls trust: cannot read ca file {path}: {source}")]
    CaFileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The CA file holds no usable certificate.
    #[error("tls trust: ca file {path} {detail}")]
    CaFileInvalid { path: PathBuf, detail: String },
    /// No system root could be loaded.
    #[error("tls trust: no system root certificates could be loaded: {detail}")]
    NoSystemRoots { detail: String },
    /// rustls refused the configuration.
    #[error("tls trust: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The error a pinning verifier reports when no pin matches; it names what was seen, so an
/// operator can tell a renewed certificate from an impostor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("certificate fingerprint {seen} matches no pinned fingerprint")]
pub struct PinMismatch {
    /// SHA-256 of the leaf certificate the server presented.
    pub seen: Fingerprint,
}

/// The crypto provider of the whole project: ring, named explicitly because plain
/// `ClientConfig::builder()` panics when two providers are in the dependency tree.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsTrust {
    /// Builds the rustls client configuration for this trust mode (ring provider, TLS 1.2 and
    /// 1.3, no client certificate).
    pub fn client_config(&self) -> Result<ClientConfig, TlsConfigError> {
        let provider = provider();
        let algs = provider.signature_verification_algorithms;
        let builder =
            ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?;
        let config = match self {
            TlsTrust::Pinned(pins) => {
                if pins.is_empty() {
                    return Err(TlsConfigError::NoPins);
                }
                let verifier = LeafVerifier {
                    leaf: LeafTrust::Pinned(pins.clone()),
                    algs,
                };
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_no_client_auth()
            }
            TlsTrust::CaFile(path) => builder
                .with_root_certificates(load_ca_file(path)?)
                .with_no_client_auth(),
            TlsTrust::SystemRoots => builder
                .with_root_certificates(load_system_roots()?)
                .with_no_client_auth(),
            TlsTrust::InsecureSkipVerify => {
                tracing::warn!(
                    "tls certificate verification is disabled (insecure_skip_verify): anyone on \
                     the path can impersonate the server; pin its sha-256 fingerprint instead"
                );
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(LeafVerifier {
                        leaf: LeafTrust::Any,
                        algs,
                    }))
                    .with_no_client_auth()
            }
        };
        Ok(config)
    }
}

fn load_ca_file(path: &PathBuf) -> Result<RootCertStore, TlsConfigError> {
    let pem = std::fs::read(path).map_err(|source| TlsConfigError::CaFileRead {
        path: path.clone(),
        source,
    })?;
    let invalid = |detail: String| TlsConfigError::CaFileInvalid {
        path: path.clone(),
        detail,
    };
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| invalid(format!("is not valid pem: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| invalid(format!("holds an unusable certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(invalid("holds no certificate".to_owned()));
    }
    Ok(roots)
}

fn load_system_roots() -> Result<RootCertStore, TlsConfigError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    // Distribution bundles carry the odd certificate webpki cannot parse; skip those.
    let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let detail = found
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(TlsConfigError::NoSystemRoots { detail });
    }
    Ok(roots)
}

/// Which leaf certificates a [`LeafVerifier`] accepts.
#[derive(Debug)]
enum LeafTrust {
    /// A leaf whose SHA-256 fingerprint is one of these (certificates get renewed: a list).
    Pinned(Vec<Fingerprint>),
    /// Any leaf: `insecure_skip_verify`, named explicitly and warned about at every build.
    Any,
}

/// Trusts a leaf by its pinned SHA-256 fingerprint (or, insecure, any leaf), then ALWAYS
/// verifies the TLS 1.2/1.3 handshake signature with it: a verifier that skipped that would
/// accept an impostor presenting the pinned certificate without its key.
///
/// Name and validity period are deliberately not checked: the pin is the trust anchor (as in
/// Proxmox's own clients), the agent may reach the node by an address the certificate does not
/// list, and a pinned certificate is replaced by re-pinning, not by expiry.
#[derive(Debug)]
struct LeafVerifier {
    leaf: LeafTrust,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for LeafVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pins = match &self.leaf {
            LeafTrust::Any => return Ok(ServerCertVerified::assertion()),
            LeafTrust::Pinned(pins) => pins,
        };
        let seen = Fingerprint::of_der(end_entity.as_ref());
        // Compare against every pin, no early exit.
        let matched = pins.iter().fold(false, |acc, pin| acc | pin.ct_eq(&seen));
        if matched {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(PinMismatch { seen })),
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PVE_SAMPLE: &str =
        "5F:40:6C:F3:29:55:81:AB:2E:20:DB:C5:DE:CB:5C:0F:37:F0:80:FB:B3:52:A2:A9:F6:4E:C7:11:80:8A:7F:23";

    #[test]
    fn parses_pve_form_lowercase_and_bare_hex() {
        let fp: Fingerprint = PVE_SAMPLE.parse().unwrap();
        assert_eq!(fp.to_string(), PVE_SAMPLE);
        assert_eq!(fp.as_bytes()[0], 0x5F);
        assert_eq!(fp.as_bytes()[31], 0x23);
        let lower: Fingerprint = PVE_SAMPLE.to_lowercase().parse().unwrap();
        assert_eq!(lower, fp);
        let bare: Fingerprint = PVE_SAMPLE.replace(':', "").parse().unwrap();
        assert_eq!(bare, fp);
        let padded: Fingerprint = format!("  {PVE_SAMPLE}\n").parse().unwrap();
        assert_eq!(padded, fp);
        assert_eq!(format!("{fp:?}"), format!("Fingerprint({PVE_SAMPLE})"));
    }

    #[test]
    fn rejects_malformed_fingerprints() {
        let too_short = &PVE_SAMPLE[..PVE_SAMPLE.len() - 3];
        let bad_char = PVE_SAMPLE.replacen("5F", "5G", 1);
        let odd_groups = PVE_SAMPLE.replacen("5F:40", "5F4:0", 1);
        let sha1_len = "AB".repeat(20);
        let extra = format!("{PVE_SAMPLE}:00");
        for s in [
            "",
            "nope",
            too_short,
            &bad_char,
            &odd_groups,
            &sha1_len,
            &extra,
        ] {
            let err = s.parse::<Fingerprint>().unwrap_err().to_string();
            assert!(err.contains("invalid sha-256 fingerprint"), "{s:?}: {err}");
        }
    }

    #[test]
    fn constant_time_equality_agrees_with_eq() {
        let a: Fingerprint = PVE_SAMPLE.parse().unwrap();
        let mut other = *a.as_bytes();
        other[31] ^= 1;
        let b = Fingerprint(other);
        assert!(a.ct_eq(&a));
        assert!(!a.ct_eq(&b));
        assert_eq!(Fingerprint::of_der(b"abc").to_string().len(), 95);
    }

    #[test]
    fn pinned_verifier_names_the_fingerprint_it_saw() {
        let pin: Fingerprint = PVE_SAMPLE.parse().unwrap();
        let v = LeafVerifier {
            leaf: LeafTrust::Pinned(vec![pin]),
            algs: provider().signature_verification_algorithms,
        };
        let cert = CertificateDer::from(b"not really a certificate".to_vec());
        let name = ServerName::try_from("pve.example").unwrap();
        let err = v
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .unwrap_err();
        let seen = Fingerprint::of_der(cert.as_ref());
        assert!(err.to_string().contains(&seen.to_string()), "{err}");

        // The same bytes pass once pinned (second pin in the list: renewal).
        let v = LeafVerifier {
            leaf: LeafTrust::Pinned(vec![pin, seen]),
            algs: provider().signature_verification_algorithms,
        };
        assert!(v
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .is_ok());
        assert!(!v.supported_verify_schemes().is_empty());
    }

    #[test]
    fn empty_pin_list_is_refused() {
        assert!(matches!(
            TlsTrust::Pinned(vec![]).client_config(),
            Err(TlsConfigError::NoPins)
        ));
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = TlsTrust::CaFile(missing.clone())
            .client_config()
            .unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        let err = TlsTrust::CaFile(empty).client_config().unwrap_err();
        assert!(err.to_string().contains("holds no certificate"), "{err}");
    }

    #[test]
    fn ca_file_with_a_certificate_builds() {
        let ca = rcgen::generate_simple_self_signed(vec!["pve.example".to_owned()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, ca.cert.pem()).unwrap();
        assert!(TlsTrust::CaFile(path).client_config().is_ok());
    }

    #[tracing_test::traced_test]
    #[test]
    fn insecure_mode_warns_every_time_it_is_built() {
        TlsTrust::InsecureSkipVerify.client_config().unwrap();
        TlsTrust::InsecureSkipVerify.client_config().unwrap();
        logs_assert(|lines: &[&str]| {
            let n = lines
                .iter()
                .filter(|l| l.contains("WARN") && l.contains("insecure_skip_verify"))
                .count();
            if n == 2 {
                Ok(())
            } else {
                Err(format!("expected 2 warnings, got {n}"))
            }
        });
    }
}
