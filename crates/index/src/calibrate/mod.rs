//! Calibration: the recall table every index carries ([`table`]: its types
//! and the lookups that answer profiles and recall targets) and how it is
//! measured ([`measure`]). The table knows nothing of `Index`, so the file
//! format can store it without a circle.

pub mod measure;
pub mod table;

pub use measure::{CalibrateOptions, DEFAULT_QUERIES, calibrate, calibrate_in_place, calibrate_with};
pub use table::*;
