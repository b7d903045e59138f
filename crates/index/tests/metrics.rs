//! Every metric with every method, against brute-force truth computed here
//! in f64 on the user's vectors: clustered data whose rows are scaled by
//! factors from 0.1 to 10 (log-uniform), the case where normalising outside
//! the engine answered wrong. Fixed seeds; recall thresholds; distances
//! exact for the metric; ids given by the user.
//!
//! Norms spread over two orders of magnitude are hard for the quantised
//! stages (one SQ8 range and one set of 4-bit codebooks for all points: the
//! small points share codes), so the fixed settings here are deep ones
//! (rerank 400); what a profile costs on such data is the calibration's
//! business, checked last.

use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use vectorwise_index::hnsw::BuildOptions;
use vectorwise_index::scan::ScanOptions;
use vectorwise_index::{Error, Index, IndexOptions, Matrix, Method, Metric, Points, SearchParams, dataset};

const DIM: usize = 32;
const N: usize = 4000;
const K: usize = 10;

/// `count` clustered rows, each scaled by 10^u, u uniform in [-1, 1].
fn scaled_clustered(count: usize, point_seed: u64) -> Matrix {
    let base = dataset::clustered(count, DIM, 40, 22, point_seed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(point_seed ^ 0x5ca1e);
    let data = base.rows().flat_map(|r| {
        let s = 10f32.powf(rng.random_range(-1.0f32..1.0));
        r.iter().map(move |x| x * s).collect::<Vec<_>>()
    });
    Matrix::new(DIM, data.collect()).unwrap()
}

/// The metric's distance, in f64, from the user's query to the user's row.
fn distance(metric: Metric, q: &[f32], x: &[f32]) -> f64 {
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum::<f64>();
    match metric {
        Metric::L2 => q.iter().zip(x).map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2)).sum(),
        Metric::Ip => -dot(q, x),
        Metric::Cosine => 2.0 - 2.0 * dot(q, x) / (dot(q, q).sqrt() * dot(x, x).sqrt()),
    }
}

fn truth(metric: Metric, base: &Matrix, q: &[f32], k: usize) -> Vec<usize> {
    let mut d: Vec<(f64, usize)> = base.rows().enumerate().map(|(i, x)| (distance(metric, q, x), i)).collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    d.into_iter().take(k).map(|x| x.1).collect()
}

/// User ids: not row numbers, not in row order.
fn id_of(row: usize) -> u64 {
    (row as u64).wrapping_mul(2_654_435_761) % 1_000_000_007 + 5
}

struct Built {
    _dir: tempfile::TempDir,
    graph_and_codes: Index,
    partitioned: Index,
}

fn build(metric: Metric, base: &Matrix, ids: &[u64]) -> Built {
    let dir = tempfile::tempdir().unwrap();
    let points = Points { vectors: base, ids: Some(ids), keys: false };
    let both = IndexOptions {
        metric,
        // One thread: the same graph on every run.
        graph: Some(BuildOptions { m: 16, ef_construction: 100, threads: Some(1), seed: 3 }),
        scan: Some(ScanOptions { dsub: 2, seed: 3, lists: 0 }),
        default_method: Method::Hnsw,
    };
    let a = dir.path().join("both.vwi");
    vectorwise_index::build(points, &a, &both, &|_| {}).unwrap();
    let lists = IndexOptions {
        metric,
        graph: None,
        scan: Some(ScanOptions { dsub: 2, seed: 3, lists: 32 }),
        default_method: Method::Scan,
    };
    let b = dir.path().join("lists.vwi");
    vectorwise_index::build(points, &b, &lists, &|_| {}).unwrap();
    Built { graph_and_codes: Index::open(&a).unwrap(), partitioned: Index::open(&b).unwrap(), _dir: dir }
}

/// Mean recall@K of `params` on `index` over `queries`, checking on the way
/// that every distance is the metric's own for the returned id and that
/// they ascend.
fn recall(metric: Metric, index: &Index, base: &Matrix, ids: &[u64], queries: &Matrix, params: &SearchParams) -> f64 {
    let row_of: std::collections::HashMap<u64, usize> = ids.iter().enumerate().map(|(r, &id)| (id, r)).collect();
    let mut total = 0.0;
    for q in queries.rows() {
        let want: HashSet<u64> = truth(metric, base, q, K).into_iter().map(id_of).collect();
        let hits = index.search(q, K, params).unwrap();
        assert_eq!(hits.len(), K);
        for pair in hits.windows(2) {
            assert!(pair[0].distance <= pair[1].distance, "{metric} {params}: distances ascend");
        }
        for h in &hits {
            let exact = distance(metric, q, base.row(row_of[&h.id]));
            let tolerance = 1e-4 * exact.abs().max(1.0);
            assert!((f64::from(h.distance) - exact).abs() <= tolerance, "{metric} {params}: id {} at {}, exactly {exact}", h.id, h.distance);
        }
        total += hits.iter().filter(|h| want.contains(&h.id)).count() as f64 / K as f64;
    }
    total / queries.len() as f64
}

#[test]
fn every_metric_and_method_finds_the_true_neighbours_of_scaled_data() {
    let base = scaled_clustered(N, 1);
    let queries = scaled_clustered(60, 2);
    let ids: Vec<u64> = (0..N).map(id_of).collect();
    for metric in Metric::ALL {
        let built = build(metric, &base, &ids);
        // Measured (recall@10, 60 queries): l2 1.0 everywhere; ip hnsw 0.998,
        // scan 0.993, 24 of 32 lists 0.997 (16 lists: 0.917: the lists are
        // cells of the augmented space, ranked by L2 to it); cosine 1.0.
        for (index, params, floor) in [
            (&built.graph_and_codes, SearchParams::exact(), 1.0),
            (&built.graph_and_codes, SearchParams::hnsw(256), 0.97),
            (&built.graph_and_codes, SearchParams::scan(400), 0.97),
            (&built.partitioned, SearchParams::probe(24, 400), 0.97),
        ] {
            let r = recall(metric, index, &base, &ids, &queries, &params);
            eprintln!("{metric:>6} {params:<20} recall@{K} {r:.4}");
            assert!(r >= floor, "{metric} {params}: recall@{K} {r:.4} < {floor}");
        }
        assert_eq!(built.graph_and_codes.metric(), metric);
        assert_eq!(built.graph_and_codes.dim(), DIM);
    }
}

/// Under l2 and cosine a stored row's nearest point is itself, at distance
/// 0, whatever its norm (the bug this replaces answered other rows).
#[test]
fn a_stored_row_finds_itself_first_under_l2_and_cosine() {
    let base = scaled_clustered(N, 1);
    let ids: Vec<u64> = (0..N).map(id_of).collect();
    for metric in [Metric::L2, Metric::Cosine] {
        let built = build(metric, &base, &ids);
        for row in (0..N).step_by(97) {
            for (index, params) in [
                (&built.graph_and_codes, SearchParams::exact()),
                (&built.graph_and_codes, SearchParams::hnsw(256)),
                (&built.graph_and_codes, SearchParams::scan(400)),
                (&built.partitioned, SearchParams::probe(4, 400)),
            ] {
                let hits = index.search(base.row(row), 5, &params).unwrap();
                assert_eq!(hits[0].id, id_of(row), "{metric} {params} row {row}");
                assert!(hits[0].distance.abs() < 1e-3, "{metric} {params} row {row}: {}", hits[0].distance);
            }
        }
        // The user's vector comes back by id: as given under l2, unit under cosine.
        let v = built.partitioned.vector_of(id_of(5)).unwrap();
        match metric {
            Metric::L2 => assert_eq!(v, base.row(5)),
            _ => assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5),
        }
    }
}

#[test]
fn ids_round_trip_and_bad_ids_or_zero_rows_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = scaled_clustered(200, 3);
    let opts = IndexOptions { graph: None, scan: Some(ScanOptions { dsub: 4, seed: 1, lists: 4 }), default_method: Method::Scan, ..Default::default() };
    let path = dir.path().join("i.vwi");
    let ids: Vec<u64> = (0..200).map(|r| vectorwise_index::MAX_ID - r).collect();
    vectorwise_index::build(Points { vectors: &base, ids: Some(&ids), keys: false }, &path, &opts, &|_| {}).unwrap();
    let index = Index::open(&path).unwrap();
    for row in [0usize, 57, 199] {
        assert_eq!(index.offset_of(ids[row]).map(|o| index.ids()[o as usize]), Some(ids[row]));
        assert_eq!(index.vector_of(ids[row]).unwrap(), base.row(row));
        assert_eq!(index.exact_search(base.row(row), 1).unwrap()[0].id, ids[row]);
    }
    assert_eq!(index.offset_of(7), None);

    let mut dup = ids.clone();
    dup[150] = dup[20];
    let e = vectorwise_index::build(Points { vectors: &base, ids: Some(&dup), keys: false }, &path, &opts, &|_| {}).unwrap_err();
    assert!(matches!(e, Error::DuplicateId { first: 20, second: 150, .. }), "{e}");
    let e = vectorwise_index::build(Points { vectors: &base, ids: Some(&ids[1..]), keys: false }, &path, &opts, &|_| {}).unwrap_err();
    assert!(e.to_string().contains("199 ids for 200 vectors"), "{e}");
    let mut huge = ids.clone();
    huge[3] = 1 << 63;
    let e = vectorwise_index::build(Points { vectors: &base, ids: Some(&huge), keys: false }, &path, &opts, &|_| {}).unwrap_err();
    assert!(e.to_string().contains("at row 3 is above 9223372036854775807"), "{e}");

    let mut zero = base.as_slice().to_vec();
    zero[13 * DIM..14 * DIM].fill(0.0);
    let zero = Matrix::new(DIM, zero).unwrap();
    let cosine = IndexOptions { metric: Metric::Cosine, ..opts };
    let e = vectorwise_index::build(&zero, &path, &cosine, &|_| {}).unwrap_err();
    assert!(matches!(e, Error::ZeroVector { index: 13 }), "{e}");
    // The file that was there is untouched by the refused builds.
    let mut kept = Index::open(&path).unwrap().ids().to_vec();
    kept.sort_unstable();
    let mut given = ids.clone();
    given.sort_unstable();
    assert_eq!(kept, given);
    // l2 and ip take the zero row, and a zero query.
    for metric in [Metric::L2, Metric::Ip] {
        vectorwise_index::build(&zero, &path, &IndexOptions { metric, ..opts }, &|_| {}).unwrap();
        let index = Index::open(&path).unwrap();
        assert_eq!(index.search(&[0.0; DIM], 3, &SearchParams::exact()).unwrap().len(), 3);
    }
}

/// The profiles keep their promise on this data under every metric: the
/// calibration (leave-one-out on the index's own points) finds how deep each
/// method must go, and held-out queries get at least the promised recall
/// (less 0.02 for the sampling error of 100 queries).
#[test]
fn calibrated_profiles_keep_their_promise_under_every_metric() {
    let base = scaled_clustered(N, 1);
    let queries = scaled_clustered(100, 4);
    let ids: Vec<u64> = (0..N).map(id_of).collect();
    let calibration = vectorwise_index::calibrate::CalibrateOptions::default();
    for metric in Metric::ALL {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.vwi");
        // What `auto` builds for ip (the exhaustive scan); partitioned for the others.
        let lists = if metric == Metric::Ip { 0 } else { 32 };
        let opts = IndexOptions {
            metric,
            graph: None,
            scan: Some(ScanOptions { dsub: 4, seed: 5, lists }),
            default_method: Method::Scan,
        };
        vectorwise_index::build_calibrated(Points { vectors: &base, ids: Some(&ids), keys: false }, &path, &opts, &calibration, &|_| {}).unwrap();
        let index = Index::open(&path).unwrap();
        for profile in [vectorwise_index::Profile::Balanced, vectorwise_index::Profile::HighAccuracy] {
            let plan = index.plan(K, vectorwise_index::plan::SearchRequest::Profile(profile));
            let r = recall(metric, &index, &base, &ids, &queries, &plan.params);
            eprintln!("{metric:>6} {:<14} {:<22} recall@{K} {r:.4} (expected {:?})", profile.as_str(), plan.params.to_string(), plan.expected_recall);
            assert!(r >= profile.target() - 0.02, "{metric} {profile} ({}): recall@{K} {r:.4}", plan.params);
        }
    }
}

/// Under `ip` the answer does not depend on the query's length (the engine
/// scales the query; the order by inner product is the same at any positive
/// scale), on the scan and on exact search alike; `auto` builds the scan.
#[test]
fn inner_product_answers_do_not_depend_on_the_query_scale() {
    let base = scaled_clustered(N, 1);
    let ids: Vec<u64> = (0..N).map(id_of).collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ip.vwi");
    let request = vectorwise_index::plan::BuildRequest { metric: Metric::Ip, ..Default::default() };
    let plan = vectorwise_index::plan::plan_build(&base, &request).unwrap();
    assert_eq!((plan.options.graph, plan.lists()), (None, 0), "ip: the exhaustive scan");
    vectorwise_index::build(Points { vectors: &base, ids: Some(&ids), keys: false }, &path, &plan.options, &|_| {}).unwrap();
    let index = Index::open(&path).unwrap();
    for q in scaled_clustered(20, 7).rows() {
        let want: Vec<u64> = truth(Metric::Ip, &base, q, K).into_iter().map(id_of).collect();
        for params in [SearchParams::exact(), SearchParams::scan(20)] {
            let at = |s: f32| -> Vec<u64> {
                let scaled: Vec<f32> = q.iter().map(|x| x * s).collect();
                index.search(&scaled, K, &params).unwrap().iter().map(|h| h.id).collect()
            };
            let one = at(1.0);
            assert_eq!(at(1e-6), one, "{params}");
            assert_eq!(at(1e6), one, "{params}");
            let found = one.iter().filter(|id| want.contains(id)).count();
            assert!(found >= 9, "{params}: {found} of {K}");
        }
    }
}

/// Under l2 and ip, values whose squared norm reaches 1e34 would overflow
/// f32 distances: a build is refused naming the row, a query is refused.
#[test]
fn vectors_too_large_for_f32_distances_are_refused() {
    let mut data = scaled_clustered(100, 8).into_vec();
    data[40 * DIM..41 * DIM].fill(1e20);
    let big = Matrix::new(DIM, data).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.vwi");
    for metric in [Metric::L2, Metric::Ip] {
        let opts = IndexOptions { metric, graph: None, scan: Some(ScanOptions::default()), default_method: Method::Scan };
        let e = vectorwise_index::build(&big, &path, &opts, &|_| {}).unwrap_err();
        assert!(matches!(e, Error::TooLarge { index: 40 }), "{metric}: {e}");
    }
    let opts = IndexOptions { graph: None, scan: Some(ScanOptions::default()), default_method: Method::Scan, ..Default::default() };
    vectorwise_index::build(&scaled_clustered(100, 8), &path, &opts, &|_| {}).unwrap();
    let index = Index::open(&path).unwrap();
    assert!(matches!(index.search(&[1e20; DIM], 3, &SearchParams::exact()), Err(Error::TooLarge { .. })));
    assert_eq!(index.search(&[1e15; DIM], 3, &SearchParams::exact()).unwrap().len(), 3);
}

/// Under l2 and ip, a non-zero point whose squared norm is under 1e-20
/// would make every f32 squared difference between such points a denormal
/// or 0, so distances tie and the answer is the lowest ids: admission
/// (`refuse_too_small`, `prepare_point`) refuses it, naming the row. The
/// zero vector is admitted; cosine takes any scale. Queries may be of any
/// scale, and a build of points already admitted does not fail on them.
#[test]
fn points_too_small_for_f32_distances_are_refused_at_admission() {
    let mut data = scaled_clustered(100, 8).into_vec();
    data[40 * DIM..41 * DIM].fill(1e-25);
    data[41 * DIM..42 * DIM].fill(0.0);
    let tiny = Matrix::new(DIM, data).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.vwi");
    for metric in [Metric::L2, Metric::Ip] {
        assert!(matches!(metric.refuse_too_small(&tiny), Err(Error::TooSmall { index: 40 })), "{metric}");
        assert!(metric.prepare_point(&[1e-25; DIM], 7).is_err_and(|e| matches!(e, Error::TooSmall { index: 7 })));
        assert!(metric.prepare_point(&[f32::NAN; DIM], 7).is_err_and(|e| matches!(e, Error::NonFinite { index: 7 })));
        assert!(metric.prepare_point(&[0.0; DIM], 7).is_ok());
        assert!(metric.prepare_point(&[1e-9; DIM], 7).is_ok());
        assert!(metric.prepare_point_query(&[1e-25; DIM], DIM).is_ok(), "{metric}: a query of any scale");
        let opts = IndexOptions { metric, graph: None, scan: Some(ScanOptions::default()), default_method: Method::Scan };
        vectorwise_index::build(&tiny, &path, &opts, &|_| {}).unwrap();
    }
    assert!(Metric::Cosine.refuse_too_small(&tiny).is_ok());
    assert!(Metric::Cosine.prepare_point(&[1e-25; DIM], 7).is_ok());

    // A query of tiny scale against points of normal scale: as near every
    // point as the zero query, answered as the zero query is.
    let opts = IndexOptions { graph: None, scan: Some(ScanOptions::default()), default_method: Method::Scan, ..Default::default() };
    vectorwise_index::build(&scaled_clustered(100, 8), &path, &opts, &|_| {}).unwrap();
    let index = Index::open(&path).unwrap();
    let ids = |q: &[f32]| index.search(q, 3, &SearchParams::exact()).unwrap().iter().map(|n| n.id).collect::<Vec<_>>();
    assert_eq!(ids(&[1e-25; DIM]), ids(&[0.0; DIM]));
}
