//! From the validated `proxmox` config section to the Proxmox client's settings
//! (`PveClientConfig`, `TlsTrust`, `ApiToken`): the one conversion both binaries use.
//!
//! Pure: nothing here opens a file or a connection (a CA file is read later, when the client
//! is built). The config validated the form of every value already; what is checked again
//! here is what the client is stricter about (the characters a token secret may hold), so a
//! value the config let through still fails with its key path rather than a bare client error.

use felhom_proxmox::{
    ApiToken, ClientConfigError, Fingerprint, FingerprintError, PveClient, PveClientConfig,
    TlsTrust, TokenError,
};

use crate::{ProxmoxConfig, TlsSetting};

/// Why the `proxmox` section could not become a client. Never contains the token secret.
/// Retrying is pointless until the config changes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PveConfigError {
    /// A pinned fingerprint is not a SHA-256 fingerprint.
    #[error("proxmox.tls.fingerprint_sha256[{index}]: {source}")]
    Fingerprint {
        /// Position in the pin list.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: FingerprintError,
    },
    /// `proxmox.tls.fingerprint_sha256` is an empty list (the config refuses this already).
    #[error("proxmox.tls.fingerprint_sha256: must list at least one fingerprint")]
    NoPins,
    /// The token id or secret is unusable in PVE's `Authorization` header.
    #[error("{}: {source}", token_key(.source))]
    Token {
        /// What is wrong (the secret itself is never part of it).
        #[source]
        source: TokenError,
    },
    /// The client refused the settings (URL, node name, TLS trust such as an unreadable CA
    /// file).
    #[error("proxmox: {0}")]
    Client(#[from] ClientConfigError),
}

/// The config key a token error is about.
fn token_key(e: &TokenError) -> &'static str {
    match e {
        TokenError::TokenId { .. } => "proxmox.token_id",
        _ => "proxmox.token_secret",
    }
}

/// The client's TLS trust for the configured setting. Pins keep their order (the first is the
/// current certificate by convention; any of them is accepted).
pub fn tls_trust(setting: &TlsSetting) -> Result<TlsTrust, PveConfigError> {
    match setting {
        TlsSetting::Pinned(pins) => {
            if pins.is_empty() {
                return Err(PveConfigError::NoPins);
            }
            pins.iter()
                .enumerate()
                .map(|(index, p)| {
                    p.parse::<Fingerprint>()
                        .map_err(|source| PveConfigError::Fingerprint { index, source })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(TlsTrust::Pinned)
        }
        TlsSetting::CaFile(path) => Ok(TlsTrust::CaFile(path.clone())),
        TlsSetting::InsecureSkipVerify => Ok(TlsTrust::InsecureSkipVerify),
    }
}

/// The pinned fingerprints, if the config pins (for comparing with what `/nodes` reports).
pub fn pins(setting: &TlsSetting) -> Result<Vec<Fingerprint>, PveConfigError> {
    match tls_trust(setting)? {
        TlsTrust::Pinned(pins) => Ok(pins),
        _ => Ok(Vec::new()),
    }
}

/// The client settings for the `proxmox` section: URL, node, token, trust and timeout.
pub fn client_config(cfg: &ProxmoxConfig) -> Result<PveClientConfig, PveConfigError> {
    let token = ApiToken::new(cfg.token_id.as_str(), cfg.token_secret.clone())
        .map_err(|source| PveConfigError::Token { source })?;
    let mut out = PveClientConfig::new(
        cfg.api_url.to_string(),
        cfg.node.clone(),
        token,
        tls_trust(&cfg.tls)?,
    );
    out.timeout = cfg.timeout;
    Ok(out)
}

/// The client itself (no network traffic yet; a CA file is read here).
pub fn client(cfg: &ProxmoxConfig) -> Result<PveClient, PveConfigError> {
    Ok(PveClient::new(client_config(cfg)?)?)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use felhom_proxmox::{ProxmoxApi, Secret};

    use super::*;
    use crate::{Config, Mode};

    const FP: &str =
        "5F:40:6C:F3:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:7F:23";
    const SECRET: &str = "0b1c2d3e-aaaa-4bbb-8ccc-ddddeeeeffff";

    fn proxmox(tls: serde_json::Value, secret: &str) -> ProxmoxConfig {
        let doc = serde_json::json!({
            "proxmox": {
                "api_url": "https://pve.example.test:8006",
                "node": "pve",
                "token_id": "felhom@pve!agent",
                "token_secret": secret,
                "tls": tls,
                "timeout_seconds": 7
            }
        });
        Config::from_json(
            &serde_json::to_vec(&doc).unwrap(),
            Path::new("/test/agent.json"),
            std::iter::empty::<(String, String)>(),
            Mode::SelftestProxmox,
        )
        .unwrap()
        .proxmox
    }

    #[test]
    fn a_pinned_config_becomes_a_pinned_client_config() {
        let p = proxmox(
            serde_json::json!({ "fingerprint_sha256": [FP.to_lowercase()] }),
            SECRET,
        );
        let c = client_config(&p).unwrap();
        assert_eq!(c.api_url, "https://pve.example.test:8006");
        assert_eq!(c.node, "pve");
        assert_eq!(c.token.token_id(), "felhom@pve!agent");
        assert_eq!(c.timeout, Duration::from_secs(7));
        assert_eq!(c.trust, TlsTrust::Pinned(vec![FP.parse().unwrap()]));
        assert_eq!(pins(&p.tls).unwrap(), vec![FP.parse().unwrap()]);
        // Debug of the result is safe to log.
        assert!(!format!("{c:?}").contains(SECRET));
        let client = client(&p).unwrap();
        assert_eq!(client.node(), "pve");
        assert_eq!(client.base_url(), "https://pve.example.test:8006/api2/json");
        assert!(!format!("{client:?}").contains(SECRET));
    }

    #[test]
    fn ca_file_and_insecure_map_one_to_one() {
        let ca = tls_trust(&TlsSetting::CaFile(PathBuf::from(
            "/etc/pve/pve-root-ca.pem",
        )));
        assert_eq!(
            ca.unwrap(),
            TlsTrust::CaFile(PathBuf::from("/etc/pve/pve-root-ca.pem"))
        );
        assert_eq!(
            tls_trust(&TlsSetting::InsecureSkipVerify).unwrap(),
            TlsTrust::InsecureSkipVerify
        );
        assert!(pins(&TlsSetting::InsecureSkipVerify).unwrap().is_empty());
    }

    #[test]
    fn bad_pins_name_their_position() {
        let e = tls_trust(&TlsSetting::Pinned(vec![FP.into(), "nope".into()])).unwrap_err();
        assert!(matches!(e, PveConfigError::Fingerprint { index: 1, .. }));
        assert!(e
            .to_string()
            .starts_with("proxmox.tls.fingerprint_sha256[1]: "));
        assert!(matches!(
            tls_trust(&TlsSetting::Pinned(Vec::new())),
            Err(PveConfigError::NoPins)
        ));
    }

    #[test]
    fn a_secret_the_header_cannot_carry_is_refused_without_showing_it() {
        // The config only refuses '='; the client also refuses ';' (PVE stops reading there).
        let secret = "abc;def-secret-value";
        let mut p = proxmox(serde_json::json!({ "fingerprint_sha256": FP }), SECRET);
        p.token_secret = Secret::new(secret);
        let e = client_config(&p).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("proxmox.token_secret: "), "{text}");
        assert!(!text.contains(secret), "{text}");
        assert!(!format!("{e:?}").contains(secret));
    }

    #[test]
    fn an_unreadable_ca_file_fails_when_the_client_is_built() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing-ca.pem");
        let mut p = proxmox(serde_json::json!({ "fingerprint_sha256": FP }), SECRET);
        p.tls = TlsSetting::CaFile(missing.clone());
        // The conversion itself is pure...
        assert!(client_config(&p).is_ok());
        // ...the client reads the file and names it.
        let e = client(&p).unwrap_err();
        assert!(matches!(e, PveConfigError::Client(_)));
        assert!(e.to_string().contains("missing-ca.pem"), "{e}");
    }
}
