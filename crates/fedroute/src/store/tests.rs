use std::sync::mpsc;

use super::*;

fn item(store: &DeliveryStore, group: &str, id: &str, payload: Payload) -> Item {
    Item {
        group: group.to_string(),
        seq: store.next_seq(),
        request_id: Some(id.to_string()),
        deadline_ms: 7,
        tag: 3,
        payload,
    }
}

/// Puts and waits for the outcome.
fn put(store: &DeliveryStore, item: Item, answered: bool) -> Result<(), StoreError> {
    let (tx, rx) = mpsc::channel();
    store.put(
        item,
        answered,
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
    );
    rx.recv().expect("the writer answers")
}

fn close(store: &DeliveryStore) {
    futures::executor::block_on(store.close()).expect("closed");
}

#[test]
fn items_survive_a_reopen_in_order_and_removed_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let big = Payload::from(vec![9u8; FILE_PAYLOAD_MIN + 1]);
    {
        let (store, recovered) = DeliveryStore::open(dir.path(), 10).unwrap();
        assert!(recovered.items.is_empty());
        let a = item(&store, "r:1", "a", Payload::from(&b"first"[..]));
        let b = item(&store, "r:1", "b", big.clone());
        let c = item(&store, "r:2", "c", Payload::from(&b"other"[..]));
        let gone = item(&store, "r:1", "gone", big.clone());
        let gone_seq = gone.seq;
        for (i, answered) in [(a, true), (b, false), (c, true), (gone, false)] {
            put(&store, i, answered).unwrap();
        }
        store.remove("r:1", gone_seq);
        close(&store);
        assert_eq!(store.stats().items, 4);
        assert_eq!(store.stats().removals, 1);
    }
    let (_store, mut recovered) = DeliveryStore::open(dir.path(), 10).unwrap();
    let r1 = recovered.take_items("r:1");
    let ids: Vec<_> = r1.iter().map(|i| i.request_id.clone().unwrap()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(r1[0].payload.to_bytes(), &b"first"[..]);
    assert_eq!(r1[1].payload.to_bytes(), big.to_bytes());
    assert_eq!((r1[1].deadline_ms, r1[1].tag), (7, 3));
    assert_eq!(recovered.take_items("r:2").len(), 1);
    assert_eq!(recovered.take_answered("r:1"), ["a"]);
    assert_eq!(recovered.take_answered("r:2"), ["c"]);
    // Only the kept large payload has a file.
    let files = std::fs::read_dir(dir.path().join(PAYLOAD_DIR))
        .unwrap()
        .count();
    assert_eq!(files, 1);
}

#[test]
fn a_large_payload_is_written_from_its_own_buffers_to_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = DeliveryStore::open(dir.path(), 10).unwrap();
    let pieces = [
        Bytes::from(vec![1u8; FILE_PAYLOAD_MIN]),
        Bytes::from(vec![2u8; 10]),
    ];
    let payload = Payload::from_pieces(pieces);
    let it = item(&store, "g", "x", payload);
    let seq = it.seq;
    put(&store, it, false).unwrap();
    let on_disk = std::fs::read(dir.path().join(PAYLOAD_DIR).join(files::name(seq))).unwrap();
    assert_eq!(on_disk.len(), FILE_PAYLOAD_MIN + 10);
    assert_eq!(on_disk[FILE_PAYLOAD_MIN], 2);
    // The database holds the name, not the bytes.
    let db_len = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
    assert!(db_len < FILE_PAYLOAD_MIN as u64 * 4, "{db_len}");
}

#[test]
fn the_answered_window_keeps_the_newest_ids() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = DeliveryStore::open(dir.path(), 2).unwrap();
        for id in ["a", "b", "c"] {
            let it = item(&store, "g", id, Payload::from(&b"r"[..]));
            let seq = it.seq;
            put(&store, it, true).unwrap();
            store.remove("g", seq);
        }
        close(&store);
    }
    let (store, mut recovered) = DeliveryStore::open(dir.path(), 2).unwrap();
    assert_eq!(recovered.take_answered("g"), ["b", "c"]);
    assert!(recovered.take_items("g").is_empty());
    // Sequence numbers go on after the largest stored one.
    assert!(store.next_seq() > 3);
}

#[test]
fn small_items_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = DeliveryStore::open(dir.path(), 10).unwrap();
    let (tx, rx) = mpsc::channel();
    for i in 0..200 {
        let tx = tx.clone();
        let it = item(&store, "g", &i.to_string(), Payload::from(&b"r"[..]));
        store.put(it, false, Box::new(move |r| tx.send(r.is_ok()).unwrap()));
    }
    let oks = (0..200).filter(|_| rx.recv().unwrap()).count();
    assert_eq!(oks, 200);
    let stats = store.stats();
    assert_eq!(stats.items, 200);
    assert!(stats.commits < 200, "{stats:?}");
}

#[test]
fn an_uncommitted_payload_file_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(DeliveryStore::open(dir.path(), 10).unwrap());
    let payloads = dir.path().join(PAYLOAD_DIR);
    std::fs::write(payloads.join(files::name(99)), b"orphan").unwrap();
    std::fs::write(payloads.join("00000000000000000100.payload.tmp"), b"half").unwrap();
    std::fs::write(payloads.join("operator-notes.txt"), b"not ours").unwrap();
    drop(DeliveryStore::open(dir.path(), 10).unwrap());
    let left: Vec<_> = std::fs::read_dir(&payloads)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left, ["operator-notes.txt"]);
}

#[test]
fn a_missing_payload_file_is_a_damaged_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = DeliveryStore::open(dir.path(), 10).unwrap();
        let it = item(&store, "g", "x", Payload::from(vec![0u8; FILE_PAYLOAD_MIN]));
        let seq = it.seq;
        put(&store, it, false).unwrap();
        std::fs::remove_file(dir.path().join(PAYLOAD_DIR).join(files::name(seq))).unwrap();
    }
    let err = DeliveryStore::open(dir.path(), 10).unwrap_err();
    assert!(matches!(err, StoreError::Damaged { .. }), "{err:?}");
    assert!(err.to_string().contains(".payload"), "{err}");
}

#[test]
fn a_file_that_is_not_a_store_is_a_clear_error_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE_NAME);
    let garbage = vec![0x5au8; 8192];
    std::fs::write(&path, &garbage).unwrap();
    let err = DeliveryStore::open(dir.path(), 10).unwrap_err();
    assert!(
        matches!(err, StoreError::Damaged { .. } | StoreError::Open { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(FILE_NAME), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "never a silent reset"
    );
}

#[test]
fn a_store_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(DeliveryStore::open(dir.path(), 10).unwrap());
    {
        let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(META)
            .unwrap()
            .insert("format", FORMAT + 1)
            .unwrap();
        tx.commit().unwrap();
    }
    let err = DeliveryStore::open(dir.path(), 10).unwrap_err();
    assert!(
        matches!(err, StoreError::NewerFormat { found, .. } if found == FORMAT + 1),
        "{err:?}"
    );
}

#[test]
fn a_store_open_in_this_process_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _open = DeliveryStore::open(dir.path(), 10).unwrap();
    let err = DeliveryStore::open(dir.path(), 10).unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err:?}");
}

#[test]
fn close_releases_the_database_while_handles_remain() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = DeliveryStore::open(dir.path(), 10).unwrap();
    let kept = store.clone();
    put(
        &store,
        item(&store, "g", "a", Payload::from(&b"r"[..])),
        false,
    )
    .unwrap();
    futures::executor::block_on(store.close()).unwrap();
    let (_again, mut recovered) = DeliveryStore::open(dir.path(), 10).unwrap();
    assert_eq!(recovered.take_items("g").len(), 1);
    let late = put(
        &kept,
        item(&kept, "g", "b", Payload::from(&b"r"[..])),
        false,
    );
    assert!(matches!(late, Err(StoreError::Closed { .. })), "{late:?}");
}
