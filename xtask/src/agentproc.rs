//! The real `felhom-agent` daemon as a child process of xtask, against the in-process
//! simulators: its config, its stderr collected line by line (echoed with a prefix, or kept
//! quiet), waits on log lines, its end (SIGTERM, SIGKILL, or its own) and its pid for `/proc`
//! sampling. Shared by `demo`, `crashpoints` and `soak`.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use felhom_pve_sim::{HubSim, HubSimConfig, PveSim};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

/// The test-only poll floor variable (`felhom_config::TEST_POLL_FLOOR_ENV`).
pub const POLL_FLOOR_ENV: &str = "FELHOM_AGENT_TEST_POLL_FLOOR_MS";
/// The test-only crash seam variable (`felhom_config::TEST_CRASH_AT_ENV`).
pub const CRASH_AT_ENV: &str = "FELHOM_AGENT_TEST_CRASH_AT";

/// The daemon's config: pinned to pve-sim, the hub's CA file (`hub-ca.pem`, written by the
/// caller), journal, nonce store and desired state in `dir`. Test values only: the simulators'
/// fixed token and key.
pub fn daemon_config(sim: &PveSim, hub_url: &str, dir: &Path) -> Value {
    let mut doc = felhom_testkit::config::daemon_config(sim, hub_url, dir, "info");
    doc["reconcile"] = json!({ "desired_state_file": dir.join("desired.json") });
    doc
}

/// A hub simulator whose envelope asks for `poll_interval_seconds`, a temp dir holding its CA
/// (`hub-ca.pem`), and the daemon's config for `sim` ([`daemon_config`]) — unwritten, so the
/// caller can adjust it before [`write_json`].
pub async fn hub_and_config(
    sim: &PveSim,
    poll_interval_seconds: u64,
) -> Result<(HubSim, tempfile::TempDir, Value)> {
    let mut hub_config = HubSimConfig::default();
    hub_config.envelope.poll_interval_seconds = Some(poll_interval_seconds);
    let hub = HubSim::start(hub_config)
        .await
        .context("starting hub-sim")?;
    let dir = tempfile::tempdir().context("temp dir")?;
    std::fs::write(dir.path().join("hub-ca.pem"), hub.ca_pem()).context("hub CA")?;
    let doc = daemon_config(sim, &hub.base_url(), dir.path());
    Ok((hub, dir, doc))
}

/// Writes `v` as pretty JSON.
pub fn write_json(path: &Path, v: &Value) -> Result<()> {
    felhom_testkit::config::write_json(path, v)
        .with_context(|| format!("writing {}", path.display()))
}

/// A running `felhom-agent run`.
pub struct Daemon {
    child: Child,
    pid: u32,
    lines: Arc<Mutex<Vec<String>>>,
    printer: tokio::task::JoinHandle<()>,
}

impl Daemon {
    /// Starts `bin --config config run` with only `env` set (no `FELHOM_AGENT_*` overlay from
    /// this process); its stderr lines are kept, and printed after `echo` when given.
    pub fn spawn(
        bin: &Path,
        config: &Path,
        env: &[(&str, String)],
        echo: Option<&'static str>,
    ) -> Result<Daemon> {
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(["--config".as_ref(), config.as_os_str(), "run".as_ref()])
            .env_clear()
            // the crash seam runs kill(1)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("the daemon has no pid")?;
        let stderr = child.stderr.take().context("the daemon's stderr")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let printer = tokio::spawn(async move {
            let mut r = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = r.next_line().await {
                if let Some(prefix) = echo {
                    println!("{prefix}{line}");
                }
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        Ok(Daemon {
            child,
            pid,
            lines,
            printer,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Every stderr line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The exit status, if the daemon has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `wait` for a log line after index `from` with every needle; its index.
    pub async fn wait_for_line(
        &mut self,
        from: usize,
        needles: &[&str],
        wait: Duration,
    ) -> Result<usize> {
        let deadline = Instant::now() + wait;
        loop {
            let found = self
                .lines()
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, l)| needles.iter().all(|n| l.contains(n)))
                .map(|(i, _)| i);
            if let Some(i) = found {
                return Ok(i);
            }
            if Instant::now() >= deadline {
                bail!("no log line with {needles:?} within {wait:?}");
            }
            if let Some(status) = self.exited() {
                bail!("the daemon exited early ({status}) while waiting for {needles:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits up to `wait` for the daemon to end by itself; then its stderr is complete.
    pub async fn wait_exit(&mut self, wait: Duration) -> Result<ExitStatus> {
        let status = tokio::time::timeout(wait, self.child.wait())
            .await
            .with_context(|| format!("the daemon did not exit within {wait:?}"))?
            .context("waiting for the daemon")?;
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.printer).await;
        Ok(status)
    }

    /// SIGKILL, and waits for the end.
    pub async fn kill(&mut self) -> Result<ExitStatus> {
        self.child.start_kill().context("sending SIGKILL")?;
        self.wait_exit(Duration::from_secs(10)).await
    }

    /// SIGTERM (with kill(1): unsafe code is denied, so no libc::kill), and waits up to `wait`.
    pub async fn terminate(&mut self, wait: Duration) -> Result<ExitStatus> {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .context("running kill")?;
        ensure!(sent.success(), "kill -TERM {} failed", self.pid);
        self.wait_exit(wait).await
    }
}

/// Whether `status` is a death by SIGKILL.
pub fn killed_by_sigkill(status: &ExitStatus) -> bool {
    status.signal() == Some(9)
}

/// The built `felhom-agent` among `binaries`.
pub fn agent_binary(binaries: &[(String, PathBuf)]) -> Result<PathBuf> {
    binaries
        .iter()
        .find(|(name, _)| name == "felhom-agent")
        .map(|(_, p)| p.clone())
        .context("felhom-agent was not built")
}
