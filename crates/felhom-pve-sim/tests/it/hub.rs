//! The hub simulator over real TLS: route, method, auth, content type and body checks in order,
//! recorded reports, injected faults and latency on tokio's clock.

use std::time::Duration;

use felhom_hub_proto::{ControlEnvelope, HOST_REPORT_PATH};
use felhom_pve_sim::{HubFault, HubSim, HubSimConfig, WaitTimeout, DEFAULT_HUB_API_KEY};
use http::header::{HeaderMap, ALLOW, WWW_AUTHENTICATE};
use serde_json::Value;
use tokio::time::Instant;

use crate::client::Client;

/// Sends `body` with `headers` (a `content-type` among them becomes the body's type); the
/// answer's status, headers and JSON body (`Null` when it is not JSON).
async fn send(
    raw: &Client,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, HeaderMap, Value), hyper_util::client::legacy::Error> {
    let content_type = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| *v);
    let rest: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("content-type"))
        .copied()
        .collect();
    let body = match (content_type, body.is_empty()) {
        (Some(ct), _) => Some((ct, body.as_bytes().to_vec())),
        (None, true) => None,
        (None, false) => panic!("a body needs a content-type in these tests"),
    };
    let resp = raw.try_send(method, path, body, &rest).await?;
    let json = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    Ok((resp.status, resp.headers, json))
}

fn report_json() -> String {
    serde_json::to_string(&felhom_hub_proto::golden::sample_host_report()).unwrap()
}

#[tokio::test]
async fn checks_route_method_auth_type_and_body_in_order() {
    let hub = HubSim::start(HubSimConfig {
        max_body_bytes: 64 * 1024,
        ..HubSimConfig::default()
    })
    .await
    .unwrap();
    let raw = Client::for_hub(&hub);
    let bearer = format!("Bearer {DEFAULT_HUB_API_KEY}");
    let json = ("content-type", "application/json");
    let auth = ("authorization", bearer.as_str());

    let (st, _, body) = send(&raw, "POST", "/api/v1/other", &[auth, json], "{}")
        .await
        .unwrap();
    assert_eq!(
        (st, body["error"].as_str()),
        (404, Some("no route for /api/v1/other"))
    );
    let (st, h, _) = send(&raw, "GET", HOST_REPORT_PATH, &[auth], "")
        .await
        .unwrap();
    assert_eq!((st, h.get(ALLOW).unwrap().to_str().unwrap()), (405, "POST"));
    let (st, h, body) = send(&raw, "POST", HOST_REPORT_PATH, &[json], "{}")
        .await
        .unwrap();
    assert_eq!(
        (st, body["error"].as_str()),
        (401, Some("missing bearer token"))
    );
    assert!(h.get(WWW_AUTHENTICATE).is_some());
    let basic = ("authorization", "Basic Zm9vOmJhcg==");
    let (st, _, _) = send(&raw, "POST", HOST_REPORT_PATH, &[basic, json], "{}")
        .await
        .unwrap();
    assert_eq!(st, 401);
    let wrong = ("authorization", "Bearer not-the-key");
    let (st, _, body) = send(&raw, "POST", HOST_REPORT_PATH, &[wrong, json], "{}")
        .await
        .unwrap();
    assert_eq!((st, body["error"].as_str()), (401, Some("invalid api key")));
    let form = ("content-type", "application/x-www-form-urlencoded");
    let (st, _, _) = send(&raw, "POST", HOST_REPORT_PATH, &[auth, form], "a=b")
        .await
        .unwrap();
    assert_eq!(st, 415);
    let big = format!("{{}}{}", " ".repeat(70_000));
    let (st, _, _) = send(&raw, "POST", HOST_REPORT_PATH, &[auth, json], &big)
        .await
        .unwrap();
    assert_eq!(st, 413);
    let (st, _, body) = send(&raw, "POST", HOST_REPORT_PATH, &[auth, json], "{nope")
        .await
        .unwrap();
    assert_eq!(st, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid json: "),
        "{body}"
    );
    let (st, _, body) = send(
        &raw,
        "POST",
        HOST_REPORT_PATH,
        &[auth, json],
        r#"{"schema_version":1}"#,
    )
    .await
    .unwrap();
    assert_eq!(st, 400);
    let msg = body["error"].as_str().unwrap();
    assert!(
        msg.starts_with("invalid host report: missing field"),
        "{msg}"
    );
    assert_eq!(hub.report_count(), 0);
    let statuses: Vec<u16> = hub.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [404, 405, 401, 401, 401, 415, 413, 400, 400]);

    // A good report is recorded with its headers and raw JSON, and answered.
    hub.set_envelope(felhom_hub_proto::golden::sample_control_envelope());
    let (st, _, body) = send(
        &raw,
        "POST",
        HOST_REPORT_PATH,
        &[auth, json, ("x-test", "1")],
        &report_json(),
    )
    .await
    .unwrap();
    assert_eq!(st, 200);
    assert_eq!(
        serde_json::from_value::<ControlEnvelope>(body).unwrap(),
        felhom_hub_proto::golden::sample_control_envelope()
    );
    let got = hub
        .wait_for_reports(1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        got[0].report,
        felhom_hub_proto::golden::sample_host_report()
    );
    assert_eq!(
        got[0].raw,
        serde_json::from_str::<Value>(&report_json()).unwrap()
    );
    assert_eq!(got[0].authorization(), Some(bearer.as_str()));
    assert_eq!(got[0].headers.get("x-test").unwrap(), "1");
    let dbg = format!("{got:?} {:?} {hub:?}", got[0].headers);
    assert!(!dbg.contains(DEFAULT_HUB_API_KEY), "{dbg}");
    assert!(matches!(
        hub.wait_for_reports(2, Duration::from_millis(20)).await,
        Err(WaitTimeout {
            wanted: 2,
            got: 1,
            ..
        })
    ));

    // A rotated key refuses the old one.
    hub.set_api_key("rotated-key");
    let (st, _, _) = send(
        &raw,
        "POST",
        HOST_REPORT_PATH,
        &[auth, json],
        &report_json(),
    )
    .await
    .unwrap();
    assert_eq!(st, 401);
    hub.shutdown().await;
}

#[tokio::test]
async fn injected_faults_answer_before_anything_else() {
    let hub = HubSim::start(HubSimConfig::default()).await.unwrap();
    let raw = Client::for_hub(&hub);
    hub.faults().fail_next(1, HubFault::Status(503));
    hub.faults().drop_next(1);
    hub.faults()
        .fail_next(1, HubFault::Body(200, "not an envelope".into()));
    let (st, _, body) = send(&raw, "POST", HOST_REPORT_PATH, &[], "").await.unwrap();
    assert_eq!(
        (st, body["error"].as_str()),
        (503, Some("injected fault: 503"))
    );
    assert!(send(&raw, "POST", HOST_REPORT_PATH, &[], "").await.is_err());
    let (st, _, body) = send(&raw, "POST", HOST_REPORT_PATH, &[], "").await.unwrap();
    assert_eq!((st, body), (200, Value::Null));
    let (st, _, _) = send(&raw, "POST", HOST_REPORT_PATH, &[], "").await.unwrap();
    assert_eq!(st, 401, "faults used up: back to normal checks");
    let statuses: Vec<u16> = hub.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 0, 200, 401]);
    assert_eq!(hub.report_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn latency_is_tokio_time() {
    let hub = HubSim::start(HubSimConfig::default()).await.unwrap();
    hub.faults().set_latency(Duration::from_secs(30));
    let raw = Client::for_hub(&hub);
    let t0 = Instant::now();
    let (st, _, _) = send(&raw, "GET", "/", &[], "").await.unwrap();
    assert_eq!(st, 404);
    assert!(t0.elapsed() >= Duration::from_secs(30));
}
