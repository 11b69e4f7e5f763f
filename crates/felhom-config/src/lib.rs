//! felhom-config: the agent's configuration — the JSON file, the `FELHOM_AGENT_*` environment
//! overlay, conversion of every section into the domain types that use it, typo suggestions,
//! and the redacted display.
//!
//! Parse, don't validate: each value is turned into its domain type by that type's own
//! constructor (`felhom_proxmox::{ApiUrl, ApiToken}`, `check_node_name`,
//! `felhom_http::Fingerprint`, `felhom_authz::Signer`, `felhom_hub::hub::check_api_key`,
//! `felhom_types::HttpsUrl`, `felhom_metrics::ListenAddr`), so a mistake gets one message, the domain's words behind the key
//! path: `authz.signers[2].public_key: …`. Every problem is listed at once.
//!
//! Never: print, log or return a secret (token secret, hub API key) — [`Redacted`] blanks them;
//! open a path the config names (only the config file itself is read); be depended on by a
//! domain crate (config → domain, never back).
//!
//! Map: [`load`](Config::load) reads the file (`file`), `env` overlays the variables,
//! `sections` converts, `redact` prints, `suggest` finds typos, [`pve`] builds the Proxmox
//! client. The format is documented key by key in `configs/README.md`;
//! `configs/agent.example.json` is a loadable example.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use felhom_authz::Signer;
use felhom_http::{Secret, TlsTrust};
use felhom_hub::hub::HubClientConfig;
use felhom_metrics::ListenAddr;
use felhom_proxmox::{ApiToken, ApiUrl};
use felhom_types::HttpsUrl;
pub use felhom_types::VmidRange;

mod env;
mod file;
pub mod pve;
mod redact;
mod sections;
mod suggest;
#[cfg(test)]
mod tests;

pub use env::env_variables;
pub use redact::Redacted;

/// Prefix of every environment variable the overlay reads.
pub const ENV_PREFIX: &str = "FELHOM_AGENT_";
/// A `FELHOM_AGENT_*` variable that is not config: the daemon's test-only poll floor, read by
/// the daemon itself and exempt from the overlay's unknown-variable check.
pub const TEST_POLL_FLOOR_ENV: &str = "FELHOM_AGENT_TEST_POLL_FLOOR_MS";
/// A `FELHOM_AGENT_*` variable that is not config: the daemon's test-only crash seam
/// (`<step>[@<action>]:<n>`, the crash-point harness of `cargo xtask crashpoints`), read by the
/// daemon itself and exempt from the overlay's unknown-variable check.
pub const TEST_CRASH_AT_ENV: &str = "FELHOM_AGENT_TEST_CRASH_AT";
/// Every test-only `FELHOM_AGENT_*` variable: the daemon reads them and warns while one is
/// set; the overlay skips exactly these.
pub const TEST_ONLY_ENV: [&str; 2] = [TEST_POLL_FLOOR_ENV, TEST_CRASH_AT_ENV];
/// Where the file-backed nonce store lives unless `authz.nonce_store` says otherwise.
pub const DEFAULT_NONCE_STORE: &str = "/var/lib/felhom-agent/nonces.log";
/// The journal's file name, next to the nonce store unless `journal.path` says otherwise.
pub const DEFAULT_JOURNAL_FILE_NAME: &str = "journal.log";
/// What a secret prints as in [`Config::redacted`].
pub const REDACTED: &str = felhom_http::REDACTED;

/// A validated configuration: every field typed, every default filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The Proxmox VE API of this host.
    pub proxmox: ProxmoxConfig,
    /// The felhom hub, if the section is given (validated when present). A caller that needs
    /// it asks with [`Config::hub`].
    pub hub: Option<HubConfig>,
    /// Operator signatures.
    pub authz: AuthzConfig,
    /// The op journal.
    pub journal: JournalConfig,
    /// Desired state.
    pub reconcile: ReconcileConfig,
    /// Restore tests of backups (off by default).
    pub restore_tests: RestoreTestsConfig,
    /// Logging.
    pub log: LogConfig,
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
}

/// The hub section is absent but the caller needs it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hub: missing section (required by {who})")]
pub struct MissingHub {
    /// Who needs it: `the daemon`, `the hub self-test`.
    pub who: &'static str,
}

impl MissingHub {
    /// As a config problem at key `hub`.
    pub fn problem(&self) -> Problem {
        Problem {
            key: "hub".into(),
            msg: format!("missing section (required by {})", self.who),
        }
    }
}

impl Config {
    /// The `hub` section, or an error naming `who` needs it (`the daemon`).
    pub fn hub(&self, who: &'static str) -> Result<&HubConfig, MissingHub> {
        self.hub.as_ref().ok_or(MissingHub { who })
    }
}

/// Section `proxmox`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxmoxConfig {
    /// `proxmox.api_url`: base URL of the API, `https://HOST:8006` (a trailing `/api2/json`
    /// is accepted; the client adds it).
    pub api_url: ApiUrl,
    /// `proxmox.node`: this host's node name (checked by `felhom_proxmox::check_node_name`).
    pub node: String,
    /// `proxmox.token_id` + `proxmox.token_secret`.
    pub token: ApiToken,
    /// `proxmox.tls`: how the API's certificate is trusted (pins, CA file, or insecure only
    /// when the config says `insecure_skip_verify: true`).
    pub tls: TlsTrust,
    /// `proxmox.timeout_seconds` (default 30): per request.
    pub timeout: Duration,
}

/// Section `hub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// `hub.url`: base URL of the hub (`https://`, may carry a path prefix, no trailing slash).
    pub url: HttpsUrl,
    /// `hub.host_id`: this host's id at the hub.
    pub host_id: String,
    /// `hub.api_key`: sent as `Authorization: Bearer …`.
    pub api_key: Secret,
    /// `hub.poll_seconds` (default 60, 60..=3600): interval between reports until the hub says
    /// otherwise.
    pub poll_interval: Duration,
    /// `hub.timeout_seconds` (default 30): per request.
    pub timeout: Duration,
    /// `hub.ca_file` → `CaFile`, `hub.fingerprint_sha256` → `Pinned`, neither → `SystemRoots`.
    /// Never `InsecureSkipVerify`.
    pub trust: TlsTrust,
}

impl HubConfig {
    /// The hub client's settings.
    pub fn client_config(&self) -> HubClientConfig {
        HubClientConfig {
            url: self.url.clone(),
            host_id: self.host_id.clone(),
            api_key: self.api_key.clone(),
            timeout: self.timeout,
            trust: self.trust.clone(),
        }
    }
}

/// Section `authz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthzConfig {
    /// `authz.nonce_store` (default `/var/lib/felhom-agent/nonces.log`).
    pub nonce_store: PathBuf,
    /// `authz.signers` (default none): the pinned operator keys, parsed by felhom-authz.
    pub signers: Vec<Signer>,
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
    /// pass. `None` with source `file`: no desired state (nothing is reconciled).
    pub desired_state_file: Option<PathBuf>,
    /// `reconcile.source`: where desired state comes from. Default: `hub` when a hub is
    /// configured and no file is set, else `file`.
    pub source: ReconcileSource,
}

/// Section `restore_tests`: the agent restores each guest's latest backup into a scratch
/// guest of its reserved range, boots it without network, and destroys it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreTestsConfig {
    /// `restore_tests.enabled` (default `false`).
    pub enabled: bool,
    /// `restore_tests.every_hours` (default 24, 1..=720): time between rounds.
    pub every: Duration,
    /// `restore_tests.storage`: where the scratch guests' volumes go (a PVE storage id with
    /// `rootdir` content). Required when enabled.
    pub storage: Option<String>,
    /// `restore_tests.vmid_range` (`"FIRST-LAST"`, default `"9000-9099"`): the only vmids a
    /// restore test ever creates or destroys. Must hold at least `max_concurrent` vmids.
    pub vmid_range: VmidRange,
    /// `restore_tests.boot_timeout_seconds` (default 120, 10..=3600): how long a restored guest
    /// has to be running with a pid and a positive uptime after its start task ended.
    pub boot_timeout: Duration,
    /// `restore_tests.max_concurrent` (default 1, 1..=4): tests running at once.
    pub max_concurrent: usize,
}

impl Default for RestoreTestsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            every: Duration::from_secs(24 * 3600),
            storage: None,
            vmid_range: VmidRange::new(9000, 9099).expect("a valid range"),
            boot_timeout: Duration::from_secs(120),
            max_concurrent: 1,
        }
    }
}

/// `reconcile.source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileSource {
    /// `"file"`: `reconcile.desired_state_file` (none set: nothing is reconciled).
    File,
    /// `"hub"`: the hub's `/api/v1/desired-state`, fetched when its generation changes.
    Hub,
}

impl ReconcileSource {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ReconcileSource::File => "file",
            ReconcileSource::Hub => "hub",
        }
    }
}

/// Section `metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricsConfig {
    /// `metrics.listen` (default: none, no listener): `IP:PORT` serving plain-HTTP
    /// `/metrics`; loopback, or a port the firewall keeps to the Prometheus server.
    pub listen: Option<ListenAddr>,
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
