//! The agent's JSON config as the tests, the demo and the bench write it: sections pointing at
//! the simulators, and a fixed example host for commands that never connect. Test values only:
//! the simulators' fixed token and key, never a real credential.

use std::path::Path;

use felhom_pve_sim::{PveSim, DEFAULT_HUB_API_KEY, DEFAULT_TOKEN_ID, DEFAULT_TOKEN_SECRET};
use serde_json::{json, Value};

/// The host id the configs name (the SSHSIG vectors target it).
pub const HOST_ID: &str = "pve-01";

/// A well-formed sha-256 fingerprint for a host nobody connects to.
pub const EXAMPLE_FINGERPRINT: &str =
    "5F:40:6C:F3:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:7F:23";

/// The `proxmox` section pointing at `sim`: its URL and node, the default token, pinned to its
/// leaf, 10 s timeout.
pub fn proxmox_section(sim: &PveSim) -> Value {
    json!({
        "api_url": sim.base_url(),
        "node": sim.node(),
        "token_id": DEFAULT_TOKEN_ID,
        "token_secret": DEFAULT_TOKEN_SECRET,
        "tls": { "fingerprint_sha256": [sim.fingerprint()] },
        "timeout_seconds": 10
    })
}

/// The `hub` section for a hub simulator at `url` whose CA is in `ca_file`: [`HOST_ID`], the
/// simulator's default key, 60 s polls, 10 s timeout.
pub fn hub_section(url: &str, ca_file: &Path) -> Value {
    json!({
        "url": url,
        "host_id": HOST_ID,
        "api_key": DEFAULT_HUB_API_KEY,
        "poll_seconds": 60,
        "timeout_seconds": 10,
        "ca_file": ca_file,
    })
}

/// A whole daemon config for the simulators: `proxmox` and `hub` as above (the hub's CA in
/// `dir/hub-ca.pem`), no signers, journal and nonce store in `dir`, text logs at `log_level`.
pub fn daemon_config(pve: &PveSim, hub_url: &str, dir: &Path, log_level: &str) -> Value {
    json!({
        "proxmox": proxmox_section(pve),
        "hub": hub_section(hub_url, &dir.join("hub-ca.pem")),
        "authz": { "nonce_store": dir.join("nonces.log"), "signers": [] },
        "journal": { "path": dir.join("journal.log") },
        "log": { "level": log_level, "format": "text" }
    })
}

/// The `proxmox` section of an example host nobody connects to, with `token_secret`.
pub fn example_proxmox_section(token_secret: &str) -> Value {
    json!({
        "api_url": "https://pve.example.test:8006",
        "node": "pve",
        "token_id": "felhom@pve!agent",
        "token_secret": token_secret,
        "tls": { "fingerprint_sha256": [EXAMPLE_FINGERPRINT] }
    })
}

/// The `hub` section of an example hub nobody connects to, with `api_key`.
pub fn example_hub_section(api_key: &str) -> Value {
    json!({ "url": "https://hub.example.test", "host_id": HOST_ID, "api_key": api_key })
}

/// Writes `doc` pretty-printed to `path`.
pub fn write_json(path: &Path, doc: &Value) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(doc).map_err(std::io::Error::other)?;
    std::fs::write(path, text)
}
