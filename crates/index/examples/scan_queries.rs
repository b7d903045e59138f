//! Runs a fixed set of random unit queries through an index with one search
//! setting: the workload for `valgrind --tool=callgrind` and `perf`, whose
//! counts are repeatable where wall time on a shared machine is not.
//! `cargo run --release --example scan_queries -- index.vwi 100 rerank=50`

use vectorwise_index::{Index, SearchParams, dataset};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let index = Index::open(std::path::Path::new(&args[1]))?;
    let nq: usize = args.get(2).map_or(Ok(100), |s| s.parse())?;
    let params: SearchParams = args.get(3).map_or("", |s| s.as_str()).parse()?;
    let queries = dataset::sphere(nq, index.dim(), 7);
    let mut checksum = 0u64;
    let start = std::time::Instant::now();
    if std::env::var("HEAP").is_ok() {
        // The same codes copied to the heap, to compare with the memory-mapped file.
        let v = index.scan_view().ok_or("no scan codes")?;
        let codes = vectorwise_index::scan::ScanCodes {
            shape: v.shape,
            centroids: v.centroids.to_vec(),
            codes: v.codes.to_vec(),
            sq8_min: v.sq8_min.to_vec(),
            sq8_step: v.sq8_step.to_vec(),
            sq8: v.sq8.to_vec(),
            lists: None,
            list_codes: Vec::new(),
        };
        let vectors = index.vectors().to_vec();
        let view = codes.view();
        let start = std::time::Instant::now();
        for q in queries.rows() {
            checksum = checksum.wrapping_add(view.search(&vectors, q, 10, params.rerank * 10, 50).iter().map(|n| n.offset as u64).sum::<u64>());
        }
        println!("heap: {:.3} ms a query", start.elapsed().as_secs_f64() * 1e3 / nq as f64);
    } else {
        for q in queries.rows() {
            checksum = checksum.wrapping_add(index.search(q, 10, &params)?.iter().map(|n| n.id).sum::<u64>());
        }
    }
    println!("{:.3} ms a query", start.elapsed().as_secs_f64() * 1e3 / nq as f64);
    println!("{nq} queries, {params}: id checksum {checksum}");
    Ok(())
}
