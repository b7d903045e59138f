//! Arbitrary bytes as the body of `POST /search` and `POST /search/batch`
//! through the real router; never a 5xx: see `src/request_body.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;
use vectorwise_fuzz::request_body::Fixture;

/// The fixture, and its indexes' directory (kept for the process's life).
fn fixture() -> &'static (Fixture, PathBuf) {
    static FIXTURE: OnceLock<(Fixture, PathBuf)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = vectorwise_fuzz::scratch_dir().join(format!("vectorwise-fuzz-body-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        (Fixture::new(&dir), dir)
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = fixture().0.check(data);
});
