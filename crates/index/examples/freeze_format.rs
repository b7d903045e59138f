//! Writes the frozen compatibility file for the current format version:
//! `testdata/v{N}-small.vwi` plus the answers it gives, which
//! `tests/format.rs` checks on every change. Run once per new format version:
//! `cargo run --release -p vectorwise-index --example freeze_format`.
//! It refuses to overwrite a frozen file.

use std::path::Path;
use vectorwise_index::hnsw::BuildOptions;
use vectorwise_index::scan::ScanOptions;
use vectorwise_index::{Index, IndexOptions, Matrix, Method, Metric, Points, SearchParams, dataset, format::FORMAT_VERSION};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
    let path = dir.join(format!("v{FORMAT_VERSION}-small.vwi"));
    if path.exists() {
        return Err(format!("{} is frozen; delete it by hand only if you mean to", path.display()).into());
    }
    // Version 5: a metric (inner product, on vectors of norms 0.5 to 2) and user ids.
    let sphere = dataset::sphere(300, 8, 2024);
    let scaled: Vec<f32> = sphere.rows().enumerate().flat_map(|(i, r)| r.iter().map(move |x| x * (0.5 + (i % 7) as f32 * 0.25))).collect();
    let base = Matrix::new(8, scaled)?;
    let ids: Vec<u64> = (0..300).map(|i| 1_000_000 + 7 * i).collect();
    let opts = IndexOptions {
        metric: Metric::Ip,
        graph: Some(BuildOptions { m: 4, ef_construction: 32, threads: Some(1), seed: 2024 }),
        // Version 4: points partitioned into lists (and so reordered; ids map back).
        scan: Some(ScanOptions { dsub: 2, seed: 2024, lists: 8 }),
        default_method: Method::Hnsw,
    };
    vectorwise_index::build(Points { vectors: &base, ids: Some(&ids), keys: false }, &path, &opts, &|_| {})?;
    // Version 3 files carry a calibration table.
    let calibration = vectorwise_index::calibrate::CalibrateOptions { sample: 40, seed: 2024, queries: None };
    vectorwise_index::calibrate::calibrate_in_place(&Index::open(&path)?, &calibration)?;
    let index = Index::open(&path)?;
    let mut queries = Vec::new();
    for q in dataset::sphere(5, 8, 99).rows() {
        // Both methods must keep answering the same: HNSW (walking the codes) and the scan.
        let hits = index.search(q, 5, &SearchParams::hnsw(64))?;
        if index.search(q, 5, &SearchParams::scan(4))? != hits {
            return Err("the scan and the graph disagree on the frozen file; pick other queries".into());
        }
        let ids: Vec<String> = hits.iter().map(|h| h.id.to_string()).collect();
        let ds: Vec<String> = hits.iter().map(|h| format!("{:?}", h.distance)).collect();
        let qs: Vec<String> = q.iter().map(|x| format!("{x:?}")).collect();
        queries.push(format!(
            "    {{\"query\": [{}], \"ids\": [{}], \"distances\": [{}]}}",
            qs.join(", "),
            ids.join(", "),
            ds.join(", ")
        ));
    }
    let json = format!(
        "{{\n  \"format_version\": {FORMAT_VERSION},\n  \"count\": {},\n  \"dim\": {},\n  \"queries\": [\n{}\n  ]\n}}\n",
        index.len(),
        index.dim(),
        queries.join(",\n")
    );
    std::fs::write(dir.join(format!("v{FORMAT_VERSION}-small.expected.json")), json)?;
    println!("wrote {}", path.display());
    Ok(())
}
