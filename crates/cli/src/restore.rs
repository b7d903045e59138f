//! `vectorwise restore`: a snapshot archive (`POST /collections/{name}/snapshots`,
//! downloaded or from `<data-dir>/.snapshots/`) made a collection of the data
//! directory, with the server stopped. The archive is checked whole (every
//! file's size and checksum) and unpacked beside the collections, then
//! renamed into place: a crash midway leaves nothing half-made.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::Instant;
use vectorwise_store::{Store, SyncMode};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshot archive (a `.tar` the server wrote).
    #[arg(long)]
    pub snapshot: PathBuf,
    /// Name of the collection to restore it as ([A-Za-z0-9_-]{1,64}); need
    /// not be the one it was taken of.
    #[arg(long)]
    pub collection: String,
    /// The data directory `serve --data-dir` uses; no server may have it open.
    #[arg(long, env = "VECTORWISE_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Replace the collection if it exists (atomically: the old one stays
    /// whole until the new one is in place).
    #[arg(long)]
    pub force: bool,
}

pub fn run(a: Args) -> Result<()> {
    let start = Instant::now();
    let file = std::fs::File::open(&a.snapshot).with_context(|| format!("cannot read {}", a.snapshot.display()))?;
    let store = Store::open(&a.data_dir, SyncMode::Always).with_context(|| format!("cannot open {}", a.data_dir.display()))?;
    let restored = store.restore(&a.collection, std::io::BufReader::with_capacity(1 << 20, file), a.force);
    store.close();
    let (c, info) = restored.with_context(|| format!("cannot restore {}", a.snapshot.display()))?;
    println!(
        "Restored snapshot '{}' of '{}' (taken {}, log position {}) as collection '{}' in {}: {} points, {:.2} s",
        info.name,
        info.collection,
        info.created,
        info.position,
        a.collection,
        a.data_dir.display(),
        c.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
