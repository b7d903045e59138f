//! The fuzz targets' checks, one module per target, so that the stable test
//! suite replays the saved inputs through the same code: each module is also
//! compiled into a test (`#[path]`) of the crate it exercises, and so uses
//! only what that crate's tests have.
//!
//! - `index_file`: `crates/index/tests/fuzz_replay.rs`
//! - `npy`: `crates/index/tests/fuzz_replay.rs`
//! - `request_body`: `crates/server/tests/fuzz_replay.rs`

pub mod index_file;
pub mod npy;
pub mod request_body;

use std::path::PathBuf;

/// A directory for a target's per-process temporary files:
/// `$VECTORWISE_FUZZ_SCRATCH` (`run.sh` sets it to a directory it removes
/// afterwards), else `/dev/shm` when the machine has it (a tmpfs, so the file
/// written for every input costs no disk I/O), else the temporary directory.
pub fn scratch_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VECTORWISE_FUZZ_SCRATCH") {
        return dir.into();
    }
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() { shm.to_path_buf() } else { std::env::temp_dir() }
}
