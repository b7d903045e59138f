//! Epoch-stamped visited set: clearing is one increment instead of a memset of
//! the whole array, which matters when a search touches a few thousand of a
//! million points.

use parking_lot::Mutex;

#[derive(Debug)]
pub struct VisitedList {
    marks: Vec<u16>,
    epoch: u16,
}

impl VisitedList {
    pub fn new(capacity: usize) -> Self {
        VisitedList { marks: vec![0; capacity], epoch: 0 }
    }

    /// How many points the list can mark.
    pub fn capacity(&self) -> usize {
        self.marks.len()
    }

    /// Forgets every mark.
    pub fn clear(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `i`; returns `true` if it was not marked before.
    #[inline]
    pub fn insert(&mut self, i: u32) -> bool {
        let slot = &mut self.marks[i as usize];
        let fresh = *slot != self.epoch;
        *slot = self.epoch;
        fresh
    }
}

/// A pool of visited lists so concurrent searches do not allocate per query.
#[derive(Debug)]
pub struct VisitedPool {
    capacity: usize,
    free: Mutex<Vec<VisitedList>>,
}

impl VisitedPool {
    pub fn new(capacity: usize) -> Self {
        VisitedPool { capacity, free: Mutex::new(Vec::new()) }
    }

    /// Runs `f` with a cleared list, returning the list to the pool afterwards.
    pub fn with<R>(&self, f: impl FnOnce(&mut VisitedList) -> R) -> R {
        let mut list = self.free.lock().pop().unwrap_or_else(|| VisitedList::new(self.capacity));
        list.clear();
        let r = f(&mut list);
        self.free.lock().push(list);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_forgets_marks_even_across_epoch_wrap() {
        let mut v = VisitedList::new(4);
        v.clear();
        assert!(v.insert(2));
        assert!(!v.insert(2));
        for _ in 0..70_000 {
            v.clear();
            assert!(v.insert(2));
        }
        assert!(v.insert(3));
    }
}
