//! Fault injection: dropped connections, injected statuses (before and after the handler),
//! latency and slow tasks on a paused clock, the "no such task" window, oversized bodies.

use std::time::Duration;

use crate::client::{sim, Client};

#[tokio::test]
async fn dropped_connections_get_no_answer_and_the_next_request_works() {
    let sim = sim().await;
    let c = Client::new(&sim);
    sim.faults().drop_next(1);
    let err = c.try_send("GET", "/version", None, &[]).await;
    assert!(
        err.is_err(),
        "expected a transport error, got {:?}",
        err.map(|r| r.status)
    );
    assert_eq!(c.get("/version").await.status, 200);
    let log = sim.state().request_log();
    assert_eq!(log[0].status, 0);
    assert_eq!(log[1].status, 200);

    // dropped after handling: the task exists although the client saw nothing
    sim.faults().drop_next_after_handling(1);
    assert!(c
        .try_send("POST", "/nodes/pve/lxc/101/status/start", None, &[])
        .await
        .is_err());
    assert_eq!(sim.state().tasks().len(), 1);
}

#[tokio::test]
async fn injected_596_before_the_handler_changes_nothing() {
    let sim = sim().await;
    let c = Client::new(&sim);
    sim.faults().fail_next(
        1,
        felhom_pve_sim::HttpFault::timeout_596().only(Some("POST"), None),
    );
    // a GET does not match the filter
    assert_eq!(c.get("/version").await.status, 200);
    let r = c.post("/nodes/pve/lxc/101/status/start", &[]).await;
    assert_eq!(r.status, 596);
    assert_eq!(r.reason, "Connection timed out");
    assert!(r.body.is_empty());
    assert!(sim.state().tasks().is_empty(), "no mutation happened");
    assert_eq!(sim.state().accepted_mutations(), 0);
    // the fault was used up
    let upid = c.post("/nodes/pve/lxc/101/status/start", &[]).await.upid();
    assert!(!upid.is_empty());
}

#[tokio::test]
async fn injected_errors_after_the_handler_hide_an_applied_change() {
    let sim = sim().await;
    let c = Client::new(&sim);
    sim.faults().fail_next(
        1,
        felhom_pve_sim::HttpFault::internal("got timeout").after_handler(),
    );
    let r = c.put("/nodes/pve/lxc/100/config", &[("cores", "7")]).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.reason, "got timeout");
    assert_eq!(r.json()["message"], "got timeout\n");
    assert_eq!(sim.state().guest(100).unwrap().config["cores"], "7");
}

#[tokio::test(start_paused = true)]
async fn latency_and_slow_tasks_follow_the_paused_clock() {
    let sim = sim().await;
    let c = Client::new(&sim);
    sim.faults().set_latency(Duration::from_millis(250));
    let t0 = tokio::time::Instant::now();
    assert_eq!(c.get("/version").await.status, 200);
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
    sim.faults().set_latency(Duration::ZERO);

    sim.faults()
        .slow_tasks(Some("vzstart"), Duration::from_secs(30));
    let upid = c.post("/nodes/pve/lxc/101/status/start", &[]).await.upid();
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(c.task_status(&upid).await.data()["status"], "running");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let done = c.task_status(&upid).await.data();
    assert_eq!(done["status"], "stopped");
    assert_eq!(done["exitstatus"], "OK");
    let view = sim.state().wait_task(&upid).await.unwrap();
    assert!(!view.running);
}

#[tokio::test]
async fn new_tasks_can_be_invisible_for_the_first_polls() {
    let sim = sim().await;
    let c = Client::new(&sim);
    sim.faults().no_such_task_polls(2);
    let upid = c.post("/nodes/pve/lxc/101/status/start", &[]).await.upid();
    for _ in 0..2 {
        let r = c.task_status(&upid).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["errors"]["upid"], "no such task");
    }
    let r = c.task_status(&upid).await;
    assert_eq!(r.status, 200);
    assert_eq!(sim.state().task_polls(&upid), 3);
}

#[tokio::test]
async fn padded_answers_exceed_a_size_limit_and_stay_valid_json() {
    let sim = sim().await;
    let c = Client::new(&sim);
    sim.faults().pad_responses_to(Some(1 << 20));
    let r = c.get("/version").await;
    assert!(r.body.len() > 1 << 20);
    assert_eq!(r.json()["data"]["version"], "9.1.2");
    sim.faults().pad_responses_to(None);
    assert!(c.get("/version").await.body.len() < 200);
}

#[tokio::test]
async fn a_body_fault_answers_verbatim_once_and_only_where_it_matches() {
    let sim = sim().await;
    let c = Client::new(&sim);
    sim.faults().fail_next(
        1,
        felhom_pve_sim::HttpFault::body(200, r#"{"data":null}"#)
            .only(Some("GET"), Some("/nodes/pve/lxc")),
    );
    assert_eq!(c.get("/version").await.status, 200);
    let r = c.get("/nodes/pve/lxc").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), r#"{"data":null}"#);
    assert_eq!(
        r.headers.get("content-type").unwrap(),
        "application/json;charset=UTF-8"
    );
    assert_eq!(
        c.get("/nodes/pve/lxc")
            .await
            .data()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(sim.state().requests_to("GET /nodes/{node}/lxc"), 2);
    assert_eq!(sim.state().requests_to("GET /version"), 1);
}

#[tokio::test]
async fn connections_and_handshakes_are_counted() {
    let sim = sim().await;
    let state = sim.state();
    assert_eq!(
        (state.connections_accepted(), state.tls_handshakes()),
        (0, 0)
    );
    let c = Client::new(&sim);
    for _ in 0..4 {
        assert_eq!(c.get("/version").await.status, 200);
    }
    // the raw client keeps its connection alive
    assert_eq!(
        (state.connections_accepted(), state.tls_handshakes()),
        (1, 1)
    );
    // a plain TCP connect without TLS is accepted but never completes a handshake
    let tcp = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    drop(tcp);
    let mut waited = 0;
    while state.connections_accepted() < 2 && waited < 100 {
        tokio::task::yield_now().await;
        waited += 1;
    }
    assert_eq!(state.connections_accepted(), 2);
    assert_eq!(state.tls_handshakes(), 1);
}
