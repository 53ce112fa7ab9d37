//! Ledger entries (合规台账条目): what a node records, and the bytes the Merkle log commits to.
//!
//! The leaf bytes of an entry are its canonical encoding (the crate's one bincode
//! configuration, [`crate::codec`]): deterministic, bounded by the named limits below, and
//! decoded only if re-encoding gives the same bytes back — so one entry has exactly one leaf
//! hash, and a verifier holding the bytes, the entry and a proof all agree on what was logged.
//!
//! # The order of [`EntryKind`]'s variants is part of the leaf encoding
//! Entries are kept at least three years (Art. 29, [`super::RETENTION_MS_MIN`]) and their
//! hashes are in signed tree heads: a variant may be *added at the end*, never reordered,
//! removed or changed, or old leaves would no longer decode to what was signed.

use backflow_topology::RegionCode;
use serde::{Deserialize, Serialize};

use super::merkle::{self, Hash, MerkleError, Node, NodeStore};
use crate::codec::{decode_exact, encode_value, WireError};
use crate::limits::{check_len, Bounded, LimitError, NAME_BYTES_MAX, TEXT_BYTES_MAX};

/// A department's name (政府部门), as in the rest of the crate.
pub const LEDGER_DEPARTMENT_BYTES_MAX: usize = NAME_BYTES_MAX;
/// What an entry is about: a dataset id, a share case id, a manifest hash in hex — a name.
pub const LEDGER_SUBJECT_BYTES_MAX: usize = NAME_BYTES_MAX;
/// The name of a share act ("grant", "refuse", …).
pub const LEDGER_ACT_BYTES_MAX: usize = NAME_BYTES_MAX;
/// Free text: the entry's detail, and each of the five parts of a use record. The crate's
/// free-text limit: a paragraph, not an attachment (attachments are data, not ledger).
pub const LEDGER_DETAIL_BYTES_MAX: usize = TEXT_BYTES_MAX;
/// One part of a use record (scenario, process, effect, storage, disposal).
pub const LEDGER_USE_FIELD_BYTES_MAX: usize = TEXT_BYTES_MAX;
/// Encoded bytes of one entry: above every entry the field limits allow (a use record with
/// all texts full is ~25 KiB, checked below at compile time), so decoding bytes over this is
/// refused before any allocation.
pub const LEDGER_ENTRY_BYTES_MAX: usize = 32 * 1024;

// Strings plus a generous 1 KiB for lengths, integers, tags and the region code.
const _: () = assert!(
    LEDGER_DEPARTMENT_BYTES_MAX
        + LEDGER_SUBJECT_BYTES_MAX
        + LEDGER_DETAIL_BYTES_MAX
        + 5 * LEDGER_USE_FIELD_BYTES_MAX
        + 1024
        <= LEDGER_ENTRY_BYTES_MAX
);

/// One entry of a node's compliance ledger (合规台账).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The entry's position in its log, from 0: the leaf index its inclusion proofs name.
    /// [`append_entry`] refuses an entry whose `seq` is not the log's size.
    pub seq: u64,
    /// When it happened, Unix ms, as the shell supplied it (no clock here).
    pub time_ms: u64,
    /// The node whose log this is.
    pub region: RegionCode,
    /// The department (政府部门) that acted or recorded, if one did (a use record always has
    /// one; a delivery completed by the node itself has none).
    pub department: Option<String>,
    pub kind: EntryKind,
    /// What the entry is about (dataset, share case, manifest).
    pub subject: String,
    pub detail: String,
}

/// What kind of thing an entry records. **Append new variants at the end only** (see the
/// module docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A dataset version published for return flow (数据回流发布).
    Publish,
    /// This node's partition of a dataset delivered and verified (签收).
    DeliveryComplete,
    /// A delivery receipt (回执) sent or received.
    Receipt,
    /// Shared data exported out of the node (导出), e.g. into a department's own system.
    Export,
    /// An act on a share request (共享申请, Arts. 15, 20–28), by the act's name.
    ShareAct { act: String },
    /// A call of a granted service interface (服务接口调用).
    ServiceCall,
    /// A review of catalog entries (目录审核, Arts. 16–17).
    CatalogReview,
    /// The requesting department's use record (使用记录) of Art. 29: 政务数据需求部门应当对共享
    /// 政务数据的使用场景、使用过程、应用成效、存储情况、销毁情况等进行记录. Entered by the
    /// department, so the entry's `department` must be set.
    UseRecord {
        /// 使用场景: the scenario the shared data is used in.
        scenario: String,
        /// 使用过程: how it is used.
        process: String,
        /// 应用成效: what its use achieved.
        effect: String,
        /// 存储情况: where and how it is stored.
        storage: String,
        /// 销毁情况: how and when it was destroyed; empty while it is still held. Art. 29
        /// lists it beside the other four, so a record of destruction is a use record too.
        disposal: String,
    },
    /// Anything else worth recording (备注).
    Note,
    /// Entries `from..below` were pruned after the retention period (Art. 29: 保存期限不少于
    /// 3年): each recorded before `before_ms`, which lies at least [`super::RETENTION_MS_MIN`]
    /// before this entry's time. Their bodies went; their leaf hashes and the tree stayed, so
    /// every head and proof still holds. The last such entry states how far the log is pruned,
    /// so entries removed otherwise are named by `verify`.
    Pruned {
        from: u64,
        below: u64,
        before_ms: u64,
    },
}

/// Why an entry cannot be logged, or bytes are not a logged entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Merkle(#[from] MerkleError),
    #[error("entry bytes are not the canonical encoding of the entry they decode to")]
    NotCanonical,
    #[error("a use record (使用记录) names no department; Art. 29 records are the department's")]
    UseRecordWithoutDepartment,
    #[error("entry seq {seq} appended to a log of {size} entries; seq must be the log's size")]
    SeqMismatch { seq: u64, size: u64 },
}

impl Bounded for LedgerEntry {
    fn check_limits(&self) -> Result<(), LimitError> {
        if let Some(d) = &self.department {
            check_len(
                "ledger department bytes",
                d.len(),
                LEDGER_DEPARTMENT_BYTES_MAX,
            )?;
        }
        check_len(
            "ledger subject bytes",
            self.subject.len(),
            LEDGER_SUBJECT_BYTES_MAX,
        )?;
        check_len(
            "ledger detail bytes",
            self.detail.len(),
            LEDGER_DETAIL_BYTES_MAX,
        )?;
        match &self.kind {
            EntryKind::ShareAct { act } => {
                check_len("ledger act bytes", act.len(), LEDGER_ACT_BYTES_MAX)
            }
            EntryKind::UseRecord {
                scenario,
                process,
                effect,
                storage,
                disposal,
            } => [
                ("use record scenario bytes", scenario),
                ("use record process bytes", process),
                ("use record effect bytes", effect),
                ("use record storage bytes", storage),
                ("use record disposal bytes", disposal),
            ]
            .into_iter()
            .try_for_each(|(what, text)| check_len(what, text.len(), LEDGER_USE_FIELD_BYTES_MAX)),
            EntryKind::Publish
            | EntryKind::DeliveryComplete
            | EntryKind::Receipt
            | EntryKind::Export
            | EntryKind::ServiceCall
            | EntryKind::CatalogReview
            | EntryKind::Note
            | EntryKind::Pruned { .. } => Ok(()),
        }
    }
}

impl LedgerEntry {
    /// Limits, and that a use record names its department.
    pub fn validate(&self) -> Result<(), EntryError> {
        self.check_limits()?;
        if matches!(self.kind, EntryKind::UseRecord { .. }) && self.department.is_none() {
            return Err(EntryError::UseRecordWithoutDepartment);
        }
        Ok(())
    }

    /// The leaf bytes: the entry's canonical encoding, after [`LedgerEntry::validate`].
    pub fn leaf_bytes(&self) -> Result<Vec<u8>, EntryError> {
        self.validate()?;
        let bytes = encode_value(self)?;
        // Within the field limits an entry is far below this (asserted at compile time).
        check_len("ledger entry bytes", bytes.len(), LEDGER_ENTRY_BYTES_MAX)?;
        Ok(bytes)
    }

    /// The RFC 6962 leaf hash of [`LedgerEntry::leaf_bytes`].
    pub fn leaf_hash(&self) -> Result<Hash, EntryError> {
        Ok(merkle::leaf_hash(&self.leaf_bytes()?))
    }

    /// Decodes leaf bytes (from storage or a peer). Total: bytes over
    /// [`LEDGER_ENTRY_BYTES_MAX`], malformed, with trailing bytes, over a limit, invalid, or
    /// not the canonical encoding of what they decode to are refused.
    pub fn decode(bytes: &[u8]) -> Result<LedgerEntry, EntryError> {
        check_len("ledger entry bytes", bytes.len(), LEDGER_ENTRY_BYTES_MAX)?;
        let entry: LedgerEntry = decode_exact(bytes)?;
        if entry.leaf_bytes()? != bytes {
            return Err(EntryError::NotCanonical);
        }
        Ok(entry)
    }
}

/// Appends `entry` to a log of `size` entries: checks that its `seq` is `size` and encodes
/// it, and returns the leaf bytes and the tree nodes ([`merkle::append`]) for the shell to
/// persist together.
pub fn append_entry<S: NodeStore + ?Sized>(
    entry: &LedgerEntry,
    size: u64,
    store: &S,
) -> Result<(Vec<u8>, Vec<Node>), EntryError> {
    if entry.seq != size {
        return Err(EntryError::SeqMismatch {
            seq: entry.seq,
            size,
        });
    }
    let bytes = entry.leaf_bytes()?;
    let nodes = merkle::append(merkle::leaf_hash(&bytes), size, store)?;
    Ok((bytes, nodes))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::ledger::merkle::tests::MemStore;
    use crate::ledger::merkle::{inclusion_proof, root};
    use crate::ledger::verify::verify_inclusion;

    fn use_record() -> LedgerEntry {
        LedgerEntry {
            seq: 5,
            time_ms: 1_767_225_600_000,
            region: "110101".parse().unwrap(),
            department: Some("东城区民政局".into()),
            kind: EntryKind::UseRecord {
                scenario: "低保资格复核".into(),
                process: "按户比对社保缴纳记录".into(),
                effect: "复核 312 户,发现 4 户不符".into(),
                storage: "本局业务库,加密存储".into(),
                disposal: String::new(),
            },
            subject: "share-2026-0042".into(),
            detail: String::new(),
        }
    }

    #[test]
    fn leaf_bytes_round_trip_and_hash_as_rfc6962_leaves() {
        let e = use_record();
        let bytes = e.leaf_bytes().unwrap();
        assert_eq!(LedgerEntry::decode(&bytes).unwrap(), e);
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(&bytes);
        assert_eq!(e.leaf_hash().unwrap(), <[u8; 32]>::from(h.finalize()));
    }

    #[test]
    fn over_limit_fields_are_refused_both_ways() {
        let mut e = use_record();
        e.detail = "x".repeat(LEDGER_DETAIL_BYTES_MAX + 1);
        assert!(matches!(e.leaf_bytes(), Err(EntryError::Limit(_))));
        // Bytes a hostile peer encoded without the check are refused on decoding.
        let raw = encode_value(&e).unwrap();
        assert!(matches!(
            LedgerEntry::decode(&raw),
            Err(EntryError::Limit(_))
        ));

        let mut e = use_record();
        if let EntryKind::UseRecord { effect, .. } = &mut e.kind {
            *effect = "效".repeat(LEDGER_USE_FIELD_BYTES_MAX / 3 + 1);
        }
        assert!(matches!(e.leaf_bytes(), Err(EntryError::Limit(_))));
        let mut e = use_record();
        e.kind = EntryKind::ShareAct {
            act: "a".repeat(LEDGER_ACT_BYTES_MAX + 1),
        };
        assert!(matches!(e.leaf_bytes(), Err(EntryError::Limit(_))));
        // Oversized bytes are refused before decoding.
        let huge = vec![0u8; LEDGER_ENTRY_BYTES_MAX + 1];
        assert!(matches!(
            LedgerEntry::decode(&huge),
            Err(EntryError::Limit(_))
        ));
    }

    #[test]
    fn a_use_record_needs_its_department() {
        let mut e = use_record();
        e.department = None;
        assert_eq!(e.leaf_bytes(), Err(EntryError::UseRecordWithoutDepartment));
        let raw = encode_value(&e).unwrap();
        assert_eq!(
            LedgerEntry::decode(&raw),
            Err(EntryError::UseRecordWithoutDepartment)
        );
    }

    #[test]
    fn only_the_canonical_encoding_decodes() {
        let e = LedgerEntry {
            seq: 300, // a two-byte varint: 251 (u16 follows), 300 as u16 little-endian
            ..use_record()
        };
        let bytes = e.leaf_bytes().unwrap();
        assert_eq!(&bytes[..3], &[251, 0x2c, 0x01]);
        // The same seq as a u32 varint (252, four bytes): bincode decodes it (it does not
        // insist on the shortest form), so only the canonical check keeps one leaf per entry.
        let mut padded = vec![252, 0x2c, 0x01, 0, 0];
        padded.extend_from_slice(&bytes[3..]);
        assert_eq!(LedgerEntry::decode(&padded), Err(EntryError::NotCanonical));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(
            LedgerEntry::decode(&trailing),
            Err(EntryError::Wire(WireError::TrailingBytes { extra: 1 }))
        ));
        assert!(LedgerEntry::decode(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn entries_append_at_their_seq_and_prove_inclusion() {
        let mut store = MemStore::new();
        let mut entries = Vec::new();
        for seq in 0..5u64 {
            let e = LedgerEntry {
                seq,
                kind: EntryKind::Note,
                ..use_record()
            };
            let (_, nodes) = append_entry(&e, seq, &store).unwrap();
            store.extend(nodes.into_iter().map(|n| ((n.level, n.index), n.hash)));
            entries.push(e);
        }
        let wrong = LedgerEntry {
            seq: 7,
            ..entries[0].clone()
        };
        assert_eq!(
            append_entry(&wrong, 5, &store),
            Err(EntryError::SeqMismatch { seq: 7, size: 5 })
        );
        let r = root(5, &store).unwrap();
        for e in &entries {
            let proof = inclusion_proof(e.seq, 5, &store).unwrap();
            verify_inclusion(&e.leaf_hash().unwrap(), e.seq, 5, &proof, &r).unwrap();
        }
    }

    fn text(max: usize) -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![Just('a'), Just('数'), Just('据'), Just(' '), Just('7')],
            0..max.min(40),
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    fn kind() -> impl Strategy<Value = EntryKind> {
        prop_oneof![
            Just(EntryKind::Publish),
            Just(EntryKind::DeliveryComplete),
            Just(EntryKind::Receipt),
            Just(EntryKind::Export),
            text(LEDGER_ACT_BYTES_MAX).prop_map(|act| EntryKind::ShareAct { act }),
            Just(EntryKind::ServiceCall),
            Just(EntryKind::CatalogReview),
            (text(64), text(64), text(64), text(64), text(64)).prop_map(
                |(scenario, process, effect, storage, disposal)| EntryKind::UseRecord {
                    scenario,
                    process,
                    effect,
                    storage,
                    disposal,
                }
            ),
            Just(EntryKind::Note),
            (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(from, below, before_ms)| {
                EntryKind::Pruned {
                    from,
                    below,
                    before_ms,
                }
            }),
        ]
    }

    fn entry() -> impl Strategy<Value = LedgerEntry> {
        let region = prop_oneof![
            Just("0"),
            Just("11"),
            Just("1101"),
            Just("110101"),
            Just("110101001")
        ];
        (
            any::<u64>(),
            any::<u64>(),
            region,
            proptest::option::of(text(64)),
            kind(),
            text(64),
            text(200),
        )
            .prop_map(
                |(seq, time_ms, region, department, kind, subject, detail)| LedgerEntry {
                    seq,
                    time_ms,
                    region: region.parse().unwrap(),
                    department,
                    kind,
                    subject,
                    detail,
                },
            )
    }

    proptest! {
        /// Every valid entry round-trips through its leaf bytes, which are deterministic.
        #[test]
        fn valid_entries_round_trip(e in entry()) {
            match e.leaf_bytes() {
                Ok(bytes) => {
                    prop_assert_eq!(&LedgerEntry::decode(&bytes).unwrap(), &e);
                    prop_assert_eq!(e.leaf_bytes().unwrap(), bytes);
                }
                Err(err) => {
                    prop_assert_eq!(err, EntryError::UseRecordWithoutDepartment);
                    prop_assert!(e.department.is_none());
                }
            }
        }

        /// Decoding arbitrary bytes never panics.
        #[test]
        fn decoding_garbage_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = LedgerEntry::decode(&bytes);
        }
    }
}
