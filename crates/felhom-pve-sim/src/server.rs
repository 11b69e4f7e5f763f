//! The HTTP layer, as pveproxy's `AnyEvent.pm` + `Formatter/Standard.pm` behave: TLS accept
//! loop, request checks in PVE's order (transfer encoding, URI format, auth, body method and
//! content type), parameter decoding, the `json`/`extjs` envelopes, reason phrases, headers,
//! and the fault injection points. The TLS accept loop ([`serve_tls`]) also serves the hub
//! simulator.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, TRANSFER_ENCODING,
};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::api::{self, ApiError, Reply};
use crate::faults::{Faults, HttpFault};
use crate::params::{PVal, Params};
use crate::state::SimState;

/// `$limit_max_post` since pve-http-server 5.2.1.
const MAX_POST: usize = 512 * 1024;

/// What the connection tasks share.
pub(crate) struct Shared {
    pub(crate) state: SimState,
    pub(crate) faults: Faults,
}

/// Returned from the service to make hyper close the connection without an answer.
#[derive(Debug)]
pub(crate) struct Dropped;

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pve-sim: connection dropped by fault injection")
    }
}

impl std::error::Error for Dropped {}

/// Connection counters of one accept loop: what a test reads to tell a warm connection pool
/// (no new connections) from one that reconnects.
#[derive(Debug, Default)]
pub(crate) struct ConnStats {
    /// TCP connections accepted.
    pub(crate) accepted: AtomicU64,
    /// TLS handshakes completed.
    pub(crate) handshakes: AtomicU64,
}

/// Serves the PVE API until `shutdown` flips (see [`serve_tls`]).
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
    shutdown: watch::Receiver<bool>,
) {
    let stats = shared.state.conns.clone();
    serve_tls(listener, acceptor, shutdown, stats, move |req| {
        handle(req, shared.clone())
    })
    .await;
}

/// Accepts TLS connections until `shutdown` flips and answers each HTTP/1.1 request with
/// `handler` (an `Err(Dropped)` closes the connection without an answer); each connection is
/// served on its own task and aborted when the loop ends. Shared by the PVE and hub simulators.
pub(crate) async fn serve_tls<H, F>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    mut shutdown: watch::Receiver<bool>,
    stats: Arc<ConnStats>,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Full<Bytes>>, Dropped>> + Send + 'static,
{
    let mut conns: JoinSet<()> = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => {
                let Ok((tcp, _peer)) = accepted else {
                    continue;
                };
                stats.accepted.fetch_add(1, Ordering::Relaxed);
                // Nagle's algorithm against the client's delayed ACK stalls a response split
                // over several writes (TLS records) for ~40 ms on loopback: a delay nothing
                // asked for (latency is injected explicitly). The client sets it too.
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let handler = handler.clone();
                let stats = stats.clone();
                conns.spawn(async move {
                    // a failed handshake (e.g. the client rejected the certificate) just ends
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    stats.handshakes.fetch_add(1, Ordering::Relaxed);
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service_fn(handler))
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.abort_all();
}

/// How a request is answered, before rendering.
enum Answer {
    /// An HTTP-layer error (`AnyEvent::error`): plain-text body since 5.2.0.
    Plain(u16, String),
    /// 401 with an empty body and the reason as status text.
    Unauthorized(&'static str),
    /// A status with only a reason phrase and an empty body.
    Bare(u16, String),
    /// A handler ran (or was routed): the formatter's envelope.
    Api {
        json: bool,
        result: Result<Reply, ApiError>,
    },
    /// An injected status.
    Injected { json: bool, fault: HttpFault },
}

fn percent_decode(path: &str) -> String {
    percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned()
}

/// `$split_abs_uri`: `/api2/<format>/rest` → (`/rest`, format).
fn split_api_path(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/api2")?;
    let rest = rest.trim_start_matches('/');
    if rest.len() == path.len() - 5 {
        // no slash after /api2
        return None;
    }
    let end = rest.find('/').unwrap_or(rest.len());
    let (format, rel) = rest.split_at(end);
    let mut chars = format.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && format.len() >= 2
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !valid {
        return None;
    }
    let rel = if rel.is_empty() { "/" } else { rel };
    Some((rel.to_string(), format.to_string()))
}

/// `extract_auth_value` for the API token: `(?:^|\s)PVEAPIToken(?:=| )([^;]*)`, uri-unescaped.
fn extract_token(header: &str) -> Option<String> {
    const NAME: &str = "PVEAPIToken";
    let mut from = 0;
    while let Some(pos) = header[from..].find(NAME) {
        let start = from + pos;
        let after = start + NAME.len();
        let boundary_ok = start == 0
            || header[..start]
                .chars()
                .last()
                .is_some_and(char::is_whitespace);
        let sep_ok = matches!(header.as_bytes().get(after), Some(b'=') | Some(b' '));
        if boundary_ok && sep_ok {
            let value = &header[after + 1..];
            let value = value.split(';').next().unwrap_or("");
            return Some(percent_decode(value));
        }
        from = after;
    }
    None
}

/// `auth_handler` for API tokens: the auth id, or the 401 reason.
fn authenticate(headers: &HeaderMap, state: &SimState) -> Result<String, &'static str> {
    let auth = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let cookie = headers
        .get(COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // a ticket wins over a token; the simulator issues none, so any ticket is a bad one
    if cookie.contains("PVEAuthCookie=") || auth.contains("PVEAuthCookie=") {
        return Err("Authentication failed!");
    }
    let Some(value) = extract_token(auth).filter(|v| !v.is_empty()) else {
        return Err("No ticket");
    };
    // verify_token: /^(.*)=(.*)$/ is greedy, so the split is on the last '='
    let Some((tokenid, secret)) = value.rsplit_once('=') else {
        return Err("Authentication failed!");
    };
    let s = state.lock();
    match s.principals.tokens.get(tokenid) {
        Some(t) if constant_time_eq(t.secret.as_bytes(), secret.as_bytes()) => {
            Ok(tokenid.to_string())
        }
        _ => Err("Authentication failed!"),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `decode_urlencoded`: `+` is a space, repeated keys become arrays.
fn decode_form(text: &[u8], into: &mut Params) {
    for (k, v) in form_urlencoded::parse(text) {
        let value = PVal::Str(v.into_owned());
        match into.0.remove(k.as_ref()) {
            None => into.insert(&k, value),
            Some(PVal::List(mut items)) => {
                items.push(value);
                into.insert(&k, PVal::List(items));
            }
            Some(prev) => into.insert(&k, PVal::List(vec![prev, value])),
        }
    }
}

fn parse_params(query: Option<&str>, body: &[u8], json_body: bool) -> Result<Params, ApiError> {
    let mut params = Params::default();
    if !body.is_empty() {
        if json_body {
            let value: Value = serde_json::from_slice(body).map_err(|e| {
                ApiError::param("_root", format!("unable to parse JSON body - {e}"))
            })?;
            let Value::Object(map) = value else {
                return Err(ApiError::param(
                    "_root",
                    "an object is required".to_string(),
                ));
            };
            for (k, v) in &map {
                if let Some(p) = PVal::from_json(v) {
                    params.insert(k, p);
                }
            }
        } else {
            decode_form(body, &mut params);
        }
    }
    // query parameters override body parameters
    if let Some(q) = query {
        let mut qp = Params::default();
        decode_form(q.as_bytes(), &mut qp);
        params.0.extend(qp.0);
    }
    Ok(params)
}

fn header_str(headers: &HeaderMap, name: http::header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn answer(req: Request<Incoming>, shared: &Shared, method: &str, path: &str) -> Answer {
    let headers = req.headers();
    if !matches!(method, "GET" | "POST" | "PUT" | "DELETE") {
        return Answer::Bare(501, format!("method '{method}' not available"));
    }
    if let Some(te) = header_str(headers, TRANSFER_ENCODING) {
        return if te.eq_ignore_ascii_case("chunked") {
            Answer::Plain(501, "chunked transfer encoding not supported".to_string())
        } else {
            Answer::Plain(501, format!("Unknown transfer encoding '{te}'"))
        };
    }
    let Some((rel, format)) = split_api_path(path) else {
        return if path.starts_with("/api2") {
            Answer::Plain(501, "no such uri".to_string())
        } else {
            Answer::Plain(501, format!("no such file '{path}'"))
        };
    };
    let authid = match authenticate(headers, &shared.state) {
        Ok(a) => a,
        Err(reason) => return Answer::Unauthorized(reason),
    };
    let len: usize = header_str(headers, CONTENT_LENGTH)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let ctype = header_str(headers, CONTENT_TYPE).map(str::to_string);
    let mut json_body = false;
    if len > 0 {
        if method != "PUT" && method != "POST" {
            return Answer::Plain(501, format!("Unexpected content for method '{method}'"));
        }
        if len > MAX_POST {
            return Answer::Plain(501, "for data too large".to_string());
        }
        if let Some(ct) = &ctype {
            // parse_content_type: the part before ';' or ',', compared exactly
            let base = ct.split([';', ',']).next().unwrap_or("").trim();
            match base {
                "application/x-www-form-urlencoded" => {}
                "application/json" => json_body = true,
                _ => {
                    return Answer::Plain(
                        506,
                        format!("upload 'Content-Type '{ct}' not implemented"),
                    )
                }
            }
        }
    }
    let json = match format.as_str() {
        "json" => true,
        "extjs" => false,
        _ => return Answer::Plain(501, format!("no formatter for uri {rel}")),
    };
    if let Some(fault) = shared.faults.take_http(method, &rel, false) {
        return Answer::Injected { json, fault };
    }
    let query = req.uri().query().map(str::to_string);
    let body = match Limited::new(req.into_body(), MAX_POST).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Answer::Plain(400, "bad request".to_string()),
    };
    let result = match parse_params(query.as_deref(), &body, json_body) {
        Ok(params) => {
            let mut inner = shared.state.current();
            api::dispatch(&mut inner, &shared.faults, method, &rel, &authid, params)
        }
        Err(e) => Err(e),
    };
    Answer::Api { json, result }
}

/// The whole request: faults around the answer, rendering, counters.
async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    // the injected latency counts from here, held precisely (see `latency`)
    let arrived = tokio::time::Instant::now();
    let method = req.method().as_str().to_string();
    let path = percent_decode(req.uri().path());
    let record_path = split_api_path(&path)
        .map(|(r, _)| r)
        .unwrap_or_else(|| path.clone());
    let faults = &shared.faults;
    if faults.take_drop(false) {
        shared.state.lock().record_request(&method, &record_path, 0);
        return Err(Dropped);
    }
    crate::latency::hold(arrived, faults.latency()).await;
    let mut answer = answer(req, &shared, &method, &path).await;
    if let Answer::Api { json, .. } = answer {
        if faults.take_drop(true) {
            shared.state.lock().record_request(&method, &record_path, 0);
            return Err(Dropped);
        }
        if let Some(fault) = faults.take_http(&method, &record_path, true) {
            answer = Answer::Injected { json, fault };
        }
    }
    if let Answer::Unauthorized(_) = answer {
        let delay = shared.state.lock().auth_failure_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
    let now = shared.state.lock().clock.now();
    let response = render(answer, faults, now);
    shared
        .state
        .lock()
        .record_request(&method, &record_path, response.status().as_u16());
    Ok(response)
}

fn first_line(message: &str) -> &str {
    message.split('\n').next().unwrap_or("")
}

fn build(status: u16, reason: &str, body: Bytes, json: bool, now: u64) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // the reason phrase carries the error message (pveproxy cuts it to the first line)
    let clean: Vec<u8> = reason
        .bytes()
        .map(|b| {
            if b == b'\t' || b >= 0x20 && b != 0x7f {
                b
            } else {
                b' '
            }
        })
        .collect();
    if let Ok(rp) = hyper::ext::ReasonPhrase::try_from(clean) {
        resp.extensions_mut().insert(rp);
    }
    let h = resp.headers_mut();
    h.insert("server", HeaderValue::from_static("pve-api-daemon/3.0"));
    h.insert("cache-control", HeaderValue::from_static("max-age=0"));
    h.insert("pragma", HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&crate::clock::http_date(now)) {
        h.insert("expires", v);
    }
    if json {
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json;charset=UTF-8"),
        );
    }
    if status >= 400 {
        h.insert("connection", HeaderValue::from_static("close"));
    }
    resp
}

fn json_bytes(value: &Value, faults: &Faults) -> Bytes {
    padded(serde_json::to_vec(value).unwrap_or_default(), faults)
}

/// The envelope `value` with its `data` replaced by the array of `items` (each a JSON text):
/// the same bytes `json_bytes` would write for that array, since an envelope's keys serialize
/// sorted and `data` sorts first among them.
fn items_bytes(value: &Value, items: &[String], faults: &Faults) -> Bytes {
    let mut body = Vec::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 64);
    body.extend_from_slice(b"{\"data\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item.as_bytes());
    }
    body.push(b']');
    if let Value::Object(m) = value {
        for (k, v) in m.iter().filter(|(k, _)| *k != "data") {
            body.push(b',');
            // a string and a value of ours: writing to a Vec cannot fail
            let _ = serde_json::to_writer(&mut body, k);
            body.push(b':');
            let _ = serde_json::to_writer(&mut body, v);
        }
    }
    body.push(b'}');
    padded(body, faults)
}

fn padded(mut body: Vec<u8>, faults: &Faults) -> Bytes {
    if let Some(limit) = faults.pad_to() {
        // trailing whitespace keeps it valid JSON while pushing it past the client's limit
        if body.len() <= limit {
            body.resize(limit + 1, b' ');
        }
    }
    Bytes::from(body)
}

fn api_envelope(json: bool, result: Result<Reply, ApiError>, pre_52: bool) -> (u16, String, Value) {
    match (json, result) {
        (true, Ok(reply)) => {
            let mut m = Map::new();
            m.insert("data".into(), reply.data);
            if let Some(t) = reply.total.filter(|t| *t != 0) {
                m.insert("total".into(), json!(t));
            }
            (200, "OK".to_string(), Value::Object(m))
        }
        (true, Err(e)) => {
            let mut m = Map::new();
            m.insert("data".into(), Value::Null);
            if let Some(errors) = &e.errors {
                m.insert("errors".into(), json!(errors));
            }
            if !pre_52 {
                m.insert("message".into(), json!(e.message));
            }
            (
                e.status,
                first_line(&e.message).to_string(),
                Value::Object(m),
            )
        }
        (false, Ok(reply)) => {
            let mut m = Map::new();
            m.insert("data".into(), reply.data);
            m.insert("success".into(), json!(1));
            if let Some(t) = reply.total.filter(|t| *t != 0) {
                m.insert("total".into(), json!(t));
            }
            (200, "OK".to_string(), Value::Object(m))
        }
        (false, Err(e)) => {
            // extjs: always 200, the real status inside
            let mut m = Map::new();
            m.insert("data".into(), Value::Null);
            if let Some(errors) = &e.errors {
                m.insert("errors".into(), json!(errors));
            }
            m.insert("message".into(), json!(e.message));
            m.insert("status".into(), json!(e.status));
            m.insert("success".into(), json!(0));
            (200, "OK".to_string(), Value::Object(m))
        }
    }
}

fn render(answer: Answer, faults: &Faults, now: u64) -> Response<Full<Bytes>> {
    let pre_52 = faults.pre_52_errors();
    match answer {
        Answer::Plain(status, message) => {
            let body = if pre_52 {
                Bytes::new()
            } else {
                Bytes::from(message.clone())
            };
            build(status, first_line(&message), body, false, now)
        }
        Answer::Unauthorized(reason) => build(401, reason, Bytes::new(), false, now),
        Answer::Bare(status, reason) => build(status, &reason, Bytes::new(), false, now),
        Answer::Injected {
            fault:
                HttpFault {
                    status,
                    message,
                    body: Some(body),
                    ..
                },
            ..
        } => build(status, first_line(&message), Bytes::from(body), true, now),
        Answer::Injected { fault, .. } if (595..=599).contains(&fault.status) => build(
            fault.status,
            first_line(&fault.message),
            Bytes::new(),
            false,
            now,
        ),
        Answer::Injected { json, fault } => {
            let err = ApiError::with_status(fault.status, &fault.message);
            let (status, reason, value) = api_envelope(json, Err(err), pre_52);
            build(status, &reason, json_bytes(&value, faults), true, now)
        }
        Answer::Api { json, mut result } => {
            let items = result.as_mut().ok().and_then(|r| r.items.take());
            let (status, reason, value) = api_envelope(json, result, pre_52);
            let body = match items {
                Some(items) => items_bytes(&value, &items, faults),
                None => json_bytes(&value, faults),
            };
            build(status, &reason, body, true, now)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_rendered_by_items_is_the_bytes_of_the_same_list_as_a_value() {
        // items as `VmStatus` writes them: keys in sorted order, as a `Value` map writes them
        let items = [r#"{"a":"x\"y","b":[1,2]}"#, r#"{"vmid":"100"}"#, "7"];
        let faults = Faults::default();
        for json in [true, false] {
            for total in [None, Some(3)] {
                let reply = || Reply {
                    total,
                    ..Reply::default()
                };
                let (_, _, envelope) = api_envelope(json, Ok(reply()), false);
                let rendered = items_bytes(&envelope, &items.map(str::to_owned), &faults);
                let as_value = Reply {
                    data: Value::Array(
                        items
                            .iter()
                            .map(|i| serde_json::from_str(i).unwrap())
                            .collect(),
                    ),
                    ..reply()
                };
                let (_, _, envelope) = api_envelope(json, Ok(as_value), false);
                let expected = json_bytes(&envelope, &faults);
                assert_eq!(
                    String::from_utf8_lossy(&rendered),
                    String::from_utf8_lossy(&expected),
                    "json={json} total={total:?}"
                );
            }
        }
    }

    #[test]
    fn api_paths_split_like_split_abs_uri() {
        assert_eq!(
            split_api_path("/api2/json/nodes/pve"),
            Some(("/nodes/pve".into(), "json".into()))
        );
        assert_eq!(
            split_api_path("/api2/json"),
            Some(("/".into(), "json".into()))
        );
        assert_eq!(
            split_api_path("/api2//extjs/version"),
            Some(("/version".into(), "extjs".into()))
        );
        assert_eq!(split_api_path("/api2"), None);
        assert_eq!(split_api_path("/api2/"), None);
        assert_eq!(split_api_path("/api2x/json/a"), None);
        assert_eq!(split_api_path("/other"), None);
    }

    #[test]
    fn token_extraction_follows_the_formatter_regex() {
        assert_eq!(
            extract_token("PVEAPIToken=a@b!c=secret").as_deref(),
            Some("a@b!c=secret")
        );
        assert_eq!(
            extract_token("PVEAPIToken a@b!c=secret; x=y").as_deref(),
            Some("a@b!c=secret")
        );
        assert_eq!(extract_token("Bearer xPVEAPIToken=a"), None);
        assert_eq!(extract_token("Basic abc").as_deref(), None);
        assert_eq!(extract_token("PVEAPIToken=a%40b").as_deref(), Some("a@b"));
    }

    #[test]
    fn forms_merge_with_query_winning_and_repeats_becoming_lists() {
        let p = parse_params(Some("a=q&c=3"), b"a=b&b=1&b=2&d=x+y", false).unwrap();
        assert_eq!(p.0["a"], PVal::Str("q".into()));
        assert_eq!(
            p.0["b"],
            PVal::List(vec![PVal::Str("1".into()), PVal::Str("2".into())])
        );
        assert_eq!(p.0["d"], PVal::Str("x y".into()));
        let p = parse_params(None, br#"{"cores":2,"onboot":true,"x":null}"#, true).unwrap();
        assert_eq!(p.0["cores"], PVal::Str("2".into()));
        assert_eq!(p.0["onboot"], PVal::Bool(true));
        assert!(!p.contains("x"));
        assert!(parse_params(None, b"[1]", true).is_err());
    }

    #[test]
    fn envelopes_match_the_standard_formatter() {
        let err = ApiError::perm("/vms/100, VM.Config.Options");
        let (status, reason, body) = api_envelope(true, Err(err.clone()), false);
        assert_eq!(status, 403);
        assert_eq!(
            reason,
            "Permission check failed (/vms/100, VM.Config.Options)"
        );
        assert_eq!(
            body,
            json!({"data": null, "message": "Permission check failed (/vms/100, VM.Config.Options)\n"})
        );
        let (_, _, body) = api_envelope(true, Err(err.clone()), true);
        assert_eq!(body, json!({"data": null}));
        let (status, _, body) = api_envelope(false, Err(err), false);
        assert_eq!(status, 200);
        assert_eq!(body["success"], json!(0));
        assert_eq!(body["status"], json!(403));
        let (_, _, body) = api_envelope(
            true,
            Ok(Reply {
                data: json!([]),
                total: Some(0),
                ..Reply::default()
            }),
            false,
        );
        assert_eq!(body, json!({"data": []}));
    }
}
