//! What the daemon is doing, shared by its loops: the heartbeat's status (last report,
//! failures in a row, the hub's last envelope), the last reconcile pass, journal-less mode. It
//! renders systemd's `STATUS=` line and decides whether the loops are healthy enough to ping
//! the watchdog. Pure over values: the clock comes in as arguments.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use felhom_hub::heartbeat::HeartbeatStatus;
use felhom_reconcile::PassSummary;
use tokio::time::Instant;

use crate::durable::JOURNAL_LESS;

/// A reconcile pass running longer than this counts as stuck: the engine bounds each task wait
/// at 10 minutes, so a healthy pass ends well before.
pub const PASS_STUCK_AFTER: Duration = Duration::from_secs(15 * 60);

/// The daemon's shared status.
#[derive(Debug, Default)]
pub struct DaemonStatus {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Why the daemon runs without its journal (`None`: it has one).
    journal_less: Option<String>,
    /// Whether the hub blocks this host (sticky; see [`crate::block`]).
    blocked: bool,
    heartbeat: Option<HeartbeatStatus>,
    last_pass: Option<String>,
    pass_since: Option<Instant>,
}

/// Marks a pass as running until dropped.
#[derive(Debug)]
pub struct PassRunning<'a>(&'a DaemonStatus);

impl Drop for PassRunning<'_> {
    fn drop(&mut self) {
        self.0.lock().pass_since = None;
    }
}

impl DaemonStatus {
    /// A fresh status; `journal_less` says why the journal could not be opened, if it could not.
    pub fn new(journal_less: Option<String>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                journal_less,
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain values behind the lock: still whole after a panic elsewhere.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The journal became unusable (e.g. recovery could not write to it).
    pub fn set_journal_less(&self, reason: impl Into<String>) {
        self.lock().journal_less = Some(reason.into());
    }

    /// Why the daemon runs without its journal, if it does.
    pub fn journal_less(&self) -> Option<String> {
        self.lock().journal_less.clone()
    }

    /// The hub's block state changed (or was loaded at startup).
    pub fn set_blocked(&self, blocked: bool) {
        self.lock().blocked = blocked;
    }

    /// The heartbeat's status after a beat.
    pub fn beat(&self, heartbeat: &HeartbeatStatus) {
        self.lock().heartbeat = Some(heartbeat.clone());
    }

    /// Whether a first poll of the hub was attempted (its block state is then known).
    pub fn polled(&self) -> bool {
        self.lock().heartbeat.is_some()
    }

    /// Whether the hub's last answer blocked this host (then no desired state is applied).
    pub fn blocked(&self) -> bool {
        self.lock().blocked
    }

    /// A pass starts now (the returned guard ends it).
    pub fn pass_started(&self) -> PassRunning<'_> {
        self.lock().pass_since = Some(Instant::now());
        PassRunning(self)
    }

    /// A pass ended.
    pub fn pass_done(&self, result: Result<&PassSummary, &str>) {
        self.lock().last_pass = Some(match result {
            Ok(s) => format!(
                "planned {}, {} succeeded, {} failed",
                s.planned,
                s.succeeded,
                s.failed.len() + s.interrupted.len()
            ),
            Err(e) => format!("failed: {e}"),
        });
    }

    /// Whether the loops look alive at `now`: no reconcile pass stuck beyond
    /// [`PASS_STUCK_AFTER`]. (Whether the loop tasks still run is the caller's part.)
    pub fn healthy(&self, now: Instant) -> bool {
        self.lock()
            .pass_since
            .is_none_or(|since| now.saturating_duration_since(since) < PASS_STUCK_AFTER)
    }

    /// The `STATUS=` line: journal-less mode first, the heartbeat (last report, failures), the
    /// last pass.
    pub fn line(&self) -> String {
        let s = self.lock();
        let mut parts = Vec::new();
        if let Some(reason) = &s.journal_less {
            parts.push(format!("{JOURNAL_LESS} ({reason})"));
        }
        match &s.heartbeat {
            Some(h) => parts.push(h.to_string()),
            None => parts.push("no report yet".to_owned()),
        }
        if s.blocked {
            parts.push("BLOCKED by the hub: no desired state applied".to_owned());
        }
        if let Some(pass) = &s.last_pass {
            parts.push(format!("reconcile {pass}"));
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use felhom_hub_proto::ControlEnvelope;

    use super::*;

    #[test]
    fn the_status_line_tells_reports_failures_and_passes() {
        let s = DaemonStatus::new(None);
        assert_eq!(s.line(), "no report yet");
        let mut hb = HeartbeatStatus {
            last_success: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_428_300)),
            reports_sent: 3,
            interval: Duration::from_secs(60),
            last_envelope: Some(ControlEnvelope::default()),
            ..HeartbeatStatus::default()
        };
        s.beat(&hb);
        assert_eq!(
            s.line(),
            "reports: 3 sent, last 2026-11-23T10:05:00Z; interval 60s"
        );
        hb.consecutive_failures = 2;
        hb.last_error = Some("hub answered 503".into());
        s.beat(&hb);
        s.pass_done(Ok(&PassSummary::default()));
        assert_eq!(
            s.line(),
            "reports: 3 sent, last 2026-11-23T10:05:00Z; interval 60s; 2 failures in a row: hub \
             answered 503; reconcile planned 0, 0 succeeded, 0 failed"
        );
        s.pass_done(Err("desired state unavailable"));
        assert!(s
            .line()
            .ends_with("reconcile failed: desired state unavailable"));
        assert!(!s.blocked());
        s.set_blocked(true);
        assert!(s.blocked());
        assert!(s.line().contains("BLOCKED by the hub"), "{}", s.line());
    }

    #[test]
    fn journal_less_mode_leads_the_line() {
        let s = DaemonStatus::new(Some("journal /x: line 3 is corrupt".into()));
        assert!(
            s.line()
                .starts_with("JOURNAL-LESS MODE (journal /x: line 3 is corrupt); "),
            "{}",
            s.line()
        );
        let s = DaemonStatus::new(None);
        assert!(!s.line().contains("JOURNAL-LESS"));
        s.set_journal_less("recovery cannot write");
        assert!(s
            .line()
            .starts_with("JOURNAL-LESS MODE (recovery cannot write)"));
        assert_eq!(s.journal_less().as_deref(), Some("recovery cannot write"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pass_stuck_too_long_is_unhealthy() {
        let s = DaemonStatus::new(None);
        assert!(s.healthy(Instant::now()));
        let running = s.pass_started();
        tokio::time::advance(PASS_STUCK_AFTER - Duration::from_secs(1)).await;
        assert!(s.healthy(Instant::now()));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!s.healthy(Instant::now()));
        drop(running);
        assert!(s.healthy(Instant::now()));
    }
}
