//! TLS trust: SHA-256 leaf pinning, a CA file, system roots, or an explicitly named insecure mode.
//!
//! PVE serves a certificate signed by the cluster's own CA, which no public root trusts, so the
//! usual choice is pinning the leaf's SHA-256 fingerprint as `/nodes` reports it. Every mode
//! uses the ring provider explicitly and still verifies the TLS 1.2/1.3 handshake signature:
//! a verifier that only compares fingerprints would accept an impostor that replays the pinned
//! certificate without holding its key.
//!
//! A CA file may hold the server's own certificate (a self-signed `openssl req -x509` one,
//! which is marked `CA:TRUE`): a server presenting a byte-identical copy of a certificate in the
//! file is trusted like a pin, with its validity period and name still checked (webpki alone
//! refuses it as "CaUsedAsEndEntity"; curl, Go and OpenSSL accept it). Every refusal reaches the
//! user as a [`TlsFailure`]: plain words, the fingerprint seen, and the fix.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
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
            TlsTrust::CaFile(path) => {
                let (roots, listed) = load_ca_file(path)?;
                let verifier = ChainVerifier::new(roots, listed).map_err(|detail| {
                    TlsConfigError::CaFileInvalid {
                        path: path.clone(),
                        detail,
                    }
                })?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_no_client_auth()
            }
            TlsTrust::SystemRoots => {
                let verifier = ChainVerifier::new(load_system_roots()?, Vec::new())
                    .map_err(|detail| TlsConfigError::NoSystemRoots { detail })?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_no_client_auth()
            }
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

/// The CA file as trust anchors, and its certificates as they are (a server presenting one of
/// them byte for byte is trusted directly).
fn load_ca_file(
    path: &PathBuf,
) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), TlsConfigError> {
    let pem = std::fs::read(path).map_err(|source| TlsConfigError::CaFileRead {
        path: path.clone(),
        source,
    })?;
    let invalid = |detail: String| TlsConfigError::CaFileInvalid {
        path: path.clone(),
        detail,
    };
    let mut roots = RootCertStore::empty();
    let mut listed = Vec::new();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| invalid(format!("is not valid pem: {e}")))?;
        roots
            .add(cert.clone())
            .map_err(|e| invalid(format!("holds an unusable certificate: {e}")))?;
        listed.push(cert);
    }
    if roots.is_empty() {
        return Err(invalid("holds no certificate".to_owned()));
    }
    Ok((roots, listed))
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

/// Chain trust (a CA file or the system roots) through webpki, except that a leaf which is
/// byte-identical to a certificate of the CA file is trusted directly: validity period and
/// server name are still checked, and the handshake signature always is.
#[derive(Debug)]
struct ChainVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// The CA file's certificates, DER (empty for system roots).
    listed: Vec<CertificateDer<'static>>,
}

impl ChainVerifier {
    fn new(roots: RootCertStore, listed: Vec<CertificateDer<'static>>) -> Result<Self, String> {
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| format!("cannot be used for verification: {e}"))?;
        Ok(ChainVerifier { webpki, listed })
    }
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let listed = self
            .listed
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref());
        let verdict = if listed {
            verify_listed_leaf(end_entity, server_name, now)
        } else {
            self.webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            )
        };
        verdict.map_err(|e| match e {
            rustls::Error::InvalidCertificate(cause) => {
                let seen = Fingerprint::of_der(end_entity.as_ref());
                let failure = TlsFailure::from_certificate_error(&cause, Some(seen));
                rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                    failure,
                ))))
            }
            other => other,
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A leaf found byte for byte in the CA file: the file vouches for this exact certificate, so
/// no chain is built, but it must be within its validity period and name the server.
fn verify_listed_leaf(
    end_entity: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<ServerCertVerified, rustls::Error> {
    let (not_before, not_after) =
        validity(end_entity.as_ref()).ok_or(CertificateError::BadEncoding)?;
    let at = |secs: u64| UnixTime::since_unix_epoch(Duration::from_secs(secs));
    if now.as_secs() < not_before {
        return Err(CertificateError::NotValidYetContext {
            time: now,
            not_before: at(not_before),
        }
        .into());
    }
    if now.as_secs() > not_after {
        return Err(CertificateError::ExpiredContext {
            time: now,
            not_after: at(not_after),
        }
        .into());
    }
    let parsed = ParsedCertificate::try_from(end_entity)?;
    rustls::client::verify_server_name(&parsed, server_name)?;
    Ok(ServerCertVerified::assertion())
}

/// `(notBefore, notAfter)` of a DER X.509 certificate in seconds since the epoch (a time
/// before 1970 reads as 0); `None` when the structure is not what RFC 5280 §4.1 says.
pub(crate) fn validity(der: &[u8]) -> Option<(u64, u64)> {
    let (tag, cert, _) = der_tlv(der)?;
    let (tbs_tag, tbs, _) = der_tlv(cert)?;
    if tag != 0x30 || tbs_tag != 0x30 {
        return None;
    }
    let (mut tag, _, mut rest) = der_tlv(tbs)?;
    if tag == 0xA0 {
        // [0] EXPLICIT version, then the serial number
        (tag, _, rest) = der_tlv(rest)?;
    }
    if tag != 0x02 {
        return None;
    }
    for _ in 0..2 {
        // signature AlgorithmIdentifier, issuer Name
        let (t, _, r) = der_tlv(rest)?;
        if t != 0x30 {
            return None;
        }
        rest = r;
    }
    let (t, validity, _) = der_tlv(rest)?;
    if t != 0x30 {
        return None;
    }
    let (t1, before, rest) = der_tlv(validity)?;
    let (t2, after, _) = der_tlv(rest)?;
    Some((der_time(t1, before)?, der_time(t2, after)?))
}

/// One DER tag-length-value: `(tag, value, rest)`. Definite lengths of up to 4 octets.
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, r) = rest.split_at(n);
        rest = r;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as
/// seconds since the epoch, clamped at 0.
fn der_time(tag: u8, value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| digits.get(r)?.parse::<i64>().ok();
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy = num(0..2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        (0x18, 14) => (num(0..4)?, 4),
        _ => return None,
    };
    let field = |i: usize| num(rest + 2 * i..rest + 2 * i + 2);
    let (month, day, hour, minute, second) =
        (field(0)?, field(1)?, field(2)?, field(3)?, field(4)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    Some(u64::try_from(secs).unwrap_or(0))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-23T10:00:00Z` for seconds since the epoch (inverse of [`days_from_civil`]).
fn utc_text(secs: u64) -> String {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX / 2);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Why a TLS handshake failed, in words that name the fix. Certificate refusals carry the
/// SHA-256 of the certificate the server presented when it is known, so an operator can pin
/// or compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The server's leaf certificate matches no pinned fingerprint.
    PinMismatch {
        /// SHA-256 of the certificate actually presented.
        seen: Fingerprint,
    },
    /// The chain does not lead to a trusted CA (CA-file or system-roots mode).
    UnknownIssuer,
    /// A CA certificate (`CA:TRUE`, what `openssl req -x509` makes) presented as the server's
    /// certificate without being in the CA file itself.
    CaCertificateAsServer {
        /// SHA-256 of the certificate presented.
        seen: Option<Fingerprint>,
    },
    /// The certificate's validity period ended.
    Expired {
        /// SHA-256 of the certificate presented.
        seen: Option<Fingerprint>,
        /// Its `notAfter`, seconds since the epoch, when known.
        not_after: Option<u64>,
    },
    /// The certificate's validity period has not begun (or this host's clock is behind).
    NotYetValid {
        /// SHA-256 of the certificate presented.
        seen: Option<Fingerprint>,
        /// Its `notBefore`, seconds since the epoch, when known.
        not_before: Option<u64>,
    },
    /// The certificate does not name the host the agent connected to.
    NameMismatch {
        /// The name (or address) the agent connected to.
        expected: String,
        /// The names the certificate lists, when known.
        presented: Vec<String>,
    },
    /// A signature did not verify: the server does not hold the key of the certificate it
    /// presented (an impostor replaying it), or a certificate's own signature is broken.
    BadSignature,
    /// Any other handshake failure, in rustls' words.
    Other {
        /// What failed.
        detail: String,
    },
}

impl TlsFailure {
    /// The failure a certificate error means; `seen` is the presented certificate's SHA-256
    /// when the caller knows it.
    pub fn from_certificate_error(err: &CertificateError, seen: Option<Fingerprint>) -> Self {
        #[allow(deprecated)] // matched only to be recognised
        match err {
            CertificateError::UnknownIssuer => TlsFailure::UnknownIssuer,
            CertificateError::Expired => TlsFailure::Expired {
                seen,
                not_after: None,
            },
            CertificateError::ExpiredContext { not_after, .. } => TlsFailure::Expired {
                seen,
                not_after: Some(not_after.as_secs()),
            },
            CertificateError::NotValidYet => TlsFailure::NotYetValid {
                seen,
                not_before: None,
            },
            CertificateError::NotValidYetContext { not_before, .. } => TlsFailure::NotYetValid {
                seen,
                not_before: Some(not_before.as_secs()),
            },
            CertificateError::NotValidForName => TlsFailure::NameMismatch {
                expected: String::new(),
                presented: Vec::new(),
            },
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => TlsFailure::NameMismatch {
                expected: expected.to_str().into_owned(),
                presented: presented.clone(),
            },
            CertificateError::BadSignature => TlsFailure::BadSignature,
            CertificateError::Other(OtherError(inner)) => {
                if let Some(f) = inner.downcast_ref::<TlsFailure>() {
                    return f.clone();
                }
                if let Some(pm) = inner.downcast_ref::<PinMismatch>() {
                    return TlsFailure::PinMismatch { seen: pm.seen };
                }
                match inner.downcast_ref::<webpki::Error>() {
                    Some(webpki::Error::CaUsedAsEndEntity) => {
                        TlsFailure::CaCertificateAsServer { seen }
                    }
                    Some(w) => TlsFailure::Other {
                        detail: format!("the server's certificate was refused ({w:?})"),
                    },
                    None => TlsFailure::Other {
                        detail: format!("the server's certificate was refused: {inner}"),
                    },
                }
            }
            other => TlsFailure::Other {
                detail: format!("the server's certificate was refused: {other:?}"),
            },
        }
    }
}

/// ` (sha-256 AB:…)` when the fingerprint is known.
struct Seen<'a>(&'a Option<Fingerprint>);

impl fmt::Display for Seen<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(fp) => write!(f, " (sha-256 {fp})"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFailure::PinMismatch { seen } => write!(
                f,
                "certificate fingerprint {seen} matches no pinned fingerprint; if the server's \
                 certificate was renewed, check this fingerprint on the server and add it to \
                 the pins, otherwise something else is answering at this address"
            ),
            TlsFailure::UnknownIssuer => f.write_str(
                "certificate issuer is not trusted: the server's certificate was not issued by \
                 a CA in ca_file (or the system roots when none is set); add the issuing CA \
                 certificate, or this exact certificate, to ca_file, or pin its sha-256 \
                 fingerprint",
            ),
            TlsFailure::CaCertificateAsServer { seen } => write!(
                f,
                "the server's certificate{} is a CA certificate presented as a server \
                 certificate and is not in ca_file; put this exact certificate in ca_file (or \
                 pin its sha-256 fingerprint), or give the server a certificate issued by the \
                 CA in ca_file",
                Seen(seen)
            ),
            TlsFailure::Expired { seen, not_after } => {
                write!(f, "the server's certificate{} has expired", Seen(seen))?;
                if let Some(t) = not_after {
                    write!(f, " (valid until {})", utc_text(*t))?;
                }
                f.write_str("; renew it on the server, or check this host's clock")
            }
            TlsFailure::NotYetValid { seen, not_before } => {
                write!(f, "the server's certificate{} is not valid yet", Seen(seen))?;
                if let Some(t) = not_before {
                    write!(f, " (valid from {})", utc_text(*t))?;
                }
                f.write_str("; check this host's clock and the server's")
            }
            TlsFailure::NameMismatch {
                expected,
                presented,
            } => {
                f.write_str("the server's certificate is not valid for ")?;
                if expected.is_empty() {
                    f.write_str("the name in the url")?;
                } else {
                    write!(f, "{expected}")?;
                }
                if !presented.is_empty() {
                    write!(f, " (it names {})", presented.join(", "))?;
                }
                f.write_str(
                    "; use a url with a name the certificate lists, or reissue the certificate \
                     with this name as a subjectAltName",
                )
            }
            TlsFailure::BadSignature => f.write_str(
                "a signature did not verify: the server does not hold the private key of the \
                 certificate it presented (an impostor replaying it?) or the certificate is \
                 corrupt",
            ),
            TlsFailure::Other { detail } => f.write_str(detail),
        }
    }
}

impl std::error::Error for TlsFailure {}

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
    fn validity_is_read_from_the_der() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["x".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(1999, 12, 31);
        params.not_after = rcgen::date_time_ymd(2077, 2, 28);
        let cert = params.self_signed(&key).unwrap();
        let (from, until) = validity(cert.der()).unwrap();
        assert_eq!(utc_text(from), "1999-12-31T00:00:00Z");
        assert_eq!(utc_text(until), "2077-02-28T00:00:00Z");
        assert_eq!(validity(b"\x30\x03\x02\x01\x00"), None);
        assert_eq!(validity(&cert.der()[..40]), None, "truncated");
        // UTCTime's two-digit years pivot at 1950; GeneralizedTime is taken as written.
        assert_eq!(
            der_time(0x17, b"491231235959Z").map(utc_text).unwrap(),
            "2049-12-31T23:59:59Z"
        );
        assert_eq!(
            der_time(0x17, b"500101000000Z"),
            Some(0),
            "1950 clamps to the epoch"
        );
        assert_eq!(
            der_time(0x18, b"20240229120000Z").map(utc_text).unwrap(),
            "2024-02-29T12:00:00Z"
        );
        assert_eq!(der_time(0x18, b"2024022912000Z"), None);
        assert_eq!(der_time(0x17, b"241301000000Z"), None, "month 13");
        assert_eq!(utc_text(0), "1970-01-01T00:00:00Z");
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
}
