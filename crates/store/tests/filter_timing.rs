//! Timing probe for filtered search on a real data directory (not a test of
//! correctness): `VW_PROBE_DIR=/path/to/data VW_PROBE_COLLECTION=c cargo test
//! --release -p vectorwise-store --test filter_timing -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::Instant;
use vectorwise_index::plan::SearchRequest;
use vectorwise_index::Profile;
use vectorwise_store::{Condition, Filter, KeyPath, MatchValue, SearchOptions, Store, SyncMode};

#[test]
#[ignore]
fn probe() {
    let Ok(dir) = std::env::var("VW_PROBE_DIR") else { return };
    let name = std::env::var("VW_PROBE_COLLECTION").unwrap_or("c".into());
    let t = Instant::now();
    let cpu = cpu_seconds();
    let store = Store::open(std::path::Path::new(&dir), SyncMode::Always).unwrap();
    eprintln!("opened in {:.2} s wall, {:.2} s CPU", t.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let c = store.get(&name).unwrap();
    c.stop_optimiser();
    let dim = c.dimension();
    let queries: Vec<Vec<f32>> = (0..50).map(|i| c.get(&[i * 7919], false, true).unwrap()[0].vector.clone().unwrap()).collect();
    let queries: Vec<Vec<f32>> = queries.into_iter().map(|q| q.iter().enumerate().map(|(j, x)| x + ((j * 31 % 7) as f32 - 3.0) * 0.01).collect()).collect();
    assert_eq!(queries[0].len(), dim);
    for (key, value) in [("none", 0), ("u2", 1), ("u10", 1), ("u100", 1), ("u1000", 1), ("c2", 1), ("c100", 99)] {
        let filter = (key != "none").then(|| Arc::new(Filter { must: vec![Condition::Match { key: KeyPath::parse(key).unwrap(), values: vec![MatchValue::Integer(value)] }], ..Default::default() }));
        let opts = SearchOptions { k: 10, request: SearchRequest::Profile(Profile::Balanced), with_payload: false, with_vector: false, payload_budget: 0, filter };
        let mut times = Vec::new();
        let mut paths = Vec::new();
        for _ in 0..3 {
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
