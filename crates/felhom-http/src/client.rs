//! `HttpsClient`: the one HTTPS client setup of the project (PVE API and hub client).
//!
//! hyper-util's legacy client over hyper-rustls, HTTP/1.1 only (PVE's :8006 speaks nothing
//! else), bodies always sent with a Content-Length (PVE answers 501 to chunked bodies), every
//! request bounded by a timeout that covers connect, send and reading the body, and every
//! response body read with a hard size limit. Errors say whether the request may have reached
//! the server, which decides what a caller may safely do next.

use std::error::Error as StdError;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use http::{Method, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub use crate::tls::TlsFailure;
use crate::tls::{TlsConfigError, TlsTrust};

/// Settings of an [`HttpsClient`].
#[derive(Debug, Clone)]
pub struct HttpsConfig {
    /// How the server certificate is trusted.
    pub trust: TlsTrust,
    /// Limit for establishing the TCP connection.
    pub connect_timeout: Duration,
    /// Limit for one whole request: connect, TLS, send, and reading the full response body.
    pub request_timeout: Duration,
    /// Largest response body accepted; larger ones fail with [`HttpError::BodyTooLarge`].
    pub max_body_bytes: usize,
    /// Sent as `User-Agent` unless a request sets its own.
    pub user_agent: String,
}

/// The connection pool: how many idle connections are kept per host and for how long.
///
/// The defaults keep every connection a collection opens (it reads with bounded concurrency,
/// 8 by default, plus the list reads beside it) and keep them longer than the longest poll
/// interval (1 h), so a heartbeat after the first opens no new connection unless the server
/// closed it (hyper notices a closed idle connection and opens a fresh one then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Idle connections kept per host; at least the caller's read concurrency.
    pub max_idle_per_host: usize,
    /// How long an idle connection is kept.
    pub idle_timeout: Duration,
}

impl PoolSettings {
    /// Idle connections kept per host by default.
    pub const DEFAULT_MAX_IDLE_PER_HOST: usize = 32;
    /// Idle time kept by default: beyond the longest heartbeat interval (3600 s).
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(65 * 60);
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_idle_per_host: Self::DEFAULT_MAX_IDLE_PER_HOST,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// One HTTP request. The body is sent with a Content-Length; an empty body sends no body and
/// no Content-Length at all (what PVE requires of GET and DELETE).
#[derive(Clone)]
pub struct HttpRequest {
    /// HTTP method.
    pub method: Method,
    /// Absolute `https://` URL.
    pub url: String,
    /// Request headers. Mark secret-bearing values with `HeaderValue::set_sensitive(true)`.
    pub headers: HeaderMap,
    /// Request body (empty: none).
    pub body: Bytes,
}

impl HttpRequest {
    /// A request without headers or body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        HttpRequest {
            method,
            url: url.into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Sets the body and its content type.
    pub fn body(mut self, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        self.headers
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        self.body = body.into();
        self
    }
}

/// Prints header names only: values may be credentials.
impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// A complete response, body read within the size limit.
#[derive(Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// The status line's reason phrase when it is not the canonical one; PVE puts its error
    /// message there (and, before pve-http-server 5.2, only there).
    pub reason: Option<String>,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpResponse")
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// An HTTPS request failed. Each variant says whether the request may have reached the server.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The request could not be built (bad URL, header). Never sent.
    #[error("invalid request: {detail}")]
    InvalidRequest { detail: String },
    /// The connection could not be established. Never sent; safe to retry.
    #[error("connect to {url} failed: {detail}")]
    Connect { url: String, detail: String },
    /// The TLS handshake failed. Never sent; retrying will not help until trust is fixed.
    #[error("tls handshake with {url} failed: {kind}")]
    Tls { url: String, kind: TlsFailure },
    /// No complete response within the request timeout. The server may have acted.
    #[error("{method} {url} timed out after {after:?}")]
    Timeout {
        method: String,
        url: String,
        after: Duration,
    },
    /// The response body exceeded the limit. The server has acted.
    #[error("{method} {url}: response body larger than {limit} bytes")]
    BodyTooLarge {
        method: String,
        url: String,
        limit: usize,
    },
    /// The connection failed after the request was (possibly) sent. The server may have acted.
    #[error("{method} {url}: connection error: {detail}")]
    Io {
        method: String,
        url: String,
        detail: String,
    },
    /// The server's response was not valid HTTP/1.1. The server may have acted.
    #[error("{method} {url}: protocol error: {detail}")]
    Protocol {
        method: String,
        url: String,
        detail: String,
    },
}

impl HttpError {
    /// The request certainly never reached the server: repeating it cannot double an effect.
    pub fn never_sent(&self) -> bool {
        matches!(
            self,
            HttpError::InvalidRequest { .. } | HttpError::Connect { .. } | HttpError::Tls { .. }
        )
    }

    /// A transport hiccup that may go away on its own (connect failure, timeout, broken
    /// connection). For a mutation, check whether it took effect before repeating it unless
    /// [`HttpError::never_sent`] also holds.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            HttpError::Connect { .. }
                | HttpError::Timeout { .. }
                | HttpError::Io { .. }
                | HttpError::Protocol { .. }
        )
    }
}

/// The HTTPS client. Cheap to clone (shares the connection pool).
#[derive(Clone)]
pub struct HttpsClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    request_timeout: Duration,
    max_body_bytes: usize,
    user_agent: HeaderValue,
}

impl fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsClient")
            .field("request_timeout", &self.request_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("user_agent", &self.user_agent)
            .finish_non_exhaustive()
    }
}

/// Why an [`HttpsClient`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpsConfigError {
    /// The TLS trust configuration is unusable.
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    /// The user agent is not a valid header value.
    #[error("https client: user agent {0:?} is not a valid header value")]
    UserAgent(String),
    /// A zero timeout or body limit would fail every request.
    #[error("https client: {0} must be greater than zero")]
    Zero(&'static str),
}

impl HttpsClient {
    /// Builds the client with the default [`PoolSettings`] (no runtime needed here; sending
    /// needs tokio).
    pub fn new(config: HttpsConfig) -> Result<Self, HttpsConfigError> {
        Self::with_pool(config, PoolSettings::default())
    }

    /// Builds the client with these pool settings.
    pub fn with_pool(config: HttpsConfig, pool: PoolSettings) -> Result<Self, HttpsConfigError> {
        if pool.idle_timeout.is_zero() {
            return Err(HttpsConfigError::Zero("pool idle_timeout"));
        }
        if config.request_timeout.is_zero() {
            return Err(HttpsConfigError::Zero("request_timeout"));
        }
        if config.connect_timeout.is_zero() {
            return Err(HttpsConfigError::Zero("connect_timeout"));
        }
        if config.max_body_bytes == 0 {
            return Err(HttpsConfigError::Zero("max_body_bytes"));
        }
        let user_agent = HeaderValue::from_str(&config.user_agent)
            .map_err(|_| HttpsConfigError::UserAgent(config.user_agent.clone()))?;
        let tls = config.trust.client_config()?;
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(config.connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(pool.idle_timeout)
            .pool_max_idle_per_host(pool.max_idle_per_host)
            .build(https);
        Ok(HttpsClient {
            client,
            request_timeout: config.request_timeout,
            max_body_bytes: config.max_body_bytes,
            user_agent,
        })
    }

    /// Sends one request and reads the whole response (status of any kind is a response, not
    /// an error), all within the request timeout.
    pub async fn send(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let method = req.method.to_string();
        let url = req.url.clone();
        let uri: Uri = req.url.parse().map_err(|e| HttpError::InvalidRequest {
            detail: format!("url {:?}: {e}", req.url),
        })?;
        if uri.scheme_str() != Some("https") || uri.host().is_none() {
            return Err(HttpError::InvalidRequest {
                detail: format!("url {:?} is not an absolute https url", req.url),
            });
        }
        let mut request = http::Request::builder()
            .method(req.method)
            .uri(uri)
            .body(Full::new(req.body))
            .map_err(|e| HttpError::InvalidRequest {
                detail: e.to_string(),
            })?;
        *request.headers_mut() = req.headers;
        if !request.headers().contains_key(USER_AGENT) {
            request
                .headers_mut()
                .insert(USER_AGENT, self.user_agent.clone());
        }

        let started = Instant::now();
        let exchange = async {
            let resp = self
                .client
                .request(request)
                .await
                .map_err(|e| classify_client_error(&method, &url, &e))?;
            let (parts, body) = resp.into_parts();
            let reason = parts
                .extensions
                .get::<hyper::ext::ReasonPhrase>()
                .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned());
            let body = Limited::new(body, self.max_body_bytes)
                .collect()
                .await
                .map_err(|e| classify_body_error(&method, &url, self.max_body_bytes, e))?
                .to_bytes();
            Ok(HttpResponse {
                status: parts.status.as_u16(),
                reason,
                headers: parts.headers,
                body,
            })
        };
        let result = match tokio::time::timeout(self.request_timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout {
                method: method.clone(),
                url: url.clone(),
                after: self.request_timeout,
            }),
        };
        // Method, URL and outcome only: headers may hold credentials.
        match &result {
            Ok(r) => {
                tracing::debug!(%method, %url, status = r.status, elapsed = ?started.elapsed(), "https request")
            }
            Err(e) => {
                tracing::debug!(%method, %url, error = %e, elapsed = ?started.elapsed(), "https request failed")
            }
        }
        result
    }
}

/// Walks an error's causes, including the `io::Error` layers whose inner error `source()`
/// skips (hyper-rustls wraps rustls errors in two of them).
fn causes<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        out.push(e);
        if out.len() > 32 {
            break; // a cycle would be a bug elsewhere; do not spin on it
        }
        cur = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    out
}

/// The TLS failure buried in a connect error, if there is one.
pub(crate) fn tls_failure(err: &(dyn StdError + 'static)) -> Option<TlsFailure> {
    let rustls_err = causes(err)
        .into_iter()
        .find_map(|e| e.downcast_ref::<rustls::Error>())?;
    Some(match rustls_err {
        rustls::Error::InvalidCertificate(cause) => TlsFailure::from_certificate_error(cause, None),
        other => TlsFailure::Other {
            detail: format!("the handshake failed: {other}"),
        },
    })
}

/// "a: b: c" from an error and its causes, skipping repeats.
fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in causes(err) {
        let s = e.to_string();
        if !parts.iter().any(|p| p == &s) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

fn classify_client_error(
    method: &str,
    url: &str,
    err: &hyper_util::client::legacy::Error,
) -> HttpError {
    // TLS failures only count as "never sent" while connecting: that is where the handshake is.
    if err.is_connect() {
        if let Some(kind) = tls_failure(err) {
            return HttpError::Tls {
                url: url.to_owned(),
                kind,
            };
        }
        return HttpError::Connect {
            url: url.to_owned(),
            detail: chain_text(err),
        };
    }
    classify_after_connect(method, url, err, chain_text(err))
}

fn classify_after_connect(
    method: &str,
    url: &str,
    err: &(dyn StdError + 'static),
    detail: String,
) -> HttpError {
    let protocol = causes(err)
        .into_iter()
        .filter_map(|e| e.downcast_ref::<hyper::Error>())
        .any(|h| h.is_parse() || h.is_parse_status() || h.is_user());
    if protocol {
        HttpError::Protocol {
            method: method.to_owned(),
            url: url.to_owned(),
            detail,
        }
    } else {
        HttpError::Io {
            method: method.to_owned(),
            url: url.to_owned(),
            detail,
        }
    }
}

fn classify_body_error(
    method: &str,
    url: &str,
    limit: usize,
    err: Box<dyn StdError + Send + Sync>,
) -> HttpError {
    if err.downcast_ref::<LengthLimitError>().is_some() {
        return HttpError::BodyTooLarge {
            method: method.to_owned(),
            url: url.to_owned(),
            limit,
        };
    }
    let err: &(dyn StdError + 'static) = &*err;
    classify_after_connect(method, url, err, chain_text(err))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{Fingerprint, PinMismatch};
    use std::io;
    use std::sync::Arc;

    fn wrap_twice(e: rustls::Error) -> io::Error {
        io::Error::other(io::Error::new(io::ErrorKind::InvalidData, e))
    }

    #[test]
    fn tls_failures_are_found_under_two_io_layers() {
        let seen = Fingerprint::of_der(b"cert");
        let pin = rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
            rustls::OtherError(Arc::new(PinMismatch { seen })),
        ));
        let err = wrap_twice(pin);
        // `source()` alone does not reach it: that is why `causes` digs with `get_ref`.
        assert!(err
            .source()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
            .is_none());
        assert_eq!(tls_failure(&err), Some(TlsFailure::PinMismatch { seen }));

        let unknown = wrap_twice(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert_eq!(tls_failure(&unknown), Some(TlsFailure::UnknownIssuer));

        let forged = wrap_twice(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadSignature,
        ));
        assert_eq!(tls_failure(&forged), Some(TlsFailure::BadSignature));
        let alert = wrap_twice(rustls::Error::AlertReceived(
            rustls::AlertDescription::HandshakeFailure,
        ));
        match tls_failure(&alert) {
            Some(TlsFailure::Other { detail }) => {
                assert!(detail.starts_with("the handshake failed"), "{detail}")
            }
            other => panic!("{other:?}"),
        }

        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
        assert_eq!(tls_failure(&refused), None);
    }

    #[test]
    fn chain_text_names_every_layer_once() {
        let err = wrap_twice(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        let text = chain_text(&err);
        assert!(
            text.contains("UnknownIssuer") || text.contains("unknown issuer"),
            "{text}"
        );
        assert_eq!(
            text.matches("invalid peer certificate").count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn retry_classes() {
        let connect = HttpError::Connect {
            url: "https://x".into(),
            detail: "refused".into(),
        };
        assert!(connect.never_sent() && connect.is_transient());
        let tls = HttpError::Tls {
            url: "https://x".into(),
            kind: TlsFailure::UnknownIssuer,
        };
        assert!(tls.never_sent() && !tls.is_transient());
        let timeout = HttpError::Timeout {
            method: "POST".into(),
            url: "https://x".into(),
            after: Duration::from_secs(1),
        };
        assert!(!timeout.never_sent() && timeout.is_transient());
        let big = HttpError::BodyTooLarge {
            method: "GET".into(),
            url: "https://x".into(),
            limit: 10,
        };
        assert!(!big.never_sent() && !big.is_transient());
    }

    #[test]
    fn request_debug_shows_header_names_not_values() {
        let mut v = HeaderValue::from_static("PVEAPIToken=a@pam!t=SECRET-VALUE");
        v.set_sensitive(true);
        let req = HttpRequest::new(Method::GET, "https://pve:8006/api2/json/version")
            .header(http::header::AUTHORIZATION, v);
        let dbg = format!("{req:?}");
        assert!(dbg.contains("authorization"), "{dbg}");
        assert!(!dbg.contains("SECRET-VALUE"), "{dbg}");
    }

    #[test]
    fn zero_limits_are_refused() {
        let cfg = HttpsConfig {
            trust: TlsTrust::SystemRoots,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::ZERO,
            max_body_bytes: 1,
            user_agent: "t".into(),
        };
        assert!(matches!(
            HttpsClient::new(cfg),
            Err(HttpsConfigError::Zero("request_timeout"))
        ));
    }

    #[tokio::test]
    async fn non_https_urls_are_refused_before_sending() {
        let cfg = HttpsConfig {
            trust: TlsTrust::InsecureSkipVerify,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_body_bytes: 1024,
            user_agent: "t".into(),
        };
        let c = HttpsClient::new(cfg).unwrap();
        for url in ["http://127.0.0.1:1/", "/relative", "not a url"] {
            let err = c
                .send(HttpRequest::new(Method::GET, url))
                .await
                .unwrap_err();
            assert!(
                matches!(err, HttpError::InvalidRequest { .. }),
                "{url}: {err}"
            );
            assert!(err.never_sent());
        }
    }
}
