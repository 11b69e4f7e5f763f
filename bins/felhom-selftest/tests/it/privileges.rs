//! `privileges`: every capability ready with the agent's token; a missing privilege named with
//! its path and exit 1.

use felhom_proxmox::privileges;
use felhom_pve_sim::{Acl, SimConfig, TokenSpec, AGENT_PRIVILEGES, DEFAULT_TOKEN_ID};

use crate::support::{token_without, Host};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_token_is_ready_for_everything() {
    let host = Host::start().await;
    let run = host.run(&["privileges"]).await;
    run.expect_code(0)
        .expect_stdout(
            "[ ok ] host report: ready (Sys.Audit on /nodes/pve; VM.Audit on /vms; \
             Datastore.Audit on /storage)",
        )
        .expect_stdout("[ ok ] start / stop: ready (VM.PowerMgmt on /vms)")
        .expect_stdout("[ ok ] snapshot / rollback: ready")
        .expect_stdout("[ ok ] backup: ready")
        .expect_stdout("[ ok ] restore / create: ready")
        .expect_stdout("[ ok ] restore test isolation: ready (VM.Config.Network on /vms)")
        .expect_stdout("[ ok ] destroy: ready (VM.Allocate on /vms)")
        .expect_stdout("\n8 passed, 0 failed\n");
    assert!(!run.stdout.contains("fix:"), "{}", run.stdout);
    let json = host.run(&["--json", "privileges"]).await;
    json.expect_code(0);
    let doc = json.json();
    assert_eq!(doc["command"], "privileges");
    assert_eq!(doc["checks"].as_array().unwrap().len(), 8);
    assert!(doc.get("fix").is_none(), "{doc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_privilege_is_named_with_its_path() {
    let host = Host::with(SimConfig::default().token(token_without(&["VM.Snapshot"]))).await;
    let run = host.run(&["privileges"]).await;
    run.expect_code(1)
        .expect_stdout("[FAIL] snapshot / rollback: missing VM.Snapshot on /vms\n")
        .expect_stdout("[ ok ] start / stop: ready")
        .expect_stdout("\n7 passed, 1 failed\n")
        // The exact commands that would fix it, for the configured token and its user.
        .expect_stdout(&format!(
            "fix:\n  # the role (if FelhomAgent exists already: {})\n  {}\n  \
             pveum acl modify /vms --users felhom@pve --roles FelhomAgent\n  \
             pveum acl modify /vms --tokens 'felhom@pve!agent' --roles FelhomAgent\n",
            privileges::role_modify_command(),
            privileges::role_add_command()
        ));
    let doc = host.run(&["privileges", "--json"]).await.json();
    assert_eq!(doc["ok"], false);
    let failed: Vec<&serde_json::Value> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["detail"], "missing VM.Snapshot on /vms");
    assert_eq!(doc["fix"].as_array().unwrap().len(), 4, "{doc}");
}

/// The simulator's default agent token holds exactly the role the README sets up, so the
/// tests exercise what an operator following the README gets.
#[test]
fn the_simulators_agent_token_has_exactly_the_role() {
    let mut sim: Vec<&str> = AGENT_PRIVILEGES.to_vec();
    sim.sort_unstable();
    assert_eq!(sim, privileges::role_privileges());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_on_single_guests_do_not_count_for_every_guest() {
    // Everything on `/` except power management, which only guest 100 gets.
    let others: Vec<&str> = AGENT_PRIVILEGES
        .iter()
        .copied()
        .filter(|p| *p != "VM.PowerMgmt")
        .collect();
    let mut on_100 = others.clone();
    on_100.push("VM.PowerMgmt");
    let token = TokenSpec::new(DEFAULT_TOKEN_ID, felhom_pve_sim::DEFAULT_TOKEN_SECRET)
        .acl(Acl::new("/", &others, true))
        .acl(Acl::new("/vms/100", &on_100, true))
        .user_acl(Acl::new(
            "/",
            felhom_pve_sim::ADMINISTRATOR_PRIVILEGES,
            true,
        ));
    let host = Host::with(SimConfig::default().token(token)).await;
    host.run(&["privileges"])
        .await
        .expect_code(1)
        .expect_stdout(
            "[FAIL] start / stop: missing VM.PowerMgmt on /vms (granted only on /vms/100)",
        );
}
