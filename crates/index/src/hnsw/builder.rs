//! Building an HNSW graph in parallel (rayon), the hnswlib way: every point
//! gets its level up front from a seeded RNG; points are inserted
//! concurrently; writers change a point's links under that point's lock (only
//! one lock held at a time, so no deadlock), searches read layer 0 without
//! locks; a point that raises the top level holds the
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
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// Highest level a point may get; with m >= 2 reaching it is astronomically unlikely.
const MAX_LEVEL: u8 = 15;

/// How to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// Layer 0 in the final flat layout, `[len, link…]` per point with stride
    /// `1 + m0`, as atomics: searches read it without taking a lock (every
    /// value they can see is a valid point offset), writers hold `locks[p]`.
    /// One flat array instead of a `Mutex<Vec<Vec<_>>>` per point saves two
    /// dependent cache misses per expanded point (measured with `perf annotate`).
    level0: Vec<AtomicU32>,
    /// Distance from each point to each of its layer-0 links, `m0` per point,
    /// cached so that pruning a full list does not recompute them.
    level0_dist: Vec<AtomicU32>,
    locks: Vec<Mutex<()>>,
    /// Layers 1.. per point (empty for most points), with distances.
    upper: Vec<Mutex<Vec<Vec<Scored>>>>,
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

    #[inline]
    fn block0(&self, p: u32) -> &[AtomicU32] {
        let stride = 1 + self.params.m0 as usize;
        &self.level0[p as usize * stride..(p as usize + 1) * stride]
    }

    fn copy_links(&self, p: u32, level: u8, out: &mut Vec<u32>) {
        out.clear();
        if level == 0 {
            let block = self.block0(p);
            let len = (block[0].load(Ordering::Relaxed) as usize).min(block.len() - 1);
            out.extend(block[1..1 + len].iter().map(|a| a.load(Ordering::Relaxed)));
        } else if let Some(l) = self.upper[p as usize].lock().get(level as usize - 1) {
            out.extend(l.iter().map(|s| s.offset));
        }
    }

    /// Runs `f` on `p`'s links (with distances) on `level`, under `p`'s lock.
    fn with_links<R>(&self, p: u32, level: u8, f: impl FnOnce(&mut Vec<Scored>) -> R) -> R {
        if level > 0 {
            return f(&mut self.upper[p as usize].lock()[level as usize - 1]);
        }
        let _guard = self.locks[p as usize].lock();
        let block = self.block0(p);
        let m0 = self.params.m0 as usize;
        let dists = &self.level0_dist[p as usize * m0..(p as usize + 1) * m0];
        let len = block[0].load(Ordering::Relaxed) as usize;
        let mut list: Vec<Scored> = (0..len)
            .map(|i| Scored {
                offset: block[1 + i].load(Ordering::Relaxed),
                distance: f32::from_bits(dists[i].load(Ordering::Relaxed)),
            })
            .collect();
        let r = f(&mut list);
        debug_assert!(list.len() <= m0);
        for (i, s) in list.iter().enumerate() {
            dists[i].store(s.distance.to_bits(), Ordering::Relaxed);
            block[1 + i].store(s.offset, Ordering::Relaxed);
        }
        block[0].store(list.len() as u32, Ordering::Release);
        r
    }

    /// hnswlib's heuristic: walk candidates nearest first, keep one only if it
    /// is closer to the base point than to every point already kept.
    fn select(&self, candidates: &[Scored], m: usize) -> Vec<Scored> {
        let mut kept: Vec<Scored> = Vec::with_capacity(m);
        for c in candidates {
            if kept.len() >= m {
                break;
            }
            if kept.iter().all(|k| self.dist(c.offset, k.offset) >= c.distance) {
                kept.push(*c);
            }
        }
        kept
    }

    /// Greedy descent for point `q` from the entry point `ep` on layer `top`
    /// down to layer `stop + 1`; returns the nearest point found there.
    fn descend(&self, q: u32, ep: u32, top: u8, stop: u8) -> Scored {
        let query = self.vector(q);
        let dist = |p: u32| (kernels().l2_squared)(self.vector(p), query);
        let links = |p: u32, l: u8, out: &mut Vec<u32>| self.copy_links(p, l, out);
        let mut cur = Scored { distance: dist(ep), offset: ep };
        for l in (stop + 1..=top).rev() {
            cur = greedy_step(cur, l, links, dist);
        }
        cur
    }

    /// Beam search of width `ef_construction` for point `q` on one layer.
    fn search_for(&self, q: u32, entry: &[Scored], level: u8, visited: &mut VisitedList) -> Vec<Scored> {
        let query = self.vector(q);
        let dist = |p: u32| (kernels().l2_squared)(self.vector(p), query);
        let links = |p: u32, l: u8, out: &mut Vec<u32>| self.copy_links(p, l, out);
        let prefetch = |p: u32| crate::distance::prefetch(self.vector(p));
        search_layer(entry, self.params.ef_construction as usize, level, visited, links, dist, prefetch)
    }

    fn insert(&self, q: u32, visited: &mut VisitedList) {
        let level = self.levels[q as usize];
        let mut global = Some(self.entry.lock());
        let (ep, top) = **global.as_ref().unwrap();
        if level <= top {
            global = None; // release: this point does not change the entry point
        }
        let mut entry = vec![self.descend(q, ep, top, level)];
        for l in (0..=level.min(top)).rev() {
            let found = self.search_for(q, &entry, l, visited);
            let chosen = self.select(&found, self.params.m as usize);
            let cap = if l == 0 { self.params.m0 } else { self.params.m } as usize;
            self.set_own_links(q, l, &chosen, cap);
            for n in &chosen {
                self.connect(n.offset, Scored { distance: n.distance, offset: q }, l, cap);
            }
            entry = found;
        }
        if let Some(mut g) = global {
            if level > g.1 {
                *g = (q, level);
            }
        }
    }

    /// Sets `q`'s links on `level` to `chosen`, keeping links that concurrent
    /// insertions added to `q` while it was searching (overwriting them would
    /// orphan those points: `parallel_builds_leave_no_point_unreachable`).
    fn set_own_links(&self, q: u32, level: u8, chosen: &[Scored], cap: usize) {
        self.with_links(q, level, |list| {
            let mut merged = chosen.to_vec();
            merged.extend(list.iter().filter(|p| !chosen.iter().any(|c| c.offset == p.offset)));
            if merged.len() > cap {
                merged.sort_unstable();
                merged = self.select(&merged, cap);
            }
            *list = merged;
        });
    }

    /// Adds the link `n -> new.offset` (`new.distance` is their distance) on
    /// `level`. A full list is pruned with the heuristic, unless the newcomer
    /// is farther than every current link: a list the heuristic produced is a
    /// fixed point of it, so it would come out unchanged and the newcomer
    /// dropped. Skipping that case saves the O(cap²) pairwise distances; it
    /// is only approximate for lists filled by plain pushes.
    fn connect(&self, n: u32, new: Scored, level: u8, cap: usize) {
        self.with_links(n, level, |list| {
            if list.iter().any(|s| s.offset == new.offset) {
                return;
            }
            if list.len() < cap {
                list.push(new);
                return;
            }
            if list.iter().all(|s| s.distance <= new.distance) {
                return;
            }
            list.push(new);
            list.sort_unstable();
            *list = self.select(list, cap);
        });
    }

    /// Makes every point reachable on layer 0 from the entry point.
    ///
    /// Concurrent insertion can, rarely, leave a point with no in-links (its
    /// neighbours pruned it while their own lists were changing underneath): at
    /// 1 000 points built with 4 threads on 2 cores, 2 builds in 72 had 1–2
    /// such points before this pass; 72 single-threaded builds had none. For
    /// each one we link it from its nearest reachable point, preferring one
    /// with a free slot. Returns how many points were repaired.
    fn repair_reachability(&self) -> usize {
        let n = self.levels.len();
        let (ep, top) = *self.entry.lock();
        let mut visited = VisitedList::new(n);
        let mut repaired = 0;
        let cap = self.params.m0 as usize;
        for _round in 0..8 {
            let reachable = self.reachable_on_layer0(ep);
            let orphans: Vec<u32> = (0..n as u32).filter(|&p| !reachable[p as usize]).collect();
            if orphans.is_empty() {
                break;
            }
            for &p in &orphans {
                let cur = self.descend(p, ep, top, 0);
                let found = self.search_for(p, &[cur], 0, &mut visited);
                let near: Vec<&Scored> = found.iter().filter(|s| s.offset != p && reachable[s.offset as usize]).collect();
                let with_room = near.iter().find(|s| self.block0(s.offset)[0].load(Ordering::Relaxed) < cap as u32);
                let Some(target) = with_room.or(near.first()) else { continue };
                self.with_links(target.offset, 0, |list| {
                    if list.len() >= cap {
                        // Replace the target's farthest link; a point orphaned by that is repaired next round.
                        let far = (0..list.len()).max_by(|&a, &b| list[a].distance.total_cmp(&list[b].distance));
                        list.remove(far.expect("full list is not empty"));
                    }
                    list.push(Scored { distance: target.distance, offset: p });
                });
                repaired += 1;
            }
        }
        repaired
    }

    fn reachable_on_layer0(&self, from: u32) -> Vec<bool> {
        let mut seen = vec![false; self.levels.len()];
        let mut stack = vec![from];
        seen[from as usize] = true;
        let mut buf = Vec::new();
        while let Some(p) = stack.pop() {
            self.copy_links(p, 0, &mut buf);
            for &x in &buf {
                if !std::mem::replace(&mut seen[x as usize], true) {
                    stack.push(x);
                }
            }
        }
        seen
    }

    fn freeze(self) -> HnswGraph {
        let m = self.params.m as usize;
        let (ep, top) = *self.entry.lock();
        let level0: Vec<u32> = self.level0.into_iter().map(AtomicU32::into_inner).collect();
        let mut upper_offsets = vec![NO_UPPER; self.levels.len()];
        let mut upper = Vec::new();
        for (p, node) in self.upper.into_iter().enumerate() {
            let node = node.into_inner();
            if node.is_empty() {
                continue;
            }
            upper_offsets[p] = upper.len() as u32;
            for l in &node {
                let start = upper.len();
                upper.resize(start + 1 + m, 0);
                upper[start] = l.len() as u32;
                for (slot, s) in upper[start + 1..].iter_mut().zip(l) {
                    *slot = s.offset;
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
    if dim == 0 || dim > crate::format::MAX_DIM || data.len() % dim != 0 {
        return Err(Error::InvalidParameter {
            name: "dim",
            reason: format!("{} values in rows of {dim}: need 1..={} dimensions dividing the data", data.len(), crate::format::MAX_DIM),
        });
    }
    let n = data.len() / dim;
    if n == 0 || n > crate::format::MAX_POINTS {
        return Err(Error::InvalidParameter { name: "count", reason: format!("{n} vectors; need 1..={}", crate::format::MAX_POINTS) });
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
    let m0 = params.m0 as usize;
    let upper = levels
        .iter()
        .map(|&l| Mutex::new((0..l).map(|_| Vec::with_capacity(params.m as usize)).collect()))
        .collect();
    let builder = Builder {
        data,
        dim,
        params,
        level0: (0..n * (1 + m0)).map(|_| AtomicU32::new(0)).collect(),
        level0_dist: (0..n * m0).map(|_| AtomicU32::new(0)).collect(),
        locks: (0..n).map(|_| Mutex::new(())).collect(),
        upper,
        entry: Mutex::new((0, levels[0])),
        levels,
    };

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
    builder.repair_reachability();
    progress((n as u64 - 1) % 1024);
    Ok(builder.freeze())
}
