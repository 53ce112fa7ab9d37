//! [`Tuning`]: the one set of protocol defaults. The node's `[tuning]` config section and
//! simnet's run options both start from [`Tuning::default`], so what simnet predicts is what
//! the node ships (a drift between two copies of these numbers once made simnet simulate a
//! node with a quarter of the real transfer window).

use serde::{Deserialize, Serialize};

/// Bounds on the time knobs: below the minimum a node floods its peers with retransmissions;
/// above the maximum it never notices a dead source.
pub const TUNING_MS_MIN: u64 = 50;
pub const TUNING_MS_MAX: u64 = 24 * 60 * 60 * 1000;
/// Bound on the transfer window: 65,536 × 16 KiB = 1 GiB requested and not yet stored.
pub const GROUPS_IN_FLIGHT_MAX: u64 = 65_536;

/// The shortest ledger retention a node may be configured with: three years, as days
/// ([`crate::ledger::RETENTION_MS_MIN`]).
pub const LEDGER_RETENTION_DAYS_MIN: u64 = crate::ledger::RETENTION_MS_MIN / crate::time::DAY_MS;
/// The longest: a century (a bound on the input, not a legal limit).
pub const LEDGER_RETENTION_DAYS_MAX: u64 = 36_525;

/// Knobs of the protocol state machines, the same for both shells.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Tuning {
    /// A want, announce, receipt or catalog batch not answered within this time is sent again.
    pub retry_ms: u64,
    /// A source (or catalog upstream) silent this long is abandoned for the next ancestor
    /// (skip-level fallback).
    pub source_silence_ms_max: u64,
    /// Chunk groups (16 KiB) requested and not yet stored, per transfer: the transfer window.
    pub groups_in_flight_max: u64,
    /// Minimum interval between two receipts for the same manifest (batching).
    pub receipt_interval_ms: u64,
    /// Catalog versions (目录版本) of one department (region + department) a node keeps in its
    /// log; later ones are refused there and not relayed. 65,536 is a new version every hour
    /// for seven years.
    pub catalog_versions_per_origin_max: u64,
    /// Encoded bytes of one department's catalog versions a node keeps in its log (the log
    /// is held in memory): 64 MiB is thousands of versions of a large catalog. At least one
    /// version of the largest size (`CATALOG_UPDATE_BYTES_MAX`).
    pub catalog_origin_bytes_max: u64,
    /// Days the compliance ledger (合规台账) keeps an entry before the node prunes it (Art. 29:
    /// 有关记录保存期限不少于3年): at least 1,096 ([`crate::ledger::RETENTION_MS_MIN`]); longer
    /// where a law says so (法律、行政法规另有规定的，从其规定).
    pub ledger_retention_days: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            retry_ms: 5_000,
            source_silence_ms_max: 60_000,
            // 1,024 × 16 KiB = 16 MiB in flight: enough to fill a fast link's pipe.
            groups_in_flight_max: 1_024,
            receipt_interval_ms: 1_000,
            catalog_versions_per_origin_max: 65_536,
            catalog_origin_bytes_max: 64 * 1024 * 1024,
            ledger_retention_days: LEDGER_RETENTION_DAYS_MIN,
        }
    }
}

/// Every problem of a [`Tuning`], one line each, in the config file's own names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct TuningError {
    pub problems: Vec<String>,
}

impl Tuning {
    /// Checks every knob against its bounds and the knobs against each other; reports every
    /// problem at once.
    pub fn validate(&self) -> Result<(), TuningError> {
        let mut problems = Vec::new();
        for (name, v) in [
            ("retry_ms", self.retry_ms),
            ("source_silence_ms_max", self.source_silence_ms_max),
            ("receipt_interval_ms", self.receipt_interval_ms),
        ] {
            if !(TUNING_MS_MIN..=TUNING_MS_MAX).contains(&v) {
                problems.push(format!(
                    "tuning.{name} = {v} is outside {TUNING_MS_MIN}..={TUNING_MS_MAX} ms"
                ));
            }
        }
        if self.source_silence_ms_max < self.retry_ms {
            problems.push(format!(
                "tuning.source_silence_ms_max ({}) must be at least tuning.retry_ms ({}): a \
                 source must get at least one retry before it is abandoned",
                self.source_silence_ms_max, self.retry_ms
            ));
        }
        if !(1..=GROUPS_IN_FLIGHT_MAX).contains(&self.groups_in_flight_max) {
            problems.push(format!(
                "tuning.groups_in_flight_max = {} is outside 1..={GROUPS_IN_FLIGHT_MAX}",
                self.groups_in_flight_max
            ));
        }
        if self.catalog_versions_per_origin_max == 0 {
            problems.push("tuning.catalog_versions_per_origin_max must be at least 1".into());
        }
        let update_max = crate::limits::CATALOG_UPDATE_BYTES_MAX as u64;
        if self.catalog_origin_bytes_max < update_max {
            problems.push(format!(
                "tuning.catalog_origin_bytes_max = {} is below one version of the largest size ({update_max})",
                self.catalog_origin_bytes_max
            ));
        }
        if !(LEDGER_RETENTION_DAYS_MIN..=LEDGER_RETENTION_DAYS_MAX)
            .contains(&self.ledger_retention_days)
        {
            problems.push(format!(
                "tuning.ledger_retention_days = {} is outside {LEDGER_RETENTION_DAYS_MIN}..={LEDGER_RETENTION_DAYS_MAX}: \
                 Art. 29 keeps records no less than three years (保存期限不少于3年)",
                self.ledger_retention_days
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(TuningError { problems })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Tuning::default().validate(), Ok(()));
    }

    #[test]
    fn every_problem_is_reported() {
        let t = Tuning {
            retry_ms: 0,
            source_silence_ms_max: 10,
            groups_in_flight_max: 0,
            receipt_interval_ms: 1_000,
            ledger_retention_days: 1_095,
            ..Tuning::default()
        };
        let e = t.validate().unwrap_err();
        assert_eq!(e.problems.len(), 4, "{e}");
        assert!(e.to_string().contains("不少于3年"), "{e}");
        assert!(e.to_string().contains("tuning.retry_ms"), "{e}");
        assert!(e.to_string().contains("tuning.groups_in_flight_max"), "{e}");
        assert!(
            e.to_string().contains("tuning.source_silence_ms_max"),
            "{e}"
        );
    }
}
