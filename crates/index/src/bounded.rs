//! Exact search that reads a quarter of the rows' bytes: each row kept as 8-bit
//! codes beside its reconstruction error `e = ‖x − x̂‖`. By the triangle
//! inequality a row's true distance lies within `e` (plus the query's own
//! rounding) of its codes' distance, so one pass over the codes finds every
//! row that can be among the `k` nearest, and only those are read in full.
//! The answer is the exact search's, not an estimate: a collection's memory
//! segments keep their promise of exactness while the scan reads 1 byte a
//! dimension instead of 4, in integer arithmetic (16 dimensions an
//! instruction). For spaces ranked by squared L2 (`l2`, `cosine`).
//!
//! One step for every dimension (the widest range / 255), so the codes'
//! distance is a sum of integer squares; rows whose dimensions have very
//! different ranges get loose bounds, and a segment whose queries read too
//! many rows in full stops using the codes ([`BoundedRows::worth_it`]).

use crate::distance::kernels;
use crate::topk::{Scored, TopK};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Codes of rows, with each row's reconstruction error.
#[derive(Debug)]
pub struct BoundedRows {
    dim: usize,
    /// Per dimension: `x ≈ min + step · code`.
    min: Vec<f32>,
    step: f32,
    /// `rows × dim` codes.
    codes: Vec<u8>,
    /// `‖x − x̂‖` per row, rounded up, and the largest.
    err: Vec<f32>,
    err_max: f32,
    /// Queries answered and rows they read in full.
    queries: AtomicU64,
    reads: AtomicU64,
}

/// A query farther than this many steps below a dimension's range (or above
/// it, past its 255 steps) is not bounded through the codes: its integer sums
/// could overflow. The caller scans exactly.
const QUERY_STEPS_LIMIT: f32 = 256.0;
/// Widest rows the integer kernel takes: `MAX_DIM · (2 · (255 + 256))²`
/// is under 2³², so its sums cannot overflow.
pub const MAX_DIM: usize = 4096;
/// Queries before [`BoundedRows::worth_it`] judges, and the share of the rows
/// a query may read in full on average for the codes to be worth reading.
const JUDGE_AFTER: u64 = 16;
const MAX_READ_SHARE: u64 = 8;

impl BoundedRows {
    /// Codes for `rows` (row-major, `dim` wide); none wider than [`MAX_DIM`].
    pub fn encode(rows: &[f32], dim: usize) -> Option<BoundedRows> {
        if dim == 0 || dim > MAX_DIM {
            return None;
        }
        let n = rows.len() / dim;
        // (A memory segment's rows are finite: checked when written.)
        let (lo, hi, _) = crate::vectors::column_ranges(rows, dim);
        let widest = lo.iter().zip(&hi).map(|(l, h)| h - l).fold(0f32, f32::max);
        let step = if n > 0 && (widest / 255.0).is_normal() { widest / 255.0 } else { 1.0 };
        let min: Vec<f32> = lo.iter().map(|&l| if l.is_finite() { l } else { 0.0 }).collect();
        let inv = 1.0 / step;
        // f32 arithmetic's own error, added to every row's: the
        // reconstruction `m + step · c` is off by at most 2⁻²³ of
        // `|m| + 255 step` a dimension, and the sum of squares by
        // `relative_error`.
        let widest_value = min.iter().map(|m| m.abs() + 255.0 * step).fold(0f32, f32::max);
        // And an absolute term: squares of tiny values round to denormals
        // or 0, where f32 errors are absolute (below 2⁻¹⁴⁹ a term); with it,
        // a row pruned is farther by more than any of that.
        let arithmetic = (dim as f32).sqrt() * widest_value * 2f32.powi(-22) + ((dim as f64 + 2.0).sqrt() * 2f64.powi(-73)) as f32;
        let rel = relative_error(dim);
        let mut codes = vec![0u8; n * dim];
        let mut err = Vec::with_capacity(n);
        for (row, out) in rows.chunks_exact(dim).zip(codes.chunks_exact_mut(dim)) {
            let mut e2 = 0f32;
            for ((&x, &m), c) in row.iter().zip(&min).zip(out.iter_mut()) {
                // Saturating: below the range 0, above it 255, NaN 0.
                *c = ((x - m) * inv + 0.5) as u8;
                let r = m + step * f32::from(*c);
                e2 += (x - r) * (x - r);
            }
            err.push(e2.sqrt() * (1.0 + rel) + arithmetic + f32::MIN_POSITIVE);
        }
        let err_max = err.iter().copied().fold(0f32, f32::max);
        Some(BoundedRows { dim, min, step, codes, err, err_max, queries: AtomicU64::new(0), reads: AtomicU64::new(0) })
    }

    pub fn len(&self) -> usize {
        self.err.len()
    }

    pub fn is_empty(&self) -> bool {
        self.err.is_empty()
    }

    /// Bytes held (codes, errors and ranges).
    pub fn bytes(&self) -> usize {
        self.codes.len() + 4 * (self.err.len() + self.min.len())
    }

    /// Whether the queries so far read few enough rows in full (on average at
    /// most 1/8 of them) for the codes to pay; before 16 queries, yes.
    pub fn worth_it(&self) -> bool {
        let q = self.queries.load(Ordering::Relaxed);
        q < JUDGE_AFTER || self.reads.load(Ordering::Relaxed) * MAX_READ_SHARE <= q * self.len() as u64
    }

    /// The `k` rows of `rows` (the rows encoded) nearest `query` by squared L2,
    /// among those `keep` accepts, as (distance, offset) ascending by
    /// (distance, `tie(offset)`, offset): the same answer as scanning every kept row
    /// with [`crate::distance::l2_squared`]. `None` when the query lies too far
    /// outside the rows' range for the codes to bound it: scan exactly.
    pub fn search(
        &self,
        rows: &[f32],
        query: &[f32],
        k: usize,
        keep: impl Fn(u32) -> bool,
        tie: impl Fn(u32) -> u64,
    ) -> Option<Vec<(f32, u32)>> {
        let dim = self.dim;
        assert_eq!(query.len(), dim, "query has the wrong dimension");
        assert_eq!(rows.len(), self.len() * dim, "rows are not the rows encoded");
        let k = k.min(self.len());
        if k == 0 {
            return Some(Vec::new());
        }
        // The query in half steps, rounded: q2 = round(2 (q − min) / step),
        // against codes doubled, so Σ (q2 − 2c)² = ‖(q' − x̂) / step‖² · 4
        // exactly, for q' = min + step · q2 / 2, the query rounded.
        let mut q2 = Vec::with_capacity(dim);
        let mut shift2 = 0f64;
        for (&q, &m) in query.iter().zip(&self.min) {
            let v = (q - m) / self.step;
            if !(v.is_finite() && (-QUERY_STEPS_LIMIT..=255.0 + QUERY_STEPS_LIMIT).contains(&v)) {
                return None;
            }
            let h = (2.0 * v).round();
            q2.push(h as i16);
            shift2 += (f64::from(q) - (f64::from(m) + f64::from(self.step) * f64::from(h) / 2.0)).powi(2);
        }
        // ‖q − q'‖, rounded up.
        let shift = (shift2.sqrt() * (1.0 + 1e-6)) as f32;
        let rel = relative_error(dim);
        let half_step = f64::from(self.step) / 2.0;
        let diff = int_kernel();
        let code = |o: usize| &self.codes[o * dim..(o + 1) * dim];

        // Pass 1: the k smallest upper bounds (their largest is `tau`, a bound
        // on the k-th true distance) and every row whose lower bound is not
        // past `tau` as it stood then (it only falls). A row is first tested
        // against `limit`, the integer sum past which no row's lower bound
        // can be under `tau`.
        let mut upper = TopK::new(k);
        let mut tau = f32::INFINITY;
        let mut limit = u32::MAX;
        let mut candidates: Vec<(f32, u32)> = Vec::new();
        let err_max = self.err_max + shift;
        for o in 0..self.len() {
            let sum = diff(code(o), &q2);
            if sum > limit || !keep(o as u32) {
                continue;
            }
            let s = (half_step * f64::from(sum).sqrt()) as f32;
            let e = self.err[o] + shift;
            let lower = s * (1.0 - rel) - e;
            if lower > tau {
                continue;
            }
            let up = s * (1.0 + rel) + e;
            if up < upper.threshold() {
                upper.push(Scored { distance: up, offset: o as u32 });
                // The k-th upper bound once there are k (+inf before).
                tau = upper.threshold();
                if tau.is_finite() {
                    // lower > tau for every row with s > (tau + e_max) / (1 − rel).
                    let s_max = f64::from(tau + err_max) / f64::from(1.0 - rel) / half_step;
                    limit = if s_max * s_max < f64::from(u32::MAX) { (s_max * s_max).ceil() as u32 } else { u32::MAX };
                }
            }
            candidates.push((lower, o as u32));
        }

        // Pass 2: the candidates by increasing lower bound, read exactly until
        // the next lower bound is past the k-th exact distance found.
        candidates.retain(|c| c.0 <= tau);
        candidates.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let l2 = kernels().l2_squared;
        let mut top: Vec<(f32, u64, u32)> = Vec::with_capacity(k + 1);
        let mut read = 0u64;
        for &(lower, o) in &candidates {
            if top.len() == k {
                let lb = lower.max(0.0);
                if lb * lb * (1.0 - rel) > top[k - 1].0 {
                    break;
                }
            }
            read += 1;
            let d = l2(&rows[o as usize * dim..(o as usize + 1) * dim], query);
            let key = (d, tie(o), o);
            if top.len() == k && key >= top[k - 1] {
                continue;
            }
            let at = top.partition_point(|t| *t <= key);
            top.insert(at, key);
            top.truncate(k);
        }
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.reads.fetch_add(read, Ordering::Relaxed);
        Some(top.into_iter().map(|(d, _, o)| (d, o)).collect())
    }
}

/// The relative error of a sum of `dim` f32 squares, generously: (dim + 2)
/// · 2⁻²⁴ taken as (dim + 8) · 2⁻²² (the exact kernel's sums as well).
fn relative_error(dim: usize) -> f32 {
    (dim as f32 + 8.0) * 2f32.powi(-22)
}

/// `Σ (q_i − 2 c_i)²` over codes `c` and a query in half steps `q`
/// (`-512 ≤ q_i ≤ 1022`, at most [`MAX_DIM`] of them: the sum fits, and
/// lanes adding modulo 2³² give it exactly).
pub type DiffFn = fn(codes: &[u8], q: &[i16]) -> u32;

pub fn diff_scalar(codes: &[u8], q: &[i16]) -> u32 {
    assert_eq!(codes.len(), q.len(), "kernel inputs differ in length");
    codes.iter().zip(q).map(|(&c, &q)| (i32::from(q) - 2 * i32::from(c)).pow(2) as u32).sum()
}

/// Every kernel this CPU can run, best last.
pub fn available() -> Vec<(&'static str, DiffFn)> {
    #[allow(unused_mut)]
    let mut sets: Vec<(&'static str, DiffFn)> = vec![("scalar", diff_scalar)];
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        sets.push(("avx2", x86::diff_avx2));
    }
    sets
}

/// The kernel in use: the best available, or scalar when `VECTORWISE_SIMD=scalar`.
fn int_kernel() -> DiffFn {
    static CHOSEN: OnceLock<(&'static str, DiffFn)> = OnceLock::new();
    CHOSEN.get_or_init(|| crate::distance::pick(available(), |k| k.0)).1
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    pub fn diff_avx2(codes: &[u8], q: &[i16]) -> u32 {
        assert_eq!(codes.len(), q.len(), "kernel inputs differ in length");
        // SAFETY: handed out by `available()` only after avx2 was detected;
        // the lengths are equal (checked above) and every load is in bounds.
        unsafe { diff_avx2_impl(codes, q) }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn diff_avx2_impl(codes: &[u8], q: &[i16]) -> u32 {
        let n = codes.len();
        let (c, qp) = (codes.as_ptr(), q.as_ptr());
        let mut acc0 = _mm256_setzero_si256();
        let mut acc1 = _mm256_setzero_si256();
        let mut i = 0;
        // SAFETY (every load below): i + 32 (or i + 16) ≤ n for both slices.
        while i + 32 <= n {
            let c0 = unsafe { _mm256_cvtepu8_epi16(_mm_loadu_si128(c.add(i).cast())) };
            let c1 = unsafe { _mm256_cvtepu8_epi16(_mm_loadu_si128(c.add(i + 16).cast())) };
            let q0 = unsafe { _mm256_loadu_si256(qp.add(i).cast()) };
            let q1 = unsafe { _mm256_loadu_si256(qp.add(i + 16).cast()) };
            let d0 = _mm256_sub_epi16(q0, _mm256_add_epi16(c0, c0));
            let d1 = _mm256_sub_epi16(q1, _mm256_add_epi16(c1, c1));
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(d0, d0));
            acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(d1, d1));
            i += 32;
        }
        if i + 16 <= n {
            let c0 = unsafe { _mm256_cvtepu8_epi16(_mm_loadu_si128(c.add(i).cast())) };
            let q0 = unsafe { _mm256_loadu_si256(qp.add(i).cast()) };
            let d0 = _mm256_sub_epi16(q0, _mm256_add_epi16(c0, c0));
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(d0, d0));
            i += 16;
        }
        let acc = _mm256_add_epi32(acc0, acc1);
        let folded = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        let folded = _mm_add_epi32(folded, _mm_shuffle_epi32(folded, 0b01_00_11_10));
        let folded = _mm_add_epi32(folded, _mm_shuffle_epi32(folded, 0b10_11_00_01));
        let mut sum = _mm_cvtsi128_si32(folded) as u32;
        sum += super::diff_scalar(&codes[i..], &q[i..]);
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand::rngs::StdRng;

    /// The brute force the bounded search must equal: every kept row by
    /// `l2_squared`, ordered by (distance, tie).
    fn brute(rows: &[f32], dim: usize, q: &[f32], k: usize, keep: impl Fn(u32) -> bool, tie: impl Fn(u32) -> u64) -> Vec<(f32, u32)> {
        let mut all: Vec<(f32, u64, u32)> = rows
            .chunks_exact(dim)
            .enumerate()
            .filter(|(o, _)| keep(*o as u32))
            .map(|(o, r)| (crate::distance::l2_squared(r, q), tie(o as u32), o as u32))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        all.truncate(k);
        all.into_iter().map(|(d, _, o)| (d, o)).collect()
    }

    fn clustered(rng: &mut StdRng, n: usize, dim: usize, unit: bool) -> Vec<f32> {
        let centres: Vec<f32> = (0..16 * dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let mut rows = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let c = rng.random_range(0..16);
            let start = rows.len();
            for d in 0..dim {
                rows.push(centres[c * dim + d] + 0.3 * rng.random_range(-1.0f32..1.0));
            }
            if unit {
                let norm = rows[start..].iter().map(|x| x * x).sum::<f32>().sqrt();
                rows[start..].iter_mut().for_each(|x| *x /= norm);
            }
        }
        rows
    }

    #[test]
    fn equals_the_exact_scan_on_clustered_rows_with_deletions() {
        let mut rng = StdRng::seed_from_u64(7);
        for (dim, unit) in [(128, true), (37, false), (8, false), (1, false)] {
            let n = 3001;
            let rows = clustered(&mut rng, n, dim, unit);
            let b = BoundedRows::encode(&rows, dim).unwrap();
            for t in 0..40 {
                // Queries near the rows, far from them, and rows themselves.
                let mut q: Vec<f32> = match t % 3 {
                    0 => rows[(t * 17 % n) * dim..(t * 17 % n + 1) * dim].to_vec(),
                    1 => (0..dim).map(|_| rng.random_range(-1.5f32..1.5)).collect(),
                    _ => (0..dim).map(|_| rng.random_range(-40.0f32..40.0)).collect(),
                };
                if unit && t % 3 == 1 {
                    // A random unit query: unlike the rows, but in their range.
                    let norm = q.iter().map(|x| x * x).sum::<f32>().sqrt();
                    q.iter_mut().for_each(|x| *x /= norm);
                }
                let keep = |o: u32| o % 7 != 3;
                let tie = |o: u32| u64::from(o).wrapping_mul(2654435761) % 1000;
                for k in [1, 10, 100] {
                    match b.search(&rows, &q, k, keep, tie) {
                        Some(got) => assert_eq!(got, brute(&rows, dim, &q, k, keep, tie), "dim {dim} query {t} k {k}"),
                        // Only a query far outside the rows' range is left to the exact scan.
                        None => assert_eq!(t % 3, 2, "dim {dim} query {t} k {k} was not bounded"),
                    }
                }
            }
        }
    }

    #[test]
    fn ties_and_duplicates_are_ordered_as_the_exact_scan_orders_them() {
        // 500 copies of 4 distinct rows: every distance is tied many times.
        let dim = 16;
        let base: Vec<f32> = (0..4 * dim).map(|i| (i % 5) as f32 * 0.25).collect();
        let rows: Vec<f32> = (0..500).flat_map(|i| base[(i % 4) * dim..(i % 4 + 1) * dim].to_vec()).collect();
        let b = BoundedRows::encode(&rows, dim).unwrap();
        let tie = |o: u32| 10_000 - u64::from(o);
        for q in [base[..dim].to_vec(), vec![0.1; dim]] {
            for k in [1, 10, 130, 600] {
                assert_eq!(b.search(&rows, &q, k, |_| true, tie).unwrap(), brute(&rows, dim, &q, k, |_| true, tie));
            }
        }
    }

    #[test]
    fn constant_dimensions_empty_sets_and_far_queries() {
        let dim = 4;
        let rows: Vec<f32> = (0..64).flat_map(|i| [1.0, i as f32, 1.0, -2.0]).collect();
        let b = BoundedRows::encode(&rows, dim).unwrap();
        let q = [1.0, 10.2, 1.0, -2.0];
        assert_eq!(b.search(&rows, &q, 3, |_| true, u64::from).unwrap(), brute(&rows, dim, &q, 3, |_| true, u64::from));
        assert_eq!(b.search(&rows, &q, 3, |_| false, u64::from).unwrap(), vec![]);
        assert_eq!(b.search(&rows, &q, 0, |_| true, u64::from).unwrap(), vec![]);
        // Millions of steps away: not bounded through the codes.
        assert_eq!(b.search(&rows, &[1.0, 1e9, 1.0, -2.0], 3, |_| true, u64::from), None);
        let empty = BoundedRows::encode(&[], dim).unwrap();
        assert_eq!(empty.search(&[], &q, 3, |_| true, u64::from).unwrap(), vec![]);
    }

    /// Tiny and huge scales, offsets far from 0, a constant dimension,
    /// duplicates, ties broken by a key that is not one-to-one, k past the
    /// rows: whenever the codes answer, they answer as the exact scan.
    /// (Found by review: values near 1e-25 square to denormals or 0, where
    /// relative margins alone dropped a tied row.)
    #[test]
    fn equals_the_exact_scan_at_every_scale() {
        let mut rng = StdRng::seed_from_u64(99);
        let mut fails = Vec::new();
        // 32 rows at i * 1e-30: every squared distance to 0 rounds to 0.
        let rows: Vec<f32> = (0..32).map(|i| i as f32 * 1e-30).collect();
        let b = BoundedRows::encode(&rows, 1).unwrap();
        let tie = |o: u32| 1000 - u64::from(o);
        assert_eq!(b.search(&rows, &[0.0], 1, |_| true, tie).unwrap(), brute(&rows, 1, &[0.0], 1, |_| true, tie));
        let scales = [(1e-36f32, 0.0f32), (1e-30, 0.0), (1e-25, 0.0), (1e-22, 0.0), (1e-19, 0.0), (1e-13, 0.0), (1e-3, 1e3), (1.0, 1e6), (10.0, -1e6), (1e5, 0.0), (1e15, 0.0)];
        for &(scale, offset) in &scales {
            for dim in [1usize, 3, 16, 33] {
                let n = 400;
                let mut rows: Vec<f32> = (0..n * dim).map(|_| offset + scale * rng.random_range(-1.0f32..1.0)).collect();
                for r in 0..n {
                    rows[r * dim] = offset + scale * 0.25;
                }
                for r in (0..n).step_by(5) {
                    let v = rows[(r / 50) * dim..(r / 50 + 1) * dim].to_vec();
                    rows[r * dim..(r + 1) * dim].copy_from_slice(&v);
                }
                let b = BoundedRows::encode(&rows, dim).unwrap();
                for t in 0..20 {
                    let at = (t * 13 % n) * dim..(t * 13 % n + 1) * dim;
                    let q: Vec<f32> = match t % 3 {
                        0 => rows[at].to_vec(),
                        1 => rows[at].iter().map(|x| x + scale * 1e-3 * rng.random_range(-1.0f32..1.0)).collect(),
                        _ => (0..dim).map(|_| offset + scale * rng.random_range(-1.5f32..1.5)).collect(),
                    };
                    for (k, one_to_one) in [(1usize, false), (7, true), (50, false), (n, true), (n + 5, false)] {
                        let tie = |o: u32| if one_to_one { u64::from(o).wrapping_mul(2654435761) % 100_003 } else { u64::from(o % 3) };
                        let keep = |o: u32| o % 11 != 4;
                        if let Some(got) = b.search(&rows, &q, k, keep, tie)
                            && got != brute(&rows, dim, &q, k, keep, tie)
                        {
                            fails.push(format!("scale {scale} offset {offset} dim {dim} query {t} k {k}"));
                        }
                    }
                }
            }
        }
        assert!(fails.is_empty(), "{} differ, e.g. {:?}", fails.len(), &fails[..fails.len().min(5)]);
        // A k past any allocation is cut to the rows.
        assert_eq!(b.search(&rows, &[0.0], usize::MAX, |_| true, tie).unwrap().len(), 32);
    }

    #[test]
    fn every_kernel_equals_the_scalar_reference() {
        let mut rng = StdRng::seed_from_u64(11);
        for len in [0, 1, 15, 16, 17, 31, 32, 33, 128, 384, 1000, MAX_DIM] {
            let codes: Vec<u8> = (0..len).map(|i| if i % 9 == 0 { 255 } else { rng.random() }).collect();
            let q: Vec<i16> = (0..len).map(|i| if i % 7 == 0 { -512 } else if i % 11 == 0 { 1022 } else { rng.random_range(-512..=1022) }).collect();
            let want = diff_scalar(&codes, &q);
            // The extremes: every difference as large as it can be.
            let worst = (vec![0u8; len], vec![1022i16; len]);
            assert_eq!(diff_scalar(&worst.0, &worst.1), 1022 * 1022 * len as u32);
            for (name, k) in available() {
                assert_eq!(k(&codes, &q), want, "{name} at length {len}");
                assert_eq!(k(&worst.0, &worst.1), 1022 * 1022 * len as u32, "{name} at length {len}, extremes");
            }
        }
    }

    #[test]
    fn reads_few_rows_in_full() {
        // The point of it: on clustered unit rows a query reads a small share
        // of the rows exactly (counted through `tie`, called once per read).
        let mut rng = StdRng::seed_from_u64(3);
        let (n, dim) = (10_000, 128);
        let rows = clustered(&mut rng, n, dim, true);
        let b = BoundedRows::encode(&rows, dim).unwrap();
        let reads = std::cell::Cell::new(0usize);
        for t in 0..20 {
            let q = rows[(t * 331) * dim..(t * 331 + 1) * dim].to_vec();
            b.search(&rows, &q, 10, |_| true, |o| {
                reads.set(reads.get() + 1);
                u64::from(o)
            })
            .unwrap();
        }
        assert!(reads.get() < 20 * n / 20, "{} rows read in full for 20 queries of {n}", reads.get());
    }
}
