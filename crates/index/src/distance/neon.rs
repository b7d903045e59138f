//! aarch64 kernels. NEON is part of the aarch64 baseline, so no runtime check
//! is needed; the scalar kernels remain the reference in tests.

use super::Kernels;
use std::arch::aarch64::*;

pub const KERNELS: Kernels = Kernels { name: "neon", l2_squared: l2_neon, dot: dot_neon, l2_rows: l2_rows_neon };

fn l2_rows_neon(rows: &[f32], query: &[f32], out: &mut [f32]) {
    super::check_rows(rows, query, out);
    for (row, o) in rows.chunks_exact(query.len()).zip(out.iter_mut()) {
        *o = l2_neon(row, query);
    }
}

fn l2_neon(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "kernel inputs differ in length");
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    // SAFETY: NEON is baseline on aarch64; every load reads 4 lanes at i with i + 4 <= n.
    unsafe {
        let mut acc = [vdupq_n_f32(0.0); 4];
        while i + 16 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                let d = vsubq_f32(vld1q_f32(pa.add(i + 4 * j)), vld1q_f32(pb.add(i + 4 * j)));
                *acc = vfmaq_f32(*acc, d, d);
            }
            i += 16;
        }
        while i + 4 <= n {
            let d = vsubq_f32(vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
            acc[0] = vfmaq_f32(acc[0], d, d);
            i += 4;
        }
        let mut total = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
        for j in i..n {
            let d = a[j] - b[j];
            total += d * d;
        }
        total
    }
}

fn dot_neon(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "kernel inputs differ in length");
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    // SAFETY: NEON is baseline on aarch64; every load reads 4 lanes at i with i + 4 <= n.
    unsafe {
        let mut acc = [vdupq_n_f32(0.0); 4];
        while i + 16 <= n {
            for (j, acc) in acc.iter_mut().enumerate() {
                *acc = vfmaq_f32(*acc, vld1q_f32(pa.add(i + 4 * j)), vld1q_f32(pb.add(i + 4 * j)));
            }
            i += 16;
        }
        while i + 4 <= n {
            acc[0] = vfmaq_f32(acc[0], vld1q_f32(pa.add(i)), vld1q_f32(pb.add(i)));
            i += 4;
        }
        let mut total = vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
        for j in i..n {
            total += a[j] * b[j];
        }
        total
    }
}
