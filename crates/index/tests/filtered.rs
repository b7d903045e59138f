//! Filtered search (`Index::search_allowed`): against exact filtered truth on
//! fixed-seed clustered data, for every method an index can hold (the
//! exhaustive scan, the partitioned scan, the graph alone, graph + codes),
//! at 50 %, 10 %, 1 % and 0.1 % of the points allowed, with filters
//! uncorrelated with the data (a hash of the id) and correlated with it (the
//! points furthest along one axis: the allowed points sit away from most
//! queries). Always `min(k, allowed)` answers, all allowed.

use std::collections::{HashMap, HashSet};
use vectorwise_index::hnsw::BuildOptions;
use vectorwise_index::scan::ScanOptions;
use vectorwise_index::{AllowSet, FilteredPath, Index, IndexOptions, Matrix, Method, SearchParams, dataset};

const DIM: usize = 32;
const N: usize = 40_000;
const K: usize = 10;

fn unit_clustered(n: usize, point_seed: u64) -> Matrix {
    let mut m = dataset::clustered(n, DIM, 200, 11, point_seed).into_vec();
    for row in m.chunks_exact_mut(DIM) {
        vectorwise_index::distance::normalize(row);
    }
    Matrix::new(DIM, m).unwrap()
}

fn build(dir: &std::path::Path, base: &Matrix, name: &str, graph: bool, scan: Option<usize>) -> Index {
    let path = dir.join(format!("{name}.vwi"));
    let opts = IndexOptions {
        graph: graph.then_some(BuildOptions { m: 16, ef_construction: 100, threads: None, seed: 5 }),
        scan: scan.map(|lists| ScanOptions { dsub: 4, seed: 3, lists }),
        default_method: if graph { Method::Hnsw } else { Method::Scan },
        ..Default::default()
    };
    vectorwise_index::build(base, &path, &opts, &|_| {}).unwrap();
    Index::open(&path).unwrap()
}

/// Uncorrelated: a fixed hash of the id below `share`.
fn hashed(share: f64) -> Vec<u32> {
    (0..N as u32).filter(|&i| (u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f64 / (1u64 << 24) as f64 <= share).collect()
}

/// Correlated: the `share` of the points furthest along dimension 0.
fn along_axis(base: &Matrix, share: f64) -> Vec<u32> {
    let mut by: Vec<(f32, u32)> = base.rows().enumerate().map(|(i, r)| (r[0], i as u32)).collect();
    by.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    by.truncate(((N as f64) * share).round().max(1.0) as usize);
    by.into_iter().map(|x| x.1).collect()
}

fn truth(base: &Matrix, allowed: &[u32], q: &[f32], k: usize) -> Vec<u64> {
    let mut d: Vec<(f32, u64)> = allowed
        .iter()
        .map(|&i| (base.row(i as usize).iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(), u64::from(i)))
        .collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    d.into_iter().take(k).map(|x| x.1).collect()
}

/// Mean recall@K over the queries, and the paths taken; checks every
/// answer's length and that each hit is allowed.
fn filtered_recall(index: &Index, base: &Matrix, queries: &Matrix, allowed: &[u32], params: &SearchParams) -> (f64, HashMap<FilteredPath, usize>) {
    filtered_recall_n(index, base, queries, allowed, params, N)
}

fn filtered_recall_n(
    index: &Index,
    base: &Matrix,
    queries: &Matrix,
    allowed: &[u32],
    params: &SearchParams,
    n: usize,
) -> (f64, HashMap<FilteredPath, usize>) {
    // Ids are the input rows; a partitioned index reorders them, so the set
    // is over the index's offsets of those ids.
    let allow = AllowSet::from_offsets(n, allowed.iter().map(|&id| index.offset_of(u64::from(id)).unwrap()));
    let ok: HashSet<u64> = allowed.iter().map(|&i| u64::from(i)).collect();
    let (mut total, mut paths) = (0.0, HashMap::new());
    for q in queries.rows() {
        let (hits, path) = index.search_allowed(q, K, params, &allow).unwrap();
        *paths.entry(path).or_insert(0) += 1;
        assert_eq!(hits.len(), K.min(allowed.len()), "always min(k, allowed) answers");
        for (o, n) in &hits {
            assert!(ok.contains(&n.id), "hit {} is not allowed", n.id);
            assert_eq!(index.offset_of(n.id), Some(*o));
        }
        let want: HashSet<u64> = truth(base, allowed, q, K).into_iter().collect();
        total += hits.iter().filter(|(_, n)| want.contains(&n.id)).count() as f64 / want.len() as f64;
    }
    (total / queries.len() as f64, paths)
}

fn check_method(index: &Index, base: &Matrix, params: &SearchParams, floor: f64) -> HashSet<FilteredPath> {
    let queries = unit_clustered(40, 77);
    let mut seen = HashSet::new();
    // 5.5 %: 2200 allowed, past the exact cut, where the SQ8 path reads less than the scan.
    for share in [0.5, 0.1, 0.055, 0.01, 0.001] {
        for (kind, allowed) in [("hashed", hashed(share)), ("correlated", along_axis(base, share))] {
            let (recall, paths) = filtered_recall(index, base, &queries, &allowed, params);
            eprintln!("{:?} share {share} {kind}: recall {recall:.3} paths {paths:?}", index.info().index_type);
            assert!(recall >= floor, "{kind} filter at {share}: recall {recall:.3} < {floor}");
            seen.extend(paths.keys().copied());
        }
    }
    seen
}

#[test]
fn filtered_search_keeps_recall_on_every_method_at_every_selectivity() {
    let dir = tempfile::tempdir().unwrap();
    let base = unit_clustered(N, 1);
    let mut seen = HashSet::new();
    // The exhaustive scan at a depth that gives >= 0.95 unfiltered.
    let scan = build(dir.path(), &base, "scan", false, Some(0));
    seen.extend(check_method(&scan, &base, &SearchParams::scan(8), 0.95));
    // The partitioned scan: 200 lists, 8 read.
    let lists = build(dir.path(), &base, "lists", false, Some(200));
    seen.extend(check_method(&lists, &base, &SearchParams::probe(8, 8), 0.95));
    // The graph alone (no codes): widened walk or exact.
    let graph = build(dir.path(), &base, "graph", true, None);
    seen.extend(check_method(&graph, &base, &SearchParams::hnsw(64), 0.95));
    // Every path was taken somewhere.
    for p in [FilteredPath::Exact, FilteredPath::Sq8, FilteredPath::Scan, FilteredPath::Graph] {
        assert!(seen.contains(&p), "path {p:?} never taken: {seen:?}");
    }
}

#[test]
fn an_empty_or_tiny_allow_set_answers_what_it_allows() {
    let dir = tempfile::tempdir().unwrap();
    let base = unit_clustered(2_000, 1);
    let index = build(dir.path(), &base, "small", false, Some(0));
    let q = base.row(0);
    let (none, _) = index.search_allowed(q, K, &SearchParams::scan(8), &AllowSet::none(2_000)).unwrap();
    assert!(none.is_empty());
    let three = AllowSet::from_offsets(2_000, [7, 900, 1999]);
    let (hits, path) = index.search_allowed(q, K, &SearchParams::scan(8), &three).unwrap();
    assert_eq!(path, FilteredPath::Exact);
    let mut ids: Vec<u64> = hits.iter().map(|(_, n)| n.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, vec![7, 900, 1999]);
    // A set of the wrong size is refused, not read past its end.
    assert!(index.search_allowed(q, K, &SearchParams::scan(8), &AllowSet::all(10)).is_err());
}


/// Half the points, split through the data by a plane (the side of the
/// median along a fixed direction): the lists nearest a query on the
/// refused side hold allowed points only on their far side, while its true
/// neighbours sit in a tight allowed group whose list ranks far down by
/// centroid. Read in centroid order until the target count, a one-list
/// probe kept recall@10 at 0.89 on 200k x 128 (bench/filter, `c50`) and
/// 0.86 here; the lists nearer than the k-th answer are read too (0.983).
#[test]
fn a_filter_splitting_the_lists_keeps_recall_on_a_narrow_probe() {
    let (n, dim, clusters, lists) = (40_000, 64, 1000, 200);
    let dir = tempfile::tempdir().unwrap();
    let all = dataset::clustered(n + 200, dim, clusters, 11, 1).into_vec();
    let base = Matrix::new(dim, all[..n * dim].to_vec()).unwrap();
    let queries = Matrix::new(dim, all[n * dim..].to_vec()).unwrap();
    let path = dir.path().join("split.vwi");
    let opts = IndexOptions { scan: Some(ScanOptions { dsub: 2, seed: 3, lists }), default_method: Method::Scan, ..Default::default() };
    vectorwise_index::build(&base, &path, &opts, &|_| {}).unwrap();
    let index = Index::open(&path).unwrap();
    let direction: Vec<f32> = (0..dim).map(|j| if j % 3 == 0 { 1.0 } else { -0.5 }).collect();
    let mut by: Vec<(f32, u32)> =
        base.rows().enumerate().map(|(i, r)| (r.iter().zip(&direction).map(|(a, b)| a * b).sum(), i as u32)).collect();
    by.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for half in [&by[..n / 2], &by[n / 2..]] {
        let allowed: Vec<u32> = half.iter().map(|x| x.1).collect();
        let (recall, paths) = filtered_recall_n(&index, &base, &queries, &allowed, &SearchParams::probe(1, 16), n);
        eprintln!("split half: recall {recall:.3} paths {paths:?}");
        assert_eq!(paths.get(&FilteredPath::Scan), Some(&queries.len()), "{paths:?}");
        assert!(recall >= 0.95, "recall {recall:.3}");
    }
}
