//! `vectorwise search`: query an index file from the command line.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::PathBuf;
use vectorwise_index::{Index, Matrix, SearchParams};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Index file.
    #[arg(long, env = "VECTORWISE_INDEX_PATH", default_value = "data/index.vwi")]
    pub index: PathBuf,
    /// Queries, one per row: .npy or .fvecs.
    #[arg(long)]
    pub query_file: PathBuf,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// HNSW beam width.
    #[arg(long, env = "VECTORWISE_EF_SEARCH", default_value_t = 64)]
    pub ef_search: usize,
    /// Scan every vector instead of walking the graph.
    #[arg(long)]
    pub exact: bool,
}

pub fn run(a: Args) -> Result<()> {
    let index = Index::open(&a.index)?;
    let queries = Matrix::load(&a.query_file).with_context(|| format!("cannot read {}", a.query_file.display()))?;
    anyhow::ensure!(a.k >= 1, "--k must be at least 1");
    let mut out = std::io::stdout().lock();
    for (i, q) in queries.rows().enumerate() {
        let hits = if a.exact {
            index.exact_search(q, a.k)
        } else {
            index.search(q, a.k, &SearchParams { ef_search: a.ef_search, ..SearchParams::default() })
        }
        .with_context(|| format!("query {i}"))?;
        let indices: Vec<u64> = hits.iter().map(|h| h.id).collect();
        let distances: Vec<f32> = hits.iter().map(|h| h.distance).collect();
        writeln!(out, "{}", serde_json::json!({ "indices": indices, "distances": distances }))?;
    }
    Ok(())
}
