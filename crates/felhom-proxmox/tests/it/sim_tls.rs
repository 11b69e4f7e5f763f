//! TLS trust of the real `PveClient` against real simulator certificates: the pin accepted, a
//! wrong pin refused naming the fingerprint seen, the cluster CA file accepted, system roots
//! refusing the self-made CA, insecure mode only when named (and loudly), and an impostor
//! replaying the pinned certificate without its key refused.

use std::sync::Arc;

use felhom_proxmox::{
    ApiToken, Fingerprint, HttpError, ProxmoxApi, ProxmoxError, PveClient, PveClientConfig, Secret,
    TlsFailure, TlsTrust,
};
use felhom_pve_sim::{DEFAULT_TOKEN_ID, DEFAULT_TOKEN_SECRET};
use rustls::pki_types::{CertificateDer, ServerName};

use crate::fixture::{client, client_with, fingerprint, pinned, sim, ClientOpts, LogCapture};
use crate::support::{json, Identity, Server};

fn with_trust(trust: TlsTrust) -> ClientOpts {
    ClientOpts {
        trust: Some(trust),
        ..Default::default()
    }
}

fn tls_failure(err: &ProxmoxError) -> &TlsFailure {
    match err {
        ProxmoxError::Http(HttpError::Tls { kind, .. }) => kind,
        other => panic!("expected a tls failure, got {other:?}"),
    }
}

#[tokio::test]
async fn the_pinned_fingerprint_is_accepted_alone_or_among_others() {
    let sim = sim().await;
    assert_eq!(client(&sim).version().await.unwrap().version, "9.1.2");
    // Re-pinning during a certificate renewal: old and new pins side by side.
    let old = Identity::self_signed().fingerprint();
    let pve = client_with(
        &sim,
        with_trust(TlsTrust::Pinned(vec![old, fingerprint(&sim)])),
    );
    assert!(pve.nodes().await.is_ok());
}

#[tokio::test]
async fn a_wrong_pin_is_refused_naming_the_fingerprint_seen() {
    let a = sim().await;
    let b = sim().await;
    assert_ne!(a.fingerprint(), b.fingerprint());
    // Pinned to a, talking to b.
    let pve = client_with(&b, with_trust(pinned(&a)));
    let err = pve.version().await.unwrap_err();
    assert_eq!(
        tls_failure(&err),
        &TlsFailure::PinMismatch {
            seen: fingerprint(&b)
        }
    );
    let text = err.to_string();
    assert!(text.contains(&b.fingerprint()), "{text}");
    assert!(text.contains("matches no pinned fingerprint"), "{text}");
    assert!(err.never_sent() && !err.is_retryable());
    assert_eq!(b.state().total_requests(), 0, "no request reached b");
}

#[tokio::test]
async fn the_cluster_ca_file_is_accepted_and_another_clusters_is_not() {
    let a = sim().await;
    let b = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let a_ca = dir.path().join("pve-root-ca.pem");
    std::fs::write(&a_ca, a.ca_pem()).unwrap();

    let pve = client_with(&a, with_trust(TlsTrust::CaFile(a_ca.clone())));
    assert_eq!(pve.nodes().await.unwrap()[0].node, "pve");

    let err = client_with(&b, with_trust(TlsTrust::CaFile(a_ca)))
        .version()
        .await
        .unwrap_err();
    assert_eq!(tls_failure(&err), &TlsFailure::UnknownIssuer);
    assert!(err.never_sent());
    assert_eq!(b.state().total_requests(), 0);
}

#[tokio::test]
async fn system_roots_refuse_the_nodes_own_ca() {
    let sim = sim().await;
    let pve = client_with(&sim, with_trust(TlsTrust::SystemRoots));
    let err = pve.version().await.unwrap_err();
    assert_eq!(tls_failure(&err), &TlsFailure::UnknownIssuer, "{err}");
    assert!(
        err.to_string()
            .contains("certificate issuer is not trusted"),
        "{err}"
    );
    assert_eq!(sim.state().total_requests(), 0);
}

#[tokio::test]
async fn insecure_mode_connects_only_when_named_and_warns() {
    let sim = sim().await;
    let logs = LogCapture::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, sim.ca_pem()).unwrap();
    // Every other mode verifies and stays quiet about it.
    for trust in [pinned(&sim), TlsTrust::CaFile(ca), TlsTrust::SystemRoots] {
        let _ = client_with(&sim, with_trust(trust));
    }
    assert!(
        !logs.text().contains("insecure_skip_verify"),
        "{}",
        logs.text()
    );

    let pve = client_with(&sim, with_trust(TlsTrust::InsecureSkipVerify));
    assert_eq!(pve.version().await.unwrap().version, "9.1.2");
    let text = logs.text();
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("insecure_skip_verify"))
        .collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        warnings[0].contains("verification is disabled"),
        "{}",
        warnings[0]
    );
}

/// The leaf a simulator serves, read off a handshake.
async fn served_leaf(sim: &felhom_pve_sim::PveSim) -> CertificateDer<'static> {
    let config = pinned(sim).client_config().unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// The simulator always serves its own key, so the impostor is the small test server from
/// `support`, presenting the simulator's real leaf (pinned by the client) signed with a key
/// that is not the leaf's.
#[tokio::test]
async fn an_impostor_replaying_the_pinned_certificate_without_its_key_is_refused() {
    let sim = sim().await;
    let leaf = served_leaf(&sim).await;
    assert_eq!(Fingerprint::of_der(&leaf), fingerprint(&sim));

    let other_key = Identity::self_signed().key;
    let impostor = Server::start(
        &leaf,
        &other_key,
        vec![json("200 OK", r#"{"data":{"version":"9.1.2"}}"#)],
    )
    .await;
    // The same pin and token, pointed at the impostor's address.
    let token = ApiToken::new(DEFAULT_TOKEN_ID, Secret::new(DEFAULT_TOKEN_SECRET)).unwrap();
    let cfg = PveClientConfig::new(impostor.url(), "pve", token, pinned(&sim));
    let fooled = PveClient::new(cfg).unwrap();
    let err = fooled.version().await.unwrap_err();
    let kind = tls_failure(&err);
    assert!(
        matches!(kind, TlsFailure::BadSignature),
        "the handshake signature must be checked, not only the fingerprint: {kind:?}"
    );
    assert!(err.never_sent());
    assert!(
        impostor.requests().is_empty(),
        "nothing was sent to the impostor"
    );
    // The genuine node still passes with the same pin.
    assert!(client(&sim).version().await.is_ok());
}
