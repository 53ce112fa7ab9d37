//! The console against an in-memory node: login and sessions, every page in Chinese and
//! English, CSRF, the department's limits, escaping, the security headers, live events, the
//! Host check, and the console merged with the API's router as the node serves them.

mod fake;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use backflow_api::gate::{AllowedHosts, DepartmentTokens, Gate};
use backflow_api::{ApiToken, Directories};
use backflow_topology::RegionCode;
use fake::Fake;
use http_body_util::BodyExt;
use tower::ServiceExt;

const HOST: &str = "127.0.0.1:7480";

struct Env {
    app: Router,
    node: ApiToken,
    dept: ApiToken,
    gate: Gate,
    fake: Fake,
}

fn env_with(fake: Fake) -> Env {
    let node = ApiToken::generate();
    let dept = ApiToken::generate();
    let departments = DepartmentTokens::default();
    departments.insert("民政厅", dept.clone());
    let gate = Gate {
        token: node.clone(),
        departments,
        hosts: AllowedHosts::for_bind(HOST.parse().unwrap(), &[]),
    };
    let app =
        backflow_console::router(fake.clone(), gate.clone(), RegionCode::parse("44").unwrap());
    Env {
        app,
        node,
        dept,
        gate,
        fake,
    }
}

fn env() -> Env {
    env_with(Fake::default())
}

async fn send(app: &Router, request: Request<Body>) -> (Response<Body>, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        Response::from_parts(parts, Body::empty()),
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut r = Request::get(path).header(header::HOST, HOST);
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::empty()).unwrap()
}

fn post(path: &str, cookie: Option<&str>, form: &str) -> Request<Body> {
    let mut r = Request::post(path)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::from(form.to_string())).unwrap()
}

fn set_cookies(r: &Response<Body>) -> Vec<String> {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// Logs in with `token`; returns the `Cookie` header value of the session.
async fn login(app: &Router, token: &str) -> String {
    let (r, _) = send(app, post("/login", None, &format!("token={token}"))).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("backflow_session="))
        .expect("a session cookie");
    cookie.split(';').next().unwrap().to_string()
}

/// The CSRF token a page's forms carry.
fn csrf_of(page: &str) -> String {
    let at = page.find(r#"name="csrf" value=""#).expect("a csrf field") + 19;
    page[at..at + 64].to_string()
}

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
async fn every_page_renders_in_chinese_with_region_names() {
    let e = env();
    let cookie = login(&e.app, e.node.expose()).await;
    let cases: [(&str, &[&str]); 6] = [
        (
            "/",
            &[
                "概览",
                "本节点辖区",
                "广东省",
                "中华人民共和国",
                "广州市",
                "深圳市",
                "上级节点",
                "下级节点",
                "上级节点连接",
                "已连接 · 中华人民共和国 (0) · QUIC",
                "QUIC",
                "TCP",
                "户籍人口",
            ],
        ),
        (
            "/ui/return-flow",
            &[
                "数据回流",
                "户籍人口",
                "广州市",
                "深圳市",
                "珠海市",
                "已送达",
                "部分送达",
                "待送达",
                "2026-12-06 08:30",
                "<svg",
                "data-events=\"/ui/events\"",
            ],
        ),
        (
            "/ui/catalog?q=%E6%88%B7%E7%B1%8D",
            &[
                "数据目录",
                "户籍人口信息",
                "广东省 (44)",
                "公安厅",
                "共 1 条结果",
                "待审核的目录提交（第十七条） (1)",
                "yimiao-1, yimiao-2",
                "剩余 2 个工作日",
                "《教育法》修订",
            ],
        ),
        (
            "/ui/catalog/hukou-1",
            &[
                "户籍人口信息",
                "共享属性",
                "有条件共享",
                "社会救助审核",
                "批量交换",
                "每月",
                "重要数据",
                "公民身份号码",
            ],
        ),
        (
            "/ui/sharing",
            &[
                "数据共享",
                "收到的申请",
                "发出的申请",
                "广州市 民政局",
                "中华人民共和国 国家统计局",
                "剩余 3 个工作日",
                "已逾期",
                "审核中",
                "granted, conditions: 仅限审核&lt;b&gt;",
                "争议（第二十八条）",
            ],
        ),
        (
            "/ui/ledger",
            &[
                "合规台账",
                "最近签名的树头",
                "最近见证的树头",
                "中华人民共和国 (0)",
                "校验整个台账",
                "2026-12-06 08:30",
                "<td>发布</td>",
            ],
        ),
    ];
    for (path, labels) in cases {
        let (r, page) = send(&e.app, get(path, Some(&cookie))).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}: {page}");
        assert!(page.contains(r#"<html lang="zh-CN">"#), "{path}");
        for label in labels {
            assert!(page.contains(label), "{path} lacks {label:?}:\n{page}");
        }
    }
    // Overdue first: the overdue request is in the first table row of requests filed.
    let (_, page) = send(&e.app, get("/ui/sharing", Some(&cookie))).await;
    assert!(page.contains(r#"<tr class="overdue">"#));
    // The dataset filter reaches the node.
    let (_, _) = send(
        &e.app,
        get("/ui/return-flow?dataset=%E6%88%B7%E7%B1%8D", Some(&cookie)),
    )
    .await;
    assert_eq!(
        e.fake.asked.lock().unwrap().last().unwrap().as_deref(),
        Some("户籍")
    );
    let (r, _) = send(&e.app, get("/ui/catalog/nope", Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn lang_en_switches_to_english_and_is_remembered() {
    let e = env();
    let cookie = login(&e.app, e.node.expose()).await;
    let (r, page) = send(&e.app, get("/ui/return-flow?lang=en", Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(page.contains(r#"<html lang="en">"#));
    assert!(page.contains("Return flow"));
    assert!(page.contains("partial") && page.contains("pending"));
    assert!(!page.contains("部分送达"));
    let lang = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("lang=en"))
        .expect("a lang cookie");
    assert!(lang.contains("SameSite=Strict"));
    // Remembered by the cookie.
    let both = format!("{cookie}; lang=en");
    let (_, page) = send(&e.app, get("/ui/sharing", Some(&both))).await;
    assert!(page.contains("Requests received"));
    assert!(page.contains("3 working days left"));
    assert!(page.contains("overdue"));
    // The switch back keeps the query.
    let (_, page) = send(&e.app, get("/ui/catalog?q=%E6%88%B7%E7%B1%8D", Some(&both))).await;
    assert!(page.contains("1 results") || page.contains("1 result"));
    assert!(page.contains(r#"href="/ui/catalog?q=%E6%88%B7%E7%B1%8D&amp;lang=zh""#));
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
async fn a_failed_verification_names_the_entry() {
    let e = env_with(Fake {
        verify_ok: false,
        ..Fake::default()
    });
    let cookie = login(&e.app, e.node.expose()).await;
    let (_, page) = send(&e.app, get("/ui/ledger?lang=en", Some(&cookie))).await;
    let (_, page) = send(
        &e.app,
        post(
            "/ui/ledger/verify",
            Some(&format!("{cookie}; lang=en")),
            &format!("csrf={}", csrf_of(&page)),
        ),
    )
    .await;
    assert!(page.contains("Verification failed"), "{page}");
    assert!(page.contains("leaf hash differs"));
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

#[tokio::test]
async fn events_stream_delivery_fragments() {
    let e = env();
    let cookie = login(&e.app, e.node.expose()).await;
    let response = e
        .app
        .clone()
        .oneshot(get("/ui/events?dataset=x", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = response.into_body();
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("a first event at once")
        .unwrap()
        .unwrap();
    let text = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
    assert!(text.starts_with("event: delivery\n"), "{text}");
    assert!(text.contains("深圳市"), "{text}");
    assert_eq!(
        e.fake.asked.lock().unwrap().last().unwrap().as_deref(),
        Some("x")
    );
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

/// As the node serves them: the console merged with the API. Console pages are not behind
/// the API's bearer token; API routes and unknown paths still are (the API's one fallback).
#[tokio::test]
async fn merged_with_the_api_each_keeps_its_own_gate() {
    let e = env();
    let api = backflow_api::router(e.fake.clone(), e.gate.clone(), Directories::default());
    let app = e.app.clone().merge(api);
    let (r, _) = send(&app, get("/login", None)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (r, _) = send(&app, get("/", None)).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = login(&app, e.node.expose()).await;
    let (r, _) = send(&app, get("/ui/sharing", Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::OK);
    // A session cookie is not an API credential.
    for path in ["/api/status", "/metrics", "/no/such/path"] {
        let (r, _) = send(&app, get(path, Some(&cookie))).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let mut r = get("/api/status", None);
    r.headers_mut()
        .insert(header::AUTHORIZATION, e.node.bearer().parse().unwrap());
    let (r, _) = send(&app, r).await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut r = get("/no/such/path", None);
    r.headers_mut()
        .insert(header::AUTHORIZATION, e.node.bearer().parse().unwrap());
    let (r, _) = send(&app, r).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
