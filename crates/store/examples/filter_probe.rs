//! Timing probes (measurements, not tests):
//!
//! - filtered search on a real data directory, in process, and its open
//!   time: `cargo run --release -p vectorwise-store --example filter_probe --
//!   search DATA_DIR [COLLECTION]` (the collection `c` of
//!   `bench/filter`-style data: integer keys `u2`…`u10000`, `c2`…`c10000`);
//! - upsert throughput with and without payload indexes: `... -- ingest`.

use std::sync::Arc;
use std::time::Instant;
use vectorwise_index::plan::SearchRequest;
use vectorwise_index::Profile;
use vectorwise_store::{Condition, Filter, KeyPath, MatchValue, SearchOptions, Store, SyncMode};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("search") if args.len() >= 3 => search(&args[2], args.get(3).map_or("c", String::as_str)),
        Some("ingest") => ingest_with_and_without_payload_indexes(),
        _ => eprintln!("usage: filter_probe search DATA_DIR [COLLECTION] | filter_probe ingest"),
    }
}

fn search(dir: &str, name: &str) {
    let t = Instant::now();
    let cpu = cpu_seconds();
    let store = Store::open(std::path::Path::new(&dir), SyncMode::Always).unwrap();
    eprintln!("opened in {:.2} s wall, {:.2} s CPU", t.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let c = store.get(name).unwrap();
    c.pause_optimiser();
    let dim = c.dimension();
    let queries: Vec<Vec<f32>> = (0..50).map(|i| c.get(&[i * 7919 % 100_000], false, true).unwrap()[0].vector.clone().unwrap()).collect();
    let queries: Vec<Vec<f32>> = queries.into_iter().map(|q| q.iter().enumerate().map(|(j, x)| x + ((j * 31 % 7) as f32 - 3.0) * 0.01).collect()).collect();
    assert_eq!(queries[0].len(), dim);
    // PROBE_KEYS=u2,missing picks probes; `missing` is a key no payload has
    // (every payload read); an integer on a keyword-indexed key reads them too.
    let only = std::env::var("PROBE_KEYS").ok();
    let rounds: usize = std::env::var("PROBE_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let probes = [("none", 0), ("u2", 1), ("u10", 1), ("u100", 1), ("u1000", 1), ("c2", 1), ("c100", 99), ("missing", 1)];
    for (key, value) in probes.into_iter().filter(|(k, _)| only.as_ref().is_none_or(|o| o.split(',').any(|x| x == *k))) {
        let filter = (key != "none").then(|| Arc::new(Filter { must: vec![Condition::Match { key: KeyPath::parse(key).unwrap(), values: vec![MatchValue::Integer(value)] }], ..Default::default() }));
        let opts = SearchOptions { k: 10, request: SearchRequest::Profile(Profile::Balanced), with_payload: false, with_vector: false, payload_budget: 0, filter };
        let mut times = Vec::new();
        let mut paths = Vec::new();
        for _ in 0..rounds {
            for q in &queries {
                let t = Instant::now();
                let out = c.search(q, &opts).unwrap();
                times.push(t.elapsed().as_secs_f64() * 1e3);
                if let Some(f) = out.filter {
                    paths.extend(f.paths);
                }
            }
        }
        times.sort_by(f64::total_cmp);
        paths.sort_by_key(|p| p.as_str());
        paths.dedup();
        eprintln!("{key:6} p50 {:.3} ms p90 {:.3} ms {paths:?}", times[times.len() / 2], times[times.len() * 9 / 10]);
    }
}

/// This process's user + system CPU seconds (Linux, /proc/self/stat).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|x| x.parse::<f64>().ok()).sum());
    ticks / 100.0
}

/// Upsert throughput with and without payload indexes (the write path
/// parses each payload for them under the write lock).
fn ingest_with_and_without_payload_indexes() {
    use vectorwise_store::{CollectionConfig, FieldSpec, FieldType, NewPoint};
    for indexed in [false, true, false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), SyncMode::Always).unwrap();
        let (c, _) = store.create("i", CollectionConfig::new(128, vectorwise_index::Metric::L2)).unwrap();
        if indexed {
            for (f, t) in [("tag", FieldType::Keyword), ("price", FieldType::Integer), ("meta.lang", FieldType::Keyword)] {
                c.create_payload_index(FieldSpec { field: f.into(), field_type: t }).unwrap();
            }
        }
        let batches: Vec<Vec<NewPoint>> = (0..100u64)
            .map(|b| {
                (0..1000u64)
                    .map(|i| {
                        let id = b * 1000 + i;
                        let vector = (0..128).map(|j| ((id * 31 + j) % 97) as f32 / 97.0).collect();
                        let payload = serde_json::json!({"tag": format!("t{}", id % 100), "price": id % 1000, "meta": {"lang": "en", "n": id}, "title": "some words of a title"});
                        NewPoint { id: id.into(), vector, payload: Some(payload) }
                    })
                    .collect()
            })
            .collect();
        let t = Instant::now();
        for b in batches {
            c.upsert(b).unwrap();
        }
        let s = t.elapsed().as_secs_f64();
        eprintln!("indexed {indexed}: {:.0} points/s", 100_000.0 / s);
        c.close();
    }
}
