//! The partitioned scan (lists): ids survive the reordering, reading every
//! list is the exhaustive scan, a few lists keep recall on clustered data,
//! batch equals one by one, the partition survives the file, and its
//! calibration keeps the profiles' promises on held-out queries.

use std::collections::HashSet;
use vectorwise_index::calibrate::CalibrateOptions;
use vectorwise_index::scan::ScanOptions;
use vectorwise_index::{Index, IndexOptions, Matrix, Method, Profile, SearchParams, dataset};

const DIM: usize = 32;
const LISTS: usize = 64;

/// Clustered rows scaled to unit length (the service searches unit queries).
fn clustered_unit(n: usize, point_seed: u64) -> Matrix {
    let mut m = dataset::clustered(n, DIM, 100, 7, point_seed).into_vec();
    for row in m.chunks_exact_mut(DIM) {
        vectorwise_index::distance::normalize(row);
    }
    Matrix::new(DIM, m).unwrap()
}

fn build(dir: &std::path::Path, base: &Matrix, lists: usize) -> Index {
    let path = dir.join(format!("lists-{lists}.vwi"));
    let scan = ScanOptions { dsub: 4, seed: 3, lists };
    let opts = IndexOptions { graph: None, scan: Some(scan), default_method: Method::Scan, ..Default::default() };
    vectorwise_index::build(base, &path, &opts, &|_| {}).unwrap();
    Index::open(&path).unwrap()
}

/// The index the tests share: 6000 clustered points in [`LISTS`] lists.
fn clustered_index(dir: &std::path::Path) -> (Index, Matrix) {
    let base = clustered_unit(6_000, 1);
    (build(dir, &base, LISTS), base)
}

/// Exact ids by brute force over the input rows (independent of the index).
fn truth(base: &Matrix, q: &[f32], k: usize) -> Vec<u64> {
    let mut d: Vec<(f32, u64)> = base
        .rows()
        .enumerate()
        .map(|(i, r)| (r.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(), i as u64))
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    d.into_iter().take(k).map(|x| x.1).collect()
}

fn recall(index: &Index, base: &Matrix, queries: &Matrix, k: usize, params: &SearchParams) -> f64 {
    let mut total = 0.0;
    for q in queries.rows() {
        let want: HashSet<u64> = truth(base, q, k).into_iter().collect();
        let got = index.search(q, k, params).unwrap();
        total += got.iter().filter(|n| want.contains(&n.id)).count() as f64 / k as f64;
    }
    total / queries.len() as f64
}

#[test]
fn a_partitioned_index_answers_input_rows_with_exact_distances() {
    let dir = tempfile::tempdir().unwrap();
    let (index, base) = clustered_index(dir.path());
    let info = index.info();
    assert_eq!((info.scan_lists, info.index_type, info.format_version), (LISTS, "IVFQuantizedScan", 5));
    for q in clustered_unit(30, 2).rows() {
        // Exact search through the index: the ids are the input rows.
        let exact: Vec<u64> = index.exact_search(q, 10).unwrap().iter().map(|n| n.id).collect();
        assert_eq!(exact, truth(&base, q, 10));
        // Approximate search: every distance is the exact one of its id's row.
        for n in index.search(q, 10, &SearchParams::probe(4, 8)).unwrap() {
            let row = base.row(n.id as usize);
            let d: f32 = row.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
            assert!((d - n.distance).abs() <= 1e-5, "id {}: {} vs {d}", n.id, n.distance);
        }
    }
}

#[test]
fn reading_every_list_is_the_exhaustive_scan_and_batches_equal_single_searches() {
    let dir = tempfile::tempdir().unwrap();
    let (index, _) = clustered_index(dir.path());
    let queries = clustered_unit(40, 3);
    for q in queries.rows() {
        let all = index.search(q, 10, &SearchParams::scan(16)).unwrap();
        for nprobe in [LISTS, LISTS + 5, 10_000] {
            assert_eq!(index.search(q, 10, &SearchParams::probe(nprobe, 16)).unwrap(), all, "nprobe {nprobe}");
        }
    }
    for params in [SearchParams::probe(2, 8), SearchParams::probe(7, 4), SearchParams::scan(8)] {
        let batch = index.search_batch(queries.as_slice(), 10, &params).unwrap();
        for (q, b) in queries.rows().zip(batch) {
            assert_eq!(index.search(q, 10, &params).unwrap(), b, "{params}");
        }
    }
}

#[test]
fn a_few_lists_find_the_neighbours_of_clustered_data() {
    let dir = tempfile::tempdir().unwrap();
    let (index, base) = clustered_index(dir.path());
    let queries = clustered_unit(100, 4);
    let r1 = recall(&index, &base, &queries, 10, &SearchParams::probe(1, 16));
    let r4 = recall(&index, &base, &queries, 10, &SearchParams::probe(4, 16));
    let r16 = recall(&index, &base, &queries, 10, &SearchParams::probe(16, 16));
    assert!(r4 >= 0.9 && r16 >= 0.97, "recall@10 at 1/4/16 lists: {r1} {r4} {r16}");
    assert!(r1 <= r4 && r4 <= r16, "recall@10 at 1/4/16 lists: {r1} {r4} {r16}");
}

#[test]
fn the_calibrated_partition_keeps_the_profiles_promises() {
    let dir = tempfile::tempdir().unwrap();
    let base = clustered_unit(8_000, 1);
    let index = build(dir.path(), &base, LISTS);
    vectorwise_index::calibrate::calibrate_in_place(&index, &CalibrateOptions { sample: 400, ..Default::default() }).unwrap();
    let index = Index::open(index.path()).unwrap();
    let c = index.calibration().unwrap();
    let held_out = clustered_unit(200, 5);
    let mut probing = 0;
    for k in [1, 10, 100] {
        // In rising cost, each point reaches a higher recall than every cheaper one.
        let scan: Vec<_> = c.table(k).unwrap().points.iter().filter(|p| p.setting.method == Method::Scan).collect();
        assert!(scan.windows(2).all(|w| w[0].recall_mean < w[1].recall_mean), "k={k}: {scan:?}");
        for profile in Profile::ALL {
            let choice = c.for_target(k, profile.target());
            probing += usize::from(choice.params.nprobe > 0);
            let delivered = recall(&index, &base, &held_out, k, &choice.params);
            assert!(
                delivered >= profile.target() - 0.01,
                "k={k} {profile}: {} promised {:?}, delivered {delivered:.4}",
                choice.params,
                choice.expected_recall
            );
        }
    }
    // On clustered data the partition pays: most profiles read only some lists.
    assert!(probing >= 5, "{:?}", c.profiles().iter().map(|p| p.choice.params.setting()).collect::<Vec<_>>());
}

/// Lists of a point or two each: one list cannot hold k answers, so the next
/// nearest lists join until it can; a search still returns k neighbours.
#[test]
fn tiny_lists_still_answer_k_neighbours() {
    let dir = tempfile::tempdir().unwrap();
    let base = clustered_unit(600, 1);
    let index = build(dir.path(), &base, 400);
    for q in clustered_unit(20, 6).rows() {
        for k in [1, 10, 50] {
            let got = index.search(q, k, &SearchParams::probe(1, 1)).unwrap();
            assert_eq!(got.len(), k);
            assert!(got.windows(2).all(|w| w[0].distance <= w[1].distance));
        }
    }
    // An empty input with lists asked for is an error, not a panic.
    let empty = Matrix::new(DIM, Vec::new()).unwrap();
    let opts = IndexOptions { graph: None, scan: Some(ScanOptions { dsub: 4, seed: 1, lists: 4 }), default_method: Method::Scan, ..Default::default() };
    assert!(vectorwise_index::build(&empty, &dir.path().join("e.vwi"), &opts, &|_| {}).is_err());
}

/// With more lists than the exactly ranked pool, a search ranks the lists by
/// their centroids' quantised distances first: it must still read nearly all
/// the points the exact ranking reads (the lists at the edge of the `nprobe`
/// nearest are near-ties either way), never fewer points than asked, and all
/// of them at one list for nine queries in ten.
#[test]
fn quantised_list_ranking_reads_the_exactly_nearest_lists() {
    let dir = tempfile::tempdir().unwrap();
    let base = clustered_unit(8_000, 1);
    let index = build(dir.path(), &base, 400);
    let scan = index.scan_view().unwrap();
    let lists = scan.lists.unwrap();
    assert_eq!(lists.len(), 400);
    assert!(!lists.codes.is_empty());
    let points = |ranges: &[std::ops::Range<usize>]| ranges.iter().flat_map(|r| r.clone()).collect::<HashSet<usize>>();
    for nprobe in [1, 2, 4, 8, 32] {
        let (mut same, mut covered, mut wanted) = (0, 0, 0);
        let queries = clustered_unit(100, 5);
        for q in queries.rows() {
            let quantised = scan.probe(q, nprobe, 10);
            let exact = lists.probe(q, nprobe, 10);
            assert!(quantised.iter().map(|r| r.len()).sum::<usize>() >= 10);
            same += usize::from(quantised == exact);
            let (got, want) = (points(&quantised), points(&exact));
            covered += want.intersection(&got).count();
            wanted += want.len();
        }
        let share = covered as f64 / wanted as f64;
        assert!(share >= 0.97, "nprobe {nprobe}: {share:.3} of the exactly nearest lists' points read");
        if nprobe == 1 {
            assert!(same >= 90, "nprobe 1: {same} of 100 probes read the nearest list");
        }
    }
}
