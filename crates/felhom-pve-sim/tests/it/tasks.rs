//! Task lifecycle: UPIDs, status while running and after, the log, start/stop semantics,
//! injected task outcomes.

use felhom_pve_sim::{Acl, SimConfig, TokenSpec};
use serde_json::json;

use crate::client::{encode, sim, sim_with, Client};

fn upid_fields(upid: &str) -> Vec<String> {
    upid.split(':').map(str::to_string).collect()
}

// paused clock: the task cannot finish between the POST and the first look at it
#[tokio::test(start_paused = true)]
async fn start_runs_a_task_with_a_real_upid_status_and_log() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let upid = c.post("/nodes/pve/lxc/101/status/start", &[]).await.upid();
    let f = upid_fields(&upid);
    assert_eq!(f.len(), 9, "{upid}");
    assert_eq!(f[0], "UPID");
    assert_eq!(f[1], "pve");
    assert!(
        f[2].len() == 8 && f[3].len() >= 8 && f[4].len() == 8,
        "{upid}"
    );
    assert!(f[2..5].iter().all(|h| h
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase())));
    assert_eq!(&f[5..8], ["vzstart", "101", "felhom@pve!agent"]);
    assert_eq!(f[8], "");

    // while running: no exitstatus, the token split into user and tokenid
    let running = c.task_status(&upid).await.data();
    assert_eq!(running["status"], "running");
    assert!(running.get("exitstatus").is_none());
    assert_eq!(running["user"], "felhom@pve");
    assert_eq!(running["tokenid"], "agent");
    assert_eq!(running["id"], "101");
    assert_eq!(running["type"], "vzstart");
    assert_eq!(running["pid"], u64::from_str_radix(&f[2], 16).unwrap());
    assert_eq!(running["pstart"], u64::from_str_radix(&f[3], 16).unwrap());
    assert_eq!(
        running["starttime"],
        u64::from_str_radix(&f[4], 16).unwrap()
    );
    assert!(
        !sim.state().guest(101).unwrap().running,
        "effect applies at completion"
    );

    let done = c.wait_task(&upid).await;
    assert_eq!(done["exitstatus"], "OK");
    assert_eq!(
        c.task_log(&upid).await.last().map(String::as_str),
        Some("TASK OK")
    );
    assert!(sim.state().guest(101).unwrap().running);

    // the raw (unencoded) UPID works as well
    let raw = c.get(&format!("/nodes/pve/tasks/{upid}/status")).await;
    assert_eq!(raw.data()["status"], "stopped");

    let r = c.post("/nodes/pve/lxc/101/status/start", &[]).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.reason, "CT 101 already running");
    let stop = c.post("/nodes/pve/lxc/101/status/stop", &[]).await.upid();
    assert!(stop.contains(":vzstop:101:"));
    assert_eq!(c.wait_task(&stop).await["exitstatus"], "OK");
    assert!(!sim.state().guest(101).unwrap().running);
    let r = c.post("/nodes/pve/lxc/101/status/stop", &[]).await;
    assert_eq!(r.reason, "CT 101 not running");
    let r = c.post("/nodes/pve/lxc/101/status/shutdown", &[]).await;
    assert_eq!(r.reason, "CT 101 not running");
    // every status request for the UPID, encoded or raw, counts as a poll
    let polls = sim.state().task_polls(&upid);
    assert!(polls >= 3, "{polls}");
    assert_eq!(
        polls,
        sim.state()
            .requests("GET", &format!("/nodes/pve/tasks/{upid}/status"))
    );
}

#[tokio::test]
async fn unknown_and_malformed_upids_are_400() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let r = c
        .task_status("UPID:pve:00001234:00005678:65000000:vzstart:100:root@pam:")
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errors"], json!({"upid": "no such task"}));
    let r = c.task_status("not-a-upid").await;
    assert_eq!(
        r.json()["errors"],
        json!({"upid": "unable to parse worker upid"})
    );
    // the log endpoint does not check existence
    let r = c
        .get(&format!(
            "/nodes/pve/tasks/{}/log",
            encode("UPID:pve:00001234:00005678:65000000:vzstart:100:root@pam:")
        ))
        .await;
    assert_eq!(
        r.json(),
        json!({"data": [{"n": 1, "t": "unable to open file - No such file or directory"}], "total": 1})
    );
}

#[tokio::test]
async fn the_log_is_paged_with_one_based_line_numbers() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let upid = c
        .post(
            "/nodes/pve/vzdump",
            &[("vmid", "100"), ("storage", "local")],
        )
        .await
        .upid();
    c.wait_task(&upid).await;
    let full = c.task_log(&upid).await;
    assert!(full.len() > 5, "{full:?}");
    let r = c
        .get(&format!(
            "/nodes/pve/tasks/{}/log?start=2&limit=3",
            encode(&upid)
        ))
        .await;
    let body = r.json();
    assert_eq!(body["total"], full.len());
    let lines = body["data"].as_array().unwrap();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["n"], 3);
    assert_eq!(lines[0]["t"], full[2].as_str());
    // default limit is 50, start past the end gives nothing but the total
    let r = c
        .get(&format!(
            "/nodes/pve/tasks/{}/log?start=1000",
            encode(&upid)
        ))
        .await;
    assert_eq!(r.json()["data"], json!([]));
    assert_eq!(r.json()["total"], full.len());
}

#[tokio::test]
async fn injected_task_failures_and_warnings_end_the_task_like_pve() {
    let sim = sim().await;
    let c = Client::new(&sim);
    sim.faults()
        .fail_tasks("vzstart", "startup for container '101' failed\nsee log");
    let upid = c.post("/nodes/pve/lxc/101/status/start", &[]).await.upid();
    let done = c.wait_task(&upid).await;
    assert_eq!(
        done["exitstatus"],
        "startup for container '101' failed see log"
    );
    assert_eq!(
        c.task_log(&upid).await.last().map(String::as_str),
        Some("TASK ERROR: startup for container '101' failed see log")
    );
    assert!(
        !sim.state().guest(101).unwrap().running,
        "a failed task changes nothing"
    );

    sim.faults().warn_tasks(
        "vzstart",
        &[
            "Systemd 255 detected. You may need to enable nesting.",
            "second",
        ],
    );
    let upid = c.post("/nodes/pve/lxc/101/status/start", &[]).await.upid();
    assert_eq!(c.wait_task(&upid).await["exitstatus"], "WARNINGS: 2");
    let log = c.task_log(&upid).await;
    assert_eq!(
        log,
        [
            "WARN: Systemd 255 detected. You may need to enable nesting.",
            "WARN: second",
            "TASK WARNINGS: 2"
        ]
    );
    assert!(
        sim.state().guest(101).unwrap().running,
        "warnings still succeed"
    );

    sim.faults().clear_task_faults();
    let list = c.get("/nodes/pve/tasks?typefilter=vzstart").await;
    assert_eq!(list.json()["total"], 2);
    assert_eq!(list.data()[0]["status"], "WARNINGS: 2");
    let errors = c.get("/nodes/pve/tasks?errors=1").await;
    assert_eq!(errors.json()["total"], 1);
}

#[tokio::test]
async fn worker_checks_fail_the_task_not_the_post() {
    let sim = sim().await;
    let c = Client::new(&sim);
    sim.state().set_lock(101, Some("backup"));
    let upid = c.post("/nodes/pve/lxc/101/status/start", &[]).await.upid();
    assert_eq!(
        c.wait_task(&upid).await["exitstatus"],
        "CT is locked (backup)"
    );
    // a missing CT: the start worker cannot load its config
    let upid = c.post("/nodes/pve/lxc/999/status/start", &[]).await.upid();
    assert_eq!(
        c.wait_task(&upid).await["exitstatus"],
        "Configuration file 'nodes/pve/lxc/999.conf' does not exist"
    );
}

/// The task list as `Tasks.pm` filters it: a token without `Sys.Audit` on the node sees its own
/// tasks only; one with it sees every task; `source` picks finished, running or both, `RUNNING`
/// standing in for a running task's exit text.
#[tokio::test]
async fn the_task_list_shows_a_token_its_own_tasks_unless_it_may_audit_the_node() {
    let sim = sim_with(
        SimConfig::default().token(
            TokenSpec::new("ops@pve!cli", "s3cret")
                .acl(Acl::new("/vms", &["VM.PowerMgmt"], true))
                .user_acl(Acl::new("/vms", &["VM.PowerMgmt"], true)),
        ),
    )
    .await;
    let agent = Client::new(&sim);
    let ops = Client::token(&sim, "ops@pve!cli", "s3cret");
    sim.faults()
        .slow_tasks(Some("vzstart"), std::time::Duration::from_secs(600));
    let theirs = ops
        .post("/nodes/pve/lxc/101/status/start", &[])
        .await
        .upid();
    sim.faults().clear();
    let ours = agent
        .post("/nodes/pve/lxc/100/status/stop", &[])
        .await
        .upid();
    agent.wait_task(&ours).await;

    let upids = |r: &crate::client::Resp| -> Vec<String> {
        r.data()
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["upid"].as_str().unwrap().to_owned())
            .collect()
    };
    // The cli token has no Sys.Audit: only its own (running) start, and only when asked.
    let own = ops.get("/nodes/pve/tasks?source=all").await;
    assert_eq!(upids(&own), std::slice::from_ref(&theirs));
    assert_eq!(own.data()[0]["status"], "RUNNING");
    assert_eq!(own.data()[0]["user"], "ops@pve");
    assert_eq!(own.data()[0]["tokenid"], "cli");
    let archive = ops.get("/nodes/pve/tasks").await;
    assert_eq!(upids(&archive), Vec::<String>::new());
    // The agent may audit the node: both, filtered by guest and type as asked.
    let all = agent.get("/nodes/pve/tasks?source=all").await;
    assert_eq!(all.json()["total"], 2);
    let active = agent.get("/nodes/pve/tasks?source=active&vmid=101").await;
    assert_eq!(upids(&active), [theirs]);
    let stops = agent
        .get("/nodes/pve/tasks?typefilter=vzstop&vmid=100")
        .await;
    assert_eq!(upids(&stops), [ours]);
    assert_eq!(stops.data()[0]["status"], "OK");
    assert!(stops.data()[0]["endtime"].is_u64());
}
