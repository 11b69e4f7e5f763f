//! `Faults`: fault injection a test changes while the simulator runs: latency, injected HTTP
//! statuses (500, 595/596, ...), dropped connections, failing / warning / slow tasks, a
//! "no such task" window after task creation, oversized bodies, verbatim bodies, and the pre-5.2
//! error mode.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// An injected HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpFault {
    /// Status code (500, 503, 595, 596, ...).
    pub status: u16,
    /// Reason phrase / error message. For 595–599 it is only the reason phrase (the body is
    /// empty, as pveproxy passes on AnyEvent::HTTP's pseudo-statuses); otherwise it is also the
    /// JSON `message`, like a handler error.
    pub message: String,
    /// Run the request first, then answer with the fault: the server acted but the client does
    /// not learn it (an unknown outcome).
    pub after_handler: bool,
    /// Only requests with this method match (`GET`, `POST`, ...).
    pub method: Option<String>,
    /// Only requests whose decoded path contains this text match.
    pub path_contains: Option<String>,
    /// Send exactly this body (as `application/json`) instead of an error envelope: a
    /// malformed or misleading answer such as `{"data": null}` for a list.
    pub body: Option<String>,
}

impl HttpFault {
    /// Any status with a message.
    pub fn status(status: u16, message: &str) -> HttpFault {
        HttpFault {
            status,
            message: message.to_string(),
            after_handler: false,
            method: None,
            path_contains: None,
            body: None,
        }
    }

    /// Answer `status` with `body` verbatim (e.g. `200` and `{"data": null}`); the reason
    /// phrase is `OK` for a 2xx, else the body's first line.
    pub fn body(status: u16, body: &str) -> HttpFault {
        HttpFault {
            body: Some(body.to_string()),
            ..HttpFault::status(
                status,
                if (200..300).contains(&status) {
                    "OK"
                } else {
                    body
                },
            )
        }
    }

    /// A 500 with a PVE error message.
    pub fn internal(message: &str) -> HttpFault {
        HttpFault::status(500, message)
    }

    /// `596 Connection timed out`: pveproxy could not get an answer from pvedaemon in time.
    pub fn timeout_596() -> HttpFault {
        HttpFault::status(596, "Connection timed out")
    }

    /// `595 Connection refused`: pveproxy could not reach pvedaemon.
    pub fn connect_595() -> HttpFault {
        HttpFault::status(595, "Connection refused")
    }

    /// Apply after the request was handled (see [`HttpFault::after_handler`]).
    pub fn after_handler(mut self) -> HttpFault {
        self.after_handler = true;
        self
    }

    /// Restrict to a method and/or a path substring.
    pub fn only(mut self, method: Option<&str>, path_contains: Option<&str>) -> HttpFault {
        self.method = method.map(str::to_string);
        self.path_contains = path_contains.map(str::to_string);
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
    }
}

/// How tasks of one type end, regardless of what they do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskFault {
    /// The task fails: its log ends `TASK ERROR: <message>`, nothing takes effect.
    Fail(String),
    /// The task succeeds with warnings: `WARN: <line>` for each, then `TASK WARNINGS: <n>`.
    Warn(Vec<String>),
}

#[derive(Debug, Default)]
struct FaultState {
    latency: Duration,
    http: Vec<(u32, HttpFault)>,
    drops: Vec<(u32, bool)>,
    task_faults: BTreeMap<String, TaskFault>,
    /// Keyed by (task type, worker id): wins over `task_faults`.
    task_faults_of: BTreeMap<(String, String), TaskFault>,
    /// Guests whose container exits right after a successful start.
    exit_after_start: std::collections::BTreeSet<u32>,
    task_durations: BTreeMap<String, Duration>,
    all_task_duration: Option<Duration>,
    hidden_polls: u32,
    pad_to: Option<usize>,
    pre_52_errors: bool,
    legacy_types: bool,
}

/// Fault injection, shared with the running simulator. Cheap to clone; every setter takes
/// effect for the next request.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    inner: Arc<Mutex<FaultState>>,
}

impl Faults {
    pub(crate) fn with_modes(pre_52_errors: bool, legacy_types: bool) -> Faults {
        let f = Faults::default();
        {
            let mut s = f.lock();
            s.pre_52_errors = pre_52_errors;
            s.legacy_types = legacy_types;
        }
        f
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        // a panic while holding this lock leaves plain data behind: keep using it
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delay before every answer (tokio time: a paused test clock skips it).
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Answer the next `n` matching requests with `fault`. Queued faults are tried in order.
    pub fn fail_next(&self, n: u32, fault: HttpFault) {
        if n > 0 {
            self.lock().http.push((n, fault));
        }
    }

    /// Close the connection of the next `n` requests without any HTTP answer, before the
    /// request is handled.
    pub fn drop_next(&self, n: u32) {
        if n > 0 {
            self.lock().drops.push((n, false));
        }
    }

    /// Like [`Faults::drop_next`] but after the request was handled (the server acted).
    pub fn drop_next_after_handling(&self, n: u32) {
        if n > 0 {
            self.lock().drops.push((n, true));
        }
    }

    /// Every task of `task_type` (`vzdump`, `vzstart`, ...) started from now on fails with
    /// `message`.
    pub fn fail_tasks(&self, task_type: &str, message: &str) {
        self.lock()
            .task_faults
            .insert(task_type.to_string(), TaskFault::Fail(message.to_string()));
    }

    /// Every task of `task_type` started from now on ends with `WARNINGS: n`.
    pub fn warn_tasks(&self, task_type: &str, warnings: &[&str]) {
        self.lock().task_faults.insert(
            task_type.to_string(),
            TaskFault::Warn(warnings.iter().map(|w| w.to_string()).collect()),
        );
    }

    /// Only the next tasks of `task_type` for worker id `id` (usually the vmid: `vzstart` of
    /// `9000`) fail with `message`; other guests' tasks of that type are unaffected. Stays until
    /// cleared, like [`Faults::fail_tasks`].
    pub fn fail_tasks_of(&self, task_type: &str, id: &str, message: &str) {
        self.lock().task_faults_of.insert(
            (task_type.to_string(), id.to_string()),
            TaskFault::Fail(message.to_string()),
        );
    }

    /// Starts of guest `vmid` succeed (`vzstart` ends `OK`) but its container exits at once:
    /// the guest reads back stopped, with no pid (a restore test's "boots, then dies"). Stays
    /// until cleared by [`Faults::clear_task_faults`].
    pub fn exit_after_start(&self, vmid: u32) {
        self.lock().exit_after_start.insert(vmid);
    }

    /// Removes task outcome faults (and [`Faults::exit_after_start`]).
    pub fn clear_task_faults(&self) {
        let mut s = self.lock();
        s.task_faults.clear();
        s.task_faults_of.clear();
        s.exit_after_start.clear();
    }

    /// Tasks of `task_type` (or, with `None`, of every type) started from now on run for
    /// `duration` instead of the configured one.
    pub fn slow_tasks(&self, task_type: Option<&str>, duration: Duration) {
        let mut s = self.lock();
        match task_type {
            Some(t) => {
                s.task_durations.insert(t.to_string(), duration);
            }
            None => s.all_task_duration = Some(duration),
        }
    }

    /// Status polls of every task created from now on answer 400 `no such task` the first `n`
    /// times (PVE creates the log file a moment after returning the UPID).
    pub fn no_such_task_polls(&self, n: u32) {
        self.lock().hidden_polls = n;
    }

    /// Pad every JSON answer with whitespace past `bytes` (still valid JSON), to exercise the
    /// client's body size limit; `None` turns it off.
    pub fn pad_responses_to(&self, bytes: Option<usize>) {
        self.lock().pad_to = bytes;
    }

    /// pve-http-server < 5.2: errors carry their message only in the reason phrase.
    pub fn set_pre_52_errors(&self, on: bool) {
        self.lock().pre_52_errors = on;
    }

    /// PVE < 8.2 shapes (`vmid` as a string in the LXC list).
    pub fn set_legacy_types(&self, on: bool) {
        self.lock().legacy_types = on;
    }

    /// Removes every fault and resets the modes to off.
    pub fn clear(&self) {
        *self.lock() = FaultState::default();
    }

    pub(crate) fn latency(&self) -> Duration {
        self.lock().latency
    }

    /// Takes one matching HTTP fault of the requested timing, counting it down.
    pub(crate) fn take_http(
        &self,
        method: &str,
        path: &str,
        after_handler: bool,
    ) -> Option<HttpFault> {
        let mut s = self.lock();
        let idx = s
            .http
            .iter()
            .position(|(_, f)| f.after_handler == after_handler && f.matches(method, path))?;
        let fault = s.http[idx].1.clone();
        s.http[idx].0 -= 1;
        if s.http[idx].0 == 0 {
            s.http.remove(idx);
        }
        Some(fault)
    }

    /// Takes one pending connection drop of the requested timing.
    pub(crate) fn take_drop(&self, after_handler: bool) -> bool {
        let mut s = self.lock();
        let Some(idx) = s.drops.iter().position(|(_, a)| *a == after_handler) else {
            return false;
        };
        s.drops[idx].0 -= 1;
        if s.drops[idx].0 == 0 {
            s.drops.remove(idx);
        }
        true
    }

    pub(crate) fn exits_after_start(&self, vmid: u32) -> bool {
        self.lock().exit_after_start.contains(&vmid)
    }

    pub(crate) fn task_fault(&self, task_type: &str, id: &str) -> Option<TaskFault> {
        let s = self.lock();
        s.task_faults_of
            .get(&(task_type.to_string(), id.to_string()))
            .or_else(|| s.task_faults.get(task_type))
            .cloned()
    }

    pub(crate) fn task_duration(&self, task_type: &str, default: Duration) -> Duration {
        let s = self.lock();
        s.task_durations
            .get(task_type)
            .copied()
            .or(s.all_task_duration)
            .unwrap_or(default)
    }

    pub(crate) fn hidden_polls(&self) -> u32 {
        self.lock().hidden_polls
    }

    pub(crate) fn pad_to(&self) -> Option<usize> {
        self.lock().pad_to
    }

    pub(crate) fn pre_52_errors(&self) -> bool {
        self.lock().pre_52_errors
    }

    pub(crate) fn legacy_types(&self) -> bool {
        self.lock().legacy_types
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_faults_count_down_and_filter() {
        let f = Faults::default();
        f.fail_next(
            2,
            HttpFault::timeout_596().only(Some("GET"), Some("/status")),
        );
        assert_eq!(f.take_http("POST", "/nodes/pve/status", false), None);
        assert_eq!(f.take_http("GET", "/nodes/pve/status", true), None);
        assert_eq!(
            f.take_http("GET", "/nodes/pve/status", false)
                .unwrap()
                .status,
            596
        );
        assert!(f.take_http("get", "/x/status", false).is_some());
        assert_eq!(f.take_http("GET", "/x/status", false), None);
    }

    #[test]
    fn drops_and_task_settings() {
        let f = Faults::default();
        f.drop_next(1);
        assert!(!f.take_drop(true));
        assert!(f.take_drop(false));
        assert!(!f.take_drop(false));
        f.slow_tasks(Some("vzdump"), Duration::from_secs(5));
        assert_eq!(
            f.task_duration("vzdump", Duration::ZERO),
            Duration::from_secs(5)
        );
        assert_eq!(f.task_duration("vzstart", Duration::ZERO), Duration::ZERO);
        f.exit_after_start(9000);
        assert!(f.exits_after_start(9000) && !f.exits_after_start(100));
        f.fail_tasks("vzstart", "boom");
        assert_eq!(
            f.task_fault("vzstart", "100"),
            Some(TaskFault::Fail("boom".into()))
        );
        f.fail_tasks_of("vzstart", "9000", "startup for container '9000' failed");
        assert_eq!(
            f.task_fault("vzstart", "9000"),
            Some(TaskFault::Fail(
                "startup for container '9000' failed".into()
            ))
        );
        assert_eq!(
            f.task_fault("vzstart", "101"),
            Some(TaskFault::Fail("boom".into()))
        );
        f.clear();
        assert_eq!(f.task_fault("vzstart", "100"), None);
        assert_eq!(f.task_fault("vzstart", "9000"), None);
        assert!(!f.exits_after_start(9000));
        assert_eq!(f.task_duration("vzdump", Duration::ZERO), Duration::ZERO);
    }
}
