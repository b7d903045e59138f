//! Reference kernels: plain Rust, the ground truth every SIMD kernel is tested against.

pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "kernel inputs differ in length");
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "kernel inputs differ in length");
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
