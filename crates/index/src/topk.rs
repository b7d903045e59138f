//! Small ordered types shared by the search paths: a scored point and a
//! bounded max-heap that keeps the k smallest distances.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A point offset (position in the index) with its distance to a query.
/// Ordered by distance, then offset, with `f32::total_cmp` (no NaN surprises).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    pub distance: f32,
    pub offset: u32,
}

impl Eq for Scored {}
impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance.total_cmp(&other.distance).then(self.offset.cmp(&other.offset))
    }
}
impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The `k` best of two answers to one query that both carry exact distances
/// (a point in both appears once), ascending.
pub(crate) fn merge(mut found: Vec<Scored>, more: Vec<Scored>, k: usize) -> Vec<Scored> {
    found.extend(more);
    found.sort_unstable();
    found.dedup_by_key(|s| s.offset);
    found.truncate(k);
    found
}

/// Keeps the `k` smallest [`Scored`] values pushed into it.
#[derive(Debug)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Scored>,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        // Capacity is a hint; a huge k must not become a huge allocation up front.
        TopK { k, heap: BinaryHeap::with_capacity(k.min(4096) + 1) }
    }
    /// The distance a new point must beat to enter, or +inf while not full.
    #[inline]
    pub fn threshold(&self) -> f32 {
        if self.heap.len() < self.k { f32::INFINITY } else { self.heap.peek().map_or(f32::INFINITY, |s| s.distance) }
    }
    #[inline]
    pub fn push(&mut self, s: Scored) {
        if self.heap.len() < self.k {
            self.heap.push(s);
        } else if let Some(mut top) = self.heap.peek_mut() {
            if s < *top {
                *top = s;
            }
        }
    }
    /// The kept values, ascending.
    pub fn into_sorted(self) -> Vec<Scored> {
        self.heap.into_sorted_vec()
    }
}
