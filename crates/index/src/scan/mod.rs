//! The quantised scan: every point is read, but as a few bytes of code, not
//! as its full vector. Three stages per query:
//!
//! 1. **Fast scan** of 4-bit product-quantisation codes (`dsub` dimensions per
//!    sub-quantiser, 16 centroids each, so `dim / (2·dsub)` bytes a point: 16
//!    bytes at 128-d with the default `dsub = 4`). The query's distance table
//!    is quantised to u8 and looked up 64 codes per shuffle ([`kernels`]). The
//!    codes of a million points (16 MB) stay in the last-level cache from one
//!    query to the next, which is what makes this stage fast. Keeps the
//!    `candidates` best.
//! 2. **SQ8 re-rank** of those candidates with 8-bit scalar-quantised vectors
//!    (one byte per dimension, per-dimension affine scale): close to exact.
//!    Keeps the `rerank` best.
//! 3. **Exact re-rank** with the stored f32 vectors; returns the `k` best with
//!    exact squared L2 distances.
//!
//! Unstructured data (the demo's Gaussian sphere) defeats graphs but not this:
//! the work per query is a sequential pass over a cache-resident array.

pub mod assign;
pub mod kernels;
pub mod kmeans;
pub mod lists;

use crate::allow::AllowSet;
use crate::cancel::Cancel;
use crate::distance::prefetch_lines;
use crate::error::{Error, Result};
use crate::topk::Scored;
use kernels::scan_kernels;
use lists::{Lists, ListsView, Picked};
use std::ops::Range;
use rand::SeedableRng;
use rand::seq::index::sample;
use rayon::prelude::*;

/// How many SQ8 steps from a dimension's range a query may lie before that
/// dimension is left out of its SQ8 distances ([`ScanView::sq8_distance`]):
/// squares stay far from f32's limit, and any dimension this far out has a
/// range so narrow that it adds about the same to every point.
pub const SQ8_QUERY_LIMIT: f32 = 1e9;

/// Whether a search's answer (ascending) to a query (prepared) has less
/// contrast than the index's calibration queries had.
pub type Hard<'a> = dyn Fn(&[f32], &[Scored]) -> bool + Sync + 'a;

/// What a partial search's second round ([`ScanView::widen`]) judges its
/// answer by.
#[derive(Clone, Copy)]
pub struct Widening<'a> {
    /// The rank whose answer the rules read: the user's `k` (a search over
    /// a segment with deletions fetches more).
    pub k: usize,
    pub hard: &'a Hard<'a>,
}

impl std::fmt::Debug for Widening<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Widening").field("k", &self.k).finish_non_exhaustive()
    }
}

/// A partial search whose answer is hard ([`ScanView::widen`]) and has no
/// unread list nearer than it scores by SQ8 the points of this many times
/// as many lists: 10k unit vectors of 100 clusters in 100 lists, random unit
/// queries: recall@10 0.93 with 4 lists, 0.98 with 8, 0.998 with 16 (one
/// list: 0.66).
pub const HARD_LISTS_FACTOR: usize = 16;

/// A partial search's second round ([`ScanView::widen`]) scores the points
/// of its lists by SQ8 once they are more than 1/this of the points.
pub const WIDEN_SQ8_SHARE: usize = 8;

/// Points from which [`ScanView::search`] splits one query over threads.
pub const SPLIT_MIN_POINTS: usize = 200_000;
/// Most threads one query is split over.
pub const MAX_SPLIT: usize = 4;
/// Queries per pass over the codes in [`ScanView::search_many`].
pub const BATCH_GROUP: usize = 8;
/// Points per fast-scan block.
pub const BLOCK: usize = 32;
/// Centroids per sub-quantiser (4-bit codes).
pub const CENTROIDS: usize = 16;
/// Most dimensions per sub-quantiser a scan takes.
pub const MAX_DSUB: usize = 64;
/// Stage 1 starts from a sampled threshold ([`ScanView::estimate_threshold`])
/// when it keeps at least `ESTIMATE_MIN_KEEP` of at least
/// `ESTIMATE_MIN_POINTS` points, and reads `ESTIMATE_MIN_RATIO` times as many
/// as it keeps. A smaller `keep` costs little without it, unless dense (below).
const ESTIMATE_MIN_KEEP: usize = 512;
/// ... and from `ESTIMATE_MIN_KEEP_DENSE` when it keeps at least one point in
/// `ESTIMATE_DENSE_RATIO`: real-manpages whole scans (dsub 6, keep 240 of
/// 100k) 165 → 156 µs a query with it; sphere-1m at keep 320 (one in 3125)
/// 788 → 854 µs, where the cuts converge fast and the sample's 2000 scattered
/// blocks are the dearer. Probes are dense too (real-manpages, 316 lists,
/// nprobe 192 keeps 160 of about 60k): even there, p50 143.5 → 140.7 µs and
/// batch +2 % with the estimate (alternating runs).
const ESTIMATE_MIN_KEEP_DENSE: usize = 128;
const ESTIMATE_DENSE_RATIO: usize = 1024;
const ESTIMATE_MIN_POINTS: usize = 32_768;
const ESTIMATE_MIN_RATIO: usize = 8;
/// Stage 1 reading at most this many points per point kept, with no sampled
/// estimate, makes every sum and selects once ([`ScanView::scan_all`]).
/// clustered-100k (316 lists, keep 80) at 2 lists: 15.3 → 12.5 µs a query; at
/// 4 lists 18.6 → 17.6; at 8 lists even at 64 and worse from 128 (22.4 →
/// 27.5 µs), as is real-manpages at 48 lists (keep 160, ratio about 190:
/// 75 → 90 µs).
const SCAN_ALL_RATIO: usize = 64;
/// One block in this many is read for the estimate.
const SAMPLE_EVERY: usize = 16;
thread_local! {
    /// Stage 1's working memory, per thread: a search of a small list spent
    /// a tenth of its instructions zeroing fresh buffers.
    static SCRATCH: std::cell::RefCell<Scratch> = const { std::cell::RefCell::new(Scratch::new()) };
}

/// [`SCRATCH`]: buffers reused from one stage 1 to the next on a thread.
struct Scratch {
    /// The histogram of sums ([`keep_smallest`]), all zero between uses.
    hist: Vec<u32>,
    /// One kernel call's sums and masks (any content).
    sums: Vec<u16>,
    masks: Vec<u32>,
}

impl Scratch {
    const fn new() -> Self {
        Scratch { hist: Vec::new(), sums: Vec::new(), masks: Vec::new() }
    }
}
const TRAIN_SAMPLE: usize = 65_536;
const KMEANS_ITERS: usize = 20;

/// Dimensions per sub-quantiser for `dim`-dimensional vectors when the user
/// does not say: 4 (16 bytes a point at 128-d), and 6 from 256 dimensions
/// on. On real-manpages (100k x 384, MiniLM), whole scans at recall@10
/// 0.99: dsub 4 needs rerank 8 (0.9905, 196 µs, 12.1k batch QPS), dsub 6
/// rerank 20 (0.9918, 151 µs, 14.1k); at 0.95 with 316 lists the two are
/// even (72–84 µs). Below 256 dimensions (sphere-1m, clustered sets) dsub 4
/// was the faster at 0.95–0.97 and dsub 2–3 beyond 0.99 only.
pub fn auto_dsub(dim: usize) -> usize {
    if dim >= 256 { 6 } else { 4 }
}

/// How to build the scan codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanOptions {
    /// Dimensions per 4-bit sub-quantiser (smaller: more precise, more
    /// bytes); raised to `⌈dim / 256⌉` for vectors wider than `256 · dsub`.
    /// The default, 4, is [`auto_dsub`] below 256 dimensions; the CLI's
    /// `--scan-dsub auto` asks [`auto_dsub`] for the data's width.
    pub dsub: usize,
    pub seed: u64,
    /// Lists to partition the points into ([`lists`]); 0: no partition.
    pub lists: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions { dsub: 4, seed: 42, lists: 0 }
    }
}

/// Shape of the scan codes, as recorded in the file header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanShape {
    pub dim: usize,
    pub count: usize,
    /// Dimensions per sub-quantiser.
    pub dsub: usize,
    /// Sub-quantisers, padded to an even number (a padding one has all-zero
    /// centroids and contributes nothing).
    pub m: usize,
}

impl ScanShape {
    pub fn new(dim: usize, count: usize, dsub: usize) -> Result<Self> {
        if !(1..=MAX_DSUB).contains(&dsub) {
            return Err(Error::InvalidParameter { name: "dsub", reason: format!("{dsub} is outside 1..={MAX_DSUB}") });
        }
        let m = dim.div_ceil(dsub).next_multiple_of(2);
        // MAX_ENTRY (127) per table entry summed over m sub-quantisers fits a
        // u16 for m <= 516; 256 keeps the file's limit simple.
        if m > 256 {
            let reason = format!("{dim} dimensions need at least {} dimensions per sub-quantiser", dim.div_ceil(256));
            return Err(Error::InvalidParameter { name: "dsub", reason });
        }
        Ok(ScanShape { dim, count, dsub, m })
    }
    pub fn blocks(&self) -> usize {
        self.count.div_ceil(BLOCK)
    }
    /// Bytes of one block of codes.
    pub fn block_bytes(&self) -> usize {
        self.m / 2 * 32
    }
    pub fn centroid_floats(&self) -> usize {
        self.m * CENTROIDS * self.dsub
    }
    pub fn code_bytes(&self) -> usize {
        self.blocks() * self.block_bytes()
    }
    pub fn sq8_bytes(&self) -> usize {
        self.count * self.dim
    }
}

/// One query's stage-1 state.
struct ScanState {
    lut: Vec<u8>,
    /// Points whose sum was below `threshold` when scanned, in offset order.
    found: Vec<(u16, u32)>,
    threshold: u16,
}

/// Cuts `found` (in offset order) down to its `keep` smallest `(sum, offset)`
/// pairs, keeping offset order, and returns the largest sum kept. `hist` has
/// one counter per possible sum, all zero (and left so). Exactly the set
/// `select_nth_unstable` would keep (ties on the sum go to the lower offsets,
/// which come first), but in two linear passes instead of a partition, and in
/// offset order, so the SQ8 stage reads its rows at increasing addresses.
fn keep_smallest(found: &mut Vec<(u16, u32)>, keep: usize, hist: &mut [u32]) -> u16 {
    debug_assert!(keep >= 1 && found.len() > keep);
    let (mut lo, mut hi) = (u16::MAX, 0u16);
    for &(x, _) in found.iter() {
        hist[x as usize] += 1;
        lo = lo.min(x);
        hi = hi.max(x);
    }
    // The smallest sum `t` with at least `keep` points at or below it.
    let mut below = 0usize;
    let mut t = lo as usize;
    while below + (hist[t] as usize) < keep {
        below += hist[t] as usize;
        t += 1;
    }
    // Zero what was counted: entry by entry when there are few (a small
    // `keep` over a wide range of sums), else the range.
    if found.len() < (hi - lo) as usize / 8 {
        for &(x, _) in found.iter() {
            hist[x as usize] = 0;
        }
    } else {
        hist[lo as usize..=hi as usize].fill(0);
    }
    // `below` points sum to less than `t`; keep them and the first
    // `keep - below` at `t`.
    let t = t as u16;
    keep_through(found, t, keep - below);
    t
}

/// Keeps, in place and in order, the pairs of `found` whose sum is below `t`
/// and the first `at_t` whose sum is `t`, without branches on the data.
fn keep_through(found: &mut Vec<(u16, u32)>, t: u16, mut at_t: usize) {
    let mut w = 0;
    for r in 0..found.len() {
        let e = found[r];
        found[w] = e;
        let tie = usize::from(e.0 == t && at_t > 0);
        at_t -= tie;
        w += usize::from(e.0 < t) | tie;
    }
    found.truncate(w);
}

/// Scan codes built in memory ([`build`]) before they are written.
#[derive(Clone, Debug)]
pub struct ScanCodes {
    pub shape: ScanShape,
    /// `m × 16 × dsub` f32: the sub-quantisers' centroids (zero-padded).
    pub centroids: Vec<f32>,
    /// Fast-scan blocks, [`ScanShape::code_bytes`] long.
    pub codes: Vec<u8>,
    /// Per-dimension SQ8 offset and step (`x ≈ min + step · code`).
    pub sq8_min: Vec<f32>,
    pub sq8_step: Vec<f32>,
    /// `count × dim` SQ8 codes.
    pub sq8: Vec<u8>,
    /// The partition into lists, when there is one (the points are then in
    /// list order).
    pub lists: Option<Lists>,
    /// The list centroids' codes ([`ListsView::codes`]): set with `lists`
    /// by [`ScanCodes::set_lists`].
    pub list_codes: Vec<u8>,
}

impl ScanCodes {
    /// Partitions the points (already in list order) into `lists`.
    pub fn set_lists(&mut self, lists: Lists) {
        self.list_codes = self.view().encode(&lists.centroids);
        self.lists = Some(lists);
    }

    pub fn view(&self) -> ScanView<'_> {
        ScanView {
            shape: self.shape,
            centroids: &self.centroids,
            codes: &self.codes,
            sq8_min: &self.sq8_min,
            sq8_step: &self.sq8_step,
            sq8: &self.sq8,
            lists: self.lists.as_ref().map(|l| ListsView { codes: &self.list_codes, ..l.view() }),
        }
    }
}

/// Borrowed scan codes: from [`ScanCodes`] or a memory-mapped index file.
#[derive(Clone, Copy, Debug)]
pub struct ScanView<'a> {
    pub shape: ScanShape,
    pub centroids: &'a [f32],
    pub codes: &'a [u8],
    pub sq8_min: &'a [f32],
    pub sq8_step: &'a [f32],
    pub sq8: &'a [u8],
    pub lists: Option<ListsView<'a>>,
}

impl ScanView<'_> {
    /// Whether every slice has the length its shape implies, and the SQ8
    /// parameters are usable (finite, positive steps).
    pub fn check(&self) -> std::result::Result<(), String> {
        let s = &self.shape;
        let want = [
            ("centroids", self.centroids.len(), s.centroid_floats()),
            ("codes", self.codes.len(), s.code_bytes()),
            ("sq8 offsets", self.sq8_min.len(), s.dim),
            ("sq8 steps", self.sq8_step.len(), s.dim),
            ("sq8 codes", self.sq8.len(), s.sq8_bytes()),
        ];
        for (name, got, want) in want {
            if got != want {
                return Err(format!("scan {name} hold {got} values, expected {want}"));
            }
        }
        if self.sq8_step.iter().any(|x| !(x.is_finite() && *x > 0.0)) || self.sq8_min.iter().any(|x| !x.is_finite()) {
            return Err("scan sq8 parameters are not finite and positive".into());
        }
        if self.centroids.iter().any(|x| !x.is_finite()) {
            return Err("scan centroids are not finite".into());
        }
        if let Some(lists) = &self.lists {
            lists.check(s.dim, s.count)?;
            if !self.has_list_codes(lists) {
                return Err(format!("the scan's list codes hold {} bytes for {} lists", lists.codes.len(), lists.len()));
            }
        }
        Ok(())
    }

    /// Sub-quantiser `s`'s dimensions within a vector.
    fn sub_range(&self, s: usize) -> std::ops::Range<usize> {
        let d = self.shape.dsub;
        (s * d).min(self.shape.dim)..((s + 1) * d).min(self.shape.dim)
    }

    /// The 4-bit codes of `rows` (row-major, `dim` wide) in fast-scan
    /// blocks of [`BLOCK`] rows, the last one zero-padded: how the points are
    /// stored, and how the list centroids are ranked. Empty when `rows` or
    /// the sub-quantisers' centroids do not fit the shape.
    pub fn encode(&self, rows: &[f32]) -> Vec<u8> {
        let (dim, m, dsub) = (self.shape.dim, self.shape.m, self.shape.dsub);
        let shape_fits = (2..=256).contains(&m) && m % 2 == 0 && dsub > 0;
        if !shape_fits || dim == 0 || rows.len() % dim != 0 || self.centroids.len() != self.shape.centroid_floats() {
            return Vec::new();
        }
        let count = rows.len() / dim;
        let block_bytes = self.shape.block_bytes();
        let mut codes = vec![0u8; count.div_ceil(BLOCK) * block_bytes];
        // One block of 32 rows per task.
        let near: Vec<kmeans::Nearest> =
            (0..m).map(|s| kmeans::Nearest::new(&self.centroids[s * CENTROIDS * dsub..(s + 1) * CENTROIDS * dsub], dsub)).collect();
        codes.par_chunks_mut(block_bytes).enumerate().for_each(|(b, out)| {
            let mut sub = vec![0f32; dsub];
            let mut scratch = [0f32; CENTROIDS];
            let mut point_codes = [[0u8; BLOCK]; 256];
            for j in 0..BLOCK {
                let p = b * BLOCK + j;
                if p >= count {
                    break;
                }
                let row = &rows[p * dim..(p + 1) * dim];
                for (s, pc) in point_codes.iter_mut().enumerate().take(m) {
                    let r = self.sub_range(s);
                    sub.fill(0.0);
                    sub[..r.len()].copy_from_slice(&row[r]);
                    pc[j] = near[s].find(&sub, &mut scratch).0 as u8;
                }
            }
            pack_block(&point_codes[..m], out);
        });
        codes
    }

    /// The query's quantised distance table in the kernels' pair layout.
    fn table(&self, query: &[f32]) -> Vec<u8> {
        let (m, dsub) = (self.shape.m, self.shape.dsub);
        let mut q = vec![0f32; m * dsub];
        q[..self.shape.dim].copy_from_slice(&query[..self.shape.dim]);
        let mut out = vec![0u8; m * CENTROIDS];
        (scan_kernels().table)(self.centroids, &q, dsub, &mut out);
        out
    }

    /// Stage 1: the `keep` points with the smallest table sums (ties: lower
    /// offsets first), as (sum, offset) in increasing offset order. [`ScanView::search`] is this, then the SQ8 stage keeps
    /// the `rerank` best by [`ScanView::sq8_distance`], then the exact re-rank;
    /// the calibration (`crate::calibrate`) replays those stages on prefixes of
    /// one deep stage-1 list, so the two must stay in step.
    pub fn fast_scan(&self, query: &[f32], keep: usize) -> Vec<(u16, u32)> {
        self.fast_scan_many(&[query], keep).pop().expect("one query in, one out")
    }

    /// Stage 1 for several queries in one pass over the codes: each chunk of
    /// blocks is read from memory once and scored for every query while it
    /// sits in the L2 cache.
    fn fast_scan_many(&self, queries: &[&[f32]], keep: usize) -> Vec<Vec<(u16, u32)>> {
        self.fast_scan_ranges(queries, keep, &[0..self.shape.count])
    }

    /// [`ScanView::fast_scan`] over the points of the `nprobe` lists nearest
    /// `query` (all points without lists, or with `nprobe` 0), with at least
    /// `min_points` points read ([`ScanView::probe`]).
    pub fn fast_scan_probe(&self, query: &[f32], keep: usize, nprobe: usize, min_points: usize) -> Vec<(u16, u32)> {
        let lut = self.table(query);
        let ranges = self.probe_with(query, Some(&lut), nprobe, min_points);
        self.fast_scan_tables(vec![lut], keep, &ranges).pop().expect("one query in, one out")
    }

    /// The offset ranges a search reading `nprobe` lists (and at least
    /// `min_points` points) covers: the lists are ranked by their centroids'
    /// sums in the query's table, then the best of those exactly
    /// ([`ListsView::pick`]); exactly when the pool is every list, or the
    /// view has no list codes (lists attached without [`ScanCodes::set_lists`]).
    pub fn probe(&self, query: &[f32], nprobe: usize, min_points: usize) -> Vec<Range<usize>> {
        self.probe_with(query, None, nprobe, min_points)
    }

    /// [`ScanView::probe`] with the query's table when the caller has it.
    fn probe_with(&self, query: &[f32], lut: Option<&[u8]>, nprobe: usize, min_points: usize) -> Vec<Range<usize>> {
        self.probe_picked(query, lut, nprobe, min_points).ranges
    }

    /// [`ScanView::probe_with`], with what the choice ranked but left unread.
    fn probe_picked(&self, query: &[f32], lut: Option<&[u8]>, nprobe: usize, min_points: usize) -> Picked {
        let lists = match self.lists {
            Some(lists) if self.partial(nprobe) => lists,
            _ => return Picked { ranges: vec![0..self.shape.count], unread: Vec::new(), ranked_all: true },
        };
        if !lists.ranks_by_codes(nprobe) || !self.has_list_codes(&lists) {
            return lists.pick_ranked(query, None, nprobe, min_points);
        }
        let blocks = lists.len().div_ceil(BLOCK);
        let own;
        let lut = match lut {
            Some(lut) => lut,
            None => {
                own = self.table(query);
                &own[..]
            }
        };
        let mut sums = vec![0u16; blocks * BLOCK];
        let mut masks = vec![0u32; blocks];
        (scan_kernels().block)(lists.codes, lut, u16::MAX, &mut sums, &mut masks);
        lists.pick_ranked(query, Some(&sums), nprobe, min_points)
    }

    /// Whether `lists` carries its centroids' codes: one block of this
    /// scan's shape per [`BLOCK`] lists.
    fn has_list_codes(&self, lists: &ListsView<'_>) -> bool {
        lists.codes.len() == lists.len().div_ceil(BLOCK) * self.shape.block_bytes()
    }

    /// Whether a search with `nprobe` reads only part of the points.
    pub fn partial(&self, nprobe: usize) -> bool {
        self.lists.is_some_and(|l| nprobe > 0 && nprobe < l.len())
    }

    /// Stage 1 over the points of `ranges` (rising, disjoint): the `keep`
    /// smallest (sum, offset) among them, in offset order.
    fn fast_scan_ranges(&self, queries: &[&[f32]], keep: usize, ranges: &[Range<usize>]) -> Vec<Vec<(u16, u32)>> {
        self.fast_scan_tables(queries.iter().map(|q| self.table(q)).collect(), keep, ranges)
    }

    /// [`ScanView::fast_scan_ranges`] with the queries' tables.
    fn fast_scan_tables(&self, luts: Vec<Vec<u8>>, keep: usize, ranges: &[Range<usize>]) -> Vec<Vec<(u16, u32)>> {
        let total: usize = ranges.iter().map(|r| r.len()).sum();
        let keep = keep.clamp(1, total.max(1));
        let mut states: Vec<ScanState> = luts
            .into_iter()
            .map(|lut| ScanState { lut, found: Vec::with_capacity(2 * keep + BLOCK), threshold: u16::MAX })
            .collect();
        SCRATCH.with_borrow_mut(|scratch| {
            // One counter per possible sum (at most m · MAX_ENTRY), all zero
            // between uses: kept per thread, as clearing it cost a 384-d
            // probe of one list 3 %. Nothing in here may call into rayon: a
            // stolen search on this thread would find the scratch borrowed.
            let need = self.shape.m * kernels::MAX_ENTRY as usize + 1;
            if scratch.hist.len() < need {
                scratch.hist.resize(need, 0);
            }
            debug_assert!(scratch.hist.iter().all(|&c| c == 0), "stage 1's histogram was left dirty");
            let many = keep >= ESTIMATE_MIN_KEEP || keep >= ESTIMATE_MIN_KEEP_DENSE && total <= ESTIMATE_DENSE_RATIO * keep;
            let estimate = many && total >= ESTIMATE_MIN_POINTS && total >= ESTIMATE_MIN_RATIO * keep;
            if !estimate && total <= SCAN_ALL_RATIO * keep {
                for st in states.iter_mut() {
                    self.scan_all(st, keep, ranges, scratch);
                }
                return;
            }
            if estimate {
                for st in states.iter_mut() {
                    st.threshold = self.estimate_threshold(&st.lut, keep, total, ranges, scratch);
                }
            }
            self.scan_states(&mut states, keep, ranges, scratch);
        });
        states.into_iter().map(|st| st.found).collect()
    }

    /// [`ScanView::fast_scan_with`], then, for a state whose starting
    /// threshold let fewer than `keep` points through (an estimate that was
    /// too low), the scan again from no threshold: the answer is always the
    /// `keep` smallest (sum, offset) pairs.
    fn scan_states(&self, states: &mut [ScanState], keep: usize, ranges: &[Range<usize>], scratch: &mut Scratch) {
        self.fast_scan_with(states, keep, ranges, scratch, None);
        for st in states.iter_mut() {
            if st.found.len() < keep && st.threshold != u16::MAX {
                st.found.clear();
                st.threshold = u16::MAX;
                self.fast_scan_with(std::slice::from_mut(st), keep, ranges, scratch, None);
            }
        }
    }

    /// Stage 1 for a few points: every sum first, then the `keep`-th smallest
    /// by a two-level count of the sums (top bits, then the low bits within
    /// the boundary bucket), then the points at or below it, in offset order,
    /// ties to the lower offsets: the same answer as
    /// [`ScanView::fast_scan_with`] without its repeated cuts, whose pushes
    /// and cuts were most of a two-list probe.
    fn scan_all(&self, st: &mut ScanState, keep: usize, ranges: &[Range<usize>], scratch: &mut Scratch) {
        let kernels = scan_kernels();
        let bytes = self.shape.block_bytes();
        let Scratch { sums, masks, .. } = scratch;
        // Range `r` covers blocks `first..end`, whose sums start at block `at`
        // of `sums`; its own points' sums are `sums[at·32 + r.start − first·32 ..]`.
        let spans = || {
            ranges.iter().scan(0, |at, r| {
                let (first, end) = (r.start / BLOCK, r.end.div_ceil(BLOCK));
                let span = (r, first, end, *at);
                *at += end - first;
                Some(span)
            })
        };
        let blocks: usize = spans().map(|(_, first, end, _)| end - first).sum();
        sums.resize(blocks * BLOCK, 0);
        masks.resize(blocks, 0);
        // Threshold 0: no point is below it, so the kernel's masks are empty.
        for (_, first, end, at) in spans() {
            let n = end - first;
            let (s, m) = (&mut sums[at * BLOCK..(at + n) * BLOCK], &mut masks[at..at + n]);
            (kernels.block)(&self.codes[first * bytes..end * bytes], &st.lut, 0, s, m);
        }
        let own = |(r, first, _, at): (&Range<usize>, usize, usize, usize)| {
            let base = at * BLOCK + r.start - first * BLOCK;
            base..base + r.len()
        };
        let total: usize = ranges.iter().map(|r| r.len()).sum();
        // The sums are below m · MAX_ENTRY + 1 <= 2^16: the top 8 of their
        // bits pick a bucket, the rest (at most 8) a sum in it.
        let top = self.shape.m * kernels::MAX_ENTRY as usize + 1;
        let shift = (usize::BITS - top.leading_zeros()).saturating_sub(8);
        // Every point below `limit` is listed: all of them when they are at
        // most `keep`, else those of the buckets up to the one holding the
        // `keep`-th smallest sum.
        let (limit, below, bucket) = if total <= keep {
            (u16::MAX, 0, usize::MAX)
        } else {
            // Four counts side by side: a run of equal buckets would otherwise
            // wait on its own stores.
            let mut coarse = [[0u32; 256]; 4];
            for span in spans() {
                let own = &sums[own(span)];
                let mut four = own.chunks_exact(4);
                for x in &mut four {
                    for (c, &x) in coarse.iter_mut().zip(x) {
                        c[usize::from(x >> shift)] += 1;
                    }
                }
                for &x in four.remainder() {
                    coarse[0][usize::from(x >> shift)] += 1;
                }
            }
            let count = |b: usize| coarse.iter().map(|c| c[b] as usize).sum::<usize>();
            let (mut below, mut bucket) = (0usize, 0usize);
            while below + count(bucket) <= keep - 1 {
                below += count(bucket);
                bucket += 1;
            }
            (((bucket + 1) << shift).min(usize::from(u16::MAX)) as u16, below, bucket)
        };
        (kernels.below)(sums, limit, masks);
        let found = &mut st.found;
        found.clear();
        for (r, first, end, at) in spans() {
            for b in 0..end - first {
                let base = (first + b) * BLOCK;
                let mut mask = masks[at + b] & in_range(base, r);
                while mask != 0 {
                    let j = mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    found.push((sums[(at + b) * BLOCK + j], (base + j) as u32));
                }
            }
        }
        if found.len() <= keep {
            st.threshold = limit;
            return;
        }
        // `below` of them are in lower buckets; the rest of `keep` are the
        // smallest (sum, offset) of the boundary bucket's.
        let low = (1u16 << shift) - 1;
        let mut fine = [0u32; 256];
        for &(x, _) in found.iter() {
            fine[usize::from(x & low)] += u32::from(usize::from(x >> shift) == bucket);
        }
        let (mut below, mut t) = (below, 0usize);
        while below + fine[t] as usize <= keep - 1 {
            below += fine[t] as usize;
            t += 1;
        }
        // `below` points sum to less than `t`; the first `keep − below` at
        // `t` are kept too.
        let t = (bucket << shift | t) as u16;
        keep_through(found, t, keep - below);
        st.threshold = t;
    }

    /// A starting threshold for stage 1 from every [`SAMPLE_EVERY`]-th block of
    /// `ranges`: a sum below which, by the sample, about 1.15 · `keep` of the
    /// `total` points lie (with a margin for the sample's spread), or
    /// `u16::MAX` when the sample is too small to say. Without it the first
    /// blocks pass whole and the threshold comes down by repeated cuts: at
    /// 20480 candidates of a million points, the cuts and the points they
    /// cut were 44 % of a query's time.
    fn estimate_threshold(&self, lut: &[u8], keep: usize, total: usize, ranges: &[Range<usize>], scratch: &mut Scratch) -> u16 {
        let block = scan_kernels().block;
        let bytes = self.shape.block_bytes();
        let hist = &mut scratch.hist;
        let (mut sums, mut mask) = ([0u16; BLOCK], [0u32; 1]);
        let (mut sampled, mut lo, mut hi) = (0usize, usize::MAX, 0usize);
        for r in ranges {
            let mut b = (r.start / BLOCK).next_multiple_of(SAMPLE_EVERY);
            while b * BLOCK < r.end {
                // The kernel does not prefetch for one block; ask for the
                // next sampled block while this one is summed.
                if let Some(next) = self.codes.get((b + SAMPLE_EVERY) * bytes..(b + SAMPLE_EVERY + 1) * bytes) {
                    crate::distance::prefetch_lines(next, bytes.div_ceil(64));
                }
                block(&self.codes[b * bytes..(b + 1) * bytes], lut, u16::MAX, &mut sums, &mut mask);
                let inside = in_range(b * BLOCK, r);
                for (j, &x) in sums.iter().enumerate() {
                    if inside >> j & 1 == 1 {
                        hist[x as usize] += 1;
                        sampled += 1;
                        lo = lo.min(x as usize);
                        hi = hi.max(x as usize);
                    }
                }
                b += SAMPLE_EVERY;
            }
        }
        if sampled == 0 {
            return u16::MAX;
        }
        // Sampled points expected below the true cut; ask for 15 % more and
        // four standard deviations (binomial, about √expected). Every point
        // let through is pushed and cut later: against half as many again,
        // sphere-1m rerank 2048 ran 3 % fewer instructions and 5 % fewer
        // mispredicted branches (callgrind --branch-sim). The second pass
        // stays rare: none in 24 000 sphere-1m searches (rerank 64–4096),
        // 4 in 2000 clustered-100k searches at `nprobe=64,rerank=64` of 316
        // lists (none at 1.5).
        let expected = keep as f64 * sampled as f64 / total as f64;
        let target = (1.15 * expected + 4.0 * expected.sqrt() + 8.0).ceil() as usize;
        let (mut below, mut t) = (0usize, lo);
        while t <= hi && below < target {
            below += hist[t] as usize;
            t += 1;
        }
        hist[lo..=hi].fill(0);
        // `below` sampled sums are under `t`.
        if below < target { u16::MAX } else { t as u16 }
    }

    /// [`ScanView::fast_scan_tables`]'s loop, with its scratch (histogram zeroed).
    /// With `allow`, only its points can pass (its bits ANDed into each
    /// block's mask).
    fn fast_scan_with(&self, states: &mut [ScanState], keep: usize, ranges: &[Range<usize>], scratch: &mut Scratch, allow: Option<&AllowSet>) {
        let block = scan_kernels().block;
        // Blocks per kernel call: the sums (4 KiB) stay in L1.
        const CHUNK: usize = 64;
        let mut hits = [0u8; CHUNK];
        scratch.sums.resize(CHUNK * BLOCK, 0);
        scratch.masks.resize(CHUNK, 0);
        let Scratch { hist, sums, masks } = scratch;
        let bytes = self.shape.block_bytes();
        for r in ranges {
            let (first, end) = (r.start / BLOCK, r.end.div_ceil(BLOCK));
            let mut b0 = first;
            while b0 < end {
                let blocks = (end - b0).min(CHUNK);
                let codes = &self.codes[b0 * bytes..(b0 + blocks) * bytes];
                let (sums, masks) = (&mut sums[..blocks * BLOCK], &mut masks[..blocks]);
                for st in states.iter_mut() {
                    block(codes, &st.lut, st.threshold, sums, masks);
                    // Only the chunk's first and last blocks can reach past the range.
                    masks[0] &= in_range(b0 * BLOCK, r);
                    masks[blocks - 1] &= in_range((b0 + blocks - 1) * BLOCK, r);
                    if let Some(allow) = allow {
                        for (b, m) in masks.iter_mut().enumerate() {
                            *m &= allow.block((b0 + b) * BLOCK);
                        }
                    }
                    // The blocks with a point below the threshold, listed
                    // without a branch: whether a block has one is a coin
                    // toss at depth, and a branch on it was mispredicted.
                    let mut n = 0;
                    for (b, &mask) in masks.iter().enumerate() {
                        hits[n] = b as u8;
                        n += usize::from(mask != 0);
                    }
                    for &b in &hits[..n] {
                        let b = usize::from(b);
                        let base = (b0 + b) * BLOCK;
                        let mut mask = masks[b];
                        while mask != 0 {
                            let j = mask.trailing_zeros() as usize;
                            mask &= mask - 1;
                            let x = sums[b * BLOCK + j];
                            if x < st.threshold {
                                st.found.push((x, (base + j) as u32));
                            }
                        }
                        if st.found.len() >= 2 * keep {
                            st.threshold = keep_smallest(&mut st.found, keep, hist);
                        }
                    }
                }
                b0 += blocks;
            }
        }
        for st in states.iter_mut() {
            if st.found.len() > keep {
                keep_smallest(&mut st.found, keep, hist);
            }
        }
    }

    /// [`ScanView::search`] for many queries (row-major): stage 1 for
    /// [`BATCH_GROUP`] queries per pass over the codes, groups spread over the
    /// rayon pool; results in query order.
    /// With `nprobe` selecting part of the lists, each query reads its own
    /// lists: the queries are spread over the pool one by one.
    pub fn search_many(
        &self,
        vectors: &[f32],
        queries: &[f32],
        k: usize,
        candidates: usize,
        rerank: usize,
        nprobe: usize,
        widening: Widening<'_>,
    ) -> Vec<Vec<Scored>> {
        let dim = self.shape.dim;
        let rows: Vec<&[f32]> = queries.chunks_exact(dim).collect();
        if self.partial(nprobe) {
            return rows.par_iter().map(|q| self.search_probe(vectors, q, k, candidates, rerank, nprobe, widening)).collect();
        }
        let rerank = rerank.max(k);
        rows.par_chunks(BATCH_GROUP)
            .flat_map_iter(|group| {
                let found = self.fast_scan_many(group, candidates.max(rerank));
                group.iter().zip(found).map(|(q, f)| self.rerank(vectors, q, k, f, rerank)).collect::<Vec<_>>()
            })
            .collect()
    }

    /// The SQ8 distance from `query` to any point (graph walks use it).
    ///
    /// A dimension the points (nearly) share one value in has a step near
    /// zero (1e-34 on a 384-d sentence-embedding set): a query away from that
    /// value there scales to ~1e32 steps, whose square overflows, and times
    /// the step's square (0 in f32) made every distance NaN, so a random unit
    /// query on that set got recall@10 0.000 from SQ8. Such a dimension adds
    /// the same amount to every point's distance (their codes span at most
    /// the tiny range), so it is left out of the sum: past
    /// [`SQ8_QUERY_LIMIT`] steps from the range, a dimension weighs 0.
    pub fn sq8_distance(&self, query: &[f32]) -> Sq8Query<'_> {
        let (q8, w) = query
            .iter()
            .zip(self.sq8_min)
            .zip(self.sq8_step)
            .map(|((q, m), s)| {
                let q8 = (q - m) / s;
                if q8.abs() <= SQ8_QUERY_LIMIT { (q8, s * s) } else { (0.0, 0.0) }
            })
            .unzip();
        let k = scan_kernels();
        Sq8Query { codes: self.sq8, dim: self.shape.dim, q8, w, kernel: k.sq8, kernel4: k.sq8x4 }
    }

    /// The three stages; returns up to `k` points, ascending exact distance.
    /// `vectors` are the index's f32 rows.
    ///
    /// From [`SPLIT_MIN_POINTS`] points on, one query's work is split over up
    /// to [`MAX_SPLIT`] of the rayon pool's threads (a sequential client
    /// leaves the other cores idle); the answer is the same.
    pub fn search(&self, vectors: &[f32], query: &[f32], k: usize, candidates: usize, rerank: usize) -> Vec<Scored> {
        let parts = if self.shape.count >= SPLIT_MIN_POINTS { rayon::current_num_threads().min(MAX_SPLIT) } else { 1 };
        self.search_split(vectors, query, k, candidates, rerank, parts)
    }

    /// [`ScanView::search`] over the `nprobe` lists nearest `query` (all of
    /// them for 0, or an index without lists). A partial search runs on the
    /// calling thread: it reads few enough points not to be worth splitting.
    ///
    /// Then the second round ([`ScanView::widen`]), judged at `widening.k`
    /// by `widening.hard` (whether an answer has less contrast than the
    /// index's calibration queries had; `|_, _| false` without a table).
    #[allow(clippy::too_many_arguments)]
    pub fn search_probe(
        &self,
        vectors: &[f32],
        query: &[f32],
        k: usize,
        candidates: usize,
        rerank: usize,
        nprobe: usize,
        widening: Widening<'_>,
    ) -> Vec<Scored> {
        if !self.partial(nprobe) {
            return self.search(vectors, query, k, candidates, rerank);
        }
        let rerank = rerank.max(k);
        let keep = candidates.max(rerank);
        let lut = self.table(query);
        // At least k points, so that min(k, count) neighbours come back.
        let picked = self.probe_picked(query, Some(&lut), nprobe, k);
        let found = self.fast_scan_tables(vec![lut], keep, &picked.ranges).pop().expect("one query in, one out");
        let found = self.rerank(vectors, query, k, found, rerank);
        self.widen(vectors, query, k, keep, rerank, nprobe, &picked, found, widening)
    }

    /// The second round of a partial search, for a query unlike the data.
    /// A query like the data finds its neighbours well inside its nearest
    /// lists: on clustered 200k x 128 (447 lists, balanced: one list) the
    /// rules below widen 9 of 300 queries near base rows. A query near none
    /// of the lists (a random vector, a row drowned in noise, a question
    /// against passages) is not: the one-list probe had recall@10 0.09 on
    /// random vectors and 0.90 on noisy rows there (`examples/ood_recall.rs`).
    /// Two signs, both from the first round's answer:
    ///
    /// - unread lists whose centroid is nearer than the `k`-th answer (no
    ///   table needed): they may hold nearer points. While they hold at most
    ///   1/[`WIDEN_SQ8_SHARE`] of the points, and the answer is not `hard`,
    ///   they are read as the first round read its lists;
    /// - an answer with less contrast than the calibration queries had
    ///   (`hard`): with no such list, the [`HARD_LISTS_FACTOR`] times
    ///   `nprobe` nearest lists are scored by SQ8 (unit vectors, whose
    ///   centroids lie inside the sphere, nearer to nothing).
    ///
    /// Past that (more lists, or such lists and a hard answer) the query is
    /// far from everything: the lists' order means little (reading those
    /// lists by SQ8 had recall@10 0.87 on the random vectors) and the 4-bit
    /// sums of far points rank poorly (every point by the fast scan, 4000
    /// candidates: 0.85), so every point is scored by SQ8 (1.000, 3 ms on
    /// one thread at 200k x 128).
    #[allow(clippy::too_many_arguments)]
    fn widen(
        &self,
        vectors: &[f32],
        query: &[f32],
        k: usize,
        keep: usize,
        rerank: usize,
        nprobe: usize,
        picked: &Picked,
        found: Vec<Scored>,
        widening: Widening<'_>,
    ) -> Vec<Scored> {
        let rank = widening.k.clamp(1, k.max(1));
        let (Some(lists), Some(kth)) = (self.lists, found.get(rank - 1).map(|s| s.distance)) else {
            return found;
        };
        let near = picked.unread.iter().filter(|(d, _)| *d < kth);
        let points: usize = near.clone().map(|&(_, i)| lists.range(i).len()).sum();
        let is_hard = (widening.hard)(query, &found);
        if points == 0 && !is_hard {
            return found;
        }
        if is_hard {
            crate::count_widened();
        }
        let exhausted = !picked.ranked_all && picked.unread.iter().all(|l| l.0 < kth);
        let many = exhausted || points.saturating_mul(WIDEN_SQ8_SHARE) > self.shape.count;
        if is_hard && (many || points > 0) {
            return self.search_sq8_every(vectors, query, k, rerank);
        }
        let more = if is_hard {
            self.search_sq8_lists(vectors, query, k, rerank, nprobe.saturating_mul(HARD_LISTS_FACTOR))
        } else {
            // Not hard: the query is like the calibration's, its first
            // round near right; of many nearer lists, the `nprobe` nearest.
            let mut near: Vec<&(f32, usize)> = near.collect();
            if many {
                near.sort_by(|a, b| a.0.total_cmp(&b.0));
                near.truncate(nprobe.max(1));
            }
            let more = merge_ranges(near.into_iter().map(|&(_, i)| lists.range(i)).filter(|r| !r.is_empty()).collect());
            let stage1 = self.fast_scan_tables(vec![self.table(query)], keep, &more).pop().expect("one query in, one out");
            self.rerank(vectors, query, k, stage1, rerank)
        };
        crate::topk::merge(found, more, k)
    }

    /// The `k` points nearest `query` by the SQ8 distance of every point of
    /// the `nprobe` lists nearest it ([`ScanView::probe`]), the `rerank` best
    /// re-ranked exactly.
    pub fn search_sq8_lists(&self, vectors: &[f32], query: &[f32], k: usize, rerank: usize, nprobe: usize) -> Vec<Scored> {
        if !self.partial(nprobe) {
            return self.search_sq8_every(vectors, query, k, rerank);
        }
        let ranges = self.probe(query, nprobe, k);
        let found: Vec<(u16, u32)> = ranges.iter().flat_map(|r| r.clone()).map(|o| (0, o as u32)).collect();
        self.rerank(vectors, query, k, found, rerank.max(k))
    }

    /// The `k` points nearest `query` by the SQ8 distance of every point,
    /// the `rerank` best re-ranked exactly; from [`SPLIT_MIN_POINTS`] on
    /// split over the pool's threads as [`ScanView::search`] is.
    pub fn search_sq8_every(&self, vectors: &[f32], query: &[f32], k: usize, rerank: usize) -> Vec<Scored> {
        let rerank = rerank.max(k);
        let count = self.shape.count;
        let parts = if count >= SPLIT_MIN_POINTS { rayon::current_num_threads().min(MAX_SPLIT) } else { 1 };
        let every: Vec<(u16, u32)> = (0..count as u32).map(|o| (0, o)).collect();
        self.rerank_split(vectors, query, k, &every, rerank, parts)
    }

    /// [`ScanView::search`] with its stages split `parts` ways: stage 1 over
    /// `parts` ranges of blocks, each keeping its own best, merged to the
    /// overall best (the same set: the `keep` smallest (sum, offset)); stage 2
    /// over `parts` slices of those, each keeping its `rerank` best, merged
    /// the same way; then stage 3.
    pub fn search_split(&self, vectors: &[f32], query: &[f32], k: usize, candidates: usize, rerank: usize, parts: usize) -> Vec<Scored> {
        let rerank = rerank.max(k);
        let keep = candidates.max(rerank).clamp(1, self.shape.count);
        let blocks = self.shape.blocks();
        let parts = parts.clamp(1, blocks.max(1));
        if parts == 1 {
            let found = self.fast_scan(query, keep);
            return self.rerank(vectors, query, k, found, rerank);
        }
        let per = blocks.div_ceil(parts);
        let pieces: Vec<Vec<(u16, u32)>> = (0..parts)
            .into_par_iter()
            .map(|i| {
                let (b0, b1) = ((i * per).min(blocks), ((i + 1) * per).min(blocks));
                let first = b0 * BLOCK;
                let count = (b1 * BLOCK).min(self.shape.count).saturating_sub(first);
                if count == 0 {
                    return Vec::new();
                }
                let bytes = self.shape.block_bytes();
                let sub = ScanView {
                    shape: ScanShape { count, ..self.shape },
                    codes: &self.codes[b0 * bytes..b1 * bytes],
                    ..*self
                };
                let mut found = sub.fast_scan(query, keep);
                for f in &mut found {
                    f.1 += first as u32;
                }
                found
            })
            .collect();
        // In range order, so still in offset order.
        let mut found: Vec<(u16, u32)> = pieces.concat();
        if found.len() > keep {
            let mut hist = vec![0u32; self.shape.m * kernels::MAX_ENTRY as usize + 1];
            keep_smallest(&mut found, keep, &mut hist);
        }
        self.rerank_split(vectors, query, k, &found, rerank, parts)
    }

    /// Stages 2 and 3 over `found` (in offset order), stage 2 split `parts`
    /// ways over the pool, each part keeping its `rerank` best, merged to the
    /// overall best (the same set as one part).
    fn rerank_split(&self, vectors: &[f32], query: &[f32], k: usize, found: &[(u16, u32)], rerank: usize, parts: usize) -> Vec<Scored> {
        let sq8 = self.sq8_distance(query);
        let slice = found.len().div_ceil(parts.max(1)).max(1);
        let mut stage2: Vec<Scored> =
            found.par_chunks(slice).flat_map_iter(|part| self.stage2(&sq8, part, rerank)).collect();
        if stage2.len() > rerank {
            stage2.select_nth_unstable(rerank - 1);
            stage2.truncate(rerank);
        }
        stage2.sort_unstable_by_key(|s| s.offset);
        crate::exact::rerank(vectors, self.shape.dim, query, k, &stage2)
    }

    /// The offset ranges a filtered search reads, and how many points they
    /// hold: every point without lists (or with `nprobe` 0 or all lists);
    /// else the lists in order of their centroids' distance to `query`,
    /// those without an allowed point skipped, until they hold `target`
    /// allowed points (or there are no more). The lists left unread that
    /// hold an allowed point are kept, nearest first, for
    /// [`AllowedLists::nearer_than`].
    ///
    /// Unless the filter is correlated with the data away from the query:
    /// when the `nprobe` nearest lists hold less than half the allowed share
    /// of the whole index, the nearest allowed points lie outside the
    /// query's neighbourhood, where the lists' order says little (a filter
    /// keeping 1 % of clustered-1m along one direction: recall@10 0.65 by
    /// that order), so every list holding an allowed point is read; `local`
    /// says the filter was local (the caller may prefer the SQ8 path
    /// otherwise: the 4-bit sums rank far points poorly).
    pub fn allowed_ranges(&self, query: &[f32], allow: &AllowSet, nprobe: usize, target: usize) -> AllowedLists {
        let lists = match self.lists {
            Some(lists) if self.partial(nprobe) => lists,
            _ => {
                let count = self.shape.count;
                return AllowedLists { ranges: vec![0..count], points: count, local: true, unread: Vec::new() };
            }
        };
        let ranked = lists.ranked_with_distances(query);
        let range = |i: usize| lists.starts[i] as usize..lists.starts[i + 1] as usize;
        let (near_allowed, near_points) =
            ranked.iter().take(nprobe).fold((0usize, 0usize), |(a, p), &(_, i)| (a + allow.count_in(range(i)), p + range(i).len()));
        let local = 2 * near_allowed * self.shape.count >= allow.count() * near_points;
        let (mut covered, mut points) = (0usize, 0usize);
        let mut picked: Vec<Range<usize>> = Vec::new();
        let mut unread: Vec<(f32, Range<usize>)> = Vec::new();
        for (distance, i) in ranked {
            let r = range(i);
            let n = allow.count_in(r.clone());
            if n == 0 {
                continue;
            }
            if local && covered >= target {
                unread.push((distance, r));
                continue;
            }
            covered += n;
            points += r.len();
            picked.push(r);
        }
        AllowedLists { ranges: merge_ranges(picked), points, local, unread }
    }

    /// [`ScanView::search`] answering only `allow`'s points, over `ranges`
    /// ([`ScanView::allowed_ranges`]): stage 1 with the allow-set in its
    /// block masks, then the SQ8 and exact stages.
    ///
    /// Stage 1's depth adapts to the query: a filter can leave only points
    /// far from the query, where the 4-bit sums rank poorly (a filter
    /// correlated with the data kept recall@10 at 0.75 at the depth that gave
    /// 0.97 unfiltered). When the SQ8 stage's `k` best sit in the worse half
    /// of stage 1's candidates by sum, the nearest may lie past the cut, so
    /// stage 1 runs again four times deeper, until they sit in the better
    /// half or every allowed point of `ranges` is a candidate.
    #[allow(clippy::too_many_arguments)]
    pub fn search_allowed(
        &self,
        vectors: &[f32],
        query: &[f32],
        k: usize,
        candidates: usize,
        rerank: usize,
        ranges: &[Range<usize>],
        allow: &AllowSet,
    ) -> Vec<Scored> {
        let rerank = rerank.max(k);
        let reachable: usize = ranges.iter().map(|r| allow.count_in(r.clone())).sum();
        let mut keep = candidates.max(rerank).max(1);
        let lut = self.table(query);
        let sq8 = self.sq8_distance(query);
        // A wide read (a filter letting most points through, or one
        // correlated away from the query) is split over the pool's threads,
        // as an unfiltered exhaustive scan is.
        let points: usize = ranges.iter().map(|r| r.len()).sum();
        let parts = if points >= SPLIT_MIN_POINTS { rayon::current_num_threads().min(MAX_SPLIT) } else { 1 };
        let pieces = split_ranges(ranges, parts);
        loop {
            let mut found: Vec<(u16, u32)> = if pieces.len() == 1 {
                self.masked_stage1(&lut, keep, ranges, allow)
            } else {
                pieces.par_iter().map(|p| self.masked_stage1(&lut, keep, p, allow)).collect::<Vec<_>>().concat()
            };
            if found.len() > keep {
                // In range order, so still in offset order.
                let mut hist = vec![0u32; self.shape.m * kernels::MAX_ENTRY as usize + 1];
                keep_smallest(&mut found, keep, &mut hist);
            }
            if keep >= reachable || !self.best_in_worse_half(&sq8, &found, k) {
                return self.rerank(vectors, query, k, found, rerank);
            }
            keep = keep.saturating_mul(4);
        }
    }

    /// Stage 1 over `ranges` with the allow-set in the block masks: the
    /// `keep` smallest (sum, offset) of the allowed points, in offset order.
    fn masked_stage1(&self, lut: &[u8], keep: usize, ranges: &[Range<usize>], allow: &AllowSet) -> Vec<(u16, u32)> {
        let mut state = ScanState { lut: lut.to_vec(), found: Vec::with_capacity(2 * keep + BLOCK), threshold: u16::MAX };
        SCRATCH.with_borrow_mut(|scratch| {
            let need = self.shape.m * kernels::MAX_ENTRY as usize + 1;
            if scratch.hist.len() < need {
                scratch.hist.resize(need, 0);
            }
            self.fast_scan_with(std::slice::from_mut(&mut state), keep, ranges, scratch, Some(allow));
        });
        state.found
    }

    /// Whether any of the `k` best of `found` (stage 1's candidates, in
    /// offset order) by SQ8 distance ranks in the worse half by sum.
    fn best_in_worse_half(&self, sq8: &Sq8Query<'_>, found: &[(u16, u32)], k: usize) -> bool {
        if found.len() <= k {
            return false;
        }
        let best = self.stage2(sq8, found, k);
        let mut sums: Vec<u16> = found.iter().map(|f| f.0).collect();
        let half = found.len() / 2;
        let (_, &mut median, _) = sums.select_nth_unstable(half);
        best.iter().any(|s| {
            let at = found.partition_point(|f| f.1 < s.offset);
            found.get(at).is_some_and(|f| f.0 > median)
        })
    }

    /// The `k` of `allow`'s points nearest to `query`: every allowed point's
    /// SQ8 distance, the `rerank` best re-ranked exactly.
    pub fn search_sq8_allowed(&self, vectors: &[f32], query: &[f32], k: usize, rerank: usize, allow: &AllowSet) -> Vec<Scored> {
        let found: Vec<(u16, u32)> = allow.offsets().into_iter().map(|o| (0, o)).collect();
        self.rerank(vectors, query, k, found, rerank.max(k))
    }

    /// Stages 2 and 3 over stage 1's candidates.
    fn rerank(&self, vectors: &[f32], query: &[f32], k: usize, found: Vec<(u16, u32)>, rerank: usize) -> Vec<Scored> {
        let sq8 = self.sq8_distance(query);
        let mut stage2 = self.stage2(&sq8, &found, rerank);
        // Stage 3: exact, rows read at increasing addresses.
        stage2.sort_unstable_by_key(|s| s.offset);
        crate::exact::rerank(vectors, self.shape.dim, query, k, &stage2)
    }

    /// Stage 2: the `rerank` smallest (SQ8 distance, offset) of `found`, unordered.
    fn stage2(&self, sq8: &Sq8Query<'_>, found: &[(u16, u32)], rerank: usize) -> Vec<Scored> {
        // Candidates come in offset order (increasing addresses); their rows
        // are prefetched AHEAD candidates before they are scored, four at a time
        // (rerank_ab, 20000 candidates: 8 ahead 33.5, 16 ahead 31.2, 32 ahead
        // 31.4 ns a candidate).
        const AHEAD: usize = 16;
        // The `rerank` smallest (distance, offset): a point above the largest
        // distance kept so far can never enter, so only the others are
        // collected, and cut back to `rerank` whenever they reach twice that.
        let mut stage2: Vec<Scored> = Vec::with_capacity(2 * rerank + 4);
        let mut limit: Option<f32> = None;
        let mut offer = |s: Scored, stage2: &mut Vec<Scored>| {
            // In the total order `Scored` sorts by (a NaN too).
            if limit.is_none_or(|l| s.distance.total_cmp(&l).is_le()) {
                stage2.push(s);
                if stage2.len() >= 2 * rerank {
                    stage2.select_nth_unstable(rerank - 1);
                    stage2.truncate(rerank);
                    limit = Some(stage2[rerank - 1].distance);
                }
            }
        };
        for &(_, p) in found.iter().take(AHEAD) {
            sq8.prefetch(p);
        }
        let mut quads = found.chunks_exact(4);
        for (i, four) in quads.by_ref().enumerate() {
            for &(_, next) in found.iter().skip(4 * i + AHEAD).take(4) {
                sq8.prefetch(next);
            }
            let p = [four[0].1, four[1].1, four[2].1, four[3].1];
            let d = sq8.distance4(p);
            for j in 0..4 {
                offer(Scored { distance: d[j], offset: p[j] }, &mut stage2);
            }
        }
        for &(_, p) in quads.remainder() {
            offer(Scored { distance: sq8.distance(p), offset: p }, &mut stage2);
        }
        if stage2.len() > rerank {
            stage2.select_nth_unstable(rerank - 1);
            stage2.truncate(rerank);
        }
        stage2
    }
}

/// A query prepared for SQ8 distances: `Σ step² (q' − c)²` with
/// `q' = (q − min) / step`, which is the squared L2 distance to the decoded
/// point `min + step · c`.
#[derive(Debug)]
pub struct Sq8Query<'a> {
    codes: &'a [u8],
    dim: usize,
    q8: Vec<f32>,
    w: Vec<f32>,
    kernel: kernels::Sq8Fn,
    kernel4: kernels::Sq8x4Fn,
}

impl Sq8Query<'_> {
    fn code(&self, p: u32) -> &[u8] {
        &self.codes[p as usize * self.dim..(p as usize + 1) * self.dim]
    }

    #[inline]
    pub fn distance(&self, p: u32) -> f32 {
        (self.kernel)(self.code(p), &self.q8, &self.w)
    }

    /// [`Sq8Query::distance`] of four points, computed side by side (the
    /// same values, bit for bit).
    #[inline]
    pub fn distance4(&self, p: [u32; 4]) -> [f32; 4] {
        (self.kernel4)(p.map(|p| self.code(p)), &self.q8, &self.w)
    }

    /// Starts loading point `p`'s code into cache.
    #[inline]
    pub fn prefetch(&self, p: u32) {
        prefetch_lines(self.code(p), self.dim.div_ceil(64));
    }
}

/// Trains the quantisers on a sample of `vectors` and encodes every point.
pub fn build(vectors: &[f32], dim: usize, opts: &ScanOptions) -> Result<ScanCodes> {
    build_with(vectors, dim, opts, None, &Cancel::never())
}

/// [`build`], taking the product quantiser's centroids from `trained` (those
/// of an earlier build of the same shape, [`ScanView::centroids`]) instead of
/// training them when they fit: a collection's seals encode with the
/// codebook its last build trained (20k x 128: 0.3 s of k-means saved).
pub fn build_with(vectors: &[f32], dim: usize, opts: &ScanOptions, trained: Option<&[f32]>, cancel: &Cancel) -> Result<ScanCodes> {
    let count = vectors.len() / dim.max(1);
    if count == 0 || vectors.len() != count * dim {
        return Err(Error::InvalidParameter { name: "vectors", reason: "empty or not a whole number of rows".into() });
    }
    // Wide vectors need wider sub-quantisers (at most 256 of them).
    let shape = ScanShape::new(dim, count, opts.dsub.max(dim.div_ceil(256)))?;
    let row = |i: usize| &vectors[i * dim..(i + 1) * dim];
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let train: Vec<usize> = if count > TRAIN_SAMPLE { sample(&mut rng, count, TRAIN_SAMPLE).into_vec() } else { (0..count).collect() };
    let (m, dsub) = (shape.m, shape.dsub);
    let view_for_ranges = ScanView { shape, centroids: &[], codes: &[], sq8_min: &[], sq8_step: &[], sq8: &[], lists: None };

    // Product quantiser: k-means per sub-quantiser on the sample.
    let fits = trained.filter(|t| t.len() == m * CENTROIDS * dsub && t.iter().all(|x| x.is_finite()));
    let centroids: Vec<f32> = if let Some(t) = fits { t.to_vec() } else { (0..m)
        .into_par_iter()
        .flat_map_iter(|s| {
            let r = view_for_ranges.sub_range(s);
            if r.is_empty() {
                return vec![0f32; CENTROIDS * dsub];
            }
            let mut sub = vec![0f32; train.len() * dsub];
            for (t, &i) in train.iter().enumerate() {
                sub[t * dsub..t * dsub + r.len()].copy_from_slice(&row(i)[r.clone()]);
            }
            kmeans::kmeans(&sub, dsub, CENTROIDS, KMEANS_ITERS, opts.seed ^ s as u64)
        })
        .collect() };
    cancel.check()?;

    let codes = ScanView { centroids: &centroids, ..view_for_ranges }.encode(vectors);
    cancel.check()?;

    // SQ8: per-dimension range over all points.
    let (lo, hi, nan) = crate::vectors::column_ranges(vectors, dim);
    let step: Vec<f32> = lo.iter().zip(&hi).map(|(l, h)| if h > l { (h - l) / 255.0 } else { 1.0 }).collect();
    if nan || lo.iter().chain(&hi).chain(&step).any(|x| !x.is_finite()) {
        return Err(Error::InvalidParameter { name: "vectors", reason: "contain non-finite values".into() });
    }
    let mut sq8 = vec![0u8; count * dim];
    sq8.par_chunks_mut(dim).zip(vectors.par_chunks(dim)).for_each(|(out, r)| {
        for (((o, &x), l), s) in out.iter_mut().zip(r).zip(&lo).zip(&step) {
            *o = ((x - l) / s).round().clamp(0.0, 255.0) as u8;
        }
    });
    Ok(ScanCodes { shape, centroids, codes, sq8_min: lo, sq8_step: step, sq8, lists: None, list_codes: Vec::new() })
}

/// The bits of a block starting at offset `base` whose points lie in `r`.
#[inline]
/// `ranges` (rising, disjoint) cut into at most `parts` runs of about
/// equal points, each cut on a block boundary, in order.
fn split_ranges(ranges: &[Range<usize>], parts: usize) -> Vec<Vec<Range<usize>>> {
    let total: usize = ranges.iter().map(|r| r.len()).sum();
    if parts <= 1 || total == 0 {
        return vec![ranges.to_vec()];
    }
    let per = total.div_ceil(parts).next_multiple_of(BLOCK);
    let mut out: Vec<Vec<Range<usize>>> = vec![Vec::new()];
    let mut filled = 0usize;
    for r in ranges {
        let mut start = r.start;
        while start < r.end {
            let room = per - filled;
            // Cut where the run is full, on a block boundary so no block
            // is read by two runs.
            let mut end = (start + room).min(r.end);
            if end < r.end {
                end = end.next_multiple_of(BLOCK).min(r.end);
            }
            out.last_mut().expect("one run at least").push(start..end);
            filled += end - start;
            start = end;
            if filled >= per && start < r.end {
                out.push(Vec::new());
                filled = 0;
            }
        }
        if filled >= per {
            out.push(Vec::new());
            filled = 0;
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

fn in_range(base: usize, r: &Range<usize>) -> u32 {
    let lo = r.start.saturating_sub(base).min(BLOCK);
    let hi = r.end.saturating_sub(base).min(BLOCK);
    if lo >= hi {
        return 0;
    }
    let upto = if hi == BLOCK { u32::MAX } else { (1u32 << hi) - 1 };
    upto & !((1u32 << lo) - 1)
}

/// Packs the codes of one block (`codes[s][j]`: sub-quantiser `s`, point `j`)
/// into the layout [`kernels`] documents.
pub fn pack_block(codes: &[[u8; BLOCK]], out: &mut [u8]) {
    for (p, pair) in codes.chunks_exact(2).enumerate() {
        let dst = &mut out[p * 32..(p + 1) * 32];
        for j in 0..16 {
            dst[j] = pair[0][j] | (pair[0][j + 16] << 4);
            dst[16 + j] = pair[1][j] | (pair[1][j + 16] << 4);
        }
    }
}

/// What a filtered search of a partitioned scan reads
/// ([`ScanView::allowed_ranges`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AllowedLists {
    /// Offset ranges in increasing order, adjacent ones merged.
    pub ranges: Vec<Range<usize>>,
    /// Points in `ranges`.
    pub points: usize,
    /// Whether the nearest lists hold their share of the allowed points.
    pub local: bool,
    /// The lists holding an allowed point left unread, nearest centroid
    /// first, with their centroids' squared distance to the query.
    pub unread: Vec<(f32, Range<usize>)>,
}

impl AllowedLists {
    /// The unread lists whose centroid is nearer to the query than
    /// `distance` (squared, the query's space), merged into ranges, and the
    /// points they hold.
    ///
    /// A list's order by centroid says little about where its *allowed*
    /// points lie when a filter cuts through the lists: the nearest lists
    /// may hold only allowed points on their far side while a tight group
    /// of allowed points sits in a list ranked 13th (or 94th) of 447. A list
    /// whose centroid is nearer than the `k`-th answer found is likely to
    /// hold nearer points: read it too. On 200k x 128 clustered with a filter
    /// keeping the half of the points on one side of the first principal
    /// direction, that is 13 lists (16k points) a query on average, and
    /// covers every true neighbour of 299 of 300 queries
    /// (`examples/filter_recall.rs`).
    pub fn nearer_than(&self, distance: f32) -> (Vec<Range<usize>>, usize) {
        let picked: Vec<Range<usize>> =
            self.unread.iter().take_while(|(d, _)| *d < distance).map(|(_, r)| r.clone()).collect();
        let points = picked.iter().map(|r| r.len()).sum();
        (merge_ranges(picked), points)
    }
}

/// `ranges` sorted and adjacent ones merged.
fn merge_ranges(mut picked: Vec<Range<usize>>) -> Vec<Range<usize>> {
    picked.sort_unstable_by_key(|r| r.start);
    let mut ranges: Vec<Range<usize>> = Vec::with_capacity(picked.len());
    for r in picked {
        match ranges.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => ranges.push(r),
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One query split over threads answers exactly as one thread does, for
    /// any split, including ranges of uneven size and a last partial block.
    #[test]
    fn a_split_search_answers_as_the_whole() {
        let dim = 16;
        let data = crate::dataset::sphere(3_001, dim, 3);
        let codes = build(data.as_slice(), dim, &ScanOptions { dsub: 4, seed: 3, lists: 0 }).unwrap();
        let view = codes.view();
        for (qi, q) in crate::dataset::sphere(20, dim, 4).rows().enumerate() {
            for (k, candidates, rerank) in [(10, 40, 50), (1, 1, 50), (10, 2_000, 50), (100, 800, 500)] {
                let whole = view.search_split(data.as_slice(), q, k, candidates, rerank, 1);
                for parts in [2, 3, 4, 7] {
                    let split = view.search_split(data.as_slice(), q, k, candidates, rerank, parts);
                    assert_eq!(split, whole, "query {qi}, k {k}, candidates {candidates}, {parts} parts");
                }
            }
        }
    }

    /// Every point's (sum, offset) by the scalar kernel.
    fn every_sum(view: &ScanView<'_>, lut: &[u8]) -> Vec<(u16, u32)> {
        let blocks = view.shape.blocks();
        let mut sums = vec![0u16; blocks * BLOCK];
        let mut masks = vec![0u32; blocks];
        kernels::block_scalar(view.codes, lut, u16::MAX, &mut sums, &mut masks);
        sums[..view.shape.count].iter().enumerate().map(|(i, &x)| (x, i as u32)).collect()
    }

    /// The `keep` smallest `(sum, offset)` pairs, in offset order.
    fn smallest_reference(all: &[(u16, u32)], keep: usize) -> Vec<(u16, u32)> {
        let mut v = all.to_vec();
        v.sort_unstable();
        v.truncate(keep);
        v.sort_unstable_by_key(|x| x.1);
        v
    }

    /// The query's table as the scan defines it, written out the plain way:
    /// each sub-quantiser's slice of the query (zero past `dim`), squared
    /// distances to its 16 centroids, less their minimum, scaled so that the
    /// widest spread is `MAX_ENTRY`, rounded half up.
    fn table_reference(view: &ScanView<'_>, query: &[f32]) -> Vec<u8> {
        let (m, dsub) = (view.shape.m, view.shape.dsub);
        assert_eq!(query.len(), view.shape.dim);
        let mut dist = vec![0f32; m * CENTROIDS];
        for s in 0..m {
            for c in 0..CENTROIDS {
                let cent = &view.centroids[(s * CENTROIDS + c) * dsub..][..dsub];
                let x = |d: usize| query.get(s * dsub + d).copied().unwrap_or(0.0);
                dist[s * CENTROIDS + c] = (0..dsub).map(|d| cent[d] - x(d)).fold(0f32, |a, v| a + v * v);
            }
        }
        let mins: Vec<f32> = dist.chunks(CENTROIDS).map(|r| r.iter().copied().fold(f32::INFINITY, f32::min)).collect();
        let range = dist.chunks(CENTROIDS).zip(&mins).map(|(r, &lo)| r.iter().copied().fold(f32::NEG_INFINITY, f32::max) - lo).fold(0f32, f32::max);
        let top = f32::from(kernels::MAX_ENTRY);
        let scale = top / range;
        dist.iter().enumerate().map(|(i, &d)| ((d - mins[i / CENTROIDS]) * scale + 0.5).min(top) as u8).collect()
    }

    #[test]
    fn the_query_table_is_the_plain_definition_at_every_width() {
        // Every width the table specialises; dim 10 leaves a partial last
        // sub-quantiser at dsub 3, 4, 6, 7 and 8, and
        // an all-padding one where m is rounded up to even.
        let dim = 10;
        let data = crate::dataset::sphere(600, dim, 3);
        for dsub in 1..=8 {
            let codes = build(data.as_slice(), dim, &ScanOptions { dsub, seed: 1, lists: 0 }).unwrap();
            let view = codes.view();
            for q in crate::dataset::sphere(5, dim, 9).rows() {
                let got = view.table(q);
                assert_eq!(got, table_reference(&view, q), "dsub {dsub}");
                for row in got.chunks(CENTROIDS) {
                    assert_eq!(row.iter().min(), Some(&0), "dsub {dsub}");
                }
            }
        }
    }

    #[test]
    fn a_dimension_the_points_share_does_not_poison_sq8_distances() {
        // Dimension 0 holds one value up to 1e-30 (a step near 1e-34);
        // the query lies at 0.5 there.
        let (n, dim) = (300usize, 8usize);
        let mut rows = Vec::with_capacity(n * dim);
        for i in 0..n {
            rows.push((i % 2) as f32 * 1e-30);
            rows.extend((1..dim).map(|j| ((i * 7 + j * 13) % 17) as f32 / 17.0));
        }
        let codes = build(&rows, dim, &ScanOptions { dsub: 4, seed: 1, lists: 0 }).unwrap();
        let view = codes.view();
        assert!(view.sq8_step[0] < 1e-30);
        let query: Vec<f32> = std::iter::once(0.5).chain((1..dim).map(|j| j as f32 / 9.0)).collect();
        let sq8 = view.sq8_distance(&query);
        let exact = |p: usize| -> f32 { rows[p * dim..(p + 1) * dim].iter().zip(&query).skip(1).map(|(a, b)| (a - b) * (a - b)).sum() };
        for p in 0..n {
            let d = sq8.distance(p as u32);
            assert!(d.is_finite(), "point {p}: {d}");
            assert!((d - exact(p)).abs() <= 0.01, "point {p}: sq8 {d} exact (without dimension 0) {}", exact(p));
        }
    }

    #[test]
    fn building_codes_over_a_nan_is_refused() {
        let mut data = crate::dataset::sphere(100, 8, 3).as_slice().to_vec();
        data[17] = f32::NAN;
        let err = build(&data, 8, &ScanOptions { dsub: 4, seed: 1, lists: 0 }).unwrap_err();
        assert!(err.to_string().contains("non-finite"), "{err}");
    }

    proptest! {
        #[test]
        fn keep_smallest_keeps_the_smallest_pairs_in_offset_order(
            sums in proptest::collection::vec(0u16..40, 2..300),
            keep_frac in 0.0f64..1.0,
        ) {
            let found: Vec<(u16, u32)> = sums.iter().enumerate().map(|(i, &x)| (x, i as u32 * 3)).collect();
            let keep = 1 + ((found.len() - 2) as f64 * keep_frac) as usize;
            let mut got = found.clone();
            let mut hist = vec![0u32; 40];
            let t = keep_smallest(&mut got, keep, &mut hist);
            prop_assert!(hist.iter().all(|&c| c == 0));
            let want = smallest_reference(&found, keep);
            prop_assert_eq!(t, want.iter().map(|x| x.0).max().unwrap());
            prop_assert_eq!(got, want);
        }
    }

    /// From [`ESTIMATE_MIN_POINTS`] points stage 1 starts from a sampled
    /// threshold: it is in use (below `u16::MAX`) and lets at least `keep`
    /// points through, and the answer is still exactly the `keep` smallest
    /// (sum, offset) pairs; a starting threshold that lets too few through
    /// is recovered by a second pass.
    #[test]
    fn a_sampled_or_too_low_starting_threshold_keeps_the_smallest_sums() {
        let dim = 16;
        let n = ESTIMATE_MIN_POINTS + 1_234;
        let data = crate::dataset::sphere(n, dim, 5);
        let codes = build(data.as_slice(), dim, &ScanOptions { dsub: 4, seed: 2, lists: 0 }).unwrap();
        let view = codes.view();
        let need = view.shape.m * kernels::MAX_ENTRY as usize + 1;
        for q in crate::dataset::sphere(3, dim, 8).rows() {
            let lut = view.table(q);
            let all = every_sum(&view, &lut);
            for keep in [1, 50, 2_000, n / ESTIMATE_MIN_RATIO] {
                let want = smallest_reference(&all, keep);
                let t = SCRATCH.with_borrow_mut(|s| {
                    s.hist.resize(need.max(s.hist.len()), 0);
                    view.estimate_threshold(&lut, keep, n, &[0..n], s)
                });
                assert!(t < u16::MAX, "keep {keep}: no estimate");
                assert!(all.iter().filter(|x| x.0 < t).count() >= keep, "keep {keep}: the estimate {t} lets too few through");
                assert_eq!(view.fast_scan(q, keep), want, "keep {keep}");
                let mut states = vec![ScanState { lut: lut.clone(), found: Vec::new(), threshold: 1 }];
                SCRATCH.with_borrow_mut(|s| view.scan_states(&mut states, keep, &[0..n], s));
                assert_eq!(states[0].found, want, "keep {keep}, starting threshold 1");
            }
        }
    }

    #[test]
    fn both_stage_one_loops_keep_the_smallest_sums_of_any_ranges() {
        // Sub-quantisers 2, 4 (sums below 509: many ties), 64 (384-d at the
        // default dsub 6) and 256: select-once buckets by the top 8 of 8,
        // 9, 13 and 15 bits.
        let n = 2_000;
        let cases: [&[Range<usize>]; 5] =
            [&[0..n], &[5..6], &[3..40, 40..41, 77..300, 301..1999], &[31..33, 64..96, 1000..1001], &[10..10, 500..700]];
        for (dim, dsub) in [(8, 4), (16, 4), (384, 6), (1024, 4)] {
            let data = crate::dataset::sphere(n, dim, 4);
            let codes = build(data.as_slice(), dim, &ScanOptions { dsub, seed: 3, lists: 0 }).unwrap();
            let view = codes.view();
            let need = view.shape.m * kernels::MAX_ENTRY as usize + 1;
            for q in crate::dataset::sphere(4, dim, 6).rows() {
                let lut = view.table(q);
                let all = every_sum(&view, &lut);
                for ranges in cases {
                    let inside: Vec<(u16, u32)> =
                        all.iter().copied().filter(|&(_, p)| ranges.iter().any(|r| r.contains(&(p as usize)))).collect();
                    for keep in [1, 2, 7, 32, 100, 333, inside.len().max(1), inside.len() + 3] {
                        let want = smallest_reference(&inside, keep);
                        let state = || ScanState { lut: lut.clone(), found: Vec::new(), threshold: u16::MAX };
                        let (mut one, mut other) = (state(), state());
                        SCRATCH.with_borrow_mut(|s| {
                            s.hist.resize(need.max(s.hist.len()), 0);
                            view.scan_all(&mut one, keep, ranges, s);
                            view.fast_scan_with(std::slice::from_mut(&mut other), keep, ranges, s, None);
                        });
                        assert_eq!(one.found, want, "select once: {dim}-d dsub {dsub}, ranges {ranges:?} keep {keep}");
                        assert_eq!(other.found, want, "cut as found: {dim}-d dsub {dsub}, ranges {ranges:?} keep {keep}");
                    }
                }
            }
        }
    }

    #[test]
    fn fast_scan_returns_the_smallest_sums_in_offset_order() {
        let dim = 16;
        let n = 3000 + 17;
        let data = crate::dataset::sphere(n, dim, 3);
        for dsub in [2, 4] {
            let codes = build(data.as_slice(), dim, &ScanOptions { dsub, seed: 1, lists: 0 }).unwrap();
            let view = codes.view();
            let queries = crate::dataset::sphere(5, dim, 9);
            for q in queries.rows() {
                let lut = view.table(q);
                let all = every_sum(&view, &lut);
                for keep in [1, 10, 50, 333, 1000, n - 1, n, n + 5] {
                    let want = smallest_reference(&all, keep);
                    assert_eq!(view.fast_scan(q, keep), want, "dsub {dsub} keep {keep}");
                    let many = view.fast_scan_many(&[q, q], keep);
                    assert!(many.iter().all(|f| *f == want), "dsub {dsub} keep {keep} (batch)");
                }
            }
        }
    }
}
