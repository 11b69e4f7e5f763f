//! felhom-metrics: the agent's Prometheus metrics — one typed registry ([`Metrics`], no global)
//! and the plain-HTTP `/metrics` listener ([`serve`]).
//!
//! Why `prometheus-client` (the Prometheus project's own Rust client) and not `metrics` + an
//! exporter: every family here is a typed value whose label set is a struct of closed enums
//! (or `&'static str` endpoint templates written in code), so the series count is bounded by
//! construction — nothing from PVE, the hub or an operator's file can become a label value
//! (a vmid in a label would be a new series per guest). `metrics` keys series by strings at
//! run time behind a global recorder, which is the opposite of both. No global registry: the
//! daemon builds one [`Metrics`] and hands clones to what feeds it; library crates stay
//! metric-free (the binary observes them through their seams: the `ProxmoxApi` trait, the
//! journal's `FileSystem`, the audit sink, the heartbeat observer), and code that wants to
//! feed a metric directly (the restore tests) can depend on this small crate.
//!
//! Never: a label value taken from input (vmids, paths with ids, error text); a request body
//! read by the listener; a listener without timeouts.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

mod listen;
mod serve;

pub use listen::{ListenAddr, ListenAddrError};
pub use serve::{bind, serve, MetricsError, ServeOptions, CONTENT_TYPE, PATH};

/// Writes a closed enum's label value as its `as_str()` spelling.
macro_rules! label_value {
    ($t:ty) => {
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), fmt::Error> {
                fmt::Write::write_str(encoder, self.as_str())
            }
        }
    };
}

/// Why a report did not reach the hub (`felhom_reports_failed_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportFailure {
    /// Nothing was sent: node status or the guest list could not be read.
    Collect,
    /// The report could not be encoded.
    Encode,
    /// Transport or TLS failure (includes timeouts).
    Transport,
    /// The hub refused the API key (401).
    Unauthorized,
    /// Any other non-2xx answer.
    Http,
    /// A 2xx answer that is no envelope.
    Decode,
    /// A failure this version does not name.
    Other,
}

impl ReportFailure {
    /// Every reason.
    pub const ALL: [ReportFailure; 7] = [
        ReportFailure::Collect,
        ReportFailure::Encode,
        ReportFailure::Transport,
        ReportFailure::Unauthorized,
        ReportFailure::Http,
        ReportFailure::Decode,
        ReportFailure::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportFailure::Collect => "collect",
            ReportFailure::Encode => "encode",
            ReportFailure::Transport => "transport",
            ReportFailure::Unauthorized => "unauthorized",
            ReportFailure::Http => "http",
            ReportFailure::Decode => "decode",
            ReportFailure::Other => "other",
        }
    }
}
label_value!(ReportFailure);

/// How a reconcile pass ended (`felhom_reconcile_passes_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PassResult {
    /// The pass ran (its actions may still have failed: see the action metrics).
    Ok,
    /// The pass could not run (desired state or the guest list unreadable).
    Failed,
}

impl PassResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PassResult::Ok => "ok",
            PassResult::Failed => "failed",
        }
    }
}
label_value!(PassResult);

/// A mutating PVE request (`kind` label of the action metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionKind {
    /// `POST …/status/start`
    Start,
    /// `POST …/status/stop`
    Stop,
    /// `PUT …/config`
    SetConfig,
    /// `POST …/snapshot`
    Snapshot,
    /// `POST …/snapshot/{snapname}/rollback`
    Rollback,
    /// `DELETE …/snapshot/{snapname}`
    DeleteSnapshot,
    /// `DELETE /nodes/{node}/lxc/{vmid}`
    Destroy,
    /// `POST /nodes/{node}/lxc` restoring into a new guest
    Restore,
    /// `POST /nodes/{node}/lxc` restoring over an existing guest (`force=1`)
    RestoreOver,
    /// `POST /nodes/{node}/vzdump`
    Vzdump,
}

impl ActionKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Start => "start",
            ActionKind::Stop => "stop",
            ActionKind::SetConfig => "set_config",
            ActionKind::Snapshot => "snapshot",
            ActionKind::Rollback => "rollback",
            ActionKind::DeleteSnapshot => "delete_snapshot",
            ActionKind::Destroy => "destroy",
            ActionKind::Restore => "restore",
            ActionKind::RestoreOver => "restore_over",
            ActionKind::Vzdump => "vzdump",
        }
    }
}
label_value!(ActionKind);

/// How an action ended (`felhom_actions_finished_total{kind,outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionOutcome {
    /// PVE did it (its task ended `OK`, or the request was synchronous and accepted).
    Ok,
    /// Its task ended with an error.
    Failed,
    /// PVE refused the request (or it never got an answer): no task was started.
    Rejected,
}

impl ActionOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionOutcome::Ok => "ok",
            ActionOutcome::Failed => "failed",
            ActionOutcome::Rejected => "rejected",
        }
    }
}
label_value!(ActionOutcome);

/// The classifier's verdict on a gated action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GateClass {
    /// Benign (includes a destroy proven agent-created by the journal).
    Benign,
    /// Destructive: needs an operator signature.
    Destructive,
    /// A class this version does not name.
    Other,
}

impl GateClass {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            GateClass::Benign => "benign",
            GateClass::Destructive => "destructive",
            GateClass::Other => "other",
        }
    }

    /// From the audit entry's text (an open set: anything else is [`GateClass::Other`]).
    pub fn from_audit(s: &str) -> Self {
        match s {
            "benign" => GateClass::Benign,
            "destructive" => GateClass::Destructive,
            _ => GateClass::Other,
        }
    }
}
label_value!(GateClass);

/// A gate (or audit) decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GateDecision {
    /// Let through.
    Allowed,
    /// Refused (no signers, a bad signature, a replay, …).
    Refused,
    /// Held until an operator signs it.
    PendingSignature,
    /// A signed op was executed.
    Executed,
    /// A signed op failed.
    Failed,
    /// A signed op's outcome is unknown (recovery).
    OutcomeUnknown,
    /// A decision this version does not name.
    Other,
}

impl GateDecision {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            GateDecision::Allowed => "allowed",
            GateDecision::Refused => "refused",
            GateDecision::PendingSignature => "pending_signature",
            GateDecision::Executed => "executed",
            GateDecision::Failed => "failed",
            GateDecision::OutcomeUnknown => "outcome_unknown",
            GateDecision::Other => "other",
        }
    }

    /// From the audit entry's text (an open set: anything else is [`GateDecision::Other`]).
    pub fn from_audit(s: &str) -> Self {
        match s {
            "allowed" => GateDecision::Allowed,
            "refused" => GateDecision::Refused,
            "pending_signature" => GateDecision::PendingSignature,
            "executed" => GateDecision::Executed,
            "failed" => GateDecision::Failed,
            "outcome_unknown" => GateDecision::OutcomeUnknown,
            _ => GateDecision::Other,
        }
    }
}
label_value!(GateDecision);

/// Whether a PVE request got a usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestResult {
    /// Answered and decoded.
    Ok,
    /// Refused, failed, timed out or undecodable.
    Error,
}

impl RequestResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestResult::Ok => "ok",
            RequestResult::Error => "error",
        }
    }
}
label_value!(RequestResult);

/// A restore test's result (issue 16 part 1; `felhom_restore_tests_total{outcome}`), the
/// report's `restore_tests[].outcome` spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RestoreOutcome {
    /// Restored, booted, stopped and destroyed.
    Ok,
    /// The restore task failed.
    RestoreFailed,
    /// The scratch guest did not come up.
    BootFailed,
    /// The scratch guest could not be stopped or destroyed.
    CleanupFailed,
    /// A crash or stop interrupted the test; recovery cleaned up.
    Interrupted,
    /// Not run: too little free space on the scratch storage.
    SkippedLowSpace,
    /// Not run: every vmid of the scratch range is taken.
    SkippedNoFreeVmid,
}

impl RestoreOutcome {
    /// Every outcome.
    pub const ALL: [RestoreOutcome; 7] = [
        RestoreOutcome::Ok,
        RestoreOutcome::RestoreFailed,
        RestoreOutcome::BootFailed,
        RestoreOutcome::CleanupFailed,
        RestoreOutcome::Interrupted,
        RestoreOutcome::SkippedLowSpace,
        RestoreOutcome::SkippedNoFreeVmid,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreOutcome::Ok => "ok",
            RestoreOutcome::RestoreFailed => "restore_failed",
            RestoreOutcome::BootFailed => "boot_failed",
            RestoreOutcome::CleanupFailed => "cleanup_failed",
            RestoreOutcome::Interrupted => "interrupted",
            RestoreOutcome::SkippedLowSpace => "skipped_low_space",
            RestoreOutcome::SkippedNoFreeVmid => "skipped_no_free_vmid",
        }
    }
}
label_value!(RestoreOutcome);

/// `{reason}`
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: ReportFailure,
}

/// `{result}`
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PassLabels {
    result: PassResult,
}

/// `{kind}`
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: ActionKind,
}

/// `{kind, outcome}`
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ActionLabels {
    kind: ActionKind,
    outcome: ActionOutcome,
}

/// `{class, decision}`
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct GateLabels {
    class: GateClass,
    decision: GateDecision,
}

/// `{method, endpoint}`: the endpoint is the API's path template, written in code
/// (`/nodes/{node}/lxc/{vmid}/status/current`), never a request's path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndpointLabels {
    method: &'static str,
    endpoint: &'static str,
}

/// `{method, endpoint, result}`
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    endpoint: &'static str,
    result: RequestResult,
}

/// `{outcome}`
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RestoreLabels {
    outcome: RestoreOutcome,
}

/// `{version}`
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// `count` bucket bounds from `start`, each twice the last: the same values as
/// `exponential_buckets(start, 2.0, count)`, without its `f64::powf`. That call was the daemon's
/// only use of libm, and mapping libm (its load-time IFUNC resolution touches much of it) cost
/// the daemon about 0.5 MiB of RSS (issue 14).
fn doubling_buckets(start: f64, count: u32) -> impl Iterator<Item = f64> {
    (0..count.min(31)).map(move |i| start * f64::from(1u32 << i))
}

/// PVE request latency: 5 ms … ~20 s (12 buckets).
fn request_buckets() -> Histogram {
    Histogram::new(doubling_buckets(0.005, 12))
}

/// Task wait: 50 ms … ~14 min (15 buckets; a task wait is bounded at 10 min).
fn task_buckets() -> Histogram {
    Histogram::new(doubling_buckets(0.05, 15))
}

/// `fdatasync`: 100 µs … ~1.6 s (15 buckets).
fn fsync_buckets() -> Histogram {
    Histogram::new(doubling_buckets(0.0001, 15))
}

/// Every metric the agent exports. Cheap to clone (each field is an `Arc` inside); all
/// methods take `&self` and never block.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reports_sent: Counter,
    reports_failed: Family<ReasonLabels, Counter>,
    last_report_success: Gauge,
    report_interval: Gauge<f64, AtomicU64>,
    reconcile_passes: Family<PassLabels, Counter>,
    actions_started: Family<KindLabels, Counter>,
    actions_finished: Family<ActionLabels, Counter>,
    gate_decisions: Family<GateLabels, Counter>,
    pve_requests: Family<RequestLabels, Counter>,
    pve_request_duration: HistogramFamily<EndpointLabels>,
    task_wait: HistogramFamily<KindLabels>,
    journal_appends: Counter,
    journal_fsync: Histogram,
    queue_depth: Gauge,
    restore_tests: Family<RestoreLabels, Counter>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with every family registered and `felhom_build_info{version}` set.
    pub fn new(version: &'static str) -> Metrics {
        let mut r = Registry::default();
        let reports_sent = Counter::default();
        r.register(
            "felhom_reports_sent",
            "Reports the hub accepted",
            reports_sent.clone(),
        );
        let reports_failed = Family::<ReasonLabels, Counter>::default();
        r.register(
            "felhom_reports_failed",
            "Reports not accepted by the hub, by reason",
            reports_failed.clone(),
        );
        let last_report_success = Gauge::default();
        r.register(
            "felhom_last_report_success_timestamp_seconds",
            "Unix time of the last report the hub accepted (0: none yet)",
            last_report_success.clone(),
        );
        let report_interval = Gauge::<f64, AtomicU64>::default();
        r.register(
            "felhom_report_interval_seconds",
            "Seconds until the next report attempt, as of the last one (the hub's interval, or the \
             retry delay after a failure)",
            report_interval.clone(),
        );
        let reconcile_passes = Family::<PassLabels, Counter>::default();
        r.register(
            "felhom_reconcile_passes",
            "Reconcile passes, by result",
            reconcile_passes.clone(),
        );
        let actions_started = Family::<KindLabels, Counter>::default();
        r.register(
            "felhom_actions_started",
            "Mutating PVE requests PVE accepted, by kind",
            actions_started.clone(),
        );
        let actions_finished = Family::<ActionLabels, Counter>::default();
        r.register(
            "felhom_actions_finished",
            "Mutating PVE requests by kind and outcome (ok, failed task, rejected request)",
            actions_finished.clone(),
        );
        let gate_decisions = Family::<GateLabels, Counter>::default();
        r.register(
            "felhom_gate_decisions",
            "Reversibility gate and audit decisions, by class and decision",
            gate_decisions.clone(),
        );
        let pve_requests = Family::<RequestLabels, Counter>::default();
        r.register(
            "felhom_pve_requests",
            "Proxmox API requests by method, endpoint template and result",
            pve_requests.clone(),
        );
        let pve_request_duration: HistogramFamily<EndpointLabels> =
            Family::new_with_constructor(request_buckets);
        r.register(
            "felhom_pve_request_duration_seconds",
            "Proxmox API request latency by method and endpoint template",
            pve_request_duration.clone(),
        );
        let task_wait: HistogramFamily<KindLabels> = Family::new_with_constructor(task_buckets);
        r.register(
            "felhom_pve_task_wait_seconds",
            "From a task's start to the first poll that saw it end, by action kind",
            task_wait.clone(),
        );
        let journal_appends = Counter::default();
        r.register(
            "felhom_journal_appends",
            "Records written to the op journal",
            journal_appends.clone(),
        );
        let journal_fsync = fsync_buckets();
        r.register(
            "felhom_journal_fsync_seconds",
            "Op journal fdatasync latency",
            journal_fsync.clone(),
        );
        let queue_depth = Gauge::default();
        r.register(
            "felhom_queue_depth",
            "Jobs queued or running in the per-guest action queue",
            queue_depth.clone(),
        );
        let restore_tests = Family::<RestoreLabels, Counter>::default();
        r.register(
            "felhom_restore_tests",
            "Restore tests by outcome",
            restore_tests.clone(),
        );
        r.register(
            "felhom_build",
            "The agent's version",
            Info::new(BuildLabels { version }),
        );
        // Series an alert rule reads start at 0, so `increase()` sees their first event.
        for outcome in RestoreOutcome::ALL {
            drop(restore_tests.get_or_create(&RestoreLabels { outcome }));
        }
        for reason in ReportFailure::ALL {
            drop(reports_failed.get_or_create(&ReasonLabels { reason }));
        }
        Metrics {
            registry: Arc::new(r),
            reports_sent,
            reports_failed,
            last_report_success,
            report_interval,
            reconcile_passes,
            actions_started,
            actions_finished,
            gate_decisions,
            pve_requests,
            pve_request_duration,
            task_wait,
            journal_appends,
            journal_fsync,
            queue_depth,
            restore_tests,
        }
    }

    /// The hub accepted a report at `unix` seconds.
    pub fn report_sent(&self, unix: i64) {
        self.reports_sent.inc();
        self.last_report_success.set(unix);
    }

    /// The next report is due in `next_in`.
    pub fn set_report_interval(&self, next_in: Duration) {
        self.report_interval.set(next_in.as_secs_f64());
    }

    /// A report did not reach the hub.
    pub fn report_failed(&self, reason: ReportFailure) {
        self.reports_failed
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// A reconcile pass ended.
    pub fn reconcile_pass(&self, result: PassResult) {
        self.reconcile_passes
            .get_or_create(&PassLabels { result })
            .inc();
    }

    /// PVE accepted a mutating request.
    pub fn action_started(&self, kind: ActionKind) {
        self.actions_started
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// A mutating request's outcome is known.
    pub fn action_finished(&self, kind: ActionKind, outcome: ActionOutcome) {
        self.actions_finished
            .get_or_create(&ActionLabels { kind, outcome })
            .inc();
    }

    /// The gate (or the audit after a signed op) decided.
    pub fn gate_decision(&self, class: GateClass, decision: GateDecision) {
        self.gate_decisions
            .get_or_create(&GateLabels { class, decision })
            .inc();
    }

    /// One PVE request: `endpoint` is the API's path template (written in code).
    pub fn pve_request(
        &self,
        method: &'static str,
        endpoint: &'static str,
        result: RequestResult,
        took: Duration,
    ) {
        self.pve_requests
            .get_or_create(&RequestLabels {
                method,
                endpoint,
                result,
            })
            .inc();
        self.pve_request_duration
            .get_or_create(&EndpointLabels { method, endpoint })
            .observe(took.as_secs_f64());
    }

    /// A task of an action of `kind` was seen ended `took` after it was started.
    pub fn task_waited(&self, kind: ActionKind, took: Duration) {
        self.task_wait
            .get_or_create(&KindLabels { kind })
            .observe(took.as_secs_f64());
    }

    /// One op-journal record was written.
    pub fn journal_append(&self) {
        self.journal_appends.inc();
    }

    /// One op-journal `fdatasync` took `took`.
    pub fn journal_fsync(&self, took: Duration) {
        self.journal_fsync.observe(took.as_secs_f64());
    }

    /// Jobs queued or running now.
    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// A restore test ended.
    pub fn restore_test(&self, outcome: RestoreOutcome) {
        self.restore_tests
            .get_or_create(&RestoreLabels { outcome })
            .inc();
    }

    /// Everything, in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail; an encoder error would be a bug in a label value.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %e, "metrics: encoding failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn doubling_buckets_are_the_exponential_ones() {
        use prometheus_client::metrics::histogram::exponential_buckets;
        for (start, count) in [(0.005, 12u16), (0.05, 15), (0.0001, 15)] {
            let ours: Vec<u64> = super::doubling_buckets(start, u32::from(count))
                .map(f64::to_bits)
                .collect();
            let theirs: Vec<u64> = exponential_buckets(start, 2.0, count)
                .map(f64::to_bits)
                .collect();
            assert_eq!(ours, theirs, "start {start}");
        }
    }

    use super::*;

    fn scrape(m: &Metrics) -> felhom_testkit::metrics::Scrape {
        felhom_testkit::metrics::Scrape::parse(&m.render()).unwrap()
    }

    #[test]
    fn every_family_renders_with_its_labels_and_parses() {
        let m = Metrics::new("9.9.9");
        m.report_sent(1_700_000_000);
        m.report_sent(1_700_000_060);
        m.report_failed(ReportFailure::Transport);
        m.set_report_interval(Duration::from_secs(120));
        m.reconcile_pass(PassResult::Ok);
        m.action_started(ActionKind::Start);
        m.action_finished(ActionKind::Start, ActionOutcome::Ok);
        m.gate_decision(GateClass::Destructive, GateDecision::PendingSignature);
        m.pve_request(
            "GET",
            "/nodes/{node}/lxc/{vmid}/status/current",
            RequestResult::Ok,
            Duration::from_millis(12),
        );
        m.task_waited(ActionKind::Start, Duration::from_millis(300));
        m.journal_append();
        m.journal_fsync(Duration::from_micros(250));
        m.set_queue_depth(3);
        m.restore_test(RestoreOutcome::BootFailed);
        let s = scrape(&m);
        assert_eq!(s.value("felhom_reports_sent_total", &[]), Some(2.0));
        assert_eq!(
            s.value("felhom_last_report_success_timestamp_seconds", &[]),
            Some(1_700_000_060.0)
        );
        assert_eq!(s.value("felhom_report_interval_seconds", &[]), Some(120.0));
        assert_eq!(
            s.value("felhom_reports_failed_total", &[("reason", "transport")]),
            Some(1.0)
        );
        assert_eq!(
            s.value("felhom_reconcile_passes_total", &[("result", "ok")]),
            Some(1.0)
        );
        assert_eq!(
            s.value(
                "felhom_actions_finished_total",
                &[("kind", "start"), ("outcome", "ok")]
            ),
            Some(1.0)
        );
        assert_eq!(
            s.value(
                "felhom_gate_decisions_total",
                &[("class", "destructive"), ("decision", "pending_signature")]
            ),
            Some(1.0)
        );
        assert_eq!(
            s.value(
                "felhom_pve_requests_total",
                &[
                    ("method", "GET"),
                    ("endpoint", "/nodes/{node}/lxc/{vmid}/status/current"),
                    ("result", "ok")
                ]
            ),
            Some(1.0)
        );
        // Histograms: the +Inf bucket holds every observation.
        assert_eq!(
            s.value("felhom_pve_request_duration_seconds", &[("method", "GET")]),
            Some(1.0)
        );
        assert_eq!(
            s.value("felhom_pve_task_wait_seconds", &[("kind", "start")]),
            Some(1.0)
        );
        assert_eq!(s.value("felhom_journal_fsync_seconds", &[]), Some(1.0));
        assert_eq!(s.value("felhom_journal_appends_total", &[]), Some(1.0));
        assert_eq!(s.value("felhom_queue_depth", &[]), Some(3.0));
        assert_eq!(
            s.value("felhom_restore_tests_total", &[("outcome", "boot_failed")]),
            Some(1.0)
        );
        // Every outcome and failure reason is there from the start, at 0.
        assert_eq!(
            s.value(
                "felhom_restore_tests_total",
                &[("outcome", "cleanup_failed")]
            ),
            Some(0.0)
        );
        assert_eq!(
            s.value("felhom_reports_failed_total", &[("reason", "unauthorized")]),
            Some(0.0)
        );
        assert_eq!(
            s.value("felhom_build_info", &[("version", "9.9.9")]),
            Some(1.0)
        );
    }

    #[test]
    fn audit_text_maps_to_closed_label_sets() {
        assert_eq!(GateClass::from_audit("benign"), GateClass::Benign);
        assert_eq!(GateClass::from_audit("Destructive!"), GateClass::Other);
        for d in [
            GateDecision::Allowed,
            GateDecision::Refused,
            GateDecision::PendingSignature,
            GateDecision::Executed,
            GateDecision::Failed,
            GateDecision::OutcomeUnknown,
        ] {
            assert_eq!(GateDecision::from_audit(d.as_str()), d);
        }
        assert_eq!(
            GateDecision::from_audit("/nodes/pve/lxc/105"),
            GateDecision::Other
        );
    }
}
