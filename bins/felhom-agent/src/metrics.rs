//! The daemon's metrics wiring: one [`Metrics`] fed through the library crates' own seams, so
//! none of them holds a registry —
//!
//! - [`MeteredApi`] wraps the `ProxmoxApi` the heartbeat, the engine and recovery share: each
//!   request is counted and timed under its endpoint TEMPLATE, written here per method (never
//!   the request's path: no vmid, storage or UPID reaches a label); a mutation PVE accepted is
//!   an action started, and the first task poll that sees its task stopped closes it (outcome,
//!   task wait);
//! - [`MeteredFs`] wraps the op journal's `FileSystem`: record writes and `fdatasync` latency;
//! - [`MetricsAudit`] is one more audit sink: every gate/audit decision by class and decision;
//! - [`observe_beat`] (heartbeat observer) and the reconciler count reports and passes;
//! - [`spawn_listener`] serves `/metrics` on `metrics.listen`, refreshing the queue depth at
//!   each scrape.

use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Mutex;

use felhom_config::MetricsConfig;
use felhom_hub::heartbeat::{Beat, BeatOutcome};
use felhom_hub::hub::HubError;
use felhom_hub_proto::AuditEntry;
use felhom_journal::FileSystem;
use felhom_metrics::{
    ActionKind, ActionOutcome, GateClass, GateDecision, Metrics, ReportFailure, RequestResult,
    ServeOptions,
};
use felhom_proxmox::{
    ConfigUpdate, GuestSummary, LxcConfig, NodeInfo, NodeStatus, Permissions, ProxmoxApi,
    ProxmoxError, RestoreRequest, SetConfigOutcome, Snapshot, StorageContent, StorageInfo,
    TaskExit, TaskFilter, TaskList, TaskLog, TaskStatus, Upid, Version, VzdumpOutcome,
    VzdumpRequest,
};
use felhom_reconcile::{
    Action, AuditError, AuditSink, Gate, GateDecision as EngineDecision, Queue,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Tasks followed at once for their outcome and wait time; past it a new task is still
/// counted as started, only its wait is not measured (a bound, not a limit on work).
const MAX_TRACKED_TASKS: usize = 256;

/// A `ProxmoxApi` that counts and times every request (see the module docs).
#[derive(Debug)]
pub struct MeteredApi<A> {
    inner: A,
    metrics: Metrics,
    /// UPID → (kind, when PVE accepted it).
    tasks: Mutex<HashMap<String, (ActionKind, Instant)>>,
}

impl<A: ProxmoxApi> MeteredApi<A> {
    /// Wraps `inner`.
    pub fn new(inner: A, metrics: Metrics) -> Self {
        MeteredApi {
            inner,
            metrics,
            tasks: Mutex::new(HashMap::new()),
        }
    }

    /// Times `fut` as one request to `endpoint`.
    async fn timed<T>(
        &self,
        method: &'static str,
        endpoint: &'static str,
        fut: impl std::future::Future<Output = Result<T, ProxmoxError>>,
    ) -> Result<T, ProxmoxError> {
        let started = Instant::now();
        let r = fut.await;
        let result = if r.is_ok() {
            RequestResult::Ok
        } else {
            RequestResult::Error
        };
        self.metrics
            .pve_request(method, endpoint, result, started.elapsed());
        r
    }

    /// A mutation that starts a task: started (and followed) once PVE accepted it, rejected
    /// otherwise.
    async fn task_action(
        &self,
        kind: ActionKind,
        method: &'static str,
        endpoint: &'static str,
        fut: impl std::future::Future<Output = Result<Upid, ProxmoxError>>,
    ) -> Result<Upid, ProxmoxError> {
        let r = self.timed(method, endpoint, fut).await;
        match &r {
            Ok(upid) => self.started(kind, Some(upid)),
            Err(_) => self.metrics.action_finished(kind, ActionOutcome::Rejected),
        }
        r
    }

    fn started(&self, kind: ActionKind, upid: Option<&Upid>) {
        self.metrics.action_started(kind);
        match upid {
            Some(upid) => {
                let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
                if tasks.len() < MAX_TRACKED_TASKS {
                    tasks.insert(upid.as_str().to_owned(), (kind, Instant::now()));
                }
            }
            // Synchronous: done when accepted.
            None => self.metrics.action_finished(kind, ActionOutcome::Ok),
        }
    }

    /// A task poll: a followed task seen stopped is closed.
    fn task_seen(&self, upid: &Upid, status: &TaskStatus) {
        let Some(exit) = status.exit() else { return };
        let followed = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(upid.as_str());
        if let Some((kind, started)) = followed {
            self.metrics.task_waited(kind, started.elapsed());
            let outcome = match exit {
                TaskExit::Ok | TaskExit::Warnings(_) => ActionOutcome::Ok,
                TaskExit::Failed(_) => ActionOutcome::Failed,
            };
            self.metrics.action_finished(kind, outcome);
        }
    }
}

impl<A: ProxmoxApi> ProxmoxApi for MeteredApi<A> {
    fn node(&self) -> &str {
        self.inner.node()
    }

    fn caller(&self) -> Option<&str> {
        self.inner.caller()
    }

    async fn version(&self) -> Result<Version, ProxmoxError> {
        self.timed("GET", "/version", self.inner.version()).await
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, ProxmoxError> {
        self.timed("GET", "/nodes", self.inner.nodes()).await
    }

    async fn node_status(&self) -> Result<NodeStatus, ProxmoxError> {
        self.timed("GET", "/nodes/{node}/status", self.inner.node_status())
            .await
    }

    async fn list_lxc(&self) -> Result<Vec<GuestSummary>, ProxmoxError> {
        self.timed("GET", "/nodes/{node}/lxc", self.inner.list_lxc())
            .await
    }

    async fn guest_status(&self, vmid: u32) -> Result<GuestSummary, ProxmoxError> {
        self.timed(
            "GET",
            "/nodes/{node}/lxc/{vmid}/status/current",
            self.inner.guest_status(vmid),
        )
        .await
    }

    async fn guest_config(&self, vmid: u32) -> Result<LxcConfig, ProxmoxError> {
        self.timed(
            "GET",
            "/nodes/{node}/lxc/{vmid}/config",
            self.inner.guest_config(vmid),
        )
        .await
    }

    async fn list_storage(&self) -> Result<Vec<StorageInfo>, ProxmoxError> {
        self.timed("GET", "/storage", self.inner.list_storage())
            .await
    }

    async fn node_storage(&self) -> Result<Vec<StorageInfo>, ProxmoxError> {
        self.timed("GET", "/nodes/{node}/storage", self.inner.node_storage())
            .await
    }

    async fn storage_content(
        &self,
        storage: &str,
        content: Option<&str>,
        vmid: Option<u32>,
    ) -> Result<Vec<StorageContent>, ProxmoxError> {
        self.timed(
            "GET",
            "/nodes/{node}/storage/{storage}/content",
            self.inner.storage_content(storage, content, vmid),
        )
        .await
    }

    async fn task_status(&self, upid: &Upid) -> Result<TaskStatus, ProxmoxError> {
        let r = self
            .timed(
                "GET",
                "/nodes/{node}/tasks/{upid}/status",
                self.inner.task_status(upid),
            )
            .await;
        if let Ok(status) = &r {
            self.task_seen(upid, status);
        }
        r
    }

    async fn task_log(&self, upid: &Upid, start: u64, limit: u64) -> Result<TaskLog, ProxmoxError> {
        self.timed(
            "GET",
            "/nodes/{node}/tasks/{upid}/log",
            self.inner.task_log(upid, start, limit),
        )
        .await
    }

    async fn list_tasks(&self, filter: &TaskFilter) -> Result<TaskList, ProxmoxError> {
        self.timed("GET", "/nodes/{node}/tasks", self.inner.list_tasks(filter))
            .await
    }

    async fn permissions(&self) -> Result<Permissions, ProxmoxError> {
        self.timed("GET", "/access/permissions", self.inner.permissions())
            .await
    }

    async fn list_snapshots(&self, vmid: u32) -> Result<Vec<Snapshot>, ProxmoxError> {
        self.timed(
            "GET",
            "/nodes/{node}/lxc/{vmid}/snapshot",
            self.inner.list_snapshots(vmid),
        )
        .await
    }

    async fn restore_lxc(&self, req: &RestoreRequest) -> Result<Upid, ProxmoxError> {
        let kind = if req.force {
            ActionKind::RestoreOver
        } else {
            ActionKind::Restore
        };
        self.task_action(
            kind,
            "POST",
            "/nodes/{node}/lxc",
            self.inner.restore_lxc(req),
        )
        .await
    }

    async fn vzdump(&self, req: &VzdumpRequest) -> Result<VzdumpOutcome, ProxmoxError> {
        let kind = ActionKind::Vzdump;
        let r = self
            .timed("POST", "/nodes/{node}/vzdump", self.inner.vzdump(req))
            .await;
        match &r {
            Ok(VzdumpOutcome::Task(upid)) => self.started(kind, Some(upid)),
            Ok(VzdumpOutcome::NothingRan) => self.started(kind, None),
            Err(_) => self.metrics.action_finished(kind, ActionOutcome::Rejected),
        }
        r
    }

    async fn snapshot(
        &self,
        vmid: u32,
        name: &str,
        description: Option<&str>,
    ) -> Result<Upid, ProxmoxError> {
        self.task_action(
            ActionKind::Snapshot,
            "POST",
            "/nodes/{node}/lxc/{vmid}/snapshot",
            self.inner.snapshot(vmid, name, description),
        )
        .await
    }

    async fn rollback(&self, vmid: u32, name: &str, start: bool) -> Result<Upid, ProxmoxError> {
        self.task_action(
            ActionKind::Rollback,
            "POST",
            "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}/rollback",
            self.inner.rollback(vmid, name, start),
        )
        .await
    }

    async fn destroy_guest(&self, vmid: u32) -> Result<Upid, ProxmoxError> {
        self.task_action(
            ActionKind::Destroy,
            "DELETE",
            "/nodes/{node}/lxc/{vmid}",
            self.inner.destroy_guest(vmid),
        )
        .await
    }

    async fn restore_over(
        &self,
        vmid: u32,
        archive: &str,
        storage: &str,
    ) -> Result<Upid, ProxmoxError> {
        self.task_action(
            ActionKind::RestoreOver,
            "POST",
            "/nodes/{node}/lxc",
            self.inner.restore_over(vmid, archive, storage),
        )
        .await
    }

    async fn delete_snapshot(&self, vmid: u32, name: &str) -> Result<Upid, ProxmoxError> {
        self.task_action(
            ActionKind::DeleteSnapshot,
            "DELETE",
            "/nodes/{node}/lxc/{vmid}/snapshot/{snapname}",
            self.inner.delete_snapshot(vmid, name),
        )
        .await
    }

    async fn start(&self, vmid: u32) -> Result<Upid, ProxmoxError> {
        self.task_action(
            ActionKind::Start,
            "POST",
            "/nodes/{node}/lxc/{vmid}/status/start",
            self.inner.start(vmid),
        )
        .await
    }

    async fn stop(&self, vmid: u32) -> Result<Upid, ProxmoxError> {
        self.task_action(
            ActionKind::Stop,
            "POST",
            "/nodes/{node}/lxc/{vmid}/status/stop",
            self.inner.stop(vmid),
        )
        .await
    }

    async fn set_config(
        &self,
        vmid: u32,
        update: &ConfigUpdate,
    ) -> Result<SetConfigOutcome, ProxmoxError> {
        let kind = ActionKind::SetConfig;
        let r = self
            .timed(
                "PUT",
                "/nodes/{node}/lxc/{vmid}/config",
                self.inner.set_config(vmid, update),
            )
            .await;
        match &r {
            Ok(SetConfigOutcome::Task(upid)) => self.started(kind, Some(upid)),
            Ok(SetConfigOutcome::Applied) => self.started(kind, None),
            Err(_) => self.metrics.action_finished(kind, ActionOutcome::Rejected),
        }
        r
    }
}

/// The op journal's file system, counting record writes and timing `fdatasync`.
#[derive(Debug)]
pub struct MeteredFs<F> {
    inner: F,
    metrics: Metrics,
}

impl<F: FileSystem> MeteredFs<F> {
    /// Wraps `inner`.
    pub fn new(inner: F, metrics: Metrics) -> Self {
        MeteredFs { inner, metrics }
    }
}

impl<F: FileSystem> FileSystem for MeteredFs<F> {
    fn open(&self, path: &Path) -> io::Result<File> {
        self.inner.open(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<File> {
        self.inner.create_new(path)
    }
    fn read_to_end(&self, file: &mut File, buf: &mut Vec<u8>) -> io::Result<()> {
        self.inner.read_to_end(file, buf)
    }
    fn write_all(&self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        let r = self.inner.write_all(file, bytes);
        if r.is_ok() {
            self.metrics.journal_append();
        }
        r
    }
    fn sync_data(&self, file: &File) -> io::Result<()> {
        let started = std::time::Instant::now();
        let r = self.inner.sync_data(file);
        self.metrics.journal_fsync(started.elapsed());
        r
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn truncate(&self, file: &File, len: u64) -> io::Result<()> {
        self.inner.truncate(file, len)
    }
    fn try_lock(&self, file: &File) -> io::Result<bool> {
        self.inner.try_lock(file)
    }
    fn is_same_file(&self, file: &File, path: &Path) -> io::Result<bool> {
        self.inner.is_same_file(file, path)
    }
}

/// The engine's gate, counting the decisions the gate does not send to its audit sink: the
/// plain benign allows of `start`, `stop` and `set_config` (logged only, no fsync on that path).
/// Every other decision reaches [`MetricsAudit`].
#[derive(Debug, Clone)]
pub struct MeteredGate<G> {
    inner: G,
    metrics: Metrics,
}

impl<G: Gate> MeteredGate<G> {
    /// Wraps `inner`.
    pub fn new(inner: G, metrics: Metrics) -> Self {
        MeteredGate { inner, metrics }
    }
}

impl<G: Gate> Gate for MeteredGate<G> {
    fn decide(&self, action: &Action) -> impl Future<Output = EngineDecision> + Send {
        let plain = matches!(
            action,
            Action::SetConfig { .. } | Action::Start { .. } | Action::Stop { .. }
        );
        let decided = self.inner.decide(action);
        let metrics = self.metrics.clone();
        async move {
            let d = decided.await;
            if plain {
                let decision = match &d {
                    EngineDecision::Allow => GateDecision::Allowed,
                    EngineDecision::Refuse { .. } => GateDecision::Refused,
                    EngineDecision::Pending { .. } => GateDecision::PendingSignature,
                    _ => GateDecision::Other,
                };
                metrics.gate_decision(GateClass::Benign, decision);
            }
            d
        }
    }
}

/// An audit sink counting each decision by class and decision (closed label sets: text this
/// version does not know is `other`).
#[derive(Debug)]
pub struct MetricsAudit(pub Metrics);

impl AuditSink for MetricsAudit {
    fn record(&self, entry: &AuditEntry) -> Result<(), AuditError> {
        self.0.gate_decision(
            GateClass::from_audit(&entry.class),
            GateDecision::from_audit(&entry.decision),
        );
        Ok(())
    }
}

/// Counts one heartbeat beat: sent (and when), or failed by reason; and when the next is due.
pub fn observe_beat(metrics: &Metrics, beat: &Beat<'_>, now_unix: i64) {
    metrics.set_report_interval(beat.next_in);
    match &beat.outcome {
        BeatOutcome::Reported { .. } => metrics.report_sent(now_unix),
        BeatOutcome::CollectFailed(_) => metrics.report_failed(ReportFailure::Collect),
        BeatOutcome::ReportFailed(e) => metrics.report_failed(report_failure(e)),
        _ => metrics.report_failed(ReportFailure::Other),
    }
}

fn report_failure(e: &HubError) -> ReportFailure {
    match e {
        _ if e.is_unauthorized() => ReportFailure::Unauthorized,
        HubError::Encode { .. } => ReportFailure::Encode,
        HubError::Transport(_) => ReportFailure::Transport,
        HubError::Http { .. } => ReportFailure::Http,
        HubError::Decode { .. } => ReportFailure::Decode,
        _ => ReportFailure::Other,
    }
}

/// Serves `/metrics` when `metrics.listen` is set; a port that cannot be bound is logged and
/// the daemon runs on without it (metrics are never a reason not to reconcile).
pub async fn spawn_listener(
    config: &MetricsConfig,
    metrics: &Metrics,
    queue: &Queue,
) -> Option<JoinHandle<()>> {
    let addr = config.listen?;
    if !addr.is_loopback() {
        tracing::warn!(
            %addr,
            "metrics.listen is not a loopback address: /metrics is plain HTTP without auth; \
             keep the port firewalled to the Prometheus server"
        );
    }
    let listener = match felhom_metrics::bind(addr.socket_addr()).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "metrics endpoint disabled");
            return None;
        }
    };
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| addr.to_string());
    tracing::info!(addr = %bound, "metrics listening on http://{bound}/metrics");
    let metrics = metrics.clone();
    let queue = queue.clone();
    let render = move || {
        metrics.set_queue_depth(queue.queued());
        metrics.render()
    };
    Some(tokio::spawn(felhom_metrics::serve(
        listener,
        render,
        ServeOptions::default(),
    )))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// Answers what the tests need; every call is one "request".
    #[derive(Debug)]
    struct Fake;

    impl ProxmoxApi for Fake {
        fn node(&self) -> &str {
            "pve"
        }
        async fn start(&self, vmid: u32) -> Result<Upid, ProxmoxError> {
            if vmid == 999 {
                return Err(ProxmoxError::Unsupported { operation: "start" });
            }
            Ok(
                format!("UPID:pve:00001234:00005678:65000000:vzstart:{vmid}:root@pam:")
                    .parse()
                    .unwrap(),
            )
        }
        async fn task_status(&self, upid: &Upid) -> Result<TaskStatus, ProxmoxError> {
            let failed = upid.as_str().contains(":102:");
            Ok(serde_json::from_value(serde_json::json!({
                "status": "stopped",
                "exitstatus": if failed { "command failed" } else { "OK" },
            }))
            .unwrap())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn requests_are_labelled_by_template_and_tasks_closed_by_their_poll() {
        let metrics = Metrics::new("test");
        let api = MeteredApi::new(Fake, metrics.clone());
        let ok = api.start(101).await.unwrap();
        let bad = api.start(102).await.unwrap();
        api.start(999).await.unwrap_err();
        tokio::time::sleep(Duration::from_secs(2)).await;
        api.task_status(&ok).await.unwrap();
        api.task_status(&bad).await.unwrap();
        // A second poll of an ended task does not count it twice.
        api.task_status(&ok).await.unwrap();
        let text = metrics.render();
        let s = felhom_testkit::metrics::Scrape::parse(&text).unwrap();
        let start = [
            ("method", "POST"),
            ("endpoint", "/nodes/{node}/lxc/{vmid}/status/start"),
        ];
        assert_eq!(s.sum("felhom_pve_requests_total", &start), 3.0);
        assert_eq!(
            s.value("felhom_pve_requests_total", &[("result", "error")]),
            Some(1.0)
        );
        assert_eq!(
            s.value("felhom_actions_started_total", &[("kind", "start")]),
            Some(2.0)
        );
        for (outcome, n) in [("ok", 1.0), ("failed", 1.0), ("rejected", 1.0)] {
            assert_eq!(
                s.value(
                    "felhom_actions_finished_total",
                    &[("kind", "start"), ("outcome", outcome)]
                ),
                Some(n),
                "{outcome}"
            );
        }
        assert_eq!(
            s.value("felhom_pve_task_wait_seconds", &[("kind", "start")]),
            Some(2.0)
        );
        // Paused clock: each wait is exactly the 2 s slept.
        assert!(
            text.contains("felhom_pve_task_wait_seconds_sum{kind=\"start\"} 4"),
            "{text}"
        );
        for series in s.series() {
            for (_, v) in &series.labels {
                assert!(!v.contains("101") && !v.contains("UPID"), "{series:?}");
            }
        }
    }

    #[tokio::test]
    async fn the_task_list_is_labelled_by_its_template() {
        let metrics = Metrics::new("test");
        let api = MeteredApi::new(Fake, metrics.clone());
        let filter = TaskFilter {
            vmid: Some(101),
            typefilter: Some("vzstart".into()),
            ..TaskFilter::default()
        };
        // The fake does not list tasks: one request, an error, under the template.
        api.list_tasks(&filter).await.unwrap_err();
        let s = felhom_testkit::metrics::Scrape::parse(&metrics.render()).unwrap();
        assert_eq!(
            s.value(
                "felhom_pve_requests_total",
                &[
                    ("method", "GET"),
                    ("endpoint", "/nodes/{node}/tasks"),
                    ("result", "error")
                ]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn the_journal_seam_counts_writes_and_times_fsyncs() {
        let metrics = Metrics::new("test");
        let dir = tempfile::tempdir().unwrap();
        let fs = Arc::new(MeteredFs::new(felhom_journal::RealFs, metrics.clone()));
        let (mut j, _) =
            felhom_journal::OpJournal::open_with(dir.path().join("journal.log"), fs).unwrap();
        let before = felhom_testkit::metrics::Scrape::parse(&metrics.render())
            .unwrap()
            .value("felhom_journal_appends_total", &[])
            .unwrap();
        j.started(Some(105), "start", None, 1000).unwrap();
        let s = felhom_testkit::metrics::Scrape::parse(&metrics.render()).unwrap();
        assert_eq!(
            s.value("felhom_journal_appends_total", &[]),
            Some(before + 1.0)
        );
        assert!(s.value("felhom_journal_fsync_seconds", &[]).unwrap() >= 1.0);
    }
}
