//! The store's own tests: both content layouts survive a reopen and read back.

use super::*;

fn aligned(data: &[u8]) -> AlignedBuf {
    let mut b = AlignedBuf::with_capacity(data.len());
    b.extend_from_slice(data);
    b
}

/// Both layouts: a large partition's groups in its content file, a small one's inline.
#[test]
fn groups_survive_reopen_and_read_back() {
    for partition_bytes in [INLINE_PARTITION_BYTES_MAX + 1, 3 * CHUNK_GROUP_BYTES + 100] {
        groups_survive_reopen_and_read_back_as(partition_bytes);
    }
}

fn groups_survive_reopen_and_read_back_as(partition_bytes: u64) {
    let inline = is_inline(partition_bytes);
    let dir = tempfile::tempdir().unwrap();
    let m = [7u8; 32];
    let content: Vec<u8> = (0..(CHUNK_GROUP_BYTES * 3 + 100))
        .map(|i| (i % 251) as u8)
        .collect();
    let g = CHUNK_GROUP_BYTES as usize;
    {
        let store = Store::open(dir.path()).unwrap();
        let mut extra = store.batch();
        extra.put(CF_STATE, b"progress", b"groups 0,2");
        store
            .put_groups(&m, partition_bytes, 0, &mut aligned(&content[..g]), extra)
            .unwrap();
        store
            .put_groups(
                &m,
                partition_bytes,
                2,
                &mut aligned(&content[2 * g..3 * g]),
                store.batch(),
            )
            .unwrap();
        // Dropped without flush: the WAL must bring the index back.
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.stored_groups(&m).unwrap(), vec![0, 2]);
    assert_eq!(
        store.get(CF_STATE, b"progress").unwrap().unwrap(),
        b"groups 0,2"
    );
    // Group 1 is a hole: a read stops there rather than serve what the file holds.
    let mut head = vec![0u8; 2 * g];
    assert_eq!(store.read_at(&m, 0, &mut head).unwrap(), g);
    assert!(store.open_groups(&m, 0..2).is_err(), "a range over a hole");
    let two = store.open_groups(&m, 2..3).unwrap();
    let mut got = vec![0u8; g];
    two.read_exact_at(2 * g as u64, &mut got).unwrap();
    assert_eq!(got, content[2 * g..3 * g]);
    // Only inside the opened groups: not the group before, not past the end.
    assert!(two.read_exact_at(g as u64, &mut got).is_err());
    assert!(two.read_exact_at(2 * g as u64 + 1, &mut got).is_err());
    assert_eq!(
        store.content_path(&m).exists(),
        !inline,
        "a file only if large"
    );
    store
        .put_groups(
            &m,
            partition_bytes,
            1,
            &mut aligned(&content[g..2 * g]),
            store.batch(),
        )
        .unwrap();
    store
        .put_groups(
            &m,
            partition_bytes,
            3,
            &mut aligned(&content[3 * g..]),
            store.batch(),
        )
        .unwrap();
    let mut back = vec![0u8; content.len() + 5_000];
    // The short last group ends the content; its padding in the file is never read.
    assert_eq!(store.read_at(&m, 0, &mut back).unwrap(), content.len());
    assert_eq!(&back[..content.len()], &content[..]);
    let mut mid = vec![0u8; 20_000];
    store.read_at(&m, 10_000, &mut mid).unwrap();
    assert_eq!(mid, content[10_000..30_000]);
    // A range ending in the short last group reads exactly the stored bytes.
    let tail = store.open_groups(&m, 1..4).unwrap();
    let mut last = vec![0u8; content.len() - 3 * g];
    tail.read_exact_at(3 * g as u64, &mut last).unwrap();
    assert_eq!(last, content[3 * g..]);
    let mut over = vec![0u8; last.len() + 1];
    assert!(tail.read_exact_at(3 * g as u64, &mut over).is_err());
    assert_eq!(store.get_group(&m, 3).unwrap(), content[3 * g..]);
    let mut streamed = Vec::new();
    store
        .for_each_group(&m, |_, d| {
            streamed.extend_from_slice(d);
            Ok(())
        })
        .unwrap();
    assert_eq!(streamed, content);
    // Another partition's groups are separate.
    assert!(store.stored_groups(&[8u8; 32]).unwrap().is_empty());
    assert_eq!(store.read_at(&[8u8; 32], 0, &mut mid).unwrap(), 0);
    // Deleting a partition removes its index and its file.
    store.delete_content(&m, partition_bytes).unwrap();
    assert!(store.stored_groups(&m).unwrap().is_empty());
    assert!(!store.content_path(&m).exists());
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(CHUNK_DIR).join(segment::SEGMENT_DIR))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn read_whole(store: &Store, content: &Hash) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .for_each_group(content, |_, d| {
            out.extend_from_slice(d);
            Ok(())
        })
        .unwrap();
    out
}

/// The publisher's small partitions in a segment: read back every way the node reads (one
/// group, a range, at an offset, whole), after a reopen; stored again, nothing is written
/// twice; deleted, the segment goes once nothing points into it.
#[test]
fn segments_hold_small_partitions_until_the_last_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let g = CHUNK_GROUP_BYTES as usize;
    let one: Vec<u8> = (0..12_345).map(|i| (i % 253) as u8).collect();
    let three: Vec<u8> = (0..(2 * g + 77)).map(|i| (i % 241) as u8).collect();
    let (a, b) = ([1u8; 32], [2u8; 32]);
    {
        let store = Store::open(dir.path()).unwrap();
        let mut w = segment::SegmentWriter::new(&store).unwrap();
        w.store(&[(a, &one), (b, &three)]).unwrap();
        w.finish().unwrap();
    }
    assert_eq!(segment_files(dir.path()), ["00000001.seg"]);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.get_group(&a, 0).unwrap(), one);
    assert_eq!(read_whole(&store, &b), three);
    assert_eq!(store.get_group(&b, 2).unwrap(), three[2 * g..]);
    let run = store.open_groups(&b, 1..3).unwrap();
    let mut mid = vec![0u8; 100];
    run.read_exact_at(g as u64 + 50, &mut mid).unwrap();
    assert_eq!(mid, three[g + 50..g + 150]);
    assert!(
        run.read_exact_at(0, &mut mid).is_err(),
        "outside the opened groups"
    );
    let mut all = vec![0u8; three.len() + 10];
    assert_eq!(store.read_at(&b, 0, &mut all).unwrap(), three.len());
    assert_eq!(&all[..three.len()], three);

    // Published again: found stored, no new segment.
    let mut w = segment::SegmentWriter::new(&store).unwrap();
    w.store(&[(a, &one), (b, &three), (a, &one)]).unwrap();
    w.finish().unwrap();
    assert_eq!(segment_files(dir.path()), ["00000001.seg"]);

    store.delete_content(&a, one.len() as u64).unwrap();
    assert!(store.open_groups(&a, 0..1).is_err());
    assert_eq!(
        segment_files(dir.path()),
        ["00000001.seg"],
        "b still points into it"
    );
    store.delete_content(&b, three.len() as u64).unwrap();
    assert!(segment_files(dir.path()).is_empty());
    assert!(store
        .get(CF_CHUNKS, &segment::count_key(1))
        .unwrap()
        .is_none());
}

/// A publish's partitions in many batches of odd sizes: each batch's partial last block is
/// carried into the next write and written again with what follows it, so every partition
/// reads back whole after a reopen (and a content repeated in a later batch is placed once).
#[test]
fn partitions_across_many_batches_read_back_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let parts: Vec<([u8; 32], Vec<u8>)> = (0..300u32)
        .map(|i| {
            let len = 1 + (i as usize * 7_919) % 40_000;
            let mut content = [0u8; 32];
            content[..4].copy_from_slice(&i.to_le_bytes());
            let data = (0..len)
                .map(|j| (j as u32 ^ i.wrapping_mul(31)) as u8)
                .collect();
            (content, data)
        })
        .collect();
    {
        let store = Store::open(dir.path()).unwrap();
        let mut w = segment::SegmentWriter::new(&store).unwrap();
        for batch in parts.chunks(7) {
            let mut refs: Vec<([u8; 32], &[u8])> =
                batch.iter().map(|(c, d)| (*c, d.as_slice())).collect();
            // The first partition again, from an earlier batch.
            refs.push((parts[0].0, &parts[0].1));
            w.store(&refs).unwrap();
        }
        w.finish().unwrap();
    }
    assert_eq!(segment_files(dir.path()), ["00000001.seg"]);
    let store = Store::open(dir.path()).unwrap();
    for (content, data) in &parts {
        assert_eq!(&read_whole(&store, content), data);
    }
    assert_eq!(
        store
            .get(CF_CHUNKS, &segment::count_key(1))
            .unwrap()
            .unwrap(),
        (parts.len() as u64).to_le_bytes(),
        "each partition counted once"
    );
}

/// A segment no count key vouches for (a publish that crashed before its index was flushed)
/// is swept at open; a torn segment's content is written again, not trusted.
#[test]
fn orphan_segments_are_swept_and_torn_content_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..5_000).map(|i| (i % 199) as u8).collect();
    let c = [3u8; 32];
    {
        let store = Store::open(dir.path()).unwrap();
        let mut w = segment::SegmentWriter::new(&store).unwrap();
        w.store(&[(c, &data)]).unwrap();
        w.finish().unwrap();
    }
    let seg_dir = dir.path().join(CHUNK_DIR).join(segment::SEGMENT_DIR);
    std::fs::write(seg_dir.join("00000009.seg"), b"left by a crash").unwrap();
    std::fs::write(seg_dir.join("notes.txt"), b"not a segment").unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(segment_files(dir.path()), ["00000001.seg", "notes.txt"]);

    // Torn: the segment lost its tail.
    let f = OpenOptions::new()
        .write(true)
        .open(seg_dir.join("00000001.seg"))
        .unwrap();
    f.set_len(100).unwrap();
    drop(f);
    assert!(store.get_group(&c, 0).is_err());
    let mut w = segment::SegmentWriter::new(&store).unwrap();
    w.store(&[(c, &data)]).unwrap();
    w.finish().unwrap();
    assert_eq!(store.get_group(&c, 0).unwrap(), data);
    // The torn one is released (nothing points into it); the new one's id is past the
    // swept orphan's, never reused.
    assert_eq!(segment_files(dir.path()), ["0000000a.seg", "notes.txt"]);
}

/// Received small partitions (whole, one frame's worth) go into the receiving segment in one
/// append: read back after a reopen, which begins a new receiving segment; a batch dropped
/// unwritten names nothing; a segment still being received into is not removed when its
/// last partition is deleted, and is once it is no longer the receiving one; a small
/// partition's damaged group drops it whole; each append begins on a block boundary.
#[test]
fn received_small_partitions_are_appended_to_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let g = CHUNK_GROUP_BYTES as usize;
    let one: Vec<u8> = (0..9_000).map(|i| (i % 251) as u8).collect();
    let two: Vec<u8> = (0..(g + 10)).map(|i| (i % 239) as u8).collect();
    let (a, b, c, d) = ([4u8; 32], [5u8; 32], [6u8; 32], [7u8; 32]);
    let mut frame = one.clone();
    frame.extend_from_slice(&two);
    {
        let store = Store::open(dir.path()).unwrap();
        let mut batch = store.batch();
        store
            .stage_received(
                &mut aligned(&frame),
                &[(a, 0..one.len()), (b, one.len()..frame.len())],
                &mut batch,
            )
            .unwrap();
        store.write(batch).unwrap();
        // Staged but never written (the frame's storing failed later): nothing names it.
        let mut dropped = store.batch();
        store
            .stage_received(&mut aligned(&one), &[(c, 0..one.len())], &mut dropped)
            .unwrap();
        drop(dropped);
        assert!(store.stored_groups(&c).unwrap().is_empty());
        assert_eq!(store.get_group(&a, 0).unwrap(), one);
        // Each append begins on a block boundary (the one before is padded to whole blocks
        // and written past the page cache where the file system allows it).
        let mut batch = store.batch();
        store
            .stage_received(&mut aligned(&one), &[(d, 0..one.len())], &mut batch)
            .unwrap();
        store.write(batch).unwrap();
        let span = |content: &Hash| {
            let (segment, at) = store
                .open_groups(content, 0..1)
                .unwrap()
                .segment_span()
                .unwrap();
            (segment, at.start)
        };
        assert_eq!(span(&a), (1, 0));
        assert_eq!(span(&b), (1, one.len() as u64));
        // The first frame's 9,000 + 16,394 bytes, and the dropped one's 9,000, padded.
        let block = crate::aligned_buf::DIRECT_ALIGN_BYTES as u64;
        let after = (frame.len() as u64).next_multiple_of(block)
            + (one.len() as u64).next_multiple_of(block);
        assert_eq!(span(&d), (1, after));
        assert_eq!(read_whole(&store, &d), one);
    }
    assert_eq!(segment_files(dir.path()), ["00000001.seg"]);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(read_whole(&store, &a), one);
    assert_eq!(read_whole(&store, &d), one);
    assert_eq!(read_whole(&store, &b), two);
    assert_eq!(store.get_group(&b, 1).unwrap(), two[g..]);
    assert_eq!(store.stored_groups(&b).unwrap(), [0, 1]);

    // After the reopen, a new receiving segment.
    let mut batch = store.batch();
    store
        .stage_received(&mut aligned(&one), &[(c, 0..one.len())], &mut batch)
        .unwrap();
    store.write(batch).unwrap();
    assert_eq!(segment_files(dir.path()), ["00000001.seg", "00000002.seg"]);
    // The receiving segment stays while it receives, though nothing points into it now.
    store.delete_content(&c, one.len() as u64).unwrap();
    assert_eq!(segment_files(dir.path()), ["00000001.seg", "00000002.seg"]);
    // A damaged group of a small partition drops all of it; the old segment goes with its
    // last partition.
    assert_eq!(store.drop_groups(&b, two.len() as u64, 1..2).unwrap(), 0..2);
    assert!(store.stored_groups(&b).unwrap().is_empty());
    store.delete_content(&a, one.len() as u64).unwrap();
    assert_eq!(read_whole(&store, &d), one);
    store.delete_content(&d, one.len() as u64).unwrap();
    assert_eq!(segment_files(dir.path()), ["00000002.seg"]);
    drop(store);
    // Reopened: the receiving segment nothing points into is swept.
    let _store = Store::open(dir.path()).unwrap();
    assert!(segment_files(dir.path()).is_empty());
}
