//! The redacted display: the whole effective config in the file's format, secrets blanked.

use std::fmt;
use std::path::Path;

use felhom_http::TlsTrust;
use serde_json::{Map, Value};

use crate::{Config, REDACTED};

/// [`Config::redacted`]: `Display` prints the config as pretty JSON without its secrets.
#[derive(Debug, Clone, Copy)]
pub struct Redacted<'a>(pub(crate) &'a Config);

fn path(p: &Path) -> Value {
    Value::String(p.to_string_lossy().into_owned())
}

fn pins(pins: &[felhom_http::Fingerprint]) -> Vec<String> {
    pins.iter().map(ToString::to_string).collect()
}

impl Redacted<'_> {
    /// The redacted config as a JSON value.
    pub fn to_value(&self) -> Value {
        let c = self.0;
        let p = &c.proxmox;
        let tls = match &p.tls {
            TlsTrust::Pinned(fps) => serde_json::json!({ "fingerprint_sha256": pins(fps) }),
            TlsTrust::CaFile(f) => serde_json::json!({ "ca_file": path(f) }),
            // The config never builds the remaining modes for Proxmox.
            _ => serde_json::json!({ "insecure_skip_verify": true }),
        };
        let mut root = Map::new();
        root.insert(
            "proxmox".into(),
            serde_json::json!({
                "api_url": p.api_url.to_string(),
                "node": p.node,
                "token_id": p.token.token_id(),
                "token_secret": REDACTED,
                "tls": tls,
                "timeout_seconds": p.timeout.as_secs(),
            }),
        );
        if let Some(h) = &c.hub {
            let mut hub = serde_json::json!({
                "url": h.url.to_string(),
                "host_id": h.host_id,
                "api_key": REDACTED,
                "poll_seconds": h.poll_interval.as_secs(),
                "timeout_seconds": h.timeout.as_secs(),
                "ca_file": match &h.trust {
                    TlsTrust::CaFile(f) => path(f),
                    _ => Value::Null,
                },
            });
            if let TlsTrust::Pinned(fps) = &h.trust {
                hub["fingerprint_sha256"] = serde_json::json!(pins(fps));
            }
            root.insert("hub".into(), hub);
        }
        let signers: Vec<Value> = c
            .authz
            .signers
            .iter()
            .map(|s| {
                serde_json::json!({
                    "key_id": s.key_id,
                    "role": s.role.as_str(),
                    "public_key": s.public_key_openssh(),
                })
            })
            .collect();
        root.insert(
            "authz".into(),
            serde_json::json!({ "nonce_store": path(&c.authz.nonce_store), "signers": signers }),
        );
        root.insert(
            "journal".into(),
            serde_json::json!({ "path": path(&c.journal.path) }),
        );
        root.insert(
            "reconcile".into(),
            serde_json::json!({
                "desired_state_file": c.reconcile.desired_state_file.as_deref().map(path),
                "source": c.reconcile.source.as_str(),
            }),
        );
        let r = &c.restore_tests;
        root.insert(
            "restore_tests".into(),
            serde_json::json!({
                "enabled": r.enabled,
                "every_hours": r.every.as_secs() / 3600,
                "storage": r.storage,
                "vmid_range": r.vmid_range.to_string(),
                "boot_timeout_seconds": r.boot_timeout.as_secs(),
                "max_concurrent": r.max_concurrent,
            }),
        );
        root.insert(
            "log".into(),
            serde_json::json!({ "level": c.log.level.as_str(), "format": c.log.format.as_str() }),
        );
        root.insert(
            "metrics".into(),
            serde_json::json!({ "listen": c.metrics.listen.map(|a| a.to_string()) }),
        );
        Value::Object(root)
    }
}

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.to_value())
    }
}
