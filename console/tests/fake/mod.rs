//! A node in memory for the console's tests: its views are JSON in the node's real shapes
//! (`node/src/status.rs`, `share_api.rs`, `ledger_api.rs`, the catalog search), for a
//! province node, 广东省 (44).

use std::io::Read;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use backflow_api::{
    ApiError, Backend, CatalogListParams, CatalogSearchParams, Export, ExportWhich, PublishInput,
    PublishParams, ReviewRequest, RevokeParams, ShareActParams, ShareFileParams, UseRecordParams,
};
use backflow_protocol::catalog::{
    CatalogEntry, DataFormat, DataGrade, DataItem, DataType, SharingAttribute, SharingMethod,
    UpdateFrequency,
};
use serde_json::{json, Value};

/// 2026-12-06 08:30 Beijing time.
pub const RECEIPT_AT: u64 = 1_796_517_000_000;

/// Each publish: its job number, parameters and bytes.
pub type Published = Arc<Mutex<Vec<(u64, PublishParams, Vec<u8>)>>>;

#[derive(Clone)]
pub struct Fake {
    /// The dataset name the node reports (tests put hostile text here).
    pub dataset: Arc<Mutex<String>>,
    /// Datasets asked for by `status`.
    pub asked: Arc<Mutex<Vec<Option<String>>>>,
    pub verify_ok: bool,
    /// What was published: the job, the parameters and the bytes.
    pub published: Published,
}

impl Default for Fake {
    fn default() -> Fake {
        Fake {
            dataset: Arc::new(Mutex::new("户籍人口".to_string())),
            asked: Arc::default(),
            verify_ok: true,
            published: Arc::default(),
        }
    }
}

pub fn entry() -> CatalogEntry {
    CatalogEntry {
        id: "hukou-1".into(),
        name: "户籍人口信息".into(),
        data_items: vec![DataItem {
            name: "公民身份号码".into(),
            data_type: DataType::Text,
            description: "18 位".into(),
        }],
        provider: "公安厅".into(),
        format: DataFormat::Csv,
        update_frequency: UpdateFrequency::Monthly,
        sharing: SharingAttribute::Conditional {
            scope: vec!["省内政务部门".into()],
            permitted_uses: vec!["社会救助审核".into()],
        },
        sharing_methods: vec![SharingMethod::BatchExchange],
        usage_conditions: "仅用于审核".into(),
        classification: "人口".into(),
        grade: DataGrade::Important,
    }
}

fn child(region: &str, name: &str, state: &str, delivered: u64, at: u64) -> Value {
    json!({
        "region": region, "name": name, "state": state, "has_children": true,
        "regions_expected": 4, "regions_delivered": delivered,
        "records_expected": 4000, "records_delivered": delivered * 1000,
        "bytes_expected": 4 * 1024 * 1024, "bytes_delivered": delivered * 1024 * 1024,
        "last_receipt_at": if at > 0 { json!(at) } else { Value::Null },
    })
}

fn share(id: &str, requester: &str, provider: &str, deadline: Value) -> Value {
    json!({
        "id": id, "requester": requester, "provider": provider, "entry": "hukou-1",
        "state": "under_review", "state_zh": "审核中",
        "attribute": "conditional (有条件共享)", "method": "batch_exchange (批量交换)",
        "scenario": "社会救助审核", "use_until": "2027-12-31", "owner": "provider",
        "received": "2026-12-01", "deadline": deadline, "notice": [], "answer": null,
        "acts": 1, "supervised": false, "delivery": null, "service": null,
        "suspension": null, "ending": null, "disputes": [], "corrections": []
    })
}

impl Backend for Fake {
    async fn status(
        &self,
        dataset: Option<String>,
        region: Option<String>,
    ) -> Result<Value, ApiError> {
        self.asked.lock().unwrap().push(dataset);
        let name = self.dataset.lock().unwrap().clone();
        let (at, children) = match region.as_deref() {
            // 深圳市 opened: one district delivered, one with no word for an hour.
            Some("4403") => (
                "4403",
                vec![
                    child("440303", "罗湖区", "complete", 4, RECEIPT_AT),
                    child("440304", "福田区", "stuck", 0, 0),
                ],
            ),
            _ => (
                "44",
                vec![
                    child("4401", "广州市", "complete", 4, RECEIPT_AT),
                    child("4403", "深圳市", "partial", 2, RECEIPT_AT - 60_000),
                    child("4404", "珠海市", "pending", 0, 0),
                ],
            ),
        };
        Ok(json!([{
            "dataset": name, "version": 3, "manifest": "ab".repeat(32),
            "publisher": "44", "department": "公安厅", "published_here": true,
            "issued_at": RECEIPT_AT - 120_000, "region": at,
            "held_complete": true, "partitions_here": 12, "records_here": 12000,
            "bytes_here": 12 * 1024 * 1024, "regions_expected": 12, "regions_delivered": 6,
            "records_delivered": 6000, "bytes_delivered": 6 * 1024 * 1024, "complete": false,
            "children": children,
        }]))
    }
    async fn peers(&self) -> Result<Value, ApiError> {
        Ok(json!([
            {"peer": "12D3KooWParentParentParentParent", "region": "0",
             "addr": "/ip4/10.0.0.1/udp/7400/quic-v1"},
            {"peer": "12D3KooWChildChildChildChildChild", "region": "4401",
             "addr": "/ip4/10.0.0.2/tcp/7400"},
        ]))
    }
    async fn health(&self) -> Result<Value, ApiError> {
        Ok(json!({
            "disk": {"total_bytes": 500_000_000_000u64, "free_bytes": 20_000_000_000u64, "low": true},
            "parent": {"region": "0", "connected": true, "last_contact_at": RECEIPT_AT},
        }))
    }
    async fn revoke(&self, _params: RevokeParams) -> Result<Value, ApiError> {
        Ok(json!({}))
    }
    async fn revocations(&self) -> Result<Value, ApiError> {
        Ok(json!([]))
    }
    async fn rights(&self) -> Result<Value, ApiError> {
        Ok(json!([]))
    }
    async fn rights_order(&self, _: backflow_api::RightsParams) -> Result<Value, ApiError> {
        Err(ApiError::bad_request("the console does not order"))
    }
    async fn catalogs(&self, _params: CatalogListParams) -> Result<Value, ApiError> {
        Ok(json!([]))
    }
    async fn catalog_entry(&self, id: String) -> Result<Value, ApiError> {
        Ok(if id == "hukou-1" {
            json!([{"region": "44", "department": "公安厅", "entry": entry()}])
        } else {
            json!([])
        })
    }
    async fn catalog_search(&self, params: CatalogSearchParams) -> Result<Value, ApiError> {
        let hit = params.q.as_deref().is_some_and(|q| q.contains("户籍"));
        Ok(if hit {
            json!({"total": 1, "hits": [{"region": "44", "department": "公安厅",
                "entry_id": "hukou-1", "name": "户籍人口信息", "score": 3.25}]})
        } else {
            json!({"total": 0, "hits": []})
        })
    }
    async fn catalog_submit(&self, entries: Vec<CatalogEntry>) -> Result<u64, ApiError> {
        Ok(entries.len() as u64)
    }
    async fn publish(
        &self,
        job: u64,
        params: PublishParams,
        mut input: PublishInput,
        _progress: Arc<AtomicU64>,
    ) -> Result<Value, ApiError> {
        let data = tokio::task::spawn_blocking(move || {
            let mut data = Vec::new();
            input.read_to_end(&mut data).map(|_| data)
        })
        .await
        .unwrap()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        self.published
            .lock()
            .unwrap()
            .push((job, params.clone(), data.clone()));
        Ok(json!({
            "dataset": params.dataset, "version": 4, "manifests": ["ab".repeat(32)],
            "partitions": 2, "records": data.iter().filter(|b| **b == b'\n').count() - 1,
            "bytes": data.len(), "summary": {}
        }))
    }
    async fn export(&self, _which: ExportWhich) -> Result<Export, ApiError> {
        Err(ApiError::not_found("not in the fake"))
    }
    async fn shares(&self, _overdue_only: bool) -> Result<Value, ApiError> {
        let mut received = share(
            "aa".repeat(32).as_str(),
            "4401 民政局",
            "44 公安厅",
            json!({"article": 21, "due": "2026-12-10 24:00", "working_days_left": 3, "overdue": false}),
        );
        received["answer"] = json!("granted, conditions: 仅限审核<b>");
        received["disputes"] = json!(["#1 2026-12-02: 范围 — 协调中"]);
        received["consents"] =
            json!(["#1 2026-12-03: to 4403 民政局 for 低保复核 (approved by 王)"]);
        Ok(json!([
            // Filed by this node's 民政厅 from the national 国家统计局: overdue.
            share(
                "cc".repeat(32).as_str(),
                "44 民政厅",
                "0 国家统计局",
                json!({"article": 21, "due": "2026-12-01 24:00", "working_days_left": 0, "overdue": true})
            ),
            // Received by this node's 公安厅 from 广州市's 民政局.
            received,
        ]))
    }
    async fn share(&self, id: String) -> Result<Value, ApiError> {
        Ok(json!({ "id": id }))
    }
    async fn share_file(
        &self,
        _department: Option<String>,
        _params: ShareFileParams,
    ) -> Result<Value, ApiError> {
        Ok(json!({}))
    }
    async fn returned_corrections(&self) -> Result<Value, ApiError> {
        Ok(json!([]))
    }
    async fn returned_correction_file(
        &self,
        _department: Option<String>,
        _params: backflow_api::ReturnedCorrectionParams,
    ) -> Result<Value, ApiError> {
        Err(ApiError::bad_request(
            "the console does not file corrections",
        ))
    }
    async fn returned_correction_answer(
        &self,
        _department: Option<String>,
        _id: String,
        _params: backflow_api::ReturnedAnswerParams,
    ) -> Result<Value, ApiError> {
        Err(ApiError::bad_request(
            "the console does not answer corrections",
        ))
    }
    async fn share_act(
        &self,
        _department: Option<String>,
        id: String,
        _params: ShareActParams,
    ) -> Result<Value, ApiError> {
        Ok(json!({ "id": id }))
    }
    async fn share_deliver(
        &self,
        _department: Option<String>,
        id: String,
        _format: String,
        _key: Option<String>,
        _input: PublishInput,
    ) -> Result<Value, ApiError> {
        Ok(json!({ "id": id }))
    }
    async fn share_coordinate(
        &self,
        id: String,
        _outcome: String,
        _refer: bool,
    ) -> Result<Value, ApiError> {
        Ok(json!({ "id": id }))
    }
    async fn share_lookup(
        &self,
        _department: Option<String>,
        id: String,
        _keys: Vec<String>,
    ) -> Result<Value, ApiError> {
        Ok(json!({ "id": id }))
    }
    async fn catalog_review(&self, request: ReviewRequest) -> Result<Value, ApiError> {
        assert!(matches!(request, ReviewRequest::List { .. }));
        Ok(json!({
            "submissions": [
                {"id": 7, "department": "卫生健康委", "entries": ["yimiao-1", "yimiao-2"],
                 "state": "pending", "reasons": null, "received": "2026-12-03",
                 "review_due": {"day": "2026-12-09", "working_days_left": 2, "overdue": false},
                 "decided_by": null},
                {"id": 6, "department": "公安厅", "entries": ["hukou-1"], "state": "approved",
                 "reasons": null, "received": "2026-11-01", "review_due": null,
                 "decided_by": "主任"}
            ],
            "duty_changes": [
                {"id": 2, "department": "教育厅", "occurred": "2026-11-20",
                 "basis": "《教育法》修订", "update_due":
                    {"day": "2026-12-04", "working_days_left": 0, "overdue": true},
                 "extension": null, "fulfilled_by": null}
            ]
        }))
    }
    async fn departments(&self) -> Result<Value, ApiError> {
        Ok(json!([]))
    }
    async fn department_add(&self, name: String) -> Result<Value, ApiError> {
        Ok(json!({ "name": name }))
    }
    async fn ledger(&self, from: u64, limit: usize) -> Result<Value, ApiError> {
        let entries: Vec<Value> = (from..3)
            .take(limit)
            .map(|seq| {
                json!({"seq": seq, "time": "2026-12-06 08:30:00", "time_ms": RECEIPT_AT,
                    "region": "44", "department": "公安厅", "kind": "publish", "act": null,
                    "subject": "户籍人口", "detail": format!("version {seq}")})
            })
            .collect();
        Ok(json!({
            "size": 3,
            "head": {"size": 3, "root": "11".repeat(32), "time": "2026-12-06 08:30:00",
                     "signature": "22".repeat(64)},
            "witnessed": {"witness": "0", "size": 2, "root": "33".repeat(32),
                          "time": "2026-12-06 08:00:00"},
            "entries": entries,
        }))
    }
    async fn ledger_inspect(&self, _: backflow_api::InspectParams) -> Result<Value, ApiError> {
        Err(ApiError::bad_request("the console does not inspect"))
    }
    async fn ledger_verify(&self) -> Result<Value, ApiError> {
        Ok(if self.verify_ok {
            json!({"ok": true, "entries": 3, "root": "11".repeat(32), "head_size": 3,
                   "head_time": "2026-12-06 08:30:00"})
        } else {
            json!({"ok": false, "entry": 1, "problem": "leaf hash differs"})
        })
    }
    async fn metrics(&self) -> Result<String, ApiError> {
        Ok("# EOF\n".into())
    }
    async fn ledger_record(
        &self,
        department: Option<String>,
        _params: UseRecordParams,
    ) -> Result<Value, ApiError> {
        Ok(json!({ "as": department }))
    }
}
