//! `HubClient` against `HubSim` over real TLS: the round trip (Bearer header, golden shape,
//! envelope), the hub's refusals and failures as typed errors, and trust failures.

use std::time::{Duration, SystemTime};

use felhom_hub::cloudflared::FixedProber;
use felhom_hub::collector;
use felhom_hub::hub::{HubClient, HubError, MAX_ENVELOPE_BYTES};
use felhom_hub_proto::golden::{sample_control_envelope, sample_host_report};
use felhom_hub_proto::{ControlEnvelope, ServiceState};
use felhom_proxmox::{HttpError, TlsFailure};
use felhom_pve_sim::{HubFault, HubSim, HubSimConfig};

use crate::support::{self, KEY};

fn assert_no_key(e: &HubError) {
    assert!(!e.to_string().contains(KEY), "{e}");
    assert!(!format!("{e:?}").contains(KEY), "{e:?}");
}

#[tokio::test]
async fn a_collected_report_round_trips_with_the_bearer_key_and_the_golden_shape() {
    let pve = support::pve().await;
    let api = support::pve_client(&pve);
    let hub = support::hub().await;
    hub.set_envelope(sample_control_envelope());
    let dir = tempfile::tempdir().unwrap();
    let client = support::hub_client(&hub, &dir);
    assert_eq!(
        client.report_url(),
        format!("{}/api/v1/host-report", hub.base_url())
    );

    let report = collector::collect(
        &api,
        &FixedProber(ServiceState::Active),
        "pve-01",
        SystemTime::now(),
    )
    .await
    .unwrap();
    let envelope = client.report(&report).await.unwrap();
    assert_eq!(envelope, sample_control_envelope());

    let got = hub
        .wait_for_reports(1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.authorization(), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(r.headers.get("content-type").unwrap(), "application/json");
    let ua = r.headers.get("user-agent").unwrap().to_str().unwrap();
    assert!(ua.starts_with("felhom-agent/"), "{ua}");
    assert_eq!(r.report, report, "the hub reads exactly what was collected");
    assert_eq!(r.raw, serde_json::to_value(&report).unwrap());
    support::assert_golden_shape(&r.raw);
    // The shape check has teeth: the golden sample passes, a retyped field does not.
    support::assert_golden_shape(&serde_json::to_value(sample_host_report()).unwrap());
    let mut tampered = r.raw.clone();
    tampered["host"]["cpu_count"] = serde_json::json!("8");
    assert!(std::panic::catch_unwind(|| support::assert_golden_shape(&tampered)).is_err());
    let mut extra = r.raw.clone();
    extra["guests"][0]["surprise"] = serde_json::json!(1);
    assert!(std::panic::catch_unwind(|| support::assert_golden_shape(&extra)).is_err());
    let mut missing = r.raw.clone();
    missing["host"].as_object_mut().unwrap().remove("kernel");
    assert!(std::panic::catch_unwind(|| support::assert_golden_shape(&missing)).is_err());

    // The report carries what the simulator holds.
    assert_eq!(r.report.host_id, "pve-01");
    assert_eq!(r.report.cloudflared, ServiceState::Active);
    assert_eq!(r.report.guests.len(), 2);
    assert_eq!(r.report.backups.len(), 1);
}

#[tokio::test]
async fn refusals_and_failures_of_the_hub_are_typed() {
    let hub = support::hub().await;
    let dir = tempfile::tempdir().unwrap();
    let client = support::hub_client(&hub, &dir);
    let report = sample_host_report();

    // A wrong key: 401, named, the key in neither the error nor its Debug.
    let wrong = support::hub_client_with(&hub, &dir, "not-the-key", Duration::from_secs(10));
    let e = wrong.report(&report).await.unwrap_err();
    assert!(e.is_unauthorized(), "{e}");
    match &e {
        HubError::Http { status, body, url } => {
            assert_eq!(*status, 401);
            assert!(body.contains("invalid api key"), "{body}");
            assert!(url.ends_with("/api/v1/host-report"));
        }
        other => panic!("{other:?}"),
    }

    for status in [500, 502, 503] {
        hub.faults().fail_next(1, HubFault::Status(status));
        let e = client.report(&report).await.unwrap_err();
        assert!(
            matches!(&e, HubError::Http { status: s, .. } if *s == status),
            "{e}"
        );
        assert!(!e.is_unauthorized());
        assert_no_key(&e);
    }

    // The hub echoing the key in an error body does not put it in the error.
    hub.faults().fail_next(
        1,
        HubFault::Body(
            400,
            format!("{{\"error\":\"bad request from Bearer {KEY}\"}}"),
        ),
    );
    let e = client.report(&report).await.unwrap_err();
    assert!(e.to_string().contains("[redacted]"), "{e}");
    assert_no_key(&e);

    // 2xx with something that is no envelope.
    hub.faults()
        .fail_next(1, HubFault::Body(200, "<html>maintenance</html>".into()));
    let e = client.report(&report).await.unwrap_err();
    assert!(matches!(e, HubError::Decode { .. }), "{e}");
    hub.faults().fail_next(
        1,
        HubFault::Body(200, format!("{{\"poll_interval_seconds\":\"{KEY}\"}}")),
    );
    let e = client.report(&report).await.unwrap_err();
    assert!(matches!(e, HubError::Decode { .. }), "{e}");
    assert_no_key(&e);
    // An empty 2xx body and unknown fields are fine. An empty answer says nothing about a
    // block (`None`: the daemon keeps its state), and neither does a truncated one (an error).
    for (status, body) in [(204, ""), (200, ""), (200, " \n")] {
        hub.faults()
            .fail_next(1, HubFault::Body(status, body.to_owned()));
        let e = client.report(&report).await.unwrap();
        assert_eq!(e, ControlEnvelope::default());
        assert_eq!(e.blocked, None, "{status} {body:?}");
    }
    hub.faults()
        .fail_next(1, HubFault::Body(200, r#"{"blocked":fal"#.into()));
    let e = client.report(&report).await.unwrap_err();
    assert!(matches!(e, HubError::Decode { .. }), "{e}");
    hub.faults()
        .fail_next(1, HubFault::Body(200, r#"{"blocked":false}"#.into()));
    assert_eq!(client.report(&report).await.unwrap().blocked, Some(false));
    hub.faults().fail_next(
        1,
        HubFault::Body(200, r#"{"blocked":true,"motd":"hi"}"#.into()),
    );
    assert_eq!(client.report(&report).await.unwrap().blocked, Some(true));

    // An oversized answer is cut off by the body limit.
    let big = format!("{{}}{}", " ".repeat(MAX_ENVELOPE_BYTES + 1));
    hub.faults().fail_next(1, HubFault::Body(200, big));
    let e = client.report(&report).await.unwrap_err();
    assert!(
        matches!(e, HubError::Transport(HttpError::BodyTooLarge { .. })),
        "{e}"
    );

    // A dropped connection: the request was sent, the hub may have seen it.
    hub.faults().drop_next(1);
    let e = client.report(&report).await.unwrap_err();
    match &e {
        HubError::Transport(t) => assert!(!t.never_sent(), "{t:?}"),
        other => panic!("{other:?}"),
    }

    // Nothing so far was recorded as a report (every answer was a refusal or injected); the
    // next good one is.
    assert_eq!(hub.report_count(), 0);
    assert_eq!(client.report(&report).await.unwrap(), hub.envelope());
    assert_eq!(hub.report_count(), 1);
}

#[tokio::test]
async fn untrusted_unreachable_and_slow_hubs_are_transport_errors() {
    let hub = support::hub().await;
    let other = HubSim::start(HubSimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let report = sample_host_report();

    // Trusting another hub's CA: the handshake fails, nothing was sent.
    let mistrusting = HubClient::new(felhom_hub::hub::HubClientConfig {
        url: felhom_types::HttpsUrl::parse(&hub.base_url()).unwrap(),
        api_key: felhom_proxmox::Secret::new(KEY),
        trust: felhom_proxmox::TlsTrust::CaFile(support::write_ca(
            &dir,
            "other-ca.pem",
            &other.ca_pem(),
        )),
        host_id: "pve-01".into(),
        timeout: Duration::from_secs(10),
    })
    .unwrap();
    match mistrusting.report(&report).await.unwrap_err() {
        HubError::Transport(HttpError::Tls { kind, .. }) => {
            assert_eq!(kind, TlsFailure::UnknownIssuer)
        }
        other => panic!("{other:?}"),
    }
    assert!(hub.requests().is_empty());

    // Too slow: the request timeout ends it.
    hub.faults().set_latency(Duration::from_secs(30));
    let impatient = support::hub_client_with(&hub, &dir, KEY, Duration::from_millis(300));
    match impatient.report(&report).await.unwrap_err() {
        HubError::Transport(e @ HttpError::Timeout { .. }) => assert!(!e.never_sent()),
        other => panic!("{other:?}"),
    }
    hub.faults().clear();

    // Gone: connection refused, never sent.
    let client = support::hub_client(&hub, &dir);
    hub.shutdown().await;
    match client.report(&report).await.unwrap_err() {
        HubError::Transport(e) => {
            assert!(matches!(e, HttpError::Connect { .. }), "{e:?}");
            assert!(e.never_sent());
        }
        other => panic!("{other:?}"),
    }
}

/// `hub.fingerprint_sha256` (issue 9 item 1): the client trusts the pinned leaf, with no CA
/// file, and refuses a hub whose certificate is not the pinned one.
#[tokio::test]
async fn a_pinned_hub_is_reached_and_a_wrong_pin_is_refused() {
    let hub = support::hub().await;
    let pinned = |fp: felhom_proxmox::Fingerprint| {
        HubClient::new(felhom_hub::hub::HubClientConfig {
            url: felhom_types::HttpsUrl::parse(&hub.base_url()).unwrap(),
            host_id: "pve-01".into(),
            api_key: felhom_proxmox::Secret::new(KEY),
            timeout: Duration::from_secs(10),
            trust: felhom_proxmox::TlsTrust::Pinned(vec![fp]),
        })
        .unwrap()
    };
    let report = sample_host_report();
    let right = pinned(hub.fingerprint().parse().unwrap());
    right.report(&report).await.expect("the pinned hub answers");
    assert_eq!(hub.requests().len(), 1);

    let other = HubSim::start(HubSimConfig::default()).await.unwrap();
    let wrong = pinned(other.fingerprint().parse().unwrap());
    match wrong.report(&report).await.unwrap_err() {
        e @ HubError::Transport(HttpError::Tls { .. }) => assert_no_key(&e),
        other => panic!("{other:?}"),
    }
    // Nothing reached the hub through the wrong pin.
    assert_eq!(hub.requests().len(), 1);
}

#[tokio::test]
async fn intent_fetches_round_trip_with_the_bearer_key_and_faults_are_typed() {
    use felhom_hub::hub::{FetchError, MAX_INTENT_BYTES};
    use felhom_hub_proto::golden::sample_intent;
    use felhom_hub_proto::{DESIRED_STATE_PATH, SIGNED_OPS_PATH};

    let hub = support::hub().await;
    let dir = tempfile::tempdir().unwrap();
    let client = support::hub_client(&hub, &dir);
    // Nothing published yet: a 404, typed.
    let e = client.desired_state().await.unwrap_err();
    assert_eq!(e.status(), Some(404), "{e}");
    assert!(e.to_string().contains(DESIRED_STATE_PATH), "{e}");

    let sample = sample_intent();
    hub.publish_desired(sample.desired_state.clone());
    hub.set_signed_ops(sample.signed_ops.ops.clone());
    assert_eq!(client.desired_state().await.unwrap(), sample.desired_state);
    let ops = client.signed_ops().await.unwrap();
    // The blob arrives as the exact string the hub stored: these are the signed bytes.
    assert_eq!(ops, sample.signed_ops);
    assert_eq!(
        ops.ops[0].blob_bytes(),
        sample_intent().signed_ops.ops[0].blob.as_bytes()
    );
    assert_eq!(hub.envelope().desired_generation, 7);
    assert!(hub.envelope().has_signed_ops);

    // 5xx, malformed, oversized, dropped: each a typed error, nothing decoded.
    hub.faults()
        .fail_next_on(DESIRED_STATE_PATH, 1, HubFault::Status(503));
    let e = client.desired_state().await.unwrap_err();
    assert!(matches!(e, FetchError::Http { status: 503, .. }), "{e}");
    hub.faults().fail_next_on(
        SIGNED_OPS_PATH,
        1,
        HubFault::Body(200, r#"{"ops":[{"blob":"x"}]}"#.into()),
    );
    let e = client.signed_ops().await.unwrap_err();
    assert!(matches!(e, FetchError::Malformed { .. }), "{e}");
    assert!(e.to_string().contains("signature"), "{e}");
    hub.faults().fail_next_on(
        DESIRED_STATE_PATH,
        1,
        HubFault::Body(200, " ".repeat(MAX_INTENT_BYTES + 1)),
    );
    let e = client.desired_state().await.unwrap_err();
    assert!(
        matches!(
            e,
            FetchError::Transport {
                source: HttpError::BodyTooLarge { .. },
                ..
            }
        ),
        "{e}"
    );
    hub.faults()
        .fail_next_on(DESIRED_STATE_PATH, 1, HubFault::Drop);
    assert!(matches!(
        client.desired_state().await.unwrap_err(),
        FetchError::Transport { .. }
    ));
    // A key the hub refuses: 401, and the key is in no error.
    hub.set_api_key("another-key");
    let e = client.signed_ops().await.unwrap_err();
    assert_eq!(e.status(), Some(401));
    assert!(!e.to_string().contains(KEY) && !format!("{e:?}").contains(KEY));
    // Every fetch was a GET on its path.
    let gets = hub.requests().iter().filter(|r| r.method == "GET").count();
    assert_eq!(
        gets,
        hub.request_count(DESIRED_STATE_PATH) + hub.request_count(SIGNED_OPS_PATH)
    );
    assert_eq!(hub.request_count(DESIRED_STATE_PATH), 5);
}
