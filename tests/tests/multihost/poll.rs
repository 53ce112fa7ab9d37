//! Polling from the test process: a minimal HTTP client for the nodes' APIs and the bounded
//! wait every check goes through.
//!
//! Every wait is bounded and fails with a message naming what it waited for. These two
//! know nothing of [`crate::net::Net`], so that starting a container (which waits for its
//! API) and the clients and checks built on `Net` can all use them without an import circle.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Bound on one HTTP request to a node.
const HTTP_TIMEOUT_MS: u64 = 5_000;

/// A node's API on the private network: its address and its token (`<data dir>/api.token`).
#[derive(Clone, Debug)]
pub struct Api {
    pub addr: SocketAddr,
    pub token: String,
}

/// A minimal HTTP/1.0 JSON client for the nodes' APIs on the private network.
pub fn http(api: &Api, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let addr = api.addr;
    let timeout = Duration::from_millis(HTTP_TIMEOUT_MS);
    let mut s =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        api.token,
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .map_err(|e| format!("reading from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&resp);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("malformed HTTP response")?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("malformed status line")?;
    let v: Value =
        serde_json::from_str(body).map_err(|e| format!("non-JSON ({code}): {e}: {body}"))?;
    if code >= 400 {
        return Err(format!("HTTP {code}: {v}"));
    }
    Ok(v)
}

/// Polls `probe` every 250 ms until it returns `Some`, for at most `limit`; panics with
/// `what` on timeout. No blind sleeps: the wait ends as soon as the condition holds.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {} s waiting for {what}", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
