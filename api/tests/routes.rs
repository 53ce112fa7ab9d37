//! The API against an in-memory backend: the gate, streamed publish, confinement and exports.

mod common;

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{header, StatusCode};
use backflow_api::ApiToken;
use common::{json_request, request, send, setup};
use http_body_util::BodyExt;
use tower::ServiceExt;

#[tokio::test]
async fn every_route_needs_the_token_and_the_right_host() {
    let s = setup(true);
    let routes = [
        ("GET", "/api/status"),
        ("GET", "/api/peers"),
        ("GET", "/api/revocations"),
        ("POST", "/api/revocations"),
        ("GET", "/api/catalog"),
        ("GET", "/api/catalog/a"),
        ("POST", "/api/catalog"),
        ("GET", "/api/jobs/1"),
        ("POST", "/api/publish?dataset=d&region_field=v&format=csv"),
        ("POST", "/api/publish/file"),
        ("GET", "/api/export?dataset=d"),
        ("POST", "/api/export"),
        ("GET", "/api/share"),
        ("POST", "/api/share"),
        ("GET", "/api/share/0123456789abcdef"),
        ("POST", "/api/share/0123456789abcdef/act"),
        ("GET", "/api/ledger"),
        ("POST", "/api/ledger/verify"),
        ("POST", "/api/ledger/record"),
        ("POST", "/api/ledger/inspect"),
        ("GET", "/metrics"),
        ("GET", "/no/such/route"),
    ];
    let wrong = ApiToken::generate();
    for (method, uri) in routes {
        let mut no_token = request(&s, method, uri, Body::empty());
        no_token.headers_mut().remove(header::AUTHORIZATION);
        assert_eq!(
            send(&s.app, no_token).await.0,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
        let mut wrong_token = request(&s, method, uri, Body::empty());
        wrong_token
            .headers_mut()
            .insert(header::AUTHORIZATION, wrong.bearer().parse().unwrap());
        assert_eq!(
            send(&s.app, wrong_token).await.0,
            StatusCode::UNAUTHORIZED,
            "{uri}"
        );
        let mut rebound = request(&s, method, uri, Body::empty());
        rebound
            .headers_mut()
            .insert(header::HOST, "attacker.example:7480".parse().unwrap());
        assert_eq!(
            send(&s.app, rebound).await.0,
            StatusCode::MISDIRECTED_REQUEST,
            "{uri}"
        );
        let mut no_host = request(&s, method, uri, Body::empty());
        no_host.headers_mut().remove(header::HOST);
        assert_eq!(
            send(&s.app, no_host).await.0,
            StatusCode::MISDIRECTED_REQUEST
        );
    }
    let (status, body) = send(&s.app, request(&s, "GET", "/api/status", Body::empty())).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(s.fake.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_streamed_publish_reaches_the_node_whole_and_is_reported() {
    let s = setup(false);
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..100)
        .map(|i| Ok(bytes::Bytes::from(format!("{i},110101001001\n"))))
        .collect();
    let expected: Vec<u8> = (0..100)
        .flat_map(|i| format!("{i},110101001001\n").into_bytes())
        .collect();
    let body = Body::from_stream(futures::stream::iter(chunks));
    let uri = "/api/publish?dataset=d%201&region_field=village&format=csv&strict_villages=true";
    let (status, body) = send(&s.app, request(&s, "POST", uri, body)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let report: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(report["bytes"], expected.len());
    let job = report["job"].as_u64().unwrap();
    let published = s.fake.published.lock().unwrap().clone();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].0.dataset, "d 1");
    assert!(published[0].0.strict_villages);
    assert_eq!(published[0].1, expected);
    let (status, body) = send(
        &s.app,
        request(&s, "GET", &format!("/api/jobs/{job}"), Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let view: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(view["state"], "done");
    assert_eq!(view["bytes_read"], expected.len());
    // A format none of csv, ndjson, xlsx, parquet is refused before any byte is read.
    let bad = "/api/publish?dataset=d&region_field=v&format=xls";
    let (status, _) = send(&s.app, request(&s, "POST", bad, Body::from("x"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn publishes_beyond_the_running_bound_are_refused_not_queued() {
    let s = setup(false);
    s.fake.holding.store(true, Ordering::SeqCst);
    let uri = "/api/publish?dataset=d&region_field=v&format=csv";
    let mut running = Vec::new();
    for _ in 0..backflow_api::jobs::PUBLISHES_RUNNING_MAX {
        let app = s.app.clone();
        let req = request(&s, "POST", uri, Body::from("a\n"));
        running.push(tokio::spawn(async move { send(&app, req).await }));
    }
    // Wait until both hold their permits (their bodies are read, then they wait on `hold`).
    for _ in 0..200 {
        let (status, _) = send(&s.app, request(&s, "GET", "/api/jobs/2", Body::empty())).await;
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let (status, body) = send(&s.app, request(&s, "POST", uri, Body::from("a\n"))).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        String::from_utf8_lossy(&body)
    );
    s.fake.holding.store(false, Ordering::SeqCst);
    s.fake.hold.notify_waiters();
    for r in running {
        // notify_waiters only wakes those already waiting; keep nudging until each ends.
        let mut r = r;
        loop {
            tokio::select! {
                done = &mut r => { assert_eq!(done.unwrap().0, StatusCode::OK); break; }
                () = tokio::time::sleep(std::time::Duration::from_millis(10)) => {
                    s.fake.hold.notify_waiters();
                }
            }
        }
    }
    let (status, _) = send(&s.app, request(&s, "POST", uri, Body::from("a\n"))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn path_publish_reads_only_inside_the_import_dir() {
    let off = setup(false);
    let body = serde_json::json!({"dataset": "d", "region_field": "v", "file": "x.csv"});
    let (status, _) = send(&off.app, json_request(&off, "/api/publish/file", body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "off without import_dir");

    let s = setup(true);
    std::fs::write(s.import.join("ok.csv"), "v\n110101001001\n").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(s.data.join("node.key"), s.import.join("key.csv")).unwrap();
    let key = s.data.join("node.key");
    let mut escapes = vec![
        serde_json::json!(key),
        serde_json::json!("../data/node.key"),
        serde_json::json!(format!("{}/../data/node.key", s.import.display())),
    ];
    if cfg!(unix) {
        escapes.push(serde_json::json!("key.csv"));
    }
    for file in escapes {
        let body = serde_json::json!({"dataset": "d", "region_field": "v", "file": file,
            "format": "csv"});
        let (status, body) = send(&s.app, json_request(&s, "/api/publish/file", body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{file}");
        assert!(!String::from_utf8_lossy(&body).contains("SECRET"));
    }
    let body = serde_json::json!({"dataset": "d", "region_field": "v", "file": "ok.csv"});
    let (status, body) = send(&s.app, json_request(&s, "/api/publish/file", body)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let job = serde_json::from_slice::<serde_json::Value>(&body).unwrap()["job"]
        .as_u64()
        .unwrap();
    for _ in 0..500 {
        let (_, body) = send(
            &s.app,
            request(&s, "GET", &format!("/api/jobs/{job}"), Body::empty()),
        )
        .await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        if v["state"] == "done" {
            assert_eq!(v["bytes_total"], 15);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let published = s.fake.published.lock().unwrap().clone();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].1, b"v\n110101001001\n");
}

#[tokio::test]
async fn exports_stream_whole_or_are_cut_off_and_files_stay_confined() {
    let s = setup(true);
    let (status, body) = send(
        &s.app,
        request(&s, "GET", "/api/export?dataset=d&version=3", Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, b"h\nline 1\nline 2\n");
    // A table format passes (the node writes the table); an unknown one is refused.
    let (status, _) = send(
        &s.app,
        request(
            &s,
            "GET",
            "/api/export?dataset=d&format=XLSX",
            Body::empty(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(
        &s.app,
        request(&s, "GET", "/api/export?dataset=d&format=xls", Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("xlsx or parquet"));

    // A writer that fails midway: the response body errors instead of ending cleanly.
    *s.fake.export.lock().unwrap() = None;
    let response = s
        .app
        .clone()
        .oneshot(request(&s, "GET", "/api/export?dataset=d", Body::empty()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.into_body().collect().await.is_err());

    *s.fake.export.lock().unwrap() = Some(b"h\nx\n".to_vec());
    for out in [
        serde_json::json!("../data/node.key"),
        serde_json::json!(s.data.join("stolen.csv")),
    ] {
        let body = serde_json::json!({"dataset": "d", "out": out});
        let (status, _) = send(&s.app, json_request(&s, "/api/export", body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{out}");
    }
    assert_eq!(
        std::fs::read_to_string(s.data.join("node.key")).unwrap(),
        "SECRET-KEY-BYTES"
    );
    let body = serde_json::json!({"dataset": "d", "out": "d.csv"});
    let (status, body) = send(&s.app, json_request(&s, "/api/export", body)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        std::fs::read_to_string(s.export.join("d.csv")).unwrap(),
        "h\nx\n"
    );
}

#[tokio::test]
async fn catalog_routes_pass_through() {
    let s = setup(false);
    let (status, body) = send(&s.app, request(&s, "GET", "/api/catalog/b", Body::empty())).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v[0]["entry"]["id"], "b");
    let (status, _) = send(&s.app, request(&s, "GET", "/api/catalog/zz", Body::empty())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn share_routes_pass_through_and_refuse_unknown_fields() {
    let s = setup(false);
    let (status, body) = send(
        &s.app,
        request(&s, "GET", "/api/share?overdue=true", Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v[0]["overdue_only"], true);
    let filing = serde_json::json!({
        "provider_region": "441900003", "provider_department": "d", "entry_id": "e",
        "basis": "b", "scenario": "s", "scope": "c", "method": "batch_exchange",
        "use_until": "2027-06-30", "approved_by": "h"
    });
    let (status, body) = send(&s.app, json_request(&s, "/api/share", filing.clone())).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["entry"], "e");
    let mut extra = filing;
    extra["fee"] = serde_json::json!("100");
    let (status, _) = send(&s.app, json_request(&s, "/api/share", extra)).await;
    assert!(status.is_client_error(), "{status}");
    let act = serde_json::json!({"act": "grant", "approved_by": "h"});
    let (status, body) = send(&s.app, json_request(&s, "/api/share/abcdef12/act", act)).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (v["id"].as_str(), v["act"].as_str()),
        (Some("abcdef12"), Some("grant"))
    );
}

/// The ledger is the authority's to read and check; a department records its own use only,
/// with Art. 29's texts present and bounded; metrics are the node's token's.
#[tokio::test]
async fn ledger_and_metrics_routes_are_the_authority_s_and_use_records_the_department_s() {
    let s = setup(false);
    let dept = ApiToken::from_hex(&"ab".repeat(32)).unwrap();
    let as_dept = |method: &str, uri: &str, body: Option<serde_json::Value>| {
        let mut r = request(
            &s,
            method,
            uri,
            body.map_or(Body::empty(), |b| Body::from(b.to_string())),
        );
        r.headers_mut()
            .insert(header::AUTHORIZATION, dept.bearer().parse().unwrap());
        r.headers_mut()
            .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        r
    };
    // The node's token: a page (its size bounded), a verification, the metrics.
    let (status, body) = send(
        &s.app,
        request(&s, "GET", "/api/ledger?from=5&limit=100000", Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (v["from"].as_u64(), v["limit"].as_u64()),
        (Some(5), Some(1_000))
    );
    let (status, _) = send(
        &s.app,
        request(&s, "POST", "/api/ledger/verify", Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let response = s
        .app
        .clone()
        .oneshot(request(&s, "GET", "/metrics", Body::empty()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    // A department's token: neither the ledger nor the metrics.
    for (method, uri) in [
        ("GET", "/api/ledger"),
        ("POST", "/api/ledger/verify"),
        ("POST", "/api/ledger/inspect"),
        ("GET", "/metrics"),
    ] {
        assert_eq!(
            send(&s.app, as_dept(method, uri, None)).await.0,
            StatusCode::FORBIDDEN,
            "{uri}"
        );
    }
    // … but its own use records, as itself.
    let record = serde_json::json!({
        "grant": "abcdef12", "scenario": "低保资格复核", "process": "比对", "effect": "312 户",
        "storage": "本局业务库"
    });
    let (status, body) = send(
        &s.app,
        as_dept("POST", "/api/ledger/record", Some(record.clone())),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["as"], "镇民政办");
    let mut other = record.clone();
    other["department"] = serde_json::json!("镇人社分局");
    assert_eq!(
        send(&s.app, as_dept("POST", "/api/ledger/record", Some(other)))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    // Art. 29's texts are required, and bounded.
    let mut empty = record.clone();
    empty["effect"] = serde_json::json!(" ");
    let (status, body) = send(&s.app, as_dept("POST", "/api/ledger/record", Some(empty))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("应用成效"));
    let mut long = record;
    long["storage"] = serde_json::json!("x".repeat(5_000));
    let (status, body) = send(&s.app, as_dept("POST", "/api/ledger/record", Some(long))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        !String::from_utf8_lossy(&body).contains("xxxx"),
        "the text is not echoed"
    );
}

/// A department's token reaches the share routes only, and acts as its own department there.
#[tokio::test]
async fn a_department_token_acts_only_as_its_department_and_only_on_share_routes() {
    let s = setup(false);
    let dept = ApiToken::from_hex(&"ab".repeat(32)).unwrap();
    let as_dept = |method: &str, uri: &str, body: Option<serde_json::Value>| {
        let mut r = request(
            &s,
            method,
            uri,
            body.map_or(Body::empty(), |b| Body::from(b.to_string())),
        );
        r.headers_mut()
            .insert(header::AUTHORIZATION, dept.bearer().parse().unwrap());
        r.headers_mut()
            .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        r
    };
    let act = serde_json::json!({"act": "grant", "approved_by": "h"});
    let (status, body) = send(
        &s.app,
        as_dept("POST", "/api/share/abcdef12/act", Some(act.clone())),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["as"], "镇民政办");
    // Naming another department is refused, naming its own is fine.
    let mut other = act.clone();
    other["department"] = serde_json::json!("镇人社分局");
    let (status, body) = send(
        &s.app,
        as_dept("POST", "/api/share/abcdef12/act", Some(other)),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("镇民政办"));
    // A department searches the unified catalog it requests from (Arts. 16, 20).
    let (status, body) = send(
        &s.app,
        as_dept("GET", "/api/catalog-search?q=%E5%8C%BB%E4%BF%9D", None),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    // Everything else is the node's: publish, catalog, departments, revocations.
    for (method, uri) in [
        ("GET", "/api/catalog"),
        ("POST", "/api/departments"),
        ("GET", "/api/departments"),
        ("POST", "/api/revocations"),
        ("GET", "/api/status"),
        ("GET", "/api/sharex"),
    ] {
        let (status, _) = send(&s.app, as_dept(method, uri, None)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}");
    }
    // The node's token may name any department; naming none leaves it to the node.
    let mut named = act;
    named["department"] = serde_json::json!("镇人社分局");
    let (status, body) = send(&s.app, json_request(&s, "/api/share/abcdef12/act", named)).await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["as"], "镇人社分局");
    // A token nobody holds: 401 as before.
    let mut r = as_dept("GET", "/api/share", None);
    r.headers_mut().insert(
        header::AUTHORIZATION,
        ApiToken::generate().bearer().parse().unwrap(),
    );
    assert_eq!(send(&s.app, r).await.0, StatusCode::UNAUTHORIZED);
}

/// Catalog review (Arts. 16–17): a department submits and records duty changes as itself;
/// deciding and extending are the authority's (the node's token) alone.
#[tokio::test]
async fn a_department_submits_for_review_but_only_the_authority_decides() {
    let s = setup(false);
    let dept = ApiToken::from_hex(&"ab".repeat(32)).unwrap();
    let as_dept = |uri: &str, body: serde_json::Value| {
        let mut r = json_request(&s, uri, body);
        r.headers_mut()
            .insert(header::AUTHORIZATION, dept.bearer().parse().unwrap());
        r
    };
    let (status, body) = send(
        &s.app,
        as_dept("/api/catalog-review", serde_json::json!({"entries": []})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("镇民政办"));
    let duty = serde_json::json!({"occurred": "2026-09-30", "basis": "职责调整"});
    let (status, body) = send(&s.app, as_dept("/api/duty-changes", duty)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("RecordDutyChange"));
    let decide = serde_json::json!({"decision": "approve", "reviewer": "王五"});
    let extend = serde_json::json!({"days": 5, "consent": "同意"});
    for (uri, body) in [
        ("/api/catalog-review/1", decide.clone()),
        ("/api/duty-changes/1/extend", extend.clone()),
    ] {
        let (status, text) = send(&s.app, as_dept(uri, body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{uri}");
        assert!(String::from_utf8_lossy(&text).contains("authority"));
    }
    for (uri, body) in [
        ("/api/catalog-review/1", decide),
        ("/api/duty-changes/1/extend", extend),
    ] {
        let (status, _) = send(&s.app, json_request(&s, uri, body)).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
    }
}
