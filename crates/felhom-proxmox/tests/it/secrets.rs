//! The token secret never leaves the `Authorization` header: not in any error's `Display` or
//! `Debug`, not in the client's `Debug`, not in anything traced at TRACE level while the client
//! runs many operations and failures against the simulator.

use std::time::Duration;

use felhom_proxmox::{
    wait_task, ConfigUpdate, ProxmoxApi, ProxmoxError, RestoreRequest, VzdumpOutcome, VzdumpRequest,
};
use felhom_pve_sim::{HttpFault, SimConfig, DEFAULT_TOKEN_ID, DEFAULT_TOKEN_SECRET};

use crate::fixture::{
    client, client_for, client_with, fast_wait, sim_with, token_without, ClientOpts, LogCapture,
};

/// A second token's secret, and a wrong one: neither may show up either.
const LIMITED: &str = "limited@pve!agent";
const LIMITED_SECRET: &str = "7d1e5c3a-9b8f-4e2d-a6c4-0f1e2d3c4b5a";
const WRONG_SECRET: &str = "deadbeef-dead-4eef-8ead-beefdeadbeef";

/// Every secret of the run, and the distinctive part of each (a log could cut a value short).
fn secrets() -> Vec<&'static str> {
    vec![
        DEFAULT_TOKEN_SECRET,
        LIMITED_SECRET,
        WRONG_SECRET,
        "7d1e5c3a-9b8f",
        "deadbeef-dead",
    ]
}

fn record(texts: &mut Vec<String>, err: ProxmoxError) {
    texts.push(err.to_string());
    texts.push(format!("{err:?}"));
    texts.push(format!("{err:#?}"));
}

#[tokio::test]
async fn the_secret_never_reaches_errors_debug_output_or_logs() {
    let logs = LogCapture::start();
    let sim =
        sim_with(SimConfig::default().token(token_without(LIMITED, LIMITED_SECRET, "VM.Backup")))
            .await;
    let pve = client(&sim);
    let limited = client_for(&sim, LIMITED, LIMITED_SECRET);
    let wrong = client_for(&sim, DEFAULT_TOKEN_ID, WRONG_SECRET);
    let mut texts: Vec<String> = vec![
        format!("{pve:?}"),
        format!("{limited:?}"),
        format!("{wrong:?}"),
    ];
    let wait = fast_wait();

    // Successes: reads, a task waited on, a sync config write.
    pve.version().await.unwrap();
    pve.nodes().await.unwrap();
    pve.list_lxc().await.unwrap();
    pve.permissions().await.unwrap();
    let upid = pve.start(101).await.unwrap();
    texts.push(format!(
        "{:?}",
        wait_task(&pve, &upid, &wait).await.unwrap()
    ));
    pve.set_config(
        101,
        &ConfigUpdate {
            set: [("description".to_owned(), "secret-free".to_owned())].into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();

    // Failures of every kind.
    record(&mut texts, wrong.version().await.unwrap_err());
    record(&mut texts, wrong.start(100).await.unwrap_err());
    record(&mut texts, pve.guest_config(999).await.unwrap_err());
    record(&mut texts, pve.start(101).await.unwrap_err());
    let dump = VzdumpRequest {
        vmid: 100,
        storage: "local".into(),
        ..Default::default()
    };
    let VzdumpOutcome::Task(upid) = limited.vzdump(&dump).await.unwrap() else {
        panic!("a task")
    };
    record(
        &mut texts,
        wait_task(&limited, &upid, &wait).await.unwrap_err(),
    );
    let restore = RestoreRequest {
        vmid: 100,
        archive: "local:backup/vzdump-lxc-100-2025_01_02-03_04_05.tar.zst".into(),
        ..Default::default()
    };
    record(&mut texts, pve.restore_lxc(&restore).await.unwrap_err());
    sim.faults().fail_next(1, HttpFault::timeout_596());
    record(&mut texts, pve.version().await.unwrap_err());
    sim.faults().fail_next(1, HttpFault::internal("boom"));
    record(&mut texts, pve.list_lxc().await.unwrap_err());
    sim.faults().drop_next(1);
    record(&mut texts, pve.node_status().await.unwrap_err());
    sim.faults().pad_responses_to(Some(64 * 1024));
    let small = client_with(
        &sim,
        ClientOpts {
            max_body_bytes: Some(1024),
            ..Default::default()
        },
    );
    record(&mut texts, small.version().await.unwrap_err());
    sim.faults().pad_responses_to(None);
    sim.faults().set_latency(Duration::from_secs(5));
    let impatient = client_with(
        &sim,
        ClientOpts {
            timeout: Duration::from_millis(100),
            ..Default::default()
        },
    );
    record(&mut texts, impatient.version().await.unwrap_err());
    sim.faults().set_latency(Duration::ZERO);

    let log = logs.text();
    // The capture really saw the run: the client's requests, TRACE events of the HTTP stack,
    // rustls' handshakes (through `log`) and the simulator.
    assert!(log.contains("https request failed"), "{log}");
    assert!(log.contains("/api2/json/version"), "{log}");
    assert!(log.contains("TRACE hyper_util"), "{log}");
    assert!(log.contains("rustls::client"), "{log}");
    assert!(log.contains("felhom_pve_sim"), "{log}");
    assert!(texts.len() >= 30, "{}", texts.len());
    for secret in secrets() {
        assert!(!log.contains(secret), "a secret reached the logs:\n{log}");
        for t in &texts {
            assert!(
                !t.contains(secret),
                "a secret reached an error or Debug: {t}"
            );
        }
    }
    // The token id is not secret and is what an operator needs to see.
    assert!(
        texts.iter().any(|t| t.contains(DEFAULT_TOKEN_ID)),
        "{texts:?}"
    );
}
