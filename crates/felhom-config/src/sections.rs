//! From the (overlaid) JSON document to the typed [`Config`]: each value goes through its
//! domain type's constructor, and a refusal becomes a [`Problem`] at its key path with the
//! domain's own words. Every problem is collected; nothing stops at the first.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use felhom_authz::{Role, Signer};
use felhom_http::{Fingerprint, Secret, TlsTrust};
use felhom_metrics::ListenAddr;
use felhom_proxmox::{check_node_name, ApiToken, ApiUrl};
use felhom_types::HttpsUrl;
use serde_json::{Map, Value};

use crate::suggest::nearest;
use crate::VmidRange;
use crate::{
    AuthzConfig, Config, HubConfig, JournalConfig, LogConfig, LogFormat, LogLevel, MetricsConfig,
    Problem, ProxmoxConfig, ReconcileConfig, ReconcileSource, RestoreTestsConfig,
    DEFAULT_JOURNAL_FILE_NAME, DEFAULT_NONCE_STORE,
};

const DEFAULT_PROXMOX_TIMEOUT_SECONDS: u64 = 30;
const PROXMOX_TIMEOUT_RANGE: (u64, u64) = (1, 600);
const DEFAULT_POLL_SECONDS: u64 = 60;
const POLL_RANGE: (u64, u64) = (60, 3600);
const DEFAULT_HUB_TIMEOUT_SECONDS: u64 = 30;
const HUB_TIMEOUT_RANGE: (u64, u64) = (1, 300);
const MAX_HOST_ID_LEN: usize = 64;

#[derive(Default)]
pub(crate) struct Ctx {
    pub(crate) problems: Vec<Problem>,
    /// Key path → the variable(s) that set it.
    pub(crate) sources: BTreeMap<String, String>,
}

impl Ctx {
    pub(crate) fn add(&mut self, key: &str, msg: impl Into<String>) {
        let mut msg = msg.into();
        // The variable that set this key or a containing one (`authz.signers` for
        // `authz.signers[0].role`).
        let var = self
            .sources
            .iter()
            .filter(|(k, _)| {
                key.strip_prefix(k.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
            })
            .max_by_key(|(k, _)| k.len());
        if let Some((_, var)) = var {
            msg.push_str(&format!(" (set by {var})"));
        }
        self.problems.push(Problem {
            key: key.to_owned(),
            msg,
        });
    }
}

/// An object of the document with the keys it may hold; reports the others.
struct Obj<'v> {
    path: String,
    map: &'v Map<String, Value>,
}

impl<'v> Obj<'v> {
    /// `value` as an object at `path` with keys `known`, reporting unknown keys; `None` (and a
    /// problem) if it is not an object.
    fn new(ctx: &mut Ctx, path: &str, value: &'v Value, known: &[&str]) -> Option<Obj<'v>> {
        let Value::Object(map) = value else {
            ctx.add(path, format!("expected an object, got {}", kind(value)));
            return None;
        };
        for key in map.keys() {
            if !known.contains(&key.as_str()) {
                let hint = nearest(key, known.iter().copied())
                    .map(|k| format!(" (did you mean {k}?)"))
                    .unwrap_or_default();
                ctx.add(&join(path, key), format!("unknown key{hint}"));
            }
        }
        Some(Obj {
            path: path.to_owned(),
            map,
        })
    }

    fn key(&self, k: &str) -> String {
        join(&self.path, k)
    }

    /// The value at `k`; `null` counts as absent.
    fn get(&self, k: &str) -> Option<&'v Value> {
        self.map.get(k).filter(|v| !v.is_null())
    }

    fn required(&self, ctx: &mut Ctx, k: &str) -> Option<&'v Value> {
        let v = self.get(k);
        if v.is_none() {
            ctx.add(&self.key(k), "required, not set");
        }
        v
    }

    fn string(&self, ctx: &mut Ctx, k: &str, required: bool) -> Option<&'v str> {
        let v = if required {
            self.required(ctx, k)?
        } else {
            self.get(k)?
        };
        match v {
            Value::String(s) => Some(s),
            other => {
                ctx.add(
                    &self.key(k),
                    format!("expected a string, got {}", kind(other)),
                );
                None
            }
        }
    }

    /// A whole number of seconds in `range`, `default` when absent.
    fn seconds(&self, ctx: &mut Ctx, k: &str, default: u64, range: (u64, u64)) -> Option<u64> {
        let Some(v) = self.get(k) else {
            return Some(default);
        };
        let Some(n) = v.as_u64() else {
            ctx.add(
                &self.key(k),
                format!("expected a whole number, got {}", kind(v)),
            );
            return None;
        };
        if n < range.0 || n > range.1 {
            ctx.add(
                &self.key(k),
                format!("must be between {} and {}, got {n}", range.0, range.1),
            );
            return None;
        }
        Some(n)
    }

    fn path(&self, ctx: &mut Ctx, k: &str, required: bool) -> Option<PathBuf> {
        let s = self.string(ctx, k, required)?;
        file_path(ctx, &self.key(k), s)
    }
}

pub(crate) fn config(doc: &Value, ctx: &mut Ctx) -> Option<Config> {
    let top = Obj::new(
        ctx,
        "",
        doc,
        &[
            "proxmox",
            "hub",
            "authz",
            "journal",
            "reconcile",
            "restore_tests",
            "log",
            "metrics",
        ],
    )?;
    let proxmox = match top.get("proxmox") {
        Some(v) => proxmox_section(ctx, v),
        None => {
            ctx.add("proxmox", "missing section (required by every command)");
            None
        }
    };
    let hub = match top.get("hub") {
        Some(v) => hub_section(ctx, v).map(Some),
        None => Some(None),
    };
    let empty = Value::Object(Map::new());
    let authz = authz_section(ctx, top.get("authz").unwrap_or(&empty));
    let journal = journal_section(
        ctx,
        top.get("journal").unwrap_or(&empty),
        authz.as_ref().map(|a| a.nonce_store.as_path()),
    );
    let reconcile = reconcile_section(
        ctx,
        top.get("reconcile").unwrap_or(&empty),
        top.get("hub").is_some(),
    );
    let restore_tests = restore_tests_section(ctx, top.get("restore_tests").unwrap_or(&empty));
    let log = log_section(ctx, top.get("log").unwrap_or(&empty));
    let metrics = metrics_section(ctx, top.get("metrics").unwrap_or(&empty));
    Some(Config {
        proxmox: proxmox?,
        hub: hub?,
        authz: authz?,
        journal: journal?,
        reconcile: reconcile?,
        restore_tests: restore_tests?,
        log: log?,
        metrics: metrics?,
    })
}

fn proxmox_section(ctx: &mut Ctx, v: &Value) -> Option<ProxmoxConfig> {
    let o = Obj::new(
        ctx,
        "proxmox",
        v,
        &[
            "api_url",
            "node",
            "token_id",
            "token_secret",
            "tls",
            "timeout_seconds",
        ],
    )?;
    let api_url = o
        .string(ctx, "api_url", true)
        .and_then(|s| domain(ctx, &o.key("api_url"), ApiUrl::parse(s)));
    let node = o
        .string(ctx, "node", true)
        .and_then(|s| domain(ctx, &o.key("node"), check_node_name(s)).map(|()| s.to_owned()));
    let token_id = o
        .string(ctx, "token_id", true)
        .and_then(|s| domain(ctx, &o.key("token_id"), ApiToken::check_token_id(s)).map(|()| s));
    let token_secret = o.string(ctx, "token_secret", true).and_then(|s| {
        let secret = Secret::new(s);
        domain(ctx, &o.key("token_secret"), ApiToken::check_secret(&secret)).map(|()| secret)
    });
    let token = match (token_id, token_secret) {
        (Some(id), Some(secret)) => domain(ctx, &o.key("token_id"), ApiToken::new(id, secret)),
        _ => None,
    };
    let tls = match o.get("tls") {
        Some(t) => tls_setting(ctx, t),
        None => {
            ctx.add(&o.key("tls"), TLS_EXACTLY_ONE);
            None
        }
    };
    let timeout = o.seconds(
        ctx,
        "timeout_seconds",
        DEFAULT_PROXMOX_TIMEOUT_SECONDS,
        PROXMOX_TIMEOUT_RANGE,
    );
    Some(ProxmoxConfig {
        api_url: api_url?,
        node: node?,
        token: token?,
        tls: tls?,
        timeout: Duration::from_secs(timeout?),
    })
}

const TLS_EXACTLY_ONE: &str =
    "exactly one of fingerprint_sha256, ca_file, insecure_skip_verify must be set";

/// One pin or a list of pins at `o.key(k)`, each parsed by [`Fingerprint`]'s own rule.
fn pins(ctx: &mut Ctx, o: &Obj<'_>, k: &str) -> Option<Option<Vec<Fingerprint>>> {
    let v = o.get(k)?;
    let key = o.key(k);
    let items: Vec<(String, &Value)> = match v {
        Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("{key}[{i}]"), p))
            .collect(),
        one => vec![(key.clone(), one)],
    };
    if items.is_empty() {
        ctx.add(&key, "must list at least one fingerprint");
        return Some(None);
    }
    let mut pins = Vec::new();
    let mut ok = true;
    for (k, p) in items {
        match p.as_str() {
            Some(s) => match domain(ctx, &k, s.parse::<Fingerprint>()) {
                Some(f) if !pins.contains(&f) => pins.push(f),
                Some(_) => {
                    ctx.add(&k, "repeats an earlier fingerprint");
                    ok = false;
                }
                None => ok = false,
            },
            None => {
                ctx.add(
                    &k,
                    format!("expected a fingerprint string, got {}", kind(p)),
                );
                ok = false;
            }
        }
    }
    Some(ok.then_some(pins))
}

fn tls_setting(ctx: &mut Ctx, v: &Value) -> Option<TlsTrust> {
    let o = Obj::new(
        ctx,
        "proxmox.tls",
        v,
        &["fingerprint_sha256", "ca_file", "insecure_skip_verify"],
    )?;
    let pins = pins(ctx, &o, "fingerprint_sha256");
    let ca = o.get("ca_file").map(|_| o.path(ctx, "ca_file", true));
    let insecure = match o.get("insecure_skip_verify") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            ctx.add(
                &o.key("insecure_skip_verify"),
                format!("expected true or false, got {}", kind(other)),
            );
            return None;
        }
    };
    let chosen = usize::from(pins.is_some())
        + usize::from(ca.is_some())
        + usize::from(insecure == Some(true));
    if chosen != 1 {
        let msg = if insecure == Some(false) && chosen == 0 {
            format!("{TLS_EXACTLY_ONE} (insecure_skip_verify: false does not choose a mode)")
        } else {
            TLS_EXACTLY_ONE.to_owned()
        };
        ctx.add("proxmox.tls", msg);
        return None;
    }
    match (pins, ca) {
        (Some(pins), _) => Some(TlsTrust::Pinned(pins?)),
        (_, Some(ca)) => Some(TlsTrust::CaFile(ca?)),
        _ => Some(TlsTrust::InsecureSkipVerify),
    }
}

fn hub_section(ctx: &mut Ctx, v: &Value) -> Option<HubConfig> {
    let o = Obj::new(
        ctx,
        "hub",
        v,
        &[
            "url",
            "host_id",
            "api_key",
            "poll_seconds",
            "timeout_seconds",
            "ca_file",
            "fingerprint_sha256",
        ],
    )?;
    let url = o
        .string(ctx, "url", true)
        .and_then(|s| domain(ctx, &o.key("url"), HttpsUrl::parse(s)));
    let host_id = o.string(ctx, "host_id", true).and_then(|s| {
        let ok = (1..=MAX_HOST_ID_LEN).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Some(s.to_owned())
        } else {
            ctx.add(
                &o.key("host_id"),
                format!(
                    "expected 1 to {MAX_HOST_ID_LEN} letters, digits, '.', '_' or '-', got {s:?}"
                ),
            );
            None
        }
    });
    let api_key = o.string(ctx, "api_key", true).and_then(|s| {
        let key = Secret::new(s);
        domain(ctx, &o.key("api_key"), felhom_hub::hub::check_api_key(&key)).map(|()| key)
    });
    let poll = o.seconds(ctx, "poll_seconds", DEFAULT_POLL_SECONDS, POLL_RANGE);
    let timeout = o.seconds(
        ctx,
        "timeout_seconds",
        DEFAULT_HUB_TIMEOUT_SECONDS,
        HUB_TIMEOUT_RANGE,
    );
    if let (Some(p), Some(t)) = (poll, timeout) {
        if t >= p {
            ctx.add(
                &o.key("timeout_seconds"),
                format!("must be less than hub.poll_seconds ({p}), got {t}"),
            );
        }
    }
    let ca_file = o.get("ca_file").map(|_| o.path(ctx, "ca_file", true));
    let pins = pins(ctx, &o, "fingerprint_sha256");
    // There is no insecure mode for the hub: system roots, a CA file, or pins.
    let trust = match (ca_file, pins) {
        (Some(_), Some(_)) => {
            ctx.add(
                &o.key("fingerprint_sha256"),
                "cannot be combined with hub.ca_file: trust the hub one way (a pin or a CA file)",
            );
            None
        }
        (Some(ca), None) => ca.map(TlsTrust::CaFile),
        (None, Some(pins)) => pins.map(TlsTrust::Pinned),
        (None, None) => Some(TlsTrust::SystemRoots),
    };
    let (poll, timeout) = (poll?, timeout?);
    if timeout >= poll {
        return None;
    }
    Some(HubConfig {
        url: url?,
        host_id: host_id?,
        api_key: api_key?,
        poll_interval: Duration::from_secs(poll),
        timeout: Duration::from_secs(timeout),
        trust: trust?,
    })
}

fn authz_section(ctx: &mut Ctx, v: &Value) -> Option<AuthzConfig> {
    let o = Obj::new(ctx, "authz", v, &["nonce_store", "signers"])?;
    let nonce_store = match o.get("nonce_store") {
        Some(_) => o.path(ctx, "nonce_store", true),
        None => Some(PathBuf::from(DEFAULT_NONCE_STORE)),
    };
    let signers = match o.get("signers") {
        None => Some(Vec::new()),
        Some(Value::Array(list)) => signers(ctx, list),
        Some(other) => {
            ctx.add(
                &o.key("signers"),
                format!("expected an array of signers, got {}", kind(other)),
            );
            None
        }
    };
    Some(AuthzConfig {
        nonce_store: nonce_store?,
        signers: signers?,
    })
}

/// Each signer through [`Signer::from_authorized_key`] (felhom-authz's one parser and key
/// policy); duplicates in felhom-authz's words ([`felhom_authz::SignerError`]).
fn signers(ctx: &mut Ctx, list: &[Value]) -> Option<Vec<Signer>> {
    let mut out: Vec<(usize, Signer)> = Vec::new();
    let mut ok = true;
    for (i, v) in list.iter().enumerate() {
        let path = format!("authz.signers[{i}]");
        let Some(o) = Obj::new(ctx, &path, v, &["key_id", "role", "public_key"]) else {
            ok = false;
            continue;
        };
        let raw_id = o.string(ctx, "key_id", true);
        // The name the line's errors carry: the key_id if it has a valid form, else the position.
        let name = raw_id
            .filter(|s| Signer::check_key_id(s).is_ok())
            .unwrap_or(&path);
        let key_id = raw_id.and_then(|s| {
            let key = o.key("key_id");
            domain(ctx, &key, Signer::check_key_id(s))?;
            if let Some((_, first)) = out.iter().find(|(_, f)| f.key_id == s) {
                let e = felhom_authz::SignerError::DuplicateKeyId(first.key_id.clone());
                ctx.add(&key, e.to_string());
                return None;
            }
            Some(s)
        });
        let role = o
            .string(ctx, "role", true)
            .and_then(|s| domain(ctx, &o.key("role"), s.parse::<Role>()));
        let line = o.string(ctx, "public_key", true);
        // The line is checked even when key_id or role are wrong, so all problems show at
        // once; the signer then only stands in for its position.
        let public_key = line.and_then(|line| {
            let key = o.key("public_key");
            let signer = domain(
                ctx,
                &key,
                Signer::from_authorized_key(name, role.unwrap_or(Role::Recovery), line),
            )?;
            if let Some((_, first)) = out.iter().find(|(_, f)| f.same_key(&signer)) {
                let e = felhom_authz::SignerError::DuplicateKey {
                    first: first.key_id.clone(),
                    second: signer.key_id.clone(),
                };
                ctx.add(&key, e.to_string());
                return None;
            }
            Some(signer)
        });
        match (key_id, role, public_key) {
            (Some(_), Some(_), Some(signer)) => out.push((i, signer)),
            _ => ok = false,
        }
    }
    ok.then(|| out.into_iter().map(|(_, s)| s).collect())
}

fn journal_section(ctx: &mut Ctx, v: &Value, nonce_store: Option<&Path>) -> Option<JournalConfig> {
    let o = Obj::new(ctx, "journal", v, &["path"])?;
    let path = match o.get("path") {
        Some(_) => o.path(ctx, "path", true)?,
        None => nonce_store?
            .parent()
            .unwrap_or(Path::new("/"))
            .join(DEFAULT_JOURNAL_FILE_NAME),
    };
    if let Some(nonce_store) = nonce_store {
        // `..` and `.` resolved lexically (nothing is opened): two spellings of one file are
        // one file, and each log locks its own.
        let (a, b) = (lexical(&path), lexical(nonce_store));
        if a == b {
            let msg = if path == nonce_store {
                format!(
                    "must differ from authz.nonce_store, both are {:?} (each log locks its own file)",
                    path.display().to_string()
                )
            } else {
                format!(
                    "must differ from authz.nonce_store, both are {:?} once '..' and '.' are resolved (each log locks its own file)",
                    a.display().to_string()
                )
            };
            ctx.add("journal.path", msg);
            return None;
        }
    }
    Some(JournalConfig { path })
}

/// `p` with `.` dropped and `..` taking away the component before it (`/` stays `/`). Lexical
/// only: a symlink is not followed.
pub(crate) fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

fn reconcile_section(ctx: &mut Ctx, v: &Value, has_hub: bool) -> Option<ReconcileConfig> {
    let o = Obj::new(ctx, "reconcile", v, &["desired_state_file", "source"])?;
    let desired_state_file = match o.get("desired_state_file") {
        Some(_) => Some(o.path(ctx, "desired_state_file", true)?),
        None => None,
    };
    let source = match o.string(ctx, "source", false) {
        None if o.get("source").is_some() => return None,
        None if desired_state_file.is_none() && has_hub => ReconcileSource::Hub,
        None => ReconcileSource::File,
        Some(s) => match s.to_ascii_lowercase().as_str() {
            "file" => ReconcileSource::File,
            "hub" => ReconcileSource::Hub,
            _ => {
                ctx.add(&o.key("source"), format!("expected file or hub, got {s:?}"));
                return None;
            }
        },
    };
    if source == ReconcileSource::Hub {
        if desired_state_file.is_some() {
            ctx.add(
                &o.key("source"),
                "\"hub\" and reconcile.desired_state_file are both set: choose one (remove the \
                 file to follow the hub, or set source \"file\")",
            );
            return None;
        }
        if !has_hub {
            ctx.add(&o.key("source"), "\"hub\" needs the hub section");
            return None;
        }
    }
    Some(ReconcileConfig {
        desired_state_file,
        source,
    })
}

const EVERY_HOURS_RANGE: (u64, u64) = (1, 720);
const BOOT_TIMEOUT_RANGE: (u64, u64) = (10, 3600);
const MAX_CONCURRENT_RANGE: (u64, u64) = (1, 4);

fn restore_tests_section(ctx: &mut Ctx, v: &Value) -> Option<RestoreTestsConfig> {
    let o = Obj::new(
        ctx,
        "restore_tests",
        v,
        &[
            "enabled",
            "every_hours",
            "storage",
            "vmid_range",
            "boot_timeout_seconds",
            "max_concurrent",
        ],
    )?;
    let d = RestoreTestsConfig::default();
    let enabled = match o.get("enabled") {
        None => Some(false),
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            ctx.add(
                &o.key("enabled"),
                format!("expected true or false, got {}", kind(other)),
            );
            None
        }
    };
    let every_hours = o.seconds(ctx, "every_hours", 24, EVERY_HOURS_RANGE);
    let boot = o.seconds(
        ctx,
        "boot_timeout_seconds",
        d.boot_timeout.as_secs(),
        BOOT_TIMEOUT_RANGE,
    );
    let max_concurrent = o.seconds(ctx, "max_concurrent", 1, MAX_CONCURRENT_RANGE);
    let storage = match o.string(ctx, "storage", false) {
        None if o.get("storage").is_some() => return None,
        None => {
            if enabled == Some(true) {
                ctx.add(
                    &o.key("storage"),
                    "required when restore_tests.enabled is true",
                );
                return None;
            }
            None
        }
        Some(s) => Some(domain(ctx, &o.key("storage"), storage_id(s))?.to_owned()),
    };
    let vmid_range = match o.string(ctx, "vmid_range", false) {
        None if o.get("vmid_range").is_some() => return None,
        None => d.vmid_range,
        Some(s) => domain(ctx, &o.key("vmid_range"), s.parse::<VmidRange>())?,
    };
    let max_concurrent = usize::try_from(max_concurrent?).ok()?;
    if (vmid_range.len() as usize) < max_concurrent {
        ctx.add(
            &o.key("vmid_range"),
            format!(
                "holds {} vmid(s), fewer than restore_tests.max_concurrent ({max_concurrent})",
                vmid_range.len()
            ),
        );
        return None;
    }
    Some(RestoreTestsConfig {
        enabled: enabled?,
        every: Duration::from_secs(every_hours? * 3600),
        storage,
        vmid_range,
        boot_timeout: Duration::from_secs(boot?),
        max_concurrent,
    })
}

/// A PVE storage id (`pve-storage-id`: a letter, then letters, digits, `-`, `_`, `.`; at most
/// 64 characters here).
fn storage_id(s: &str) -> Result<&str, String> {
    let ok = s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(s)
    } else {
        Err(format!(
            "expected a storage id (a letter, then letters, digits, '-', '_' or '.'), got {:?}",
            s.chars().take(64).collect::<String>()
        ))
    }
}

fn log_section(ctx: &mut Ctx, v: &Value) -> Option<LogConfig> {
    let o = Obj::new(ctx, "log", v, &["level", "format"])?;
    let level = match o.string(ctx, "level", false) {
        None if o.get("level").is_none() => Some(LogLevel::Info),
        None => None,
        Some(s) => match s.to_ascii_lowercase().as_str() {
            "error" => Some(LogLevel::Error),
            "warn" => Some(LogLevel::Warn),
            "info" => Some(LogLevel::Info),
            "debug" => Some(LogLevel::Debug),
            "trace" => Some(LogLevel::Trace),
            _ => {
                ctx.add(
                    &o.key("level"),
                    format!("expected error, warn, info, debug or trace, got {s:?}"),
                );
                None
            }
        },
    };
    let format = match o.string(ctx, "format", false) {
        None if o.get("format").is_none() => Some(LogFormat::Text),
        None => None,
        Some(s) => match s.to_ascii_lowercase().as_str() {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => {
                ctx.add(
                    &o.key("format"),
                    format!("expected text or json, got {s:?}"),
                );
                None
            }
        },
    };
    Some(LogConfig {
        level: level?,
        format: format?,
    })
}

fn metrics_section(ctx: &mut Ctx, v: &Value) -> Option<MetricsConfig> {
    let o = Obj::new(ctx, "metrics", v, &["listen"])?;
    let listen = match o.string(ctx, "listen", false) {
        None if o.get("listen").is_none() => None,
        None => return None,
        Some(s) => Some(domain(ctx, &o.key("listen"), ListenAddr::parse(s))?),
    };
    Some(MetricsConfig { listen })
}

/// A domain constructor's verdict: the value, or a problem at `key` in the domain's words.
fn domain<T, E: std::fmt::Display>(ctx: &mut Ctx, key: &str, r: Result<T, E>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            ctx.add(key, e.to_string());
            None
        }
    }
}

/// An absolute path naming a file: daemons run with `/` as working directory, so a relative
/// path would silently mean something else there; a NUL byte cannot reach the kernel.
fn file_path(ctx: &mut Ctx, key: &str, s: &str) -> Option<PathBuf> {
    let p = Path::new(s);
    let msg = if s.contains('\0') {
        format!("must not contain a NUL byte, got {s:?}")
    } else if !p.is_absolute() {
        format!("must be an absolute path, got {s:?}")
    } else if s.ends_with('/') || s.ends_with("/.") || s.ends_with("/..") || p.file_name().is_none()
    {
        format!("must name a file, not a directory, got {s:?}")
    } else {
        return Some(p.to_owned());
    };
    ctx.add(key, msg);
    None
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The JSON type of `v`, for "expected X, got Y"; never its value (it may be a secret).
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_u64() => "a whole number",
        Value::Number(n) if n.is_i64() => "a negative number",
        Value::Number(_) => "a fractional number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
