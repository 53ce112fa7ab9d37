//! The CLI's client for its own node's API: HTTP/1.1 over loopback with hyper (already in the
//! build for the server), the API token on every request, uploads streamed from a file and
//! exports streamed to one — neither is held in memory.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::token::ApiToken;

/// A JSON answer larger than this is refused (the catalog of a whole province is far smaller).
pub const RESPONSE_JSON_BYTES_MAX: usize = 64 * 1024 * 1024;
const CONNECT_MS_MAX: u64 = 5_000;

type BoxBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

pub struct Client {
    addr: SocketAddr,
    token: ApiToken,
}

impl Client {
    pub fn new(addr: SocketAddr, token: ApiToken) -> Client {
        Client { addr, token }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        length: Option<u64>,
        body: BoxBody,
    ) -> Result<Response<Incoming>> {
        let addr = self.addr;
        let stream = tokio::time::timeout(
            Duration::from_millis(CONNECT_MS_MAX),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        .ok()
        .and_then(|r| r.ok())
        .with_context(|| {
            format!("cannot reach the node's API at {addr}: is `backflow run` running?")
        })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, addr.to_string())
            .header(AUTHORIZATION, self.token.bearer())
            .header(CONTENT_TYPE, content_type);
        if let Some(n) = length {
            request = request.header(CONTENT_LENGTH, n);
        }
        Ok(sender.send_request(request.body(body)?).await?)
    }

    /// A JSON request; an error status becomes an error carrying the API's message.
    pub async fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let bytes = Bytes::from(body.map(|b| b.to_string()).unwrap_or_default());
        let length = bytes.len() as u64;
        let body = Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync();
        let response = self
            .send(method, path, "application/json", Some(length), body)
            .await?;
        read_json(response).await
    }

    /// Streams `input` (of `length` bytes) as the body; `progress` sees bytes sent so far.
    pub async fn upload(
        &self,
        path: &str,
        input: impl AsyncRead + Send + 'static,
        length: u64,
        progress: impl Fn(u64) + Send + 'static,
    ) -> Result<serde_json::Value> {
        let mut sent = 0u64;
        let frames = futures::StreamExt::map(tokio_util::io::ReaderStream::new(input), move |r| {
            r.map(|bytes| {
                sent += bytes.len() as u64;
                progress(sent);
                Frame::data(bytes)
            })
        });
        let body = BodyExt::boxed_unsync(StreamBody::new(frames));
        let response = self
            .send("POST", path, "application/octet-stream", Some(length), body)
            .await?;
        read_json(response).await
    }

    /// A streamed GET written to `out`; returns the response headers and the bytes written.
    /// Fails if the node cut the stream off (an export that stopped verifying midway).
    pub async fn download(
        &self,
        path: &str,
        out: &mut (impl AsyncWrite + Unpin),
    ) -> Result<(HeaderMap, u64)> {
        let empty = Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed_unsync();
        let response = self
            .send("GET", path, "application/json", None, empty)
            .await?;
        if !response.status().is_success() {
            read_json(response).await?;
            bail!("the node refused the download");
        }
        let headers = response.headers().clone();
        let mut body = response.into_body();
        let mut written = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.context("the node cut the export off; nothing was kept")?;
            if let Ok(data) = frame.into_data() {
                out.write_all(&data).await?;
                written += data.len() as u64;
            }
        }
        out.flush().await?;
        Ok((headers, written))
    }
}

async fn read_json(response: Response<Incoming>) -> Result<serde_json::Value> {
    let status = response.status();
    let bytes = Limited::new(response.into_body(), RESPONSE_JSON_BYTES_MAX)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the API's answer: {e}"))?
        .to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("the API answered {status} with a body that is not JSON"))?;
    if !status.is_success() {
        bail!(
            "{}",
            value
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("the API refused the request")
        );
    }
    Ok(value)
}
