//! Shared harness: the built binaries as child processes, ssh-keygen keys in temp dirs, and an
//! agent config pinning a key.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{json, Value};

/// The host id the tests sign for.
pub const HOST_ID: &str = "pve-01";

/// The built tool.
pub fn sign_bin() -> &'static str {
    env!("CARGO_BIN_EXE_felhom-sign")
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `felhom-agent` binary of this build profile, built on first use: another package's
/// binary has no `CARGO_BIN_EXE_*`, so the test asks cargo for it (a no-op when the workspace
/// test run already built it). Cargo releases its build lock before running tests.
pub fn agent_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test exe");
        // target/<profile>/deps/it-…
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>");
        let target_dir = profile_dir.parent().expect("target dir");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(other) => other,
            None => "dev",
        };
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "felhom-agent",
                "--bin",
                "felhom-agent",
            ])
            .args(["--profile", profile])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(workspace())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build -p felhom-agent: {status}");
        profile_dir.join("felhom-agent")
    })
}

/// An exit code, stdout and stderr.
pub struct Out {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Out {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `program ARGS` in `dir` with stdin closed and `env` on top of a PATH-only environment.
pub fn run_in(program: &Path, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `felhom-sign ARGS` in `dir`.
pub fn sign(dir: &Path, args: &[&str]) -> Out {
    run_in(Path::new(sign_bin()), dir, args, &[])
}

/// A fresh unencrypted ed25519 key `dir/name` (+ `.pub`) with comment `comment`.
pub fn keypair(dir: &Path, name: &str, comment: &str) -> PathBuf {
    let key = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(&key)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success());
    key
}

/// The public key line of `key`.
pub fn public_line(key: &Path) -> String {
    std::fs::read_to_string(key.with_extension("pub"))
        .expect("public key")
        .trim()
        .to_owned()
}

/// A signers file (JSON list, as the agent config's authz.signers) pinning `key` as `key_id`.
pub fn signers_file(dir: &Path, key_id: &str, key: &Path) -> PathBuf {
    let path = dir.join("signers.json");
    let doc = json!([{ "key_id": key_id, "role": "operational", "public_key": public_line(key) }]);
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    path
}

/// A felhom-agent config whose host is `pve-01`, pinning `key` (the shape of the agent's own
/// verify-op tests).
pub fn agent_config(dir: &Path, key_id: &str, key: &Path) -> PathBuf {
    let signers: Value =
        json!([{ "key_id": key_id, "role": "operational", "public_key": public_line(key) }]);
    let doc = json!({
        "proxmox": {
            "api_url": "https://pve.example.test:8006",
            "node": "pve",
            "token_id": "felhom@pve!agent",
            "token_secret": "00000000-0000-4000-8000-000000000000",
            "tls": { "fingerprint_sha256": ["5F:40:6C:F3:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:7F:23"] }
        },
        "hub": { "url": "https://hub.example.test", "host_id": HOST_ID, "api_key": "hub-key-abcdefghijklmnop" },
        "authz": { "nonce_store": dir.join("nonces.log"), "signers": signers }
    });
    let path = dir.join("agent.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    path
}

/// `felhom-agent --config CONFIG verify-op --blob BLOB --sig SIG`.
pub fn agent_verify(dir: &Path, config: &Path, blob: &Path, sig: &Path) -> Out {
    run_in(
        agent_bin(),
        dir,
        &[
            "--config",
            config.to_str().unwrap(),
            "verify-op",
            "--blob",
            blob.to_str().unwrap(),
            "--sig",
            sig.to_str().unwrap(),
        ],
        &[],
    )
}
