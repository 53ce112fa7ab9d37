//! The gate every request passes before any route: its `Host` must name the address the API
//! is bound to (a web page the operator visits cannot re-point its own host name at the API
//! — DNS rebinding), and it must carry the API token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::token::ApiToken;

/// `Host` header values accepted, at the bound port: an IP literal (`127.0.0.1:7480`,
/// `[::1]:7480`, the container's address) or `localhost`, plus names the operator configured
/// in `http_hosts` (a reverse proxy's, matched whole). DNS rebinding needs a host *name* the
/// attacker controls; an IP literal or `localhost` never resolves through the attacker.
#[derive(Clone, Debug)]
pub struct AllowedHosts {
    port: u16,
    names: Vec<String>,
}

impl AllowedHosts {
    pub fn for_bind(addr: SocketAddr, extra: &[String]) -> AllowedHosts {
        AllowedHosts {
            port: addr.port(),
            names: extra.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    pub fn allows(&self, host: &[u8]) -> bool {
        if self
            .names
            .iter()
            .any(|h| h.as_bytes().eq_ignore_ascii_case(host))
        {
            return true;
        }
        let Ok(host) = std::str::from_utf8(host) else {
            return false;
        };
        let Some((name, port)) = host.rsplit_once(':') else {
            return false;
        };
        if port.parse::<u16>().ok() != Some(self.port) {
            return false;
        }
        match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => {
                name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::Ipv4Addr>().is_ok()
            }
        }
    }
}

#[derive(Clone)]
pub struct Gate {
    pub token: ApiToken,
    pub hosts: AllowedHosts,
}

pub async fn check(State(gate): State<Arc<Gate>>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).map(|h| h.as_bytes());
    if !host.is_some_and(|h| gate.hosts.allows(h)) {
        return ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "the Host header does not name this API's address",
        )
        .into_response();
    }
    let authorized = request
        .headers()
        .get(header::AUTHORIZATION)
        .is_some_and(|a| gate.token.admits(a.as_bytes()));
    if !authorized {
        return ApiError::unauthorized().into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_ip_literals_or_localhost_at_the_port_or_configured_names() {
        let hosts = AllowedHosts::for_bind(
            "0.0.0.0:7480".parse().unwrap(),
            &["Node.Gov.Example".to_string()],
        );
        for ok in [
            "127.0.0.1:7480",
            "LOCALHOST:7480",
            "[::1]:7480",
            "172.17.0.3:7480",
            "node.gov.example",
        ] {
            assert!(hosts.allows(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "127.0.0.1:7481",
            "evil.example:7480",
            "127.0.0.1",
            "localhost",
            "127.0.0.1.evil.example:7480",
            "::1:7480",
            "",
        ] {
            assert!(!hosts.allows(bad.as_bytes()), "{bad}");
        }
    }
}
