//! Measuring a recall table ([`calibrate`]) on an opened index.
//!
//! **Queries.** Given queries (a sample of real ones) take precedence. Without
//! them the calibration is leave-one-out: a sample of the indexed points
//! themselves, each searched with itself excluded from the truth and from its
//! answer (the search asks for k + 1 with the work budget of k, and the point
//! itself is dropped). Queries, truth and searches are in the metric's space
//! (see `metric`).
//!
//! **Cost.** Ground truth is one exact pass per group of queries. The graph is
//! swept with real, timed searches. The quantised scan is not re-run per
//! setting: its stages are deterministic, so one deep stage-1 list per query
//! ([`ScanView::fast_scan`]) is replayed for every depth (a prefix of that
//! list, then the SQ8 and exact stages exactly as [`ScanView::search`] runs
//! them). Latency is then measured with real searches for the settings the
//! profiles use, and for exact search.

use super::table::{Calibration, Centre, KS, KTable, Latency, Point, Profile, QuerySource, TABLE_VERSION};
use crate::cancel::Cancel;
use crate::error::{Error, Result};
use crate::exact;
use crate::format;
use crate::index::Index;
use crate::params::SearchParams;
use crate::scan::ScanView;
use crate::topk::Scored;
use rand::SeedableRng;
use rand::seq::index::sample;
use rayon::prelude::*;
use std::time::Instant;

/// Calibration queries by default.
pub const DEFAULT_QUERIES: usize = 300;
/// Queries timed per measured setting.
const TIMED_QUERIES: usize = 30;
/// Queries timed for exact search.
const TIMED_EXACT: usize = 10;
/// The sweep stops past this mean recall (targets above the last setting
/// measured are answered by exact search).
const ENOUGH: f64 = 0.995;

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
    calibrate_with(index, opts, &Cancel::never())
}

/// [`calibrate`], stopping with [`Error::Cancelled`] once `cancel` is set
/// (checked after the ground truth, each sweep and each timing).
pub fn calibrate_with(index: &Index, opts: &CalibrateOptions, cancel: &Cancel) -> Result<Calibration> {
    cancel.check()?;
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
                let prepared = metric.prepare_query(&given[i * user_dim..(i + 1) * user_dim], user_dim, index.space_norm()).map_err(|e| {
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
            let rows: Vec<f32> = picked.iter().flat_map(|&i| metric.query_from_stored(&vectors[i * dim..(i + 1) * dim], index.space_norm())).collect();
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
    cancel.check()?;
    let found: Vec<Vec<Scored>> =
        found.into_iter().zip(&own).map(|(f, own)| f.into_iter().filter(|s| Some(s.offset) != *own).take(kmax).collect()).collect();
    let centre = centre(index.space_vectors(), dim);
    // The 1st percentile of the queries' contrast at each k.
    let hard = |k: usize| {
        let mut c: Vec<f32> =
            found.iter().enumerate().filter_map(|(i, f)| f.get(k - 1).map(|s| centre.contrast(&rows[i * dim..(i + 1) * dim], s.distance))).filter(|c| c.is_finite()).collect();
        c.sort_by(f32::total_cmp);
        c.get(c.len() / 100).copied()
    };
    let mut tables: Vec<KTable> = ks.iter().map(|&k| KTable { k, points: Vec::new(), hard: hard(k) }).collect();
    let truth = found.into_iter().map(|f| f.into_iter().map(|s| s.offset).collect()).collect();
    let q = Queries { rows, own, truth };

    let info = index.info();
    if info.has_graph {
        for t in &mut tables {
            t.points.extend(sweep_graph(index, &q, t.k)?);
            cancel.check()?;
        }
    }
    if let Some(scan) = index.scan_view() {
        for (t, points) in tables.iter_mut().zip(sweep_lists(index.space_vectors(), &scan, &q, &ks, leave_one_out)) {
            t.points.extend(points);
        }
        cancel.check()?;
    }
    // Exact, timed.
    let timed = nq.min(TIMED_EXACT);
    let exact_ms = time_searches(index, &q, timed, 10.min(n), &SearchParams::exact())?;
    for t in &mut tables {
        t.points.push(Point { setting: SearchParams::exact(), recall_mean: 1.0, recall_p10: 1.0, latency: Some(exact_ms) });
    }
    // Latency of the settings the profiles choose (the graph's are timed already).
    let mut calibration = Calibration { version: TABLE_VERSION, source, queries: nq, seconds: 0.0, tables, centre: Some(centre) };
    for ti in 0..calibration.tables.len() {
        let k = calibration.tables[ti].k;
        for profile in Profile::ALL {
            let chosen = calibration.for_target(k, profile.target()).params;
            let table = &calibration.tables[ti];
            let Some(pi) = table.points.iter().position(|p| p.setting == chosen && p.latency.is_none()) else { continue };
            cancel.check()?;
            let ms = time_searches(index, &q, nq.min(TIMED_QUERIES), k, &chosen)?;
            calibration.tables[ti].points[pi].latency = Some(ms);
        }
    }
    calibration.seconds = round6(start.elapsed().as_secs_f64());
    Ok(calibration)
}

/// The mean of `vectors` (rows of `dim`) and their mean squared distance
/// to it, summed in f64 over the rows in parallel.
fn centre(vectors: &[f32], dim: usize) -> Centre {
    let n = (vectors.len() / dim.max(1)).max(1) as f64;
    let add = |mut a: Vec<f64>, b: Vec<f64>| {
        a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        a
    };
    let sum = vectors
        .par_chunks(dim.max(1) * 1024)
        .map(|block| block.chunks_exact(dim).fold(vec![0f64; dim], |mut a, r| {
            a.iter_mut().zip(r).for_each(|(x, &y)| *x += f64::from(y));
            a
        }))
        .reduce(|| vec![0f64; dim], add);
    let mean: Vec<f64> = sum.iter().map(|x| x / n).collect();
    let spread: f64 = vectors
        .par_chunks(dim.max(1) * 1024)
        .map(|block| block.chunks_exact(dim).map(|r| r.iter().zip(&mean).map(|(&x, m)| (f64::from(x) - m).powi(2)).sum::<f64>()).sum::<f64>())
        .sum::<f64>()
        / n;
    Centre { mean: mean.iter().map(|&m| m as f32).collect(), spread: spread as f32 }
}

/// Measures `index`'s recall table and writes the file again with it,
/// atomically, at its own path. The open index keeps serving the old bytes;
/// reopen the file to search with the new table.
pub fn calibrate_in_place(index: &Index, opts: &CalibrateOptions) -> Result<Calibration> {
    let calibration = calibrate(index, opts)?;
    format::write_calibrated(index.path(), index.file(), &calibration)?;
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
/// A replayed list of at least 1/DENSE_LIST of the points gets its SQ8
/// distances by walking every offset rather than by sorting the list.
const DENSE_LIST: usize = 16;

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
    // By (distance, offset), as one integer: the same order as sorting the
    // pairs, at less cost.
    let mut keys: Vec<u64> = list.iter().map(|&(d, o)| (u64::from(d) << 32) | u64::from(o)).collect();
    keys.sort_unstable();
    for (pair, key) in list.iter_mut().zip(&keys) {
        *pair = ((key >> 32) as u16, *key as u32);
    }
    // SQ8 distances of the whole list, computed in offset order (rising
    // addresses: the hardware prefetcher and the TLB like that better).
    let sq8 = scan.sq8_distance(query);
    let mut staged = vec![0f32; list.len()];
    let n = scan.shape.count;
    if list.len().saturating_mul(DENSE_LIST) >= n {
        // A list holding much of the index: every offset in turn, through
        // a map from offset to place, costs less than sorting the list by
        // offset (the pilot's lists hold up to all the points).
        let mut place = vec![u32::MAX; n];
        for (i, &(_, o)) in list.iter().enumerate() {
            place[o as usize] = i as u32;
        }
        for (o, &i) in place.iter().enumerate() {
            if i != u32::MAX {
                staged[i as usize] = sq8.distance(o as u32);
            }
        }
    } else {
        let mut by_offset: Vec<u32> = (0..list.len() as u32).collect();
        by_offset.sort_unstable_by_key(|&i| list[i as usize].1);
        const AHEAD: usize = 8;
        for (j, &i) in by_offset.iter().enumerate() {
            if let Some(&next) = by_offset.get(j + AHEAD) {
                sq8.prefetch(list[next as usize].1);
            }
            staged[i as usize] = sq8.distance(list[i as usize].1);
        }
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
