//! The console's defences: login and sessions, CSRF, a department's limits, escaping, the
//! security headers, bounded inputs and streams, and the Host check.

mod common;
mod fake;

use axum::http::{header, StatusCode};
use axum::Router;
use backflow_api::ApiToken;
use common::*;
use fake::Fake;
use tower::ServiceExt;

#[tokio::test]
async fn without_a_session_every_page_redirects_to_the_login() {
    let e = env();
    for path in [
        "/",
        "/ui/return-flow",
        "/ui/catalog",
        "/ui/catalog/hukou-1",
        "/ui/sharing",
        "/ui/ledger",
        "/ui/events",
    ] {
        let (r, _) = send(&e.app, get(path, None)).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(r.headers()[header::LOCATION], "/login", "{path}");
    }
    let (r, _) = send(&e.app, post("/ui/ledger/verify", None, "csrf=x")).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // A made-up session id is no session.
    let forged = format!("backflow_session={}", "ab".repeat(32));
    let (r, _) = send(&e.app, get("/", Some(&forged))).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // The login form and the stylesheet are open.
    let (r, page) = send(&e.app, get("/login", None)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(page.contains("API 令牌"), "{page}");
    let (r, css) = send(&e.app, get("/ui/style.css", None)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    assert!(css.contains("svg.bar"));
    // The icon a browser asks for on every page: found in Chromium, where the API's gate
    // answered 401, an error in the console of every page.
    let (r, icon) = send(&e.app, get("/favicon.ico", None)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "image/svg+xml");
    assert!(icon.starts_with("<svg"));
}

#[tokio::test]
async fn a_wrong_token_is_refused_without_a_session() {
    let e = env();
    for wrong in [
        ApiToken::generate().expose().to_string(),
        String::new(),
        "x".repeat(1_000),
    ] {
        let (r, page) = send(&e.app, post("/login", None, &format!("token={wrong}"))).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(
            set_cookies(&r)
                .iter()
                .all(|c| !c.starts_with("backflow_session")),
            "no session cookie"
        );
        assert!(page.contains("令牌不正确"));
        assert!(!page.contains(e.node.expose()));
    }
    // A body over the forms' bound is not read.
    let (r, _) = send(&e.app, post("/login", None, &"x".repeat(100_000))).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(set_cookies(&r).is_empty());
}

#[tokio::test]
async fn the_node_token_opens_a_session_with_a_strict_httponly_cookie() {
    let e = env();
    let (r, page) = send(
        &e.app,
        post("/login", None, &format!("token={}", e.node.expose())),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/");
    let cookies = set_cookies(&r);
    let session = cookies
        .iter()
        .find(|c| c.starts_with("backflow_session="))
        .unwrap();
    assert!(session.contains("HttpOnly"), "{session}");
    assert!(session.contains("SameSite=Strict"), "{session}");
    assert!(session.contains("Path=/"), "{session}");
    assert!(
        !session.contains(e.node.expose()),
        "the cookie is not the token"
    );
    assert!(!page.contains(e.node.expose()));
}

#[tokio::test]
async fn posts_need_the_session_csrf_token() {
    let e = env();
    let cookie = login(&e.app, e.node.expose()).await;
    let (_, page) = send(&e.app, get("/ui/ledger", Some(&cookie))).await;
    let csrf = csrf_of(&page);
    for form in ["", "csrf=", &format!("csrf={}", "0".repeat(64))] {
        let (r, _) = send(&e.app, post("/ui/ledger/verify", Some(&cookie), form)).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{form:?}");
        let (r, _) = send(&e.app, post("/logout", Some(&cookie), form)).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{form:?}");
    }
    // Another session's token is not this one's.
    let other = login(&e.app, e.node.expose()).await;
    let (_, other_page) = send(&e.app, get("/ui/ledger", Some(&other))).await;
    let (r, _) = send(
        &e.app,
        post(
            "/ui/ledger/verify",
            Some(&cookie),
            &format!("csrf={}", csrf_of(&other_page)),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // With it, the ledger is verified.
    let (r, page) = send(
        &e.app,
        post("/ui/ledger/verify", Some(&cookie), &format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(page.contains("校验通过"), "{page}");
    // A cross-site form is refused even with the token.
    let mut cross = post("/ui/ledger/verify", Some(&cookie), &format!("csrf={csrf}"));
    cross
        .headers_mut()
        .insert(header::ORIGIN, "http://evil.example".parse().unwrap());
    let (r, _) = send(&e.app, cross).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Logout ends the session.
    let (r, _) = send(
        &e.app,
        post("/logout", Some(&cookie), &format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(set_cookies(&r).iter().any(|c| c.contains("Max-Age=0")));
    let (r, _) = send(&e.app, get("/ui/ledger", Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_department_sees_its_sharing_only() {
    let e = env();
    let (r, _) = send(
        &e.app,
        post("/login", None, &format!("token={}", e.dept.expose())),
    )
    .await;
    assert_eq!(r.headers()[header::LOCATION], "/ui/sharing");
    let cookie = login(&e.app, e.dept.expose()).await;
    for path in [
        "/ui/ledger",
        "/ui/return-flow",
        "/ui/events",
        "/ui/catalog/hukou-1",
    ] {
        let (r, _) = send(&e.app, get(path, Some(&cookie))).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let (r, _) = send(&e.app, get("/", Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/ui/sharing");
    let (r, page) = send(&e.app, get("/ui/sharing", Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::OK);
    // 民政厅 filed the overdue request; 公安厅's received one is not its business.
    assert!(page.contains("中华人民共和国 国家统计局"));
    assert!(!page.contains("广州市 民政局"), "{page}");
    assert!(
        !page.contains(r#"href="/ui/ledger""#),
        "no ledger in its navigation"
    );
    // The catalog search, as in the API, is open to it.
    let (r, _) = send(&e.app, get("/ui/catalog?q=x", Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (_, page) = send(&e.app, get("/ui/ledger", Some(&cookie))).await;
    let (r, _) = send(
        &e.app,
        post(
            "/ui/ledger/verify",
            Some(&cookie),
            &format!("csrf={}", csrf_of(&page)),
        ),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn hostile_text_comes_out_escaped() {
    let fake = Fake::default();
    *fake.dataset.lock().unwrap() = "<script>alert(1)</script>\"'&".to_string();
    let e = env_with(fake);
    let cookie = login(&e.app, e.node.expose()).await;
    for path in ["/", "/ui/return-flow"] {
        let (_, page) = send(&e.app, get(path, Some(&cookie))).await;
        assert!(!page.contains("<script>alert(1)"), "{path}");
        assert!(
            page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}"
        );
    }
    // Input, too: a search and a dataset filter echo escaped.
    let (_, page) = send(
        &e.app,
        get(
            "/ui/return-flow?dataset=%3Cscript%3Ex%3C%2Fscript%3E",
            Some(&cookie),
        ),
    )
    .await;
    assert!(!page.contains("<script>x</script>"));
    assert!(page.contains("&lt;script&gt;x&lt;/script&gt;"));
    assert!(page.contains("/ui/events?dataset=%3Cscript%3Ex%3C%2Fscript%3E"));
    // Over-long inputs are refused.
    let long = format!("/ui/catalog?q={}", "a".repeat(300));
    let (r, _) = send(&e.app, get(&long, Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let huge = format!("/ui/catalog?q={}", "a".repeat(5000));
    let (r, _) = send(&e.app, get(&huge, Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::URI_TOO_LONG);
    let (r, _) = send(&e.app, get("/ui/catalog?sharing=bogus", Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn pages_carry_a_nonce_csp_and_refuse_framing_and_caching() {
    let e = env();
    let cookie = login(&e.app, e.node.expose()).await;
    let (r, page) = send(&e.app, get("/ui/return-flow", Some(&cookie))).await;
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"));
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("a nonce");
    assert!(nonce.len() >= 32);
    assert!(page.contains(&format!(r#"<script nonce="{nonce}">"#)));
    assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no external resources"
    );
    // A fresh nonce each time.
    let (r2, _) = send(&e.app, get("/ui/return-flow", Some(&cookie))).await;
    assert_ne!(r2.headers()[header::CONTENT_SECURITY_POLICY], csp);
}

/// Found in Chromium: under `Referrer-Policy: no-referrer` a browser posts a same-origin form
/// with `Origin: null`, which the cross-site check refuses, so no one could log in. The
/// policy must let our own forms carry their origin (and give other sites no referrer).
#[tokio::test]
async fn the_referrer_policy_lets_our_own_forms_carry_their_origin() {
    let e = env();
    let (r, _) = send(&e.app, get("/login", None)).await;
    assert_eq!(r.headers()[header::REFERRER_POLICY], "same-origin");
    let cookie = login(&e.app, e.node.expose()).await;
    let (r, page) = send(&e.app, get("/ui/ledger", Some(&cookie))).await;
    assert_eq!(r.headers()[header::REFERRER_POLICY], "same-origin");
    let csrf = csrf_of(&page);
    // What the browser sends under that policy: its origin, same-origin.
    let host = HOST;
    let form = |origin: &str, site: &str| {
        let mut p = post("/ui/ledger/verify", Some(&cookie), &format!("csrf={csrf}"));
        let h = p.headers_mut();
        h.insert(header::ORIGIN, origin.parse().unwrap());
        h.insert("sec-fetch-site", site.parse().unwrap());
        p
    };
    let (r, page) = send(&e.app, form(&format!("http://{host}"), "same-origin")).await;
    assert_eq!(r.status(), StatusCode::OK, "{page}");
    // An opaque origin (a sandboxed frame, a data: page) stays refused.
    let (r, _) = send(&e.app, form("null", "cross-site")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (r, _) = send(&e.app, form(&format!("http://{host}"), "same-site")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn live_streams_are_bounded_and_given_back() {
    let e = env();
    let cookie = login(&e.app, e.node.expose()).await;
    let open = |app: Router, cookie: String| async move {
        app.oneshot(get("/ui/events", Some(&cookie))).await.unwrap()
    };
    let mut streams = Vec::new();
    for _ in 0..backflow_console::events::STREAMS_MAX {
        let r = open(e.app.clone(), cookie.clone()).await;
        assert_eq!(r.status(), StatusCode::OK);
        streams.push(r);
    }
    let r = open(e.app.clone(), cookie.clone()).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    drop(streams.pop());
    let r = open(e.app.clone(), cookie.clone()).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_foreign_host_is_refused() {
    let e = env();
    let cookie = login(&e.app, e.node.expose()).await;
    for path in ["/", "/login", "/ui/style.css"] {
        let mut r = get(path, Some(&cookie));
        r.headers_mut()
            .insert(header::HOST, "evil.example:7480".parse().unwrap());
        let (r, _) = send(&e.app, r).await;
        assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST, "{path}");
    }
    let mut r = post("/login", None, &format!("token={}", e.node.expose()));
    r.headers_mut().remove(header::HOST);
    let (r, _) = send(&e.app, r).await;
    assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST);
    assert!(set_cookies(&r).is_empty());
}

#[tokio::test]
async fn publishing_needs_the_authority_and_the_csrf_header() {
    let e = env();
    let publish = |cookie: &str, csrf: Option<&str>, query: &str| {
        let mut r = axum::http::Request::post(format!("/ui/publish?{query}"))
            .header(header::HOST, HOST)
            .header(header::COOKIE, cookie);
        if let Some(c) = csrf {
            r = r.header("x-csrf-token", c);
        }
        r.body(axum::body::Body::from("v\n440103001001\n")).unwrap()
    };
    const OK: &str = "dataset=d&region_field=v&format=csv";
    let node = login(&e.app, e.node.expose()).await;
    let (_, page) = send(&e.app, get("/ui/ledger", Some(&node))).await;
    let csrf = csrf_of(&page);
    let (r, _) = send(&e.app, publish(&node, None, OK)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (r, _) = send(&e.app, publish(&node, Some(&"0".repeat(64)), OK)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    for bad in [
        "dataset=&region_field=v&format=csv",
        "dataset=d&region_field=v&format=docx",
        &format!("dataset={}&region_field=v&format=csv", "d".repeat(300)),
    ] {
        let (r, _) = send(&e.app, publish(&node, Some(&csrf), bad)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
    let dept = login(&e.app, e.dept.expose()).await;
    let (_, page) = send(&e.app, get("/ui/sharing", Some(&dept))).await;
    let (r, _) = send(&e.app, publish(&dept, Some(&csrf_of(&page)), OK)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (r, _) = send(&e.app, publish("", Some(&csrf), OK)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        e.fake.published.lock().unwrap().is_empty(),
        "nothing published"
    );
    let (r, _) = send(&e.app, publish(&node, Some(&csrf), OK)).await;
    assert_eq!(r.status(), StatusCode::OK);
}
