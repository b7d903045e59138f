//! Recall against exact search, fixed seeds, with thresholds (as hnswlib and
//! qdrant test theirs). Also checks that a written-and-reloaded index answers
//! exactly as the in-memory graph did.

use vectorwise_index::hnsw::{self, BuildOptions};
use vectorwise_index::visited::VisitedList;
use vectorwise_index::{Index, Matrix, SearchParams, dataset, distance, exact};

fn mean_recall(base: &Matrix, queries: &Matrix, k: usize, mut search: impl FnMut(&[f32]) -> Vec<u32>) -> f64 {
    let truth = exact::search_many(base.as_slice(), base.dim(), queries.as_slice(), k);
    let total: f64 = queries
        .rows()
        .zip(&truth)
        .map(|(q, t)| {
            let t: Vec<u32> = t.iter().map(|s| s.offset).collect();
            exact::recall_at(&search(q), &t, k)
        })
        .sum();
    total / queries.len() as f64
}

fn graph_search(base: &Matrix, graph: &hnsw::HnswGraph, ef: usize) -> impl FnMut(&[f32]) -> Vec<u32> {
    let view = graph.view();
    let mut visited = VisitedList::new(base.len());
    move |q| {
        hnsw::search(&view, 10, ef, &mut visited, |p| distance::l2_squared(base.row(p as usize), q), |_| {})
            .iter()
            .map(|s| s.offset)
            .collect()
    }
}

#[test]
fn sphere_20k_reaches_high_recall_at_high_ef() {
    // The demo's data: the hardest kind for graphs. At 20k points a wide beam
    // still finds almost all true neighbours.
    let base = dataset::sphere(20_000, 128, 1);
    let opts = BuildOptions { m: 16, ef_construction: 100, threads: None, seed: 1 };
    let graph = hnsw::builder::build(base.as_slice(), 128, &opts, &|_| {}).unwrap();
    let noisy = dataset::noisy_queries(base.as_slice(), 128, 200, 2);
    let random = dataset::sphere(200, 128, 3);
    let r_noisy = mean_recall(&base, &noisy, 10, graph_search(&base, &graph, 800));
    let r_random = mean_recall(&base, &random, 10, graph_search(&base, &graph, 800));
    eprintln!("sphere-20k recall@10: noisy {r_noisy:.3}, random {r_random:.3}");
    assert!(r_noisy >= 0.95, "noisy queries recall@10 {r_noisy}");
    assert!(r_random >= 0.95, "random queries recall@10 {r_random}");
    // A narrow beam must do worse on random queries: the test can tell ef apart.
    let r_narrow = mean_recall(&base, &random, 10, graph_search(&base, &graph, 16));
    assert!(r_narrow < r_random, "ef 16 {r_narrow} vs ef 800 {r_random}");
}

#[test]
fn clustered_data_reaches_high_recall_at_modest_ef() {
    let base = dataset::clustered(20_000, 64, 50, 7, 0);
    let queries = dataset::clustered(200, 64, 50, 7, 1);
    let opts = BuildOptions { m: 16, ef_construction: 100, threads: Some(2), seed: 7 };
    let graph = hnsw::builder::build(base.as_slice(), 64, &opts, &|_| {}).unwrap();
    let r = mean_recall(&base, &queries, 10, graph_search(&base, &graph, 64));
    eprintln!("clustered-20k recall@10 at ef 64: {r:.3}");
    assert!(r >= 0.95, "clustered recall@10 at ef 64: {r}");
}

#[test]
fn reloaded_index_answers_like_the_exact_search_and_the_built_graph() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.vwi");
    let base = dataset::sphere(3_000, 32, 11);
    let opts = BuildOptions { m: 8, ef_construction: 64, threads: Some(1), seed: 11 };
    let graph = hnsw::builder::build(base.as_slice(), 32, &opts, &|_| {}).unwrap();
    vectorwise_index::format::write(
        &path,
        &vectorwise_index::format::IndexParts {
            metric: vectorwise_index::Metric::L2,
            user_ids: false,
            dim: 32,
            vectors: base.as_slice(),
            ids: None,
            graph: Some(&graph),
            scan: None,
            default_method: vectorwise_index::Method::Hnsw,
            build_seconds: 1.5,
            calibration: None,
        },
    )
    .unwrap();
    let index = Index::open(&path).unwrap();
    assert_eq!((index.len(), index.dim()), (3_000, 32));
    assert_eq!(index.info().build_seconds, 1.5);
    let queries = dataset::sphere(50, 32, 12);
    let mut in_memory = graph_search(&base, &graph, 50);
    for q in queries.rows() {
        let loaded = index.search(q, 10, &SearchParams::hnsw(50)).unwrap();
        let ids: Vec<u32> = loaded.iter().map(|n| n.id as u32).collect();
        assert_eq!(ids, in_memory(q), "file and memory disagree");
        assert!(loaded.windows(2).all(|w| w[0].distance <= w[1].distance));
        for n in &loaded {
            let d = distance::l2_squared_scalar(base.row(n.id as usize), q);
            assert!((n.distance - d).abs() <= 1e-5 * d.max(1.0), "distance is exact squared L2");
        }
    }
    // With a beam as wide as the data, HNSW equals exact search.
    for q in queries.rows().take(10) {
        let approx = index.search(q, 10, &SearchParams::hnsw(3_000)).unwrap();
        let truth = index.exact_search(q, 10).unwrap();
        assert_eq!(approx.iter().map(|n| n.id).collect::<Vec<_>>(), truth.iter().map(|n| n.id).collect::<Vec<_>>());
    }
    // k beyond the point count returns every point once.
    let all = index.search(queries.row(0), 5_000, &SearchParams::hnsw(10)).unwrap();
    assert_eq!(all.len(), 3_000);
}

#[test]
fn tiny_indexes_work() {
    let dir = tempfile::tempdir().unwrap();
    for n in [1usize, 2, 5] {
        let path = dir.path().join(format!("{n}.vwi"));
        let base = dataset::sphere(n, 4, n as u64);
        vectorwise_index::build_index(&base, &path, &BuildOptions { m: 4, ef_construction: 8, threads: None, seed: 0 }, &|_| {})
            .unwrap();
        let index = Index::open(&path).unwrap();
        let hits = index.search(base.row(0), 10, &SearchParams::default()).unwrap();
        assert_eq!(hits.len(), n);
        assert_eq!(hits[0].id, 0);
        assert_eq!(hits[0].distance, 0.0);
    }
}

#[test]
fn search_rejects_bad_queries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.vwi");
    let base = dataset::sphere(10, 4, 0);
    vectorwise_index::build_index(&base, &path, &BuildOptions { m: 4, ef_construction: 8, threads: None, seed: 0 }, &|_| {})
        .unwrap();
    let index = Index::open(&path).unwrap();
    let p = SearchParams::default();
    assert!(matches!(
        index.search(&[1.0; 3], 1, &p),
        Err(vectorwise_index::Error::DimensionMismatch { expected: 4, actual: 3 })
    ));
    assert!(index.search(&[f32::NAN, 0.0, 0.0, 0.0], 1, &p).is_err());
    assert!(index.search(&[1.0; 4], 0, &p).is_err());
    assert!(index.search(&[1.0; 4], 1, &SearchParams::hnsw(0)).is_err());
}

/// Concurrent insertion must not orphan points: with a beam as wide as the
/// data, every point is found, and finds itself first. Built many times with
/// more threads than cores, so insertions interleave.
#[test]
fn parallel_builds_leave_no_point_unreachable() {
    let base = dataset::sphere(1_000, 128, 7);
    for round in 0..12 {
        let opts = BuildOptions { m: 16, ef_construction: 100, threads: Some(4), seed: round };
        let graph = hnsw::builder::build(base.as_slice(), 128, &opts, &|_| {}).unwrap();
        let view = graph.view();
        let mut visited = VisitedList::new(base.len());
        let found = hnsw::search(&view, 1_000, 1_000, &mut visited, |p| distance::l2_squared(base.row(p as usize), base.row(0)), |_| {});
        assert_eq!(found.len(), 1_000, "round {round}: {} points unreachable", 1_000 - found.len());
    }
}

#[test]
fn batch_search_matches_single_searches_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let base = dataset::sphere(2_000, 16, 7);
    let path = dir.path().join("b.vwi");
    vectorwise_index::build_index(&base, &path, &BuildOptions::default(), &|_| {}).unwrap();
    let index = Index::open(&path).unwrap();
    let queries = dataset::sphere(37, 16, 8);
    let params = SearchParams::default();
    let batch = index.search_batch(queries.as_slice(), 5, &params).unwrap();
    assert_eq!(batch.len(), 37);
    for (q, got) in queries.rows().zip(&batch) {
        assert_eq!(got, &index.search(q, 5, &params).unwrap());
    }
    assert!(index.search_batch(&queries.as_slice()[..17], 5, &params).is_err());
}

/// The quantised scan on unstructured data, where graphs struggle: recall@10
/// against exact search at two re-rank depths, fixed seeds.
#[test]
fn quantised_scan_recall_on_the_sphere() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.vwi");
    let base = dataset::sphere(20_000, 64, 21);
    let opts = vectorwise_index::IndexOptions { graph: None, ..Default::default() };
    vectorwise_index::build(&base, &path, &opts, &|_| {}).unwrap();
    let index = Index::open(&path).unwrap();
    let queries = dataset::sphere(200, 64, 22);
    let at = |rerank| {
        mean_recall(&base, &queries, 10, |q| {
            index.search(q, 10, &SearchParams::scan(rerank)).unwrap().iter().map(|n| n.id as u32).collect()
        })
    };
    let (shallow, deep) = (at(10), at(100));
    eprintln!("scan recall@10: {shallow} with 100 candidates, {deep} with 1000");
    assert!(deep >= 0.95, "scan recall@10 with 1000 candidates: {deep}");
    assert!(shallow >= 0.60 && shallow < deep, "scan recall@10 with 100 candidates: {shallow} (deep {deep})");
}

/// With scan codes in the file, HNSW walks on the SQ8 codes and re-ranks
/// exactly: same recall as the walk on f32 vectors, exact distances.
#[test]
fn graph_walk_on_codes_keeps_recall_and_returns_exact_distances() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("both.vwi");
    let base = dataset::clustered(20_000, 64, 50, 7, 0);
    let queries = dataset::clustered(200, 64, 50, 7, 1);
    let opts = vectorwise_index::IndexOptions {
        graph: Some(BuildOptions { m: 16, ef_construction: 100, threads: None, seed: 3 }),
        ..Default::default()
    };
    vectorwise_index::build(&base, &path, &opts, &|_| {}).unwrap();
    let index = Index::open(&path).unwrap();
    assert_eq!(index.info().default_method, vectorwise_index::Method::Hnsw);
    let r = mean_recall(&base, &queries, 10, |q| {
        let hits = index.search(q, 10, &SearchParams::default()).unwrap();
        for h in &hits {
            assert_eq!(h.distance, distance::l2_squared(base.row(h.id as usize), q));
        }
        hits.iter().map(|n| n.id as u32).collect()
    });
    assert!(r >= 0.95, "recall@10 walking the codes at ef 64: {r}");
}

/// The scan's batch path (several queries per pass over the codes) answers
/// exactly as one query at a time.
#[test]
fn scan_batches_match_single_scans() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.vwi");
    let base = dataset::sphere(5_000, 32, 31);
    let opts = vectorwise_index::IndexOptions { graph: None, ..Default::default() };
    vectorwise_index::build(&base, &path, &opts, &|_| {}).unwrap();
    let index = Index::open(&path).unwrap();
    let queries = dataset::sphere(21, 32, 32); // not a multiple of the group size
    for params in [SearchParams::default(), SearchParams::scan(3)] {
        let batch = index.search_batch(queries.as_slice(), 7, &params).unwrap();
        assert_eq!(batch.len(), 21);
        for (q, got) in queries.rows().zip(&batch) {
            assert_eq!(got, &index.search(q, 7, &params).unwrap());
        }
    }
    let mut bad = queries.as_slice().to_vec();
    bad[40] = f32::NAN;
    assert!(index.search_batch(&bad, 7, &SearchParams::default()).is_err());
}
