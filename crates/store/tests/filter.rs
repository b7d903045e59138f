//! Filtered search over a collection: memory and sealed segments, after
//! upserts, replacements and deletes, with and without payload indexes
//! (declared before and after segments exist), and across a reopen. The
//! reference is a brute force over a model of the live points with
//! `Filter::matches`.

use rand::prelude::*;
use serde_json::{Value, json};
use std::collections::HashMap;
use vectorwise_index::plan::SearchRequest;
use vectorwise_index::{Metric, Profile};
use vectorwise_store::{
    CollectionConfig, Condition, FieldSpec, FieldType, Filter, KeyPath, MatchValue, NewPoint, NumRange, SearchOptions, Store, SyncMode,
};

const DIM: usize = 16;

struct Point {
    vector: Vec<f32>,
    payload: Value,
}

fn points(n: usize, seed: u64, first_id: u64) -> Vec<NewPoint> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut centres = StdRng::seed_from_u64(99);
    let centres: Vec<Vec<f32>> = (0..16).map(|_| (0..DIM).map(|_| centres.random_range(-1.0..1.0)).collect()).collect();
    (0..n)
        .map(|i| {
            let cluster = rng.random_range(0..16);
            let vector = centres[cluster].iter().map(|x| x + rng.random_range(-0.1..0.1f32)).collect();
            let id = first_id + i as u64;
            // `cluster` is correlated with the vectors; `tag` and `price` are not.
            let payload = json!({
                "tag": format!("t{}", rng.random_range(0..10)),
                "price": rng.random_range(0..1000),
                "meta": {"cluster": format!("c{cluster}"), "rare": rng.random_bool(0.002)},
                "labels": if i % 5 == 0 { json!([]) } else { json!(["x", format!("l{}", i % 3)]) },
            });
            NewPoint { id: id.into(), vector, payload: Some(payload) }
        })
        .collect()
}

fn key(k: &str) -> KeyPath {
    KeyPath::parse(k).unwrap()
}

fn kw(k: &str, v: &str) -> Condition {
    Condition::Match { key: key(k), values: vec![MatchValue::Keyword(v.into())] }
}

fn filters() -> Vec<(&'static str, Filter)> {
    let must = |c: Vec<Condition>| Filter { must: c, ..Default::default() };
    vec![
        ("tag ~10%", must(vec![kw("tag", "t3")])),
        ("tag any ~30%", must(vec![Condition::Match { key: key("tag"), values: ["t1", "t2", "t9"].map(|s| MatchValue::Keyword(s.into())).to_vec() }])),
        ("price range ~5%", must(vec![Condition::Range { key: key("price"), range: NumRange { gte: Some(100.0), lt: Some(150.0), ..Default::default() } }])),
        ("price 1%", must(vec![Condition::Range { key: key("price"), range: NumRange { gt: Some(989.0), ..Default::default() } }])),
        ("cluster (correlated) ~6%", must(vec![kw("meta.cluster", "c4")])),
        ("rare 0.2%", must(vec![Condition::Match { key: key("meta.rare"), values: vec![MatchValue::Bool(true)] }])),
        ("labels array", must(vec![kw("labels", "l2")])),
        ("is_empty labels", must(vec![Condition::IsEmpty(key("labels"))])),
        (
            "should + must_not",
            Filter {
                should: vec![kw("tag", "t0"), kw("tag", "t1")],
                must_not: vec![Condition::Range { key: key("price"), range: NumRange { lt: Some(500.0), ..Default::default() } }],
                ..Default::default()
            },
        ),
        ("has_id", must(vec![Condition::HasId((0..4000).step_by(37).collect())])),
        ("nothing", must(vec![kw("tag", "absent")])),
    ]
}

fn truth(model: &HashMap<u64, Point>, filter: &Filter, q: &[f32], k: usize) -> Vec<u64> {
    let mut all: Vec<(f32, u64)> = model
        .iter()
        .filter(|(id, p)| filter.matches(**id, Some(&p.payload)))
        .map(|(&id, p)| (p.vector.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(), id))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(k).map(|(_, id)| id).collect()
}

/// Mean recall@10 of `request` over the queries, checking every hit passes
/// the filter and that there are always min(10, passing) hits; exact
/// requests must give the truth itself.
fn check(c: &vectorwise_store::Collection, model: &HashMap<u64, Point>, filter: &Filter, request: SearchRequest) -> (f64, Vec<String>) {
    let queries = points(30, 4242, 1 << 40);
    let (mut got_total, mut want_total) = (0usize, 0usize);
    let mut unindexed = Vec::new();
    for q in &queries {
        let opts = SearchOptions { k: 10, request, with_payload: true, with_vector: false, payload_budget: usize::MAX, filter: Some(std::sync::Arc::new(filter.clone())) };
        let out = c.search(&q.vector, &opts).unwrap();
        let want = truth(model, filter, &q.vector, 10);
        assert_eq!(out.hits.len(), want.len(), "always min(k, passing) hits");
        for h in &out.hits {
            let p = &model[&h.key];
            assert!(filter.matches(h.key, Some(&p.payload)), "hit {} does not pass", h.id);
            let stored: Value = serde_json::from_str(h.payload.as_deref().unwrap()).unwrap();
            assert_eq!(stored, p.payload);
        }
        if request == SearchRequest::RecallTarget(1.0) {
            assert_eq!(out.hits.iter().map(|h| h.id).collect::<Vec<_>>(), want, "an exact request is the truth");
        }
        got_total += out.hits.iter().filter(|h| want.contains(&h.key)).count();
        want_total += want.len();
        unindexed = out.filter.unwrap().unindexed;
    }
    (if want_total == 0 { 1.0 } else { got_total as f64 / want_total as f64 }, unindexed)
}

/// A new L2 collection of `DIM` in a store at `dir`, sealing past
/// `seal_points`, its optimiser stopped (the tests seal with `optimise`).
fn collection(dir: &std::path::Path, name: &str, seal_points: usize) -> (Store, std::sync::Arc<vectorwise_store::Collection>) {
    let store = Store::open(dir, SyncMode::Always).unwrap();
    let (c, _) = store.create(name, CollectionConfig { seal_points, ..CollectionConfig::new(DIM, Metric::L2) }).unwrap();
    c.pause_optimiser();
    (store, c)
}

#[test]
fn filtered_search_matches_a_brute_force_model_across_segments_indexes_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, c) = collection(dir.path(), "f", 700);
    let mut model: HashMap<u64, Point> = HashMap::new();
    let add = |c: &vectorwise_store::Collection, batch: Vec<NewPoint>, model: &mut HashMap<u64, Point>| {
        for p in &batch {
            model.insert(p.id.as_num().unwrap(), Point { vector: p.vector.clone(), payload: p.payload.clone().unwrap() });
        }
        c.upsert(batch).unwrap();
    };
    // Sealed segments before any index is declared.
    for b in 0..4 {
        add(&c, points(800, b, b * 800), &mut model);
        c.optimise().unwrap();
    }
    let report = |c: &vectorwise_store::Collection, model: &HashMap<u64, Point>, stage: &str, want_indexed: bool| {
        for (name, f) in filters() {
            let (exact, unindexed) = check(c, model, &f, SearchRequest::RecallTarget(1.0));
            assert!(exact > 0.999, "{stage} {name}: exact {exact}");
            let (balanced, _) = check(c, model, &f, SearchRequest::Profile(Profile::Balanced));
            eprintln!("{stage} {name}: balanced recall {balanced:.3}, unindexed {unindexed:?}");
            assert!(balanced >= 0.95, "{stage} {name}: balanced {balanced}");
            let needs_scan = name.contains("labels") || name.contains("rare");
            if want_indexed && !needs_scan && name != "has_id" {
                assert!(unindexed.is_empty(), "{stage} {name}: read payloads for {unindexed:?}");
            }
            if !want_indexed && name.starts_with("tag") {
                assert_eq!(unindexed, vec!["tag".to_string()]);
            }
        }
    };
    report(&c, &model, "unindexed", false);
    // Declare indexes over existing sealed and memory segments.
    for (field, t) in [("tag", FieldType::Keyword), ("price", FieldType::Integer), ("meta.cluster", FieldType::Keyword)] {
        assert!(c.create_payload_index(FieldSpec { field: field.into(), field_type: t }).unwrap());
    }
    assert!(!c.create_payload_index(FieldSpec { field: "tag".into(), field_type: FieldType::Keyword }).unwrap(), "the same again changes nothing");
    assert!(c.create_payload_index(FieldSpec { field: "tag".into(), field_type: FieldType::Integer }).is_err(), "another type is refused");
    // More writes: new segments get the indexes; replacements and deletes.
    add(&c, points(1500, 10, 3200), &mut model);
    add(&c, points(600, 11, 0), &mut model);
    let mut rng = StdRng::seed_from_u64(5);
    let gone: Vec<u64> = model.keys().copied().filter(|_| rng.random_bool(0.2)).collect();
    c.delete(gone.clone()).unwrap();
    for id in &gone {
        model.remove(id);
    }
    c.optimise().unwrap();
    add(&c, points(300, 12, 9000), &mut model);
    let stats = c.stats();
    assert!(stats.segments.iter().any(|s| s.kind == "sealed") && stats.segments.iter().any(|s| s.kind != "sealed" && s.points > 0), "{stats:?}");
    report(&c, &model, "indexed", true);
    // Each sealed segment keeps its payload indexes in files beside it, one
    // a declared index; one of them damaged is rebuilt (and written again)
    // by the next opening.
    let seg_dir = dir.path().join("f/segments");
    let pidx = || -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(&seg_dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.to_string_lossy().contains(".pidx-")).collect();
        v.sort();
        v
    };
    let sealed = |c: &vectorwise_store::Collection| c.stats().segments.iter().filter(|s| s.kind == "sealed").count();
    assert_eq!(pidx().len(), 3 * sealed(&c));
    let victim = pidx()[0].clone();
    let mut damaged = std::fs::read(&victim).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x40;
    std::fs::write(&victim, &damaged).unwrap();
    // Reopen: indexes come back from the manifest.
    drop(c);
    store.close_and_wait();
    drop(store);
    let store = Store::open(dir.path(), SyncMode::Always).unwrap();
    let c = store.get("f").unwrap();
    c.pause_optimiser();
    assert_eq!(c.stats().payload_indexes.len(), 3);
    assert_ne!(std::fs::read(&victim).unwrap(), damaged, "the damaged file was rebuilt");
    report(&c, &model, "reopened", true);
    c.drop_payload_index("price").unwrap();
    assert_eq!(pidx().len(), 2 * sealed(&c), "a dropped index's files go at the checkpoint");
    assert!(c.drop_payload_index("price").is_err());
    let f = &filters()[2].1;
    let (exact, unindexed) = check(&c, &model, f, SearchRequest::RecallTarget(1.0));
    assert!(exact > 0.999);
    assert_eq!(unindexed, vec!["price".to_string()]);
    // A file removed (as a checkpoint running while an index is declared
    // removes the new index's): the next declaration writes every missing one.
    std::fs::remove_file(&pidx()[0]).unwrap();
    assert!(c.create_payload_index(FieldSpec { field: "price".into(), field_type: FieldType::Integer }).unwrap());
    assert_eq!(pidx().len(), 3 * sealed(&c), "a declaration writes every missing file");
    drop(c);
    store.close_and_wait();
}

/// A point re-upserted while filtered searches run is always seen exactly
/// once: `has_id` never misses it, `must_not has_id` never returns it, and
/// no search returns an id twice (the reviewer's race: a search located ids
/// under the lock, then read segments the writer had changed).
#[test]
fn a_point_replaced_during_searches_is_seen_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), SyncMode::Interval(std::time::Duration::from_millis(50))).unwrap();
    let (c, _) = store.create("r", CollectionConfig { seal_points: 300, ..CollectionConfig::new(2, Metric::L2) }).unwrap();
    let point = |id: u64| NewPoint { id: id.into(), vector: vec![id as f32, 0.0], payload: Some(json!({"g": 1})) };
    c.upsert((0..1000).map(point).collect()).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    // Stops the writers however the searches end: a failed assertion must
    // be reported, not leave the scope waiting for them forever.
    struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        for w in 0..2u64 {
            let (c, stop) = (&c, &stop);
            s.spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // id 7 over and over, and other points so segments seal.
                    c.upsert(vec![point(7), point(100 + (i * 2 + w) % 800)]).unwrap();
                    i += 1;
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
            });
        }
        let search = |f: Filter, k: usize| {
            let opts = SearchOptions {
                k,
                request: SearchRequest::Profile(Profile::Balanced),
                with_payload: false,
                with_vector: false,
                payload_budget: 0,
                filter: Some(std::sync::Arc::new(f)),
            };
            c.search(&[7.0, 0.0], &opts).unwrap().hits.iter().map(|h| h.id.as_num().unwrap()).collect::<Vec<u64>>()
        };
        // 1000 rounds, or as many as 20 s allow on a loaded machine (at least
        // 50): the writers run all along, and their segments pile up while
        // the searches are slow.
        let started = std::time::Instant::now();
        let _stop = StopOnDrop(&stop);
        for round in 0..1000 {
            if round >= 50 && started.elapsed() > std::time::Duration::from_secs(20) {
                break;
            }
            let must = search(Filter { must: vec![Condition::HasId(vec![7])], ..Default::default() }, 5);
            assert_eq!(must, vec![7]);
            let not = search(Filter { must_not: vec![Condition::HasId(vec![7])], ..Default::default() }, 50);
            assert!(!not.contains(&7), "{not:?}");
            let mut ids = not.clone();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), not.len(), "an id twice: {not:?}");
            assert_eq!(not.len(), 50);
        }
    });
    c.close();
}

/// A filter deciding too many conditions from payloads over too many points
/// is refused (naming the keys to index) instead of holding a search thread
/// for seconds; with an index on its key the same filter is answered.
#[test]
fn a_filter_past_the_payload_check_budget_is_refused_until_its_key_is_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, c) = collection(dir.path(), "b", 100_000);
    let n = 10_000;
    c.upsert(points(n, 5, 0)).unwrap();
    c.optimise().unwrap();
    // Each condition reads every point's payload: conditions × points over the budget.
    let conditions = vectorwise_store::MAX_PAYLOAD_CHECKS / n + 1;
    let range = |lo: usize| Condition::Range { key: key("price"), range: NumRange { gte: Some(lo as f64), lt: Some(lo as f64 + 0.5), ..Default::default() } };
    let costly = Filter { should: (0..conditions).map(range).collect(), ..Default::default() };
    let opts = SearchOptions {
        k: 5,
        request: SearchRequest::Profile(Profile::Balanced),
        with_payload: false,
        with_vector: false,
        payload_budget: usize::MAX,
        filter: Some(std::sync::Arc::new(costly)),
    };
    let q = vec![0.0f32; DIM];
    match c.search(&q, &opts) {
        Err(vectorwise_store::Error::Invalid { loc, reason }) => {
            assert_eq!(format!("{loc:?}"), "[Field(\"filter\")]");
            assert!(reason.contains("price") && reason.contains("payload index"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let batch = c.search_many(&[q.clone(), q.clone()], &opts);
    let refused = match &batch {
        Err(vectorwise_store::Error::Invalid { .. }) => true,
        Ok(each) => each.iter().all(|r| matches!(r, Err(vectorwise_store::Error::Invalid { .. }))),
        Err(_) => false,
    };
    assert!(refused, "a batch too: {batch:?}");
    // One condition fewer than the budget allows is answered.
    let within = Filter { should: (0..conditions - 2).map(range).collect(), ..Default::default() };
    assert!(c.search(&q, &SearchOptions { filter: Some(std::sync::Arc::new(within)), ..opts.clone() }).is_ok());
    c.create_payload_index(FieldSpec { field: "price".into(), field_type: FieldType::Integer }).unwrap();
    let found = c.search(&q, &opts).unwrap();
    assert_eq!(found.filter.unwrap().unindexed, Vec::<String>::new());
}
