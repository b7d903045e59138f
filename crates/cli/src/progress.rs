//! Progress bars (indicatif) that the engine's progress callbacks feed.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `total` items, with rate and ETA. Hidden when stderr is not a terminal.
pub fn bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, ETA {eta})")
            .expect("valid template"),
    );
    bar.set_message(what.to_string());
    bar
}

/// Human-readable byte size (MiB with two decimals, as the demo printed).
pub fn mib(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / (1024.0 * 1024.0))
}
