//! The one-shot commands: `check-config` (redacted config, exit 0; every problem, exit 2),
//! `--version`, usage errors, and the daemon refusing a bad config before starting anything.

use felhom_testkit::config;
use serde_json::{json, Value};

use crate::support::{run, run_with_env, workspace_file, HUB_KEY};

const TOKEN_SECRET: &str = "0b1c2d3e-aaaa-4bbb-8ccc-ddddeeeeffff";

fn doc() -> Value {
    json!({
        "proxmox": config::example_proxmox_section(TOKEN_SECRET),
        "hub": config::example_hub_section(HUB_KEY)
    })
}

fn write(dir: &std::path::Path, doc: &Value) -> String {
    let path = dir.join("agent.json");
    config::write_json(&path, doc).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn check_config_prints_the_redacted_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &doc());
    for args in [
        vec!["--config", path.as_str(), "check-config"],
        vec!["check-config", "--config", path.as_str()],
    ] {
        let (code, out, err) = run(&args).await;
        assert_eq!(code, 0, "{out}{err}");
        let shown: Value = serde_json::from_str(&out).expect("stdout is the config as JSON");
        assert_eq!(shown["proxmox"]["token_secret"], "[redacted]");
        assert_eq!(shown["hub"]["api_key"], "[redacted]");
        assert_eq!(shown["hub"]["poll_seconds"], 60);
        assert_eq!(shown["log"]["level"], "info");
        // Metrics are off unless metrics.listen is set.
        assert_eq!(shown["metrics"]["listen"], Value::Null);
        for text in [&out, &err] {
            assert!(
                !text.contains(TOKEN_SECRET) && !text.contains(HUB_KEY),
                "{text}"
            );
        }
    }
    // The shipped example loads too.
    let example = workspace_file("configs/agent.example.json");
    let (code, out, err) = run(&["--config", example.to_str().unwrap(), "check-config"]).await;
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test]
async fn a_bad_config_lists_every_problem_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = doc();
    bad["hub"]["poll_seconds"] = json!(5);
    bad["proxmox"]["token_id"] = json!("root");
    bad["log"] = json!({ "level": "loud" });
    bad["authz"] = json!({ "signers": [{
        "key_id": "weak", "role": "operational",
        "public_key": std::fs::read_to_string(workspace_file("testdata/sshsig/rsa1024.pub")).unwrap().trim()
    }]});
    let path = write(dir.path(), &bad);
    let (code, out, err) = run(&["--config", &path, "check-config"]).await;
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    for key in ["hub.poll_seconds: ", "proxmox.token_id: ", "log.level: "] {
        assert!(err.contains(key), "{key} missing in:\n{err}");
    }
    assert!(err.contains(&format!("config {path}: ")), "{err}");
    assert!(
        !err.contains(TOKEN_SECRET) && !err.contains(HUB_KEY),
        "{err}"
    );

    // The weak key alone: found by felhom-authz, reported the same way.
    let mut weak = doc();
    weak["authz"] = bad["authz"].clone();
    let path = write(dir.path(), &weak);
    let (code, _, err) = run(&["--config", &path, "check-config"]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains("authz.signers[0].public_key: signer \"weak\": the rsa key has 1024 bits"),
        "{err}"
    );

    // The daemon refuses the same config before starting anything.
    let (code, _, err) = run(&["--config", &path]).await;
    assert_eq!(code, 2);
    assert!(err.contains("authz.signers[0].public_key"), "{err}");

    // A missing file.
    let missing = dir.path().join("missing.json");
    let (code, _, err) = run(&["--config", missing.to_str().unwrap(), "check-config"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("missing.json"), "{err}");
}

#[tokio::test]
async fn version_and_usage() {
    let (code, out, _) = run(&["--version"]).await;
    assert_eq!(code, 0);
    assert_eq!(
        out.trim(),
        format!("felhom-agent {}", env!("CARGO_PKG_VERSION"))
    );
    let (code, _, _) = run(&["no-such-command"]).await;
    assert_eq!(code, 2);
    let (code, out, _) = run(&["--help"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("check-config") && out.contains("verify-op"),
        "{out}"
    );
    assert!(!out.contains("poll-floor"), "{out}");
}

#[tokio::test]
async fn the_poll_floor_is_an_environment_variable_not_a_flag() {
    // The old hidden flag is a usage error now, for every subcommand.
    for args in [
        &["--poll-floor-ms", "200"][..],
        &["run", "--poll-floor-ms", "200"],
    ] {
        let (code, _, err) = run(args).await;
        assert_eq!(code, 2, "{args:?}");
        assert!(err.contains("--poll-floor-ms"), "{err}");
    }
    // An unusable value stops the daemon before anything starts, naming the variable.
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &doc());
    for bad in ["0", "soon"] {
        let (code, _, err) = run_with_env(
            &["--config", &path],
            &[("FELHOM_AGENT_TEST_POLL_FLOOR_MS", bad)],
        )
        .await;
        assert_eq!(code, 2, "{err}");
        assert_eq!(
            err.trim(),
            format!(
                "felhom-agent: FELHOM_AGENT_TEST_POLL_FLOOR_MS: expected whole milliseconds from \
                 1 to 3600000, got \"{bad}\" (a test-only setting: unset it on a real host)"
            )
        );
    }
    // The config overlay does not take it for a misspelt setting.
    let (code, out, err) = run_with_env(
        &["--config", &path, "check-config"],
        &[("FELHOM_AGENT_TEST_POLL_FLOOR_MS", "200")],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test]
async fn an_unusable_crash_seam_value_stops_the_daemon_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), &doc());
    for bad in ["after-post:1", "after-started:0", "after-started"] {
        let (code, _, err) =
            run_with_env(&["--config", &path], &[("FELHOM_AGENT_TEST_CRASH_AT", bad)]).await;
        assert_eq!(code, 2, "{err}");
        assert_eq!(
            err.trim(),
            format!(
                "felhom-agent: FELHOM_AGENT_TEST_CRASH_AT: expected <step>[@<action>]:<n> with \
                 step one of before-started, after-started, after-request, after-task-running, \
                 after-task-end, or <signed-step>:<n> with signed-step one of signed-before-gate, \
                 signed-before-post, \
                 signed-after-post, signed-after-task-recorded, and n from 1, got \"{bad}\" (a \
                 test-only setting: unset it on a real host)"
            )
        );
    }
    // The config overlay does not take it for a misspelt setting.
    let (code, out, err) = run_with_env(
        &["--config", &path, "check-config"],
        &[("FELHOM_AGENT_TEST_CRASH_AT", "after-started@start:1")],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test]
async fn a_missing_config_says_in_one_line_where_the_example_is() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("agent.json");
    for args in [
        vec!["--config", missing.to_str().unwrap()],
        vec!["--config", missing.to_str().unwrap(), "check-config"],
    ] {
        let (code, _, err) = run(&args).await;
        assert_eq!(code, 2);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!(
                "felhom-agent: no config file at {}: copy /etc/felhom-agent/agent.json.example",
                missing.display()
            )),
            "{err}"
        );
    }
}
