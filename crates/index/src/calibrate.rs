//! Calibration: which search setting reaches which recall on *this* index.
//!
//! A recall promise only means something per index: the same `ef` gives 0.2
//! on the demo's Gaussian sphere and 0.99 on sentence embeddings. So every
//! index carries a table, measured when it is built (or later with
//! `vectorwise calibrate`), of recall@k against exact search for a sweep of
//! settings of each method it holds, for k = 1, 10 and 100. The profiles
//! (`low_latency` ≥ 0.90, `balanced` ≥ 0.95, `high_accuracy` ≥ 0.99) and any
//! per-request `recall_target` are answered from that table: the cheapest
//! setting whose measured mean recall reaches the target, exact search when
//! none does.
//!
//! **Queries.** Given queries (a sample of real ones) take precedence. Without
//! them the calibration is leave-one-out: a sample of the indexed points
//! themselves, each searched with itself excluded from the truth and from its
//! answer (the search asks for k + 1 with the work budget of k, and the point
//! itself is dropped).
//!
//! **Cost.** Ground truth is one exact pass per group of queries. The graph is
//! swept with real, timed searches. The quantised scan is not re-run per
//! setting: its stages are deterministic, so one deep stage-1 list per query
//! ([`ScanView::fast_scan`]) is replayed for every depth (a prefix of that
//! list, then the SQ8 and exact stages exactly as [`ScanView::search`] runs
//! them). Latency is then measured with real searches for the settings the
//! profiles use, and for exact search.
//!
//! Depth rule for a `k` between the calibrated ones: the table of the next
//! calibrated k at or above it, at the same absolute depth (HNSW `ef`, or
//! `rerank × k_table` scan candidates). Checked by the tests at k = 5 and 50.

use crate::error::{Error, Result};
use crate::exact;
use crate::index::Index;
use crate::params::{Method, SearchParams};
use crate::scan::ScanView;
use crate::topk::Scored;
use rand::SeedableRng;
use rand::seq::index::sample;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Instant;

/// The k values a calibration measures.
pub const KS: [usize; 3] = [1, 10, 100];
/// Calibration queries by default.
pub const DEFAULT_QUERIES: usize = 300;
/// Queries timed per measured setting.
const TIMED_QUERIES: usize = 30;
/// Queries timed for exact search.
const TIMED_EXACT: usize = 10;
/// The sweep stops past this mean recall (targets above the last setting
/// measured are answered by exact search).
const ENOUGH: f64 = 0.995;
/// The format of the stored table.
pub const TABLE_VERSION: u32 = 1;

/// A named recall promise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Recall@k ≥ 0.90.
    LowLatency,
    /// Recall@k ≥ 0.95 (the default).
    #[default]
    Balanced,
    /// Recall@k ≥ 0.99.
    HighAccuracy,
}

impl Profile {
    pub const ALL: [Profile; 3] = [Profile::LowLatency, Profile::Balanced, Profile::HighAccuracy];

    /// The recall@k the profile promises.
    pub fn target(self) -> f64 {
        match self {
            Profile::LowLatency => 0.90,
            Profile::Balanced => 0.95,
            Profile::HighAccuracy => 0.99,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Profile::LowLatency => "low_latency",
            Profile::Balanced => "balanced",
            Profile::HighAccuracy => "high_accuracy",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Profile {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Profile::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| Error::InvalidParameter {
            name: "profile",
            reason: format!("unknown profile `{s}` (low_latency, balanced, high_accuracy)"),
        })
    }
}

/// Where the calibration queries came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuerySource {
    /// Indexed points, each excluded from its own truth and answer.
    LeaveOneOut,
    /// Queries the user gave (`--calibration-queries`).
    Given,
}

impl QuerySource {
    /// Its name in the stored table and in `/stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            QuerySource::LeaveOneOut => "leave_one_out",
            QuerySource::Given => "given",
        }
    }
}

/// Latency of one setting, one thread, one query at a time.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
}

/// One measured setting.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// The setting in its text form: `ef=64`, `rerank=32`, `exact`.
    #[serde(with = "setting_text")]
    pub setting: SearchParams,
    pub recall_mean: f64,
    /// 10th percentile of per-query recall.
    pub recall_p10: f64,
    /// Measured for the graph's settings, the profiles' settings and exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
}

/// The sweep for one k: per method in ascending depth, exact last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KTable {
    pub k: usize,
    pub points: Vec<Point>,
}

/// What a calibration measured; stored in the index file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub version: u32,
    pub source: QuerySource,
    pub queries: usize,
    pub seconds: f64,
    pub tables: Vec<KTable>,
}

/// The setting a search will use and what it is expected to deliver.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Choice {
    pub params: SearchParams,
    /// Calibrated mean recall@k; `None` when the table has nothing to say.
    pub expected_recall: Option<f64>,
}

/// A profile's setting at one calibrated k ([`Calibration::profiles`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProfileChoice {
    pub profile: Profile,
    pub k: usize,
    pub choice: Choice,
    /// The setting's measured latency, when the table has it.
    pub latency: Option<Latency>,
}

/// Options of [`calibrate`].
#[derive(Clone, Debug)]
pub struct CalibrateOptions {
    /// Queries (row-major, the index's dimension); `None`: leave-one-out.
    pub queries: Option<Vec<f32>>,
    /// How many queries to use (a seeded sample when more are available).
    pub sample: usize,
    pub seed: u64,
}

impl Default for CalibrateOptions {
    fn default() -> Self {
        CalibrateOptions { queries: None, sample: DEFAULT_QUERIES, seed: 7 }
    }
}

/// How deep a setting searches, in candidates (HNSW ef, scan rerank × k).
fn depth(p: &SearchParams, k: usize) -> usize {
    match p.method {
        Method::Hnsw => p.ef_search.max(k),
        Method::Scan => p.rerank.saturating_mul(k),
        _ => usize::MAX,
    }
}

impl Calibration {
    /// The table for `k`: the smallest calibrated k at or above it, else the largest.
    pub fn table(&self, k: usize) -> Option<&KTable> {
        self.tables.iter().filter(|t| t.k >= k).min_by_key(|t| t.k).or_else(|| self.tables.iter().max_by_key(|t| t.k))
    }

    /// Re-expresses a setting calibrated at `table_k` for a search of `k`,
    /// at the same absolute depth.
    fn at_k(p: SearchParams, table_k: usize, k: usize) -> SearchParams {
        match p.method {
            Method::Scan => SearchParams { rerank: (p.rerank * table_k).div_ceil(k.max(1)).max(1), ..p },
            _ => p,
        }
    }

    /// The cheapest setting whose calibrated mean recall@k reaches `target`;
    /// exact search for a target of 1 or one no setting reaches. Above the
    /// largest calibrated k the largest table's setting is scaled up with k
    /// (the scan's candidates per neighbour, the graph's ef in proportion)
    /// and nothing is promised (`expected_recall` is `None`).
    pub fn for_target(&self, k: usize, target: f64) -> Choice {
        let exact = Choice { params: SearchParams::exact(), expected_recall: Some(1.0) };
        let Some(table) = self.table(k) else { return exact };
        if target >= 1.0 {
            return exact;
        }
        if k > table.k {
            let choice = self.for_target(table.k, target);
            let params = match choice.params.method {
                Method::Hnsw => SearchParams::hnsw(choice.params.ef_search.saturating_mul(k.div_ceil(table.k))),
                _ => choice.params,
            };
            return Choice { params, expected_recall: (params.method == Method::Exact).then_some(1.0) };
        }
        // First point of each method that reaches the target.
        let mut best: Option<&Point> = None;
        for method in [Method::Hnsw, Method::Scan] {
            let Some(p) = table.points.iter().find(|p| p.setting.method == method && p.recall_mean >= target) else {
                continue;
            };
            best = match best {
                Some(b) if cost(table, b) <= cost(table, p) => Some(b),
                _ => Some(p),
            };
        }
        let exact_point = table.points.iter().find(|p| p.setting.method == Method::Exact);
        match best {
            // Exact when it is measured faster (tiny indexes).
            Some(p) if exact_point.is_some_and(|e| cost(table, e) < cost(table, p)) => exact,
            Some(p) => Choice { params: Self::at_k(p.setting, table.k, k), expected_recall: Some(p.recall_mean) },
            None => exact,
        }
    }

    /// Each profile's setting at each calibrated k, in table order then
    /// profile order: what `/stats` and `vectorwise build` show.
    pub fn profiles(&self) -> Vec<ProfileChoice> {
        let mut out = Vec::with_capacity(self.tables.len() * Profile::ALL.len());
        for t in &self.tables {
            for profile in Profile::ALL {
                let choice = self.for_target(t.k, profile.target());
                let latency = t.points.iter().find(|p| p.setting == choice.params).and_then(|p| p.latency);
                out.push(ProfileChoice { profile, k: t.k, choice, latency });
            }
        }
        out
    }

    /// The calibrated recall to expect from `params` at `k`: the best of the
    /// calibrated settings of the same method that search no deeper than it
    /// and read no more lists (recall grows with both, so this is a floor).
    /// `None` when there is none.
    pub fn expected(&self, k: usize, params: &SearchParams) -> Option<f64> {
        if params.method == Method::Exact {
            return Some(1.0);
        }
        let table = self.table(k).filter(|t| t.k >= k)?;
        let want = depth(params, k);
        let lists = |n: usize| if n == 0 { usize::MAX } else { n };
        table
            .points
            .iter()
            .filter(|p| p.setting.method == params.method && depth(&p.setting, table.k) <= want)
            .filter(|p| lists(p.setting.nprobe) <= lists(params.nprobe))
            .map(|p| p.recall_mean)
            .max_by(f64::total_cmp)
    }

    /// Checks a table read from a file: known k values, settings of methods
    /// the file holds, recalls and latencies in range.
    pub fn check(&self, has_graph: bool, has_scan: bool) -> std::result::Result<(), String> {
        if self.version != TABLE_VERSION {
            return Err(format!("calibration table version {} is not supported", self.version));
        }
        if self.tables.is_empty() {
            return Err("calibration has no tables".into());
        }
        for t in &self.tables {
            if t.k == 0 {
                return Err("calibration table for k = 0".into());
            }
            for p in &t.points {
                let ok_method = match p.setting.method {
                    Method::Hnsw => has_graph,
                    Method::Scan => has_scan,
                    Method::Exact => true,
                    Method::Auto => false,
                };
                if !ok_method {
                    return Err(format!("calibration names `{}`, which the file cannot search", p.setting));
                }
                let in_unit = |x: f64| (0.0..=1.0).contains(&x);
                if !in_unit(p.recall_mean) || !in_unit(p.recall_p10) {
                    return Err(format!("calibration recall out of range at `{}`", p.setting));
                }
                if p.latency.is_some_and(|l| !(l.p50_ms.is_finite() && l.p95_ms.is_finite() && l.p50_ms >= 0.0)) {
                    return Err(format!("calibration latency out of range at `{}`", p.setting));
                }
            }
        }
        Ok(())
    }
}

/// A point's cost for choosing between methods: its measured p50, else
/// that of the nearest measured point after it of its method (a method's
/// points are in rising cost, so an upper bound), else the slowest measured
/// point of the table.
fn cost(table: &KTable, p: &Point) -> f64 {
    if let Some(l) = p.latency {
        return l.p50_ms;
    }
    let at = table.points.iter().position(|q| std::ptr::eq(q, p)).unwrap_or(0);
    table.points[at..]
        .iter()
        .filter(|q| q.setting.method == p.setting.method)
        .find_map(|q| q.latency.map(|l| l.p50_ms))
        .unwrap_or_else(|| table.points.iter().filter_map(|q| q.latency.map(|l| l.p50_ms)).fold(0.0, f64::max))
}

mod setting_text {
    use crate::params::SearchParams;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &SearchParams, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&p.setting())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SearchParams, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The calibration queries and their exact neighbours.
struct Queries {
    rows: Vec<f32>,
    /// The indexed point each query is (leave-one-out), to exclude.
    own: Vec<Option<u32>>,
    /// Exact offsets, ascending distance, `own` excluded; `kmax` of them.
    truth: Vec<Vec<u32>>,
}

impl Queries {
    fn row(&self, i: usize, dim: usize) -> &[f32] {
        &self.rows[i * dim..(i + 1) * dim]
    }
}

/// Recall@k of `found` (offsets, ascending) against query `i`'s truth,
/// after dropping the query's own point.
fn recall(q: &Queries, i: usize, found: impl IntoIterator<Item = u32>, k: usize) -> f64 {
    let own = q.own[i];
    let found: Vec<u32> = found.into_iter().filter(|&o| Some(o) != own).take(k).collect();
    exact::recall_at(&found, &q.truth[i], k)
}

/// Six decimals: what the table stores (and `/stats` shows).
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn summarize(setting: SearchParams, recalls: &mut [f64]) -> Point {
    recalls.sort_by(f64::total_cmp);
    let mean = recalls.iter().sum::<f64>() / recalls.len().max(1) as f64;
    let p10 = recalls.get(recalls.len() / 10).copied().unwrap_or(1.0);
    Point { setting, recall_mean: round6(mean), recall_p10: round6(p10), latency: None }
}

fn latency(mut ms: Vec<f64>) -> Latency {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 * q) as usize).min(ms.len() - 1)];
    Latency { p50_ms: round6(at(0.5)), p95_ms: round6(at(0.95)) }
}

/// Measures the calibration table of `index` (see the module doc).
pub fn calibrate(index: &Index, opts: &CalibrateOptions) -> Result<Calibration> {
    let start = Instant::now();
    // Queries, truth and searches are all in the metric's space: given
    // queries are prepared as a search prepares them, and an indexed point
    // is the query its own user vector makes.
    let (n, dim, user_dim, metric) = (index.len(), index.space_dim(), index.dim(), index.metric());
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let sample_size = opts.sample.max(1);
    let (rows, own, source) = match &opts.queries {
        Some(given) => {
            if given.is_empty() || given.len() % user_dim != 0 {
                let reason = format!("calibration queries must be non-empty rows of {user_dim} values");
                return Err(Error::InvalidParameter { name: "calibration queries", reason });
            }
            let count = given.len() / user_dim;
            let picked: Vec<usize> =
                if count > sample_size { sample(&mut rng, count, sample_size).into_vec() } else { (0..count).collect() };
            let mut rows = Vec::with_capacity(picked.len() * dim);
            for &i in &picked {
                let prepared = metric.prepare_query(&given[i * user_dim..(i + 1) * user_dim], user_dim).map_err(|e| {
                    Error::InvalidParameter { name: "calibration queries", reason: format!("query {i}: {e}") }
                })?;
                rows.extend_from_slice(&prepared);
            }
            (rows, vec![None; picked.len()], QuerySource::Given)
        }
        None => {
            if n < 2 {
                return Err(Error::InvalidParameter { name: "index", reason: "leave-one-out calibration needs at least 2 points".into() });
            }
            let picked: Vec<usize> = if n > sample_size { sample(&mut rng, n, sample_size).into_vec() } else { (0..n).collect() };
            let vectors = index.space_vectors();
            let rows: Vec<f32> = picked.iter().flat_map(|&i| metric.query_from_stored(&vectors[i * dim..(i + 1) * dim])).collect();
            (rows, picked.iter().map(|&i| Some(i as u32)).collect(), QuerySource::LeaveOneOut)
        }
    };
    let nq = own.len();
    let leave_one_out = source == QuerySource::LeaveOneOut;
    // k values this index can answer (with one point set aside for leave-one-out).
    let available = if leave_one_out { n - 1 } else { n };
    let ks: Vec<usize> = KS.iter().copied().filter(|&k| k <= available).collect();
    let ks = if ks.is_empty() { vec![available] } else { ks };
    let kmax = *ks.iter().max().expect("at least one k");

    // Ground truth: one more than kmax, then each query's own point dropped.
    let found = exact::search_many(index.space_vectors(), dim, &rows, kmax + usize::from(leave_one_out));
    let truth = found
        .into_iter()
        .zip(&own)
        .map(|(f, own)| f.into_iter().map(|s| s.offset).filter(|&o| Some(o) != *own).take(kmax).collect())
        .collect();
    let q = Queries { rows, own, truth };

    let info = index.info();
    let mut tables: Vec<KTable> = ks.iter().map(|&k| KTable { k, points: Vec::new() }).collect();
    if info.has_graph {
        for t in &mut tables {
            t.points.extend(sweep_graph(index, &q, t.k)?);
        }
    }
    if let Some(scan) = index.scan_view() {
        for (t, points) in tables.iter_mut().zip(sweep_lists(index.space_vectors(), &scan, &q, &ks, leave_one_out)) {
            t.points.extend(points);
        }
    }
    // Exact, timed.
    let timed = nq.min(TIMED_EXACT);
    let exact_ms = time_searches(index, &q, timed, 10.min(n), &SearchParams::exact())?;
    for t in &mut tables {
        t.points.push(Point { setting: SearchParams::exact(), recall_mean: 1.0, recall_p10: 1.0, latency: Some(exact_ms) });
    }
    // Latency of the settings the profiles choose (the graph's are timed already).
    let mut calibration = Calibration { version: TABLE_VERSION, source, queries: nq, seconds: 0.0, tables };
    for ti in 0..calibration.tables.len() {
        let k = calibration.tables[ti].k;
        for profile in Profile::ALL {
            let chosen = calibration.for_target(k, profile.target()).params;
            let table = &calibration.tables[ti];
            let Some(pi) = table.points.iter().position(|p| p.setting == chosen && p.latency.is_none()) else { continue };
            let ms = time_searches(index, &q, nq.min(TIMED_QUERIES), k, &chosen)?;
            calibration.tables[ti].points[pi].latency = Some(ms);
        }
    }
    calibration.seconds = round6(start.elapsed().as_secs_f64());
    Ok(calibration)
}

/// Times `queries` searches of `k` with `params`, one thread.
fn time_searches(index: &Index, q: &Queries, queries: usize, k: usize, params: &SearchParams) -> Result<Latency> {
    let dim = index.space_dim();
    let mut ms = Vec::with_capacity(queries);
    for i in 0..queries.max(1).min(q.own.len()) {
        let t = Instant::now();
        std::hint::black_box(index.search_offsets(q.row(i, dim), k, params)?);
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(latency(ms))
}

/// HNSW ef values tried (those below k are skipped).
const EF_GRID: [usize; 18] = [8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 4096];

/// Real, timed graph searches at each ef, until recall passes [`ENOUGH`] or
/// a search costs more than an exact one would.
fn sweep_graph(index: &Index, q: &Queries, k: usize) -> Result<Vec<Point>> {
    let dim = index.space_dim();
    let mut points = Vec::new();
    let exact_budget = {
        let timed = q.own.len().min(5);
        time_searches(index, q, timed, k, &SearchParams::exact())?.p50_ms
    };
    for ef in EF_GRID.into_iter().filter(|&ef| ef >= k) {
        let params = SearchParams::hnsw(ef);
        let nq = queries_for(k, q.own.len());
        let mut recalls = Vec::with_capacity(nq);
        let mut ms = Vec::with_capacity(nq);
        for i in 0..nq {
            let t = Instant::now();
            // Leave-one-out: the walk runs as if the query's own point were
            // not in the graph (starting from it would flatter the graph).
            let hits = index.search_offsets_excluding(q.row(i, dim), k, &params, q.own[i])?;
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            recalls.push(recall(q, i, hits.iter().map(|s| s.offset), k));
        }
        let mut point = summarize(params, &mut recalls);
        point.latency = Some(latency(ms));
        let done = point.recall_mean >= ENOUGH || point.latency.is_some_and(|l| l.p50_ms > exact_budget);
        points.push(point);
        if done {
            break;
        }
    }
    Ok(points)
}

/// Queries measuring recall@k: all of them for k < 10 (per-query recall@1
/// is 0 or 1), at most 300 for k < 100, at most 100 from there on.
fn queries_for(k: usize, nq: usize) -> usize {
    nq.min(if k < 10 { usize::MAX } else if k < 100 { 300 } else { 100 })
}

/// Scan rerank factors tried (depth = factor × k).
/// Steps of about 1.25×: a coarser grid makes a profile pay for recall it
/// does not need (0.946 at 512 and 0.964 at 768 on the 1M sphere, k = 10).
const RERANK_GRID: [usize; 46] = [
    1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512, 640, 768, 1024,
    1280, 1536, 2048, 2560, 3072, 4096, 5120, 6144, 8192, 10240, 12288, 16384, 20480, 24576, 32768, 40960, 49152, 65536,
];
/// Deepest stage-1 list replayed.
const MAX_DEPTH: usize = 65_536;
/// Queries replayed at full depth first, to find how deep the rest must go.
const PILOT: usize = 64;

/// Lists read per query tried on a partitioned scan (those at or above the
/// index's lists are the exhaustive scan, `nprobe` 0).
const NPROBE_GRID: [usize; 24] =
    [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096];

/// The scan's points for every k: the exhaustive scan's sweep ([`sweep_scan`])
/// and, on a partitioned scan, one sweep per number of lists read, until a
/// number reaches [`ENOUGH`] at every k or reads half the points. The
/// settings of all the sweeps are then put in order of modelled cost
/// ([`ScanCost`]), keeping only those that reach a higher recall than every
/// cheaper one: the first setting that reaches a target is the cheapest.
fn sweep_lists(vectors: &[f32], scan: &ScanView<'_>, q: &Queries, ks: &[usize], leave_one_out: bool) -> Vec<Vec<Point>> {
    let n = scan.shape.count;
    let mut all = sweep_scan(vectors, scan, q, ks, leave_one_out, n, 0);
    let Some(lists) = scan.lists else { return all };
    let dim = scan.shape.dim;
    let model = ScanCost::measure(vectors, scan, q);
    let mut probed = vec![(0, n as f64)];
    for nprobe in NPROBE_GRID.into_iter().filter(|&p| p < lists.len()) {
        let counts: Vec<usize> = (0..q.own.len()).map(|i| scan.probe(q.row(i, dim), nprobe, 1).iter().map(|r| r.len()).sum::<usize>()).collect();
        let mean = counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64;
        if mean > n as f64 / 2.0 {
            break;
        }
        let deepest = counts.iter().copied().max().unwrap_or(1).max(1);
        let points = sweep_scan(vectors, scan, q, ks, leave_one_out, deepest, nprobe);
        let enough = points.iter().all(|ps| ps.last().is_some_and(|p| p.recall_mean >= ENOUGH));
        for (a, p) in all.iter_mut().zip(points) {
            a.extend(p);
        }
        probed.push((nprobe, mean));
        if enough {
            break;
        }
    }
    let coarse = |nprobe: usize| if nprobe == 0 { 0.0 } else { model.coarse_ms };
    let points_read = |nprobe: usize| probed.iter().find(|p| p.0 == nprobe).map_or(n as f64, |p| p.1);
    all.into_iter()
        .zip(ks)
        .map(|(points, &k)| {
            let cost = |p: &Point| {
                let s = &p.setting;
                let candidates = (s.rerank.saturating_mul(k).max(crate::index::scan_keep(k)) as f64).min(points_read(s.nprobe));
                coarse(s.nprobe) + model.point_ms * points_read(s.nprobe) + model.candidate_ms * candidates
            };
            let mut points: Vec<(f64, Point)> = points.into_iter().map(|p| (cost(&p), p)).collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut best = f64::NEG_INFINITY;
            points
                .into_iter()
                .filter(|(_, p)| {
                    let better = p.recall_mean > best;
                    best = best.max(p.recall_mean);
                    better
                })
                .map(|(_, p)| p)
                .collect()
        })
        .collect()
}

/// A model of one scan search's time on one thread, measured on this index:
/// choosing the lists, then a cost per point read by stage 1 and per
/// candidate the SQ8 stage scores.
#[derive(Clone, Copy, Debug)]
struct ScanCost {
    coarse_ms: f64,
    point_ms: f64,
    candidate_ms: f64,
}

impl ScanCost {
    fn measure(vectors: &[f32], scan: &ScanView<'_>, q: &Queries) -> ScanCost {
        let dim = scan.shape.dim;
        let n = scan.shape.count;
        let rounds = q.own.len().clamp(1, 5);
        // The median of a few one-thread runs, as `latency` takes it.
        let time = |f: &dyn Fn(&[f32])| {
            let ms = (0..rounds)
                .map(|i| {
                    let t = Instant::now();
                    f(q.row(i, dim));
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            latency(ms).p50_ms
        };
        let coarse_ms = match scan.lists {
            Some(_) => time(&|query| {
                std::hint::black_box(scan.probe(query, 1, 1));
            }),
            None => 0.0,
        };
        let full = time(&|query| {
            std::hint::black_box(scan.fast_scan(query, 64));
        });
        // Stage 2 over a deep list, minus the shallow one's.
        let deep = n.min(8192);
        let shallow = 64.min(deep);
        let at = |depth: usize| {
            time(&|query| {
                std::hint::black_box(scan.search_split(vectors, query, 1, depth, 1, 1));
            })
        };
        let candidate_ms = if deep > shallow { ((at(deep) - at(shallow)) / (deep - shallow) as f64).max(0.0) } else { 0.0 };
        ScanCost { coarse_ms, point_ms: full / n as f64, candidate_ms }
    }
}

/// The scan's sweep for every k, replayed from one deep stage-1 list per
/// query: a setting of depth d is the first d of that list (as stage 1 with
/// `keep = d` would return), then the SQ8 and exact stages as
/// [`ScanView::search`] runs them. A pilot of [`PILOT`] queries at full depth
/// finds where recall passes [`ENOUGH`]; the rest stop two settings deeper (six at k < 10).
/// (`nprobe` lists read: 0 for all; `n` the most points one query reads).
fn sweep_scan(
    vectors: &[f32],
    scan: &ScanView<'_>,
    q: &Queries,
    ks: &[usize],
    leave_one_out: bool,
    n: usize,
    nprobe: usize,
) -> Vec<Vec<Point>> {
    let grid = |deepest: usize| -> Vec<Vec<usize>> {
        ks.iter()
            .map(|&k| {
                // Factors below stage 1's floor (`scan_keep`) all search the floor:
                // keep the largest of them only.
                let floor = crate::index::scan_keep(k);
                let below = RERANK_GRID.iter().copied().rev().find(|&r| r * k <= floor).unwrap_or(1);
                let r: Vec<usize> =
                    RERANK_GRID.iter().copied().filter(|&r| r >= below && r * k <= deepest.max(floor)).collect();
                if r.is_empty() { vec![below] } else { r }
            })
            .collect()
    };
    // Per-query recall varies less at larger k: fewer queries measure it as well.
    let nq = q.own.len();
    let limit: Vec<usize> = ks.iter().map(|&k| queries_for(k, nq)).collect();
    let replay_all = |queries: std::ops::Range<usize>, settings: &[Vec<usize>]| -> Vec<Vec<Vec<f64>>> {
        queries
            .into_par_iter()
            .map(|i| {
                let mine: Vec<Vec<usize>> =
                    settings.iter().zip(&limit).map(|(s, &l)| if i < l { s.clone() } else { Vec::new() }).collect();
                replay(vectors, scan, q, i, ks, &mine, leave_one_out, nprobe)
            })
            .collect()
    };
    let mean = |per_query: &[Vec<Vec<f64>>], ki: usize, si: usize| {
        let v: Vec<f64> = per_query.iter().filter_map(|pq| pq[ki].get(si).copied()).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let full = grid(n.min(MAX_DEPTH));
    let pilot = replay_all(0..nq.min(PILOT), &full);
    // Per k, the settings up to two steps (six at k < 10: ~1.5× and ~4× the
    // depth) past the first at which the pilot's recall passes ENOUGH (all
    // of them when it never does).
    let settings: Vec<Vec<usize>> = full
        .iter()
        .enumerate()
        .map(|(ki, rs)| match (0..rs.len()).find(|&si| mean(&pilot, ki, si) >= ENOUGH) {
            // The pilot's recall@1 is coarse (each query 0 or 1): more room there.
            Some(si) => rs[..=(si + if ks[ki] < 10 { 6 } else { 2 }).min(rs.len() - 1)].to_vec(),
            None => rs.clone(),
        })
        .collect();
    let mut per_query: Vec<Vec<Vec<f64>>> = pilot
        .into_iter()
        .map(|pq| pq.into_iter().zip(&settings).map(|(r, s)| r[..s.len().min(r.len())].to_vec()).collect())
        .collect();
    per_query.extend(replay_all(nq.min(PILOT)..nq, &settings));
    ks.iter()
        .enumerate()
        .map(|(ki, _)| {
            let mut points = Vec::new();
            for (si, &r) in settings[ki].iter().enumerate() {
                let mut recalls: Vec<f64> = per_query.iter().filter_map(|pq| pq[ki].get(si).copied()).collect();
                let point = summarize(SearchParams::probe(nprobe, r), &mut recalls);
                let done = point.recall_mean >= ENOUGH;
                points.push(point);
                if done {
                    break;
                }
            }
            points
        })
        .collect()
}

/// Query `i`'s recall at every (k, rerank factor) of `settings`, from one
/// stage-1 list as deep as the deepest setting. The SQ8 stage's best `keep`
/// of a growing prefix is kept in a heap; the exact distances are cached.
fn replay(
    vectors: &[f32],
    scan: &ScanView<'_>,
    q: &Queries,
    i: usize,
    ks: &[usize],
    settings: &[Vec<usize>],
    leave_one_out: bool,
    nprobe: usize,
) -> Vec<Vec<f64>> {
    let dim = scan.shape.dim;
    let query = q.row(i, dim);
    let floor = crate::index::scan_keep;
    // Leave-one-out asks for one more answer on the work budget of k: the
    // query's own point takes one slot.
    let wanted = |k: usize| k + usize::from(leave_one_out);
    let depth = |k: usize, r: usize| (r * k).max(floor(k).max(wanted(k)));
    let deepest = ks.iter().zip(settings).filter_map(|(&k, rs)| rs.last().map(|&r| depth(k, r))).max().unwrap_or(1);
    // As a search of the largest k reads them (at least that many points).
    let min_points = ks.iter().map(|&k| wanted(k)).max().unwrap_or(1);
    let mut list = scan.fast_scan_probe(query, deepest, nprobe, min_points);
    list.sort_unstable();
    // SQ8 distances of the whole list, computed in offset order (rising
    // addresses: the hardware prefetcher and the TLB like that better).
    let sq8 = scan.sq8_distance(query);
    let mut by_offset: Vec<u32> = (0..list.len() as u32).collect();
    by_offset.sort_unstable_by_key(|&i| list[i as usize].1);
    let mut staged = vec![0f32; list.len()];
    const AHEAD: usize = 8;
    for (j, &i) in by_offset.iter().enumerate() {
        if let Some(&next) = by_offset.get(j + AHEAD) {
            sq8.prefetch(list[next as usize].1);
        }
        staged[i as usize] = sq8.distance(list[i as usize].1);
    }
    let l2 = crate::distance::kernels().l2_squared;
    let mut exact_cache = vec![f32::NAN; list.len()];
    ks.iter()
        .zip(settings)
        .map(|(&k, factors)| {
            let keep = crate::index::exact_keep(k).max(wanted(k));
            let mut heap: std::collections::BinaryHeap<Scored> = std::collections::BinaryHeap::with_capacity(keep + 1);
            let mut next = 0;
            factors
                .iter()
                .map(|&r| {
                    let d = depth(k, r).min(list.len());
                    while next < d {
                        let s = Scored { distance: staged[next], offset: next as u32 };
                        if heap.len() < keep {
                            heap.push(s);
                        } else if heap.peek().is_some_and(|top| s < *top) {
                            heap.pop();
                            heap.push(s);
                        }
                        next += 1;
                    }
                    let mut finals: Vec<Scored> = heap
                        .iter()
                        .map(|s| {
                            let pos = s.offset as usize;
                            let p = list[pos].1;
                            if exact_cache[pos].is_nan() {
                                exact_cache[pos] = l2(&vectors[p as usize * dim..(p as usize + 1) * dim], query);
                            }
                            Scored { distance: exact_cache[pos], offset: p }
                        })
                        .collect();
                    finals.sort_unstable();
                    finals.truncate(wanted(k));
                    recall(q, i, finals.iter().map(|s| s.offset), k)
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(setting: SearchParams, recall: f64, p50: Option<f64>) -> Point {
        Point { setting, recall_mean: recall, recall_p10: recall, latency: p50.map(|p| Latency { p50_ms: p, p95_ms: p }) }
    }

    fn table() -> Calibration {
        let points = |k| KTable {
            k,
            points: vec![
                point(SearchParams::scan(2), 0.80, None),
                point(SearchParams::scan(4), 0.92, Some(1.0)),
                point(SearchParams::scan(8), 0.96, Some(1.5)),
                point(SearchParams::scan(16), 0.995, Some(2.5)),
                point(SearchParams::exact(), 1.0, Some(20.0)),
            ],
        };
        Calibration { version: TABLE_VERSION, source: QuerySource::LeaveOneOut, queries: 300, seconds: 1.0, tables: vec![points(10), points(100)] }
    }

    #[test]
    fn targets_pick_the_cheapest_setting_that_reaches_them() {
        let c = table();
        assert_eq!(c.for_target(10, 0.90), Choice { params: SearchParams::scan(4), expected_recall: Some(0.92) });
        assert_eq!(c.for_target(10, 0.95).params, SearchParams::scan(8));
        assert_eq!(c.for_target(10, 0.99).params, SearchParams::scan(16));
        assert_eq!(c.for_target(10, 0.999), Choice { params: SearchParams::exact(), expected_recall: Some(1.0) });
        assert_eq!(c.for_target(10, 1.0).params, SearchParams::exact());
        // k = 5 uses the k = 10 table at the same number of candidates: twice the factor.
        assert_eq!(c.for_target(5, 0.95).params, SearchParams::scan(16));
        // The floor of a fixed depth: the deepest calibrated setting no deeper.
        assert_eq!(c.expected(10, &SearchParams::scan(12)), Some(0.96));
        assert_eq!(c.expected(10, &SearchParams::scan(1)), None);
    }

    #[test]
    fn above_the_largest_k_the_setting_scales_and_nothing_is_promised() {
        let c = table();
        let at_300 = c.for_target(300, 0.95);
        assert_eq!(at_300, Choice { params: SearchParams::scan(8), expected_recall: None });
        assert_eq!(c.expected(300, &SearchParams::scan(8)), None);
        assert_eq!(c.for_target(300, 1.0).expected_recall, Some(1.0));
    }
}
