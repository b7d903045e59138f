//! The scan's partition into lists (inverted-file style): k-means centroids
//! over the points, each point stored in its nearest centroid's list, and a
//! list is a run of consecutive offsets. A query reads only the blocks of its
//! `nprobe` nearest lists instead of all of them; on data with structure
//! (clusters, real embeddings) a few lists hold its neighbours. On data
//! without it (the demo's sphere) the neighbours are spread over every list
//! and the exhaustive scan is as good as any partition.
//!
//! The build orders the points by list, so offsets change and the ids
//! section maps each offset back to its input row (ids are separate from
//! offsets for exactly this).

use crate::cancel::Cancel;
use crate::error::Result;
use rand::SeedableRng;
use rand::seq::index::sample;
use std::ops::Range;

/// Training points per list for the k-means.
const TRAIN_PER_LIST: usize = 64;
/// Lloyd rounds.
const ITERS: usize = 10;

/// Lists ranked exactly when a search reads `nprobe` of them
/// ([`ListsView::pick`]): the quantised distances to the centroids of a
/// clustered set (non-unit, 2000 clusters in 316 lists) put the nearest list
/// outside the best `2 · nprobe + 8` for one query in ten (recall@10 at one
/// list 0.979 → 0.886); `+ 64` ranked as the exact distances did on it and
/// on the real set.
fn pool_size(nprobe: usize) -> usize {
    2 * nprobe + 64
}

/// The number of lists `auto` gives `count` points: about √count (a list of
/// about √count points too), at least 1.
pub fn auto_lists(count: usize) -> usize {
    ((count as f64).sqrt().round() as usize).max(1)
}

/// A partition built in memory before it is written.
#[derive(Clone, Debug, PartialEq)]
pub struct Lists {
    /// `lists × dim` f32: each list's centroid.
    pub centroids: Vec<f32>,
    /// `lists + 1` offsets: list `i` holds offsets `starts[i]..starts[i + 1]`.
    pub starts: Vec<u32>,
}

impl Lists {
    pub fn view(&self) -> ListsView<'_> {
        ListsView { centroids: &self.centroids, starts: &self.starts, codes: &[] }
    }
}

/// Borrowed lists: from [`Lists`] or a memory-mapped index file.
#[derive(Clone, Copy, Debug)]
pub struct ListsView<'a> {
    pub centroids: &'a [f32],
    pub starts: &'a [u32],
    /// The centroids' 4-bit codes in fast-scan blocks, encoded by the scan's
    /// quantiser ([`super::ScanView::encode`]) when the index is built or
    /// opened, not stored; empty where there is no scan (unit tests) or the
    /// lists were attached without [`super::ScanCodes::set_lists`].
    pub codes: &'a [u8],
}

impl ListsView<'_> {
    pub fn len(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the lists describe `count` points of `dim` dimensions: one
    /// centroid per list, all finite; starts rising from 0 to `count`.
    pub fn check(&self, dim: usize, count: usize) -> std::result::Result<(), String> {
        let n = self.len();
        if n == 0 {
            return Err("the scan's partition has no lists".into());
        }
        if self.centroids.len() != n * dim {
            return Err(format!("the scan's partition has {} centroid values for {n} lists of {dim}", self.centroids.len()));
        }
        if self.centroids.iter().any(|x| !x.is_finite()) {
            return Err("the scan's list centroids are not finite".into());
        }
        if self.starts[0] != 0 || self.starts[n] as usize != count || self.starts.windows(2).any(|w| w[0] > w[1]) {
            return Err(format!("the scan's list starts do not rise from 0 to {count}"));
        }
        Ok(())
    }

    /// The offset ranges of the `nprobe` lists whose centroids are nearest
    /// `query` (all of them for 0), in offset order, adjacent ranges merged,
    /// empty ones dropped: the exact ranking, by distances to every
    /// centroid (searches use [`super::ScanView::probe`], which ranks by the
    /// centroids' codes first). When those lists hold fewer than `min_points`
    /// points, the next nearest lists are added until they hold enough (or
    /// there are no more), so a search can always answer its k.
    pub fn probe(&self, query: &[f32], nprobe: usize, min_points: usize) -> Vec<Range<usize>> {
        self.pick(query, None, nprobe, min_points)
    }

    /// Every list, nearest centroid to `query` first (ties: lower list).
    pub fn ranked(&self, query: &[f32]) -> Vec<usize> {
        self.ranked_with_distances(query).into_iter().map(|(_, i)| i).collect()
    }

    /// [`ListsView::ranked`] with each centroid's squared distance to `query`.
    pub fn ranked_with_distances(&self, query: &[f32]) -> Vec<(f32, usize)> {
        let dim = query.len();
        let l2 = crate::distance::kernels().l2_squared;
        let mut d: Vec<(f32, usize)> = (0..self.len()).map(|i| (l2(&self.centroids[i * dim..(i + 1) * dim], query), i)).collect();
        d.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        d
    }

    /// Whether [`ListsView::pick`] with `approx` ranks only part of the
    /// lists exactly at `nprobe` (else `approx` is not needed).
    pub fn ranks_by_codes(&self, nprobe: usize) -> bool {
        nprobe > 0 && pool_size(nprobe) < self.len()
    }

    /// [`ListsView::probe`], choosing among the lists with the smallest
    /// `approx` (the quantised distances from the query to the centroids,
    /// one per list, at least [`ListsView::len`] of them) when given: the
    /// [`pool_size`] of those are ranked by exact distance and the nearest `nprobe` of them read (then more, in
    /// that order, then in `approx` order, up to `min_points`). Searches use
    /// this: exact distances to every centroid read all of them (474 KiB
    /// for 316 lists of 384 dimensions), which cost a one-list probe a
    /// third of its time.
    pub fn pick(&self, query: &[f32], approx: Option<&[u16]>, nprobe: usize, min_points: usize) -> Vec<Range<usize>> {
        self.pick_ranked(query, approx, nprobe, min_points).ranges
    }

    /// [`ListsView::pick`], also saying which lists it ranked exactly but
    /// left unread ([`Picked`]).
    pub fn pick_ranked(&self, query: &[f32], approx: Option<&[u16]>, nprobe: usize, min_points: usize) -> Picked {
        let n = self.len();
        let dim = query.len();
        let size = |i: usize| (self.starts[i + 1] - self.starts[i]) as usize;
        let mut unread: Vec<(f32, usize)> = Vec::new();
        let mut ranked_all = true;
        let mut picked: Vec<usize> = if nprobe == 0 || nprobe >= n {
            (0..n).collect()
        } else {
            // The pool ranked exactly; the rest, if needed, by `approx`.
            // (code, list) packed in a u64 (code high): selecting among
            // integers took a tenth of the instructions of (u16, usize) pairs.
            let mut by_code: Vec<u64> = Vec::new();
            let (pool, in_pool): (Vec<usize>, usize) = match approx {
                Some(approx) if self.ranks_by_codes(nprobe) => {
                    by_code = approx[..n].iter().zip(0u64..).map(|(&a, i)| (u64::from(a) << 32) | i).collect();
                    let want = pool_size(nprobe);
                    by_code.select_nth_unstable(want - 1);
                    (by_code[..want].iter().map(|&key| (key & u64::from(u32::MAX)) as usize).collect(), want)
                }
                _ => ((0..n).collect(), 0),
            };
            ranked_all = pool.len() == n;
            let l2 = crate::distance::kernels().l2_squared;
            let mut d: Vec<(f32, usize)> = pool.iter().map(|&i| (l2(&self.centroids[i * dim..(i + 1) * dim], query), i)).collect();
            let order = |a: &(f32, usize), b: &(f32, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
            d.select_nth_unstable_by(nprobe - 1, order);
            let mut held: usize = d[..nprobe].iter().map(|x| size(x.1)).sum();
            let mut picked: Vec<usize> = d[..nprobe].iter().map(|x| x.1).collect();
            let mut from_pool = 0;
            if held < min_points {
                d[nprobe..].sort_unstable_by(order);
                let rest = &mut by_code[in_pool..];
                rest.sort_unstable();
                let next = d[nprobe..].iter().map(|x| x.1).chain(rest.iter().map(|&key| (key & u64::from(u32::MAX)) as usize));
                for i in next {
                    if held >= min_points {
                        break;
                    }
                    held += size(i);
                    picked.push(i);
                    from_pool += 1;
                }
                // Lists taken past the pool leave none of it unread.
                from_pool = from_pool.min(d.len() - nprobe);
            }
            unread = d[nprobe + from_pool..].to_vec();
            picked
        };
        picked.sort_unstable();
        let mut ranges: Vec<Range<usize>> = Vec::with_capacity(picked.len());
        for &i in &picked {
            let r = self.starts[i] as usize..self.starts[i + 1] as usize;
            if r.is_empty() {
                continue;
            }
            match ranges.last_mut() {
                Some(last) if last.end == r.start => last.end = r.end,
                _ => ranges.push(r),
            }
        }
        Picked { ranges, unread, ranked_all }
    }

    /// The points of list `i`.
    pub fn range(&self, i: usize) -> Range<usize> {
        self.starts[i] as usize..self.starts[i + 1] as usize
    }
}

/// What [`ListsView::pick_ranked`] chose.
#[derive(Clone, Debug, PartialEq)]
pub struct Picked {
    /// The offset ranges of the lists read, rising, adjacent ones merged.
    pub ranges: Vec<Range<usize>>,
    /// The lists ranked by their centroid's exact squared distance to the
    /// query but left unread, with that distance, in no particular order.
    pub unread: Vec<(f32, usize)>,
    /// Whether every list was ranked exactly (else only a pool of those
    /// nearest by the centroids' codes).
    pub ranked_all: bool,
}

/// Trains `lists` centroids on a seeded sample of `vectors` (k-means, nearest
/// centroid by the exact kernels) and assigns every point to its nearest.
/// Returns the centroids and each point's list.
/// Stops with [`crate::Error::Cancelled`] once `cancel` is set (checked
/// every round and every [`ASSIGN_SLICE`] rows of the assignment).
pub fn train(vectors: &[f32], dim: usize, lists: usize, seed: u64, cancel: &Cancel) -> Result<(Vec<f32>, Vec<u32>)> {
    let count = vectors.len() / dim;
    let lists = lists.clamp(1, count.max(1));
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let want = (lists * TRAIN_PER_LIST).min(count);
    let picked = if want < count { sample(&mut rng, count, want).into_vec() } else { (0..count).collect() };
    let row = |i: usize| &vectors[i * dim..(i + 1) * dim];
    let mut train = Vec::with_capacity(picked.len() * dim);
    for &i in &picked {
        train.extend_from_slice(row(i));
    }
    let nt = picked.len();
    let mut centroids: Vec<f32> = Vec::with_capacity(lists * dim);
    for i in sample(&mut rng, nt, lists) {
        centroids.extend_from_slice(&train[i * dim..(i + 1) * dim]);
    }
    for _ in 0..ITERS {
        cancel.check()?;
        let assign = nearest(&centroids, dim, &train);
        let mut sums = vec![0f64; lists * dim];
        let mut counts = vec![0usize; lists];
        for (t, &a) in assign.iter().enumerate() {
            counts[a as usize] += 1;
            for (s, &x) in sums[a as usize * dim..(a as usize + 1) * dim].iter_mut().zip(&train[t * dim..(t + 1) * dim]) {
                *s += f64::from(x);
            }
        }
        // An empty list takes a point from the largest one.
        let largest = (0..lists).max_by_key(|&c| counts[c]).unwrap_or(0);
        for c in 0..lists {
            if counts[c] == 0 {
                let donors: Vec<usize> = (0..nt).filter(|&t| assign[t] as usize == largest).collect();
                let t = donors[rand::Rng::random_range(&mut rng, 0..donors.len())];
                centroids[c * dim..(c + 1) * dim].copy_from_slice(&train[t * dim..(t + 1) * dim]);
            } else {
                for (d, s) in centroids[c * dim..(c + 1) * dim].iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                    *d = (*s / counts[c] as f64) as f32;
                }
            }
        }
    }
    let mut assign = Vec::with_capacity(count);
    let blocked = super::assign::Blocked::new(&centroids, dim);
    for slice in vectors.chunks(ASSIGN_SLICE * dim) {
        cancel.check()?;
        assign.extend(super::assign::nearest(&blocked, slice));
    }
    Ok((centroids, assign))
}

/// Rows assigned between two checks of a build's [`Cancel`] (about 0.3 s
/// at 128-d and 1000 lists on one core).
const ASSIGN_SLICE: usize = 1 << 16;

/// Each row's nearest centroid ([`super::assign`]).
fn nearest(centroids: &[f32], dim: usize, rows: &[f32]) -> Vec<u32> {
    super::assign::nearest(&super::assign::Blocked::new(centroids, dim), rows)
}

/// Orders points by list (stable: by input row within a list). Returns the
/// new order (`order[offset]` = input row) and the lists' starts.
pub fn order(assign: &[u32], lists: usize) -> (Vec<u32>, Vec<u32>) {
    let mut counts = vec![0u32; lists + 1];
    for &a in assign {
        counts[a as usize + 1] += 1;
    }
    for i in 0..lists {
        counts[i + 1] += counts[i];
    }
    let starts = counts.clone();
    let mut next = counts;
    let mut order = vec![0u32; assign.len()];
    for (row, &a) in assign.iter().enumerate() {
        order[next[a as usize] as usize] = row as u32;
        next[a as usize] += 1;
    }
    (order, starts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_groups_points_by_list_stably() {
        let (order, starts) = order(&[2, 0, 2, 1, 0], 4);
        assert_eq!(order, vec![1, 4, 3, 0, 2]);
        assert_eq!(starts, vec![0, 2, 3, 5, 5]);
    }

    #[test]
    fn probe_returns_the_nearest_lists_merged_in_offset_order() {
        // Four lists on a line at 0, 10, 20, 30, holding 2, 0, 3, 1 points.
        let lists = Lists { centroids: vec![0.0, 10.0, 20.0, 30.0], starts: vec![0, 2, 2, 5, 6] };
        let v = lists.view();
        v.check(1, 6).unwrap();
        assert_eq!(v.probe(&[19.0], 1, 1), vec![2..5]);
        assert_eq!(v.probe(&[24.0], 2, 1), vec![2..6]);
        // The empty list 1 between 0 and 2 does not break the merge.
        assert_eq!(v.probe(&[9.0], 3, 1), vec![0..5]);
        assert_eq!(v.probe(&[9.0], 0, 1), vec![0..6]);
        assert_eq!(v.probe(&[9.0], 99, 1), vec![0..6]);
        assert_eq!(v.probe(&[29.0], 2, 1).iter().map(|r| r.len()).sum::<usize>(), 4);
        // Too few points in the nearest lists: the next nearest join until enough.
        assert_eq!(v.probe(&[11.0], 1, 1), vec![2..5]); // list 1 (at 10) is empty; list 2 (at 20) next
        assert_eq!(v.probe(&[29.0], 1, 3), vec![2..6]);
        assert_eq!(v.probe(&[29.0], 1, 100), vec![0..6]);
    }

    #[test]
    fn pick_ranks_exactly_only_the_pool_the_codes_choose() {
        // 80 lists on a line at 0, 10, …, 790, one point each.
        let lists = Lists { centroids: (0..80).map(|i| i as f32 * 10.0).collect(), starts: (0..=80).collect() };
        let v = lists.view();
        assert!(v.ranks_by_codes(1) && !v.ranks_by_codes(8));
        // The codes put list 0, exactly nearest 1.0, last: it is outside the
        // pool, and the nearest list within the pool (list 1) is read.
        let mut approx: Vec<u16> = (0..80).map(|i| i as u16).collect();
        approx[0] = 1000;
        assert_eq!(v.pick(&[1.0], Some(&approx), 1, 1), vec![1..2]);
        assert_eq!(v.pick(&[1.0], None, 1, 1), vec![0..1]);
        // Lists 0–9 one point each, 10–79 empty, the codes in reverse: the
        // pool (lists 14–79) holds no point, so lists beyond it join in the
        // codes' order (13, 12, …) until 3 points.
        let starts: Vec<u32> = (0..=10).chain(std::iter::repeat_n(10, 70)).collect();
        let sparse = Lists { centroids: (0..80).map(|i| i as f32 * 10.0).collect(), starts };
        let approx: Vec<u16> = (0..80).rev().map(|i| i as u16).collect(); // list 79 first
        assert_eq!(sparse.view().pick(&[0.0], Some(&approx), 1, 3), vec![7..10]);
    }

    #[test]
    fn pick_ranked_reports_the_pool_it_left_unread() {
        // 80 lists on a line at 0, 10, …, 790, one point each; the codes rank
        // them in order, so the pool is lists 0–65 (2 · 1 + 64).
        let lists = Lists { centroids: (0..80).map(|i| i as f32 * 10.0).collect(), starts: (0..=80).collect() };
        let approx: Vec<u16> = (0..80).map(|i| i as u16).collect();
        let p = lists.view().pick_ranked(&[1.0], Some(&approx), 1, 1);
        assert_eq!((p.ranges.clone(), p.ranked_all), (vec![0..1], false));
        let mut unread = p.unread.clone();
        unread.sort_by_key(|u| u.1);
        let want: Vec<(f32, usize)> = (1..66).map(|i| ((i as f32 * 10.0 - 1.0).powi(2), i)).collect();
        assert_eq!(unread, want);
        // Lists taken for min_points come out of the unread pool.
        let p = lists.view().pick_ranked(&[1.0], Some(&approx), 1, 3);
        assert_eq!(p.ranges, vec![0..3]);
        assert!(p.unread.iter().all(|u| u.1 >= 3) && p.unread.len() == 63);
        // Past the pool (66 lists) for 70 points: none of it is left unread.
        let p = lists.view().pick_ranked(&[1.0], Some(&approx), 1, 70);
        assert!(p.ranges == vec![0..70] && p.unread.is_empty() && !p.ranked_all);
        // Without codes every list is ranked exactly.
        let p = lists.view().pick_ranked(&[1.0], None, 1, 1);
        assert!(p.ranked_all && p.unread.len() == 79);
    }

    #[test]
    fn check_rejects_inconsistent_lists() {
        let bad = [
            Lists { centroids: vec![0.0, 1.0], starts: vec![0, 3, 2] },
            Lists { centroids: vec![0.0, 1.0], starts: vec![1, 2, 4] },
            Lists { centroids: vec![0.0, 1.0], starts: vec![0, 2, 5] },
            Lists { centroids: vec![0.0], starts: vec![0, 2, 4] },
            Lists { centroids: vec![0.0, f32::NAN], starts: vec![0, 2, 4] },
            Lists { centroids: vec![], starts: vec![0] },
        ];
        for l in bad {
            assert!(l.view().check(1, 4).is_err(), "{l:?}");
        }
    }

    #[test]
    fn training_separates_well_separated_clusters() {
        // Three tight clusters far apart: three lists, one per cluster.
        let mut v = Vec::new();
        for i in 0..300 {
            let c = (i % 3) as f32 * 100.0;
            v.extend_from_slice(&[c + (i as f32 * 0.37).sin(), c + (i as f32 * 0.11).cos()]);
        }
        let (centroids, assign) = train(&v, 2, 3, 5, &Cancel::never()).unwrap();
        assert_eq!(centroids.len(), 6);
        for i in 0..300 {
            assert_eq!(assign[i], assign[i % 3], "point {i}");
        }
        assert_ne!(assign[0], assign[1]);
        assert_ne!(assign[1], assign[2]);
        assert_ne!(assign[0], assign[2]);
    }
}
