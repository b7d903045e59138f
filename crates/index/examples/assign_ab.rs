//! The list assignment of a partitioned build, two ways side by side: the
//! exact grouped search for the nearest centroid (`exact::search_many`, k 1)
//! against the blocked dot-product kernel (`scan::assign`). Centroids are
//! `lists` seeded rows of the file; both run on the whole rayon pool
//! (`RAYON_NUM_THREADS=1` for one thread), in alternating rounds. Prints
//! each round's time and how many rows the two put in different lists (ties
//! and f32 rounding) and how much farther those are, at most.
//! `cargo run --release --example assign_ab -- rows.npy [rows] [lists] [rounds]`

use std::time::Instant;
use vectorwise_index::scan::assign;
use vectorwise_index::{Matrix, exact};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let base = Matrix::load(std::path::Path::new(&args[1]))?;
    let n: usize = args.get(2).map_or(Ok(base.len()), |s| s.parse())?.min(base.len());
    let lists: usize = args.get(3).map_or(Ok(800), |s| s.parse())?;
    let rounds: usize = args.get(4).map_or(Ok(3), |s| s.parse())?;
    let dim = base.dim();
    let rows = &base.as_slice()[..n * dim];
    let step = n / lists;
    let centroids: Vec<f32> = (0..lists).flat_map(|i| base.row(i * step + step / 2).iter().copied()).collect();
    let (mut old_s, mut new_s) = (Vec::new(), Vec::new());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        a = exact::search_many(&centroids, dim, rows, 1).into_iter().map(|f| f[0].offset).collect::<Vec<u32>>();
        old_s.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        b = assign::nearest(&assign::Blocked::new(&centroids, dim), rows);
        new_s.push(t.elapsed().as_secs_f64());
    }
    let d = |r: usize, c: u32| -> f64 {
        rows[r * dim..(r + 1) * dim].iter().zip(&centroids[c as usize * dim..(c as usize + 1) * dim]).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum()
    };
    let differ: Vec<usize> = (0..n).filter(|&r| a[r] != b[r]).collect();
    let worst = differ.iter().map(|&r| (d(r, b[r]) - d(r, a[r])) / d(r, a[r]).max(1e-30)).fold(0f64, f64::max);
    println!("{n} rows x {dim}, {lists} lists, {} threads, kernels {}", rayon::current_num_threads(), assign::available().last().unwrap().name);
    println!("exact search k=1: {:?} s", old_s.iter().map(|s| (s * 1000.0).round() / 1000.0).collect::<Vec<_>>());
    println!("blocked kernel:   {:?} s", new_s.iter().map(|s| (s * 1000.0).round() / 1000.0).collect::<Vec<_>>());
    println!("rows in another list: {} ({:.4} %), at most {:.2e} farther (relative)", differ.len(), 100.0 * differ.len() as f64 / n as f64, worst);
    Ok(())
}
