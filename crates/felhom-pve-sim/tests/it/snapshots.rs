//! Snapshots: create, list (with the "current" entry), rollback restoring config, delete,
//! and the config lock while a snapshot task runs.

use std::time::Duration;

use crate::client::{sim, Client};

#[tokio::test]
async fn snapshot_rollback_and_delete_round_trip() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let upid = c
        .post(
            "/nodes/pve/lxc/100/snapshot",
            &[("snapname", "before"), ("description", "pre-change")],
        )
        .await
        .upid();
    assert!(upid.contains(":vzsnapshot:100:"));
    assert_eq!(c.wait_task(&upid).await["exitstatus"], "OK");

    let list = c.get("/nodes/pve/lxc/100/snapshot").await.data();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let snap = list.iter().find(|s| s["name"] == "before").unwrap();
    assert_eq!(snap["description"], "pre-change\n");
    assert!(snap["snaptime"].as_u64().unwrap() > 0);
    let current = list.iter().find(|s| s["name"] == "current").unwrap();
    assert_eq!(current["description"], "You are here!");
    assert_eq!(current["parent"], "before");
    assert_eq!(current["running"], 1);

    // change things after the snapshot
    c.put(
        "/nodes/pve/lxc/100/config",
        &[("memory", "4096"), ("description", "changed")],
    )
    .await;
    let snapcfg = c
        .get("/nodes/pve/lxc/100/config?snapshot=before")
        .await
        .data();
    assert_eq!(snapcfg["memory"], 2048);
    assert_eq!(snapcfg["snaptime"], snap["snaptime"]);

    let upid = c
        .post("/nodes/pve/lxc/100/snapshot/before/rollback", &[])
        .await
        .upid();
    assert!(upid.contains(":vzrollback:100:"));
    assert_eq!(c.wait_task(&upid).await["exitstatus"], "OK");
    let cfg = c.get("/nodes/pve/lxc/100/config").await.data();
    assert_eq!(cfg["memory"], 2048, "config comes back");
    assert_eq!(cfg["description"], "changed\n", "the description is kept");
    assert_eq!(cfg["parent"], "before");
    let g = sim.state().guest(100).unwrap();
    assert!(!g.running, "a rollback stops a running CT");
    assert_eq!(g.lock, None);

    let upid = c.delete("/nodes/pve/lxc/100/snapshot/before").await.upid();
    assert!(upid.contains(":vzdelsnapshot:100:"));
    assert_eq!(c.wait_task(&upid).await["exitstatus"], "OK");
    let g = sim.state().guest(100).unwrap();
    assert!(g.snapshots.is_empty());
    assert!(!g.config.contains_key("parent"));

    // errors inside the workers
    let upid = c.delete("/nodes/pve/lxc/100/snapshot/before").await.upid();
    assert_eq!(
        c.wait_task(&upid).await["exitstatus"],
        "snapshot 'before' does not exist"
    );
    let upid = c
        .post(
            "/nodes/pve/lxc/100/snapshot/nope/rollback",
            &[("start", "1")],
        )
        .await
        .upid();
    assert_eq!(
        c.wait_task(&upid).await["exitstatus"],
        "snapshot 'nope' does not exist"
    );
    let r = c
        .post("/nodes/pve/lxc/100/snapshot", &[("snapname", "vzdump")])
        .await;
    assert_eq!(
        r.reason,
        "unable to use snapshot name 'vzdump' (reserved name)"
    );
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_task_holds_the_config_lock_and_rollback_can_start() {
    let sim = sim().await;
    let c = Client::new(&sim);
    sim.faults()
        .slow_tasks(Some("vzsnapshot"), Duration::from_secs(30));
    let upid = c
        .post("/nodes/pve/lxc/101/snapshot", &[("snapname", "s1")])
        .await
        .upid();
    let r = c.put("/nodes/pve/lxc/101/config", &[("cores", "2")]).await;
    assert_eq!(r.reason, "CT is locked (snapshot)");
    assert_eq!(
        c.get("/nodes/pve/lxc/101/config").await.data()["lock"],
        "snapshot"
    );
    // a second snapshot fails inside its worker
    let second = c
        .post("/nodes/pve/lxc/101/snapshot", &[("snapname", "s2")])
        .await
        .upid();
    assert_eq!(
        c.wait_task(&second).await["exitstatus"],
        "CT is locked (snapshot)"
    );
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(c.task_status(&upid).await.data()["status"], "running");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(c.task_status(&upid).await.data()["exitstatus"], "OK");
    assert_eq!(
        c.put("/nodes/pve/lxc/101/config", &[("cores", "2")])
            .await
            .status,
        200
    );
    sim.faults()
        .slow_tasks(Some("vzsnapshot"), Duration::from_millis(20));
    let upid = c
        .post("/nodes/pve/lxc/101/snapshot", &[("snapname", "s1")])
        .await
        .upid();
    assert_eq!(
        c.wait_task(&upid).await["exitstatus"],
        "snapshot name 's1' already used"
    );
    let upid = c
        .post("/nodes/pve/lxc/101/snapshot/s1/rollback", &[("start", "1")])
        .await
        .upid();
    c.wait_task(&upid).await;
    let g = sim.state().guest(101).unwrap();
    assert!(g.running);
    assert_eq!(g.config["cores"], "1");
}
