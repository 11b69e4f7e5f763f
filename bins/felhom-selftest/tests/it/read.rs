//! `read` (and the default command): passes on a well-configured host, names the privsep trap,
//! a wrong pin and a wrong secret, and prints parseable JSON.

use felhom_pve_sim::{Acl, SimConfig, TokenSpec, DEFAULT_PVE_VERSION, DEFAULT_TOKEN_ID};

use crate::support::{token_without, Host};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_passes_on_a_well_configured_host() {
    let host = Host::start().await;
    let run = host.run(&["read"]).await;
    run.expect_code(0)
        .expect_stdout(&format!("[ ok ] version: {DEFAULT_PVE_VERSION}\n"))
        .expect_stdout("[ ok ] node pve: online")
        .expect_stdout(&format!(
            "[ ok ] fingerprint: {} reported by /nodes is pinned",
            host.sim.fingerprint()
        ))
        .expect_stdout("[ ok ] node_status: pve-manager/")
        .expect_stdout("[ ok ] guests: 2 visible: 100 (web, running), 101 (db, stopped)")
        .expect_stdout("[ ok ] guest_visibility: VM.Audit on /vms")
        .expect_stdout("[ ok ] guest_config 100: web, running, 2 cores, 2048 MiB memory")
        .expect_stdout("[ ok ] guest_config 101: db, stopped")
        .expect_stdout("[ ok ] storage: 2 configured")
        .expect_stdout("[ ok ] storage_visibility: Datastore.Audit on /storage")
        .expect_stdout("[ ok ] node_storage: ")
        .expect_stdout("\n13 passed, 0 failed\n");
    assert!(run.failures().is_empty(), "{:?}", run.failures());
    // Read-only: nothing was changed.
    assert_eq!(host.sim.state().accepted_mutations(), 0);
    assert!(host.sim.state().tasks().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_is_the_default_and_json_parses() {
    let host = Host::start().await;
    let text = host.run(&[]).await;
    text.expect_code(0).expect_stdout("[ ok ] version: ");
    // --json after the subcommand (a global option), and with -vvv the trace logs on stderr
    // still never show the secret (checked by the harness).
    let run = host.run(&["read", "--json", "-vvv"]).await;
    run.expect_code(0);
    let doc = run.json();
    assert_eq!(doc["command"], "read");
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["summary"]["failed"], 0);
    let checks = doc["checks"].as_array().expect("checks array");
    assert_eq!(doc["summary"]["passed"], checks.len());
    for c in checks {
        assert!(c["name"].is_string() && c["detail"].is_string(), "{c}");
        assert_eq!(c["ok"], true, "{c}");
    }
    assert!(checks.iter().any(|c| c["name"] == "guest_config 101"));
    assert!(!run.stdout.contains("[ ok ]"), "json mode prints only json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_vm_audit_is_told_it_cannot_see_guests() {
    let host = Host::with(SimConfig::default().token(token_without(&["VM.Audit"]))).await;
    let run = host.run(&["read"]).await;
    run.expect_code(1)
        // PVE filters the list instead of refusing it...
        .expect_stdout("[ ok ] guests: 0 visible: none")
        // ...which the self-test calls out, naming the privilege.
        .expect_stdout("[FAIL] guest_visibility: the token lacks VM.Audit on /vms")
        .expect_stdout(&format!("--tokens '{DEFAULT_TOKEN_ID}'"))
        .expect_stdout(" passed, 1 failed\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_privsep_token_without_any_acl_fails_everything_it_cannot_see() {
    let bare = TokenSpec::new(DEFAULT_TOKEN_ID, felhom_pve_sim::DEFAULT_TOKEN_SECRET).user_acl(
        Acl::new("/", felhom_pve_sim::ADMINISTRATOR_PRIVILEGES, true),
    );
    let host = Host::with(SimConfig::default().token(bare)).await;
    let run = host.run(&["read"]).await;
    run.expect_code(1)
        .expect_stdout("[ ok ] guests: 0 visible")
        .expect_stdout("[FAIL] guest_visibility: the token lacks VM.Audit on /vms")
        .expect_stdout("[FAIL] storage_visibility: the token lacks Datastore.Audit on /storage")
        .expect_stdout("[FAIL] node_status: Permission check failed (/nodes/pve, Sys.Audit)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_fails_once_naming_the_fingerprint_seen() {
    let host = Host::start().await;
    let mut section = host.proxmox_section();
    section["tls"]["fingerprint_sha256"] = serde_json::json!([
        "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF"
    ]);
    host.write_config(section);
    let run = host.run(&["read"]).await;
    run.expect_code(1)
        .expect_stdout("[FAIL] version: ")
        .expect_stdout(&host.sim.fingerprint())
        .expect_stdout("proxmox.tls.fingerprint_sha256")
        .expect_stdout("\n0 passed, 1 failed\n");
    assert_eq!(run.failures().len(), 1, "one line, not one per call");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_an_authentication_failure_and_is_not_printed() {
    let host = Host::start().await;
    let wrong = "11111111-2222-4333-8444-555555555555";
    let mut section = host.proxmox_section();
    section["token_secret"] = serde_json::json!(wrong);
    host.write_config(section);
    for args in [&["read"][..], &["read", "--json", "-vvv"]] {
        let run = host.run(args).await;
        run.expect_code(1);
        assert!(
            run.stdout.contains("authentication failed (401)"),
            "{}",
            run.stdout
        );
        assert!(
            !run.stdout.contains(wrong) && !run.stderr.contains(wrong),
            "the secret was printed:\n{}\n{}",
            run.stdout,
            run.stderr
        );
    }
}
