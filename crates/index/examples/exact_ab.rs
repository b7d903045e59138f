//! Exact search for a batch of queries, side by side: `exact::search` per
//! query over rayon (one full pass over the rows per query) against
//! `exact::search_many` (a group of queries scored per pass over cache-sized
//! chunks of rows). Checks that both answer the same, and times both, rounds
//! interleaved.
//! `cargo run --release --example exact_ab -- data/vectors.npy 64 3 [threads]`

use rayon::prelude::*;
use std::time::Instant;
use vectorwise_index::{Matrix, dataset, exact};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let base = Matrix::load(std::path::Path::new(&args[1]))?;
    let nq: usize = args.get(2).map_or(Ok(64), |s| s.parse())?;
    let rounds: usize = args.get(3).map_or(Ok(3), |s| s.parse())?;
    if let Some(t) = args.get(4) {
        rayon::ThreadPoolBuilder::new().num_threads(t.parse()?).build_global()?;
    }
    let (dim, k) = (base.dim(), 10);
    let queries = dataset::sphere(nq, dim, 7);
    let (mut old, mut new) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let a: Vec<_> = queries.as_slice().par_chunks_exact(dim).map(|q| exact::search(base.as_slice(), dim, q, k, None)).collect();
        old.push(t.elapsed().as_secs_f64() * 1e3 / nq as f64);
        let t = Instant::now();
        let b = exact::search_many(base.as_slice(), dim, queries.as_slice(), k);
        new.push(t.elapsed().as_secs_f64() * 1e3 / nq as f64);
        assert_eq!(a, b, "search_many differs from search");
    }
    old.sort_by(f64::total_cmp);
    new.sort_by(f64::total_cmp);
    println!(
        "{} rows x {dim}, {nq} queries, {} threads, per query (wall / queries): search {:.2} ms (min {:.2}), search_many {:.2} ms (min {:.2}); answers identical",
        base.len(),
        rayon::current_num_threads(),
        old[old.len() / 2],
        old[0],
        new[new.len() / 2],
        new[0]
    );
    Ok(())
}
