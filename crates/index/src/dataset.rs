//! Seeded synthetic data. Output depends only on the seed and the sizes, not
//! on the number of threads: rows are generated in fixed blocks, each block
//! from its own RNG seeded by `(seed, block)`.

use crate::distance::dot_scalar;
use crate::vectors::Matrix;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rayon::prelude::*;

const BLOCK_ROWS: usize = 4096;

/// Unit-normalises with the scalar kernel, so files do not depend on which
/// SIMD kernels the generating machine has (FMA rounds differently).
fn normalize(v: &mut [f32]) -> bool {
    let norm = dot_scalar(v, v).sqrt();
    if !(norm.is_finite() && norm > 0.0) {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

fn block_rng(seed: u64, block: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ (block as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Called with the number of rows finished since its last call.
pub type Progress<'a> = &'a (dyn Fn(u64) + Sync);

/// Fills `count x dim` rows, block by block in parallel, with `fill(rng, row)`.
fn generate(count: usize, dim: usize, seed: u64, progress: Progress<'_>, fill: impl Fn(&mut StdRng, &mut [f32]) + Sync) -> Matrix {
    let mut data = vec![0f32; count * dim];
    data.par_chunks_mut(BLOCK_ROWS * dim.max(1)).enumerate().for_each(|(b, block)| {
        let mut rng = block_rng(seed, b);
        for row in block.chunks_exact_mut(dim) {
            fill(&mut rng, row);
        }
        progress((block.len() / dim.max(1)) as u64);
    });
    Matrix::new(dim, data).expect("dim > 0")
}

/// The demo's data: i.i.d. standard Gaussian vectors, each scaled to unit L2
/// norm (uniform on the sphere).
pub fn sphere(count: usize, dim: usize, seed: u64) -> Matrix {
    sphere_with_progress(count, dim, seed, &|_| {})
}

/// [`sphere`], reporting rows done to `progress`.
pub fn sphere_with_progress(count: usize, dim: usize, seed: u64, progress: Progress<'_>) -> Matrix {
    generate(count, dim, seed, progress, |rng, row| {
        loop {
            row.iter_mut().for_each(|x| *x = rng.sample(StandardNormal));
            if normalize(row) {
                break;
            }
        }
    })
}

/// Data with structure: a mixture of `clusters` anisotropic Gaussian clusters
/// whose centres are themselves Gaussian. Each cluster has its own per-axis
/// spread in `[0.05, 0.5]`. `seed` fixes centres and points alike; use a
/// different `point_seed` with the same `seed` to draw queries from the same
/// distribution.
pub fn clustered(count: usize, dim: usize, clusters: usize, seed: u64, point_seed: u64) -> Matrix {
    clustered_with_progress(count, dim, clusters, seed, point_seed, &|_| {})
}

/// [`clustered`], reporting rows done to `progress`.
pub fn clustered_with_progress(count: usize, dim: usize, clusters: usize, seed: u64, point_seed: u64, progress: Progress<'_>) -> Matrix {
    let clusters = clusters.max(1);
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..clusters * dim).map(|_| rng.sample(StandardNormal)).collect();
    let spreads: Vec<f32> = (0..clusters * dim).map(|_| rng.random_range(0.05f32..0.5)).collect();
    generate(count, dim, point_seed.wrapping_add(1), progress, |rng, row| {
        let c = rng.random_range(0..clusters);
        for (j, x) in row.iter_mut().enumerate() {
            let z: f32 = rng.sample(StandardNormal);
            *x = centres[c * dim + j] + spreads[c * dim + j] * z;
        }
    })
}

/// The demo's queries: a random row of `base` (row-major, `dim` wide) plus
/// `0.1 *` Gaussian noise, renormalised. Takes a slice so that a memory-mapped
/// index's vectors serve without a copy.
pub fn noisy_queries(base: &[f32], dim: usize, count: usize, seed: u64) -> Matrix {
    let rows = base.len() / dim;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut data = Vec::with_capacity(count * dim);
    for _ in 0..count {
        let r = rng.random_range(0..rows);
        let src = &base[r * dim..(r + 1) * dim];
        let start = data.len();
        data.extend(src.iter().map(|&x| x + 0.1 * rng.sample::<f32, _>(StandardNormal)));
        if !normalize(&mut data[start..]) {
            data[start..].copy_from_slice(src);
        }
    }
    Matrix::new(dim, data).expect("dim > 0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sphere_is_unit_norm_and_reproducible() {
        let a = sphere(5000, 16, 7);
        let b = sphere(5000, 16, 7);
        assert_eq!(a, b);
        assert_ne!(a, sphere(5000, 16, 8));
        for r in a.rows() {
            let n: f32 = r.iter().map(|x| x * x).sum();
            assert!((n - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn clustered_shares_centres_across_point_seeds() {
        let a = clustered(100, 8, 4, 1, 0);
        let b = clustered(100, 8, 4, 1, 99);
        assert_ne!(a, b);
        // Same centres: every query lies near some base point's cluster.
        let near = b.rows().filter(|q| a.rows().any(|p| crate::distance::l2_squared(p, q) < 8.0 * 0.5 * 0.5 * 4.0)).count();
        assert!(near > 90, "{near}");
    }
}
