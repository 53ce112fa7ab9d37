//! [`AlignedBuf`]: the pooled, block-aligned byte buffer that content is decoded into and
//! written from with `O_DIRECT` (see `store`).

/// `O_DIRECT` buffers, offsets and lengths must be multiples of the device's logical block;
/// 4 KiB covers every common device. 16 KiB groups are aligned; a partition's short last
/// group is padded with zeros in its file (never read: the index holds its real length).
pub(crate) const DIRECT_ALIGN_BYTES: usize = 4096;

/// A byte buffer whose usable part starts on a `DIRECT_ALIGN_BYTES` boundary (safe code:
/// over-allocate and start at the first aligned address; the Vec never grows). Its memory is
/// reused per thread, so only bytes written into it are ever read back.
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
    cap: usize,
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.raw.len() <= POOLED_BUF_BYTES_MAX + DIRECT_ALIGN_BYTES {
            let raw = std::mem::take(&mut self.raw);
            BUF_POOL.with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < POOLED_BUFS_PER_THREAD_MAX {
                    p.push(raw);
                }
            });
        }
    }
}

/// Buffers of at most this size are kept for reuse per thread: every served or received frame
/// needs one (≤ 1 MiB), and allocating it zeroed each time cost ~5 % of a transfer's CPU.
const POOLED_BUF_BYTES_MAX: usize = 1024 * 1024;
/// Buffers kept per thread (blocking-pool threads each handle one frame at a time).
const POOLED_BUFS_PER_THREAD_MAX: usize = 4;

thread_local! {
    static BUF_POOL: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl AlignedBuf {
    pub fn with_capacity(bytes: usize) -> AlignedBuf {
        let cap = bytes.next_multiple_of(DIRECT_ALIGN_BYTES);
        let want = cap + DIRECT_ALIGN_BYTES;
        let pooled = if want <= POOLED_BUF_BYTES_MAX + DIRECT_ALIGN_BYTES {
            BUF_POOL.with(|p| {
                let mut p = p.borrow_mut();
                let i = p.iter().position(|b| b.len() >= want)?;
                Some(p.swap_remove(i))
            })
        } else {
            None
        };
        // A reused buffer holds old bytes: harmless, every byte is written before it is read
        // (`extend_from_slice`) and padding is zeroed in `padded`.
        let raw = pooled.unwrap_or_else(|| vec![0u8; want]);
        let start = raw.as_ptr().align_offset(DIRECT_ALIGN_BYTES);
        // Capacity as asked (a reused buffer may be larger).
        AlignedBuf {
            raw,
            start,
            len: 0,
            cap,
        }
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Keeps the first `len` bytes (no-op if it holds fewer).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Appends bytes; panics past the capacity (callers size the buffer for what they put).
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        assert!(
            self.len + data.len() <= self.capacity(),
            "AlignedBuf overflow"
        );
        let at = self.start + self.len;
        self.raw[at..at + data.len()].copy_from_slice(data);
        self.len += data.len();
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    /// The content zero-padded to the alignment (what an `O_DIRECT` write needs).
    pub(crate) fn padded(&mut self) -> &[u8] {
        let end = self.len.next_multiple_of(DIRECT_ALIGN_BYTES);
        self.raw[self.start + self.len..self.start + end].fill(0);
        &self.raw[self.start..self.start + end]
    }
}
