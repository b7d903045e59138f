//! `vectorwise build`: vectors file in, index file out.

use crate::progress::{bar, mib};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;
use vectorwise_index::calibrate::CalibrateOptions;
use vectorwise_index::plan::{self, BuildMethod, BuildRequest};
use vectorwise_index::{Calibration, Index, Matrix, Method, Metric, Points, Profile, choose, hnsw::BuildOptions, scan};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Input vectors: .npy (float32, 2-D, C order) or .fvecs.
    #[arg(long, env = "VECTORWISE_VECTORS_PATH", default_value = "data/vectors.npy")]
    pub vectors: PathBuf,
    /// Output index file.
    #[arg(long, env = "VECTORWISE_INDEX_PATH", default_value = "data/index.vwi")]
    pub out: PathBuf,
    /// Point ids, one per row of --vectors: .npy of uint64 or int64, unique,
    /// from 0 to 2^63 - 1 (default: the row numbers).
    #[arg(long)]
    pub ids: Option<PathBuf>,
    #[command(flatten)]
    pub hnsw: HnswArgs,
}

/// Which search structures to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    /// Test a graph on a 20k-point sample: when the data has structure
    /// (sample recall@10 at ef 64 >= 0.9) build the scan partitioned into
    /// lists (50k points or more; HNSW + scan codes below that or with
    /// --scan-lists 0), else the exhaustive scan codes only.
    Auto,
    /// HNSW graph only.
    Hnsw,
    /// Quantised scan codes only (seconds to build).
    Scan,
    /// Both; searches default to HNSW.
    Both,
}

#[derive(Debug, Clone, clap::Args)]
pub struct HnswArgs {
    /// What distances mean: `l2` (squared Euclidean), `ip` (inner product;
    /// distance = -q·x) or `cosine` (vectors and queries scaled to unit
    /// length; distance = squared L2 between them = 2 - 2·cos). Default:
    /// `l2` for `build`; `cosine` for the demo index `serve` builds.
    #[arg(long, value_parser = parse_metric)]
    pub metric: Option<Metric>,
    /// Search structures to build.
    #[arg(long, value_enum, default_value_t = MethodArg::Auto)]
    pub method: MethodArg,
    /// Dimensions per 4-bit sub-quantiser of the scan codes: a number (4:
    /// 0.125 bytes a dimension, 16 MB for 1M x 128; 2: twice the bytes, more
    /// precise) or `auto` (4 below 256 dimensions, 6 from 256 on: 32 bytes a
    /// point at 384-d). Raised to ceil(dim / 256) for wider vectors.
    #[arg(long, default_value = "auto", value_parser = parse_dsub)]
    pub scan_dsub: Dsub,
    /// Partition the scan's points into lists (k-means, inverted-file style)
    /// so that a search reads only its nearest lists: a number, `auto`
    /// (about sqrt(n) lists when `--method auto` finds structure in the data
    /// and there are at least 50,000 points; none otherwise), or 0 (none:
    /// every search reads every point, best for data without structure).
    #[arg(long, default_value = "auto", value_parser = parse_lists)]
    pub scan_lists: Lists,
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
    #[command(flatten)]
    pub calibration: CalibrationArgs,
}

/// `--scan-lists`: a number of lists or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lists {
    Auto,
    Count(usize),
}

/// `--scan-dsub`: a number, or `auto` ([`scan::auto_dsub`]).
#[derive(Debug, Clone, Copy)]
pub enum Dsub {
    Auto,
    Count(usize),
}

fn parse_dsub(s: &str) -> std::result::Result<Dsub, String> {
    match s {
        "auto" => Ok(Dsub::Auto),
        _ => match s.parse() {
            Ok(d) if (1..=scan::MAX_DSUB).contains(&d) => Ok(Dsub::Count(d)),
            _ => Err(format!("expected `auto` or a whole number of dimensions from 1 to {}, not `{s}`", scan::MAX_DSUB)),
        },
    }
}

fn parse_lists(s: &str) -> std::result::Result<Lists, String> {
    match s {
        "auto" => Ok(Lists::Auto),
        _ => s.parse().map(Lists::Count).map_err(|_| format!("`{s}` is neither a number of lists nor `auto`")),
    }
}

pub(crate) fn parse_metric(s: &str) -> std::result::Result<Metric, String> {
    s.parse()
}

/// A profile name for clap (`serve --profile`, `bench --profiles`).
pub fn parse_profile(s: &str) -> std::result::Result<Profile, String> {
    s.parse().map_err(|e: vectorwise_index::Error| e.to_string())
}

/// How the recall table is measured (see `vectorwise calibrate`).
#[derive(Debug, Clone, clap::Args)]
pub struct CalibrationArgs {
    /// Calibrate with these queries (.npy or .fvecs, a sample of real ones)
    /// instead of leave-one-out samples of the indexed vectors.
    #[arg(long)]
    pub calibration_queries: Option<PathBuf>,
    /// Calibration queries to use (recall@100 is measured on the first 100).
    #[arg(long, default_value_t = vectorwise_index::calibrate::DEFAULT_QUERIES)]
    pub calibration_size: usize,
    /// Skip the calibration (profiles and recall targets then have no table to use).
    #[arg(long)]
    pub no_calibrate: bool,
}

impl CalibrationArgs {
    pub fn options(&self, dim: usize) -> Result<CalibrateOptions> {
        // Fewer queries measure recall too coarsely to promise it (recall@1 of 50 queries moves in steps of 0.02).
        anyhow::ensure!(self.calibration_size >= 50, "--calibration-size must be at least 50");
        let queries = match &self.calibration_queries {
            Some(path) => {
                let q = Matrix::load(path).with_context(|| format!("cannot read calibration queries from {}", path.display()))?;
                anyhow::ensure!(q.dim() == dim, "calibration queries have {} dimensions, the index {dim}", q.dim());
                Some(q.into_vec())
            }
            None => None,
        };
        Ok(CalibrateOptions { queries, sample: self.calibration_size, ..Default::default() })
    }
}

/// Measures the recall table of the index at `path`, stores it in the file
/// and prints it.
pub fn calibrate(path: &Path, args: &CalibrationArgs) -> Result<Calibration> {
    // Any table the file has is replaced, so it is not read (it may be the damaged one).
    let index = Index::open_uncalibrated(path).with_context(|| format!("cannot open index {}", path.display()))?;
    let opts = args.options(index.dim())?;
    let source = if opts.queries.is_some() { "given queries" } else { "leave-one-out samples of the indexed vectors" };
    println!("      Calibrating recall@k on up to {} {source}...", opts.sample);
    let c = vectorwise_index::calibrate::calibrate_in_place(&index, &opts)?;
    print_profiles(&c);
    println!("      Calibrated in {:.2} s; table stored in '{}'", c.seconds, path.display());
    Ok(c)
}

/// The profiles' settings per k, as `/stats` shows them.
pub fn print_profiles(c: &Calibration) {
    println!("      {:<14} {:>4} {:<12} {:>8} {:>8} {:>8}", "profile", "k", "setting", "recall", "p50 ms", "p95 ms");
    for p in c.profiles() {
        let (p50, p95) =
            p.latency.map_or(("-".into(), "-".into()), |l| (format!("{:.3}", l.p50_ms), format!("{:.3}", l.p95_ms)));
        println!(
            "      {:<14} {:>4} {:<12} {:>8.4} {:>8} {:>8}",
            p.profile.as_str(),
            p.k,
            p.choice.params.setting(),
            p.choice.expected_recall.unwrap_or(f64::NAN),
            p50,
            p95
        );
    }
}

#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    /// Index file to calibrate (rewritten in place, atomically).
    #[arg(long, env = "VECTORWISE_INDEX_PATH", default_value = "data/index.vwi")]
    pub index: PathBuf,
    #[command(flatten)]
    pub calibration: CalibrationArgs,
}

pub fn run_calibrate(a: CalibrateArgs) -> Result<()> {
    anyhow::ensure!(!a.calibration.no_calibrate, "--no-calibrate makes no sense here");
    calibrate(&a.index, &a.calibration).map(|_| ())
}

pub fn run(a: Args) -> Result<()> {
    build(&a.vectors, a.ids.as_deref(), &a.out, &a.hnsw, Metric::L2)
}

impl HnswArgs {
    /// The engine's build request these flags make.
    fn request(&self, metric: Metric) -> BuildRequest {
        BuildRequest {
            metric,
            method: match self.method {
                MethodArg::Auto => BuildMethod::Auto,
                MethodArg::Hnsw => BuildMethod::Hnsw,
                MethodArg::Scan => BuildMethod::Scan,
                MethodArg::Both => BuildMethod::Both,
            },
            scan_dsub: match self.scan_dsub {
                Dsub::Auto => None,
                Dsub::Count(d) => Some(d),
            },
            scan_lists: match self.scan_lists {
                Lists::Auto => None,
                Lists::Count(n) => Some(n),
            },
            graph: BuildOptions { m: self.m, ef_construction: self.ef_construction, threads: self.threads, seed: self.build_seed },
        }
    }
}

/// Builds `out` from `vectors`; `default_metric` when `--metric` is not given.
pub fn build(vectors: &Path, ids: Option<&Path>, out: &Path, h: &HnswArgs, default_metric: Metric) -> Result<()> {
    let metric = h.metric.unwrap_or(default_metric);
    println!("[1/3] Loading vectors from '{}'...", vectors.display());
    let m = Matrix::load(vectors).with_context(|| format!("cannot read vectors from {}", vectors.display()))?;
    println!("      {} vectors of dimension {}, metric {metric}", m.len(), m.dim());
    let ids = ids
        .map(|p| vectorwise_index::vectors::load_ids(p).with_context(|| format!("cannot read ids from {}", p.display())))
        .transpose()?;
    // Points whose distances would all underflow are refused, as a
    // collection's writes refuse them (the row is named).
    metric.refuse_too_small(&m)?;
    if let Some(advice) = metric.advice(&m) {
        println!("      warning: {advice}");
    }
    let threads = h.threads.unwrap_or_else(rayon::current_num_threads);
    if h.method == MethodArg::Auto {
        println!("      Choosing the method: HNSW on a sample of up to {} points...", choose::SAMPLE);
    }
    let started = Instant::now();
    let plan = plan::plan_build(&m, &h.request(metric))?;
    if let Some(c) = plan.choice {
        let verdict = if c.method == Method::Hnsw { "the data has structure" } else { "no structure a graph can use: quantised scan" };
        println!(
            "      sample recall@10 at ef 64: {:.3} on {} points (graph from {}) -> {verdict} ({:.1} s)",
            c.sample_recall,
            c.sample_points,
            choose::GRAPH_RECALL,
            started.elapsed().as_secs_f64()
        );
        if c.method == Method::Hnsw && plan.options.graph.is_none() {
            println!("      -> the scan partitioned into lists (IVF) instead of a graph: {} points or more", plan::AUTO_LISTS_MIN_POINTS);
        }
    }
    let opts = plan.options;
    let lists = opts.scan.map_or(0, |s| s.lists);
    let dsub = opts.scan.map_or(0, |s| s.dsub);
    match (&opts.graph, &opts.scan) {
        (Some(_), Some(_)) => println!(
            "[2/3] Building HNSW index (M={}, efConstruction={}, {threads} threads) and scan codes (dsub={})...",
            h.m, h.ef_construction, dsub
        ),
        (Some(_), None) => println!("[2/3] Building HNSW index (M={}, efConstruction={}, {threads} threads)...", h.m, h.ef_construction),
        _ => println!("[2/3] Building quantised scan codes (4-bit PQ, dsub={dsub}, + SQ8; {threads} threads)..."),
    }
    if lists > 0 && opts.scan.is_some() {
        println!("      Partitioning the scan's points into {lists} lists (k-means; points stored in list order)");
    }
    let pb = bar(if opts.graph.is_some() { m.len() as u64 } else { 0 }, "build");
    let start = Instant::now();
    let points = Points { vectors: &m, ids: ids.as_deref(), keys: false };
    let (build_seconds, calibration) = if h.calibration.no_calibrate {
        (vectorwise_index::build(points, out, &opts, &|n| pb.inc(n))?, None)
    } else {
        let copts = h.calibration.options(m.dim())?;
        vectorwise_index::build_calibrated(points, out, &opts, &copts, &|n| pb.inc(n))?
    };
    pb.finish_and_clear();
    println!("      Index built in {build_seconds:.2} seconds");
    match &calibration {
        Some(c) => {
            let source = if h.calibration.calibration_queries.is_some() { "given queries" } else { "leave-one-out samples" };
            let ks: Vec<String> = c.tables.iter().map(|t| t.k.to_string()).collect();
            println!("      Calibrated recall@k for k = {} on {} {source} in {:.2} s:", ks.join(", "), c.queries, c.seconds);
            print_profiles(c);
        }
        None if !h.calibration.no_calibrate => println!("      Not calibrated: one point leaves nothing to find"),
        None => {}
    }
    let write_seconds = start.elapsed().as_secs_f64() - build_seconds - calibration.as_ref().map_or(0.0, |c| c.seconds);
    println!("[3/3] Saved index to '{}' in {write_seconds:.2} s", out.display());
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
