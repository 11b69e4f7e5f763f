//! Error shapes: reason phrase = first line of the message, `message` (and `errors`) in the
//! JSON body, the HTTP-layer 501/506 answers, extjs, and the pre-5.2 mode.

use felhom_pve_sim::{
    Acl, GuestSpec, PveSim, SimConfig, SimError, TokenSpec, ADMINISTRATOR_PRIVILEGES,
};
use serde_json::json;

use crate::client::{form_body, sim, sim_with, Client};

fn audit_only() -> TokenSpec {
    TokenSpec::new("ro@pve!audit", "s3cret")
        .acl(Acl::new("/", &["VM.Audit", "VM.Config.CPU"], true))
        .user_acl(Acl::new("/", ADMINISTRATOR_PRIVILEGES, true))
}

#[tokio::test]
async fn permission_failures_are_403_with_path_and_privilege() {
    let sim = sim_with(SimConfig::default().token(audit_only())).await;
    let ro = Client::token(&sim, "ro@pve!audit", "s3cret");
    let r = ro
        .put("/nodes/pve/lxc/100/config", &[("description", "x")])
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.reason,
        "Permission check failed (/vms/100, VM.Config.Options)"
    );
    assert_eq!(
        r.json(),
        json!({"data": null, "message": "Permission check failed (/vms/100, VM.Config.Options)\n"})
    );
    assert_eq!(r.headers["connection"], "close");
    assert_eq!(r.headers["content-type"], "application/json;charset=UTF-8");
    // the schema's own check, before anything else
    let r = ro.get("/nodes/pve/status").await;
    assert_eq!(r.reason, "Permission check failed (/nodes/pve, Sys.Audit)");
    // per-option checks cover deletions too; allowed options pass
    let r = ro
        .put("/nodes/pve/lxc/100/config", &[("delete", "tags")])
        .await;
    assert_eq!(
        r.reason,
        "Permission check failed (/vms/100, VM.Config.Options)"
    );
    assert_eq!(
        ro.put("/nodes/pve/lxc/100/config", &[("cores", "3")])
            .await
            .status,
        200
    );
    // check_any names all alternatives
    let r = ro
        .post("/nodes/pve/lxc/100/snapshot/s1/rollback", &[])
        .await;
    assert_eq!(
        r.reason,
        "Permission check failed (/vms/100, VM.Snapshot|VM.Snapshot.Rollback)"
    );
    assert_eq!(sim.state().accepted_mutations(), 1);
    let cfg = sim.state().guest(100).unwrap();
    assert_eq!(cfg.config["cores"], "3");
    assert_eq!(cfg.description.as_deref(), Some("web server\n"));
}

#[tokio::test]
async fn parameter_errors_are_400_with_an_errors_map() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let r = c.get("/nodes/pve/lxc?bogus=1").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.reason, "Parameter verification failed.");
    assert_eq!(
        r.json(),
        json!({
            "data": null,
            "message": "Parameter verification failed.\n",
            "errors": {"bogus": "property is not defined in schema and the schema does not allow additional properties"}
        })
    );
    let r = c.get("/nodes/pve/lxc/abc/config").await;
    assert_eq!(
        r.json()["errors"],
        json!({"vmid": "type check ('integer') failed - got 'abc'"})
    );
    // a form boolean must be 1 or 0
    let r = c
        .put("/nodes/pve/lxc/100/config", &[("onboot", "true")])
        .await;
    assert_eq!(
        r.json()["errors"]["onboot"],
        "type check ('boolean') failed - got 'true'"
    );
    // a required parameter
    let r = c.post("/nodes/pve/lxc/100/snapshot", &[]).await;
    assert_eq!(
        r.json()["errors"]["snapname"],
        "property is missing and it is not optional"
    );
    // a body parameter contradicting the path
    let r = c
        .put(
            "/nodes/pve/lxc/100/config",
            &[("vmid", "101"), ("cores", "2")],
        )
        .await;
    assert_eq!(
        r.json()["errors"]["vmid"],
        "duplicate parameter (already defined in URI) with conflicting values!"
    );
}

#[tokio::test]
async fn unknown_routes_and_bad_requests_get_pves_http_layer_answers() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let r = c.get("/nodes/pve/foo").await;
    assert_eq!(r.status, 501);
    assert_eq!(r.reason, "Method 'GET /nodes/pve/foo' not implemented");
    assert_eq!(
        r.json()["message"],
        "Method 'GET /nodes/pve/foo' not implemented"
    );
    let r = c
        .send("PUT", "/version", Some(form_body(&[("a", "b")])))
        .await;
    assert_eq!(r.reason, "Method 'PUT /version' not implemented");

    let r = c
        .send("GET", "/version", Some(form_body(&[("a", "b")])))
        .await;
    assert_eq!(r.status, 501);
    assert_eq!(r.reason, "Unexpected content for method 'GET'");
    assert_eq!(r.text(), "Unexpected content for method 'GET'");
    let r = c
        .send(
            "DELETE",
            "/nodes/pve/lxc/101",
            Some(form_body(&[("force", "1")])),
        )
        .await;
    assert_eq!(r.reason, "Unexpected content for method 'DELETE'");
    assert!(sim.state().guest(101).is_some());

    let r = c
        .try_send(
            "POST",
            "/nodes/pve/lxc/101/status/start",
            Some(("text/plain", b"x".to_vec())),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 506);
    assert_eq!(
        r.reason,
        "upload 'Content-Type 'text/plain' not implemented"
    );

    let r = c
        .try_send(
            "POST",
            "/nodes/pve/lxc/101/status/start",
            Some(("application/x-www-form-urlencoded", b"a=b".to_vec())),
            &[("transfer-encoding", "chunked")],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 501);
    assert_eq!(r.reason, "chunked transfer encoding not supported");
    assert!(sim.state().tasks().is_empty());
}

#[tokio::test]
async fn missing_objects_and_other_nodes_are_500s() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let r = c.get("/nodes/pve/lxc/999/config").await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.reason,
        "Configuration file 'nodes/pve/lxc/999.conf' does not exist"
    );
    assert_eq!(
        r.json()["message"],
        "Configuration file 'nodes/pve/lxc/999.conf' does not exist\n"
    );
    let r = c.get("/nodes/elsewhere/lxc").await;
    assert_eq!(r.status, 500);
    assert!(
        r.reason.starts_with("hostname lookup 'elsewhere' failed"),
        "{}",
        r.reason
    );
}

#[tokio::test]
async fn extjs_always_answers_200_with_success_and_status() {
    let sim = sim().await;
    let c = Client::new(&sim);
    let r = c.get("/api2/extjs/nodes/pve/lxc/999/config").await;
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["success"], 0);
    assert_eq!(body["status"], 500);
    assert_eq!(
        body["message"],
        "Configuration file 'nodes/pve/lxc/999.conf' does not exist\n"
    );
    let r = c.get("/api2/extjs/version").await;
    assert_eq!(r.json()["success"], 1);
    assert_eq!(c.get("/api2/xml/version").await.status, 501);
}

#[tokio::test]
async fn pre_52_errors_carry_the_message_only_in_the_reason_phrase() {
    let sim = sim_with(SimConfig::default().pre_52_errors(true).token(audit_only())).await;
    let ro = Client::token(&sim, "ro@pve!audit", "s3cret");
    let r = ro
        .put("/nodes/pve/lxc/100/config", &[("memory", "1024")])
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.reason,
        "Permission check failed (/vms/100, VM.Config.Memory)"
    );
    assert_eq!(r.json(), json!({"data": null}));
    let r = ro.get("/nodes/pve/lxc?x=1").await;
    assert_eq!(
        r.json()["errors"]["x"]
            .as_str()
            .map(|s| s.starts_with("property")),
        Some(true)
    );
    assert!(r.json().get("message").is_none());
    let r = ro
        .send("GET", "/version", Some(form_body(&[("a", "b")])))
        .await;
    assert!(r.body.is_empty());
    // switchable at runtime
    sim.faults().set_pre_52_errors(false);
    let r = ro
        .put("/nodes/pve/lxc/100/config", &[("memory", "1024")])
        .await;
    assert!(r.json()["message"].is_string());
}

#[tokio::test]
async fn invalid_configs_are_refused_at_start() {
    for (config, needle) in [
        (SimConfig::default().node("bad_name"), "node 'bad_name'"),
        (
            SimConfig::default().token(TokenSpec::new("nobody", "x")),
            "token 'nobody'",
        ),
        (
            SimConfig::default().guest(GuestSpec::new(42, "tiny")),
            "guest 42",
        ),
        (
            SimConfig::default().guest(GuestSpec::new(300, "x").set("hostname", "a\nb")),
            "contains a newline",
        ),
    ] {
        let err = PveSim::start(config).await.expect_err("refused");
        assert!(matches!(err, SimError::Config(_)), "{err:?}");
        assert!(err.to_string().contains(needle), "{err}");
        assert!(!err
            .to_string()
            .contains(felhom_pve_sim::DEFAULT_TOKEN_SECRET));
    }
}
