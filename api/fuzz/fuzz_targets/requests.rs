//! Arbitrary requests through the API's real router (gate, extractors, confinement) over an
//! in-memory backend. Invariants: no panic; nothing but a request with the right token and
//! Host gets past the gate; no response ever carries the token or the data directory's key;
//! no file appears outside the export directory.
#![no_main]

use std::io::Read;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use backflow_api::confine::Confined;
use backflow_api::gate::{AllowedHosts, Gate};
use backflow_api::{
    router, ApiError, ApiToken, Backend, Directories, Export, ExportSummary, ExportWhich,
    PublishInput, PublishParams, RevokeParams,
};
use backflow_protocol::catalog::CatalogEntry;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const HOST: &str = "127.0.0.1:7480";
const KEY: &str = "KEYMATERIAL0123456789abcdef";
/// Bytes of a publish body the fake reads at most (keeps iterations fast).
const BODY_READ_MAX: u64 = 1 << 20;

#[derive(Clone)]
struct Memory;

impl Backend for Memory {
    async fn status(
        &self,
        dataset: Option<String>,
        region: Option<String>,
    ) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!([{ "dataset": dataset, "region": region }]))
    }
    async fn health(&self) -> Result<serde_json::Value, ApiError> {
        Ok(serde_json::json!({"disk": {"total_bytes": 1, "free_bytes": 1, "low": false}}))
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
            "entries": [{"id": "a"}]}]),
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
        _job: u64,
        _params: PublishParams,
        input: PublishInput,
        _progress: Arc<AtomicU64>,
    ) -> Result<serde_json::Value, ApiError> {
        let n = tokio::task::spawn_blocking(move || {
            let mut sink = Vec::new();
            input
                .take(BODY_READ_MAX)
                .read_to_end(&mut sink)
                .map(|_| sink.len())
        })
        .await
        .map_err(|_| ApiError::bad_request("join"))?
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(serde_json::json!({ "bytes": n }))
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
        _format: String,
        _key: Option<String>,
        input: PublishInput,
    ) -> Result<serde_json::Value, ApiError> {
        let n = tokio::task::spawn_blocking(move || {
            let mut sink = Vec::new();
            input
                .take(BODY_READ_MAX)
                .read_to_end(&mut sink)
                .map(|_| sink.len())
        })
        .await
        .map_err(|_| ApiError::bad_request("join"))?
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(serde_json::json!({ "id": id, "as": department, "bytes": n }))
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
        Ok(Export {
            summary: ExportSummary {
                dataset,
                publisher: "110000000000".into(),
                department: "d".into(),
                version: version.unwrap_or(1),
                partitions: 1,
                records: 1,
                bytes: 2,
            },
            write: Box::new(|out| Ok(out.write_all(b"h\nx\n")?)),
        })
    }
}

struct World {
    runtime: tokio::runtime::Runtime,
    app: axum::Router,
    token: ApiToken,
    dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let import = dir.path().join("import");
        let export = dir.path().join("export");
        for d in [&data, &import, &export] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(data.join("node.key"), KEY).unwrap();
        std::fs::write(import.join("a.csv"), "v\n110101001001\n").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(data.join("node.key"), import.join("k.csv")).unwrap();
        let token = ApiToken::create(&data).unwrap();
        let dirs = Directories {
            import: Some(Confined::new("import", &import, &data).unwrap()),
            export: Some(Confined::new("export", &export, &data).unwrap()),
        };
        let gate = Gate {
            token: token.clone(),
            departments: Default::default(),
            hosts: AllowedHosts::for_bind(HOST.parse().unwrap(), &[]),
        };
        World {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            app: router(Memory, gate, dirs),
            token,
            dir,
        }
    })
}

const PATHS: &[&str] = &[
    "/api/publish?dataset=d&region_field=v&format=csv",
    "/api/publish/file",
    "/api/jobs/1",
    "/api/status",
    "/api/export?dataset=d",
    "/api/export",
    "/api/catalog",
    "/api/catalog/a",
    "/api/peers",
    "/api/revocations",
    "/api/openapi.json",
];

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let w = world();
    let (head, rest) = data.split_at(3);
    let method = ["GET", "POST", "PUT", "DELETE"][usize::from(head[0] % 4)];
    let auth = head[1] % 4;
    let host_ok = head[2] % 8 != 0;
    // The rest: "<path or index>\n<body>".
    let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let (path_part, body) = (&rest[..split], rest.get(split + 1..).unwrap_or(&[]));
    let path = match path_part {
        [i] => PATHS[usize::from(*i) % PATHS.len()].to_string(),
        p => String::from_utf8_lossy(p).into_owned(),
    };
    let mut request = Request::builder().method(method).uri(path.as_str());
    if host_ok {
        request = request.header("host", HOST);
    } else {
        request = request.header("host", "evil.example:7480");
    }
    let authorized = auth != 0 && host_ok;
    match auth {
        0 => {}
        1 | 2 => request = request.header("authorization", w.token.bearer()),
        _ => request = request.header("authorization", "Bearer 00"),
    }
    let authorized = authorized && auth != 3;
    if !body.is_empty() && body[0] == b'{' {
        request = request.header("content-type", "application/json");
    }
    let Ok(request) = request.body(Body::from(body.to_vec())) else {
        return;
    };
    // The OpenAPI document is answered without a token (to the right Host, for GET/HEAD).
    let open = host_ok
        && request.method() == axum::http::Method::GET
        && backflow_api::gate::OPEN_PATHS.contains(&request.uri().path());
    w.runtime.block_on(async {
        let Ok(response) = w.app.clone().oneshot(request).await;
        let status = response.status();
        if !authorized && !open {
            assert!(
                status == StatusCode::UNAUTHORIZED || status == StatusCode::MISDIRECTED_REQUEST,
                "ungated: {status} for {path}"
            );
        }
        assert_ne!(status, StatusCode::INTERNAL_SERVER_ERROR, "{path}");
        let bytes = match response.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return,
        };
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(KEY), "key in a response to {path}");
        assert!(
            !w.token.admits(format!("Bearer {}", text.trim()).as_bytes()),
            "token in a response"
        );
    });
    // Nothing written beside the data directory's key, nothing outside the export directory.
    let data_dir: Vec<_> = std::fs::read_dir(w.dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        data_dir.len(),
        2,
        "files appeared in the data directory: {data_dir:?}"
    );
    assert_eq!(
        std::fs::read_to_string(w.dir.path().join("data/node.key")).unwrap(),
        KEY
    );
});
