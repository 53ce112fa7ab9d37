//! The API's tests' in-memory node ([`Fake`]) and helpers: a router over it with the gate,
//! requests with the node's token and the right Host, and sending them.
#![allow(dead_code)] // each test binary uses some of these

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

pub const HOST: &str = "127.0.0.1:7480";

/// What the fake node was asked to publish: the parameters and the bytes it read.
pub type Published = Arc<Mutex<Vec<(PublishParams, Vec<u8>)>>>;

#[derive(Clone, Default)]
pub struct Fake {
    pub published: Published,
    /// Publishes wait for this before returning (to hold them running).
    pub hold: Arc<tokio::sync::Notify>,
    pub holding: Arc<std::sync::atomic::AtomicBool>,
    /// Export content; a `None` makes the writer fail after the first line.
    pub export: Arc<Mutex<Option<Vec<u8>>>>,
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
    async fn health(&self) -> Result<serde_json::Value, ApiError> {
        Ok(
            serde_json::json!({"disk": {"total_bytes": 1, "free_bytes": 1, "low": false}, "parent": null}),
        )
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
    async fn rights(&self) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!([]))
    }
    async fn rights_order(
        &self,
        params: backflow_api::RightsParams,
    ) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!({ "region": params.region, "department": params.department }))
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
    async fn returned_corrections(&self) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!([]))
    }
    async fn returned_correction_file(
        &self,
        department: Option<String>,
        params: backflow_api::ReturnedCorrectionParams,
    ) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!({ "dataset": params.dataset, "as": department }))
    }
    async fn returned_correction_answer(
        &self,
        department: Option<String>,
        id: String,
        params: backflow_api::ReturnedAnswerParams,
    ) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!({ "id": id, "corrected": params.corrected, "as": department }))
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
    async fn ledger_inspect(
        &self,
        params: backflow_api::InspectParams,
    ) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!({ "region": params.region, "grant": params.grant }))
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

pub struct Setup {
    pub _tmp: tempfile::TempDir,
    pub data: PathBuf,
    pub import: PathBuf,
    pub export: PathBuf,
    pub token: ApiToken,
    pub fake: Fake,
    pub app: Router,
}

pub fn setup(with_dirs: bool) -> Setup {
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

pub fn request(s: &Setup, method: &str, uri: &str, body: Body) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, HOST)
        .header(header::AUTHORIZATION, s.token.bearer())
        .body(body)
        .unwrap()
}

pub fn json_request(s: &Setup, uri: &str, body: serde_json::Value) -> Request<Body> {
    let mut r = request(s, "POST", uri, Body::from(body.to_string()));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    r
}

pub async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Vec<u8>) {
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}
