//! The index file refuses every kind of damage with a clear error naming the
//! file, and never panics. Also reads the frozen version-1 file in testdata/.

use std::path::{Path, PathBuf};
use vectorwise_index::hnsw::BuildOptions;
use vectorwise_index::scan::ScanOptions;
use vectorwise_index::calibrate::CalibrateOptions;
use vectorwise_index::format::FORMAT_VERSION;
use vectorwise_index::{Error, Index, IndexOptions, Method, Metric, SearchParams, dataset};
use xxhash_rust::xxh3::xxh3_64;

fn build(dir: &Path) -> PathBuf {
    let path = dir.join("good.vwi");
    let base = dataset::sphere(500, 16, 5);
    let opts = IndexOptions {
        graph: Some(BuildOptions { m: 4, ef_construction: 16, threads: Some(1), seed: 5 }),
        scan: Some(ScanOptions::default()),
        default_method: Method::Auto, ..Default::default()
    };
    vectorwise_index::build(&base, &path, &opts, &|_| {}).unwrap();
    let calibration = CalibrateOptions { sample: 50, ..Default::default() };
    vectorwise_index::calibrate::calibrate_in_place(&Index::open(&path).unwrap(), &calibration).unwrap();
    path
}

fn open_err(dir: &Path, bytes: &[u8]) -> String {
    let p = dir.join("bad.vwi");
    std::fs::write(&p, bytes).unwrap();
    match Index::open(&p) {
        Ok(_) => panic!("damaged file was accepted"),
        Err(e @ Error::CorruptFile { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("bad.vwi"), "error names the file: {msg}");
            msg
        }
        Err(e) => panic!("wrong error kind: {e:?}"),
    }
}

/// Rewrites both checksums (version 2 layout) so that only the structural
/// checks can catch a change.
fn reseal(bytes: &mut [u8]) {
    let body = xxh3_64(&bytes[512..]);
    bytes[344..352].copy_from_slice(&body.to_le_bytes());
    let header = xxh3_64(&bytes[..504]);
    bytes[504..512].copy_from_slice(&header.to_le_bytes());
}

fn section(bytes: &[u8], i: usize) -> (usize, usize) {
    let at = 80 + 16 * i;
    let off = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
    let len = u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap()) as usize;
    (off, len)
}

#[test]
fn every_corruption_is_refused_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(build(dir.path())).unwrap();
    Index::open(&dir.path().join("good.vwi")).unwrap();

    let mut b = good.clone();
    b[0] = b'X';
    assert!(open_err(dir.path(), &b).contains("bad magic"));

    let mut b = good.clone();
    b[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    assert!(open_err(dir.path(), &b).contains(&format!("version {} is not supported", FORMAT_VERSION + 1)));

    let mut b = good.clone();
    b[20] ^= 1; // dim, without resealing
    assert!(open_err(dir.path(), &b).contains("header checksum"));

    let mut b = good.clone();
    let (vec_off, _) = section(&b, 0);
    b[vec_off + 5] ^= 0x40;
    assert!(open_err(dir.path(), &b).contains("body checksum"));

    for cut in [0, 7, 100, 255, 256, 511, 512, 1000, good.len() / 2, good.len() - 1] {
        let msg = open_err(dir.path(), &good[..cut]);
        assert!(msg.contains("truncated"), "cut at {cut}: {msg}");
    }
    let mut longer = good.clone();
    longer.extend_from_slice(&[0; 64]);
    assert!(open_err(dir.path(), &longer).contains("padded"));
    assert!(open_err(dir.path(), b"").contains("truncated"));
}

#[test]
fn structural_damage_behind_valid_checksums_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(build(dir.path())).unwrap();
    let (l0_off, _) = section(&good, 3);

    // A layer-0 link pointing past the last point.
    let mut b = good.clone();
    b[l0_off + 4..l0_off + 8].copy_from_slice(&999_999u32.to_le_bytes());
    reseal(&mut b);
    assert!(open_err(dir.path(), &b).contains("layer-0 links"));

    // A link count larger than the block.
    let mut b = good.clone();
    b[l0_off..l0_off + 4].copy_from_slice(&1000u32.to_le_bytes());
    reseal(&mut b);
    assert!(open_err(dir.path(), &b).contains("layer-0 links"));

    // An entry point out of range.
    let mut b = good.clone();
    b[48..52].copy_from_slice(&500u32.to_le_bytes());
    reseal(&mut b);
    assert!(open_err(dir.path(), &b).contains("entry point"));

    // A section table entry past the end of the file.
    let mut b = good.clone();
    b[80 + 16 * 5..88 + 16 * 5].copy_from_slice(&(1u64 << 40).to_le_bytes());
    reseal(&mut b);
    assert!(open_err(dir.path(), &b).contains("past the end"));

    // A section that does not start on a 64-byte boundary.
    let mut b = good.clone();
    let (ids_off, _) = section(&b, 1);
    b[80 + 16..88 + 16].copy_from_slice(&(ids_off as u64 + 4).to_le_bytes());
    reseal(&mut b);
    assert!(open_err(dir.path(), &b).contains("misplaced"));

    // A section of the wrong length.
    let mut b = good.clone();
    let (_, ids_len) = section(&b, 1);
    b[88 + 16..96 + 16].copy_from_slice(&(ids_len as u64 - 8).to_le_bytes());
    reseal(&mut b);
    assert!(open_err(dir.path(), &b).contains("expected"));

    // A point claiming an upper layer it has no links block for.
    let mut b = good.clone();
    let (lv_off, lv_len) = section(&b, 2);
    let p = (0..lv_len).find(|&i| b[lv_off + i] == 0).unwrap();
    b[lv_off + p] = 1;
    reseal(&mut b);
    assert!(open_err(dir.path(), &b).contains("upper-layer offsets"));

    // Scan codes: a non-finite centroid, a wrong sub-quantiser count, a
    // zero SQ8 step, a reserved section that is not empty, a default method
    // the file does not hold.
    let mut b = good.clone();
    let (c_off, _) = section(&b, 6);
    b[c_off..c_off + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    reseal(&mut b);
    assert!(open_err(dir.path(), &b).contains("not finite"));
    let mut b = good.clone();
    b[356..360].copy_from_slice(&6u32.to_le_bytes());
    reseal(&mut b);
    assert!(open_err(dir.path(), &b).contains("sub-quantisers"));
    let mut b = good.clone();
    let (s_off, _) = section(&b, 9);
    b[s_off..s_off + 4].copy_from_slice(&0f32.to_le_bytes());
    reseal(&mut b);
    assert!(open_err(dir.path(), &b).contains("sq8"));
    let mut b = good.clone();
    b[80 + 16 * 12 + 8..80 + 16 * 13].copy_from_slice(&64u64.to_le_bytes());
    reseal(&mut b);
    assert!(open_err(dir.path(), &b).contains("should be absent"));
    let mut b = good.clone();
    b[32..36].copy_from_slice(&2u32.to_le_bytes()); // scan only, but the default is HNSW
    reseal(&mut b);
    assert!(open_err(dir.path(), &b).contains("default method"));

    // The calibration: not JSON, a recall out of range, a method the file lacks, too long.
    let (cal_off, cal_len) = section(&good, 11);
    assert!(cal_len > 0, "the file carries a calibration");
    let text = std::str::from_utf8(&good[cal_off..cal_off + cal_len]).unwrap().to_owned();
    let with_text = |replacement: &str| {
        let mut b = good[..cal_off].to_vec();
        b.extend_from_slice(replacement.as_bytes());
        b[80 + 16 * 11 + 8..80 + 16 * 12].copy_from_slice(&(replacement.len() as u64).to_le_bytes());
        let size = b.len() as u64;
        b[336..344].copy_from_slice(&size.to_le_bytes());
        reseal(&mut b);
        b
    };
    assert!(open_err(dir.path(), &with_text("{not json")).contains("calibration table is not valid"));
    let first_recall = text.find("\"recall_mean\":").unwrap() + "\"recall_mean\":".len();
    let end = first_recall + text[first_recall..].find(',').unwrap();
    let bad_recall = format!("{}1.5{}", &text[..first_recall], &text[end..]);
    assert!(open_err(dir.path(), &with_text(&bad_recall)).contains("recall out of range"));
    let bad_setting = text.replacen("\"setting\":\"ef=", "\"setting\":\"method=auto,ef=", 1);
    assert_ne!(bad_setting, text);
    assert!(open_err(dir.path(), &with_text(&bad_setting)).contains("cannot search"));
    // ... and `vectorwise calibrate` can still open it to replace the table.
    let reopened = Index::open_uncalibrated(&dir.path().join("bad.vwi")).expect("the rest of the file is sound");
    assert!(reopened.calibration().is_none());
    let mut b = good.clone();
    b[80 + 16 * 11 + 8..80 + 16 * 12].copy_from_slice(&(64u64 << 20).to_le_bytes());
    reseal(&mut b);
    assert!(open_err(dir.path(), &b).contains("calibration limit"));
}

#[test]
fn a_scan_only_index_searches_by_scan_and_refuses_hnsw() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scan.vwi");
    let base = dataset::sphere(2_000, 24, 9);
    let opts = IndexOptions { graph: None, scan: Some(ScanOptions::default()), default_method: Method::Auto, ..Default::default() };
    vectorwise_index::build(&base, &path, &opts, &|_| {}).unwrap();
    let index = Index::open(&path).unwrap();
    let info = index.info();
    assert_eq!((info.format_version, info.default_method, info.has_graph, info.index_type), (FORMAT_VERSION, Method::Scan, false, "QuantizedScan"));
    let q = dataset::sphere(1, 24, 10);
    let auto = index.search(q.row(0), 10, &SearchParams::default()).unwrap();
    assert_eq!(auto.len(), 10);
    for n in &auto {
        let d = vectorwise_index::distance::l2_squared(base.row(n.id as usize), q.row(0));
        assert_eq!(n.distance, d, "returned distances are exact");
    }
    let all = index.search(q.row(0), 10, &SearchParams::scan(200)).unwrap();
    assert_eq!(all, index.exact_search(q.row(0), 10).unwrap(), "a scan keeping every point is exact");
    let e = index.search(q.row(0), 10, &SearchParams::hnsw(64)).unwrap_err();
    assert!(e.to_string().contains("no HNSW graph"), "{e}");
}

#[test]
fn other_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = Index::open(&dir.path().join("missing.vwi")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }) && e.to_string().contains("missing.vwi"));
    let npy = dir.path().join("v.npy");
    dataset::sphere(10, 4, 0).save_npy(&npy).unwrap();
    let e = Index::open(&npy).unwrap_err();
    assert!(e.to_string().contains("bad magic"), "{e}");
}

/// testdata/v{N}-small.vwi were written by each released format version and
/// must stay readable, with the answers recorded beside them when frozen.
#[test]
fn frozen_files_still_load_and_answer_the_same() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
    for version in [1u32, 2, 3, 4, 5] {
        let index = Index::open(&root.join(format!("v{version}-small.vwi"))).expect("frozen index must load");
        let expected: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join(format!("v{version}-small.expected.json"))).unwrap()).unwrap();
        assert_eq!(index.info().format_version, version);
        // Version 3 added the calibration; older files load without one.
        assert_eq!(index.calibration().is_some(), version >= 3);
        // Version 4 added the scan's lists (the frozen file has 8).
        assert_eq!(index.info().scan_lists, if version >= 4 { 8 } else { 0 });
        // Version 5 added the metric; the frozen file is inner product with user ids.
        assert_eq!(index.metric(), if version >= 5 { Metric::Ip } else { Metric::L2 });
        assert_eq!(index.len() as u64, expected["count"].as_u64().unwrap());
        assert_eq!(index.dim() as u64, expected["dim"].as_u64().unwrap());
        let mut settings = vec![SearchParams::hnsw(64)];
        if version >= 2 {
            settings.push(SearchParams::scan(4)); // v2 files carry scan codes too
        }
        for case in expected["queries"].as_array().unwrap() {
            let q: Vec<f32> = case["query"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            for params in &settings {
                let hits = index.search(&q, 5, params).unwrap();
                let ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
                let want: Vec<u64> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
                assert_eq!(ids, want, "v{version} {params}");
                if version >= 5 {
                    // The recorded answer is the true top 5 by inner product over the stored vectors.
                    let mut truth: Vec<(f32, u64)> = index.ids().iter().map(|&id| {
                        let v = index.vector_of(id).unwrap();
                        (-v.iter().zip(&q).map(|(a, b)| a * b).sum::<f32>(), id)
                    }).collect();
                    truth.sort_by(|a, b| a.0.total_cmp(&b.0));
                    assert_eq!(want, truth[..5].iter().map(|t| t.1).collect::<Vec<_>>(), "v5 answers are the inner-product truth");
                }
                for (h, d) in hits.iter().zip(case["distances"].as_array().unwrap()) {
                    assert!((h.distance as f64 - d.as_f64().unwrap()).abs() < 1e-5);
                }
            }
        }
    }
}

#[test]
fn wide_vectors_get_wider_sub_quantisers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.vwi");
    let base = dataset::sphere(300, 1000, 4);
    let opts = IndexOptions { graph: None, scan: Some(ScanOptions { dsub: 2, seed: 1, lists: 0 }), default_method: Method::Auto, ..Default::default() };
    vectorwise_index::build(&base, &path, &opts, &|_| {}).unwrap();
    let index = Index::open(&path).unwrap();
    assert_eq!(index.info().scan_dsub, 4, "1000 dimensions need 4 per sub-quantiser");
    let hits = index.search(base.row(7), 3, &SearchParams::scan(100)).unwrap();
    assert_eq!(hits[0].id, 7);
}
