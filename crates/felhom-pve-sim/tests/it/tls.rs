//! TLS: only the leaf is served, its fingerprint is what `/nodes` reports, and two simulators
//! have different certificates.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use sha2::{Digest, Sha256};

use crate::client::{sim, tls_config, Client};

async fn served_chain(sim: &felhom_pve_sim::PveSim) -> Vec<Vec<u8>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(&sim.ca_pem())));
    let tcp = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .expect("handshake with the sim's CA");
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .unwrap()
        .iter()
        .map(|c| c.as_ref().to_vec())
        .collect()
}

#[tokio::test]
async fn only_the_leaf_is_served_and_nodes_reports_its_fingerprint() {
    let sim = sim().await;
    let chain = served_chain(&sim).await;
    assert_eq!(chain.len(), 1, "PVE serves only pve-ssl.pem");
    let fp = Sha256::digest(&chain[0])
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    assert_eq!(fp, sim.fingerprint());
    let nodes = Client::new(&sim).get("/nodes").await.data();
    assert_eq!(nodes[0]["ssl_fingerprint"], fp.as_str());
    assert_eq!(nodes[0]["node"], "pve");
    assert_eq!(nodes[0]["status"], "online");
    assert!(nodes[0]["maxmem"].is_u64());
    assert!(sim.base_url().starts_with("https://127.0.0.1:"));
}

#[tokio::test]
async fn another_simulator_has_another_certificate() {
    let a = sim().await;
    let b = sim().await;
    assert_ne!(a.fingerprint(), b.fingerprint());
    // a client trusting a's CA refuses b
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(&a.ca_pem())));
    let tcp = tokio::net::TcpStream::connect(b.addr()).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    assert!(connector.connect(name, tcp).await.is_err());
    b.shutdown().await;
    assert!(tokio::net::TcpStream::connect(a.addr()).await.is_ok());
}

#[tokio::test]
async fn node_status_has_pve_91_shapes() {
    let sim = sim().await;
    let st = Client::new(&sim).get("/nodes/pve/status").await.data();
    assert_eq!(st["loadavg"], serde_json::json!(["0.16", "0.10", "0.02"]));
    assert!(st["cpuinfo"]["mhz"].is_string());
    assert_eq!(st["cpuinfo"]["cpus"], 8);
    assert!(st["memory"]["available"].is_u64());
    assert!(st["rootfs"]["avail"].is_u64());
    assert_eq!(st["pveversion"], "pve-manager/9.1.2/9d436f37a0ac4172");
    assert!(st["kversion"].as_str().unwrap().starts_with("Linux "));
    assert!(st["uptime"].as_u64().unwrap() > 0);
}
