//! The console's pages against an in-memory node: every page in Chinese and English with
//! region names and Beijing times, the ledger's verification, live events, and the console
//! merged with the API's router as the node serves them.

mod common;
mod fake;

use std::time::Duration;

use axum::http::{header, StatusCode};
use backflow_api::Directories;
use common::*;
use fake::Fake;
use http_body_util::BodyExt;
use tower::ServiceExt;

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
                "磁盘",
                "空间不足",
                "上级节点最近联系",
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
                "同意提供给第三方（第二十五条）",
                "to 4403 民政局 for 低保复核",
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
    assert!(page.contains("under review"));
    assert!(page.contains("overdue"));
    // The switch back keeps the query.
    let (_, page) = send(&e.app, get("/ui/catalog?q=%E6%88%B7%E7%B1%8D", Some(&both))).await;
    assert!(page.contains("1 results") || page.contains("1 result"));
    assert!(page.contains(r#"href="/ui/catalog?q=%E6%88%B7%E7%B1%8D&amp;lang=zh""#));
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

/// The delivery tree opens level by level: each child with regions below it links to its own
/// level, the way back is a trail of links, a child with no word from below shows stuck, and
/// the level's time line is drawn; the live stream follows the same level.
#[tokio::test]
async fn the_delivery_tree_opens_down_a_level_and_shows_stuck_regions() {
    let e = env();
    let cookie = login(&e.app, e.node.expose()).await;
    let (r, page) = send(&e.app, get("/ui/return-flow", Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let link = "/ui/return-flow?dataset=%E6%88%B7%E7%B1%8D%E4%BA%BA%E5%8F%A3&amp;region=4403";
    assert!(page.contains(link), "深圳市 opens:\n{page}");
    assert!(page.contains("送达时间线"), "{page}");
    assert!(page.contains("<path class=\"step\""), "{page}");

    let (r, page) = send(&e.app, get("/ui/return-flow?region=4403", Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::OK);
    for label in [
        "罗湖区",
        "福田区",
        "停滞",
        "state stuck",
        "data-events=\"/ui/events?region=4403\"",
    ] {
        assert!(page.contains(label), "lacks {label:?}:\n{page}");
    }
    // The trail: 广东省 (this node) links back up, 深圳市 is where we are.
    assert!(page.contains("region=44\">广东省</a>"), "{page}");
    assert!(page.contains("<strong>深圳市</strong>"), "{page}");

    // Not a region code: refused before the node is asked.
    let (r, _) = send(&e.app, get("/ui/return-flow?region=44x", Some(&cookie))).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let response = e
        .app
        .clone()
        .oneshot(get("/ui/events?region=4403", Some(&cookie)))
        .await
        .unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(5), response.into_body().frame())
        .await
        .expect("a first event at once")
        .unwrap()
        .unwrap();
    let text = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
    assert!(text.contains("福田区"), "{text}");
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

#[tokio::test]
async fn the_publish_form_streams_the_file_to_the_node() {
    let e = env();
    let cookie = login(&e.app, e.node.expose()).await;
    let (_, page) = send(&e.app, get("/ui/return-flow", Some(&cookie))).await;
    assert!(page.contains("发布新版本"));
    assert!(page.contains(r#"<progress id="publish-progress""#));
    let csrf = csrf_of(&page);
    // Far over the forms' 8 KiB: the upload has its own bound.
    let mut data = b"village,name\n".to_vec();
    for i in 0..10_000 {
        data.extend_from_slice(format!("440103001{:03},n{i}\n", i % 1000).as_bytes());
    }
    let request = axum::http::Request::post(
        "/ui/publish?dataset=%E6%88%B7%E7%B1%8D&region_field=village&format=csv",
    )
    .header(header::HOST, HOST)
    .header(header::COOKIE, &cookie)
    .header("x-csrf-token", &csrf)
    .body(axum::body::Body::from(data.clone()))
    .unwrap();
    let (r, answer) = send(&e.app, request).await;
    assert_eq!(r.status(), StatusCode::OK, "{answer}");
    assert!(answer.contains("已发布"), "{answer}");
    assert!(answer.contains("版本 4"), "{answer}");
    assert!(answer.contains("10,000 条记录"), "{answer}");
    let published = e.fake.published.lock().unwrap();
    let (job, params, bytes) = &published[0];
    assert!(*job >= 1 << 40, "apart from the API's job numbers");
    assert_eq!(params.dataset, "户籍");
    assert_eq!(params.region_field, "village");
    assert_eq!(params.format, "csv");
    assert_eq!(bytes, &data);
}

#[tokio::test]
async fn the_publish_form_offers_excel_and_parquet_and_refuses_unknown_formats() {
    let e = env();
    let cookie = login(&e.app, e.node.expose()).await;
    let (_, page) = send(&e.app, get("/ui/return-flow", Some(&cookie))).await;
    for option in [
        r#"<option value="csv">CSV</option>"#,
        r#"<option value="ndjson">NDJSON</option>"#,
        r#"<option value="xlsx">Excel (.xlsx)</option>"#,
        r#"<option value="parquet">Parquet</option>"#,
    ] {
        assert!(page.contains(option), "missing {option}");
    }
    let csrf = csrf_of(&page);
    let post = |format: &str| {
        axum::http::Request::post(format!(
            "/ui/publish?dataset=d&region_field=village&format={format}"
        ))
        .header(header::HOST, HOST)
        .header(header::COOKIE, &cookie)
        .header("x-csrf-token", &csrf)
        .body(axum::body::Body::from(b"PK\x03\x04\n".to_vec()))
        .unwrap()
    };
    // Another spelling of a known format reaches the node by its canonical name.
    let (r, answer) = send(&e.app, post("XLSX")).await;
    assert_eq!(r.status(), StatusCode::OK, "{answer}");
    let (r, answer) = send(&e.app, post("pq")).await;
    assert_eq!(r.status(), StatusCode::OK, "{answer}");
    for unknown in ["exe", "", "csv%00"] {
        let (r, answer) = send(&e.app, post(unknown)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{unknown}: {answer}");
        assert!(answer.contains("输入过长或无效"), "{answer}");
    }
    let published = e.fake.published.lock().unwrap();
    let formats: Vec<&str> = published
        .iter()
        .map(|(_, p, _)| p.format.as_str())
        .collect();
    assert_eq!(formats, ["xlsx", "parquet"]);
}
