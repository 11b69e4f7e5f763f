//! A small in-memory `ProxmoxApi` for the engine's and recovery's unit tests: guests with a run
//! state and a config, tasks that run for a while on tokio's clock, injectable failures, and a
//! log of every call.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use felhom_proxmox::{
    ApiError, ConfigUpdate, GuestStatus, GuestSummary, LxcConfig, ProxmoxApi, ProxmoxError,
    SetConfigOutcome, TaskFilter, TaskList, TaskListItem, TaskLog, TaskLogLine, TaskSource,
    TaskState, TaskStatus, Upid,
};
use tokio::time::Instant;

/// One guest: run state and raw config (description stored as written).
#[derive(Debug, Clone, Default)]
pub(crate) struct FakeGuest {
    pub running: bool,
    pub cores: Option<u32>,
    pub memory: Option<u64>,
    pub swap: Option<u64>,
    pub description: Option<String>,
    pub digest: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct FakeTask {
    pub finishes_at: Instant,
    pub exitstatus: String,
    pub log: Vec<String>,
}

/// Everything the fake knows; tests set the switches directly.
#[derive(Debug, Default)]
pub(crate) struct FakeState {
    pub guests: BTreeMap<u32, FakeGuest>,
    /// `list_lxc` answers 500.
    pub list_fails: bool,
    /// `guest_config` answers 500 for these.
    pub config_fails: BTreeSet<u32>,
    /// `start`/`stop` answer 403 (VM.PowerMgmt) for these.
    pub power_denied: BTreeSet<u32>,
    /// Tasks for these guests stop with this exit status instead of `OK` (and do nothing).
    pub task_exit: BTreeMap<u32, String>,
    /// `set_config` answers with a task instead of `data: null`.
    pub config_as_task: bool,
    /// How long tasks run.
    pub task_duration: Duration,
    /// How long a `guest_config` read takes.
    pub read_delay: Duration,
    pub reads_in_flight: usize,
    pub max_reads_in_flight: usize,
    pub tasks: BTreeMap<String, FakeTask>,
    /// `task_status` fails with a 596 for these.
    pub status_unreachable: BTreeSet<String>,
    /// Every call, as `"<op> <vmid>"` (`set_config` with its keys).
    pub calls: Vec<String>,
    next_pid: u32,
}

#[derive(Debug, Default)]
pub(crate) struct FakePve {
    state: Mutex<FakeState>,
}

pub(crate) const UPID_PREFIX: &str = "UPID:pve:";

pub(crate) fn upid(pid: u32, kind: &str, vmid: u32) -> String {
    format!("{UPID_PREFIX}{pid:08X}:00ABCDEF:65000000:{kind}:{vmid}:felhom@pve!agent:")
}

fn api_error(method: &str, path: &str, status: u16, message: &str) -> ProxmoxError {
    let body = serde_json::json!({"data": null, "message": format!("{message}\n")}).to_string();
    ApiError::from_response(method, path, status, Some(message), body.as_bytes()).into()
}

pub(crate) fn no_such_task(path: &str) -> ProxmoxError {
    ApiError::from_response(
        "GET",
        path,
        400,
        Some("Parameter verification failed."),
        br#"{"data":null,"errors":{"upid":"no such task"}}"#,
    )
    .into()
}

impl FakePve {
    pub(crate) fn new() -> Self {
        let fake = Self::default();
        fake.state().task_duration = Duration::from_millis(300);
        fake
    }

    /// Guest 100 running (cores 2, 2048 MiB, description "web") and 101 stopped.
    pub(crate) fn host() -> Self {
        let fake = Self::new();
        fake.add(
            100,
            FakeGuest {
                running: true,
                cores: Some(2),
                memory: Some(2048),
                swap: Some(512),
                description: Some("web".to_owned()),
                digest: 1,
            },
        );
        fake.add(
            101,
            FakeGuest {
                cores: Some(1),
                memory: Some(1024),
                digest: 1,
                ..FakeGuest::default()
            },
        );
        fake
    }

    pub(crate) fn add(&self, vmid: u32, guest: FakeGuest) {
        self.state().guests.insert(vmid, guest);
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake state")
    }

    pub(crate) fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }

    /// Calls that would change something on a real host.
    pub(crate) fn mutations(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|call| {
                ["start", "stop", "set_config"]
                    .iter()
                    .any(|op| call.starts_with(&format!("{op} ")))
            })
            .collect()
    }

    pub(crate) fn guest(&self, vmid: u32) -> FakeGuest {
        self.state().guests[&vmid].clone()
    }

    /// Registers a task directly (for recovery tests).
    pub(crate) fn add_task(&self, upid: &str, runs_for: Duration, exitstatus: &str) {
        self.state().tasks.insert(
            upid.to_owned(),
            FakeTask {
                finishes_at: Instant::now() + runs_for,
                exitstatus: exitstatus.to_owned(),
                log: vec![format!("TASK {exitstatus}")],
            },
        );
    }

    /// Starts a task for `vmid`; `effect` runs now if the task will succeed (the fake does
    /// not model the delay of the effect, only of the status).
    fn task(&self, kind: &str, vmid: u32, effect: impl FnOnce(&mut FakeGuest)) -> Upid {
        let mut state = self.state();
        state.next_pid += 1;
        let upid = upid(state.next_pid, kind, vmid);
        let exit = state.task_exit.get(&vmid).cloned();
        let mut log = vec![format!("starting {kind} {vmid}")];
        let exitstatus = match exit {
            Some(exit) => {
                if let Some(n) = exit.strip_prefix("WARNINGS: ") {
                    for i in 0..n.parse::<u32>().unwrap_or(0) {
                        log.push(format!("WARN: warning {i}"));
                    }
                    if let Some(guest) = state.guests.get_mut(&vmid) {
                        effect(guest);
                    }
                }
                exit
            }
            None => {
                if let Some(guest) = state.guests.get_mut(&vmid) {
                    effect(guest);
                }
                "OK".to_owned()
            }
        };
        log.push(format!("TASK {exitstatus}"));
        let finishes_at = Instant::now() + state.task_duration;
        state.tasks.insert(
            upid.clone(),
            FakeTask {
                finishes_at,
                exitstatus,
                log,
            },
        );
        upid.parse().expect("fake upid parses")
    }

    fn power(&self, op: &str, vmid: u32, to: bool) -> Result<Upid, ProxmoxError> {
        let path = format!("/nodes/pve/lxc/{vmid}/status/{op}");
        {
            let mut state = self.state();
            state.calls.push(format!("{op} {vmid}"));
            if state.power_denied.contains(&vmid) {
                return Err(api_error(
                    "POST",
                    &path,
                    403,
                    &format!("Permission check failed (/vms/{vmid}, VM.PowerMgmt)"),
                ));
            }
            let Some(guest) = state.guests.get(&vmid) else {
                return Err(api_error("POST", &path, 500, "does not exist"));
            };
            if guest.running == to {
                let already = if to { "already running" } else { "not running" };
                return Err(api_error(
                    "POST",
                    &path,
                    500,
                    &format!("CT {vmid} {already}"),
                ));
            }
        }
        let kind = if to { "vzstart" } else { "vzstop" };
        Ok(self.task(kind, vmid, |guest| guest.running = to))
    }
}

impl ProxmoxApi for FakePve {
    fn node(&self) -> &str {
        "pve"
    }

    async fn list_lxc(&self) -> Result<Vec<GuestSummary>, ProxmoxError> {
        let mut state = self.state();
        state.calls.push("list_lxc".to_owned());
        if state.list_fails {
            return Err(api_error("GET", "/nodes/pve/lxc", 500, "list failed"));
        }
        Ok(state
            .guests
            .iter()
            .map(|(&vmid, guest)| GuestSummary {
                vmid,
                status: if guest.running {
                    GuestStatus::Running
                } else {
                    GuestStatus::Stopped
                },
                ..GuestSummary::default()
            })
            .collect())
    }

    async fn guest_config(&self, vmid: u32) -> Result<LxcConfig, ProxmoxError> {
        let delay = {
            let mut state = self.state();
            state.calls.push(format!("guest_config {vmid}"));
            state.reads_in_flight += 1;
            state.max_reads_in_flight = state.max_reads_in_flight.max(state.reads_in_flight);
            state.read_delay
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut state = self.state();
        state.reads_in_flight -= 1;
        let path = format!("/nodes/pve/lxc/{vmid}/config");
        if state.config_fails.contains(&vmid) {
            return Err(api_error("GET", &path, 500, "config read failed"));
        }
        let Some(guest) = state.guests.get(&vmid) else {
            return Err(api_error("GET", &path, 500, "does not exist"));
        };
        Ok(LxcConfig {
            cores: guest.cores,
            memory: guest.memory,
            swap: guest.swap,
            // PVE's quirk: a newline is appended on read.
            description: guest.description.as_ref().map(|d| format!("{d}\n")),
            digest: Some(format!("digest-{}", guest.digest)),
            ..LxcConfig::default()
        })
    }

    async fn start(&self, vmid: u32) -> Result<Upid, ProxmoxError> {
        self.power("start", vmid, true)
    }

    async fn stop(&self, vmid: u32) -> Result<Upid, ProxmoxError> {
        self.power("stop", vmid, false)
    }

    async fn set_config(
        &self,
        vmid: u32,
        update: &ConfigUpdate,
    ) -> Result<SetConfigOutcome, ProxmoxError> {
        let path = format!("/nodes/pve/lxc/{vmid}/config");
        let as_task = {
            let mut state = self.state();
            let keys: Vec<String> = update
                .set
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .chain(update.delete.iter().map(|k| format!("-{k}")))
                .collect();
            state
                .calls
                .push(format!("set_config {vmid} {}", keys.join(",")));
            let Some(guest) = state.guests.get(&vmid) else {
                return Err(api_error("PUT", &path, 500, "does not exist"));
            };
            if let Some(digest) = &update.digest {
                if *digest != format!("digest-{}", guest.digest) {
                    return Err(api_error(
                        "PUT",
                        &path,
                        500,
                        "detected modified configuration - file changed by other user? Try again.",
                    ));
                }
            }
            state.config_as_task
        };
        let apply = |guest: &mut FakeGuest| {
            for key in &update.delete {
                match key.as_str() {
                    "description" => guest.description = None,
                    "swap" => guest.swap = None,
                    "cores" => guest.cores = None,
                    _ => {}
                }
            }
            for (key, value) in &update.set {
                match key.as_str() {
                    "cores" => guest.cores = value.parse().ok(),
                    "memory" => guest.memory = value.parse().ok(),
                    "swap" => guest.swap = value.parse().ok(),
                    "description" => guest.description = Some(value.clone()),
                    _ => {}
                }
            }
            guest.digest += 1;
        };
        if as_task {
            return Ok(SetConfigOutcome::Task(self.task("vzconfig", vmid, apply)));
        }
        let mut state = self.state();
        if let Some(guest) = state.guests.get_mut(&vmid) {
            apply(guest);
        }
        Ok(SetConfigOutcome::Applied)
    }

    async fn task_status(&self, upid: &Upid) -> Result<TaskStatus, ProxmoxError> {
        let mut state = self.state();
        state.calls.push(format!("task_status {}", upid.id()));
        let path = format!("/nodes/pve/tasks/{upid}/status");
        if state.status_unreachable.contains(upid.as_str()) {
            return Err(ProxmoxError::Proxy {
                method: "GET".to_owned(),
                path,
                status: 596,
                reason: Some("Connection timed out".to_owned()),
            });
        }
        let Some(task) = state.tasks.get(upid.as_str()) else {
            return Err(no_such_task(&path));
        };
        let stopped = Instant::now() >= task.finishes_at;
        Ok(TaskStatus {
            status: if stopped {
                TaskState::Stopped
            } else {
                TaskState::Running
            },
            exitstatus: stopped.then(|| task.exitstatus.clone()),
            upid: Some(upid.to_string()),
            ..TaskStatus::default()
        })
    }

    /// The task table as PVE lists it (status: exit text or `RUNNING`); the start time is the
    /// UPID's. Filters: vmid, type, since, source.
    async fn list_tasks(&self, filter: &TaskFilter) -> Result<TaskList, ProxmoxError> {
        let mut state = self.state();
        state.calls.push(format!(
            "list_tasks {}",
            filter.vmid.map(|v| v.to_string()).unwrap_or_default()
        ));
        let now = Instant::now();
        let tasks: Vec<TaskListItem> = state
            .tasks
            .iter()
            .filter_map(|(upid, task)| {
                let parsed: Upid = upid.parse().ok()?;
                let running = now < task.finishes_at;
                let listed = match filter.source {
                    TaskSource::Archive => !running,
                    TaskSource::Active => running,
                    TaskSource::All => true,
                };
                let keep = listed
                    && filter.vmid.is_none_or(|v| parsed.id() == v.to_string())
                    && filter
                        .typefilter
                        .as_deref()
                        .is_none_or(|t| parsed.worker_type() == t)
                    && filter
                        .since
                        .is_none_or(|s| u64::from(parsed.starttime()) >= s);
                keep.then(|| TaskListItem {
                    upid: upid.clone(),
                    starttime: Some(u64::from(parsed.starttime())),
                    worker_type: Some(parsed.worker_type().to_owned()),
                    id: Some(parsed.id().to_owned()),
                    status: Some(if running {
                        "RUNNING".to_owned()
                    } else {
                        task.exitstatus.clone()
                    }),
                    ..TaskListItem::default()
                })
            })
            .collect();
        Ok(TaskList {
            total: Some(tasks.len() as u64),
            tasks,
        })
    }

    async fn task_log(&self, upid: &Upid, start: u64, limit: u64) -> Result<TaskLog, ProxmoxError> {
        let state = self.state();
        let Some(task) = state.tasks.get(upid.as_str()) else {
            return Err(no_such_task("/log"));
        };
        let lines: Vec<TaskLogLine> = task
            .log
            .iter()
            .enumerate()
            .skip(usize::try_from(start).unwrap_or(usize::MAX))
            .take(if limit == 0 {
                usize::MAX
            } else {
                usize::try_from(limit).unwrap_or(usize::MAX)
            })
            .map(|(i, t)| TaskLogLine {
                n: i as u64 + 1,
                t: t.clone(),
            })
            .collect();
        Ok(TaskLog {
            lines,
            total: Some(task.log.len() as u64),
        })
    }
}
