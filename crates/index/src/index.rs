//! [`Index`]: a loaded, searchable index file. The handle the server holds.

use crate::allow::{AllowSet, EXACT_MAX_ALLOWED, FilteredPath, plan_filtered};
use crate::distance::kernels;
use crate::scan::BLOCK;
use crate::exact;
use crate::error::{Error, Result};
use crate::format::{self, MappedFile};
use crate::topk::Scored;
use crate::visited::VisitedPool;
use crate::calibrate::table::Calibration;
use crate::metric::Metric;
use crate::method::{AnyMethod, Exact, Graph, Rows, Scan, SearchMethod, missing};
use crate::{Method, Neighbor, SearchParams};
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

/// What an index is, for `/stats` and the CLI.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexInfo {
    pub index_type: &'static str,
    pub metric: Metric,
    pub format_version: u32,
    pub dim: usize,
    pub count: usize,
    /// Method `auto` searches use (`Hnsw` or `Scan`).
    pub default_method: Method,
    /// Whether the file holds an HNSW graph (the `hnsw_*` fields are 0 when not).
    pub has_graph: bool,
    /// Dimensions per 4-bit sub-quantiser of the scan codes; 0 without them.
    pub scan_dsub: usize,
    /// Lists the scan's points are partitioned into; 0 without a partition.
    pub scan_lists: usize,
    pub hnsw_m: u32,
    pub hnsw_m0: u32,
    pub ef_construction: u32,
    pub max_level: u8,
    pub build_seconds: f64,
    pub file_size_bytes: u64,
    pub load_seconds: f64,
    /// Kernel set in use (`avx2+fma`, `avx512f`, `neon`, `scalar`).
    pub simd: &'static str,
    /// Whether the file carries a recall table.
    pub calibrated: bool,
    /// Whether the ids are the user's (`build --ids`), else row numbers.
    pub user_ids: bool,
}

/// A memory-mapped index: the vectors of one metric's space and the
/// structures that search them.
///
/// Public methods take and return the user's view: queries of [`Index::dim`]
/// values, ids, and the metric's distances. Inside, everything runs on the
/// space the metric maps to (see [`crate::metric`]): prepared queries of
/// `space_dim` values against the stored rows, by squared L2, answering
/// point offsets.
#[derive(Debug)]
pub struct Index {
    file: MappedFile,
    visited: VisitedPool,
    load_seconds: f64,
    /// Id -> offset, built on first use.
    offsets: OnceLock<HashMap<u64, PointOffset>>,
    /// The norm every stored row of an `ip` space has (see `metric`).
    space_norm: f32,
}

/// A point's position in an index (what graph links and scan codes hold); its
/// id is what users see, mapped by the ids section.
pub type PointOffset = u32;

impl Index {
    /// Opens and validates an index file (see [`format`] for the checks).
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, true)
    }

    /// [`Index::open`] without reading the calibration table, so that an
    /// index whose table is damaged can be calibrated again.
    pub fn open_uncalibrated(path: &Path) -> Result<Self> {
        Self::open_with(path, false)
    }

    fn open_with(path: &Path, read_calibration: bool) -> Result<Self> {
        let start = Instant::now();
        let file = format::open_with(path, read_calibration)?;
        let visited = VisitedPool::new(file.header.count as usize);
        let space_norm = Metric::space_norm(&file.vectors()[..file.header.dim as usize]);
        Ok(Index { file, visited, load_seconds: start.elapsed().as_secs_f64(), offsets: OnceLock::new(), space_norm })
    }

    /// The metric the index answers for.
    pub fn metric(&self) -> Metric {
        self.file.header.metric
    }

    /// The dimension of the vectors users give and get.
    pub fn dim(&self) -> usize {
        self.metric().user_dim(self.space_dim())
    }

    /// Width of the stored rows and prepared queries.
    pub(crate) fn space_dim(&self) -> usize {
        self.file.header.dim as usize
    }

    pub fn len(&self) -> usize {
        self.file.header.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Names the file's contents across processes (see
    /// [`MappedFile::identity`]): a cache key part.
    pub fn file_identity(&self) -> u128 {
        self.file.identity()
    }

    /// The product quantiser's centroids of the scan codes, when the file
    /// has them (for [`crate::scan::build_with`]).
    pub fn scan_centroids(&self) -> Option<&[f32]> {
        self.file.scan().map(|s| s.centroids)
    }

    /// The quantised scan codes, when the file has them.
    pub fn scan_view(&self) -> Option<crate::scan::ScanView<'_>> {
        self.file.scan()
    }

    /// The norm of the stored rows of an `ip` space (the query's scale).
    pub(crate) fn space_norm(&self) -> f32 {
        self.space_norm
    }

    /// The stored rows of the metric's space, row-major, in offset order.
    pub(crate) fn space_vectors(&self) -> &[f32] {
        self.file.vectors()
    }

    /// The stored vectors as users see them, row-major, in offset order:
    /// the input rows, or their unit vectors for `cosine`.
    pub fn vectors(&self) -> Cow<'_, [f32]> {
        let stored = self.space_vectors();
        match self.metric() {
            Metric::Ip => Cow::Owned(stored.chunks_exact(self.space_dim()).flat_map(|r| Metric::Ip.user_row(r)).copied().collect()),
            Metric::L2 | Metric::Cosine => Cow::Borrowed(stored),
        }
    }

    /// The id of each offset.
    pub fn ids(&self) -> &[u64] {
        self.file.ids()
    }

    /// The offset of the point with `id`, if the index holds it.
    pub fn offset_of(&self, id: u64) -> Option<PointOffset> {
        let map = self.offsets.get_or_init(|| self.ids().iter().enumerate().map(|(o, &id)| (id, o as PointOffset)).collect());
        map.get(&id).copied()
    }

    /// The vector at `offset`, as users see it.
    pub fn vector_at(&self, offset: PointOffset) -> &[f32] {
        let (o, d) = (offset as usize, self.space_dim());
        self.metric().user_row(&self.space_vectors()[o * d..(o + 1) * d])
    }

    /// The vector of the point with `id`, as users see it.
    pub fn vector_of(&self, id: u64) -> Option<&[f32]> {
        let o = self.offset_of(id)? as usize;
        let d = self.space_dim();
        Some(self.metric().user_row(&self.space_vectors()[o * d..(o + 1) * d]))
    }

    pub fn info(&self) -> IndexInfo {
        let h = &self.file.header;
        IndexInfo {
            index_type: match h.default_method {
                Method::Scan if h.scan_lists > 0 => "IVFQuantizedScan",
                Method::Scan => "QuantizedScan",
                _ => "HNSW",
            },
            metric: h.metric,
            format_version: h.format_version,
            dim: self.dim(),
            count: h.count as usize,
            hnsw_m: h.graph.map_or(0, |p| p.m),
            hnsw_m0: h.graph.map_or(0, |p| p.m0),
            ef_construction: h.graph.map_or(0, |p| p.ef_construction),
            has_graph: h.graph.is_some(),
            scan_dsub: h.scan.map_or(0, |s| s.dsub),
            scan_lists: h.scan_lists as usize,
            default_method: h.default_method,
            max_level: h.max_level,
            build_seconds: h.build_seconds,
            file_size_bytes: self.file.file_size(),
            load_seconds: self.load_seconds,
            simd: kernels().name,
            calibrated: self.file.calibration.is_some(),
            user_ids: h.user_ids,
        }
    }

    fn check_k(k: usize) -> Result<()> {
        if k == 0 {
            return Err(Error::InvalidParameter { name: "k", reason: "must be at least 1".into() });
        }
        Ok(())
    }

    /// `query` in the metric's space (checked, normalised or extended).
    fn prepare<'q>(&self, query: &'q [f32]) -> Result<Cow<'q, [f32]>> {
        self.metric().prepare_query(query, self.dim(), self.space_norm)
    }

    /// Many queries (row-major, [`Index::dim`] wide) in the space, one
    /// buffer; an error names the query at fault.
    fn prepare_rows(&self, queries: &[f32]) -> Result<Vec<f32>> {
        let dim = self.dim();
        if dim == 0 || queries.len() % dim != 0 {
            let reason = format!("length {} is not a multiple of the dimension {dim}", queries.len());
            return Err(Error::InvalidParameter { name: "queries", reason });
        }
        let mut out = Vec::with_capacity(queries.len() / dim * self.space_dim());
        for (i, q) in queries.chunks_exact(dim).enumerate() {
            let prepared = self.prepare(q).map_err(|e| match e {
                Error::NonFinite { .. } => Error::NonFinite { index: i },
                Error::ZeroVector { .. } => Error::ZeroVector { index: i },
                Error::TooLarge { .. } => Error::TooLarge { index: i },
                Error::TooSmall { .. } => Error::TooSmall { index: i },
                e => e,
            })?;
            out.extend_from_slice(&prepared);
        }
        Ok(out)
    }

    /// The method a search with `params` uses: `auto` is the file's default.
    pub fn method(&self, params: &SearchParams) -> Method {
        match params.method {
            Method::Auto => self.file.header.default_method,
            m => m,
        }
    }

    /// Offsets found for the user's `query` as ids with the metric's
    /// distances, ascending.
    fn to_neighbors(&self, query: &[f32], found: Vec<Scored>) -> Vec<Neighbor> {
        self.to_located(query, found).into_iter().map(|(_, n)| n).collect()
    }

    /// [`Index::to_neighbors`], keeping each hit's offset.
    fn to_located(&self, query: &[f32], found: Vec<Scored>) -> Vec<(PointOffset, Neighbor)> {
        let ids = self.file.ids();
        let metric = self.metric();
        let (vectors, d) = (self.space_vectors(), self.space_dim());
        let mut hits: Vec<(PointOffset, Neighbor)> = found
            .into_iter()
            .map(|s| {
                let o = s.offset as usize;
                let distance =
                    if metric.recomputes() { metric.distance(query, &vectors[o * d..(o + 1) * d]) } else { s.distance };
                (s.offset, Neighbor { id: ids[o], distance })
            })
            .collect();
        if metric.recomputes() {
            // The space's order is the metric's; its rounding may swap near-ties.
            hits.sort_by(|(_, a), (_, b)| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
        }
        hits
    }

    /// k-NN by the method `params` names (`auto`: the one the index was built
    /// for): HNSW with beam width `max(ef_search, k)`, the quantised scan
    /// re-ranking `rerank × k` candidates, or exact. Returns `min(k, len)`
    /// neighbours, ascending by the metric's exact distance.
    pub fn search(&self, query: &[f32], k: usize, params: &SearchParams) -> Result<Vec<Neighbor>> {
        Self::check_k(k)?;
        params.validate()?;
        let prepared = self.prepare(query)?;
        Ok(self.to_neighbors(query, self.search_widened(&prepared, k, k, params)?))
    }

    /// The `fetch` nearest to a prepared query by the method `params` name,
    /// searched again more widely when the `k`-th answer (`k` ≤ `fetch`) lies
    /// farther than the calibration queries' `k`-th neighbours
    /// ([`Index::widen_far`]).
    fn search_widened(&self, prepared: &[f32], fetch: usize, k: usize, params: &SearchParams) -> Result<Vec<Scored>> {
        let method = self.method(params);
        let found = self.searcher_for(method, Some(k))?.search(prepared, fetch, params, None);
        self.widen_far(prepared, fetch, k, params, method, found)
    }

    /// A query unlike those the calibration measured gets less than the
    /// table promises: on 20k x 128 clustered points the graph's balanced
    /// setting (ef 12) had recall@10 0.65 for random vectors (0.996 at ef
    /// 64), and the exhaustive scan's 4-bit stage ranks far points poorly
    /// (0.33; 200k x 128 clustered, 4000 candidates: 0.85). When `found`
    /// has less contrast than the calibration queries had
    /// ([`Calibration::is_hard`]), the graph searches again with
    /// [`FAR_EF_FACTOR`] times the beam and the exhaustive scan scores every
    /// point by SQ8. The partitioned scan widens inside its search
    /// (`ScanView::widen`).
    fn widen_far(&self, prepared: &[f32], fetch: usize, k: usize, params: &SearchParams, method: Method, found: Vec<Scored>) -> Result<Vec<Scored>> {
        let scan = self.file.scan();
        let applies = match method {
            Method::Hnsw => true,
            Method::Scan => scan.is_some_and(|v| !v.partial(params.nprobe)),
            _ => false,
        };
        if !applies || !self.calibration().is_some_and(|c| c.is_hard(prepared, k, &found)) {
            return Ok(found);
        }
        crate::count_widened();
        let wider = match (method, scan) {
            (Method::Scan, Some(view)) => view.search_sq8_every(self.space_vectors(), prepared, fetch, exact_keep(fetch)),
            _ => {
                let ef = params.ef_search.max(fetch).saturating_mul(FAR_EF_FACTOR).min(self.len().max(1));
                self.searcher(Method::Hnsw)?.search(prepared, fetch, &SearchParams { ef_search: ef, ..*params }, None)
            }
        };
        Ok(crate::topk::merge(found, wider, fetch))
    }

    /// [`Index::search`] as if the `deleted_count` points `deleted` names
    /// were not stored (a segment's deleted set). The method runs for more
    /// than `k` (`k` plus twice the deleted share of `k`, plus 10) and the
    /// deleted are dropped; when fewer than `min(k, live)` remain (deletions
    /// clustered near the query), the live points are searched exactly. So
    /// the answer is always `min(k, live)` long and never holds a deleted
    /// point. Each hit comes with its offset.
    pub fn search_live(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        deleted: &dyn Fn(PointOffset) -> bool,
        deleted_count: usize,
    ) -> Result<Vec<(PointOffset, Neighbor)>> {
        Self::check_k(k)?;
        params.validate()?;
        let prepared = self.prepare(query)?;
        if deleted_count == 0 {
            return Ok(self.to_located(query, self.search_widened(&prepared, k, k, params)?));
        }
        let live = self.len().saturating_sub(deleted_count);
        let want = k.min(live);
        if want == 0 {
            return Ok(Vec::new());
        }
        let extra = (k * deleted_count).div_ceil(live.max(1)).saturating_mul(2).saturating_add(10);
        let fetch = k.saturating_add(extra).min(self.len());
        let mut found = self.search_widened(&prepared, fetch, k, params)?;
        found.retain(|s| !deleted(s.offset));
        if found.len() < want {
            let (rows, d) = (self.space_vectors(), self.space_dim());
            found = exact::search_kept(rows, d, &prepared, k, &|o| !deleted(o));
        }
        found.truncate(k);
        Ok(self.to_located(query, found))
    }

    /// The `k` points of `allow` nearest to `query` (always `min(k,
    /// allowed)` of them), each with its offset, and the path that found
    /// them: [`crate::allow::plan_filtered`] chooses from the allowed count
    /// and what each path would read; on a partitioned scan, SQ8 up to
    /// [`PARTITION_SQ8_SHARE`]. `params` are the unfiltered plan's (its
    /// candidates, re-rank depth and lists); a partitioned scan reads the
    /// nearest lists until they hold [`FILTERED_LIST_FACTOR`] times as many
    /// allowed points as the unfiltered search would read points.
    pub fn search_allowed(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        allow: &AllowSet,
    ) -> Result<(Vec<(PointOffset, Neighbor)>, FilteredPath)> {
        Self::check_k(k)?;
        params.validate()?;
        if allow.len() != self.len() {
            let reason = format!("covers {} points, the index holds {}", allow.len(), self.len());
            return Err(Error::InvalidParameter { name: "allow", reason });
        }
        let prepared = self.prepare(query)?;
        let allowed = allow.count();
        let want = k.min(allowed);
        if want == 0 {
            return Ok((Vec::new(), FilteredPath::Exact));
        }
        let (rows, d) = (self.space_vectors(), self.space_dim());
        let method = self.method(params);
        let scan = self.file.scan();
        let (candidates, rerank) = scan_depths(params, k);
        // What the masked scan would read: every point, or the nearest lists
        // holding FILTERED_LIST_FACTOR times as many allowed points as the
        // unfiltered plan reads points.
        // A partition's lists are cut across by a filter correlated with the
        // data: the allowed points may be far, where the 4-bit sums rank
        // poorly; their SQ8 codes rank them well. No lists to choose then.
        let partitioned = method != Method::Exact && scan.is_some_and(|v| v.partial(params.nprobe));
        let sq8_first = partitioned && allowed * PARTITION_SQ8_SHARE <= self.len();
        let read = match scan {
            Some(view) if method != Method::Exact && allowed > EXACT_MAX_ALLOWED && !sq8_first => {
                let lists = view.lists.map_or(1, |l| l.len().max(1));
                let target = (FILTERED_LIST_FACTOR * params.nprobe.saturating_mul(self.len()) / lists).max(candidates);
                Some(view.allowed_ranges(&prepared, allow, params.nprobe, target))
            }
            _ => None,
        };
        let (scan_points, local) = read.as_ref().map_or((0, true), |r| (r.points, r.local));
        let code_bytes = scan.filter(|_| method != Method::Exact).map(|v| v.shape.block_bytes() / BLOCK);
        // What the SQ8 paths keep for the exact re-rank.
        let keep = rerank.max(exact_keep(k));
        let path = if method == Method::Exact || (sq8_first && allowed <= SQ8_MIN_PER_KEPT * keep) {
            FilteredPath::Exact
        } else if sq8_first {
            FilteredPath::Sq8
        } else {
            plan_filtered(allowed, self.len(), d, code_bytes, scan_points, method == Method::Hnsw)
        };
        let candidates = if local { candidates } else { candidates.max(allowed / NONLOCAL_DEPTH_DIVISOR) };
        let mut found = match (path, scan) {
            (FilteredPath::Sq8, Some(view)) => view.search_sq8_allowed(rows, &prepared, k, keep, allow),
            (FilteredPath::Scan, Some(view)) => {
                let read = read.as_ref().expect("the scan path has its lists");
                let mut found = view.search_allowed(rows, &prepared, k, candidates, rerank, &read.ranges, allow);
                // The lists nearer than the k-th answer may hold nearer
                // allowed points than the lists read (AllowedLists::nearer_than).
                let kth = if found.len() >= k { found[k - 1].distance } else { f32::INFINITY };
                let (more, _) = read.nearer_than(kth);
                // A query whose first answers are already far (a filter
                // correlated with the data, the query on its refused side)
                // would read many more lists and most often still be far:
                // it skips them and is widened below at once, to the SQ8
                // codes of every allowed point (200k points, a correlated
                // 50 % filter: p95 2.3–3.1 → 1.8–2.2 ms, the same recall).
                let hard_now = found.len() >= want && self.calibration().is_some_and(|c| c.is_hard(&prepared, k, &found));
                if !hard_now && !more.is_empty() {
                    found.extend(view.search_allowed(rows, &prepared, k, candidates, rerank, &more, allow));
                    found.sort_unstable();
                    found.truncate(k);
                }
                found
            }
            (FilteredPath::Graph, _) => {
                let mut walked = self.walk_allowed(&prepared, k, params, allow, allowed, 1)?;
                walked.truncate(k);
                walked
            }
            _ => Vec::new(),
        };
        // A query unlike the calibration's is widened here too (as
        // `widen_far` does unfiltered): the scan paths score every allowed
        // point by SQ8, the graph walks with FAR_EF_FACTOR times the beam.
        // The SQ8 and exact paths read every allowed point already.
        if matches!(path, FilteredPath::Scan | FilteredPath::Graph)
            && found.len() >= want
            && self.calibration().is_some_and(|c| c.is_hard(&prepared, k, &found))
        {
            crate::count_widened();
            let wider = match scan {
                Some(view) => view.search_sq8_allowed(rows, &prepared, k, keep, allow),
                None => self.walk_allowed(&prepared, k, params, allow, allowed, FAR_EF_FACTOR)?,
            };
            found = crate::topk::merge(found, wider, k);
        }
        let path = if path != FilteredPath::Exact && found.len() >= want {
            path
        } else {
            // Exact by choice, or a path that came back short.
            found = exact::search_among(rows, d, &prepared, k, allow.iter());
            FilteredPath::Exact
        };
        found.truncate(k);
        Ok((self.to_located(query, found), path))
    }

    /// The graph walked for `allow`'s points (`allowed` of them): a beam of
    /// `params.ef_search` (at least `k`) over the allowed share, times
    /// `factor`, capped at the index; the walk's answers outside `allow`
    /// dropped.
    fn walk_allowed(&self, prepared: &[f32], k: usize, params: &SearchParams, allow: &AllowSet, allowed: usize, factor: usize) -> Result<Vec<Scored>> {
        let share = allowed as f64 / self.len().max(1) as f64;
        let ef = ((params.ef_search.max(k) as f64 / share).ceil() as usize).saturating_mul(factor).min(self.len());
        let mut walked = self.searcher(Method::Hnsw)?.search(prepared, ef, &SearchParams { ef_search: ef, ..*params }, None);
        walked.retain(|s| allow.contains(s.offset));
        Ok(walked)
    }

    /// The recall table measured for this index, when it has one (format 3).
    pub fn calibration(&self) -> Option<&Calibration> {
        self.file.calibration.as_ref()
    }

    /// Searches with `calibration` in place of the file's table from now on
    /// (one learnt from live queries; the file is not changed). Refused, and
    /// nothing changed, when the table does not fit the index (its methods,
    /// its dimension).
    pub fn set_calibration(&mut self, calibration: Calibration) -> Result<()> {
        let h = &self.file.header;
        calibration
            .check(h.graph.is_some(), h.scan.is_some(), h.dim as usize)
            .map_err(|reason| Error::InvalidParameter { name: "calibration", reason })?;
        self.file.calibration = Some(calibration);
        Ok(())
    }

    /// The validated file behind the index.
    pub(crate) fn file(&self) -> &MappedFile {
        &self.file
    }

    /// The method's search of a prepared query (in the space), answering
    /// point offsets and the space's distances, without [`Index::widen_far`]
    /// (calibration times the settings as they were measured).
    pub(crate) fn search_offsets(&self, query: &[f32], k: usize, params: &SearchParams) -> Result<Vec<Scored>> {
        self.search_offsets_excluding(query, k, params, None)
    }

    /// [`Index::search_offsets`] as if point `exclude` were not in the index
    /// (leave-one-out calibration): the graph walk treats it as infinitely
    /// far, so it neither answers nor lends its links to the walk, and exact
    /// search skips it. The quantised scan does not take it: calibration
    /// replays the scan instead (see `calibrate`).
    pub(crate) fn search_offsets_excluding(
        &self,
        query: &[f32],
        k: usize,
        params: &SearchParams,
        exclude: Option<u32>,
    ) -> Result<Vec<Scored>> {
        Self::check_k(k)?;
        debug_assert_eq!(query.len(), self.space_dim(), "queries are prepared");
        params.validate()?;
        Ok(self.searcher(self.method(params))?.search(query, k, params, exclude))
    }

    /// The search method `method` over this index's structures.
    pub(crate) fn searcher(&self, method: Method) -> Result<AnyMethod<'_>> {
        self.searcher_for(method, None)
    }

    /// [`Index::searcher`] for a search that fetches more than the user's
    /// `rule_k` (the rank a partition's widening reads).
    fn searcher_for(&self, method: Method, rule_k: Option<usize>) -> Result<AnyMethod<'_>> {
        let rows = Rows { vectors: self.space_vectors(), dim: self.space_dim() };
        Ok(match method {
            Method::Exact => AnyMethod::Exact(Exact { rows }),
            Method::Scan => AnyMethod::Scan(Scan {
                scan: self.file.scan().ok_or_else(|| missing(method))?,
                rows,
                calibration: self.calibration(),
                rule_k,
            }),
            Method::Hnsw | Method::Auto => AnyMethod::Graph(Graph {
                graph: self.file.graph().ok_or_else(|| missing(method))?,
                rows,
                codes: self.file.scan(),
                visited: &self.visited,
            }),
        })
    }

    /// [`Index::search`] for many queries (row-major, [`Index::dim`] wide),
    /// spread over the rayon pool; results in query order. Fails on the first
    /// bad query (callers that want per-query errors validate before calling).
    pub fn search_batch(&self, queries: &[f32], k: usize, params: &SearchParams) -> Result<Vec<Vec<Neighbor>>> {
        Ok(self.search_batch_flagged(queries, k, params)?.into_iter().map(|(hits, _)| hits).collect())
    }

    /// [`Index::search_batch`], each answer with whether its query was
    /// unlike the calibration's and searched more widely (what
    /// [`crate::widened_in`] says of one search).
    pub fn search_batch_flagged(&self, queries: &[f32], k: usize, params: &SearchParams) -> Result<Vec<(Vec<Neighbor>, bool)>> {
        Self::check_k(k)?;
        params.validate()?;
        let prepared = self.prepare_rows(queries)?;
        let method = self.method(params);
        let found = self.searcher(method)?.search_many_flagged(&prepared, self.space_dim(), k, params);
        let found: Vec<(Vec<Scored>, bool)> = prepared
            .par_chunks_exact(self.space_dim())
            .zip(found)
            .map(|(q, (f, inside))| {
                let (wider, far) = crate::widened_in(|| self.widen_far(q, k, k, params, method, f));
                wider.map(|w| (w, inside || far))
            })
            .collect::<Result<_>>()?;
        Ok(queries.chunks_exact(self.dim()).zip(found).map(|(q, (f, w))| (self.to_neighbors(q, f), w)).collect())
    }

    /// Exact k-NN of many queries (row-major), grouped so each pass over the
    /// vectors serves several queries, on the rayon pool; results in query order.
    pub fn exact_search_batch(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Neighbor>>> {
        Self::check_k(k)?;
        let prepared = self.prepare_rows(queries)?;
        let found = self.searcher(Method::Exact)?.search_many(&prepared, self.space_dim(), k, &SearchParams::exact());
        Ok(queries.chunks_exact(self.dim()).zip(found).map(|(q, f)| self.to_neighbors(q, f)).collect())
    }

    /// Exact k-NN by scanning every vector.
    pub fn exact_search(&self, query: &[f32], k: usize) -> Result<Vec<Neighbor>> {
        Self::check_k(k)?;
        let prepared = self.prepare(query)?;
        Ok(self.to_neighbors(query, self.searcher(Method::Exact)?.search(&prepared, k, &SearchParams::exact(), None)))
    }
}

/// A search whose answer lies farther than the calibration queries' (see
/// `Index::widen_far`) walks the graph again with this many times the beam:
/// on 20k x 128 clustered points, random query vectors had recall@10 0.66
/// at the balanced ef 12, 0.95 at 64 and 1.00 at 256
/// (`examples/ood_recall.rs`).
pub const FAR_EF_FACTOR: usize = 8;

/// A filtered partitioned scan reads lists until they hold this many times
/// as many allowed points as the unfiltered plan reads points: a 5 % range
/// filter on clustered-200k (balanced, one list unfiltered) had recall@10
/// 0.92 at 1×, 0.95 at 4×, 0.97 at 8× (bench/filter).
pub const FILTERED_LIST_FACTOR: usize = 4;

/// Any filter on a partitioned scan takes the SQ8 path while at most
/// 1/this of the points are allowed (however few: SQ8 of 2048 points reads a
/// quarter of their rows' bytes): on clustered-200k a 10 % filter at one end
/// of the data had recall@10 0.78 by the masked scan of the lists and 0.99
/// by SQ8, at the same latency (0.8 ms, HTTP); a query near that end passes
/// the locality test (`ScanView::allowed_ranges`) and its lists still miss.
pub const PARTITION_SQ8_SHARE: usize = 4;

/// The SQ8 path keeps `exact_keep(k)` (or the plan's re-rank depth) of the
/// allowed points for the exact re-rank: with at most this many times as
/// many allowed, the allowed rows are read exactly instead (its SQ8 pass
/// would save almost nothing and cost its setup: 200k points, a 0.01 %
/// filter of ~20 allowed points, see bench/results/HISTORY.md).
pub const SQ8_MIN_PER_KEPT: usize = 2;

/// Past that, a filter correlated away from the query (not local) starts
/// the masked scan's stage 1 at 1/this of the allowed points.
pub const NONLOCAL_DEPTH_DIVISOR: usize = 8;

/// Scan stage sizes for a search of `k`: fast-scan candidates (`rerank × k`,
/// at least [`scan_keep`]) and how many of them the SQ8 stage passes to the
/// exact re-rank ([`exact_keep`]).
pub(crate) fn scan_depths(params: &SearchParams, k: usize) -> (usize, usize) {
    (scan_candidates(params, k), exact_keep(k))
}

/// Candidates the scan's fast stage passes on for a search of `k`:
/// `rerank × k`, at least [`scan_keep`].
pub(crate) fn scan_candidates(params: &SearchParams, k: usize) -> usize {
    params.rerank.saturating_mul(k).max(scan_keep(k))
}

/// The fewest candidates the scan's fast stage passes to the SQ8 stage for
/// a search of `k`, whatever `rerank` says.
pub fn scan_keep(k: usize) -> usize {
    (5 * k).max(50)
}

/// How many of the SQ8 stage's best a search of `k` re-ranks exactly: twice
/// `k`, at least 20. The SQ8 distances are close enough that the exact top
/// 10 lie in their top 20: against a floor of 50, recall@10 was the same to
/// four decimals on sphere-1m, clustered-1m and real-manpages (k 10 and 100,
/// six settings), and a one-list probe of clustered-1m took 58 µs instead of
/// 73 (p50): the exact stage reads whole f32 rows, scattered in memory.
pub fn exact_keep(k: usize) -> usize {
    (2 * k).max(20)
}
