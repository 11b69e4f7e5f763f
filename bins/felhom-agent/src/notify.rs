//! systemd notifications (`Type=notify`): `READY=1` once startup is done, `STATUS=` lines,
//! `WATCHDOG=1` pings at half of `WATCHDOG_USEC`, and `STOPPING=1` on shutdown. Everything is a
//! no-op when `NOTIFY_SOCKET` is not set (not under systemd, or in a test).

use std::time::Duration;

use sd_notify::NotifyState;

/// The longest `STATUS=` text sent (systemctl shows one line).
const MAX_STATUS_CHARS: usize = 400;

/// Sends notifications to systemd when it asked for them.
#[derive(Debug, Clone)]
pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From the environment systemd sets: `NOTIFY_SOCKET`, `WATCHDOG_USEC` (and
    /// `WATCHDOG_PID`, which must be this process when set).
    pub fn from_env() -> Self {
        Self {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty()),
            watchdog: sd_notify::watchdog_enabled(),
        }
    }

    /// How often to send `WATCHDOG=1`: half of systemd's watchdog timeout, if it set one.
    pub fn watchdog_period(&self) -> Option<Duration> {
        if !self.enabled {
            return None;
        }
        self.watchdog.map(ping_period)
    }

    /// Startup is done: `READY=1` with a status line.
    pub fn ready(&self, status: &str) {
        let status = status_text(status);
        self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    }

    /// A new status line for `systemctl status`.
    pub fn status(&self, status: &str) {
        let status = status_text(status);
        self.send(&[NotifyState::Status(&status)]);
    }

    /// The loops are healthy: `WATCHDOG=1`.
    pub fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// Shutting down: `STOPPING=1` with a status line.
    pub fn stopping(&self, status: &str) {
        let status = status_text(status);
        self.send(&[NotifyState::Stopping, NotifyState::Status(&status)]);
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        // A lost notification is not worth stopping for; systemd's own timeouts notice.
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }
}

/// Half the watchdog timeout (systemd's advice), never zero.
pub fn ping_period(watchdog: Duration) -> Duration {
    (watchdog / 2).max(Duration::from_millis(1))
}

/// One line of printable text: a newline would start another `KEY=value` assignment in the
/// notification datagram.
pub fn status_text(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_STATUS_CHARS)
        .collect();
    if s.chars().count() > MAX_STATUS_CHARS {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_pinged_at_half_its_timeout() {
        assert_eq!(
            ping_period(Duration::from_secs(60)),
            Duration::from_secs(30)
        );
        assert_eq!(
            ping_period(Duration::from_micros(1)),
            Duration::from_millis(1)
        );
        let n = Notifier {
            enabled: true,
            watchdog: Some(Duration::from_secs(20)),
        };
        assert_eq!(n.watchdog_period(), Some(Duration::from_secs(10)));
        let off = Notifier {
            enabled: false,
            watchdog: Some(Duration::from_secs(20)),
        };
        assert_eq!(off.watchdog_period(), None);
    }

    #[test]
    fn status_lines_cannot_inject_assignments() {
        assert_eq!(status_text("ok\nREADY=1"), "ok READY=1");
        assert_eq!(status_text("a\tb"), "a b");
        let long = "x".repeat(MAX_STATUS_CHARS + 10);
        let shown = status_text(&long);
        assert_eq!(shown.chars().count(), MAX_STATUS_CHARS + 1);
        assert!(shown.ends_with('…'));
    }
}
