//! The I/O half of restore tests: a round over the host's guests, each test's steps as queue
//! jobs with journaled ops, the destroy through the reversibility gate, and startup recovery of
//! a scratch guest a crash left behind.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use felhom_authz::NonceStore;
use felhom_journal::{OpEntry, OpId, OpState};
use felhom_proxmox::{
    ConfigUpdate, GuestStatus, GuestSummary, ProxmoxApi, ProxmoxError, RestoreRequest,
    SetConfigOutcome, Upid, WaitOptions,
};
use felhom_types::VmidRange;
use futures::StreamExt;

use super::plan::{
    latest_backups, parse_scratch_op_id, report_entry, room_for, round_due, scratch_op_id,
    BackupListing, Candidate, Outcome, ScratchPool, TestResult,
};
use super::store::{ResultRecord, ResultStore};
use crate::classify::{Provenance, CREATE_GUEST_ACTION};
use crate::destructive::DestructiveAction;
use crate::engine::{journal_write, OpStep, SharedJournal, StepProbe};
use crate::executor::{DestructiveExecutor, PveExecutor};
use crate::gate::{ReversibilityGate, Verdict};
use crate::queue::Queue;
use crate::recovery::INTERRUPTED_BEFORE_REQUEST;

/// How often the boot check reads the scratch guest's status.
pub const DEFAULT_BOOT_POLL: Duration = Duration::from_secs(1);

/// What a round needs to know.
#[derive(Debug, Clone)]
pub struct RestoreSettings {
    /// Storage for the scratch guests' volumes.
    pub storage: String,
    /// The only vmids a test creates or destroys.
    pub range: VmidRange,
    /// How long a started guest has to show running with a pid and uptime > 0.
    pub boot_timeout: Duration,
    /// Tests at once (at least 1).
    pub max_concurrent: usize,
    /// Time between rounds.
    pub every: Duration,
    /// Boot check cadence.
    pub boot_poll: Duration,
    /// How tasks are waited on.
    pub wait: WaitOptions,
}

/// The gate's say on destroying a scratch guest: benign only by journal provenance. Never
/// signed (a restore test carries no operator signature), so any other verdict refuses it.
pub trait ScratchGate: Send + Sync + 'static {
    /// Decides (and audits) `destroy_guest` of `vmid` without a signature.
    fn decide_scratch_destroy(&self, vmid: u32, now: u64) -> Verdict;
}

impl<N: NonceStore + 'static> ScratchGate for ReversibilityGate<N> {
    fn decide_scratch_destroy(&self, vmid: u32, now: u64) -> Verdict {
        self.decide_destructive(&DestructiveAction::DestroyGuest { vmid }, None, now)
    }
}

/// A round could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoundError {
    /// The guest list could not be read: nothing is known to be free.
    #[error("restore tests: cannot list guests: {0}")]
    Guests(#[source] ProxmoxError),
    /// The storage list could not be read: no backup is known.
    #[error("restore tests: cannot list storages: {0}")]
    Storages(#[source] ProxmoxError),
}

/// What a round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundSummary {
    /// Every test that ended (recorded and reported), in the order they ended.
    pub results: Vec<TestResult>,
    /// Candidates not started because the hub blocked the host or the agent is stopping.
    pub not_started: usize,
}

/// Runs restore tests.
pub struct RestoreTester<A, G> {
    api: Arc<A>,
    gate: Arc<G>,
    queue: Queue,
    journal: SharedJournal,
    store: Arc<ResultStore>,
    settings: RestoreSettings,
    clock: Arc<dyn Fn() -> u64 + Send + Sync>,
    probe: Option<StepProbe>,
}

impl<A, G> fmt::Debug for RestoreTester<A, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestoreTester")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Whether the hub blocks the host now.
pub type Blocked = Arc<dyn Fn() -> bool + Send + Sync>;

impl<A: ProxmoxApi + 'static, G: ScratchGate> RestoreTester<A, G> {
    /// A tester. Every mutation goes through `queue` (keyed by the scratch vmid) and is
    /// journaled in `journal`; results go to `store`. The clock is the system's (unix
    /// seconds); see [`RestoreTester::with_clock`].
    pub fn new(
        api: Arc<A>,
        gate: Arc<G>,
        queue: Queue,
        journal: SharedJournal,
        store: Arc<ResultStore>,
        settings: RestoreSettings,
    ) -> Self {
        Self {
            api,
            gate,
            queue,
            journal,
            store,
            settings,
            clock: Arc::new(|| {
                u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
            }),
            probe: None,
        }
    }

    /// Replaces the clock (tests: the simulator's).
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// TEST ONLY: told each journaled step (the daemon's crash seam).
    pub fn with_probe(mut self, probe: Option<StepProbe>) -> Self {
        self.probe = probe;
        self
    }

    /// The results store.
    pub fn store(&self) -> &Arc<ResultStore> {
        &self.store
    }

    /// The settings.
    pub fn settings(&self) -> &RestoreSettings {
        &self.settings
    }

    /// The settings, to change (tests).
    pub fn settings_mut(&mut self) -> &mut RestoreSettings {
        &mut self.settings
    }

    fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Whether a round is due now (never ran, or `every` since the last one started).
    pub fn due(&self) -> bool {
        round_due(
            self.store.last_round(),
            self.now(),
            self.settings.every.as_secs(),
        )
    }

    /// Seconds until the next round is due (0: now).
    pub fn until_due(&self) -> Duration {
        let next = self
            .store
            .last_round()
            .map_or(0, |l| l.saturating_add(self.settings.every.as_secs()));
        Duration::from_secs(next.saturating_sub(self.now()))
    }

    /// One round: every guest's latest backup, at most `max_concurrent` at once. A test is
    /// not started while `blocked()` (the hub blocked the host) or once the queue is closed.
    pub async fn run_round(&self, blocked: Blocked) -> Result<RoundSummary, RoundError> {
        let round = self.now();
        let guests = self.api.list_lxc().await.map_err(RoundError::Guests)?;
        let backups = self.list_backups().await?;
        let present: BTreeSet<u32> = guests.iter().map(|g| g.vmid).collect();
        let candidates = latest_backups(&present, &backups, self.settings.range);
        let pool = Mutex::new(ScratchPool::new(
            self.settings.range,
            present.iter().copied(),
        ));
        tracing::info!(
            tests = candidates.len(),
            range = %self.settings.range,
            "restore tests: round starts"
        );
        let pool = &pool;
        let blocked = &blocked;
        let ran: Vec<Option<TestResult>> = futures::stream::iter(candidates)
            .map(|c| async move {
                if blocked() || self.queue.is_closed() {
                    return None;
                }
                Some(self.test_one(c, pool, round).await)
            })
            .buffer_unordered(self.settings.max_concurrent.max(1))
            .collect()
            .await;
        let mut summary = RoundSummary::default();
        for r in ran {
            match r {
                Some(r) => summary.results.push(r),
                None => summary.not_started += 1,
            }
        }
        Ok(summary)
    }

    async fn list_backups(&self) -> Result<Vec<BackupListing>, RoundError> {
        let storages = self
            .api
            .node_storage()
            .await
            .map_err(RoundError::Storages)?;
        let mut out = Vec::new();
        for s in storages {
            if !s.content.iter().any(|c| c == "backup") || s.active == Some(false) {
                continue;
            }
            match self
                .api
                .storage_content(&s.storage, Some("backup"), None)
                .await
            {
                Ok(items) => out.extend(items.into_iter().map(|i| BackupListing {
                    volid: i.volid,
                    vmid: i.vmid,
                    subtype: i.subtype,
                    ctime: i.ctime.unwrap_or(0),
                    size: i.size.unwrap_or(0),
                })),
                Err(e) => {
                    tracing::warn!(storage = %s.storage, error = %e, "restore tests: storage content unreadable, its backups are not tested this round");
                }
            }
        }
        Ok(out)
    }

    async fn free_space(&self) -> Option<u64> {
        let storages = self.api.node_storage().await.ok()?;
        storages
            .into_iter()
            .find(|s| s.storage == self.settings.storage && s.active != Some(false))
            .and_then(|s| s.avail)
    }

    /// One test to its end, recorded in the store.
    async fn test_one(&self, c: Candidate, pool: &Mutex<ScratchPool>, round: u64) -> TestResult {
        let started = self.now();
        let mut t = Test {
            result: TestResult {
                candidate: c.clone(),
                scratch: None,
                outcome: Outcome::Ok,
                reason: None,
                error: None,
                steps: Vec::new(),
                started,
                finished: started,
            },
            op_id: None,
        };
        // Space first: nothing is created for a backup that cannot fit.
        if let Err(detail) = room_for(self.free_space().await, c.size, &self.settings.storage) {
            t.skip("low_space", detail);
        } else {
            let scratch = pool.lock().unwrap_or_else(PoisonError::into_inner).take();
            match scratch {
                None => t.skip(
                    "no_free_vmid",
                    format!("every vmid of {} is taken", self.settings.range),
                ),
                Some(scratch) => {
                    let gone = self.cycle(&mut t, scratch).await;
                    if gone {
                        pool.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .give_back(scratch);
                    }
                }
            }
        }
        t.result.finished = self.now();
        self.record(&t, round).await;
        t.result
    }

    async fn record(&self, t: &Test, round: u64) {
        let entry = report_entry(&t.result);
        let level_ok = t.result.outcome == Outcome::Ok;
        if level_ok {
            tracing::info!(vmid = entry.vmid, volid = %entry.volid, scratch = ?entry.scratch_vmid, "restore test ok");
        } else {
            tracing::warn!(vmid = entry.vmid, volid = %entry.volid, scratch = ?entry.scratch_vmid, outcome = %entry.outcome, reason = ?entry.reason, error = ?entry.error, "restore test did not pass");
        }
        let record = ResultRecord {
            op_id: t.op_id.clone(),
            round,
            test: entry,
        };
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || store.record(record)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "restore-test result kept in memory only")
            }
            Err(e) => tracing::error!(error = %e, "restore-test result write did not complete"),
        }
    }

    /// restore → isolate → start → boot check → stop → destroy. Returns whether the scratch
    /// vmid is free again (its guest is gone).
    async fn cycle(&self, t: &mut Test, scratch: u32) -> bool {
        assert!(
            self.settings.range.contains(scratch),
            "a scratch vmid outside the range"
        );
        let c = t.result.candidate.clone();
        let op_id = self.free_op_id(scratch_op_id(c.vmid, &c.volid, scratch, t.result.started));
        t.result.scratch = Some(scratch);
        t.op_id = Some(op_id.clone());
        let request = RestoreRequest {
            vmid: scratch,
            archive: c.volid.clone(),
            storage: Some(self.settings.storage.clone()),
            force: false,
            unique: true,
            start: false,
            extra: Default::default(),
        };
        match self
            .step(
                scratch,
                CREATE_GUEST_ACTION,
                Some(op_id),
                Call::Restore(request),
            )
            .await
        {
            Ok(()) => t.step(format!("restored into {scratch}")),
            Err(e) => {
                t.fail(Outcome::RestoreFailed, "restore", e.line());
                // PVE removes a half-made guest when its restore task fails; any other
                // failure leaves the op for recovery and the vmid taken.
                return e.task_failed();
            }
        }

        let booted = match self.isolate(scratch).await {
            Err(e) => {
                t.fail(Outcome::RestoreFailed, "isolate", e);
                false
            }
            Ok(n) => {
                t.step(format!("{n} network interface(s) removed"));
                match self.step(scratch, "start", None, Call::Start).await {
                    Err(e) => {
                        t.fail(Outcome::BootFailed, "start", e.line());
                        false
                    }
                    Ok(()) => match self.boot_check(scratch).await {
                        Ok(uptime) => {
                            t.step(format!("running with a pid, uptime {uptime} s"));
                            true
                        }
                        Err(e) => {
                            t.fail(Outcome::BootFailed, "boot_timeout", e);
                            false
                        }
                    },
                }
            }
        };
        if booted {
            match self.step(scratch, "stop", None, Call::Stop).await {
                Ok(()) => t.step("stopped".to_owned()),
                // The destroy stops it anyway; the stop's failure is noted, not fatal.
                Err(e) => t.step(format!("stop failed ({})", e.line())),
            }
        }
        self.destroy(t, scratch).await
    }

    /// `base`, or `base #n` with the lowest `n` no journaled op uses (two tests of one backup
    /// into one vmid within a second).
    fn free_op_id(&self, base: String) -> String {
        let j = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
        let taken = |id: &str| OpId::new(id).is_ok_and(|id| j.get(&id).is_some());
        if !taken(&base) {
            return base;
        }
        (2u32..)
            .map(|n| format!("{base} #{n}"))
            .find(|id| !taken(id))
            .unwrap_or(base)
    }

    /// Deletes every `netN` of the stopped scratch guest and reads back that none is left.
    async fn isolate(&self, scratch: u32) -> Result<usize, String> {
        let nets = |c: &felhom_proxmox::LxcConfig| -> Vec<String> {
            c.extra.keys().filter(|k| is_net_key(k)).cloned().collect()
        };
        let config = self
            .api
            .guest_config(scratch)
            .await
            .map_err(|e| format!("cannot read the restored config: {e}"))?;
        let delete = nets(&config);
        if !delete.is_empty() {
            let update = ConfigUpdate {
                delete: delete.clone(),
                digest: config.digest.clone(),
                ..ConfigUpdate::default()
            };
            self.step(scratch, "set_config", None, Call::SetConfig(update))
                .await
                .map_err(|e| e.line())?;
        }
        let after = self
            .api
            .guest_config(scratch)
            .await
            .map_err(|e| format!("cannot read the config back: {e}"))?;
        let left = nets(&after);
        if !left.is_empty() {
            return Err(format!(
                "network interfaces still configured ({}): not started",
                left.join(", ")
            ));
        }
        Ok(delete.len())
    }

    /// Until the guest shows running with a pid and uptime > 0, or the boot timeout.
    async fn boot_check(&self, scratch: u32) -> Result<u64, String> {
        let deadline = tokio::time::Instant::now() + self.settings.boot_timeout;
        loop {
            let last = match self.api.guest_status(scratch).await {
                Ok(s) => {
                    if let Some(uptime) = booted(&s) {
                        return Ok(uptime);
                    }
                    format!(
                        "status {:?}, pid {}, uptime {}",
                        s.status,
                        s.pid.map_or("none".to_owned(), |p| p.to_string()),
                        s.uptime.unwrap_or(0)
                    )
                }
                Err(e) => e.to_string(),
            };
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(format!(
                    "not running with a pid and uptime > 0 after {} s (last: {last})",
                    self.settings.boot_timeout.as_secs()
                ));
            }
            tokio::time::sleep(self.settings.boot_poll.min(deadline - now)).await;
        }
    }

    /// The destroy, through the gate. Returns whether the guest is gone.
    async fn destroy(&self, t: &mut Test, scratch: u32) -> bool {
        match self.destroy_scratch(scratch).await {
            Ok(()) => {
                t.step("destroyed".to_owned());
                true
            }
            Err(e) => {
                let error = match t.result.error.take() {
                    Some(earlier) => format!("{e}; earlier: {earlier}"),
                    None => e,
                };
                t.result.outcome = Outcome::CleanupFailed;
                t.result.reason = Some("destroy");
                t.result.error = Some(error);
                t.step("destroy failed: the scratch guest may be left".to_owned());
                false
            }
        }
    }

    /// Asks the gate (benign only by provenance), then stops and deletes the guest as a
    /// journaled `destroy_guest` op.
    async fn destroy_scratch(&self, scratch: u32) -> Result<(), String> {
        if !self.settings.range.contains(scratch) {
            return Err(format!(
                "{scratch} is outside the scratch range {}",
                self.settings.range
            ));
        }
        let gate = Arc::clone(&self.gate);
        let now = self.now();
        let verdict =
            tokio::task::spawn_blocking(move || gate.decide_scratch_destroy(scratch, now))
                .await
                .map_err(|e| format!("gate task did not complete: {e}"))?;
        if let Err(reason) = verdict {
            return Err(format!("destroy refused by the gate: {reason}"));
        }
        self.step(scratch, "destroy_guest", None, Call::Destroy)
            .await
            .map_err(|e| e.line())
    }

    /// One journaled mutation as a queue job on `vmid`.
    async fn step(
        &self,
        vmid: u32,
        action: &'static str,
        op_id: Option<String>,
        call: Call,
    ) -> Result<(), StepError> {
        let job = Job {
            api: Arc::clone(&self.api),
            journal: Arc::clone(&self.journal),
            wait: self.settings.wait.clone(),
            probe: self.probe.clone(),
            now: self.now(),
            vmid,
            action,
        };
        match self.queue.submit(vmid, move || job.run(op_id, call)) {
            Ok(handle) => handle.await.map_err(|e| StepError::Other(e.to_string()))?,
            Err(_) => Err(StepError::Other(
                "the queue is closed: the agent is stopping".to_owned(),
            )),
        }
    }

    /// Startup: every scratch guest the journal proves the agent created and did not destroy
    /// is destroyed (benign by provenance); each test a crash cut short is recorded
    /// `interrupted`. Call after [`crate::recover`] closed the in-flight ops. Reads PVE once;
    /// if it cannot, nothing is done (the next start tries again).
    pub async fn recover(&self) -> Vec<TestResult> {
        let entries: Vec<OpEntry> = {
            let j = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
            j.entries().cloned().collect()
        };
        let provenance = Provenance::from_entries(&entries);
        let scratch_ops: Vec<&OpEntry> = entries
            .iter()
            .filter(|e| {
                e.action == CREATE_GUEST_ACTION
                    && e.vmid.is_some_and(|v| self.settings.range.contains(v))
                    && parse_scratch_op_id(e.op_id.as_str()).is_some()
            })
            .collect();
        if scratch_ops.is_empty() {
            return Vec::new();
        }
        let guests: BTreeSet<u32> = match self.api.list_lxc().await {
            Ok(list) => list.iter().map(|g| g.vmid).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "restore tests: cannot list guests at startup; scratch guests are checked at the next start");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for entry in scratch_ops {
            let Some(scratch) = entry.vmid else { continue };
            let open = provenance.created_by(scratch) == Some(&entry.op_id);
            let failed_early = matches!(&entry.state, OpState::Failed { error } if error == INTERRUPTED_BEFORE_REQUEST);
            if !open && !failed_early {
                continue;
            }
            let Some((source, volid)) = parse_scratch_op_id(entry.op_id.as_str()) else {
                continue;
            };
            let ended = self.store.has_op(entry.op_id.as_str()) || self.newer_result(source, entry);
            let mut t = Test {
                result: TestResult {
                    candidate: Candidate {
                        vmid: source,
                        volid,
                        ctime: 0,
                        size: 0,
                    },
                    scratch: Some(scratch),
                    outcome: Outcome::Interrupted,
                    reason: None,
                    error: None,
                    steps: vec!["interrupted by a stop or crash".to_owned()],
                    started: entry.at,
                    finished: entry.at,
                },
                op_id: Some(entry.op_id.as_str().to_owned()),
            };
            if open && guests.contains(&scratch) {
                match self.destroy_scratch(scratch).await {
                    Ok(()) => {
                        t.result.reason = Some("scratch_destroyed");
                        t.step(format!("scratch guest {scratch} destroyed at startup"));
                    }
                    Err(e) => {
                        t.result.reason = Some("scratch_left");
                        t.result.error = Some(e);
                        t.step(format!("scratch guest {scratch} could not be destroyed"));
                    }
                }
            } else if guests.contains(&scratch) {
                // Created by a request whose answer the crash lost: not provably ours.
                t.result.reason = Some("scratch_left");
                t.result.error = Some(format!(
                    "guest {scratch} exists but the journal does not prove the agent created \
                     it: not destroyed (an operator checks it)"
                ));
            } else {
                t.result.reason = Some("scratch_absent");
                t.step(format!("no scratch guest {scratch} left"));
            }
            if ended {
                // Its test was already reported (e.g. cleanup_failed): this was a retry.
                tracing::info!(scratch, reason = ?t.result.reason, "restore tests: leftover scratch guest handled at startup");
                continue;
            }
            t.result.finished = self.now();
            self.record(&t, t.result.started).await;
            out.push(t.result);
        }
        out
    }

    fn newer_result(&self, source: u32, entry: &OpEntry) -> bool {
        self.store.tail().iter().any(|r| {
            r.vmid == source
                && r.started_at
                    .as_ref()
                    .is_some_and(|s| s.unix_seconds() > i64::try_from(entry.at).unwrap_or(i64::MAX))
        })
    }
}

/// The uptime of a guest that is up: running, with a pid, uptime > 0.
pub fn booted(s: &GuestSummary) -> Option<u64> {
    let uptime = s.uptime.unwrap_or(0);
    (s.status == GuestStatus::Running && s.pid.is_some() && uptime > 0).then_some(uptime)
}

fn is_net_key(key: &str) -> bool {
    key.strip_prefix("net")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

struct Test {
    result: TestResult,
    op_id: Option<String>,
}

impl Test {
    fn step(&mut self, s: String) {
        self.result.steps.push(s);
    }

    fn skip(&mut self, reason: &'static str, detail: String) {
        self.result.outcome = Outcome::Skipped;
        self.result.reason = Some(reason);
        self.result.steps.push(format!("skipped: {detail}"));
    }

    fn fail(&mut self, outcome: Outcome, reason: &'static str, error: String) {
        self.result.outcome = outcome;
        self.result.reason = Some(reason);
        self.result.steps.push(format!("{reason} failed"));
        self.result.error = Some(error);
    }
}

/// The mutations a test makes.
enum Call {
    Restore(RestoreRequest),
    SetConfig(ConfigUpdate),
    Start,
    Stop,
    Destroy,
}

#[derive(Debug)]
enum StepError {
    /// PVE ran the task and it failed: the error line.
    Task(String),
    /// Anything else (refused request, timeout, journal, queue).
    Other(String),
}

impl StepError {
    fn line(&self) -> String {
        match self {
            StepError::Task(s) | StepError::Other(s) => s.clone(),
        }
    }

    fn task_failed(&self) -> bool {
        matches!(self, StepError::Task(_))
    }
}

fn from_proxmox(e: ProxmoxError) -> StepError {
    match e {
        ProxmoxError::Task(t) => StepError::Task(t.exitstatus.clone()),
        other => StepError::Other(other.to_string()),
    }
}

struct Job<A> {
    api: Arc<A>,
    journal: SharedJournal,
    wait: WaitOptions,
    probe: Option<StepProbe>,
    now: u64,
    vmid: u32,
    action: &'static str,
}

impl<A: ProxmoxApi + 'static> Job<A> {
    fn probe(&self, step: OpStep) {
        if let Some(p) = &self.probe {
            p.call(step, self.vmid, self.action);
        }
    }

    /// started → request → task_running → wait → succeeded | failed. A failure other than
    /// the task's own (a timeout, a lost answer) leaves the op in flight for recovery.
    async fn run(self, op_id: Option<String>, call: Call) -> Result<(), StepError> {
        let (vmid, action, now) = (self.vmid, self.action, self.now);
        self.probe(OpStep::BeforeStarted);
        let op = match op_id {
            Some(id) => {
                let id = OpId::new(id).map_err(|e| StepError::Other(e.to_string()))?;
                let op = id.clone();
                journal_write(&self.journal, move |j| {
                    j.started_with_id(op, Some(vmid), action, None, now)
                })
                .await
                .map(|()| id)
            }
            None => {
                journal_write(&self.journal, move |j| {
                    j.started(Some(vmid), action, None, now)
                })
                .await
            }
        }
        .map_err(|e| StepError::Other(format!("not sent: cannot journal its start: {e}")))?;
        self.probe(OpStep::AfterStarted);
        let sent = self.send(call).await;
        let upid = match sent {
            Ok(Some(upid)) => upid,
            Ok(None) => {
                self.probe(OpStep::AfterRequest);
                return self.end(&op, Ok(())).await;
            }
            Err(e) => return self.end(&op, Err(e)).await,
        };
        self.probe(OpStep::AfterRequest);
        let (o, text) = (op.clone(), upid.to_string());
        if let Err(e) = journal_write(&self.journal, move |j| j.task_running(&o, &text, now)).await
        {
            tracing::error!(op_id = %op, error = %e, "cannot journal a restore-test task");
        }
        self.probe(OpStep::AfterTaskRunning);
        let waited = felhom_proxmox::wait_task(&*self.api, &upid, &self.wait).await;
        self.probe(OpStep::AfterTaskEnd);
        match waited {
            Ok(_) => self.end(&op, Ok(())).await,
            Err(e @ ProxmoxError::Task(_)) => self.end(&op, Err(from_proxmox(e))).await,
            Err(e) => Err(StepError::Other(format!("{e} (left for startup recovery)"))),
        }
    }

    async fn send(&self, call: Call) -> Result<Option<Upid>, StepError> {
        let api = &*self.api;
        let sent = match call {
            Call::Restore(req) => api.restore_lxc(&req).await.map(Some),
            Call::SetConfig(update) => match api.set_config(self.vmid, &update).await {
                Ok(SetConfigOutcome::Applied) => Ok(None),
                Ok(SetConfigOutcome::Task(upid)) => Ok(Some(upid)),
                Err(e) => Err(e),
            },
            Call::Start => api.start(self.vmid).await.map(Some),
            Call::Stop => api.stop(self.vmid).await.map(Some),
            Call::Destroy => {
                // The gate's executor: stops a running guest first, then deletes it with its
                // disks (`purge=1`, `destroy-unreferenced-disks=1`).
                let exec = PveExecutor::new(Arc::clone(&self.api), self.wait.clone());
                return match exec
                    .send(&DestructiveAction::DestroyGuest { vmid: self.vmid })
                    .await
                {
                    Ok(upid) => Ok(Some(upid)),
                    Err(crate::executor::ExecError::Proxmox(e)) => Err(from_proxmox(e)),
                    Err(e) => Err(StepError::Other(e.to_string())),
                };
            }
        };
        sent.map_err(from_proxmox)
    }

    async fn end(&self, op: &OpId, result: Result<(), StepError>) -> Result<(), StepError> {
        let now = self.now;
        let o = op.clone();
        let write = match &result {
            Ok(()) => journal_write(&self.journal, move |j| j.succeeded(&o, now)).await,
            Err(e) => {
                let line = e.line();
                journal_write(&self.journal, move |j| j.failed(&o, &line, now)).await
            }
        };
        if let Err(e) = write {
            tracing::error!(op_id = %op, error = %e, "cannot journal the end of a restore-test op");
            if result.is_ok() {
                return Err(StepError::Other(format!(
                    "done at pve, but its end is not journaled: {e}"
                )));
            }
        }
        result
    }
}
