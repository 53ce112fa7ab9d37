//! The `chunks` index entry: where a group's bytes are (its content file, inline, or a
//! segment), decoded in one place for every reader of the store.

use anyhow::{Context, Result};
use backflow_protocol::manifest::CHUNK_GROUP_BYTES;

use super::segment;

/// A group's length from its `chunks` index entry.
pub(super) fn index_len(value: &[u8]) -> Result<usize> {
    index_entry(value).map(|e| e.len())
}

/// Where a group's bytes are, by its `chunks` index entry.
#[derive(Clone, Copy)]
pub(super) enum Entry<'v> {
    /// In its partition's content file, at `group × 16 KiB`.
    File { len: usize },
    /// In the entry itself (a small partition a peer delivered).
    Inline(&'v [u8]),
    /// In a segment file (a small partition published here; see [`segment`]).
    Segment {
        len: usize,
        segment: u32,
        offset: u64,
    },
}

impl Entry<'_> {
    pub(super) fn len(&self) -> usize {
        match *self {
            Entry::File { len } | Entry::Segment { len, .. } => len,
            Entry::Inline(bytes) => bytes.len(),
        }
    }
}

/// Decodes a `chunks` index entry: the group's length (u32 LE), then its bytes (inline), or
/// nothing (a content file), or — with [`segment::SEGMENT_BIT`] set in the length — a segment
/// pointer.
pub(super) fn index_entry(value: &[u8]) -> Result<Entry<'_>> {
    let (len, rest) = value.split_first_chunk::<4>().context(
        "a chunk index entry is shorter than its 4-byte length (a database from an older version?)",
    )?;
    let len = u32::from_le_bytes(*len);
    if len & segment::SEGMENT_BIT != 0 {
        let len = (len & !segment::SEGMENT_BIT) as usize;
        let pointer = (rest.len() == segment::POINTER_TAIL_BYTES)
            .then(|| segment::pointer_tail(rest))
            .flatten();
        return match pointer {
            Some((segment, offset)) if len <= CHUNK_GROUP_BYTES as usize => Ok(Entry::Segment {
                len,
                segment,
                offset,
            }),
            _ => anyhow::bail!("a chunk index entry is a malformed segment pointer"),
        };
    }
    let len = len as usize;
    match rest.len() {
        0 => Ok(Entry::File { len }),
        n if n == len => Ok(Entry::Inline(rest)),
        n => anyhow::bail!("a chunk index entry holds {n} bytes for a group of {len}"),
    }
}

/// Where a run of groups is, as the index scan finds it.
pub(super) enum Source {
    File,
    Inline(Vec<u8>),
    Segment { id: u32, base: u64 },
}

impl Source {
    pub(super) fn of(entry: Entry<'_>) -> Source {
        match entry {
            Entry::File { .. } => Source::File,
            Entry::Inline(bytes) => Source::Inline(bytes.to_vec()),
            Entry::Segment {
                segment, offset, ..
            } => Source::Segment {
                id: segment,
                base: offset,
            },
        }
    }
}
