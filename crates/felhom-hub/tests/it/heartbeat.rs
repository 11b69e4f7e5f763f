//! The heartbeat loop against `PveSim` and `HubSim` over real TLS.
//!
//! Time: the TLS exchanges run on the real clock (a paused tokio clock auto-advances whenever
//! the runtime waits for a socket, which would fire request timeouts at random), and tokio's
//! clock is paused only while the loop sleeps between beats: the test waits until the
//! observer reports a beat (the loop is then parked in its sleep), pauses, advances the clock,
//! and resumes before the next exchange starts. So "an hour later" takes no real time.

use std::sync::Arc;
use std::time::Duration;

use felhom_hub::cloudflared::FixedProber;
use felhom_hub::heartbeat::{self, Beat, BeatOutcome, HeartbeatSettings, HeartbeatStatus};
use felhom_hub_proto::{ControlEnvelope, ServiceState};
use felhom_proxmox::PveClient;
use felhom_pve_sim::{HttpFault, HubFault, HubSim, PveSim};
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::{self, KEY};

/// Real-time bound for anything that should happen "at once".
const SOON: Duration = Duration::from_secs(10);

/// What the observer saw of one beat.
#[derive(Debug)]
struct Seen {
    kind: &'static str,
    detail: String,
    next_in: Duration,
    status: HeartbeatStatus,
    envelope: Option<ControlEnvelope>,
}

struct Rig {
    pve: PveSim,
    hub: HubSim,
    _dir: TempDir,
    beats: mpsc::UnboundedReceiver<Seen>,
    cancel: CancellationToken,
    task: JoinHandle<HeartbeatStatus>,
}

fn interval(hub_asks: Option<u64>) -> ControlEnvelope {
    ControlEnvelope {
        poll_interval_seconds: hub_asks,
        ..ControlEnvelope::default()
    }
}

/// Starts both simulators (the hub answering `envelope`) and the loop with `configured` as the
/// configured interval.
async fn start(envelope: ControlEnvelope, configured: Duration) -> Rig {
    let pve = support::pve().await;
    let hub = support::hub().await;
    hub.set_envelope(envelope);
    let dir = tempfile::tempdir().unwrap();
    let api: Arc<PveClient> = Arc::new(support::pve_client(&pve));
    let client = support::hub_client(&hub, &dir);
    let settings = HeartbeatSettings::new("pve-01", configured);
    let (tx, beats) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    let observer = move |beat: &Beat<'_>| {
        let (kind, detail, envelope) = match &beat.outcome {
            BeatOutcome::Reported { envelope, report } => (
                "reported",
                format!("{} guests", report.guests.len()),
                Some((*envelope).clone()),
            ),
            BeatOutcome::CollectFailed(e) => ("collect_failed", e.to_string(), None),
            BeatOutcome::ReportFailed(e) => ("report_failed", e.to_string(), None),
            _ => ("other", String::new(), None),
        };
        let _ = tx.send(Seen {
            kind,
            detail,
            next_in: beat.next_in,
            status: beat.status.clone(),
            envelope,
        });
    };
    let task = tokio::spawn(async move {
        heartbeat::run(
            &api,
            &FixedProber(ServiceState::Active),
            &client,
            &settings,
            token,
            observer,
        )
        .await
    });
    Rig {
        pve,
        hub,
        _dir: dir,
        beats,
        cancel,
        task,
    }
}

impl Rig {
    /// The next beat, which must come within [`SOON`] of real time.
    async fn beat(&mut self) -> Seen {
        tokio::time::timeout(SOON, self.beats.recv())
            .await
            .expect("a beat within 10 s")
            .expect("the loop is running")
    }

    /// With the loop asleep: jumps tokio's clock by `by` (which must end the sleep) and
    /// returns the beat that follows.
    async fn beat_after(&mut self, by: Duration) -> Seen {
        tokio::time::pause();
        tokio::time::advance(by).await;
        tokio::time::resume();
        self.beat().await
    }

    /// With the loop asleep: jumps tokio's clock by `by`, which must NOT end the sleep.
    async fn nothing_within(&mut self, by: Duration) {
        let reports = self.hub.requests().len();
        tokio::time::pause();
        tokio::time::advance(by).await;
        // Let anything woken run; without a runnable task the clock stays where it is.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let early = self.beats.try_recv();
        tokio::time::resume();
        assert!(early.is_err(), "a beat came early: {early:?}");
        assert_eq!(self.hub.requests().len(), reports, "a request came early");
    }

    async fn stop(self) -> HeartbeatStatus {
        self.cancel.cancel();
        tokio::time::timeout(SOON, self.task)
            .await
            .expect("the loop stops at once")
            .unwrap()
    }
}

#[tokio::test]
async fn the_first_report_is_immediate_and_a_too_short_wish_becomes_a_minute() {
    let mut rig = start(interval(Some(5)), Duration::from_secs(60)).await;
    // Immediate: it came within `SOON` of real time with tokio's clock never advanced, so the
    // loop did not sleep an interval first.
    let first = rig.beat().await;
    assert_eq!(first.kind, "reported", "{first:?}");
    assert_eq!(first.detail, "2 guests");
    assert_eq!(
        first.next_in,
        Duration::from_secs(60),
        "5 s is clamped up to 60 s"
    );
    assert_eq!(first.envelope, Some(interval(Some(5))));
    assert_eq!(first.status.reports_sent, 1);
    assert!(first.status.last_success.is_some());
    assert_eq!(rig.hub.report_count(), 1);

    rig.nothing_within(Duration::from_secs(59)).await;
    let second = rig.beat_after(Duration::from_secs(1)).await;
    assert_eq!(second.kind, "reported");
    let reports = rig.hub.reports();
    assert_eq!(reports.len(), 2);
    // Not before the interval (tokio's clock); not after it either: `nothing_within` showed
    // the loop asleep at 59 s and the beat followed the last second's jump.
    let gap = reports[1].received_at - reports[0].received_at;
    assert!(gap >= Duration::from_secs(60), "{gap:?}");
    assert_eq!(
        reports[0].authorization(),
        Some(format!("Bearer {KEY}").as_str())
    );
    support::assert_golden_shape(&reports[1].raw);

    let status = rig.stop().await;
    assert_eq!(status.reports_sent, 2);
    assert_eq!(status.interval, Duration::from_secs(60));
}

#[tokio::test]
async fn a_too_long_wish_becomes_an_hour_and_a_later_wish_is_adopted() {
    let mut rig = start(interval(Some(99_999)), Duration::from_secs(60)).await;
    let first = rig.beat().await;
    assert_eq!(
        (first.kind, first.next_in),
        ("reported", Duration::from_secs(3600))
    );
    rig.hub.set_envelope(interval(Some(300)));
    rig.nothing_within(Duration::from_secs(3599)).await;
    let second = rig.beat_after(Duration::from_secs(1)).await;
    assert_eq!(
        (second.kind, second.next_in),
        ("reported", Duration::from_secs(300))
    );
    // No wish: back to the configured interval.
    rig.hub.set_envelope(interval(None));
    rig.nothing_within(Duration::from_secs(299)).await;
    let third = rig.beat_after(Duration::from_secs(1)).await;
    assert_eq!(third.next_in, Duration::from_secs(60));
    assert_eq!(rig.stop().await.reports_sent, 3);
}

#[tokio::test]
async fn hub_failures_and_outages_are_logged_and_the_next_report_still_goes() {
    let logs = support::logs();
    let mut rig = start(interval(Some(60)), Duration::from_secs(60)).await;
    // The hub fails the first report, drops the second connection, accepts the third.
    rig.hub.faults().fail_next(1, HubFault::Status(500));
    rig.hub.faults().drop_next(1);
    let first = rig.beat().await;
    assert_eq!(first.kind, "report_failed", "{first:?}");
    assert!(first.detail.contains("answered 500"), "{}", first.detail);
    assert_eq!(first.status.consecutive_failures, 1);
    assert_eq!(first.next_in, Duration::from_secs(60));
    let second = rig.beat_after(Duration::from_secs(60)).await;
    assert_eq!(second.kind, "report_failed", "{second:?}");
    assert_eq!(second.status.consecutive_failures, 2);
    let third = rig.beat_after(Duration::from_secs(60)).await;
    assert_eq!(third.kind, "reported", "{third:?}");
    assert_eq!(third.status.consecutive_failures, 0);
    assert_eq!(third.status.last_error, None);
    assert_eq!(rig.hub.report_count(), 1);
    let statuses: Vec<u16> = rig.hub.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 0, 200]);
    let rig_url = rig.hub.report_url();
    let status = rig.stop().await;
    assert_eq!(status.reports_sent, 1);

    // This test's lines name its hub's URL.
    let lines = logs.lines_with(&rig_url).join("\n");
    assert!(lines.contains("heartbeat started"), "{lines}");
    assert!(
        lines.contains("WARN") && lines.contains("host report failed"),
        "{lines}"
    );
    assert!(lines.contains("answered 500"), "{lines}");
    assert!(lines.contains("connection error"), "{lines}");
    assert!(lines.contains("host report accepted again"), "{lines}");
    assert!(lines.contains("heartbeat stopped"), "{lines}");
    assert!(
        !logs.all_text().contains(KEY),
        "the hub key reached the logs"
    );
}

#[tokio::test]
async fn a_pve_failure_skips_the_post_and_the_loop_goes_on() {
    let mut rig = start(interval(Some(60)), Duration::from_secs(60)).await;
    // The first beat starts at once; the fault is armed for the second.
    let first = rig.beat().await;
    assert_eq!(first.kind, "reported");
    rig.pve.faults().fail_next(
        1,
        HttpFault::internal("pvestatd down").only(Some("GET"), Some("/nodes/pve/status")),
    );
    let second = rig.beat_after(Duration::from_secs(60)).await;
    assert_eq!(second.kind, "collect_failed", "{second:?}");
    assert!(
        second.detail.contains("node status of pve unreadable"),
        "{}",
        second.detail
    );
    assert_eq!(rig.hub.requests().len(), 1, "no POST without a report");
    let third = rig.beat_after(Duration::from_secs(60)).await;
    assert_eq!(third.kind, "reported");
    assert_eq!(rig.hub.requests().len(), 2);
    rig.stop().await;
}

#[tokio::test]
async fn cancel_stops_promptly_while_sleeping_and_mid_report() {
    // Asleep for an hour (tokio's clock is not advanced): ending within `SOON` of real time
    // means cancel ended the sleep.
    let mut rig = start(interval(Some(3600)), Duration::from_secs(60)).await;
    assert_eq!(rig.beat().await.kind, "reported");
    let status = rig.stop().await;
    assert_eq!(status.reports_sent, 1);

    // Mid-report: the hub holds the request for 30 s; cancel drops it.
    let pve = support::pve().await;
    let hub = support::hub().await;
    hub.faults().set_latency(Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let api = support::pve_client(&pve);
    let client = support::hub_client(&hub, &dir);
    let settings = HeartbeatSettings::new("pve-01", Duration::from_secs(60));
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    let task = tokio::spawn(async move {
        heartbeat::run(
            &api,
            &FixedProber(ServiceState::Active),
            &client,
            &settings,
            token,
            heartbeat::NoObserver,
        )
        .await
    });
    // Wait until the report is at the hub, held there (an event, not a guess at timing).
    tokio::time::timeout(SOON, hub.wait_for_arrivals(1))
        .await
        .expect("the report reached the hub");
    cancel.cancel();
    // The hub holds it for 30 s; ending within `SOON` means cancel dropped the request.
    let status = tokio::time::timeout(SOON, task)
        .await
        .expect("cancel ends a report in flight")
        .unwrap();
    assert_eq!(status.reports_sent, 0);
    assert!(status.last_attempt.is_some());
    assert_eq!(hub.report_count(), 0);
}

#[tokio::test]
async fn an_unauthorized_key_is_a_failure_like_any_other() {
    let mut rig = start(interval(Some(60)), Duration::from_secs(60)).await;
    assert_eq!(rig.beat().await.kind, "reported");
    rig.hub.set_api_key("rotated-at-the-hub");
    let second = rig.beat_after(Duration::from_secs(60)).await;
    assert_eq!(second.kind, "report_failed");
    assert!(second.detail.contains("401"), "{}", second.detail);
    assert!(!second.detail.contains(KEY));
    let line = second.status.to_string();
    assert!(line.starts_with("reports: 1 sent, last "), "{line}");
    assert!(line.contains("1 failures in a row: hub report: "), "{line}");
    assert!(!line.contains(KEY), "{line}");
    rig.stop().await;
}

#[tokio::test]
async fn connections_outlive_the_interval_so_a_steady_beat_opens_none() {
    let mut rig = start(interval(Some(3600)), Duration::from_secs(60)).await;
    let first = rig.beat().await;
    assert_eq!(first.kind, "reported", "{first:?}");
    let opened = rig.pve.connections_accepted();
    assert!(opened >= 1);
    let configs = rig.pve.state().requests("GET", "/nodes/pve/lxc/100/config");
    assert_eq!(configs, 1);

    // The longest interval the hub may ask for: the pool still holds the connections.
    let second = rig.beat_after(Duration::from_secs(3600)).await;
    assert_eq!(second.kind, "reported", "{second:?}");
    assert_eq!(
        rig.pve.connections_accepted(),
        opened,
        "a steady beat an hour later opens no new connection"
    );
    assert_eq!(
        rig.pve.state().requests("GET", "/nodes/pve/lxc/100/config"),
        1,
        "an unchanged guest's config is not read again"
    );
    rig.stop().await;
}
