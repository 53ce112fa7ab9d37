//! A run of a partition's stored groups, open for reading: from its content file, a segment,
//! or copied out of the index (see [`super::Store::open_groups`]).

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

/// A run of stored groups of one partition, open for reading.
pub struct StoredGroups {
    pub(super) data: GroupData,
    /// The content bytes the index vouches for, as partition offsets.
    pub(super) bytes: Range<u64>,
}

/// Where a run's bytes are: its partition's content file, or (a small partition) copied out
/// of the index, from the run's first byte.
pub(super) enum GroupData {
    File {
        file: File,
        path: PathBuf,
    },
    Inline(Vec<u8>),
    /// A segment, the run's first byte at file offset `base`.
    Segment {
        file: Arc<File>,
        segment: u32,
        base: u64,
    },
}

impl StoredGroups {
    /// The segment the run is stored in, if it is in one.
    pub fn segment(&self) -> Option<u32> {
        match self.data {
            GroupData::Segment { segment, .. } => Some(segment),
            _ => None,
        }
    }

    /// Where the run lies in its segment (`segment`, file offsets), if it is in one: runs
    /// that lie back to back are read together ([`StoredGroups::read_segment_at`]).
    pub fn segment_span(&self) -> Option<(u32, Range<u64>)> {
        match self.data {
            GroupData::Segment { segment, base, .. } => {
                Some((segment, base..base + (self.bytes.end - self.bytes.start)))
            }
            _ => None,
        }
    }

    /// Fills `buf` from file offset `at` of the run's segment: the bytes of several adjacent
    /// runs in one read (`chunks::serve_frame`). Not a run's own bounds: the caller checks
    /// what it reads against each run's [`StoredGroups::segment_span`].
    pub fn read_segment_at(&self, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
        match &self.data {
            GroupData::Segment { file, segment, .. } => file
                .read_exact_at(buf, at)
                .map_err(|e| std::io::Error::new(e.kind(), format!("segment {segment:08x}: {e}"))),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the run is not in a segment",
            )),
        }
    }

    /// Fills `buf` with the content at partition offset `offset`, which must lie within the
    /// opened groups.
    pub fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if offset < self.bytes.start || end.is_none_or(|end| end > self.bytes.end) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "read of {} bytes at {offset} outside the opened groups {:?}",
                    buf.len(),
                    self.bytes
                ),
            ));
        }
        match &self.data {
            GroupData::File { file, path } => file
                .read_exact_at(buf, offset)
                .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
            GroupData::Inline(bytes) => {
                // Within `self.bytes`, checked above, so within `bytes`.
                let at = (offset - self.bytes.start) as usize;
                buf.copy_from_slice(&bytes[at..at + buf.len()]);
                Ok(())
            }
            GroupData::Segment {
                file,
                segment,
                base,
            } => file
                .read_exact_at(buf, base + (offset - self.bytes.start))
                .map_err(|e| std::io::Error::new(e.kind(), format!("segment {segment:08x}: {e}"))),
        }
    }
}
