//! The heartbeat loop: collect a host report and POST it to the hub, at once and then on the
//! poll interval, adopting the interval the hub asks for (clamped), until cancelled.
//!
//! Any error (collect or report) is logged and counted, never fatal: the next beat comes on
//! the current interval. Sleeping uses tokio's clock, so tests drive it with a paused clock.
//! Cancellation is prompt in every state: while sleeping the loop returns at once; an
//! in-flight collect or report is dropped (a report is a heartbeat, not a mutation: the hub
//! may or may not have recorded it, and the next run sends a fresh one).
//!
//! Beats collect incrementally through [`HeartbeatSettings::guest_cache`] (see
//! [`collector`]): a steady beat reads the node status, the guest list and the storages, not
//! every guest's config, over connections kept open from the beat before.
//!
//! The interval decision ([`adopt_interval`]) and the status bookkeeping are pure.

use std::fmt;
use std::time::{Duration, SystemTime};

use felhom_hub_proto::{ControlEnvelope, HostReport};
use felhom_proxmox::ProxmoxApi;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cloudflared::CloudflaredProber;
use crate::collector::{self, CollectError, CollectOptions, GuestCache};
use crate::hub::{HubClient, HubError};

/// The shortest poll interval the agent accepts from the hub (SPEC §7).
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// The longest poll interval the agent accepts from the hub (SPEC §7).
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(3600);

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct HeartbeatSettings {
    /// What each report is stamped with and how many guest configs are read at once.
    pub collect: CollectOptions,
    /// The configured interval (`hub.poll_seconds`): used until the hub asks for another, and
    /// again whenever an envelope asks for none.
    pub interval: Duration,
    /// Lower bound of any interval (the hub's and the configured one).
    pub min_interval: Duration,
    /// Upper bound of any interval.
    pub max_interval: Duration,
    /// The wall clock stamped on reports and the status (injectable for tests).
    pub wall_clock: fn() -> SystemTime,
    /// Guest configs kept between beats (full resync every 10th beat by default). Hand a clone
    /// to the reconcile engine so its writes [`GuestCache::invalidate`] what they touch.
    pub guest_cache: GuestCache,
}

impl HeartbeatSettings {
    /// Default collect options for `host_id`, `interval` as configured, bounds
    /// [`MIN_POLL_INTERVAL`]..=[`MAX_POLL_INTERVAL`], the system clock.
    pub fn new(host_id: impl Into<String>, interval: Duration) -> Self {
        HeartbeatSettings {
            collect: CollectOptions::new(host_id),
            interval,
            min_interval: MIN_POLL_INTERVAL,
            max_interval: MAX_POLL_INTERVAL,
            wall_clock: SystemTime::now,
            guest_cache: GuestCache::default(),
        }
    }

    /// The configured interval within the bounds.
    pub fn configured_interval(&self) -> Duration {
        clamp(self.interval, self.min_interval, self.max_interval)
    }
}

fn clamp(d: Duration, min: Duration, max: Duration) -> Duration {
    // `max` wins if the bounds are crossed, rather than panicking like `Ord::clamp`.
    d.max(min).min(max)
}

/// The interval after an envelope: the hub's `poll_interval_seconds` within `[min, max]`, or
/// the configured interval (within the bounds too) when the hub asks for none.
pub fn adopt_interval(
    configured: Duration,
    envelope: &ControlEnvelope,
    min: Duration,
    max: Duration,
) -> Duration {
    match envelope.poll_interval_seconds {
        Some(secs) => clamp(Duration::from_secs(secs), min, max),
        None => clamp(configured, min, max),
    }
}

/// What the loop has done so far: for the daemon's `STATUS=` line and its health checks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeartbeatStatus {
    /// When the last report was accepted by the hub (wall clock).
    pub last_success: Option<SystemTime>,
    /// When the last beat started (wall clock).
    pub last_attempt: Option<SystemTime>,
    /// Beats that failed since the last success (0 after a success).
    pub consecutive_failures: u32,
    /// Reports the hub accepted since the loop started.
    pub reports_sent: u64,
    /// The interval in force now.
    pub interval: Duration,
    /// The last error, one line; cleared by a success.
    pub last_error: Option<String>,
    /// The hub's last answer.
    pub last_envelope: Option<ControlEnvelope>,
}

impl fmt::Display for HeartbeatStatus {
    /// One line for systemd's `STATUS=`, e.g. `reports: 12 sent, last 2026-11-23T10:00:00Z;
    /// interval 60s` or `... ; 3 failures in a row: hub report: ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "reports: {} sent", self.reports_sent)?;
        match self.last_success {
            Some(t) => write!(f, ", last {}", collector::timestamp(t))?,
            None => f.write_str(", none yet")?,
        }
        write!(f, "; interval {}s", self.interval.as_secs())?;
        if self.consecutive_failures > 0 {
            write!(f, "; {} failures in a row", self.consecutive_failures)?;
            if let Some(e) = &self.last_error {
                write!(f, ": {e}")?;
            }
        }
        Ok(())
    }
}

/// How one beat ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum BeatOutcome<'a> {
    /// The hub accepted the report and answered `envelope`.
    Reported {
        /// What was sent.
        report: &'a HostReport,
        /// The hub's answer.
        envelope: &'a ControlEnvelope,
    },
    /// Nothing was sent: the report could not be collected.
    CollectFailed(&'a CollectError),
    /// The report was collected but not accepted.
    ReportFailed(&'a HubError),
}

/// One beat, as the observer sees it.
#[derive(Debug)]
pub struct Beat<'a> {
    /// What happened.
    pub outcome: BeatOutcome<'a>,
    /// The status after this beat.
    pub status: &'a HeartbeatStatus,
    /// How long until the next beat starts (counted from this beat's start).
    pub next_in: Duration,
}

/// Told about every beat, after the status is updated and before the loop sleeps. Runs on the
/// loop's task: keep it short (send to a channel to do more).
pub trait HeartbeatObserver: Send {
    /// One beat ended.
    fn on_beat(&mut self, beat: &Beat<'_>);
}

impl<F: FnMut(&Beat<'_>) + Send> HeartbeatObserver for F {
    fn on_beat(&mut self, beat: &Beat<'_>) {
        self(beat)
    }
}

/// An observer that ignores every beat.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl HeartbeatObserver for NoObserver {
    fn on_beat(&mut self, _beat: &Beat<'_>) {}
}

/// An owned beat result, before it is lent to the observer.
enum Done {
    Reported(Box<HostReport>, ControlEnvelope),
    CollectFailed(CollectError),
    ReportFailed(HubError),
}

async fn beat_once<A, P>(
    api: &A,
    prober: &P,
    hub: &HubClient,
    options: &CollectOptions,
    cache: &GuestCache,
    now: SystemTime,
) -> Done
where
    A: ProxmoxApi + ?Sized,
    P: CloudflaredProber + ?Sized,
{
    let report = match collector::collect_cached(api, prober, options, cache, now).await {
        Ok((r, _)) => r,
        Err(e) => return Done::CollectFailed(e),
    };
    match hub.report(&report).await {
        Ok(envelope) => Done::Reported(Box::new(report), envelope),
        Err(e) => Done::ReportFailed(e),
    }
}

/// Runs the loop until `cancel` fires; returns the final status.
///
/// The first beat starts at once; each next one starts the current interval after the
/// previous one started (at once if that moment has passed).
pub async fn run<A, P, O>(
    api: &A,
    prober: &P,
    hub: &HubClient,
    settings: &HeartbeatSettings,
    cancel: CancellationToken,
    mut observer: O,
) -> HeartbeatStatus
where
    A: ProxmoxApi + ?Sized,
    P: CloudflaredProber + ?Sized,
    O: HeartbeatObserver,
{
    let mut status = HeartbeatStatus {
        interval: settings.configured_interval(),
        ..HeartbeatStatus::default()
    };
    tracing::info!(
        url = %hub.report_url(),
        interval_seconds = status.interval.as_secs(),
        "heartbeat started"
    );
    loop {
        let started = Instant::now();
        let now = (settings.wall_clock)();
        status.last_attempt = Some(now);
        let done = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            done = beat_once(api, prober, hub, &settings.collect, &settings.guest_cache, now) => done,
        };
        let outcome = match &done {
            Done::Reported(report, envelope) => {
                let guests = report.guests.len();
                record_success(
                    &mut status,
                    settings,
                    envelope,
                    now,
                    guests,
                    hub.report_url(),
                );
                BeatOutcome::Reported { report, envelope }
            }
            Done::CollectFailed(e) => {
                record_failure(&mut status, e.to_string());
                tracing::warn!(
                    error = %e,
                    consecutive_failures = status.consecutive_failures,
                    "host report skipped: collecting failed"
                );
                BeatOutcome::CollectFailed(e)
            }
            Done::ReportFailed(e) => {
                record_failure(&mut status, e.to_string());
                tracing::warn!(
                    error = %e,
                    consecutive_failures = status.consecutive_failures,
                    "host report failed"
                );
                BeatOutcome::ReportFailed(e)
            }
        };
        let next_in = status.interval;
        observer.on_beat(&Beat {
            outcome,
            status: &status,
            next_in,
        });
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep_until(started + next_in) => {}
        }
    }
    tracing::info!(
        url = %hub.report_url(),
        reports_sent = status.reports_sent,
        "heartbeat stopped"
    );
    status
}

fn record_failure(status: &mut HeartbeatStatus, error: String) {
    status.consecutive_failures = status.consecutive_failures.saturating_add(1);
    status.last_error = Some(error);
}

fn record_success(
    status: &mut HeartbeatStatus,
    settings: &HeartbeatSettings,
    envelope: &ControlEnvelope,
    now: SystemTime,
    guests: usize,
    url: &str,
) {
    if status.consecutive_failures > 0 {
        tracing::info!(
            %url,
            guests,
            after_failures = status.consecutive_failures,
            first = status.reports_sent == 0,
            "host report accepted again"
        );
    } else if status.reports_sent == 0 {
        tracing::info!(%url, guests, "first host report accepted by the hub");
    } else {
        tracing::debug!(%url, guests, "host report accepted");
    }
    // Whether the host is blocked is the daemon's to decide (a block is sticky across answers
    // that say nothing, and persisted); the loop only hands the envelope on.
    let interval = adopt_interval(
        settings.interval,
        envelope,
        settings.min_interval,
        settings.max_interval,
    );
    if interval != status.interval {
        tracing::info!(
            %url,
            from_seconds = status.interval.as_secs(),
            to_seconds = interval.as_secs(),
            hub_asked = ?envelope.poll_interval_seconds,
            "poll interval changed"
        );
        status.interval = interval;
    }
    status.reports_sent += 1;
    status.consecutive_failures = 0;
    status.last_error = None;
    status.last_success = Some(now);
    status.last_envelope = Some(envelope.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn env(secs: Option<u64>) -> ControlEnvelope {
        ControlEnvelope {
            poll_interval_seconds: secs,
            ..ControlEnvelope::default()
        }
    }

    #[test]
    fn the_hubs_interval_is_clamped() {
        let (min, max) = (MIN_POLL_INTERVAL, MAX_POLL_INTERVAL);
        assert_eq!(adopt_interval(S(60), &env(Some(5)), min, max), S(60));
        assert_eq!(adopt_interval(S(60), &env(Some(0)), min, max), S(60));
        assert_eq!(adopt_interval(S(60), &env(Some(300)), min, max), S(300));
        assert_eq!(adopt_interval(S(60), &env(Some(99_999)), min, max), S(3600));
        assert_eq!(
            adopt_interval(S(60), &env(Some(u64::MAX)), min, max),
            S(3600)
        );
        // No wish: back to the configured interval.
        assert_eq!(adopt_interval(S(120), &env(None), min, max), S(120));
        assert_eq!(adopt_interval(S(1), &env(None), min, max), S(60));
        // Other bounds (a test floor) are honoured; crossed bounds do not panic.
        assert_eq!(adopt_interval(S(60), &env(Some(1)), S(1), S(10)), S(1));
        assert_eq!(adopt_interval(S(60), &env(Some(5)), S(10), S(1)), S(1));
    }

    fn settings() -> HeartbeatSettings {
        HeartbeatSettings::new("pve-01", S(60))
    }

    #[test]
    fn status_tracks_successes_and_failures() {
        let s = settings();
        let mut st = HeartbeatStatus {
            interval: s.configured_interval(),
            ..HeartbeatStatus::default()
        };
        let t0 = SystemTime::UNIX_EPOCH + S(1_795_428_000);
        assert_eq!(st.to_string(), "reports: 0 sent, none yet; interval 60s");
        record_failure(&mut st, "hub report: x answered 500: oops".into());
        record_failure(&mut st, "hub report: x answered 503: busy".into());
        assert_eq!(st.consecutive_failures, 2);
        assert_eq!(
            st.to_string(),
            "reports: 0 sent, none yet; interval 60s; 2 failures in a row: hub report: x answered 503: busy"
        );
        record_success(&mut st, &s, &env(Some(300)), t0, 2, "https://hub/x");
        assert_eq!(st.consecutive_failures, 0);
        assert_eq!(st.last_error, None);
        assert_eq!(st.reports_sent, 1);
        assert_eq!(st.interval, S(300));
        assert_eq!(st.last_success, Some(t0));
        assert_eq!(
            st.to_string(),
            "reports: 1 sent, last 2026-11-23T10:00:00Z; interval 300s"
        );
        record_success(&mut st, &s, &env(None), t0 + S(300), 2, "https://hub/x");
        assert_eq!(
            st.interval,
            S(60),
            "an envelope without a wish restores the configured interval"
        );
        assert_eq!(st.reports_sent, 2);
    }

    #[test]
    fn the_configured_interval_is_bounded_too() {
        let mut s = settings();
        s.interval = S(10);
        assert_eq!(s.configured_interval(), S(60));
        s.interval = S(10_000);
        assert_eq!(s.configured_interval(), S(3600));
    }
}
