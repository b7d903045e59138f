//! [`SearchParams`]: the knobs one search may set, and their text form
//! (`method=scan,rerank=16`, `ef=128`, `exact`) used by the CLI and the
//! benchmark harness.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// How a search finds its candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Method {
    /// The index's own choice (what it was built and calibrated for).
    #[default]
    Auto,
    /// HNSW graph walk with beam width `ef_search`.
    Hnsw,
    /// Exhaustive scan of compressed codes, then an exact re-rank of the best
    /// `rerank × k` candidates.
    Scan,
    /// Every stored vector, exactly.
    Exact,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Auto => "auto",
            Method::Hnsw => "hnsw",
            Method::Scan => "scan",
            Method::Exact => "exact",
        }
    }
}

impl FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Method::Auto),
            "hnsw" => Ok(Method::Hnsw),
            "scan" => Ok(Method::Scan),
            "exact" => Ok(Method::Exact),
            _ => Err(Error::InvalidParameter {
                name: "method",
                reason: format!("unknown method `{s}` (auto, hnsw, scan, exact)"),
            }),
        }
    }
}

/// Knobs a single search may set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SearchParams {
    pub method: Method,
    /// HNSW beam width on layer 0; raised to `k` when smaller.
    pub ef_search: usize,
    /// Quantised scan: how many candidates per requested neighbour are
    /// re-ranked with exact distances (`rerank × k` in all).
    pub rerank: usize,
    /// Partitioned scan: how many of the nearest lists are read; 0 (and any
    /// number at or above the index's lists) reads them all. Ignored by an
    /// index without lists.
    pub nprobe: usize,
}

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams { method: Method::Auto, ef_search: 64, rerank: 64, nprobe: 0 }
    }
}

impl SearchParams {
    /// An HNSW search with beam width `ef_search`.
    pub fn hnsw(ef_search: usize) -> Self {
        SearchParams { method: Method::Hnsw, ef_search, ..Default::default() }
    }

    /// A quantised scan re-ranking `rerank × k` candidates.
    pub fn scan(rerank: usize) -> Self {
        SearchParams { method: Method::Scan, rerank, ..Default::default() }
    }

    /// A scan of the `nprobe` nearest lists re-ranking `rerank × k` candidates.
    pub fn probe(nprobe: usize, rerank: usize) -> Self {
        SearchParams { method: Method::Scan, rerank, nprobe, ..Default::default() }
    }

    /// An exact search.
    pub fn exact() -> Self {
        SearchParams { method: Method::Exact, ..Default::default() }
    }

    /// The short text form [`FromStr`] reads back: `ef=64`, `rerank=32`,
    /// `nprobe=8,rerank=16`, `exact`.
    pub fn setting(&self) -> String {
        match self.method {
            Method::Hnsw => format!("ef={}", self.ef_search),
            Method::Scan if self.nprobe > 0 => format!("nprobe={},rerank={}", self.nprobe, self.rerank),
            Method::Scan => format!("rerank={}", self.rerank),
            Method::Exact => "exact".to_owned(),
            Method::Auto => format!("method=auto,ef={},rerank={}", self.ef_search, self.rerank),
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.ef_search == 0 {
            return Err(Error::InvalidParameter { name: "ef_search", reason: "must be at least 1".into() });
        }
        if self.rerank == 0 {
            return Err(Error::InvalidParameter { name: "rerank", reason: "must be at least 1".into() });
        }
        Ok(())
    }
}

/// `method=hnsw,ef=128`; `ef=` alone implies `hnsw`, `rerank=` alone `scan`,
/// and a bare method name is accepted (`exact`).
impl FromStr for SearchParams {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut p = SearchParams::default();
        let mut method = None;
        for part in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let (key, value) = part.split_once('=').unwrap_or(("method", part));
            let number = || {
                value.parse::<usize>().map_err(|_| Error::InvalidParameter {
                    name: "search setting",
                    reason: format!("`{key}` needs a positive integer, got `{value}`"),
                })
            };
            match key {
                "method" => method = Some(value.parse()?),
                "ef" | "ef_search" => {
                    p.ef_search = number()?;
                    method.get_or_insert(Method::Hnsw);
                }
                "rerank" => {
                    p.rerank = number()?;
                    method.get_or_insert(Method::Scan);
                }
                "nprobe" => {
                    p.nprobe = number()?;
                    method.get_or_insert(Method::Scan);
                }
                _ => {
                    return Err(Error::InvalidParameter {
                        name: "search setting",
                        reason: format!("unknown key `{key}` (method, ef, rerank, nprobe)"),
                    });
                }
            }
        }
        p.method = method.unwrap_or(Method::Auto);
        p.validate()?;
        Ok(p)
    }
}

/// The short form a benchmark table shows: `hnsw ef=64`, `scan rerank=16`.
impl fmt::Display for SearchParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.method {
            Method::Hnsw => write!(f, "hnsw ef={}", self.ef_search),
            Method::Scan if self.nprobe > 0 => write!(f, "scan nprobe={} rerank={}", self.nprobe, self.rerank),
            Method::Scan => write!(f, "scan rerank={}", self.rerank),
            Method::Exact => f.write_str("exact"),
            Method::Auto => write!(f, "auto ef={} rerank={}", self.ef_search, self.rerank),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_text_forms() {
        assert_eq!("ef=128".parse::<SearchParams>().unwrap(), SearchParams::hnsw(128));
        assert_eq!("rerank=8".parse::<SearchParams>().unwrap(), SearchParams::scan(8));
        assert_eq!("exact".parse::<SearchParams>().unwrap().method, Method::Exact);
        assert_eq!("method=scan, rerank=4".parse::<SearchParams>().unwrap(), SearchParams::scan(4));
        assert_eq!("".parse::<SearchParams>().unwrap(), SearchParams::default());
        for bad in ["ef=0", "ef=x", "speed=3", "method=fast", "rerank=-1"] {
            assert!(bad.parse::<SearchParams>().is_err(), "{bad}");
        }
        assert_eq!("nprobe=4,rerank=8".parse::<SearchParams>().unwrap(), SearchParams::probe(4, 8));
        for p in [SearchParams::hnsw(7), SearchParams::scan(3), SearchParams::probe(2, 3), SearchParams::exact(), SearchParams::default()] {
            assert_eq!(p.setting().parse::<SearchParams>().unwrap(), p);
        }
        for p in [SearchParams::hnsw(7), SearchParams::scan(3), SearchParams::probe(5, 6), SearchParams::exact()] {
            assert_eq!(p.to_string().replace(' ', ",").parse::<SearchParams>().unwrap(), p);
        }
    }
}
