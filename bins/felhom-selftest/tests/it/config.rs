//! Usage and config errors exit 2: clap's usage errors, a missing file, and an invalid config
//! with every problem listed (also as JSON with `--json`).

use std::path::Path;

use crate::support::{selftest, Host};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_lists_every_problem_and_exits_2() {
    let host = Host::start().await;
    let mut section = host.proxmox_section();
    section["api_url"] = serde_json::json!("http://127.0.0.1:8006");
    section["token_id"] = serde_json::json!("no-realm-here");
    section["tls"] = serde_json::json!({});
    section["timeout_seconds"] = serde_json::json!(0);
    host.write_config(section);
    let run = host.run(&["read"]).await;
    run.expect_code(2)
        .expect_stderr("invalid config (4 problems)")
        .expect_stderr("proxmox.api_url: ")
        .expect_stderr("proxmox.token_id: ")
        .expect_stderr("proxmox.tls: exactly one of")
        .expect_stderr("proxmox.timeout_seconds: ");
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    // Nothing was asked of the API.
    assert_eq!(host.sim.state().total_requests(), 0);

    let json = host.run(&["privileges", "--json"]).await;
    json.expect_code(2);
    let doc = json.json();
    assert_eq!(doc["ok"], false);
    let keys: Vec<&str> = doc["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "proxmox.api_url",
            "proxmox.token_id",
            "proxmox.tls",
            "proxmox.timeout_seconds"
        ]
    );
}

#[tokio::test]
async fn a_missing_config_file_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.json");
    let run = selftest(&["privileges", "--config", path.to_str().unwrap()]).await;
    run.expect_code(2)
        .expect_stderr("cannot read config file")
        .expect_stderr("nope.json");
}

#[tokio::test]
async fn a_config_that_is_not_json_exits_2_with_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.json");
    std::fs::write(&path, "{\n  \"proxmox\": {,\n}").unwrap();
    let run = selftest(&["--config", path.to_str().unwrap()]).await;
    run.expect_code(2).expect_stderr("agent.json:2:");
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let config = Path::new("/nonexistent/agent.json").to_str().unwrap();
    for args in [
        &["task"][..],
        &["task", "--vmid", "12"],
        &["frobnicate"],
        &["read", "--no-such-flag"],
    ] {
        let mut all = vec!["--config", config];
        all.extend_from_slice(args);
        let run = selftest(&all).await;
        run.expect_code(2);
        assert!(
            run.stderr.contains("Usage:") || run.stderr.contains("error:"),
            "{}",
            run.stderr
        );
    }
    let help = selftest(&["--help"]).await;
    help.expect_code(0)
        .expect_stdout("Exit status: 0 every check passed");
    selftest(&["--version"])
        .await
        .expect_code(0)
        .expect_stdout(env!("CARGO_PKG_VERSION"));
}
