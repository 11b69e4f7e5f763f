//! Shared set-up for the client-against-simulator tests: a simulator per test, a `PveClient`
//! pinned to it, fast task waits, and a TRACE-level log capture.

use std::time::Duration;

use felhom_proxmox::{HttpRequest, HttpsClient, HttpsConfig, PollSchedule, WaitOptions};
use felhom_pve_sim::{PveSim, SimConfig, TokenSpec, DEFAULT_TOKEN_ID, DEFAULT_TOKEN_SECRET};
use http::HeaderValue;

pub use felhom_testkit::logs::LogCapture;
pub use felhom_testkit::pve::{
    client, client_for, client_with, fingerprint, pinned, ClientOpts, TIMEOUT,
};

/// A simulator of the default host (see the simulator's README).
pub async fn sim() -> PveSim {
    sim_with(SimConfig::default()).await
}

/// A simulator of a customised host.
pub async fn sim_with(config: SimConfig) -> PveSim {
    PveSim::start(config).await.expect("simulator starts")
}

/// A privsep token of its own user (an Administrator) holding the agent's privileges on `/`
/// except `missing`: what an operator who forgot one ACL line hands the agent.
pub fn token_without(id: &str, secret: &str, missing: &str) -> TokenSpec {
    felhom_testkit::pve::token_without(id, secret, &[missing])
}

/// The raw JSON answer to an authenticated GET with the default token: to show what the
/// simulator sent, next to what the client made of it.
pub async fn raw_get(sim: &PveSim, path: &str) -> serde_json::Value {
    let https = HttpsClient::new(HttpsConfig {
        trust: pinned(sim),
        connect_timeout: TIMEOUT,
        request_timeout: TIMEOUT,
        max_body_bytes: 1 << 20,
        user_agent: "felhom-test".into(),
    })
    .unwrap();
    let mut auth = HeaderValue::from_str(&format!(
        "PVEAPIToken={DEFAULT_TOKEN_ID}={DEFAULT_TOKEN_SECRET}"
    ))
    .unwrap();
    auth.set_sensitive(true);
    let req = HttpRequest::new(
        http::Method::GET,
        format!("{}/api2/json{path}", sim.base_url()),
    )
    .header(http::header::AUTHORIZATION, auth);
    let resp = https.send(req).await.unwrap();
    assert_eq!(resp.status, 200, "{resp:?}");
    serde_json::from_slice(&resp.body).unwrap()
}

/// Task waits for tests: polls every 10–100 ms, gives up after 10 s (tasks run 50 ms).
pub fn fast_wait() -> WaitOptions {
    WaitOptions {
        timeout: Duration::from_secs(10),
        schedule: PollSchedule {
            initial: Duration::from_millis(10),
            factor: 1.5,
            max: Duration::from_millis(100),
        },
        ..Default::default()
    }
}
