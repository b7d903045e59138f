//! Arbitrary bytes as a `.npy` (and `.fvecs`) file to `Matrix::load` and
//! `vectors::load_ids`: see `src/npy.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let stem = format!("vectorwise-fuzz-npy-{}", std::process::id());
    vectorwise_fuzz::npy::check(data, &vectorwise_fuzz::scratch_dir(), &stem);
});
