//! Prometheus metrics, rendered at `GET /metrics` in the text format.
//!
//! Each [`AppState`](crate::AppState) owns its own recorder instead of
//! installing a process-global one: parallel tests (and any process serving
//! two apps) keep separate counts, and nothing needs `install()`. Recording
//! goes through `metrics::with_local_recorder`, which sets this state's
//! recorder on the current thread for the length of one synchronous closure,
//! so it is safe on any tokio worker or blocking thread.
//!
//! ```text
//! vectorwise_http_requests_total{route,method,status}    counter    route = matched template, e.g.
//!                                                                   "/docs/{*file}"; "unmatched" for 404s
//! vectorwise_http_request_duration_seconds{route}        histogram  0.1 ms .. 10 s, to the response head
//! vectorwise_search_duration_seconds{kind}               histogram  inside the engine; kind = single | batch
//!                                                                   (a batch is one observation)
//! vectorwise_search_batch_size                           histogram  queries per batch that ran
//! vectorwise_searches_in_flight                          gauge      queries queued or running
//! vectorwise_searches_rejected_total{kind}               counter    requests answered 503 for overload
//! vectorwise_rate_limited_total{budget}                  counter    requests answered 429; budget = search |
//!                                                                   write | batch
//! vectorwise_vectors_indexed                             gauge      points in the served index (0: none)
//! vectorwise_index_load_seconds                          gauge      time to open + check the served index
//! vectorwise_build_info{version,simd,index_type}         gauge      1 (index_type "none" until loaded)
//! vectorwise_cache_hits_total / _misses_total            counter    searches answered from / not found in
//!                                                                   the hot-query cache (none when it is off)
//! vectorwise_cache_entries, _bytes, _max_bytes           gauge      what the cache holds, and its bound
//! vectorwise_cache_saved_seconds                         gauge      sum over hits of the engine time the kept
//!                                                                   answer took (cumulative, only grows)
//! vectorwise_cache_redis_hits_total / _misses_total      counter    lookups the shared tier (Redis) answered /
//!                                                                   did not (after a memory miss; none without
//!                                                                   --cache-url)
//! vectorwise_cache_redis_errors_total                    counter    Redis commands or connections that failed
//!                                                                   or timed out (each a miss)
//! vectorwise_cache_redis_rejected_total                  counter    values refused (garbled, another key's)
//! vectorwise_cache_redis_writes_total                    counter    answers written to Redis
//! vectorwise_cache_redis_connected                       gauge      1 while a connection to Redis is up
//! ```

use axum::http::{Method, StatusCode};
use metrics::{
    Gauge, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, with_local_recorder,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use parking_lot::Mutex;
use std::time::{Duration, Instant};
use vectorwise_index::IndexInfo;

const HTTP_REQUESTS: &str = "vectorwise_http_requests_total";
const HTTP_DURATION: &str = "vectorwise_http_request_duration_seconds";
const SEARCH_DURATION: &str = "vectorwise_search_duration_seconds";
const BATCH_SIZE: &str = "vectorwise_search_batch_size";
const IN_FLIGHT: &str = "vectorwise_searches_in_flight";
const REJECTED: &str = "vectorwise_searches_rejected_total";
const RATE_LIMITED: &str = "vectorwise_rate_limited_total";
const VECTORS_INDEXED: &str = "vectorwise_vectors_indexed";
const INDEX_LOAD: &str = "vectorwise_index_load_seconds";
const BUILD_INFO: &str = "vectorwise_build_info";
const COLLECTION_POINTS: &str = "vectorwise_collection_points";
const COLLECTION_DELETED: &str = "vectorwise_collection_deleted_points";
const COLLECTION_SEGMENTS: &str = "vectorwise_collection_segments";
const COLLECTION_WAL_BYTES: &str = "vectorwise_collection_wal_bytes";
const COLLECTION_WRITES: &str = "vectorwise_collection_writes_total";
const COLLECTION_OPTIMISER: &str = "vectorwise_collection_optimiser_runs_total";
const COLLECTION_OPTIMISER_BUSY: &str = "vectorwise_collection_optimiser_busy";
const COLLECTION_WRITE_STALLS: &str = "vectorwise_collection_write_stalls_total";
const CACHE_HITS: &str = "vectorwise_cache_hits_total";
const WIDENED: &str = "vectorwise_searches_widened_total";
const DISPATCHED: &str = "vectorwise_searches_dispatched_total";
const CACHE_MISSES: &str = "vectorwise_cache_misses_total";
const CACHE_ENTRIES: &str = "vectorwise_cache_entries";
const CACHE_BYTES: &str = "vectorwise_cache_bytes";
const CACHE_MAX_BYTES: &str = "vectorwise_cache_max_bytes";
const CACHE_SAVED: &str = "vectorwise_cache_saved_seconds";
const REDIS_HITS: &str = "vectorwise_cache_redis_hits_total";
const REDIS_MISSES: &str = "vectorwise_cache_redis_misses_total";
const REDIS_ERRORS: &str = "vectorwise_cache_redis_errors_total";
const REDIS_REJECTED: &str = "vectorwise_cache_redis_rejected_total";
const REDIS_WRITES: &str = "vectorwise_cache_redis_writes_total";
const REDIS_CONNECTED: &str = "vectorwise_cache_redis_connected";

/// The `route` label of requests no route matched (the raw path would let
/// any client create series without bound).
pub(crate) const UNMATCHED_ROUTE: &str = "unmatched";

/// Latency buckets, seconds: 0.1 ms (a cached `/`) to 10 s (a large batch
/// at a high `ef_search`), about 2.5x apart.
const LATENCY_BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Histogram samples wait in the recorder until drained (a scrape drains
/// them). Without a scraper they would pile up, so requests drain them too,
/// at most this often.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Which search path a measurement belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SearchKind {
    Single,
    Batch,
}

impl SearchKind {
    fn label(self) -> &'static str {
        match self {
            SearchKind::Single => "single",
            SearchKind::Batch => "batch",
        }
    }
}

/// One state's recorder and the handles of its unlabelled series.
#[derive(Debug)]
pub(crate) struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    in_flight: Gauge,
    vectors_indexed: Gauge,
    index_load_seconds: Gauge,
    /// The `build_info` series now reporting 1; a new index replaces it.
    build_info: Mutex<Option<Gauge>>,
    last_upkeep: Mutex<Instant>,
}

impl Metrics {
    /// A fresh recorder; batch-size buckets are powers of two up to `max_batch`.
    pub(crate) fn new(max_batch: usize) -> Self {
        let mut batch_buckets = vec![1.0];
        while (*batch_buckets.last().unwrap_or(&1.0) as usize) < max_batch {
            batch_buckets.push(batch_buckets.last().unwrap_or(&1.0) * 2.0);
        }
        let builder = [HTTP_DURATION, SEARCH_DURATION]
            .into_iter()
            .map(|name| (name, &LATENCY_BUCKETS[..]))
            .chain([(BATCH_SIZE, &batch_buckets[..])])
            .fold(PrometheusBuilder::new(), |builder, (name, buckets)| {
                builder
                    .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
                    .expect("bucket lists are not empty")
            });
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let (in_flight, vectors_indexed, index_load_seconds) = with_local_recorder(&recorder, || {
            describe_counter!(HTTP_REQUESTS, "HTTP requests answered, by matched route, method and status.");
            describe_histogram!(HTTP_DURATION, Unit::Seconds, "HTTP latency until the response head, by route.");
            describe_histogram!(
                SEARCH_DURATION,
                Unit::Seconds,
                "Time inside the engine per search call; a batch is one call (kind=batch)."
            );
            describe_histogram!(BATCH_SIZE, Unit::Count, "Queries per batch search that ran.");
            describe_gauge!(IN_FLIGHT, Unit::Count, "Queries queued or running on the search pool.");
            describe_counter!(REJECTED, "Search requests answered 503 because the pending-search bound was full.");
            describe_counter!(RATE_LIMITED, "Requests answered 429: over the caller's rate budget (search, write, batch).");
            describe_gauge!(VECTORS_INDEXED, Unit::Count, "Points in the served index (0 while none is loaded).");
            describe_gauge!(INDEX_LOAD, Unit::Seconds, "Seconds taken to open and check the served index.");
            describe_gauge!(BUILD_INFO, "Always 1; the labels say what is running.");
            describe_gauge!(COLLECTION_POINTS, Unit::Count, "Live points of a collection.");
            describe_gauge!(COLLECTION_DELETED, Unit::Count, "Deleted or replaced points a collection's segments still hold.");
            describe_gauge!(COLLECTION_SEGMENTS, Unit::Count, "A collection's segments, by kind (mutable, frozen, sealed).");
            describe_gauge!(COLLECTION_WAL_BYTES, Unit::Bytes, "Bytes of a collection's write-ahead log on disk.");
            describe_counter!(COLLECTION_WRITES, "Write records (upsert and delete batches) applied since the collection opened, replay included.");
            describe_counter!(COLLECTION_OPTIMISER, "Optimiser work done since the collection opened, by kind (seal, merge, rewrite).");
            describe_gauge!(COLLECTION_OPTIMISER_BUSY, "1 while the optimiser's lane (seal, merge) is building.");
            describe_counter!(
                COLLECTION_WRITE_STALLS,
                "Upserts that waited for the optimiser (the write backlog over --write-backlog-points), and those refused after the wait (503), by outcome (waited, refused)."
            );
            describe_counter!(CACHE_HITS, "Searches answered from the hot-query cache.");
            describe_counter!(WIDENED, "Searches whose query was unlike the calibration's queries, so searched more widely (drift from the data).");
            describe_counter!(
                DISPATCHED,
                "Single searches by where they ran: place=worker (the async worker; short searches), place=pool (the blocking pool)."
            );
            describe_counter!(CACHE_MISSES, "Searches the hot-query cache had no answer for (then searched and kept).");
            describe_gauge!(CACHE_ENTRIES, Unit::Count, "Answers the hot-query cache holds.");
            describe_gauge!(CACHE_BYTES, Unit::Bytes, "Bytes the hot-query cache holds (keys, answers, headers, an estimate of overhead).");
            describe_gauge!(CACHE_MAX_BYTES, Unit::Bytes, "The hot-query cache's bound (--cache-bytes; 0: off).");
            describe_counter!(REDIS_HITS, "Lookups the shared cache tier (Redis) answered, after a memory miss.");
            describe_counter!(REDIS_MISSES, "Lookups the shared cache tier (Redis) had no answer for (absent, unreachable, refused).");
            describe_counter!(REDIS_ERRORS, "Redis commands or connection attempts that failed or timed out (each a miss).");
            describe_counter!(REDIS_REJECTED, "Values found in Redis that did not decode or were another key's (each a miss).");
            describe_counter!(REDIS_WRITES, "Answers written to the shared cache tier (Redis).");
            describe_gauge!(REDIS_CONNECTED, "1 while a connection to the shared cache tier (Redis) is up.");
            describe_gauge!(
                CACHE_SAVED,
                Unit::Seconds,
                "Sum over cache hits of the engine time their answer took when computed: search time saved (only grows)."
            );
            // Registered now so that a scrape shows them before any traffic.
            for kind in [SearchKind::Single, SearchKind::Batch] {
                counter!(REJECTED, "kind" => kind.label()).absolute(0);
            }
            for budget in crate::ratelimit::Budget::ALL {
                counter!(RATE_LIMITED, "budget" => budget.as_str()).absolute(0);
            }
            (gauge!(IN_FLIGHT), gauge!(VECTORS_INDEXED), gauge!(INDEX_LOAD))
        });
        Metrics {
            recorder,
            handle,
            in_flight,
            vectors_indexed,
            index_load_seconds,
            build_info: Mutex::new(None),
            last_upkeep: Mutex::new(Instant::now()),
        }
    }

    /// The Prometheus text exposition of every series.
    pub(crate) fn render(&self) -> String {
        self.handle.render()
    }

    /// The collections' series, as they are now (called before a render).
    pub(crate) fn collections(&self, all: &[vectorwise_store::CollectionStats]) {
        with_local_recorder(&self.recorder, || {
            for c in all {
                let name = c.name.clone();
                gauge!(COLLECTION_POINTS, "collection" => name.clone()).set(c.points as f64);
                gauge!(COLLECTION_DELETED, "collection" => name.clone()).set(c.deleted as f64);
                for kind in ["mutable", "frozen", "sealed"] {
                    let n = c.segments.iter().filter(|s| s.kind == kind).count();
                    gauge!(COLLECTION_SEGMENTS, "collection" => name.clone(), "kind" => kind).set(n as f64);
                }
                gauge!(COLLECTION_WAL_BYTES, "collection" => name.clone()).set(c.wal_bytes as f64);
                counter!(COLLECTION_WRITES, "collection" => name.clone()).absolute(c.write_version);
                let o = &c.optimiser;
                for (kind, n) in [("seal", o.seals), ("merge", o.merges), ("rewrite", o.rewrites)] {
                    counter!(COLLECTION_OPTIMISER, "collection" => name.clone(), "kind" => kind).absolute(n);
                }
                counter!(COLLECTION_WRITE_STALLS, "collection" => name.clone(), "outcome" => "waited").absolute(o.writes_waited);
                counter!(COLLECTION_WRITE_STALLS, "collection" => name.clone(), "outcome" => "refused").absolute(o.writes_refused);
                for lane in ["seal", "merge"] {
                    let busy = (lane == "seal" && o.state.contains("sealing")) || (lane == "merge" && o.state.contains("merging"));
                    gauge!(COLLECTION_OPTIMISER_BUSY, "collection" => name.clone(), "lane" => lane).set(if busy { 1.0 } else { 0.0 });
                }
            }
        });
    }

    /// The hot-query cache's series, the engine's widened searches and
    /// where single searches ran (`dispatched`: on a worker, on the pool),
    /// as they are now (called before a render).
    pub(crate) fn cache(&self, s: &crate::cache::CacheStats, dispatched: (u64, u64)) {
        with_local_recorder(&self.recorder, || {
            counter!(WIDENED).absolute(vectorwise_index::widened_searches());
            counter!(DISPATCHED, "place" => "worker").absolute(dispatched.0);
            counter!(DISPATCHED, "place" => "pool").absolute(dispatched.1);
            counter!(CACHE_HITS).absolute(s.hits);
            counter!(CACHE_MISSES).absolute(s.misses);
            gauge!(CACHE_ENTRIES).set(s.entries as f64);
            gauge!(CACHE_BYTES).set(s.bytes as f64);
            gauge!(CACHE_MAX_BYTES).set(s.max_bytes as f64);
            gauge!(CACHE_SAVED).set(s.saved.as_secs_f64());
            if s.shared.configured {
                counter!(REDIS_HITS).absolute(s.shared.hits);
                counter!(REDIS_MISSES).absolute(s.shared.misses);
                counter!(REDIS_ERRORS).absolute(s.shared.errors);
                counter!(REDIS_REJECTED).absolute(s.shared.rejected);
                counter!(REDIS_WRITES).absolute(s.shared.writes);
                gauge!(REDIS_CONNECTED).set(if s.shared.connected { 1.0 } else { 0.0 });
            }
        });
    }

    /// One answered request. `route` is the matched route template, `None`
    /// when no route matched.
    pub(crate) fn http_request(&self, route: Option<&str>, method: &Method, status: StatusCode, elapsed: Duration) {
        let route = route.unwrap_or(UNMATCHED_ROUTE).to_owned();
        with_local_recorder(&self.recorder, || {
            let status = status.as_u16().to_string();
            counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method_label(method), "status" => status)
                .increment(1);
            histogram!(HTTP_DURATION, "route" => route).record(elapsed.as_secs_f64());
        });
        self.upkeep_if_due();
    }

    /// A request refused for being over its caller's `budget`.
    pub(crate) fn rate_limited(&self, budget: crate::ratelimit::Budget) {
        with_local_recorder(&self.recorder, || {
            counter!(RATE_LIMITED, "budget" => budget.as_str()).increment(1);
        });
    }

    /// One engine call of `kind` took `elapsed`.
    pub(crate) fn search(&self, kind: SearchKind, elapsed: Duration) {
        with_local_recorder(&self.recorder, || {
            histogram!(SEARCH_DURATION, "kind" => kind.label()).record(elapsed.as_secs_f64());
        });
    }

    /// A batch of `queries` queries is about to run.
    pub(crate) fn batch_size(&self, queries: usize) {
        with_local_recorder(&self.recorder, || histogram!(BATCH_SIZE).record(queries as f64));
    }

    /// A search request of `kind` was turned away by the pending-search bound.
    pub(crate) fn rejected(&self, kind: SearchKind) {
        with_local_recorder(&self.recorder, || counter!(REJECTED, "kind" => kind.label()).increment(1));
    }

    /// The gauge of queued + running queries (a permit adds and removes them).
    pub(crate) fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    /// A new index is served: its size, load time and type.
    pub(crate) fn index_ready(&self, info: &IndexInfo) {
        self.vectors_indexed.set(info.count as f64);
        self.index_load_seconds.set(info.load_seconds);
        self.set_build_info(info.index_type);
    }

    /// No index yet: `build_info` says `index_type="none"`.
    pub(crate) fn index_loading(&self) {
        self.set_build_info("none");
    }

    fn set_build_info(&self, index_type: &'static str) {
        let gauge = with_local_recorder(&self.recorder, || build_info_gauge(index_type));
        let mut current = self.build_info.lock();
        // Series cannot be removed: the old labels drop to 0, the new go to 1
        // (in that order, so that equal labels end at 1).
        if let Some(old) = current.as_ref() {
            old.set(0.0);
        }
        gauge.set(1.0);
        *current = Some(gauge);
    }

    /// Drains histogram samples into their buckets if the last drain is older
    /// than [`UPKEEP_EVERY`]; a concurrent caller skips instead of waiting.
    fn upkeep_if_due(&self) {
        let Some(mut last) = self.last_upkeep.try_lock() else { return };
        if last.elapsed() >= UPKEEP_EVERY {
            *last = Instant::now();
            drop(last);
            self.handle.run_upkeep();
        }
    }
}

/// The `build_info` gauge for `index_type` (call inside `with_local_recorder`).
fn build_info_gauge(index_type: &'static str) -> Gauge {
    gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "simd" => vectorwise_index::distance::kernels().name,
        "index_type" => index_type
    )
}

/// The method as a label; anything but the standard methods is `other`, so
/// that clients cannot create series without bound.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_size_buckets_reach_the_maximum_batch() {
        let text = Metrics::new(1000).render();
        // Not observed yet: no histogram lines, but the recorder builds.
        assert!(!text.contains(BATCH_SIZE), "{text}");
        let m = Metrics::new(1000);
        m.batch_size(3);
        let text = m.render();
        assert!(text.contains(&format!("{BATCH_SIZE}_bucket{{le=\"1024\"}} 1")), "{text}");
        assert!(!text.contains("le=\"2048\""), "{text}");
    }

    #[test]
    fn recorders_are_independent() {
        let (a, b) = (Metrics::new(8), Metrics::new(8));
        a.rejected(SearchKind::Batch);
        assert!(a.render().contains(&format!("{REJECTED}{{kind=\"batch\"}} 1")));
        assert!(b.render().contains(&format!("{REJECTED}{{kind=\"batch\"}} 0")));
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(method_label(&Method::POST), "POST");
    }
}
