//! Startup recovery against the PVE simulator: a journal holding ops whose tasks finished OK,
//! failed, are unknown to the node, or are still running, and an op interrupted before its
//! request returned; each is closed from what PVE says.

use std::time::Duration;

use felhom_journal::OpState;
use felhom_proxmox::ProxmoxApi;
use felhom_pve_sim::SimConfig;
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
