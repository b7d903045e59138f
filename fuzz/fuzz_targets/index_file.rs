//! Arbitrary bytes as an index file to `Index::open`, then searches: see
//! `src/index_file.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    let path = PATH.get_or_init(|| {
        vectorwise_fuzz::scratch_dir().join(format!("vectorwise-fuzz-index-{}.vwi", std::process::id()))
    });
    vectorwise_fuzz::index_file::check(data, path);
});
