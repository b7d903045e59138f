//! Building an HNSW graph in parallel (rayon), the hnswlib way: every point
//! gets its level up front from a seeded RNG; points are inserted
//! concurrently, each point's links behind its own mutex (only one lock held
//! at a time, so no deadlock); a point that raises the top level holds the
//! global entry-point lock for its whole insertion. Neighbours are chosen with
//! the diversity heuristic (hnswlib `getNeighborsByHeuristic2`).

use super::{GraphView, HnswParams, NO_UPPER, greedy_step, search_layer};
use crate::distance::kernels;
use crate::error::{Error, Result};
use crate::topk::Scored;
use crate::visited::VisitedList;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Highest level a point may get; with m >= 2 reaching it is astronomically unlikely.
const MAX_LEVEL: u8 = 15;

/// How to build.
#[derive(Clone, Copy, Debug)]
pub struct BuildOptions {
    pub m: u32,
    pub ef_construction: u32,
    /// Worker threads; `None` uses every core.
    pub threads: Option<usize>,
    /// Seed for the level draw.
    pub seed: u64,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions { m: 32, ef_construction: 200, threads: None, seed: 42 }
    }
}

/// A built graph in the flat layout of [`super`], owned.
#[derive(Clone, Debug)]
pub struct HnswGraph {
    pub params: HnswParams,
    pub entry_point: u32,
    pub max_level: u8,
    pub levels: Vec<u8>,
    pub level0: Vec<u32>,
    pub upper_offsets: Vec<u32>,
    pub upper: Vec<u32>,
}

impl HnswGraph {
    pub fn view(&self) -> GraphView<'_> {
        GraphView {
            params: self.params,
            entry_point: self.entry_point,
            max_level: self.max_level,
            levels: &self.levels,
            level0: &self.level0,
            upper_offsets: &self.upper_offsets,
            upper: &self.upper,
        }
    }
}

struct Builder<'a> {
    data: &'a [f32],
    dim: usize,
    params: HnswParams,
    levels: Vec<u8>,
    links: Vec<Mutex<Vec<Vec<u32>>>>,
    /// (entry point, top level)
    entry: Mutex<(u32, u8)>,
}

impl Builder<'_> {
    #[inline]
    fn vector(&self, p: u32) -> &[f32] {
        &self.data[p as usize * self.dim..(p as usize + 1) * self.dim]
    }

    #[inline]
    fn dist(&self, a: u32, b: u32) -> f32 {
        (kernels().l2_squared)(self.vector(a), self.vector(b))
    }

    fn copy_links(&self, p: u32, level: u8, out: &mut Vec<u32>) {
        out.clear();
        let node = self.links[p as usize].lock();
        if let Some(l) = node.get(level as usize) {
            out.extend_from_slice(l);
        }
    }

    /// hnswlib's heuristic: walk candidates nearest first, keep one only if it
    /// is closer to the base point than to every point already kept.
    fn select(&self, candidates: &[Scored], m: usize) -> Vec<u32> {
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        for c in candidates {
            if kept.len() >= m {
                break;
            }
            if kept.iter().all(|&k| self.dist(c.offset, k) >= c.distance) {
                kept.push(c.offset);
            }
        }
        kept
    }

    fn insert(&self, q: u32, visited: &mut VisitedList) {
        let level = self.levels[q as usize];
        let mut global = Some(self.entry.lock());
        let (ep, top) = **global.as_ref().unwrap();
        if level <= top {
            global = None; // release: this point does not change the entry point
        }
        let query = self.vector(q);
        let dist = |p: u32| (kernels().l2_squared)(self.vector(p), query);
        let links = |p: u32, l: u8, out: &mut Vec<u32>| self.copy_links(p, l, out);

        let mut cur = Scored { distance: dist(ep), offset: ep };
        for l in (level + 1..=top).rev() {
            cur = greedy_step(cur, l, links, dist);
        }
        let mut entry = vec![cur];
        for l in (0..=level.min(top)).rev() {
            let found = search_layer(&entry, self.params.ef_construction as usize, l, visited, links, dist);
            let chosen = self.select(&found, self.params.m as usize);
            self.links[q as usize].lock()[l as usize] = chosen.clone();
            let cap = if l == 0 { self.params.m0 } else { self.params.m } as usize;
            for &n in &chosen {
                self.connect(n, q, l, cap);
            }
            entry = found;
        }
        if let Some(mut g) = global {
            if level > g.1 {
                *g = (q, level);
            }
        }
    }

    /// Adds the link `n -> q` on `level`, pruning `n`'s list with the heuristic if full.
    fn connect(&self, n: u32, q: u32, level: u8, cap: usize) {
        let mut node = self.links[n as usize].lock();
        let list = &mut node[level as usize];
        if list.contains(&q) {
            return;
        }
        if list.len() < cap {
            list.push(q);
            return;
        }
        let mut cands: Vec<Scored> = list
            .iter()
            .chain(std::iter::once(&q))
            .map(|&p| Scored { distance: self.dist(n, p), offset: p })
            .collect();
        cands.sort_unstable();
        *list = self.select(&cands, cap);
    }

    fn freeze(self) -> HnswGraph {
        let HnswParams { m, m0, .. } = self.params;
        let n = self.levels.len();
        let (ep, top) = *self.entry.lock();
        let mut level0 = vec![0u32; n * (1 + m0 as usize)];
        let mut upper_offsets = vec![NO_UPPER; n];
        let mut upper = Vec::new();
        for (p, node) in self.links.into_iter().enumerate() {
            let node = node.into_inner();
            let block = &mut level0[p * (1 + m0 as usize)..(p + 1) * (1 + m0 as usize)];
            block[0] = node[0].len() as u32;
            block[1..1 + node[0].len()].copy_from_slice(&node[0]);
            if node.len() > 1 {
                upper_offsets[p] = upper.len() as u32;
                for l in &node[1..] {
                    let start = upper.len();
                    upper.resize(start + 1 + m as usize, 0);
                    upper[start] = l.len() as u32;
                    upper[start + 1..start + 1 + l.len()].copy_from_slice(l);
                }
            }
        }
        HnswGraph { params: self.params, entry_point: ep, max_level: top, levels: self.levels, level0, upper_offsets, upper }
    }
}

/// Builds an HNSW graph over `data` (row-major, `dim` wide). `progress` is
/// called now and then with the number of points inserted since its last call.
pub fn build(data: &[f32], dim: usize, opts: &BuildOptions, progress: &(dyn Fn(u64) + Sync)) -> Result<HnswGraph> {
    if opts.m < 2 || opts.m > 256 {
        return Err(Error::InvalidParameter { name: "m", reason: format!("{} is outside 2..=256", opts.m) });
    }
    if opts.ef_construction < 1 || opts.ef_construction > 100_000 {
        return Err(Error::InvalidParameter { name: "ef_construction", reason: format!("{} is outside 1..=100000", opts.ef_construction) });
    }
    if dim == 0 || data.len() % dim != 0 {
        return Err(Error::InvalidParameter { name: "dim", reason: format!("{} values do not split into rows of {dim}", data.len()) });
    }
    let n = data.len() / dim;
    if n == 0 || n > u32::MAX as usize - 1 {
        return Err(Error::InvalidParameter { name: "count", reason: format!("{n} vectors; need 1 ..= {}", u32::MAX - 1) });
    }
    if let Some(i) = data.iter().position(|x| !x.is_finite()) {
        return Err(Error::NonFinite { index: i / dim });
    }
    let params = HnswParams { m: opts.m, m0: 2 * opts.m, ef_construction: opts.ef_construction };
    let ml = 1.0 / (opts.m as f64).ln();
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let levels: Vec<u8> = (0..n)
        .map(|_| {
            let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
            ((-u.ln() * ml) as u64).min(MAX_LEVEL as u64) as u8
        })
        .collect();
    let links = levels
        .iter()
        .map(|&l| Mutex::new((0..=l).map(|lv| Vec::with_capacity(if lv == 0 { params.m0 } else { params.m } as usize)).collect()))
        .collect();
    let builder = Builder { data, dim, params, entry: Mutex::new((0, levels[0])), levels, links };

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads.unwrap_or(0))
        .build()
        .map_err(|e| Error::InvalidParameter { name: "threads", reason: e.to_string() })?;
    let done = AtomicUsize::new(0);
    thread_local! {
        static VISITED: RefCell<Option<VisitedList>> = const { RefCell::new(None) };
    }
    progress(1); // point 0, the first entry point
    pool.install(|| {
        (1..n as u32).into_par_iter().for_each(|q| {
            VISITED.with(|v| {
                let mut v = v.borrow_mut();
                if v.as_ref().is_none_or(|l| l.capacity() < n) {
                    *v = Some(VisitedList::new(n));
                }
                builder.insert(q, v.as_mut().expect("just set"));
            });
            if done.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
                progress(1024);
            }
        });
    });
    progress((n as u64 - 1) % 1024);
    Ok(builder.freeze())
}
