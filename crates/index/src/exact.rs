//! Exact (brute-force) k-nearest-neighbour search: the ground truth for recall
//! and the fallback when a caller asks for exactness.

use crate::distance::kernels;
use crate::topk::{Scored, TopK};
use rayon::prelude::*;

/// The `k` rows of `data` (row-major, `dim` wide) nearest to `query` in squared
/// L2, ascending. `skip` excludes one offset (leave-one-out queries).
pub fn search(data: &[f32], dim: usize, query: &[f32], k: usize, skip: Option<u32>) -> Vec<Scored> {
    assert_eq!(query.len(), dim, "query has the wrong dimension");
    let l2 = kernels().l2_squared;
    let mut top = TopK::new(k);
    for (i, row) in data.chunks_exact(dim).enumerate() {
        let d = l2(row, query);
        if d < top.threshold() && Some(i as u32) != skip {
            top.push(Scored { distance: d, offset: i as u32 });
        }
    }
    top.into_sorted()
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

/// [`search`] for many queries, spread over the rayon pool.
pub fn search_many(data: &[f32], dim: usize, queries: &[f32], k: usize) -> Vec<Vec<Scored>> {
    queries.par_chunks_exact(dim).map(|q| search(data, dim, q, k, None)).collect()
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

    #[test]
    fn recall_counts_overlap() {
        assert_eq!(recall_at(&[1, 2, 3], &[3, 2, 9], 3), 2.0 / 3.0);
        assert_eq!(recall_at(&[], &[], 10), 1.0);
    }
}
