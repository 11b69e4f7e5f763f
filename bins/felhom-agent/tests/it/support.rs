//! Shared harness: the simulators on loopback, a config for them in a temp dir, the built
//! `felhom-agent` binary as a child process with its stderr collected line by line, and a
//! SIGTERM sent with `kill` (unsafe code is denied, so no libc::kill).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use felhom_pve_sim::{HubSim, HubSimConfig, PveSim, SimConfig};
use felhom_testkit::config;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The hub key the tests configure (the hub simulator's default).
pub const HUB_KEY: &str = felhom_pve_sim::DEFAULT_HUB_API_KEY;
/// The host id the tests configure (the SSHSIG vectors target it).
pub const HOST_ID: &str = config::HOST_ID;

/// The built daemon.
pub fn agent_bin() -> &'static str {
    env!("CARGO_BIN_EXE_felhom-agent")
}

/// A file of the workspace (testdata, configs).
pub fn workspace_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// Both simulators and a temp dir with a config for them.
pub struct Env {
    pub pve: PveSim,
    pub hub: HubSim,
    pub dir: TempDir,
    pub config: PathBuf,
}

impl Env {
    /// Waits until `n` more reports than now reached the hub (within `within`).
    pub async fn more_reports(&self, n: usize, within: Duration) {
        let now = self.hub.report_count();
        self.hub
            .wait_for_reports(now + n, within)
            .await
            .expect("reports go on");
    }

    /// The default simulated host and a hub answering with `envelope_seconds` between reports.
    pub async fn start(envelope_seconds: u64) -> Env {
        Env::with(SimConfig::default(), envelope_seconds).await
    }

    /// A simulated host from `sim`, and the hub.
    pub async fn with(sim: SimConfig, envelope_seconds: u64) -> Env {
        let pve = PveSim::start(sim).await.expect("pve-sim starts");
        let mut hub_config = HubSimConfig::default();
        hub_config.envelope.poll_interval_seconds = Some(envelope_seconds);
        let hub = HubSim::start(hub_config).await.expect("hub-sim starts");
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("hub-ca.pem"), hub.ca_pem()).expect("hub CA");
        let config = dir.path().join("agent.json");
        let env = Env {
            pve,
            hub,
            dir,
            config,
        };
        env.write_config(env.config_doc());
        env
    }

    /// A path inside the temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The config the tests start from: pinned to pve-sim, the hub's CA, state in the temp
    /// dir, debug logs as text.
    pub fn config_doc(&self) -> Value {
        config::daemon_config(&self.pve, &self.hub.base_url(), self.dir.path(), "debug")
    }

    /// Writes `doc` as the config file.
    pub fn write_config(&self, doc: Value) {
        config::write_json(&self.config, &doc).expect("config");
    }

    /// Writes a desired-state file and points the config at it.
    pub fn desire(&self, desired: Value) {
        let file = self.path("desired.json");
        config::write_json(&file, &desired).expect("desired");
        let mut doc = self.config_doc();
        doc["reconcile"] = json!({ "desired_state_file": file });
        self.write_config(doc);
    }

    /// Starts the daemon on this config with extra arguments and environment.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut all = vec!["--config".to_owned(), self.config.display().to_string()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        Daemon::spawn(&all, env)
    }
}

/// A running daemon; its stderr lines are collected as they come.
pub struct Daemon {
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Daemon {
    /// The address the daemon logged for its metrics listener (`metrics.listen` with port 0).
    pub async fn metrics_addr(&self, timeout: Duration) -> String {
        const NEEDLE: &str = "metrics listening on http://";
        self.wait_for_lines(&[NEEDLE], 1, timeout).await;
        let line = self.lines_with(&[NEEDLE]).remove(0);
        let rest = line.split(NEEDLE).nth(1).unwrap_or_default();
        rest.split("/metrics").next().unwrap_or_default().to_owned()
    }

    /// Spawns `felhom-agent ARGS` with a clean environment plus `env`.
    pub fn spawn(args: &[String], env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(agent_bin());
        cmd.args(args)
            // No FELHOM_AGENT_* overlay, no JOURNAL_STREAM/NOTIFY_SOCKET from the test runner.
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("felhom-agent starts");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let reader = tokio::spawn(async move {
            let mut r = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = r.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Daemon {
            child,
            lines,
            reader,
        }
    }

    /// Every stderr line so far.
    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Lines containing every one of `needles`.
    pub fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .cloned()
            .collect()
    }

    /// Waits until `count` lines contain all of `needles`; panics with the log otherwise.
    pub async fn wait_for_lines(&self, needles: &[&str], count: usize, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.lines_with(needles).len() >= count {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "no {count} log lines with {needles:?} within {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends SIGTERM with `kill(1)`.
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends `SIG<name>` (`TERM`, `HUP`, `USR1`, `QUIT`) with `kill(1)`.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("still running")
    }

    /// Waits for the exit (at most `timeout`) and returns the status and the whole stderr.
    pub async fn wait(mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("did not exit within {timeout:?}; log:\n{}", self.log()))
            .expect("wait");
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.reader).await;
        (status, self.log())
    }

    /// SIGTERM, then the exit status and the whole stderr; asserts a clean exit within 10 s.
    pub async fn stop(self) -> String {
        self.sigterm();
        let (status, log) = self.wait(Duration::from_secs(10)).await;
        assert_eq!(status.code(), Some(0), "exit status; log:\n{log}");
        log
    }
}

/// Runs `felhom-agent ARGS` to completion (a command, not the daemon): exit code, stdout,
/// stderr.
pub async fn run(args: &[&str]) -> (i32, String, String) {
    run_with_env(args, &[]).await
}

/// [`run`] with `env` as the whole environment.
pub async fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(agent_bin())
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("finishes in time")
    .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
