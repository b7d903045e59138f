//! `vectorwise import`: a new collection loaded in bulk from files, built
//! straight into one sealed segment (no write-ahead log on the way).

use crate::build::parse_metric;
use anyhow::{Context, Result};
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;
use vectorwise_index::{Matrix, Metric};
use vectorwise_store::{CollectionConfig, NewPoint, Store, SyncMode};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data directory `serve --data-dir` uses; no server may have it open.
    #[arg(long, env = "VECTORWISE_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Name of the new collection ([A-Za-z0-9_-]{1,64}).
    #[arg(long)]
    pub collection: String,
    /// Vectors: .npy (float32, 2-D) or .fvecs.
    #[arg(long)]
    pub vectors: PathBuf,
    /// Point ids, one per row: .npy of uint64 or non-negative int64 (default: the row numbers).
    #[arg(long)]
    pub ids: Option<PathBuf>,
    /// Payloads: JSON lines, one per row, each a JSON object or `null`.
    #[arg(long)]
    pub payloads: Option<PathBuf>,
    /// `l2`, `ip` or `cosine`.
    #[arg(long, default_value = "cosine", value_parser = parse_metric)]
    pub metric: Metric,
    /// The collection's seal_points (later writes).
    #[arg(long)]
    pub seal_points: Option<usize>,
}

pub fn run(a: Args) -> Result<()> {
    let start = Instant::now();
    let vectors = Matrix::load(&a.vectors).with_context(|| format!("cannot read {}", a.vectors.display()))?;
    let n = vectors.len();
    let ids = match &a.ids {
        Some(p) => vectorwise_index::vectors::load_ids(p).with_context(|| format!("cannot read {}", p.display()))?,
        None => (0..n as u64).collect(),
    };
    anyhow::ensure!(ids.len() == n, "{} ids for {n} vectors", ids.len());
    let mut payloads: Vec<Option<serde_json::Value>> = vec![None; n];
    if let Some(p) = &a.payloads {
        let file = std::fs::File::open(p).with_context(|| format!("cannot read {}", p.display()))?;
        let mut rows = 0;
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("{}: line {}", p.display(), i + 1))?;
            anyhow::ensure!(i < n, "{}: more lines than the {n} vectors", p.display());
            let v: serde_json::Value =
                serde_json::from_str(&line).with_context(|| format!("{}: line {} is not JSON", p.display(), i + 1))?;
            payloads[i] = Some(v);
            rows = i + 1;
        }
        anyhow::ensure!(rows == n, "{}: {rows} lines for {n} vectors", p.display());
    }
    let points: Vec<NewPoint> = ids
        .iter()
        .zip(vectors.rows())
        .zip(payloads)
        .map(|((&id, v), payload)| NewPoint { id: vectorwise_store::PointId::Num(id), vector: v.to_vec(), payload })
        .collect();
    let mut config = CollectionConfig::new(vectors.dim(), a.metric);
    if let Some(s) = a.seal_points {
        config.seal_points = s;
    }
    let store = Store::open(&a.data_dir, SyncMode::Always).with_context(|| format!("cannot open {}", a.data_dir.display()))?;
    let c = store.import_points(&a.collection, config, points)?;
    let stats = c.stats();
    store.close();
    let method = stats.segments.iter().find(|s| s.kind == "sealed").map_or("none", |s| s.method.as_str()).to_owned();
    println!(
        "Imported {} points of dimension {} ({}) into collection '{}' in {}: one sealed segment ({method}), {:.2} s",
        stats.points,
        vectors.dim(),
        a.metric,
        a.collection,
        a.data_dir.display(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
