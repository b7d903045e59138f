//! The recall table: the scan's replay equals real searches, each profile
//! keeps its promise on held-out queries at calibrated and in-between k, the
//! table is monotone, and it survives the file.

use std::collections::HashSet;
use vectorwise_index::calibrate::{CalibrateOptions, QuerySource};
use vectorwise_index::scan::ScanOptions;
use vectorwise_index::{Index, IndexOptions, Matrix, Method, Profile, SearchParams, dataset, hnsw};

const DIM: usize = 24;

fn scan_index(dir: &std::path::Path) -> (Index, Matrix) {
    let path = dir.join("scan.vwi");
    let base = dataset::sphere(5_000, DIM, 31);
    let opts = IndexOptions { graph: None, scan: Some(ScanOptions { dsub: 4, seed: 2, lists: 0 }), default_method: Method::Scan, ..Default::default() };
    vectorwise_index::build(&base, &path, &opts, &|_| {}).unwrap();
    (Index::open(&path).unwrap(), base)
}

fn recall_of(index: &Index, queries: &Matrix, k: usize, params: &SearchParams) -> f64 {
    let mut total = 0.0;
    for q in queries.rows() {
        let truth: HashSet<u64> = index.exact_search(q, k).unwrap().iter().map(|n| n.id).collect();
        let got = index.search(q, k, params).unwrap();
        total += got.iter().filter(|n| truth.contains(&n.id)).count() as f64 / truth.len() as f64;
    }
    total / queries.len() as f64
}

/// The scan's settings are replayed from one deep candidate list, not run;
/// with given queries (no leave-one-out) the replay must equal real searches.
#[test]
fn the_scan_replay_equals_real_searches() {
    let dir = tempfile::tempdir().unwrap();
    let (index, _) = scan_index(dir.path());
    let queries = dataset::sphere(120, DIM, 32);
    let opts = CalibrateOptions { queries: Some(queries.as_slice().to_vec()), sample: 120, seed: 1 };
    let c = vectorwise_index::calibrate::calibrate(&index, &opts).unwrap();
    assert_eq!((c.source, c.queries), (QuerySource::Given, 120));
    for k in [1, 10, 100] {
        let table = c.table(k).unwrap();
        assert_eq!(table.k, k);
        let scan_points: Vec<_> = table.points.iter().filter(|p| p.setting.method == Method::Scan).collect();
        assert!(scan_points.len() >= 3, "k={k}: {scan_points:?}");
        for p in scan_points.iter().step_by(2) {
            let real = recall_of(&index, &queries, k, &p.setting);
            assert!((real - p.recall_mean).abs() < 0.005, "k={k} {}: replayed {} vs searched {real}", p.setting, p.recall_mean);
        }
    }
}

#[test]
fn profiles_keep_their_promise_on_held_out_queries_at_any_k() {
    let dir = tempfile::tempdir().unwrap();
    let (index, _) = scan_index(dir.path());
    let index = {
        vectorwise_index::calibrate::calibrate_in_place(&index, &CalibrateOptions { sample: 400, ..Default::default() }).unwrap();
        Index::open(index.path()).unwrap()
    };
    let c = index.calibration().expect("stored and read back");
    assert_eq!(c.source, QuerySource::LeaveOneOut);
    let held_out = dataset::sphere(200, DIM, 99);
    // Calibrated k values, and k between them (the rule: the next table up, same depth).
    for k in [1, 5, 10, 50, 100] {
        for profile in Profile::ALL {
            let choice = c.for_target(k, profile.target());
            let delivered = recall_of(&index, &held_out, k, &choice.params);
            assert!(
                delivered >= profile.target() - 0.01,
                "k={k} {profile}: {} promised {} (calibrated {:?}), delivered {delivered:.4}",
                choice.params,
                profile.target(),
                choice.expected_recall
            );
        }
    }
}

#[test]
fn the_table_is_monotone_and_profiles_deepen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("both.vwi");
    let base = dataset::clustered(4_000, DIM, 30, 5, 6);
    let opts = IndexOptions {
        graph: Some(hnsw::BuildOptions { m: 8, ef_construction: 48, threads: Some(1), seed: 3 }),
        scan: Some(ScanOptions { dsub: 4, seed: 3, lists: 0 }),
        default_method: Method::Hnsw, ..Default::default()
    };
    vectorwise_index::build(&base, &path, &opts, &|_| {}).unwrap();
    let index = Index::open(&path).unwrap();
    let c = vectorwise_index::calibrate::calibrate(&index, &CalibrateOptions { sample: 200, ..Default::default() }).unwrap();
    for t in &c.tables {
        for method in [Method::Hnsw, Method::Scan] {
            let recalls: Vec<f64> = t.points.iter().filter(|p| p.setting.method == method).map(|p| p.recall_mean).collect();
            assert!(!recalls.is_empty(), "k={} has {method:?} points", t.k);
            // Deeper settings find at least what shallower ones did (up to ties at the cut).
            assert!(recalls.windows(2).all(|w| w[1] >= w[0] - 0.005), "k={} {method:?}: {recalls:?}", t.k);
        }
        assert_eq!(t.points.last().unwrap().setting.method, Method::Exact);
        let mut last = 0.0;
        for profile in Profile::ALL {
            let choice = c.for_target(t.k, profile.target());
            let expected = choice.expected_recall.unwrap();
            assert!(expected >= profile.target() && expected >= last, "k={} {profile}: {expected}", t.k);
            last = expected;
        }
        assert_eq!(c.for_target(t.k, 1.0).params.method, Method::Exact);
    }
    // The graph's settings are timed; expected() is a floor for uncalibrated depths.
    let t10 = c.table(10).unwrap();
    assert!(t10.points.iter().filter(|p| p.setting.method == Method::Hnsw).all(|p| p.latency.is_some()));
    let first = t10.points.iter().find(|p| p.setting.method == Method::Hnsw).unwrap();
    let deeper = SearchParams::hnsw(first.setting.ef_search + 1);
    assert_eq!(c.expected(10, &deeper), Some(first.recall_mean));
    assert_eq!(c.expected(10, &SearchParams::hnsw(1)), None, "shallower than anything measured");
}

#[test]
fn calibrating_rewrites_the_file_atomically_and_keeps_its_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (index, _) = scan_index(dir.path());
    let q = dataset::sphere(5, DIM, 7);
    // Exact answers: a scan search may now be widened by the table (queries
    // unlike the calibration's), which is the table's purpose.
    let before: Vec<_> = q.rows().map(|r| index.exact_search(r, 10).unwrap()).collect();
    let rows_before = index.vectors().into_owned();
    let c = vectorwise_index::calibrate::calibrate_in_place(&index, &CalibrateOptions { sample: 50, ..Default::default() }).unwrap();
    // The open index still reads the old bytes; a reopened one has the table.
    assert!(index.calibration().is_none());
    let reopened = Index::open(index.path()).unwrap();
    assert_eq!(reopened.calibration(), Some(&c));
    let after: Vec<_> = q.rows().map(|r| reopened.exact_search(r, 10).unwrap()).collect();
    assert_eq!(before, after);
    assert!(rows_before == reopened.vectors().as_ref() && index.ids() == reopened.ids());
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    // Bad calibration queries are refused with a clear error.
    let bad = CalibrateOptions { queries: Some(vec![1.0; DIM + 1]), ..Default::default() };
    assert!(vectorwise_index::calibrate::calibrate(&reopened, &bad).unwrap_err().to_string().contains("rows of"));
}

#[test]
fn a_calibrated_build_writes_the_file_once_with_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("built.vwi");
    let base = dataset::sphere(3_000, DIM, 41);
    let opts = IndexOptions { graph: None, scan: Some(ScanOptions { dsub: 4, seed: 2, lists: 0 }), default_method: Method::Scan, ..Default::default() };
    let calibration = CalibrateOptions { sample: 60, ..Default::default() };
    let (_, c) = vectorwise_index::build_calibrated(&base, &path, &opts, &calibration, &|_| {}).unwrap();
    let index = Index::open(&path).unwrap();
    assert_eq!(index.calibration(), c.as_ref(), "the appended table is read back, checksums valid");
    assert!(c.is_some());
    assert_eq!(index.info().format_version, vectorwise_index::format::FORMAT_VERSION);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    // Given queries of the wrong width fail the build and leave nothing behind.
    let bad = CalibrateOptions { queries: Some(vec![0.5; DIM - 1]), ..Default::default() };
    let other = dir.path().join("other.vwi");
    assert!(vectorwise_index::build_calibrated(&base, &other, &opts, &bad, &|_| {}).is_err());
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

/// Leave-one-out on a graph must not let the walk start from the query's
/// own point: on structureless data that flatters the graph badly. A graph +
/// scan index over sphere data, calibrated leave-one-out, keeps every
/// profile's promise on held-out queries, whichever method it picks.
#[test]
fn leave_one_out_does_not_flatter_the_graph() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("graph.vwi");
    let base = dataset::sphere(5_000, DIM, 51);
    let opts = IndexOptions {
        graph: Some(hnsw::BuildOptions { m: 8, ef_construction: 48, threads: Some(1), seed: 5 }),
        scan: Some(ScanOptions { dsub: 4, seed: 5, lists: 0 }),
        default_method: Method::Hnsw, ..Default::default()
    };
    vectorwise_index::build(&base, &path, &opts, &|_| {}).unwrap();
    let index = Index::open(&path).unwrap();
    let c = vectorwise_index::calibrate::calibrate(&index, &CalibrateOptions { sample: 300, ..Default::default() }).unwrap();
    let held_out = dataset::sphere(200, DIM, 52);
    for k in [1, 10] {
        for profile in Profile::ALL {
            let choice = c.for_target(k, profile.target());
            let delivered = recall_of(&index, &held_out, k, &choice.params);
            // Recall@1 is 0 or 1 per query: at 0.95 the calibration's 300
            // queries and these 200 each carry a standard error of about
            // 0.013-0.015, so two standard errors of the difference is 0.04.
            // (The bug this test guards against delivered 0.625 for 0.9.)
            // Which method wins depends on measured latency, so on a loaded
            // machine the scan's k = 1 setting is the one tested.
            let tolerance = if k == 1 { 0.04 } else { 0.015 };
            assert!(
                delivered >= profile.target() - tolerance,
                "k={k} {profile}: {} promised {}, delivered {delivered:.4}",
                choice.params,
                profile.target()
            );
        }
    }
    // The shallowest graph setting is measured as the poor thing it is on
    // this data, not flattered (it was 0.99+ when the walk could start from
    // the query's own point; held-out queries get ~0.6).
    let first = c.table(10).unwrap().points.iter().find(|p| p.setting.method == Method::Hnsw).unwrap();
    let delivered = recall_of(&index, &held_out, 10, &first.setting);
    assert!(first.recall_mean <= delivered + 0.05, "{}: table {} vs held out {delivered}", first.setting, first.recall_mean);
}

/// A build or a calibration whose `Cancel` is set stops with `Cancelled`
/// and leaves nothing behind (the optimiser of a collection that closes).
#[test]
fn a_cancelled_build_stops_and_leaves_nothing() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let dir = tempfile::tempdir().unwrap();
    let base = dataset::sphere(3_000, DIM, 43);
    let cancel = vectorwise_index::Cancel::new(Arc::new(AtomicBool::new(true)));
    let calibration = CalibrateOptions { sample: 60, ..Default::default() };
    for lists in [0, 20] {
        let opts = IndexOptions { graph: None, scan: Some(ScanOptions { dsub: 4, seed: 2, lists }), default_method: Method::Scan, ..Default::default() };
        let path = dir.path().join(format!("cancelled-{lists}.vwi"));
        let r = vectorwise_index::build_calibrated_with(&base, &path, &opts, None, &calibration, &cancel, &|_| {});
        assert!(matches!(r, Err(vectorwise_index::Error::Cancelled)), "lists {lists}: {r:?}");
    }
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(names.is_empty(), "{names:?}");
    let (index, _) = scan_index(dir.path());
    let r = vectorwise_index::calibrate::calibrate_with(&index, &calibration, &cancel);
    assert!(matches!(r, Err(vectorwise_index::Error::Cancelled)), "{r:?}");
    assert!(vectorwise_index::calibrate::calibrate_with(&index, &calibration, &vectorwise_index::Cancel::never()).is_ok());
}
