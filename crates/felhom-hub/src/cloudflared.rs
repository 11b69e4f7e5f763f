//! Whether the host's `cloudflared` service runs: the `CloudflaredProber` trait, its live
//! implementation `SystemctlProber` (`systemctl is-active cloudflared`), and `FixedProber`.
//!
//! The probe is read-only: `systemctl is-active` only asks systemd for a unit's state; it
//! changes nothing and needs no privilege. (felhom-proxmox's rule that only its `privileged`
//! module spawns processes is about that crate; this probe lives here on purpose.) It runs
//! without a shell, with a timeout, and is killed if the caller stops waiting.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use felhom_hub_proto::ServiceState;
use tokio::io::AsyncReadExt;

/// The unit the live probe asks about.
pub const CLOUDFLARED_UNIT: &str = "cloudflared";

/// How long the live probe may take before it reports `Unknown`.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most bytes of `systemctl` output read; its answer is one short word.
const MAX_OUTPUT_BYTES: u64 = 4096;

/// Tells whether `cloudflared` runs. Never fails: what cannot be told is
/// [`ServiceState::Unknown`].
pub trait CloudflaredProber: Send + Sync {
    /// Probes once.
    fn probe(&self) -> impl Future<Output = ServiceState> + Send;
}

impl<T: CloudflaredProber + ?Sized> CloudflaredProber for &T {
    fn probe(&self) -> impl Future<Output = ServiceState> + Send {
        (**self).probe()
    }
}

impl<T: CloudflaredProber + ?Sized> CloudflaredProber for std::sync::Arc<T> {
    fn probe(&self) -> impl Future<Output = ServiceState> + Send {
        (**self).probe()
    }
}

/// Always answers the same state: for hosts without systemd (the demo) and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedProber(pub ServiceState);

impl CloudflaredProber for FixedProber {
    async fn probe(&self) -> ServiceState {
        self.0
    }
}

/// Maps the first line of `systemctl is-active` output to a state.
///
/// `active`, `reloading` and `refreshing` mean the service runs; `inactive`, `failed`,
/// `activating`, `deactivating` and `maintenance` mean it does not (now); anything else
/// (empty output, `unknown`, text from a newer systemd) is not a state this agent can vouch
/// for.
pub fn classify_is_active(output: &str) -> ServiceState {
    match output.lines().next().unwrap_or("").trim() {
        "active" | "reloading" | "refreshing" => ServiceState::Active,
        "inactive" | "failed" | "activating" | "deactivating" | "maintenance" => {
            ServiceState::Inactive
        }
        _ => ServiceState::Unknown,
    }
}

/// The live probe: runs `systemctl is-active cloudflared` (no shell, stdin closed, stderr
/// discarded) and classifies its first line. The exit code is not used: `is-active` exits
/// non-zero for every state but `active`, and the word says more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemctlProber {
    program: PathBuf,
    unit: String,
    timeout: Duration,
}

impl Default for SystemctlProber {
    fn default() -> Self {
        SystemctlProber {
            program: PathBuf::from("systemctl"),
            unit: CLOUDFLARED_UNIT.to_string(),
            timeout: PROBE_TIMEOUT,
        }
    }
}

impl SystemctlProber {
    /// `systemctl is-active cloudflared`, 5 s timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `program` instead of `systemctl` (found on `PATH` when not absolute): for tests.
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = program.into();
        self
    }

    /// Another timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn run(&self) -> Result<String, String> {
        let mut child = tokio::process::Command::new(&self.program)
            .arg("is-active")
            .arg(&self.unit)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        let mut out = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            stdout
                .take(MAX_OUTPUT_BYTES)
                .read_to_end(&mut out)
                .await
                .map_err(|e| format!("reading {} output: {e}", self.program.display()))?;
        }
        // Reap it; the exit status itself carries nothing the output does not.
        let _ = child.wait().await;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

impl CloudflaredProber for SystemctlProber {
    async fn probe(&self) -> ServiceState {
        // On timeout the future is dropped and `kill_on_drop` ends the process.
        match tokio::time::timeout(self.timeout, self.run()).await {
            Ok(Ok(output)) => {
                let state = classify_is_active(&output);
                if state == ServiceState::Unknown {
                    tracing::debug!(unit = %self.unit, output = %output.trim(), "unrecognized systemctl is-active answer");
                }
                state
            }
            Ok(Err(detail)) => {
                tracing::debug!(unit = %self.unit, %detail, "cloudflared probe failed");
                ServiceState::Unknown
            }
            Err(_) => {
                tracing::warn!(unit = %self.unit, timeout = ?self.timeout, "cloudflared probe timed out");
                ServiceState::Unknown
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_active_words_map_to_states() {
        for (out, want) in [
            ("active\n", ServiceState::Active),
            ("reloading\n", ServiceState::Active),
            ("inactive\n", ServiceState::Inactive),
            ("failed\n", ServiceState::Inactive),
            ("activating\n", ServiceState::Inactive),
            ("deactivating", ServiceState::Inactive),
            ("  inactive  \nextra", ServiceState::Inactive),
            ("", ServiceState::Unknown),
            ("unknown\n", ServiceState::Unknown),
            ("Active\n", ServiceState::Unknown),
            (
                "Failed to connect to bus: No such file or directory\n",
                ServiceState::Unknown,
            ),
        ] {
            assert_eq!(classify_is_active(out), want, "{out:?}");
        }
    }

    #[tokio::test]
    async fn a_missing_program_is_unknown() {
        let p = SystemctlProber::new().with_program("/nonexistent/felhom-test/systemctl");
        assert_eq!(p.probe().await, ServiceState::Unknown);
    }

    #[tokio::test]
    async fn fixed_and_shared_probers_answer_their_state() {
        let p = FixedProber(ServiceState::Inactive);
        assert_eq!(p.probe().await, ServiceState::Inactive);
        assert_eq!(CloudflaredProber::probe(&&p).await, ServiceState::Inactive);
        let shared = std::sync::Arc::new(FixedProber(ServiceState::Active));
        assert_eq!(shared.probe().await, ServiceState::Active);
    }
}
