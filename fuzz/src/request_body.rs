//! Arbitrary bytes as the JSON body of `POST /search` and
//! `POST /search/batch`, through the real router (`vectorwise_server::app`:
//! body limit, extractor, validation, profile resolution, the search
//! itself): every answer must be a 2xx or a 4xx, never a 5xx or a panic.
//!
//! Two small indexes: `l2` (4-d, HNSW + scan codes, calibrated, so that
//! profiles and recall targets resolve through a table) and `cosine` (3-d, a
//! partitioned scan only, uncalibrated: zero queries are refused there).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;
use vectorwise_index::calibrate::CalibrateOptions;
use vectorwise_index::scan::ScanOptions;
use vectorwise_index::{Index, IndexOptions, Method, Metric, dataset, hnsw};
use vectorwise_server::monitor::MonitorConfig;
use vectorwise_server::{AppState, ServerConfig, app};

/// The routers to post to, and a runtime to drive them.
pub struct Fixture {
    runtime: tokio::runtime::Runtime,
    apps: Vec<(&'static str, axum::Router)>,
}

impl Fixture {
    /// Builds the two indexes in `dir` (which must outlive the fixture's
    /// use: the indexes are memory-mapped) and serves each with the default
    /// configuration, less the recall monitor: its background exact runs
    /// would make a failure depend on timing, and it only sees queries the
    /// validators accepted.
    pub fn new(dir: &Path) -> Fixture {
        let graph = hnsw::BuildOptions { m: 8, ef_construction: 32, threads: Some(1), seed: 1 };
        let l2 = dir.join("l2.vwi");
        let opts = IndexOptions { graph: Some(graph), ..IndexOptions::default() };
        let calibration = CalibrateOptions { sample: 50, ..CalibrateOptions::default() };
        vectorwise_index::build_calibrated(&dataset::sphere(200, 4, 1), &l2, &opts, &calibration, &|_| {}).unwrap();
        let cosine = dir.join("cosine.vwi");
        let opts = IndexOptions {
            metric: Metric::Cosine,
            graph: None,
            scan: Some(ScanOptions { lists: 4, ..ScanOptions::default() }),
            default_method: Method::Scan,
        };
        vectorwise_index::build(&dataset::clustered(120, 3, 4, 2, 3), &cosine, &opts, &|_| {}).unwrap();
        let monitor = MonitorConfig { sample_rate: 0.0, ..MonitorConfig::default() };
        let config = ServerConfig { monitor, ..ServerConfig::default() };
        let apps = [("l2", &l2), ("cosine", &cosine)]
            .into_iter()
            .map(|(name, path)| (name, app(AppState::with_index(config.clone(), Arc::new(Index::open(path).unwrap())))))
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        Fixture { runtime, apps }
    }

    /// Posts `data` to both routes of both indexes; panics on a 5xx.
    /// Returns each answer's (index, route, status).
    pub fn check(&self, data: &[u8]) -> Vec<(&'static str, &'static str, StatusCode)> {
        self.runtime.block_on(async {
            let mut answers = Vec::new();
            for (name, router) in &self.apps {
                for uri in ["/search", "/search/batch"] {
                    let request = Request::post(uri)
                        .header("content-type", "application/json")
                        .body(Body::from(data.to_vec()))
                        .unwrap();
                    let status = router.clone().oneshot(request).await.unwrap().status();
                    assert!(!status.is_server_error(), "{uri} on the {name} index answered {status}");
                    answers.push((*name, uri, status));
                }
            }
            answers
        })
    }
}
