//! `vectorwise generate`: the demo's data (Gaussian vectors on the unit
//! sphere) or a clustered set, written as `.npy`.

use crate::progress::{bar, mib};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::time::Instant;
use vectorwise_index::dataset;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// i.i.d. Gaussian vectors scaled to unit length (the demo's data).
    Sphere,
    /// A mixture of anisotropic Gaussian clusters (data with structure).
    Clustered,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Number of vectors.
    #[arg(long, default_value_t = 1_000_000)]
    pub n: usize,
    /// Dimensions per vector.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// RNG seed; the same seed gives the same file whatever the thread count or SIMD level.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Kind of data.
    #[arg(long, value_enum, default_value_t = Kind::Sphere)]
    pub kind: Kind,
    /// Clusters, for --kind clustered.
    #[arg(long, default_value_t = 1000)]
    pub clusters: usize,
    /// Output file.
    #[arg(long, env = "VECTORWISE_VECTORS_PATH", default_value = "data/vectors.npy")]
    pub out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    generate(&a.out, a.n, a.dim, a.seed, a.kind, a.clusters)
}

pub fn generate(out: &Path, n: usize, dim: usize, seed: u64, kind: Kind, clusters: usize) -> Result<()> {
    anyhow::ensure!(n >= 1 && dim >= 1, "--n and --dim must be at least 1");
    println!("[1/2] Generating {n} vectors of dimension {dim} ({kind:?}, seed {seed})...");
    let start = Instant::now();
    let pb = bar(n as u64, "generate");
    let progress = |rows: u64| pb.inc(rows);
    let m = match kind {
        Kind::Sphere => dataset::sphere_with_progress(n, dim, seed, &progress),
        Kind::Clustered => dataset::clustered_with_progress(n, dim, clusters, seed, 0, &progress),
    };
    pb.finish_and_clear();
    println!("      done in {:.2} s, {} in memory", start.elapsed().as_secs_f64(), mib((n * dim * 4) as u64));
    println!("[2/2] Saving vectors to '{}'...", out.display());
    m.save_npy(out)?;
    let size = std::fs::metadata(out)?.len();
    println!("      File size: {} ({})", mib(size), out.display());
    Ok(())
}
