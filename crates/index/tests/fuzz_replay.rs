//! Replays the fuzz targets' saved inputs on the stable toolchain, as part of
//! `cargo test`: every file under `fuzz/regressions/TARGET/` (inputs that once
//! made a target fail, kept so that the fix stays) and the committed seeds
//! `fuzz/corpus/TARGET/seed-*`, through the targets' own checks
//! (`fuzz/src/TARGET.rs`, compiled in here). Fuzzing itself needs nightly:
//! see `fuzz/README.md`.

#[path = "../../../fuzz/src/index_file.rs"]
mod index_file;
#[path = "../../../fuzz/src/npy.rs"]
mod npy;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

const FUZZ: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz");

/// The regression inputs and the seeds of `target`, sorted by path.
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let regressions = Path::new(FUZZ).join("regressions").join(target);
    if let Ok(dir) = std::fs::read_dir(&regressions) {
        files.extend(dir.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
    }
    let seeds = std::fs::read_dir(Path::new(FUZZ).join("corpus").join(target)).unwrap();
    files.extend(seeds.map(|e| e.unwrap().path()).filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("seed-")));
    files.sort();
    files
}

/// Runs `check` on every input of `target`, each on its own, and fails
/// naming every input that panicked.
fn replay(target: &str, check: impl Fn(&[u8])) -> usize {
    let files = inputs(target);
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).unwrap();
            catch_unwind(AssertUnwindSafe(|| check(&data))).is_err()
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{} of {} {target} inputs failed: {failed:#?}", failed.len(), files.len());
    files.len()
}

#[test]
fn index_file_inputs_open_or_are_refused_and_search_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("input.vwi");
    let n = replay("index_file", |data| index_file::check(data, &path));
    assert!(n >= 9, "the seeds are missing: {n} inputs");
}

/// The seeds are real index files (every format version, every metric and
/// method), so the target's search path is replayed, not only its refusals;
/// resealing a valid file changes nothing.
#[test]
fn index_file_seeds_are_valid_indexes() {
    let dir = tempfile::tempdir().unwrap();
    for path in inputs("index_file").iter().filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("seed-")) {
        vectorwise_index::Index::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let data = std::fs::read(path).unwrap();
        assert_eq!(index_file::reseal(&data), None, "{}", path.display());
        index_file::open_and_search(&data, &dir.path().join("seed.vwi"));
    }
}

#[test]
fn npy_inputs_load_or_are_refused_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let n = replay("npy", |data| npy::check(data, dir.path(), "input"));
    assert!(n >= 5, "the seeds are missing: {n} inputs");
}
