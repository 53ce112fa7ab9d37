//! The node's compliance ledger (合规台账, Art. 29) in RocksDB: an append-only RFC 6962 log of
//! every act this node takes part in, its tree nodes, and the head the node signed last.
//!
//! The log itself — leaf encoding, tree, proofs, heads — is the protocol's
//! ([`backflow_protocol::ledger`]); this file keeps it on disk. Key layout in the `ledger` CF:
//!
//! | key                                  | value                                         |
//! |--------------------------------------|-----------------------------------------------|
//! | `e` ‖ seq (u64 BE)                   | the entry's leaf bytes (its canonical encoding) |
//! | `n` ‖ level (u8) ‖ index (u64 BE)    | a perfect subtree's hash (32 B)               |
//! | `h`                                  | the latest signed tree head                   |
//! | `a`                                  | the last of this node's heads its parent countersigned |
//! | `w` ‖ child region (8 B)             | the last head this node countersigned for a child |
//! | `m` ‖ what (1 B) ‖ id                | how much of a case or review is logged already (see `ledger_acts`) |
//! | `P`                                  | entries below this number were pruned (u64 BE; see `ledger_prune`) |
//! | `s` ‖ from (u64 BE)                  | the seals of entries `from..to` (see `ledger_seal`) |
//! | `k`                                  | the node key the seals were made with (see `ledger_seal`) |
//!
//! Invariants:
//! - an entry, its tree nodes and the act it records land in one atomic [`Batch`]
//!   ([`Ledger::append`]): the ledger never misses an act that took effect, and never records
//!   one that did not; the batch goes to the write-ahead log, which is synced before the act is
//!   acknowledged to anyone (`runtime`), as for every other write;
//! - entries are never rewritten; an entry's body is deleted only by pruning after the
//!   retention period ([`crate::ledger_prune`], `P` the pruned mark), which keeps its leaf hash
//!   and every tree node and records itself in the log;
//! - the head the node signs is stored ([`Ledger::sign_if_grown`]), so [`crate::ledger_verify::verify`] checks the
//!   entries against what the node vouched for, and names the first entry that does not fit.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context, Result};
use backflow_protocol::cert::NodeIdentity;
use backflow_protocol::ledger::entry::{
    append_entry, EntryKind, LedgerEntry, LEDGER_DEPARTMENT_BYTES_MAX, LEDGER_DETAIL_BYTES_MAX,
    LEDGER_SUBJECT_BYTES_MAX,
};
use backflow_protocol::ledger::head::{HeadUpdate, SignedTreeHead, TreeHead, WitnessedHead};
use backflow_protocol::ledger::merkle::{self, Hash, NodeStore};
use backflow_protocol::ledger::witnessing::{LedgerStorageOp, WITNESSED_CHILDREN_MAX};
use backflow_protocol::limits::cut;
use backflow_protocol::wire::{decode_exact, encode_value};
use backflow_topology::RegionCode;

use crate::store::{region_key, Batch, Store, CF_LEDGER};

pub(crate) const ENTRY_PREFIX: u8 = b'e';
pub(crate) const NODE_PREFIX: u8 = b'n';
pub(crate) const HEAD_KEY: &[u8] = b"h";
const ACKNOWLEDGED_KEY: &[u8] = b"a";
const WITNESSED_PREFIX: u8 = b'w';
/// The parent's own newest ledger head this node checked (heads down).
const PARENT_HEAD_KEY: &[u8] = b"p";
/// Prefix of the seals (`ledger_seal`), keyed by the end of the entries they cover.
pub const SEAL_PREFIX: u8 = b's';
/// Prefix of the marks `ledger_acts` keeps of what it has logged.
pub const MARK_PREFIX: u8 = b'm';
/// Entries one read of the log returns at most (`ledger show`, `ledger export` page by this).
pub const ENTRIES_PER_READ_MAX: usize = 1_000;

/// The key of entry `seq` (see the module docs).
pub fn entry_key(seq: u64) -> [u8; 9] {
    let mut key = [ENTRY_PREFIX; 9];
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

pub(crate) fn node_key(level: u8, index: u64) -> [u8; 10] {
    let mut key = [NODE_PREFIX; 10];
    key[1] = level;
    key[2..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The number after `prefix` in a key of one prefix byte and a u64 BE (a seal's end).
pub(crate) fn number_of(key: &[u8], prefix: u8) -> Result<u64> {
    match key {
        [p, n @ ..] if *p == prefix && n.len() == 8 => {
            Ok(u64::from_be_bytes(n.try_into().expect("8 bytes")))
        }
        _ => bail!(
            "a ledger key {:?} of {} bytes",
            key.first().map(|&b| b as char),
            key.len()
        ),
    }
}

pub(crate) fn seq_of(key: &[u8]) -> Result<u64> {
    match key {
        [ENTRY_PREFIX, seq @ ..] if seq.len() == 8 => {
            Ok(u64::from_be_bytes(seq.try_into().expect("8 bytes")))
        }
        _ => bail!("a ledger key that is not an entry's ({} bytes)", key.len()),
    }
}

/// What happened, as the code that saw it tells the ledger; [`Ledger::append`] numbers it,
/// names this node's region and clips its texts to the entry's limits (a record is never
/// refused for being long: what was done is logged, its description shortened).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub time_ms: u64,
    pub department: Option<String>,
    pub kind: EntryKind,
    pub subject: String,
    pub detail: String,
}

impl Record {
    pub(crate) fn into_entry(self, seq: u64, region: RegionCode) -> LedgerEntry {
        let kind = match self.kind {
            EntryKind::ShareAct { act } => EntryKind::ShareAct {
                act: cut(act, LEDGER_SUBJECT_BYTES_MAX),
            },
            other => other,
        };
        LedgerEntry {
            seq,
            time_ms: self.time_ms,
            region,
            department: self.department.map(|d| cut(d, LEDGER_DEPARTMENT_BYTES_MAX)),
            kind,
            subject: cut(self.subject, LEDGER_SUBJECT_BYTES_MAX),
            detail: cut(self.detail, LEDGER_DETAIL_BYTES_MAX),
        }
    }
}

/// The tree nodes as stored. A read error counts as a missing node (the protocol's readers
/// turn that into [`merkle::MerkleError::MissingNode`], never a panic).
pub(crate) struct StoredNodes<'s>(pub(crate) &'s Store);

impl NodeStore for StoredNodes<'_> {
    fn get(&self, level: u8, index: u64) -> Option<Hash> {
        let value = self.0.get(CF_LEDGER, &node_key(level, index)).ok()??;
        value.as_slice().try_into().ok()
    }
}

/// The stored nodes plus those of entries appended in the batch being built.
struct Pending<'s> {
    stored: StoredNodes<'s>,
    new: HashMap<(u8, u64), Hash>,
}

impl NodeStore for Pending<'_> {
    fn get(&self, level: u8, index: u64) -> Option<Hash> {
        self.new
            .get(&(level, index))
            .copied()
            .or_else(|| self.stored.get(level, index))
    }
}

/// The ledger's state in the running node: how many entries there are and the head it signed
/// last. Everything else is read from the store when asked for.
pub struct Ledger {
    region: RegionCode,
    size: u64,
    /// The last head signed and stored.
    signed: Option<SignedTreeHead>,
    /// Entries from here on are not sealed yet ([`crate::ledger_seal`]).
    sealed_to: u64,
    /// The leaf hash and department of each entry from `sealed_to` on, while all of them are
    /// here (appended in this run, at most [`UNSEALED_HELD_MAX`]); else sealing reads them.
    unsealed: Vec<(Hash, Option<String>)>,
    unsealed_whole: bool,
}

/// Unsealed entries held in memory at most (four seals' worth: a beat's appends at ~100 k/s
/// fit; beyond, sealing reads them back from the store).
const UNSEALED_HELD_MAX: usize = 4 * backflow_protocol::ledger::seal::SEAL_ENTRIES_MAX as usize;

impl Ledger {
    /// Opens the log at start. Refuses a log whose tree cannot give its root (nodes missing:
    /// lost or edited storage) with an error that says how to find the damage — appending on
    /// top of it would extend a log no one can verify.
    pub fn open(store: &Store, region: RegionCode) -> Result<Ledger> {
        let size = stored_size(store)?;
        merkle::root(size, &StoredNodes(store)).map_err(|e| {
            anyhow!(
                "the compliance ledger (合规台账) of {size} entries is damaged ({e}): the node \
                 does not extend a log it cannot prove; restore the data directory from its \
                 backup"
            )
        })?;
        let signed = stored_head(store)?;
        let sealed_to = sealed_to(store)?;
        Ok(Ledger {
            region,
            size,
            signed,
            sealed_to,
            unsealed: Vec::new(),
            unsealed_whole: sealed_to == size,
        })
    }

    pub fn region(&self) -> RegionCode {
        self.region
    }

    pub fn sealed_to(&self) -> u64 {
        self.sealed_to
    }

    /// The leaf hash and department of entries `from..to` (`from` is [`Ledger::sealed_to`]).
    pub(crate) fn unsealed(
        &self,
        store: &Store,
        from: u64,
        to: u64,
    ) -> Result<Vec<(Hash, Option<String>)>> {
        debug_assert_eq!(from, self.sealed_to);
        if self.unsealed_whole && (to - from) as usize <= self.unsealed.len() {
            return Ok(self.unsealed[..(to - from) as usize].to_vec());
        }
        Ok(leaves_in(store, from, to)?
            .into_iter()
            .map(|(_, leaf, department)| (leaf, department))
            .collect())
    }

    /// Entries below `to` are sealed.
    pub(crate) fn mark_sealed(&mut self, to: u64) {
        assert!(
            to > self.sealed_to && to <= self.size,
            "seals advance within the log"
        );
        let n = ((to - self.sealed_to) as usize).min(self.unsealed.len());
        self.unsealed.drain(..n);
        self.sealed_to = to;
        if self.sealed_to == self.size {
            self.unsealed.clear();
            self.unsealed_whole = true;
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The last head this node signed (and stored).
    pub fn signed_head(&self) -> Option<&SignedTreeHead> {
        self.signed.as_ref()
    }

    /// Appends `records` in order, written together with `batch` — the writes of the act they
    /// record — in one atomic write. Nothing is appended if the write fails.
    pub fn append(
        &mut self,
        store: &Store,
        mut batch: Batch<'_>,
        records: impl IntoIterator<Item = Record>,
    ) -> Result<()> {
        let mut nodes = Pending {
            stored: StoredNodes(store),
            new: HashMap::new(),
        };
        let mut size = self.size;
        let mut records = records.into_iter().peekable();
        if records.peek().is_none() && batch.is_empty() {
            return Ok(());
        }
        let mut appended = Vec::new();
        for record in records {
            let entry = record.into_entry(size, self.region);
            let (bytes, new) = append_entry(&entry, size, &nodes)
                .map_err(|e| anyhow!("ledger entry {size}: {e}"))?;
            batch.put(CF_LEDGER, &entry_key(size), &bytes);
            // `new` starts with the leaf itself.
            appended.push((new[0].hash, entry.department));
            for n in new {
                batch.put(CF_LEDGER, &node_key(n.level, n.index), &n.hash);
                nodes.new.insert((n.level, n.index), n.hash);
            }
            size += 1;
        }
        store.write(batch)?;
        self.size = size;
        if self.unsealed_whole && self.unsealed.len() + appended.len() <= UNSEALED_HELD_MAX {
            self.unsealed.extend(appended);
        } else {
            self.unsealed.clear();
            self.unsealed_whole = false;
        }
        Ok(())
    }

    /// The log's head now (unsigned).
    pub fn head(&self, store: &Store, now_ms: u64) -> Result<TreeHead> {
        let root = merkle::root(self.size, &StoredNodes(store))
            .map_err(|e| anyhow!("ledger root: {e}"))?;
        Ok(TreeHead {
            region: self.region,
            size: self.size,
            root,
            time_ms: now_ms,
        })
    }

    /// Signs and stores a new head if entries were appended since the last one; the caller
    /// syncs the write-ahead log before it tells anyone (as for every write). Signing costs
    /// ~20 µs, so the runtime does it on its beat, not per entry.
    pub fn sign_if_grown(
        &mut self,
        store: &Store,
        identity: &NodeIdentity,
        now_ms: u64,
    ) -> Result<Option<SignedTreeHead>> {
        if self.size == self.signed.as_ref().map_or(0, |h| h.head.size) {
            return Ok(None);
        }
        let signed = SignedTreeHead::sign(self.head(store, now_ms)?, identity);
        let value = encode_value(&signed).map_err(|e| anyhow!("{e}"))?;
        store.put(CF_LEDGER, HEAD_KEY, &value)?;
        self.signed = Some(signed.clone());
        Ok(Some(signed))
    }
}

/// The pruned mark: entries below it were pruned after their retention period (u64 BE;
/// absent: none; see [`crate::ledger_prune`]).
pub const PRUNED_KEY: &[u8] = b"P";

/// How many entries from the start of the log were pruned.
pub fn pruned_below(store: &Store) -> Result<u64> {
    match store.get(CF_LEDGER, PRUNED_KEY)? {
        None => Ok(0),
        Some(v) => {
            let bytes: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| anyhow!("the ledger's pruned mark is {} bytes, not 8", v.len()))?;
            Ok(u64::from_be_bytes(bytes))
        }
    }
}

/// How many entries the stored log holds (one past the last entry's number).
pub fn stored_size(store: &Store) -> Result<u64> {
    let last = match store.last_key_with_prefix(CF_LEDGER, &[ENTRY_PREFIX])? {
        Some(key) => seq_of(&key)? + 1,
        None => 0,
    };
    // Pruning always leaves its own record after what it pruned; a mark past the last entry
    // still counts its entries (their leaves are in the tree).
    Ok(last.max(pruned_below(store)?))
}

/// One past the last sealed entry (`ledger_seal`): where sealing goes on — the last seal
/// batch's end, never below the pruned mark.
pub fn sealed_to(store: &Store) -> Result<u64> {
    let last = match store.last_key_with_prefix(CF_LEDGER, &[SEAL_PREFIX])? {
        Some(key) => number_of(&key, SEAL_PREFIX)?,
        None => 0,
    };
    Ok(last.max(pruned_below(store)?))
}

/// Puts the witnessing state the protocol asks to persist into `batch`.
pub fn put_witnessing(batch: &mut Batch<'_>, op: &LedgerStorageOp) -> Result<()> {
    let (key, head) = match op {
        LedgerStorageOp::PutWitnessed { child, head } => (
            [&[WITNESSED_PREFIX][..], &region_key(*child)].concat(),
            head,
        ),
        LedgerStorageOp::PutAcknowledged(head) => (ACKNOWLEDGED_KEY.to_vec(), head),
        LedgerStorageOp::PutParentHead(head) => {
            let value = encode_value(head).map_err(|e| anyhow!("{e}"))?;
            batch.put(CF_LEDGER, PARENT_HEAD_KEY, &value);
            return Ok(());
        }
    };
    batch.put(
        CF_LEDGER,
        &key,
        &encode_value(head).map_err(|e| anyhow!("{e}"))?,
    );
    Ok(())
}

/// Heads witnessed per child, and this node's last acknowledged head.
pub type SavedWitnessing = (Vec<(RegionCode, WitnessedHead)>, Option<WitnessedHead>);

/// The witnessing state as persisted: heads witnessed per child (at most
/// [`WITNESSED_CHILDREN_MAX`]) and this node's last acknowledged head.
pub fn load_witnessing(store: &Store) -> Result<SavedWitnessing> {
    let decode = |v: &[u8]| -> Result<WitnessedHead> {
        decode_exact(v).map_err(|e| anyhow!("a stored witnessed ledger head: {e}"))
    };
    let mut witnessed = Vec::new();
    for (_, v) in store.scan_prefix(CF_LEDGER, &[WITNESSED_PREFIX], WITNESSED_CHILDREN_MAX)? {
        let head = decode(&v)?;
        witnessed.push((head.head.head.region, head));
    }
    let acknowledged = store
        .get(CF_LEDGER, ACKNOWLEDGED_KEY)?
        .map(|v| decode(&v))
        .transpose()?;
    Ok((witnessed, acknowledged))
}

/// The parent's own newest head this node checked, as persisted.
pub fn load_parent_head(store: &Store) -> Result<Option<SignedTreeHead>> {
    store
        .get(CF_LEDGER, PARENT_HEAD_KEY)?
        .map(|v| decode_exact(&v).map_err(|e| anyhow!("the stored parent's ledger head: {e}")))
        .transpose()
}

/// The update for the parent: `head` with the consistency proof from the last head the
/// parent countersigned (`acknowledged_size` entries; 0 before the first).
pub fn head_update(
    store: &Store,
    head: SignedTreeHead,
    acknowledged_size: u64,
) -> Result<HeadUpdate> {
    let from = acknowledged_size.min(head.head.size);
    let consistency = merkle::consistency_proof(from, head.head.size, &StoredNodes(store))
        .map_err(|e| anyhow!("ledger consistency proof: {e}"))?;
    Ok(HeadUpdate { head, consistency })
}

/// The head the node signed last, if it signed one.
pub fn stored_head(store: &Store) -> Result<Option<SignedTreeHead>> {
    store
        .get(CF_LEDGER, HEAD_KEY)?
        .map(|v| decode_exact(&v).map_err(|e| anyhow!("the stored ledger head: {e}")))
        .transpose()
}

/// Up to `limit` entries from `from` on, decoded; an entry that does not decode is an error
/// naming it (`ledger verify` says more).
pub fn entries(store: &Store, from: u64, limit: usize) -> Result<Vec<LedgerEntry>> {
    let limit = limit.min(ENTRIES_PER_READ_MAX);
    let mut out = Vec::with_capacity(limit.min(64));
    for item in store.iter_from(CF_LEDGER, &entry_key(from)) {
        let (key, value) = item?;
        if out.len() >= limit || key.first() != Some(&ENTRY_PREFIX) {
            break;
        }
        let seq = seq_of(&key)?;
        let entry = LedgerEntry::decode(&value)
            .with_context(|| format!("ledger entry {seq} does not decode"))?;
        out.push(entry);
    }
    Ok(out)
}

/// Calls `f` with each entry `from..to` in order: its position, logged bytes and decoded
/// entry. An entry missing or not decoding is an error naming it (`ledger verify` says more).
pub fn each_entry(
    store: &Store,
    from: u64,
    to: u64,
    mut f: impl FnMut(u64, &[u8], LedgerEntry) -> Result<()>,
) -> Result<()> {
    let mut at = from;
    for item in store.iter_from(CF_LEDGER, &entry_key(from)) {
        if at >= to {
            break;
        }
        let (key, value) = item?;
        if key.first() != Some(&ENTRY_PREFIX) || seq_of(&key)? != at {
            bail!("ledger entry {at} is missing: `backflow ledger verify` names the damage");
        }
        let entry = LedgerEntry::decode(&value)
            .with_context(|| format!("ledger entry {at} does not decode"))?;
        f(at, &value, entry)?;
        at += 1;
    }
    if at < to {
        bail!("ledger entry {at} is missing: `backflow ledger verify` names the damage");
    }
    Ok(())
}

/// Each entry `from..to` as sealing needs it: position, leaf hash and department.
pub fn leaves_in(store: &Store, from: u64, to: u64) -> Result<Vec<(u64, Hash, Option<String>)>> {
    let mut out = Vec::with_capacity((to - from).min(65_536) as usize);
    each_entry(store, from, to, |at, bytes, entry| {
        out.push((at, merkle::leaf_hash(bytes), entry.department));
        Ok(())
    })?;
    Ok(out)
}

/// What [`crate::ledger_verify::verify`] found: the whole log fits its tree and the head the node signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub entries: u64,
    pub root: Hash,
    /// The signed head the entries were checked against (its size, when it was signed).
    pub head_size: Option<u64>,
    pub head_time_ms: Option<u64>,
    /// Entries whose seal was checked (the rest: pruned, or the unsealed tail of one beat).
    pub sealed: u64,
    /// Pruned entries found in the archive files (`ledger_archive`), each checked against
    /// the tree.
    pub archived: u64,
}

/// Where [`crate::ledger_verify::verify`] found the log does not hold: the first bad entry, if one can be named, and
/// what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub entry: Option<u64>,
    pub problem: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.entry {
            Some(seq) => write!(f, "entry {seq}: {}", self.problem),
            None => f.write_str(&self.problem),
        }
    }
}

impl std::error::Error for Damage {}

pub(crate) fn damage(entry: impl Into<Option<u64>>, problem: impl Into<String>) -> Damage {
    Damage {
        entry: entry.into(),
        problem: problem.into(),
    }
}
