//! Rate limits (`governor`, GCRA): one budget per caller for each kind of
//! work, off unless configured.
//!
//! - **Who**: a caller with an API key spends its key's budgets (all
//!   connections and addresses together); a caller without one (an open
//!   server) its address's: the IPv4 address, or the /64 of an IPv6 one (a
//!   single host usually holds a whole /64). Behind a proxy every anonymous
//!   client is the proxy's address: give keys.
//! - **What**: `search` (single searches and point reads), `write` (upserts,
//!   deletes, creating and deleting collections), `batch` (the queries of
//!   batch searches: a batch of n spends n). Which route spends which budget
//!   is `auth::ROUTES`' `budget`.
//! - **How much**: `--rate-limit-{search,write,batch}` per second (fractions
//!   allowed); the burst is one second's worth (at least 1), and for batches
//!   at least `max_batch`, so that the largest batch the server admits can
//!   ever pass (it then waits `n / rate` before the next).
//! - Over budget: 429 with `Retry-After` (whole seconds, at least 1: when the
//!   request would pass) and a JSON `detail`. A refused request spends nothing.

use crate::auth::Caller;
use crate::error::ApiError;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A rate budget: what a route spends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Budget {
    /// Single searches and point reads.
    Search,
    /// Upserts, deletes, collection creation and deletion.
    Write,
    /// The queries of batch searches (a batch of n spends n).
    Batch,
}

impl Budget {
    pub const ALL: [Budget; 3] = [Budget::Search, Budget::Write, Budget::Batch];

    pub fn as_str(self) -> &'static str {
        match self {
            Budget::Search => "search",
            Budget::Write => "write",
            Budget::Batch => "batch",
        }
    }

    /// What the 429's detail calls what was spent.
    fn what(self) -> &'static str {
        match self {
            Budget::Search => "searches",
            Budget::Write => "writes",
            Budget::Batch => "batch queries",
        }
    }
}

/// Per-second rates of each budget; `None`: unlimited (the default).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RateLimits {
    pub search: Option<f64>,
    pub write: Option<f64>,
    pub batch: Option<f64>,
}

/// Highest rate accepted: a million a second.
pub const MAX_RATE: f64 = 1e6;

impl RateLimits {
    pub fn get(&self, budget: Budget) -> Option<f64> {
        match budget {
            Budget::Search => self.search,
            Budget::Write => self.write,
            Budget::Batch => self.batch,
        }
    }

    /// Every rate set is finite and in (0, [`MAX_RATE`]]; the error names the budget.
    pub fn check(&self) -> Result<(), String> {
        for b in Budget::ALL {
            if let Some(r) = self.get(b)
                && !(r > 0.0 && r <= MAX_RATE)
            {
                return Err(format!("the {} rate limit must be a number of requests per second in (0, {MAX_RATE}]", b.as_str()));
            }
        }
        Ok(())
    }

    /// Whether any budget is limited.
    pub fn any(&self) -> bool {
        Budget::ALL.iter().any(|b| self.get(*b).is_some())
    }
}

/// Whose budgets a request spends.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum RateKey {
    /// An API key, by name.
    Key(Arc<str>),
    /// An anonymous client's address (IPv6: its /64).
    Addr(IpAddr),
    /// An anonymous client whose address is not known (served without the
    /// listener that records it): all such clients share one budget.
    Unknown,
}

impl RateKey {
    pub(crate) fn address(peer: Option<SocketAddr>) -> RateKey {
        match peer.map(|p| p.ip().to_canonical()) {
            Some(IpAddr::V6(v6)) => {
                let s = v6.segments();
                RateKey::Addr(IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)))
            }
            Some(v4) => RateKey::Addr(v4),
            None => RateKey::Unknown,
        }
    }
}

/// One budget's limiter and its rate.
#[derive(Debug)]
struct Limiter {
    per_second: f64,
    keyed: DefaultKeyedRateLimiter<RateKey>,
}

/// Every budget's limiter.
#[derive(Debug)]
pub(crate) struct Limiters {
    search: Option<Limiter>,
    write: Option<Limiter>,
    batch: Option<Limiter>,
    /// Admissions so far, to forget idle callers now and then.
    admissions: AtomicU64,
}

/// Callers idle long enough to have their whole burst back are forgotten
/// every this many admissions (their state equals a fresh one's).
const SWEEP_EVERY: u64 = 4096;

impl Limiters {
    pub(crate) fn new(limits: &RateLimits, max_batch: usize) -> Limiters {
        let make = |budget: Budget| {
            let per_second = limits.get(budget)?.clamp(1e-9, MAX_RATE);
            let floor = if budget == Budget::Batch { max_batch.clamp(1, u32::MAX as usize) as u32 } else { 1 };
            let burst = (per_second.ceil() as u32).max(floor);
            let period = Duration::from_secs_f64(1.0 / per_second);
            let quota = Quota::with_period(period).unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX));
            let quota = quota.allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
            Some(Limiter { per_second, keyed: DefaultKeyedRateLimiter::dashmap(quota) })
        };
        Limiters {
            search: make(Budget::Search),
            write: make(Budget::Write),
            batch: make(Budget::Batch),
            admissions: AtomicU64::new(0),
        }
    }

    fn limiter(&self, budget: Budget) -> Option<&Limiter> {
        match budget {
            Budget::Search => self.search.as_ref(),
            Budget::Write => self.write.as_ref(),
            Budget::Batch => self.batch.as_ref(),
        }
    }

    /// Spends `n` of `budget` for `caller`, or says when to come back.
    pub(crate) fn admit(&self, caller: &Caller, budget: Budget, n: usize) -> Result<(), ApiError> {
        let Some(limiter) = self.limiter(budget) else { return Ok(()) };
        if self.admissions.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            for l in [&self.search, &self.write, &self.batch].into_iter().flatten() {
                l.keyed.retain_recent();
                l.keyed.shrink_to_fit();
            }
        }
        let cells = NonZeroU32::new(n.clamp(1, u32::MAX as usize) as u32).unwrap_or(NonZeroU32::MIN);
        let wait = match limiter.keyed.check_key_n(&caller.rate_key, cells) {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(not_until)) => not_until.wait_time_from(limiter.keyed.clock().now()),
            // More than the burst: never passes at once (not reached while
            // the batch burst is at least max_batch); the time n cells take.
            Err(_) => Duration::from_secs_f64(n as f64 / limiter.per_second),
        };
        let retry_after = wait.as_secs_f64().ceil().max(1.0) as u64;
        Err(ApiError::RateLimited { what: budget.what(), budget: budget.as_str(), retry_after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(key: &str) -> Caller {
        Caller { key: Some(key.into()), collections: None, rate_key: RateKey::Key(key.into()), admin: false }
    }

    fn retry_after(e: ApiError) -> u64 {
        match e {
            ApiError::RateLimited { retry_after, .. } => retry_after,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_caller_and_budget_has_its_own_bucket() {
        let limits = RateLimits { search: Some(2.0), write: Some(1.0), batch: None };
        let l = Limiters::new(&limits, 100);
        let (a, b) = (caller("a"), caller("b"));
        assert!(l.admit(&a, Budget::Search, 1).is_ok() && l.admit(&a, Budget::Search, 1).is_ok(), "a burst of 2");
        let wait = retry_after(l.admit(&a, Budget::Search, 1).unwrap_err());
        assert_eq!(wait, 1, "half a second, rounded up to whole seconds");
        assert!(l.admit(&b, Budget::Search, 1).is_ok(), "b has its own budget");
        assert!(l.admit(&a, Budget::Write, 1).is_ok(), "writes are another budget");
        assert!(l.admit(&a, Budget::Write, 1).is_err());
        for _ in 0..1000 {
            assert!(l.admit(&a, Budget::Batch, 1000).is_ok(), "batches unlimited");
        }
    }

    #[test]
    fn a_batch_spends_its_queries_and_the_largest_batch_can_pass() {
        let l = Limiters::new(&RateLimits { batch: Some(10.0), ..RateLimits::default() }, 64);
        let a = caller("a");
        assert!(l.admit(&a, Budget::Batch, 64).is_ok(), "burst is max_batch when above the rate");
        let wait = retry_after(l.admit(&a, Budget::Batch, 64).unwrap_err());
        assert!((6..=7).contains(&wait), "64 queries at 10/s: {wait} s");
        let l = Limiters::new(&RateLimits { batch: Some(10.0), ..RateLimits::default() }, 4);
        assert!(l.admit(&a, Budget::Batch, 10).is_ok(), "burst is the rate when above max_batch");
        assert!(l.admit(&a, Budget::Batch, 1).is_err());
    }

    #[test]
    fn fractional_rates_and_long_waits() {
        let l = Limiters::new(&RateLimits { write: Some(0.1), ..RateLimits::default() }, 1);
        let a = caller("a");
        assert!(l.admit(&a, Budget::Write, 1).is_ok());
        let wait = retry_after(l.admit(&a, Budget::Write, 1).unwrap_err());
        assert!((9..=10).contains(&wait), "{wait}");
    }

    #[test]
    fn rates_are_checked() {
        assert!(RateLimits::default().check().is_ok());
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 2e6] {
            let e = RateLimits { batch: Some(bad), ..RateLimits::default() }.check().unwrap_err();
            assert!(e.contains("batch"), "{e}");
        }
    }

    #[test]
    fn anonymous_callers_are_their_address_and_ipv6_its_64() {
        let v6 = |s: &str| RateKey::address(Some(SocketAddr::new(s.parse().unwrap(), 1)));
        assert_eq!(v6("2001:db8:1:2:3:4:5:6"), v6("2001:db8:1:2:ffff::1"));
        assert_ne!(v6("2001:db8:1:2::1"), v6("2001:db8:1:3::1"));
        assert_eq!(v6("::ffff:10.0.0.1"), v6("10.0.0.1"), "a mapped IPv4 is the IPv4");
        assert_ne!(v6("10.0.0.1"), v6("10.0.0.2"));
        assert_eq!(RateKey::address(None), RateKey::Unknown);
    }
}
