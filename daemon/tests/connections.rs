//! Connections are bounded: slow headers and idle keep-alive connections are
//! closed, over-long heads are refused, and over `http.max_connections` the
//! extra connections wait until others close.

mod common;

use common::spawn_app_with;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn roles() -> atelier_daemon::app::Roles {
    atelier_daemon::app::Roles { http: true, events: false }
}

/// Reads until the peer closes (Ok) or `deadline` passes (Err), returning what
/// was read. A reset counts as closed.
async fn read_until_closed(stream: &mut TcpStream, deadline: Duration) -> Result<Vec<u8>, Vec<u8>> {
    let mut got = Vec::new();
    let end = Instant::now() + deadline;
    let mut buf = [0u8; 8192];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return Err(got),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads until `got` holds a whole response with a Content-Length body.
async fn read_response(stream: &mut TcpStream, deadline: Duration) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let end = Instant::now() + deadline;
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let len = text[..head_end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|n| n.trim().to_owned()))
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            if got.len() >= head_end + 4 + len {
                return text;
            }
        }
        let left = end.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            other => panic!("no whole response within {deadline:?} ({other:?}): {text}"),
        }
    }
}

#[tokio::test]
async fn a_client_sending_half_a_request_line_is_disconnected_after_the_header_timeout() {
    let timeout = Duration::from_secs(1);
    let mut app =
        spawn_app_with(roles(), &[("ATELIER__HTTP__HEADER_TIMEOUT", "1s"), ("ATELIER__HTTP__IDLE_TIMEOUT", "60s")])
            .await;
    let addr = app.base_url.trim_start_matches("http://").to_owned();
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET /hea").await.unwrap();
    let read = read_until_closed(&mut slow, timeout * 3).await;
    let took = started.elapsed();
    assert!(read.is_ok(), "still open after {took:?}");
    assert!(took >= timeout - Duration::from_millis(200), "closed after {took:?}, before the timeout");
    // The server still answers.
    assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_secs(1);
    let mut app =
        spawn_app_with(roles(), &[("ATELIER__HTTP__HEADER_TIMEOUT", "60s"), ("ATELIER__HTTP__IDLE_TIMEOUT", "1s")])
            .await;
    let addr = app.base_url.trim_start_matches("http://").to_owned();
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let first = read_response(&mut conn, Duration::from_secs(5)).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Kept alive: a second request on it is answered.
    conn.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let second = read_response(&mut conn, Duration::from_secs(5)).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    let started = Instant::now();
    let read = read_until_closed(&mut conn, idle * 3).await;
    let took = started.elapsed();
    assert_eq!(read, Ok(Vec::new()), "closed without a word, within {took:?}");
    assert!(took >= idle - Duration::from_millis(200), "closed after {took:?}, before the idle timeout");
    app.stop().await;
}

#[tokio::test]
async fn over_long_heads_get_414_and_431_with_the_envelope_and_hyper_refuses_huge_ones_bare() {
    let mut app = spawn_app_with(roles(), &[]).await;
    let long_header = "v".repeat(20 * 1024);
    let res = app.client.get(app.url("/api/v1/me")).header("x-filler", &long_header).send().await.unwrap();
    assert_eq!(res.status(), 431);
    assert!(res.headers().contains_key("x-request-id"));
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "headers_too_large", "{body}");
    let res = app.client.get(app.url(&format!("/health?q={}", "q".repeat(10 * 1024)))).send().await.unwrap();
    assert_eq!(res.status(), 414);
    assert!(res.headers().contains_key("x-request-id"));
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "uri_too_long", "{body}");

    // Over hyper's read buffer (about 400 KiB), hyper answers 431 itself,
    // before any of our code runs: no body, no request id; then it closes.
    let addr = app.base_url.trim_start_matches("http://").to_owned();
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    let huge = format!("GET /health HTTP/1.1\r\nhost: x\r\nx-filler: {}\r\n", "v".repeat(600 * 1024));
    let _ = conn.write_all(huge.as_bytes()).await;
    let got = read_until_closed(&mut conn, Duration::from_secs(5)).await.expect("closed");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    assert!(!text.to_ascii_lowercase().contains("x-request-id"), "{text}");
    assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn connections_over_the_limit_wait_until_others_close() {
    let mut app = spawn_app_with(
        roles(),
        &[
            ("ATELIER__HTTP__MAX_CONNECTIONS", "2"),
            ("ATELIER__HTTP__HEADER_TIMEOUT", "30s"),
            ("ATELIER__HTTP__IDLE_TIMEOUT", "30s"),
        ],
    )
    .await;
    let addr = app.base_url.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(&addr).await.unwrap();
        c.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let res = read_response(&mut c, Duration::from_secs(5)).await;
        assert!(res.starts_with("HTTP/1.1 200"), "{res}");
        held.push(c);
    }
    // The third is connected (the listen backlog) but not served.
    let mut third = TcpStream::connect(&addr).await.unwrap();
    third.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf)).await;
    assert!(early.is_err(), "the third connection was served while two were held: {early:?}");
    drop(held);
    let res = read_response(&mut third, Duration::from_secs(5)).await;
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    drop(third);
    let health = tokio::time::timeout(Duration::from_secs(5), app.client.get(app.url("/health")).send()).await;
    assert_eq!(health.expect("answers within 5 s").unwrap().status(), 200);
    app.stop().await;
}
