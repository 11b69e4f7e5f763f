//! The restore-test step of `cargo xtask demo` (issue 16): a `felhom-agent` with
//! `restore_tests` enabled (its own state directory, scratch range 9100–9109) restores guest
//! 100's backup into a scratch guest without network, boots it, stops and destroys it — the
//! destroy benign at the gate only because the agent's journal proves it created the guest —
//! and the next host report carries the result.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::json;

use super::Demo;
use crate::agentproc::{agent_binary, daemon_config, write_json, Daemon, POLL_FLOOR_ENV};

/// The demo's scratch range: clear of guest 9000, which the pending-signature step tags.
const RANGE: &str = "9100-9109";
const WAIT: Duration = Duration::from_secs(30);
const STOP_WAIT: Duration = Duration::from_secs(25);

/// The step's title.
pub const TITLE: &str = "restore test: guest 100's latest backup restored into scratch guest \
                         9100 without network, booted, stopped, destroyed (benign by journal \
                         provenance); the result in the next host report";

/// Runs the step.
pub async fn run(demo: &Demo) -> Result<()> {
    let dir = demo.dir.join("restore-test");
    std::fs::create_dir_all(&dir).context("creating the restore-test state directory")?;
    std::fs::write(dir.join("hub-ca.pem"), demo.hub.ca_pem()).context("writing the hub CA")?;
    let mut doc = daemon_config(&demo.sim, &demo.hub.base_url(), &dir);
    doc["reconcile"] = json!({ "source": "file" });
    doc["restore_tests"] = json!({
        "enabled": true,
        "every_hours": 24,
        "storage": "local-lvm",
        "vmid_range": RANGE,
        "boot_timeout_seconds": 30,
        "max_concurrent": 1
    });
    let config = dir.join("agent.json");
    write_json(&config, &doc)?;
    println!("restore_tests = {}", doc["restore_tests"]);
    let backups: Vec<String> = demo
        .sim
        .state()
        .storage_content("local")
        .into_iter()
        .filter(|v| v.content == "backup")
        .map(|v| v.volid)
        .collect();
    println!("backups on the host: {backups:?}");

    let seen = demo.hub.report_count();
    let floor = (super::agent::DEMO_POLL_SECONDS * 1000).to_string();
    let bin = agent_binary(&demo.binaries)?;
    let mut daemon = Daemon::spawn(
        &bin,
        &config,
        &[(POLL_FLOOR_ENV, floor)],
        Some("  agent | "),
    )?;
    let outcome = watch(demo, &mut daemon, seen).await;
    println!("$ kill -TERM {}", daemon.pid());
    let status = daemon.terminate(STOP_WAIT).await?;
    outcome?;
    ensure!(status.success(), "felhom-agent exited with {status}");
    Ok(())
}

async fn watch(demo: &Demo, daemon: &mut Daemon, seen: usize) -> Result<()> {
    daemon
        .wait_for_line(0, &["restore tests: round done", "ok=1"], WAIT)
        .await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    let report = loop {
        let found = demo
            .hub
            .reports()
            .into_iter()
            .skip(seen)
            .find(|r| !r.report.restore_tests.is_empty());
        if let Some(r) = found {
            break r;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no host report with restore_tests within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let tests = report
        .raw
        .get("restore_tests")
        .context("the report has no restore_tests")?;
    println!(
        "host report restore_tests = {}",
        serde_json::to_string_pretty(tests)?
    );
    let t = &report.report.restore_tests[0];
    ensure!(
        t.ok && t.outcome == "ok" && t.vmid == 100,
        "the restore test did not pass: {t:?}"
    );
    let scratch = t.scratch_vmid.context("no scratch vmid")?;
    ensure!(
        (9100..=9109).contains(&scratch),
        "scratch vmid {scratch} outside {RANGE}"
    );
    let state = demo.sim.state();
    ensure!(
        state.guest(scratch).is_none(),
        "scratch guest {scratch} is still there"
    );
    let tasks: Vec<String> = state
        .tasks()
        .into_iter()
        .filter(|t| t.id == scratch.to_string())
        .map(|t| format!("{} {}", t.task_type, t.exitstatus.unwrap_or_default()))
        .collect();
    println!("pve tasks on {scratch}: {}", tasks.join(", "));
    let audit = report
        .report
        .audit_tail
        .iter()
        .find(|e| e.action == "destroy_guest" && e.vmid == Some(scratch))
        .context("no audit entry for the scratch guest's destroy")?;
    ensure!(
        audit.decision == "allowed" && audit.reason.as_deref() == Some("agent_created"),
        "the destroy was not benign by provenance: {audit:?}"
    );
    println!(
        "gate: destroy_guest of {scratch} {} ({}), class {}: no signature needed, the op \
         journal proves the agent created it",
        audit.decision,
        audit.reason.as_deref().unwrap_or_default(),
        audit.class
    );
    Ok(())
}
