//! The node behind the HTTP API: [`backflow_api::Backend`] over a running [`NodeHandle`].
//! Publishes read their input as it streams in; exports verify every partition against its
//! signed manifest entry before the first byte is written.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Result;
use backflow_api::confine::Confined;
use backflow_api::gate::{AllowedHosts, DepartmentTokens, Gate};
use backflow_api::{
    ApiError, ApiToken, Backend, Directories, Export, ExportSummary, ExportWhich, PublishInput,
    PublishParams, RevokeParams, ShareActParams, ShareFileParams,
};
use backflow_protocol::catalog::CatalogEntry;
use backflow_protocol::time::UnixMs;
use backflow_topology::{RegionCode, Topology};

use crate::config::Config;
use crate::departments;
use crate::handle::{DatasetQuery, NodeHandle};
use crate::partition::{Format, RegionField, VillagePolicy};
use crate::publish::{work_dir, PublishReport, PublishRequest};
use backflow_ingest::source::FileFormat;

/// Departments in a catalog page when the caller names no limit.
const CATALOG_PAGE_DEPARTMENTS: usize = 1_000;
/// Entries returned for one id (unique per department: one per department using it).
const CATALOG_ENTRIES_WITH_ID_MAX: usize = 1_000;

#[derive(Clone)]
pub struct NodeBackend {
    pub node: NodeHandle,
    pub data_dir: PathBuf,
    /// The department that publishes and submits catalog entries from this node, and acts on
    /// share requests when the node's token names none.
    pub department: String,
    /// Departments' API tokens, shared with the gate.
    pub department_tokens: DepartmentTokens,
}

/// A region code from the request; the error names the field, not the text.
fn parse_region(field: &str, text: &str) -> Result<RegionCode, ApiError> {
    RegionCode::parse(text).map_err(|_| {
        ApiError::bad_request(format!(
            "{field} is not a region code (0 for national, or 2, 4, 6, 9 or 12 digits)"
        ))
    })
}

fn json(value: impl serde::Serialize) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::internal(&e.into()))
}

/// Numbers deliveries' scratch directories within this process.
static DELIVERY_SEQ: AtomicU64 = AtomicU64::new(0);
/// Numbers the scratch directories of exports written as tables.
static EXPORT_SEQ: AtomicU64 = AtomicU64::new(0);

impl Backend for NodeBackend {
    async fn status(
        &self,
        dataset: Option<String>,
        region: Option<String>,
    ) -> Result<serde_json::Value, ApiError> {
        let s = match region {
            None => self.node.status(dataset).await,
            Some(text) => {
                let under = parse_region("region", text.trim())?;
                let me = self.node.region();
                if !me.contains(under) || !Topology::china().contains_code(under) {
                    return Err(ApiError::bad_request(format!(
                        "region {under} is not in this node's jurisdiction ({me}) or not in the division table"
                    )));
                }
                self.node.status_below(dataset, under).await
            }
        }
        .map_err(|e| ApiError::internal(&e))?;
        json(s)
    }

    async fn health(&self) -> Result<serde_json::Value, ApiError> {
        let dir = self.data_dir.clone();
        let disk = tokio::task::spawn_blocking(move || crate::disk::usage(&dir))
            .await
            .map_err(|e| ApiError::internal(&e.into()))?
            .map_err(|e| ApiError::internal(&e))?;
        let me = self.node.region();
        let parent = match me.parent() {
            None => serde_json::Value::Null,
            Some(parent) => {
                let peers = self
                    .node
                    .peers()
                    .await
                    .map_err(|e| ApiError::internal(&e))?;
                let upstream = |p: &&crate::status::PeerView| {
                    p.region
                        .as_deref()
                        .and_then(|r| RegionCode::parse(r).ok())
                        .is_some_and(|r| crate::handle::is_upstream(me, r))
                };
                let at = self.node.stats.upstream_contact_ms.load(Ordering::Relaxed);
                serde_json::json!({
                    "region": parent.to_string(),
                    "connected": peers.iter().any(|p| upstream(&p)),
                    "last_contact_at": (at > 0).then_some(at),
                })
            }
        };
        Ok(serde_json::json!({ "disk": disk, "parent": parent }))
    }

    async fn peers(&self) -> Result<serde_json::Value, ApiError> {
        json(
            self.node
                .peers()
                .await
                .map_err(|e| ApiError::internal(&e))?,
        )
    }

    async fn revoke(&self, params: RevokeParams) -> Result<serde_json::Value, ApiError> {
        if let Some(signed) = params.signed {
            if params.region.is_some() || params.key.is_some() {
                return Err(ApiError::bad_request(
                    "give either signed, or region (and key), not both",
                ));
            }
            // Bounded before decoding: a signed revocation is well under 16 KiB.
            if signed.len() > 32 * 1024 {
                return Err(ApiError::bad_request("signed revocation too large"));
            }
            let bytes =
                hex::decode(&signed).map_err(|_| ApiError::bad_request("signed is not hex"))?;
            let r: backflow_protocol::cert::Revocation =
                backflow_protocol::wire::decode_exact(&bytes)
                    .map_err(|_| ApiError::bad_request("signed is not a signed revocation"))?;
            let view = self
                .node
                .submit_revocation(r)
                .await
                .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
            return json(view);
        }
        let region = params
            .region
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("give region (and optionally key), or signed"))?;
        let region = parse_region("region", region)?;
        let key = params
            .key
            .as_deref()
            .map(|k| {
                crate::config::parse_public_key(k)
                    .map_err(|_| ApiError::bad_request("key is not an ed25519 public key in hex"))
            })
            .transpose()?;
        let view = self
            .node
            .revoke(region, key)
            .await
            .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        json(view)
    }

    async fn revocations(&self) -> Result<serde_json::Value, ApiError> {
        json(
            self.node
                .revocations()
                .await
                .map_err(|e| ApiError::internal(&e))?,
        )
    }

    async fn rights(&self) -> Result<serde_json::Value, ApiError> {
        json(
            self.node
                .rights()
                .await
                .map_err(|e| ApiError::internal(&e))?,
        )
    }

    async fn rights_order(
        &self,
        params: backflow_api::RightsParams,
    ) -> Result<serde_json::Value, ApiError> {
        json(
            self.node
                .rights_order(params)
                .await
                .map_err(|e| ApiError::bad_request(format!("{e:#}")))?,
        )
    }

    async fn catalogs(
        &self,
        params: backflow_api::CatalogListParams,
    ) -> Result<serde_json::Value, ApiError> {
        let region = params
            .region
            .as_deref()
            .map(|r| parse_region("region", r))
            .transpose()?;
        let after = params
            .after
            .as_deref()
            .map(|a| {
                let (region, department) = a.split_once('/').ok_or_else(|| {
                    ApiError::bad_request("after is region/department (the last of a page)")
                })?;
                Ok::<_, ApiError>(backflow_protocol::catalog::CatalogOrigin {
                    region: parse_region("after", region)?,
                    department: department.to_string(),
                })
            })
            .transpose()?;
        let limit = params
            .limit
            .unwrap_or(CATALOG_PAGE_DEPARTMENTS)
            .min(crate::catalog_store::LIST_DEPARTMENTS_MAX);
        json(
            self.node
                .catalogs(region, after, limit)
                .await
                .map_err(|e| ApiError::internal(&e))?,
        )
    }

    async fn catalog_entry(&self, id: String) -> Result<serde_json::Value, ApiError> {
        let found = self
            .node
            .catalog_entries_with_id(id, CATALOG_ENTRIES_WITH_ID_MAX)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        let found: Vec<serde_json::Value> = found
            .into_iter()
            .map(|(origin, entry)| {
                serde_json::json!({
                    "region": origin.region.to_string(),
                    "department": origin.department,
                    "entry": entry,
                })
            })
            .collect();
        Ok(serde_json::Value::Array(found))
    }

    async fn catalog_search(
        &self,
        params: backflow_api::CatalogSearchParams,
    ) -> Result<serde_json::Value, ApiError> {
        let query = crate::catalog_search::query_of(&params)?;
        json(
            self.node
                .catalog_search(query)
                .await
                // Not the caller's fault: nobody above reachable, busy, timed out.
                .map_err(|e| ApiError::busy(format!("{e:#}")))?,
        )
    }

    async fn catalog_submit(&self, entries: Vec<CatalogEntry>) -> Result<u64, ApiError> {
        self.node
            .catalog_submit(self.department.clone(), entries)
            .await
            .map_err(|e| ApiError::bad_request(format!("{e:#}")))
    }

    async fn publish(
        &self,
        job: u64,
        params: PublishParams,
        input: PublishInput,
        progress: Arc<AtomicU64>,
    ) -> Result<serde_json::Value, ApiError> {
        let file_format = FileFormat::parse(&params.format)
            .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        // One scratch directory per job: two publishes of one dataset never share spills.
        let job_dir = work_dir(&self.data_dir, &params.dataset).join(job.to_string());
        // Excel and Parquet become CSV and NDJSON records here, as the partitioner reads.
        let (format, input) =
            backflow_formats::publish_input::records_of(file_format, input, &job_dir)
                .map_err(|e| ApiError::internal(&e))?;
        let req = PublishRequest {
            dataset: params.dataset.clone(),
            region_field: RegionField::new(
                params.region_field,
                VillagePolicy::from_strict(params.strict_villages),
            ),
            format,
            department: self.department.clone(),
            work_dir: job_dir,
            rejects_path: Some(self.data_dir.join(format!("rejects-{job}.tsv"))),
        };
        let scratch = req.work_dir.clone();
        let result = self.node.publish_from(req, input, progress).await;
        let _ = std::fs::remove_dir_all(&scratch);
        // The parser's messages name lines and fields, never input bytes: safe to return whole.
        let (o, hashes) = result.map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        json(PublishReport {
            dataset: params.dataset,
            version: o.version,
            manifests: hashes.iter().map(hex::encode).collect(),
            partitions: o.partitions,
            records: o.records,
            bytes: o.bytes,
            summary: o.summary,
        })
    }

    async fn export(&self, which: ExportWhich) -> Result<Export, ApiError> {
        let publisher = which
            .publisher
            .as_deref()
            .map(|p| parse_region("publisher", p))
            .transpose()?;
        let destination = which.destination;
        let table = which
            .format
            .as_deref()
            .map(FileFormat::parse)
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        let query = DatasetQuery {
            name: which.dataset,
            publisher,
            department: which.department,
            version: which.version,
        };
        // Looked up first, so an unknown dataset is a 404 and damaged content an error.
        let records = self
            .node
            .record_of(query)
            .await
            .map_err(|e| ApiError::not_found(format!("{e:#}")))?;
        let stored = match records
            .first()
            .map(|(_, r)| r.manifest.manifest.schema.name.as_str())
        {
            Some("ndjson") => Format::Ndjson,
            _ => Format::Csv,
        };
        // The published records as they are, or as a table (xlsx, parquet) written from them.
        let table = match table {
            Some(t) if t.is_converted() => Some(t),
            Some(t) if t.name() == stored.name() => None,
            None => None,
            Some(t) => {
                return Err(ApiError::bad_request(format!(
                    "the dataset is stored as {}: export it as that, xlsx or parquet, not {}",
                    stored.name(),
                    t.name()
                )))
            }
        };
        let (summary, records) = self
            .node
            .verify_for_export(records, &destination)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        let region = self.node.region();
        let store = self.node.store.clone();
        // `-` never survives `work_dir`'s sanitising: no dataset's spill directory is this.
        let scratch = self
            .data_dir
            .join("spill")
            .join("export-tables")
            .join(EXPORT_SEQ.fetch_add(1, Ordering::Relaxed).to_string());
        Ok(Export {
            summary: ExportSummary {
                dataset: summary.dataset,
                publisher: summary.publisher.to_string(),
                department: summary.department,
                version: summary.version,
                partitions: summary.partitions,
                records: summary.records,
                bytes: summary.bytes,
            },
            write: Box::new(move |out| {
                let mut records_to = |w: &mut dyn std::io::Write| -> Result<()> {
                    crate::export::write(&store, &records, region, w).map(|_| ())
                };
                let Some(table) = table else {
                    return records_to(out);
                };
                let written = backflow_formats::export::write_table(
                    table,
                    stored,
                    &scratch,
                    &mut records_to,
                    out,
                );
                let _ = std::fs::remove_dir_all(&scratch);
                written.map(|_| ())
            }),
        })
    }

    async fn shares(&self, overdue_only: bool) -> Result<serde_json::Value, ApiError> {
        json(
            self.node
                .shares(overdue_only)
                .await
                .map_err(|e| ApiError::internal(&e))?,
        )
    }

    async fn share(&self, id: String) -> Result<serde_json::Value, ApiError> {
        json(
            self.node
                .share(id)
                .await
                .map_err(|e| ApiError::not_found(format!("{e:#}")))?,
        )
    }

    async fn share_file(
        &self,
        department: Option<String>,
        params: ShareFileParams,
    ) -> Result<serde_json::Value, ApiError> {
        let department = department.unwrap_or_else(|| self.department.clone());
        json(
            self.node
                .share_file(department, params)
                .await
                .map_err(|e| ApiError::bad_request(format!("{e:#}")))?,
        )
    }

    async fn returned_corrections(&self) -> Result<serde_json::Value, ApiError> {
        json(
            self.node
                .returned_corrections()
                .await
                .map_err(|e| ApiError::internal(&e))?,
        )
    }

    async fn returned_correction_file(
        &self,
        department: Option<String>,
        params: backflow_api::ReturnedCorrectionParams,
    ) -> Result<serde_json::Value, ApiError> {
        let department = department.unwrap_or_else(|| self.department.clone());
        json(
            self.node
                .returned_correction_file(department, params)
                .await
                .map_err(|e| ApiError::bad_request(format!("{e:#}")))?,
        )
    }

    async fn returned_correction_answer(
        &self,
        department: Option<String>,
        id: String,
        params: backflow_api::ReturnedAnswerParams,
    ) -> Result<serde_json::Value, ApiError> {
        let department = department.unwrap_or_else(|| self.department.clone());
        let result = self
            .node
            .returned_correction_answer(department, id, params)
            .await;
        json(result.map_err(|e| {
            let text = format!("{e:#}");
            if text.contains("no correction request") || text.contains("more than one") {
                ApiError::not_found(text)
            } else {
                ApiError::bad_request(text)
            }
        })?)
    }

    async fn share_act(
        &self,
        department: Option<String>,
        id: String,
        params: ShareActParams,
    ) -> Result<serde_json::Value, ApiError> {
        let department = department.unwrap_or_else(|| self.department.clone());
        json(
            self.node
                .share_act(department, id, params)
                .await
                .map_err(|e| ApiError::bad_request(format!("{e:#}")))?,
        )
    }

    async fn share_deliver(
        &self,
        department: Option<String>,
        id: String,
        format: String,
        key: Option<String>,
        input: PublishInput,
    ) -> Result<serde_json::Value, ApiError> {
        let department = department.unwrap_or_else(|| self.department.clone());
        let format = Format::parse(&format).map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        // One scratch directory per delivery (the request id alone is the caller's text).
        let n = DELIVERY_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let work_dir = work_dir(&self.data_dir, "delivery").join(n.to_string());
        json(
            self.node
                .deliver_share(department, id, format, key, work_dir, input)
                .await
                .map_err(|e| ApiError::bad_request(format!("{e:#}")))?,
        )
    }

    async fn share_coordinate(
        &self,
        id: String,
        outcome: String,
        refer: bool,
    ) -> Result<serde_json::Value, ApiError> {
        json(
            self.node
                .share_coordinate(id, outcome, refer)
                .await
                .map_err(|e| ApiError::bad_request(format!("{e:#}")))?,
        )
    }

    async fn share_lookup(
        &self,
        department: Option<String>,
        id: String,
        keys: Vec<String>,
    ) -> Result<serde_json::Value, ApiError> {
        let department = department.unwrap_or_else(|| self.department.clone());
        let answer = self
            .node
            .share_lookup(department, id, keys)
            .await
            .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        json(crate::share_api::LookupView::of(answer))
    }

    async fn catalog_review(
        &self,
        request: backflow_api::ReviewRequest,
    ) -> Result<serde_json::Value, ApiError> {
        self.node
            .catalog_review(request, self.department.clone())
            .await
            .map_err(|e| ApiError::bad_request(format!("{e:#}")))
    }

    async fn departments(&self) -> Result<serde_json::Value, ApiError> {
        json(
            self.node
                .departments()
                .await
                .map_err(|e| ApiError::internal(&e))?,
        )
    }

    async fn department_add(&self, name: String) -> Result<serde_json::Value, ApiError> {
        let data_dir = self.data_dir.clone();
        let created = tokio::task::spawn_blocking(move || departments::add(&data_dir, &name))
            .await
            .map_err(|e| ApiError::internal(&e.into()))?
            .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        let view = self
            .node
            .add_department(created.name.clone(), created.key.clone())
            .await
            .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        self.department_tokens
            .insert(&created.name, created.token.clone());
        // The token is shown this once; the node keeps it in the department's owner-only file.
        json(serde_json::json!({
            "department": view,
            "token": created.token.expose(),
        }))
    }

    async fn ledger(&self, from: u64, limit: usize) -> Result<serde_json::Value, ApiError> {
        json(
            self.node
                .ledger_page(from, limit)
                .await
                .map_err(|e| ApiError::internal(&e))?,
        )
    }

    async fn metrics(&self) -> Result<String, ApiError> {
        crate::metrics::scrape(&self.node, &self.data_dir)
            .await
            .map_err(|e| ApiError::internal(&e))
    }

    async fn ledger_inspect(
        &self,
        params: backflow_api::InspectParams,
    ) -> Result<serde_json::Value, ApiError> {
        let target = parse_region("region", params.region.trim())?;
        let asked = self
            .node
            .ledger_inspect(target, params.grant, params.from, params.limit)
            .await
            .map_err(|e| ApiError::internal(&e))?;
        use crate::ledger_api::InspectFailure;
        match asked {
            Ok(view) => json(view),
            Err(InspectFailure::Refused(why)) => {
                Err(ApiError::bad_request(format!("not inspected: {why}")))
            }
            Err(InspectFailure::Failed(why)) => Err(ApiError::new(
                axum::http::StatusCode::BAD_GATEWAY,
                format!("the inspection of {target}'s ledger failed: {why}"),
            )),
        }
    }

    async fn ledger_verify(&self) -> Result<serde_json::Value, ApiError> {
        match self
            .node
            .ledger_verify()
            .await
            .map_err(|e| ApiError::internal(&e))?
        {
            Ok(v) => json(serde_json::json!({
                "ok": true,
                "entries": v.entries,
                "root": hex::encode(v.root),
                "head_size": v.head_size,
                "sealed": v.sealed,
                "archived": v.archived,
                "head_time": v.head_time_ms.map(|t| crate::share_api::time_text(UnixMs(t))),
            })),
            Err(d) => json(serde_json::json!({
                "ok": false,
                "entry": d.entry,
                "problem": d.problem,
            })),
        }
    }

    async fn ledger_record(
        &self,
        department: Option<String>,
        params: backflow_api::UseRecordParams,
    ) -> Result<serde_json::Value, ApiError> {
        let department = department.unwrap_or_else(|| self.department.clone());
        let entry = self
            .node
            .ledger_use_record(department, params)
            .await
            .map_err(|e| ApiError::bad_request(format!("{e:#}")))?;
        json(crate::ledger_api::EntryView::of(&entry))
    }
}

/// Takes this node's departments from their files (creating the configured department's on
/// first start) and certifies each at the running node; returns their API tokens.
pub async fn start_departments(
    data_dir: &Path,
    cfg: &Config,
    node: &NodeHandle,
) -> Result<DepartmentTokens> {
    departments::ensure(data_dir, &cfg.department)?;
    let tokens = DepartmentTokens::default();
    for d in departments::load_all(data_dir)? {
        node.add_department(d.name.clone(), d.key.clone()).await?;
        tokens.insert(&d.name, d.token);
    }
    Ok(tokens)
}

/// The API's router over a running node: its token (created here for a data directory from
/// before tokens existed), its departments and their tokens ([`start_departments`]), the Host
/// names it answers to, and its import/export directories — merged with the operator
/// console's pages (`/`, `/login`, `/ui/…`), which log in with the same tokens into a session
/// and check the same Host names. The API's routes and its one fallback stay behind its token
/// gate; the console's are behind the console's session guard.
pub async fn api_router(data_dir: &Path, cfg: &Config, node: NodeHandle) -> Result<axum::Router> {
    let department_tokens = start_departments(data_dir, cfg, &node).await?;
    let token_path = data_dir.join(backflow_api::token::TOKEN_FILE);
    let token = if token_path.exists() {
        ApiToken::load(data_dir)?
    } else {
        let token = ApiToken::create(data_dir)?;
        tracing::info!("created the API token {} (mode 0600)", token_path.display());
        token
    };
    let confined = |role, dir: &Option<PathBuf>| -> Result<Option<Confined>> {
        dir.as_deref()
            .map(|d| Confined::new(role, d, data_dir))
            .transpose()
    };
    let dirs = Directories {
        import: confined("import", &cfg.import_dir)?,
        export: confined("export", &cfg.export_dir)?,
    };
    let gate = Gate {
        token,
        departments: department_tokens.clone(),
        hosts: AllowedHosts::for_bind(cfg.http, &cfg.http_hosts),
    };
    let region = node.region();
    let backend = NodeBackend {
        node,
        data_dir: data_dir.to_path_buf(),
        department: cfg.department.clone(),
        department_tokens,
    };
    let console = backflow_console::router(backend.clone(), gate.clone(), region);
    Ok(console.merge(backflow_api::router(backend, gate, dirs)))
}
