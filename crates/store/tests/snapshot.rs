//! Snapshots on real files: taken while writers upsert and delete, restored
//! into a new collection, compared point by point with the state the
//! writers had made at the snapshot's position; damaged and truncated
//! archives refused; replacing an existing collection.

use rand::prelude::*;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use vectorwise_index::Metric;
use vectorwise_index::plan::SearchRequest;
use vectorwise_store::{Collection, CollectionConfig, Error, FieldSpec, FieldType, NewPoint, PointId, SearchOptions, Store, SyncMode};

const DIM: usize = 8;

/// What a point is in the writers' model: vector and payload text.
type State = HashMap<u64, (Vec<f32>, String)>;

/// One writer's operation, applied whole or not at all.
#[derive(Clone, Debug)]
enum Op {
    Upsert(Vec<(u64, Vec<f32>, String)>),
    Delete(Vec<u64>),
}

fn apply(state: &mut State, op: &Op) {
    match op {
        Op::Upsert(points) => {
            for (id, v, p) in points {
                state.insert(*id, (v.clone(), p.clone()));
            }
        }
        Op::Delete(ids) => {
            for id in ids {
                state.remove(id);
            }
        }
    }
}

fn random_op(rng: &mut StdRng, writer: u64, seq: usize, ids: std::ops::Range<u64>) -> Op {
    if rng.random_bool(0.25) {
        Op::Delete((0..rng.random_range(1..8)).map(|_| rng.random_range(ids.clone())).collect())
    } else {
        let mut points: Vec<(u64, Vec<f32>, String)> = Vec::new();
        for _ in 0..rng.random_range(1..40) {
            let id = rng.random_range(ids.clone());
            let v: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0..1.0f32)).collect();
            let payload = serde_json::json!({"w": writer, "seq": seq, "tag": format!("t{}", id % 5)}).to_string();
            // One id twice in a batch: the later wins, in the store and here.
            points.retain(|p| p.0 != id);
            points.push((id, v, payload));
        }
        Op::Upsert(points)
    }
}

fn run(c: &Collection, op: &Op) {
    match op {
        Op::Upsert(points) => {
            let points = points
                .iter()
                .map(|(id, v, p)| NewPoint { id: (*id).into(), vector: v.clone(), payload: Some(serde_json::from_str(p).unwrap()) })
                .collect();
            c.upsert(points).unwrap();
        }
        Op::Delete(ids) => {
            c.delete(ids.clone()).unwrap();
        }
    }
}

/// Every point of `c` among `ids`, as the model holds them.
fn read(c: &Collection, ids: std::ops::Range<u64>) -> State {
    let ids: Vec<u64> = ids.collect();
    c.get(&ids, true, true).unwrap().into_iter().map(|p| (p.id.as_num().unwrap(), (p.vector.unwrap(), p.payload.map(|t| t.to_string()).unwrap_or_default()))).collect()
}

fn exact(k: usize) -> SearchOptions {
    SearchOptions { k, request: SearchRequest::RecallTarget(1.0), with_payload: false, with_vector: false, payload_budget: usize::MAX, filter: None }
}

/// Exact top-k (ids, distances) of `state` under l2, ties by id.
fn truth(state: &State, q: &[f32], k: usize) -> Vec<(u64, f32)> {
    let mut all: Vec<(u64, f32)> =
        state.iter().map(|(&id, (v, _))| (id, v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>())).collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

fn assert_searches_equal(c: &Collection, state: &State, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..20 {
        let q: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0..1.0f32)).collect();
        let got: Vec<u64> = c.search(&q, &exact(10)).unwrap().hits.iter().map(|h| h.id.as_num().unwrap()).collect();
        let want: Vec<u64> = truth(state, &q, 10).iter().map(|h| h.0).collect();
        assert_eq!(got, want, "exact search of the restored collection");
    }
}

fn config() -> CollectionConfig {
    // Small seals so that seals and merges run while the snapshot is taken.
    CollectionConfig { seal_points: 150, ..CollectionConfig::new(DIM, Metric::L2) }
}

/// Writers upsert and delete (each in its own id range, one op at a time)
/// while snapshots are taken. Each restored snapshot must hold, for every
/// writer, exactly the state after some prefix of its ops — no op half in,
/// none missing before one that is in — at least every op acknowledged
/// before the snapshot began and at most those begun before it ended; and
/// its exact searches must answer as a brute-force search of that state.
#[test]
fn a_snapshot_taken_under_writes_restores_a_prefix_of_every_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), SyncMode::Always).unwrap());
    let (src, _) = store.create("src", config()).unwrap();
    src.create_payload_index(FieldSpec { field: "tag".into(), field_type: FieldType::Keyword }).unwrap();
    const WRITERS: u64 = 3;
    const RANGE: u64 = 400;
    let logs: Vec<Arc<Mutex<Vec<Op>>>> = (0..WRITERS).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let done: Vec<Arc<AtomicUsize>> = (0..WRITERS).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (c, log, done, stop) = (Arc::clone(&src), Arc::clone(&logs[w as usize]), Arc::clone(&done[w as usize]), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut rng = StdRng::seed_from_u64(w);
                let mut seq = 0;
                while !stop.load(Ordering::Acquire) {
                    let op = random_op(&mut rng, w, seq, w * RANGE..(w + 1) * RANGE);
                    // Logged before it starts, counted once acknowledged.
                    log.lock().unwrap().push(op.clone());
                    run(&c, &op);
                    seq += 1;
                    done.store(seq, Ordering::Release);
                }
            })
        })
        .collect();
    let mut snapshots = Vec::new();
    for i in 0..4 {
        std::thread::sleep(std::time::Duration::from_millis(150));
        let acknowledged: Vec<usize> = done.iter().map(|d| d.load(Ordering::Acquire)).collect();
        let s = store.snapshot("src", Some(&format!("s{i}"))).unwrap();
        let begun: Vec<usize> = logs.iter().map(|l| l.lock().unwrap().len()).collect();
        snapshots.push((s, acknowledged, begun));
    }
    stop.store(true, Ordering::Release);
    for t in threads {
        t.join().unwrap();
    }
    let stats = src.stats();
    assert!(stats.optimiser.seals > 0, "seals ran meanwhile: {:?}", stats.optimiser);

    for (i, (summary, acknowledged, begun)) in snapshots.iter().enumerate() {
        let archive = store.snapshot_path("src", &summary.name).unwrap();
        let name = format!("copy{i}");
        let (copy, info) = store.restore(&name, std::fs::File::open(&archive).unwrap(), false).unwrap();
        assert_eq!((info.name.as_str(), info.position, info.points), (summary.name.as_str(), summary.position, summary.points));
        assert_eq!(copy.len(), summary.points);
        assert_eq!(copy.stats().payload_indexes, vec![FieldSpec { field: "tag".into(), field_type: FieldType::Keyword }]);
        let mut whole = State::new();
        for w in 0..WRITERS {
            let ids = w * RANGE..(w + 1) * RANGE;
            let restored = read(&copy, ids.clone());
            let ops = logs[w as usize].lock().unwrap().clone();
            // Equal consecutive states (an op that changed nothing) make
            // several prefixes match: one of them must lie in the window.
            let (ack, begun) = (acknowledged[w as usize], begun[w as usize]);
            let mut state = State::new();
            let mut matching = None;
            for k in 0..=ops.len() {
                if k > 0 {
                    apply(&mut state, &ops[k - 1]);
                }
                if k >= ack && k <= begun && state == restored {
                    matching = Some(state.clone());
                    break;
                }
            }
            let state = matching.unwrap_or_else(|| {
                panic!("snapshot {i}: writer {w}'s points are not its state after any of its first {ack}..={begun} ops")
            });
            whole.extend(state);
        }
        assert_eq!(copy.len(), whole.len());
        assert_searches_equal(&copy, &whole, i as u64);
    }

    // At rest, a snapshot restores every point as it is, and answers every
    // exact search as the source does.
    let rest = store.snapshot("src", None).unwrap();
    let (copy, _) = store.restore("rest", std::fs::File::open(store.snapshot_path("src", &rest.name).unwrap()).unwrap(), false).unwrap();
    let source = read(&src, 0..WRITERS * RANGE);
    assert_eq!(read(&copy, 0..WRITERS * RANGE), source);
    assert_searches_equal(&copy, &source, 99);
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..10 {
        let q: Vec<f32> = (0..DIM).map(|_| rng.random_range(-1.0..1.0f32)).collect();
        let a: Vec<(u64, f32)> = src.search(&q, &exact(20)).unwrap().hits.iter().map(|h| (h.id.as_num().unwrap(), h.distance)).collect();
        let b: Vec<(u64, f32)> = copy.search(&q, &exact(20)).unwrap().hits.iter().map(|h| (h.id.as_num().unwrap(), h.distance)).collect();
        assert_eq!(a, b);
    }
    // Restored collections reopen as they were.
    drop((copy, src));
    store.close_and_wait();
    drop(store);
    let store = Store::open(dir.path(), SyncMode::Always).unwrap();
    assert_eq!(read(&store.get("rest").unwrap(), 0..WRITERS * RANGE), source);
    let listed: Vec<String> = store.list_snapshots("src").unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(listed.len(), 5);
}

fn small_collection(store: &Store) -> Arc<Collection> {
    let (c, _) = store.create("src", CollectionConfig { seal_points: 100, ..CollectionConfig::new(DIM, Metric::Cosine) }).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let points: Vec<NewPoint> = (0..250)
        .map(|id| NewPoint {
            id: PointId::Num(id),
            vector: (0..DIM).map(|_| rng.random_range(-1.0..1.0f32)).collect(),
            payload: Some(serde_json::json!({"id": id})),
        })
        .collect();
    c.upsert(points).unwrap();
    c.flush().unwrap();
    c.delete((0..250u64).step_by(7)).unwrap();
    c.upsert(vec![NewPoint { id: 1000.into(), vector: vec![0.5; DIM], payload: None }]).unwrap();
    c
}

fn refused(store: &Store, bytes: &[u8]) -> String {
    match store.restore("bad", bytes, false) {
        Err(Error::BadSnapshot(reason)) => reason,
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("a damaged archive was restored"),
    }
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".creating") || n == "bad")
        .collect()
}

/// Every truncation and a flipped byte in each part of the archive is
/// refused with a reason naming what is wrong; nothing is left behind.
#[test]
fn a_damaged_or_truncated_archive_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), SyncMode::Always).unwrap();
    small_collection(&store);
    let s = store.snapshot("src", Some("good")).unwrap();
    let bytes = std::fs::read(store.snapshot_path("src", "good").unwrap()).unwrap();
    assert_eq!(bytes.len() as u64, s.size);

    let mut archive = tar::Archive::new(bytes.as_slice());
    let spans: Vec<(String, u64, u64)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.path().unwrap().to_string_lossy().into_owned(), e.raw_file_position(), e.size())
        })
        .collect();
    assert_eq!(spans.first().unwrap().0, "snapshot.json");
    assert_eq!(spans.last().unwrap().0, "checksums.json");
    assert!(spans.iter().any(|s| s.0.starts_with("wal/")) && spans.iter().any(|s| s.0.ends_with(".vwi")));
    // Cut at each entry's header, inside it, and inside its data: refused.
    let mut cuts = vec![0, 100];
    for (_, at, size) in &spans {
        cuts.extend([*at as usize - 512, *at as usize - 300, (at + size / 2) as usize]);
    }
    for cut in cuts {
        let reason = refused(&store, &bytes[..cut]);
        assert!(reason.contains("truncated") || reason.contains("ends before"), "cut at {cut}: {reason}");
    }
    // A flipped byte inside each file's data: the file is named.
    for (path, at, size) in &spans {
        if *size == 0 {
            continue;
        }
        let mut damaged = bytes.clone();
        let i = (*at + size / 2) as usize;
        damaged[i] = damaged[i].wrapping_add(1);
        let reason = refused(&store, &damaged);
        assert!(reason.contains(path.as_str()) || path.ends_with(".json"), "{path}: {reason}");
    }
    let reason = refused(&store, b"this is not an archive at all, just some text that is long enough");
    assert!(!reason.is_empty());
    assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
    // The intact archive restores.
    let (c, _) = store.restore("bad", bytes.as_slice(), false).unwrap();
    assert_eq!(c.len(), store.get("src").unwrap().len());
}

/// An existing collection is refused unless forced; forced, it is replaced
/// whole; snapshot names are checked (no path of any kind); a snapshot
/// outlives its collection.
#[test]
fn restore_refuses_or_replaces_an_existing_collection_and_names_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), SyncMode::Always).unwrap();
    let src = small_collection(&store);
    let before = read(&src, 0..2000);
    store.snapshot("src", Some("a")).unwrap();
    let archive = || std::fs::File::open(store.snapshot_path("src", "a").unwrap()).unwrap();
    assert!(matches!(store.snapshot("src", Some("a")), Err(Error::SnapshotExists(_))));
    src.delete(vec![1000, 1, 2, 3]).unwrap();
    src.upsert(vec![NewPoint { id: 5000.into(), vector: vec![1.0; DIM], payload: None }]).unwrap();
    assert!(matches!(store.restore("src", archive(), false), Err(Error::Conflict { .. })));
    assert_eq!(store.get("src").unwrap().len(), src.len(), "refused: untouched");
    let (c, _) = store.restore("src", archive(), true).unwrap();
    assert_eq!(read(&c, 0..6000), before);
    assert!(matches!(src.upsert(vec![]), Err(Error::Dropped(_))), "the replaced collection is closed");

    for bad in ["../x", "a/b", "..", "", ".hidden", "a.tar", &"x".repeat(65)] {
        assert!(matches!(store.snapshot("src", Some(bad)), Err(Error::Invalid { .. })), "{bad:?}");
        assert!(matches!(store.snapshot_path("src", bad), Err(Error::Invalid { .. })), "{bad:?}");
        assert!(matches!(store.delete_snapshot("src", bad), Err(Error::Invalid { .. })), "{bad:?}");
    }
    assert!(matches!(store.snapshot_path("src", "nope"), Err(Error::SnapshotNotFound { .. })));
    assert!(matches!(store.list_snapshots("nope"), Err(Error::NotFound(_))));
    store.drop_collection("src").unwrap();
    assert_eq!(store.list_snapshots("src").unwrap().len(), 1, "snapshots outlive their collection");
    let (c, _) = store.restore("src", archive(), false).unwrap();
    assert_eq!(read(&c, 0..6000), before);
    store.delete_snapshot("src", "a").unwrap();
    assert!(store.list_snapshots("src").unwrap().is_empty());
}

/// An archive whose checksums are right but whose content is not the
/// collection's (a log record of another width, as a hand-made archive could
/// hold) is refused when the restored collection opens, not served to panic.
#[test]
fn a_well_formed_archive_with_a_foreign_log_record_is_refused() {
    use vectorwise_store::record::{PointWrite, Record};
    use vectorwise_store::wal::{FileWal, Wal};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), SyncMode::Always).unwrap();
    small_collection(&store);
    store.snapshot("src", Some("good")).unwrap();
    let bytes = std::fs::read(store.snapshot_path("src", "good").unwrap()).unwrap();
    let mut files: Vec<(String, Vec<u8>)> = tar::Archive::new(bytes.as_slice())
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (e.path().unwrap().to_string_lossy().into_owned(), data)
        })
        .collect();
    // The log: one upsert of a point one value too wide.
    let wal_dir = dir.path().join("forged-wal");
    let wal = FileWal::open(&wal_dir, 1, SyncMode::Always).unwrap();
    wal.append(&Record::Upsert(vec![PointWrite { id: 7, uuid: None, vector: vec![0.5; DIM + 1], payload: None }]).encode()).unwrap();
    drop(wal);
    let forged = std::fs::read(wal_dir.join(format!("{:020}.log", 1))).unwrap();
    let at = files.iter().position(|f| f.0.starts_with("wal/")).unwrap();
    files[at].1 = forged.clone();
    let mut info: serde_json::Value = serde_json::from_slice(&files[0].1).unwrap();
    for f in info["files"].as_array_mut().unwrap() {
        if f["path"] == files[at].0.as_str() {
            f["bytes"] = forged.len().into();
        }
    }
    files[0].1 = serde_json::to_vec(&info).unwrap();
    let n = files.len();
    let sums: serde_json::Map<String, serde_json::Value> = files[..n - 1]
        .iter()
        .map(|(p, d)| (p.clone(), format!("{:016x}", xxhash_rust::xxh3::xxh3_64(d)).into()))
        .collect();
    files[n - 1].1 = serde_json::to_vec(&sums).unwrap();
    let mut out = tar::Builder::new(Vec::new());
    for (path, data) in &files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        out.append_data(&mut h, path, data.as_slice()).unwrap();
    }
    let archive = out.into_inner().unwrap();
    match store.restore("forged", archive.as_slice(), false) {
        Err(Error::Corrupt { reason, .. }) => assert!(reason.contains("9 values; the collection has 8"), "{reason}"),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("a foreign log was restored"),
    }
    assert!(store.get("forged").is_err());
    assert!(!dir.path().join("forged").exists() && leftovers(dir.path()).is_empty());
}

/// Copies a directory tree (a replica made from another's data directory).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The state identity (`Collection::state_id`) names contents across
/// openings and copies: the same after a reopen (replayed or checkpointed),
/// the same for two copies of a directory that take the same write, and
/// different once they take different writes at the same position — where
/// the uuid and the position alone would be equal. Restores of a snapshot
/// and other collections never share one.
#[test]
fn the_state_identity_follows_contents_not_names_or_positions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), SyncMode::Always).unwrap();
    let c = small_collection(&store);
    let before = c.state_id();
    assert_eq!(before.version, 3);
    assert_eq!(c.writes_begun(), before.version);
    // Another collection has another uuid and digest.
    let (other, _) = store.create("other", c.config().clone()).unwrap();
    assert_ne!(other.state_id().uuid, before.uuid);
    // Two restores of one snapshot: each its own identity.
    let s = store.snapshot("src", Some("s")).unwrap();
    let archive = store.snapshot_path("src", &s.name).unwrap();
    let (r1, _) = store.restore("r1", std::fs::File::open(&archive).unwrap(), false).unwrap();
    let (r2, _) = store.restore("r2", std::fs::File::open(&archive).unwrap(), false).unwrap();
    assert_ne!(r1.state_id().digest, r2.state_id().digest);
    assert_ne!(r1.state_id().digest, before.digest);
    drop((c, other, r1, r2));
    store.close_and_wait();
    drop(store);

    // Reopened (the log replayed on the checkpoint's history): the same state.
    let store = Store::open(dir.path(), SyncMode::Always).unwrap();
    let c = store.get("src").unwrap();
    let reopened = c.state_id();
    assert_eq!((reopened.uuid, reopened.position, reopened.digest), (before.uuid, before.position, before.digest));
    // Checkpointed (wal_from moves), then reopened: still the same.
    c.flush().unwrap();
    drop(c);
    store.close_and_wait();
    drop(store);
    let store = Store::open(dir.path(), SyncMode::Always).unwrap();
    assert_eq!(store.get("src").unwrap().state_id().digest, before.digest);
    store.close_and_wait();
    drop(store);

    // Two copies of the directory: the same state; the same write keeps
    // them equal, different writes at the same position part them.
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    copy_dir(dir.path(), dir_a.path());
    copy_dir(dir.path(), dir_b.path());
    let (sa, sb) = (Store::open(dir_a.path(), SyncMode::Always).unwrap(), Store::open(dir_b.path(), SyncMode::Always).unwrap());
    let (a, b) = (sa.get("src").unwrap(), sb.get("src").unwrap());
    assert_eq!(a.state_id().digest, before.digest);
    assert_eq!(b.state_id().digest, before.digest);
    let point = |x: f32| vec![NewPoint { id: 5000.into(), vector: vec![x; DIM], payload: None }];
    a.upsert(point(0.25)).unwrap();
    b.upsert(point(0.25)).unwrap();
    assert_eq!(a.state_id().digest, b.state_id().digest);
    a.upsert(point(0.5)).unwrap();
    b.upsert(point(-0.5)).unwrap();
    let (ia, ib) = (a.state_id(), b.state_id());
    assert_eq!((ia.uuid, ia.position, ia.version), (ib.uuid, ib.position, ib.version));
    assert_ne!(ia.digest, ib.digest);
}

/// A sealed segment's file replaced in place (as `cp new.vwi index.vwi`
/// does to the served index, hard-linked as `default`) changes the
/// contents without a log record: the identity changes with it, so a
/// shared cache never answers for the old file.
#[test]
fn a_segment_file_replaced_in_place_gets_a_new_identity() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), SyncMode::Always).unwrap();
    let points = |seed: u64| -> Vec<NewPoint> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..300u64).map(|id| NewPoint { id: id.into(), vector: (0..DIM).map(|_| rng.random_range(-1.0f32..1.0)).collect(), payload: None }).collect()
    };
    let config = CollectionConfig::new(DIM, Metric::L2);
    let a = store.import_points("a", config.clone(), points(1)).unwrap();
    let b = store.import_points("b", config, points(2)).unwrap();
    let before = a.state_id();
    let (file_a, file_b) = (a.segment_path(1).unwrap(), b.segment_path(1).unwrap());
    drop((a, b));
    store.close_and_wait();
    drop(store);
    // Reopened as it was: the same identity.
    let store = Store::open(dir.path(), SyncMode::Always).unwrap();
    assert_eq!(store.get("a").unwrap().state_id().digest, before.digest);
    store.close_and_wait();
    drop(store);
    // The same path, the same inode, other contents.
    std::fs::write(&file_a, std::fs::read(&file_b).unwrap()).unwrap();
    let store = Store::open(dir.path(), SyncMode::Always).unwrap();
    let after = store.get("a").unwrap().state_id();
    assert_ne!(after.uuid, before.uuid);
    assert_ne!(after.digest, before.digest);
}

/// A collection keeps at most the server's limit of snapshots: one more is
/// refused (nothing written) until one is deleted; other collections have
/// their own count, and 0 lifts the limit.
#[test]
fn snapshots_past_the_limit_are_refused_until_one_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), SyncMode::Always).unwrap();
    store.set_max_snapshots(3);
    for name in ["a", "b"] {
        let (c, _) = store.create(name, config()).unwrap();
        c.upsert(vec![NewPoint { id: 1u64.into(), vector: vec![0.5; DIM], payload: None }]).unwrap();
    }
    for i in 0..3 {
        store.snapshot("a", Some(&format!("s{i}"))).unwrap();
    }
    match store.snapshot("a", Some("s3")) {
        Err(Error::TooManySnapshots { collection, limit: 3 }) => assert_eq!(collection, "a"),
        other => panic!("expected TooManySnapshots, got {other:?}"),
    }
    assert!(matches!(store.snapshot("a", None), Err(Error::TooManySnapshots { .. })), "a default name is counted too");
    assert_eq!(store.list_snapshots("a").unwrap().len(), 3, "nothing written");
    store.snapshot("b", Some("s0")).unwrap();
    store.delete_snapshot("a", "s1").unwrap();
    store.snapshot("a", Some("s3")).unwrap();
    store.set_max_snapshots(0);
    store.snapshot("a", Some("s4")).unwrap();
    assert_eq!(store.list_snapshots("a").unwrap().len(), 4);
}
