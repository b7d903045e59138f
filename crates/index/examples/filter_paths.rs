//! What the filtered paths cost on one index, to set `allow::SQ8_BYTE_COST`:
//! for random allow-sets of several sizes, the time of the SQ8 path (every
//! allowed point's code) and of the masked scan (every point, or the lists
//! `allowed_ranges` picks), per query, median of the queries.
//!
//! `cargo run --release -p vectorwise-index --example filter_paths -- INDEX.vwi [NPROBE]`
//! (an `l2` index: the stored rows are the user's).

use std::time::Instant;
use vectorwise_index::{AllowSet, Index, scan_keep};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let index = Index::open(std::path::Path::new(&args[1])).expect("an index file");
    let nprobe: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    let view = index.scan_view().expect("scan codes");
    let vectors = index.vectors();
    let (n, dim) = (index.len(), index.dim());
    let queries: Vec<Vec<f32>> = (0..40).map(|i| vectors[(i * 7919 % n) * dim..][..dim].iter().map(|x| x + 0.01).collect()).collect();
    let k = 10;
    let candidates = scan_keep(k);
    let median = |mut t: Vec<f64>| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    println!("{n} points, {dim}-d, code bytes/point {}, nprobe {nprobe}", view.shape.block_bytes() / 32);
    for share in [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.3] {
        let allowed = (n as f64 * share) as usize;
        let allow = AllowSet::from_offsets(n, (0..allowed as u64).map(|i| ((i * 0x9E37_79B9) % n as u64) as u32));
        let (mut sq8, mut scan, mut read) = (Vec::new(), Vec::new(), 0);
        for q in &queries {
            let t = Instant::now();
            std::hint::black_box(view.search_sq8_allowed(&vectors, q, k, 20, &allow));
            sq8.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            let lists = view.lists.map_or(1, |l| l.len().max(1));
            let target = (nprobe * n / lists).max(candidates);
            let lists_read = view.allowed_ranges(q, &allow, nprobe, target);
            let (ranges, points) = (lists_read.ranges, lists_read.points);
            std::hint::black_box(view.search_allowed(&vectors, q, k, candidates, 20, &ranges, &allow));
            scan.push(t.elapsed().as_secs_f64() * 1e3);
            read = points;
        }
        println!(
            "{:>6.1} % ({allowed:>7} allowed): sq8 {:.3} ms ({:.1} ns/allowed) | scan {:.3} ms over {read} points ({:.2} ns/point)",
            share * 100.0,
            median(sq8.clone()),
            median(sq8) * 1e6 / allowed as f64,
            median(scan.clone()),
            median(scan) * 1e6 / read.max(1) as f64
        );
    }
}
