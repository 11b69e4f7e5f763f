//! `hub`: one collect + report round trip against the PVE simulator and the hub simulator (CA
//! from `hub.ca_file`): the report arrives once with the Bearer key and is printed as sent, the
//! envelope is printed; a refused key, a failing or unreachable hub, an untrusted certificate
//! and an unreadable host exit 1 with the cause named; a config without `hub` exits 2.

use std::path::{Path, PathBuf};

use felhom_hub_proto::ControlEnvelope;
use felhom_pve_sim::{HubFault, HubSim, HubSimConfig, SimConfig, DEFAULT_HUB_API_KEY};
use serde_json::json;

use crate::support::{token_without, Host, Run};

const HOST_ID: &str = "pve-selftest";

/// A PVE simulator and a hub simulator, the config pointing at both.
struct Rig {
    host: Host,
    hub: HubSim,
    ca_file: PathBuf,
}

impl Rig {
    async fn start() -> Rig {
        Rig::with(SimConfig::default()).await
    }

    async fn with(sim: SimConfig) -> Rig {
        let host = Host::with(sim).await;
        let hub = HubSim::start(HubSimConfig::default())
            .await
            .expect("hub simulator starts");
        let ca_file = host.config.with_file_name("hub-ca.pem");
        std::fs::write(&ca_file, hub.ca_pem()).expect("write the hub ca");
        let rig = Rig { host, hub, ca_file };
        rig.write_hub(DEFAULT_HUB_API_KEY, &rig.ca_file);
        rig
    }

    /// Rewrites the config with a `hub` section using `api_key` and trusting `ca_file`.
    fn write_hub(&self, api_key: &str, ca_file: &Path) {
        self.host.write_doc(json!({
            "proxmox": self.host.proxmox_section(),
            "hub": {
                "url": self.hub.base_url(),
                "host_id": HOST_ID,
                "api_key": api_key,
                "ca_file": ca_file,
                "timeout_seconds": 10
            }
        }));
    }

    async fn run(&self, args: &[&str]) -> Run {
        self.host.run(args).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_report_reaches_the_hub_and_report_and_envelope_are_printed() {
    let rig = Rig::start().await;
    let url = rig.hub.report_url();
    // -vvv: the trace logs of both clients must not show a secret either (the harness checks).
    let run = rig.run(&["hub", "-vvv"]).await;
    run.expect_code(0)
        .expect_stdout(&format!(
            "[ ok ] hub_config: reports go to {url} as host {HOST_ID}, trusting ca {}",
            rig.ca_file.display()
        ))
        .expect_stdout("[ ok ] collect: node pve (PVE ")
        .expect_stdout("), 2 guests (1 running, 1 stopped), ")
        .expect_stdout(", cloudflared ")
        .expect_stdout(&format!("[ ok ] hub_report: {url} accepted the report\n"))
        .expect_stdout(
            "[ ok ] envelope: poll_interval_seconds 60, blocked absent (the agent keeps its last \
             state), desired_generation 0, has_signed_ops false\n",
        )
        .expect_stdout("\nreport:\n{\n")
        .expect_stdout(&format!("\"host_id\": \"{HOST_ID}\""))
        .expect_stdout("\nenvelope:\n{\n")
        .expect_stdout("  \"poll_interval_seconds\": 60\n}\n")
        .expect_stdout("\n4 passed, 0 failed\n");
    assert!(run.failures().is_empty(), "{:?}", run.failures());

    let reports = rig.hub.reports();
    assert_eq!(reports.len(), 1, "exactly one report");
    let got = &reports[0];
    assert_eq!(
        got.authorization(),
        Some(format!("Bearer {DEFAULT_HUB_API_KEY}").as_str())
    );
    assert_eq!(got.report.host_id, HOST_ID);
    assert_eq!(got.report.host.node, "pve");
    let vmids: Vec<u32> = got.report.guests.iter().map(|g| g.vmid).collect();
    assert_eq!(vmids, [100, 101]);
    assert_eq!(rig.hub.requests().len(), 1);
    // Collecting is read-only.
    assert_eq!(rig.host.sim.state().accepted_mutations(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_holds_the_report_as_sent_and_the_envelope_as_answered() {
    let rig = Rig::start().await;
    let envelope = ControlEnvelope {
        poll_interval_seconds: Some(120),
        blocked: Some(true),
        desired_generation: 3,
        has_signed_ops: true,
    };
    rig.hub.set_envelope(envelope.clone());
    let run = rig.run(&["--json", "hub"]).await;
    run.expect_code(0);
    assert!(!run.stdout.contains("[ ok ]"), "json mode prints only json");
    let doc = run.json();
    assert_eq!(doc["command"], "hub");
    assert_eq!(doc["ok"], true);
    let names: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hub_config", "collect", "hub_report", "envelope"]);
    assert!(
        doc["checks"][3]["detail"].as_str().unwrap().contains(
            "blocked true, desired_generation 3, has_signed_ops true: the hub has blocked"
        ),
        "{}",
        doc["checks"][3]
    );
    // The printed report is byte for byte what the hub received.
    let reports = rig.hub.reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(doc["report"], reports[0].raw);
    assert_eq!(doc["envelope"], serde_json::to_value(&envelope).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_api_key_exits_1_naming_hub_api_key_and_never_shows_the_key() {
    let rig = Rig::start().await;
    let wrong = "wrong-hub-key-do-not-print-4f1c9e";
    rig.write_hub(wrong, &rig.ca_file);
    for args in [&["hub", "-vvv"][..], &["hub", "--json"]] {
        let run = rig.run(args).await;
        run.expect_code(1);
        for text in [&run.stdout, &run.stderr] {
            assert!(!text.contains(wrong), "the wrong key was printed:\n{text}");
        }
        if args.contains(&"--json") {
            let doc = run.json();
            assert_eq!(doc["ok"], false);
            assert!(
                doc["report"].is_object(),
                "the collected report is still shown"
            );
            assert!(doc.get("envelope").is_none(), "{doc}");
        } else {
            run.expect_stdout(&format!(
                "[FAIL] hub_report: {} refused the api key (401): hub.api_key is most likely \
                 wrong",
                rig.hub.report_url()
            ))
            .expect_stdout("\n2 passed, 1 failed\n");
        }
    }
    assert_eq!(rig.hub.report_count(), 0);
    let statuses: Vec<u16> = rig.hub.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [401, 401]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_unreachable_hub_exits_1() {
    let rig = Rig::start().await;
    let url = rig.hub.report_url();

    rig.hub.faults().fail_next(1, HubFault::Status(503));
    rig.run(&["hub"])
        .await
        .expect_code(1)
        .expect_stdout(&format!(
            "[FAIL] hub_report: {url} answered 503 (the hub is unwell"
        ));

    rig.hub.faults().drop_next(1);
    let dropped = rig.run(&["hub"]).await;
    dropped.expect_code(1).expect_stdout("[FAIL] hub_report: ");
    assert_eq!(dropped.failures().len(), 1, "{}", dropped.stdout);

    // 2xx, but no envelope: the POST went through, the envelope check fails.
    rig.hub
        .faults()
        .fail_next(1, HubFault::Body(200, "<html>proxy</html>".into()));
    rig.run(&["hub"])
        .await
        .expect_code(1)
        .expect_stdout(&format!("[ ok ] hub_report: {url} answered 2xx\n"))
        .expect_stdout(&format!(
            "[FAIL] envelope: hub report: {url} answered with an invalid envelope"
        ));
    assert_eq!(rig.hub.report_count(), 0, "every request met a fault");

    let Rig {
        host,
        hub,
        ca_file: _ca_file,
    } = rig;
    hub.shutdown().await;
    host.run(&["hub"])
        .await
        .expect_code(1)
        .expect_stdout("[FAIL] hub_report: ")
        .expect_stdout("(is hub.url right and the hub reachable from this host?)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    let rig = Rig::start().await;
    let other = HubSim::start(HubSimConfig::default()).await.unwrap();
    let other_ca = rig.host.config.with_file_name("other-ca.pem");
    std::fs::write(&other_ca, other.ca_pem()).unwrap();
    rig.write_hub(DEFAULT_HUB_API_KEY, &other_ca);
    rig.run(&["hub"])
        .await
        .expect_code(1)
        .expect_stdout("presented a certificate not issued by a trusted ca (hub.ca_file");
    assert!(rig.hub.requests().is_empty(), "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_host_sends_nothing() {
    let rig = Rig::with(SimConfig::default().token(token_without(&["Sys.Audit"]))).await;
    rig.run(&["hub"])
        .await
        .expect_code(1)
        .expect_stdout("[FAIL] collect: node status of pve unreadable: ")
        .expect_stdout("Sys.Audit")
        .expect_stdout("\n1 passed, 1 failed\n");
    assert!(rig.hub.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_without_hub_or_with_a_missing_ca_exits_2() {
    let rig = Rig::start().await;
    // The proxmox-only config the other self-tests use.
    rig.host.write_config(rig.host.proxmox_section());
    rig.run(&["hub"])
        .await
        .expect_code(2)
        .expect_stderr("hub: missing section (required by the hub self-test)");
    let doc = rig.run(&["hub", "--json"]).await.expect_code(2).json();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["problems"][0]["key"], "hub");
    // A CA file that is not there.
    let missing = rig.host.config.with_file_name("nope.pem");
    rig.write_hub(DEFAULT_HUB_API_KEY, &missing);
    let run = rig.run(&["hub"]).await;
    run.expect_code(2).expect_stderr("nope.pem");
    assert_eq!(rig.host.sim.state().total_requests(), 0);
    assert!(rig.hub.requests().is_empty());
}
