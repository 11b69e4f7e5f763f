//! Failure paths of the real `PveClient` against the simulator: privileges missing at the POST
//! (403) and inside a task, task warnings, tasks not yet visible, digest conflicts, 401, 5xx,
//! 595/596, oversized bodies, dropped connections and latency past the client timeout — each
//! typed and classified (retryable? may PVE have acted?).

use std::time::{Duration, Instant};

use felhom_proxmox::{
    wait_task, ConfigUpdate, HttpError, ProxmoxApi, ProxmoxError, VzdumpOutcome, VzdumpRequest,
};
use felhom_pve_sim::{HttpFault, SimConfig, DEFAULT_TOKEN_SECRET};

use crate::fixture::{
    client, client_for, client_with, fast_wait, sim, sim_with, token_without, ClientOpts,
};

const LIMITED: &str = "limited@pve!agent";
const LIMITED_SECRET: &str = "11111111-2222-4333-8444-555555555555";

fn dump(vmid: u32) -> VzdumpRequest {
    VzdumpRequest {
        vmid,
        storage: "local".into(),
        ..Default::default()
    }
}

fn api_error(err: &ProxmoxError) -> &felhom_proxmox::ApiError {
    match err {
        ProxmoxError::Api(e) => e,
        other => panic!("expected an api error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_missing_privilege_is_a_403_at_the_post_naming_privilege_and_path() {
    let sim = sim_with(SimConfig::default().token(token_without(
        LIMITED,
        LIMITED_SECRET,
        "VM.PowerMgmt",
    )))
    .await;
    let pve = client_for(&sim, LIMITED, LIMITED_SECRET);
    // It may still read: the 403 is about the one privilege.
    assert_eq!(pve.list_lxc().await.unwrap().len(), 2);

    let err = pve.start(101).await.unwrap_err();
    let api = api_error(&err);
    assert_eq!(api.status, 403);
    assert!(api.is_permission_denied());
    assert_eq!(api.method, "POST");
    assert_eq!(api.path, "/nodes/pve/lxc/101/status/start");
    let p = api
        .permission
        .as_ref()
        .expect("the 403 names what is missing");
    assert_eq!(p.path, "/vms/101");
    assert_eq!(p.privileges, ["VM.PowerMgmt"]);
    assert_eq!(err.missing_privilege(), Some(p));
    assert!(!err.is_retryable());
    assert!(
        err.to_string()
            .contains("Permission check failed (/vms/101, VM.PowerMgmt)"),
        "{err}"
    );
    assert_eq!(sim.state().accepted_mutations(), 0, "nothing happened");
    assert!(sim.state().tasks().is_empty());
    assert!(!sim.state().guest(101).unwrap().running);
}

#[tokio::test]
async fn pre_5_2_errors_carry_the_privilege_in_the_reason_phrase_only() {
    let sim = sim_with(
        SimConfig::default()
            .pre_52_errors(true)
            .token(token_without(LIMITED, LIMITED_SECRET, "VM.PowerMgmt")),
    )
    .await;
    let err = client_for(&sim, LIMITED, LIMITED_SECRET)
        .stop(100)
        .await
        .unwrap_err();
    let p = err.missing_privilege().unwrap_or_else(|| panic!("{err:?}"));
    assert_eq!(
        (p.path.as_str(), p.privileges.as_slice()),
        ("/vms/100", &["VM.PowerMgmt".to_owned()][..])
    );
}

#[tokio::test]
async fn a_privilege_missing_inside_the_task_fails_the_wait_with_the_log_tail() {
    let sim =
        sim_with(SimConfig::default().token(token_without(LIMITED, LIMITED_SECRET, "VM.Backup")))
            .await;
    let pve = client_for(&sim, LIMITED, LIMITED_SECRET);
    // PVE checks VM.Backup in the worker: the POST is accepted.
    let VzdumpOutcome::Task(upid) = pve.vzdump(&dump(100)).await.unwrap() else {
        panic!("the POST returns a task")
    };
    let err = wait_task(&pve, &upid, &fast_wait()).await.unwrap_err();
    let ProxmoxError::Task(te) = &err else {
        panic!("expected a task error, got {err:?}")
    };
    assert_eq!(te.upid, upid);
    let p = te.privilege.as_ref().unwrap_or_else(|| panic!("{te:?}"));
    assert_eq!(p.privileges, ["VM.Backup"]);
    assert_eq!(p.path, "/vms/100");
    assert!(te.exitstatus.contains("VM.Backup"), "{}", te.exitstatus);
    let last = te.log_tail.last().expect("the log tail is carried");
    assert!(last.starts_with("TASK ERROR: "), "{:?}", te.log_tail);
    assert!(last.contains("VM.Backup"), "{last}");
    assert!(
        err.to_string()
            .contains("missing privilege VM.Backup on /vms/100"),
        "{err}"
    );
    // No backup was made: the volumes are the default host's.
    assert_eq!(
        sim.state()
            .storage_content("local")
            .iter()
            .filter(|v| v.content == "backup")
            .count(),
        1,
        "only the default host's backup"
    );
}

#[tokio::test]
async fn warnings_are_success_with_the_warnings_surfaced() {
    let sim = sim().await;
    sim.faults().warn_tasks(
        "vzstart",
        &["Systemd 255 detected. You may need to enable nesting."],
    );
    let pve = client(&sim);
    let upid = pve.start(101).await.unwrap();
    let out = wait_task(&pve, &upid, &fast_wait()).await.unwrap();
    assert_eq!(out.exitstatus, "WARNINGS: 1");
    assert_eq!(
        out.warnings,
        ["Systemd 255 detected. You may need to enable nesting."]
    );
    assert!(
        sim.state().guest(101).unwrap().running,
        "the start took effect"
    );
}

#[tokio::test]
async fn no_such_task_is_retried_by_wait_task() {
    let sim = sim().await;
    sim.faults().no_such_task_polls(3);
    let pve = client(&sim);
    let upid = pve.start(101).await.unwrap();

    // One raw read shows the 400 the waiter has to ride out.
    let err = pve.task_status(&upid).await.unwrap_err();
    assert!(
        matches!(&err, ProxmoxError::Api(e) if e.status == 400 && e.is_no_such_task()),
        "{err:?}"
    );

    let out = wait_task(&pve, &upid, &fast_wait()).await.unwrap();
    assert_eq!(out.exitstatus, "OK");
    assert!(
        out.polls >= 3,
        "two more hidden polls, then the answer: {}",
        out.polls
    );
    assert!(sim.state().task_polls(upid.as_str()) >= 4);
    assert!(sim.state().guest(101).unwrap().running);

    // More hidden polls than the waiter tolerates: the 400 comes through, typed.
    sim.faults().no_such_task_polls(50);
    let upid = pve.stop(101).await.unwrap();
    let err = wait_task(&pve, &upid, &fast_wait()).await.unwrap_err();
    assert!(
        matches!(&err, ProxmoxError::Api(e) if e.is_no_such_task()),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_digest_conflict_is_a_typed_500_and_changes_nothing() {
    let sim = sim().await;
    let pve = client(&sim);
    let seen = pve.guest_config(100).await.unwrap();
    // Another user edits the config in between.
    assert!(sim.state().set_config(100, "cores", "3"));
    let update = ConfigUpdate {
        set: [("cores".to_owned(), "4".to_owned())].into(),
        delete: vec![],
        digest: seen.digest.clone(),
    };
    let err = pve.set_config(100, &update).await.unwrap_err();
    let api = api_error(&err);
    assert_eq!(api.status, 500);
    assert_eq!(
        api.message,
        "detected modified configuration - file changed by other user? Try again."
    );
    assert_eq!(api.permission, None);
    assert!(!err.is_retryable());
    assert_eq!(sim.state().guest(100).unwrap().config["cores"], "3");
    assert_eq!(sim.state().accepted_mutations(), 0);

    // With the fresh digest it goes through.
    let fresh = pve.guest_config(100).await.unwrap();
    let update = ConfigUpdate {
        digest: fresh.digest,
        ..update
    };
    pve.set_config(100, &update).await.unwrap();
    assert_eq!(sim.state().guest(100).unwrap().config["cores"], "4");
}

#[tokio::test]
async fn not_found_and_lock_are_500s_with_pves_message() {
    let sim = sim().await;
    let pve = client(&sim);
    let err = pve.guest_config(999).await.unwrap_err();
    assert_eq!(
        api_error(&err).message,
        "Configuration file 'nodes/pve/lxc/999.conf' does not exist"
    );
    assert!(sim.state().set_lock(100, Some("backup")));
    let err = pve
        .set_config(
            100,
            &ConfigUpdate {
                set: [("cores".to_owned(), "4".to_owned())].into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(api_error(&err).status, 500);
    assert_eq!(api_error(&err).message, "CT is locked (backup)");
}

#[tokio::test]
async fn a_wrong_secret_is_unauthorized_and_not_retryable() {
    let sim = sim().await;
    let wrong = "99999999-9999-4999-8999-999999999999";
    let pve = client_for(&sim, felhom_pve_sim::DEFAULT_TOKEN_ID, wrong);
    let err = pve.version().await.unwrap_err();
    assert!(
        matches!(&err, ProxmoxError::Unauthorized { reason: Some(r), method, path }
            if r == "Authentication failed!" && method == "GET" && path == "/version"),
        "{err:?}"
    );
    assert_eq!(err.status(), Some(401));
    assert!(!err.is_retryable());
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(
            !text.contains(wrong) && !text.contains(DEFAULT_TOKEN_SECRET),
            "{text}"
        );
    }
    // An unknown token id is the same 401.
    let err = client_for(&sim, "nobody@pve!agent", DEFAULT_TOKEN_SECRET)
        .list_lxc()
        .await
        .unwrap_err();
    assert!(matches!(err, ProxmoxError::Unauthorized { .. }), "{err:?}");
}

#[tokio::test]
async fn server_errors_and_proxy_errors_are_classified() {
    let sim = sim().await;
    let pve = client(&sim);
    let faults = sim.faults();

    faults.fail_next(1, HttpFault::internal("got timeout"));
    let err = pve.version().await.unwrap_err();
    assert_eq!(api_error(&err).status, 500);
    assert_eq!(api_error(&err).message, "got timeout");
    assert!(!err.is_retryable(), "a 500 is pve's verdict, not a hiccup");

    faults.fail_next(1, HttpFault::status(503, "Service Unavailable"));
    let err = pve.nodes().await.unwrap_err();
    assert_eq!(err.status(), Some(503));

    faults.fail_next(1, HttpFault::timeout_596());
    let err = pve.list_lxc().await.unwrap_err();
    assert!(
        matches!(&err, ProxmoxError::Proxy { status: 596, reason: Some(r), .. } if r == "Connection timed out"),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(!err.never_sent(), "596 may follow a forwarded request");

    faults.fail_next(1, HttpFault::connect_595().only(Some("POST"), None));
    let err = pve.start(101).await.unwrap_err();
    assert!(
        matches!(err, ProxmoxError::Proxy { status: 595, .. }),
        "{err:?}"
    );
    assert!(err.is_retryable());

    // A 596 after the handler ran: pve acted, the client cannot tell — so it must not
    // claim the request was never sent.
    faults.fail_next(1, HttpFault::timeout_596().after_handler());
    let err = pve.start(101).await.unwrap_err();
    assert!(err.is_retryable() && !err.never_sent(), "{err:?}");
    let started = sim.state().tasks();
    assert_eq!(started.len(), 1, "the start did happen");

    // The waiter rides out a transient 596 while polling.
    let upid: felhom_proxmox::Upid = started[0].upid.parse().unwrap();
    faults.fail_next(
        1,
        HttpFault::timeout_596().only(Some("GET"), Some("/tasks/")),
    );
    let out = wait_task(&pve, &upid, &fast_wait()).await.unwrap();
    assert_eq!(out.exitstatus, "OK");
    assert!(sim.state().guest(101).unwrap().running);
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let sim = sim().await;
    let pve = client_with(
        &sim,
        ClientOpts {
            max_body_bytes: Some(16 * 1024),
            ..Default::default()
        },
    );
    assert!(pve.version().await.is_ok(), "small answers pass");
    sim.faults().pad_responses_to(Some(64 * 1024));
    let err = pve.version().await.unwrap_err();
    assert!(
        matches!(
            &err,
            ProxmoxError::Http(HttpError::BodyTooLarge { limit: 16384, method, .. }) if method == "GET"
        ),
        "{err:?}"
    );
    assert!(!err.never_sent() && !err.is_retryable());
    sim.faults().pad_responses_to(None);
    assert!(pve.version().await.is_ok(), "the client recovers");
}

#[tokio::test]
async fn a_dropped_connection_is_a_transport_error_that_may_have_acted() {
    let sim = sim().await;
    let pve = client(&sim);

    // Dropped before pve handled it: the client cannot know that, so it says "may have acted".
    sim.faults().drop_next(1);
    let err = pve.version().await.unwrap_err();
    let ProxmoxError::Http(http) = &err else {
        panic!("expected a transport error, got {err:?}")
    };
    assert!(
        matches!(http, HttpError::Io { .. } | HttpError::Protocol { .. }),
        "{http:?}"
    );
    assert!(err.is_retryable() && !err.never_sent(), "{err:?}");

    // Dropped after pve handled a start: it did act.
    sim.faults().drop_next_after_handling(1);
    let err = pve.start(101).await.unwrap_err();
    assert!(
        matches!(
            &err,
            ProxmoxError::Http(HttpError::Io { .. } | HttpError::Protocol { .. })
        ),
        "{err:?}"
    );
    assert!(err.is_retryable() && !err.never_sent(), "{err:?}");
    // The simulator counts only answered 2xx in `accepted_mutations`, so look at the task.
    let tasks = sim.state().tasks();
    assert_eq!(tasks.len(), 1, "the start was accepted");
    sim.state().wait_task(&tasks[0].upid).await.unwrap();
    assert!(sim.state().guest(101).unwrap().running, "and took effect");

    // The connection pool recovers.
    assert!(pve.version().await.is_ok());
}

#[tokio::test]
async fn latency_past_the_client_timeout_is_a_timeout_error() {
    let sim = sim().await;
    let timeout = Duration::from_millis(200);
    let pve = client_with(
        &sim,
        ClientOpts {
            timeout,
            ..Default::default()
        },
    );
    assert!(pve.version().await.is_ok(), "fast enough without latency");
    sim.faults().set_latency(Duration::from_secs(5));
    let t0 = Instant::now();
    let err = pve.stop(100).await.unwrap_err();
    let took = t0.elapsed();
    assert!(
        matches!(&err, ProxmoxError::Http(HttpError::Timeout { after, method, .. })
            if *after == timeout && method == "POST"),
        "{err:?}"
    );
    assert!(err.is_retryable() && !err.never_sent(), "{err:?}");
    assert!(
        took >= timeout && took < Duration::from_secs(2),
        "gave up after {took:?}"
    );
}
