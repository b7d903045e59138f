//! Exact (brute-force) k-nearest-neighbour search: the ground truth for recall
//! and the fallback when a caller asks for exactness.

use crate::distance::kernels;
use crate::topk::{Scored, TopK};
use rayon::prelude::*;

/// The `k` rows of `data` (row-major, `dim` wide) nearest to `query` in squared
/// L2, ascending. `skip` excludes one offset (leave-one-out queries).
pub fn search(data: &[f32], dim: usize, query: &[f32], k: usize, skip: Option<u32>) -> Vec<Scored> {
    search_kept(data, dim, query, k, &|i| Some(i) != skip)
}

/// [`search`] over the rows `keep` accepts (a segment's live points).
pub fn search_kept(data: &[f32], dim: usize, query: &[f32], k: usize, keep: &dyn Fn(u32) -> bool) -> Vec<Scored> {
    assert_eq!(query.len(), dim, "query has the wrong dimension");
    let l2 = kernels().l2_squared;
    let mut top = TopK::new(k);
    let (pause, step) = pacing(dim, data.len() / dim.max(1));
    for (c, part) in data.chunks(step * dim.max(1)).enumerate() {
        if c > 0 && let Some(pause) = &pause {
            pause();
        }
        let first = c * step;
        for (j, row) in part.chunks_exact(dim).enumerate() {
            let i = (first + j) as u32;
            let d = l2(row, query);
            if d < top.threshold() && keep(i) {
                top.push(Scored { distance: d, offset: i });
            }
        }
    }
    top.into_sorted()
}

/// The pause of [`crate::paced`] on this thread and the rows between two of
/// its calls; without one, all `rows` in one step.
fn pacing(dim: usize, rows: usize) -> (Option<crate::Pause>, usize) {
    match crate::pause_here() {
        Some(pause) => (Some(pause), (crate::PACE_STEP_BYTES / (dim.max(1) * size_of::<f32>())).max(1)),
        None => (None, rows.max(1)),
    }
}

/// [`search`] over the rows at `offsets` only (a filter's allowed points):
/// the cost is theirs, not the whole matrix's.
pub fn search_among(data: &[f32], dim: usize, query: &[f32], k: usize, offsets: impl Iterator<Item = u32>) -> Vec<Scored> {
    assert_eq!(query.len(), dim, "query has the wrong dimension");
    let l2 = kernels().l2_squared;
    let mut top = TopK::new(k);
    let (pause, step) = pacing(dim, usize::MAX);
    for (n, o) in offsets.enumerate() {
        if let Some(pause) = &pause && n > 0 && n % step == 0 {
            pause();
        }
        let row = &data[o as usize * dim..(o as usize + 1) * dim];
        let d = l2(row, query);
        if d < top.threshold() {
            top.push(Scored { distance: d, offset: o });
        }
    }
    top.into_sorted()
}

/// Rows per distance batch: they stay in L2 while a group of queries is
/// scored against them.
fn chunk_rows(dim: usize) -> usize {
    (CHUNK_BYTES / (dim * 4)).max(1)
}

/// Scores `rows` (the index's rows from `first` on) against `query` with the
/// chosen kernel set's batch kernel (the same bits as its `l2_squared`) and
/// offers each to `top`, as [`search`] does.
fn push_chunk(rows: &[f32], query: &[f32], first: usize, dist: &mut Vec<f32>, top: &mut TopK) {
    dist.resize(rows.len() / query.len(), 0.0);
    (kernels().l2_rows)(rows, query, dist);
    for (i, &d) in dist.iter().enumerate() {
        let offset = (first + i) as u32;
        if d < top.threshold() {
            top.push(Scored { distance: d, offset });
        }
    }
}

/// The `k` of `candidates` (offsets into `data`) nearest to `query` by exact
/// squared L2, ascending: the last stage of every approximate search. Rows
/// are prefetched a few candidates ahead (candidates come in no memory order).
pub fn rerank(data: &[f32], dim: usize, query: &[f32], k: usize, candidates: &[Scored]) -> Vec<Scored> {
    const AHEAD: usize = 8;
    let l2 = kernels().l2_squared;
    let row = |p: u32| &data[p as usize * dim..(p as usize + 1) * dim];
    let mut top = TopK::new(k);
    for (i, s) in candidates.iter().enumerate() {
        if let Some(next) = candidates.get(i + AHEAD) {
            crate::distance::prefetch_lines(row(next.offset), (dim * 4).div_ceil(64));
        }
        let d = l2(row(s.offset), query);
        if d < top.threshold() {
            top.push(Scored { distance: d, offset: s.offset });
        }
    }
    top.into_sorted()
}

/// Queries scored per pass over the rows in [`search_many`].
const GROUP: usize = 16;
/// Bytes of rows scored for a whole group while they sit in the L2 cache.
const CHUNK_BYTES: usize = 128 << 10;

/// [`search`] (without `skip`) for many queries (row-major), same answers:
/// each cache-sized chunk of rows is read from memory once and scored for a
/// group of [`GROUP`] queries while it sits in L2, so a batch streams the
/// rows once per group rather than once per query. Groups × ranges of rows
/// are spread over the rayon pool (ranges only when there are too few groups
/// to keep every thread busy); a query's per-range top-k lists are merged.
pub fn search_many(data: &[f32], dim: usize, queries: &[f32], k: usize) -> Vec<Vec<Scored>> {
    assert!(dim > 0 && queries.len().is_multiple_of(dim), "queries are not whole rows of the dimension");
    let rows: Vec<&[f32]> = queries.chunks_exact(dim).collect();
    let n = data.len() / dim;
    let groups = rows.len().div_ceil(GROUP);
    if groups == 0 {
        return Vec::new();
    }
    let chunk_rows = chunk_rows(dim);
    let chunks = n.div_ceil(chunk_rows).max(1);
    // Enough tasks for every thread, a few times over so uneven ones even out.
    let ranges = (4 * rayon::current_num_threads()).div_ceil(groups).clamp(1, chunks);
    let range_rows = chunks.div_ceil(ranges) * chunk_rows;
    let ranges = n.div_ceil(range_rows).max(1);
    let parts: Vec<Vec<Vec<Scored>>> = (0..groups * ranges)
        .into_par_iter()
        .map(|t| {
            let (g, r) = (t / ranges, t % ranges);
            let group = &rows[g * GROUP..((g + 1) * GROUP).min(rows.len())];
            let (start, end) = (r * range_rows, ((r + 1) * range_rows).min(n));
            scan_range(data, dim, group, k, start, end)
        })
        .collect();
    // parts[g * ranges + r][i]: query g * GROUP + i over range r.
    (0..rows.len())
        .map(|q| {
            let (g, i) = (q / GROUP, q % GROUP);
            if ranges == 1 {
                return parts[g][i].clone();
            }
            let mut all: Vec<Scored> = (0..ranges).flat_map(|r| parts[g * ranges + r][i].iter().copied()).collect();
            all.sort_unstable();
            all.truncate(k);
            all
        })
        .collect()
}

/// The `k` nearest of rows `start..end` for each query of `group`, ascending,
/// scoring a chunk of rows for every query before the next chunk.
fn scan_range(data: &[f32], dim: usize, group: &[&[f32]], k: usize, start: usize, end: usize) -> Vec<Vec<Scored>> {
    let mut tops: Vec<TopK> = group.iter().map(|_| TopK::new(k)).collect();
    let mut dist = Vec::new();
    let mut lo = start;
    while lo < end {
        let hi = (lo + chunk_rows(dim)).min(end);
        for (q, top) in group.iter().zip(tops.iter_mut()) {
            push_chunk(&data[lo * dim..hi * dim], q, lo, &mut dist, top);
        }
        lo = hi;
    }
    tops.into_iter().map(TopK::into_sorted).collect()
}

/// Fraction of `truth`'s first `k` offsets found in `found`'s first `k`.
pub fn recall_at(found: &[u32], truth: &[u32], k: usize) -> f64 {
    let truth = &truth[..k.min(truth.len())];
    if truth.is_empty() {
        return 1.0;
    }
    let hits = found.iter().take(k).filter(|f| truth.contains(f)).count();
    hits as f64 / truth.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under `paced`, every exact scan pauses between steps of
    /// `PACE_STEP_BYTES` of rows and answers as without.
    #[test]
    fn a_paced_scan_pauses_between_steps_and_answers_the_same() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dim = 64;
        let step = crate::PACE_STEP_BYTES / (dim * 4);
        let rows = 3 * step + 17;
        let data: Vec<f32> = (0..rows * dim).map(|i| ((i * 7919) % 1013) as f32 / 1013.0).collect();
        let query: Vec<f32> = data[5 * dim..6 * dim].iter().map(|x| x + 0.01).collect();
        let pauses = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = std::sync::Arc::clone(&pauses);
        let pause: crate::Pause = std::sync::Arc::new(move || {
            counted.fetch_add(1, Ordering::Relaxed);
        });
        let odd = |o: u32| o % 2 == 1;
        let scans = || {
            (
                search(&data, dim, &query, 10, Some(5)),
                search_kept(&data, dim, &query, 10, &odd),
                search_among(&data, dim, &query, 10, 0..rows as u32),
            )
        };
        let plain = scans();
        let paced = crate::paced(pause.clone(), scans);
        assert_eq!(plain, paced);
        assert_eq!(pauses.load(Ordering::Relaxed), 3 * 3, "three pauses between four steps, in each scan");
        // The pause was this thread's for the closure only, even one that unwinds.
        search(&data, dim, &query, 10, None);
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| crate::paced(pause, || panic!("in a paced scan"))));
        assert!(unwound.is_err());
        search(&data, dim, &query, 10, None);
        assert_eq!(pauses.load(Ordering::Relaxed), 9);
    }

    #[test]
    fn finds_the_nearest_rows_in_order() {
        let data: Vec<f32> = (0..10).map(|i| i as f32).collect(); // 10 rows of dim 1
        let r = search(&data, 1, &[3.2], 3, None);
        let offsets: Vec<u32> = r.iter().map(|s| s.offset).collect();
        assert_eq!(offsets, vec![3, 4, 2]);
        assert!(r.windows(2).all(|w| w[0].distance <= w[1].distance));
        let r = search(&data, 1, &[3.2], 3, Some(3));
        assert_eq!(r[0].offset, 4);
        assert_eq!(search(&data, 1, &[0.0], 50, None).len(), 10);
    }

    /// Random rows with many exact duplicates (ties on the distance must be
    /// broken by offset, across ranges too).
    fn tied_data(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let distinct: Vec<f32> = (0..(n / 3).max(1) * dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let mut data = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let r = rng.random_range(0..distinct.len() / dim);
            data.extend_from_slice(&distinct[r * dim..(r + 1) * dim]);
        }
        data
    }

    #[test]
    fn search_many_answers_like_search() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for (n, dim, nq, k) in [(0, 4, 3, 5), (1, 3, 1, 1), (97, 5, 1, 10), (1500, 17, 37, 10), (3000, 128, 5, 7), (2500, 33, 40, 0), (600, 8, 3, 700)] {
            let data = tied_data(n, dim, n as u64);
            // Some queries are stored rows (distance-0 ties), the rest random.
            let queries: Vec<f32> = (0..nq)
                .flat_map(|i| {
                    if n > 0 && i % 2 == 0 {
                        let r = rng.random_range(0..n);
                        data[r * dim..(r + 1) * dim].to_vec()
                    } else {
                        (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()
                    }
                })
                .collect();
            let want: Vec<Vec<Scored>> = queries.chunks_exact(dim).map(|q| search(&data, dim, q, k, None)).collect();
            for threads in [1, 3, 8] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let got = pool.install(|| search_many(&data, dim, &queries, k));
                assert_eq!(got, want, "n {n} dim {dim} queries {nq} k {k} threads {threads}");
            }
        }
    }

    #[test]
    fn recall_counts_overlap() {
        assert_eq!(recall_at(&[1, 2, 3], &[3, 2, 9], 3), 2.0 / 3.0);
        assert_eq!(recall_at(&[], &[], 10), 1.0);
    }
}
