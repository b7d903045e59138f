//! Reference kernels: plain Rust, the ground truth every SIMD kernel is tested against.

pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "kernel inputs differ in length");
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "kernel inputs differ in length");
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn l2_rows(rows: &[f32], query: &[f32], out: &mut [f32]) {
    super::check_rows(rows, query, out);
    for (row, o) in rows.chunks_exact(query.len()).zip(out.iter_mut()) {
        *o = l2_squared(row, query);
    }
}
