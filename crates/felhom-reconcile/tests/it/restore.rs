//! Restore tests (issue 16) end to end against the simulator over TLS: the real client, a
//! file-backed journal and nonce store, the real reversibility gate. Each outcome, the crash
//! recovery, the range, and the gate refusing a scratch-range guest the agent did not create.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use felhom_proxmox::PveClient;
use felhom_pve_sim::{GuestSpec, SimConfig, VolumeSpec};
use felhom_reconcile::restore_test::{
    Blocked, Outcome, RestoreSettings, RestoreTester, ResultStore, ScratchGate, PROVENANCE_PREFIX,
};
use felhom_reconcile::{GateReason, OpStep, StepProbe, CREATE_GUEST_ACTION};

use crate::signing::*;
use crate::support::{host, Host};

/// Real time: the simulator's uptime counts whole seconds, so a boot check waits about one.
/// (A paused clock would jump past the client's timeouts while a blocking journal write or a
/// connect's address lookup runs.)
fn settings(range: &str) -> RestoreSettings {
    RestoreSettings {
        storage: "local-lvm".into(),
        range: range.parse().unwrap(),
        boot_timeout: Duration::from_secs(20),
        max_concurrent: 1,
        every: Duration::from_secs(24 * 3600),
        boot_poll: Duration::from_millis(250),
        wait: fast_wait(),
    }
}

struct Rig {
    host: Host,
    files: Files,
    agent: Agent,
}

impl Rig {
    async fn new(config: SimConfig) -> Rig {
        let host = host(config).await;
        let files = Files::new();
        let agent = Agent::open(&host, &files, signers());
        Rig { host, files, agent }
    }

    fn store(&self) -> Arc<ResultStore> {
        Arc::new(ResultStore::open(&self.files.dir.path().join("restore-tests.log")).unwrap())
    }

    fn tester(&self, range: &str) -> RestoreTester<PveClient, Gate> {
        RestoreTester::new(
            Arc::clone(&self.host.api),
            Arc::clone(&self.agent.gate),
            self.agent.queue.clone(),
            Arc::clone(&self.agent.journal),
            self.store(),
            settings(range),
        )
    }

    fn tasks(&self) -> Vec<(String, String, bool)> {
        self.host
            .sim
            .state()
            .tasks()
            .into_iter()
            .map(|t| (t.task_type, t.id, t.exitstatus.as_deref() == Some("OK")))
            .collect()
    }

    fn task_types_of(&self, id: &str) -> Vec<String> {
        self.tasks()
            .into_iter()
            .filter(|(_, i, _)| i == id)
            .map(|(t, _, _)| t)
            .collect()
    }

    /// `(op id, action, vmid, state name)` of every op, in start order.
    fn ops(&self) -> Vec<(String, String, Option<u32>, &'static str)> {
        let j = self.agent.journal.lock().unwrap();
        j.entries()
            .map(|e| {
                (
                    e.op_id.as_str().to_owned(),
                    e.action.clone(),
                    e.vmid,
                    e.state.name(),
                )
            })
            .collect()
    }
}

fn never_blocked() -> Blocked {
    Arc::new(|| false)
}

#[tokio::test]
async fn a_backup_restores_boots_without_network_and_its_scratch_guest_is_destroyed() {
    let rig = Rig::new(SimConfig::default()).await;
    // Seen when the start is about to be journaled: the scratch guest exists, stopped, with
    // no network interface left.
    let seen = Arc::new(Mutex::new(None));
    let probe = {
        let (seen, state) = (Arc::clone(&seen), rig.host.sim.state());
        StepProbe::new(move |step, vmid, action| {
            if step == OpStep::BeforeStarted && action == "start" {
                let g = state.guest(vmid).expect("restored");
                let nets: Vec<String> = g
                    .config
                    .keys()
                    .filter(|k| k.starts_with("net"))
                    .cloned()
                    .collect();
                *seen.lock().unwrap() = Some((vmid, g.running, nets));
            }
        })
    };
    assert!(
        rig.host
            .sim
            .state()
            .guest(100)
            .unwrap()
            .config
            .contains_key("net0"),
        "the backed-up guest has a network"
    );
    let tester = rig.tester("9000-9009").with_probe(Some(probe));
    let round = tester.run_round(never_blocked()).await.unwrap();
    assert_eq!(round.results.len(), 1, "{round:?}");
    let r = &round.results[0];
    assert_eq!(r.outcome, Outcome::Ok, "{r:?}");
    assert_eq!((r.candidate.vmid, r.scratch), (100, Some(9000)));
    assert_eq!(*seen.lock().unwrap(), Some((9000, false, vec![])));
    assert!(rig.host.sim.state().guest(9000).is_none(), "destroyed");
    assert_eq!(
        rig.task_types_of("9000"),
        ["vzrestore", "vzstart", "vzstop", "vzdestroy"]
    );

    // The creation is journaled under its provenance, the destroy after it.
    let ops = rig.ops();
    let create = ops
        .iter()
        .find(|o| o.1 == CREATE_GUEST_ACTION)
        .expect("creation journaled");
    assert!(
        create
            .0
            .starts_with("agent scratch, restore test of 100 from local:backup/vzdump-lxc-100-"),
        "{create:?}"
    );
    assert_eq!((create.2, create.3), (Some(9000), "succeeded"));
    let actions: Vec<&str> = ops.iter().map(|o| o.1.as_str()).collect();
    assert_eq!(
        actions,
        [
            CREATE_GUEST_ACTION,
            "set_config",
            "start",
            "stop",
            "destroy_guest"
        ]
    );
    assert!(ops.iter().all(|o| o.3 == "succeeded"), "{ops:?}");

    // The gate allowed the destroy unsigned because the journal proves the creation.
    let destroy: Vec<_> = rig
        .agent
        .decisions()
        .into_iter()
        .filter(|(a, _, _)| a == "destroy_guest")
        .collect();
    assert_eq!(
        destroy,
        [(
            "destroy_guest".to_owned(),
            "allowed".to_owned(),
            Some("agent_created".to_owned())
        )]
    );

    // The report's entry.
    let tail = tester.store().tail();
    assert_eq!(tail.len(), 1);
    let e = &tail[0];
    assert_eq!(
        (e.vmid, e.ok, e.outcome.as_str(), e.scratch_vmid),
        (100, true, "ok", Some(9000))
    );
    assert_eq!(e.backup_ctime, felhom_pve_sim::DEFAULT_BACKUP_CTIME);
    assert!(e.error.is_none() && e.reason.is_none());
    assert!(e.detail.contains("destroyed"), "{}", e.detail);
    assert!(!tester.due(), "the next round is a day away");
}

#[tokio::test]
async fn each_failing_step_has_its_outcome_and_scratch_vmids_stay_in_the_range() {
    let rig = Rig::new(SimConfig::default()).await;
    let tester = rig.tester("9000-9001");
    let faults = rig.host.sim.faults();
    let run = || async { tester.run_round(never_blocked()).await.unwrap().results };

    // restore fails: PVE removes the half-made guest, nothing to clean up
    faults.fail_tasks_of("vzrestore", "9000", "unable to restore CT 9000 - disk full");
    let r = &run().await[0];
    assert_eq!(
        (r.outcome, r.reason, r.error.as_deref()),
        (
            Outcome::RestoreFailed,
            Some("restore"),
            Some("unable to restore CT 9000 - disk full")
        )
    );
    assert!(rig.host.sim.state().guest(9000).is_none());
    faults.clear_task_faults();

    // start fails: boot_failed, and the scratch guest is still destroyed
    faults.fail_tasks_of("vzstart", "9000", "startup for container '9000' failed");
    let r = &run().await[0];
    assert_eq!(
        (r.outcome, r.reason, r.error.as_deref()),
        (
            Outcome::BootFailed,
            Some("start"),
            Some("startup for container '9000' failed")
        )
    );
    assert!(rig.host.sim.state().guest(9000).is_none());
    faults.clear_task_faults();

    // destroy fails: cleanup_failed, the guest stays and its vmid with it
    faults.fail_tasks_of("vzdestroy", "9000", "lvremove 'pve/vm-9000-disk-0' error");
    let r = &run().await[0];
    assert_eq!(
        (r.outcome, r.reason, r.scratch),
        (Outcome::CleanupFailed, Some("destroy"), Some(9000))
    );
    assert!(
        r.error.as_deref().unwrap().contains("lvremove"),
        "{:?}",
        r.error
    );
    assert!(rig.host.sim.state().guest(9000).is_some(), "left behind");
    faults.clear_task_faults();

    // the next test takes the other vmid of the range
    let r = &run().await[0];
    assert_eq!((r.outcome, r.scratch), (Outcome::Ok, Some(9001)));
    // the range is full now (9000 is left): skipped, nothing created outside it
    rig.host
        .sim
        .state()
        .add_guest(GuestSpec::new(9001, "someone-else"));
    let r = &run().await[0];
    assert_eq!(
        (r.outcome, r.reason, r.scratch),
        (Outcome::Skipped, Some("no_free_vmid"), None)
    );
    for (_, id, _) in rig.tasks() {
        let vmid: u32 = id.parse().unwrap();
        assert!(
            (9000..=9001).contains(&vmid),
            "a task outside the range: {id}"
        );
    }
    // the guest the agent did not create was never touched
    assert_eq!(
        rig.task_types_of("9001").len(),
        4,
        "only the agent's own test"
    );
    assert!(rig.host.sim.state().guest(9001).is_some());
}

#[tokio::test]
async fn a_guest_that_never_comes_up_is_boot_failed_after_the_timeout() {
    let rig = Rig::new(SimConfig::default()).await;
    let mut tester = rig.tester("9000-9000");
    tester.settings_mut().boot_timeout = Duration::from_secs(2);
    // The start task succeeds but the container is gone again at once (it crashed on boot).
    rig.host.sim.faults().exit_after_start(9000);
    let r = &tester.run_round(never_blocked()).await.unwrap().results[0];
    assert_eq!(
        (r.outcome, r.reason),
        (Outcome::BootFailed, Some("boot_timeout"))
    );
    let error = r.error.as_deref().unwrap();
    assert!(
        error.contains("after 2 s") && error.contains("Stopped"),
        "{error}"
    );
    assert!(
        rig.host.sim.state().guest(9000).is_none(),
        "still cleaned up"
    ); // the start itself succeeded: the boot check caught it
    let starts: Vec<bool> = rig
        .tasks()
        .into_iter()
        .filter(|(t, _, _)| t == "vzstart")
        .map(|(_, _, ok)| ok)
        .collect();
    assert_eq!(starts, [true]);
}

#[tokio::test]
async fn low_space_is_skipped_before_anything_is_created_and_a_block_starts_nothing() {
    let rig = Rig::new(SimConfig::default()).await;
    let mut big = VolumeSpec::lxc_backup(101, felhom_pve_sim::DEFAULT_BACKUP_CTIME + 60);
    big.size = 200 * 1024 * 1024 * 1024; // twice that exceeds local-lvm's 350 GiB
    assert!(rig.host.sim.state().add_volume("local", big));
    let tester = rig.tester("9000-9009");

    let blocked: Blocked = Arc::new(|| true);
    let round = tester.run_round(blocked).await.unwrap();
    assert!(round.results.is_empty());
    assert_eq!(round.not_started, 2);
    assert!(rig.host.mutating_requests().is_empty());

    let round = tester.run_round(never_blocked()).await.unwrap();
    let mut by_guest: Vec<_> = round
        .results
        .iter()
        .map(|r| (r.candidate.vmid, r.outcome, r.reason))
        .collect();
    by_guest.sort_by_key(|r| r.0);
    assert_eq!(
        by_guest,
        [
            (100, Outcome::Ok, None),
            (101, Outcome::Skipped, Some("low_space"))
        ]
    );
    assert!(rig.task_types_of("9001").is_empty(), "nothing made for 101");
    let tail = tester.store().tail();
    assert_eq!(tail[1].reason.as_deref(), Some("low_space"));
    assert_eq!(tail[1].outcome, "skipped");
}

#[tokio::test]
async fn max_concurrent_one_runs_tests_one_after_the_other() {
    let mut config = SimConfig::default();
    config = config.storage(
        felhom_pve_sim::StorageSpec::dir("local", "/var/lib/vz")
            .content(&["backup", "iso", "rootdir", "vztmpl"])
            .volume(VolumeSpec::lxc_backup(
                100,
                felhom_pve_sim::DEFAULT_BACKUP_CTIME,
            ))
            .volume(VolumeSpec::lxc_backup(
                101,
                felhom_pve_sim::DEFAULT_BACKUP_CTIME,
            )),
    );
    let rig = Rig::new(config).await;
    let round = rig
        .tester("9000-9009")
        .run_round(never_blocked())
        .await
        .unwrap();
    assert_eq!(round.results.len(), 2);
    assert!(
        round.results.iter().all(|r| r.outcome == Outcome::Ok),
        "{round:?}"
    );
    let order: Vec<String> = rig
        .tasks()
        .into_iter()
        .map(|(t, id, _)| format!("{t}:{id}"))
        .collect();
    assert_eq!(
        order,
        [
            "vzrestore:9000",
            "vzstart:9000",
            "vzstop:9000",
            "vzdestroy:9000",
            "vzrestore:9000",
            "vzstart:9000",
            "vzstop:9000",
            "vzdestroy:9000"
        ]
    );
}

#[tokio::test]
async fn a_crash_mid_test_is_recovered_at_startup_and_reported_interrupted() {
    let rig = Rig::new(SimConfig::default()).await;
    let crashed = Arc::new(tokio::sync::Notify::new());
    let probe = {
        let crashed = Arc::clone(&crashed);
        StepProbe::new(move |step, _, action| {
            if step == OpStep::AfterTaskEnd && action == "start" {
                crashed.notify_one();
            }
        })
    };
    let tester = rig.tester("9000-9009").with_probe(Some(probe));
    // The agent "dies" once the scratch guest runs: the round is dropped mid-test.
    tokio::select! {
        r = tester.run_round(never_blocked()) => panic!("the round ended: {r:?}"),
        () = crashed.notified() => {}
    }
    drop(tester);
    // let the queue job that was running finish its record, as a crash between records would
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(rig.host.sim.state().guest(9000).is_some_and(|g| g.running));

    // Startup: a new tester over the same journal and results file.
    let tester = rig.tester("9000-9009");
    let recovered = tester.recover().await;
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    let r = &recovered[0];
    assert_eq!(
        (r.outcome, r.reason, r.scratch, r.candidate.vmid),
        (
            Outcome::Interrupted,
            Some("scratch_destroyed"),
            Some(9000),
            100
        )
    );
    assert!(
        rig.host.sim.state().guest(9000).is_none(),
        "destroyed at startup"
    );
    let tail = tester.store().tail();
    assert_eq!(
        (tail[0].outcome.as_str(), tail[0].reason.as_deref()),
        ("interrupted", Some("scratch_destroyed"))
    );
    // benign by provenance at the gate, never a signature
    assert!(rig.agent.decisions().contains(&(
        "destroy_guest".into(),
        "allowed".into(),
        Some("agent_created".into())
    )));
    // a second start finds nothing more to do
    assert!(tester.recover().await.is_empty());
}

#[tokio::test]
async fn a_guest_in_the_range_the_agent_did_not_create_is_never_destroyed_without_a_signature() {
    let rig =
        Rig::new(SimConfig::default().guest(GuestSpec::new(9005, "looks-like-scratch"))).await;
    // Even tagged and described like one, written through the API by anyone with config rights.
    rig.host
        .sim
        .state()
        .set_config(9005, "tags", "felhom-scratch");
    rig.host
        .sim
        .state()
        .set_config(9005, "description", "agent scratch, restore test of 100");
    let verdict = rig.agent.gate.decide_scratch_destroy(9005, UNIX_NOW);
    assert_eq!(verdict, Err(GateReason::PendingSignature));

    // Nor does startup recovery or a round touch it.
    let tester = rig.tester("9000-9009");
    assert!(tester.recover().await.is_empty());
    let round = tester.run_round(never_blocked()).await.unwrap();
    assert_eq!(round.results[0].scratch, Some(9000), "9005 is not free");
    assert!(rig.task_types_of("9005").is_empty());
    assert!(rig.host.sim.state().guest(9005).is_some());

    // A journal entry with the provenance prefix but outside the range changes nothing either.
    {
        let mut j = rig.agent.journal.lock().unwrap();
        let id = felhom_journal::OpId::new(format!("{PROVENANCE_PREFIX}100 from x into 101 at 1"))
            .unwrap();
        j.started_with_id(id.clone(), Some(101), CREATE_GUEST_ACTION, None, 1)
            .unwrap();
        j.succeeded(&id, 1).unwrap();
    }
    assert!(tester.recover().await.is_empty());
    assert!(rig.host.sim.state().guest(101).is_some());
    // the destroy of an agent-created scratch guest, by contrast, is benign
    let ops = rig.ops();
    assert!(ops
        .iter()
        .any(|o| o.1 == "destroy_guest" && o.2 == Some(9000)));
}

#[tokio::test]
async fn max_concurrent_two_uses_two_scratch_vmids_at_most() {
    let config = SimConfig::default()
        .guest(GuestSpec::new(102, "cache"))
        .storage(
            felhom_pve_sim::StorageSpec::dir("local", "/var/lib/vz")
                .content(&["backup", "iso", "rootdir", "vztmpl"])
                .volume(VolumeSpec::lxc_backup(
                    100,
                    felhom_pve_sim::DEFAULT_BACKUP_CTIME,
                ))
                .volume(VolumeSpec::lxc_backup(
                    101,
                    felhom_pve_sim::DEFAULT_BACKUP_CTIME,
                ))
                .volume(VolumeSpec::lxc_backup(
                    102,
                    felhom_pve_sim::DEFAULT_BACKUP_CTIME,
                )),
        );
    let rig = Rig::new(config).await;
    // Scratch guests alive at once, seen at each start.
    let most = Arc::new(Mutex::new(0usize));
    let probe = {
        let (most, state) = (Arc::clone(&most), rig.host.sim.state());
        StepProbe::new(move |step, _, action| {
            if step == OpStep::AfterTaskEnd && action == "start" {
                let alive = state.guests().iter().filter(|g| g.vmid >= 9000).count();
                let mut m = most.lock().unwrap();
                *m = (*m).max(alive);
            }
        })
    };
    let mut tester = rig.tester("9000-9009").with_probe(Some(probe));
    tester.settings_mut().max_concurrent = 2;
    let round = tester.run_round(never_blocked()).await.unwrap();
    assert_eq!(round.results.len(), 3);
    assert!(
        round.results.iter().all(|r| r.outcome == Outcome::Ok),
        "{round:?}"
    );
    let used: std::collections::BTreeSet<u32> =
        round.results.iter().filter_map(|r| r.scratch).collect();
    assert!(used.iter().all(|v| (9000..=9001).contains(v)), "{used:?}");
    assert_eq!(*most.lock().unwrap(), 2, "two at once, never more");
    assert!(rig.host.sim.state().guests().iter().all(|g| g.vmid < 9000));
}
