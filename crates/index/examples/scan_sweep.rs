//! Builds scan codes for a vectors file in memory and sweeps the scan's
//! stage sizes against exact ground truth (random unit queries).
//! `cargo run --release --example scan_sweep -- data/vectors.npy 300 4`

use std::time::Instant;
use vectorwise_index::scan::{self, ScanOptions};
use vectorwise_index::{Matrix, dataset, exact};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let base = Matrix::load(std::path::Path::new(&args[1]))?;
    let nq: usize = args.get(2).map_or(Ok(300), |s| s.parse())?;
    let dsub: usize = args.get(3).map_or(Ok(4), |s| s.parse())?;
    let dim = base.dim();
    let t = Instant::now();
    let codes = scan::build(base.as_slice(), dim, &ScanOptions { dsub, seed: 42, lists: 0 })?;
    eprintln!("scan build {:.2}s m={} code bytes/pt={}", t.elapsed().as_secs_f64(), codes.shape.m, codes.shape.m / 2);
    let queries = dataset::sphere(nq, dim, 7);
    let truth = exact::search_many(base.as_slice(), dim, queries.as_slice(), 10);
    let view = codes.view();
    for (cand, rerank) in [(10, 10), (4000, 50), (8000, 50), (16000, 50), (500, 50), (1000, 50), (2000, 50), (2000, 100), (4000, 100), (8000, 100), (8000, 200), (16000, 200), (32000, 300)] {
        let mut lat = Vec::new();
        let mut rec = 0.0;
        let cpu0 = thread_cpu_ns();
        for (q, t) in queries.rows().zip(&truth) {
            let s = Instant::now();
            let got = view.search(base.as_slice(), q, 10, cand, rerank);
            lat.push(s.elapsed().as_secs_f64() * 1e3);
            let got: Vec<u32> = got.iter().map(|s| s.offset).collect();
            let t: Vec<u32> = t.iter().map(|s| s.offset).collect();
            rec += exact::recall_at(&got, &t, 10);
        }
        let cpu = (thread_cpu_ns() - cpu0) as f64 / 1e6 / nq as f64;
        lat.sort_by(f64::total_cmp);
        println!(
            "cand {cand:6} rerank {rerank:4}: recall {:.4} p50 {:.3} ms mean {:.3} cpu {cpu:.3}",
            rec / nq as f64,
            lat[lat.len() / 2],
            lat.iter().sum::<f64>() / nq as f64
        );
    }
    Ok(())
}

/// CPU time of this thread (ns), from the scheduler: unlike wall time it does
/// not count the time other processes had the core.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
