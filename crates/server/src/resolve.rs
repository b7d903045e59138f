//! From what a request asked for (a profile, a recall target, an `ef_search`
//! or nothing) to the engine's search parameters, with what to expect, using
//! the calibration stored in the index; and the `X-VectorWise-*` headers
//! that tell the client what was used.

use crate::models::SearchOptions;
use crate::state::ServerConfig;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use vectorwise_index::{Index, Method, Profile, SearchParams};

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
    /// All of them, for CORS `Access-Control-Expose-Headers`.
    pub const ALL: [&str; 6] = [PROFILE, METHOD, SETTING, EF_SEARCH, RECALL_TARGET, EXPECTED_RECALL];
}

/// What a search will run with.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Resolved {
    pub params: SearchParams,
    /// `balanced`, ..., `recall_target` or `ef_search`: the monitor's label too.
    pub label: &'static str,
    /// The profile that chose the setting, when one did.
    pub profile: Option<Profile>,
    pub target: Option<f64>,
    pub expected_recall: Option<f64>,
}

/// The setting for a fixed depth: the beam width on a graph index, else
/// the scan's candidates spread over `k` (`ceil(ef / k)` per neighbour).
fn fixed_depth(index: &Index, ef: usize, k: usize) -> SearchParams {
    if index.info().has_graph { SearchParams::hnsw(ef) } else { SearchParams::scan(ef.div_ceil(k.max(1)).max(1)) }
}

/// Resolves a request's options for a search of `k` on `index`.
pub(crate) fn resolve(index: &Index, config: &ServerConfig, k: usize, options: &SearchOptions) -> Resolved {
    let calibration = index.calibration();
    let fixed = |ef: usize, label| {
        let params = fixed_depth(index, ef, k);
        let expected_recall = calibration.and_then(|c| c.expected(k, &params));
        Resolved { params, label, profile: None, target: None, expected_recall }
    };
    let targeted = |target: f64, label| match calibration {
        Some(c) => {
            let choice = c.for_target(k, target);
            Resolved { params: choice.params, label, profile: None, target: Some(target), expected_recall: choice.expected_recall }
        }
        // No table: exactness can still be promised; anything else gets the
        // index's own default setting and no expectation.
        None if target >= 1.0 => {
            Resolved { params: SearchParams::exact(), label, profile: None, target: Some(target), expected_recall: Some(1.0) }
        }
        None => Resolved { params: SearchParams::default(), label, profile: None, target: Some(target), expected_recall: None },
    };
    let profile = |p: Profile| Resolved { profile: Some(p), ..targeted(p.target(), p.as_str()) };
    if let Some(ef) = options.ef_search {
        return fixed(ef, "ef_search");
    }
    if let Some(target) = options.recall_target {
        return targeted(target, "recall_target");
    }
    if let Some(p) = options.profile {
        return profile(p.into());
    }
    match config.ef_search {
        Some(ef) => fixed(ef, "ef_search"),
        None => profile(config.default_profile),
    }
}

impl Resolved {
    /// The method that runs (`auto` resolved to the index's default).
    pub(crate) fn method(&self, index: &Index) -> Method {
        match self.params.method {
            Method::Auto => index.info().default_method,
            m => m,
        }
    }

    /// Candidates examined for a search of `k`: what `ef_search` would have to be.
    pub(crate) fn depth(&self, index: &Index, k: usize) -> Option<usize> {
        match self.method(index) {
            Method::Hnsw => Some(self.params.ef_search.max(k)),
            // The scan examines at least the SQ8 stage's floor (see `Index::search`).
            Method::Scan => Some(self.params.rerank.saturating_mul(k).max(vectorwise_index::scan_keep(k))),
            _ => None,
        }
    }

    /// The `X-VectorWise-*` headers for a search of `k`.
    pub(crate) fn headers(&self, index: &Index, k: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(HeaderName::from_static(name), v);
            }
        };
        let method = self.method(index);
        put(header::PROFILE, self.label.to_owned());
        put(header::METHOD, method.as_str().to_owned());
        let setting = match self.params.method {
            Method::Auto => SearchParams { method, ..self.params }.setting(),
            _ => self.params.setting(),
        };
        put(header::SETTING, setting);
        if let Some(d) = self.depth(index, k) {
            put(header::EF_SEARCH, d.to_string());
        }
        if let Some(t) = self.target {
            put(header::RECALL_TARGET, format!("{t}"));
        }
        if let Some(r) = self.expected_recall {
            put(header::EXPECTED_RECALL, format!("{r:.4}"));
        }
        h
    }
}
