//! The nearest list centroid of many rows: the k-means rounds and the final
//! assignment of a partitioned scan's build, most of its time (perf, 640k ×
//! 128 into 800 lists: the exact kernel was 38 % of the samples).
//!
//! A row's nearest centroid is the one with the least `‖c‖² − 2·x·c` (its
//! squared distance less `‖x‖²`, the same for every centroid). The
//! centroids are stored in blocks of [`W`] laid out dimension-major, so one
//! load of a block's values at dimension `d` serves a tile of rows, each
//! multiplying it by its own `x[d]`: the tile's dot products accumulate in
//! registers, one fused multiply-add per row and lane, where the squared
//! difference took a subtraction and a multiply-add per row and centroid.
//! The scalar set computes the same sums unfused (slower, for CPUs without
//! FMA, and the tests' reference); ties go to the lower centroid.
//!
//! Rows and centroids are first moved by the centroids' mean `m`: the
//! expansion subtracts two numbers of the size of ‖x‖·‖c‖, and on data with
//! a large common offset (components near 1000 ± 1) that cancellation put
//! 94 % of the rows in another list than their nearest, and k-means itself
//! went astray (a review's probe). Around the mean the values are those of
//! the spread, and `x − m` is exact in f32 for values within a factor of two
//! of `m`.

// Tiles index rows and lanes together (acc[r][j], xs[r][d]): plain ranges.
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;

/// Centroids per block (the lanes of one AVX-512 register, two of AVX2).
const W: usize = 16;
/// Rows scored per task (a multiple of every tile height).
const TASK_ROWS: usize = 256;

/// Centroids laid out for [`nearest`], less their mean: block `b`'s values
/// at dimension `d` are `t[(b · dim + d) · W ..][..W]`; padding centroids
/// have an infinite norm, so they are never nearest.
#[derive(Debug)]
pub struct Blocked {
    t: Vec<f32>,
    norms: Vec<f32>,
    /// The centroids' mean, taken from every row before it is scored.
    mean: Vec<f32>,
    dim: usize,
}

impl Blocked {
    /// `centroids`: row-major, `dim` wide, at least one.
    pub fn new(centroids: &[f32], dim: usize) -> Blocked {
        assert!(dim > 0 && !centroids.is_empty() && centroids.len().is_multiple_of(dim), "centroids are whole rows");
        let count = centroids.len() / dim;
        let blocks = count.div_ceil(W);
        let mut t = vec![0f32; blocks * dim * W];
        let mut norms = vec![f32::INFINITY; blocks * W];
        let mut sum = vec![0f64; dim];
        for row in centroids.chunks_exact(dim) {
            sum.iter_mut().zip(row).for_each(|(s, &x)| *s += f64::from(x));
        }
        let mean: Vec<f32> = sum.iter().map(|s| (s / count as f64) as f32).collect();
        for (c, row) in centroids.chunks_exact(dim).enumerate() {
            let (b, j) = (c / W, c % W);
            let mut norm = 0f64;
            for (d, (&x, &m)) in row.iter().zip(&mean).enumerate() {
                let v = x - m;
                t[(b * dim + d) * W + j] = v;
                norm += f64::from(v) * f64::from(v);
            }
            norms[c] = norm as f32;
        }
        Blocked { t, norms, mean, dim }
    }
}

/// A kernel: each row of `rows` (whole rows of the centroids' dimension)
/// gets the index of its nearest centroid in `out`.
type NearestFn = fn(&Blocked, &[f32], &mut [u32]);

/// A kernel set, named as the distance kernels are (`VECTORWISE_SIMD`).
#[derive(Clone, Copy, Debug)]
pub struct AssignKernels {
    pub name: &'static str,
    pub nearest: NearestFn,
}

/// Every set this CPU can run, best last.
pub fn available() -> Vec<AssignKernels> {
    #[allow(unused_mut)]
    let mut sets = vec![AssignKernels { name: "scalar", nearest: nearest_scalar }];
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            sets.push(AssignKernels { name: "avx2+fma", nearest: x86::nearest_avx2 });
        }
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
            sets.push(AssignKernels { name: "avx512f", nearest: x86::nearest_avx512 });
        }
    }
    sets
}

fn kernels() -> &'static AssignKernels {
    static CHOSEN: std::sync::OnceLock<AssignKernels> = std::sync::OnceLock::new();
    CHOSEN.get_or_init(|| crate::distance::pick(available(), |k| k.name))
}

/// Each row's nearest centroid (rows: row-major, the centroids' dimension),
/// over the rayon pool.
pub fn nearest(centroids: &Blocked, rows: &[f32]) -> Vec<u32> {
    nearest_with(kernels(), centroids, rows)
}

/// [`nearest`] with the kernel set `k`.
pub fn nearest_with(k: &AssignKernels, centroids: &Blocked, rows: &[f32]) -> Vec<u32> {
    let dim = centroids.dim;
    assert!(rows.len().is_multiple_of(dim), "rows are whole rows of the centroids' dimension");
    let mut out = vec![0u32; rows.len() / dim];
    out.par_chunks_mut(TASK_ROWS).zip(rows.par_chunks(TASK_ROWS * dim)).for_each(|(o, r)| {
        // The task's rows less the centroids' mean (see the module doc).
        let mut moved = r.to_vec();
        for row in moved.chunks_exact_mut(dim) {
            row.iter_mut().zip(&centroids.mean).for_each(|(x, &m)| *x -= m);
        }
        (k.nearest)(centroids, &moved, o)
    });
    out
}

fn nearest_scalar(c: &Blocked, rows: &[f32], out: &mut [u32]) {
    each_tile::<4>(c.dim, rows, out, |tile, o| tile_nearest::<4>(c, tile, o), |row, o| tile_nearest::<1>(c, row, o));
}

/// Every kernel's walk: `tile` on each `R` rows (whole rows of `dim`) with
/// their `R` outputs, then `one` on each row left over with its output.
#[inline(always)]
fn each_tile<const R: usize>(
    dim: usize,
    rows: &[f32],
    out: &mut [u32],
    mut tile: impl FnMut(&[f32], &mut [u32]),
    mut one: impl FnMut(&[f32], &mut [u32]),
) {
    let full = out.len() / R * R;
    let (head, rest) = out.split_at_mut(full);
    for (t, o) in rows[..full * dim].chunks_exact(R * dim).zip(head.chunks_exact_mut(R)) {
        tile(t, o);
    }
    for (row, o) in rows[full * dim..].chunks_exact(dim).zip(rest.chunks_exact_mut(1)) {
        one(row, o);
    }
}

/// The nearest centroid of each of the `R` rows of `tile` into `out`.
fn tile_nearest<const R: usize>(c: &Blocked, tile: &[f32], out: &mut [u32]) {
    let dim = c.dim;
    let xs: [&[f32]; R] = std::array::from_fn(|r| &tile[r * dim..(r + 1) * dim]);
    let mut best = [(f32::INFINITY, 0u32); R];
    for (b, (block, norms)) in c.t.chunks_exact(dim * W).zip(c.norms.chunks_exact(W)).enumerate() {
        let mut acc = [[0f32; W]; R];
        for (d, lanes) in block.chunks_exact(W).enumerate() {
            let lanes: &[f32; W] = lanes.try_into().expect("W lanes");
            for r in 0..R {
                let x = xs[r][d];
                for j in 0..W {
                    acc[r][j] += x * lanes[j];
                }
            }
        }
        for r in 0..R {
            for j in 0..W {
                let s = norms[j] - 2.0 * acc[r][j];
                if s < best[r].0 {
                    best[r] = (s, (b * W + j) as u32);
                }
            }
        }
    }
    for r in 0..R {
        out[r] = best[r].1;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Blocked, W, each_tile};
    use std::arch::x86_64::*;

    pub(super) fn nearest_avx2(c: &Blocked, rows: &[f32], out: &mut [u32]) {
        // SAFETY: only handed out by `available()`, which checked avx2 and fma.
        unsafe { tiles_avx2(c, rows, out) }
    }

    pub(super) fn nearest_avx512(c: &Blocked, rows: &[f32], out: &mut [u32]) {
        // SAFETY: only handed out by `available()`, which checked avx512f and fma.
        unsafe { tiles_avx512(c, rows, out) }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tiles_avx2(c: &Blocked, rows: &[f32], out: &mut [u32]) {
        each_tile::<4>(
            c.dim,
            rows,
            out,
            // SAFETY: same features; `each_tile` hands 4 whole rows.
            |t, o| unsafe { tile_avx2::<4>(c, t, o) },
            // SAFETY: same features; one whole row.
            |r, o| unsafe { tile_avx2::<1>(c, r, o) },
        );
    }

    /// # Safety
    /// The CPU must support AVX-512F and FMA.
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn tiles_avx512(c: &Blocked, rows: &[f32], out: &mut [u32]) {
        each_tile::<8>(
            c.dim,
            rows,
            out,
            // SAFETY: same features; `each_tile` hands 8 whole rows.
            |t, o| unsafe { tile_avx512::<8>(c, t, o) },
            // SAFETY: same features; one whole row.
            |r, o| unsafe { tile_avx512::<1>(c, r, o) },
        );
    }

    /// The lowest index among the lanes holding the least score.
    fn lowest(scores: &[f32; W], index: &[u32; W]) -> u32 {
        let mut best = (f32::INFINITY, u32::MAX);
        for (&s, &i) in scores.iter().zip(index) {
            if s < best.0 || (s == best.0 && i < best.1) {
                best = (s, i);
            }
        }
        if best.1 == u32::MAX { 0 } else { best.1 }
    }

    /// `R` rows: per block of 16 centroids, 16 lanes of dot products a row
    /// (two 8-lane registers), then each lane keeps its least score and
    /// that centroid's index (strictly less: the earlier block on a tie).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `tile.len() == R * c.dim`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_avx2<const R: usize>(c: &Blocked, tile: &[f32], out: &mut [u32]) {
        let dim = c.dim;
        assert!(tile.len() == R * dim && out.len() == R && c.t.len() == c.norms.len() * dim);
        let x = tile.as_ptr();
        let mut best = [[_mm256_set1_ps(f32::INFINITY); 2]; R];
        let mut best_at = [[_mm256_setzero_si256(); 2]; R];
        let lane = [_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15)];
        for b in 0..c.norms.len() / W {
            // SAFETY: block `b` spans `dim * W` values of `t` from
            // `b * dim * W` (length checked above); row `r`'s value at `d`
            // is `x[r * dim + d]`, inside `tile`.
            unsafe {
                let block = c.t.as_ptr().add(b * dim * W);
                let mut acc = [[_mm256_setzero_ps(); 2]; R];
                for d in 0..dim {
                    let lo = _mm256_loadu_ps(block.add(d * W));
                    let hi = _mm256_loadu_ps(block.add(d * W + 8));
                    for r in 0..R {
                        let v = _mm256_broadcast_ss(&*x.add(r * dim + d));
                        acc[r][0] = _mm256_fmadd_ps(v, lo, acc[r][0]);
                        acc[r][1] = _mm256_fmadd_ps(v, hi, acc[r][1]);
                    }
                }
                let base = _mm256_set1_epi32((b * W) as i32);
                for h in 0..2 {
                    let norms = _mm256_loadu_ps(c.norms.as_ptr().add(b * W + 8 * h));
                    let at = _mm256_add_epi32(base, lane[h]);
                    for r in 0..R {
                        let s = _mm256_sub_ps(norms, _mm256_add_ps(acc[r][h], acc[r][h]));
                        let less = _mm256_cmp_ps::<_CMP_LT_OQ>(s, best[r][h]);
                        best[r][h] = _mm256_blendv_ps(best[r][h], s, less);
                        best_at[r][h] = _mm256_blendv_epi8(best_at[r][h], at, _mm256_castps_si256(less));
                    }
                }
            }
        }
        for r in 0..R {
            let (mut scores, mut index) = ([0f32; W], [0u32; W]);
            for h in 0..2 {
                // SAFETY: 8 lanes into 8 slots of the W-long arrays.
                unsafe {
                    _mm256_storeu_ps(scores.as_mut_ptr().add(8 * h), best[r][h]);
                    _mm256_storeu_si256(index.as_mut_ptr().add(8 * h).cast(), best_at[r][h]);
                }
            }
            out[r] = lowest(&scores, &index);
        }
    }

    /// [`tile_avx2`] with one 16-lane register a row.
    ///
    /// # Safety
    /// The CPU must support AVX-512F and FMA; `tile.len() == R * c.dim`.
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn tile_avx512<const R: usize>(c: &Blocked, tile: &[f32], out: &mut [u32]) {
        let dim = c.dim;
        assert!(tile.len() == R * dim && out.len() == R && c.t.len() == c.norms.len() * dim);
        let x = tile.as_ptr();
        let mut best = [_mm512_set1_ps(f32::INFINITY); R];
        let mut best_at = [_mm512_setzero_si512(); R];
        let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        for b in 0..c.norms.len() / W {
            // SAFETY: as in `tile_avx2`.
            unsafe {
                let block = c.t.as_ptr().add(b * dim * W);
                let mut acc = [_mm512_setzero_ps(); R];
                for d in 0..dim {
                    let lanes = _mm512_loadu_ps(block.add(d * W));
                    for r in 0..R {
                        acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(*x.add(r * dim + d)), lanes, acc[r]);
                    }
                }
                let norms = _mm512_loadu_ps(c.norms.as_ptr().add(b * W));
                let at = _mm512_add_epi32(_mm512_set1_epi32((b * W) as i32), lane);
                for r in 0..R {
                    let s = _mm512_sub_ps(norms, _mm512_add_ps(acc[r], acc[r]));
                    let less = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(s, best[r]);
                    best[r] = _mm512_mask_blend_ps(less, best[r], s);
                    best_at[r] = _mm512_mask_blend_epi32(less, best_at[r], at);
                }
            }
        }
        for r in 0..R {
            let (mut scores, mut index) = ([0f32; W], [0u32; W]);
            // SAFETY: 16 lanes into the W-long (16) arrays.
            unsafe {
                _mm512_storeu_ps(scores.as_mut_ptr(), best[r]);
                _mm512_storeu_si512(index.as_mut_ptr().cast(), best_at[r]);
            }
            out[r] = lowest(&scores, &index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The exact nearest by squared distance in f64, and that distance.
    fn reference(centroids: &[f32], dim: usize, row: &[f32]) -> Vec<f64> {
        centroids.chunks_exact(dim).map(|c| c.iter().zip(row).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum()).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Every kernel set picks, for every row, a centroid as near as the
        /// exact nearest up to f32 rounding (a tie may go either way), and
        /// the FMA sets agree with each other bit for bit.
        #[test]
        fn every_kernel_finds_the_nearest_centroid(count in 1usize..70, dim in 1usize..40, n in 0usize..40, offset in prop_oneof![Just(0f32), Just(1000f32), Just(-3e4f32)], seed in any::<u64>()) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            // Around 0, or around a large common offset (where ‖c‖² − 2·x·c
            // alone cancels away the differences).
            let centroids: Vec<f32> = (0..count * dim).map(|_| offset + rng.random_range(-1.0..1.0f32)).collect();
            // Rows near centroids, some equal to one.
            let rows: Vec<f32> = (0..n).flat_map(|i| {
                let c = rng.random_range(0..count);
                let noise = if i % 3 == 0 { 0.0 } else { 0.3 };
                centroids[c * dim..(c + 1) * dim].iter().map(|&x| x + noise * rng.random_range(-1.0..1.0f32)).collect::<Vec<_>>()
            }).collect();
            let blocked = Blocked::new(&centroids, dim);
            let mut fused: Option<Vec<u32>> = None;
            for k in available() {
                let got = nearest_with(&k, &blocked, &rows);
                prop_assert_eq!(got.len(), n);
                for (i, &g) in got.iter().enumerate() {
                    let d = reference(&centroids, dim, &rows[i * dim..(i + 1) * dim]);
                    let best = d.iter().copied().fold(f64::INFINITY, f64::min);
                    prop_assert!((g as usize) < count, "{}: row {} got padding {}", k.name, i, g);
                    prop_assert!(d[g as usize] <= best + 1e-5 * (1.0 + best), "{}: row {} got {} at {} > {}", k.name, i, g, d[g as usize], best);
                }
                if k.name != "scalar" {
                    if let Some(f) = &fused {
                        prop_assert_eq!(f, &got, "{} differs from the other FMA set", k.name);
                    }
                    fused = Some(got);
                }
            }
        }
    }

    /// Equal centroids (centroid `i` is `[i % 5; dim]`, so each value recurs
    /// every 5, across lanes and blocks, and a later block's copy can sit in
    /// a lower lane): every set gives the lowest index.
    #[test]
    fn ties_go_to_the_lowest_centroid() {
        for (count, dim) in [(7, 1), (16, 3), (33, 5), (70, 17)] {
            let centroids: Vec<f32> = (0..count).flat_map(|i| vec![(i % 5) as f32; dim]).collect();
            let blocked = Blocked::new(&centroids, dim);
            // Rows at each value, and 0.3 past it: equally near each copy of
            // that value (a tie only for equal centroids: after the move by
            // the mean, rounding may break a tie between distinct ones).
            let values: Vec<f32> = (0..13).map(|v| (v % 5) as f32 + if v >= 8 { 0.3 } else { 0.0 }).collect();
            let rows: Vec<f32> = values.iter().flat_map(|&v| vec![v; dim]).collect();
            for k in available() {
                let got = nearest_with(&k, &blocked, &rows);
                let want: Vec<u32> = values.iter().map(|&v| (v.floor() as u32).min(count as u32 - 1)).collect();
                assert_eq!(got, want, "{} with {count} centroids of {dim}", k.name);
            }
        }
    }
}
