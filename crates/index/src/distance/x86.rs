//! x86-64 kernels: AVX2+FMA and AVX-512F. Each `unsafe fn` carries
//! `#[target_feature]`; the safe wrappers are only handed out by
//! [`available`], after the CPU was checked for those features.

use super::Kernels;
use std::arch::x86_64::*;

pub fn available() -> Vec<Kernels> {
    let mut sets = Vec::new();
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        sets.push(Kernels { name: "avx2+fma", l2_squared: l2_avx2, dot: dot_avx2, l2_rows: l2_rows_avx2 });
    }
    if is_x86_feature_detected!("avx512f") {
        sets.push(Kernels { name: "avx512f", l2_squared: l2_avx512, dot: dot_avx512, l2_rows: l2_rows_avx512 });
    }
    sets
}

fn l2_avx2(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "kernel inputs differ in length");
    // SAFETY: only reachable through `available()`, which checked avx2 and fma.
    unsafe { l2_avx2_impl(a, b) }
}

fn l2_rows_avx2(rows: &[f32], query: &[f32], out: &mut [f32]) {
    super::check_rows(rows, query, out);
    // SAFETY: only reachable through `available()`, which checked avx2 and fma;
    // every row is query.len() long (checked above).
    unsafe { l2_rows_avx2_impl(rows, query, out) }
}

fn l2_rows_avx512(rows: &[f32], query: &[f32], out: &mut [f32]) {
    super::check_rows(rows, query, out);
    // SAFETY: only reachable through `available()`, which checked avx512f;
    // every row is query.len() long (checked above).
    unsafe { l2_rows_avx512_impl(rows, query, out) }
}

/// The single-row kernel inlined into a loop over rows: the same operations
/// in the same order, so the same bits, without a call per row.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `rows.len() == out.len() * query.len()`.
#[target_feature(enable = "avx2,fma")]
unsafe fn l2_rows_avx2_impl(rows: &[f32], query: &[f32], out: &mut [f32]) {
    for (row, o) in rows.chunks_exact(query.len()).zip(out.iter_mut()) {
        // SAFETY: same features; row.len() == query.len().
        *o = unsafe { l2_avx2_impl(row, query) };
    }
}

/// # Safety
/// The CPU must support AVX-512F; `rows.len() == out.len() * query.len()`.
#[target_feature(enable = "avx512f")]
unsafe fn l2_rows_avx512_impl(rows: &[f32], query: &[f32], out: &mut [f32]) {
    for (row, o) in rows.chunks_exact(query.len()).zip(out.iter_mut()) {
        // SAFETY: same feature; row.len() == query.len().
        *o = unsafe { l2_avx512_impl(row, query) };
    }
}

fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "kernel inputs differ in length");
    // SAFETY: only reachable through `available()`, which checked avx2 and fma.
    unsafe { dot_avx2_impl(a, b) }
}

fn l2_avx512(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "kernel inputs differ in length");
    // SAFETY: only reachable through `available()`, which checked avx512f.
    unsafe { l2_avx512_impl(a, b) }
}

fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "kernel inputs differ in length");
    // SAFETY: only reachable through `available()`, which checked avx512f.
    unsafe { dot_avx512_impl(a, b) }
}

#[target_feature(enable = "avx2,fma")]
fn hsum256(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps::<1>(v);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
    _mm_cvtss_f32(s)
}

/// # Safety
/// The CPU must support AVX2 and FMA; `a.len() == b.len()`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn l2_avx2_impl(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            // SAFETY: the loop condition keeps every lane read below n == a.len() == b.len().
            let d = unsafe { _mm256_sub_ps(_mm256_loadu_ps(pa.add(i + 8 * j)), _mm256_loadu_ps(pb.add(i + 8 * j))) };
            *acc = _mm256_fmadd_ps(d, d, *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: the loop condition keeps every lane read below n == a.len() == b.len().
        let d = unsafe { _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
        acc[0] = _mm256_fmadd_ps(d, d, acc[0]);
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut total = hsum256(sum);
    for j in i..n {
        let d = a[j] - b[j];
        total += d * d;
    }
    total
}

/// # Safety
/// The CPU must support AVX2 and FMA; `a.len() == b.len()`.
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2_impl(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            // SAFETY: the loop condition keeps every lane read below n == a.len() == b.len().
            let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i + 8 * j)), _mm256_loadu_ps(pb.add(i + 8 * j))) };
            *acc = _mm256_fmadd_ps(x, y, *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: the loop condition keeps every lane read below n == a.len() == b.len().
        let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
        acc[0] = _mm256_fmadd_ps(x, y, acc[0]);
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut total = hsum256(sum);
    for j in i..n {
        total += a[j] * b[j];
    }
    total
}

/// # Safety
/// The CPU must support AVX-512F; `a.len() == b.len()`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn l2_avx512_impl(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm512_setzero_ps();
    let mut acc1 = _mm512_setzero_ps();
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: the loop condition keeps every lane read below n == a.len() == b.len().
        let d0 = unsafe { _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i))) };
        // SAFETY: the loop condition keeps every lane read below n == a.len() == b.len().
        let d1 = unsafe { _mm512_sub_ps(_mm512_loadu_ps(pa.add(i + 16)), _mm512_loadu_ps(pb.add(i + 16))) };
        acc0 = _mm512_fmadd_ps(d0, d0, acc0);
        acc1 = _mm512_fmadd_ps(d1, d1, acc1);
        i += 32;
    }
    while i < n {
        let mask: __mmask16 = if n - i >= 16 { 0xffff } else { (1u16 << (n - i)) - 1 };
        // SAFETY: the mask enables only the n - i lanes in bounds; masked-off lanes are not read.
        let d = unsafe { _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, pa.add(i)), _mm512_maskz_loadu_ps(mask, pb.add(i))) };
        acc0 = _mm512_fmadd_ps(d, d, acc0);
        i += 16;
    }
    _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
}

/// # Safety
/// The CPU must support AVX-512F; `a.len() == b.len()`.
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512_impl(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm512_setzero_ps();
    let mut acc1 = _mm512_setzero_ps();
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: the loop condition keeps every lane read below n == a.len() == b.len().
        let (x0, y0) = unsafe { (_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i))) };
        // SAFETY: the loop condition keeps every lane read below n == a.len() == b.len().
        let (x1, y1) = unsafe { (_mm512_loadu_ps(pa.add(i + 16)), _mm512_loadu_ps(pb.add(i + 16))) };
        acc0 = _mm512_fmadd_ps(x0, y0, acc0);
        acc1 = _mm512_fmadd_ps(x1, y1, acc1);
        i += 32;
    }
    while i < n {
        let mask: __mmask16 = if n - i >= 16 { 0xffff } else { (1u16 << (n - i)) - 1 };
        // SAFETY: the mask enables only the n - i lanes in bounds; masked-off lanes are not read.
        let (x, y) = unsafe { (_mm512_maskz_loadu_ps(mask, pa.add(i)), _mm512_maskz_loadu_ps(mask, pb.add(i))) };
        acc0 = _mm512_fmadd_ps(x, y, acc0);
        i += 16;
    }
    _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
}
