//! Distance kernels: a scalar reference and SIMD versions, one file per
//! instruction set. The best kernel set is chosen once, at first use, from the
//! CPU's features (`is_x86_feature_detected!`) and cached; nothing is chosen
//! per call and the release binary needs no `target-cpu`.
//!
//! `VECTORWISE_SIMD=scalar|avx2|avx512|neon` forces a level (if the CPU has it),
//! which the benchmarks and tests use to compare kernels.

mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;
#[cfg(target_arch = "aarch64")]
mod neon;

use std::sync::OnceLock;

pub use scalar::{dot as dot_scalar, l2_squared as l2_squared_scalar};

/// Signature shared by every kernel. Both slices must have the same length.
pub type DistanceFn = fn(&[f32], &[f32]) -> f32;

/// Squared L2 from `query` to each row of `rows` (row-major, `query.len()`
/// wide) into `out` (one per row): each exactly (bit for bit) what the same
/// set's `l2_squared(row, query)` gives, without a call per row. `query`
/// must not be empty.
pub type RowsFn = fn(rows: &[f32], query: &[f32], out: &mut [f32]);

/// A set of kernels for one instruction-set level.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    /// Name of the level, shown in `/stats` (`scalar`, `avx2+fma`, `avx512f`, `neon`).
    pub name: &'static str,
    /// Squared Euclidean distance.
    pub l2_squared: DistanceFn,
    /// Inner product.
    pub dot: DistanceFn,
    /// `l2_squared` from one query to many rows.
    pub l2_rows: RowsFn,
}

const SCALAR: Kernels = Kernels { name: "scalar", l2_squared: scalar::l2_squared, dot: scalar::dot, l2_rows: scalar::l2_rows };

/// The shape check every [`RowsFn`] makes before reading.
#[inline]
fn check_rows(rows: &[f32], query: &[f32], out: &[f32]) {
    assert!(!query.is_empty() && rows.len() == out.len() * query.len(), "rows, query and out disagree in size");
}

/// Every kernel set this CPU can run, best last. Used by tests to check each
/// one against the scalar reference.
pub fn available() -> Vec<Kernels> {
    #[allow(unused_mut)]
    let mut sets = vec![SCALAR];
    #[cfg(target_arch = "x86_64")]
    sets.extend(x86::available());
    #[cfg(target_arch = "aarch64")]
    sets.push(neon::KERNELS);
    sets
}

/// The kernel set in use: the best available, or the one `VECTORWISE_SIMD` names.
pub fn kernels() -> &'static Kernels {
    static CHOSEN: OnceLock<Kernels> = OnceLock::new();
    CHOSEN.get_or_init(|| pick(available(), |k| k.name))
}

/// The set `VECTORWISE_SIMD` names (by prefix) if this CPU has it, else the
/// best (last) one. Shared by every kernel family.
pub(crate) fn pick<T: Copy>(sets: Vec<T>, name: impl Fn(&T) -> &str) -> T {
    let wanted = std::env::var("VECTORWISE_SIMD").ok();
    wanted
        .and_then(|w| sets.iter().find(|k| name(k).starts_with(w.as_str())).copied())
        .unwrap_or_else(|| *sets.last().expect("scalar is always available"))
}

/// Squared Euclidean distance with the chosen kernel.
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    (kernels().l2_squared)(a, b)
}

/// Inner product with the chosen kernel.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    (kernels().dot)(a, b)
}

// Measured on a 100k x 128 build (2 threads): 8 lines 93 s, 2 lines 77 s, 1 line 78 s;
// more outstanding prefetches than the CPU has miss buffers stall the loop.
const PREFETCH_LINES: usize = 1;

/// Asks the CPU to start loading `v` into cache. Graph search touches points
/// in an order no hardware prefetcher can guess; issuing the loads for a whole
/// neighbour list before computing its distances overlaps their latencies.
#[inline]
pub fn prefetch<T>(v: &[T]) {
    prefetch_lines(v, PREFETCH_LINES);
}

/// [`prefetch`] of the first `lines` cache lines of `v` (at most all of it).
#[inline]
pub fn prefetch_lines<T>(v: &[T], lines: usize) {
    let bytes = std::mem::size_of_val(v);
    #[cfg(target_arch = "x86_64")]
    for line in (0..bytes).step_by(64).take(lines) {
        // SAFETY: prefetching is a hint that never faults, and `line` stays
        // inside the live slice anyway. SSE is part of the x86-64 baseline.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(v.as_ptr().cast::<i8>().add(line))
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (bytes, lines);
}

/// Scales a query to unit L2 norm in place, also when its squared norm
/// overflows or underflows f32 (elements near 1e20 or 1e-20): it is first
/// brought to max |x| = 1, which does not change its direction. Returns
/// `false` for a zero or non-finite vector.
pub fn normalize_query(v: &mut [f32]) -> bool {
    if normalize(v) {
        return true;
    }
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if !(max.is_finite() && max > 0.0) || v.iter().any(|x| !x.is_finite()) {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= max);
    normalize(v)
}

/// Scales `v` to unit L2 norm in place. Returns `false` (and leaves `v`
/// alone) when the norm is zero or not finite.
pub fn normalize(v: &mut [f32]) -> bool {
    let norm = dot(v, v).sqrt();
    if !(norm.is_finite() && norm > 0.0) {
        return false;
    }
    let inv = 1.0 / norm;
    v.iter_mut().for_each(|x| *x *= inv);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f32, b: f32) -> bool {
        // FMA and different summation orders change rounding: compare relatively.
        (a - b).abs() <= 1e-4 * a.abs().max(b.abs()).max(1.0)
    }

    proptest! {
        #[test]
        fn every_kernel_matches_scalar(
            (a, b) in (0usize..300).prop_flat_map(|n| (
                proptest::collection::vec(-10.0f32..10.0, n),
                proptest::collection::vec(-10.0f32..10.0, n),
            ))
        ) {
            let l2 = l2_squared_scalar(&a, &b);
            let ip = dot_scalar(&a, &b);
            // A dot product can cancel to near zero: judge its rounding against
            // the sum of |a_i b_i|, the size of what was added up.
            let ip_scale: f32 = a.iter().zip(&b).map(|(x, y)| (x * y).abs()).sum();
            for k in available() {
                prop_assert!(close((k.l2_squared)(&a, &b), l2), "{} l2 {} vs {}", k.name, (k.l2_squared)(&a, &b), l2);
                let got = (k.dot)(&a, &b);
                prop_assert!((got - ip).abs() <= 1e-4 * ip_scale.max(1.0), "{} dot {} vs {}", k.name, got, ip);
            }
        }
    }

    proptest! {
        #[test]
        fn every_rows_kernel_matches_its_single_kernel_bit_for_bit(
            (dim, rows, q) in (1usize..150, 0usize..7).prop_flat_map(|(d, r)| (
                Just(d),
                proptest::collection::vec(-10.0f32..10.0, d * r),
                proptest::collection::vec(-10.0f32..10.0, d),
            ))
        ) {
            for k in available() {
                let mut out = vec![f32::NAN; rows.len() / dim];
                (k.l2_rows)(&rows, &q, &mut out);
                for (row, got) in rows.chunks_exact(dim).zip(&out) {
                    prop_assert_eq!(got.to_bits(), (k.l2_squared)(row, &q).to_bits(), "{}", k.name);
                }
            }
        }
    }

    #[test]
    fn every_rows_kernel_checks_sizes() {
        for k in available() {
            for (rows, q, out) in [(10, 5, 1), (10, 5, 3), (9, 5, 2), (0, 0, 1)] {
                let r = std::panic::catch_unwind(|| (k.l2_rows)(&vec![0.0; rows], &vec![0.0; q], &mut vec![0.0; out]));
                assert!(r.is_err(), "{}: {rows}/{q}/{out} accepted", k.name);
            }
        }
    }

    #[test]
    fn normalize_rejects_zero_and_scales_others() {
        let mut z = vec![0.0f32; 8];
        assert!(!normalize(&mut z));
        let mut v = vec![3.0f32, 4.0];
        assert!(normalize(&mut v));
        assert!(close(v[0], 0.6) && close(v[1], 0.8));
    }

    #[test]
    fn every_kernel_asserts_equal_lengths() {
        for k in available() {
            for f in [k.l2_squared, k.dot] {
                let r = std::panic::catch_unwind(|| f(&[1.0; 40], &[1.0; 39]));
                assert!(r.is_err(), "{} accepted inputs of different lengths", k.name);
            }
        }
    }

    #[test]
    fn normalize_query_handles_extreme_scales() {
        for scale in [1e-30f32, 1.0, 1e30] {
            let mut q = vec![3.0 * scale, 4.0 * scale];
            assert!(normalize_query(&mut q));
            assert!(close(q[0], 0.6) && close(q[1], 0.8), "{scale}: {q:?}");
        }
        assert!(!normalize_query(&mut [0.0, 0.0]));
        assert!(!normalize_query(&mut [f32::NAN, 1.0]));
    }
}
