//! Filtered recall of a partitioned scan, per query, for one allow column,
//! and what the second round of lists (`AllowedLists::nearer_than`, the
//! lists whose centroid is nearer than the first round's `k`-th answer)
//! adds: lists and points read, and the queries whose every true neighbour
//! lies in the lists of either round. Queries missing more than one
//! neighbour are listed with the centroid ranks of their true and found
//! lists (`QUIET=1` to skip them). An `l2` index (vectors are the user's).
//!
//! `cargo run --release -p vectorwise-index --example filter_recall --
//! INDEX.vwi COLUMN.u8 QUERIES.f32 VALUE NPROBE RERANK` (the column: one
//! byte per id; allowed where it equals VALUE; queries: raw little-endian f32).

use vectorwise_index::{AllowSet, FILTERED_LIST_FACTOR, Index, Method, SearchParams, exact_keep, scan_keep};

const K: usize = 10;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let index = Index::open(std::path::Path::new(&a[1])).unwrap();
    let col = std::fs::read(&a[2]).unwrap();
    let qraw = std::fs::read(&a[3]).unwrap();
    let value: u8 = a[4].parse().unwrap();
    let nprobe: usize = a[5].parse().unwrap();
    let rerank: usize = a[6].parse().unwrap();
    let dim = index.dim();
    let q: Vec<f32> = qraw.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let ids = index.ids();
    let allow = AllowSet::from_offsets(index.len(), (0..index.len() as u32).filter(|&o| col[ids[o as usize] as usize] == value));
    let view = index.scan_view().unwrap();
    let lists = view.lists.unwrap();
    println!("{} points, {} lists, allowed {}", index.len(), lists.len(), allow.count());
    let params = SearchParams { method: Method::Auto, nprobe, rerank, ..Default::default() };
    let exact = SearchParams { method: Method::Exact, ..Default::default() };
    // The engine's first-round settings (`Index::search_allowed`).
    let candidates = rerank.saturating_mul(K).max(scan_keep(K));
    let target = (FILTERED_LIST_FACTOR * nprobe * index.len() / lists.len()).max(candidates);
    let rows = index.vectors();
    let list_of = |o: u32| lists.starts.partition_point(|&s| s <= o) - 1;
    let (mut total, mut times) = (0.0, Vec::new());
    let (mut extra_lists, mut extra_points, mut covered) = (0usize, 0usize, 0usize);
    let nq = q.len() / dim;
    for (qi, query) in q.chunks_exact(dim).enumerate() {
        let t = std::time::Instant::now();
        let (found, path) = index.search_allowed(query, K, &params, &allow).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        let truth: Vec<u32> = index.search_allowed(query, K, &exact, &allow).unwrap().0.iter().map(|(o, _)| *o).collect();
        let hit = found.iter().filter(|(o, _)| truth.contains(o)).count();
        total += hit as f64 / K as f64;
        let read = view.allowed_ranges(query, &allow, nprobe, target);
        let first = view.search_allowed(&rows, query, K, candidates, exact_keep(K), &read.ranges, &allow);
        let kth = first.get(K - 1).map_or(f32::INFINITY, |s| s.distance);
        let (more, points) = read.nearer_than(kth);
        extra_lists += read.unread.iter().take_while(|(d, _)| *d < kth).count();
        extra_points += points;
        let within = |o: usize| read.ranges.iter().chain(&more).any(|r| r.contains(&o));
        covered += usize::from(truth.iter().all(|&o| within(o as usize)));
        if hit + 1 < K && std::env::var("QUIET").is_err() {
            let ranked = lists.ranked(query);
            let rank_of = |o: u32| ranked.iter().position(|&l| l == list_of(o)).unwrap();
            let tl: Vec<usize> = truth.iter().map(|&o| rank_of(o)).collect();
            let fl: Vec<usize> = found.iter().map(|(o, _)| rank_of(*o)).collect();
            println!("q{qi} hit {hit} {path:?} truth lists {tl:?} found lists {fl:?} read {} local {}", read.points, read.local);
        }
    }
    times.sort_by(f64::total_cmp);
    println!("p50 {:.3} ms p95 {:.3} ms", times[times.len() / 2], times[times.len() * 95 / 100]);
    println!(
        "recall {:.3}; second round: {:.1} lists, {:.0} points a query; every true neighbour within both rounds' lists for {covered}/{nq}",
        total / nq as f64,
        extra_lists as f64 / nq as f64,
        extra_points as f64 / nq as f64
    );
}
