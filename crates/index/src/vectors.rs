//! Reading and writing vector files: NumPy `.npy` (float32, C order, 2-D) and
//! the ANN-benchmark `.fvecs` format. A [`Matrix`] is a dense row-major
//! `count x dim` block of `f32`.

use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use std::path::Path;

/// A dense row-major matrix of `f32` vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    dim: usize,
    data: Vec<f32>,
}

impl Matrix {
    /// Wraps `data` as rows of `dim` values. Fails when `dim` is 0 or does not divide the length.
    pub fn new(dim: usize, data: Vec<f32>) -> Result<Self> {
        if dim == 0 || data.len() % dim != 0 {
            return Err(Error::InvalidParameter {
                name: "dim",
                reason: format!("{} values cannot be split into rows of {dim}", data.len()),
            });
        }
        Ok(Matrix { dim, data })
    }
    pub fn dim(&self) -> usize {
        self.dim
    }
    pub fn len(&self) -> usize {
        self.data.len() / self.dim
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }
    pub fn rows(&self) -> std::slice::ChunksExact<'_, f32> {
        self.data.chunks_exact(self.dim)
    }
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// Reads a `.npy` or `.fvecs` file, chosen by extension (`.fvecs`, else NumPy).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("fvecs")) {
            parse_fvecs(path, &bytes)
        } else {
            parse_npy(path, &bytes)
        }
    }

    /// Writes the matrix as a NumPy `.npy` file (`<f4`, C order), atomically.
    pub fn save_npy(&self, path: &Path) -> Result<()> {
        write_atomic(path, |w| {
            w.write_all(&npy_header("<f4", self.len(), self.dim))?;
            for chunk in self.data.chunks(1 << 16) {
                w.write_all(bytemuck::cast_slice(&to_le(chunk)))?;
            }
            Ok(())
        })
    }
}

fn to_le(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits().to_le()).collect()
}

/// The NumPy 1.0 header for a C-order `rows x cols` array of `descr`
/// (`<f4`, `<i8`, ...), padded so the data starts on a 64-byte boundary (as
/// NumPy itself does).
/// Each column's smallest and largest value over `rows` (row-major, `dim`
/// wide; ±inf for none), and whether any value is NaN (`f32::min`/`max`
/// skip one, so it is looked for on its own).
pub(crate) fn column_ranges(rows: &[f32], dim: usize) -> (Vec<f32>, Vec<f32>, bool) {
    let mut lo = vec![f32::INFINITY; dim];
    let mut hi = vec![f32::NEG_INFINITY; dim];
    let mut nan = false;
    for r in rows.chunks_exact(dim.max(1)) {
        for ((l, h), &x) in lo.iter_mut().zip(hi.iter_mut()).zip(r) {
            *l = l.min(x);
            *h = h.max(x);
            nan |= x.is_nan();
        }
    }
    (lo, hi, nan)
}

pub fn npy_header(descr: &str, rows: usize, cols: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let unpadded = 10 + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    let mut h = Vec::with_capacity(total);
    h.extend_from_slice(b"\x93NUMPY\x01\x00");
    h.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.resize(total - 1, b' ');
    h.push(b'\n');
    h
}

/// A `.npy` file's header: dtype (`descr`, e.g. `<f4`), shape, and where
/// the data starts. Refuses Fortran order.
fn npy_layout<'b>(path: &Path, bytes: &'b [u8]) -> Result<(&'b str, Vec<usize>, usize)> {
    let unsupported = |reason: String| Error::UnsupportedFile { path: path.into(), reason };
    let corrupt = |reason: &str| Error::corrupt(path, reason);
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(unsupported("not a NumPy .npy file (bad magic)".into()));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(corrupt("truncated .npy header"));
            }
            (u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize, 12)
        }
        v => return Err(unsupported(format!("NumPy format version {v} not supported"))),
    };
    let data_start = start + header_len;
    let header = bytes.get(start..data_start).ok_or_else(|| corrupt("truncated .npy header"))?;
    let header = std::str::from_utf8(header).map_err(|_| corrupt(".npy header is not text"))?;
    let field = |name: &str| -> Option<&str> {
        let at = header.find(&format!("'{name}'"))? + name.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr").ok_or_else(|| corrupt(".npy header has no 'descr'"))?;
    let descr = descr.split(['\'', '"']).nth(1).unwrap_or("");
    let fortran = field("fortran_order").ok_or_else(|| corrupt(".npy header has no 'fortran_order'"))?;
    if !fortran.starts_with("False") {
        return Err(unsupported("Fortran-ordered arrays not supported; save a C-ordered array".into()));
    }
    let shape = field("shape").ok_or_else(|| corrupt(".npy header has no 'shape'"))?;
    let shape = shape.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or_else(|| corrupt("bad 'shape'"))?;
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| corrupt("bad 'shape'")))
        .collect::<Result<_>>()?;
    Ok((descr, dims, data_start))
}

fn parse_npy(path: &Path, bytes: &[u8]) -> Result<Matrix> {
    let unsupported = |reason: String| Error::UnsupportedFile { path: path.into(), reason };
    let corrupt = |reason: &str| Error::corrupt(path, reason);
    let (descr, dims, data_start) = npy_layout(path, bytes)?;
    if descr != "<f4" && descr != "=f4" && descr != "|f4" {
        return Err(unsupported(format!("dtype '{descr}' not supported; convert to float32 ('<f4')")));
    }
    let [count, dim] = dims[..] else {
        return Err(unsupported(format!("expected a 2-D array (count, dim), got shape {dims:?}")));
    };
    if dim == 0 {
        return Err(unsupported("dimension is 0".into()));
    }
    let expected = count.checked_mul(dim).and_then(|n| n.checked_mul(4)).ok_or_else(|| corrupt("shape too large"))?;
    let data = &bytes[data_start..];
    if data.len() != expected {
        return Err(corrupt(&format!(
            "data is {} bytes but shape ({count}, {dim}) needs {expected}: truncated or not float32",
            data.len()
        )));
    }
    let values = data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    Matrix::new(dim, values)
}

/// Reads point ids from a `.npy` file: a 1-D (or `n × 1`) array of
/// `uint64` or non-negative `int64`, little-endian.
pub fn load_ids(path: &Path) -> Result<Vec<u64>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let unsupported = |reason: String| Error::UnsupportedFile { path: path.into(), reason };
    let (descr, dims, data_start) = npy_layout(path, &bytes)?;
    let signed = match descr {
        "<u8" | "=u8" => false,
        "<i8" | "=i8" => true,
        _ => return Err(unsupported(format!("ids of dtype '{descr}' not supported; save them as uint64 or int64"))),
    };
    let count = match dims[..] {
        [n] | [n, 1] => n,
        _ => return Err(unsupported(format!("ids must be a 1-D array, got shape {dims:?}"))),
    };
    let data = &bytes[data_start..];
    // A shape is any number: `count * 8` may not fit (found by fuzzing).
    let needed = count.checked_mul(8);
    if Some(data.len()) != needed {
        let needed = needed.map_or_else(|| "more than 2^64 bytes".to_owned(), |n| n.to_string());
        return Err(Error::corrupt(path, format!("data is {} bytes but {count} ids need {needed}", data.len())));
    }
    let ids: Vec<u64> = data.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
    if signed {
        if let Some(row) = ids.iter().position(|&id| (id as i64) < 0) {
            return Err(unsupported(format!("id {} at row {row} is negative; ids are unsigned", ids[row] as i64)));
        }
    }
    Ok(ids)
}

fn parse_fvecs(path: &Path, bytes: &[u8]) -> Result<Matrix> {
    if bytes.len() < 4 {
        return Err(Error::corrupt(path, "empty .fvecs file"));
    }
    let dim = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let row = 4 + 4 * dim;
    if dim == 0 || dim > 65_536 || bytes.len() % row != 0 {
        return Err(Error::corrupt(path, format!("not an .fvecs file of dimension {dim}: size {} is not a multiple of {row}", bytes.len())));
    }
    let mut values = Vec::with_capacity(bytes.len() / row * dim);
    for (i, r) in bytes.chunks_exact(row).enumerate() {
        if u32::from_le_bytes(r[..4].try_into().unwrap()) as usize != dim {
            return Err(Error::corrupt(path, format!("row {i} has a different dimension than row 0 ({dim})")));
        }
        values.extend(r[4..].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())));
    }
    Matrix::new(dim, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy_bytes(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend_from_slice(&(dict.len() as u16 + 1).to_le_bytes());
        b.extend_from_slice(dict.as_bytes());
        b.push(b'\n');
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn ids_load_from_uint64_and_non_negative_int64() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ids.npy");
        let data: Vec<u8> = [7u64, 1 << 40, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
        for (descr, shape) in [("<u8", "(3,)"), ("<i8", "(3, 1)")] {
            std::fs::write(&p, npy_bytes(descr, shape, &data)).unwrap();
            assert_eq!(load_ids(&p).unwrap(), vec![7, 1 << 40, 3]);
        }
        let negative: Vec<u8> = [1i64, -5].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&p, npy_bytes("<i8", "(2,)", &negative)).unwrap();
        assert!(load_ids(&p).unwrap_err().to_string().contains("id -5 at row 1 is negative"));
        std::fs::write(&p, npy_bytes("<f4", "(2,)", &[0; 8])).unwrap();
        assert!(load_ids(&p).unwrap_err().to_string().contains("uint64 or int64"));
        std::fs::write(&p, npy_bytes("<u8", "(3,)", &data[..16])).unwrap();
        assert!(load_ids(&p).unwrap_err().to_string().contains("3 ids need 24"));
        // The count's byte size overflows usize: refused, not a panic (debug
        // builds) or a wrapped size in the message (release).
        std::fs::write(&p, npy_bytes("<u8", "(4766558875969106058,)", &data)).unwrap();
        let message = load_ids(&p).unwrap_err().to_string();
        assert!(message.contains("4766558875969106058 ids need more than 2^64 bytes"), "{message}");
    }

    #[test]
    fn npy_round_trip_and_alignment() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.npy");
        let m = Matrix::new(3, (0..12).map(|i| i as f32 * 0.5).collect()).unwrap();
        m.save_npy(&p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((bytes.len() - 48) % 64, 0, "data starts on a 64-byte boundary");
        assert_eq!(Matrix::load(&p).unwrap(), m);
    }

    #[test]
    fn npy_rejects_other_dtypes_shapes_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.npy");
        let m = Matrix::new(2, vec![1.0; 8]).unwrap();
        m.save_npy(&p).unwrap();
        let good = std::fs::read(&p).unwrap();

        let replace = |from: &str, to: &str| {
            let at = good.windows(from.len()).position(|w| w == from.as_bytes()).unwrap();
            let mut b = good.clone();
            b[at..at + to.len()].copy_from_slice(to.as_bytes());
            b
        };
        std::fs::write(&p, replace("<f4", "<f8")).unwrap();
        assert!(Matrix::load(&p).unwrap_err().to_string().contains("'<f8' not supported"));

        std::fs::write(&p, replace("False", "True ")).unwrap();
        assert!(Matrix::load(&p).unwrap_err().to_string().contains("Fortran"));

        std::fs::write(&p, replace("(4, 2)", "(8,)  ")).unwrap();
        assert!(Matrix::load(&p).unwrap_err().to_string().contains("2-D"));

        std::fs::write(&p, &good[..good.len() - 3]).unwrap();
        assert!(Matrix::load(&p).unwrap_err().to_string().contains("truncated"));

        std::fs::write(&p, b"hello").unwrap();
        assert!(Matrix::load(&p).unwrap_err().to_string().contains("bad magic"));
    }

    #[test]
    fn fvecs_reads_and_rejects_ragged_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.fvecs");
        let mut bytes = Vec::new();
        for r in 0..3 {
            bytes.extend_from_slice(&2u32.to_le_bytes());
            bytes.extend_from_slice(&(r as f32).to_le_bytes());
            bytes.extend_from_slice(&(r as f32 + 0.5).to_le_bytes());
        }
        std::fs::write(&p, &bytes).unwrap();
        let m = Matrix::load(&p).unwrap();
        assert_eq!((m.len(), m.dim()), (3, 2));
        assert_eq!(m.row(2), &[2.0, 2.5]);
        std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
        assert!(Matrix::load(&p).is_err());
    }
}
