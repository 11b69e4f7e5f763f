//! A raw HTTPS test client: sends exactly what a test says and returns status, reason phrase,
//! headers and body untouched.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use felhom_pve_sim::{HubSim, PveSim, SimConfig, DEFAULT_TOKEN_ID, DEFAULT_TOKEN_SECRET};
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::Value;

/// A rustls client config (ring provider) trusting only `ca_pem`.
pub fn tls_config(ca_pem: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("ca pem")).expect("add ca");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// The answer as received.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub reason: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.text()))
    }

    pub fn data(&self) -> Value {
        self.json()["data"].clone()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn upid(&self) -> String {
        assert_eq!(self.status, 200, "{} {}", self.reason, self.text());
        self.data()
            .as_str()
            .expect("data is a UPID string")
            .to_string()
    }
}

pub struct Client {
    http: HttpClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    /// Prepended to paths that do not start with it: `/api2/json` for PVE, nothing for the hub.
    prefix: &'static str,
    auth: Option<String>,
}

pub fn token_header(id: &str, secret: &str) -> String {
    format!("PVEAPIToken={id}={secret}")
}

/// Starts a simulator with short tasks.
pub async fn sim() -> PveSim {
    sim_with(SimConfig::default()).await
}

pub async fn sim_with(config: SimConfig) -> PveSim {
    PveSim::start(config.task_duration(Duration::from_millis(20)))
        .await
        .expect("simulator starts")
}

impl Client {
    /// Authenticated with the default token.
    pub fn new(sim: &PveSim) -> Client {
        Client::with_auth(
            sim,
            Some(token_header(DEFAULT_TOKEN_ID, DEFAULT_TOKEN_SECRET)),
        )
    }

    pub fn token(sim: &PveSim, id: &str, secret: &str) -> Client {
        Client::with_auth(sim, Some(token_header(id, secret)))
    }

    pub fn with_auth(sim: &PveSim, auth: Option<String>) -> Client {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(&sim.ca_pem()))
            .https_only()
            .enable_http1()
            .build();
        Client {
            http: HttpClient::builder(TokioExecutor::new()).build(https),
            base: sim.base_url(),
            prefix: "/api2/json",
            auth,
        }
    }

    /// For the hub simulator: its CA, its base URL, no prefix and no auth (tests add headers).
    pub fn for_hub(hub: &HubSim) -> Client {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(&hub.ca_pem()))
            .https_only()
            .enable_http1()
            .build();
        Client {
            http: HttpClient::builder(TokioExecutor::new()).build(https),
            base: hub.base_url(),
            prefix: "",
            auth: None,
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("/api2") {
            format!("{}{path}", self.base)
        } else {
            format!("{}{}{path}", self.base, self.prefix)
        }
    }

    /// Sends a request; `body` is (content type, bytes); `headers` are added as given.
    pub async fn try_send(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, &str)],
    ) -> Result<Resp, hyper_util::client::legacy::Error> {
        let mut req = http::Request::builder().method(method).uri(self.url(path));
        if let Some(auth) = &self.auth {
            req = req.header("authorization", auth);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some((ct, bytes)) => {
                req = req.header("content-type", ct);
                Full::new(Bytes::from(bytes))
            }
            None => Full::new(Bytes::new()),
        };
        let resp = self.http.request(req.body(body).expect("request")).await?;
        let status = resp.status();
        let reason = resp
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string());
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        Ok(Resp {
            status: status.as_u16(),
            reason,
            headers,
            body,
        })
    }

    pub async fn send(&self, method: &str, path: &str, body: Option<(&str, Vec<u8>)>) -> Resp {
        self.try_send(method, path, body, &[])
            .await
            .expect("request succeeds")
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send("GET", path, None).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send("DELETE", path, None).await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Resp {
        self.send("POST", path, Some(form_body(form))).await
    }

    pub async fn put(&self, path: &str, form: &[(&str, &str)]) -> Resp {
        self.send("PUT", path, Some(form_body(form))).await
    }

    /// Task status of a UPID (percent-encoded in the path, as pve-api-types sends it).
    pub async fn task_status(&self, upid: &str) -> Resp {
        self.get(&format!("/nodes/pve/tasks/{}/status", encode(upid)))
            .await
    }

    /// Polls every 5 ms (tokio time) until the task stopped; returns its status data.
    pub async fn wait_task(&self, upid: &str) -> Value {
        for _ in 0..2000 {
            let r = self.task_status(upid).await;
            if r.status == 200 && r.data()["status"] == "stopped" {
                return r.data();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("task {upid} did not stop");
    }

    /// The whole log of a task as text lines.
    pub async fn task_log(&self, upid: &str) -> Vec<String> {
        let r = self
            .get(&format!("/nodes/pve/tasks/{}/log?limit=0", encode(upid)))
            .await;
        r.data()
            .as_array()
            .expect("log array")
            .iter()
            .map(|l| l["t"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

pub fn form_body(form: &[(&str, &str)]) -> (&'static str, Vec<u8>) {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form {
        s.append_pair(k, v);
    }
    ("application/x-www-form-urlencoded", s.finish().into_bytes())
}

pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
