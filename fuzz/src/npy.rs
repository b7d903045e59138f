//! Arbitrary bytes as a vector file: `Matrix::load` (as `.npy`, and as
//! `.fvecs`) and `vectors::load_ids` must return a matrix / ids or an
//! error, never panic.

use std::path::Path;
use vectorwise_index::{Matrix, vectors};

/// Loads `data` through the files `dir/<stem>.npy` and `dir/<stem>.fvecs`.
pub fn check(data: &[u8], dir: &Path, stem: &str) {
    let npy = dir.join(format!("{stem}.npy"));
    std::fs::write(&npy, data).expect("write the temporary .npy");
    if let Ok(m) = Matrix::load(&npy) {
        check_matrix(&m, data.len());
    }
    if let Ok(ids) = vectors::load_ids(&npy) {
        assert!(ids.len() * 8 <= data.len(), "more ids than the file has bytes for");
    }
    let fvecs = dir.join(format!("{stem}.fvecs"));
    std::fs::write(&fvecs, data).expect("write the temporary .fvecs");
    if let Ok(m) = Matrix::load(&fvecs) {
        check_matrix(&m, data.len());
    }
}

fn check_matrix(m: &Matrix, bytes: usize) {
    assert!(m.dim() > 0);
    assert_eq!(m.as_slice().len(), m.len() * m.dim());
    assert!(m.as_slice().len() * 4 <= bytes, "more values than the file has bytes for");
}
