//! The `vectorwise` binary: generate | build | calibrate | import | restore | serve | bench | search | health | keys.
//! Flags are parsed here (clap, each mirrored by a `VECTORWISE_*` variable
//! where the demo had one); the work lives in one module per command.

#![forbid(unsafe_code)]

mod bench;
mod build;
mod generate;
mod import;
mod keys;
mod progress;
mod restore;
mod search;
mod serve;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(name = "vectorwise", version, about = "VectorWise: k-nearest-neighbour vector search as a REST service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a synthetic dataset as a NumPy .npy file.
    Generate(generate::Args),
    /// Build an index file from a .npy or .fvecs vector file.
    Build(build::Args),
    /// Measure an index's recall table (recall@k per setting, k = 1, 10, 100)
    /// and store it in the file: what the search profiles and recall targets use.
    Calibrate(build::CalibrateArgs),
    /// Load vectors (with ids and payloads) as a new collection, in bulk, into
    /// one sealed segment of the data directory (no server may have it open).
    Import(import::Args),
    /// Restore a collection from a snapshot archive into the data directory
    /// (no server may have it open); refuses an existing collection unless --force.
    Restore(restore::Args),
    /// Serve the HTTP API (generates and builds the default dataset on first run).
    Serve(serve::Args),
    /// Measure latency and recall@k, over HTTP or in-process, against exact search.
    Bench(bench::Args),
    /// Search an index for each row of a query file; prints one JSON object per query.
    Search(search::Args),
    /// Exit 0 if the service at --url answers healthy (for container health checks).
    Health(serve::HealthArgs),
    /// Make API keys and their hashes for the keys file (VECTORWISE_API_KEYS_FILE).
    Keys(keys::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate(a) => generate::run(a),
        Command::Build(a) => build::run(a),
        Command::Calibrate(a) => build::run_calibrate(a),
        Command::Import(a) => import::run(a),
        Command::Restore(a) => restore::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Search(a) => search::run(a),
        Command::Health(a) => serve::health(a),
        Command::Keys(a) => keys::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error's chain joined by ": ", each cause left out when the message
/// before it already ends with it (the store's errors say their cause, and
/// name it as their source too).
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}
