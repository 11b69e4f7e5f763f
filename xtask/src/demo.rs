//! `cargo xtask demo`: builds the binaries, starts the PVE and hub simulators on loopback,
//! writes configs pinned to their certificates, and runs the demo's steps one after another
//! with a header each, streaming their output, so a person can follow what the agent's tools do
//! against a Proxmox host. Exits 0 when every step passed, 1 otherwise, by itself within
//! seconds once the binaries are built.
//!
//! The demo is a list of [`Step`]s: first the self-tests (read, reversible task), then the
//! `felhom-agent` daemon ([`agent`]): reports reaching the hub, the guests converging to a
//! desired-state file, a quiet second pass, a `GET /metrics` excerpt ([`metrics`]), and a clean
//! SIGTERM; then the hub serving the desired state instead, and signed ops ([`hub_ops`]:
//! pending, signed with ssh-keygen, executed once, replay refused, blocked, unblocked) before
//! the hub-driven daemon stops; then a restore test ([`restore`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::cargo::Profile;
use felhom_pve_sim::{GuestView, HubSim, HubSimConfig, PveSim, SimConfig};

mod agent;
mod hub_ops;
mod metrics;
mod restore;

/// Longest any one step may run: the simulator's tasks take 50 ms, so a step that is still
/// running after this is stuck.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// The guest the task test writes to.
const DEMO_VMID: u32 = 100;

/// One step of the demo.
enum Step {
    /// Run one of the workspace's binaries with these arguments (the config path is added).
    Run {
        title: &'static str,
        binary: &'static str,
        args: Vec<String>,
    },
    /// Check the simulator's state in process; `Ok` carries what was found.
    Verify {
        title: &'static str,
        check: fn(&Demo) -> Result<String>,
    },
    /// One step of the daemon's part (they share one running `felhom-agent`).
    Agent {
        title: &'static str,
        step: agent::AgentStep,
    },
    /// One step of the hub-served signed-op story (while the hub-driven daemon runs).
    HubOps {
        title: &'static str,
        step: hub_ops::HubOpsStep,
    },
    /// The restore-test step ([`restore`]): a daemon of its own with restore tests enabled.
    Restore { title: &'static str },
}

impl Step {
    fn title(&self) -> &'static str {
        match self {
            Step::Run { title, .. }
            | Step::Verify { title, .. }
            | Step::Agent { title, .. }
            | Step::HubOps { title, .. } => title,
            Step::Restore { title } => title,
        }
    }
}

/// What the steps share.
struct Demo {
    sim: PveSim,
    /// The hub simulator the daemon reports to.
    hub: HubSim,
    /// The demo's temporary directory (configs, journal, nonce store, desired state).
    dir: PathBuf,
    /// The running daemon, between its steps.
    agent: agent::AgentState,
    /// The signed op of the hub-ops steps.
    ops: hub_ops::HubOpsState,
    config: PathBuf,
    binaries: Vec<(String, PathBuf)>,
    /// Guest `DEMO_VMID` as it was before any step ran.
    guest_before: GuestView,
}

fn steps() -> Vec<Step> {
    vec![
        Step::Run {
            title: "read-only self-test: version, node, guests, storage, permissions",
            binary: "felhom-selftest",
            args: vec!["read".into()],
        },
        Step::Run {
            title: "reversible task self-test on guest 100: snapshot, rollback, delete; \
                    description write, verify, restore",
            binary: "felhom-selftest",
            args: vec!["task".into(), "--vmid".into(), DEMO_VMID.to_string()],
        },
        Step::Verify {
            title: "guest 100 is as it was before the task test",
            check: guest_unchanged,
        },
    ]
    .into_iter()
    .chain(agent_steps())
    .chain([Step::Restore {
        title: restore::TITLE,
    }])
    .collect()
}

/// The daemon's steps, the hub-ops story inserted before the hub-driven daemon's stop.
fn agent_steps() -> Vec<Step> {
    let mut steps: Vec<Step> = agent::AgentStep::all()
        .into_iter()
        .map(|(title, step)| Step::Agent { title, step })
        .collect();
    let stop = steps.pop();
    steps.extend(
        hub_ops::HubOpsStep::all()
            .into_iter()
            .map(|(title, step)| Step::HubOps { title, step }),
    );
    steps.extend(stop);
    steps
}

/// Entry point of `cargo xtask demo`.
pub fn run(root: &Path) -> Result<()> {
    header("building the binaries");
    let binaries = crate::cargo::build(root, &["felhom-selftest", "felhom-agent"], Profile::Dev)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(demo(binaries))
}

async fn demo(binaries: Vec<(String, PathBuf)>) -> Result<()> {
    header("starting the Proxmox VE simulator");
    let sim = PveSim::start(SimConfig::default())
        .await
        .context("starting the simulator")?;
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let config = dir.path().join("agent.json");
    write_config(&sim, &config)?;
    println!("api      {}", sim.base_url());
    println!("node     {}", sim.node());
    println!("pinned   {}", sim.fingerprint());
    println!("config   {}", config.display());
    header("starting the hub simulator");
    let mut hub_config = HubSimConfig::default();
    hub_config.envelope.poll_interval_seconds = Some(agent::DEMO_POLL_SECONDS);
    let hub = HubSim::start(hub_config)
        .await
        .context("starting the hub simulator")?;
    println!("hub      {}", hub.base_url());
    let guest_before = sim
        .state()
        .guest(DEMO_VMID)
        .with_context(|| format!("the default simulated host has no guest {DEMO_VMID}"))?;
    let demo = Demo {
        sim,
        hub,
        dir: dir.path().to_owned(),
        agent: agent::AgentState::default(),
        ops: hub_ops::HubOpsState::default(),
        config,
        binaries,
        guest_before,
    };

    let steps = steps();
    let mut results = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        header(&format!("[{}/{}] {}", i + 1, steps.len(), step.title()));
        let started = Instant::now();
        let outcome = match run_step(&demo, step).await {
            Ok(()) => {
                println!("--> passed in {:.1} s", started.elapsed().as_secs_f64());
                StepOutcome::Passed
            }
            // A step that could not run here (a tool is missing) is not a pass.
            Err(e) if e.downcast_ref::<Skipped>().is_some() => {
                println!("--> SKIPPED: {e}");
                StepOutcome::Skipped
            }
            Err(e) => {
                println!("--> FAILED: {e:#}");
                StepOutcome::Failed
            }
        };
        results.push((step.title(), outcome));
    }

    header("summary");
    for (title, outcome) in &results {
        let mark = match outcome {
            StepOutcome::Passed => "[ ok ]",
            StepOutcome::Skipped => "[skip]",
            StepOutcome::Failed => "[FAIL]",
        };
        println!("{mark} {title}");
    }
    demo.sim.shutdown().await;
    demo.hub.shutdown().await;
    let count = |o: StepOutcome| results.iter().filter(|(_, r)| *r == o).count();
    let (failed, skipped) = (count(StepOutcome::Failed), count(StepOutcome::Skipped));
    if failed > 0 {
        bail!("demo: {failed} of {} steps failed", results.len());
    }
    if skipped > 0 {
        println!(
            "demo: {} of {} steps passed, {skipped} skipped (see the notes above)",
            results.len() - skipped,
            results.len()
        );
    } else {
        println!("demo: all {} steps passed", results.len());
    }
    Ok(())
}

/// How one step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StepOutcome {
    Passed,
    Skipped,
    Failed,
}

/// A step that cannot run on this machine (a tool it needs is missing): reported as skipped,
/// never as passed, and not a failure of the demo.
#[derive(Debug)]
pub struct Skipped(pub String);

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Skipped {}

async fn run_step(demo: &Demo, step: &Step) -> Result<()> {
    match step {
        Step::Run { binary, args, .. } => {
            let path = demo
                .binaries
                .iter()
                .find(|(name, _)| name == binary)
                .map(|(_, p)| p.clone())
                .with_context(|| format!("{binary} was not built"))?;
            let mut all: Vec<OsString> = vec!["--config".into(), demo.config.clone().into()];
            all.extend(args.iter().map(OsString::from));
            println!(
                "$ {binary} {}",
                all.iter()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let mut child = tokio::process::Command::new(&path)
                .args(&all)
                // The config file is the whole configuration: no FELHOM_AGENT_* overlay.
                .env_clear()
                .stdin(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {}", path.display()))?;
            let status = tokio::time::timeout(STEP_TIMEOUT, child.wait())
                .await
                .with_context(|| format!("{binary} did not finish within {STEP_TIMEOUT:?}"))?
                .with_context(|| format!("waiting for {binary}"))?;
            if !status.success() {
                bail!("{binary} exited with {status}");
            }
            Ok(())
        }
        Step::Verify { check, .. } => {
            let found = check(demo)?;
            println!("{found}");
            Ok(())
        }
        Step::Agent { step, .. } => agent::run(demo, *step).await,
        Step::HubOps { step, .. } => hub_ops::run(demo, *step).await,
        Step::Restore { .. } => restore::run(demo).await,
    }
}

/// The task test must leave the guest exactly as it found it.
fn guest_unchanged(demo: &Demo) -> Result<String> {
    let before = &demo.guest_before;
    let after = demo
        .sim
        .state()
        .guest(DEMO_VMID)
        .with_context(|| format!("guest {DEMO_VMID} is gone"))?;
    let names = |g: &GuestView| {
        g.snapshots
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    };
    let mut diffs = Vec::new();
    if after.running != before.running {
        diffs.push(format!("running {} → {}", before.running, after.running));
    }
    if after.description != before.description {
        diffs.push(format!(
            "description {:?} → {:?}",
            before.description, after.description
        ));
    }
    if names(&after) != names(before) {
        diffs.push(format!(
            "snapshots {:?} → {:?}",
            names(before),
            names(&after)
        ));
    }
    if after.config != before.config {
        diffs.push("config keys differ".to_owned());
    }
    if after.lock.is_some() {
        diffs.push(format!("left locked ({:?})", after.lock));
    }
    if !diffs.is_empty() {
        bail!("guest {DEMO_VMID} changed: {}", diffs.join("; "));
    }
    let tasks = demo.sim.state().tasks();
    Ok(format!(
        "guest {DEMO_VMID}: running={}, description {:?}, snapshots {:?}, config digest {} — \
         unchanged after {} PVE tasks ({})",
        after.running,
        after.description.as_deref().unwrap_or(""),
        names(&after),
        after.digest,
        tasks.len(),
        tasks
            .iter()
            .map(|t| format!(
                "{} {}",
                t.task_type,
                t.exitstatus.as_deref().unwrap_or("running")
            ))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// A config with only the `proxmox` section, pinned to the simulator's certificate. The
/// simulator's token secret is a fixed test value, never a real credential.
fn write_config(sim: &PveSim, path: &Path) -> Result<()> {
    let doc = serde_json::json!({ "proxmox": felhom_testkit::config::proxmox_section(sim) });
    felhom_testkit::config::write_json(path, &doc)
        .with_context(|| format!("writing {}", path.display()))
}

fn header(title: &str) {
    println!("\n=== {title}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_has_a_title_and_runs_a_built_binary_or_a_check() {
        let steps = steps();
        assert!(steps.len() >= 2);
        // The self-tests first, then the daemon, ending with the hub-driven daemon's stop.
        let first_agent = steps
            .iter()
            .position(|s| matches!(s, Step::Agent { .. }))
            .unwrap();
        assert!(steps[..first_agent]
            .iter()
            .all(|s| !matches!(s, Step::Agent { .. })));
        assert!(matches!(
            steps.iter().rfind(|s| matches!(s, Step::Agent { .. })),
            Some(Step::Agent {
                step: agent::AgentStep::HubStop,
                ..
            })
        ));
        // The hub-ops story runs while the hub-driven daemon does: right before its stop; the
        // restore test (a daemon of its own) comes last.
        assert!(matches!(steps.last(), Some(Step::Restore { .. })));
        let n = steps.len() - 1;
        let ops = hub_ops::HubOpsStep::all().len();
        assert!(steps[n - 1 - ops..n - 1]
            .iter()
            .all(|s| matches!(s, Step::HubOps { .. })));
        assert!(matches!(
            steps[n - 2 - ops],
            Step::Agent {
                step: agent::AgentStep::HubConverge,
                ..
            }
        ));
        for s in &steps {
            assert!(!s.title().is_empty());
            if let Step::Run { binary, .. } = s {
                assert_eq!(*binary, "felhom-selftest");
            }
        }
    }
}
