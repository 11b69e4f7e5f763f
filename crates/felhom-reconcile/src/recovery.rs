//! Startup recovery: before the daemon mutates anything, every op the journal still has in
//! flight (what a crash or a shutdown interrupted) is resumed or closed.
//!
//! * An op with a task (`task_running(upid)`) is checked once with `task_status`: stopped → it
//!   is closed from the exit status (`OK` and `WARNINGS: n` succeeded, anything else failed);
//!   still running → waited on (bounded), then closed; a UPID the node no longer knows (400
//!   `no such task`) → failed, "task unknown after restart".
//! * An op that crashed before its UPID was journaled (`started`, no UPID) whose action runs a
//!   PVE task of a known type ([`task_type`]: `start` → `vzstart`, `destroy_guest` →
//!   `vzdestroy`, …) is first looked up in the node's task list (`GET /nodes/{node}/tasks`:
//!   that guest, that type, started since the op was journaled less [`TASK_LOOKUP_SKEW`],
//!   active and finished). Exactly one such task is the op's: its UPID is journaled
//!   (`task_running`) and the op closed from the task's real outcome, waited on (bounded) if it
//!   still runs — nothing is sent again. None, several, or a list PVE would not give, and the
//!   cases below apply unchanged.
//! * An op that crashed before its request returned (`started`, no UPID, no task found) is
//!   closed as failed: whether PVE acted is unknown, and the next reconcile pass re-plans it
//!   from actual state.
//!
//! * A **signed** one-shot op (`destroy_guest`, `rollback`, `delete_snapshot`,
//!   `restore_over`, `rotate_signers`) that crashed before its request returned is never
//!   re-sent by recovery. Once the settle window ([`RecoveryOptions::settle`], counted from
//!   when it was journaled) has passed, PVE decides: a `destroy_guest` whose guest is gone
//!   succeeded; a task of it listed now is adopted; **no task of it** (its guest unchanged)
//!   proves the request never reached PVE, and the op is closed [`NOT_SENT`]
//!   ([`Resolution::NotSent`]) — its nonce is spent, but the signed job resumes it when the hub
//!   serves it again, so it runs exactly once; anything less certain is recorded failed as
//!   [`OUTCOME_UNKNOWN`] ([`Resolution::OutcomeUnknown`]), for [`audit_recovery`] to put in
//!   front of an operator (the nonce is spent: the op cannot run again). A `rotate_signers`
//!   is decided by the signers file ([`RecoveryOptions::signer_set_nonce`]).
//!
//! Two cases stay in flight instead, reported as such: PVE could not be asked (transport
//! failure: the next start tries again), and a *one-shot* op (one with an idempotency key)
//! whose outcome is still unknown — closing it as failed would release its key and let a
//! one-shot op run twice, so it waits for its task to end or for an operator.

use std::sync::PoisonError;
use std::time::Duration;

use felhom_journal::{OpEntry, OpId, OpState};
use felhom_proxmox::{
    wait_task, ProxmoxApi, ProxmoxError, TaskExit, TaskFilter, TaskListItem, TaskSource,
    TaskStatus, Upid, WaitOptions,
};
use futures::StreamExt;

use crate::engine::{journal_write, JournalWriteError, PassClock, SharedJournal};

/// Journal error text for an op interrupted before its request returned.
pub const INTERRUPTED_BEFORE_REQUEST: &str =
    "interrupted before the request returned; the next reconcile pass re-checks";

/// Journal error text for a task the node does not know any more.
pub const TASK_UNKNOWN: &str = "task unknown after restart";

/// Journal error prefix (and audit decision) of a destructive op whose outcome is unknown.
pub const OUTCOME_UNKNOWN: &str = "outcome_unknown";

/// Journal error prefix of a signed op that recovery proved never reached PVE: its nonce was
/// recorded, but no task of it appeared on the node within the settle window and its guest is
/// unchanged (a rotation: the signers file does not hold it). The op's key is free and the
/// signed job resumes it when the hub serves it again ([`is_not_sent`]).
pub const NOT_SENT: &str = "not_sent";

/// Whether `entry` is a signed op closed [`NOT_SENT`]: its signature may run it once more.
pub fn is_not_sent(entry: &OpEntry) -> bool {
    entry
        .idempotency_key
        .as_deref()
        .is_some_and(|k| k.starts_with("signed:"))
        && matches!(&entry.state, OpState::Failed { error }
            if error.strip_prefix(NOT_SENT).is_some_and(|rest| rest.starts_with(':')))
}

/// The journal actions of destructive (one-shot, signed) ops.
const DESTRUCTIVE_ACTIONS: [&str; 4] = [
    "destroy_guest",
    "rollback",
    "delete_snapshot",
    "restore_over",
];

/// Seconds before an op's journaled start from which its task is looked for: the journal's
/// time is taken before the request is sent, PVE's `starttime` after it arrives (both whole
/// seconds of the same host's clock), so a small margin covers rounding.
pub const TASK_LOOKUP_SKEW: u64 = 2;

/// Tasks read per lookup: enough to tell one from several.
const TASK_LOOKUP_LIMIT: u64 = 10;

/// The PVE worker type of the task a journaled action runs (`pve-container`'s
/// `fork_worker` names, as the simulator uses them), or `None` for an action that runs no
/// task of its own (`set_config` applies synchronously).
pub fn task_type(action: &str) -> Option<&'static str> {
    Some(match action {
        "start" => "vzstart",
        "stop" => "vzstop",
        "destroy_guest" => "vzdestroy",
        "rollback" => "vzrollback",
        "delete_snapshot" => "vzdelsnapshot",
        "snapshot" => "vzsnapshot",
        "restore_over" => "vzrestore",
        _ => return None,
    })
}

/// What the task list says about an op interrupted before its UPID was journaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskLookup {
    /// Exactly one matching task: the op's.
    One {
        /// Its UPID.
        upid: Upid,
        /// How it ended, or `None` while it runs.
        exit: Option<(TaskExit, String)>,
    },
    /// No matching task: the request did not start one.
    None,
    /// Several candidates (or one whose UPID does not parse): which is the op's is unknown.
    Ambiguous {
        /// How many matched.
        candidates: u64,
    },
    /// Only tasks someone else started: not the op's, yet they act on its guest, so whether
    /// the op's own request arrived is not proven either way.
    Foreign {
        /// How many.
        candidates: u64,
    },
}

/// The list filter for an op's task: `None` for an op that is not `started`, has no guest or
/// runs no task of a known type.
pub fn task_filter(entry: &OpEntry) -> Option<TaskFilter> {
    if entry.state != OpState::Started {
        return None;
    }
    Some(TaskFilter {
        vmid: Some(entry.vmid?),
        typefilter: Some(task_type(&entry.action)?.to_owned()),
        since: Some(entry.at.saturating_sub(TASK_LOOKUP_SKEW)),
        source: TaskSource::All,
        limit: Some(TASK_LOOKUP_LIMIT),
    })
}

/// Picks the op's task from a listed page (`total`: how many PVE says matched). Pure; the
/// filter is checked again here rather than trusted to the server. With `caller` (the agent's
/// own `user@realm!token`), only a task its UPID says that token started can be the op's: one
/// started by anyone else (an administrator's destroy of the same guest, say) is never adopted,
/// and never read as "no task" either ([`TaskLookup::Foreign`]). Without it (a caller that
/// cannot tell), every matching task is a candidate.
pub fn pick_task(
    filter: &TaskFilter,
    tasks: &[TaskListItem],
    total: Option<u64>,
    caller: Option<&str>,
) -> TaskLookup {
    let matching: Vec<&TaskListItem> = tasks
        .iter()
        .filter(|t| {
            filter
                .vmid
                .is_none_or(|v| t.id.as_deref() == Some(v.to_string().as_str()))
                && filter
                    .typefilter
                    .as_deref()
                    .is_none_or(|k| t.worker_type.as_deref() == Some(k))
                && filter
                    .since
                    .is_none_or(|s| t.starttime.is_none_or(|start| start >= s))
        })
        .collect();
    // PVE counts what matched its filters: more than the page holds means more candidates.
    let beyond_page = total.is_some_and(|t| t > tasks.len() as u64);
    let candidates = (matching.len() as u64).max(total.unwrap_or(0));
    if beyond_page {
        return TaskLookup::Ambiguous { candidates };
    }
    let mut own = Vec::new();
    let mut foreign = 0;
    for task in &matching {
        match task.upid.parse::<Upid>() {
            // A UPID that does not parse cannot be told apart: the op's, or not.
            Err(_) => return TaskLookup::Ambiguous { candidates },
            Ok(upid) if caller.is_some_and(|me| upid.user() != me) => foreign += 1,
            Ok(upid) => own.push((upid, task)),
        }
    }
    match own.as_slice() {
        [(upid, task)] => TaskLookup::One {
            upid: upid.clone(),
            exit: task
                .exit()
                .map(|e| (e, task.status.clone().unwrap_or_default())),
        },
        [] if foreign == 0 => TaskLookup::None,
        [] => TaskLookup::Foreign {
            candidates: foreign,
        },
        _ => TaskLookup::Ambiguous { candidates },
    }
}

/// Default bound on waiting for a task still running at startup.
pub const DEFAULT_RECOVERY_WAIT: Duration = Duration::from_secs(5 * 60);

/// In-flight ops resolved at once (each may wait on its task).
const RECOVERY_CONCURRENCY: usize = 8;

/// How recovery waits on tasks still running.
#[derive(Debug, Clone)]
pub struct RecoveryOptions {
    /// Wait options for tasks still running; `timeout` bounds each wait.
    pub wait: WaitOptions,
    /// How long after a signed op was journaled its request, had it reached PVE, has surely
    /// started a task (or, for a destroy, removed the guest): recovery waits out what is left
    /// of it before calling the op [`NOT_SENT`]. Default [`SETTLE`].
    pub settle: Duration,
    /// The nonce of the signer set in force (the signers file's `nonce`), which tells whether
    /// an interrupted `rotate_signers` was persisted. `None`: no signers file.
    pub signer_set_nonce: Option<String>,
}

impl Default for RecoveryOptions {
    fn default() -> Self {
        Self {
            wait: WaitOptions {
                timeout: DEFAULT_RECOVERY_WAIT,
                ..WaitOptions::default()
            },
            settle: SETTLE,
            signer_set_nonce: None,
        }
    }
}

/// How one in-flight op was resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Closed as succeeded.
    Succeeded {
        /// `OK` or `WARNINGS: n`.
        exitstatus: String,
    },
    /// Closed as failed, with this journaled error.
    Failed {
        /// The error recorded.
        error: String,
    },
    /// Left in flight (see the module docs for when).
    LeftInFlight {
        /// Why.
        reason: String,
    },
    /// A destructive op interrupted before its request returned, whose outcome PVE's state
    /// does not prove: closed as failed with this error (starting with [`OUTCOME_UNKNOWN`]),
    /// never re-sent; an operator checks the guest.
    OutcomeUnknown {
        /// The error recorded.
        error: String,
    },
    /// A signed op proven never to have reached PVE: closed as failed with this error
    /// (starting with [`NOT_SENT`]); the same signed op runs when the hub serves it again.
    NotSent {
        /// The error recorded.
        error: String,
    },
}

/// One in-flight op and what recovery did with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredOp {
    /// The op.
    pub op_id: OpId,
    /// Its guest.
    pub vmid: Option<u32>,
    /// Its action.
    pub action: String,
    /// Its idempotency key (`signed:<nonce>` for a signed job), if any.
    pub idempotency_key: Option<String>,
    /// The outcome.
    pub resolution: Resolution,
}

/// What recovery did, op by op, in the journal's start order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoverySummary {
    /// Every op that was in flight.
    pub ops: Vec<RecoveredOp>,
}

impl RecoverySummary {
    /// Ops closed as succeeded.
    pub fn succeeded(&self) -> usize {
        self.count(|r| matches!(r, Resolution::Succeeded { .. }))
    }

    /// Ops closed as failed.
    pub fn failed(&self) -> usize {
        self.count(|r| matches!(r, Resolution::Failed { .. }))
    }

    /// Destructive ops closed with an unknown outcome.
    pub fn outcome_unknown(&self) -> usize {
        self.count(|r| matches!(r, Resolution::OutcomeUnknown { .. }))
    }

    /// Signed ops proven never sent, free to run when served again.
    pub fn not_sent(&self) -> usize {
        self.count(|r| matches!(r, Resolution::NotSent { .. }))
    }

    /// Ops still in flight.
    pub fn left_in_flight(&self) -> usize {
        self.count(|r| matches!(r, Resolution::LeftInFlight { .. }))
    }

    fn count(&self, which: impl Fn(&Resolution) -> bool) -> usize {
        self.ops.iter().filter(|op| which(&op.resolution)).count()
    }
}

/// Recovery could not record what it found. The journal is then unusable for this run
/// (a failed write poisons it): run journal-less, or retry after reopening it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// Closing an op failed.
    #[error("startup recovery: cannot close op {op_id} in the journal: {source}")]
    Journal {
        /// The op.
        op_id: OpId,
        /// The journal's error.
        #[source]
        source: JournalWriteError,
    },
}

/// [`recover_with`] with default options (each running task waited on for at most
/// [`DEFAULT_RECOVERY_WAIT`]).
pub async fn recover<A: ProxmoxApi>(
    api: &A,
    journal: &SharedJournal,
    now: u64,
) -> Result<RecoverySummary, RecoveryError> {
    recover_with(api, journal, now, &RecoveryOptions::default()).await
}

/// Resolves every in-flight op of `journal` against `api` (see the module docs); `now` is the
/// current time in unix seconds. Ops are resolved concurrently, each recorded as soon as it is
/// known, so a crash during recovery keeps what was done.
pub async fn recover_with<A: ProxmoxApi>(
    api: &A,
    journal: &SharedJournal,
    now: u64,
    options: &RecoveryOptions,
) -> Result<RecoverySummary, RecoveryError> {
    let clock = PassClock::new(now);
    // Reading the index does no I/O: no need to leave the async worker for it.
    let in_flight = journal
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .in_flight();
    if in_flight.is_empty() {
        return Ok(RecoverySummary::default());
    }
    tracing::info!(
        ops = in_flight.len(),
        "startup recovery: resolving in-flight ops"
    );
    let mut results: Vec<(usize, Result<RecoveredOp, RecoveryError>)> =
        futures::stream::iter(in_flight.into_iter().enumerate())
            .map(|(index, entry)| async move {
                (
                    index,
                    resolve_and_record(api, journal, clock, options, entry).await,
                )
            })
            .buffer_unordered(RECOVERY_CONCURRENCY)
            .collect()
            .await;
    results.sort_by_key(|(index, _)| *index);
    let mut summary = RecoverySummary::default();
    for (_, result) in results {
        summary.ops.push(result?);
    }
    tracing::info!(
        succeeded = summary.succeeded(),
        failed = summary.failed(),
        left_in_flight = summary.left_in_flight(),
        "startup recovery done"
    );
    Ok(summary)
}

async fn resolve_and_record<A: ProxmoxApi>(
    api: &A,
    journal: &SharedJournal,
    clock: PassClock,
    options: &RecoveryOptions,
    entry: OpEntry,
) -> Result<RecoveredOp, RecoveryError> {
    let resolution = match adopt(api, journal, clock, options, &entry).await? {
        Lookup::Closed(resolution) => resolution,
        _ if is_signed_started(&entry) => prove(api, journal, clock, options, &entry).await?,
        _ => resolve(api, options, &entry).await,
    };
    let op_id = entry.op_id.clone();
    let now = clock.now();
    let write = match &resolution {
        Resolution::Succeeded { .. } => {
            let op = op_id.clone();
            Some(journal_write(journal, move |j| j.succeeded(&op, now)).await)
        }
        Resolution::Failed { error }
        | Resolution::OutcomeUnknown { error }
        | Resolution::NotSent { error } => {
            let (op, error) = (op_id.clone(), error.clone());
            Some(journal_write(journal, move |j| j.failed(&op, &error, now)).await)
        }
        Resolution::LeftInFlight { .. } => None,
    };
    if let Some(Err(source)) = write {
        return Err(RecoveryError::Journal { op_id, source });
    }
    match &resolution {
        Resolution::LeftInFlight { reason } => {
            tracing::warn!(op_id = %op_id, vmid = ?entry.vmid, action = %entry.action, %reason, "op left in flight");
        }
        other => {
            tracing::info!(op_id = %op_id, vmid = ?entry.vmid, action = %entry.action, resolution = ?other, "op closed");
        }
    }
    Ok(RecoveredOp {
        op_id,
        vmid: entry.vmid,
        action: entry.action,
        idempotency_key: entry.idempotency_key,
        resolution,
    })
}

/// What looking an interrupted op's task up came to.
enum Lookup {
    /// Its one task was adopted and the op closed from it.
    Closed(Resolution),
    /// PVE listed no task of it.
    NoTask,
    /// Which task is its, if any, is unknown (several candidates, an unreadable list, or an
    /// op that is not `started` or runs no task of a known type); why.
    Unknown(String),
}

/// For an op `started` without a UPID: looks its task up, and if exactly one is found
/// journals its UPID and closes the op from it (waiting, bounded, if it runs).
async fn adopt<A: ProxmoxApi>(
    api: &A,
    journal: &SharedJournal,
    clock: PassClock,
    options: &RecoveryOptions,
    entry: &OpEntry,
) -> Result<Lookup, RecoveryError> {
    let Some(filter) = task_filter(entry) else {
        return Ok(Lookup::Unknown("no task to look for".to_owned()));
    };
    let (upid, exit) = match api.list_tasks(&filter).await {
        Ok(list) => match pick_task(&filter, &list.tasks, list.total, api.caller()) {
            TaskLookup::One { upid, exit } => (upid, exit),
            TaskLookup::None => {
                tracing::info!(op_id = %entry.op_id, vmid = ?entry.vmid, action = %entry.action, "no task of the interrupted op in pve's task list");
                return Ok(Lookup::NoTask);
            }
            TaskLookup::Ambiguous { candidates } => {
                tracing::warn!(op_id = %entry.op_id, vmid = ?entry.vmid, action = %entry.action, candidates, "several tasks could be the interrupted op's; none adopted");
                return Ok(Lookup::Unknown(format!(
                    "{candidates} tasks could be its own"
                )));
            }
            TaskLookup::Foreign { candidates } => {
                tracing::warn!(op_id = %entry.op_id, vmid = ?entry.vmid, action = %entry.action, candidates, "only tasks another user started match the interrupted op; none adopted");
                return Ok(Lookup::Unknown(format!(
                    "{candidates} task(s) of that kind by another user act on its guest"
                )));
            }
        },
        Err(error) => {
            tracing::warn!(op_id = %entry.op_id, vmid = ?entry.vmid, action = %entry.action, %error, "cannot list pve's tasks for the interrupted op");
            return Ok(Lookup::Unknown(format!("cannot list pve's tasks: {error}")));
        }
    };
    tracing::info!(op_id = %entry.op_id, vmid = ?entry.vmid, action = %entry.action, %upid, "adopted the interrupted op's task");
    let (op, task, now) = (entry.op_id.clone(), upid.to_string(), clock.now());
    if let Err(source) = journal_write(journal, move |j| j.task_running(&op, &task, now)).await {
        return Err(RecoveryError::Journal {
            op_id: entry.op_id.clone(),
            source,
        });
    }
    let one_shot = entry.idempotency_key.is_some();
    Ok(Lookup::Closed(match exit {
        Some((exit, exitstatus)) => judge_exit(&upid, exit, exitstatus),
        None => waited(api, options, &upid, one_shot).await,
    }))
}

/// What to do with one in-flight op; reads PVE, writes nothing.
async fn resolve<A: ProxmoxApi>(api: &A, options: &RecoveryOptions, entry: &OpEntry) -> Resolution {
    let one_shot = entry.idempotency_key.is_some();
    let upid = match &entry.state {
        OpState::Started => return interrupted_before_request(one_shot),
        OpState::TaskRunning { upid } => upid,
        // `in_flight` lists no terminal op; if one ever slipped through, leave it be.
        OpState::Succeeded | OpState::Failed { .. } => {
            return Resolution::LeftInFlight {
                reason: format!("already {}", entry.state.name()),
            }
        }
    };
    let upid: Upid = match upid.parse() {
        Ok(upid) => upid,
        Err(error) => {
            return Resolution::Failed {
                error: format!("journaled task id {upid:?} is not a upid: {error}"),
            }
        }
    };
    match api.task_status(&upid).await {
        Ok(status) => match judge_status(&upid, &status) {
            Some(resolution) => resolution,
            None => waited(api, options, &upid, one_shot).await,
        },
        Err(error) => judge_error(&upid, &error, one_shot),
    }
}

/// The default settle window ([`RecoveryOptions::settle`]): a request that reached PVE has
/// started its task (a destroy: removed its guest, or is running its task) well within it,
/// even when the daemon restarts within milliseconds of its crash.
pub const SETTLE: Duration = Duration::from_secs(10);
/// How often a destroy's guest is looked for meanwhile.
const DESTROY_SETTLE_POLL: Duration = Duration::from_millis(250);

/// Whether `entry` is a signed one-shot op interrupted before its request returned: what
/// [`prove`] closes.
fn is_signed_started(entry: &OpEntry) -> bool {
    entry.state == OpState::Started
        && entry
            .idempotency_key
            .as_deref()
            .is_some_and(|k| k.starts_with("signed:"))
        && (DESTRUCTIVE_ACTIONS.contains(&entry.action.as_str()) || entry.action == ROTATE_SIGNERS)
}

/// The journal action of a signer rotation (a signed op that sends nothing to PVE).
const ROTATE_SIGNERS: &str = "rotate_signers";

/// Closes a signed op interrupted before its request returned, with no task adopted yet;
/// never re-sends it. What PVE shows decides, once the settle window has passed:
///
/// * a `destroy_guest` whose guest is gone succeeded;
/// * its one task, found now, closes it (as [`adopt`] does);
/// * no task of it listed (and, for a destroy, its guest still there): it never reached PVE —
///   [`Resolution::NotSent`], so the hub's next serve runs it, once;
/// * anything less certain (several candidates, an unreadable list):
///   [`Resolution::OutcomeUnknown`], for an operator.
///
/// A `rotate_signers` is decided by the signers file: in force, it succeeded; not, it was not
/// persisted and the rotation never happened.
async fn prove<A: ProxmoxApi>(
    api: &A,
    journal: &SharedJournal,
    clock: PassClock,
    options: &RecoveryOptions,
    entry: &OpEntry,
) -> Result<Resolution, RecoveryError> {
    let nonce = entry
        .idempotency_key
        .as_deref()
        .and_then(|k| k.strip_prefix("signed:"))
        .unwrap_or_default();
    if entry.action == ROTATE_SIGNERS {
        return Ok(if options.signer_set_nonce.as_deref() == Some(nonce) {
            Resolution::Succeeded {
                exitstatus: "the signers file holds its set".to_owned(),
            }
        } else {
            Resolution::NotSent {
                error: format!(
                    "{NOT_SENT}: rotate_signers interrupted before its set was persisted; the \
                     signers in force are unchanged"
                ),
            }
        });
    }
    let unknown = |why: String| Resolution::OutcomeUnknown {
        error: format!(
            "{OUTCOME_UNKNOWN}: {} interrupted before pve answered; {why}; not re-sent — check \
             the guest",
            entry.action
        ),
    };
    // What is left of the settle window, counted from when the op was journaled.
    let elapsed = Duration::from_secs(clock.now().saturating_sub(entry.at));
    let remaining = options
        .settle
        .saturating_sub(elapsed)
        .min(options.wait.timeout);
    let guest = match (entry.action.as_str(), entry.vmid) {
        ("destroy_guest", Some(vmid)) => {
            let deadline = tokio::time::Instant::now() + remaining;
            loop {
                match api.list_lxc().await {
                    Ok(guests) if guests.iter().all(|g| g.vmid != vmid) => {
                        return Ok(Resolution::Succeeded {
                            exitstatus: format!("guest {vmid} is gone"),
                        })
                    }
                    Ok(_) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(DESTROY_SETTLE_POLL).await;
                    }
                    Ok(_) => break format!(", and guest {vmid} still exists"),
                    Err(error) => return Ok(unknown(format!("cannot list guests: {error}"))),
                }
            }
        }
        _ => {
            tokio::time::sleep(remaining).await;
            String::new()
        }
    };
    Ok(match adopt(api, journal, clock, options, entry).await? {
        Lookup::Closed(resolution) => resolution,
        Lookup::NoTask => Resolution::NotSent {
            error: format!(
                "{NOT_SENT}: {} interrupted before its request reached pve: no task of it \
                 listed {}s after it was journaled{guest}; the signed op runs when served again",
                entry.action,
                options.settle.as_secs()
            ),
        },
        Lookup::Unknown(why) => unknown(why),
    })
}

/// Closes an op whose request may or may not have reached PVE.
fn interrupted_before_request(one_shot: bool) -> Resolution {
    if one_shot {
        Resolution::LeftInFlight {
            reason: "one-shot op interrupted before its request returned: it may have reached \
                     pve; check the guest before releasing its key"
                .to_owned(),
        }
    } else {
        Resolution::Failed {
            error: INTERRUPTED_BEFORE_REQUEST.to_owned(),
        }
    }
}

/// The resolution of a task status read once, or `None` while the task runs.
fn judge_status(upid: &Upid, status: &TaskStatus) -> Option<Resolution> {
    let exit = status.exit()?;
    let exitstatus = status
        .exitstatus
        .clone()
        .unwrap_or_else(|| "unexpected status".to_owned());
    Some(judge_exit(upid, exit, exitstatus))
}

/// The resolution of a task that ended with `exit` (`exitstatus`: PVE's text).
fn judge_exit(upid: &Upid, exit: TaskExit, exitstatus: String) -> Resolution {
    match exit {
        TaskExit::Ok | TaskExit::Warnings(_) => Resolution::Succeeded { exitstatus },
        TaskExit::Failed(message) => Resolution::Failed {
            error: format!("pve task {upid} failed: {message}"),
        },
    }
}

/// The resolution when PVE could not say how the task ended.
fn judge_error(upid: &Upid, error: &ProxmoxError, one_shot: bool) -> Resolution {
    match error {
        ProxmoxError::Api(api) if api.is_no_such_task() => Resolution::Failed {
            error: format!("{TASK_UNKNOWN}: pve has no task {upid}"),
        },
        ProxmoxError::Task(task) => Resolution::Failed {
            error: task.to_string(),
        },
        ProxmoxError::WaitTimeout { .. } if !one_shot => Resolution::Failed {
            error: format!("{error}; the next reconcile pass re-checks"),
        },
        _ => Resolution::LeftInFlight {
            reason: format!("cannot learn how task {upid} ended: {error}"),
        },
    }
}

async fn waited<A: ProxmoxApi>(
    api: &A,
    options: &RecoveryOptions,
    upid: &Upid,
    one_shot: bool,
) -> Resolution {
    match wait_task(api, upid, &options.wait).await {
        Ok(done) => Resolution::Succeeded {
            exitstatus: done.exitstatus,
        },
        Err(error) => judge_error(upid, &error, one_shot),
    }
}

/// Audits what recovery decided about destructive ops: each one closed, and above all each
/// [`Resolution::OutcomeUnknown`], which an operator must look at.
pub fn audit_recovery(summary: &RecoverySummary, sink: &dyn crate::audit::AuditSink, now: u64) {
    for op in &summary.ops {
        if !DESTRUCTIVE_ACTIONS.contains(&op.action.as_str()) && op.action != ROTATE_SIGNERS {
            continue;
        }
        let builder = crate::audit::EntryBuilder {
            at: now,
            action: op.action.clone(),
            vmid: op.vmid,
            class: "destructive",
        };
        // A signed job's nonce, so the hub can match the outcome to the op it served.
        let nonce = op
            .idempotency_key
            .as_deref()
            .and_then(|k| k.strip_prefix("signed:"))
            .map(str::to_owned);
        let entry = match &op.resolution {
            Resolution::Succeeded { exitstatus } => builder.entry(
                "executed",
                Some("recovered"),
                Some(format!("closed at startup: {exitstatus}")),
                None,
                nonce,
            ),
            Resolution::Failed { error } => builder.entry(
                "failed",
                Some("recovered"),
                Some(error.clone()),
                None,
                nonce,
            ),
            Resolution::OutcomeUnknown { error } => builder.entry(
                OUTCOME_UNKNOWN,
                Some(OUTCOME_UNKNOWN),
                Some(error.clone()),
                None,
                nonce,
            ),
            // No outcome yet: the hub keeps serving the op, and the run it resumes is audited.
            Resolution::NotSent { .. } | Resolution::LeftInFlight { .. } => continue,
        };
        crate::audit::record(sink, &entry);
    }
}

#[cfg(test)]
mod tests;
