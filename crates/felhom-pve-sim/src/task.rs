//! Worker tasks: UPIDs in PVE's exact format, task records with their log, and completion on
//! tokio time. A task's effect applies when it completes; completion happens lazily, whenever
//! the state is next looked at after the deadline, so a paused test clock drives it.

use std::time::Duration;

use crate::faults::{Faults, TaskFault};
use crate::state::Inner;

/// What a task does when it completes: applies its effect, appending log lines to the vector,
/// or returns the error the task ends with (lines appended so far are kept). With `Some(msg)`
/// (an injected failure) it must only clean up (locks, half-created guests) and return `Err`.
pub(crate) type Effect =
    Box<dyn FnOnce(&mut Inner, Option<&str>, &mut Vec<String>) -> Result<(), String> + Send>;

struct Pending {
    deadline: tokio::time::Instant,
    effect: Effect,
    fault: Option<TaskFault>,
}

/// One task.
pub(crate) struct Task {
    pub(crate) upid: String,
    pub(crate) task_type: String,
    pub(crate) id: String,
    /// The full auth id (`user@realm!token` for token tasks).
    pub(crate) user: String,
    pub(crate) pid: u32,
    pub(crate) pstart: u64,
    pub(crate) starttime: u64,
    pub(crate) log: Vec<String>,
    /// `OK`, `WARNINGS: n` or the error text, once stopped.
    pub(crate) exitstatus: Option<String>,
    pub(crate) endtime: Option<u64>,
    /// Status polls still answered with 400 `no such task`.
    pub(crate) hidden_polls: u32,
    pub(crate) polls: u64,
    pending: Option<Pending>,
}

impl Task {
    pub(crate) fn running(&self) -> bool {
        self.exitstatus.is_none()
    }
}

/// `sprintf("UPID:%s:%08X:%08X:%08X:%s:%s:%s:", node, pid, pstart, starttime, type, id, user)`
pub(crate) fn format_upid(
    node: &str,
    pid: u32,
    pstart: u64,
    starttime: u64,
    task_type: &str,
    id: &str,
    user: &str,
) -> String {
    format!("UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{task_type}:{id}:{user}:")
}

/// Whether `upid` parses with `PVE::Tools::upid_decode`'s regex:
/// `^UPID:node:[0-9A-Fa-f]{8}:[0-9A-Fa-f]{8,9}:[0-9A-Fa-f]{8}:[^:\s/]+:[^:\s/]*:[^:\s/]+:$`
pub(crate) fn upid_parses(upid: &str) -> bool {
    let parts: Vec<&str> = upid.split(':').collect();
    if parts.len() != 9 || parts[0] != "UPID" || !parts[8].is_empty() {
        return false;
    }
    let hex = |s: &str, min: usize, max: usize| {
        s.len() >= min && s.len() <= max && s.bytes().all(|b| b.is_ascii_hexdigit())
    };
    let field = |s: &str, allow_empty: bool| {
        (allow_empty || !s.is_empty()) && !s.chars().any(|c| c.is_whitespace() || c == '/')
    };
    crate::params::valid_node_name(parts[1])
        && hex(parts[2], 8, 8)
        && hex(parts[3], 8, 9)
        && hex(parts[4], 8, 8)
        && field(parts[5], false)
        && field(parts[6], true)
        && field(parts[7], false)
}

/// `fork_worker`'s error text: trailing newline removed, inner newlines become spaces.
fn clean_error(err: &str) -> String {
    err.trim_end_matches('\n').replace('\n', " ")
}

impl Inner {
    fn new_task(
        &mut self,
        task_type: &str,
        id: &str,
        user: &str,
        log: Vec<String>,
        faults: &Faults,
    ) -> Task {
        let now = self.clock.now();
        self.next_pid = self.next_pid.wrapping_add(17);
        let pid = self.next_pid;
        // clock ticks since boot, as /proc/<pid>/stat reports the start time
        let pstart = now.saturating_sub(self.boot_epoch) * 100;
        Task {
            upid: format_upid(&self.node, pid, pstart, now, task_type, id, user),
            task_type: task_type.to_string(),
            id: id.to_string(),
            user: user.to_string(),
            pid,
            pstart,
            starttime: now,
            log,
            exitstatus: None,
            endtime: None,
            hidden_polls: faults.hidden_polls(),
            polls: 0,
            pending: None,
        }
    }

    fn push_task(&mut self, task: Task) -> String {
        let upid = task.upid.clone();
        self.task_index.insert(upid.clone(), self.tasks.len());
        self.tasks.push(task);
        upid
    }

    /// Starts a worker task that completes after the configured (or fault-overridden)
    /// duration. Returns the UPID.
    pub(crate) fn spawn_task(
        &mut self,
        faults: &Faults,
        task_type: &str,
        id: &str,
        user: &str,
        log: Vec<String>,
        effect: Effect,
    ) -> String {
        let duration: Duration = faults.task_duration(task_type, self.task_duration);
        let mut task = self.new_task(task_type, id, user, log, faults);
        task.pending = Some(Pending {
            deadline: self.clock.instant() + duration,
            effect,
            fault: faults.task_fault(task_type, id),
        });
        self.push_task(task)
    }

    /// A worker whose first checks failed: it is stopped with `error` by the time anyone looks.
    pub(crate) fn spawn_failed_task(
        &mut self,
        faults: &Faults,
        task_type: &str,
        id: &str,
        user: &str,
        mut log: Vec<String>,
        error: &str,
    ) -> String {
        let err = clean_error(error);
        log.push(format!("TASK ERROR: {err}"));
        let mut task = self.new_task(task_type, id, user, log, faults);
        task.exitstatus = Some(err);
        task.endtime = Some(task.starttime);
        self.push_task(task)
    }

    /// Completes every task whose deadline has passed, in deadline order.
    pub(crate) fn advance(&mut self) {
        let now = self.clock.instant();
        loop {
            let next = self
                .tasks
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.pending.as_ref().map(|p| (p.deadline, i)))
                .filter(|(d, _)| *d <= now)
                .min();
            let Some((_, idx)) = next else {
                break;
            };
            let Some(pending) = self.tasks[idx].pending.take() else {
                break;
            };
            let mut lines = Vec::new();
            let exit = match pending.fault {
                Some(TaskFault::Fail(msg)) => {
                    let _ = (pending.effect)(self, Some(&msg), &mut lines);
                    Err(msg)
                }
                Some(TaskFault::Warn(warnings)) => {
                    (pending.effect)(self, None, &mut lines).map(|()| {
                        lines.extend(warnings.iter().map(|w| format!("WARN: {w}")));
                        format!("WARNINGS: {}", warnings.len())
                    })
                }
                None => (pending.effect)(self, None, &mut lines).map(|()| "OK".to_string()),
            };
            let end = self.clock.now();
            let task = &mut self.tasks[idx];
            task.log.extend(lines);
            let status = match exit {
                Ok(s) => {
                    task.log.push(format!("TASK {s}"));
                    s
                }
                Err(e) => {
                    let e = clean_error(&e);
                    task.log.push(format!("TASK ERROR: {e}"));
                    e
                }
            };
            task.exitstatus = Some(status);
            task.endtime = Some(end);
        }
    }

    /// The deadline of a running task, if any.
    pub(crate) fn task_deadline(&self, upid: &str) -> Option<tokio::time::Instant> {
        let idx = *self.task_index.get(upid)?;
        self.tasks[idx].pending.as_ref().map(|p| p.deadline)
    }

    pub(crate) fn task_mut(&mut self, upid: &str) -> Option<&mut Task> {
        let idx = *self.task_index.get(upid)?;
        self.tasks.get_mut(idx)
    }

    pub(crate) fn task(&self, upid: &str) -> Option<&Task> {
        let idx = *self.task_index.get(upid)?;
        self.tasks.get(idx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upid_format_matches_pve() {
        let u = format_upid(
            "dahu-2", 0x7323, 0x1036A5, 0x6419CAF8, "qmstart", "100", "root@pam",
        );
        assert_eq!(
            u,
            "UPID:dahu-2:00007323:001036A5:6419CAF8:qmstart:100:root@pam:"
        );
        assert!(upid_parses(&u));
        assert!(upid_parses(
            "UPID:pve:00188D93:0186372E:69B66E35:vzcreate:100:terraform@pve!provider:"
        ));
        assert!(upid_parses(
            "UPID:pve:00188D93:10186372E:69B66E35:vzdump::root@pam:"
        ));
        assert!(!upid_parses(
            "UPID:pve:188D93:0186372E:69B66E35:vzcreate:100:root@pam:"
        ));
        assert!(!upid_parses(
            "UPID:pve:00188D93:0186372E:69B66E35:vzcreate:100:root@pam"
        ));
        assert!(!upid_parses("garbage"));
    }

    #[test]
    fn errors_lose_their_newlines() {
        assert_eq!(clean_error("a\nb\n"), "a b");
    }
}
