//! The config's tests: every rule, the environment overlay, the redacted display, and that
//! config and domain constructors say the same words for the same mistake.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use felhom_authz::Role;
use felhom_http::{Fingerprint, TlsTrust};
use serde_json::{json, Value};

use crate::env::KEYS;
use crate::file::MAX_CONFIG_BYTES;
use crate::suggest::{edit_distance, nearest};
use crate::*;

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

fn fp(s: &str) -> Fingerprint {
    s.parse().unwrap()
}

/// The token secret as loaded (a test may look; nothing else prints it).
fn token_secret(c: &Config) -> String {
    c.proxmox.token.secret().expose().to_owned()
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

fn load_with(doc: &Value, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let text = serde_json::to_vec(doc).unwrap();
    Config::from_json(
        &text,
        Path::new("/etc/felhom-agent/agent.json"),
        env.iter().copied(),
    )
}

fn load(doc: &Value) -> Result<Config, ConfigError> {
    load_with(doc, &[])
}

fn problems(doc: &Value) -> Vec<String> {
    problems_with(doc, &[])
}

fn problems_with(doc: &Value, env: &[(&str, &str)]) -> Vec<String> {
    match load_with(doc, env) {
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
    assert_eq!(c.proxmox.api_url.url().host(), "pve.example.test");
    assert_eq!(c.proxmox.api_url.url().port(), 8006);
    assert_eq!(c.proxmox.node, "pve");
    assert_eq!(c.proxmox.token.token_id(), "felhom@pve!agent");
    assert_eq!(token_secret(&c), TOKEN_SECRET);
    assert_eq!(c.proxmox.tls, TlsTrust::Pinned(vec![fp(FP)]));
    assert_eq!(c.proxmox.timeout, Duration::from_secs(30));
    let hub = c.hub.as_ref().unwrap();
    assert_eq!(hub.url.to_string(), "https://hub.example.test");
    assert_eq!(hub.url.port(), 443);
    assert_eq!(hub.host_id, "pve-01");
    assert_eq!(hub.api_key.expose(), API_KEY);
    assert_eq!(hub.poll_interval, Duration::from_secs(60));
    assert_eq!(hub.timeout, Duration::from_secs(30));
    assert_eq!(hub.trust, TlsTrust::SystemRoots);
    assert_eq!(c.authz.nonce_store, Path::new(DEFAULT_NONCE_STORE));
    assert!(c.authz.signers.is_empty());
    assert_eq!(
        c.journal.path,
        Path::new("/var/lib/felhom-agent/journal.log")
    );
    assert_eq!(c.reconcile.desired_state_file, None);
    // A hub and no file: desired state comes from the hub.
    assert_eq!(c.reconcile.source, ReconcileSource::Hub);
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
        hub.trust,
        TlsTrust::CaFile("/etc/felhom-agent/hub-ca.pem".into())
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
    assert_eq!(c.authz.signers[0].role, Role::Operational);
    assert_eq!(
        c.authz.signers[0].public_key_openssh(),
        ed25519_line(1, "").trim_end()
    );
    assert_eq!(c.authz.signers[1].role, Role::Recovery);
    assert_eq!(
        c.reconcile.desired_state_file.as_deref(),
        Some(Path::new("/etc/felhom-agent/desired.json"))
    );
    assert_eq!(c.reconcile.source, ReconcileSource::File);
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
    {
        let c = Config::load(&path, NO_ENV).unwrap();
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
    let msg =
        "proxmox.tls: exactly one of fingerprint_sha256, ca_file, insecure_skip_verify must be set";
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
        TlsTrust::CaFile(PathBuf::from("/etc/pve/pve-root-ca.pem"))
    );
    assert_eq!(
        tls(json!({"insecure_skip_verify": true})),
        TlsTrust::InsecureSkipVerify
    );
    // insecure_skip_verify: false beside another mode is allowed: it chooses nothing.
    assert_eq!(
        tls(json!({"ca_file": "/ca.pem", "insecure_skip_verify": false})),
        TlsTrust::CaFile(PathBuf::from("/ca.pem"))
    );
    let lower = FP.to_ascii_lowercase();
    let other = FP.replace("5F", "6A");
    assert_eq!(
        tls(json!({"fingerprint_sha256": [lower, other]})),
        TlsTrust::Pinned(vec![fp(FP), fp(&other)])
    );
}

#[test]
fn fingerprints_are_syntax_checked() {
    // The words are felhom-http's `Fingerprint` rule (which also takes 64 bare hex digits).
    let short = &FP[..FP.len() - 3];
    assert_eq!(
        problems(&with("/proxmox/tls", json!({"fingerprint_sha256": short}))),
        [format!(
            "proxmox.tls.fingerprint_sha256: {}",
            short.parse::<Fingerprint>().unwrap_err()
        )]
    );
    let no_colons = FP.replace(':', "");
    assert_eq!(fp(&no_colons), fp(FP));
    let half = &no_colons[..40];
    assert_eq!(
        problems(&with(
            "/proxmox/tls",
            json!({"fingerprint_sha256": [FP, half, 7, FP.to_ascii_lowercase()]})
        )),
        [
            format!(
                "proxmox.tls.fingerprint_sha256[1]: invalid sha-256 fingerprint {half:?}: expected 32 hex octets as AB:CD:... or 64 hex digits"
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
    assert!(bad_hex.parse::<Fingerprint>().is_err());
}

#[test]
fn token_id_is_user_at_realm_bang_name() {
    assert_eq!(
        problems(&with("/proxmox/token_id", json!("root"))),
        ["proxmox.token_id: must be user@realm!tokenname, got \"root\""]
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
        // felhom-proxmox's `ApiToken` rule, in its words.
        let domain = felhom_proxmox::ApiToken::check_token_id(bad).unwrap_err();
        assert_eq!(
            problems(&with("/proxmox/token_id", json!(bad))),
            [format!("proxmox.token_id: {domain}")]
        );
        assert!(
            domain.to_string().ends_with(&format!(", got {bad:?}")),
            "{domain}"
        );
    }
    let c = load(&with(
        "/proxmox/token_id",
        json!("first.last@example.com@pve!terraform-1"),
    ))
    .unwrap();
    assert_eq!(
        c.proxmox.token.token_id(),
        "first.last@example.com@pve!terraform-1"
    );
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
    // felhom-proxmox's `ApiUrl` rule: a trailing /api2/json is the client's own suffix.
    assert_eq!(
        problems(&with("/proxmox/api_url", json!("https://pve:8006/other"))),
        ["proxmox.api_url: path must be empty or end with /api2/json (the client adds it), got \"https://pve:8006/other\""]
    );
    assert_eq!(
        load(&with(
            "/proxmox/api_url",
            json!("https://pve:8006/api2/json")
        ))
        .unwrap()
        .proxmox
        .api_url
        .to_string(),
        "https://pve:8006"
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
fn node_is_a_dns_label() {
    for bad in ["", "-pve", "pve-", "pve.lan", "pve_1", &"a".repeat(64)] {
        let p = problems(&with("/proxmox/node", json!(bad)));
        assert_eq!(
            p,
            [format!(
                "proxmox.node: expected a node name (1 to 63 letters, digits and inner '-'), got {bad:?}"
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
    // The words are the domain rules': `ApiToken::check_secret` and `hub::check_api_key`.
    let token_bad = "token secret must be printable ASCII without whitespace, ';', '=', '%' or ','";
    let key_bad = "must be printable ASCII without spaces";
    let cases = [
        ("", "token secret is empty", "must not be empty"),
        ("5e1d8a2c-7f3b-4d6e-9a0b-c1d2e3f4a5b6\n", token_bad, key_bad),
        ("5e1d8a2c 7f3b", token_bad, key_bad),
        ("5e1d8a2c-ünïcode", token_bad, key_bad),
    ];
    for (secret, token_msg, key_msg) in cases {
        assert_eq!(
            problems(&with("/proxmox/token_secret", json!(secret))),
            [format!("proxmox.token_secret: {token_msg}")]
        );
        assert_eq!(
            problems(&with("/hub/api_key", json!(secret))),
            [format!("hub.api_key: {key_msg}")]
        );
    }
    assert_eq!(
        problems(&with("/proxmox/token_secret", json!("abc=def"))),
        [format!("proxmox.token_secret: {token_bad}")]
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
    // Each line's words are felhom-authz's `Signer::from_authorized_key`.
    let line_err = |key_id: &str, line: &str| {
        felhom_authz::Signer::from_authorized_key(key_id, Role::Recovery, line)
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        problems(&doc),
        [
            "authz.signers[1].key_id: two signers are named \"ops-anna\"".to_owned(),
            "authz.signers[1].role: signer role \"admin\" is unknown (expected \"operational\" or \"recovery\")".to_owned(),
            "authz.signers[1].public_key: signers \"ops-anna\" and \"ops-anna\" pin the same key".to_owned(),
            "authz.signers[2].key_id: signer key_id \"\": must not be empty".to_owned(),
            format!("authz.signers[2].public_key: {}", line_err("authz.signers[2]", "# a comment")),
            format!("authz.signers[3].public_key: {}", line_err("c", "ssh-ed25519-cert-v01@openssh.com AAAA x")),
            format!("authz.signers[4].public_key: {}", line_err("d", &format!("cert-authority,from=\"a b\" {}", key(4)))),
            format!("authz.signers[5].public_key: {}", line_err("e", "ssh-dss AAAAB3NzaC1kc3M= x")),
            format!("authz.signers[6].public_key: {}", line_err("f", "ssh-ed25519")),
            format!("authz.signers[7].public_key: {}", line_err("g", "ssh-ed25519 not*base64")),
            format!("authz.signers[8].public_key: {}", line_err("h", &mismatched)),
            format!("authz.signers[9].public_key: {}", line_err("i", &format!("{}\n{}", key(5), key(6)))),
            format!("authz.signers[10].public_key: {}", line_err("j", "ssh-ed25519 AAAA")),
            "authz.signers[11].comment: unknown key".to_owned(),
            "authz.signers[12].key_id: signer key_id \"l\\u{7}\": holds control characters".to_owned(),
            "authz.signers[12].public_key: required, not set".to_owned(),
            "authz.signers[13]: expected an object, got a string".to_owned(),
        ]
    );
    // The words say what is wrong, not merely that something is.
    assert!(line_err("c", "ssh-ed25519-cert-v01@openssh.com AAAA x")
        .contains("certificates are refused"));
    assert!(line_err("d", &format!("cert-authority {}", key(4))).contains("cert-authority"));
    assert!(line_err("g", "ssh-ed25519 not*base64").contains("base64"));
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
    doc["authz"] = json!({"signers": [{"key_id": "a", "role": "operational", "public_key": line}]});
    let c = load(&doc).unwrap();
    // Options and comment are accepted; the signer is its key material.
    assert_eq!(
        c.authz.signers[0].public_key_openssh(),
        ed25519_line(9, "").trim_end()
    );
}

#[test]
fn fido_ecdsa_signer_lines_are_accepted() {
    // testdata/sshsig/sk-ecdsa256.pub: what `ssh-keygen -t ecdsa-sk` makes (issue 9).
    let line = "no-touch-required sk-ecdsa-sha2-nistp256@openssh.com AAAAInNrLWVjZHNhLXNoYTItbmlzdHAyNTZAb3BlbnNzaC5jb20AAAAIbmlzdHAyNTYAAABBBPaLHeD1zmhhkvS9D9NBY4Y/LonThfi8+4WXlTOlesmwTwIqtrCWyL9CgE2OZ9OLP4iGaYDMkD9o/enS4UPZMmcAAAAEc3NoOg== anna@yubikey";
    let mut doc = valid();
    doc["authz"] = json!({"signers": [{"key_id": "a", "role": "operational", "public_key": line}]});
    let c = load(&doc).unwrap();
    assert_eq!(
        c.authz.signers[0].algorithm(),
        "sk-ecdsa-sha2-nistp256@openssh.com"
    );
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
         \x20 proxmox.token_id: must be user@realm!tokenname, got \"root\"\n\
         \x20 proxmox.token_secret: token secret is empty\n\
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
    let err = Config::from_json(b"[1]", Path::new("/c.json"), NO_ENV).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config (1 problem):\n  (root): expected an object, got an array"
    );
}

// --- mode-awareness ----------------------------------------------------------------------

#[test]
fn the_hub_section_is_asked_for_by_who_needs_it() {
    let doc = without("/hub");
    let c = load(&doc).unwrap();
    assert!(c.hub.is_none());
    assert_eq!(
        c.hub("the daemon").unwrap_err().to_string(),
        "hub: missing section (required by the daemon)"
    );
    assert_eq!(
        c.hub("the hub self-test").unwrap_err().to_string(),
        "hub: missing section (required by the hub self-test)"
    );
    // Present, it is validated whoever loads the config.
    let bad_hub = with("/hub/poll_seconds", json!(1));
    assert_eq!(
        problems(&bad_hub),
        ["hub.poll_seconds: must be between 60 and 3600, got 1"]
    );
    assert!(load(&valid()).unwrap().hub("the daemon").is_ok());
}

#[test]
fn the_proxmox_section_is_always_required() {
    let doc = without("/proxmox");
    assert_eq!(
        problems(&doc),
        ["proxmox: missing section (required by every command)"]
    );
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
    let c = load_with(&valid(), &env).unwrap();
    let hub = c.hub.clone().unwrap();
    assert_eq!(hub.api_key.expose(), "from-env-key");
    assert_eq!(token_secret(&c), "from-env-secret");
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
    let c = load_with(&doc, &env).unwrap();
    assert_eq!(c.hub.as_ref().unwrap().host_id, "pve-09");
    assert_eq!(token_secret(&c), TOKEN_SECRET);
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
    let c = load_with(&doc, &env).unwrap();
    assert_eq!(c.proxmox.tls, TlsTrust::Pinned(vec![fp(FP), fp(&other)]));

    let env = [("FELHOM_AGENT_PROXMOX_TLS_INSECURE_SKIP_VERIFY", "true")];
    let c = load_with(&doc, &env).unwrap();
    assert_eq!(c.proxmox.tls, TlsTrust::InsecureSkipVerify);

    let env = [
        ("FELHOM_AGENT_PROXMOX_TLS_INSECURE_SKIP_VERIFY", "1"),
        ("FELHOM_AGENT_PROXMOX_TLS_CA_FILE", "/ca.pem"),
    ];
    assert_eq!(
        problems_with(&doc, &env),
        ["proxmox.tls: exactly one of fingerprint_sha256, ca_file, insecure_skip_verify must be set \
          (set by FELHOM_AGENT_PROXMOX_TLS_CA_FILE, FELHOM_AGENT_PROXMOX_TLS_INSECURE_SKIP_VERIFY)"]
    );
    let env = [("FELHOM_AGENT_PROXMOX_TLS_FINGERPRINT_SHA256", "AB:CD")];
    assert_eq!(
        problems_with(&doc, &env),
        ["proxmox.tls.fingerprint_sha256[0]: invalid sha-256 fingerprint \"AB:CD\": expected 32 hex octets as AB:CD:... or 64 hex digits \
          (set by FELHOM_AGENT_PROXMOX_TLS_FINGERPRINT_SHA256)"]
    );
}

#[test]
fn env_signers_are_json() {
    let signers = json!([{"key_id": "a", "role": "recovery", "public_key": ed25519_line(3, "a")}])
        .to_string();
    let env = [("FELHOM_AGENT_AUTHZ_SIGNERS", signers.as_str())];
    let c = load_with(&valid(), &env).unwrap();
    assert_eq!(c.authz.signers[0].role, Role::Recovery);

    let env = [(
        "FELHOM_AGENT_AUTHZ_SIGNERS",
        r#"[{"key_id": "a", "role": "root"}]"#,
    )];
    assert_eq!(
        problems_with(&valid(), &env),
        [
            "authz.signers[0].role: signer role \"root\" is unknown (expected \"operational\" or \"recovery\") (set by FELHOM_AGENT_AUTHZ_SIGNERS)",
            "authz.signers[0].public_key: required, not set (set by FELHOM_AGENT_AUTHZ_SIGNERS)",
        ]
    );
    let env = [("FELHOM_AGENT_AUTHZ_SIGNERS", "[{")];
    let p = problems_with(&valid(), &env);
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
        problems_with(&valid(), &env),
        [
            "FELHOM_AGENT_HUB_POLL_SECONDS: expected a whole number, got \"soon\"",
            "FELHOM_AGENT_HUB_TIMEOUT_SECONDS: expected a whole number, got \"-1\"",
            "FELHOM_AGENT_PROXMOX_TLS_INSECURE_SKIP_VERIFY: expected true or false, got \"yes please\"",
        ]
    );
    // A well-typed but invalid value names the key and the variable that set it.
    let env = [("FELHOM_AGENT_HUB_POLL_SECONDS", "5")];
    assert_eq!(
        problems_with(&valid(), &env),
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
        problems_with(&valid(), &env),
        [
            "FELHOM_AGENT_HUB_APIKEY: unknown variable (did you mean FELHOM_AGENT_HUB_API_KEY?); configs/README.md lists them",
            "FELHOM_AGENT_PROXMOX_TOKEN_SECERT: unknown variable (did you mean FELHOM_AGENT_PROXMOX_TOKEN_SECRET?); configs/README.md lists them",
            "FELHOM_AGENT_SOMETHING_ELSE: unknown variable; configs/README.md lists them",
        ]
    );
}

#[test]
fn the_test_only_variables_are_not_config_but_their_near_misses_are_errors() {
    let env = [
        ("FELHOM_AGENT_TEST_POLL_FLOOR_MS", "200"),
        ("FELHOM_AGENT_TEST_CRASH_AT", "after-started:1"),
    ];
    assert!(load_with(&valid(), &env).is_ok());
    let typo = [("FELHOM_AGENT_TEST_CRASH", "after-started:1")];
    assert_eq!(
        problems_with(&valid(), &typo),
        ["FELHOM_AGENT_TEST_CRASH: unknown variable; configs/README.md lists them"]
    );
}

#[test]
fn invalid_env_secrets_are_not_echoed() {
    let bad_secret = "s3cr3t-with space";
    let env = [
        ("FELHOM_AGENT_HUB_API_KEY", bad_secret),
        ("FELHOM_AGENT_PROXMOX_TOKEN_SECRET", bad_secret),
    ];
    let err = load_with(&valid(), &env).unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("s3cr3t"), "{text}");
    assert!(
        text.contains("hub.api_key: must be printable ASCII without spaces"),
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
    let err = Config::from_json(text, Path::new("/etc/a.json"), NO_ENV).unwrap_err();
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
    let text = format!("{{\"hub\": {{\"api_key\": \"{API_KEY}\",\n \"api_key\": \"{API_KEY}\"}}}}");
    let err = Config::from_json(text.as_bytes(), Path::new("/a.json"), NO_ENV).unwrap_err();
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
    assert!(Config::load(&path, NO_ENV).is_ok());

    let missing = dir.path().join("missing.json");
    let err = Config::load(&missing, NO_ENV).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(err
        .to_string()
        .starts_with(&format!("cannot read config file {}: ", missing.display())));

    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; MAX_CONFIG_BYTES as usize + 1]).unwrap();
    let err = Config::load(&big, NO_ENV).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("config file {} is larger than 1048576 bytes", big.display())
    );

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"proxmox\": ").unwrap();
    let err = Config::load(&bad, NO_ENV).unwrap_err();
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
    let err = load_with(&doc, &env).unwrap_err();
    for out in [err.to_string(), format!("{err:?}")] {
        assert!(
            !out.contains(TOKEN_SECRET) && !out.contains(API_KEY),
            "{out}"
        );
    }
    let text = format!("{{\"proxmox\": {{\"token_secret\": \"{TOKEN_SECRET}\" \"x\": 1}}}}");
    let err = Config::from_json(text.as_bytes(), Path::new("/a"), NO_ENV).unwrap_err();
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
            "reconcile": {"desired_state_file": null, "source": "hub"},
            "restore_tests": {
                "enabled": false, "every_hours": 24, "storage": null, "vmid_range": "9000-9099",
                "boot_timeout_seconds": 120, "max_concurrent": 1
            },
            "log": {"level": "info", "format": "text"},
            "metrics": {"listen": null}
        })
    );
    // Pretty: one key per line.
    assert!(c.redacted().to_string().contains("\n  \"proxmox\": {\n"));
}

#[test]
fn the_redacted_output_reloads_to_the_same_config_given_the_secrets() {
    let path = workspace_file("configs/agent.example.json");
    let mut c = Config::load(&path, NO_ENV).unwrap();
    c.proxmox.tls = TlsTrust::CaFile("/etc/pve/pve-root-ca.pem".into());
    c.log.format = LogFormat::Json;
    let env = [
        (
            "FELHOM_AGENT_PROXMOX_TOKEN_SECRET",
            token_secret(&c).to_owned(),
        ),
        (
            "FELHOM_AGENT_HUB_API_KEY",
            c.hub.as_ref().unwrap().api_key.expose().to_owned(),
        ),
    ];
    let shown = c.redacted().to_string();
    let back = Config::from_json(shown.as_bytes(), Path::new("/shown"), env).unwrap();
    assert_eq!(back, c);
    // Without a hub section (proxmox-only mode) the output omits it and still reloads.
    c.hub = None;
    // (and so no hub source: that would not load)
    c.reconcile.source = ReconcileSource::File;
    let shown = c.redacted().to_string();
    assert!(!shown.contains("\"hub\""));
    let env = [(
        "FELHOM_AGENT_PROXMOX_TOKEN_SECRET",
        token_secret(&c).to_owned(),
    )];
    let back = Config::from_json(shown.as_bytes(), Path::new("/shown"), env).unwrap();
    assert_eq!(back, c);
}

// --- small helpers -----------------------------------------------------------------------

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

// --- one rule, one message: config and domain constructors agree -------------------------

/// The same bad value through the config and through the domain constructor: the config's
/// message is `<key path>: <domain error>`, word for word.
#[test]
fn config_and_domain_constructors_say_the_same_words() {
    let one = |pointer: &str, v: Value| {
        let p = problems(&with(pointer, v));
        assert_eq!(p.len(), 1, "{p:?}");
        p.into_iter().next().unwrap()
    };
    // Token id (issue 10 item 11: the rule broken is named).
    let token = felhom_proxmox::ApiToken::check_token_id("a@pve!b").unwrap_err();
    assert_eq!(
        token.to_string(),
        "token name must be at least 2 characters ([A-Za-z][A-Za-z0-9._-]+), got \"a@pve!b\""
    );
    assert_eq!(
        one("/proxmox/token_id", json!("a@pve!b")),
        format!("proxmox.token_id: {token}")
    );
    // Fingerprint.
    let fp_err = "AB:CD".parse::<Fingerprint>().unwrap_err();
    assert_eq!(
        one("/proxmox/tls", json!({"fingerprint_sha256": "AB:CD"})),
        format!("proxmox.tls.fingerprint_sha256: {fp_err}")
    );
    assert_eq!(
        one("/hub/fingerprint_sha256", json!(["AB:CD"])),
        format!("hub.fingerprint_sha256[0]: {fp_err}")
    );
    // Node name: the Proxmox client refuses it with the same words.
    let node = felhom_proxmox::check_node_name("pve_1").unwrap_err();
    assert_eq!(
        one("/proxmox/node", json!("pve_1")),
        format!("proxmox.node: {node}")
    );
    let mut c = load(&valid()).unwrap();
    c.proxmox.node = "pve_1".into();
    let client_err = crate::pve::client(&c.proxmox).unwrap_err();
    assert_eq!(
        client_err.to_string(),
        format!("proxmox: proxmox.node: {node}")
    );
    // URL: the API URL rule and the hub's.
    let api = felhom_proxmox::ApiUrl::parse("https://pve:8006/x").unwrap_err();
    assert_eq!(
        one("/proxmox/api_url", json!("https://pve:8006/x")),
        format!("proxmox.api_url: {api}")
    );
    let hub = felhom_types::HttpsUrl::parse("http://hub").unwrap_err();
    assert_eq!(
        one("/hub/url", json!("http://hub")),
        format!("hub.url: {hub}")
    );
    // Signer line.
    let line = "ssh-ed25519 not*base64";
    let signer =
        felhom_authz::Signer::from_authorized_key("anna", Role::Operational, line).unwrap_err();
    let mut doc = valid();
    doc["authz"] =
        json!({"signers": [{"key_id": "anna", "role": "operational", "public_key": line}]});
    assert_eq!(
        problems(&doc),
        [format!("authz.signers[0].public_key: {signer}")]
    );
    // Hub API key.
    let key = felhom_hub::hub::check_api_key(&felhom_http::Secret::new("a b")).unwrap_err();
    assert_eq!(
        one("/hub/api_key", json!("a b")),
        format!("hub.api_key: {key}")
    );
}

// --- what check-config must refuse (issue 10 item 11) -------------------------------------

#[test]
fn a_nul_byte_in_any_path_is_refused() {
    for (pointer, key) in [
        ("/journal/path", "journal.path"),
        ("/authz/nonce_store", "authz.nonce_store"),
        (
            "/reconcile/desired_state_file",
            "reconcile.desired_state_file",
        ),
        ("/hub/ca_file", "hub.ca_file"),
    ] {
        let (section, leaf) = pointer[1..].split_once('/').unwrap();
        let mut doc = valid();
        if doc.get(section).is_none() {
            doc[section] = json!({});
        }
        doc[section][leaf] = json!("/var/lib/felhom\u{0}/x.log");
        assert_eq!(
            problems(&doc),
            [format!(
                "{key}: must not contain a NUL byte, got \"/var/lib/felhom\\0/x.log\""
            )]
        );
    }
}

#[test]
fn the_journal_and_the_nonce_store_differ_once_dot_dot_is_resolved() {
    let mut doc = valid();
    doc["authz"] = json!({"nonce_store": "/srv/f/nonces.log"});
    doc["journal"] = json!({"path": "/srv/f/sub/../nonces.log"});
    assert_eq!(
        problems(&doc),
        ["journal.path: must differ from authz.nonce_store, both are \"/srv/f/nonces.log\" once '..' and '.' are resolved (each log locks its own file)"]
    );
    doc["journal"] = json!({"path": "/srv/./f/nonces.log"});
    assert_eq!(problems(&doc).len(), 1);
    doc["journal"] = json!({"path": "/srv/f/sub/../journal.log"});
    assert!(load(&doc).is_ok());
    assert_eq!(
        crate::sections::lexical(Path::new("/a/../../b/./c")),
        Path::new("/b/c")
    );
}

#[cfg(unix)]
#[test]
fn a_variable_of_ours_that_is_not_utf8_is_named_not_ignored() {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    let text = serde_json::to_vec(&valid()).unwrap();
    let env = vec![
        (
            OsString::from("FELHOM_AGENT_LOG_LEVEL"),
            OsString::from_vec(b"de\xffbug".to_vec()),
        ),
        // Not ours: ignored as before, whatever its bytes.
        (OsString::from("LANG"), OsString::from_vec(b"\xff".to_vec())),
    ];
    let err = Config::from_json(&text, Path::new("/a.json"), env).unwrap_err();
    let ConfigError::Invalid(p) = err else {
        panic!("{err:?}")
    };
    assert_eq!(
        p.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["FELHOM_AGENT_LOG_LEVEL: the value is not valid UTF-8"]
    );
}

// --- hub.fingerprint_sha256 (issue 9 item 1) ----------------------------------------------

#[test]
fn the_hub_can_be_pinned_but_never_insecure() {
    let other = FP.replace("5F", "6A");
    let c = load(&with("/hub/fingerprint_sha256", json!(FP))).unwrap();
    let hub = c.hub.as_ref().unwrap();
    assert_eq!(hub.trust, TlsTrust::Pinned(vec![fp(FP)]));
    assert_eq!(hub.client_config().trust, TlsTrust::Pinned(vec![fp(FP)]));
    assert_eq!(hub.client_config().host_id, "pve-01");
    let c = load(&with("/hub/fingerprint_sha256", json!([FP, other]))).unwrap();
    assert_eq!(
        c.hub.as_ref().unwrap().trust,
        TlsTrust::Pinned(vec![fp(FP), fp(&other)])
    );
    // The redacted output shows the pins and reloads to the same config.
    let shown: Value = serde_json::from_str(&c.redacted().to_string()).unwrap();
    assert_eq!(shown["hub"]["fingerprint_sha256"], json!([FP, other]));
    // From the environment, comma-separated.
    let pins = format!("{FP},{other}");
    let c2 = load_with(&valid(), &[("FELHOM_AGENT_HUB_FINGERPRINT_SHA256", &pins)]).unwrap();
    assert_eq!(c2.hub, c.hub);
    // Exclusive with ca_file.
    let mut doc = with("/hub/fingerprint_sha256", json!(FP));
    set(
        &mut doc,
        "/hub/ca_file",
        json!("/etc/felhom-agent/hub-ca.pem"),
    );
    assert_eq!(
        problems(&doc),
        ["hub.fingerprint_sha256: cannot be combined with hub.ca_file: trust the hub one way (a pin or a CA file)"]
    );
    assert_eq!(
        problems(&with("/hub/fingerprint_sha256", json!([]))),
        ["hub.fingerprint_sha256: must list at least one fingerprint"]
    );
    // There is no insecure key for the hub.
    assert_eq!(
        problems(&with("/hub/insecure_skip_verify", json!(true))),
        ["hub.insecure_skip_verify: unknown key"]
    );
}

// --- the proxmox section becomes a client (was pve.rs's inline tests) ----------------------

const PVE_SECRET: &str = "0b1c2d3e-aaaa-4bbb-8ccc-ddddeeeeffff";

fn proxmox(tls: Value, secret: &str) -> ProxmoxConfig {
    let doc = json!({
        "proxmox": {
            "api_url": "https://pve.example.test:8006",
            "node": "pve",
            "token_id": "felhom@pve!agent",
            "token_secret": secret,
            "tls": tls,
            "timeout_seconds": 7
        }
    });
    load_with(&doc, &[]).unwrap().proxmox
}

#[test]
fn a_pinned_config_becomes_a_pinned_client_config() {
    use felhom_proxmox::ProxmoxApi as _;
    let p = proxmox(
        json!({ "fingerprint_sha256": [FP.to_lowercase()] }),
        PVE_SECRET,
    );
    let c = pve::client_config(&p);
    assert_eq!(c.api_url, "https://pve.example.test:8006");
    assert_eq!(c.node, "pve");
    assert_eq!(c.token.token_id(), "felhom@pve!agent");
    assert_eq!(c.timeout, Duration::from_secs(7));
    assert_eq!(c.trust, TlsTrust::Pinned(vec![fp(FP)]));
    assert_eq!(pve::pins(&p.tls), vec![fp(FP)]);
    // Debug of the result is safe to log.
    assert!(!format!("{c:?}").contains(PVE_SECRET));
    let client = pve::client(&p).unwrap();
    assert_eq!(client.node(), "pve");
    assert_eq!(client.base_url(), "https://pve.example.test:8006/api2/json");
    assert!(!format!("{client:?}").contains(PVE_SECRET));
}

#[test]
fn ca_file_and_insecure_map_one_to_one() {
    let p = proxmox(json!({ "ca_file": "/etc/pve/pve-root-ca.pem" }), PVE_SECRET);
    assert_eq!(
        pve::client_config(&p).trust,
        TlsTrust::CaFile(PathBuf::from("/etc/pve/pve-root-ca.pem"))
    );
    let p = proxmox(json!({ "insecure_skip_verify": true }), PVE_SECRET);
    assert_eq!(pve::client_config(&p).trust, TlsTrust::InsecureSkipVerify);
    assert!(pve::pins(&p.tls).is_empty());
}

#[test]
fn a_secret_the_header_cannot_carry_is_refused_without_showing_it() {
    // The config applies the client's own rule now: ';' is refused at load, by key.
    let secret = "abc;def-secret-value";
    let mut doc = valid();
    set(&mut doc, "/proxmox/token_secret", json!(secret));
    let err = load(&doc).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("\n  proxmox.token_secret: "), "{text}");
    assert!(!text.contains(secret), "{text}");
    assert!(!format!("{err:?}").contains(secret));
}

#[test]
fn an_unreadable_ca_file_fails_when_the_client_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let mut p = proxmox(json!({ "fingerprint_sha256": FP }), PVE_SECRET);
    p.tls = TlsTrust::CaFile(missing.clone());
    // The conversion itself is pure...
    let _ = pve::client_config(&p);
    // ...the client reads the file and names it.
    let e = pve::client(&p).unwrap_err();
    assert!(matches!(e, pve::PveConfigError::Client(_)));
    assert!(e.to_string().contains("missing-ca.pem"), "{e}");
}

#[test]
fn reconcile_source_defaults_and_conflicts() {
    let mut doc = valid();
    doc["reconcile"] = json!({"source": "FILE"});
    assert_eq!(load(&doc).unwrap().reconcile.source, ReconcileSource::File);
    doc["reconcile"] = json!({"source": "hub"});
    assert_eq!(load(&doc).unwrap().reconcile.source, ReconcileSource::Hub);
    doc["reconcile"] = json!({"source": "hub", "desired_state_file": "/etc/felhom-agent/d.json"});
    let p = problems(&doc);
    assert!(
        p.iter().any(|p| p.starts_with(
            "reconcile.source: \"hub\" and reconcile.desired_state_file are both set"
        )),
        "{p:?}"
    );
    doc["reconcile"] = json!({"source": "git"});
    let p = problems(&doc);
    assert!(
        p.iter()
            .any(|p| p.contains("reconcile.source: expected file or hub, got \"git\"")),
        "{p:?}"
    );
    doc["reconcile"] = json!({"source": "hub"});
    doc.as_object_mut().unwrap().remove("hub");
    let p = problems(&doc);
    assert!(
        p.iter()
            .any(|p| p.contains("reconcile.source: \"hub\" needs the hub section")),
        "{p:?}"
    );
    // No hub, no file: the file source with nothing to read.
    doc["reconcile"] = json!({});
    assert_eq!(load(&doc).unwrap().reconcile.source, ReconcileSource::File);
    // The environment overlay sets it too.
    let mut doc = valid();
    doc["reconcile"] = json!({"desired_state_file": "/etc/felhom-agent/d.json"});
    let p = problems_with(&doc, &[("FELHOM_AGENT_RECONCILE_SOURCE", "hub")]);
    assert!(p.iter().any(|p| p.contains("both set")), "{p:?}");
}

#[test]
fn metrics_listen_is_off_by_default_and_a_literal_address() {
    assert_eq!(load(&valid()).unwrap().metrics.listen, None);
    let c = load(&with("/metrics", json!({"listen": "127.0.0.1:9731"}))).unwrap();
    let listen = c.metrics.listen.unwrap();
    assert_eq!(listen.to_string(), "127.0.0.1:9731");
    assert!(listen.is_loopback());
    assert_eq!(
        load(&with("/metrics", json!({"listen": null})))
            .unwrap()
            .metrics
            .listen,
        None
    );
    assert_eq!(
        problems(&with("/metrics", json!({"listen": "localhost:9731"}))),
        [
            "metrics.listen: expected IP:PORT such as \"127.0.0.1:9731\" or \"[::1]:9731\" (a \
          literal address, no host name), got \"localhost:9731\""
        ]
    );
    assert_eq!(
        problems(&with("/metrics", json!({"listen": 9731}))),
        ["metrics.listen: expected a string, got a whole number"]
    );
    assert_eq!(
        problems(&with("/metrics", json!({"listn": "127.0.0.1:9731"}))),
        ["metrics.listn: unknown key (did you mean listen?)"]
    );
    // The overlay sets it too, and its problems name the variable.
    let c = load_with(&valid(), &[("FELHOM_AGENT_METRICS_LISTEN", "[::1]:9731")]).unwrap();
    assert_eq!(c.metrics.listen.unwrap().to_string(), "[::1]:9731");
    let p = problems_with(&valid(), &[("FELHOM_AGENT_METRICS_LISTEN", "nowhere")]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("metrics.listen: expected IP:PORT")
            && p[0].ends_with("(set by FELHOM_AGENT_METRICS_LISTEN)"),
        "{p:?}"
    );
}

// --- restore_tests ------------------------------------------------------------------------

#[test]
fn restore_tests_default_off_and_parse_into_domain_types() {
    let c = load(&valid()).unwrap();
    assert_eq!(c.restore_tests, RestoreTestsConfig::default());
    assert!(!c.restore_tests.enabled);
    assert_eq!(c.restore_tests.vmid_range.to_string(), "9000-9099");

    let mut doc = valid();
    doc["restore_tests"] = json!({
        "enabled": true, "every_hours": 6, "storage": "local-lvm", "vmid_range": "9500-9503",
        "boot_timeout_seconds": 30, "max_concurrent": 2
    });
    let r = load(&doc).unwrap().restore_tests;
    assert!(r.enabled);
    assert_eq!(r.every, Duration::from_secs(6 * 3600));
    assert_eq!(r.storage.as_deref(), Some("local-lvm"));
    assert_eq!((r.vmid_range.first(), r.vmid_range.last()), (9500, 9503));
    assert_eq!(r.boot_timeout, Duration::from_secs(30));
    assert_eq!(r.max_concurrent, 2);

    // the environment overlay reaches every key
    let r = load_with(
        &valid(),
        &[
            ("FELHOM_AGENT_RESTORE_TESTS_ENABLED", "true"),
            ("FELHOM_AGENT_RESTORE_TESTS_STORAGE", "scratch"),
            ("FELHOM_AGENT_RESTORE_TESTS_VMID_RANGE", "9100-9100"),
        ],
    )
    .unwrap()
    .restore_tests;
    assert!(r.enabled);
    assert_eq!(r.storage.as_deref(), Some("scratch"));
    assert_eq!(r.vmid_range.len(), 1);
}

#[test]
fn restore_tests_problems_name_their_key() {
    let rt = |v: Value| {
        let mut doc = valid();
        doc["restore_tests"] = v;
        problems(&doc)
    };
    assert_eq!(
        rt(json!({"enabled": true})),
        ["restore_tests.storage: required when restore_tests.enabled is true"]
    );
    assert_eq!(
        rt(json!({"vmid_range": "9099-9000"})),
        ["restore_tests.vmid_range: first 9099 is above last 9000"]
    );
    assert_eq!(
        rt(json!({"vmid_range": "9000"})),
        ["restore_tests.vmid_range: expected \"FIRST-LAST\" (e.g. \"9000-9099\"), got \"9000\""]
    );
    assert_eq!(
        rt(json!({"vmid_range": "10-20"})),
        ["restore_tests.vmid_range: each end must be between 100 and 999999999, got 10"]
    );
    assert_eq!(
        rt(json!({"vmid_range": "9000-9000", "max_concurrent": 2})),
        ["restore_tests.vmid_range: holds 1 vmid(s), fewer than restore_tests.max_concurrent (2)"]
    );
    assert_eq!(
        rt(json!({"every_hours": 0, "boot_timeout_seconds": 5, "max_concurrent": 9})),
        [
            "restore_tests.every_hours: must be between 1 and 720, got 0",
            "restore_tests.boot_timeout_seconds: must be between 10 and 3600, got 5",
            "restore_tests.max_concurrent: must be between 1 and 4, got 9",
        ]
    );
    assert_eq!(
        rt(json!({"enabled": "yes", "storage": "9bad/id"})),
        [
            "restore_tests.enabled: expected true or false, got a string",
            "restore_tests.storage: expected a storage id (a letter, then letters, digits, '-', \
             '_' or '.'), got \"9bad/id\"",
        ]
    );
    assert_eq!(
        rt(json!({"vmid_rnage": "1-2"})),
        ["restore_tests.vmid_rnage: unknown key (did you mean vmid_range?)"]
    );
}
