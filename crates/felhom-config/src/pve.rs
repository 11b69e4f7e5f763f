//! From the `proxmox` config section to the Proxmox client (`PveClientConfig`, `PveClient`):
//! the one conversion both binaries use.
//!
//! Nothing is checked here: the section holds domain types already (`ApiUrl`, `ApiToken`,
//! `TlsTrust`, a node name `check_node_name` passed). What can still fail is what needs the
//! file system: reading a CA file when the client is built.

use felhom_proxmox::{ClientConfigError, Fingerprint, PveClient, PveClientConfig, TlsTrust};

use crate::ProxmoxConfig;

/// Why the `proxmox` section could not become a client. Never contains the token secret.
/// Retrying is pointless until the config (or the CA file) changes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PveConfigError {
    /// The client refused the settings (TLS trust such as an unreadable CA file).
    #[error("proxmox: {0}")]
    Client(#[from] ClientConfigError),
}

/// The pinned fingerprints, if the config pins (for comparing with what `/nodes` reports).
pub fn pins(trust: &TlsTrust) -> Vec<Fingerprint> {
    match trust {
        TlsTrust::Pinned(pins) => pins.clone(),
        _ => Vec::new(),
    }
}

/// The client settings for the `proxmox` section: URL, node, token, trust and timeout.
pub fn client_config(cfg: &ProxmoxConfig) -> PveClientConfig {
    let mut out = PveClientConfig::new(
        cfg.api_url.to_string(),
        cfg.node.clone(),
        cfg.token.clone(),
        cfg.tls.clone(),
    );
    out.timeout = cfg.timeout;
    out
}

/// The client itself (no network traffic yet; a CA file is read here).
pub fn client(cfg: &ProxmoxConfig) -> Result<PveClient, PveConfigError> {
    Ok(PveClient::new(client_config(cfg))?)
}
