//! Arbitrary bytes as an index file: `Index::open` must refuse them with an
//! error or open an index that searches without a panic or an out-of-bounds
//! access (the promise of `format::open`'s checks).
//!
//! Each input is opened twice: as given (which nearly always stops at the
//! header checksum), and "resealed": when it starts like an index header,
//! its recorded file size and both checksums are set to match its bytes, so
//! that mutations reach the structural checks behind the checksums.

use std::path::Path;
use vectorwise_index::{Index, Method, SearchParams};
use xxhash_rust::xxh3::xxh3_64;

/// Opens `data` as given and resealed, through the file at `path`.
pub fn check(data: &[u8], path: &Path) {
    open_and_search(data, path);
    if let Some(sealed) = reseal(data) {
        open_and_search(&sealed, path);
    }
}

/// `data` with its header's file size and checksums made to match, when it
/// has a VectorWise header of a known version (and differs from `data`).
pub fn reseal(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 12 || &data[..8] != b"VWINDEX\0" {
        return None;
    }
    let version = u32::from_le_bytes(data[8..12].try_into().unwrap());
    // (header size, file_size at, body_checksum at); the header checksum is
    // the header's last 8 bytes. See the table in `format`.
    let (header, size_at, body_at) = match version {
        1 => (256, 176, 184),
        2..=5 => (512, 336, 344),
        _ => return None,
    };
    if data.len() < header {
        return None;
    }
    let mut out = data.to_vec();
    out[size_at..size_at + 8].copy_from_slice(&(data.len() as u64).to_le_bytes());
    out[body_at..body_at + 8].copy_from_slice(&xxh3_64(&data[header..]).to_le_bytes());
    let sum = xxh3_64(&out[..header - 8]);
    out[header - 8..header].copy_from_slice(&sum.to_le_bytes());
    (out != data).then_some(out)
}

/// Writes `bytes` to `path`, opens it, and when it opens, searches it every
/// way it can be searched.
pub fn open_and_search(bytes: &[u8], path: &Path) {
    std::fs::write(path, bytes).expect("write the temporary index file");
    let Ok(index) = Index::open(path) else { return };
    let info = index.info();
    let dim = index.dim();
    assert!(dim > 0 && !index.is_empty() && info.count == index.len());
    // A valid query: finite, not zero, small.
    let query: Vec<f32> = (0..dim).map(|i| (i as f32 * 0.37).sin() + 0.25).collect();
    let mut params = vec![SearchParams::default(), SearchParams::exact()];
    if info.has_graph {
        params.push(SearchParams::hnsw(8));
    }
    if info.scan_dsub > 0 {
        params.push(SearchParams { nprobe: 1, ..SearchParams::scan(4) });
    }
    for p in &params {
        if let Ok(hits) = index.search(&query, 3, p) {
            assert!(hits.len() <= 3, "{} hits for k=3 with {p:?}", hits.len());
        }
    }
    if let Ok(hits) = index.exact_search(&query, 3) {
        assert!(hits.len() <= 3, "{} exact hits for k=3", hits.len());
    }
    let two: Vec<f32> = query.iter().chain(&query).copied().collect();
    let batch = if info.default_method == Method::Scan { SearchParams::scan(2) } else { SearchParams::hnsw(4) };
    let _ = index.search_batch(&two, 2, &batch);
    let _ = index.exact_search_batch(&two, 2);
    if let Some(&id) = index.ids().first() {
        let _ = index.vector_of(id);
    }
}
