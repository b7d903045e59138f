//! Replays the `request_body` fuzz target's saved inputs on the stable
//! toolchain, as part of `cargo test`: every file under
//! `fuzz/regressions/request_body/` (inputs that once made the target fail,
//! kept so that the fix stays) and the committed seeds
//! `fuzz/corpus/request_body/seed-*`, posted to `/search` and `/search/batch`
//! through the target's own check (`fuzz/src/request_body.rs`, compiled in
//! here): never a 5xx. Fuzzing itself needs nightly: see `fuzz/README.md`.

#[path = "../../../fuzz/src/request_body.rs"]
mod request_body;

use axum::http::StatusCode;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

const FUZZ: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz");

fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Ok(dir) = std::fs::read_dir(Path::new(FUZZ).join("regressions").join(target)) {
        files.extend(dir.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
    }
    let seeds = std::fs::read_dir(Path::new(FUZZ).join("corpus").join(target)).unwrap();
    files.extend(seeds.map(|e| e.unwrap().path()).filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("seed-")));
    files.sort();
    files
}

#[test]
fn request_body_inputs_never_answer_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = request_body::Fixture::new(dir.path());
    let files = inputs("request_body");
    assert!(files.len() >= 8, "the seeds are missing: {} inputs", files.len());
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap();
            catch_unwind(AssertUnwindSafe(|| fixture.check(&data))).is_err()
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{} of {} request_body inputs failed: {failed:#?}", failed.len(), files.len());
    // The seeds reach the searches, not only the refusals.
    let seed = |name: &str| std::fs::read(Path::new(FUZZ).join("corpus/request_body").join(name)).unwrap();
    let ok = |answers: Vec<(&str, &str, StatusCode)>, index: &str, route: &str| {
        answers.iter().any(|&(i, r, s)| i == index && r == route && s == StatusCode::OK)
    };
    assert!(ok(fixture.check(&seed("seed-search.json")), "l2", "/search"));
    assert!(ok(fixture.check(&seed("seed-search-profile.json")), "cosine", "/search"));
    assert!(ok(fixture.check(&seed("seed-batch.json")), "l2", "/search/batch"));
}
