//! Trust over real TLS on loopback: a server presenting rcgen-made certificates, the client
//! built the way the agent builds it. The certificates are what operators make with
//! `openssl req -x509` (self-signed, `CA:TRUE`), a plain self-signed leaf, and variants.

use std::sync::Arc;
use std::time::Duration;

use felhom_http::{
    Fingerprint, HttpError, HttpRequest, HttpsClient, HttpsConfig, TlsFailure, TlsTrust,
};
use http::Method;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A certificate and the key it was made for.
struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    pem: String,
}

/// Like `openssl req -x509 -newkey … -subj /CN=hub -addext subjectAltName=…`: self-signed with
/// `basicConstraints=critical,CA:TRUE`, valid from `from` to `until` (years).
fn openssl_style(names: &[&str], from: i32, until: i32) -> Identity {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "hub");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(until, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    Identity {
        pem: cert.pem(),
        cert: cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    }
}

fn hub_cert() -> Identity {
    openssl_style(&["127.0.0.1"], 2020, 2090)
}

/// Presents `cert` signed with `key`, whether or not they belong together (the impostor).
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Serves `cert` with `key` on 127.0.0.1, answering every request `200 ok`; returns the URL.
async fn serve(cert: &CertificateDer<'static>, key: &PrivateKeyDer<'static>) -> String {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signer = rustls::crypto::ring::sign::any_supported_type(key).unwrap();
    let certified = Arc::new(CertifiedKey::new(vec![cert.clone()], signer));
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(certified)));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    format!("https://{addr}/")
}

fn client(trust: TlsTrust) -> HttpsClient {
    HttpsClient::new(HttpsConfig {
        trust,
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        max_body_bytes: 1024,
        user_agent: "tls-trust-test".into(),
    })
    .unwrap()
}

/// A CA file holding `pems`, kept alive with its directory.
fn ca_file(pems: &[&str]) -> (tempfile::TempDir, TlsTrust) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, pems.concat()).unwrap();
    (dir, TlsTrust::CaFile(path))
}

async fn get(trust: TlsTrust, url: &str) -> Result<String, HttpError> {
    let resp = client(trust)
        .send(HttpRequest::new(Method::GET, url))
        .await?;
    assert_eq!(resp.status, 200);
    Ok(String::from_utf8(resp.body.to_vec()).unwrap())
}

fn refusal(err: HttpError) -> TlsFailure {
    let text = err.to_string();
    assert!(
        !text.contains("OtherError") && !text.contains("Other("),
        "a refusal is told in words: {text}"
    );
    assert!(err.never_sent(), "{err}");
    match err {
        HttpError::Tls { kind, .. } => kind,
        other => panic!("not a tls failure: {other}"),
    }
}

#[tokio::test]
async fn an_openssl_style_self_signed_ca_cert_is_reachable_through_ca_file_and_pin() {
    let hub = hub_cert();
    let url = serve(&hub.cert, &hub.key).await;
    let (_dir, trust) = ca_file(&[&hub.pem]);
    assert_eq!(get(trust, &url).await.unwrap(), "ok");
    let pinned = TlsTrust::Pinned(vec![Fingerprint::of_der(&hub.cert)]);
    assert_eq!(get(pinned, &url).await.unwrap(), "ok");
}

#[tokio::test]
async fn the_server_cert_among_other_cas_in_the_file_is_found() {
    let hub = hub_cert();
    let other = hub_cert();
    let url = serve(&hub.cert, &hub.key).await;
    let (_dir, trust) = ca_file(&[&other.pem, &hub.pem]);
    assert_eq!(get(trust, &url).await.unwrap(), "ok");
}

#[tokio::test]
async fn a_different_self_signed_ca_cert_is_refused_in_plain_words() {
    let hub = hub_cert();
    let impostor = hub_cert();
    let url = serve(&impostor.cert, &impostor.key).await;
    let (_dir, trust) = ca_file(&[&hub.pem]);
    let err = get(trust, &url).await.unwrap_err();
    let text = err.to_string();
    let seen = Fingerprint::of_der(&impostor.cert);
    assert_eq!(
        refusal(err),
        TlsFailure::CaCertificateAsServer { seen: Some(seen) }
    );
    assert!(
        text.contains(
            "is a CA certificate presented as a server certificate and is not in ca_file"
        ),
        "{text}"
    );
    assert!(text.contains(&seen.to_string()), "{text}");

    // Through a pin of the real one, the impostor is a pin mismatch naming what it saw.
    let err = get(TlsTrust::Pinned(vec![Fingerprint::of_der(&hub.cert)]), &url)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(refusal(err), TlsFailure::PinMismatch { seen });
    assert!(text.contains(&seen.to_string()), "{text}");
}

#[tokio::test]
async fn an_expired_byte_identical_cert_is_still_refused() {
    let old = openssl_style(&["127.0.0.1"], 2000, 2001);
    let url = serve(&old.cert, &old.key).await;
    let (_dir, trust) = ca_file(&[&old.pem]);
    let err = get(trust, &url).await.unwrap_err();
    let text = err.to_string();
    assert_eq!(
        refusal(err),
        TlsFailure::Expired {
            seen: Some(Fingerprint::of_der(&old.cert)),
            not_after: Some(978_307_200),
        }
    );
    assert!(
        text.contains("has expired (valid until 2001-01-01T00:00:00Z)"),
        "{text}"
    );

    let future = openssl_style(&["127.0.0.1"], 2080, 2090);
    let url = serve(&future.cert, &future.key).await;
    let (_dir, trust) = ca_file(&[&future.pem]);
    let err = get(trust, &url).await.unwrap_err();
    assert!(
        matches!(refusal(err), TlsFailure::NotYetValid { .. }),
        "not yet valid"
    );
}

#[tokio::test]
async fn a_byte_identical_cert_for_another_name_is_refused() {
    let named = openssl_style(&["hub.example"], 2020, 2090);
    let url = serve(&named.cert, &named.key).await;
    let (_dir, trust) = ca_file(&[&named.pem]);
    let err = get(trust, &url).await.unwrap_err();
    let text = err.to_string();
    match refusal(err) {
        TlsFailure::NameMismatch {
            expected,
            presented,
        } => {
            assert_eq!(expected, "127.0.0.1");
            assert!(
                presented.iter().any(|p| p.contains("hub.example")),
                "{presented:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(text.contains("is not valid for 127.0.0.1"), "{text}");
}

#[tokio::test]
async fn an_impostor_replaying_the_listed_cert_without_its_key_is_refused() {
    let hub = hub_cert();
    let stranger = hub_cert();
    let url = serve(&hub.cert, &stranger.key).await;
    let (_dir, trust) = ca_file(&[&hub.pem]);
    let err = get(trust, &url).await.unwrap_err();
    let text = err.to_string();
    assert_eq!(refusal(err), TlsFailure::BadSignature);
    assert!(text.contains("does not hold the private key"), "{text}");
    // The same through a pin.
    let err = get(TlsTrust::Pinned(vec![Fingerprint::of_der(&hub.cert)]), &url)
        .await
        .unwrap_err();
    assert_eq!(refusal(err), TlsFailure::BadSignature);
}

#[tokio::test]
async fn a_leaf_issued_by_an_unlisted_ca_is_an_unknown_issuer() {
    // A proper CA-issued leaf (not CA:TRUE) whose CA is not in the file: webpki's verdict.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let url = serve(
        leaf.der(),
        &PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
    )
    .await;
    let unrelated = hub_cert();
    let (_dir, trust) = ca_file(&[&unrelated.pem]);
    let err = get(trust, &url).await.unwrap_err();
    let text = err.to_string();
    assert_eq!(refusal(err), TlsFailure::UnknownIssuer);
    assert!(text.contains("add the issuing CA certificate"), "{text}");
    // With its CA in the file it passes (the chain path still works).
    let (_dir, trust) = ca_file(&[&ca.pem()]);
    assert_eq!(get(trust, &url).await.unwrap(), "ok");
}

/// The insecure mode is never silent: every client built with it warns (the tests' one log
/// capture, the testkit's).
#[test]
fn insecure_mode_warns_every_time_it_is_built() {
    let logs = felhom_testkit::logs::LogCapture::start();
    TlsTrust::InsecureSkipVerify.client_config().unwrap();
    TlsTrust::InsecureSkipVerify.client_config().unwrap();
    let text = logs.text();
    let n = text
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("insecure_skip_verify"))
        .count();
    assert_eq!(n, 2, "expected 2 warnings:\n{text}");
}
