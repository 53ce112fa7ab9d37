//! Pruning the compliance ledger (合规台账) after its retention period (Art. 29: 有关记录保存
//! 期限不少于3年). A pruned entry's body goes; its leaf hash and every tree node stay, so every
//! head the node signed, every inclusion and consistency proof and the parent's witness stay
//! valid, and `verify` still rebuilds the whole tree from the leaves.
//!
//! - Only a prefix of the log, only entries older than the retention period at the time of
//!   pruning (never less than [`RETENTION_MS_MIN`]: `tuning.ledger_retention_days`, validated),
//!   and only entries a signed head already covers. The prefix stops at the first entry still
//!   within its period, even if later ones are older (an act's time is when it was signed).
//! - Each pruning is recorded in the log itself ([`EntryKind::Pruned`], in the same atomic write
//!   as the deletions and the mark `P`), so the log says what went and when; `verify` checks
//!   that the mark equals the last such record, naming entries removed any other way.
//! - Only whole seal batches ([`crate::ledger_seal`]): the mark is a batch boundary, and the
//!   pruned entries' seals go with them, so every entry kept is still checked under its seal.
//! - Archived before they go ([`crate::ledger_archive`]): the entries are written to a file
//!   of their own in the data directory, synced, before the deletions are.
//! - At most [`PRUNE_ENTRIES_MAX`] entries per pruning (one bounded write); the next day's
//!   pruning continues.

use anyhow::{bail, Context, Result};
use backflow_protocol::ledger::entry::{EntryKind, LedgerEntry};
use backflow_protocol::ledger::RETENTION_MS_MIN;

use crate::ledger::{
    entry_key, number_of, pruned_below, seq_of, Ledger, Record, ENTRY_PREFIX, PRUNED_KEY,
    SEAL_PREFIX,
};
use crate::store::{Store, CF_LEDGER};

/// Entries one pruning removes at most.
pub const PRUNE_ENTRIES_MAX: u64 = 100_000;

/// What one pruning removed: entries `from..below`, each recorded before `before_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pruning {
    pub from: u64,
    pub below: u64,
    pub before_ms: u64,
}

/// Prunes the entries of `ledger` older than `retention_ms` at `now_ms` (see the module
/// docs); `None` if none is due. The deletions, the mark and the entry recording them are one
/// atomic write; the caller syncs it like any other.
pub fn prune(
    store: &Store,
    ledger: &mut Ledger,
    now_ms: u64,
    retention_ms: u64,
) -> Result<Option<Pruning>> {
    if retention_ms < RETENTION_MS_MIN {
        bail!(
            "a ledger retention of {} days is below Art. 29's three years (保存期限不少于3年)",
            retention_ms / backflow_protocol::time::DAY_MS
        );
    }
    let before_ms = now_ms.saturating_sub(retention_ms);
    // Only what a signed head covers: the head vouches for the leaves that stay.
    let covered = ledger.signed_head().map_or(0, |h| h.head.size);
    let from = pruned_below(store)?;
    let mut below = from;
    for item in store.iter_from(CF_LEDGER, &entry_key(from)) {
        let (key, value) = item?;
        if key.first() != Some(&ENTRY_PREFIX)
            || below >= covered
            || below - from >= PRUNE_ENTRIES_MAX
        {
            break;
        }
        let seq = seq_of(&key)?;
        if seq != below {
            bail!("ledger entry {below} is missing: `backflow ledger verify` names the damage");
        }
        let entry = LedgerEntry::decode(&value)
            .with_context(|| format!("ledger entry {seq} does not decode"))?;
        if entry.time_ms >= before_ms {
            break;
        }
        below += 1;
    }
    // Whole seal batches only: the unsealed tail stays, and so does a batch reaching past
    // `below` (its other entries need its tree whole to be checked).
    let mut below = below.min(ledger.sealed_to());
    if let Some(b) = crate::ledger_seal::batch_of(store, below)? {
        below = below.min(b.from.max(from));
    }
    if below <= from {
        return Ok(None);
    }
    // Kept before it goes: the archive file is durable before the deletions are written.
    let archived = crate::ledger_archive::archive(store, from, below)?;
    let mut batch = store.batch();
    for seq in from..below {
        batch.delete(CF_LEDGER, &entry_key(seq));
    }
    // The seals of the pruned entries: the batches ending at or below `below`.
    for item in store.iter_from(CF_LEDGER, &crate::ledger_seal::seal_key(from + 1)) {
        let (key, _) = item?;
        if key.first() != Some(&SEAL_PREFIX) || number_of(&key, SEAL_PREFIX)? > below {
            break;
        }
        batch.delete(CF_LEDGER, &key);
    }
    batch.put(CF_LEDGER, PRUNED_KEY, &below.to_be_bytes());
    let record = Record {
        time_ms: now_ms,
        department: None,
        kind: EntryKind::Pruned {
            from,
            below,
            before_ms,
        },
        subject: "ledger pruned (台账到期清理)".into(),
        detail: format!(
            "entries {from}–{} pruned: each recorded before {}, kept {} days or more (Art. 29: \
             保存期限不少于3年), archived in {}; their hashes stay in the tree",
            below - 1,
            crate::share_api::time_text(backflow_protocol::time::UnixMs(before_ms)),
            retention_ms / backflow_protocol::time::DAY_MS,
            archived
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
    };
    ledger.append(store, batch, [record])?;
    Ok(Some(Pruning {
        from,
        below,
        before_ms,
    }))
}
