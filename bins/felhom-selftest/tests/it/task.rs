//! `task --vmid N`: the reversible write test leaves the guest exactly as it was — after a
//! clean run, after a refused privilege and after a failing task — and says what went wrong.

use felhom_pve_sim::{GuestView, SimConfig};

use crate::support::{token_without, Host};

/// What must be the same before and after: run state, config, description, snapshots, lock.
fn fingerprint_of(g: &GuestView) -> (bool, String, Option<String>, Vec<String>, Option<String>) {
    (
        g.running,
        format!("{:?}", g.config),
        g.description.clone(),
        g.snapshots.iter().map(|s| s.name.clone()).collect(),
        g.lock.clone(),
    )
}

fn guest(host: &Host, vmid: u32) -> GuestView {
    host.sim.state().guest(vmid).expect("guest exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_on_a_running_guest_passes_and_leaves_it_as_it_was() {
    let host = Host::start().await;
    let before = guest(&host, 100);
    assert!(before.running && before.description.is_some() && before.snapshots.is_empty());

    let run = host.run(&["task", "--vmid", "100"]).await;
    run.expect_code(0)
        .expect_stdout("[ ok ] guest 100: web, running")
        .expect_stdout("[ ok ] snapshot felhom-selftest-")
        .expect_stdout("[ ok ] rollback felhom-selftest-")
        // The rollback stopped the running container; the test starts it again.
        .expect_stdout("[ ok ] start 100: running again after the rollback stopped it")
        .expect_stdout("[ ok ] delete snapshot felhom-selftest-")
        .expect_stdout("[ ok ] snapshots after: unchanged")
        .expect_stdout("[ ok ] description write: applied")
        .expect_stdout(
            "[ ok ] description verify: reads back as written (with PVE's trailing newline)",
        )
        .expect_stdout("[ ok ] description restore: applied: the original written back")
        .expect_stdout("[ ok ] description restored: reads back \"web server\"")
        .expect_stdout(" passed, 0 failed\n");
    assert!(!run.stdout.contains("cleanup:"), "{}", run.stdout);

    let after = guest(&host, 100);
    assert_eq!(fingerprint_of(&after), fingerprint_of(&before));
    assert_eq!(
        after.digest, before.digest,
        "the config file is byte-identical"
    );
    // Every task it started ended OK (snapshot, rollback, start, delete).
    let tasks = host.sim.state().tasks();
    let types: Vec<&str> = tasks.iter().map(|t| t.task_type.as_str()).collect();
    assert_eq!(
        types,
        ["vzsnapshot", "vzrollback", "vzstart", "vzdelsnapshot"]
    );
    assert!(tasks.iter().all(|t| t.exitstatus.as_deref() == Some("OK")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_without_description_gets_the_key_deleted_again() {
    let host = Host::start().await;
    let before = guest(&host, 101);
    assert!(!before.running && before.description.is_none());
    let run = host.run(&["task", "--vmid", "101", "--json"]).await;
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(doc["ok"], true, "{doc:#}");
    let details: Vec<String> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}: {}",
                c["name"].as_str().unwrap(),
                c["detail"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        details.iter().any(
            |d| d == "description restore: applied: the key deleted (there was no description)"
        ),
        "{details:#?}"
    );
    // A stopped guest stays stopped: nothing to start.
    assert!(
        !details.iter().any(|d| d.starts_with("start 101")),
        "{details:#?}"
    );
    let after = guest(&host, 101);
    assert_eq!(fingerprint_of(&after), fingerprint_of(&before));
    assert_eq!(after.digest, before.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_vm_snapshot_fails_naming_it_and_changes_nothing() {
    let host = Host::with(SimConfig::default().token(token_without(&["VM.Snapshot"]))).await;
    let before = guest(&host, 100);
    let run = host.run(&["task", "--vmid", "100"]).await;
    run.expect_code(1)
        .expect_stdout("Permission check failed (/vms/100, VM.Snapshot)");
    let failures = run.failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].starts_with("[FAIL] snapshot felhom-selftest-"),
        "{failures:?}"
    );
    // Refused before PVE acted: no rollback, nothing to clean up; the description test still
    // ran (the token may configure) and restored what it wrote.
    assert!(!run.stdout.contains("rollback"), "{}", run.stdout);
    assert!(!run.stdout.contains("cleanup:"), "{}", run.stdout);
    run.expect_stdout("[ ok ] description restored: ");
    assert_eq!(fingerprint_of(&guest(&host, 100)), fingerprint_of(&before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_rollback_is_reported_and_cleaned_up() {
    let host = Host::start().await;
    let before = guest(&host, 100);
    host.sim
        .faults()
        .fail_tasks("vzrollback", "simulated rollback failure");
    let run = host.run(&["task", "--vmid", "100"]).await;
    run.expect_code(1)
        .expect_stdout("[FAIL] rollback felhom-selftest-")
        .expect_stdout("task vzrollback failed: simulated rollback failure")
        // PVE stopped the container before the task failed: the cleanup starts it again...
        .expect_stdout("[ ok ] cleanup: start 100: running again after the rollback stopped it")
        // ...and deletes the snapshot.
        .expect_stdout("[ ok ] cleanup: delete snapshot felhom-selftest-")
        .expect_stdout("[ ok ] snapshots after: unchanged")
        .expect_stdout("[ ok ] description restored: ");
    assert_eq!(run.failures().len(), 1, "{:?}", run.failures());
    assert_eq!(fingerprint_of(&guest(&host, 100)), fingerprint_of(&before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_description_write_leaves_nothing_to_restore() {
    let host = Host::with(SimConfig::default().token(token_without(&["VM.Config.Options"]))).await;
    let before = guest(&host, 101);
    let run = host.run(&["task", "--vmid", "101"]).await;
    run.expect_code(1)
        .expect_stdout("[ ok ] snapshots after: unchanged")
        .expect_stdout(
            "[FAIL] description write: Permission check failed (/vms/101, VM.Config.Options)",
        );
    assert!(
        !run.stdout.contains("description restore"),
        "{}",
        run.stdout
    );
    assert_eq!(fingerprint_of(&guest(&host, 101)), fingerprint_of(&before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_guest_fails_before_changing_anything() {
    let host = Host::start().await;
    let run = host.run(&["task", "--vmid", "4242"]).await;
    run.expect_code(1).expect_stdout("[FAIL] guest 4242: ");
    assert_eq!(run.failures().len(), 1, "{}", run.stdout);
    assert_eq!(host.sim.state().accepted_mutations(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_lets_the_task_finish_then_undoes_it() {
    let host = Host::start().await;
    let before = guest(&host, 100);
    // A snapshot that takes a while, so the interrupt lands while it runs.
    host.sim
        .faults()
        .slow_tasks(Some("vzsnapshot"), std::time::Duration::from_secs(2));
    let run = host
        .run_interrupted(&["task", "--vmid", "100"], |sim| {
            sim.state()
                .tasks()
                .iter()
                .any(|t| t.task_type == "vzsnapshot")
        })
        .await;
    run.expect_code(1)
        .expect_stderr("interrupted; undoing the test's changes")
        // The running snapshot task was waited for, not abandoned...
        .expect_stdout("[ ok ] snapshot felhom-selftest-")
        // ...then undone instead of carrying on with the rollback.
        .expect_stdout("[ ok ] cleanup: delete snapshot felhom-selftest-")
        .expect_stdout("[ ok ] snapshots after: unchanged")
        .expect_stdout("[FAIL] description: skipped: interrupted");
    assert!(!run.stdout.contains("rollback"), "{}", run.stdout);
    assert_eq!(fingerprint_of(&guest(&host, 100)), fingerprint_of(&before));
}

/// A snapshot task that never ends: each wait is bounded by `--task-timeout`, the rest of the
/// test still runs, and the commands to finish by hand are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_never_ends_is_bounded_and_the_manual_cleanup_is_printed() {
    let host = Host::start().await;
    host.sim.faults().slow_tasks(
        Some("vzsnapshot"),
        std::time::Duration::from_secs(1_000_000),
    );
    let started = std::time::Instant::now();
    let run = host
        .run(&["task", "--vmid", "100", "--task-timeout", "1s"])
        .await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    run.expect_code(1)
        .expect_stdout("[FAIL] snapshot felhom-selftest-")
        .expect_stdout("[FAIL] cleanup: by hand: run on the node: pvesh delete /nodes/")
        .expect_stdout("pct delsnapshot 100 felhom-selftest-")
        .expect_stderr("to finish the cleanup by hand");
    let task = host
        .sim
        .state()
        .tasks()
        .into_iter()
        .find(|t| t.task_type == "vzsnapshot")
        .expect("the snapshot task");
    // The exact command names the exact task.
    run.expect_stdout(&format!(
        "pvesh delete /nodes/{}/tasks/{}",
        host.sim.node(),
        task.upid
    ));
    // No rollback was attempted on a snapshot that may not exist.
    assert!(!run.stdout.contains("rollback"), "{}", run.stdout);
}

/// The first Ctrl-C during a task that never ends: the wait is bounded, the cleanup runs and
/// the run ends — no second Ctrl-C needed — saying what is left to do by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_interrupt_cleans_up_even_when_the_task_never_ends() {
    let host = Host::start().await;
    host.sim.faults().slow_tasks(
        Some("vzsnapshot"),
        std::time::Duration::from_secs(1_000_000),
    );
    let before = guest(&host, 100);
    let run = host
        .run_interrupted(&["task", "--vmid", "100", "--task-timeout", "2s"], |sim| {
            sim.state()
                .tasks()
                .iter()
                .any(|t| t.task_type == "vzsnapshot")
        })
        .await;
    run.expect_code(1)
        .expect_stderr("interrupted; undoing the test's changes")
        .expect_stderr("to finish the cleanup by hand")
        .expect_stderr("pvesh delete /nodes/")
        .expect_stdout("[FAIL] description: skipped: interrupted");
    assert!(!run.stderr.contains("aborted"), "{}", run.stderr);
    // Nothing the test could undo was left changed.
    let after = guest(&host, 100);
    assert_eq!(after.description, before.description);
    assert_eq!(after.running, before.running);
}
