//! Loading and checking the config for every subcommand: the file plus the process environment,
//! parsed once into domain types by felhom-config (signers by felhom-authz, the Proxmox
//! settings by felhom-proxmox), then what the daemon needs on top (the hub section) — so one
//! run reports every problem at once, each with its key path.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

use felhom_authz::{check_signers, Signer};
use felhom_config::{Config, ConfigError};

/// Why the config cannot be used: every problem found, one per line, each naming its key (or
/// the file). Never holds a secret: the config's own errors redact them, and signer keys are
/// public.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblems {
    /// The config file.
    pub path: PathBuf,
    /// `key: what is wrong`, or one line about the file itself.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "config {}: {n} problem{}:",
            self.path.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// Loads the config at `path` for the daemon and checks everything the daemon will build from
/// it (hub section, signers) without opening any file it names. The process environment comes
/// in as `vars_os`: a `FELHOM_AGENT_*` variable that is not UTF-8 is a problem, not skipped.
pub fn load(path: &Path) -> Result<(Config, Vec<Signer>), ConfigProblems> {
    load_env(path, std::env::vars_os())
}

/// [`load`] with an explicit environment (tests).
#[cfg(test)]
pub fn load_with<I>(path: &Path, env: I) -> Result<(Config, Vec<Signer>), ConfigProblems>
where
    I: IntoIterator<Item = (String, String)>,
{
    load_env(path, env)
}

fn load_env<I, K, V>(path: &Path, env: I) -> Result<(Config, Vec<Signer>), ConfigProblems>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let fail = |problems| ConfigProblems {
        path: path.to_owned(),
        problems,
    };
    let config = Config::load(path, env).map_err(|e| fail(config_lines(&e)))?;
    let mut problems = Vec::new();
    if let Err(e) = config.hub("the daemon") {
        problems.push(e.problem().to_string());
    }
    // The config parsed each signer with felhom-authz already; the list as a whole is checked
    // by the same function the verifier relies on.
    let signers = config.authz.signers.clone();
    if let Err(e) = check_signers(&signers) {
        problems.push(format!("authz.signers: {e}"));
    }
    if problems.is_empty() {
        Ok((config, signers))
    } else {
        Err(fail(problems))
    }
}

/// One line per problem of a config error.
fn config_lines(e: &ConfigError) -> Vec<String> {
    match e {
        ConfigError::Invalid(problems) => problems.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use felhom_authz::Role;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII0X0Q2omz0Ih7TlX+NVSaPKMd0/ee+V91/8td4m6DFT felhom-vector-ed25519";
    const RSA1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDJqgOopz1YQ6zhgya50Fh2A5WC0L89WlSeBTbmkvpzAogu6mU84XYsSQ+9HjXuBv0fdk3ixsrmceYNfM0CejUi6FpWzMrgR7f644lHqYrWTfC9KkqXEsJHLebBxAblsMb8dlREhNRaZNaWCH44W74g+s1/xRK3eqd+XYKAiK54LQ== felhom-vector-rsa1024";
    const FP: &str =
        "5F:40:6C:F3:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:7F:23";
    const TOKEN_SECRET: &str = "0b1c2d3e-aaaa-4bbb-8ccc-ddddeeeeffff";
    const API_KEY: &str = "hub-key-abcdefghijklmnop";

    fn doc(signers: Value) -> Value {
        json!({
            "proxmox": {
                "api_url": "https://pve.example.test:8006",
                "node": "pve",
                "token_id": "felhom@pve!agent",
                "token_secret": TOKEN_SECRET,
                "tls": { "fingerprint_sha256": [FP] }
            },
            "hub": { "url": "https://hub.example.test", "host_id": "pve-01", "api_key": API_KEY },
            "authz": { "nonce_store": "/var/lib/felhom-agent/nonces.log", "signers": signers }
        })
    }

    fn load_doc(doc: &Value) -> Result<(Config, Vec<Signer>), ConfigProblems> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.json");
        std::fs::write(&path, serde_json::to_vec(doc).unwrap()).unwrap();
        load_with(&path, std::iter::empty())
    }

    #[test]
    fn a_good_config_yields_its_signers() {
        let signers = json!([{ "key_id": "ops-a", "role": "operational", "public_key": ED25519 }]);
        let (config, signers) = load_doc(&doc(signers)).unwrap();
        assert_eq!(config.hub.unwrap().host_id, "pve-01");
        assert_eq!(signers.len(), 1);
        assert_eq!(signers[0].key_id, "ops-a");
        assert_eq!(signers[0].role, Role::Operational);
        let (_, none) = load_doc(&doc(json!([]))).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn key_problems_and_config_problems_are_all_listed() {
        // The config checks form; felhom-authz refuses the weak key.
        let weak = json!([
            { "key_id": "a", "role": "operational", "public_key": ED25519 },
            { "key_id": "b", "role": "recovery", "public_key": RSA1024 },
        ]);
        let err = load_doc(&doc(weak)).unwrap_err();
        assert_eq!(
            err.problems,
            ["authz.signers[1].public_key: signer \"b\": the rsa key has 1024 bits, the minimum is 2048"]
        );
        let mut bad = doc(json!([]));
        bad["hub"]["poll_seconds"] = json!(5);
        bad["proxmox"]["token_id"] = json!("root");
        let err = load_doc(&bad).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        let text = err.to_string();
        assert!(text.contains("2 problems:"), "{text}");
        assert!(text.contains("\n  hub.poll_seconds: "), "{text}");
        assert!(text.contains("\n  proxmox.token_id: "), "{text}");
        assert!(!text.contains(TOKEN_SECRET) && !text.contains(API_KEY));
    }

    #[test]
    fn a_missing_file_is_one_problem_naming_it() {
        let err = load_with(Path::new("/nonexistent/agent.json"), std::iter::empty()).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(err.problems[0].contains("/nonexistent/agent.json"), "{err}");
        assert!(err
            .to_string()
            .starts_with("config /nonexistent/agent.json: 1 problem:"));
    }

    #[test]
    fn the_environment_overlays_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.json");
        std::fs::write(&path, serde_json::to_vec(&doc(json!([]))).unwrap()).unwrap();
        let env = [("FELHOM_AGENT_HUB_HOST_ID".to_owned(), "pve-07".to_owned())];
        let (config, _) = load_with(&path, env).unwrap();
        assert_eq!(config.hub.unwrap().host_id, "pve-07");
    }
}
