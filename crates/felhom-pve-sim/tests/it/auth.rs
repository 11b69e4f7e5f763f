//! Authentication: token header forms, the two 401 reasons with empty bodies, the delay.

use std::time::Duration;

use felhom_pve_sim::{Acl, SimConfig, TokenSpec, DEFAULT_TOKEN_ID, DEFAULT_TOKEN_SECRET};

use crate::client::{sim, sim_with, Client};

#[tokio::test]
async fn missing_credentials_get_401_no_ticket_with_an_empty_body() {
    let sim = sim().await;
    let r = Client::with_auth(&sim, None).get("/version").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.reason, "No ticket");
    assert!(r.body.is_empty(), "{:?}", r.text());
    // auth comes before routing: an unknown path is still a 401
    let r = Client::with_auth(&sim, None).get("/no/such/path").await;
    assert_eq!(r.status, 401);
    // an empty token value counts as no credentials
    let r = Client::with_auth(&sim, Some("PVEAPIToken=".into()))
        .get("/version")
        .await;
    assert_eq!(r.reason, "No ticket");
}

#[tokio::test]
async fn bad_secret_or_unknown_token_gets_401_authentication_failed() {
    let sim = sim().await;
    for client in [
        Client::token(&sim, DEFAULT_TOKEN_ID, "wrong"),
        Client::token(&sim, "felhom@pve!other", DEFAULT_TOKEN_SECRET),
        Client::with_auth(&sim, Some("PVEAPIToken=no-equals-sign".into())),
    ] {
        let r = client.get("/version").await;
        assert_eq!(r.status, 401);
        assert_eq!(r.reason, "Authentication failed!");
        assert!(r.body.is_empty());
        assert_eq!(r.headers["connection"], "close");
    }
    assert_eq!(sim.state().requests("GET", "/version"), 3);
}

#[tokio::test]
async fn both_header_forms_work_and_the_split_is_on_the_last_equals_sign() {
    let sim = sim_with(
        SimConfig::default().token(
            TokenSpec::new("eq@pve!tok", "x=y")
                .acl(Acl::new("/", &["Sys.Audit"], true))
                .user_acl(Acl::new("/", &["Sys.Audit"], true)),
        ),
    )
    .await;
    let spaced = format!("PVEAPIToken {DEFAULT_TOKEN_ID}={DEFAULT_TOKEN_SECRET}");
    let r = Client::with_auth(&sim, Some(spaced)).get("/version").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.data()["version"], "9.1.2");
    assert_eq!(r.data()["release"], "9.1");
    // "eq@pve!tok=x=y" splits into "eq@pve!tok=x" and "y", as PVE's greedy regex does
    let r = Client::token(&sim, "eq@pve!tok", "x=y")
        .get("/version")
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test(start_paused = true)]
async fn failed_authentication_is_delayed_when_configured() {
    let sim = sim_with(SimConfig::default().auth_failure_delay(Duration::from_secs(3))).await;
    let client = Client::token(&sim, DEFAULT_TOKEN_ID, "wrong");
    let t0 = tokio::time::Instant::now();
    let r = client.get("/version").await;
    assert_eq!(r.status, 401);
    assert!(t0.elapsed() >= Duration::from_secs(3), "{:?}", t0.elapsed());
    let t1 = tokio::time::Instant::now();
    assert_eq!(Client::new(&sim).get("/version").await.status, 200);
    assert!(t1.elapsed() < Duration::from_secs(3));
}
