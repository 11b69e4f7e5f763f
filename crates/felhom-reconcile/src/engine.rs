//! The reconcile engine: one pass reads desired and actual state, plans, and executes every
//! planned action as a queue job that passes the [`Gate`], is journaled, and waits for its task.
//!
//! A pass, in order:
//! 1. desired state from a [`DesiredProvider`]; an error fails the pass before anything is read
//!    or written ([`EngineError::Desired`]);
//! 2. the guest list (`list_lxc`); an error fails the pass with zero mutations
//!    ([`EngineError::ListGuests`]);
//! 3. the config of each listed guest that is desired, with bounded concurrency; a guest whose
//!    config cannot be read gets `config: None`, so the plan never writes it;
//! 4. the pure [`plan`];
//! 5. every action submitted to the [`Queue`] (the single choke point: the engine never calls a
//!    mutating API outside a queue job); per guest in plan order, guests in parallel;
//! 6. each job: cancelled? → not run; [`Gate`] → refused or allowed; journal `started`; the
//!    request; `task_running(upid)` when PVE hands back a task; [`wait_task`]; `succeeded` or
//!    `failed`. A synchronous `set_config` (`data: null`) is success at once, with no task.
//!
//! A failed action is counted in the [`PassSummary`], never fatal: other guests still converge,
//! and the next pass re-plans from what PVE then reports. A guest's own actions are independent
//! too (each is convergent on its own): a refused config write does not hold back its start.
//!
//! **A guest that does not finish.** With [`EngineOptions::pass_wait`] a pass stops waiting
//! once that long has passed: jobs still running (a PVE task that never ends) finish in the
//! background, and their guests are skipped — logged each pass, counted in
//! [`PassSummary::busy`] — until they have, so one stuck guest never holds the others back.
//!
//! **Journal-less mode.** The journal is optional: a daemon whose journal cannot open keeps
//! reconciling without it. That is only sound for actions that are convergent (re-running one
//! after an unrecorded crash does no harm, because the next pass re-plans from actual state)
//! and benign. Every action the planner produces today — start, stop, set config — is both;
//! [`runs_without_journal`] is an exhaustive match, so a one-shot or signed action added later
//! cannot run journal-less until someone decides it may.
//!
//! **Cancellation.** [`EngineOptions::cancel`] stops what has not started (the job reports
//! "not run", nothing is journaled) and stops *waiting* on tasks. A PVE task keeps running
//! server-side whatever we do, so a job cancelled while waiting leaves its op `task_running`
//! in the journal and reports it as interrupted; startup [`recovery`](crate::recovery) closes
//! it from the task's real outcome.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use felhom_journal::{OpError, OpId, OpJournal};
use felhom_proxmox::{
    wait_task, GuestSummary, LxcConfig, ProxmoxApi, ProxmoxError, SetConfigOutcome, Upid,
    WaitOptions,
};
use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::actual::{actual_guest, config_update};
use crate::desired::{unaligned_sizes, DesiredError, DesiredProvider, DesiredState, Rounded};
use crate::destructive::DestructiveAction;
use crate::executor::{DestructiveExecutor, ExecError, PveExecutor};
use crate::normalize::NormalizerRegistry;
use crate::plan::{plan, Action, ActualGuest, Skip, SkipReason};
use crate::queue::{JobError, JobHandle, Queue};

/// The op journal as the engine and recovery share it with the rest of the daemon. Writes go
/// through `spawn_blocking` (each one is an fsync), never on a runtime worker.
pub type SharedJournal = Arc<Mutex<OpJournal>>;

/// Guest configs read at once by default: enough to read a large host quickly, few enough not
/// to crowd pveproxy's workers.
pub const DEFAULT_READ_CONCURRENCY: usize = 8;

/// Default longest wait on one task before the engine records it failed (it may still be
/// running; the next pass re-plans from actual state).
pub const DEFAULT_TASK_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The journal's name for an action (`start`, `stop`, `set_config`).
pub fn action_name(action: &Action) -> &'static str {
    match action {
        Action::SetConfig { .. } => "set_config",
        Action::Start { .. } => "start",
        Action::Stop { .. } => "stop",
        Action::Destroy { .. } => "destroy_guest",
    }
}

/// Whether `action` may run with no journal: only convergent, benign actions may (re-running
/// one does no harm). The match is exhaustive on purpose: a new kind of action must be decided
/// here before it compiles.
pub fn runs_without_journal(action: &Action) -> bool {
    match action {
        // Convergent: the plan only proposes them while actual differs from desired, and the
        // next pass re-reads actual state, so an unrecorded run cannot repeat harmfully.
        Action::SetConfig { .. } | Action::Start { .. } | Action::Stop { .. } => true,
        // Destroys data: never without a record a crash can be recovered from.
        Action::Destroy { .. } => false,
    }
}

/// What the [`Gate`] says about one action.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GateDecision {
    /// Execute it.
    Allow,
    /// Do not execute it; nothing is sent or journaled.
    Refuse {
        /// Why, for the summary and the log.
        reason: String,
    },
    /// Destructive and unsigned: held until a matching signed op runs it; nothing is sent or
    /// journaled.
    Pending {
        /// Why, for the summary and the log.
        reason: String,
    },
}

/// Every action passes the gate inside its queue job, right before it is journaled and sent:
/// the seam where phase B's signature check goes (destructive actions need a verified,
/// role-scoped, action-bound operator signature; benign ones pass unsigned).
pub trait Gate: Send + Sync + 'static {
    /// Decides on `action`.
    fn decide(&self, action: &Action) -> impl Future<Output = GateDecision> + Send;
}

/// The gate of phase A: benign actions are allowed unsigned — the real rule, not a
/// placeholder — and every action the planner can produce today is benign.
#[derive(Debug, Clone, Copy, Default)]
pub struct BenignGate;

impl Gate for BenignGate {
    fn decide(&self, action: &Action) -> impl Future<Output = GateDecision> + Send {
        // Exhaustive: a destructive action added to `Action` must be classified here.
        let decision = match action {
            // Run state and sizes: reversible, no customer data destroyed or overwritten.
            Action::SetConfig { .. } | Action::Start { .. } | Action::Stop { .. } => {
                GateDecision::Allow
            }
            // Destructive, and this gate can check no signature and read no provenance.
            Action::Destroy { .. } => GateDecision::Pending {
                reason: "destructive: pending an operator signature".to_owned(),
            },
        };
        std::future::ready(decision)
    }
}

/// A step of one op's life inside its queue job, in order. [`StepProbe`] is told each one as
/// it is reached; the crash-point harness (`cargo xtask crashpoints`) kills the daemon there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpStep {
    /// The gate allowed it; the journal's `started` is not written yet.
    BeforeStarted,
    /// `started` is on disk; the request is not sent yet.
    AfterStarted,
    /// PVE answered the request (a task was created, or a synchronous config write applied);
    /// nothing more is journaled yet.
    AfterRequest,
    /// `task_running(upid)` is on disk; the wait on the task has not begun.
    AfterTaskRunning,
    /// The wait on the task ended (the task is over); the terminal record is not written yet.
    AfterTaskEnd,
}

impl OpStep {
    /// Every step, in the order a job with a task reaches them.
    pub const ALL: [OpStep; 5] = [
        OpStep::BeforeStarted,
        OpStep::AfterStarted,
        OpStep::AfterRequest,
        OpStep::AfterTaskRunning,
        OpStep::AfterTaskEnd,
    ];

    /// The step's name (`after-started`, ...).
    pub fn name(self) -> &'static str {
        match self {
            OpStep::BeforeStarted => "before-started",
            OpStep::AfterStarted => "after-started",
            OpStep::AfterRequest => "after-request",
            OpStep::AfterTaskRunning => "after-task-running",
            OpStep::AfterTaskEnd => "after-task-end",
        }
    }

    /// The step named `name`.
    pub fn from_name(name: &str) -> Option<OpStep> {
        OpStep::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// TEST ONLY: told every [`OpStep`] a job reaches, with the guest and the action's journal
/// name. The daemon installs one only while its test-only crash variable is set; it must not
/// hold the job up (it runs on the job's task).
#[derive(Clone)]
pub struct StepProbe(Arc<dyn Fn(OpStep, u32, &'static str) + Send + Sync>);

impl StepProbe {
    /// A probe calling `f`.
    pub fn new(f: impl Fn(OpStep, u32, &'static str) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Tells the probe that `action` on `vmid` reached `step`.
    pub fn call(&self, step: OpStep, vmid: u32, action: &'static str) {
        (self.0)(step, vmid, action);
    }
}

impl fmt::Debug for StepProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StepProbe")
    }
}

/// Tuning and control of the engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Guest configs read at once.
    pub read_concurrency: NonZeroUsize,
    /// How tasks are waited on. Its `cancel` token is replaced by [`EngineOptions::cancel`].
    pub wait: WaitOptions,
    /// Stops jobs that have not started and waits that are under way (not PVE's tasks).
    pub cancel: CancellationToken,
    /// Longest a pass waits for its jobs once they are submitted; `None`: until each ends.
    /// A job still running then (a PVE task that never ends) is left to finish in the
    /// background, and its guest is skipped by later passes until it has, so one stuck guest
    /// does not hold the others back.
    pub pass_wait: Option<Duration>,
    /// TEST ONLY: told each step of every op's life (see [`StepProbe`]); `None` in production.
    pub step_probe: Option<StepProbe>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            read_concurrency: NonZeroUsize::new(DEFAULT_READ_CONCURRENCY)
                .unwrap_or(NonZeroUsize::MIN),
            wait: WaitOptions {
                timeout: DEFAULT_TASK_TIMEOUT,
                ..WaitOptions::default()
            },
            cancel: CancellationToken::new(),
            pass_wait: None,
            step_probe: None,
        }
    }
}

/// Why a pass did not run. Nothing was changed on the host in either case, and both are safe
/// to retry: the next pass reads everything again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The desired state is unknown this pass (never read as "desire nothing").
    #[error("reconcile pass: desired state unavailable, nothing changed: {0}")]
    Desired(#[source] DesiredError),
    /// The guest list could not be read, so actual state is unknown.
    #[error("reconcile pass: cannot list guests on node {node}, nothing changed: {source}")]
    ListGuests {
        /// The node asked.
        node: String,
        /// The client's error.
        #[source]
        source: ProxmoxError,
    },
}

/// A journal write that did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalWriteError {
    /// The journal refused or failed the write; see [`OpError`] for whether the journal is
    /// still usable (after a failed write or fsync it is poisoned: reopen it).
    #[error(transparent)]
    Op(#[from] OpError),
    /// The blocking write task did not finish (it panicked or the runtime is shutting down);
    /// whether the record reached the disk is unknown.
    #[error("op journal: write task did not complete: {0}")]
    Aborted(String),
}

/// Runs `write` on the journal off the async workers (it fsyncs) and returns its result.
pub(crate) async fn journal_write<T, F>(
    journal: &SharedJournal,
    write: F,
) -> Result<T, JournalWriteError>
where
    T: Send + 'static,
    F: FnOnce(&mut OpJournal) -> Result<T, OpError> + Send + 'static,
{
    let journal = Arc::clone(journal);
    let joined = tokio::task::spawn_blocking(move || {
        // A panic while holding the lock cannot leave the journal half-updated: its index
        // changes only after a record is on disk.
        let mut journal = journal.lock().unwrap_or_else(PoisonError::into_inner);
        write(&mut journal)
    })
    .await;
    match joined {
        Ok(result) => result.map_err(JournalWriteError::Op),
        Err(join) => Err(JournalWriteError::Aborted(join.to_string())),
    }
}

/// Unix seconds for journal records: the caller's `now` at the start, advanced by tokio's
/// clock (so tests under a paused clock see consistent times).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PassClock {
    base: u64,
    started: Instant,
}

impl PassClock {
    pub(crate) fn new(now: u64) -> Self {
        Self {
            base: now,
            started: Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> u64 {
        self.base.saturating_add(self.started.elapsed().as_secs())
    }
}

/// One action's result, for the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionReport {
    /// The guest.
    pub vmid: u32,
    /// The action's journal name (`start`, `stop`, `set_config`).
    pub action: &'static str,
    /// The error, the reason it did not run, the task left running, or the warnings.
    pub detail: String,
}

/// A guest whose config could not be read this pass (so it was not written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestError {
    /// The guest.
    pub vmid: u32,
    /// What the read failed with.
    pub error: String,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PassSummary {
    /// Guests in the desired state.
    pub desired_guests: usize,
    /// Guests PVE listed.
    pub actual_guests: usize,
    /// Desired guests whose config could not be read; their config was left alone.
    pub config_errors: Vec<GuestError>,
    /// Actions planned (each one submitted to the queue).
    pub planned: usize,
    /// Actions that succeeded (including those with warnings).
    pub succeeded: usize,
    /// Succeeded with `WARNINGS: n`; `detail` holds the warning lines.
    pub warnings: Vec<ActionReport>,
    /// Actions that failed: at the request, in the task, or unjournalable before sending.
    pub failed: Vec<ActionReport>,
    /// Cancelled while waiting on a task that may still be running; its op stays
    /// `task_running` in the journal for startup recovery.
    pub interrupted: Vec<ActionReport>,
    /// Never sent to PVE: cancelled before it started, refused by the gate, or the queue was
    /// closed.
    pub not_run: Vec<ActionReport>,
    /// Destructive actions the gate holds pending an operator signature (never sent).
    pub pending_signature: Vec<ActionReport>,
    /// What the plan left alone, and why.
    pub skipped: Vec<Skip>,
    /// Mutating requests sent to PVE (`start`, `stop`, `set_config`).
    pub mutations: usize,
    /// Journal writes that failed after the action was sent (logged; the action's own result
    /// is still counted).
    pub journal_errors: usize,
    /// Still running when the pass stopped waiting ([`EngineOptions::pass_wait`]): left to end
    /// in the background; the guest is skipped until it has.
    pub still_running: Vec<ActionReport>,
    /// Actions planned for guests whose job from an earlier pass is still running: not
    /// submitted this pass (the next pass re-plans them once the job ended).
    pub busy: Vec<ActionReport>,
}

impl PassSummary {
    /// Whether the pass sent no mutating request at all.
    pub fn changed_nothing(&self) -> bool {
        self.mutations == 0
    }
}

impl fmt::Display for PassSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} desired, {} on host; planned {}: {} succeeded ({} with warnings), {} failed, \
             {} interrupted, {} not run, {} pending signature, {} still running, {} busy; {} \
             skipped; {} mutating requests",
            self.desired_guests,
            self.actual_guests,
            self.planned,
            self.succeeded,
            self.warnings.len(),
            self.failed.len(),
            self.interrupted.len(),
            self.not_run.len(),
            self.pending_signature.len(),
            self.still_running.len(),
            self.busy.len(),
            self.skipped.len(),
            self.mutations,
        )
    }
}

/// How one job ended.
#[derive(Debug)]
enum Outcome {
    Succeeded { warnings: Vec<String> },
    Failed(String),
    Interrupted(String),
    NotRun(String),
    Pending(String),
}

#[derive(Debug)]
struct JobReport {
    outcome: Outcome,
    journal_errors: usize,
}

/// The reconcile engine. Run one pass at a time ([`Engine::run_pass`] returns once every job it
/// submitted has finished).
pub struct Engine<A, G = BenignGate> {
    api: Arc<A>,
    /// Guests whose job an earlier pass stopped waiting for, and that job's action name.
    busy: Busy,
    /// Sizes whose rounding was already logged (once per value, not every pass).
    rounded_logged: Arc<Mutex<BTreeSet<Rounded>>>,
    queue: Queue,
    journal: Option<SharedJournal>,
    gate: Arc<G>,
    normalizers: NormalizerRegistry,
    options: EngineOptions,
}

impl<A, G> fmt::Debug for Engine<A, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("queue", &self.queue)
            .field("journal", &self.journal.is_some())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<A: ProxmoxApi + 'static> Engine<A, BenignGate> {
    /// An engine acting on `api` through `queue` (shared with everything else that mutates),
    /// journaling into `journal` (`None`: journal-less mode, see the module docs), with the
    /// phase A gate, PVE's normalizers and default options.
    pub fn new(api: Arc<A>, queue: Queue, journal: Option<SharedJournal>) -> Self {
        Self {
            api,
            busy: Busy::default(),
            rounded_logged: Arc::default(),
            queue,
            journal,
            gate: Arc::new(BenignGate),
            normalizers: NormalizerRegistry::pve(),
            options: EngineOptions::default(),
        }
    }
}

impl<A: ProxmoxApi + 'static, G: Gate> Engine<A, G> {
    /// The same engine behind another gate.
    pub fn with_gate<H: Gate>(self, gate: H) -> Engine<A, H> {
        Engine {
            api: self.api,
            busy: self.busy,
            rounded_logged: self.rounded_logged,
            queue: self.queue,
            journal: self.journal,
            gate: Arc::new(gate),
            normalizers: self.normalizers,
            options: self.options,
        }
    }

    /// Replaces the options.
    pub fn with_options(mut self, options: EngineOptions) -> Self {
        self.options = options;
        self
    }

    /// Replaces the normalizers (the default is [`NormalizerRegistry::pve`]).
    pub fn with_normalizers(mut self, normalizers: NormalizerRegistry) -> Self {
        self.normalizers = normalizers;
        self
    }

    /// The API the engine acts on.
    pub fn api(&self) -> &A {
        &self.api
    }

    /// The options in force.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Runs one pass; `now` is the current time in unix seconds (for the journal).
    ///
    /// Fails only when desired or actual state cannot be read, and then changes nothing. Every
    /// per-guest problem is counted in the summary instead.
    pub async fn run_pass<P: DesiredProvider>(
        &self,
        provider: &P,
        now: u64,
    ) -> Result<PassSummary, EngineError> {
        let clock = PassClock::new(now);
        let desired = provider.desired().await.map_err(EngineError::Desired)?;
        let listed = self
            .api
            .list_lxc()
            .await
            .map_err(|source| EngineError::ListGuests {
                node: self.api.node().to_owned(),
                source,
            })?;
        let (actual, config_errors) = self.read_actual(&desired, &listed).await;
        let plan = plan(&desired, &actual, &self.normalizers);
        self.log_desired_notices(&desired, &plan.skipped);

        let mut summary = PassSummary {
            desired_guests: desired.len(),
            actual_guests: listed.len(),
            config_errors,
            planned: plan.actions.len(),
            skipped: plan.skipped,
            ..PassSummary::default()
        };
        if desired.is_empty() {
            tracing::info!(
                guests = listed.len(),
                "desired state is empty: no guest is managed, this pass changes nothing"
            );
        }

        let mutations = Arc::new(AtomicUsize::new(0));
        let mut pending: Vec<(u32, &'static str, Option<JobHandle<JobReport>>)> =
            Vec::with_capacity(plan.actions.len());
        let actions = self.busy.hold_back(plan.actions, &mut summary);
        for action in actions {
            let vmid = action.vmid();
            let name = action_name(&action);
            let job = Job {
                api: Arc::clone(&self.api),
                journal: self.journal.clone(),
                gate: Arc::clone(&self.gate),
                wait: WaitOptions {
                    cancel: self.options.cancel.clone(),
                    ..self.options.wait.clone()
                },
                clock,
                mutations: Arc::clone(&mutations),
                probe: self.options.step_probe.clone(),
            };
            // A closed queue hands the job back unrun; it is reported as not run.
            let handle = self.queue.submit(vmid, move || job.run(action)).ok();
            if handle.is_none() {
                tracing::warn!(
                    vmid,
                    action = name,
                    "job queue closed: action not submitted"
                );
            }
            pending.push((vmid, name, handle));
        }

        let deadline = self.options.pass_wait.map(|wait| Instant::now() + wait);
        let mut left_running = Vec::new();
        for (vmid, action, handle) in pending {
            let report = |detail: String| ActionReport {
                vmid,
                action,
                detail,
            };
            let result = match (handle, deadline) {
                (None, _) => {
                    summary
                        .not_run
                        .push(report("job queue is closed".to_owned()));
                    continue;
                }
                (Some(handle), None) => handle.await,
                (Some(mut handle), Some(deadline)) => {
                    match tokio::time::timeout_at(deadline, &mut handle).await {
                        Ok(result) => result,
                        Err(_) => {
                            summary.still_running.push(report(
                                "still running when the pass stopped waiting; the guest is \
                                 skipped until it ends"
                                    .to_owned(),
                            ));
                            left_running.push((vmid, action, handle));
                            continue;
                        }
                    }
                }
            };
            let job = match result {
                Ok(job) => job,
                Err(error @ JobError::Cancelled { .. }) => {
                    summary.not_run.push(report(error.to_string()));
                    continue;
                }
                Err(error) => {
                    tracing::error!(vmid, action, %error, "reconcile job ended without a result");
                    summary.failed.push(report(error.to_string()));
                    continue;
                }
            };
            summary.journal_errors += job.journal_errors;
            match job.outcome {
                Outcome::Succeeded { warnings } => {
                    summary.succeeded += 1;
                    if !warnings.is_empty() {
                        summary.warnings.push(report(warnings.join("; ")));
                    }
                }
                Outcome::Failed(error) => summary.failed.push(report(error)),
                Outcome::Interrupted(detail) => summary.interrupted.push(report(detail)),
                Outcome::NotRun(reason) => summary.not_run.push(report(reason)),
                Outcome::Pending(reason) => summary.pending_signature.push(report(reason)),
            }
        }
        self.busy.finish_in_background(left_running);
        summary.mutations = mutations.load(Ordering::SeqCst);
        tracing::info!(%summary, "reconcile pass done");
        Ok(summary)
    }

    /// What the operator should know about the desired state that the plan leaves silent:
    /// desired guests not on this host (every pass, one line naming them) and sizes rounded up
    /// to whole MiB (once per value).
    fn log_desired_notices(&self, desired: &DesiredState, skipped: &[Skip]) {
        let missing: Vec<u32> = skipped
            .iter()
            .filter(|skip| skip.reason == SkipReason::NotOnHost)
            .map(|skip| skip.vmid)
            .collect();
        if !missing.is_empty() {
            tracing::warn!(
                vmids = ?missing,
                node = self.api.node(),
                "desired guests not on this host are skipped (provisioning is not automated): \
                 check the vmids in the desired state"
            );
        }
        let mut logged = self
            .rounded_logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for r in unaligned_sizes(desired) {
            if logged.insert(r) {
                tracing::warn!(
                    vmid = r.vmid,
                    field = r.field,
                    bytes = r.bytes,
                    written_mib = r.mib,
                    "desired size is not a whole MiB: PVE stores MiB, so it is rounded up (give \
                     a multiple of 1048576 to silence this)"
                );
            }
        }
    }

    /// The listed guests as the plan sees them, reading the config of each desired one (at
    /// most `read_concurrency` at once). Configs of undesired guests are never needed: the
    /// plan only compares config where a desired guest manages it.
    async fn read_actual(
        &self,
        desired: &DesiredState,
        listed: &[GuestSummary],
    ) -> (Vec<ActualGuest>, Vec<GuestError>) {
        let wanted: BTreeSet<u32> = listed
            .iter()
            .map(|guest| guest.vmid)
            .filter(|vmid| desired.get(*vmid).is_some())
            .collect();
        let api = &*self.api;
        let mut configs: HashMap<u32, LxcConfig> = HashMap::with_capacity(wanted.len());
        let mut errors = Vec::new();
        let mut reads = futures::stream::iter(wanted)
            .map(|vmid| async move { (vmid, api.guest_config(vmid).await) })
            .buffer_unordered(self.options.read_concurrency.get());
        while let Some((vmid, read)) = reads.next().await {
            match read {
                Ok(config) => {
                    configs.insert(vmid, config);
                }
                Err(error) => {
                    tracing::warn!(vmid, %error, "cannot read guest config; it is not written this pass");
                    errors.push(GuestError {
                        vmid,
                        error: error.to_string(),
                    });
                }
            }
        }
        errors.sort_by_key(|error| error.vmid);
        let actual = listed
            .iter()
            .map(|guest| actual_guest(guest, configs.get(&guest.vmid)))
            .collect();
        (actual, errors)
    }
}

/// Guests with a job an earlier pass stopped waiting for ([`EngineOptions::pass_wait`]).
#[derive(Debug, Clone, Default)]
struct Busy(Arc<Mutex<HashMap<u32, &'static str>>>);

impl Busy {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, &'static str>> {
        // A plain map: whole after a panic elsewhere.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The actions of guests that are not busy; the others are counted in `summary.busy` and
    /// logged (each pass, so an operator sees the guest is still waited on).
    fn hold_back(&self, actions: Vec<Action>, summary: &mut PassSummary) -> Vec<Action> {
        let busy = self.lock();
        if busy.is_empty() {
            return actions;
        }
        let mut kept = Vec::with_capacity(actions.len());
        for action in actions {
            let vmid = action.vmid();
            match busy.get(&vmid) {
                Some(running) => {
                    let name = action_name(&action);
                    tracing::warn!(
                        vmid,
                        action = name,
                        running = *running,
                        "guest skipped this pass: its {running} from an earlier pass is still \
                         in flight"
                    );
                    summary.busy.push(ActionReport {
                        vmid,
                        action: name,
                        detail: format!("its {running} from an earlier pass is still in flight"),
                    });
                }
                None => kept.push(action),
            }
        }
        kept
    }

    /// Marks the guests of `jobs` busy until each job ends (its own log line says how).
    fn finish_in_background(&self, jobs: Vec<(u32, &'static str, JobHandle<JobReport>)>) {
        if jobs.is_empty() {
            return;
        }
        {
            let mut busy = self.lock();
            for (vmid, action, _) in &jobs {
                tracing::warn!(
                    vmid = *vmid,
                    action = *action,
                    "action still running: the pass goes on without it; the guest is skipped \
                     until it ends"
                );
                busy.insert(*vmid, action);
            }
        }
        for (vmid, action, handle) in jobs {
            let busy = self.clone();
            tokio::spawn(async move {
                let _ = handle.await;
                busy.lock().remove(&vmid);
                tracing::info!(vmid, action, "a job an earlier pass left running has ended");
            });
        }
    }
}

/// Everything one queue job needs, owned (jobs are `'static`).
struct Job<A, G> {
    api: Arc<A>,
    journal: Option<SharedJournal>,
    gate: Arc<G>,
    wait: WaitOptions,
    clock: PassClock,
    mutations: Arc<AtomicUsize>,
    probe: Option<StepProbe>,
}

impl<A: ProxmoxApi + 'static, G: Gate> Job<A, G> {
    /// Tells the probe (tests only) that `action` reached `step`.
    fn reached(&self, step: OpStep, action: &Action) {
        if let Some(probe) = &self.probe {
            probe.call(step, action.vmid(), action_name(action));
        }
    }

    async fn run(self, action: Action) -> JobReport {
        let mut journal_errors = 0;
        let outcome = self.execute(&action, &mut journal_errors).await;
        let vmid = action.vmid();
        let name = action_name(&action);
        match &outcome {
            Outcome::Succeeded { warnings } if warnings.is_empty() => {
                tracing::info!(vmid, action = name, "action succeeded");
            }
            Outcome::Succeeded { warnings } => {
                tracing::warn!(
                    vmid,
                    action = name,
                    ?warnings,
                    "action succeeded with warnings"
                );
            }
            Outcome::Failed(error) => tracing::warn!(vmid, action = name, %error, "action failed"),
            Outcome::Interrupted(detail) => {
                tracing::warn!(vmid, action = name, %detail, "stopped waiting on action");
            }
            Outcome::NotRun(reason) => {
                tracing::info!(vmid, action = name, %reason, "action not run")
            }
            Outcome::Pending(reason) => {
                tracing::warn!(vmid, action = name, %reason, "action held: pending signature")
            }
        }
        JobReport {
            outcome,
            journal_errors,
        }
    }

    async fn execute(&self, action: &Action, journal_errors: &mut usize) -> Outcome {
        let vmid = action.vmid();
        let name = action_name(action);
        if self.wait.cancel.is_cancelled() {
            return Outcome::NotRun("cancelled before it started".to_owned());
        }
        match self.gate.decide(action).await {
            GateDecision::Allow => {}
            GateDecision::Refuse { reason } => {
                return Outcome::NotRun(format!("refused by the gate: {reason}"))
            }
            GateDecision::Pending { reason } => return Outcome::Pending(reason),
        }
        self.reached(OpStep::BeforeStarted, action);
        let op = match &self.journal {
            Some(journal) => {
                let now = self.clock.now();
                match journal_write(journal, move |j| j.started(Some(vmid), name, None, now)).await
                {
                    Ok(op) => Some(op),
                    // Nothing sent: an op we could not record is not run.
                    Err(error) => {
                        return Outcome::Failed(format!(
                            "not sent: cannot journal its start: {error}"
                        ))
                    }
                }
            }
            None if runs_without_journal(action) => None,
            None => {
                return Outcome::NotRun("needs the op journal, which is unavailable".to_owned())
            }
        };

        self.reached(OpStep::AfterStarted, action);
        self.mutations.fetch_add(1, Ordering::SeqCst);
        let sent = match action {
            Action::Start { .. } => self.api.start(vmid).await.map(Some),
            Action::Stop { .. } => self.api.stop(vmid).await.map(Some),
            Action::SetConfig {
                changes, digest, ..
            } => {
                let update = config_update(changes, digest.as_deref());
                self.api
                    .set_config(vmid, &update)
                    .await
                    .map(|outcome| match outcome {
                        SetConfigOutcome::Applied => None,
                        SetConfigOutcome::Task(upid) => Some(upid),
                    })
            }
            // Only reached when the gate allowed it: a guest the agent created itself.
            Action::Destroy { .. } => {
                let executor = PveExecutor::new(Arc::clone(&self.api), self.wait.clone());
                match executor
                    .send(&DestructiveAction::DestroyGuest { vmid })
                    .await
                {
                    Ok(upid) => Ok(Some(upid)),
                    Err(ExecError::Proxmox(e)) => Err(e),
                    Err(e) => {
                        let error = e.to_string();
                        self.record_failed(op.as_ref(), &error, journal_errors)
                            .await;
                        return Outcome::Failed(error);
                    }
                }
            }
        };
        self.reached(OpStep::AfterRequest, action);
        let upid = match sent {
            Err(error) => {
                let error = error.to_string();
                self.record_failed(op.as_ref(), &error, journal_errors)
                    .await;
                return Outcome::Failed(error);
            }
            // Applied synchronously: success, no task to wait on.
            Ok(None) => {
                self.record_succeeded(op.as_ref(), journal_errors).await;
                return Outcome::Succeeded {
                    warnings: Vec::new(),
                };
            }
            Ok(Some(upid)) => upid,
        };
        self.record_task(op.as_ref(), &upid, journal_errors).await;
        self.reached(OpStep::AfterTaskRunning, action);
        let waited = wait_task(&*self.api, &upid, &self.wait).await;
        if !matches!(waited, Err(ProxmoxError::Cancelled { .. })) {
            self.reached(OpStep::AfterTaskEnd, action);
        }
        match waited {
            Ok(done) => {
                self.record_succeeded(op.as_ref(), journal_errors).await;
                Outcome::Succeeded {
                    warnings: done.warnings,
                }
            }
            // The task runs on; the op stays task_running for recovery to close.
            Err(error @ ProxmoxError::Cancelled { .. }) => Outcome::Interrupted(error.to_string()),
            Err(error) => {
                let error = error.to_string();
                self.record_failed(op.as_ref(), &error, journal_errors)
                    .await;
                Outcome::Failed(error)
            }
        }
    }

    async fn record_task(&self, op: Option<&OpId>, upid: &Upid, errors: &mut usize) {
        let upid = upid.to_string();
        self.record(op, errors, move |j, op, now| j.task_running(op, &upid, now))
            .await;
    }

    async fn record_succeeded(&self, op: Option<&OpId>, errors: &mut usize) {
        self.record(op, errors, |j, op, now| j.succeeded(op, now))
            .await;
    }

    async fn record_failed(&self, op: Option<&OpId>, error: &str, errors: &mut usize) {
        let error = error.to_owned();
        self.record(op, errors, move |j, op, now| j.failed(op, &error, now))
            .await;
    }

    /// Records a transition of `op` after the request went out. A failure here cannot undo
    /// what PVE did, so it is logged and counted, not fatal: the op stays in flight in the
    /// journal and startup recovery closes it.
    async fn record<F>(&self, op: Option<&OpId>, errors: &mut usize, write: F)
    where
        F: FnOnce(&mut OpJournal, &OpId, u64) -> Result<(), OpError> + Send + 'static,
    {
        let (Some(journal), Some(op)) = (&self.journal, op) else {
            return;
        };
        let now = self.clock.now();
        let op = op.clone();
        let op_id = op.clone();
        if let Err(error) = journal_write(journal, move |j| write(j, &op, now)).await {
            *errors += 1;
            tracing::error!(op_id = %op_id, %error, "cannot journal an op transition");
        }
    }
}

#[cfg(test)]
pub(crate) mod fake;

#[cfg(test)]
mod tests;
