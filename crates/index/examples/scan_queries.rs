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
    for q in queries.rows() {
        checksum = checksum.wrapping_add(index.search(q, 10, &params)?.iter().map(|n| n.id).sum::<u64>());
    }
    println!("{nq} queries, {params}: id checksum {checksum}");
    Ok(())
}
