//! Quick recall sweep on synthetic data, for choosing test thresholds:
//! `cargo run --release -p vectorwise-index --example sweep -- N DIM M EFC`.

use std::time::Instant;
use vectorwise_index::hnsw::{self, BuildOptions};
use vectorwise_index::visited::VisitedList;
use vectorwise_index::{dataset, distance, exact};

fn main() {
    let a: Vec<usize> = std::env::args().skip(1).map(|s| s.parse().unwrap()).collect();
    let (n, dim, m, efc) = (a[0], a[1], a[2] as u32, a[3] as u32);
    let base = dataset::sphere(n, dim, 1);
    let t = Instant::now();
    let g = hnsw::builder::build(base.as_slice(), dim, &BuildOptions { m, ef_construction: efc, threads: None, seed: 1 }, &|_| {}).unwrap();
    println!("build {:.2}s", t.elapsed().as_secs_f64());
    for (name, qs) in [("noisy", dataset::noisy_queries(base.as_slice(), dim, 300, 2)), ("random", dataset::sphere(300, dim, 3))] {
        let truth = exact::search_many(base.as_slice(), dim, qs.as_slice(), 10);
        for ef in [16, 64, 128, 256, 400, 800] {
            let mut v = VisitedList::new(n);
            let t = Instant::now();
            let mut rec = 0.0;
            for (q, tr) in qs.rows().zip(&truth) {
                let f: Vec<u32> = hnsw::search(&g.view(), 10, ef, &mut v, |p| distance::l2_squared(base.row(p as usize), q), |p| distance::prefetch(base.row(p as usize))).iter().map(|s| s.offset).collect();
                rec += exact::recall_at(&f, &tr.iter().map(|s| s.offset).collect::<Vec<_>>(), 10);
            }
            println!("{name} ef {ef}: recall {:.3}  {:.3} ms/q", rec / qs.len() as f64, t.elapsed().as_secs_f64() * 1000.0 / qs.len() as f64);
        }
    }
}
