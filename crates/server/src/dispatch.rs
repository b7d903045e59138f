//! Where a single search runs: on the async worker that read its request, or
//! on the blocking pool.
//!
//! Handing a search to the blocking pool costs two thread wake-ups (the
//! pool's thread, then the worker awaiting the answer): about 0.045 ms of a
//! 0.08 ms request inside the service on 100k × 384 points
//! (`bench/binary/binary_cost.py --near`, 2026-12-07). A search known to be
//! short runs on the worker instead. "Known" is learnt: each kind of search
//! (its [`crate::cache::Key::cost`]: target, k, profile, the filter's keys) keeps an
//! estimate of its recent engine time, which rises at once to a slower search
//! and decays slowly; a kind never seen, or last seen slower than
//! [`INLINE_BUDGET`], goes to the pool (where it is timed too). At most
//! `workers - 1` searches run on workers at once (one on a 1-worker runtime),
//! so a search that turns out slow (a query far from the data, widened) holds
//! one worker, never all of them.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::error::ApiError;

/// Longest recent engine time of a kind of search that still runs on the
/// async worker.
pub(crate) const INLINE_BUDGET: Duration = Duration::from_micros(500);

/// Kinds of search remembered (a direct-mapped table; a kind that loses its
/// place is unknown again, so goes to the pool once).
const SLOTS: usize = 1024;

/// How fast an estimate falls back after a slow search: by 1/16 of the gap
/// a search (from 2 ms to under 0.5 ms in about 22 cheap searches).
const DECAY_SHIFT: u32 = 4;

/// The learnt costs and the count of searches running on workers.
#[derive(Debug)]
pub(crate) struct Dispatch {
    /// Per slot: the kind's tag (high 32 bits, never 0) and its estimate in
    /// microseconds (low 32 bits); 0 is an empty slot.
    costs: Box<[AtomicU64]>,
    inline_now: AtomicUsize,
    inline_most: usize,
    /// Searches running on the blocking pool now.
    pool_now: AtomicUsize,
    /// Searches run on a worker, and on the pool, since the start.
    on_worker: AtomicU64,
    on_pool: AtomicU64,
    /// Places for searches on the blocking pool: as many as the workers, so
    /// that slow searches never hold every blocking thread and writes (and
    /// the other blocking work) still find one. A helper's four crafted
    /// slow filters held all four and stalled writes to other collections
    /// for 11–15 s.
    pool_slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Dispatch {
    /// For a runtime of `workers` async workers.
    pub(crate) fn new(workers: usize) -> Dispatch {
        Dispatch {
            costs: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            inline_now: AtomicUsize::new(0),
            pool_now: AtomicUsize::new(0),
            inline_most: workers.saturating_sub(1).max(1),
            on_worker: AtomicU64::new(0),
            on_pool: AtomicU64::new(0),
            pool_slots: std::sync::Arc::new(tokio::sync::Semaphore::new(workers.max(1))),
        }
    }

    fn slot(&self, key: u64) -> (&AtomicU64, u64) {
        let tag = (key >> 32) | 1;
        (&self.costs[(key as usize) % SLOTS], tag)
    }

    /// The recent engine time of searches of `key`, when it is known.
    fn estimate(&self, key: u64) -> Option<Duration> {
        let (slot, tag) = self.slot(key);
        let v = slot.load(Ordering::Relaxed);
        (v >> 32 == tag).then(|| Duration::from_micros(v & u64::from(u32::MAX)))
    }

    /// Learns that a search of `key` took `took`: a slower one sets the
    /// estimate, a faster one moves it down by 1/16 of the gap. Racing
    /// updates may lose one; the estimate only steers where searches run.
    fn record(&self, key: u64, took: Duration) {
        let (slot, tag) = self.slot(key);
        let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).min(u64::from(u32::MAX));
        let v = slot.load(Ordering::Relaxed);
        let estimate = if v >> 32 == tag {
            let old = v & u64::from(u32::MAX);
            if sample >= old { sample } else { old - ((old - sample) >> DECAY_SHIFT) }
        } else {
            sample
        };
        slot.store((tag << 32) | estimate, Ordering::Relaxed);
    }

    /// Takes a worker's place for a search of `key` when its kind is known
    /// to be short and fewer than the most run on workers.
    fn inline_place(&self, key: u64) -> Option<InlinePlace<'_>> {
        // `block_in_place` needs the multi-thread runtime, and hands the
        // worker's core to an idle blocking thread: none is idle while pool
        // searches run (the hand-off would queue behind them).
        let multi = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if !multi || self.pool_now.load(Ordering::Acquire) > 0 || self.estimate(key).is_none_or(|e| e > INLINE_BUDGET) {
            return None;
        }
        let taken = self.inline_now.fetch_add(1, Ordering::AcqRel);
        let place = InlinePlace(&self.inline_now);
        (taken < self.inline_most).then_some(place)
    }

    /// Runs `search` (a kind of search `key` names), here when it is known to
    /// be short, else on the blocking pool; either way its time is learnt.
    /// A panic is a 500, as one on the pool is.
    pub(crate) async fn run<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        key: u64,
        search: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        if let Some(_place) = self.inline_place(key) {
            self.on_worker.fetch_add(1, Ordering::Relaxed);
            let start = Instant::now();
            // The worker's core (its queue, its LIFO slot, the I/O it
            // drives) goes on on another thread meanwhile: a search that
            // turns out slow holds this thread only, never the tasks queued
            // behind it (on one core, or a TLS connection woken into the
            // LIFO slot, those waited for the whole search).
            let out = tokio::task::block_in_place(|| std::panic::catch_unwind(AssertUnwindSafe(search)))
                .map_err(|_| ApiError::Panicked);
            self.record(key, start.elapsed());
            return out?;
        }
        self.on_pool.fetch_add(1, Ordering::Relaxed);
        // Given back when the task ends, or is dropped unrun.
        let place = PoolPlace::take(self);
        self.pool(move || {
            let start = Instant::now();
            let out = search();
            place.0.record(key, start.elapsed());
            out
        })
        .await
    }

    /// Runs `work` (a search; a batch is one) on the blocking pool, in one
    /// of the pool's search places.
    pub(crate) async fn pool<T: Send + 'static>(&self, work: impl FnOnce() -> Result<T, ApiError> + Send + 'static) -> Result<T, ApiError> {
        // Held until the work ends, also when the request that wanted it is
        // dropped meanwhile (the semaphore is never closed).
        let slot = std::sync::Arc::clone(&self.pool_slots).acquire_owned().await.map_err(|_| ApiError::Panicked)?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        })
        .await?
    }

    /// Whether a single search runs now, on a worker or on the pool (or
    /// waits for a pool thread): what the recall monitor's re-runs give way to.
    pub(crate) fn searching(&self) -> bool {
        self.inline_now.load(Ordering::Acquire) + self.pool_now.load(Ordering::Acquire) > 0
    }

    /// Searches run on a worker and on the blocking pool, since the start.
    pub(crate) fn counts(&self) -> (u64, u64) {
        (self.on_worker.load(Ordering::Relaxed), self.on_pool.load(Ordering::Relaxed))
    }

    /// Searches running on workers now (for tests).
    #[cfg(test)]
    fn inline_now(&self) -> usize {
        self.inline_now.load(Ordering::Acquire)
    }
}

/// A search's place on the blocking pool, given back on drop.
struct PoolPlace(std::sync::Arc<Dispatch>);

impl PoolPlace {
    fn take(d: &std::sync::Arc<Dispatch>) -> PoolPlace {
        d.pool_now.fetch_add(1, Ordering::AcqRel);
        PoolPlace(std::sync::Arc::clone(d))
    }
}

impl Drop for PoolPlace {
    fn drop(&mut self) {
        self.0.pool_now.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A search's place on a worker, given back on drop.
struct InlinePlace<'a>(&'a AtomicUsize);

impl Drop for InlinePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn ms(x: f64) -> Duration {
        Duration::from_secs_f64(x / 1e3)
    }

    /// Runs `f` inside a multi-thread runtime of `workers` workers (where
    /// searches may run on a worker).
    fn within<T>(workers: usize, f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap().block_on(f)
    }

    /// Searches on the blocking pool take at most one place per worker, so
    /// that other blocking work (a write's sync) still finds a thread while
    /// slow searches hold theirs.
    #[test]
    fn pool_searches_leave_blocking_threads_for_other_work() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).max_blocking_threads(4).enable_all().build().unwrap();
        rt.block_on(async {
            let d = Arc::new(Dispatch::new(2));
            let (release, held) = std::sync::mpsc::channel::<()>();
            let held = Arc::new(std::sync::Mutex::new(held));
            let mut searches = Vec::new();
            for _ in 0..6 {
                let (d, held) = (Arc::clone(&d), Arc::clone(&held));
                searches.push(tokio::spawn(async move {
                    d.pool(move || {
                        let _ = held.lock().unwrap().recv();
                        Ok(())
                    })
                    .await
                }));
            }
            tokio::time::sleep(ms(200.0)).await;
            let write = tokio::time::timeout(Duration::from_secs(5), tokio::task::spawn_blocking(|| 7)).await;
            assert_eq!(write.expect("no blocking thread left for a write").unwrap(), 7);
            for _ in 0..6 {
                release.send(()).unwrap();
            }
            for s in searches {
                s.await.unwrap().unwrap();
            }
        });
    }

    #[test]
    fn an_unknown_kind_goes_to_the_pool_and_a_short_one_then_runs_here() {
        within(2, async {
            let d = Dispatch::new(2);
            assert!(d.inline_place(7).is_none(), "never seen");
            d.record(7, ms(0.05));
            assert!(d.inline_place(7).is_some());
            d.record(8, ms(3.0));
            assert!(d.inline_place(8).is_none(), "known slow");
        });
        let d = Dispatch::new(2);
        d.record(7, ms(0.05));
        assert!(d.inline_place(7).is_none(), "outside a multi-thread runtime");
        let current = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert!(current.block_on(async { d.inline_place(7).is_none() }), "on a current-thread runtime");
    }

    #[test]
    fn a_slow_search_sets_the_estimate_and_cheap_ones_bring_it_down_slowly() {
        within(2, async {
            let d = Dispatch::new(2);
            d.record(1, ms(0.05));
            d.record(1, ms(2.0));
            assert_eq!(d.estimate(1), Some(ms(2.0)));
            let mut cheap = 0;
            while d.inline_place(1).is_none() {
                d.record(1, ms(0.05));
                cheap += 1;
                assert!(cheap < 100, "never came down");
            }
            assert!((15..=30).contains(&cheap), "{cheap} cheap searches to come down");
        });
    }

    #[test]
    fn kinds_that_share_a_slot_do_not_share_an_estimate() {
        let d = Dispatch::new(2);
        let (a, b) = (5u64, 5u64 | (9 << 40));
        assert_eq!(a as usize % SLOTS, b as usize % SLOTS);
        d.record(a, ms(0.01));
        assert_eq!(d.estimate(b), None);
        d.record(b, ms(9.0));
        assert_eq!(d.estimate(a), None, "b took the slot: a is unknown again");
    }

    #[test]
    fn at_most_all_workers_but_one_run_searches_and_none_while_the_pool_searches() {
        within(3, async {
            let d = Dispatch::new(3);
            d.record(1, ms(0.01));
            let first = d.inline_place(1).expect("one");
            let second = d.inline_place(1).expect("two");
            assert!(d.inline_place(1).is_none(), "a third would take the last worker");
            assert_eq!(d.inline_now(), 2, "a refused place is given back");
            drop((first, second));
            assert_eq!(d.inline_now(), 0);
            d.pool_now.fetch_add(1, Ordering::AcqRel);
            assert!(d.inline_place(1).is_none(), "a pool search runs: no idle thread to take the core");
            d.pool_now.fetch_sub(1, Ordering::AcqRel);
            let one = Dispatch::new(1);
            one.record(1, ms(0.01));
            assert!(one.inline_place(1).is_some(), "a 1-worker runtime still runs one");
        });
    }

    #[test]
    fn run_answers_alike_in_both_places_and_a_panic_is_a_500() {
        within(2, async {
            let d = Arc::new(Dispatch::new(2));
            assert_eq!(d.run(3, || Ok(41 + 1)).await.unwrap(), 42, "on the pool");
            assert!(d.estimate(3).is_some(), "the pool's run is timed");
            assert_eq!(d.run(3, || Ok(43)).await.unwrap(), 43, "here");
            for key in [3, 4] {
                let e = d.run::<()>(key, || panic!("boom")).await.unwrap_err();
                assert_eq!(e.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
            }
            assert_eq!(d.inline_now(), 0, "the place is given back after a panic");
            assert_eq!(d.pool_now.load(Ordering::Acquire), 0, "and the pool's, after a panic there");
            assert_eq!(d.counts(), (2, 2));
        });
    }

    /// A task the search's own task woke just before it (into its worker's
    /// LIFO slot, which no other worker takes) runs while the search does.
    #[test]
    fn a_task_woken_just_before_a_slow_search_runs_meanwhile() {
        within(2, async {
            let d = Arc::new(Dispatch::new(2));
            d.record(9, ms(0.01));
            let started = Instant::now();
            let searched = tokio::spawn({
                let d = Arc::clone(&d);
                async move {
                    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                    let woken = tokio::spawn(async move {
                        rx.await.unwrap();
                        Instant::now()
                    });
                    // Let it park on the channel.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    tx.send(()).unwrap();
                    d.run(9, || {
                        std::thread::sleep(Duration::from_millis(400));
                        Ok(())
                    })
                    .await
                    .unwrap();
                    woken.await.unwrap()
                }
            });
            let ran_at = searched.await.unwrap();
            assert_eq!(d.counts(), (1, 0), "it ran on the worker");
            let waited = ran_at.duration_since(started);
            assert!(waited < Duration::from_millis(300), "the woken task ran {waited:?} after the start, behind a 400 ms search");
        });
    }

    /// A search known to be short that turns out slow, on the only worker:
    /// the runtime's other tasks (timers, connections) go on meanwhile.
    #[test]
    fn a_slow_search_on_the_only_worker_does_not_stop_its_other_tasks() {
        within(1, async {
            let d = Arc::new(Dispatch::new(1));
            d.record(9, ms(0.01));
            let ticks = Arc::new(AtomicUsize::new(0));
            let ticker = tokio::spawn({
                let ticks = Arc::clone(&ticks);
                async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        ticks.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            // Let the ticker start.
            tokio::time::sleep(Duration::from_millis(20)).await;
            let during = Arc::clone(&ticks);
            // On the worker, as a request's task is (`block_on` runs on this thread).
            let searching = Arc::clone(&d);
            let seen = tokio::spawn(async move {
                searching
                    .run(9, move || {
                        let before = during.load(Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(400));
                        Ok(during.load(Ordering::Relaxed) - before)
                    })
                    .await
            })
            .await
            .unwrap()
            .unwrap();
            ticker.abort();
            assert_eq!(d.counts(), (1, 0), "it ran on the worker");
            assert!(seen >= 10, "the timer ticked {seen} times during a 400 ms search on the only worker");
        });
    }
}
