//! The `/metrics` listener: plain HTTP/1.1 on the configured address (meant for loopback, or a
//! port the host firewall keeps to the Prometheus server: the text is not secret but it is the
//! host's inventory in numbers, and there is no TLS or auth here).
//!
//! Bounded: request headers must arrive within [`ServeOptions::header_timeout`], a whole
//! connection lives at most [`ServeOptions::connection_timeout`], at most
//! [`ServeOptions::max_connections`] are served at once (more are closed at accept), one request
//! per connection, and no request body is ever read. `GET`/`HEAD /metrics` → 200, any other path
//! → 404, another method on `/metrics` → 405.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The one path served.
pub const PATH: &str = "/metrics";
/// The Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The listener's bounds.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Time for the request line and headers to arrive.
    pub header_timeout: Duration,
    /// Longest a connection is kept, answer included.
    pub connection_timeout: Duration,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(10),
            max_connections: 4,
        }
    }
}

/// The listener could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// Binding `metrics.listen` failed (in use, not an address of this host, a privileged port).
    #[error("metrics.listen {addr}: cannot listen: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Binds `addr` (port 0: any free port; [`TcpListener::local_addr`] says which).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })
}

/// Serves `render()` at [`PATH`] until the task is dropped or aborted.
pub async fn serve<F>(listener: TcpListener, render: F, options: ServeOptions)
where
    F: Fn() -> String + Send + Sync + 'static,
{
    let render = Arc::new(render);
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%peer, "metrics: too many connections, closing this one");
            drop(stream);
            continue;
        };
        let render = Arc::clone(&render);
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| {
                let render = Arc::clone(&render);
                async move { Ok::<_, Infallible>(answer(&req, &*render)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(options.header_timeout)
                .keep_alive(false)
                .max_buf_size(8192)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(options.connection_timeout, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics: connection failed"),
                Err(_) => tracing::debug!(%peer, "metrics: connection timed out"),
            }
        });
    }
}

/// The answer to one request; the body is never read.
fn answer(req: &Request<Incoming>, render: &dyn Fn() -> String) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *r.status_mut() = status;
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    if req.uri().path() != PATH {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut r = Response::new(Full::new(Bytes::from(render())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(CONTENT_TYPE),
    );
    r
}
