//! `HttpsClient` and `PveClient` over real TLS on 127.0.0.1: pinning (match, mismatch naming
//! the fingerprint seen, an impostor without the key), CA-file trust, the wire format PVE
//! needs, and the failure classes (body limit, timeout, refused connection, 401).

use std::collections::BTreeMap;
use std::time::Duration;

use felhom_proxmox::{
    ApiToken, ConfigUpdate, HttpError, HttpRequest, HttpsClient, HttpsConfig, ProxmoxApi,
    ProxmoxError, PveClient, PveClientConfig, RestoreRequest, Secret, SetConfigOutcome, TlsFailure,
    TlsTrust, Upid, VzdumpRequest,
};
use http::Method;

use crate::support::{ca_and_leaf, json, Identity, Reply, Server};

const SECRET: &str = "5f0c1e2d-3b4a-4968-8776-a5b4c3d2e1f0";

fn client(url: &str, trust: TlsTrust) -> PveClient {
    let token = ApiToken::new("felhom@pve!agent", Secret::new(SECRET)).unwrap();
    let mut cfg = PveClientConfig::new(url, "pve", token, trust);
    cfg.timeout = Duration::from_secs(5);
    PveClient::new(cfg).unwrap()
}

fn https(trust: TlsTrust, timeout: Duration, max_body: usize) -> HttpsClient {
    HttpsClient::new(HttpsConfig {
        trust,
        connect_timeout: Duration::from_secs(2),
        request_timeout: timeout,
        max_body_bytes: max_body,
        user_agent: "felhom-test".into(),
    })
    .unwrap()
}

#[tokio::test]
async fn pinned_client_speaks_what_pve_expects() {
    let id = Identity::self_signed();
    let server = Server::start(
        &id.cert,
        &id.key,
        vec![
            json("200 OK", r#"{"data":{"version":"9.0.3","release":"9.0","repoid":"c0ffee42"}}"#),
            json(
                "403 Permission check failed (/vms/100, VM.Config.Options)",
                "{\"data\":null,\"message\":\"Permission check failed (/vms/100, VM.Config.Options)\\n\"}",
            ),
            json("200 OK", r#"{"data":null}"#),
        ],
    )
    .await;
    let pve = client(&server.url(), TlsTrust::Pinned(vec![id.fingerprint()]));

    assert_eq!(pve.version().await.unwrap().version, "9.0.3");
    let update = ConfigUpdate {
        set: BTreeMap::from([("description".to_owned(), "web & api".to_owned())]),
        ..Default::default()
    };
    let err = pve.set_config(100, &update).await.unwrap_err();
    let p = err.missing_privilege().expect("403 names the privilege");
    assert_eq!(
        (p.path.as_str(), p.privileges[0].as_str()),
        ("/vms/100", "VM.Config.Options")
    );
    assert_eq!(
        pve.set_config(100, &update).await.unwrap(),
        SetConfigOutcome::Applied
    );

    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    let get = reqs[0].to_lowercase();
    assert!(
        reqs[0].starts_with("GET /api2/json/version HTTP/1.1\r\n"),
        "{}",
        reqs[0]
    );
    assert!(
        !get.contains("content-length") && !get.contains("transfer-encoding"),
        "no body on GET: {get}"
    );
    assert!(
        reqs[0].contains(&format!(
            "authorization: PVEAPIToken=felhom@pve!agent={SECRET}\r\n"
        )),
        "{}",
        reqs[0]
    );
    let put = &reqs[1];
    assert!(
        put.starts_with("PUT /api2/json/nodes/pve/lxc/100/config HTTP/1.1\r\n"),
        "{put}"
    );
    assert!(
        put.to_lowercase().contains("content-length: 23\r\n"),
        "{put}"
    );
    assert!(
        !put.to_lowercase().contains("transfer-encoding"),
        "never chunked: {put}"
    );
    assert!(
        put.contains("content-type: application/x-www-form-urlencoded\r\n"),
        "{put}"
    );
    assert!(put.ends_with("\r\n\r\ndescription=web+%26+api"), "{put}");
    assert!(!format!("{err} {err:?}").contains(SECRET));
}

#[tokio::test]
async fn pin_mismatch_names_the_fingerprint_seen() {
    let id = Identity::self_signed();
    let other = Identity::self_signed();
    let server = Server::start(&id.cert, &id.key, vec![json("200 OK", r#"{"data":{}}"#)]).await;
    let pve = client(&server.url(), TlsTrust::Pinned(vec![other.fingerprint()]));
    let err = pve.version().await.unwrap_err();
    match &err {
        ProxmoxError::Http(HttpError::Tls {
            kind: TlsFailure::PinMismatch { seen },
            ..
        }) => {
            assert_eq!(*seen, id.fingerprint());
        }
        other => panic!("expected a pin mismatch, got {other:?}"),
    }
    assert!(err.never_sent());
    assert!(
        err.to_string().contains(&id.fingerprint().to_string()),
        "{err}"
    );
    assert!(server.requests().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn an_impostor_with_the_pinned_certificate_but_not_its_key_is_refused() {
    let real = Identity::self_signed();
    let impostor_key = Identity::self_signed().key;
    let server = Server::start(
        &real.cert,
        &impostor_key,
        vec![json("200 OK", r#"{"data":{"version":"x"}}"#)],
    )
    .await;
    let pve = client(&server.url(), TlsTrust::Pinned(vec![real.fingerprint()]));
    let err = pve.version().await.unwrap_err();
    assert!(
        matches!(
            &err,
            ProxmoxError::Http(HttpError::Tls {
                kind: TlsFailure::BadSignature,
                ..
            })
        ),
        "the handshake signature must be checked: {err:?}"
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn ca_file_trust_and_unknown_issuer() {
    let (ca, leaf) = ca_and_leaf("cluster-a");
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("pve-root-ca.pem");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    let server = Server::start(
        &leaf.cert,
        &leaf.key,
        vec![json("200 OK", r#"{"data":{"version":"8.4.1"}}"#)],
    )
    .await;
    let pve = client(&server.url(), TlsTrust::CaFile(ca_path));
    assert_eq!(pve.version().await.unwrap().version, "8.4.1");

    // Another cluster's CA: same CN, another OU, as PVE generates them.
    let (other_ca, _) = ca_and_leaf("cluster-b");
    let other_path = dir.path().join("other.pem");
    std::fs::write(&other_path, &other_ca.pem).unwrap();
    let err = client(&server.url(), TlsTrust::CaFile(other_path))
        .version()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ProxmoxError::Http(HttpError::Tls {
                kind: TlsFailure::UnknownIssuer,
                ..
            })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn oversized_bodies_are_cut_off() {
    let id = Identity::self_signed();
    let big = format!(r#"{{"data":"{}"}}"#, "x".repeat(4096));
    let server = Server::start(&id.cert, &id.key, vec![json("200 OK", &big)]).await;
    let c = https(
        TlsTrust::Pinned(vec![id.fingerprint()]),
        Duration::from_secs(5),
        1024,
    );
    let err = c
        .send(HttpRequest::new(
            Method::GET,
            format!("{}/api2/json/x", server.url()),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HttpError::BodyTooLarge { limit: 1024, .. }),
        "{err}"
    );
    assert!(!err.never_sent());
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let id = Identity::self_signed();
    let server = Server::start(&id.cert, &id.key, vec![Reply::Silent]).await;
    let c = https(
        TlsTrust::Pinned(vec![id.fingerprint()]),
        Duration::from_millis(300),
        1024,
    );
    let err = c
        .send(HttpRequest::new(
            Method::POST,
            format!("{}/api2/json/x", server.url()),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::Timeout { .. }), "{err}");
    assert!(
        !err.never_sent() && err.is_transient(),
        "the server may have acted"
    );
}

#[tokio::test]
async fn a_refused_connection_was_never_sent() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = https(TlsTrust::InsecureSkipVerify, Duration::from_secs(5), 1024);
    let err = c
        .send(HttpRequest::new(
            Method::GET,
            format!("https://127.0.0.1:{port}/"),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, HttpError::Connect { .. }), "{err}");
    assert!(err.never_sent() && err.is_transient());
}

#[tokio::test]
async fn unauthorized_never_shows_the_secret() {
    let id = Identity::self_signed();
    let server = Server::start(
        &id.cert,
        &id.key,
        vec![Reply::Raw(
            "HTTP/1.1 401 Authentication failed!\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .into(),
        )],
    )
    .await;
    let pve = client(&server.url(), TlsTrust::Pinned(vec![id.fingerprint()]));
    let err = pve.nodes().await.unwrap_err();
    assert!(
        matches!(&err, ProxmoxError::Unauthorized { reason: Some(r), .. } if r == "Authentication failed!"),
        "{err:?}"
    );
    assert!(server.requests()[0].contains(SECRET), "the secret was sent");
    for text in [err.to_string(), format!("{err:?}"), format!("{pve:?}")] {
        assert!(!text.contains(SECRET), "{text}");
    }
}

#[tokio::test]
async fn every_operation_is_implemented_by_the_client() {
    let id = Identity::self_signed();
    // `data: null` for everything: lists decode as empty, the rest fail to decode, but no
    // operation may fall back to the trait's `Unsupported` default.
    let server = Server::start(&id.cert, &id.key, vec![json("200 OK", r#"{"data":null}"#)]).await;
    let pve = client(&server.url(), TlsTrust::Pinned(vec![id.fingerprint()]));
    let upid: Upid = "UPID:pve:00188D93:0186372E:69B66E35:vzdump:100:felhom@pve!agent:"
        .parse()
        .unwrap();
    let restore = RestoreRequest {
        vmid: 100,
        archive: "local:backup/vzdump-lxc-100-2025_01_02-03_04_05.tar.zst".into(),
        ..Default::default()
    };
    let dump = VzdumpRequest {
        vmid: 100,
        storage: "local".into(),
        ..Default::default()
    };
    let update = ConfigUpdate {
        delete: vec!["tags".into()],
        ..Default::default()
    };
    let results: Vec<(&str, Result<(), ProxmoxError>)> = vec![
        ("version", pve.version().await.map(drop)),
        ("nodes", pve.nodes().await.map(drop)),
        ("node_status", pve.node_status().await.map(drop)),
        ("list_lxc", pve.list_lxc().await.map(drop)),
        ("guest_status", pve.guest_status(100).await.map(drop)),
        ("guest_config", pve.guest_config(100).await.map(drop)),
        ("list_storage", pve.list_storage().await.map(drop)),
        ("node_storage", pve.node_storage().await.map(drop)),
        (
            "storage_content",
            pve.storage_content("local", Some("backup"), Some(100))
                .await
                .map(drop),
        ),
        ("task_status", pve.task_status(&upid).await.map(drop)),
        ("task_log", pve.task_log(&upid, 0, 50).await.map(drop)),
        ("permissions", pve.permissions().await.map(drop)),
        ("list_snapshots", pve.list_snapshots(100).await.map(drop)),
        ("restore_lxc", pve.restore_lxc(&restore).await.map(drop)),
        ("vzdump", pve.vzdump(&dump).await.map(drop)),
        (
            "snapshot",
            pve.snapshot(100, "felhom-test", None).await.map(drop),
        ),
        (
            "rollback",
            pve.rollback(100, "felhom-test", false).await.map(drop),
        ),
        (
            "delete_snapshot",
            pve.delete_snapshot(100, "felhom-test").await.map(drop),
        ),
        ("start", pve.start(100).await.map(drop)),
        ("stop", pve.stop(100).await.map(drop)),
        ("set_config", pve.set_config(100, &update).await.map(drop)),
    ];
    for (op, result) in &results {
        if let Err(e) = result {
            assert!(!matches!(e, ProxmoxError::Unsupported { .. }), "{op}: {e}");
            assert!(matches!(e, ProxmoxError::Decode { .. }), "{op}: {e}");
        }
    }
    assert_eq!(
        server.requests().len(),
        results.len(),
        "every operation reached the server"
    );
    let lines: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.lines().next().unwrap().to_owned())
        .collect();
    assert!(
        lines.contains(
            &"DELETE /api2/json/nodes/pve/lxc/100/snapshot/felhom-test HTTP/1.1".to_owned()
        ),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("GET /api2/json/nodes/pve/tasks/UPID%3Apve%3A00188D93")),
        "{lines:?}"
    );
}
