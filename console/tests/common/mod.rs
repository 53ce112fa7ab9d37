//! What the console's tests share: a console over the in-memory node, requests, logins.

#![allow(dead_code)]

use axum::body::Body;
use axum::http::{header, Request, Response, StatusCode};
use axum::Router;
use backflow_api::gate::{AllowedHosts, DepartmentTokens, Gate};
use backflow_api::ApiToken;
use backflow_topology::RegionCode;
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::fake::Fake;

pub const HOST: &str = "127.0.0.1:7480";

pub struct Env {
    pub app: Router,
    pub node: ApiToken,
    pub dept: ApiToken,
    pub gate: Gate,
    pub fake: Fake,
}

pub fn env_with(fake: Fake) -> Env {
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

pub fn env() -> Env {
    env_with(Fake::default())
}

pub async fn send(app: &Router, request: Request<Body>) -> (Response<Body>, String) {
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        Response::from_parts(parts, Body::empty()),
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

pub fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut r = Request::get(path).header(header::HOST, HOST);
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::empty()).unwrap()
}

pub fn post(path: &str, cookie: Option<&str>, form: &str) -> Request<Body> {
    let mut r = Request::post(path)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        r = r.header(header::COOKIE, c);
    }
    r.body(Body::from(form.to_string())).unwrap()
}

pub fn set_cookies(r: &Response<Body>) -> Vec<String> {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// Logs in with `token`; returns the `Cookie` header value of the session.
pub async fn login(app: &Router, token: &str) -> String {
    let (r, _) = send(app, post("/login", None, &format!("token={token}"))).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("backflow_session="))
        .expect("a session cookie");
    cookie.split(';').next().unwrap().to_string()
}

/// The CSRF token a page's forms carry.
pub fn csrf_of(page: &str) -> String {
    let at = page.find(r#"name="csrf" value=""#).expect("a csrf field") + 19;
    page[at..at + 64].to_string()
}
