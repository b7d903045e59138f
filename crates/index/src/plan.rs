//! The build plan: from what a user asked for (`vectorwise build` flags, or
//! later a collection's settings) to the [`IndexOptions`] of one index. The
//! rules live here, not in the callers: which method `auto` picks, how many
//! lists, how many dimensions per sub-quantiser.

use crate::choose::{self, Choice};
use crate::hnsw::BuildOptions;
use crate::metric::Metric;
use crate::scan::{self, ScanOptions};
use crate::{IndexOptions, Matrix, Method, Result};

/// Which search structures to build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BuildMethod {
    /// Test a graph on a sample ([`choose`]): structured data gets the scan
    /// partitioned into lists from [`AUTO_LISTS_MIN_POINTS`] points (it beat
    /// the graph on every structured set measured, and builds in seconds),
    /// a graph + scan codes below that; data without structure the
    /// exhaustive scan.
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
        BuildMethod::Auto => {
            // The sample graph is tested on the space the index will search.
            let space = request.metric.prepare_rows(vectors)?;
            let c = choose::choose(space.as_slice(), space.dim(), request.graph.seed)?;
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
