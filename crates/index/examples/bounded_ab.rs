//! A memory segment's exact search, two ways side by side on one thread:
//! every row in f32 (`exact::search_kept`) against [`BoundedRows`] (8-bit
//! codes with error bounds, then the few rows that can be nearest read in
//! full). Checks both answer the same; times both in alternating blocks.
//! `cargo run --release --example bounded_ab -- rows.npy queries.npy [rows] [rounds]`

use std::time::Instant;
use vectorwise_index::bounded::BoundedRows;
use vectorwise_index::{Matrix, exact};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let base = Matrix::load(std::path::Path::new(&args[1]))?;
    let queries = Matrix::load(std::path::Path::new(&args[2]))?;
    let n: usize = args.get(3).map_or(Ok(base.len()), |s| s.parse())?.min(base.len());
    let rounds: usize = args.get(4).map_or(Ok(5), |s| s.parse())?;
    let (dim, k) = (base.dim(), 10);
    let rows = &base.as_slice()[..n * dim];
    let t = Instant::now();
    let b = BoundedRows::encode(rows, dim).expect("dimension within MAX_DIM");
    let encode_ms = t.elapsed().as_secs_f64() * 1e3;
    let keep = |o: u32| o % 50 != 0; // a few deleted points
    let (mut full, mut bounded) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let a: Vec<Vec<(f32, u32)>> = queries
            .rows()
            .map(|q| exact::search_kept(rows, dim, q, k, &keep).into_iter().map(|s| (s.distance, s.offset)).collect())
            .collect();
        full.push(t.elapsed().as_secs_f64() * 1e6 / queries.len() as f64);
        let t = Instant::now();
        let c: Vec<Vec<(f32, u32)>> = queries.rows().map(|q| b.search(rows, q, k, keep, u64::from).expect("bounded")).collect();
        bounded.push(t.elapsed().as_secs_f64() * 1e6 / queries.len() as f64);
        assert_eq!(a, c, "the bounded search differs from the exact scan");
    }
    full.sort_by(f64::total_cmp);
    bounded.sort_by(f64::total_cmp);
    println!(
        "{n} rows x {dim}, {} queries, k {k}, one thread: f32 scan {:.0} us a query, bounded {:.0} us (median of {rounds} rounds); encode {encode_ms:.1} ms, {} bytes of codes; answers identical",
        queries.len(),
        full[rounds / 2],
        bounded[rounds / 2],
        b.bytes()
    );
    Ok(())
}
