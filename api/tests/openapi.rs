//! The OpenAPI document against the router it describes (the CI check of issue #20): every
//! path the router registers is in the document and no other; on each of them, every method
//! the router answers is documented and every documented method is answered. The paths come
//! from [`registered_paths`], the list `router()` is built from; the methods from asking the
//! real router (over the in-memory node) with each method, since axum cannot list them.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use backflow_api::openapi::{OPENAPI_PATH, SECURITY_SCHEME};
use backflow_api::routes::registered_paths;
use common::{request, send, setup, Fake, Setup, HOST};

/// Methods probed on every path (HEAD follows GET in axum; OPTIONS and TRACE are never routed).
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH"];

/// The fallback's answer: the router has no such path.
const NO_SUCH_ROUTE: &[u8] = br#"{"error":"no such route"}"#;

/// The document as served, fetched without a token.
async fn served_document(s: &Setup) -> serde_json::Value {
    let r = Request::builder()
        .uri(OPENAPI_PATH)
        .header(header::HOST, HOST)
        .body(Body::empty())
        .unwrap();
    let (status, body) = send(&s.app, r).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

/// Path → documented methods (upper case).
fn documented(doc: &serde_json::Value) -> BTreeMap<String, BTreeSet<String>> {
    let paths = doc["paths"].as_object().expect("paths");
    paths
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .expect("a path item")
                .keys()
                .filter(|k| {
                    [
                        "get", "put", "post", "delete", "options", "head", "patch", "trace",
                    ]
                    .contains(&k.as_str())
                })
                .map(|k| k.to_ascii_uppercase())
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

/// A concrete URI for a templated path: every `{param}` becomes `1` (a valid job number,
/// submission number and id prefix alike; the handler may answer 404, but not the router).
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => in_param = true,
            '}' => {
                in_param = false;
                out.push('1');
            }
            c if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

/// Whether the router serves `method` on `path`: it neither says the method is not allowed
/// there (405) nor falls through to its fallback.
async fn served(s: &Setup, method: &str, path: &str) -> bool {
    let (status, body) = send(&s.app, request(s, method, &concrete(path), Body::empty())).await;
    !(status == StatusCode::METHOD_NOT_ALLOWED
        || (status == StatusCode::NOT_FOUND && body == NO_SUCH_ROUTE))
}

#[tokio::test]
async fn the_document_describes_exactly_the_routes_the_router_serves() {
    let s = setup(false);
    let doc = served_document(&s).await;
    let documented = documented(&doc);
    let registered: BTreeSet<String> = registered_paths::<Fake>()
        .into_iter()
        .map(str::to_string)
        .collect();
    assert_eq!(
        registered.len(),
        registered_paths::<Fake>().len(),
        "a path registered twice"
    );
    let documented_paths: BTreeSet<String> = documented.keys().cloned().collect();
    let undocumented: Vec<_> = registered.difference(&documented_paths).collect();
    let unserved: Vec<_> = documented_paths.difference(&registered).collect();
    assert!(
        undocumented.is_empty() && unserved.is_empty(),
        "routes the document lacks (annotate the handler and list it in openapi::ApiDoc): \
         {undocumented:?}; paths the document lists that the router does not register: \
         {unserved:?}"
    );
    let mut wrong = Vec::new();
    for path in &registered {
        for &method in METHODS {
            let is_documented = documented[path].contains(method);
            if served(&s, method, path).await != is_documented {
                wrong.push(format!(
                    "{method} {path}: {}",
                    if is_documented {
                        "documented, but the router does not serve it"
                    } else {
                        "served by the router, but not documented"
                    }
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // The probe itself can tell: a path nobody registered falls through, a wrong method is 405.
    assert!(!served(&s, "GET", "/api/no-such-route").await);
    assert!(!served(&s, "DELETE", "/api/status").await);
    assert!(served(&s, "GET", "/api/status").await);
}

/// Every operation says what it answers, the token it needs, and refers only to schemas the
/// document has; every `{param}` of a path is declared.
#[tokio::test]
async fn every_operation_is_complete_and_every_reference_resolves() {
    let s = setup(false);
    let doc = served_document(&s).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let scheme = &doc["components"]["securitySchemes"][SECURITY_SCHEME];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(doc["security"][0][SECURITY_SCHEME], serde_json::json!([]));
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("200"), "{at}: no 200");
            assert!(responses.contains_key("421"), "{at}: the Host check");
            for (status, r) in responses {
                assert!(
                    r["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{at} {status}: no description"
                );
            }
            assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{at}");
            assert!(
                op["summary"].as_str().is_some_and(|t| !t.is_empty()),
                "{at}: no summary"
            );
            if path == OPENAPI_PATH {
                // Open: an empty requirement overrides the document's token.
                assert_eq!(op["security"], serde_json::json!([{}]), "{at}");
            } else {
                assert!(op.get("security").is_none(), "{at}: the token applies");
                assert!(responses.contains_key("401"), "{at}: the token check");
            }
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let templated: BTreeSet<&str> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(declared, templated, "{at}: path parameters");
        }
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {r}"));
        assert!(schemas.contains_key(name), "dangling reference {r}");
    }
}

fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                match (k.as_str(), v.as_str()) {
                    ("$ref", Some(r)) => out.push(r.to_string()),
                    _ => collect_refs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// The document needs no token (an integrator reads it before it has one) but the right
/// Host, like every path; nothing else on its path is open, and it names no secret.
#[tokio::test]
async fn the_document_needs_the_host_but_no_token_and_holds_no_secret() {
    let s = setup(false);
    let doc = served_document(&s).await;
    let text = doc.to_string();
    assert!(!text.contains(s.token.expose()));
    let bare = |method: &str, host: &str| {
        Request::builder()
            .method(method)
            .uri(OPENAPI_PATH)
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap()
    };
    let response = tower::ServiceExt::oneshot(s.app.clone(), bare("GET", HOST))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(
        send(&s.app, bare("GET", "attacker.example:7480")).await.0,
        StatusCode::MISDIRECTED_REQUEST
    );
    // Only GET (and HEAD) are open: another method still needs the token.
    assert_eq!(
        send(&s.app, bare("POST", HOST)).await.0,
        StatusCode::UNAUTHORIZED
    );
    // Neighbouring paths are not open.
    for uri in ["/api/openapi.json/x", "/api/openapi.jso", "/api/status"] {
        let mut r = bare("GET", HOST);
        *r.uri_mut() = uri.parse().unwrap();
        assert_eq!(send(&s.app, r).await.0, StatusCode::UNAUTHORIZED, "{uri}");
    }
    // A department's token reads it too (the gate does not confine it here).
    let mut r = bare("GET", HOST);
    r.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {}", "ab".repeat(32)).parse().unwrap(),
    );
    assert_eq!(send(&s.app, r).await.0, StatusCode::OK);
}

/// The `curl` commands of node/README.md's "HTTP API (OpenAPI)" section, each as
/// (method, path as requested): a command continues over lines ending in `\\` and over a quoted
/// JSON body's line breaks.
fn readme_examples() -> Vec<(String, String)> {
    let readme = include_str!("../../node/README.md");
    let start = readme
        .find("\n## HTTP API (OpenAPI)\n")
        .expect("node/README.md has the section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in section.lines() {
        let open_before = current.matches('\'').count() % 2 == 1;
        current.push_str(&without_comment(line, open_before));
        current.push('\n');
        let quotes_open = current.matches('\'').count() % 2 == 1;
        if !quotes_open && !line.trim_end().ends_with('\\') {
            commands.push(std::mem::take(&mut current));
        }
    }
    let mut out = Vec::new();
    for command in commands.iter().filter(|c| c.contains("curl ")) {
        let Some(at) = command.find("$API/") else {
            continue;
        };
        let path: String = command[at + 4..]
            .chars()
            .take_while(|c| !matches!(c, '?' | '"' | '\'' | ' ' | '\n'))
            .collect();
        let words: Vec<&str> = command.split_whitespace().collect();
        let method = if let Some(i) = words.iter().position(|w| *w == "-X") {
            words.get(i + 1).copied().unwrap_or("").to_string()
        } else if words.contains(&"-G") {
            "GET".to_string()
        } else if words
            .iter()
            .any(|w| matches!(*w, "-d" | "--data" | "--data-binary" | "--data-urlencode"))
        {
            "POST".to_string()
        } else {
            "GET".to_string()
        };
        out.push((method, path));
    }
    out
}

/// A line without its shell comment (a `#` after white space, outside single quotes; the
/// comments' apostrophes would otherwise read as quotes).
fn without_comment(line: &str, mut quoted: bool) -> String {
    let mut out = String::new();
    let mut after_space = true;
    for c in line.chars() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c == '#' && !quoted && after_space {
            break;
        }
        after_space = c.is_whitespace();
        out.push(c);
    }
    out
}

/// Whether a concrete path (`/api/share/3fa2c1d0`) is an instance of a documented template.
fn instance_of(path: &str, template: &str) -> bool {
    let (p, t): (Vec<&str>, Vec<&str>) = (path.split('/').collect(), template.split('/').collect());
    p.len() == t.len()
        && p.iter()
            .zip(&t)
            .all(|(p, t)| p == t || (t.starts_with('{') && t.ends_with('}') && !p.is_empty()))
}

/// node/README.md has one worked `curl` example per documented route, and none of a route
/// the API does not have.
#[tokio::test]
async fn the_readme_has_a_curl_example_of_every_route() {
    let s = setup(false);
    let documented = documented(&served_document(&s).await);
    let examples = readme_examples();
    let mut covered: BTreeSet<(String, String)> = BTreeSet::new();
    let mut strays = Vec::new();
    for (method, path) in &examples {
        // A literal path first (`/api/share` is not `/api/share/{id}`), else a template.
        let template = documented
            .keys()
            .find(|t| *t == path)
            .or_else(|| documented.keys().find(|t| instance_of(path, t)));
        match template.filter(|t| documented[*t].contains(method)) {
            Some(t) => {
                covered.insert((method.clone(), t.clone()));
            }
            None => strays.push(format!("{method} {path}")),
        }
    }
    let missing: Vec<String> = documented
        .iter()
        .flat_map(|(path, methods)| methods.iter().map(move |m| (m.clone(), path.clone())))
        .filter(|op| !covered.contains(op))
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert!(
        missing.is_empty() && strays.is_empty(),
        "node/README.md, HTTP API (OpenAPI): no example of {missing:?}; examples of no route: \
         {strays:?}"
    );
}
