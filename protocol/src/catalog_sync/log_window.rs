//! The part of a node's catalog log held in memory: the entries it has still to send upstream,
//! at most [`LOG_WINDOW_BYTES_MAX`] of them. The whole log is the shell's (persisted from
//! [`super::CatalogStorageOp::AppendLog`]); what is not in the window is read back from it
//! ([`super::CatalogStorageOp::ReadLog`]) when the upstream needs it — after a restart, or
//! when a parent that lost its state asks for everything again. National has no upstream and
//! holds nothing here, whatever the size of the country's catalog.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::catalog_sync::BATCH_BYTES_MAX;
use crate::limits::UPDATES_PER_BATCH_MAX;

/// Bytes of log entries held in memory for sending: a few batches ahead of the upstream's
/// watermark. Entries beyond it are read back from storage when their turn comes.
pub const LOG_WINDOW_BYTES_MAX: usize = 4 * BATCH_BYTES_MAX;

#[derive(Clone, Debug)]
struct Held<T> {
    update: Arc<T>,
    bytes: usize,
}

/// Log entries `first, first + 1, …` in order (signed catalog versions; generic only so that
/// its tests need no signatures).
#[derive(Clone, Debug)]
pub(crate) struct LogWindow<T> {
    first: u64,
    entries: VecDeque<Held<T>>,
    bytes: usize,
}

impl<T> LogWindow<T> {
    /// An empty window whose next entry would be `next`.
    pub(crate) fn new(next: u64) -> LogWindow<T> {
        LogWindow {
            first: next,
            entries: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// One past the last index held.
    fn end(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// Holds log entry `index` if it extends the window and fits; otherwise it stays in
    /// storage only.
    pub(crate) fn push(&mut self, index: u64, update: Arc<T>, bytes: usize) {
        if self.entries.is_empty() {
            self.first = index;
        }
        if index != self.end() || self.bytes + bytes > LOG_WINDOW_BYTES_MAX {
            return;
        }
        self.bytes += bytes;
        self.entries.push_back(Held { update, bytes });
    }

    /// Forgets entries at or below `acked` (the upstream holds them).
    pub(crate) fn trim_through(&mut self, acked: u64) {
        while self.first <= acked {
            let Some(e) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= e.bytes;
            self.first += 1;
        }
    }

    /// Replaces what is held with entries read back from storage, `from` on.
    pub(crate) fn refill(&mut self, from: u64, updates: Vec<(Arc<T>, usize)>) {
        self.entries.clear();
        self.bytes = 0;
        self.first = from;
        for (update, bytes) in updates {
            if self.bytes + bytes > LOG_WINDOW_BYTES_MAX && !self.entries.is_empty() {
                break;
            }
            self.bytes += bytes;
            self.entries.push_back(Held { update, bytes });
        }
    }

    /// The next batch to send, entries `from` on, if the window holds `from`.
    pub(crate) fn batch(&self, from: u64) -> Option<Vec<Arc<T>>> {
        if from < self.first || from >= self.end() {
            return None;
        }
        let mut bytes = 0;
        let batch: Vec<_> = self
            .entries
            .iter()
            .skip((from - self.first) as usize)
            .take(UPDATES_PER_BATCH_MAX)
            .take_while(|e| {
                bytes += e.bytes;
                bytes <= BATCH_BYTES_MAX
            })
            .map(|e| Arc::clone(&e.update))
            .collect();
        // A single update always fits a batch (CATALOG_UPDATE_BYTES_MAX < BATCH_BYTES_MAX).
        (!batch.is_empty()).then_some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_holds_only_contiguous_entries_within_its_bytes() {
        let mut w = LogWindow::new(1);
        let u = Arc::new(0u32);
        w.push(1, Arc::clone(&u), 10);
        w.push(3, Arc::clone(&u), 10); // not contiguous: storage only
        assert_eq!(w.end(), 2);
        w.push(2, Arc::clone(&u), LOG_WINDOW_BYTES_MAX); // does not fit
        assert_eq!(w.end(), 2);
        assert!(w.batch(1).is_some());
        assert!(w.batch(2).is_none());
        w.trim_through(1);
        assert!(w.batch(1).is_none());
        // Empty: the next push starts it wherever the log is.
        w.push(7, Arc::clone(&u), 10);
        assert_eq!(w.batch(7).map(|b| b.len()), Some(1));
        w.refill(2, vec![(Arc::clone(&u), 10), (u, 10)]);
        assert_eq!(w.batch(2).map(|b| b.len()), Some(2));
        assert_eq!(w.batch(3).map(|b| b.len()), Some(1));
    }
}
