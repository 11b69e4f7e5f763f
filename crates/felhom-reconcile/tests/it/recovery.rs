//! Startup recovery against the PVE simulator: a journal holding ops whose tasks finished OK,
//! failed, are unknown to the node, or are still running, and an op interrupted before its
//! request returned; each is closed from what PVE says.

use std::time::Duration;

use felhom_journal::OpState;
use felhom_proxmox::ProxmoxApi;
use felhom_pve_sim::{GuestSpec, SimConfig};
use felhom_reconcile::recovery::INTERRUPTED_BEFORE_REQUEST;
use felhom_reconcile::{recover, Resolution};

use crate::support::{host, journal, lifecycle_of, names, NOW};

#[tokio::test]
async fn every_in_flight_op_is_resumed_or_closed() {
    let host = host(SimConfig::default()).await;
    let state = host.sim.state();

    // Tasks as a crashed agent left them: one finished OK, one failed, one still running.
    let ok = host.api.start(101).await.expect("start 101");
    host.sim
        .faults()
        .fail_tasks("vzstop", "container 100 is held by an external lock");
    let failed = host.api.stop(100).await.expect("stop 100");
    host.sim.faults().clear_task_faults();
    assert!(state.wait_task(ok.as_str()).await.is_some());
    assert!(state.wait_task(failed.as_str()).await.is_some());
    host.sim
        .faults()
        .slow_tasks(Some("vzsnapshot"), Duration::from_millis(400));
    let running = host
        .api
        .snapshot(100, "before-upgrade", None)
        .await
        .expect("snapshot 100");
    assert!(state.task(running.as_str()).expect("task").running);
    // A UPID this node never issued (e.g. from before a reinstall).
    let unknown = format!(
        "UPID:{}:0000FFFF:00ABCDEF:65000000:vzstart:102:felhom@pve!agent:",
        host.sim.node()
    );

    let journal = journal();
    let (op_ok, op_failed, op_running, op_unknown, op_started) = {
        let mut j = journal.shared.lock().expect("journal");
        let mut op = |vmid, action, upid: Option<&str>| {
            let id = j
                .started(Some(vmid), action, None, NOW - 10)
                .expect("started");
            if let Some(upid) = upid {
                j.task_running(&id, upid, NOW - 9).expect("task_running");
            }
            id
        };
        (
            op(101, "start", Some(ok.as_str())),
            op(100, "stop", Some(failed.as_str())),
            op(100, "snapshot", Some(running.as_str())),
            op(102, "start", Some(&unknown)),
            op(103, "set_config", None),
        )
    };
    assert_eq!(journal.shared.lock().expect("journal").in_flight().len(), 5);
    let gets_before = state.total_requests();

    let summary = recover(&*host.api, &journal.shared, NOW)
        .await
        .expect("recovery");
    let by_op: Vec<_> = summary.ops.iter().map(|op| op.op_id.clone()).collect();
    assert_eq!(
        by_op,
        [op_ok, op_failed, op_running, op_unknown, op_started]
    );
    assert_eq!(
        summary.ops[0].resolution,
        Resolution::Succeeded {
            exitstatus: "OK".to_owned()
        }
    );
    assert!(
        matches!(&summary.ops[1].resolution, Resolution::Failed { error } if error.contains("held by an external lock")),
        "{:?}",
        summary.ops[1].resolution
    );
    assert_eq!(
        summary.ops[2].resolution,
        Resolution::Succeeded {
            exitstatus: "OK".to_owned()
        },
        "the running task was waited on"
    );
    assert!(
        matches!(&summary.ops[3].resolution, Resolution::Failed { error } if error.starts_with("task unknown after restart")),
        "{:?}",
        summary.ops[3].resolution
    );
    assert_eq!(
        summary.ops[4].resolution,
        Resolution::Failed {
            error: "interrupted before the request returned; the next reconcile pass re-checks"
                .to_owned()
        }
    );
    assert_eq!(
        (
            summary.succeeded(),
            summary.failed(),
            summary.left_in_flight()
        ),
        (2, 3, 0)
    );
    assert!(journal
        .shared
        .lock()
        .expect("journal")
        .in_flight()
        .is_empty());
    // recovery only reads: no request but GETs
    let after: Vec<_> = state
        .request_log()
        .into_iter()
        .skip(gets_before as usize)
        .collect();
    assert!(after.iter().all(|r| r.method == "GET"), "{after:?}");
    assert!(!state.task(running.as_str()).expect("task").running);

    let ops = journal.lifecycles();
    assert_eq!(
        names(lifecycle_of(&ops, 101, "start")),
        ["started", "task_running", "succeeded"]
    );
    assert_eq!(
        names(lifecycle_of(&ops, 100, "stop")),
        ["started", "task_running", "failed"]
    );
    assert_eq!(
        names(lifecycle_of(&ops, 100, "snapshot")),
        ["started", "task_running", "succeeded"]
    );
    let unknown_op = lifecycle_of(&ops, 102, "start");
    assert!(matches!(&unknown_op[2], OpState::Failed { error } if error.contains(&unknown)));
    assert_eq!(
        names(lifecycle_of(&ops, 103, "set_config")),
        ["started", "failed"]
    );
}

/// Ops the daemon journaled `started` whose request PVE did answer, killed before the UPID was
/// journaled: recovery finds each one's task in the node's task list, journals its UPID and
/// closes the op from the task — a start still running is waited on, a signed destroy is
/// closed from its own task — and sends nothing again. A start whose request never arrived has
/// no task and is closed as before, for the next pass to re-plan.
#[tokio::test]
async fn ops_interrupted_before_their_upid_are_closed_from_their_tasks() {
    let config = SimConfig::default()
        .epoch(NOW)
        .guest(GuestSpec::new(102, "old").rootfs("local-lvm:vm-102-disk-0,size=8G"));
    let host = host(config).await;
    let state = host.sim.state();
    host.sim
        .faults()
        .slow_tasks(Some("vzstart"), Duration::from_millis(400));

    let journal = journal();
    let (op_start, op_destroy, op_lost) = {
        let mut j = journal.shared.lock().expect("journal");
        (
            j.started(Some(101), "start", None, NOW).expect("started"),
            j.started(
                Some(102),
                "destroy_guest",
                Some("signed:nonce-1".to_owned()),
                NOW,
            )
            .expect("started"),
            j.started(Some(100), "start", None, NOW).expect("started"),
        )
    };
    // PVE took the first two requests; the kill came before their UPIDs were journaled.
    let start = host.api.start(101).await.expect("start 101");
    let destroy = host.api.destroy_guest(102).await.expect("destroy 102");
    assert!(state.wait_task(destroy.as_str()).await.is_some());
    assert!(state.task(start.as_str()).expect("task").running);
    let requests_before = state.request_log().len();

    let summary = recover(&*host.api, &journal.shared, NOW)
        .await
        .expect("recovery");
    let by_op: Vec<_> = summary.ops.iter().map(|op| op.op_id.clone()).collect();
    assert_eq!(by_op, [op_start, op_destroy, op_lost]);
    let ok = Resolution::Succeeded {
        exitstatus: "OK".to_owned(),
    };
    assert_eq!(
        summary.ops[0].resolution, ok,
        "the running start was waited on"
    );
    assert_eq!(
        summary.ops[1].resolution, ok,
        "closed from its task, not from the guest list"
    );
    assert_eq!(
        summary.ops[2].resolution,
        Resolution::Failed {
            error: INTERRUPTED_BEFORE_REQUEST.to_owned()
        }
    );
    assert!(!state.task(start.as_str()).expect("task").running);

    // Zero new start (or any other mutating) requests: recovery only read.
    let after: Vec<_> = state
        .request_log()
        .into_iter()
        .skip(requests_before)
        .collect();
    assert!(after.iter().all(|r| r.method == "GET"), "{after:?}");
    assert_eq!(
        state.requests_to("POST /nodes/{node}/lxc/{vmid}/status/start"),
        1
    );
    assert_eq!(state.requests_to("GET /nodes/{node}/tasks"), 3);

    let ops = journal.lifecycles();
    assert_eq!(
        names(lifecycle_of(&ops, 101, "start")),
        ["started", "task_running", "succeeded"]
    );
    assert_eq!(
        names(lifecycle_of(&ops, 102, "destroy_guest")),
        ["started", "task_running", "succeeded"]
    );
    assert_eq!(
        lifecycle_of(&ops, 101, "start")[1],
        OpState::TaskRunning {
            upid: start.to_string()
        }
    );
    assert_eq!(
        names(lifecycle_of(&ops, 100, "start")),
        ["started", "failed"]
    );
}
