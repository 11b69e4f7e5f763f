//! `cargo xtask crashpoints [--rounds N]`: the real `felhom-agent` binary against the PVE and
//! hub simulators (in this process), killed with SIGKILL at every distinct step of an op's
//! life, then restarted; each kill point is checked from the journal on disk and the
//! simulator's request log.
//!
//! A kill point is an action (start, stop, set_config: the benign reconcile actions) and a
//! step. Five steps are hit by the daemon itself through its test-only crash seam
//! (`FELHOM_AGENT_TEST_CRASH_AT=<step>@<action>:1`: it SIGKILLs itself there): before the
//! journal's `started`, after it, after PVE answered the request, after `task_running`, after
//! the task ended and before the terminal record. The sixth, *while waiting*, is hit from
//! outside: the target's task runs for seconds, and the harness SIGKILLs the daemon once the
//! simulator answered a status poll of that task and still shows it running. A synchronous
//! config write has no task, so set_config has three points, start and stop six each.
//!
//! Each point: a fresh simulated host where three guests drift from the desired state (one per
//! action), plus `round % 3` guests that already match; the daemon starts, dies at the point;
//! the harness checks the step really was reached (the seam's line and SIGKILL status, the
//! target op's journaled state, the request sent or not); the daemon restarts and runs until a
//! pass plans nothing. Then, from the request log and the journal:
//! * no acknowledged record lost: every op journaled at the kill is still there, its state not
//!   gone back (a terminal one unchanged), and nothing is left in flight;
//! * no op sent twice: one mutating request per drifting guest over both lives, none to any
//!   other guest. The one exception is the documented re-plan of a convergent op whose outcome
//!   the kill left unknown — its request sent, its UPID not yet journaled, and its task not
//!   found in PVE's task list by recovery (which adopts a task it finds: no re-send then):
//!   recovery closes it as failed ([`INTERRUPTED_BEFORE_REQUEST`]) and the next pass sends it
//!   again. That second request is
//!   allowed only in exactly that state, and counted (the `re-sent` column). A one-shot op
//!   would be left in flight instead, never re-sent;
//! * no mutation before recovery finished: after the restart, the first mutating request comes
//!   after the last status poll of every task that was in flight at the kill, and the daemon
//!   logs its recovery before its first pass;
//! * the guests converge to the desired state.
//!
//! Rounds differ in guest ids, desired sizes, the simulator's list order and the number of
//! matching guests. `--rounds 14` (the default) is 210 kill points.
//!
//! Then the signed-job points ([`signed`]): a hub-served, operator-signed `destroy_guest` killed
//! at each of the three steps of its signed job, with the stricter check of a one-shot op — sent
//! at most once over both lives however often the hub serves it, executed exactly once when the
//! kill came after its request, its outcome in the hub's audit tail by nonce. `--rounds 14` adds
//! 42 of them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use felhom_journal::ops::{OpRecord, OpState};
use felhom_pve_sim::{GuestSpec, ListOrder, PveSim, RequestRecord, SimConfig};
use felhom_reconcile::recovery::INTERRUPTED_BEFORE_REQUEST;
use felhom_reconcile::OpStep;
use serde_json::json;

use crate::agentproc::{
    hub_and_config, killed_by_sigkill, write_json, Daemon, CRASH_AT_ENV, POLL_FLOOR_ENV,
};

mod signed;

/// Rounds of the documented long run: 15 kill points each.
pub const DEFAULT_ROUNDS: u32 = 14;
/// Longest any wait of one point takes (start, crash, recovery, convergence).
const WAIT: Duration = Duration::from_secs(30);
/// How long the target's task runs at a *while waiting* point: long enough to be seen
/// running after the kill, short enough for recovery to wait it out.
const WAITING_TASK: Duration = Duration::from_millis(1500);

/// `cargo xtask crashpoints` arguments.
#[derive(Debug, clap::Args)]
pub struct CrashArgs {
    /// Rounds over every kill point (15 points per round).
    #[arg(long, default_value_t = DEFAULT_ROUNDS)]
    pub rounds: u32,
}

/// A benign reconcile action the planner produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Start,
    Stop,
    SetConfig,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Start, Action::Stop, Action::SetConfig];

    /// The journal's (and the seam's) name.
    pub fn name(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::SetConfig => "set_config",
        }
    }

    /// The PVE task type, for actions answered with a task.
    fn task_type(self) -> Option<&'static str> {
        match self {
            Action::Start => Some("vzstart"),
            Action::Stop => Some("vzstop"),
            // PVE applies these config keys synchronously (`data: null`).
            Action::SetConfig => None,
        }
    }
}

/// What a kill point kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// A reconcile action (benign, convergent, unsigned).
    Benign(Action),
    // Signed destructive jobs (issue 11) go here.
}

/// Where the daemon dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kill {
    /// The daemon's own crash seam at this step.
    At(OpStep),
    /// From outside, while the daemon waits on the target's running task.
    Waiting,
}

impl Kill {
    /// The step's name as the report prints it.
    pub fn name(self) -> &'static str {
        match self {
            Kill::At(step) => step.name(),
            Kill::Waiting => "while-waiting",
        }
    }

    /// Where in an op's life this is (for the ordered table).
    fn order(self) -> u8 {
        match self {
            Kill::At(OpStep::BeforeStarted) => 0,
            Kill::At(OpStep::AfterStarted) => 1,
            Kill::At(OpStep::AfterRequest) => 2,
            Kill::At(OpStep::AfterTaskRunning) => 3,
            Kill::Waiting => 4,
            Kill::At(OpStep::AfterTaskEnd) => 5,
        }
    }
}

/// One kill point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub round: u32,
    pub target: Target,
    pub kill: Kill,
}

/// Every distinct step of `target`'s life, in order.
pub fn kills(target: Target) -> Vec<Kill> {
    let Target::Benign(action) = target;
    let mut kills = vec![
        Kill::At(OpStep::BeforeStarted),
        Kill::At(OpStep::AfterStarted),
        Kill::At(OpStep::AfterRequest),
    ];
    if action.task_type().is_some() {
        kills.extend([
            Kill::At(OpStep::AfterTaskRunning),
            Kill::Waiting,
            Kill::At(OpStep::AfterTaskEnd),
        ]);
    }
    kills
}

/// The kill points of `rounds` rounds.
pub fn points(rounds: u32) -> Vec<Point> {
    let mut all = Vec::new();
    for round in 0..rounds {
        for action in Action::ALL {
            let target = Target::Benign(action);
            for kill in kills(target) {
                all.push(Point {
                    round,
                    target,
                    kill,
                });
            }
        }
    }
    all
}

/// The guests of one round: one drifting guest per action and `round % 3` matching ones.
#[derive(Debug, Clone)]
struct Scenario {
    /// Guest per action.
    guest: BTreeMap<Action, u32>,
    /// Guests whose desired state already matches (never to be touched).
    idle: Vec<u32>,
    cores: u32,
    memory_mib: u64,
    seed: u64,
}

impl Scenario {
    fn of(round: u32) -> Scenario {
        let base = 200 + 10 * (round % 7);
        Scenario {
            guest: BTreeMap::from([
                (Action::SetConfig, base),
                (Action::Start, base + 1),
                (Action::Stop, base + 2),
            ]),
            idle: (0..round % 3).map(|i| base + 3 + i).collect(),
            cores: 2 + round % 3,
            memory_mib: 1024 * u64::from(1 + round % 2),
            seed: u64::from(round) + 1,
        }
    }

    fn sim_config(&self) -> SimConfig {
        let mut config = SimConfig::default()
            .without_guests()
            .list_order(ListOrder::Shuffled(self.seed));
        config = config
            .guest(GuestSpec::new(self.guest[&Action::SetConfig], "cfg"))
            .guest(GuestSpec::new(self.guest[&Action::Start], "startme"))
            .guest(GuestSpec::new(self.guest[&Action::Stop], "stopme").running(true));
        for (i, vmid) in self.idle.iter().enumerate() {
            config = config.guest(GuestSpec::new(*vmid, &format!("idle{i}")).running(true));
        }
        config
    }

    fn desired(&self) -> serde_json::Value {
        let mut guests = vec![
            json!({ "vmid": self.guest[&Action::SetConfig], "spec": {
                "cores": self.cores, "memory_bytes": self.memory_mib * 1024 * 1024 } }),
            json!({ "vmid": self.guest[&Action::Start], "run_state": "running" }),
            json!({ "vmid": self.guest[&Action::Stop], "run_state": "stopped" }),
        ];
        guests.extend(
            self.idle
                .iter()
                .map(|vmid| json!({ "vmid": vmid, "run_state": "running" })),
        );
        json!({ "guests": guests })
    }

    /// The mutating request `action` sends for its guest on `node`.
    fn request(&self, node: &str, action: Action) -> (&'static str, String) {
        let vmid = self.guest[&action];
        match action {
            Action::Start => ("POST", format!("/nodes/{node}/lxc/{vmid}/status/start")),
            Action::Stop => ("POST", format!("/nodes/{node}/lxc/{vmid}/status/stop")),
            Action::SetConfig => ("PUT", format!("/nodes/{node}/lxc/{vmid}/config")),
        }
    }
}

/// What one kill point found.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Ops in flight in the journal at the kill.
    pub in_flight_at_kill: usize,
    /// Ops journaled at the kill (all kept).
    pub ops_at_kill: usize,
    /// Mutating requests over both lives (one per drifting guest, plus `resent_unknown`).
    pub mutations: usize,
    /// Requests sent again after the restart because the kill left their outcome unknown
    /// (sent, no UPID journaled) and the guest had not changed yet when the next pass read it.
    pub resent_unknown: usize,
    pub took: Duration,
}

fn is_mutation(r: &RequestRecord) -> bool {
    r.method != "GET" && r.status != 0
}

/// Latest state of each op in the journal file (read without its lock).
/// Every op of the journal closed: none left in flight.
fn ensure_none_in_flight(ops: &BTreeMap<String, OpRecord>) -> Result<()> {
    let open: Vec<&String> = ops
        .iter()
        .filter(|(_, r)| !r.state.is_terminal())
        .map(|(id, _)| id)
        .collect();
    ensure!(open.is_empty(), "ops left in flight: {open:?}");
    Ok(())
}

fn journal_ops(path: &Path) -> Result<BTreeMap<String, OpRecord>> {
    let inspected = felhom_journal::repair::inspect::<OpRecord>(path)
        .with_context(|| format!("reading the journal {}", path.display()))?;
    ensure!(
        inspected.damage.is_none(),
        "the journal is damaged beyond a torn tail: {:?}",
        inspected.damage
    );
    let mut ops = BTreeMap::new();
    for r in inspected.before.into_iter().chain(inspected.after) {
        ops.insert(r.op_id.as_str().to_owned(), r);
    }
    Ok(ops)
}

fn rank(state: &OpState) -> u8 {
    match state {
        OpState::Started => 0,
        OpState::TaskRunning { .. } => 1,
        OpState::Succeeded | OpState::Failed { .. } => 2,
    }
}

/// Runs one kill point with the daemon `bin`.
pub async fn run_point(bin: &Path, point: Point) -> Result<Outcome> {
    let started = Instant::now();
    let Target::Benign(action) = point.target;
    let scenario = Scenario::of(point.round);
    let sim = PveSim::start(scenario.sim_config())
        .await
        .context("starting pve-sim")?;
    let node = sim.node();
    let target_vmid = scenario.guest[&action];
    if point.kill == Kill::Waiting {
        sim.faults().slow_tasks(action.task_type(), WAITING_TASK);
    }
    let (hub, dir, doc) = hub_and_config(&sim, 1).await?;
    let config = dir.path().join("agent.json");
    write_json(&config, &doc)?;
    write_json(&dir.path().join("desired.json"), &scenario.desired())?;
    let journal = dir.path().join("journal.log");
    let floor = (POLL_FLOOR_ENV, "200".to_owned());

    // First life: dies at the point.
    let spec = match point.kill {
        Kill::At(step) => Some(format!("{}@{}:1", step.name(), action.name())),
        Kill::Waiting => None,
    };
    let mut env = vec![floor.clone()];
    if let Some(spec) = &spec {
        env.push((CRASH_AT_ENV, spec.clone()));
    }
    let mut first = Daemon::spawn(bin, &config, &env, None)?;
    let status = match &spec {
        Some(spec) => {
            let status = first.wait_exit(WAIT).await?;
            let lines = first.lines();
            let needle = format!(
                "TEST crash point {spec} (vmid {target_vmid} {})",
                action.name()
            );
            ensure!(
                lines.iter().any(|l| l.contains(&needle)),
                "the daemon ended ({status}) without reaching {spec}: {}",
                tail(&lines)
            );
            ensure!(
                lines
                    .iter()
                    .any(|l| l.contains("WARN") && l.contains("FELHOM_AGENT_TEST_CRASH_AT is set")),
                "the daemon did not warn that its crash seam is armed"
            );
            status
        }
        None => kill_while_waiting(&sim, &mut first, action, target_vmid).await?,
    };
    ensure!(
        killed_by_sigkill(&status),
        "the daemon ended with {status}, not SIGKILL"
    );

    // At the kill: what is on disk and what PVE was sent.
    let at_kill = journal_ops(&journal)?;
    let log_at_kill = sim.state().request_log();
    let (method, path) = scenario.request(&node, action);
    let sent = log_at_kill
        .iter()
        .filter(|r| is_mutation(r) && r.method == method && r.path == path)
        .count();
    let target_op = at_kill
        .values()
        .rev()
        .find(|r| r.vmid == Some(target_vmid) && r.action == action.name());
    let target_state = target_op.map(|r| r.state.name());
    let (want_state, want_sent) = match point.kill {
        Kill::At(OpStep::BeforeStarted) => (None, 0),
        Kill::At(OpStep::AfterStarted) => (Some("started"), 0),
        Kill::At(OpStep::AfterRequest) => (Some("started"), 1),
        Kill::At(OpStep::AfterTaskRunning | OpStep::AfterTaskEnd) | Kill::Waiting => {
            (Some("task_running"), 1)
        }
    };
    ensure!(
        target_state == want_state && sent == want_sent,
        "at the kill the target op was {target_state:?} with {sent} requests sent; the step \
         {} means {want_state:?} and {want_sent}",
        point.kill.name()
    );
    if point.kill == Kill::At(OpStep::AfterTaskEnd) {
        let upid = match target_op.map(|r| &r.state) {
            Some(OpState::TaskRunning { upid }) => upid.clone(),
            other => bail!("no task journaled for the target: {other:?}"),
        };
        let task = sim.state().task(&upid).context("the task is unknown")?;
        ensure!(!task.running, "after-task-end with the task still running");
    }
    let in_flight: Vec<&OpRecord> = at_kill
        .values()
        .filter(|r| !r.state.is_terminal())
        .collect();
    let in_flight_upids: Vec<String> = in_flight
        .iter()
        .filter_map(|r| match &r.state {
            OpState::TaskRunning { upid } => Some(upid.clone()),
            _ => None,
        })
        .collect();

    // Second life: recovers and converges.
    let mut second = Daemon::spawn(bin, &config, &[floor], None)?;
    let quiet = second
        .wait_for_line(0, &["reconcile pass done", "planned 0:"], WAIT)
        .await
        .with_context(|| {
            format!(
                "the restarted daemon never settled: {}",
                tail(&second.lines())
            )
        })?;
    let exit = second.terminate(WAIT).await?;
    ensure!(exit.success(), "the restarted daemon exited with {exit}");
    let lines = second.lines();
    ensure!(
        !lines.iter().any(|l| l.contains("TEST crash point")),
        "the seam fired without its variable"
    );
    let first_pass = lines
        .iter()
        .position(|l| l.contains("reconcile pass done"))
        .unwrap_or(quiet);
    if !in_flight.is_empty() {
        let recovered = lines
            .iter()
            .position(|l| l.contains("startup recovery closed the ops"))
            .context("ops were in flight but the daemon logged no recovery")?;
        ensure!(
            recovered < first_pass,
            "the first pass was logged before recovery"
        );
    }

    // No acknowledged record lost, nothing left in flight.
    let after = journal_ops(&journal)?;
    for (id, before) in &at_kill {
        let now = after
            .get(id)
            .with_context(|| format!("op {id} ({}) was lost from the journal", before.action))?;
        ensure!(
            rank(&now.state) >= rank(&before.state)
                && (!before.state.is_terminal() || now.state == before.state),
            "op {id} went from {:?} back to {:?}",
            before.state,
            now.state
        );
    }
    ensure_none_in_flight(&after)?;

    // Each drifting guest's request once; a second time only for an op whose outcome the kill
    // left unknown (sent, but no UPID journaled), which recovery closed as failed for the next
    // pass to re-plan: convergent, and counted. No other mutation at all.
    let log = sim.state().request_log();
    let mutations: Vec<&RequestRecord> = log.iter().filter(|r| is_mutation(r)).collect();
    let before_kill: Vec<&RequestRecord> = log_at_kill.iter().filter(|r| is_mutation(r)).collect();
    let mut resent = 0;
    for a in Action::ALL {
        let (m, p) = scenario.request(&node, a);
        let count =
            |log: &[&RequestRecord]| log.iter().filter(|r| r.method == m && r.path == p).count();
        let n = count(&mutations);
        if n == 1 {
            continue;
        }
        let vmid = scenario.guest[&a];
        let op = at_kill
            .iter()
            .rev()
            .find(|(_, r)| r.vmid == Some(vmid) && r.action == a.name());
        let unknown =
            op.is_some_and(|(_, r)| r.state == OpState::Started) && count(&before_kill) == 1;
        let closed_as_unknown = op.and_then(|(id, _)| after.get(id)).is_some_and(|r| {
            matches!(&r.state, OpState::Failed { error } if error == INTERRUPTED_BEFORE_REQUEST)
        });
        ensure!(
            n == 2 && unknown && closed_as_unknown,
            "{m} {p} was sent {n} times (its op at the kill: {:?})",
            op.map(|(_, r)| &r.state)
        );
        resent += 1;
    }
    ensure!(
        mutations.len() == Action::ALL.len() + resent,
        "mutations the desired state did not ask for: {:?}",
        mutations
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect::<Vec<_>>()
    );

    // No mutation before recovery finished polling the tasks it found in flight.
    let restart = &log[log_at_kill.len()..];
    if let Some(first_mutation) = restart.iter().position(is_mutation) {
        for upid in &in_flight_upids {
            let status_path = format!("/nodes/{node}/tasks/{upid}/status");
            if let Some(last_poll) = restart.iter().rposition(|r| r.path == status_path) {
                ensure!(
                    last_poll < first_mutation,
                    "a mutation was sent before recovery's last poll of {upid}"
                );
            }
        }
    }

    // Converged.
    let state = sim.state();
    let guest = |vmid: u32| {
        state
            .guest(vmid)
            .with_context(|| format!("guest {vmid} gone"))
    };
    let cfg = guest(scenario.guest[&Action::SetConfig])?;
    ensure!(
        cfg.config.get("cores") == Some(&scenario.cores.to_string())
            && cfg.config.get("memory") == Some(&scenario.memory_mib.to_string()),
        "guest {} did not converge: cores {:?}, memory {:?}",
        cfg.vmid,
        cfg.config.get("cores"),
        cfg.config.get("memory")
    );
    ensure!(
        guest(scenario.guest[&Action::Start])?.running,
        "guest to start is not running"
    );
    ensure!(
        !guest(scenario.guest[&Action::Stop])?.running,
        "guest to stop is running"
    );
    for vmid in &scenario.idle {
        ensure!(guest(*vmid)?.running, "idle guest {vmid} was stopped");
    }
    ensure!(
        state.guests().iter().all(|g| g.lock.is_none()),
        "a guest was left locked"
    );
    sim.shutdown().await;
    hub.shutdown().await;
    Ok(Outcome {
        in_flight_at_kill: in_flight.len(),
        ops_at_kill: at_kill.len(),
        mutations: mutations.len(),
        resent_unknown: resent,
        took: started.elapsed(),
    })
}

/// SIGKILLs `daemon` once the simulator has answered a status poll of the target's task and
/// the task is still running; checks it still was after the kill.
async fn kill_while_waiting(
    sim: &PveSim,
    daemon: &mut Daemon,
    action: Action,
    vmid: u32,
) -> Result<std::process::ExitStatus> {
    let task_type = action.task_type().context("no task to wait on")?;
    let deadline = Instant::now() + WAIT;
    loop {
        let polled =
            sim.state().tasks().into_iter().find(|t| {
                t.task_type == task_type && t.id == vmid.to_string() && t.status_polls >= 1
            });
        if let Some(task) = polled {
            ensure!(
                task.running,
                "the task ended before the daemon was seen waiting"
            );
            let status = daemon.kill().await?;
            let still = sim.state().task(&task.upid).context("task gone")?;
            ensure!(
                still.running,
                "the task ended before the kill landed: not a kill while waiting"
            );
            return Ok(status);
        }
        if let Some(status) = daemon.exited() {
            bail!("the daemon exited ({status}) before waiting on its task");
        }
        if Instant::now() >= deadline {
            bail!("the daemon never polled its {task_type} task within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn tail(lines: &[String]) -> String {
    let from = lines.len().saturating_sub(8);
    lines[from..].join("\n  ")
}

/// Entry point of `cargo xtask crashpoints`.
pub fn run(root: &Path, args: &CrashArgs) -> Result<()> {
    let built = crate::cargo::build(root, &["felhom-agent"], crate::cargo::Profile::Dev)?;
    let bin = crate::agentproc::agent_binary(&built)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let all = points(args.rounds);
    println!(
        "crashpoints: {} kill points ({} rounds × {} per round)",
        all.len(),
        args.rounds,
        all.len() / args.rounds.max(1) as usize
    );
    let started = Instant::now();
    let outcomes = runtime.block_on(run_points(&bin, &all, true));
    let benign = summarize(&outcomes, started.elapsed());
    println!(
        "\ncrashpoints: {} signed-job kill points ({} rounds × {})",
        args.rounds as usize * signed::SignedKill::ALL.len(),
        args.rounds,
        signed::SignedKill::ALL.len()
    );
    let started = Instant::now();
    let signed_outcomes = runtime.block_on(signed::run_points(&bin, args.rounds, true));
    let failed = signed::summarize(&signed_outcomes);
    println!(
        "crashpoints: {} signed-job kill points in {:.0} s, {} passed, {failed} failed",
        signed_outcomes.len(),
        started.elapsed().as_secs_f64(),
        signed_outcomes.len() - failed
    );
    benign?;
    if failed > 0 {
        bail!(
            "crashpoints: {failed} of {} signed-job kill points failed",
            signed_outcomes.len()
        );
    }
    Ok(())
}

/// Runs `points` one after another; prints a line per point when `verbose`.
pub async fn run_points(
    bin: &Path,
    points: &[Point],
    verbose: bool,
) -> Vec<(Point, Result<Outcome>)> {
    let mut out = Vec::with_capacity(points.len());
    for (i, point) in points.iter().enumerate() {
        let result = run_point(bin, *point).await;
        if verbose {
            let Target::Benign(action) = point.target;
            match &result {
                Ok(o) => println!(
                    "[{:>3}/{}] round {:>2} {:<10} {:<18} ok: {} ops journaled at the kill, {} in \
                     flight, recovered; {} mutations, {} re-sent (outcome unknown); converged \
                     ({:.1} s)",
                    i + 1,
                    points.len(),
                    point.round,
                    action.name(),
                    point.kill.name(),
                    o.ops_at_kill,
                    o.in_flight_at_kill,
                    o.mutations,
                    o.resent_unknown,
                    o.took.as_secs_f64()
                ),
                Err(e) => println!(
                    "[{:>3}/{}] round {:>2} {:<10} {:<18} FAILED: {e:#}",
                    i + 1,
                    points.len(),
                    point.round,
                    action.name(),
                    point.kill.name()
                ),
            }
        }
        out.push((*point, result));
    }
    out
}

/// The table: points per (action, step), failures; Err when any failed.
fn summarize(outcomes: &[(Point, Result<Outcome>)], took: Duration) -> Result<()> {
    let mut table: BTreeMap<(Action, u8, &'static str), [usize; 4]> = BTreeMap::new();
    for (point, result) in outcomes {
        let Target::Benign(action) = point.target;
        let row = table
            .entry((action, point.kill.order(), point.kill.name()))
            .or_default();
        row[0] += 1;
        match result {
            Ok(o) => {
                row[1] += usize::from(o.in_flight_at_kill > 0);
                row[2] += o.resent_unknown;
            }
            Err(_) => row[3] += 1,
        }
    }
    println!(
        "\n{:<10} {:<18} {:>6} {:>14} {:>8} {:>7}",
        "action", "killed at", "points", "recovery ran", "re-sent", "failed"
    );
    for ((action, _, kill), [n, recovered, resent, failed]) in &table {
        println!(
            "{:<10} {:<18} {:>6} {:>14} {:>8} {:>7}",
            action.name(),
            kill,
            n,
            recovered,
            resent,
            failed
        );
    }
    let resent: usize = table.values().map(|row| row[2]).sum();
    println!(
        "re-sent: requests the kill caught after they were sent but before their UPID was \
         journaled, whose task had not finished when the restarted daemon re-read the guest: \
         recovery closes such an op as failed (outcome unknown) and the next pass re-plans it \
         ({resent} over {} points)",
        outcomes.len()
    );
    let failed = outcomes.iter().filter(|(_, r)| r.is_err()).count();
    println!(
        "\ncrashpoints: {} kill points in {:.0} s, {} passed, {} failed",
        outcomes.len(),
        took.as_secs_f64(),
        outcomes.len() - failed,
        failed
    );
    if failed > 0 {
        bail!(
            "crashpoints: {failed} of {} kill points failed",
            outcomes.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_round_has_fifteen_distinct_points_in_life_order() {
        let round = points(1);
        assert_eq!(round.len(), 15);
        let mut seen: Vec<(Action, Kill)> = round
            .iter()
            .map(|p| {
                let Target::Benign(a) = p.target;
                (a, p.kill)
            })
            .collect();
        seen.dedup();
        assert_eq!(seen.len(), 15);
        for action in Action::ALL {
            let orders: Vec<u8> = kills(Target::Benign(action))
                .into_iter()
                .map(Kill::order)
                .collect();
            assert!(orders.windows(2).all(|w| w[0] < w[1]), "{orders:?}");
        }
        assert!(points(DEFAULT_ROUNDS).len() >= 200);
    }

    #[test]
    fn rounds_vary_the_host() {
        let (a, b) = (Scenario::of(0), Scenario::of(1));
        assert_ne!(a.guest, b.guest);
        assert_ne!(a.cores, b.cores);
        assert_ne!(a.idle.len(), b.idle.len());
        // The set_config guest starts at 1 core and 512 MiB: every round asks for a change.
        for r in 0..DEFAULT_ROUNDS {
            let s = Scenario::of(r);
            assert!(s.cores > 1 && s.memory_mib > 512);
        }
    }

    /// The normal test run's subset: a handful of points with the real daemon, one per kind of
    /// recovery (no op, an op started without a request, a request without a record, a task
    /// running, a task waited on, a task ended but unrecorded).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handful_of_kill_points_recover_without_loss_or_repeat() {
        let built = crate::cargo::build(
            &crate::root(),
            &["felhom-agent"],
            crate::cargo::Profile::Dev,
        )
        .expect("felhom-agent builds");
        let bin = crate::agentproc::agent_binary(&built).expect("felhom-agent binary");
        let subset = [
            (Action::Start, Kill::At(OpStep::BeforeStarted)),
            (Action::Start, Kill::At(OpStep::AfterStarted)),
            (Action::SetConfig, Kill::At(OpStep::AfterRequest)),
            (Action::Stop, Kill::At(OpStep::AfterTaskRunning)),
            (Action::Start, Kill::Waiting),
            (Action::Stop, Kill::At(OpStep::AfterTaskEnd)),
        ]
        .map(|(action, kill)| Point {
            round: 1,
            target: Target::Benign(action),
            kill,
        });
        for (point, result) in run_points(&bin, &subset, false).await {
            let outcome = result.unwrap_or_else(|e| panic!("{point:?}: {e:#}"));
            assert_eq!(outcome.mutations, 3 + outcome.resent_unknown, "{point:?}");
            // Past `started`, at least the target op was in flight for recovery to close.
            if point.kill != Kill::At(OpStep::BeforeStarted) {
                assert!(outcome.in_flight_at_kill > 0, "{point:?}: {outcome:?}");
            }
        }
    }
}
