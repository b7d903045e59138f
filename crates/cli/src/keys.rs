//! `vectorwise keys`: make API keys and their hashes, so that operators never
//! handle a hash by hand; and [`Sources`], where `serve` reads its keys from
//! (at start and on SIGHUP).
//!
//! ```text
//! vectorwise keys new --name ci --role read [--collections docs,faq]
//!   vw_…                                   the key, shown this once
//!   {"name":"ci","role":"read","sha256":"…","collections":["docs","faq"]}
//! printf %s "$KEY" | vectorwise keys hash [--name ci --role read]
//! ```

use anyhow::{Context, Result};
use rand::distr::{Alphanumeric, SampleString};
use std::io::Read;
use std::path::PathBuf;
use vectorwise_server::{ApiKey, Keys, Role, check_plain_key, hash_key, load_key_file, to_hex, valid_key_name};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Generate a random key: prints the key (shown this once) and its line
    /// for the keys file (VECTORWISE_API_KEYS_FILE), which holds only its hash.
    New {
        /// The key's name (logs show it): 1 to 64 of A-Z a-z 0-9 _ - . @
        #[arg(long)]
        name: String,
        /// read (search, get, stats, list), write (+ upsert, delete points) or
        /// admin (+ create and delete collections).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Limit the key to these collections (comma-separated); all when absent.
        #[arg(long, value_delimiter = ',')]
        collections: Vec<String>,
    },
    /// Read a key from standard input (one line) and print its SHA-256, the
    /// keys file's `sha256`; with --name and --role, the whole line.
    Hash {
        #[arg(long, requires = "role")]
        name: Option<String>,
        #[arg(long, value_parser = parse_role, requires = "name")]
        role: Option<Role>,
        #[arg(long, value_delimiter = ',', requires = "name")]
        collections: Vec<String>,
    },
}

pub(crate) fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

/// Characters of a generated key after its `vw_` prefix: 40 alphanumerics,
/// 238 bits.
const KEY_CHARS: usize = 40;

/// A new random key, from the thread's cryptographically secure generator
/// (ChaCha, seeded by the operating system).
fn new_key() -> String {
    format!("vw_{}", Alphanumeric.sample_string(&mut rand::rng(), KEY_CHARS))
}

fn entry(name: String, role: Role, secret: &str, collections: Vec<String>) -> Result<ApiKey> {
    anyhow::ensure!(valid_key_name(&name), "--name {name:?}: 1 to 64 of A-Z a-z 0-9 _ - . @");
    if let Some(bad) = collections.iter().find(|c| !vectorwise_store::valid_name(c)) {
        anyhow::bail!("--collections: {bad:?} is not a collection name");
    }
    let collections = (!collections.is_empty()).then(|| collections.into_iter().collect());
    Ok(ApiKey { name, role, sha256: hash_key(secret.as_bytes()), collections })
}

pub fn run(a: Args) -> Result<()> {
    match a.command {
        Command::New { name, role, collections } => {
            let key = new_key();
            let line = entry(name, role, &key, collections)?.file_line();
            println!("{key}\n{line}");
            eprintln!(
                "The first line is the key: it is shown this once; give it to its client (`Authorization: Bearer <key>`).\n\
                 Append the second line to the keys file (VECTORWISE_API_KEYS_FILE) and send the server SIGHUP."
            );
        }
        Command::Hash { name, role, collections } => {
            let mut input = String::new();
            std::io::stdin().read_to_string(&mut input).context("cannot read the key from standard input")?;
            let key = input.strip_suffix('\n').map_or(input.as_str(), |k| k.strip_suffix('\r').unwrap_or(k));
            check_plain_key(key).map_err(anyhow::Error::msg)?;
            match (name, role) {
                (Some(name), Some(role)) => println!("{}", entry(name, role, key, collections)?.file_line()),
                _ => println!("{}", to_hex(&hash_key(key.as_bytes()))),
            }
        }
    }
    Ok(())
}

/// Where `serve` reads its keys: a keys file, one admin key in plain, a
/// metrics key in plain. Read again on SIGHUP (the plain keys do not change).
#[derive(Clone, Debug)]
pub struct Sources {
    pub file: Option<PathBuf>,
    pub admin_key: Option<String>,
    pub metrics_key: Option<String>,
}

/// The name the admin key of `VECTORWISE_API_KEY` goes by in logs.
const ADMIN_KEY_NAME: &str = "VECTORWISE_API_KEY";

impl Sources {
    /// Checks the plain keys (at start; they do not change afterwards).
    pub fn check(&self) -> Result<()> {
        if let Some(k) = &self.admin_key {
            check_plain_key(k).map_err(|e| anyhow::anyhow!("VECTORWISE_API_KEY / --api-key: {e}"))?;
        }
        if let Some(k) = &self.metrics_key {
            check_plain_key(k).map_err(|e| anyhow::anyhow!("VECTORWISE_METRICS_KEY / --metrics-key: {e}"))?;
        }
        Ok(())
    }

    /// Whether any API key is configured (else the server is open).
    pub fn any(&self) -> bool {
        self.file.is_some() || self.admin_key.is_some()
    }

    /// The keys as they are now: open when no API key is configured.
    pub fn load(&self) -> Result<Keys> {
        let mut keys = if self.any() {
            let mut list = match &self.file {
                Some(path) => load_key_file(path)?,
                None => Vec::new(),
            };
            if let Some(k) = &self.admin_key {
                list.push(ApiKey { name: ADMIN_KEY_NAME.into(), role: Role::Admin, sha256: hash_key(k.as_bytes()), collections: None });
            }
            Keys::required(list)?
        } else {
            Keys::open()
        };
        if let Some(k) = &self.metrics_key {
            keys = keys.with_metrics_key(k);
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_keys_are_long_random_and_valid() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + KEY_CHARS);
        assert!(check_plain_key(&a).is_ok());
    }
}
