//! The recall table: which search setting reaches which recall on *this*
//! index, and the lookups that answer a profile or a recall target from it.
//! Types and lookups only; measuring a table is [`super::measure`]'s job.
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
//! Depth rule for a `k` between the calibrated ones: the table of the next
//! calibrated k at or above it, at the same absolute depth (HNSW `ef`, or
//! `rerank × k_table` scan candidates). Checked by the tests at k = 5 and 50.

use crate::error::{Error, Result};
use crate::params::{Method, SearchParams};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The k values a calibration measures.
pub const KS: [usize; 3] = [1, 10, 100];

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
    /// Queries the server was sent: the table was learnt again from live
    /// traffic unlike the queries it was first measured on.
    Live,
}

impl QuerySource {
    /// Its name in the stored table and in `/stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            QuerySource::LeaveOneOut => "leave_one_out",
            QuerySource::Given => "given",
            QuerySource::Live => "live",
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
    /// The 1st percentile of the calibration queries' contrast at this k
    /// ([`Centre::contrast`] with their exact `k`-th neighbour): a search
    /// whose answer has less contrast was asked by a query unlike them, for
    /// which the table's recall does not hold (see `Index::search`).
    /// Absent in tables measured before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard: Option<f32>,
}

/// What a calibration measured; stored in the index file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub version: u32,
    pub source: QuerySource,
    pub queries: usize,
    pub seconds: f64,
    pub tables: Vec<KTable>,
    /// Where the indexed points lie, for [`KTable::hard`]. Absent in tables
    /// measured before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub centre: Option<Centre>,
}

/// The contrast below which an answer is hard: half-way from 1 (a `k`-th
/// neighbour as far as the average point) to the calibration queries' 1st
/// percentile `p1`. At `p1` itself, 14 of 300 queries like the data (base
/// rows of clustered-1m with a little noise) were widened, and their cost
/// made the 95th percentile 3-20 times the median; half-way, none of them
/// on 20k, 200k and 1M clustered sets, while every random and noisy query
/// still is (their contrast: 1.4-1.8 and 2.0-3.6 against p1 8.6-12.7).
pub fn hard_threshold(p1: f32) -> f32 {
    1.0 + (p1 - 1.0).max(0.0) / 2.0
}

/// The mean of the indexed points (the index's space) and their mean squared
/// distance to it: what a query's mean squared distance to the points is,
/// `‖q − mean‖² + spread`, without reading them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Centre {
    pub mean: Vec<f32>,
    pub spread: f32,
}

impl Centre {
    /// The relative contrast of a query whose `k`-th neighbour lies at
    /// `kth` (squared): its mean squared distance to the points over `kth`
    /// (He, Kumar and Chang, "On the difficulty of nearest neighbor
    /// search", 2012). Queries like the data have their neighbours much
    /// nearer than the rest (leave-one-out on 20k x 128 clustered: 11.8 at
    /// the median, 8.5 at the 1st percentile); a query near none of the
    /// points finds its neighbours barely nearer than everything else (rows
    /// with heavy noise 2.6, random vectors 1.5): every method ranks those
    /// worse.
    pub fn contrast(&self, query: &[f32], kth: f32) -> f32 {
        let to_mean: f32 = query.iter().zip(&self.mean).map(|(q, m)| (q - m) * (q - m)).sum();
        (to_mean + self.spread) / kth.max(f32::MIN_POSITIVE)
    }
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

    /// Whether `found` (a search's answer for `k`, ascending, the space's
    /// squared distances) to `query` (prepared) has clearly less contrast
    /// than the calibration queries had: its `k`-th answer's (the table's
    /// k-th, past the largest calibrated k) below [`hard_threshold`] of the
    /// table's [`KTable::hard`]. False without a measured centre and
    /// threshold, or with fewer answers.
    pub fn is_hard(&self, query: &[f32], k: usize, found: &[crate::topk::Scored]) -> bool {
        // Like with like: the answer at a calibrated rank against that
        // rank's threshold (the largest calibrated k up to `k`; else, on a
        // tiny index, the next one up at `k`).
        let at_or_below = self.tables.iter().filter(|t| t.k <= k && t.hard.is_some()).max_by_key(|t| t.k);
        let (Some(table), Some(centre)) = (at_or_below.or_else(|| self.table(k)), self.centre.as_ref()) else { return false };
        let (Some(hard), Some(kth)) = (table.hard, found.get(k.min(table.k).saturating_sub(1))) else { return false };
        centre.contrast(query, kth.distance) < hard_threshold(hard)
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
    /// the file holds, recalls and latencies in range, a centre of the
    /// space's `dim` finite values.
    pub fn check(&self, has_graph: bool, has_scan: bool, dim: usize) -> std::result::Result<(), String> {
        if self.version != TABLE_VERSION {
            return Err(format!("calibration table version {} is not supported", self.version));
        }
        if let Some(c) = &self.centre {
            if c.mean.len() != dim || !c.mean.iter().chain([&c.spread]).all(|x| x.is_finite()) || c.spread < 0.0 {
                return Err(format!("calibration's centre is not {dim} finite values and a spread"));
            }
        }
        if self.tables.is_empty() {
            return Err("calibration has no tables".into());
        }
        for t in &self.tables {
            if t.k == 0 {
                return Err("calibration table for k = 0".into());
            }
            if t.hard.is_some_and(|f| !(f.is_finite() && f >= 0.0)) {
                return Err(format!("calibration's contrast out of range at k = {}", t.k));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn point(setting: SearchParams, recall: f64, p50: Option<f64>) -> Point {
        Point { setting, recall_mean: recall, recall_p10: recall, latency: p50.map(|p| Latency { p50_ms: p, p95_ms: p }) }
    }

    fn table() -> Calibration {
        let points = |k| KTable {
            hard: None,
            k,
            points: vec![
                point(SearchParams::scan(2), 0.80, None),
                point(SearchParams::scan(4), 0.92, Some(1.0)),
                point(SearchParams::scan(8), 0.96, Some(1.5)),
                point(SearchParams::scan(16), 0.995, Some(2.5)),
                point(SearchParams::exact(), 1.0, Some(20.0)),
            ],
        };
        Calibration {
            version: TABLE_VERSION,
            source: QuerySource::LeaveOneOut,
            queries: 300,
            seconds: 1.0,
            tables: vec![points(10), points(100)],
            centre: None,
        }
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
