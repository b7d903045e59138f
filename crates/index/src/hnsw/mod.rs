//! HNSW (Malkov & Yashunin, 2016): a layered proximity graph. Layer 0 holds
//! every point with up to `m0 = 2m` links; each higher layer holds a random,
//! exponentially smaller subset with up to `m` links. A search descends
//! greedily from the entry point through the upper layers, then runs a
//! best-first beam of width `ef` on layer 0.
//!
//! Reading a graph ([`GraphView`], [`search`]) lives here; building one lives
//! in [`builder`], as qdrant splits `graph_layers.rs` from
//! `graph_layers_builder.rs`.
//!
//! Flat link layout (the same in memory and in the index file):
//! - `level0`: `count` blocks of `1 + m0` u32: `[len, link_0 .. link_{m0-1}]`.
//! - `upper_offsets[p]`: where point `p`'s layer-1 block starts in `upper`
//!   (`u32::MAX` when `p` lives only on layer 0); layer `l` is at
//!   `upper_offsets[p] + (l - 1) * (1 + m)`.
//! - `upper`: blocks of `1 + m` u32: `[len, link_0 .. link_{m-1}]`.

pub mod builder;

use crate::topk::Scored;
use crate::visited::VisitedList;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

pub use builder::{BuildOptions, HnswGraph};

/// Sentinel in `upper_offsets` for points that live only on layer 0.
pub const NO_UPPER: u32 = u32::MAX;

/// HNSW parameters that shape the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HnswParams {
    /// Links per point on the upper layers.
    pub m: u32,
    /// Links per point on layer 0 (2·m, as in hnswlib and Faiss).
    pub m0: u32,
    /// Beam width used while building.
    pub ef_construction: u32,
}

/// A borrowed, read-only graph: from a freshly built [`HnswGraph`] or from a
/// memory-mapped index file.
#[derive(Clone, Copy, Debug)]
pub struct GraphView<'a> {
    pub params: HnswParams,
    pub entry_point: u32,
    pub max_level: u8,
    pub levels: &'a [u8],
    pub level0: &'a [u32],
    pub upper_offsets: &'a [u32],
    pub upper: &'a [u32],
}

impl<'a> GraphView<'a> {
    /// The links of `p` on `level`. Valid views (checked at load) never panic here.
    #[inline]
    pub fn links(&self, p: u32, level: u8) -> &'a [u32] {
        if level == 0 {
            let stride = 1 + self.params.m0 as usize;
            let block = &self.level0[p as usize * stride..(p as usize + 1) * stride];
            &block[1..1 + block[0] as usize]
        } else {
            let stride = 1 + self.params.m as usize;
            let start = self.upper_offsets[p as usize] as usize + (level as usize - 1) * stride;
            let block = &self.upper[start..start + stride];
            &block[1..1 + block[0] as usize]
        }
    }
}

/// Greedy descent on one upper layer: moves to the nearest neighbour until no
/// neighbour is closer.
pub(crate) fn greedy_step<L, D>(mut cur: Scored, level: u8, mut links: L, dist: D) -> Scored
where
    L: FnMut(u32, u8, &mut Vec<u32>),
    D: Fn(u32) -> f32,
{
    let mut buf = Vec::new();
    loop {
        let mut improved = false;
        links(cur.offset, level, &mut buf);
        for &n in &buf {
            let d = dist(n);
            if d < cur.distance {
                cur = Scored { distance: d, offset: n };
                improved = true;
            }
        }
        if !improved {
            return cur;
        }
    }
}

/// Best-first beam search of width `ef` on one layer, from `entry`. Returns the
/// `ef` nearest points found, ascending.
pub(crate) fn search_layer<L, D, P>(
    entry: &[Scored],
    ef: usize,
    level: u8,
    visited: &mut VisitedList,
    mut links: L,
    dist: D,
    prefetch: P,
) -> Vec<Scored>
where
    L: FnMut(u32, u8, &mut Vec<u32>),
    D: Fn(u32) -> f32,
    P: Fn(u32),
{
    visited.clear();
    let mut candidates: BinaryHeap<Reverse<Scored>> = BinaryHeap::with_capacity(ef * 2);
    let mut results: BinaryHeap<Scored> = BinaryHeap::with_capacity(ef + 1);
    for &e in entry {
        if visited.insert(e.offset) {
            candidates.push(Reverse(e));
            results.push(e);
        }
    }
    while results.len() > ef {
        results.pop();
    }
    let mut buf = Vec::new();
    while let Some(Reverse(c)) = candidates.pop() {
        let worst = results.peek().map_or(f32::INFINITY, |s| s.distance);
        if c.distance > worst && results.len() >= ef {
            break;
        }
        links(c.offset, level, &mut buf);
        buf.retain(|&n| visited.insert(n));
        for &n in &buf {
            prefetch(n);
        }
        for &n in &buf {
            let d = dist(n);
            if results.len() < ef || d < results.peek().map_or(f32::INFINITY, |s| s.distance) {
                let s = Scored { distance: d, offset: n };
                candidates.push(Reverse(s));
                results.push(s);
                if results.len() > ef {
                    results.pop();
                }
            }
        }
    }
    results.into_sorted_vec()
}

/// k-NN search on a read-only graph. `dist(p)` is the distance from the query
/// to point `p`; `prefetch(p)` hints that `p`'s vector is needed soon (may do
/// nothing). Returns at most `k` points, ascending.
pub fn search(
    graph: &GraphView<'_>,
    k: usize,
    ef: usize,
    visited: &mut VisitedList,
    dist: impl Fn(u32) -> f32,
    prefetch: impl Fn(u32),
) -> Vec<Scored> {
    let n = graph.levels.len();
    if n == 0 || k == 0 {
        return Vec::new();
    }
    // A beam wider than the graph is the whole graph; clamping also bounds
    // the heaps' allocations whatever a caller asks for.
    let (k, ef) = (k.min(n), ef.max(k).min(n));
    let copy_links = |p: u32, l: u8, out: &mut Vec<u32>| {
        out.clear();
        out.extend_from_slice(graph.links(p, l));
    };
    let ep = graph.entry_point;
    let mut cur = Scored { distance: dist(ep), offset: ep };
    for level in (1..=graph.max_level).rev() {
        cur = greedy_step(cur, level, copy_links, &dist);
    }
    let mut found = search_layer(&[cur], ef, 0, visited, copy_links, &dist, prefetch);
    found.truncate(k);
    found
}
