//! The `FELHOM_AGENT_*` overlay: each variable is one key of the file; the environment wins.

use std::collections::BTreeMap;
use std::ffi::OsStr;

use serde_json::{Map, Value};

use crate::file::StrictValue;
use crate::sections::Ctx;
use crate::suggest::nearest;
use crate::{Problem, ENV_PREFIX};

/// Every config key that the environment can set, with its variable name, in file order:
/// (`hub.api_key`, `FELHOM_AGENT_HUB_API_KEY`).
pub fn env_variables() -> impl Iterator<Item = (String, String)> {
    KEYS.iter()
        .map(|k| (format!("{}.{}", k.section, k.key), env_name(k)))
}

/// Our variables (`FELHOM_AGENT_*`), as text. One whose name or value is not UTF-8 is a
/// problem naming it (lossily), never silently dropped: the operator meant something by it.
pub(crate) fn ours<I, K, V>(env: I, ctx: &mut Ctx) -> BTreeMap<String, String>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut out = BTreeMap::new();
    for (k, v) in env {
        let (k, v) = (k.as_ref(), v.as_ref());
        let name = k.to_string_lossy();
        if !name.starts_with(ENV_PREFIX) || crate::TEST_ONLY_ENV.contains(&name.as_ref()) {
            continue;
        }
        match (k.to_str(), v.to_str()) {
            (Some(k), Some(v)) => {
                out.insert(k.to_owned(), v.to_owned());
            }
            (None, _) => ctx.problems.push(Problem {
                key: name.into_owned(),
                msg: "the variable's name is not valid UTF-8".into(),
            }),
            // The value is never shown: it may be a secret.
            (Some(k), None) => ctx.problems.push(Problem {
                key: k.to_owned(),
                msg: "the value is not valid UTF-8".into(),
            }),
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EnvKind {
    Text,
    Secret,
    Number,
    Bool,
    /// One fingerprint, or several separated by commas.
    Fingerprints,
    /// A JSON document (the signers array).
    Json,
}

pub(crate) struct KeySpec {
    section: &'static str,
    /// Within the section; `tls.ca_file` for a nested key.
    key: &'static str,
    kind: EnvKind,
}

const fn spec(section: &'static str, key: &'static str, kind: EnvKind) -> KeySpec {
    KeySpec { section, key, kind }
}

pub(crate) const KEYS: &[KeySpec] = &[
    spec("proxmox", "api_url", EnvKind::Text),
    spec("proxmox", "node", EnvKind::Text),
    spec("proxmox", "token_id", EnvKind::Text),
    spec("proxmox", "token_secret", EnvKind::Secret),
    spec("proxmox", "tls.fingerprint_sha256", EnvKind::Fingerprints),
    spec("proxmox", "tls.ca_file", EnvKind::Text),
    spec("proxmox", "tls.insecure_skip_verify", EnvKind::Bool),
    spec("proxmox", "timeout_seconds", EnvKind::Number),
    spec("hub", "url", EnvKind::Text),
    spec("hub", "host_id", EnvKind::Text),
    spec("hub", "api_key", EnvKind::Secret),
    spec("hub", "poll_seconds", EnvKind::Number),
    spec("hub", "timeout_seconds", EnvKind::Number),
    spec("hub", "ca_file", EnvKind::Text),
    spec("hub", "fingerprint_sha256", EnvKind::Fingerprints),
    spec("authz", "nonce_store", EnvKind::Text),
    spec("authz", "signers", EnvKind::Json),
    spec("journal", "path", EnvKind::Text),
    spec("reconcile", "desired_state_file", EnvKind::Text),
    spec("reconcile", "source", EnvKind::Text),
    spec("restore_tests", "enabled", EnvKind::Bool),
    spec("restore_tests", "every_hours", EnvKind::Number),
    spec("restore_tests", "storage", EnvKind::Text),
    spec("restore_tests", "vmid_range", EnvKind::Text),
    spec("restore_tests", "boot_timeout_seconds", EnvKind::Number),
    spec("restore_tests", "max_concurrent", EnvKind::Number),
    spec("log", "level", EnvKind::Text),
    spec("log", "format", EnvKind::Text),
    spec("metrics", "listen", EnvKind::Text),
];

pub(crate) fn env_name(k: &KeySpec) -> String {
    format!("{ENV_PREFIX}{}_{}", k.section, k.key.replace('.', "_")).to_ascii_uppercase()
}

/// Converts a variable's text to the JSON the file would hold. Errors never repeat a secret:
/// secrets are text and cannot fail to convert.
fn env_value(kind: EnvKind, raw: String) -> Result<Value, String> {
    match kind {
        EnvKind::Text | EnvKind::Secret => Ok(Value::String(raw)),
        EnvKind::Number => raw
            .trim()
            .parse::<u64>()
            .map(Value::from)
            .map_err(|_| format!("expected a whole number, got {raw:?}")),
        EnvKind::Bool => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Value::Bool(true)),
            "false" | "0" => Ok(Value::Bool(false)),
            _ => Err(format!("expected true or false, got {raw:?}")),
        },
        EnvKind::Fingerprints => {
            let pins: Vec<Value> = raw
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| Value::String(p.to_owned()))
                .collect();
            Ok(Value::Array(pins))
        }
        EnvKind::Json => serde_json::from_str::<StrictValue>(&raw)
            .map(|v| v.0)
            .map_err(|e| format!("expected JSON (an array of signers): {e}")),
    }
}

/// Writes every `FELHOM_AGENT_*` variable into the document (env wins) and records which key
/// each set, so later problems name the variable. Setting any `proxmox.tls.*` variable
/// replaces the file's whole `tls` object: the TLS mode is one choice, and the environment's
/// choice must not collide with the file's.
pub(crate) fn apply(doc: &mut Map<String, Value>, env: &BTreeMap<String, String>, ctx: &mut Ctx) {
    let mut tls_replaced = false;
    for (name, raw) in env {
        let Some(spec) = KEYS.iter().find(|k| env_name(k) == *name) else {
            let names: Vec<String> = KEYS.iter().map(env_name).collect();
            let hint = nearest(name, names.iter().map(String::as_str))
                .map(|n| format!(" (did you mean {n}?)"))
                .unwrap_or_default();
            ctx.problems.push(Problem {
                key: name.clone(),
                msg: format!("unknown variable{hint}; configs/README.md lists them"),
            });
            continue;
        };
        let value = match env_value(spec.kind, raw.clone()) {
            Ok(v) => v,
            Err(msg) => {
                ctx.problems.push(Problem {
                    key: name.clone(),
                    msg,
                });
                continue;
            }
        };
        let section = doc
            .entry(spec.section)
            .or_insert_with(|| Value::Object(Map::new()));
        if section.is_null() {
            *section = Value::Object(Map::new());
        }
        // A section of the wrong type is reported by validation; nothing to write into.
        let Some(section) = section.as_object_mut() else {
            continue;
        };
        let (target, leaf) = match spec.key.split_once('.') {
            Some((sub, leaf)) => {
                if !tls_replaced {
                    section.insert(sub.to_owned(), Value::Object(Map::new()));
                    tls_replaced = true;
                }
                let tls_key = format!("{}.{sub}", spec.section);
                let by = ctx.sources.entry(tls_key).or_default();
                if !by.is_empty() {
                    by.push_str(", ");
                }
                by.push_str(name);
                match section.get_mut(sub).and_then(Value::as_object_mut) {
                    Some(t) => (t, leaf),
                    None => continue,
                }
            }
            None => (section, spec.key),
        };
        target.insert(leaf.to_owned(), value);
        ctx.sources
            .insert(format!("{}.{}", spec.section, spec.key), name.clone());
    }
}
