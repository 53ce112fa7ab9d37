//! What the compliance ledger (合规台账, Art. 29) records of the protocol's acts at this node.
//!
//! Every act the protocol makes durable passes through one [`Storage`] effect (`persist`),
//! so that is where the ledger hears of it, in the same atomic write as the act itself:
//! - a share case's acts (Arts. 15, 20–28: filing, receiving, notices, answers, grants,
//!   deliveries, suspensions, corrections, disputes…), each once, in order;
//! - a return-flow receipt (回执) recorded and a delivery attested (签收, Art. 24);
//! - a service interface call (服务接口调用) answered or refused, with the grant's counts;
//! - a catalog submission received and decided (目录审核, Arts. 16–17).
//!
//! Publishing and exporting are the node's own acts, not the protocol's: `publish` and the
//! export routes record those. A case or submission is stored again on every change, so a
//! mark in the ledger CF (`m` ‖ kind ‖ id) says how much of it is logged already, and each act
//! is logged exactly once.

use anyhow::Result;
use backflow_protocol::catalog_review::{ReviewState, ReviewStorageOp, Submission};
use backflow_protocol::endpoint::Storage;
use backflow_protocol::ledger::entry::EntryKind;
use backflow_protocol::return_flow::StorageOp;
use backflow_protocol::service_interface::ServiceStorageOp;
use backflow_protocol::share::{
    ReturnedCorrection, RightsDecision, ShareAct, ShareCase, ShareStorageOp, SignedRightsAct,
};

use crate::ledger::{Record, MARK_PREFIX};
use crate::store::{Batch, Store, CF_LEDGER};

const CASE_MARK: u8 = b'c';
const REVIEW_MARK: u8 = b'r';

fn mark_key(kind: u8, id: &[u8]) -> Vec<u8> {
    [&[MARK_PREFIX, kind][..], id].concat()
}

/// The records `op` adds to the ledger; the marks it needs go into `batch` (written with
/// the op and the records).
pub fn records_of(store: &Store, op: &Storage, batch: &mut Batch<'_>) -> Result<Vec<Record>> {
    Ok(match op {
        Storage::ReturnFlow(StorageOp::PutReceipt { manifest, receipt }) => vec![Record {
            time_ms: receipt.at.0,
            department: None,
            kind: EntryKind::Receipt,
            subject: hex::encode(manifest),
            detail: format!(
                "{}: {}/{} regions delivered, {} records, {} bytes (seq {})",
                receipt.region,
                receipt.regions_delivered,
                receipt.regions_expected,
                receipt.records_delivered,
                receipt.bytes_delivered,
                receipt.seq
            ),
        }],
        Storage::ReturnFlow(StorageOp::PutAttestation {
            manifest,
            attestation,
        }) => {
            let a = &attestation.attestation;
            vec![Record {
                time_ms: a.at.0,
                department: None,
                kind: EntryKind::DeliveryComplete,
                subject: hex::encode(manifest),
                detail: format!(
                    "{} verified and stored its partition {}",
                    a.region,
                    hex::encode(a.content_hash)
                ),
            }]
        }
        Storage::Share(ShareStorageOp::PutCase(case)) => case_records(store, case, batch)?,
        Storage::Service(ServiceStorageOp::PutUsage { request, usage }) => vec![Record {
            time_ms: usage.last_call_at.map_or(0, |t| t.0),
            department: None,
            kind: EntryKind::ServiceCall,
            subject: hex::encode(request),
            detail: format!(
                "grant's calls so far: {} answered ({} keys, {} records sent), {} refused",
                usage.calls, usage.keys, usage.records, usage.refused
            ),
        }],
        Storage::Review(ReviewStorageOp::PutSubmission(s)) => review_records(store, s, batch)?,
        Storage::Share(ShareStorageOp::PutRights(act)) => vec![rights_record(act)],
        Storage::Share(ShareStorageOp::PutReturnedCorrection(c)) => vec![returned_record(c)],
        Storage::ReturnFlow(_)
        | Storage::Share(_)
        | Storage::Review(_)
        | Storage::Catalog(_)
        | Storage::Revocation(_)
        | Storage::Ledger(_) => Vec::new(),
    })
}

/// A correction request against returned data filed or answered (Art. 26): stored once per
/// act at each party's node (filed, then answered).
fn returned_record(c: &ReturnedCorrection) -> Record {
    let r = &c.request;
    let subject = hex::encode(r.id());
    let (time_ms, act, detail) = match &c.answer {
        None => (
            r.filed_at.0,
            "returned-correction-filed",
            format!(
                "{} {} asked {} {} to verify and correct {} record(s) of {} version {}                  (校核申请), due {}",
                r.requester.region,
                r.requester.department,
                r.dataset.publisher,
                r.dataset.department,
                r.items.len(),
                r.dataset.name,
                r.version,
                crate::share_api::time_text(c.due)
            ),
        ),
        Some(a) => (
            a.at.0,
            "returned-correction-answered",
            format!(
                "{} {} answered: {}; {}; approved by {}",
                r.dataset.publisher,
                r.dataset.department,
                a.corrected_in.map_or_else(
                    || "not an error".to_string(),
                    |v| format!("corrected in version {v}")
                ),
                a.reason,
                a.approved_by
            ),
        ),
    };
    Record {
        time_ms,
        department: None,
        kind: EntryKind::ShareAct { act: act.into() },
        subject,
        detail,
    }
}

/// An authority's act on a department's sharing rights, as this node holds and enforces it
/// (Art. 27 ¶2). Each act is stored once per node (only a newer one is stored again).
fn rights_record(act: &SignedRightsAct) -> Record {
    let b = &act.body;
    let (name, detail) = match &b.decision {
        RightsDecision::Suspend {
            reason,
            rectify_by,
            approved_by,
        } => (
            "rights-suspended",
            format!(
                "the authority of {} suspended the sharing rights (暂停政务数据共享权限) of {} {} \
                 (its act {}): {reason}; to rectify by {}; approved by {approved_by}",
                b.issuer,
                b.department.region,
                b.department.department,
                b.ordinal,
                crate::share_api::time_text(*rectify_by)
            ),
        ),
        RightsDecision::Terminate {
            reason,
            approved_by,
        } => (
            "sharing-terminated",
            format!(
                "the authority of {} terminated the sharing (终止共享) of {} {} (its act {}): \
                 {reason}; every grant it requested until then has ended; approved by \
                 {approved_by}",
                b.issuer, b.department.region, b.department.department, b.ordinal
            ),
        ),
        RightsDecision::Reinstate { note, approved_by } => (
            "rights-reinstated",
            format!(
                "the authority of {} reinstated the sharing rights of {} {} (its act {}): \
                 {note}; approved by {approved_by}",
                b.issuer, b.department.region, b.department.department, b.ordinal
            ),
        ),
    };
    Record {
        time_ms: b.at.0,
        department: None,
        kind: EntryKind::ShareAct { act: name.into() },
        subject: format!("{}/{}", b.department.region, b.department.department),
        detail,
    }
}

/// The case's acts not logged yet: at first sight the request itself, then each act once.
fn case_records(store: &Store, case: &ShareCase, batch: &mut Batch<'_>) -> Result<Vec<Record>> {
    let id = case.request.id();
    let key = mark_key(CASE_MARK, &id);
    let logged =
        match store.get(CF_LEDGER, &key)? {
            Some(v) => Some(u32::from_be_bytes(v.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!("a corrupt ledger mark of case {}", hex::encode(id))
            })?) as usize),
            None => None,
        };
    let r = &case.request;
    let subject = hex::encode(id);
    let mut out = Vec::new();
    if logged.is_none() {
        out.push(Record {
            time_ms: r.filed_at.0,
            department: Some(r.requester.department.clone()),
            kind: EntryKind::ShareAct {
                act: "request".into(),
            },
            subject: subject.clone(),
            detail: format!(
                "{} {} asks {} {} for catalog entry {}; scenario: {}; scope: {}; approved by {}",
                r.requester.region,
                r.requester.department,
                r.provider.region,
                r.provider.department,
                r.entry_id,
                r.scenario,
                r.scope,
                r.approved_by
            ),
        });
    }
    for (at, act) in case.acts.iter().skip(logged.unwrap_or(0)) {
        let (name, detail) = act_text(act);
        out.push(Record {
            time_ms: at.0,
            department: None,
            kind: EntryKind::ShareAct { act: name },
            subject: subject.clone(),
            detail,
        });
    }
    if logged != Some(case.acts.len()) {
        let n = u32::try_from(case.acts.len()).unwrap_or(u32::MAX);
        batch.put(CF_LEDGER, &key, &n.to_be_bytes());
    }
    Ok(out)
}

/// An act's name (its variant, in snake case as the API names acts) and its content as JSON.
fn act_text(act: &ShareAct) -> (String, String) {
    match serde_json::to_value(act) {
        Ok(serde_json::Value::String(name)) => (snake(&name), String::new()),
        Ok(serde_json::Value::Object(map)) => match map.into_iter().next() {
            Some((name, content)) => (snake(&name), content.to_string()),
            None => ("act".into(), String::new()),
        },
        _ => ("act".into(), String::new()),
    }
}

fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A submission received, then decided: each logged once.
fn review_records(store: &Store, s: &Submission, batch: &mut Batch<'_>) -> Result<Vec<Record>> {
    let key = mark_key(REVIEW_MARK, &s.id.to_be_bytes());
    let logged = store.get(CF_LEDGER, &key)?.map(|v| v.first().copied());
    let decided = !matches!(s.state, ReviewState::Pending);
    let mut out = Vec::new();
    if logged.is_none() {
        out.push(Record {
            time_ms: s.received_at.0,
            department: Some(s.department.clone()),
            kind: EntryKind::CatalogReview,
            subject: format!("submission {}", s.id),
            detail: format!("submitted {} catalog entries for review", s.entries.len()),
        });
    }
    if decided && logged != Some(Some(1)) {
        let (time_ms, reviewer) = s
            .decided
            .as_ref()
            .map_or((s.received_at.0, String::new()), |(t, who)| {
                (t.0, who.clone())
            });
        out.push(Record {
            time_ms,
            department: Some(s.department.clone()),
            kind: EntryKind::CatalogReview,
            subject: format!("submission {}", s.id),
            detail: match &s.state {
                ReviewState::Returned { reasons } => {
                    format!("returned (退回) by {reviewer}: {reasons}")
                }
                _ => format!("approved (审核通过) by {reviewer}"),
            },
        });
    }
    if logged != Some(Some(u8::from(decided))) {
        batch.put(CF_LEDGER, &key, &[u8::from(decided)]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acts_are_named_as_the_api_names_them() {
        assert_eq!(
            act_text(&ShareAct::Receive),
            ("receive".into(), String::new())
        );
        let (name, detail) = act_text(&ShareAct::Grant {
            conditions: vec!["仅用于低保复核".into()],
            approved_by: "张主任".into(),
        });
        assert_eq!(name, "grant");
        assert!(detail.contains("仅用于低保复核") && detail.contains("张主任"));
        let (name, _) = act_text(&ShareAct::RequestCorrection {
            ordinal: 1,
            items: Vec::new(),
        });
        assert_eq!(name, "request_correction");
    }
}
