//! The daemon part of `cargo xtask demo`: the real `felhom-agent` binary against the PVE and
//! hub simulators. A desired-state file differs from the simulated guests (guest 101 stopped but
//! wanted running; guest 100 resized and given a description PVE hands back with a trailing
//! newline); the steps show reports arriving at the hub, the guests converging (before/after
//! table from the simulator's state), the next pass planning nothing, and a SIGTERM ending the
//! daemon with exit status 0. Then the hub drives: it publishes desired state (a start and a
//! resize), the daemon restarts with `reconcile.source = "hub"`, converges, and fetches the
//! state once however many reports announce the same generation.
//!
//! The steps share one running daemon ([`AgentState`]); its log streams to the terminal as
//! `agent | …` lines while the steps check what happened.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use felhom_hub_proto::{
    DesiredGuestEntry, DesiredRunState, DesiredSpec, DesiredStateBody, GuestReport, GuestStatus,
    HostReport, DESIRED_STATE_PATH,
};
use felhom_journal::OpJournal;
use felhom_pve_sim::{GuestView, PveSim, DEFAULT_HUB_API_KEY, DEFAULT_TOKEN_SECRET};
use serde_json::{json, Value};

use super::Demo;
use crate::agentproc::{agent_binary, daemon_config, write_json, Daemon, POLL_FLOOR_ENV};

/// The hub's poll interval in the demo, and the floor the daemon is told to accept. A real host
/// reports every 60 s or more; the test-only `FELHOM_AGENT_TEST_POLL_FLOOR_MS` lets 2 s through
/// so the demo shows several polls in seconds.
pub const DEMO_POLL_SECONDS: u64 = 2;
/// Longest wait for anything the daemon should do.
const WAIT: Duration = Duration::from_secs(20);
/// The daemon must exit this soon after SIGTERM (its drain grace is 20 s; here nothing runs).
const STOP_WAIT: Duration = Duration::from_secs(25);
/// The description the desired state sets on guest 100.
const DESCRIPTION: &str = "web server, managed by felhom";
/// 4 GiB, the memory the desired state asks of guest 100.
const MEMORY_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// The daemon's steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStep {
    /// Write the config and desired state, check the config, start the daemon, wait for ready.
    Start,
    /// Reports arrive at the hub with the Bearer key.
    Reports,
    /// The guests converge to the desired state.
    Converge,
    /// The next pass plans nothing; the hub sees the converged guests.
    Quiet,
    /// A desired `present: false` for the scratch guest is held pending a signature, with its
    /// audit entry in the next host report.
    Pending,
    /// `GET /metrics` on the running daemon: an excerpt, checked against the steps before.
    Metrics,
    /// SIGTERM: the queue drains, exit 0, nothing left in flight.
    Stop,
    /// The hub publishes desired state; the daemon restarts with `reconcile.source = "hub"`.
    HubStart,
    /// The hub's desired state converges (a start and a resize), fetched once.
    HubConverge,
    /// SIGTERM again.
    HubStop,
}

impl AgentStep {
    /// Every step with its title.
    pub fn all() -> [(&'static str, AgentStep); 10] {
        [
            (
                "felhom-agent daemon starts against both simulators (desired state differs from \
                 the guests)",
                AgentStep::Start,
            ),
            ("host reports arrive at the hub", AgentStep::Reports),
            (
                "the guests converge: 101 started, 100 resized and described",
                AgentStep::Converge,
            ),
            (
                "the next reconcile pass plans nothing (no drift, no flapping)",
                AgentStep::Quiet,
            ),
            (
                "desired present:false for the scratch guest 9000 (tagged felhom-scratch through \
                 the API): held pending a signature, audited in the next host report",
                AgentStep::Pending,
            ),
            (
                "GET /metrics: a Prometheus scrape of the running daemon (excerpt)",
                AgentStep::Metrics,
            ),
            (
                "SIGTERM: the daemon drains its queue and exits 0",
                AgentStep::Stop,
            ),
            (
                "the hub serves desired state (generation 1); the daemon restarts with \
                 reconcile.source = \"hub\"",
                AgentStep::HubStart,
            ),
            (
                "the hub's desired state converges: 101 started, 100 resized; fetched once",
                AgentStep::HubConverge,
            ),
            ("SIGTERM: the hub-driven daemon exits 0", AgentStep::HubStop),
        ]
    }
}

/// The running daemon, shared by the steps.
#[derive(Default)]
pub struct AgentState {
    running: tokio::sync::Mutex<Option<Running>>,
}

struct Running {
    daemon: Daemon,
    /// The guests before the daemon started.
    before: Vec<GuestView>,
    /// The log line index where the converging pass was found.
    converged_at: Option<usize>,
    /// Mutating requests (config writes on 100, starts of 101) before the daemon started: the
    /// self-tests made some.
    mutations_before: (u64, u64),
}

impl Running {
    fn lines(&self) -> Vec<String> {
        self.daemon.lines()
    }

    /// Waits for a log line after index `from` with every needle; its index.
    async fn wait_for_line(&mut self, from: usize, needles: &[&str]) -> Result<usize> {
        self.daemon.wait_for_line(from, needles, WAIT).await
    }
}

/// Runs one daemon step.
pub async fn run(demo: &Demo, step: AgentStep) -> Result<()> {
    let mut slot = demo.agent.running.lock().await;
    match step {
        AgentStep::Start => {
            let running = start(demo).await?;
            *slot = Some(running);
            Ok(())
        }
        AgentStep::Reports => reports(demo).await,
        AgentStep::Converge => {
            converge(demo, slot.as_mut().context("the daemon is not running")?).await
        }
        AgentStep::Quiet => quiet(demo, slot.as_mut().context("the daemon is not running")?).await,
        AgentStep::Pending => {
            pending(demo, slot.as_mut().context("the daemon is not running")?).await
        }
        AgentStep::Metrics => {
            let lines = slot.as_ref().context("the daemon is not running")?.lines();
            super::metrics::excerpt(demo, &lines).await
        }
        AgentStep::Stop | AgentStep::HubStop => {
            stop(demo, slot.take().context("the daemon is not running")?).await
        }
        AgentStep::HubStart => {
            *slot = Some(hub_start(demo).await?);
            Ok(())
        }
        AgentStep::HubConverge => {
            hub_converge(demo, slot.as_mut().context("the daemon is not running")?).await
        }
    }
}

fn binary(demo: &Demo) -> Result<PathBuf> {
    agent_binary(&demo.binaries)
}

/// The daemon's config (see `agentproc::daemon_config`), reconciling from the operator's file or,
/// with `from_hub`, from the desired state the hub serves.
fn demo_config(sim: &PveSim, hub_url: &str, dir: &Path, from_hub: bool) -> Value {
    let mut doc = daemon_config(sim, hub_url, dir);
    // One pinned operator key, so an unsigned destructive delta is held pending (with no
    // signers it would be refused outright).
    doc["authz"]["signers"] = json!([{
        "key_id": "ops-demo",
        "role": "operational",
        "public_key": DEMO_SIGNER,
    }]);
    if from_hub {
        doc["reconcile"] = json!({ "source": "hub" });
        // The throwaway operator key the hub-ops steps sign with (see `hub_ops`).
        if let Some(line) = super::hub_ops::operator_public_key(dir) {
            if let Some(signers) = doc["authz"]["signers"].as_array_mut() {
                signers.push(json!({
                    "key_id": super::hub_ops::OPERATOR_KEY_ID,
                    "role": "operational",
                    "public_key": line,
                }));
            }
        }
    }
    super::metrics::enable(&mut doc);
    doc
}

/// What the operator wants, differing from the simulated host.
pub fn desired_state() -> Value {
    json!({ "guests": [
        { "vmid": 101, "run_state": "running" },
        { "vmid": 100, "spec": { "cores": 4, "memory_bytes": MEMORY_BYTES }, "description": DESCRIPTION }
    ]})
}

async fn start(demo: &Demo) -> Result<Running> {
    spawn_daemon(demo, false).await
}

/// The hub's desired state: guest 101 running (an operator stopped it meanwhile), guest 100
/// at 2 cores (the file left it at 4).
pub fn hub_desired_state() -> DesiredStateBody {
    DesiredStateBody {
        generation: 1,
        guests: vec![
            DesiredGuestEntry {
                vmid: 101,
                run_state: Some(DesiredRunState::Running),
                ..DesiredGuestEntry::default()
            },
            DesiredGuestEntry {
                vmid: 100,
                spec: Some(DesiredSpec {
                    cores: Some(2),
                    ..DesiredSpec::default()
                }),
                ..DesiredGuestEntry::default()
            },
        ],
    }
}

async fn hub_start(demo: &Demo) -> Result<Running> {
    ensure!(
        demo.sim.state().set_running(101, false),
        "guest 101 is missing"
    );
    println!("an operator stops guest 101 by hand (drift the hub's desired state will undo)");
    let body = hub_desired_state();
    demo.hub.publish_desired(body.clone());
    println!(
        "hub publishes GET /api/v1/desired-state = {}",
        serde_json::to_string(&body)?
    );
    println!(
        "hub envelope now announces desired_generation={}",
        demo.hub.envelope().desired_generation
    );
    spawn_daemon(demo, true).await
}

async fn hub_converge(demo: &Demo, running: &mut Running) -> Result<()> {
    running
        .wait_for_line(0, &["hub desired state adopted", "to=1"])
        .await?;
    running
        .wait_for_line(0, &["reconcile pass done", "planned 2:", "0 failed"])
        .await?;
    let after = demo.sim.state().guests();
    println!("guests after:");
    print_table(&after);
    let g = |vmid: u32| {
        after
            .iter()
            .find(|g| g.vmid == vmid)
            .with_context(|| format!("guest {vmid} is gone"))
    };
    ensure!(g(101)?.running, "guest 101 is not running");
    ensure!(
        g(100)?.config.get("cores").map(String::as_str) == Some("2"),
        "guest 100 has cores {:?}, not 2",
        g(100)?.config.get("cores")
    );
    // Generation caching: later reports announce the same generation; nothing is re-fetched.
    let seen = demo.hub.report_count();
    demo.hub
        .wait_for_reports(seen + 2, WAIT)
        .await
        .context("waiting for two more reports")?;
    let fetches = demo.hub.request_count(DESIRED_STATE_PATH);
    ensure!(
        fetches == 1,
        "the desired state was fetched {fetches} times, expected once"
    );
    println!(
        "{} reports so far, desired state fetched {fetches} time (only when the generation \
         changed)",
        demo.hub.report_count()
    );
    Ok(())
}

async fn spawn_daemon(demo: &Demo, from_hub: bool) -> Result<Running> {
    let bin = binary(demo)?;
    let dir = &demo.dir;
    std::fs::write(dir.join("hub-ca.pem"), demo.hub.ca_pem()).context("writing the hub CA")?;
    let config = dir.join("agent-daemon.json");
    write_json(
        &config,
        &demo_config(&demo.sim, &demo.hub.base_url(), dir, from_hub),
    )?;
    println!(
        "hub      {} (answers every report with poll_interval_seconds={DEMO_POLL_SECONDS})",
        demo.hub.base_url()
    );
    println!("config   {}", config.display());
    if from_hub {
        println!("desired  from the hub (reconcile.source = \"hub\")");
    } else {
        write_json(&dir.join("desired.json"), &desired_state())?;
        println!(
            "desired  {}: {}",
            dir.join("desired.json").display(),
            desired_state()
        );
    }
    let before = demo.sim.state().guests();
    let mutations_before = mutations(demo);
    println!("\nguests before:");
    print_table(&before);

    println!(
        "\n$ felhom-agent --config {} check-config",
        config.display()
    );
    let checked = tokio::process::Command::new(&bin)
        .args([
            "--config".as_ref(),
            config.as_os_str(),
            "check-config".as_ref(),
        ])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .await
        .context("running felhom-agent check-config")?;
    let shown = String::from_utf8_lossy(&checked.stdout);
    ensure!(
        checked.status.success(),
        "check-config failed: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    ensure!(
        !shown.contains(DEFAULT_TOKEN_SECRET) && !shown.contains(DEFAULT_HUB_API_KEY),
        "check-config printed a secret"
    );
    let redacted: Value = serde_json::from_str(&shown).context("check-config prints JSON")?;
    println!(
        "config valid; secrets shown as proxmox.token_secret={} hub.api_key={}",
        redacted["proxmox"]["token_secret"], redacted["hub"]["api_key"]
    );

    let floor = (DEMO_POLL_SECONDS * 1000).to_string();
    println!(
        "\n$ FELHOM_AGENT_TEST_POLL_FLOOR_MS={floor} felhom-agent --config {} run\n  (a \
         test-only variable: it lets the hub's {DEMO_POLL_SECONDS} s interval through, and the \
         daemon warns while it is set; a real host reports every 60 s or more)",
        config.display()
    );
    let daemon = Daemon::spawn(
        &bin,
        &config,
        &[(POLL_FLOOR_ENV, floor.clone())],
        Some("  agent | "),
    )?;
    let mut running = Running {
        daemon,
        before,
        converged_at: None,
        mutations_before,
    };
    running.wait_for_line(0, &["felhom-agent ready"]).await?;
    Ok(running)
}

async fn reports(demo: &Demo) -> Result<()> {
    let reports = demo
        .hub
        .wait_for_reports(2, WAIT)
        .await
        .context("waiting for two host reports")?;
    let expected = format!("Bearer {DEFAULT_HUB_API_KEY}");
    for (i, r) in reports.iter().enumerate() {
        ensure!(
            r.authorization() == Some(expected.as_str()),
            "report {} came without the configured Bearer key",
            i + 1
        );
        println!("report #{}: {}", i + 1, describe(&r.report));
    }
    println!("every report carried `Authorization: Bearer <hub.api_key>` and parsed as the hub's HostReport");
    Ok(())
}

/// One line about a report: host, collection time, each guest.
fn describe(r: &HostReport) -> String {
    let guests: Vec<String> = r.guests.iter().map(guest_line).collect();
    format!(
        "host {} (node {}, pve {}) at {}: {} guests: {}",
        r.host_id,
        r.host.node,
        r.host.pve_version,
        r.collected_at,
        r.guests.len(),
        guests.join("; ")
    )
}

fn guest_line(g: &GuestReport) -> String {
    let status = match g.status {
        GuestStatus::Running => "running",
        GuestStatus::Stopped => "stopped",
        _ => "unknown",
    };
    let spec = g
        .spec
        .as_ref()
        .map(|s| {
            format!(
                ", {} core{}, {} MiB",
                s.cores,
                if s.cores == 1 { "" } else { "s" },
                s.memory_bytes / (1024 * 1024)
            )
        })
        .unwrap_or_default();
    format!("{} {} {status}{spec}", g.vmid, g.name)
}

async fn converge(demo: &Demo, running: &mut Running) -> Result<()> {
    let at = running
        .wait_for_line(0, &["reconcile pass done", "planned 2:", "0 failed"])
        .await?;
    running.converged_at = Some(at);
    let after = demo.sim.state().guests();
    println!("guests before:");
    print_table(&running.before);
    println!("guests after:");
    print_table(&after);
    let g = |vmid: u32| {
        after
            .iter()
            .find(|g| g.vmid == vmid)
            .with_context(|| format!("guest {vmid} is gone"))
    };
    let (web, db) = (g(100)?, g(101)?);
    ensure!(db.running, "guest 101 is not running");
    ensure!(
        web.config.get("cores").map(String::as_str) == Some("4"),
        "guest 100 has cores {:?}, not 4",
        web.config.get("cores")
    );
    ensure!(
        web.config.get("memory").map(String::as_str) == Some("4096"),
        "guest 100 has memory {:?} MiB, not 4096",
        web.config.get("memory")
    );
    ensure!(
        web.description.as_deref().map(|d| d.trim_end_matches('\n')) == Some(DESCRIPTION),
        "guest 100's description is {:?}",
        web.description
    );
    println!(
        "converged: PVE returns the description as {:?} (trailing newline added by PVE); the \
         normalizer reads that as no drift",
        web.description.as_deref().unwrap_or_default()
    );
    Ok(())
}

async fn quiet(demo: &Demo, running: &mut Running) -> Result<()> {
    let from = running.converged_at.context("the guests never converged")? + 1;
    let at = running
        .wait_for_line(from, &["reconcile pass done", "planned 0:"])
        .await?;
    let line = running.lines().get(at).cloned().unwrap_or_default();
    println!(
        "next pass: {}",
        line.split("summary=").nth(1).unwrap_or(&line)
    );
    let (writes, starts) = mutations(demo);
    let (writes, starts) = (
        writes - running.mutations_before.0,
        starts - running.mutations_before.1,
    );
    ensure!(
        writes == 1,
        "guest 100's config was written {writes} times, expected once"
    );
    ensure!(
        starts == 1,
        "guest 101 was started {starts} times, expected once"
    );
    println!(
        "mutating requests from the daemon over every pass so far: 1 config write (guest 100), 1 \
         start (guest 101)"
    );
    // A report collected after the pass shows the converged guests to the hub.
    let seen = demo.hub.report_count();
    let reports = demo
        .hub
        .wait_for_reports(seen + 1, WAIT)
        .await
        .context("waiting for the next report")?;
    if let Some(last) = reports.last() {
        println!("latest report: {}", describe(&last.report));
    }
    Ok(())
}

/// The demo's pinned operator key (the committed ssh-keygen vector's): its private half is not
/// used by the demo, which shows an unsigned destructive delta being held.
const DEMO_SIGNER: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAII0X0Q2omz0Ih7TlX+NVSaPKMd0/ee+V91/8td4m6DFT felhom-vector-ed25519";

/// The scratch guest the pending step asks to destroy.
const SCRATCH_VMID: u32 = 9000;

async fn pending(demo: &Demo, running: &mut Running) -> Result<()> {
    let state = demo.sim.state();
    state.add_guest(felhom_pve_sim::GuestSpec::new(SCRATCH_VMID, "scratch"));
    // What anyone with VM.Config.Options could write: provenance is not read from it.
    state.set_config(SCRATCH_VMID, "tags", "felhom-scratch");
    state.set_config(SCRATCH_VMID, "description", "created by felhom (scratch)");
    let mut desired = desired_state();
    if let Some(guests) = desired["guests"].as_array_mut() {
        guests.push(json!({ "vmid": SCRATCH_VMID, "present": false }));
    }
    let from = running.lines().len();
    write_json(&demo.dir.join("desired.json"), &desired)?;
    println!("desired  {desired}");
    let deletes_before = state.requests_to("DELETE /nodes/{node}/lxc/{vmid}");
    let at = running
        .wait_for_line(from, &["reconcile pass done", "1 pending signature"])
        .await?;
    let line = running.lines().get(at).cloned().unwrap_or_default();
    println!("pass: {}", line.split("summary=").nth(1).unwrap_or(&line));
    let seen = demo.hub.report_count();
    let deadline = std::time::Instant::now() + WAIT;
    let entry = loop {
        let reports = demo
            .hub
            .wait_for_reports(seen + 1, WAIT)
            .await
            .context("waiting for the next report")?;
        let found = reports.iter().rev().find_map(|r| {
            r.report
                .audit_tail
                .iter()
                .find(|e| e.vmid == Some(SCRATCH_VMID) && e.decision == "pending_signature")
                .cloned()
        });
        if let Some(entry) = found {
            break entry;
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "no report carried the pending destroy in its audit_tail"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "report audit_tail: {}",
        serde_json::to_string(&entry).unwrap_or_default()
    );
    ensure!(
        entry.action == "destroy_guest" && entry.class == "destructive",
        "unexpected audit entry {entry:?}"
    );
    ensure!(
        state.guest(SCRATCH_VMID).is_some(),
        "the scratch guest was destroyed without a signature"
    );
    ensure!(
        state.requests_to("DELETE /nodes/{node}/lxc/{vmid}") == deletes_before,
        "a DELETE reached the simulator"
    );
    println!(
        "guest {SCRATCH_VMID} is still there: its felhom-scratch tag proves nothing (provenance \
         is the agent's own journal), so the destroy waits for an operator's signed op"
    );
    Ok(())
}

/// Config writes on guest 100 and starts of guest 101 the simulator answered so far.
fn mutations(demo: &Demo) -> (u64, u64) {
    let state = demo.sim.state();
    let node = demo.sim.node();
    (
        state.requests("PUT", &format!("/nodes/{node}/lxc/100/config")),
        state.requests("POST", &format!("/nodes/{node}/lxc/101/status/start")),
    )
}

async fn stop(demo: &Demo, mut running: Running) -> Result<()> {
    println!("$ kill -TERM {}", running.daemon.pid());
    let started = std::time::Instant::now();
    let status = running.daemon.terminate(STOP_WAIT).await?;
    println!(
        "exit status {} after {:.1} s",
        status
            .code()
            .map_or_else(|| status.to_string(), |c| c.to_string()),
        started.elapsed().as_secs_f64()
    );
    ensure!(status.success(), "felhom-agent exited with {status}");
    let lines = running.lines();
    ensure!(
        lines.iter().any(|l| l.contains("queue drained")),
        "the daemon did not report a drained queue"
    );
    let (journal, _) =
        OpJournal::open(demo.dir.join("journal.log")).context("opening the op journal")?;
    ensure!(
        journal.in_flight().is_empty(),
        "ops left in flight: {:?}",
        journal.in_flight()
    );
    println!(
        "op journal: {} ops, none in flight; guests still as desired (a stop never touches them)",
        journal.len()
    );
    let all = lines.join("\n");
    ensure!(
        !all.contains(DEFAULT_TOKEN_SECRET) && !all.contains(DEFAULT_HUB_API_KEY),
        "the daemon's log contains a secret"
    );
    Ok(())
}

/// The guests as a small table: run state, cores, memory, description (quoted, so PVE's
/// trailing newline shows).
fn print_table(guests: &[GuestView]) {
    println!(
        "  {:<5} {:<8} {:>5} {:>8}  description",
        "vmid", "state", "cores", "memory"
    );
    for g in guests {
        let get = |k: &str| g.config.get(k).cloned().unwrap_or_else(|| "-".to_owned());
        println!(
            "  {:<5} {:<8} {:>5} {:>8}  {:?}",
            g.vmid,
            if g.running { "running" } else { "stopped" },
            get("cores"),
            format!("{} MiB", get("memory")),
            g.description.as_deref().unwrap_or("")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_desired_state_differs_from_the_default_simulated_host() {
        let d = desired_state();
        let guests = d["guests"].as_array().unwrap();
        assert_eq!(guests.len(), 2);
        assert_eq!(guests[0]["run_state"], "running");
        assert_eq!(guests[1]["spec"]["memory_bytes"], MEMORY_BYTES);
        // The default simulated host describes guest 100 as "web server".
        assert_ne!(DESCRIPTION, "web server");
    }

    #[test]
    fn the_steps_run_in_order_and_end_with_the_stop() {
        let all = AgentStep::all();
        assert_eq!(all[0].1, AgentStep::Start);
        assert_eq!(all[4].1, AgentStep::Pending);
        // The scrape runs while the first daemon is still up, after everything it did.
        assert_eq!(all[5].1, AgentStep::Metrics);
        assert_eq!(all[6].1, AgentStep::Stop);
        assert_eq!(all[7].1, AgentStep::HubStart);
        assert_eq!(all[all.len() - 1].1, AgentStep::HubStop);
        // The hub's desired state is a start and a resize away from where the file left it.
        let hub = hub_desired_state();
        assert_eq!(hub.guests[0].run_state, Some(DesiredRunState::Running));
        assert_eq!(hub.guests[1].spec.as_ref().unwrap().cores, Some(2));
        assert!(all.iter().all(|(t, _)| !t.is_empty()));
    }
}
