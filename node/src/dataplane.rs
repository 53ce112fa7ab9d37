//! The data plane: chunk frames on one stream per peer (`/backflow/chunks/1`), apart from the
//! control plane's request-response frames. A writer task per peer sends served frames, a
//! reader task per inbound stream decodes received ones, and the heavy work — reading and
//! encoding groups to serve, verifying and storing received runs — runs on the blocking pool.
//! Results come back to the event loop as [`Work`]; the loop only routes and decides.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use backflow_protocol::endpoint::{ChunkPlan, RunVerdict};
use backflow_protocol::manifest::{ChunkFrame, ChunkPart, Hash, PartitionEntry};
use backflow_protocol::return_flow::ServePart;
use backflow_protocol::wire::{decode_chunk_frame, encode_chunk_frame_head, ChunkFrameView};
use backflow_topology::RegionCode;
use futures::StreamExt;
use libp2p::PeerId;
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, warn};

use crate::chunks::{frame_buf, receive_frame, recycle_frame_buf, serve_frame, OutboardCache};
use crate::net::{read_frame_into, write_frame_parts, CHUNK_PROTOCOL};
use crate::store::Store;

/// Chunk frames queued per peer's writer. A frame that finds the queue full is dropped (the
/// receiver asks for its groups again after `retry_ms`): a receiver's window is 16 frames per
/// transfer (1,024 groups), so an honest peer never fills it, and a peer that stops reading
/// cannot make serving wait — blocked serving tasks used to hold threads of the blocking pool.
pub const CHUNK_FRAMES_QUEUED_MAX: usize = 64;
/// Frames being read and encoded for one peer at once; beyond this, its wants are not served
/// (it asks again). Bounds the reads one peer's wants can cause: each frame reads ≤ 1 MiB.
pub const SERVE_FRAMES_IN_FLIGHT_PER_PEER_MAX: usize = 32;
/// Frames being read and encoded at once for all peers together; the rest wait their turn
/// in the order their wants came (the semaphore is fair). Why a node-wide bound: a national
/// node answering 31 provinces could otherwise start 31 × 32 frames (~1 GB of reads) on the
/// blocking pool at once, ~50 threads over 2 cores. Measured (session 31): the return flow's
/// time unchanged, the single-partition transfer 13–15 % faster, and the reads one node does
/// for its peers now bounded by 8 MiB whatever their number.
/// A slot is given back when the frame is queued or dropped, never when it is written, so a
/// peer that stops reading cannot hold one (see [`CHUNK_FRAMES_QUEUED_MAX`]).
pub const SERVE_FRAMES_ENCODING_MAX: usize = 8;

/// The node-wide slots for frames being encoded ([`SERVE_FRAMES_ENCODING_MAX`]).
#[derive(Clone)]
pub struct EncodingSlots(Arc<Semaphore>);

impl Default for EncodingSlots {
    fn default() -> EncodingSlots {
        EncodingSlots(Arc::new(Semaphore::new(SERVE_FRAMES_ENCODING_MAX)))
    }
}

/// One peer's side of serving: its writer's queue, and its frames being encoded.
#[derive(Clone)]
pub struct PeerOut {
    pub queue: mpsc::Sender<ChunkOut>,
    pub serving: Arc<AtomicUsize>,
}

/// A chunk frame queued for a data-plane stream: its encoded head, then its payload (written
/// from this buffer, not copied into a frame).
pub struct ChunkOut {
    head: Vec<u8>,
    payload: Vec<u8>,
}

/// A chunk frame as received: its fields, and the buffer it was read into with the payload
/// left in place (`buf[frame.payload]`), so a megabyte is not copied out of it.
pub struct ReceivedChunk {
    pub frame: ChunkFrameView,
    pub buf: Vec<u8>,
}

impl From<ChunkFrame> for ReceivedChunk {
    fn from(frame: ChunkFrame) -> ReceivedChunk {
        let (frame, buf) = frame.into();
        ReceivedChunk { frame, buf }
    }
}

/// What the data plane hands back to the event loop.
pub enum Work {
    /// A chunk frame read and decoded from a peer's data-plane stream.
    Chunk { peer: PeerId, chunk: ReceivedChunk },
    /// The verdict on every planned run of one received chunk frame (stored ones are durable).
    Verdict {
        from: RegionCode,
        manifest: Hash,
        runs: Vec<(RegionCode, Range<u64>, RunVerdict)>,
    },
    /// Storage or encoding failed (not the peer's fault).
    Failed(String),
    /// Stored content did not verify when it was served: to be dropped and fetched again.
    Damaged(crate::chunks::Damaged),
    /// This node's index answered a catalog search the protocol asked it for.
    SearchAnswered {
        id: u64,
        result: Result<
            backflow_protocol::catalog_search::SearchResults,
            backflow_protocol::catalog_search::SearchRefusal,
        >,
    },
    /// This node's store answered a service interface call the protocol asked it for.
    ServiceAnswered {
        id: u64,
        result: Result<
            backflow_protocol::service_interface::LookupAnswer,
            backflow_protocol::service_interface::LookupRefusal,
        >,
    },
}

/// Inbound data-plane streams one admitted peer may hold open at once. Its writer keeps one
/// open (and opens another after an error while the old one closes); a few more are slack.
pub const INBOUND_STREAMS_PER_PEER_MAX: usize = 4;

/// The peers the endpoint admitted, shared with the accept task, with the inbound data-plane
/// streams each holds open. A stream from any other peer is closed before a byte of it is read
/// (a connection that has not passed admission, or was refused, cannot make this node buffer
/// and decode megabyte frames), and an admitted peer gets at most
/// [`INBOUND_STREAMS_PER_PEER_MAX`].
#[derive(Clone, Default)]
pub struct Admitted(Arc<Mutex<HashMap<PeerId, usize>>>);

impl Admitted {
    pub fn admit(&self, peer: PeerId) {
        self.lock().entry(peer).or_insert(0);
    }

    pub fn remove(&self, peer: &PeerId) {
        self.lock().remove(peer);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, usize>> {
        // A panic elsewhere while holding it leaves a plain map behind: keep using it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for one more inbound stream of `peer`, or `None` (not admitted, or at its limit).
    fn open(&self, peer: PeerId) -> Option<StreamSlot> {
        let mut map = self.lock();
        let open = map.get_mut(&peer)?;
        if *open >= INBOUND_STREAMS_PER_PEER_MAX {
            return None;
        }
        *open += 1;
        Some(StreamSlot {
            admitted: self.clone(),
            peer,
        })
    }
}

/// One inbound stream counted against its peer; given back when the reader ends.
struct StreamSlot {
    admitted: Admitted,
    peer: PeerId,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Some(open) = self.admitted.lock().get_mut(&self.peer) {
            *open = open.saturating_sub(1);
        }
    }
}

/// Accepts inbound data-plane streams of admitted peers, one reader task each; closes the
/// others unread (see [`Admitted`]).
pub async fn accept_chunks(
    mut incoming: libp2p_stream::IncomingStreams,
    work: mpsc::Sender<Work>,
    admitted: Admitted,
) {
    while let Some((peer, stream)) = incoming.next().await {
        match admitted.open(peer) {
            Some(slot) => {
                let work = work.clone();
                tokio::spawn(async move {
                    read_chunks(peer, stream, work).await;
                    drop(slot);
                });
            }
            None => {
                debug!(%peer, "closing a data-plane stream: peer not admitted, or at its stream limit");
                drop(stream);
            }
        }
    }
}

/// Reads one inbound data-plane stream: chunk frames back to back, decoded here (off the event
/// loop) and handed to it. Waiting on a full work queue holds back the sender (backpressure).
/// Anything but a well-formed chunk frame closes the stream; frames from a peer that is not
/// admitted are dropped by the endpoint like any other.
async fn read_chunks(peer: PeerId, mut stream: libp2p::Stream, work: mpsc::Sender<Work>) {
    loop {
        // Each frame's buffer travels on with it (to the blocking pool, which verifies and
        // stores the payload where it lies) and comes back through the frame-buffer pool.
        let mut buf = frame_buf();
        let len = match read_frame_into(&mut stream, &mut buf).await {
            Ok(len) => len,
            Err(e) => {
                debug!(%peer, error = %e, "chunk stream ended");
                recycle_frame_buf(buf);
                return;
            }
        };
        match decode_chunk_frame(&buf[..len]) {
            Ok(frame) => {
                let chunk = ReceivedChunk { frame, buf };
                if work.send(Work::Chunk { peer, chunk }).await.is_err() {
                    return; // the node stopped
                }
            }
            Err(e) => {
                warn!(%peer, error = %e, "malformed chunk frame; closing the stream");
                return;
            }
        }
    }
}

/// Writes chunk frames to one peer over one data-plane stream, opened on first use and opened
/// again after an error. A frame that cannot be written is dropped: the receiver's state
/// machine asks for its groups again after `retry_ms`. Ends when the queue closes (the peer
/// disconnected or the node stopped).
pub async fn write_chunks(
    peer: PeerId,
    mut control: libp2p_stream::Control,
    mut frames: mpsc::Receiver<ChunkOut>,
) {
    let mut stream: Option<libp2p::Stream> = None;
    while let Some(frame) = frames.recv().await {
        let s = match &mut stream {
            Some(s) => s,
            None => match control.open_stream(peer, CHUNK_PROTOCOL).await {
                Ok(s) => stream.insert(s),
                Err(e) => {
                    debug!(%peer, error = %e, "cannot open a chunk stream; frame dropped");
                    continue;
                }
            },
        };
        let written = write_frame_parts(s, &[&frame.head, &frame.payload]).await;
        recycle_frame_buf(frame.payload);
        if let Err(e) = written {
            debug!(%peer, error = %e, "chunk stream failed; frame dropped");
            stream = None;
        }
    }
    if let Some(mut s) = stream {
        let _ = futures::AsyncWriteExt::close(&mut s).await;
    }
}

/// Runs the heavy data-plane work on the blocking pool and reports back as [`Work`].
#[derive(Clone)]
pub struct DataPlane {
    pub store: Store,
    pub outboards: OutboardCache,
    pub work: mpsc::Sender<Work>,
    /// See `NodeSetup::fault_tamper_serve`.
    pub tamper: bool,
    /// Who may open inbound data-plane streams (kept by the event loop from admissions).
    pub admitted: Admitted,
    /// Frames being encoded for all peers together.
    pub encoding: EncodingSlots,
}

impl DataPlane {
    /// Forgets a partition's outboard, cached and on disk (its content was found damaged).
    pub fn forget_outboard(&self, content: &Hash) -> anyhow::Result<()> {
        self.outboards.forget(&self.store, content)
    }

    /// Verifies and stores the planned runs of a received frame; reports [`Work::Verdict`].
    pub fn receive(&self, chunk: ReceivedChunk, plan: ChunkPlan) {
        let ReceivedChunk { frame, buf } = chunk;
        let manifest = frame.manifest;
        let in_buffer: Vec<(ChunkPart, Range<usize>)> = frame
            .parts_in_buffer()
            .map(|(part, at)| (*part, at))
            .collect();
        let expected: Vec<(ChunkPart, PartitionEntry, Range<usize>)> = plan
            .runs
            .iter()
            .filter_map(|run| {
                let (part, at) = in_buffer.get(run.index)?.clone();
                Some((part, run.entry, at))
            })
            .collect();
        let from = plan.from;
        let (store, work) = (self.store.clone(), self.work.clone());
        tokio::task::spawn_blocking(move || {
            let verdict = receive_frame(&store, &buf, expected);
            recycle_frame_buf(buf);
            if let Some(e) = verdict.failed {
                let _ = work.blocking_send(Work::Failed(e));
            } else if !verdict.runs.is_empty() {
                let _ = work.blocking_send(Work::Verdict {
                    from,
                    manifest,
                    runs: verdict.runs,
                });
            }
        });
    }

    /// Reads and encodes the groups of `parts` and queues the frame straight to the peer's
    /// writer (not through the event loop), never waiting on the peer: a full queue or a closed
    /// one (the peer left) drops the frame, and the receiver asks again. The frame waits for one
    /// of the node's [`SERVE_FRAMES_ENCODING_MAX`] encoding slots first. Returns `false`,
    /// serving nothing, if the peer already has [`SERVE_FRAMES_IN_FLIGHT_PER_PEER_MAX`] frames
    /// waiting or being encoded.
    pub fn serve(
        &self,
        to: RegionCode,
        out: &PeerOut,
        manifest: Hash,
        parts: Vec<ServePart>,
    ) -> bool {
        if out.serving.fetch_add(1, Ordering::AcqRel) >= SERVE_FRAMES_IN_FLIGHT_PER_PEER_MAX {
            out.serving.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        // Counted until the frame is queued or dropped, whatever the way out (including the
        // node stopping while it waits for a slot).
        struct Serving(Arc<AtomicUsize>);
        impl Drop for Serving {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let serving = Serving(Arc::clone(&out.serving));
        let this = self.clone();
        let out = out.clone();
        tokio::spawn(async move {
            let Ok(slot) = Arc::clone(&this.encoding.0).acquire_owned().await else {
                return; // never closed
            };
            tokio::task::spawn_blocking(move || {
                let _serving = serving;
                let _slot = slot;
                this.encode_and_queue(to, &out, manifest, &parts);
            });
        });
        true
    }

    /// Serving's work on the blocking pool: reads and encodes one frame and queues it.
    fn encode_and_queue(&self, to: RegionCode, out: &PeerOut, manifest: Hash, parts: &[ServePart]) {
        let (frame, failures) =
            serve_frame(&self.store, &self.outboards, manifest, parts, self.tamper);
        for failed in failures {
            let work = match failed.damaged {
                Some(d) => Work::Damaged(d),
                None => Work::Failed(failed.message),
            };
            let _ = self.work.blocking_send(work);
        }
        let Some(frame) = frame else {
            return;
        };
        let frame_out = match encode_chunk_frame_head(&frame) {
            Ok(head) => ChunkOut {
                head,
                payload: frame.encoded,
            },
            Err(e) => {
                let _ = self
                    .work
                    .blocking_send(Work::Failed(format!("serving chunks: {e}")));
                return;
            }
        };
        match out.queue.try_send(frame_out) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                debug!(%to, "peer's chunk queue is full (it is not reading); frame dropped")
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                debug!(%to, "peer gone; served frame dropped")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backflow_protocol::manifest::encoded_len;

    /// A data plane over a fresh store in `dir` holding one 1 MiB partition, the receiver of
    /// its work (kept alive by the caller), and a want for the partition's first 64 groups.
    fn plane_with_a_partition(
        dir: &std::path::Path,
    ) -> (DataPlane, mpsc::Receiver<Work>, ServePart) {
        let store = Store::open(dir).unwrap();
        let (entry, _) = crate::chunks::stored_partition(&store, 1 << 20);
        let (work, work_rx) = mpsc::channel(1024);
        let plane = DataPlane {
            store,
            outboards: OutboardCache::default(),
            work,
            tamper: false,
            admitted: Admitted::default(),
            encoding: EncodingSlots::default(),
        };
        let part = ServePart {
            entry,
            groups: 0..64,
            encoded_len: encoded_len(&entry, &(0..64)).unwrap(),
        };
        (plane, work_rx, part)
    }

    /// A peer that stops reading its stream (#15 item 5): serving never waits on its full
    /// queue — every serving task ends, one frame stays queued, the rest are dropped (it
    /// will ask again) — and at `SERVE_FRAMES_IN_FLIGHT_PER_PEER_MAX` frames being encoded
    /// nothing more is started. (Serving used to wait on the queue inside the blocking pool:
    /// a peer that never read held a pool thread per frame.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_that_does_not_read_holds_no_serving_thread() {
        let dir = tempfile::tempdir().unwrap();
        let (plane, _work_rx, part) = plane_with_a_partition(dir.path());
        let entry = part.entry;
        // Room for one frame, and nobody reads it.
        let (queue, _unread) = mpsc::channel(1);
        let out = PeerOut {
            queue,
            serving: Arc::default(),
        };
        let started = (0..200)
            .filter(|_| plane.serve(entry.region, &out, [1; 32], vec![part.clone()]))
            .count();
        assert!(started >= 1);
        let t = std::time::Instant::now();
        while out.serving.load(Ordering::Acquire) > 0 {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(20),
                "{} serving tasks still wait on a peer that does not read",
                out.serving.load(Ordering::Acquire)
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(out.queue.capacity(), 0, "one frame queued");
        // At the bound, a want is not served at all.
        out.serving
            .store(SERVE_FRAMES_IN_FLIGHT_PER_PEER_MAX, Ordering::Release);
        assert!(!plane.serve(entry.region, &out, [1; 32], vec![part]));
    }

    /// Serving is bounded node-wide: while every encoding slot is taken, a want is accepted
    /// (counted against its peer) but nothing is read; once a slot is free, its frame goes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn frames_wait_for_a_node_wide_encoding_slot() {
        let dir = tempfile::tempdir().unwrap();
        let (plane, _work_rx, part) = plane_with_a_partition(dir.path());
        let entry = part.entry;
        let (queue, mut frames) = mpsc::channel(CHUNK_FRAMES_QUEUED_MAX);
        let out = PeerOut {
            queue,
            serving: Arc::default(),
        };
        let taken = Arc::clone(&plane.encoding.0)
            .acquire_many_owned(SERVE_FRAMES_ENCODING_MAX as u32)
            .await
            .unwrap();
        assert!(plane.serve(entry.region, &out, [1; 32], vec![part.clone()]));
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(
            frames.try_recv().is_err(),
            "a frame was encoded without a slot"
        );
        assert_eq!(
            out.serving.load(Ordering::Acquire),
            1,
            "the waiting frame counts"
        );
        drop(taken);
        let frame = tokio::time::timeout(std::time::Duration::from_secs(20), frames.recv())
            .await
            .expect("the frame goes once a slot is free")
            .unwrap();
        assert_eq!(frame.payload.len() as u64, part.encoded_len);
        while out.serving.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(
            plane.encoding.0.available_permits(),
            SERVE_FRAMES_ENCODING_MAX,
            "the slot is given back"
        );
    }
}
