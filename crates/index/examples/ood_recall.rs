//! Recall of a profile on query sets unlike the data the index was
//! calibrated on: base rows with a little noise (like the data), base rows
//! with heavy noise (per-dimension noise of the data's own spread), and
//! random vectors of the data's per-dimension mean and spread; plus a query
//! file when given. Per set: recall@10 against exact search, p50 / p95 of
//! one search on one thread, and how many queries the widening rules see
//! as unlike the calibration's (contrast of the exact 10th neighbour below
//! the table's `hard`, l2 and cosine only; the partitioned scan decides by
//! its lists instead) and how many took over ten times the fastest (widened).
//!
//! `cargo run --release -p vectorwise-index --example ood_recall -- INDEX.vwi [QUERIES.f32|-] [PROFILE] [SETS]`
//! (QUERIES: raw little-endian f32 rows; SETS: comma-separated names, default all).

use vectorwise_index::plan::SearchRequest;
use vectorwise_index::{Index, Metric, Profile};

const K: usize = 10;
const QUERIES: usize = 300;

/// xorshift64 with Box-Muller normals: fixed sets without another crate.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform().max(1e-12), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }
}

/// The query sets, from the index's rows (as users see them).
fn query_sets(index: &Index, given: Option<&str>) -> Vec<(&'static str, Vec<f32>)> {
    let (dim, n) = (index.dim(), index.len());
    let rows = index.vectors();
    let (mut mean, mut var) = (vec![0f64; dim], vec![0f64; dim]);
    for r in rows.chunks_exact(dim) {
        for (j, &x) in r.iter().enumerate() {
            mean[j] += f64::from(x) / n as f64;
            var[j] += f64::from(x) * f64::from(x) / n as f64;
        }
    }
    let sd: Vec<f32> = var.iter().zip(&mean).map(|(v, m)| (v - m * m).max(0.0).sqrt() as f32).collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut near, mut noisy, mut random) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..QUERIES {
        let o = (rng.uniform() * n as f64) as usize % n;
        let r = &rows[o * dim..(o + 1) * dim];
        near.extend(r.iter().zip(&sd).map(|(&x, &s)| x + 0.1 * s * rng.normal()));
        noisy.extend(r.iter().zip(&sd).map(|(&x, &s)| x + s * rng.normal()));
        random.extend(mean.iter().zip(&sd).map(|(&m, &s)| m as f32 + s * rng.normal()));
    }
    let mut sets = Vec::new();
    if let Some(path) = given {
        let raw = std::fs::read(path).expect("the query file");
        let q: Vec<f32> = raw.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        sets.push(("given", q[..q.len().min(QUERIES * dim) / dim * dim].to_vec()));
    }
    sets.extend([("near", near), ("noisy", noisy), ("random", random)]);
    sets
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let index = Index::open(std::path::Path::new(&a[1])).expect("an index file");
    let given = a.get(2).map(String::as_str).filter(|p| *p != "-");
    let profile: Profile = a.get(3).map_or(Profile::Balanced, |p| p.parse().expect("a profile"));
    let only: Option<Vec<&str>> = a.get(4).map(|s| s.split(',').collect());
    let dim = index.dim();
    let plan = index.plan(K, SearchRequest::Profile(profile));
    let params = plan.params;
    let calibration = index.calibration();
    let hard = calibration.and_then(|c| c.table(K)).and_then(|t| t.hard).map(vectorwise_index::calibrate::hard_threshold);
    let centre = calibration.and_then(|c| c.centre.as_ref());
    println!("{} points, dim {dim}, {profile}: {params} (calibrated recall {:?}), hard below contrast {hard:?}", index.len(), plan.expected_recall);
    for (name, q) in query_sets(&index, given) {
        if only.as_ref().is_some_and(|o| !o.contains(&name)) {
            continue;
        }
        let (mut recall, mut ms, mut hard_queries, mut contrast) = (0.0, Vec::new(), 0, Vec::new());
        for query in q.chunks_exact(dim) {
            let exact = index.exact_search(query, K).unwrap();
            if let (Some(c), Some(h), Some(kth)) = (centre, hard, exact.last()) {
                // Contrast in the index's space: the user's rows for l2, unit rows for cosine.
                let mut unit = query.to_vec();
                if index.metric() == Metric::Cosine {
                    vectorwise_index::distance::normalize(&mut unit);
                }
                contrast.push(c.contrast(&unit, kth.distance));
                hard_queries += usize::from(c.contrast(&unit, kth.distance) < h);
            }
            let t = std::time::Instant::now();
            let found = index.search(query, K, &params).unwrap();
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            recall += found.iter().filter(|h| exact.iter().any(|e| e.id == h.id)).count() as f64 / K as f64;
        }
        ms.sort_by(f64::total_cmp);
        let nq = ms.len();
        contrast.sort_by(f32::total_cmp);
        let at = |f: f64| contrast.get(((contrast.len() as f64 - 1.0) * f) as usize).copied().unwrap_or(f32::NAN);
        let slow = ms.iter().filter(|&&t| t > 10.0 * ms[0].max(0.01)).count();
        println!(
            "{name:7} recall@{K} {:.3}  p50 {:.3} ms  p95 {:.3} ms  hard {hard_queries}/{nq}  over 10x the fastest {slow}  contrast p1 {:.2} p50 {:.2} p99 {:.2}",
            recall / nq as f64,
            ms[nq / 2],
            ms[nq * 95 / 100],
            at(0.01),
            at(0.5),
            at(0.99)
        );
    }
}
