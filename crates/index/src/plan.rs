//! Plans: from what a user asked for to what the engine runs. The rules live
//! here, not in the callers (the CLI and the server only translate):
//!
//! - the **build plan** ([`plan_build`]): `vectorwise build` flags (or later a
//!   collection's settings) to the [`IndexOptions`] of one index — which
//!   method `auto` picks, how many lists, how many dimensions per
//!   sub-quantiser;
//! - the **search plan** ([`Index::plan`]): a request's profile, recall
//!   target or fixed depth to the [`SearchParams`] of one search, with the
//!   recall to expect from the index's calibration.

use crate::choose::{self, Choice};
use crate::hnsw::BuildOptions;
use crate::metric::Metric;
use crate::scan::{self, ScanOptions};
use crate::{Index, IndexOptions, Matrix, Method, Profile, Result, SearchParams};

/// Which search structures to build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BuildMethod {
    /// Test a graph on a sample ([`choose`]): structured data gets the scan
    /// partitioned into lists from [`AUTO_LISTS_MIN_POINTS`] points (it beat
    /// the graph on every structured set measured, and builds in seconds),
    /// a graph + scan codes below that; data without structure the
    /// exhaustive scan. Under `ip` always the exhaustive scan: a graph or
    /// lists built in the `ip` space lose recall where the scan keeps it
    /// (harness, clustered data with norms 0.1–10: HNSW 0.90 at ef 8192,
    /// 316 lists at most 0.25).
    #[default]
    Auto,
    /// HNSW graph only.
    Hnsw,
    /// Quantised scan codes only.
    Scan,
    /// Both; searches default to HNSW.
    Both,
}

/// What a build asks for; `None` means "choose".
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BuildRequest {
    pub metric: Metric,
    pub method: BuildMethod,
    /// Dimensions per 4-bit sub-quantiser; `None`: [`scan::auto_dsub`].
    pub scan_dsub: Option<usize>,
    /// Lists of the partitioned scan; `None`: about √n for structured data
    /// of [`AUTO_LISTS_MIN_POINTS`] points or more, else none.
    pub scan_lists: Option<usize>,
    pub graph: BuildOptions,
}

/// Points from which `auto` partitions structured data.
pub const AUTO_LISTS_MIN_POINTS: usize = 50_000;

/// The options to build with, and the measurement behind an `auto` choice.
#[derive(Clone, Debug, PartialEq)]
pub struct BuildPlan {
    pub options: IndexOptions,
    /// The sample graph's verdict, when `auto` asked for one.
    pub choice: Option<Choice>,
}

impl BuildPlan {
    /// Lists the scan will be partitioned into (0: none).
    pub fn lists(&self) -> usize {
        self.options.scan.map_or(0, |s| s.lists)
    }
}

/// Plans the build of `vectors` (the user's rows) for `request`.
pub fn plan_build(vectors: &Matrix, request: &BuildRequest) -> Result<BuildPlan> {
    let n = vectors.len();
    let space_dim = request.metric.space_dim(vectors.dim());
    // Raised as the scan raises it for wide vectors (at most 256 sub-quantisers).
    let dsub = request.scan_dsub.unwrap_or_else(|| scan::auto_dsub(space_dim)).max(space_dim.div_ceil(256));
    let many = n >= AUTO_LISTS_MIN_POINTS;
    let mut choice = None;
    let method = match request.method {
        BuildMethod::Auto if request.metric == Metric::Ip => BuildMethod::Scan,
        BuildMethod::Auto => {
            // The sample graph is tested on the space the index will search.
            let c = choose::choose(vectors, request.metric, request.graph.seed)?;
            choice = Some(c);
            let structured = c.method == Method::Hnsw;
            match (structured, request.scan_lists != Some(0) && many) {
                (true, true) => BuildMethod::Scan,
                (true, false) => BuildMethod::Both,
                (false, _) => BuildMethod::Scan,
            }
        }
        m => m,
    };
    let structured = choice.is_some_and(|c| c.method == Method::Hnsw);
    let lists = match request.scan_lists {
        Some(l) => l.min(n),
        None if structured && many => scan::lists::auto_lists(n),
        None => 0,
    };
    let options = IndexOptions {
        metric: request.metric,
        graph: matches!(method, BuildMethod::Hnsw | BuildMethod::Both).then_some(request.graph),
        scan: matches!(method, BuildMethod::Scan | BuildMethod::Both).then_some(ScanOptions {
            dsub,
            seed: request.graph.seed,
            lists,
        }),
        default_method: if method == BuildMethod::Scan { Method::Scan } else { Method::Hnsw },
    };
    Ok(BuildPlan { options, choice })
}

/// What a search asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SearchRequest {
    /// A named recall promise.
    Profile(Profile),
    /// The cheapest calibrated setting reaching this recall@k (1: exact).
    RecallTarget(f64),
    /// A fixed number of candidates, without a promise.
    EfSearch(usize),
}

/// What one search runs with, and what to expect of it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchPlan {
    pub params: SearchParams,
    /// The method that runs (`auto` resolved to the index's default).
    pub method: Method,
    /// `low_latency` / `balanced` / `high_accuracy`, `recall_target` or `ef_search`.
    pub label: &'static str,
    /// The profile that chose the setting, when one did.
    pub profile: Option<Profile>,
    /// The recall asked for (a profile's or a request's target).
    pub target: Option<f64>,
    /// Calibrated mean recall@k of the setting (for a fixed depth between
    /// calibrated ones, that of the deepest below it: a floor); `None`
    /// without a calibration.
    pub expected_recall: Option<f64>,
    /// Candidates examined: the HNSW beam width or the scan's candidates;
    /// `None` for exact search.
    pub depth: Option<usize>,
}

impl Index {
    /// The plan for a search of `k` asking for `request`, from the index's
    /// calibration. Without one, a target of 1 is still exact and any other
    /// gets the index's default setting, with no expectation.
    pub fn plan(&self, k: usize, request: SearchRequest) -> SearchPlan {
        let calibration = self.calibration();
        let (params, label, profile, target, expected_recall) = match request {
            SearchRequest::EfSearch(ef) => {
                let params = self.fixed_depth(ef, k);
                (params, "ef_search", None, None, calibration.and_then(|c| c.expected(k, &params)))
            }
            SearchRequest::RecallTarget(target) => {
                let (params, expected) = self.for_target(k, target);
                (params, "recall_target", None, Some(target), expected)
            }
            SearchRequest::Profile(p) => {
                let (params, expected) = self.for_target(k, p.target());
                (params, p.as_str(), Some(p), Some(p.target()), expected)
            }
        };
        let method = self.method(&params);
        SearchPlan { params, method, label, profile, target, expected_recall, depth: self.depth(method, &params, k) }
    }

    /// The setting for a fixed depth: the beam width on a graph index, else
    /// the scan's candidates spread over `k` (`ceil(ef / k)` per neighbour).
    fn fixed_depth(&self, ef: usize, k: usize) -> SearchParams {
        if self.info().has_graph { SearchParams::hnsw(ef) } else { SearchParams::scan(ef.div_ceil(k.max(1)).max(1)) }
    }

    fn for_target(&self, k: usize, target: f64) -> (SearchParams, Option<f64>) {
        match self.calibration() {
            Some(c) => {
                let choice = c.for_target(k, target);
                (choice.params, choice.expected_recall)
            }
            None if target >= 1.0 => (SearchParams::exact(), Some(1.0)),
            None => (SearchParams::default(), None),
        }
    }

    /// Candidates a search of `k` by `method` with `params` examines.
    fn depth(&self, method: Method, params: &SearchParams, k: usize) -> Option<usize> {
        match method {
            Method::Hnsw => Some(params.ef_search.max(k)),
            Method::Scan => Some(crate::index::scan_candidates(params, k)),
            Method::Exact | Method::Auto => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset;

    #[test]
    fn small_data_gets_a_graph_and_codes() {
        let data = dataset::sphere(500, 8, 1);
        let plan = plan_build(&data, &BuildRequest::default()).unwrap();
        assert!(plan.options.graph.is_some() && plan.options.scan.is_some());
        assert_eq!((plan.options.default_method, plan.lists()), (Method::Hnsw, 0));
        assert_eq!(plan.options.scan.unwrap().dsub, 4);
    }

    #[test]
    fn explicit_choices_are_kept_and_dsub_follows_the_space() {
        let data = dataset::sphere(100, 384, 1);
        let request = BuildRequest { method: BuildMethod::Scan, scan_lists: Some(8), ..Default::default() };
        let plan = plan_build(&data, &request).unwrap();
        assert_eq!(plan.choice, None);
        assert_eq!(plan.options.scan, Some(ScanOptions { dsub: 6, seed: request.graph.seed, lists: 8 }));
        // Wide vectors: at most 256 sub-quantisers.
        let wide = dataset::sphere(10, 2048, 1);
        let plan = plan_build(&wide, &BuildRequest { method: BuildMethod::Scan, ..Default::default() }).unwrap();
        assert_eq!(plan.options.scan.unwrap().dsub, 8);
    }
}
