//! The API against an in-memory backend: the gate, streamed publish, confinement and exports.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use backflow_api::confine::Confined;
use backflow_api::gate::{AllowedHosts, DepartmentTokens, Gate};
use backflow_api::{
    router, ApiError, ApiToken, Backend, Directories, Export, ExportSummary, ExportWhich,
    PublishInput, PublishParams, RevokeParams,
};
use backflow_protocol::catalog::CatalogEntry;
use http_body_util::BodyExt;
use tower::ServiceExt;

const HOST: &str = "127.0.0.1:7480";

/// What the fake node was asked to publish: the parameters and the bytes it read.
type Published = Arc<Mutex<Vec<(PublishParams, Vec<u8>)>>>;

#[derive(Clone, Default)]
struct Fake {
    published: Published,
    /// Publishes wait for this before returning (to hold them running).
    hold: Arc<tokio::sync::Notify>,
    holding: Arc<std::sync::atomic::AtomicBool>,
    /// Export content; a `None` makes the writer fail after the first line.
    export: Arc<Mutex<Option<Vec<u8>>>>,
}

impl Backend for Fake {
    async fn status(
        &self,
        dataset: Option<String>,
        region: Option<String>,
    ) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!([{ "dataset": dataset, "region": region }]))
    }
    async fn peers(&self) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!([]))
    }
    async fn catalogs(
        &self,
        _params: backflow_api::CatalogListParams,
    ) -> Result<serde_json::Value, ApiError> {
        Ok(
            serde_json::json!([{"region": "11", "department": "d", "seq": 1,
            "entries": [{"id": "a"}, {"id": "b"}]}]),
        )
    }
    async fn catalog_entry(&self, id: String) -> Result<serde_json::Value, ApiError> {
        Ok(if id == "a" || id == "b" {
            serde_json::json!([{"region": "11", "department": "d", "entry": {"id": id}}])
        } else {
            serde_json::json!([])
        })
    }
    async fn catalog_search(
        &self,
        params: backflow_api::CatalogSearchParams,
    ) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!({"total": 0, "hits": [], "q": params.q}))
    }
    async fn catalog_submit(&self, entries: Vec<CatalogEntry>) -> Result<u64, ApiError> {
        Ok(entries.len() as u64)
    }
    async fn publish(
        &self,
        job: u64,
        params: PublishParams,
        mut input: PublishInput,
        progress: Arc<AtomicU64>,
    ) -> Result<serde_json::Value, ApiError> {
        let data = tokio::task::spawn_blocking(move || {
            let mut data = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = input.read(&mut buf)?;
                if n == 0 {
                    return std::io::Result::Ok(data);
                }
                data.extend_from_slice(&buf[..n]);
                progress.store(data.len() as u64, Ordering::Relaxed);
            }
        })
        .await
        .unwrap()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        if self.holding.load(Ordering::SeqCst) {
            self.hold.notified().await;
        }
        let n = data.len();
        self.published.lock().unwrap().push((params, data));
        Ok(serde_json::json!({ "bytes": n, "fake_job": job }))
    }
    async fn revoke(&self, params: RevokeParams) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!({ "subject": params.region.unwrap_or_default() }))
    }
    async fn revocations(&self) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!([]))
    }
    async fn shares(&self, overdue_only: bool) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!([{ "overdue_only": overdue_only }]))
    }
    async fn share(&self, id: String) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!({ "id": id }))
    }
    async fn share_file(
        &self,
        department: Option<String>,
        params: backflow_api::ShareFileParams,
    ) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!({ "entry": params.entry_id, "as": department }))
    }
    async fn share_act(
        &self,
        department: Option<String>,
        id: String,
        params: backflow_api::ShareActParams,
    ) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!({ "id": id, "act": params.act, "as": department }))
    }
    async fn share_coordinate(
        &self,
        id: String,
        outcome: String,
        refer: bool,
    ) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!({ "id": id, "outcome": outcome, "refer": refer }))
    }

    async fn share_lookup(
        &self,
        department: Option<String>,
        id: String,
        keys: Vec<String>,
    ) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!({ "id": id, "as": department, "keys": keys }))
    }

    async fn share_deliver(
        &self,
        department: Option<String>,
        id: String,
        format: String,
        key: Option<String>,
        mut input: PublishInput,
    ) -> Result<serde_json::Value, ApiError> {
        let mut body = Vec::new();
        tokio::task::spawn_blocking(move || input.read_to_end(&mut body).map(|_| body))
            .await
            .unwrap()
            .map(|body| {
                serde_json::json!({ "id": id, "format": format, "key": key, "as": department, "bytes": body.len() })
            })
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }
    async fn catalog_review(
        &self,
        request: backflow_api::ReviewRequest,
    ) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!({ "request": format!("{request:?}") }))
    }
    async fn departments(&self) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!([]))
    }
    async fn department_add(&self, name: String) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!({ "name": name }))
    }
    async fn ledger(&self, from: u64, limit: usize) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!({ "from": from, "limit": limit }))
    }
    async fn metrics(&self) -> Result<String, ApiError> {
        Ok("backflow_node{region=\"11\"} 1\n# EOF\n".into())
    }
    async fn ledger_verify(&self) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!({ "ok": true }))
    }
    async fn ledger_record(
        &self,
        department: Option<String>,
        params: backflow_api::UseRecordParams,
    ) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!({ "as": department, "grant": params.grant }))
    }
    async fn export(&self, which: ExportWhich) -> Result<Export, ApiError> {
        let ExportWhich {
            dataset, version, ..
        } = which;
        let content = self.export.lock().unwrap().clone();
        let summary = ExportSummary {
            dataset,
            publisher: "110000000000".into(),
            department: "d".into(),
            version: version.unwrap_or(1),
            partitions: 1,
            records: 2,
            bytes: 12,
        };
        Ok(Export {
            summary,
            write: Box::new(move |out| match content {
                Some(c) => Ok(out.write_all(&c)?),
                None => {
                    out.write_all(b"first line\n")?;
                    anyhow::bail!("partition 110101001 does not verify")
                }
            }),
        })
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    import: PathBuf,
    export: PathBuf,
    token: ApiToken,
    fake: Fake,
    app: Router,
}

fn setup(with_dirs: bool) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let import = tmp.path().join("import");
    let export = tmp.path().join("export");
    for d in [&data, &import, &export] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(data.join("node.key"), "SECRET-KEY-BYTES").unwrap();
    let token = ApiToken::create(&data).unwrap();
    let dirs = if with_dirs {
        Directories {
            import: Some(Confined::new("import", &import, &data).unwrap()),
            export: Some(Confined::new("export", &export, &data).unwrap()),
        }
    } else {
        Directories::default()
    };
    let fake = Fake::default();
    *fake.export.lock().unwrap() = Some(b"h\nline 1\nline 2\n".to_vec());
    let departments = DepartmentTokens::default();
    departments.insert("镇民政办", ApiToken::from_hex(&"ab".repeat(32)).unwrap());
    let gate = Gate {
        token: token.clone(),
        departments,
        hosts: AllowedHosts::for_bind(HOST.parse().unwrap(), &[]),
    };
    let app = router(fake.clone(), gate, dirs);
    Setup {
        _tmp: tmp,
        data,
        import,
        export,
        token,
        fake,
        app,
    }
}

fn request(s: &Setup, method: &str, uri: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, HOST)
        .header(header::AUTHORIZATION, s.token.bearer())
        .body(body)
        .unwrap()
}

fn json_request(s: &Setup, uri: &str, body: serde_json::Value) -> Request<Body> {
    let mut r = request(s, "POST", uri, Body::from(body.to_string()));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    r
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

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
    // A format that is neither is refused before any byte is read.
    let bad = "/api/publish?dataset=d&region_field=v&format=xlsx";
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
