//! Correction requests against returned data (回流数据的政务数据校核申请: Art. 26 on data
//! returned under Art. 24). A department of a region that holds a return-flow dataset names
//! the records it believes wrong (发现政务数据不准确或者不完整的，应当及时向政务数据提供部门提出政务数据
//! 校核申请); the request travels up the tree to the dataset's publisher — the 政务数据提供部门 of
//! returned data — which verifies, corrects and answers within 10 working days
//! (自收到政务数据校核申请之日起10个工作日内予以核实、更正并反馈校核处理结果).
//!
//! "Corrected" names the new version the publisher published: return flow carries it to every
//! holder of the affected version, moving only the partitions it changed (storage is
//! content-addressed), so the publisher's node refuses the answer until such a version exists
//! there ([`crate::endpoint::Endpoint::answer_returned_correction`]). "Not an error" states its
//! reason. Unanswered past its deadline, it is reported overdue at both parties.
//!
//! Carried like a share request's acts ([`super::ShareService`]): signed by the acting
//! department's own key, relayed hop by hop, applied by both parties' copies at the signed
//! time, so both hold the same deadline.

use serde::{Deserialize, Serialize};

use super::case::{check_approval, check_text, Applied, Overdue, ShareError};
use super::governance::check_correction_items;
use super::records::{CorrectionItem, CORRECTION_WORKING_DAYS};
use crate::calendar::WorkingCalendar;
use crate::catalog::CatalogOrigin;
use crate::codec::digest;
use crate::manifest::{DatasetId, Hash};
use crate::time::UnixMs;

const RETURNED_CORRECTION_DOMAIN: &[u8] = b"backflow/returned-correction/v1";

/// A correction request against a returned dataset, as the requesting department files it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnedCorrectionRequest {
    /// 政务数据需求部门: a department of a region inside the publisher's (returned data flows
    /// down only).
    pub requester: CatalogOrigin,
    /// The returned dataset; its publisher is the 政务数据提供部门 that answers.
    pub dataset: DatasetId,
    /// The version the requester holds, and its manifest's hash.
    pub version: u64,
    pub manifest: Hash,
    pub items: Vec<CorrectionItem>,
    pub filed_at: UnixMs,
}

impl ReturnedCorrectionRequest {
    /// The request's identity: a digest of everything it states.
    pub fn id(&self) -> Hash {
        digest(RETURNED_CORRECTION_DOMAIN, self)
    }

    /// The department that answers: the dataset's publisher.
    pub fn publisher(&self) -> CatalogOrigin {
        CatalogOrigin {
            region: self.dataset.publisher,
            department: self.dataset.department.clone(),
        }
    }

    /// What a request must be before it is filed or taken (every input is hostile: the
    /// publisher's node checks it again).
    pub fn check(&self) -> Result<(), ShareError> {
        check_text("requester department", &self.requester.department)?;
        check_text("dataset name", &self.dataset.name)?;
        check_text("publisher department", &self.dataset.department)?;
        if !self.dataset.publisher.contains(self.requester.region) {
            return Err(ShareError::OutsideThePublisher {
                requester: self.requester.region,
                publisher: self.dataset.publisher,
            });
        }
        check_correction_items(&self.items, "a correction request against returned data")
    }
}

/// The publisher's answer (反馈校核处理结果).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnedCorrectionAnswer {
    pub at: UnixMs,
    /// Corrected: the version that carries the correction (later than the one complained
    /// of). `None`: not an error, for `reason`.
    pub corrected_in: Option<u64>,
    pub reason: String,
    pub approved_by: String,
}

/// One correction request against returned data and its answer, as both parties hold it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnedCorrection {
    pub request: ReturnedCorrectionRequest,
    /// The end of the 10 working days (Art. 26).
    pub due: UnixMs,
    pub answer: Option<ReturnedCorrectionAnswer>,
}

impl ReturnedCorrection {
    /// A request filed at `request.filed_at`: checked, its deadline set.
    pub fn filed(
        calendar: &WorkingCalendar,
        request: ReturnedCorrectionRequest,
    ) -> Result<ReturnedCorrection, ShareError> {
        request.check()?;
        let due = calendar.deadline(request.filed_at, CORRECTION_WORKING_DAYS)?;
        Ok(ReturnedCorrection {
            request,
            due,
            answer: None,
        })
    }

    /// The publisher answers at `at`. Once: the same answer again changes nothing, another
    /// is refused.
    pub fn answer(&mut self, answer: ReturnedCorrectionAnswer) -> Result<Applied, ShareError> {
        if let Some(held) = &self.answer {
            return if *held == answer {
                Ok(Applied::AlreadyApplied)
            } else {
                Err(ShareError::ReturnedCorrectionAnswered)
            };
        }
        match answer.corrected_in {
            Some(v) if v <= self.request.version => return Err(ShareError::CorrectionUnchanged),
            Some(_) => {}
            // Not an error: say why (the requester relies on the data as it is).
            None if answer.reason.trim().is_empty() => {
                return Err(ShareError::WithoutReason {
                    act: "a correction's answer",
                })
            }
            None => {}
        }
        check_text("correction answer", &answer.reason)?;
        check_approval(&answer.approved_by)?;
        self.answer = Some(answer);
        Ok(Applied::Changed)
    }

    /// The deadline running, while the answer is owed.
    pub fn deadline(&self) -> Option<UnixMs> {
        self.answer.is_none().then_some(self.due)
    }

    pub fn overdue(&self, now: UnixMs) -> Option<Overdue> {
        self.deadline()
            .filter(|due| now >= *due)
            .map(|due| Overdue { article: 26, due })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backflow_topology::RegionCode;

    fn code(s: &str) -> RegionCode {
        s.parse().unwrap()
    }

    fn request(requester: &str) -> ReturnedCorrectionRequest {
        ReturnedCorrectionRequest {
            requester: CatalogOrigin {
                region: code(requester),
                department: "民政局".into(),
            },
            dataset: DatasetId {
                publisher: code("11"),
                department: "民政厅".into(),
                name: "低保对象名单".into(),
            },
            version: 3,
            manifest: [7; 32],
            items: vec![CorrectionItem {
                key: "110101199001011234".into(),
                field: "村居".into(),
                problem: "已迁出".into(),
            }],
            filed_at: UnixMs(1_767_600_000_000),
        }
    }

    fn answer(corrected_in: Option<u64>, reason: &str) -> ReturnedCorrectionAnswer {
        ReturnedCorrectionAnswer {
            at: UnixMs(1_767_700_000_000),
            corrected_in,
            reason: reason.into(),
            approved_by: "民政厅负责人".into(),
        }
    }

    #[test]
    fn a_request_goes_only_to_a_publisher_above_the_requester() {
        assert!(request("110101").check().is_ok());
        assert!(matches!(
            request("440101").check(),
            Err(ShareError::OutsideThePublisher { .. })
        ));
        let mut empty = request("110101");
        empty.items.clear();
        assert!(empty.check().is_err());
    }

    #[test]
    fn an_answer_is_a_later_version_or_a_reason_and_is_given_once() {
        let calendar = WorkingCalendar::official();
        let mut c = ReturnedCorrection::filed(&calendar, request("110101")).unwrap();
        assert!(c.due > c.request.filed_at);
        assert_eq!(c.overdue(c.due).map(|o| o.article), Some(26));
        assert_eq!(
            c.answer(answer(Some(3), "")),
            Err(ShareError::CorrectionUnchanged)
        );
        assert!(matches!(
            c.answer(answer(None, " ")),
            Err(ShareError::WithoutReason { .. })
        ));
        assert_eq!(c.answer(answer(Some(4), "")), Ok(Applied::Changed));
        assert_eq!(c.answer(answer(Some(4), "")), Ok(Applied::AlreadyApplied));
        assert_eq!(
            c.answer(answer(None, "不是错误")),
            Err(ShareError::ReturnedCorrectionAnswered)
        );
        assert_eq!(c.deadline(), None);
        assert_eq!(c.overdue(c.due), None);
    }
}
