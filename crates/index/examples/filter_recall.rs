//! Diagnostic: recall of `search_allowed` per query for one allow column.
//! `filter_recall INDEX.vwi COLUMN.u8 QUERIES.f32 VALUE NPROBE RERANK`
use vectorwise_index::{AllowSet, Index, SearchParams, Method};

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
    let (mut total, mut nq) = (0.0, 0);
    let alpha: f32 = std::env::var("ALPHA").map_or(1.0, |a| a.parse().unwrap());
    let mut times: Vec<f64> = Vec::new();
    let rows = index.vectors();
    let l2 = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>();
    let radius: Vec<f32> = (0..lists.len())
        .map(|l| {
            let c = &lists.centroids[l * dim..(l + 1) * dim];
            (lists.starts[l]..lists.starts[l + 1]).map(|o| l2(&rows[o as usize * dim..][..dim], c)).sum::<f32>().sqrt() / ((lists.starts[l + 1] - lists.starts[l]).max(1) as f32).sqrt()
        })
        .collect();
    let (mut extra_lists, mut extra_points, mut covered_all) = (0usize, 0usize, 0usize);
    for (qi, query) in q.chunks_exact(dim).enumerate() {
        let t = std::time::Instant::now();
        let (found, path) = index.search_allowed(query, 10, &params, &allow).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
        let truth: Vec<u32> = index.search_allowed(query, 10, &SearchParams { method: Method::Exact, ..Default::default() }, &allow).unwrap().0.iter().map(|(o, _)| *o).collect();
        let hit = found.iter().filter(|(o, _)| truth.contains(o)).count();
        total += hit as f64 / 10.0;
        nq += 1;
        {
            let dk = found.iter().map(|(o, _)| l2(&rows[*o as usize * dim..][..dim], query)).fold(0f32, f32::max).sqrt();
            let target = 4 * nprobe * index.len() / lists.len();
            let ranges = view.allowed_ranges(query, &allow, nprobe, target.max(50)).ranges;
            let read = |l: usize| ranges.iter().any(|r| r.start <= lists.starts[l] as usize && lists.starts[l + 1] as usize <= r.end);
            let extra: Vec<usize> = (0..lists.len())
                .filter(|&l| !read(l) && allow.count_in(lists.starts[l] as usize..lists.starts[l + 1] as usize) > 0)
                .filter(|&l| l2(&lists.centroids[l * dim..(l + 1) * dim], query).sqrt() - alpha * radius[l] < dk)
                .collect();
            extra_lists += extra.len();
            extra_points += extra.iter().map(|&l| (lists.starts[l + 1] - lists.starts[l]) as usize).sum::<usize>();
            let list_of = |o: u32| (0..lists.len()).find(|&l| (lists.starts[l]..lists.starts[l + 1]).contains(&o)).unwrap();
            if truth.iter().all(|&o| read(list_of(o)) || extra.contains(&list_of(o))) { covered_all += 1; }
        }
        if hit < 9 && std::env::var("QUIET").is_err() {
            let ranked = lists.ranked(query);
            let rank_of = |o: u32| ranked.iter().position(|&l| (lists.starts[l] ..lists.starts[l + 1]).contains(&o)).unwrap();
            let near: Vec<usize> = ranked.iter().take(3).map(|&l| allow.count_in(lists.starts[l] as usize..lists.starts[l + 1] as usize)).collect();
            let tl: Vec<usize> = truth.iter().map(|&o| rank_of(o)).collect();
            let fl: Vec<usize> = found.iter().map(|(o, _)| rank_of(*o)).collect();
            let target = 4 * nprobe * index.len() / lists.len();
            let r = view.allowed_ranges(query, &allow, nprobe, target.max(50));
            let (ranges, read, local) = (r.ranges, r.points, r.local);
            println!("q{qi} hit {hit} {path:?} near-allowed {near:?} truth lists {tl:?} found lists {fl:?} ranges {} read {read} local {local}", ranges.len());
        }
    }
    times.sort_by(f64::total_cmp);
    println!("p50 {:.3} ms p95 {:.3} ms", times[times.len() / 2], times[times.len() * 95 / 100]);
    println!("recall {:.3}; bound: extra lists {:.1}/query, extra points {:.0}/query, truth covered {covered_all}/{nq}", total / nq as f64, extra_lists as f64 / nq as f64, extra_points as f64 / nq as f64);
}
