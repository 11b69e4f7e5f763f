//! The hub key never shows: not in the client's or its config's `Debug`, not in any error of a
//! failed report, not in the heartbeat's status, and not in any log line at any level (hyper's
//! and rustls' trace output included) while reports succeed and fail.

use std::time::Duration;

use felhom_hub::cloudflared::FixedProber;
use felhom_hub::heartbeat::{self, Beat, HeartbeatSettings};
use felhom_hub::hub::{HubClient, HubClientConfig};
use felhom_hub_proto::golden::sample_host_report;
use felhom_hub_proto::ServiceState;
use felhom_proxmox::Secret;
use felhom_pve_sim::HubFault;
use felhom_types::HttpsUrl as Url;
use tokio_util::sync::CancellationToken;

use crate::support::{self, KEY};

#[tokio::test]
async fn the_key_appears_nowhere_but_on_the_wire() {
    let logs = support::logs();
    let pve = support::pve().await;
    let hub = support::hub().await;
    let dir = tempfile::tempdir().unwrap();
    let config = HubClientConfig {
        url: Url::parse(&hub.base_url()).unwrap(),
        api_key: Secret::new(KEY),
        trust: felhom_proxmox::TlsTrust::CaFile(support::write_ca(&dir, "ca.pem", &hub.ca_pem())),
        host_id: "pve-01".into(),
        timeout: Duration::from_secs(10),
    };
    assert!(!format!("{config:?}").contains(KEY));
    let client = HubClient::new(config).unwrap();
    assert!(!format!("{client:?}").contains(KEY));

    // Every way a report can end, each error checked in Display and Debug.
    let report = sample_host_report();
    let mut texts = Vec::new();
    hub.faults().fail_next(1, HubFault::Status(500));
    hub.faults().fail_next(
        1,
        HubFault::Body(401, format!("{{\"error\":\"key {KEY} refused\"}}")),
    );
    hub.faults()
        .fail_next(1, HubFault::Body(200, format!("[\"{KEY}\"]")));
    hub.faults().drop_next(1);
    for _ in 0..4 {
        let e = client.report(&report).await.unwrap_err();
        texts.push(format!("{e} {e:?}"));
    }
    let ok = client.report(&report).await.unwrap();
    texts.push(format!("{ok:?}"));
    hub.set_api_key("rotated");
    let e = client.report(&report).await.unwrap_err();
    assert!(e.is_unauthorized());
    texts.push(format!("{e} {e:?}"));
    for t in &texts {
        assert!(!t.contains(KEY), "{t}");
    }
    // It did travel: the hub saw it.
    assert_eq!(
        hub.reports()[0].authorization(),
        Some(format!("Bearer {KEY}").as_str())
    );

    // A heartbeat beat that fails (the key is refused) and its status.
    let api = support::pve_client(&pve);
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let mut lines = Vec::new();
    let status = heartbeat::run(
        &api,
        &FixedProber(ServiceState::Unknown),
        &client,
        &HeartbeatSettings::new("pve-01", Duration::from_secs(60)),
        cancel,
        |beat: &Beat<'_>| {
            lines.push(format!("{beat:?} {}", beat.status));
            stop.cancel();
        },
    )
    .await;
    assert_eq!(status.consecutive_failures, 1);
    lines.push(format!("{status:?} {status}"));
    for l in &lines {
        assert!(!l.contains(KEY), "{l}");
    }

    // The capture works (this test's failures and the https client's debug lines are in
    // it), and the key is nowhere in what any test logged.
    let mine = logs.lines_with(&hub.report_url()).join("\n");
    assert!(mine.contains("host report failed"), "{mine}");
    assert!(mine.contains("https request"), "{mine}");
    assert!(
        !logs.all_text().contains(KEY),
        "the hub key reached the logs"
    );
}
