//! From a request's options (a profile, a recall target, an `ef_search` or
//! nothing: the server's default) to the engine's search plan, and the
//! `X-VectorWise-*` headers that tell the client what was used. The plan
//! itself is the engine's ([`Index::plan`]).

use crate::models::SearchOptions;
use crate::state::ServerConfig;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use vectorwise_index::plan::{SearchPlan, SearchRequest};
use vectorwise_index::{Index, Method, SearchParams};

/// Response headers naming what a search used.
pub(crate) mod header {
    /// `low_latency` / `balanced` / `high_accuracy`, `recall_target`, or `ef_search`.
    pub const PROFILE: &str = "x-vectorwise-profile";
    /// `hnsw`, `scan` or `exact`.
    pub const METHOD: &str = "x-vectorwise-method";
    /// The engine setting, e.g. `ef=64`, `rerank=192`, `exact`.
    pub const SETTING: &str = "x-vectorwise-setting";
    /// Candidates examined: the HNSW beam width or the scan's `rerank × k`.
    pub const EF_SEARCH: &str = "x-vectorwise-ef-search";
    /// The recall asked for (profile or `recall_target`).
    pub const RECALL_TARGET: &str = "x-vectorwise-recall-target";
    /// Calibrated mean recall@k of the setting (for an `ef_search` between
    /// calibrated depths, that of the deepest one below it: a floor); absent
    /// when the index has no calibration.
    pub const EXPECTED_RECALL: &str = "x-vectorwise-expected-recall";
    /// Segments a collection search merged (collections only).
    pub const SEGMENTS: &str = "x-vectorwise-segments";
    /// A filtered search: the share of the live points the filter let through.
    pub const FILTER_SELECTIVITY: &str = "x-vectorwise-filter-selectivity";
    /// A filtered search: how many live points the filter let through.
    pub const FILTER_ALLOWED: &str = "x-vectorwise-filter-allowed";
    /// A filtered search: the paths the sealed segments took (`exact`, `sq8`, `scan`, `graph`).
    pub const FILTER_PATHS: &str = "x-vectorwise-filter-paths";
    /// A filtered search: keys no payload index answered (their payloads were read).
    pub const FILTER_UNINDEXED: &str = "x-vectorwise-filter-unindexed";
    /// `true` when the query was unlike the calibration's and was searched
    /// more widely to keep its promise (single searches; absent otherwise).
    pub const WIDENED: &str = "x-vectorwise-widened";
    /// A batch on a collection: its queries that were widened, as indices
    /// from 0 and ranges (`0-3,7`); absent when none was, or past 2 KiB.
    pub const WIDENED_QUERIES: &str = "x-vectorwise-widened-queries";
    /// A batch on a collection: how many of its queries were widened.
    pub const WIDENED_COUNT: &str = "x-vectorwise-widened-count";
    /// `hit` or `miss`: whether the answer came from the hot-query cache.
    pub const CACHE: &str = crate::cache::HEADER;
    /// On a hit, `memory` or `redis`: which cache tier answered.
    pub const CACHE_TIER: &str = crate::cache::TIER_HEADER;
    /// All of them, for CORS `Access-Control-Expose-Headers`.
    pub const ALL: [&str; 16] = [
        PROFILE,
        METHOD,
        SETTING,
        EF_SEARCH,
        RECALL_TARGET,
        EXPECTED_RECALL,
        SEGMENTS,
        FILTER_SELECTIVITY,
        FILTER_ALLOWED,
        FILTER_PATHS,
        FILTER_UNINDEXED,
        WIDENED,
        WIDENED_QUERIES,
        WIDENED_COUNT,
        CACHE,
        CACHE_TIER,
    ];
}

/// The plan for a search of `k` on `index` with a request's `options`; a
/// request that names none gets the server's default (a fixed `ef_search`
/// when the operator set one, else the default profile).
pub(crate) fn resolve(index: &Index, config: &ServerConfig, k: usize, options: &SearchOptions) -> SearchPlan {
    index.plan(k, request(config, options))
}

/// What a request's `options` ask the engine's planner for; none: the
/// server's default (a fixed `ef_search` when the operator set one, else
/// the default profile). Collections plan each segment from it.
pub(crate) fn request(config: &ServerConfig, options: &SearchOptions) -> SearchRequest {
    match (options.ef_search, options.recall_target, options.profile) {
        (Some(ef), _, _) => SearchRequest::EfSearch(ef),
        (None, Some(target), _) => SearchRequest::RecallTarget(target),
        (None, None, Some(p)) => SearchRequest::Profile(p.into()),
        (None, None, None) => match config.ef_search {
            Some(ef) => SearchRequest::EfSearch(ef),
            None => SearchRequest::Profile(config.default_profile),
        },
    }
}

/// The `X-VectorWise-*` headers of a plan.
pub(crate) fn headers(plan: &SearchPlan) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    put(header::PROFILE, plan.label.to_owned());
    put(header::METHOD, plan.method.as_str().to_owned());
    let setting = match plan.params.method {
        Method::Auto => SearchParams { method: plan.method, ..plan.params }.setting(),
        _ => plan.params.setting(),
    };
    put(header::SETTING, setting);
    if let Some(d) = plan.depth {
        put(header::EF_SEARCH, d.to_string());
    }
    if let Some(t) = plan.target {
        put(header::RECALL_TARGET, format!("{t}"));
    }
    if let Some(r) = plan.expected_recall {
        put(header::EXPECTED_RECALL, format!("{r:.4}"));
    }
    h
}
