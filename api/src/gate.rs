//! The gate every request passes before any route: its `Host` must name the address the API
//! is bound to (a web page the operator visits cannot re-point its own host name at the API
//! — DNS rebinding), and it must carry the node's API token or a department's. The gate
//! names who is calling ([`Principal`], a request extension the routes read): the node's
//! token may do everything; a department's token only what the department itself does —
//! share requests as that department ([`DEPARTMENT_PATHS`]). The API's description alone
//! needs no token ([`OPEN_PATHS`]).

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
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

/// Who a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The node's own token: the operator (and the jurisdiction's data-sharing authority).
    Node,
    /// A department's token (`backflow dept add`): acts as that department only.
    Department(String),
}

impl Principal {
    /// Only the node's token (the jurisdiction's data-sharing authority) may do this.
    pub fn require_node(&self) -> Result<(), ApiError> {
        match self {
            Principal::Node => Ok(()),
            Principal::Department(d) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "only the data-sharing authority (the node's token) may do this, not department {d:?}"
                ),
            )),
        }
    }

    /// The department a request acts as: the one it names (the node's token may name any of
    /// the node's departments; a department's token only its own), else the caller's own;
    /// `None`: the node's token named none (the node's configured department acts).
    pub fn acting_as(&self, named: Option<&str>) -> Result<Option<String>, ApiError> {
        let named = named.map(str::trim).filter(|n| !n.is_empty());
        match (self, named) {
            (Principal::Department(own), Some(n)) if n != own => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this token acts for department {own:?} only, not {:?}",
                    n.chars().take(64).collect::<String>()
                ),
            )),
            (Principal::Department(own), _) => Ok(Some(own.clone())),
            (Principal::Node, named) => Ok(named.map(str::to_string)),
        }
    }
}

/// Paths a department's token may use (routes under them that are the authority's alone
/// check [`Principal::require_node`]). A department searches the unified catalog it requests
/// from (Arts. 16, 20: published to every department); the catalog listing and publishing
/// stay the authority's.
pub const DEPARTMENT_PATHS: &[&str] = &[
    "/api/share",
    "/api/catalog-review",
    "/api/duty-changes",
    "/api/catalog-search",
    // A requesting department's own use records (Art. 29); the ledger itself is the
    // authority's to read.
    "/api/ledger/record",
];

/// Paths answered without a token (`GET`/`HEAD` only; the `Host` check still applies): the
/// OpenAPI document. It is the same for every node of a build and reveals nothing the source
/// does not — no token, key, region, department or data; it takes no input beyond the path
/// and answers bytes built once. An integrator needs it to write a client before a token is
/// issued to it, and a department's token, confined to [`DEPARTMENT_PATHS`], could not
/// otherwise read it. Keeping the Host check means a page the operator visits still cannot
/// read it through a rebound host name, like every other path.
pub const OPEN_PATHS: &[&str] = &[OPENAPI_PATH];

/// Where the OpenAPI document is served ([`crate::openapi`]).
pub const OPENAPI_PATH: &str = "/api/openapi.json";

/// The departments' tokens, shared with the node, which adds one when a department is added.
#[derive(Clone, Default)]
pub struct DepartmentTokens(Arc<RwLock<Vec<(String, ApiToken)>>>);

impl std::fmt::Debug for DepartmentTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DepartmentTokens(..)")
    }
}

impl DepartmentTokens {
    /// Sets `department`'s token (replacing an earlier one).
    pub fn insert(&self, department: &str, token: ApiToken) {
        let mut all = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.retain(|(d, _)| d != department);
        all.push((department.to_string(), token));
    }

    /// The department whose token `authorization` carries. Every token is compared (each in
    /// constant time), so timing does not tell how many there are before the match.
    fn admit(&self, authorization: &[u8]) -> Option<String> {
        let all = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut found = None;
        for (department, token) in all.iter() {
            if token.admits(authorization) {
                found = Some(department.clone());
            }
        }
        found
    }
}

#[derive(Clone)]
pub struct Gate {
    pub token: ApiToken,
    pub departments: DepartmentTokens,
    pub hosts: AllowedHosts,
}

impl Gate {
    /// Who an `Authorization` header value speaks for: the node's token, a department's, or
    /// nobody. Every comparison is in constant time ([`ApiToken::admits`]).
    pub fn principal_for(&self, authorization: &[u8]) -> Option<Principal> {
        if self.token.admits(authorization) {
            return Some(Principal::Node);
        }
        self.departments
            .admit(authorization)
            .map(Principal::Department)
    }

    /// Who a bare token speaks for (as typed into the console's login form).
    pub fn principal_for_token(&self, token: &str) -> Option<Principal> {
        self.principal_for(format!("Bearer {}", token.trim()).as_bytes())
    }
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
    let method = request.method();
    if (method == Method::GET || method == Method::HEAD)
        && OPEN_PATHS.contains(&request.uri().path())
    {
        return next.run(request).await;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|a| a.as_bytes());
    let Some(principal) = authorization.and_then(|a| gate.principal_for(a)) else {
        return ApiError::unauthorized().into_response();
    };
    if let Principal::Department(department) = &principal {
        let path = request.uri().path();
        let allowed = DEPARTMENT_PATHS
            .iter()
            .any(|p| path == *p || path.starts_with(&format!("{p}/")));
        if !allowed {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "the token of department {department:?} may use only {}",
                    DEPARTMENT_PATHS.join(", ")
                ),
            )
            .into_response();
        }
    }
    let mut request = request;
    request.extensions_mut().insert(principal);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_token_names_the_node_or_its_department() {
        let gate = Gate {
            token: ApiToken::generate(),
            departments: DepartmentTokens::default(),
            hosts: AllowedHosts::for_bind("127.0.0.1:7480".parse().unwrap(), &[]),
        };
        let dept = ApiToken::generate();
        gate.departments.insert("民政厅", dept.clone());
        assert_eq!(
            gate.principal_for_token(gate.token.expose()),
            Some(Principal::Node)
        );
        assert_eq!(
            gate.principal_for_token(&format!(" {}\n", dept.expose())),
            Some(Principal::Department("民政厅".into()))
        );
        assert_eq!(
            gate.principal_for_token(ApiToken::generate().expose()),
            None
        );
        assert_eq!(gate.principal_for_token(""), None);
    }

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
