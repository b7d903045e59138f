//! Picks the search method for a dataset before the full build: a graph
//! (HNSW) pays off on data with structure and fails on data without it (the
//! demo's Gaussian sphere, where recall@10 at ef 64 is 0.2 at 1M). Building a
//! graph over a million points takes minutes, so the test runs on a sample:
//! an HNSW over up to [`SAMPLE`] points, searched at ef 64 with held-out
//! points as queries, against exact search on the sample. Recall at least
//! [`GRAPH_RECALL`] means the data has the neighbourhood structure graphs
//! exploit; below it the quantised scan, whose cost does not depend on it, wins.

use crate::hnsw::{self, BuildOptions};
use crate::params::Method;
use crate::error::Error;
use crate::metric::Metric;
use crate::vectors::Matrix;
use crate::visited::VisitedList;
use crate::{distance, exact};
use rand::SeedableRng;
use rand::seq::index::sample;

/// Points in the sample graph.
pub const SAMPLE: usize = 20_000;
/// Held-out queries.
pub const QUERIES: usize = 200;
/// Sample-graph recall@10 at ef 64 from which the graph is chosen.
pub const GRAPH_RECALL: f64 = 0.9;

/// The decision and the measurement behind it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Choice {
    pub method: Method,
    /// Recall@10 of the sample graph at ef 64 (1.0 when the data is too small to test).
    pub sample_recall: f64,
    pub sample_points: usize,
}

/// Measures the sample graph and decides, on the metric's space: the
/// sampled user rows (`vectors`) are prepared for `metric` as the build
/// prepares them, the sample only, not the whole input. Data smaller than the
/// sample plus the queries gets a graph (a graph on a few thousand points is
/// cheap and, searched wide, near exact).
pub fn choose(vectors: &Matrix, metric: Metric, seed: u64) -> crate::Result<Choice> {
    let n = vectors.len();
    if n < SAMPLE + QUERIES {
        return Ok(Choice { method: Method::Hnsw, sample_recall: 1.0, sample_points: n });
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let picked = sample(&mut rng, n, SAMPLE + QUERIES).into_vec();
    let rows: Vec<f32> = picked.iter().flat_map(|&i| vectors.row(i).iter().copied()).collect();
    let sampled = Matrix::new(vectors.dim(), rows)?;
    // A refused row is named by its place in `vectors`, not in the sample.
    let space = metric.prepare_rows(&sampled).map_err(|e| match e {
        Error::NonFinite { index } => Error::NonFinite { index: picked[index] },
        Error::ZeroVector { index } => Error::ZeroVector { index: picked[index] },
        Error::TooLarge { index } => Error::TooLarge { index: picked[index] },
        Error::TooSmall { index } => Error::TooSmall { index: picked[index] },
        e => e,
    })?;
    let dim = space.dim();
    let (base, queries) = space.as_slice().split_at(SAMPLE * dim);
    let opts = BuildOptions { m: 16, ef_construction: 100, threads: None, seed };
    let graph = hnsw::builder::build(&base, dim, &opts, &|_| {})?;
    let view = graph.view();
    let truth = exact::search_many(&base, dim, &queries, 10);
    let mut visited = VisitedList::new(SAMPLE);
    let l2 = distance::kernels().l2_squared;
    let mut total = 0.0;
    for (q, t) in queries.chunks_exact(dim).zip(&truth) {
        let found: Vec<u32> =
            hnsw::search(&view, 10, 64, &mut visited, |p| l2(&base[p as usize * dim..(p as usize + 1) * dim], q), |_| {})
                .iter()
                .map(|s| s.offset)
                .collect();
        let t: Vec<u32> = t.iter().map(|s| s.offset).collect();
        total += exact::recall_at(&found, &t, 10);
    }
    let recall = total / QUERIES as f64;
    let method = if recall >= GRAPH_RECALL { Method::Hnsw } else { Method::Scan };
    Ok(Choice { method, sample_recall: recall, sample_points: SAMPLE })
}
