//! A few-line HTTPS test server on 127.0.0.1: tokio-rustls over a raw socket, canned HTTP/1.1
//! answers, every request recorded.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use felhom_proxmox::Fingerprint;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A certificate and its key, generated fresh.
pub struct Identity {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
    pub pem: String,
}

impl Identity {
    pub fn self_signed() -> Self {
        let ck = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .unwrap();
        Identity {
            pem: ck.cert.pem(),
            cert: ck.cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()).into(),
        }
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_der(&self.cert)
    }
}

/// A CA and a leaf for 127.0.0.1 it signed, as PVE's cluster CA signs the node certificate.
pub fn ca_and_leaf(cluster: &str) -> (Identity, Identity) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Proxmox Virtual Environment");
    ca_params
        .distinguished_name
        .push(rcgen::DnType::OrganizationalUnitName, cluster);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let ca_id = Identity {
        pem: ca.pem(),
        cert: ca.der().clone(),
        key: PrivatePkcs8KeyDer::from(Vec::new()).into(),
    };
    let leaf_id = Identity {
        pem: leaf.pem(),
        cert: leaf.der().clone(),
        key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
    };
    (ca_id, leaf_id)
}

/// Presents `cert` signed with `key`, whether or not they belong together (the impostor case).
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// What the server does with a request.
#[derive(Clone)]
pub enum Reply {
    /// Write these raw bytes (a whole HTTP/1.1 response) and close.
    Raw(String),
    /// Never answer.
    Silent,
}

/// A JSON answer with the given status line.
pub fn json(status_line: &str, body: &str) -> Reply {
    Reply::Raw(format!(
        "HTTP/1.1 {status_line}\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ))
}

pub struct Server {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Serves `cert` with `key` on 127.0.0.1, answering requests with `replies` in order (the
    /// last one repeats).
    pub async fn start(
        cert: &CertificateDer<'static>,
        key: &PrivateKeyDer<'static>,
        replies: Vec<Reply>,
    ) -> Server {
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
        let requests = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen, replies) = (acceptor.clone(), seen.clone(), replies.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Some(request) = read_request(&mut tls).await else {
                        return;
                    };
                    seen.lock().unwrap().push(request);
                    let reply = {
                        let mut q = replies.lock().unwrap();
                        if q.len() > 1 {
                            q.pop_front().unwrap()
                        } else {
                            q.front().cloned().unwrap()
                        }
                    };
                    match reply {
                        Reply::Raw(raw) => {
                            let _ = tls.write_all(raw.as_bytes()).await;
                            let _ = tls.shutdown().await;
                        }
                        Reply::Silent => std::future::pending::<()>().await,
                    }
                });
            }
        });
        Server { addr, requests }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads one request: the head, then a Content-Length body.
async fn read_request<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap_or(0));
            if buf.len() >= end + 4 + len {
                return Some(String::from_utf8_lossy(&buf).into_owned());
            }
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
