//! Lloyd's k-means for the small codebooks of product quantisation (16
//! centroids over a few dimensions). Seeded, so a build is reproducible.

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};

/// `k` centroids (row-major, `dim` wide) of `data`'s rows after `iters` rounds.
/// Starts from `k` distinct random rows; an empty cluster is re-seeded with a
/// random row. Fewer rows than `k` repeat rows.
pub fn kmeans(data: &[f32], dim: usize, k: usize, iters: usize, seed: u64) -> Vec<f32> {
    let n = data.len() / dim;
    assert!(n > 0 && dim > 0, "k-means needs data");
    let mut rng = StdRng::seed_from_u64(seed);
    let row = |i: usize| &data[i * dim..(i + 1) * dim];
    let mut centroids = Vec::with_capacity(k * dim);
    if n >= k {
        for i in sample(&mut rng, n, k) {
            centroids.extend_from_slice(row(i));
        }
    } else {
        for i in 0..k {
            centroids.extend_from_slice(row(i % n));
        }
    }
    let mut assign = vec![0usize; n];
    for _ in 0..iters {
        for (i, a) in assign.iter_mut().enumerate() {
            *a = nearest(&centroids, dim, row(i)).0;
        }
        let mut sums = vec![0f64; k * dim];
        let mut counts = vec![0usize; k];
        for (i, &a) in assign.iter().enumerate() {
            counts[a] += 1;
            for (s, &x) in sums[a * dim..(a + 1) * dim].iter_mut().zip(row(i)) {
                *s += x as f64;
            }
        }
        for c in 0..k {
            let dst = &mut centroids[c * dim..(c + 1) * dim];
            if counts[c] == 0 {
                dst.copy_from_slice(row(rng.random_range(0..n)));
            } else {
                for (d, s) in dst.iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                    *d = (*s / counts[c] as f64) as f32;
                }
            }
        }
    }
    centroids
}

/// Index and squared distance of the centroid nearest to `x`.
pub fn nearest(centroids: &[f32], dim: usize, x: &[f32]) -> (usize, f32) {
    let mut best = (0, f32::INFINITY);
    for (c, cent) in centroids.chunks_exact(dim).enumerate() {
        let d = crate::distance::l2_squared_scalar(cent, x);
        if d < best.1 {
            best = (c, d);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_well_separated_clusters() {
        // Four tight 2-d clusters at the corners of a square.
        let corners = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0), (10.0, 10.0)];
        let mut data = Vec::new();
        for i in 0..400 {
            let (x, y) = corners[i % 4];
            data.extend_from_slice(&[x + (i % 7) as f32 * 0.01, y - (i % 5) as f32 * 0.01]);
        }
        let c = kmeans(&data, 2, 4, 10, 1);
        for (x, y) in corners {
            let (_, d) = nearest(&c, 2, &[x, y]);
            assert!(d < 0.01, "no centroid near ({x}, {y}): {c:?}");
        }
        assert_eq!(kmeans(&data[..4], 2, 4, 3, 1).len(), 8, "fewer rows than k still gives k centroids");
    }
}
