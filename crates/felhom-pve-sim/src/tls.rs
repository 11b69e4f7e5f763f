//! TLS like a PVE node: a cluster CA ("PVE Cluster Manager CA") and a leaf signed by it with
//! PVE's SANs, generated at start; only the leaf is served; its SHA-256 fingerprint in PVE's
//! `AB:CD:…` form. (PVE uses RSA-2048 keys; ring cannot generate RSA, so these are P-256.)
//! The hub simulator gets the same plumbing under its own names ([`generate_for`]).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use time::{Duration as TimeDuration, OffsetDateTime};

use crate::error::SimError;

/// The generated certificates.
pub(crate) struct SimCert {
    pub(crate) leaf_der: CertificateDer<'static>,
    key_der: Vec<u8>,
    pub(crate) ca_pem: String,
    pub(crate) fingerprint: String,
}

/// SHA-256 over DER, uppercase hex with colons (`Net::SSLeay::X509_get_fingerprint`).
pub(crate) fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn cert_err(what: &str, e: rcgen::Error) -> SimError {
    SimError::Certificate(format!("{what}: {e}"))
}

/// A uuid-looking OU, as PVE puts in the CA subject; unique per simulator.
fn pseudo_uuid() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!("{nanos}-{}-{:p}", std::process::id(), &nanos);
    let h = hex::encode(Sha256::digest(seed.as_bytes()));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Who a generated CA and leaf say they are; the rest of the certificates (keys, validity,
/// loopback SANs) is the same for every simulator.
pub(crate) struct Identity<'a> {
    /// CA subject CN.
    pub(crate) ca_common_name: &'a str,
    /// CA subject O.
    pub(crate) ca_organization: &'a str,
    /// Leaf subject OU.
    pub(crate) leaf_unit: &'a str,
    /// Leaf subject O.
    pub(crate) leaf_organization: &'a str,
    /// Leaf subject CN.
    pub(crate) leaf_common_name: String,
    /// A DNS name added to the loopback SANs.
    pub(crate) extra_san: &'a str,
}

/// Generates the cluster CA and the node's leaf certificate.
pub(crate) fn generate(node: &str) -> Result<SimCert, SimError> {
    generate_for(&Identity {
        ca_common_name: "Proxmox Virtual Environment",
        ca_organization: "PVE Cluster Manager CA",
        leaf_unit: "PVE Cluster Node",
        leaf_organization: "Proxmox Virtual Environment",
        leaf_common_name: format!("{node}.localdomain"),
        extra_san: node,
    })
}

/// Generates a CA and a leaf it signed for `127.0.0.1`, `::1`, `localhost` and
/// `id.extra_san`.
pub(crate) fn generate_for(id: &Identity<'_>) -> Result<SimCert, SimError> {
    // validity is checked by clients against the real clock, not the simulated one
    let now = OffsetDateTime::now_utc();
    let yesterday = now - TimeDuration::days(1);

    let mut ca_params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| cert_err("ca params", e))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, id.ca_common_name);
    dn.push(DnType::OrganizationalUnitName, pseudo_uuid());
    dn.push(DnType::OrganizationName, id.ca_organization);
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = yesterday;
    ca_params.not_after = now + TimeDuration::days(3650);
    let ca_key = KeyPair::generate().map_err(|e| cert_err("ca key", e))?;
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(|e| cert_err("ca certificate", e))?;
    let issuer = Issuer::new(ca_params, ca_key);

    let sans = vec![
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
        id.extra_san.to_string(),
    ];
    let mut leaf_params = CertificateParams::new(sans).map_err(|e| cert_err("leaf params", e))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationalUnitName, id.leaf_unit);
    dn.push(DnType::OrganizationName, id.leaf_organization);
    dn.push(DnType::CommonName, id.leaf_common_name.as_str());
    leaf_params.distinguished_name = dn;
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf_params.not_before = yesterday;
    leaf_params.not_after = now + TimeDuration::days(730);
    let leaf_key = KeyPair::generate().map_err(|e| cert_err("leaf key", e))?;
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .map_err(|e| cert_err("leaf certificate", e))?;

    Ok(SimCert {
        fingerprint: fingerprint(leaf.der()),
        leaf_der: leaf.der().clone(),
        key_der: leaf_key.serialize_der(),
        ca_pem: ca_cert.pem(),
    })
}

/// A TLS server config serving only the leaf (ring provider, TLS 1.2 and 1.3).
pub(crate) fn server_config(cert: &SimCert) -> Result<Arc<rustls::ServerConfig>, SimError> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key_der.clone()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SimError::Tls(format!("protocol versions: {e}")))?
    .with_no_client_auth()
    .with_single_cert(vec![cert.leaf_der.clone()], key)
    .map_err(|e| SimError::Tls(format!("server certificate: {e}")))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_uppercase_colon_hex_of_32_bytes() {
        let fp = fingerprint(b"abc");
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert!(fp.starts_with("BA:78:16:BF"));
        assert_eq!(fp, fp.to_uppercase());
    }

    #[test]
    fn two_generations_differ_and_build_a_server_config() {
        let a = generate("pve").unwrap();
        let b = generate("pve").unwrap();
        assert_ne!(a.fingerprint, b.fingerprint);
        assert!(a.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(server_config(&a).is_ok());
    }
}
