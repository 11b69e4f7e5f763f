//! The `/metrics` listener over a real loopback socket: the answer parses, other paths and
//! methods are refused, and its bounds hold (paused clock: no wall-clock waits).

use std::time::Duration;

use felhom_metrics::{bind, serve, ActionKind, Metrics, ServeOptions, CONTENT_TYPE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(options: ServeOptions) -> (std::net::SocketAddr, Metrics) {
    let metrics = Metrics::new("1.2.3");
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let m = metrics.clone();
    tokio::spawn(serve(listener, move || m.render(), options));
    (addr, metrics)
}

/// Sends `request` and reads the answer to EOF.
async fn exchange(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

async fn get(addr: std::net::SocketAddr, method: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    exchange(
        &mut s,
        &format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await
}

#[tokio::test]
async fn get_metrics_answers_the_text_format_and_it_parses() {
    let (addr, metrics) = start(ServeOptions::default()).await;
    metrics.action_started(ActionKind::Stop);
    let answer = get(addr, "GET", "/metrics").await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-type: {CONTENT_TYPE}")),
        "{head}"
    );
    let scrape = felhom_testkit::metrics::Scrape::parse(body).unwrap();
    assert_eq!(
        scrape.value("felhom_actions_started_total", &[("kind", "stop")]),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("felhom_build_info", &[("version", "1.2.3")]),
        Some(1.0)
    );
}

#[tokio::test]
async fn other_paths_are_404_and_other_methods_405() {
    let (addr, _) = start(ServeOptions::default()).await;
    for path in ["/", "/metrics/", "/metricsx", "/nodes"] {
        let answer = get(addr, "GET", path).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
        assert!(!answer.contains("felhom_"), "{path}: {answer}");
    }
    let answer = get(addr, "POST", "/metrics").await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("allow: get, head"),
        "{answer}"
    );
    let head = get(addr, "HEAD", "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.contains("felhom_"),
        "a HEAD answer has no body: {head}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_cut_off_at_the_header_timeout() {
    let options = ServeOptions {
        header_timeout: Duration::from_secs(5),
        connection_timeout: Duration::from_secs(60),
        max_connections: 4,
    };
    let (addr, _) = start(options).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = Vec::new();
    // Paused clock: the read returns once the server's timer has fired and it closed.
    s.read_to_end(&mut buf).await.unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited < Duration::from_secs(60),
        "closed after {waited:?}"
    );
    assert!(!String::from_utf8_lossy(&buf).contains("felhom_"));
}

#[tokio::test(start_paused = true)]
async fn a_request_body_is_never_read_and_connections_past_the_cap_are_closed() {
    let options = ServeOptions {
        header_timeout: Duration::from_secs(30),
        connection_timeout: Duration::from_secs(60),
        max_connections: 1,
    };
    let (addr, _) = start(options).await;
    // The one slot: connected, silent.
    let mut first = TcpStream::connect(addr).await.unwrap();
    tokio::task::yield_now().await;
    // Past the cap: closed at accept, without an answer.
    let mut second = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    second.read_to_end(&mut buf).await.unwrap();
    assert!(buf.is_empty(), "{}", String::from_utf8_lossy(&buf));
    // The first is still served; it announces a huge body the server never waits for.
    let answer = exchange(
        &mut first,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("felhom_build_info"), "{answer}");
}
