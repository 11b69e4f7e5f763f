//! The agent's configuration: the JSON file, the `FELHOM_AGENT_*` environment overlay, mode-aware
//! validation that reports every problem with its key path, and the redacted display.
//!
//! Pure apart from [`Config::load`] reading the file: the environment comes in as a map, paths
//! are checked for form (absolute, naming a file) but not opened. The file format is documented
//! key by key in `configs/README.md`; `configs/agent.example.json` is a loadable example.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use felhom_proxmox::Secret;
use serde_json::{Map, Value};

/// Prefix of every environment variable the overlay reads.
pub const ENV_PREFIX: &str = "FELHOM_AGENT_";
/// The one `FELHOM_AGENT_*` variable that is not config: the daemon's test-only poll floor,
/// read by the daemon itself and exempt from the overlay's unknown-variable check.
pub const TEST_POLL_FLOOR_ENV: &str = "FELHOM_AGENT_TEST_POLL_FLOOR_MS";
/// Where the file-backed nonce store lives unless `authz.nonce_store` says otherwise.
pub const DEFAULT_NONCE_STORE: &str = "/var/lib/felhom-agent/nonces.log";
/// The journal's file name, next to the nonce store unless `journal.path` says otherwise.
pub const DEFAULT_JOURNAL_FILE_NAME: &str = "journal.log";
/// What a secret prints as in [`Config::redacted`].
pub const REDACTED: &str = felhom_proxmox::secret::REDACTED;

/// Largest config file read: a real one is a few KiB, even with many signers.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
const DEFAULT_PROXMOX_TIMEOUT_SECONDS: u64 = 30;
const PROXMOX_TIMEOUT_RANGE: (u64, u64) = (1, 600);
const DEFAULT_POLL_SECONDS: u64 = 60;
const POLL_RANGE: (u64, u64) = (60, 3600);
const DEFAULT_HUB_TIMEOUT_SECONDS: u64 = 30;
const HUB_TIMEOUT_RANGE: (u64, u64) = (1, 300);
/// Same limits as felhom-authz applies to signers, so config never accepts what authz refuses
/// for form alone.
const MAX_KEY_ID_LEN: usize = 128;
const MAX_KEY_LINE_LEN: usize = 16 * 1024;
const MAX_HOST_ID_LEN: usize = 64;
const KEY_TYPES: [&str; 6] = [
    "ssh-ed25519",
    "sk-ssh-ed25519@openssh.com",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
];

/// Which program loads the config; decides which sections are required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `felhom-agent`: `proxmox` and `hub` required.
    Daemon,
    /// `felhom-selftest read | task | privileges`: only `proxmox` required; `hub` may be absent
    /// (validated when present).
    SelftestProxmox,
    /// `felhom-selftest hub`: `proxmox` and `hub` required.
    SelftestHub,
}

impl Mode {
    fn needs_hub(self) -> bool {
        matches!(self, Mode::Daemon | Mode::SelftestHub)
    }

    fn who(self) -> &'static str {
        match self {
            Mode::Daemon => "the daemon",
            Mode::SelftestProxmox => "the proxmox self-tests",
            Mode::SelftestHub => "the hub self-test",
        }
    }
}

/// A validated configuration: every field typed, every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The Proxmox VE API of this host.
    pub proxmox: ProxmoxConfig,
    /// The felhom hub. Always `Some` when loaded with [`Mode::Daemon`] or [`Mode::SelftestHub`];
    /// with [`Mode::SelftestProxmox`], `Some` only if the section was given.
    pub hub: Option<HubConfig>,
    /// Operator signatures.
    pub authz: AuthzConfig,
    /// The op journal.
    pub journal: JournalConfig,
    /// Desired state.
    pub reconcile: ReconcileConfig,
    /// Logging.
    pub log: LogConfig,
}

/// Section `proxmox`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxmoxConfig {
    /// `proxmox.api_url`: base URL of the API, `https://HOST:8006` (no path; the client adds
    /// `/api2/json`).
    pub api_url: Url,
    /// `proxmox.node`: this host's node name.
    pub node: String,
    /// `proxmox.token_id`: `user@realm!name`.
    pub token_id: TokenId,
    /// `proxmox.token_secret`.
    pub token_secret: Secret,
    /// `proxmox.tls`: how the API's certificate is trusted.
    pub tls: TlsSetting,
    /// `proxmox.timeout_seconds` (default 30): per request.
    pub timeout: Duration,
}

/// How the Proxmox API's TLS certificate is trusted: exactly one mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSetting {
    /// Pin the leaf certificate's SHA-256 fingerprint; any of these, uppercase `AB:CD:…` (32
    /// bytes). More than one during a certificate renewal.
    Pinned(Vec<String>),
    /// Trust certificates issued by the CA in this PEM file (e.g. `/etc/pve/pve-root-ca.pem`).
    CaFile(PathBuf),
    /// No verification at all: only when the config says `insecure_skip_verify: true`.
    InsecureSkipVerify,
}

/// Section `hub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// `hub.url`: base URL of the hub (`https://`, may carry a path prefix, no trailing slash).
    pub url: Url,
    /// `hub.host_id`: this host's id at the hub.
    pub host_id: String,
    /// `hub.api_key`: sent as `Authorization: Bearer …`.
    pub api_key: Secret,
    /// `hub.poll_seconds` (default 60, 60..=3600): interval between reports until the hub says
    /// otherwise.
    pub poll_interval: Duration,
    /// `hub.timeout_seconds` (default 30): per request.
    pub timeout: Duration,
    /// `hub.ca_file`: a PEM CA file to trust instead of the system roots.
    pub ca_file: Option<PathBuf>,
}

/// Section `authz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzConfig {
    /// `authz.nonce_store` (default `/var/lib/felhom-agent/nonces.log`).
    pub nonce_store: PathBuf,
    /// `authz.signers` (default none): the pinned operator keys. Checked for form here; the
    /// keys themselves are parsed by felhom-authz.
    pub signers: Vec<SignerConfig>,
}

/// One pinned operator key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerConfig {
    /// Who the key belongs to (`ops-anna`); unique in the config.
    pub key_id: String,
    /// What it may sign.
    pub role: SignerRole,
    /// The key as one authorized_keys line, exactly as configured.
    pub public_key: String,
}

/// A signer's role (felhom-authz enforces the scopes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignerRole {
    /// Ordinary destructive ops and planned key rotation.
    Operational,
    /// Key rotation only.
    Recovery,
}

impl SignerRole {
    /// The config spelling: `operational` or `recovery`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignerRole::Operational => "operational",
            SignerRole::Recovery => "recovery",
        }
    }
}

/// Section `journal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// `journal.path` (default `journal.log` beside the nonce store).
    pub path: PathBuf,
}

/// Section `reconcile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileConfig {
    /// `reconcile.desired_state_file`: an operator-written desired-state file, re-read each
    /// pass. `None`: no desired state (nothing is reconciled).
    pub desired_state_file: Option<PathBuf>,
}

/// Section `log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// `log.level` (default `info`).
    pub level: LogLevel,
    /// `log.format` (default `text`).
    pub format: LogFormat,
}

/// The most verbose level logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `error`
    Error,
    /// `warn`
    Warn,
    /// `info`
    Info,
    /// `debug`
    Debug,
    /// `trace`
    Trace,
}

impl LogLevel {
    /// The config spelling, which is also a `tracing` filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// How log lines are written (journald, when present, takes structured fields either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// An `https://` URL, parsed enough to connect: host, port and path. No user info, query or
/// fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    host: String,
    port: u16,
    explicit_port: bool,
    path: String,
}

impl Url {
    /// Always `https`: the only scheme the config accepts.
    pub fn scheme(&self) -> &'static str {
        "https"
    }

    /// The host: a DNS name (lowercase), an IPv4 address, or an IPv6 address without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, 443 when the URL gives none.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, with brackets around an IPv6 address.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The path prefix without a trailing slash: `""` or e.g. `/felhom`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// This URL with `suffix` (starting with `/`) appended to its path:
    /// `https://hub.example:8443/felhom` + `/api/v1/host-report`.
    pub fn join(&self, suffix: &str) -> String {
        format!("{self}{suffix}")
    }

    /// Parses `s` as an `https://` URL (what the config accepts).
    pub fn parse(s: &str) -> Result<Url, InvalidUrl> {
        Url::parse_reason(s).map_err(|reason| InvalidUrl { reason })
    }

    /// The reason is a fixed phrase that never repeats `s` (it may hold a password).
    fn parse_reason(s: &str) -> Result<Url, &'static str> {
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err("must be an https:// URL");
        };
        if !scheme.eq_ignore_ascii_case("https") {
            return Err("must be an https:// URL");
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err("must not contain credentials (user@ or user:password@)");
        }
        if tail.contains(['?', '#']) {
            return Err("must not have a query or fragment");
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((addr, after)) = v6.split_once(']') else {
                return Err("has an unclosed '[' in the host");
            };
            if addr.is_empty()
                || !addr
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
            {
                return Err("has an invalid IPv6 address");
            }
            match after {
                "" => (addr.to_owned(), None),
                p => match p.strip_prefix(':') {
                    Some(p) => (addr.to_owned(), Some(p)),
                    None => return Err("has something after the IPv6 address that is not a port"),
                },
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_ascii_lowercase(), Some(p)),
                None => (authority.to_ascii_lowercase(), None),
            }
        };
        if host.is_empty() {
            return Err("has no host");
        }
        if !host.contains(':')
            && !host.split('.').all(|l| {
                !l.is_empty()
                    && l.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
        {
            return Err("has an invalid host name");
        }
        let port_num = match port {
            None => 443,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.chars().all(|c| c.is_ascii_digit()) => n,
                _ => return Err("has an invalid port (1 to 65535)"),
            },
        };
        Ok(Url {
            host,
            port: port_num,
            explicit_port: port.is_some(),
            path: tail.trim_end_matches('/').to_owned(),
        })
    }
}

impl std::str::FromStr for Url {
    type Err = InvalidUrl;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Url::parse(s)
    }
}

/// Why a string is not an acceptable `https://` URL. It never holds the URL itself, which may
/// carry a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid url: {reason}")]
pub struct InvalidUrl {
    /// What is wrong, e.g. `must be an https:// URL`.
    pub reason: &'static str,
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.explicit_port {
            write!(f, "https://{}{}", self.authority(), self.path)
        } else if self.host.contains(':') {
            write!(f, "https://[{}]{}", self.host, self.path)
        } else {
            write!(f, "https://{}{}", self.host, self.path)
        }
    }
}

/// A Proxmox API token id, `user@realm!name` (PVE's `split_tokenid` rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenId {
    full: String,
    at: usize,
    bang: usize,
}

impl TokenId {
    /// Parses `s` as `user@realm!name`.
    pub fn parse(s: &str) -> Option<TokenId> {
        if s.len() > 128 {
            return None;
        }
        let bang = s.find('!')?;
        let (userid, name) = (&s[..bang], &s[bang + 1..]);
        let at = userid.rfind('@')?;
        let (user, realm) = (&userid[..at], &userid[at + 1..]);
        // pve-access-control: user `[^\s:/]+`, realm `[A-Za-z][A-Za-z\.\-_\d]*` (2..32),
        // token name `[A-Za-z][A-Za-z0-9\.\-_]+`.
        let user_ok = !user.is_empty()
            && user.len() <= 60
            && !user
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ':' | '/' | '!'));
        let ident = |v: &str, min: usize, max: usize| {
            let mut chars = v.chars();
            (min..=max).contains(&v.len())
                && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        };
        (user_ok && ident(realm, 2, 32) && ident(name, 2, 64)).then(|| TokenId {
            full: s.to_owned(),
            at,
            bang,
        })
    }

    /// The whole id, as sent in `PVEAPIToken=<id>=<secret>`.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// `user@realm`, the token's owner.
    pub fn userid(&self) -> &str {
        &self.full[..self.bang]
    }

    /// The user part.
    pub fn user(&self) -> &str {
        &self.full[..self.at]
    }

    /// The realm (`pve`, `pam`, …).
    pub fn realm(&self) -> &str {
        &self.full[self.at + 1..self.bang]
    }

    /// The token's name.
    pub fn name(&self) -> &str {
        &self.full[self.bang + 1..]
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// One thing wrong with the config: the key path (or environment variable) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `hub.poll_seconds`, `authz.signers[1].role`, or `FELHOM_AGENT_HUB_POLL_SECONDS`.
    pub key: String,
    /// What is wrong, lowercase; never contains a secret's value.
    pub msg: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.msg)
    }
}

/// Why the config could not be loaded. Retrying is pointless until the file or the
/// environment changes (a `Read` error from a transient I/O failure aside).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than any real config.
    #[error("config file {} is larger than {limit} bytes", path.display())]
    TooLarge {
        /// The config file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// The file is not JSON (or repeats a key).
    #[error("config file {}:{line}:{column}: {msg}", path.display())]
    Parse {
        /// The config file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the JSON parser found.
        msg: String,
    },
    /// The JSON and environment parsed but hold problems: all of them, environment first,
    /// then section by section.
    #[error("{}", Invalid(.0))]
    Invalid(Vec<Problem>),
}

struct Invalid<'a>(&'a [Problem]);

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "invalid config ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in self.0 {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads the config file at `path`, overlays the `FELHOM_AGENT_*` variables of `env` (the
    /// binaries pass `std::env::vars()`; other variables are ignored) and validates the result
    /// for `mode`.
    ///
    /// (`std::env::vars()` panics on a variable that is not Unicode; a caller that must survive
    /// such an environment passes `std::env::vars_os()` filtered through `into_string`.)
    pub fn load<I, K, V>(path: &Path, env: I, mode: Mode) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let read_err = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .map_err(read_err)?
            .take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                path: path.to_owned(),
                limit: MAX_CONFIG_BYTES,
            });
        }
        Config::from_json(&bytes, path, env, mode)
    }

    /// Like [`Config::load`] with the file's content already in hand; `path` only names it in
    /// errors.
    pub fn from_json<I, K, V>(
        json: &[u8],
        path: &Path,
        env: I,
        mode: Mode,
    ) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: Into<String>,
    {
        let StrictValue(mut doc) =
            serde_json::from_slice(json).map_err(|e| parse_error(path, &e))?;
        let env: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| {
                k.as_ref().starts_with(ENV_PREFIX) && k.as_ref() != TEST_POLL_FLOOR_ENV
            })
            .map(|(k, v)| (k.as_ref().to_owned(), v.into()))
            .collect();
        let Some(map) = doc.as_object_mut() else {
            return Err(ConfigError::Invalid(vec![Problem {
                key: "(root)".into(),
                msg: format!("expected an object, got {}", kind(&doc)),
            }]));
        };
        let mut ctx = Ctx::default();
        apply_env(map, &env, &mut ctx);
        let config = validate(&doc, mode, &mut ctx);
        match config {
            Some(c) if ctx.problems.is_empty() => Ok(c),
            _ => Err(ConfigError::Invalid(ctx.problems)),
        }
    }

    /// The whole effective config (defaults included) as pretty JSON in the file's format,
    /// every secret replaced by `[redacted]`: what `felhom-agent check-config` prints.
    pub fn redacted(&self) -> Redacted<'_> {
        Redacted(self)
    }
}

/// [`Config::redacted`]: `Display` prints the config as pretty JSON without its secrets.
#[derive(Debug, Clone, Copy)]
pub struct Redacted<'a>(&'a Config);

impl Redacted<'_> {
    /// The redacted config as a JSON value.
    pub fn to_value(&self) -> Value {
        let c = self.0;
        let path = |p: &Path| Value::String(p.to_string_lossy().into_owned());
        let p = &c.proxmox;
        let tls = match &p.tls {
            TlsSetting::Pinned(pins) => serde_json::json!({ "fingerprint_sha256": pins }),
            TlsSetting::CaFile(f) => serde_json::json!({ "ca_file": path(f) }),
            TlsSetting::InsecureSkipVerify => serde_json::json!({ "insecure_skip_verify": true }),
        };
        let mut root = Map::new();
        root.insert(
            "proxmox".into(),
            serde_json::json!({
                "api_url": p.api_url.to_string(),
                "node": p.node,
                "token_id": p.token_id.as_str(),
                "token_secret": REDACTED,
                "tls": tls,
                "timeout_seconds": p.timeout.as_secs(),
            }),
        );
        if let Some(h) = &c.hub {
            root.insert(
                "hub".into(),
                serde_json::json!({
                    "url": h.url.to_string(),
                    "host_id": h.host_id,
                    "api_key": REDACTED,
                    "poll_seconds": h.poll_interval.as_secs(),
                    "timeout_seconds": h.timeout.as_secs(),
                    "ca_file": h.ca_file.as_deref().map(path),
                }),
            );
        }
        let signers: Vec<Value> = c
            .authz
            .signers
            .iter()
            .map(|s| {
                serde_json::json!({
                    "key_id": s.key_id,
                    "role": s.role.as_str(),
                    "public_key": s.public_key,
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
            }),
        );
        root.insert(
            "log".into(),
            serde_json::json!({ "level": c.log.level.as_str(), "format": c.log.format.as_str() }),
        );
        Value::Object(root)
    }
}

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.to_value())
    }
}

/// Every config key that the environment can set, with its variable name, in file order:
/// (`hub.api_key`, `FELHOM_AGENT_HUB_API_KEY`).
pub fn env_variables() -> impl Iterator<Item = (String, String)> {
    KEYS.iter()
        .map(|k| (format!("{}.{}", k.section, k.key), env_name(k)))
}

// ---------------------------------------------------------------------------------------------
// Environment overlay

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

struct KeySpec {
    section: &'static str,
    /// Within the section; `tls.ca_file` for a nested key.
    key: &'static str,
    kind: EnvKind,
}

const fn spec(section: &'static str, key: &'static str, kind: EnvKind) -> KeySpec {
    KeySpec { section, key, kind }
}

const KEYS: &[KeySpec] = &[
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
    spec("authz", "nonce_store", EnvKind::Text),
    spec("authz", "signers", EnvKind::Json),
    spec("journal", "path", EnvKind::Text),
    spec("reconcile", "desired_state_file", EnvKind::Text),
    spec("log", "level", EnvKind::Text),
    spec("log", "format", EnvKind::Text),
];

fn env_name(k: &KeySpec) -> String {
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
fn apply_env(doc: &mut Map<String, Value>, env: &BTreeMap<String, String>, ctx: &mut Ctx) {
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

// ---------------------------------------------------------------------------------------------
// Validation

#[derive(Default)]
struct Ctx {
    problems: Vec<Problem>,
    /// Key path → the variable(s) that set it.
    sources: BTreeMap<String, String>,
}

impl Ctx {
    fn add(&mut self, key: &str, msg: impl Into<String>) {
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

fn validate(doc: &Value, mode: Mode, ctx: &mut Ctx) -> Option<Config> {
    let top = Obj::new(
        ctx,
        "",
        doc,
        &["proxmox", "hub", "authz", "journal", "reconcile", "log"],
    )?;
    let proxmox = match top.get("proxmox") {
        Some(v) => proxmox_section(ctx, v),
        None => {
            ctx.add(
                "proxmox",
                format!("missing section (required by {})", mode.who()),
            );
            None
        }
    };
    let hub = match top.get("hub") {
        Some(v) => hub_section(ctx, v).map(Some),
        None if mode.needs_hub() => {
            ctx.add(
                "hub",
                format!("missing section (required by {})", mode.who()),
            );
            None
        }
        None => Some(None),
    };
    let empty = Value::Object(Map::new());
    let authz = authz_section(ctx, top.get("authz").unwrap_or(&empty));
    let journal = journal_section(
        ctx,
        top.get("journal").unwrap_or(&empty),
        authz.as_ref().map(|a| a.nonce_store.as_path()),
    );
    let reconcile = reconcile_section(ctx, top.get("reconcile").unwrap_or(&empty));
    let log = log_section(ctx, top.get("log").unwrap_or(&empty));
    Some(Config {
        proxmox: proxmox?,
        hub: hub?,
        authz: authz?,
        journal: journal?,
        reconcile: reconcile?,
        log: log?,
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
    let api_url = o.string(ctx, "api_url", true).and_then(|s| {
        let key = o.key("api_url");
        let url = https_url(ctx, &key, s)?;
        if url.path().is_empty() {
            Some(url)
        } else {
            ctx.add(
                &key,
                format!(
                    "must be the base URL without a path (the client adds /api2/json), got {s:?}"
                ),
            );
            None
        }
    });
    let node = o.string(ctx, "node", true).and_then(|s| {
        if is_node_name(s) {
            Some(s.to_owned())
        } else {
            ctx.add(
                &o.key("node"),
                format!("expected a node name (letters, digits and inner '-'), got {s:?}"),
            );
            None
        }
    });
    let token_id = o.string(ctx, "token_id", true).and_then(|s| {
        let id = TokenId::parse(s);
        if id.is_none() {
            ctx.add(
                &o.key("token_id"),
                format!("expected user@realm!name, got {s:?}"),
            );
        }
        id
    });
    let token_secret = o.string(ctx, "token_secret", true).and_then(|s| {
        let key = o.key("token_secret");
        // PVE splits `PVEAPIToken=<id>=<secret>` on the last '=': a '=' in the secret breaks it.
        header_secret(ctx, &key, s, &['='])
    });
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
        token_id: token_id?,
        token_secret: token_secret?,
        tls: tls?,
        timeout: Duration::from_secs(timeout?),
    })
}

const TLS_EXACTLY_ONE: &str =
    "exactly one of fingerprint_sha256, ca_file, insecure_skip_verify must be set";

fn tls_setting(ctx: &mut Ctx, v: &Value) -> Option<TlsSetting> {
    let o = Obj::new(
        ctx,
        "proxmox.tls",
        v,
        &["fingerprint_sha256", "ca_file", "insecure_skip_verify"],
    )?;
    let pins = o.get("fingerprint_sha256").map(|v| {
        let key = o.key("fingerprint_sha256");
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
            return None;
        }
        let mut pins = Vec::new();
        for (k, p) in items {
            match p.as_str() {
                Some(s) => match normalize_fingerprint(s) {
                    Some(f) if !pins.contains(&f) => pins.push(f),
                    Some(_) => ctx.add(&k, "repeats an earlier fingerprint"),
                    None => ctx.add(
                        &k,
                        format!("expected 32 hex bytes separated by ':' (AB:CD:…), got {s:?}"),
                    ),
                },
                None => ctx.add(
                    &k,
                    format!("expected a fingerprint string, got {}", kind(p)),
                ),
            }
        }
        Some(pins)
    });
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
        (Some(pins), _) => Some(TlsSetting::Pinned(pins?)),
        (_, Some(ca)) => Some(TlsSetting::CaFile(ca?)),
        _ => Some(TlsSetting::InsecureSkipVerify),
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
        ],
    )?;
    let url = o
        .string(ctx, "url", true)
        .and_then(|s| https_url(ctx, &o.key("url"), s));
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
    let api_key = o
        .string(ctx, "api_key", true)
        .and_then(|s| header_secret(ctx, &o.key("api_key"), s, &[]));
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
    let ca_file = match o.get("ca_file") {
        Some(_) => Some(o.path(ctx, "ca_file", true)?),
        None => None,
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
        ca_file,
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

fn signers(ctx: &mut Ctx, list: &[Value]) -> Option<Vec<SignerConfig>> {
    let mut out = Vec::new();
    let mut ok = true;
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut keys: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    for (i, v) in list.iter().enumerate() {
        let path = format!("authz.signers[{i}]");
        let Some(o) = Obj::new(ctx, &path, v, &["key_id", "role", "public_key"]) else {
            ok = false;
            continue;
        };
        let key_id = o.string(ctx, "key_id", true).and_then(|s| {
            let key = o.key("key_id");
            if s.trim().is_empty() || s.len() > MAX_KEY_ID_LEN || s.chars().any(char::is_control) {
                ctx.add(
                    &key,
                    format!("expected 1 to {MAX_KEY_ID_LEN} characters without control characters"),
                );
                return None;
            }
            if let Some(first) = ids.insert(s.to_owned(), i) {
                ids.insert(s.to_owned(), first);
                ctx.add(
                    &key,
                    format!("{s:?} is already the key_id of authz.signers[{first}]"),
                );
                return None;
            }
            Some(s.to_owned())
        });
        let role = o.string(ctx, "role", true).and_then(|s| match s {
            "operational" => Some(SignerRole::Operational),
            "recovery" => Some(SignerRole::Recovery),
            other => {
                ctx.add(
                    &o.key("role"),
                    format!("expected \"operational\" or \"recovery\", got {other:?}"),
                );
                None
            }
        });
        let public_key = o.string(ctx, "public_key", true).and_then(|s| {
            let key = o.key("public_key");
            match check_public_key(s) {
                Ok(material) => {
                    if let Some(first) = keys.get(&material) {
                        ctx.add(
                            &key,
                            format!("the same key as authz.signers[{first}] (one key, one signer)"),
                        );
                        return None;
                    }
                    keys.insert(material, i);
                    Some(s.to_owned())
                }
                Err(msg) => {
                    ctx.add(&key, msg);
                    None
                }
            }
        });
        match (key_id, role, public_key) {
            (Some(key_id), Some(role), Some(public_key)) => out.push(SignerConfig {
                key_id,
                role,
                public_key,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(out)
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
    if nonce_store == Some(path.as_path()) {
        ctx.add(
            "journal.path",
            format!(
                "must differ from authz.nonce_store, both are {:?} (each log locks its own file)",
                path.display().to_string()
            ),
        );
        return None;
    }
    Some(JournalConfig { path })
}

fn reconcile_section(ctx: &mut Ctx, v: &Value) -> Option<ReconcileConfig> {
    let o = Obj::new(ctx, "reconcile", v, &["desired_state_file"])?;
    let desired_state_file = match o.get("desired_state_file") {
        Some(_) => Some(o.path(ctx, "desired_state_file", true)?),
        None => None,
    };
    Some(ReconcileConfig { desired_state_file })
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

// ---------------------------------------------------------------------------------------------
// Value checks

fn https_url(ctx: &mut Ctx, key: &str, s: &str) -> Option<Url> {
    match Url::parse_reason(s) {
        Ok(u) => Some(u),
        // Never repeat a URL that may carry a password.
        Err(msg) if s.contains('@') => {
            ctx.add(key, msg);
            None
        }
        Err(msg) => {
            ctx.add(key, format!("{msg}, got {s:?}"));
            None
        }
    }
}

/// A secret that goes into an HTTP header: non-empty, visible ASCII, none of `forbidden`.
/// The message never repeats the value.
fn header_secret(ctx: &mut Ctx, key: &str, s: &str, forbidden: &[char]) -> Option<Secret> {
    let msg = if s.is_empty() {
        "must not be empty".to_owned()
    } else if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "must not contain whitespace or control characters (a trailing newline?)".to_owned()
    } else if !s.is_ascii() {
        "must be ASCII (it is sent in an HTTP header)".to_owned()
    } else if let Some(c) = forbidden.iter().find(|c| s.contains(**c)) {
        format!("must not contain {c:?}")
    } else {
        return Some(Secret::new(s));
    };
    ctx.add(key, msg);
    None
}

/// An absolute path naming a file: daemons run with `/` as working directory, so a relative
/// path would silently mean something else there.
fn file_path(ctx: &mut Ctx, key: &str, s: &str) -> Option<PathBuf> {
    let p = Path::new(s);
    let msg = if !p.is_absolute() {
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

/// PVE's `pve-node` format: a DNS label.
fn is_node_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// `ab:cd:…` (32 bytes) → `AB:CD:…`; `None` if it is not that.
pub fn normalize_fingerprint(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split(':').collect();
    (parts.len() == 32
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit())))
    .then(|| s.to_ascii_uppercase())
}

/// Checks the form of an authorized_keys line (felhom-authz parses the key itself) and returns
/// the key material, to spot one key pinned twice.
fn check_public_key(line: &str) -> Result<Vec<u8>, String> {
    if line.len() > MAX_KEY_LINE_LEN {
        return Err(format!("is longer than {MAX_KEY_LINE_LEN} bytes"));
    }
    if line.contains(['\n', '\r']) {
        return Err("must be a single authorized_keys line".into());
    }
    let line = line.trim();
    if line.is_empty() {
        return Err("must not be empty".into());
    }
    if line.starts_with('#') {
        return Err("is a comment, not a key".into());
    }
    let tokens = split_options_aware(line);
    let mut options: Vec<&str> = Vec::new();
    for (i, tok) in tokens.iter().enumerate() {
        if tok.ends_with("-cert-v01@openssh.com") {
            return Err("is a certificate: pin the operator's plain public key".into());
        }
        if KEY_TYPES.contains(tok) {
            if options.iter().any(|o| {
                split_outside_quotes(o, ',')
                    .iter()
                    .any(|opt| opt.eq_ignore_ascii_case("cert-authority"))
            }) {
                return Err(
                    "is a cert-authority line: pin the operator's own key, not a CA".into(),
                );
            }
            let Some(data) = tokens.get(i + 1) else {
                return Err(format!("has no key data after {tok}"));
            };
            let blob = base64_decode(data).ok_or("has key data that is not base64")?;
            let inner = ssh_string(&blob).ok_or("has key data that is not an SSH public key")?;
            if inner != tok.as_bytes() {
                return Err(format!(
                    "says {tok} but its key data is a {} key",
                    String::from_utf8_lossy(inner)
                ));
            }
            return Ok(blob);
        }
        options.push(tok);
    }
    Err(format!(
        "has no supported key type (one of {})",
        KEY_TYPES.join(", ")
    ))
}

/// Splits an authorized_keys line on whitespace outside double quotes (options may quote
/// spaces: `from="a b"`).
fn split_options_aware(line: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let (mut start, mut quoted, mut escaped) = (None, false, false);
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if let Some(s) = start.take() {
                    tokens.push(&line[s..i]);
                }
                continue;
            }
            _ => {}
        }
        if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        tokens.push(&line[s..]);
    }
    tokens
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

/// The first SSH `string` (u32 big-endian length, bytes) of a wire blob.
fn ssh_string(blob: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    blob.get(4..4usize.checked_add(len)?)
}

/// Standard base64 with optional padding.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single leftover character (6 bits) cannot end a base64 string.
    (bits < 6).then_some(out)
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The JSON type of `v`, for "expected X, got Y"; never its value (it may be a secret).
fn kind(v: &Value) -> &'static str {
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

/// The candidate closest to `word` if it is close enough to be a likely typo.
fn nearest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    candidates
        .map(|c| {
            let lower = c.to_ascii_lowercase();
            // A truncated or extended name (`fingerprint`, `loggin`) counts as close too.
            let prefix = word.len().min(lower.len()) >= 3
                && (lower.starts_with(&word) || word.starts_with(&lower));
            let d = edit_distance(&word, &lower);
            (if prefix { d.min(1) } else { d }, c)
        })
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn parse_error(path: &Path, e: &serde_json::Error) -> ConfigError {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    ConfigError::Parse {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        msg: full.strip_suffix(&suffix).unwrap_or(&full).to_owned(),
    }
}

/// A JSON value that refuses duplicate object keys (serde_json keeps the last silently; in a
/// config, a repeated key is a mistake that would hide one of the two values).
struct StrictValue(Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_none<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(StrictValue(Value::Array(items)))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut out = Map::new();
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(StrictValue(Value::Object(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TOKEN_SECRET: &str = "5e1d8a2c-7f3b-4d6e-9a0b-c1d2e3f4a5b6";
    const API_KEY: &str = "hub-key-Zq9xW3vB7nM2kL5pR8tY";
    const FP: &str =
        "5F:40:6C:F3:29:55:81:AB:2E:20:DB:C5:DE:CB:5C:0F:37:F0:80:FB:B3:52:A2:A9:F6:4E:C7:11:80:8A:7F:23";
    const NO_ENV: [(&str, &str); 0] = [];

    /// An ed25519 authorized_keys line whose key bytes are `seed` repeated.
    fn ed25519_line(seed: u8, comment: &str) -> String {
        let mut blob = Vec::new();
        for part in [&b"ssh-ed25519"[..], &[seed; 32][..]] {
            blob.extend_from_slice(&(part.len() as u32).to_be_bytes());
            blob.extend_from_slice(part);
        }
        format!("ssh-ed25519 {} {comment}", base64_encode(&blob))
    }

    fn base64_encode(data: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn valid() -> Value {
        json!({
            "proxmox": {
                "api_url": "https://pve.example.test:8006",
                "node": "pve",
                "token_id": "felhom@pve!agent",
                "token_secret": TOKEN_SECRET,
                "tls": { "fingerprint_sha256": FP }
            },
            "hub": {
                "url": "https://hub.example.test",
                "host_id": "pve-01",
                "api_key": API_KEY
            }
        })
    }

    fn load_with(doc: &Value, env: &[(&str, &str)], mode: Mode) -> Result<Config, ConfigError> {
        let text = serde_json::to_vec(doc).unwrap();
        Config::from_json(
            &text,
            Path::new("/etc/felhom-agent/agent.json"),
            env.iter().copied(),
            mode,
        )
    }

    fn load(doc: &Value) -> Result<Config, ConfigError> {
        load_with(doc, &[], Mode::Daemon)
    }

    fn problems(doc: &Value) -> Vec<String> {
        problems_with(doc, &[], Mode::Daemon)
    }

    fn problems_with(doc: &Value, env: &[(&str, &str)], mode: Mode) -> Vec<String> {
        match load_with(doc, env, mode) {
            Err(ConfigError::Invalid(p)) => {
                let all: Vec<String> = p.iter().map(ToString::to_string).collect();
                for line in &all {
                    assert!(
                        !line.contains(TOKEN_SECRET) && !line.contains(API_KEY),
                        "{line}"
                    );
                }
                all
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    /// `valid()` with `pointer` (JSON pointer) set to `value`.
    fn with(pointer: &str, value: Value) -> Value {
        let mut doc = valid();
        set(&mut doc, pointer, value);
        doc
    }

    fn set(doc: &mut Value, pointer: &str, value: Value) {
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let target = doc.pointer_mut(parent).unwrap().as_object_mut().unwrap();
        target.insert(key.to_owned(), value);
    }

    fn without(pointer: &str) -> Value {
        let mut doc = valid();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        doc.pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .remove(key);
        doc
    }

    fn workspace_file(rel: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(rel)
    }

    // --- the happy path and defaults --------------------------------------------------------

    #[test]
    fn a_minimal_config_gets_every_default() {
        let c = load(&valid()).unwrap();
        assert_eq!(c.proxmox.api_url.host(), "pve.example.test");
        assert_eq!(c.proxmox.api_url.port(), 8006);
        assert_eq!(c.proxmox.node, "pve");
        assert_eq!(c.proxmox.token_id.as_str(), "felhom@pve!agent");
        assert_eq!(c.proxmox.token_secret.expose(), TOKEN_SECRET);
        assert_eq!(c.proxmox.tls, TlsSetting::Pinned(vec![FP.to_owned()]));
        assert_eq!(c.proxmox.timeout, Duration::from_secs(30));
        let hub = c.hub.as_ref().unwrap();
        assert_eq!(hub.url.to_string(), "https://hub.example.test");
        assert_eq!(hub.url.port(), 443);
        assert_eq!(hub.host_id, "pve-01");
        assert_eq!(hub.api_key.expose(), API_KEY);
        assert_eq!(hub.poll_interval, Duration::from_secs(60));
        assert_eq!(hub.timeout, Duration::from_secs(30));
        assert_eq!(hub.ca_file, None);
        assert_eq!(c.authz.nonce_store, Path::new(DEFAULT_NONCE_STORE));
        assert!(c.authz.signers.is_empty());
        assert_eq!(
            c.journal.path,
            Path::new("/var/lib/felhom-agent/journal.log")
        );
        assert_eq!(c.reconcile.desired_state_file, None);
        assert_eq!(c.log.level, LogLevel::Info);
        assert_eq!(c.log.format, LogFormat::Text);
    }

    #[test]
    fn every_key_set_explicitly() {
        let mut doc = valid();
        set(&mut doc, "/proxmox/timeout_seconds", json!(600));
        set(&mut doc, "/hub/poll_seconds", json!(3600));
        set(&mut doc, "/hub/timeout_seconds", json!(1));
        set(
            &mut doc,
            "/hub/ca_file",
            json!("/etc/felhom-agent/hub-ca.pem"),
        );
        set(
            &mut doc,
            "/hub/url",
            json!("https://hub.example.test:8443/felhom/"),
        );
        doc["authz"] = json!({
            "nonce_store": "/srv/felhom/nonces.log",
            "signers": [
                {"key_id": "ops-anna", "role": "operational", "public_key": ed25519_line(1, "anna")},
                {"key_id": "break-glass", "role": "recovery", "public_key": ed25519_line(2, "vault")}
            ]
        });
        doc["reconcile"] = json!({"desired_state_file": "/etc/felhom-agent/desired.json"});
        doc["log"] = json!({"level": "DEBUG", "format": "json"});
        let c = load(&doc).unwrap();
        assert_eq!(c.proxmox.timeout, Duration::from_secs(600));
        let hub = c.hub.unwrap();
        assert_eq!(hub.poll_interval, Duration::from_secs(3600));
        assert_eq!(hub.timeout, Duration::from_secs(1));
        assert_eq!(
            hub.ca_file.as_deref(),
            Some(Path::new("/etc/felhom-agent/hub-ca.pem"))
        );
        assert_eq!(hub.url.path(), "/felhom");
        assert_eq!(
            hub.url.join(felhom_hub_proto::HOST_REPORT_PATH),
            "https://hub.example.test:8443/felhom/api/v1/host-report"
        );
        assert_eq!(c.authz.nonce_store, Path::new("/srv/felhom/nonces.log"));
        // The journal follows a moved nonce store.
        assert_eq!(c.journal.path, Path::new("/srv/felhom/journal.log"));
        assert_eq!(c.authz.signers.len(), 2);
        assert_eq!(c.authz.signers[0].key_id, "ops-anna");
        assert_eq!(c.authz.signers[0].role, SignerRole::Operational);
        assert_eq!(c.authz.signers[0].public_key, ed25519_line(1, "anna"));
        assert_eq!(c.authz.signers[1].role, SignerRole::Recovery);
        assert_eq!(
            c.reconcile.desired_state_file.as_deref(),
            Some(Path::new("/etc/felhom-agent/desired.json"))
        );
        assert_eq!(c.log.level, LogLevel::Debug);
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn null_means_absent() {
        let mut doc = valid();
        set(&mut doc, "/hub/poll_seconds", Value::Null);
        set(&mut doc, "/hub/ca_file", Value::Null);
        doc["authz"] = Value::Null;
        doc["log"] = json!({"level": null});
        let c = load(&doc).unwrap();
        assert_eq!(c.hub.unwrap().poll_interval, Duration::from_secs(60));
        assert_eq!(c.authz.nonce_store, Path::new(DEFAULT_NONCE_STORE));
        assert_eq!(c.log.level, LogLevel::Info);
    }

    #[test]
    fn the_example_config_loads_for_every_mode() {
        let path = workspace_file("configs/agent.example.json");
        for mode in [Mode::Daemon, Mode::SelftestProxmox, Mode::SelftestHub] {
            let c = Config::load(&path, NO_ENV, mode).unwrap();
            assert_eq!(c.proxmox.node, "pve");
            assert!(c.hub.is_some());
            assert_eq!(c.authz.signers.len(), 2);
            assert_eq!(
                c.journal.path,
                Path::new("/var/lib/felhom-agent/journal.log")
            );
        }
    }

    #[test]
    fn the_example_config_shows_every_key_but_the_other_tls_modes() {
        let text = std::fs::read_to_string(workspace_file("configs/agent.example.json")).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        for (key, _) in env_variables() {
            if key == "proxmox.tls.ca_file" || key == "proxmox.tls.insecure_skip_verify" {
                continue;
            }
            let pointer = format!("/{}", key.replace('.', "/"));
            assert!(doc.pointer(&pointer).is_some(), "example lacks {key}");
        }
    }

    #[test]
    fn the_readme_documents_every_key_and_variable() {
        let readme = std::fs::read_to_string(workspace_file("configs/README.md")).unwrap();
        for (key, var) in env_variables() {
            assert!(readme.contains(&format!("`{key}`")), "README lacks `{key}`");
            assert!(readme.contains(&format!("`{var}`")), "README lacks `{var}`");
        }
    }

    // --- every validation rule ---------------------------------------------------------------

    #[test]
    fn poll_seconds_is_bounded() {
        assert_eq!(
            problems(&with("/hub/poll_seconds", json!(5))),
            ["hub.poll_seconds: must be between 60 and 3600, got 5"]
        );
        assert_eq!(
            problems(&with("/hub/poll_seconds", json!(3601))),
            ["hub.poll_seconds: must be between 60 and 3600, got 3601"]
        );
        assert_eq!(
            problems(&with("/hub/poll_seconds", json!("60"))),
            ["hub.poll_seconds: expected a whole number, got a string"]
        );
        assert_eq!(
            problems(&with("/hub/poll_seconds", json!(-60))),
            ["hub.poll_seconds: expected a whole number, got a negative number"]
        );
        assert_eq!(
            problems(&with("/hub/poll_seconds", json!(60.5))),
            ["hub.poll_seconds: expected a whole number, got a fractional number"]
        );
    }

    #[test]
    fn timeouts_are_bounded_and_the_hub_timeout_is_below_the_poll() {
        assert_eq!(
            problems(&with("/proxmox/timeout_seconds", json!(0))),
            ["proxmox.timeout_seconds: must be between 1 and 600, got 0"]
        );
        assert_eq!(
            problems(&with("/hub/timeout_seconds", json!(301))),
            ["hub.timeout_seconds: must be between 1 and 300, got 301"]
        );
        assert_eq!(
            problems(&with("/hub/timeout_seconds", json!(60))),
            ["hub.timeout_seconds: must be less than hub.poll_seconds (60), got 60"]
        );
        let mut doc = with("/hub/timeout_seconds", json!(120));
        set(&mut doc, "/hub/poll_seconds", json!(300));
        assert_eq!(
            load(&doc).unwrap().hub.unwrap().timeout,
            Duration::from_secs(120)
        );
    }

    #[test]
    fn exactly_one_tls_mode() {
        let msg = "proxmox.tls: exactly one of fingerprint_sha256, ca_file, insecure_skip_verify must be set";
        assert_eq!(problems(&without("/proxmox/tls")), [msg]);
        assert_eq!(problems(&with("/proxmox/tls", json!({}))), [msg]);
        assert_eq!(
            problems(&with(
                "/proxmox/tls",
                json!({"fingerprint_sha256": FP, "ca_file": "/etc/pve/pve-root-ca.pem"})
            )),
            [msg]
        );
        assert_eq!(
            problems(&with(
                "/proxmox/tls",
                json!({"fingerprint_sha256": FP, "insecure_skip_verify": true})
            )),
            [msg]
        );
        assert_eq!(
            problems(&with(
                "/proxmox/tls",
                json!({"insecure_skip_verify": false})
            )),
            [format!(
                "{msg} (insecure_skip_verify: false does not choose a mode)"
            )]
        );
        assert_eq!(
            problems(&with(
                "/proxmox/tls",
                json!({"insecure_skip_verify": "yes"})
            )),
            ["proxmox.tls.insecure_skip_verify: expected true or false, got a string"]
        );
        assert_eq!(
            problems(&with("/proxmox/tls", json!("pinned"))),
            ["proxmox.tls: expected an object, got a string"]
        );
    }

    #[test]
    fn each_tls_mode_is_typed() {
        let tls = |t: Value| load(&with("/proxmox/tls", t)).unwrap().proxmox.tls;
        assert_eq!(
            tls(json!({"ca_file": "/etc/pve/pve-root-ca.pem"})),
            TlsSetting::CaFile(PathBuf::from("/etc/pve/pve-root-ca.pem"))
        );
        assert_eq!(
            tls(json!({"insecure_skip_verify": true})),
            TlsSetting::InsecureSkipVerify
        );
        // insecure_skip_verify: false beside another mode is allowed: it chooses nothing.
        assert_eq!(
            tls(json!({"ca_file": "/ca.pem", "insecure_skip_verify": false})),
            TlsSetting::CaFile(PathBuf::from("/ca.pem"))
        );
        let lower = FP.to_ascii_lowercase();
        let other = FP.replace("5F", "6A");
        assert_eq!(
            tls(json!({"fingerprint_sha256": [lower, other]})),
            TlsSetting::Pinned(vec![FP.to_owned(), other.clone()])
        );
    }

    #[test]
    fn fingerprints_are_syntax_checked() {
        let short = &FP[..FP.len() - 3];
        assert_eq!(
            problems(&with("/proxmox/tls", json!({"fingerprint_sha256": short}))),
            [format!(
                "proxmox.tls.fingerprint_sha256: expected 32 hex bytes separated by ':' (AB:CD:…), got {short:?}"
            )]
        );
        let no_colons = FP.replace(':', "");
        assert_eq!(
            problems(&with(
                "/proxmox/tls",
                json!({"fingerprint_sha256": [FP, no_colons, 7, FP.to_ascii_lowercase()]})
            )),
            [
                format!(
                    "proxmox.tls.fingerprint_sha256[1]: expected 32 hex bytes separated by ':' (AB:CD:…), got {no_colons:?}"
                ),
                "proxmox.tls.fingerprint_sha256[2]: expected a fingerprint string, got a whole number".to_owned(),
                "proxmox.tls.fingerprint_sha256[3]: repeats an earlier fingerprint".to_owned(),
            ]
        );
        assert_eq!(
            problems(&with("/proxmox/tls", json!({"fingerprint_sha256": []}))),
            ["proxmox.tls.fingerprint_sha256: must list at least one fingerprint"]
        );
        let bad_hex = FP.replace("5F", "5G");
        assert_eq!(normalize_fingerprint(&bad_hex), None);
    }

    #[test]
    fn token_id_is_user_at_realm_bang_name() {
        assert_eq!(
            problems(&with("/proxmox/token_id", json!("root"))),
            ["proxmox.token_id: expected user@realm!name, got \"root\""]
        );
        for bad in [
            "root@pam",
            "root@pam!",
            "root@pam!a",
            "root@pam!1token",
            "@pam!agent",
            "root@!agent",
            "root@p!agent",
            "ro ot@pam!agent",
            "root@pam!agent!x",
            "root@pa m!agent",
        ] {
            assert_eq!(
                problems(&with("/proxmox/token_id", json!(bad))),
                [format!(
                    "proxmox.token_id: expected user@realm!name, got {bad:?}"
                )]
            );
        }
        let id = TokenId::parse("first.last@example.com@pve!terraform-1").unwrap();
        assert_eq!(id.user(), "first.last@example.com");
        assert_eq!(id.realm(), "pve");
        assert_eq!(id.userid(), "first.last@example.com@pve");
        assert_eq!(id.name(), "terraform-1");
        assert_eq!(id.to_string(), "first.last@example.com@pve!terraform-1");
    }

    #[test]
    fn api_url_must_be_a_bare_https_base() {
        assert_eq!(
            problems(&with("/proxmox/api_url", json!("http://pve:8006"))),
            ["proxmox.api_url: must be an https:// URL, got \"http://pve:8006\""]
        );
        assert_eq!(
            problems(&with("/proxmox/api_url", json!("pve:8006"))),
            ["proxmox.api_url: must be an https:// URL, got \"pve:8006\""]
        );
        assert_eq!(
            problems(&with("/proxmox/api_url", json!("https://pve:8006/api2/json"))),
            ["proxmox.api_url: must be the base URL without a path (the client adds /api2/json), got \"https://pve:8006/api2/json\""]
        );
        for (url, msg) in [
            ("https://:8006", "has no host"),
            ("https://pve:0", "has an invalid port (1 to 65535)"),
            ("https://pve:65536", "has an invalid port (1 to 65535)"),
            ("https://pve:+80", "has an invalid port (1 to 65535)"),
            ("https://pve?x=1", "must not have a query or fragment"),
            ("https://pve/#top", "must not have a query or fragment"),
            ("https://pv e", "has an invalid host name"),
            ("https://pve..lan", "has an invalid host name"),
            ("https://[::1", "has an unclosed '[' in the host"),
            ("https://[zz]", "has an invalid IPv6 address"),
            (
                "https://[::1]8006",
                "has something after the IPv6 address that is not a port",
            ),
        ] {
            assert_eq!(
                problems(&with("/proxmox/api_url", json!(url))),
                [format!("proxmox.api_url: {msg}, got {url:?}")]
            );
        }
        // A trailing slash is not a path.
        let c = load(&with(
            "/proxmox/api_url",
            json!("HTTPS://PVE.Example.Test:8006/"),
        ))
        .unwrap();
        assert_eq!(
            c.proxmox.api_url.to_string(),
            "https://pve.example.test:8006"
        );
    }

    #[test]
    fn urls_never_repeat_credentials() {
        let p = problems(&with(
            "/hub/url",
            json!("https://user:pa55word@hub.example.test"),
        ));
        assert_eq!(
            p,
            ["hub.url: must not contain credentials (user@ or user:password@)"]
        );
    }

    #[test]
    fn url_parse_is_public_and_never_repeats_the_input() {
        let err = "https://u:hunter2@hub".parse::<Url>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid url: must not contain credentials (user@ or user:password@)"
        );
        assert!(!format!("{err:?}").contains("hunter2"));
        assert_eq!(
            Url::parse("ftp://x").unwrap_err().reason,
            "must be an https:// URL"
        );
        assert_eq!(
            Url::parse("https://hub").unwrap().to_string(),
            "https://hub"
        );
    }

    #[test]
    fn url_parts() {
        let u = Url::parse_reason("https://[fd00::1]:8006").unwrap();
        assert_eq!(u.scheme(), "https");
        assert_eq!(u.host(), "fd00::1");
        assert_eq!(u.port(), 8006);
        assert_eq!(u.authority(), "[fd00::1]:8006");
        assert_eq!(u.to_string(), "https://[fd00::1]:8006");
        let u = Url::parse_reason("https://[fd00::1]/x").unwrap();
        assert_eq!((u.port(), u.path()), (443, "/x"));
        assert_eq!(u.to_string(), "https://[fd00::1]/x");
        let u = Url::parse_reason("https://192.0.2.10:8006").unwrap();
        assert_eq!(u.authority(), "192.0.2.10:8006");
    }

    #[test]
    fn node_is_a_dns_label() {
        for bad in ["", "-pve", "pve-", "pve.lan", "pve_1", &"a".repeat(64)] {
            let p = problems(&with("/proxmox/node", json!(bad)));
            assert_eq!(
                p,
                [format!(
                    "proxmox.node: expected a node name (letters, digits and inner '-'), got {bad:?}"
                )]
            );
        }
        assert_eq!(
            load(&with("/proxmox/node", json!("pve-02")))
                .unwrap()
                .proxmox
                .node,
            "pve-02"
        );
    }

    #[test]
    fn secrets_must_be_header_safe_and_are_never_repeated() {
        let cases = [
            ("", "must not be empty"),
            (
                "5e1d8a2c-7f3b-4d6e-9a0b-c1d2e3f4a5b6\n",
                "must not contain whitespace or control characters (a trailing newline?)",
            ),
            (
                "5e1d8a2c 7f3b",
                "must not contain whitespace or control characters (a trailing newline?)",
            ),
            (
                "5e1d8a2c-ünïcode",
                "must be ASCII (it is sent in an HTTP header)",
            ),
        ];
        for (secret, msg) in cases {
            assert_eq!(
                problems(&with("/proxmox/token_secret", json!(secret))),
                [format!("proxmox.token_secret: {msg}")]
            );
            assert_eq!(
                problems(&with("/hub/api_key", json!(secret))),
                [format!("hub.api_key: {msg}")]
            );
        }
        assert_eq!(
            problems(&with("/proxmox/token_secret", json!("abc=def"))),
            ["proxmox.token_secret: must not contain '='"]
        );
        // '=' is fine in a Bearer key.
        assert!(load(&with("/hub/api_key", json!("abc=="))).is_ok());
        assert_eq!(
            problems(&with("/hub/api_key", json!(12345))),
            ["hub.api_key: expected a string, got a whole number"]
        );
    }

    #[test]
    fn host_id_is_checked() {
        for bad in ["", "pve 01", "pve/01", &"a".repeat(65)] {
            assert_eq!(
                problems(&with("/hub/host_id", json!(bad))),
                [format!(
                    "hub.host_id: expected 1 to 64 letters, digits, '.', '_' or '-', got {bad:?}"
                )]
            );
        }
    }

    #[test]
    fn paths_are_absolute_and_name_files() {
        assert_eq!(
            problems(&with("/hub/ca_file", json!("hub-ca.pem"))),
            ["hub.ca_file: must be an absolute path, got \"hub-ca.pem\""]
        );
        assert_eq!(
            problems(&with("/proxmox/tls", json!({"ca_file": "/etc/pve/"}))),
            ["proxmox.tls.ca_file: must name a file, not a directory, got \"/etc/pve/\""]
        );
        let mut doc = valid();
        doc["authz"] = json!({"nonce_store": "/"});
        doc["journal"] = json!({"path": "var/journal.log"});
        doc["reconcile"] = json!({"desired_state_file": "/etc/.."});
        assert_eq!(
            problems(&doc),
            [
                "authz.nonce_store: must name a file, not a directory, got \"/\"",
                "journal.path: must be an absolute path, got \"var/journal.log\"",
                "reconcile.desired_state_file: must name a file, not a directory, got \"/etc/..\"",
            ]
        );
    }

    #[test]
    fn the_journal_and_the_nonce_store_are_different_files() {
        let mut doc = valid();
        doc["authz"] = json!({"nonce_store": "/srv/f/log"});
        doc["journal"] = json!({"path": "/srv/f/log"});
        assert_eq!(
            problems(&doc),
            ["journal.path: must differ from authz.nonce_store, both are \"/srv/f/log\" (each log locks its own file)"]
        );
        let mut doc = valid();
        doc["authz"] = json!({"nonce_store": "/srv/f/journal.log"});
        assert_eq!(
            problems(&doc),
            ["journal.path: must differ from authz.nonce_store, both are \"/srv/f/journal.log\" (each log locks its own file)"]
        );
    }

    #[test]
    fn log_level_and_format() {
        let mut doc = valid();
        doc["log"] = json!({"level": "verbose", "format": "xml"});
        assert_eq!(
            problems(&doc),
            [
                "log.level: expected error, warn, info, debug or trace, got \"verbose\"",
                "log.format: expected text or json, got \"xml\"",
            ]
        );
        doc["log"] = json!({"level": 3});
        assert_eq!(
            problems(&doc),
            ["log.level: expected a string, got a whole number"]
        );
        for (s, level) in [
            ("error", LogLevel::Error),
            ("Warn", LogLevel::Warn),
            ("trace", LogLevel::Trace),
        ] {
            doc["log"] = json!({ "level": s });
            let c = load(&doc).unwrap();
            assert_eq!(c.log.level, level);
            assert_eq!(c.log.level.as_str(), s.to_ascii_lowercase());
        }
    }

    #[test]
    fn signers_are_checked_for_form() {
        let key = |seed| ed25519_line(seed, "x");
        let mut blob_rsa = Vec::new();
        for part in [&b"ssh-rsa"[..], &[1u8; 8][..]] {
            blob_rsa.extend_from_slice(&(part.len() as u32).to_be_bytes());
            blob_rsa.extend_from_slice(part);
        }
        let mismatched = format!("ssh-ed25519 {}", base64_encode(&blob_rsa));
        let mut doc = valid();
        doc["authz"] = json!({"signers": [
            {"key_id": "ops-anna", "role": "operational", "public_key": key(1)},
            {"key_id": "ops-anna", "role": "admin", "public_key": key(1)},
            {"key_id": "", "role": "recovery", "public_key": "# a comment"},
            {"key_id": "c", "role": "recovery", "public_key": "ssh-ed25519-cert-v01@openssh.com AAAA x"},
            {"key_id": "d", "role": "recovery", "public_key": format!("cert-authority,from=\"a b\" {}", key(4))},
            {"key_id": "e", "role": "recovery", "public_key": "ssh-dss AAAAB3NzaC1kc3M= x"},
            {"key_id": "f", "role": "recovery", "public_key": "ssh-ed25519"},
            {"key_id": "g", "role": "recovery", "public_key": "ssh-ed25519 not*base64"},
            {"key_id": "h", "role": "recovery", "public_key": mismatched},
            {"key_id": "i", "role": "recovery", "public_key": format!("{}\n{}", key(5), key(6))},
            {"key_id": "j", "role": "recovery", "public_key": "ssh-ed25519 AAAA"},
            {"key_id": "k", "role": "recovery", "public_key": key(7), "comment": "x"},
            {"key_id": "l\u{7}", "role": "recovery"},
            "ssh-ed25519 AAAA"
        ]});
        assert_eq!(
            problems(&doc),
            [
                "authz.signers[1].key_id: \"ops-anna\" is already the key_id of authz.signers[0]",
                "authz.signers[1].role: expected \"operational\" or \"recovery\", got \"admin\"",
                "authz.signers[1].public_key: the same key as authz.signers[0] (one key, one signer)",
                "authz.signers[2].key_id: expected 1 to 128 characters without control characters",
                "authz.signers[2].public_key: is a comment, not a key",
                "authz.signers[3].public_key: is a certificate: pin the operator's plain public key",
                "authz.signers[4].public_key: is a cert-authority line: pin the operator's own key, not a CA",
                "authz.signers[5].public_key: has no supported key type (one of ssh-ed25519, sk-ssh-ed25519@openssh.com, ssh-rsa, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521)",
                "authz.signers[6].public_key: has no key data after ssh-ed25519",
                "authz.signers[7].public_key: has key data that is not base64",
                "authz.signers[8].public_key: says ssh-ed25519 but its key data is a ssh-rsa key",
                "authz.signers[9].public_key: must be a single authorized_keys line",
                "authz.signers[10].public_key: has key data that is not an SSH public key",
                "authz.signers[11].comment: unknown key",
                "authz.signers[12].key_id: expected 1 to 128 characters without control characters",
                "authz.signers[12].public_key: required, not set",
                "authz.signers[13]: expected an object, got a string",
            ]
        );
        doc["authz"] = json!({"signers": {"key_id": "x"}});
        assert_eq!(
            problems(&doc),
            ["authz.signers: expected an array of signers, got an object"]
        );
    }

    #[test]
    fn signer_lines_with_quoted_options_are_accepted_as_written() {
        let line = format!(
            "from=\"10.0.0.1,host a\",command=\"echo \\\"hi there\\\"\",no-pty {} anna@laptop",
            ed25519_line(9, "").trim_end()
        );
        let mut doc = valid();
        doc["authz"] =
            json!({"signers": [{"key_id": "a", "role": "operational", "public_key": line}]});
        let c = load(&doc).unwrap();
        assert_eq!(c.authz.signers[0].public_key, line);
    }

    #[test]
    fn unknown_keys_are_named_with_their_path() {
        let mut doc = valid();
        set(&mut doc, "/hub/poll_second", json!(60));
        set(&mut doc, "/proxmox/tls/fingerprint", json!(FP));
        doc["loggin"] = json!({});
        doc["log"] = json!({"lvl": "info", "colour": true});
        assert_eq!(
            problems(&doc),
            [
                "loggin: unknown key (did you mean log?)",
                "proxmox.tls.fingerprint: unknown key (did you mean fingerprint_sha256?)",
                "hub.poll_second: unknown key (did you mean poll_seconds?)",
                "log.colour: unknown key",
                "log.lvl: unknown key (did you mean level?)",
            ]
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_in_file_order() {
        let mut doc = valid();
        set(&mut doc, "/proxmox/api_url", json!("http://pve"));
        set(&mut doc, "/proxmox/token_id", json!("root"));
        set(&mut doc, "/proxmox/token_secret", json!(""));
        set(&mut doc, "/proxmox/tls", json!({}));
        set(&mut doc, "/hub/poll_seconds", json!(5));
        set(&mut doc, "/hub/host_id", json!(1));
        doc["log"] = json!({"format": "yaml"});
        let err = load(&doc).unwrap_err();
        let text = err.to_string();
        assert_eq!(
            text,
            "invalid config (7 problems):\n\
             \x20 proxmox.api_url: must be an https:// URL, got \"http://pve\"\n\
             \x20 proxmox.token_id: expected user@realm!name, got \"root\"\n\
             \x20 proxmox.token_secret: must not be empty\n\
             \x20 proxmox.tls: exactly one of fingerprint_sha256, ca_file, insecure_skip_verify must be set\n\
             \x20 hub.host_id: expected a string, got a whole number\n\
             \x20 hub.poll_seconds: must be between 60 and 3600, got 5\n\
             \x20 log.format: expected text or json, got \"yaml\""
        );
        let ConfigError::Invalid(p) = err else {
            unreachable!()
        };
        assert_eq!(p[0].key, "proxmox.api_url");
    }

    #[test]
    fn required_keys_are_named() {
        let doc = json!({"proxmox": {}, "hub": {}});
        assert_eq!(
            problems(&doc),
            [
                "proxmox.api_url: required, not set",
                "proxmox.node: required, not set",
                "proxmox.token_id: required, not set",
                "proxmox.token_secret: required, not set",
                "proxmox.tls: exactly one of fingerprint_sha256, ca_file, insecure_skip_verify must be set",
                "hub.url: required, not set",
                "hub.host_id: required, not set",
                "hub.api_key: required, not set",
            ]
        );
    }

    #[test]
    fn the_root_must_be_an_object() {
        let err =
            Config::from_json(b"[1]", Path::new("/c.json"), NO_ENV, Mode::Daemon).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid config (1 problem):\n  (root): expected an object, got an array"
        );
    }

    // --- mode-awareness ----------------------------------------------------------------------

    #[test]
    fn the_hub_section_is_required_by_mode() {
        let doc = without("/hub");
        assert_eq!(
            problems_with(&doc, &[], Mode::Daemon),
            ["hub: missing section (required by the daemon)"]
        );
        assert_eq!(
            problems_with(&doc, &[], Mode::SelftestHub),
            ["hub: missing section (required by the hub self-test)"]
        );
        let c = load_with(&doc, &[], Mode::SelftestProxmox).unwrap();
        assert!(c.hub.is_none());
        // Present, it is validated in every mode.
        let bad_hub = with("/hub/poll_seconds", json!(1));
        assert_eq!(
            problems_with(&bad_hub, &[], Mode::SelftestProxmox),
            ["hub.poll_seconds: must be between 60 and 3600, got 1"]
        );
        assert!(load_with(&valid(), &[], Mode::SelftestProxmox)
            .unwrap()
            .hub
            .is_some());
    }

    #[test]
    fn the_proxmox_section_is_required_in_every_mode() {
        let doc = without("/proxmox");
        for (mode, who) in [
            (Mode::Daemon, "the daemon"),
            (Mode::SelftestProxmox, "the proxmox self-tests"),
            (Mode::SelftestHub, "the hub self-test"),
        ] {
            assert_eq!(
                problems_with(&doc, &[], mode),
                [format!("proxmox: missing section (required by {who})")]
            );
        }
    }

    // --- environment overlay -----------------------------------------------------------------

    #[test]
    fn env_wins_over_the_file() {
        let env = [
            ("FELHOM_AGENT_HUB_API_KEY", "from-env-key"),
            ("FELHOM_AGENT_PROXMOX_TOKEN_SECRET", "from-env-secret"),
            ("FELHOM_AGENT_HUB_POLL_SECONDS", " 120 "),
            ("FELHOM_AGENT_LOG_LEVEL", "debug"),
            ("FELHOM_AGENT_PROXMOX_TIMEOUT_SECONDS", "10"),
            ("FELHOM_AGENT_AUTHZ_NONCE_STORE", "/srv/n.log"),
            ("FELHOM_AGENT_RECONCILE_DESIRED_STATE_FILE", "/etc/d.json"),
            ("PATH", "/usr/bin"),
            (
                "felhom_agent_hub_url",
                "ignored: lowercase is another variable",
            ),
        ];
        let c = load_with(&valid(), &env, Mode::Daemon).unwrap();
        let hub = c.hub.unwrap();
        assert_eq!(hub.api_key.expose(), "from-env-key");
        assert_eq!(c.proxmox.token_secret.expose(), "from-env-secret");
        assert_eq!(hub.poll_interval, Duration::from_secs(120));
        assert_eq!(c.log.level, LogLevel::Debug);
        assert_eq!(c.proxmox.timeout, Duration::from_secs(10));
        assert_eq!(c.journal.path, Path::new("/srv/journal.log"));
        assert_eq!(
            c.reconcile.desired_state_file.as_deref(),
            Some(Path::new("/etc/d.json"))
        );
    }

    #[test]
    fn env_alone_can_supply_a_section_and_secrets() {
        let mut doc = valid();
        set(&mut doc, "/proxmox/token_secret", Value::Null);
        doc.as_object_mut().unwrap().remove("hub");
        let env = [
            ("FELHOM_AGENT_PROXMOX_TOKEN_SECRET", TOKEN_SECRET),
            ("FELHOM_AGENT_HUB_URL", "https://hub.example.test"),
            ("FELHOM_AGENT_HUB_HOST_ID", "pve-09"),
            ("FELHOM_AGENT_HUB_API_KEY", API_KEY),
        ];
        let c = load_with(&doc, &env, Mode::Daemon).unwrap();
        assert_eq!(c.hub.unwrap().host_id, "pve-09");
        assert_eq!(c.proxmox.token_secret.expose(), TOKEN_SECRET);
    }

    #[test]
    fn env_tls_replaces_the_file_tls_choice() {
        let doc = with(
            "/proxmox/tls",
            json!({"ca_file": "/etc/pve/pve-root-ca.pem"}),
        );
        let other = FP.replace("5F", "6A");
        let pins = format!("{FP}, {}", other.to_ascii_lowercase());
        let env = [("FELHOM_AGENT_PROXMOX_TLS_FINGERPRINT_SHA256", pins.as_str())];
        let c = load_with(&doc, &env, Mode::Daemon).unwrap();
        assert_eq!(
            c.proxmox.tls,
            TlsSetting::Pinned(vec![FP.to_owned(), other])
        );

        let env = [("FELHOM_AGENT_PROXMOX_TLS_INSECURE_SKIP_VERIFY", "true")];
        let c = load_with(&doc, &env, Mode::Daemon).unwrap();
        assert_eq!(c.proxmox.tls, TlsSetting::InsecureSkipVerify);

        let env = [
            ("FELHOM_AGENT_PROXMOX_TLS_INSECURE_SKIP_VERIFY", "1"),
            ("FELHOM_AGENT_PROXMOX_TLS_CA_FILE", "/ca.pem"),
        ];
        assert_eq!(
            problems_with(&doc, &env, Mode::Daemon),
            ["proxmox.tls: exactly one of fingerprint_sha256, ca_file, insecure_skip_verify must be set \
              (set by FELHOM_AGENT_PROXMOX_TLS_CA_FILE, FELHOM_AGENT_PROXMOX_TLS_INSECURE_SKIP_VERIFY)"]
        );
        let env = [("FELHOM_AGENT_PROXMOX_TLS_FINGERPRINT_SHA256", "AB:CD")];
        assert_eq!(
            problems_with(&doc, &env, Mode::Daemon),
            ["proxmox.tls.fingerprint_sha256[0]: expected 32 hex bytes separated by ':' (AB:CD:…), got \"AB:CD\" \
              (set by FELHOM_AGENT_PROXMOX_TLS_FINGERPRINT_SHA256)"]
        );
    }

    #[test]
    fn env_signers_are_json() {
        let signers =
            json!([{"key_id": "a", "role": "recovery", "public_key": ed25519_line(3, "a")}])
                .to_string();
        let env = [("FELHOM_AGENT_AUTHZ_SIGNERS", signers.as_str())];
        let c = load_with(&valid(), &env, Mode::Daemon).unwrap();
        assert_eq!(c.authz.signers[0].role, SignerRole::Recovery);

        let env = [(
            "FELHOM_AGENT_AUTHZ_SIGNERS",
            r#"[{"key_id": "a", "role": "root"}]"#,
        )];
        assert_eq!(
            problems_with(&valid(), &env, Mode::Daemon),
            [
                "authz.signers[0].role: expected \"operational\" or \"recovery\", got \"root\" (set by FELHOM_AGENT_AUTHZ_SIGNERS)",
                "authz.signers[0].public_key: required, not set (set by FELHOM_AGENT_AUTHZ_SIGNERS)",
            ]
        );
        let env = [("FELHOM_AGENT_AUTHZ_SIGNERS", "[{")];
        let p = problems_with(&valid(), &env, Mode::Daemon);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("FELHOM_AGENT_AUTHZ_SIGNERS: expected JSON (an array of signers): "),
            "{p:?}"
        );
    }

    #[test]
    fn env_values_are_typed_and_errors_name_the_variable() {
        let env = [
            ("FELHOM_AGENT_HUB_POLL_SECONDS", "soon"),
            (
                "FELHOM_AGENT_PROXMOX_TLS_INSECURE_SKIP_VERIFY",
                "yes please",
            ),
            ("FELHOM_AGENT_HUB_TIMEOUT_SECONDS", "-1"),
        ];
        assert_eq!(
            problems_with(&valid(), &env, Mode::Daemon),
            [
                "FELHOM_AGENT_HUB_POLL_SECONDS: expected a whole number, got \"soon\"",
                "FELHOM_AGENT_HUB_TIMEOUT_SECONDS: expected a whole number, got \"-1\"",
                "FELHOM_AGENT_PROXMOX_TLS_INSECURE_SKIP_VERIFY: expected true or false, got \"yes please\"",
            ]
        );
        // A well-typed but invalid value names the key and the variable that set it.
        let env = [("FELHOM_AGENT_HUB_POLL_SECONDS", "5")];
        assert_eq!(
            problems_with(&valid(), &env, Mode::Daemon),
            ["hub.poll_seconds: must be between 60 and 3600, got 5 (set by FELHOM_AGENT_HUB_POLL_SECONDS)"]
        );
    }

    #[test]
    fn unknown_variables_are_reported_with_a_suggestion_and_without_their_value() {
        let env = [
            ("FELHOM_AGENT_HUB_APIKEY", API_KEY),
            ("FELHOM_AGENT_PROXMOX_TOKEN_SECERT", TOKEN_SECRET),
            ("FELHOM_AGENT_SOMETHING_ELSE", "x"),
        ];
        assert_eq!(
            problems_with(&valid(), &env, Mode::Daemon),
            [
                "FELHOM_AGENT_HUB_APIKEY: unknown variable (did you mean FELHOM_AGENT_HUB_API_KEY?); configs/README.md lists them",
                "FELHOM_AGENT_PROXMOX_TOKEN_SECERT: unknown variable (did you mean FELHOM_AGENT_PROXMOX_TOKEN_SECRET?); configs/README.md lists them",
                "FELHOM_AGENT_SOMETHING_ELSE: unknown variable; configs/README.md lists them",
            ]
        );
    }

    #[test]
    fn invalid_env_secrets_are_not_echoed() {
        let bad_secret = "s3cr3t-with space";
        let env = [
            ("FELHOM_AGENT_HUB_API_KEY", bad_secret),
            ("FELHOM_AGENT_PROXMOX_TOKEN_SECRET", bad_secret),
        ];
        let err = load_with(&valid(), &env, Mode::Daemon).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(
            text.contains("hub.api_key: must not contain whitespace"),
            "{text}"
        );
        assert!(text.contains("(set by FELHOM_AGENT_HUB_API_KEY)"), "{text}");
    }

    #[test]
    fn every_variable_name_maps_to_its_key() {
        let vars: Vec<(String, String)> = env_variables().collect();
        assert_eq!(vars.len(), KEYS.len());
        assert!(vars.contains(&(
            "proxmox.tls.fingerprint_sha256".into(),
            "FELHOM_AGENT_PROXMOX_TLS_FINGERPRINT_SHA256".into()
        )));
        assert!(vars.contains(&("hub.api_key".into(), "FELHOM_AGENT_HUB_API_KEY".into())));
        assert!(vars.contains(&("log.level".into(), "FELHOM_AGENT_LOG_LEVEL".into())));
        let names: BTreeSet<&String> = vars.iter().map(|(_, v)| v).collect();
        assert_eq!(names.len(), vars.len(), "two keys share a variable");
    }

    // --- parse errors and the file -----------------------------------------------------------

    #[test]
    fn json_syntax_errors_have_line_and_column() {
        let text = b"{\n  \"proxmox\": {\n    \"node\": \"pve\",\n  }\n}";
        let err =
            Config::from_json(text, Path::new("/etc/a.json"), NO_ENV, Mode::Daemon).unwrap_err();
        let ConfigError::Parse {
            line,
            column,
            ref msg,
            ..
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!((line, column), (4, 3));
        assert_eq!(msg, "trailing comma");
        assert_eq!(
            err.to_string(),
            "config file /etc/a.json:4:3: trailing comma"
        );
    }

    #[test]
    fn duplicate_keys_are_parse_errors() {
        let text =
            format!("{{\"hub\": {{\"api_key\": \"{API_KEY}\",\n \"api_key\": \"{API_KEY}\"}}}}");
        let err = Config::from_json(text.as_bytes(), Path::new("/a.json"), NO_ENV, Mode::Daemon)
            .unwrap_err();
        let ConfigError::Parse { line, ref msg, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(line, 2);
        assert_eq!(msg, "duplicate key \"api_key\"");
        assert!(!format!("{err} {err:?}").contains(API_KEY));
    }

    #[test]
    fn load_reads_the_file_and_names_it_on_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&valid()).unwrap()).unwrap();
        assert!(Config::load(&path, NO_ENV, Mode::Daemon).is_ok());

        let missing = dir.path().join("missing.json");
        let err = Config::load(&missing, NO_ENV, Mode::Daemon).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
        assert!(err
            .to_string()
            .starts_with(&format!("cannot read config file {}: ", missing.display())));

        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b' '; MAX_CONFIG_BYTES as usize + 1]).unwrap();
        let err = Config::load(&big, NO_ENV, Mode::Daemon).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("config file {} is larger than 1048576 bytes", big.display())
        );

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"proxmox\": ").unwrap();
        let err = Config::load(&bad, NO_ENV, Mode::Daemon).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { line: 1, .. }), "{err:?}");
        assert!(err.to_string().contains("bad.json:1:"), "{err}");
    }

    // --- secrets and the redacted display ----------------------------------------------------

    #[test]
    fn secrets_appear_in_no_debug_or_display_output() {
        let c = load(&valid()).unwrap();
        let outputs = [
            format!("{c:?}"),
            format!("{:#?}", c),
            c.redacted().to_string(),
            format!("{:?}", c.redacted()),
        ];
        for out in &outputs {
            assert!(!out.contains(TOKEN_SECRET), "{out}");
            assert!(!out.contains(API_KEY), "{out}");
            assert!(out.contains(REDACTED), "{out}");
        }
    }

    #[test]
    fn secrets_appear_in_no_error() {
        // Secrets in the file and the env, and every kind of failure around them.
        let mut doc = with("/proxmox/token_id", json!("root"));
        set(&mut doc, "/hub/poll_seconds", json!(1));
        let env = [
            ("FELHOM_AGENT_HUB_API_KEY", API_KEY),
            ("FELHOM_AGENT_HUB_API_KYE", API_KEY),
            ("FELHOM_AGENT_PROXMOX_TOKEN_SECRET", TOKEN_SECRET),
        ];
        let err = load_with(&doc, &env, Mode::Daemon).unwrap_err();
        for out in [err.to_string(), format!("{err:?}")] {
            assert!(
                !out.contains(TOKEN_SECRET) && !out.contains(API_KEY),
                "{out}"
            );
        }
        let text = format!("{{\"proxmox\": {{\"token_secret\": \"{TOKEN_SECRET}\" \"x\": 1}}}}");
        let err =
            Config::from_json(text.as_bytes(), Path::new("/a"), NO_ENV, Mode::Daemon).unwrap_err();
        for out in [err.to_string(), format!("{err:?}")] {
            assert!(!out.contains(TOKEN_SECRET), "{out}");
        }
    }

    #[test]
    fn the_redacted_display_is_the_whole_effective_config() {
        let c = load(&valid()).unwrap();
        let shown: Value = serde_json::from_str(&c.redacted().to_string()).unwrap();
        assert_eq!(
            shown,
            json!({
                "proxmox": {
                    "api_url": "https://pve.example.test:8006",
                    "node": "pve",
                    "token_id": "felhom@pve!agent",
                    "token_secret": "[redacted]",
                    "tls": {"fingerprint_sha256": [FP]},
                    "timeout_seconds": 30
                },
                "hub": {
                    "url": "https://hub.example.test",
                    "host_id": "pve-01",
                    "api_key": "[redacted]",
                    "poll_seconds": 60,
                    "timeout_seconds": 30,
                    "ca_file": null
                },
                "authz": {"nonce_store": DEFAULT_NONCE_STORE, "signers": []},
                "journal": {"path": "/var/lib/felhom-agent/journal.log"},
                "reconcile": {"desired_state_file": null},
                "log": {"level": "info", "format": "text"}
            })
        );
        // Pretty: one key per line.
        assert!(c.redacted().to_string().contains("\n  \"proxmox\": {\n"));
    }

    #[test]
    fn the_redacted_output_reloads_to_the_same_config_given_the_secrets() {
        let path = workspace_file("configs/agent.example.json");
        let mut c = Config::load(&path, NO_ENV, Mode::Daemon).unwrap();
        c.proxmox.tls = TlsSetting::CaFile("/etc/pve/pve-root-ca.pem".into());
        c.log.format = LogFormat::Json;
        let env = [
            (
                "FELHOM_AGENT_PROXMOX_TOKEN_SECRET",
                c.proxmox.token_secret.expose().to_owned(),
            ),
            (
                "FELHOM_AGENT_HUB_API_KEY",
                c.hub.as_ref().unwrap().api_key.expose().to_owned(),
            ),
        ];
        let shown = c.redacted().to_string();
        let back =
            Config::from_json(shown.as_bytes(), Path::new("/shown"), env, Mode::Daemon).unwrap();
        assert_eq!(back, c);
        // Without a hub section (proxmox-only mode) the output omits it and still reloads.
        c.hub = None;
        let shown = c.redacted().to_string();
        assert!(!shown.contains("\"hub\""));
        let env = [(
            "FELHOM_AGENT_PROXMOX_TOKEN_SECRET",
            c.proxmox.token_secret.expose().to_owned(),
        )];
        let back = Config::from_json(
            shown.as_bytes(),
            Path::new("/shown"),
            env,
            Mode::SelftestProxmox,
        )
        .unwrap();
        assert_eq!(back, c);
    }

    // --- small helpers -----------------------------------------------------------------------

    #[test]
    fn base64_decoding_matches_the_rfc_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_decode(enc).unwrap(), plain.as_bytes(), "{enc}");
            assert_eq!(base64_encode(plain.as_bytes()), enc);
        }
        assert_eq!(base64_decode("Zm9vY"), None);
        assert_eq!(base64_decode("Zm9v!"), None);
    }

    #[test]
    fn typo_suggestions_need_a_close_match() {
        let keys = ["poll_seconds", "timeout_seconds", "url"];
        assert_eq!(nearest("poll_secs", keys.into_iter()), Some("poll_seconds"));
        assert_eq!(nearest("URL", keys.into_iter()), Some("url"));
        assert_eq!(nearest("colour", keys.into_iter()), None);
        assert_eq!(
            nearest("timeout", keys.into_iter()),
            Some("timeout_seconds")
        );
        assert_eq!(nearest("ur", keys.into_iter()), Some("url"));
        assert_eq!(nearest("x", keys.into_iter()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
