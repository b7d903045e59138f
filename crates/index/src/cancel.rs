//! A stop signal for long builds: the optimiser of a collection that is
//! being dropped, replaced or shut down sets it, and a merge of a million
//! points returns [`Error::Cancelled`] at its next check instead of running
//! to its end (20 s on 2 cores) while the caller waits.

use crate::error::{Error, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Checked between the steps of a build and of a calibration (each a second
/// or less at 1M × 128 on 2 cores: a k-means round, a slice of the
/// assignment, the encoding, the ground truth, a sweep).
#[derive(Clone, Debug, Default)]
pub struct Cancel(Option<Arc<AtomicBool>>);

impl Cancel {
    /// Cancelled once `flag` is set.
    pub fn new(flag: Arc<AtomicBool>) -> Self {
        Cancel(Some(flag))
    }

    /// Never cancelled.
    pub fn never() -> Self {
        Cancel(None)
    }

    /// [`Error::Cancelled`] once the flag is set.
    pub fn check(&self) -> Result<()> {
        match &self.0 {
            Some(flag) if flag.load(Ordering::Acquire) => Err(Error::Cancelled),
            _ => Ok(()),
        }
    }
}
