//! The compliance ledger (合规台账): a tamper-evident, append-only log of what a node did with
//! shared government data, so that the record Art. 29 requires can be *checked*, not only kept.
//!
//! 《政务数据共享条例》第二十九条: "政务数据需求部门应当对共享政务数据的使用场景、使用过程、应用成效、
//! 存储情况、销毁情况等进行记录,有关记录保存期限不少于3年。政务数据共享主管部门和政务数据提供部门可以查阅
//! 政务数据需求部门有关记录。" A record the recording node can quietly rewrite proves nothing to
//! the authority (主管部门) or the provider (提供部门) who may inspect it. So the ledger is an
//! RFC 6962 (Certificate Transparency) Merkle log:
//!
//! - [`entry`]: what is recorded — [`entry::LedgerEntry`], its bounded canonical encoding
//!   (the leaf bytes), and the department's use record (使用记录) of Art. 29.
//! - [`merkle`]: the RFC 6962 §2.1 tree hash over a storage trait (the log holds millions of
//!   entries in the shell's database, never all in memory), inclusion and consistency proofs.
//! - [`verify`]: their verifiers (RFC 9162 §2.1.3.2, §2.1.4.2), total on a peer's proofs.
//! - [`head`]: signed tree heads — the node commits to (size, root) — and the parent's
//!   countersignature ([`head::WitnessedHead`]).
//! - [`witness`]: the parent's pure check of a child's new head against the last one it
//!   holds: truncation, forks, rewritten or reordered entries, bad signatures and time going
//!   backwards are all named.
//! - [`witnessing`]: the exchange itself — a node's heads up to its parent, the parent's
//!   countersignatures back, findings raised as alarms at the parent.
//! - [`parent_head`]: heads down — with each of its heads a node asks its parent for the
//!   parent's own newest head and checks it extends the one it holds, so a township can
//!   show its county's log was not rewritten either.
//! - [`seal`]: each entry signed by the department that acted, or by the node — one
//!   signature per signer and beat over a small tree of its entries (签章).
//! - [`inspection`]: the provider and the authorities above reading a node's records over
//!   the network (查阅), each entry proved against the witnessed head.
//!
//! # Why a parent witnesses
//! A log signed only by its own node can be replaced wholesale by that node. Each node sends
//! its heads up the region tree; the parent accepts a new head only with a consistency proof
//! from the last head it countersigned, so the child can append but never rewrite what its
//! parent has seen — and any two heads the child signed for the same size with different
//! roots are signed evidence of a fork.
//!
//! Sans-IO like the rest of the crate: no storage (a [`merkle::NodeStore`] is read, the nodes
//! to persist are returned), no clock (time is an input `now_ms`).

pub mod entry;
pub mod head;
pub mod inspection;
pub mod merkle;
pub mod parent_head;
pub mod seal;
#[cfg(test)]
mod vectors;
pub mod verify;
pub mod witness;
pub mod witnessing;

use crate::time::DAY_MS;

/// Shortest time a ledger entry must be kept: Art. 29, 有关记录保存期限不少于3年 (records are kept
/// for no less than three years). Three calendar years span at most 1,096 days (at most one
/// 29 February falls in any three consecutive years), so keeping an entry for 1,096 days from
/// its `time_ms` keeps it three years whatever the calendar. A shell may keep longer (and
/// must, where a law or administrative regulation says so: 法律、行政法规另有规定的,从其规定);
/// it may never prune sooner.
pub const RETENTION_MS_MIN: u64 = 1_096 * DAY_MS;

/// Whether an entry recorded at `time_ms` has been kept for the statutory minimum at `now_ms`
/// ([`RETENTION_MS_MIN`]) — the earliest a shell may archive it out of the live store. A time
/// in the future (a clock set wrong) is never expired.
pub fn retention_elapsed(time_ms: u64, now_ms: u64) -> bool {
    now_ms.saturating_sub(time_ms) >= RETENTION_MS_MIN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_is_at_least_three_calendar_years() {
        // 2024-01-01T00:00Z to 2027-01-01T00:00Z: three years with a leap day, 1,096 days.
        let start = 1_704_067_200_000;
        let three_years_later = 1_798_761_600_000;
        assert_eq!(three_years_later - start, RETENTION_MS_MIN);
        assert!(!retention_elapsed(start, three_years_later - 1));
        assert!(retention_elapsed(start, three_years_later));
        // A future entry (clock skew) is never expired; saturating, no overflow.
        assert!(!retention_elapsed(u64::MAX, 0));
        assert!(retention_elapsed(0, u64::MAX));
    }
}
