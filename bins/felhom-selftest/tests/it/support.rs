//! Shared harness: start a simulator, write a config pinned to it, run the binary, and check
//! that no run ever prints the token secret or the hub key.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use felhom_pve_sim::{
    PveSim, SimConfig, TokenSpec, DEFAULT_HUB_API_KEY, DEFAULT_TOKEN_ID, DEFAULT_TOKEN_SECRET,
};
use felhom_testkit::config;
use serde_json::{json, Value};
use tempfile::TempDir;

/// Longest a single run may take: the simulator's tasks last 50 ms, so this is generous.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A running simulator and a temp dir holding a config for it.
pub struct Host {
    pub sim: PveSim,
    /// Holds the config; removed on drop.
    pub _dir: TempDir,
    pub config: PathBuf,
}

impl Host {
    /// The default simulated host, with the config pinned to its certificate.
    pub async fn start() -> Host {
        Host::with(SimConfig::default()).await
    }

    /// A simulated host from `sim_config`, with the default token in the config.
    pub async fn with(sim_config: SimConfig) -> Host {
        let sim = PveSim::start(sim_config).await.expect("simulator starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("agent.json");
        let host = Host {
            sim,
            _dir: dir,
            config,
        };
        host.write_config(host.proxmox_section());
        host
    }

    /// The `proxmox` section pointing at the simulator, pinned to its fingerprint.
    pub fn proxmox_section(&self) -> Value {
        config::proxmox_section(&self.sim)
    }

    /// Rewrites the config file with this `proxmox` section (no hub: the proxmox self-tests
    /// run without one).
    pub fn write_config(&self, proxmox: Value) {
        self.write_doc(json!({ "proxmox": proxmox }));
    }

    /// Rewrites the config file with the whole document `doc`.
    pub fn write_doc(&self, doc: Value) {
        config::write_json(&self.config, &doc).expect("write config");
    }

    /// Runs `felhom-selftest --config <config> ARGS`.
    pub async fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["--config", self.config.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        selftest(&all).await
    }
}

impl Host {
    /// Like [`Host::run`], but sends SIGINT (Ctrl-C) to the binary as soon as `when` holds
    /// for the simulator.
    pub async fn run_interrupted(&self, args: &[&str], when: impl Fn(&PveSim) -> bool) -> Run {
        let mut all = vec!["--config", self.config.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        let child = spawn(&all);
        let pid = child.id().expect("child pid");
        let deadline = tokio::time::Instant::now() + RUN_TIMEOUT;
        while !when(&self.sim) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the interrupt condition never held"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let status = tokio::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -INT {pid} failed");
        finish(child, &all).await
    }
}

/// The default agent token minus `missing`, its user an administrator.
pub fn token_without(missing: &[&str]) -> TokenSpec {
    felhom_testkit::pve::token_without(DEFAULT_TOKEN_ID, DEFAULT_TOKEN_SECRET, missing)
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts the exit status, showing the output otherwise.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit status\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts stdout contains `text`.
    #[track_caller]
    pub fn expect_stdout(&self, text: &str) -> &Run {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts stderr contains `text`.
    #[track_caller]
    pub fn expect_stderr(&self, text: &str) -> &Run {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not json ({e}):\n{}", self.stdout))
    }

    /// The failed checks' lines.
    pub fn failures(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("[FAIL]"))
            .collect()
    }
}

/// Runs the built binary with `args` and a clean environment (no stray `FELHOM_AGENT_*`
/// overlay, no `RUST_LOG`), and checks that neither the token secret nor the hub simulator's
/// default key appears anywhere in its output.
pub async fn selftest(args: &[&str]) -> Run {
    finish(spawn(args), args).await
}

fn spawn(args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_felhom-selftest"))
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn felhom-selftest")
}

async fn finish(child: tokio::process::Child, args: &[&str]) -> Run {
    let out = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("felhom-selftest {args:?} did not finish in {RUN_TIMEOUT:?}"))
        .expect("wait for felhom-selftest");
    let run = Run {
        code: out.status.code().expect("exited, not killed by a signal"),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    };
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(
            !text.contains(DEFAULT_TOKEN_SECRET),
            "the token secret reached {stream} of {args:?}:\n{text}"
        );
        assert!(
            !text.contains(DEFAULT_HUB_API_KEY),
            "the hub key reached {stream} of {args:?}:\n{text}"
        );
    }
    run
}
