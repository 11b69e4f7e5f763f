//! `HubSim`: an in-process felhom hub over real HTTPS on loopback: `POST /api/v1/host-report`
//! with Bearer auth, every report recorded (typed, raw JSON, headers, time), a configurable
//! `ControlEnvelope` as the answer, the hub-served intent (`GET /api/v1/desired-state`,
//! `GET /api/v1/signed-ops`), and fault injection (statuses, dropped connections, bad bodies,
//! latency; on every path or on one).
//!
//! It shares the PVE simulator's TLS plumbing (a generated CA and a leaf for `127.0.0.1`) and
//! accept loop; only the request handling is its own.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use felhom_hub_proto::{
    ControlEnvelope, DesiredStateBody, HostReport, SignedOpEntry, SignedOpsBody,
    DESIRED_STATE_PATH, HOST_REPORT_PATH, SIGNED_OPS_PATH,
};
use http::header::{HeaderMap, HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::SimError;
use crate::server::{self, Dropped};
use crate::tls;

/// The API key a default [`HubSimConfig`] accepts. A test value: never a real credential.
pub const DEFAULT_HUB_API_KEY: &str = "felhom-hub-sim-key-00000000000000000000";

/// Largest report body a default [`HubSimConfig`] accepts (larger: 413).
pub const DEFAULT_HUB_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// How a [`HubSim`] starts. `Default`: key [`DEFAULT_HUB_API_KEY`], an envelope asking for
/// 60 s between reports and nothing else, bodies up to [`DEFAULT_HUB_MAX_BODY_BYTES`].
#[derive(Clone)]
pub struct HubSimConfig {
    /// The one API key accepted as `Authorization: Bearer <key>`. Never printed by `Debug`.
    pub api_key: String,
    /// What every accepted report is answered with (changeable later with
    /// [`HubSim::set_envelope`]).
    pub envelope: ControlEnvelope,
    /// Largest report body accepted.
    pub max_body_bytes: usize,
}

impl Default for HubSimConfig {
    fn default() -> Self {
        HubSimConfig {
            api_key: DEFAULT_HUB_API_KEY.to_string(),
            envelope: ControlEnvelope {
                poll_interval_seconds: Some(60),
                ..ControlEnvelope::default()
            },
            max_body_bytes: DEFAULT_HUB_MAX_BODY_BYTES,
        }
    }
}

impl fmt::Debug for HubSimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSimConfig")
            .field("api_key", &"[redacted]")
            .field("envelope", &self.envelope)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

/// An injected answer of the hub simulator, applied before routing and auth.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HubFault {
    /// Answer with this status (500, 502, 503, ...) and a JSON error body; nothing recorded as
    /// a report.
    Status(u16),
    /// Close the connection without any answer.
    Drop,
    /// Answer with this status and this body verbatim (e.g. `200` and something that is no
    /// envelope, or an error body echoing a header).
    Body(u16, String),
}

#[derive(Debug, Default)]
struct FaultState {
    latency: Duration,
    /// (requests left, only on this path or on any, the fault)
    queue: Vec<(u32, Option<String>, HubFault)>,
}

/// Fault injection of a [`HubSim`], changeable while it runs; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct HubFaults {
    inner: Arc<Mutex<FaultState>>,
}

impl HubFaults {
    fn lock(&self) -> MutexGuard<'_, FaultState> {
        // plain data: a panic elsewhere while holding the lock leaves it usable
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delay before every answer (tokio time).
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Answer the next `n` requests with `fault`. Queued faults are used up in order.
    pub fn fail_next(&self, n: u32, fault: HubFault) {
        if n > 0 {
            self.lock().queue.push((n, None, fault));
        }
    }

    /// Answer the next `n` requests to `path` (e.g. [`DESIRED_STATE_PATH`]) with `fault`;
    /// other paths are served normally.
    pub fn fail_next_on(&self, path: &str, n: u32, fault: HubFault) {
        if n > 0 {
            self.lock().queue.push((n, Some(path.to_owned()), fault));
        }
    }

    /// Close the next `n` connections' requests without an answer.
    pub fn drop_next(&self, n: u32) {
        self.fail_next(n, HubFault::Drop);
    }

    /// Everything off: no latency, no queued faults.
    pub fn clear(&self) {
        *self.lock() = FaultState::default();
    }

    fn latency(&self) -> Duration {
        self.lock().latency
    }

    fn take(&self, path: &str) -> Option<HubFault> {
        let mut s = self.lock();
        let at = s
            .queue
            .iter()
            .position(|(_, on, _)| on.as_deref().is_none_or(|on| on == path))?;
        let (left, _, fault) = &mut s.queue[at];
        let fault = fault.clone();
        *left -= 1;
        if *left == 0 {
            s.queue.remove(at);
        }
        Some(fault)
    }
}

/// One host report the hub accepted (authorized, parsed), as received.
#[derive(Clone)]
pub struct ReceivedReport {
    /// The report, parsed as the hub's contract type.
    pub report: HostReport,
    /// The body as JSON, untouched: for shape checks against the golden file.
    pub raw: Value,
    /// The request headers. `Authorization` is marked sensitive, so `Debug` of the map hides it.
    pub headers: HeaderMap,
    /// When it arrived, on tokio's clock (comparable with a paused test clock).
    pub received_at: Instant,
    /// When it arrived, on the wall clock.
    pub received_wall: SystemTime,
}

impl ReceivedReport {
    /// The `Authorization` header's value as sent (e.g. `Bearer <key>`).
    pub fn authorization(&self) -> Option<&str> {
        self.headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
    }
}

impl fmt::Debug for ReceivedReport {
    // Header names only: the values include the API key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceivedReport")
            .field("host_id", &self.report.host_id)
            .field("collected_at", &self.report.collected_at)
            .field("guests", &self.report.guests.len())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("received_at", &self.received_at)
            .finish_non_exhaustive()
    }
}

/// One request the hub saw, whatever became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubRequest {
    /// HTTP method.
    pub method: String,
    /// Request path (no query).
    pub path: String,
    /// The status answered; `0` when the connection was dropped without an answer.
    pub status: u16,
    /// When it arrived (tokio clock).
    pub at: Instant,
}

/// [`HubSim::wait_for_reports`] gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hub-sim: {got} of {wanted} host reports arrived within {after:?}")]
pub struct WaitTimeout {
    /// How many reports were awaited.
    pub wanted: usize,
    /// How many had arrived.
    pub got: usize,
    /// How long it waited.
    pub after: Duration,
}

struct HubState {
    api_key: String,
    envelope: ControlEnvelope,
    /// `GET /api/v1/desired-state`'s body; `None`: 404.
    desired: Option<DesiredStateBody>,
    /// `GET /api/v1/signed-ops`'s body: served as is, on every request, until changed.
    signed_ops: SignedOpsBody,
    max_body_bytes: usize,
    reports: Vec<ReceivedReport>,
    requests: Vec<HubRequest>,
}

struct HubShared {
    state: Mutex<HubState>,
    faults: HubFaults,
    count: watch::Sender<usize>,
    /// Requests that reached the handler, counted before any injected latency or fault: lets a
    /// test act while a request is held at the hub.
    arrivals: watch::Sender<usize>,
}

impl HubShared {
    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, method: &str, path: &str, status: u16, at: Instant) {
        self.lock().requests.push(HubRequest {
            method: method.to_string(),
            path: path.to_string(),
            status,
            at,
        });
    }
}

/// A running hub simulator. Dropping it (or [`HubSim::shutdown`]) stops serving. Reports and
/// requests are kept in memory for its lifetime.
pub struct HubSim {
    addr: SocketAddr,
    fingerprint: String,
    ca_pem: String,
    shared: Arc<HubShared>,
    shutdown: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl fmt::Debug for HubSim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSim")
            .field("addr", &self.addr)
            .field("fingerprint", &self.fingerprint)
            .field("reports", &self.report_count())
            .finish_non_exhaustive()
    }
}

impl HubSim {
    /// Generates a CA and a leaf for `127.0.0.1`, binds `127.0.0.1:0` and starts serving on
    /// the current tokio runtime.
    pub async fn start(config: HubSimConfig) -> Result<HubSim, SimError> {
        if config.api_key.is_empty() {
            return Err(SimError::Config(
                "hub-sim: api_key must not be empty".into(),
            ));
        }
        if config.max_body_bytes == 0 {
            return Err(SimError::Config(
                "hub-sim: max_body_bytes must be greater than zero".into(),
            ));
        }
        let cert = tls::generate_for(&tls::Identity {
            ca_common_name: "felhom hub simulator CA",
            ca_organization: "felhom",
            leaf_unit: "felhom hub simulator",
            leaf_organization: "felhom",
            leaf_common_name: "hub-sim.localdomain".to_string(),
            extra_san: "hub-sim",
        })?;
        let server_config = tls::server_config(&cert)?;
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(SimError::Bind)?;
        let addr = listener.local_addr().map_err(SimError::Bind)?;
        let (count, _) = watch::channel(0);
        let shared = Arc::new(HubShared {
            state: Mutex::new(HubState {
                api_key: config.api_key,
                envelope: config.envelope,
                desired: None,
                signed_ops: SignedOpsBody::default(),
                max_body_bytes: config.max_body_bytes,
                reports: Vec::new(),
                requests: Vec::new(),
            }),
            faults: HubFaults::default(),
            count,
            arrivals: watch::Sender::new(0),
        });
        let (tx, rx) = watch::channel(false);
        let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
        let handler_shared = shared.clone();
        let server = tokio::spawn(server::serve_tls(
            listener,
            acceptor,
            rx,
            Default::default(),
            move |req| handle(req, handler_shared.clone()),
        ));
        tracing::debug!(%addr, "hub-sim started");
        Ok(HubSim {
            addr,
            fingerprint: cert.fingerprint,
            ca_pem: cert.ca_pem,
            shared,
            shutdown: tx,
            server: Some(server),
        })
    }

    /// `https://127.0.0.1:PORT`: the hub's base URL (`hub.url` in the agent's config).
    pub fn base_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The full report URL, `https://127.0.0.1:PORT/api/v1/host-report`.
    pub fn report_url(&self) -> String {
        format!("{}{HOST_REPORT_PATH}", self.base_url())
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM of the simulator's CA, which signed the served leaf (`hub.ca_file` in the agent's
    /// config).
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// SHA-256 of the served leaf, `AB:CD:…` uppercase.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }

    /// Fault injection, changeable while running.
    pub fn faults(&self) -> &HubFaults {
        &self.shared.faults
    }

    /// Answer later reports with `envelope`.
    pub fn set_envelope(&self, envelope: ControlEnvelope) {
        self.shared.lock().envelope = envelope;
    }

    /// The envelope reports are answered with now.
    pub fn envelope(&self) -> ControlEnvelope {
        self.shared.lock().envelope.clone()
    }

    /// Serve `body` at `GET /api/v1/desired-state` and announce its generation in the envelope
    /// (the hub publishing a new desired state).
    pub fn publish_desired(&self, body: DesiredStateBody) {
        let mut s = self.shared.lock();
        s.envelope.desired_generation = body.generation;
        s.desired = Some(body);
    }

    /// Serve `body` without touching the envelope (e.g. a body whose generation went backwards,
    /// or one that disagrees with the announcement).
    pub fn set_desired(&self, body: Option<DesiredStateBody>) {
        self.shared.lock().desired = body;
    }

    /// Serve `ops` at `GET /api/v1/signed-ops` (every time, until changed) and set the
    /// envelope's `has_signed_ops` to whether there are any.
    pub fn set_signed_ops(&self, ops: Vec<SignedOpEntry>) {
        let mut s = self.shared.lock();
        s.envelope.has_signed_ops = !ops.is_empty();
        s.signed_ops = SignedOpsBody { ops };
    }

    /// Accept only `key` from now on (a key rotation at the hub).
    pub fn set_api_key(&self, key: &str) {
        self.shared.lock().api_key = key.to_string();
    }

    /// Every accepted report so far, oldest first.
    pub fn reports(&self) -> Vec<ReceivedReport> {
        self.shared.lock().reports.clone()
    }

    /// How many reports were accepted so far.
    pub fn report_count(&self) -> usize {
        self.shared.lock().reports.len()
    }

    /// Every request so far (accepted, refused, failed by a fault, dropped), oldest first.
    pub fn requests(&self) -> Vec<HubRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many requests to `path` were seen so far (whatever their answer).
    pub fn request_count(&self, path: &str) -> usize {
        self.shared
            .lock()
            .requests
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// Waits (tokio time) until at least `n` reports were accepted and returns all of them.
    pub async fn wait_for_reports(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<ReceivedReport>, WaitTimeout> {
        let mut rx = self.shared.count.subscribe();
        let waited = tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await;
        match waited {
            Ok(Ok(_)) => Ok(self.reports()),
            // the sender lives as long as `self`: a closed channel cannot happen here
            _ => Err(WaitTimeout {
                wanted: n,
                got: self.report_count(),
                after: timeout,
            }),
        }
    }

    /// Waits until at least `n` requests reached the handler (before any injected latency or
    /// fault). Unbounded: the caller puts a timeout on it.
    pub async fn wait_for_arrivals(&self, n: usize) {
        let mut rx = self.shared.arrivals.subscribe();
        // the sender lives as long as `self`: the channel cannot close while this waits
        let _ = rx.wait_for(|c| *c >= n).await;
    }

    /// Stops accepting, closes open connections and waits for the server task.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for HubSim {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A JSON answer.
fn answer(status: u16, body: Value) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert("server", HeaderValue::from_static("felhom-hub-sim"));
    resp
}

fn error(status: u16, message: impl Into<String>) -> Response<Full<Bytes>> {
    answer(status, json!({ "error": message.into() }))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The bearer token of an `Authorization` value (scheme case-insensitive, RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Reads the body; `None` when it is larger than `max`. An oversized body is still read (and
/// dropped) up to a bound, so the client sees the 413 instead of a reset connection.
async fn read_body(mut body: Incoming, max: usize) -> Result<Option<Vec<u8>>, hyper::Error> {
    let drain_limit = max.saturating_mul(16);
    let mut out = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue; // trailers
        };
        seen = seen.saturating_add(data.len());
        if seen <= max {
            out.extend_from_slice(&data);
        } else if seen > drain_limit {
            break;
        }
    }
    Ok((seen <= max).then_some(out))
}

/// Checks the request (route, method, auth, content type, size, JSON, contract) and records
/// an accepted report. Returns the answer.
async fn accept(
    req: Request<Incoming>,
    shared: &HubShared,
    method: &str,
    path: &str,
    at: Instant,
) -> Response<Full<Bytes>> {
    if path == DESIRED_STATE_PATH || path == SIGNED_OPS_PATH {
        return serve_intent(&req, shared, method, path);
    }
    if path != HOST_REPORT_PATH {
        return error(404, format!("no route for {path}"));
    }
    if method != "POST" {
        let mut resp = error(405, format!("method {method} not allowed on {path}"));
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    let (api_key, max_body) = {
        let s = shared.lock();
        (s.api_key.clone(), s.max_body_bytes)
    };
    if let Some(refused) = check_auth(req.headers(), &api_key) {
        return refused;
    }
    let is_json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return error(415, "content type must be application/json");
    }
    let mut headers = req.headers().clone();
    if let Some(v) = headers.get_mut(AUTHORIZATION) {
        v.set_sensitive(true);
    }
    let body = match read_body(req.into_body(), max_body).await {
        Ok(Some(b)) => b,
        Ok(None) => return error(413, format!("body larger than {max_body} bytes")),
        Err(e) => return error(400, format!("reading body: {e}")),
    };
    let raw: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(400, format!("invalid json: {e}")),
    };
    let report: HostReport = match serde_json::from_value(raw.clone()) {
        Ok(r) => r,
        Err(e) => return error(400, format!("invalid host report: {e}")),
    };
    let envelope = {
        let mut s = shared.lock();
        s.reports.push(ReceivedReport {
            report,
            raw,
            headers,
            received_at: at,
            received_wall: SystemTime::now(),
        });
        let n = s.reports.len();
        shared.count.send_replace(n);
        s.envelope.clone()
    };
    match serde_json::to_value(&envelope) {
        Ok(v) => answer(200, v),
        Err(e) => error(500, format!("encoding the envelope: {e}")),
    }
}

/// `None` when the request carries the accepted Bearer key, else the 401.
fn check_auth(headers: &HeaderMap, api_key: &str) -> Option<Response<Full<Bytes>>> {
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let unauthorized = |message: &str| {
        let mut resp = error(401, message);
        resp.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"felhom-hub\""),
        );
        resp
    };
    match presented {
        None => Some(unauthorized("missing bearer token")),
        Some(t) if !constant_time_eq(t.as_bytes(), api_key.as_bytes()) => {
            Some(unauthorized("invalid api key"))
        }
        Some(_) => None,
    }
}

/// `GET /api/v1/desired-state` and `GET /api/v1/signed-ops`.
fn serve_intent(
    req: &Request<Incoming>,
    shared: &HubShared,
    method: &str,
    path: &str,
) -> Response<Full<Bytes>> {
    if method != "GET" {
        let mut resp = error(405, format!("method {method} not allowed on {path}"));
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return resp;
    }
    let s = shared.lock();
    if let Some(refused) = check_auth(req.headers(), &s.api_key) {
        return refused;
    }
    let body = if path == DESIRED_STATE_PATH {
        match &s.desired {
            Some(d) => serde_json::to_value(d),
            None => return error(404, "no desired state published for this host"),
        }
    } else {
        serde_json::to_value(&s.signed_ops)
    };
    match body {
        Ok(v) => answer(200, v),
        Err(e) => error(500, format!("encoding {path}: {e}")),
    }
}

/// What a hub that parses a stored blob and writes it back sends instead of the exact signed
/// string: the same JSON value, keys sorted and pretty-printed. Its signature no longer
/// matches; the agent must refuse it.
pub fn reserialized_blob(blob: &str) -> String {
    match serde_json::from_str::<Value>(blob) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_else(|_| blob.to_owned()),
        // Not JSON: change it anyway, so the signature cannot match.
        Err(_) => format!(" {blob}"),
    }
}

async fn handle(
    req: Request<Incoming>,
    shared: Arc<HubShared>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let at = Instant::now();
    shared.arrivals.send_modify(|n| *n += 1);
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    // held precisely from arrival, as the PVE simulator holds its own (see `latency`)
    crate::latency::hold(at, shared.faults.latency()).await;
    let resp = match shared.faults.take(&path) {
        Some(HubFault::Drop) => {
            shared.record(&method, &path, 0, at);
            return Err(Dropped);
        }
        Some(HubFault::Status(status)) => error(status, format!("injected fault: {status}")),
        Some(HubFault::Body(status, body)) => {
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            resp
        }
        None => accept(req, &shared, &method, &path, at).await,
    };
    shared.record(&method, &path, resp.status().as_u16(), at);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_parsed_case_insensitively() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer  "), None);
    }

    #[test]
    fn faults_are_used_up_in_order() {
        let f = HubFaults::default();
        f.fail_next(2, HubFault::Status(500));
        f.drop_next(1);
        f.fail_next(0, HubFault::Status(503));
        assert_eq!(f.take("/"), Some(HubFault::Status(500)));
        assert_eq!(f.take("/"), Some(HubFault::Status(500)));
        assert_eq!(f.take("/"), Some(HubFault::Drop));
        assert_eq!(f.take("/"), None);
        f.set_latency(Duration::from_millis(5));
        f.fail_next(1, HubFault::Status(503));
        f.clear();
        assert_eq!(f.take("/"), None);
        assert_eq!(f.latency(), Duration::ZERO);
        // A fault on one path leaves the others alone.
        f.fail_next_on(DESIRED_STATE_PATH, 1, HubFault::Status(502));
        assert_eq!(f.take(HOST_REPORT_PATH), None);
        assert_eq!(f.take(DESIRED_STATE_PATH), Some(HubFault::Status(502)));
        assert_eq!(f.take(DESIRED_STATE_PATH), None);
    }

    #[test]
    fn a_reserialized_blob_is_the_same_value_in_other_bytes() {
        let blob = r#"{"op":"destroy_guest","host_id":"pve-01","guest_id":105}"#;
        let re = reserialized_blob(blob);
        assert_ne!(re, blob);
        assert_eq!(
            serde_json::from_str::<Value>(&re).unwrap(),
            serde_json::from_str::<Value>(blob).unwrap()
        );
    }

    #[tokio::test]
    async fn bad_configs_are_refused() {
        let e = HubSim::start(HubSimConfig {
            api_key: String::new(),
            ..HubSimConfig::default()
        })
        .await
        .unwrap_err();
        assert!(matches!(e, SimError::Config(_)), "{e}");
    }

    #[test]
    fn config_debug_hides_the_key() {
        let c = HubSimConfig::default();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains(DEFAULT_HUB_API_KEY), "{dbg}");
        assert!(dbg.contains("redacted"), "{dbg}");
        assert_eq!(c.envelope.poll_interval_seconds, Some(60));
    }
}
