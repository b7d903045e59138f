//! Queries unlike the data the index was calibrated on: every profile keeps
//! its promise (within 0.01) on random unit vectors, on rows drowned in
//! noise, and on another source (points of clusters the index does not
//! hold), for the graph, the exhaustive scan and the partitioned scan; and
//! queries like the data are not widened.

use std::collections::HashSet;
use vectorwise_index::calibrate::CalibrateOptions;
use vectorwise_index::hnsw::BuildOptions;
use vectorwise_index::scan::ScanOptions;
use vectorwise_index::{Index, IndexOptions, Matrix, Method, Metric, Profile, dataset};

const DIM: usize = 32;
const K: usize = 10;

/// Rows of `clusters` Gaussian clusters (centres from `seed`), unit length.
fn clustered_unit(n: usize, seed: u64, point_seed: u64) -> Matrix {
    let mut m = dataset::clustered(n, DIM, 100, seed, point_seed).into_vec();
    for row in m.chunks_exact_mut(DIM) {
        vectorwise_index::distance::normalize(row);
    }
    Matrix::new(DIM, m).unwrap()
}

/// Rows of `base` with Gaussian noise of `sigma` per dimension (0.18 is
/// the spread of a unit vector's coordinates at 32 dimensions), unit length.
fn drowned(base: &Matrix, count: usize, sigma: f32) -> Matrix {
    let noise = dataset::sphere(count, DIM, 41).into_vec();
    let mut out = Vec::with_capacity(count * DIM);
    for (i, z) in noise.chunks_exact(DIM).enumerate() {
        let row = base.row(i * 37 % base.len());
        // A unit vector's coordinates times √DIM are about standard normal.
        let start = out.len();
        out.extend(row.iter().zip(z).map(|(x, z)| x + sigma * z * (DIM as f32).sqrt()));
        vectorwise_index::distance::normalize(&mut out[start..]);
    }
    Matrix::new(DIM, out).unwrap()
}

fn build(dir: &std::path::Path, base: &Matrix, name: &str, method: Method, lists: usize) -> Index {
    let path = dir.join(format!("{name}.vwi"));
    let graph = (method == Method::Hnsw).then(BuildOptions::default);
    let scan = Some(ScanOptions { dsub: 4, seed: 3, lists });
    let opts = IndexOptions { metric: Metric::Cosine, graph, scan, default_method: method };
    vectorwise_index::build(base, &path, &opts, &|_| {}).unwrap();
    let index = Index::open(&path).unwrap();
    vectorwise_index::calibrate::calibrate_in_place(&index, &CalibrateOptions::default()).unwrap();
    Index::open(&path).unwrap()
}

/// Mean recall@K of `params` over `queries`, against exact search.
fn recall(index: &Index, queries: &Matrix, params: &vectorwise_index::SearchParams) -> f64 {
    let mut total = 0.0;
    for q in queries.rows() {
        let truth: HashSet<u64> = index.exact_search(q, K).unwrap().iter().map(|n| n.id).collect();
        let got = index.search(q, K, params).unwrap();
        let unique: HashSet<u64> = got.iter().map(|n| n.id).collect();
        assert!(got.len() == K && unique.len() == K, "{K} distinct answers: {got:?}");
        total += got.iter().filter(|n| truth.contains(&n.id)).count() as f64 / K as f64;
    }
    total / queries.len() as f64
}

#[test]
fn every_profile_keeps_its_promise_on_queries_unlike_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let base = clustered_unit(10_000, 7, 1);
    let sets = [
        ("random unit vectors", dataset::sphere(200, DIM, 11)),
        ("rows drowned in noise", drowned(&base, 200, 0.5)),
        ("another source", clustered_unit(200, 8, 5)),
    ];
    let indexes = [
        ("graph", build(dir.path(), &base, "graph", Method::Hnsw, 0)),
        ("exhaustive scan", build(dir.path(), &base, "scan", Method::Scan, 0)),
        ("partitioned scan", build(dir.path(), &base, "lists", Method::Scan, 100)),
    ];
    let mut failures = Vec::new();
    for (index_name, index) in &indexes {
        for (set_name, queries) in &sets {
            for profile in Profile::ALL {
                let params = index.calibration().unwrap().for_target(K, profile.target()).params;
                if params.method == Method::Exact {
                    continue;
                }
                let delivered = recall(index, queries, &params);
                if delivered < profile.target() - 0.01 {
                    failures.push(format!("{index_name}, {set_name}, {profile} ({params}): {delivered:.3}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "below the promise:\n{}", failures.join("\n"));
}

/// Queries like the data keep the cheap plan: the contrast rule
/// ([`vectorwise_index::Calibration::is_hard`]: half-way from 1 to the
/// calibration queries' 1st percentile) holds for few of them, judged on the
/// exact answers (a search's answer is never nearer), and for every random
/// unit vector.
#[test]
fn queries_like_the_data_are_not_widened() {
    let dir = tempfile::tempdir().unwrap();
    let base = clustered_unit(10_000, 7, 1);
    let index = build(dir.path(), &base, "graph", Method::Hnsw, 0);
    let c = index.calibration().unwrap();
    // Cosine: squared L2 between unit vectors, the space's distances.
    let exact = |q: &[f32]| -> Vec<vectorwise_index::topk::Scored> {
        index.exact_search(q, K).unwrap().iter().enumerate().map(|(i, n)| vectorwise_index::topk::Scored { distance: n.distance, offset: i as u32 }).collect()
    };
    let unit = |q: &[f32]| {
        let mut u = q.to_vec();
        vectorwise_index::distance::normalize(&mut u);
        u
    };
    let like = clustered_unit(300, 7, 9);
    let hard_like = like.rows().filter(|q| c.is_hard(&unit(q), K, &exact(q))).count();
    assert!(hard_like <= 3, "{hard_like} of 300 queries like the data are hard");
    let random = dataset::sphere(100, DIM, 12);
    let hard_random = random.rows().filter(|q| c.is_hard(&unit(q), K, &exact(q))).count();
    assert_eq!(hard_random, 100, "random unit vectors are all hard");
}

/// A segment with deletions searches for more than k and drops the deleted:
/// the widening still judges the answer at the user's k, and random queries
/// keep the promise among the live points.
#[test]
fn deletions_keep_the_widening_and_the_promise() {
    let dir = tempfile::tempdir().unwrap();
    let base = clustered_unit(10_000, 7, 1);
    let index = build(dir.path(), &base, "lists", Method::Scan, 100);
    let params = index.calibration().unwrap().for_target(K, Profile::Balanced.target()).params;
    // Every tenth offset deleted.
    let deleted = |o: u32| o % 10 == 3;
    let deleted_ids: HashSet<u64> = (0..index.len() as u32).filter(|&o| deleted(o)).map(|o| index.ids()[o as usize]).collect();
    let queries = dataset::sphere(100, DIM, 13);
    let mut total = 0.0;
    for q in queries.rows() {
        let truth: Vec<u64> = index.exact_search(q, 3 * K).unwrap().iter().map(|n| n.id).filter(|id| !deleted_ids.contains(id)).take(K).collect();
        let got = index.search_live(q, K, &params, &deleted, deleted_ids.len()).unwrap();
        assert_eq!(got.len(), K);
        assert!(got.iter().all(|(o, n)| !deleted(*o) && !deleted_ids.contains(&n.id)));
        total += got.iter().filter(|(_, n)| truth.contains(&n.id)).count() as f64 / K as f64;
    }
    let recall = total / queries.len() as f64;
    assert!(recall >= Profile::Balanced.target() - 0.01, "random unit vectors among live points: {recall:.3}");
}

/// Under a filter too (half the points, uncorrelated with the data): random
/// unit vectors are widened (at least 90 of 100) and keep every method's
/// balanced promise; queries like the data are not (at most 10 of 100).
/// Before filtered searches widened, none was: recall 0.953–0.994 here, and
/// 0.873 against 0.951 promised on a 250k partition (review, HTTP).
#[test]
fn filtered_searches_keep_the_widening_and_the_promise() {
    let dir = tempfile::tempdir().unwrap();
    let base = clustered_unit(10_000, 7, 1);
    let queries = dataset::sphere(100, DIM, 17);
    let mut failures = Vec::new();
    for (name, method, lists) in [("graph", Method::Hnsw, 0), ("exhaustive scan", Method::Scan, 0), ("partitioned scan", Method::Scan, 100)] {
        let index = build(dir.path(), &base, name.replace(' ', "-").as_str(), method, lists);
        let allow = vectorwise_index::AllowSet::from_offsets(index.len(), (0..index.len() as u32).filter(|o| o * 7 % 2 == 0));
        let params = index.calibration().unwrap().for_target(K, Profile::Balanced.target()).params;
        let (mut total, mut widened) = (0.0, 0);
        for q in queries.rows() {
            let truth: Vec<u64> = index
                .exact_search(q, index.len())
                .unwrap()
                .iter()
                .filter(|n| allow.contains(index.ids().iter().position(|&id| id == n.id).unwrap() as u32))
                .take(K)
                .map(|n| n.id)
                .collect();
            let ((got, _path), was_widened) = vectorwise_index::widened_in(|| index.search_allowed(q, K, &params, &allow).unwrap());
            widened += usize::from(was_widened);
            assert_eq!(got.len(), K);
            total += got.iter().filter(|(_, n)| truth.contains(&n.id)).count() as f64 / K as f64;
        }
        let recall = total / queries.len() as f64;
        // Queries like the data (other points of the same clusters) keep the cheap plan.
        let like = clustered_unit(100, 7, 99);
        let like_widened = like.rows().filter(|q| vectorwise_index::widened_in(|| index.search_allowed(q, K, &params, &allow).unwrap()).1).count();
        eprintln!("{name} ({params}): {recall:.3}, {widened} of 100 widened; {like_widened} of 100 like the data");
        if recall < Profile::Balanced.target() - 0.01 || widened < 90 || like_widened > 10 {
            failures.push(format!("{name} ({params}): {recall:.3}, {widened} of 100 widened; {like_widened} of 100 like the data"));
        }
    }
    assert!(failures.is_empty(), "random unit vectors under a 50 % filter, below the promise:\n{}", failures.join("\n"));
}

/// A batch says of each query what a single search of it says: whether it
/// was widened, and the same answer; for the graph, the exhaustive scan and
/// the partitioned scan, on random vectors mixed with queries like the data.
#[test]
fn batches_say_which_queries_were_widened_as_single_searches_do() {
    let dir = tempfile::tempdir().unwrap();
    let base = clustered_unit(10_000, 7, 1);
    let random = dataset::sphere(20, DIM, 13);
    let like = clustered_unit(20, 7, 14);
    let mixed: Vec<f32> = random.rows().zip(like.rows()).flat_map(|(r, l)| r.iter().chain(l).copied()).collect();
    for (name, method, lists) in [("graph", Method::Hnsw, 0), ("scan", Method::Scan, 0), ("lists", Method::Scan, 100)] {
        let index = build(dir.path(), &base, name, method, lists);
        let params = index.calibration().unwrap().for_target(K, Profile::Balanced.target()).params;
        let batch = index.search_batch_flagged(&mixed, K, &params).unwrap();
        let mut flagged = 0;
        for (i, (q, (hits, widened))) in mixed.chunks_exact(DIM).zip(&batch).enumerate() {
            let (single, single_widened) = vectorwise_index::widened_in(|| index.search(q, K, &params).unwrap());
            assert_eq!((&single, single_widened), (hits, *widened), "{name}, query {i} ({params})");
            flagged += usize::from(*widened);
        }
        let random_flagged = batch.iter().step_by(2).filter(|(_, w)| *w).count();
        assert!(random_flagged >= 18, "{name}: {random_flagged} of 20 random queries widened");
        assert!(flagged - random_flagged <= 2, "{name}: {} of 20 queries like the data widened", flagged - random_flagged);
    }
}
