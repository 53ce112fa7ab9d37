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
