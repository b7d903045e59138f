//! Side-by-side timing of variants of the scan's stages 2–3 (SQ8 re-rank,
//! exact re-rank) on one index, in one process, rounds interleaved, so the
//! machine's load hits every variant alike. Stage 1 runs once per query and
//! its candidate lists are reused by every variant.
//! `cargo run --release --example rerank_ab -- index.vwi 200 2000,8000,20000 5`

use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::time::Instant;
use vectorwise_index::topk::Scored;
use vectorwise_index::{Index, dataset, exact};

#[derive(Clone, Copy, Debug)]
enum Order {
    /// As `fast_scan` gives them.
    AsGiven,
    /// Shuffled before the clock starts (the old stage 1's `select_nth` order).
    Shuffled,
    /// Only the SQ8 stage, as given.
    Sq8Only,
    /// Offsets folded into the first 1024 points: the compute floor, no misses.
    Hot,
}

fn stage23(
    scan: &vectorwise_index::scan::ScanView<'_>,
    vectors: &[f32],
    q: &[f32],
    found: &[(u16, u32)],
    (order, ahead, four): (Order, usize, bool),
    sorted_buf: &mut Vec<u32>,
) -> Vec<Scored> {
    let (k, rerank) = (10, 50);
    let dim = scan.shape.dim;
    sorted_buf.clear();
    if let Order::Hot = order {
        sorted_buf.extend(found.iter().map(|f| f.1 & 1023));
    } else {
        sorted_buf.extend(found.iter().map(|f| f.1));
    }
    let sq8 = scan.sq8_distance(q);
    let mut stage2: Vec<Scored> = Vec::with_capacity(found.len());
    if four {
        for &p in sorted_buf.iter().take(ahead) {
            sq8.prefetch(p);
        }
        let mut quads = sorted_buf.chunks_exact(4);
        for (i, p) in quads.by_ref().enumerate() {
            for &next in sorted_buf.iter().skip(4 * i + ahead).take(4) {
                sq8.prefetch(next);
            }
            let p = [p[0], p[1], p[2], p[3]];
            let d = sq8.distance4(p);
            stage2.extend((0..4).map(|j| Scored { distance: d[j], offset: p[j] }));
        }
        for &p in quads.remainder() {
            stage2.push(Scored { distance: sq8.distance(p), offset: p });
        }
    } else {
        for (i, &p) in sorted_buf.iter().enumerate() {
            if let Some(&next) = sorted_buf.get(i + ahead) {
                sq8.prefetch(next);
            }
            stage2.push(Scored { distance: sq8.distance(p), offset: p });
        }
    }
    if stage2.len() > rerank {
        stage2.select_nth_unstable(rerank - 1);
        stage2.truncate(rerank);
    }
    if let Order::Sq8Only = order {
        return stage2;
    }
    exact::rerank(vectors, dim, q, k, &stage2)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let index = Index::open(std::path::Path::new(&args[1]))?;
    let nq: usize = args.get(2).map_or(Ok(200), |s| s.parse())?;
    let depths: Vec<usize> = args.get(3).map_or("2000,8000,20000", |s| s.as_str()).split(',').map(|s| s.parse()).collect::<Result<_, _>>()?;
    let rounds: usize = args.get(4).map_or(Ok(5), |s| s.parse())?;
    let scan = index.scan_view().ok_or("no scan codes")?;
    let vectors = &*index.vectors();
    let queries = dataset::sphere(nq, index.dim(), 7);
    // (order, prefetch distance in candidates, four SQ8 distances at a time)
    let variants: Vec<(Order, usize, bool)> = vec![
        (Order::Shuffled, 8, false),
        (Order::AsGiven, 8, false),
        (Order::AsGiven, 8, true),
        (Order::AsGiven, 16, true),
        (Order::AsGiven, 32, true),
        (Order::Sq8Only, 8, true),
        (Order::Hot, 8, false),
        (Order::Hot, 8, true),
    ];
    for &depth in &depths {
        let mut stage1 = Vec::new();
        let mut found: Vec<Vec<(u16, u32)>> = Vec::new();
        for _ in 0..rounds {
            let t = Instant::now();
            found = queries.rows().map(|q| scan.fast_scan(q, depth)).collect();
            stage1.push(t.elapsed().as_secs_f64() * 1e3 / nq as f64);
        }
        stage1.sort_by(f64::total_cmp);
        let stage1 = stage1[stage1.len() / 2];
        let mut rng = rand::rngs::StdRng::seed_from_u64(depth as u64);
        let shuffled: Vec<Vec<(u16, u32)>> = found
            .iter()
            .map(|f| {
                let mut f = f.clone();
                f.shuffle(&mut rng);
                f
            })
            .collect();
        // Per query, every variant in turn (starting variant rotated), so a
        // change of machine load hits all of them alike.
        let mut totals = vec![vec![0f64; variants.len()]; rounds];
        let mut sums = vec![0u64; variants.len()];
        let mut buf = Vec::new();
        for (round, total) in totals.iter_mut().enumerate() {
            for (qi, q) in queries.rows().enumerate() {
                for step in 0..variants.len() {
                    let v = (qi + round + step) % variants.len();
                    let (order, ahead, four) = variants[v];
                    let f = if let Order::Shuffled = order { &shuffled[qi] } else { &found[qi] };
                    let t = Instant::now();
                    let got = stage23(&scan, vectors, q, f, (order, ahead, four), &mut buf);
                    total[v] += t.elapsed().as_secs_f64() * 1e3 / nq as f64;
                    if round == 0 {
                        sums[v] = sums[v].wrapping_add(got.iter().map(|s| s.offset as u64).sum::<u64>());
                    }
                }
            }
        }
        let mut times: Vec<Vec<f64>> = (0..variants.len()).map(|v| totals.iter().map(|r| r[v]).collect()).collect();
        println!("candidates {depth}: stage 1 {stage1:.3} ms a query");
        for (i, (v, t)) in variants.iter().zip(&mut times).enumerate() {
            t.sort_by(f64::total_cmp);
            let med = t[t.len() / 2];
            println!(
                "  {:>8?} ahead {:>2} {}: stages 2-3 median {:.3} ms a query ({:.1} ns a candidate), min {:.3}, checksum {}",
                v.0,
                v.1,
                if v.2 { "x4" } else { "x1" },
                med,
                med * 1e6 / depth as f64,
                t[0],
                sums[i]
            );
        }
    }
    Ok(())
}
