//! `wait_task`: poll a PVE task until it stops and judge its exit status; `PollSchedule`, the
//! pure backoff it polls on.
//!
//! A PVE task runs server-side. Cancelling or timing out the *wait* does not stop the task: it
//! keeps running and may still succeed, so after `Cancelled` or `WaitTimeout` the caller must
//! read the task status again before deciding anything.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::ProxmoxApi;
use crate::error::{MissingPrivilege, ProxmoxError, TaskError};
use crate::types::TaskExit;
use crate::upid::Upid;

/// When to poll: `initial`, then each delay `factor` times the last, capped at `max`.
///
/// The default (100 ms × 1.7 up to 10 s) notices a short task quickly (median lag 104, 150 and
/// 244 ms over tasks of up to 0.5, 1 and 2 s) and then polls less often than the Go original's
/// 1 s → 5 s backoff, so that every task of 60 s or longer (up to 30 min and beyond) costs no
/// more polls than that baseline: the early polls are repaid by the 10 s cap (a 30 min task:
/// 188 polls against 362). Both rules cannot hold from 1 s on: any schedule that polls before
/// 1 s spends more than the baseline's single poll on a 1 s task. Between 1 s and 57 s this one
/// spends at most 5 polls more; a long task is noticed up to 10 s after it stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollSchedule {
    /// Delay before the first poll.
    pub initial: Duration,
    /// Growth per poll (≥ 1).
    pub factor: f64,
    /// Longest delay.
    pub max: Duration,
}

impl Default for PollSchedule {
    fn default() -> Self {
        PollSchedule {
            initial: Duration::from_millis(100),
            factor: 1.7,
            max: Duration::from_secs(10),
        }
    }
}

impl PollSchedule {
    /// The Go original's backoff (1 s doubling to 5 s): the yardstick for long-task poll counts.
    pub const BASELINE: PollSchedule = PollSchedule {
        initial: Duration::from_secs(1),
        factor: 2.0,
        max: Duration::from_secs(5),
    };

    /// The delay before poll number `attempt` (0-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = if self.factor.is_finite() {
            self.factor.max(1.0)
        } else {
            1.0
        };
        let max = self.max.as_secs_f64();
        let d = self.initial.as_secs_f64() * factor.powi(attempt.min(1000) as i32);
        if !d.is_finite() || d >= max {
            self.max
        } else {
            Duration::from_secs_f64(d).min(self.max)
        }
    }

    /// When a task that stops at `stop` (after the wait began) is noticed, and after how many
    /// polls: the first poll at or after `stop`.
    pub fn notice(&self, stop: Duration) -> (Duration, u32) {
        let mut t = Duration::ZERO;
        let mut polls = 0;
        loop {
            t += self.delay(polls);
            polls += 1;
            if t >= stop {
                return (t, polls);
            }
        }
    }
}

/// How `wait_task` waits.
#[derive(Debug, Clone)]
pub struct WaitOptions {
    /// Give up waiting after this long (the task keeps running). Checked between polls; a
    /// poll in flight is bounded by the client's own request timeout.
    pub timeout: Duration,
    /// Poll timing.
    pub schedule: PollSchedule,
    /// Stop waiting when cancelled (the task keeps running).
    pub cancel: CancellationToken,
    /// How many 400 `no such task` answers to tolerate: a just-created task may not be
    /// visible yet.
    pub not_found_retries: u32,
    /// How many transport-class failures in a row (connect, timeout, 595–599) to tolerate.
    pub transport_retries: u32,
    /// How many trailing log lines a `TaskError` carries.
    pub log_tail_lines: usize,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            timeout: Duration::from_secs(30 * 60),
            schedule: PollSchedule::default(),
            cancel: CancellationToken::new(),
            not_found_retries: 5,
            transport_retries: 3,
            log_tail_lines: 20,
        }
    }
}

/// A task that finished successfully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskOutcome {
    /// The task.
    pub upid: Upid,
    /// `OK` or `WARNINGS: n`.
    pub exitstatus: String,
    /// For `WARNINGS: n`: the log's `WARN:` lines (prefix removed). If the log could not be
    /// read, one line saying so.
    pub warnings: Vec<String>,
    /// Status reads made.
    pub polls: u32,
    /// Time from the start of the wait until the stop was noticed.
    pub waited: Duration,
}

/// Lines per task log request.
const LOG_PAGE: u64 = 500;
/// Log requests per task at most (10,000 lines): a runaway log must not keep us reading.
const LOG_PAGES_MAX: u32 = 20;

/// Polls `upid` until PVE reports it stopped, then judges the exit status: `OK` and
/// `WARNINGS: n` are success (warnings surfaced from the log), anything else is a
/// [`TaskError`] with the missing privilege, if one is named, and the log's last lines.
///
/// Tolerates a few `no such task` answers (the task may not be visible yet) and a few
/// transport-class failures in a row. Returns [`ProxmoxError::Cancelled`] or
/// [`ProxmoxError::WaitTimeout`] when told to stop waiting; **the task itself keeps running on
/// the server** in both cases.
pub async fn wait_task(
    api: &impl ProxmoxApi,
    upid: &Upid,
    opts: &WaitOptions,
) -> Result<TaskOutcome, ProxmoxError> {
    let started = Instant::now();
    let deadline = started + opts.timeout;
    let cancelled = || ProxmoxError::Cancelled { upid: upid.clone() };
    let mut attempt = 0u32;
    let mut polls = 0u32;
    let mut not_found = 0u32;
    let mut transport = 0u32;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(ProxmoxError::WaitTimeout {
                upid: upid.clone(),
                waited: now - started,
            });
        }
        let wake = (now + opts.schedule.delay(attempt)).min(deadline);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            biased;
            _ = opts.cancel.cancelled() => return Err(cancelled()),
            _ = tokio::time::sleep_until(wake) => {}
        }
        polls += 1;
        let status = tokio::select! {
            biased;
            _ = opts.cancel.cancelled() => return Err(cancelled()),
            s = api.task_status(upid) => s,
        };
        match status {
            Ok(status) => {
                transport = 0;
                if let Some(exit) = status.exit() {
                    let waited = Instant::now() - started;
                    let exitstatus = status
                        .exitstatus
                        .unwrap_or_else(|| "unexpected status".to_owned());
                    return finish(api, upid, opts, exit, exitstatus, polls, waited).await;
                }
            }
            Err(ProxmoxError::Api(e))
                if e.is_no_such_task() && not_found < opts.not_found_retries =>
            {
                not_found += 1;
                tracing::debug!(%upid, attempt = not_found, "task not visible yet; retrying");
            }
            Err(e) if e.is_retryable() && transport < opts.transport_retries => {
                transport += 1;
                tracing::debug!(%upid, error = %e, attempt = transport, "task status read failed; retrying");
            }
            Err(e) => return Err(e),
        }
    }
}

async fn finish(
    api: &impl ProxmoxApi,
    upid: &Upid,
    opts: &WaitOptions,
    exit: TaskExit,
    exitstatus: String,
    polls: u32,
    waited: Duration,
) -> Result<TaskOutcome, ProxmoxError> {
    match exit {
        TaskExit::Ok => Ok(TaskOutcome {
            upid: upid.clone(),
            exitstatus,
            warnings: Vec::new(),
            polls,
            waited,
        }),
        TaskExit::Warnings(n) => {
            let warnings = match read_log(api, upid, opts).await {
                Ok(log) => log.warnings,
                Err(e) => {
                    tracing::warn!(%upid, error = %e, "task finished with warnings; its log is unreadable");
                    vec![format!("{n} warning(s); task log unreadable: {e}")]
                }
            };
            Ok(TaskOutcome {
                upid: upid.clone(),
                exitstatus,
                warnings,
                polls,
                waited,
            })
        }
        TaskExit::Failed(_) => {
            let log_tail = match read_log(api, upid, opts).await {
                Ok(log) => log.tail.into(),
                Err(e) => {
                    tracing::warn!(%upid, error = %e, "task failed; its log is unreadable");
                    Vec::new()
                }
            };
            // PVE replaces newlines in the exit status by spaces; the log keeps the original.
            let privilege = MissingPrivilege::parse(&exitstatus).or_else(|| {
                log_tail
                    .iter()
                    .rev()
                    .find_map(|l| MissingPrivilege::parse(l))
            });
            Err(ProxmoxError::from(TaskError {
                upid: upid.clone(),
                exitstatus,
                privilege,
                log_tail,
            }))
        }
    }
}

struct LogSummary {
    warnings: Vec<String>,
    tail: VecDeque<String>,
}

/// Reads the log page by page, keeping the `WARN:` lines and the last lines. Abandoned if the
/// wait is cancelled.
async fn read_log(
    api: &impl ProxmoxApi,
    upid: &Upid,
    opts: &WaitOptions,
) -> Result<LogSummary, ProxmoxError> {
    let mut summary = LogSummary {
        warnings: Vec::new(),
        tail: VecDeque::with_capacity(opts.log_tail_lines + 1),
    };
    let mut start = 0u64;
    for _ in 0..LOG_PAGES_MAX {
        let page = tokio::select! {
            biased;
            _ = opts.cancel.cancelled() => return Err(ProxmoxError::Cancelled { upid: upid.clone() }),
            p = api.task_log(upid, start, LOG_PAGE) => p?,
        };
        let got = page.lines.len() as u64;
        for line in page.lines {
            if let Some(w) = line.t.strip_prefix("WARN: ") {
                summary.warnings.push(w.to_owned());
            }
            summary.tail.push_back(line.t);
            if summary.tail.len() > opts.log_tail_lines {
                summary.tail.pop_front();
            }
        }
        start += got;
        let done = got < LOG_PAGE || page.total.is_some_and(|t| start >= t);
        if done {
            break;
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests;
