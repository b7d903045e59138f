//! `vectorwise build`: vectors file in, index file out.

use crate::progress::{bar, mib};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;
use vectorwise_index::{Matrix, hnsw::BuildOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Input vectors: .npy (float32, 2-D, C order) or .fvecs.
    #[arg(long, env = "VECTORWISE_VECTORS_PATH", default_value = "data/vectors.npy")]
    pub vectors: PathBuf,
    /// Output index file.
    #[arg(long, env = "VECTORWISE_INDEX_PATH", default_value = "data/index.vwi")]
    pub out: PathBuf,
    #[command(flatten)]
    pub hnsw: HnswArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct HnswArgs {
    /// HNSW links per point (layer 0 gets twice as many).
    #[arg(long, default_value_t = 32)]
    pub m: u32,
    /// HNSW beam width while building.
    #[arg(long, default_value_t = 200)]
    pub ef_construction: u32,
    /// Build threads (default: every core).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seed for the HNSW level draw.
    #[arg(long, default_value_t = 42)]
    pub build_seed: u64,
}

pub fn run(a: Args) -> Result<()> {
    build(&a.vectors, &a.out, &a.hnsw)
}

pub fn build(vectors: &Path, out: &Path, h: &HnswArgs) -> Result<()> {
    println!("[1/3] Loading vectors from '{}'...", vectors.display());
    let m = Matrix::load(vectors).with_context(|| format!("cannot read vectors from {}", vectors.display()))?;
    println!("      {} vectors of dimension {}", m.len(), m.dim());
    let threads = h.threads.unwrap_or_else(rayon::current_num_threads);
    println!("[2/3] Building HNSW index (M={}, efConstruction={}, {threads} threads)...", h.m, h.ef_construction);
    let opts = BuildOptions { m: h.m, ef_construction: h.ef_construction, threads: h.threads, seed: h.build_seed };
    let pb = bar(m.len() as u64, "build");
    let start = Instant::now();
    let build_seconds = vectorwise_index::build_index(&m, out, &opts, &|n| pb.inc(n))?;
    pb.finish_and_clear();
    println!("      Index built in {build_seconds:.2} seconds");
    println!("[3/3] Saved index to '{}' in {:.2} s", out.display(), start.elapsed().as_secs_f64() - build_seconds);
    println!("============================================================");
    println!("INDEX STATISTICS");
    println!("============================================================");
    println!("Total vectors: {}", m.len());
    println!("Dimension: {}", m.dim());
    println!("Build time: {build_seconds:.2} s");
    if let Ok(meta) = std::fs::metadata(vectors) {
        println!("File size: {} ({})", mib(meta.len()), vectors.display());
    }
    println!("File size: {} ({}, vectors included)", mib(std::fs::metadata(out)?.len()), out.display());
    Ok(())
}
