//! Issue 22: snapshots taken while their collection is deleted and created
//! again under the same name. Each request is a whole archive of one
//! incarnation of the collection (201) or a clear 404 (it was deleted before
//! the snapshot captured it); never a 500, never an archive mixing the files
//! of two incarnations, never a partial file left in `.snapshots/`, nothing
//! logged as an internal error. Its own test binary: the global subscriber
//! it installs sees only these requests.

mod common;

use axum::http::{Method, StatusCode};
use common::Captured;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vectorwise_index::Metric;
use vectorwise_server::{AppState, ServerConfig, app};
use vectorwise_store::{CollectionConfig, NewPoint, Store, SyncMode};

const DIM: usize = 16;
const POINTS: u64 = 1500;

async fn call(app: &axum::Router, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    common::call(app, method, path, body.map(|b| b.to_string())).await
}

fn vector(id: u64, generation: u64) -> Vec<f32> {
    (0..DIM).map(|j| (((id * 31 + generation * 17 + j as u64 * 7) % 101) as f32 / 50.0) - 1.0).collect()
}

/// Creates the collection `race` as incarnation `generation`: every point's
/// payload names it; sealed into a few segments (files a snapshot copies).
fn populate(store: &Store, generation: u64) -> bool {
    let config = CollectionConfig { seal_points: 400, ..CollectionConfig::new(DIM, Metric::L2) };
    let Ok((c, _)) = store.create("race", config) else { return false };
    let points: Vec<NewPoint> = (0..POINTS)
        .map(|id| NewPoint { id: id.into(), vector: vector(id, generation), payload: Some(json!({"generation": generation})) })
        .collect();
    // The collection may be deleted meanwhile (by this test's own loop: no).
    c.upsert(points).unwrap();
    c.flush().unwrap();
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_racing_a_collection_delete_is_a_whole_archive_or_a_404() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || writer.clone()).finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), SyncMode::Always).unwrap());
    // Three clients take as many snapshots as 3 s allow: the cap per
    // collection (tested in the store) would answer 409 here.
    store.set_max_snapshots(0);
    assert!(populate(&store, 0));
    let state = AppState::new(ServerConfig::default());
    state.set_store(Arc::clone(&store));
    let app = app(state);

    // Deletes and creates `race` again in a loop (incarnation 1, 2, ...), over HTTP.
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (app, store, stop) = (app.clone(), Arc::clone(&store), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut generation = 0;
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = call(&app, Method::DELETE, "/collections/race", None).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                tokio::time::sleep(Duration::from_millis(3)).await;
                generation += 1;
                let store = Arc::clone(&store);
                assert!(tokio::task::spawn_blocking(move || populate(&store, generation)).await.unwrap());
            }
            generation
        })
    };
    // Three clients take snapshots in a loop meanwhile.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut clients = Vec::new();
    for client in 0..3 {
        let app = app.clone();
        clients.push(tokio::spawn(async move {
            let mut answers: Vec<(StatusCode, Value)> = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline {
                let name = format!("c{client}-{n}");
                n += 1;
                let (status, body) = call(&app, Method::POST, "/collections/race/snapshots", Some(json!({"name": name}))).await;
                answers.push((status, json!({"name": name, "body": body})));
            }
            answers
        }));
    }
    let mut answers = Vec::new();
    for c in clients {
        answers.extend(c.await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    let generations = churn.await.unwrap();

    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    let mut written = HashSet::new();
    for (status, answer) in &answers {
        *by_status.entry(status.as_u16()).or_default() += 1;
        match *status {
            StatusCode::CREATED => {
                written.insert(answer["name"].as_str().unwrap().to_string());
            }
            StatusCode::NOT_FOUND => {
                let detail = answer["body"]["detail"].as_str().unwrap_or_default();
                assert!(detail.contains("`race`") && (detail.contains("does not exist") || detail.contains("was deleted")), "{answer}");
            }
            other => panic!("a snapshot racing a delete answered {other}: {answer}"),
        }
    }
    eprintln!("snapshot race: {generations} delete + create cycles, answers by status {by_status:?}");
    assert!(generations >= 3, "the collection was deleted and created again only {generations} times");
    assert!(by_status.get(&201).copied().unwrap_or(0) >= 3, "{by_status:?}");

    // Nothing but the whole archives answered 201: no staging folder, no temporary.
    let snapshots = store.snapshots_dir("race");
    let mut on_disk = HashSet::new();
    for e in std::fs::read_dir(&snapshots).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let stem = name.strip_suffix(".tar").unwrap_or_else(|| panic!("left in {}: {name}", snapshots.display()));
        on_disk.insert(stem.to_string());
    }
    assert_eq!(on_disk, written, "the archives on disk are those answered 201");

    // Each archive is one incarnation, whole: restored, it holds every point
    // with that incarnation's vector and payload (or none: taken between the
    // create and the upsert). Checked for up to 20 of them.
    let mut full = 0;
    for (i, name) in written.iter().enumerate().take(20) {
        let file = std::fs::File::open(snapshots.join(format!("{name}.tar"))).unwrap();
        let restored = format!("restored-{i}");
        let (c, info) = store.restore(&restored, file, false).unwrap_or_else(|e| panic!("snapshot {name}: {e}"));
        let got = c.get(&(0..POINTS).collect::<Vec<_>>(), true, true).unwrap();
        assert_eq!(got.len(), info.points, "snapshot {name}");
        assert!(info.points == 0 || info.points as u64 == POINTS, "snapshot {name}: {} points", info.points);
        if let Some(first) = got.first() {
            full += 1;
            let generation = serde_json::from_str::<Value>(first.payload.as_deref().unwrap()).unwrap()["generation"].as_u64().unwrap();
            for p in &got {
                let payload: Value = serde_json::from_str(p.payload.as_deref().unwrap()).unwrap();
                assert_eq!(payload["generation"], generation, "snapshot {name}: point {} of another incarnation", p.id);
                assert_eq!(p.vector.as_deref(), Some(vector(p.id.as_num().unwrap(), generation).as_slice()), "snapshot {name}: point {}", p.id);
            }
        }
        store.drop_collection(&restored).unwrap();
    }
    assert!(full > 0, "no archive checked held the points");

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let internal: Vec<&str> = log.lines().filter(|l| l.contains("internal error") || l.contains(" ERROR ")).collect();
    assert!(internal.is_empty(), "logged as errors:\n{}", internal.join("\n"));
}
