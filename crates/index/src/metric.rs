//! The metric an index answers for, and the preprocessing that lets every
//! search method (exact, graph, scan, partitioned scan) serve it with one
//! squared-L2 machinery.
//!
//! The engine searches a *space*: the stored vectors and prepared queries,
//! compared by squared L2. Each metric maps the user's vectors into it so that
//! the L2 order in the space is the metric's order:
//!
//! | metric   | stored row                        | query          | returned distance        |
//! |----------|-----------------------------------|----------------|--------------------------|
//! | `l2`     | x                                 | q              | ‖q − x‖²                 |
//! | `cosine` | x / ‖x‖ (zero rows refused)       | q / ‖q‖        | ‖q̂ − x̂‖² = 2 − 2·cos     |
//! | `ip`     | [x, √(M² − ‖x‖²)], M = max ‖x‖    | [q, 0]         | −q·x                     |
//!
//! The `ip` row is the reduction of maximum inner-product search to nearest
//! neighbours (Bachrach et al. 2014, "Speeding up the Xbox recommender
//! system using a Euclidean transformation for inner-product spaces"): every
//! stored row has norm M, so ‖q' − x'‖² = ‖q‖² + M² − 2·q·x, which orders the
//! points by −q·x whatever the query's length. The query is then scaled to
//! length [`IP_QUERY_SCALE`]·M: the order does not change, but the quantised
//! stages' error (fixed, from the stored side) no longer drowns the
//! inner-product term, which grows with the query (bench/compare probe on
//! clustered data with norms 0.1–10: scan recall@10 at rerank 8 0.135 → 0.988),
//! and a query of any scale (1e-8 or 1e8) gets the same answer. The returned
//! `ip` distance is recomputed from the stored x (its first `dim` values) and
//! the original query, so it is exact, not derived from the space's rounding.
//!
//! Values are bounded so that no distance overflows f32: under `l2` and `ip`
//! a stored row or a query whose squared norm reaches [`MAX_NORM_SQUARED`] is
//! refused (`cosine` scales any finite vector to unit length first).
//!
//! Nor may distances between stored points underflow: a point admitted under
//! `l2` or `ip` (a collection's write, `vectorwise build`'s input,
//! [`Metric::refuse_too_small`]) must not be a non-zero vector whose squared
//! norm is under [`MIN_NORM_SQUARED`]. Between such points every f32
//! squared difference is a denormal or 0, so all distances tie and a search
//! near them answers the lowest ids, not the nearest. The rule is on
//! admission only: a query may be of any scale (under `l2` a tiny one is as
//! near the points as the zero vector; `ip` scales it), and builds of points
//! a store took before the rule existed do not fail on them.

use crate::distance::{dot, normalize_query};
use crate::error::{Error, Result};
use crate::vectors::Matrix;
use std::borrow::Cow;

/// Largest squared norm a stored row or query may have (f32 distances of
/// such vectors, and of an `ip` query scaled to [`IP_QUERY_SCALE`]·M, stay
/// far below `f32::MAX` ≈ 3.4e38).
pub const MAX_NORM_SQUARED: f64 = 1e34;

/// Smallest squared norm a non-zero stored row or query may have under
/// `l2` and `ip`. At 1e-20 a 4096-d vector's components are about 1.6e-12,
/// and a difference of 1e-4 of them squares to 2.5e-32, still a normal f32
/// (from 1.2e-38); at 1e-25 scale (squared norm 1e-48) every f32 square is 0.
pub const MIN_NORM_SQUARED: f64 = 1e-20;

/// An `ip` query is scaled to this many times the stored rows' norm M.
pub const IP_QUERY_SCALE: f32 = 10.0;

/// How distances between a query and the stored points are measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Squared Euclidean distance.
    #[default]
    L2,
    /// Inner product; the distance is its negation (larger product = nearer).
    Ip,
    /// Cosine similarity; the distance is the squared L2 between unit vectors.
    Cosine,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::L2, Metric::Ip, Metric::Cosine];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::Ip => "ip",
            Metric::Cosine => "cosine",
        }
    }

    /// The code stored in the index header.
    pub(crate) fn code(self) -> u32 {
        match self {
            Metric::L2 => 0,
            Metric::Ip => 1,
            Metric::Cosine => 2,
        }
    }

    pub(crate) fn from_code(code: u32) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.code() == code)
    }

    /// Width of the space's vectors for user vectors of `dim` values.
    pub fn space_dim(self, dim: usize) -> usize {
        if self == Metric::Ip { dim + 1 } else { dim }
    }

    /// The user's dimension for a space of `space_dim` values.
    pub(crate) fn user_dim(self, space_dim: usize) -> usize {
        if self == Metric::Ip { space_dim.saturating_sub(1) } else { space_dim }
    }

    /// The stored rows for `vectors` (see the module doc). Refuses non-finite
    /// values, rows too large for f32 distances and, for `cosine`, zero rows,
    /// naming the first such row.
    pub fn prepare_rows(self, vectors: &Matrix) -> Result<Cow<'_, Matrix>> {
        let dim = vectors.dim();
        if let Some(i) = vectors.as_slice().iter().position(|x| !x.is_finite()) {
            return Err(Error::NonFinite { index: i / dim.max(1) });
        }
        if let Some(i) = vectors.rows().position(|r| self.too_large(r)) {
            return Err(Error::TooLarge { index: i });
        }
        match self {
            Metric::L2 => Ok(Cow::Borrowed(vectors)),
            Metric::Cosine => {
                let mut data = vectors.as_slice().to_vec();
                for (i, row) in data.chunks_exact_mut(dim.max(1)).enumerate() {
                    if !normalize_query(row) {
                        return Err(Error::ZeroVector { index: i });
                    }
                }
                Matrix::new(dim, data).map(Cow::Owned)
            }
            Metric::Ip => {
                let norms: Vec<f64> = vectors.rows().map(norm_squared).collect();
                let max = norms.iter().copied().fold(0.0, f64::max);
                let mut data = Vec::with_capacity(vectors.len() * (dim + 1));
                for (row, n) in vectors.rows().zip(norms) {
                    data.extend_from_slice(row);
                    data.push((max - n).max(0.0).sqrt() as f32);
                }
                Matrix::new(dim + 1, data).map(Cow::Owned)
            }
        }
    }

    /// A query in the space: checked for its dimension (`dim`, the user's),
    /// finite values and size, normalised for `cosine` (a zero query is
    /// refused), for `ip` scaled to [`IP_QUERY_SCALE`] times `space_norm` (the
    /// stored rows' norm M; a zero query stays zero) and extended by a zero.
    pub fn prepare_query<'q>(self, query: &'q [f32], dim: usize, space_norm: f32) -> Result<Cow<'q, [f32]>> {
        if query.len() != dim {
            return Err(Error::DimensionMismatch { expected: dim, actual: query.len() });
        }
        if query.iter().any(|x| !x.is_finite()) {
            return Err(Error::NonFinite { index: 0 });
        }
        if self.too_large(query) {
            return Err(Error::TooLarge { index: 0 });
        }
        Ok(match self {
            Metric::L2 => Cow::Borrowed(query),
            Metric::Cosine => {
                let mut q = query.to_vec();
                if !normalize_query(&mut q) {
                    return Err(Error::ZeroVector { index: 0 });
                }
                Cow::Owned(q)
            }
            Metric::Ip => Cow::Owned(ip_query(query, space_norm)),
        })
    }

    /// A point as a collection keeps it before it is indexed (the user's
    /// view, what a get returns): checked as [`Metric::prepare_rows`] checks
    /// a row, refused if [too small](Metric::refuse_too_small), and scaled
    /// to unit length under `cosine`. Errors name `index`.
    pub fn prepare_point(self, v: &[f32], index: usize) -> Result<Cow<'_, [f32]>> {
        self.point(v, index, true)
    }

    /// Refuses, naming the first, a non-zero row whose squared norm is under
    /// [`MIN_NORM_SQUARED`] under `l2` or `ip` (see the module doc): for
    /// points being admitted, not for builds of points already stored.
    pub fn refuse_too_small(self, vectors: &Matrix) -> Result<()> {
        match vectors.rows().position(|r| self.too_small(r)) {
            Some(index) => Err(Error::TooSmall { index }),
            None => Ok(()),
        }
    }

    /// [`Metric::prepare_point`], with the admission rule only if `admit`.
    fn point(self, v: &[f32], index: usize, admit: bool) -> Result<Cow<'_, [f32]>> {
        if v.iter().any(|x| !x.is_finite()) {
            return Err(Error::NonFinite { index });
        }
        if let Some(e) = self.size_refusal(v, index, admit) {
            return Err(e);
        }
        match self {
            Metric::L2 | Metric::Ip => Ok(Cow::Borrowed(v)),
            Metric::Cosine => {
                let mut row = v.to_vec();
                if !normalize_query(&mut row) {
                    return Err(Error::ZeroVector { index });
                }
                Ok(Cow::Owned(row))
            }
        }
    }

    /// A query for [`Metric::point_distance`]: checked as
    /// [`Metric::prepare_query`] checks it; unit length under `cosine`, as
    /// given otherwise.
    pub fn prepare_point_query<'q>(self, query: &'q [f32], dim: usize) -> Result<Cow<'q, [f32]>> {
        if query.len() != dim {
            return Err(Error::DimensionMismatch { expected: dim, actual: query.len() });
        }
        self.point(query, 0, false)
    }

    /// The metric's distance between a query and a point, both as
    /// [`Metric::prepare_point`] keeps them: the distance every index of
    /// this metric returns (squared L2; `-q·x` for `ip`).
    pub fn point_distance(self, query: &[f32], point: &[f32]) -> f32 {
        match self {
            Metric::Ip => -dot(query, point),
            Metric::L2 | Metric::Cosine => crate::distance::l2_squared(query, point),
        }
    }

    /// The norm M every stored row of an `ip` space shares, read from any
    /// one of them (`stored`): the scale [`Metric::prepare_query`] takes.
    pub fn space_norm(stored: &[f32]) -> f32 {
        norm_squared(stored).sqrt() as f32
    }

    /// Whether `v` is too large for f32 distances; `cosine` scales every
    /// vector to unit length first, so any finite one will do.
    fn too_large(self, v: &[f32]) -> bool {
        matches!(self.size_refusal(v, 0, false), Some(Error::TooLarge { .. }))
    }

    /// Whether `v` is non-zero but so small that f32 distances between such
    /// vectors underflow ([`MIN_NORM_SQUARED`]); not for `cosine`.
    fn too_small(self, v: &[f32]) -> bool {
        matches!(self.size_refusal(v, 0, true), Some(Error::TooSmall { .. }))
    }

    /// The refusal of `v` (named `index`) for its size, from one norm: too
    /// large under `l2` and `ip`, and with `admit` too small as well.
    fn size_refusal(self, v: &[f32], index: usize, admit: bool) -> Option<Error> {
        if self == Metric::Cosine {
            return None;
        }
        let n = norm_squared(v);
        if n >= MAX_NORM_SQUARED {
            Some(Error::TooLarge { index })
        } else if admit && n > 0.0 && n < MIN_NORM_SQUARED {
            Some(Error::TooSmall { index })
        } else {
            None
        }
    }

    /// The query an indexed point makes, in the space (leave-one-out
    /// calibration): the stored row itself, but for `ip` the point's own
    /// values, scaled and extended as [`Metric::prepare_query`] does.
    pub(crate) fn query_from_stored(self, stored: &[f32], space_norm: f32) -> Vec<f32> {
        match self {
            Metric::Ip => ip_query(self.user_row(stored), space_norm),
            Metric::L2 | Metric::Cosine => stored.to_vec(),
        }
    }

    /// The user's view of a stored row: `ip` drops the extra coordinate
    /// (the original vector); `cosine` rows are the unit vectors.
    pub(crate) fn user_row(self, stored: &[f32]) -> &[f32] {
        &stored[..self.user_dim(stored.len())]
    }

    /// Whether the distances the space computes must be replaced by the
    /// metric's own ([`Metric::distance`]).
    pub(crate) fn recomputes(self) -> bool {
        self == Metric::Ip
    }

    /// The metric's distance from the user's `query` to a stored row, for
    /// metrics that [`recompute`](Metric::recomputes) it.
    pub(crate) fn distance(self, query: &[f32], stored: &[f32]) -> f32 {
        match self {
            Metric::Ip => -dot(query, &stored[..query.len()]),
            Metric::L2 | Metric::Cosine => crate::distance::l2_squared(query, stored),
        }
    }

    /// Advice for a build of `vectors` under this metric, when the data
    /// suggests a cheaper or more fitting one: every row of an `l2` build
    /// has norm 1 within 1e-3 (then `cosine` ranks the same).
    pub fn advice(self, vectors: &Matrix) -> Option<String> {
        if self == Metric::L2 && !vectors.is_empty() && vectors.rows().all(|r| (norm_squared(r).sqrt() - 1.0).abs() < 1e-3) {
            return Some(
                "every vector has norm 1: `--metric cosine` ranks the same under l2 and keeps queries of any length right"
                    .into(),
            );
        }
        None
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Metric {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Metric::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("unknown metric `{s}`: expected `l2`, `ip` or `cosine`"))
    }
}

/// `[s·q, 0]` with `s` scaling `q` to [`IP_QUERY_SCALE`]·`space_norm`
/// (a zero query, or an index of zero rows, is not scaled).
fn ip_query(query: &[f32], space_norm: f32) -> Vec<f32> {
    let norm = norm_squared(query).sqrt();
    let scale = if norm > 0.0 && space_norm > 0.0 { f64::from(IP_QUERY_SCALE * space_norm) / norm } else { 1.0 };
    let mut q: Vec<f32> = query.iter().map(|&x| (f64::from(x) * scale) as f32).collect();
    q.push(0.0);
    q
}

fn norm_squared(row: &[f32]) -> f64 {
    row.iter().map(|&x| f64::from(x) * f64::from(x)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(rows: &[&[f32]]) -> Matrix {
        Matrix::new(rows[0].len(), rows.iter().flat_map(|r| r.iter().copied()).collect()).unwrap()
    }

    #[test]
    fn ip_space_orders_by_inner_product() {
        let data = m(&[&[1.0, 0.0], &[3.0, 3.0], &[0.1, 0.2], &[-2.0, 5.0]]);
        let stored = Metric::Ip.prepare_rows(&data).unwrap();
        assert_eq!(stored.dim(), 3);
        let q = [0.5f32, 2.0];
        let pq = Metric::Ip.prepare_query(&q, 2, 29f32.sqrt()).unwrap();
        let mut by_space: Vec<usize> = (0..4).collect();
        by_space.sort_by(|&a, &b| {
            let d = |i: usize| crate::distance::l2_squared_scalar(&pq, stored.row(i));
            d(a).total_cmp(&d(b))
        });
        let mut by_ip: Vec<usize> = (0..4).collect();
        by_ip.sort_by(|&a, &b| Metric::Ip.distance(&q, stored.row(a)).total_cmp(&Metric::Ip.distance(&q, stored.row(b))));
        assert_eq!(by_space, by_ip);
        assert_eq!(by_ip, vec![3, 1, 0, 2]);
        // Every stored row has the same norm, and the user's row is kept.
        for i in 0..4 {
            assert!((norm_squared(stored.row(i)) - 29.0).abs() < 1e-4);
            assert_eq!(Metric::Ip.user_row(stored.row(i)), data.row(i));
        }
    }

    #[test]
    fn cosine_refuses_zero_rows_and_queries() {
        let err = Metric::Cosine.prepare_rows(&m(&[&[1.0, 2.0], &[0.0, 0.0]])).unwrap_err();
        assert!(matches!(err, Error::ZeroVector { index: 1 }), "{err}");
        assert!(matches!(Metric::Cosine.prepare_query(&[0.0, 0.0], 2, 1.0), Err(Error::ZeroVector { .. })));
        // l2 and ip take a zero query: it is a point like any other.
        assert!(Metric::L2.prepare_query(&[0.0, 0.0], 2, 1.0).is_ok());
        assert!(Metric::Ip.prepare_query(&[0.0, 0.0], 2, 1.0).is_ok());
        let q = Metric::Cosine.prepare_query(&[3.0, 4.0], 2, 1.0).unwrap();
        assert!((q[0] - 0.6).abs() < 1e-6 && (q[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn queries_are_checked() {
        for metric in Metric::ALL {
            assert!(matches!(metric.prepare_query(&[1.0], 2, 1.0), Err(Error::DimensionMismatch { expected: 2, actual: 1 })));
            assert!(matches!(metric.prepare_query(&[1.0, f32::NAN], 2, 1.0), Err(Error::NonFinite { .. })));
            assert_eq!(metric.as_str().parse::<Metric>().unwrap(), metric);
            assert_eq!(Metric::from_code(metric.code()), Some(metric));
        }
        assert!("dot".parse::<Metric>().is_err());
    }

    #[test]
    fn advice_spots_unit_data_under_l2() {
        assert!(Metric::L2.advice(&m(&[&[0.6, 0.8], &[1.0, 0.0]])).is_some());
        assert!(Metric::L2.advice(&m(&[&[0.6, 0.8], &[2.0, 0.0]])).is_none());
        assert!(Metric::Cosine.advice(&m(&[&[0.6, 0.8]])).is_none());
    }
}
