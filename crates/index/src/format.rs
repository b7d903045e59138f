//! The index file: one little-endian file, memory-mapped on load, holding the
//! vectors once plus the search structures: an HNSW graph, quantised scan
//! codes, or both.
//!
//! Version 5 (written now; versions 4, 3, 2 and 1 still load as `l2`
//! indexes: 4 is 5 with metric 0, 3 without lists, 2 without a calibration,
//! 1 with a graph only):
//!
//! ```text
//! offset  size  field
//! ------  ----  ---------------------------------------------------------
//!      0     8  magic  b"VWINDEX\0"
//!      8     4  format_version   u32  (= 5)
//!     12     4  header_size      u32  (= 512)
//!     16     4  metric           u32  (0 = l2, 1 = ip, 2 = cosine; v5, else 0)
//!     20     4  dim              u32  (width of the stored rows: the user's
//!                                       dimension, + 1 for ip; see `metric`)
//!     24     8  count            u64  (points)
//!     32     4  index_kind       u32  bit 0: HNSW graph, bit 1: quantised scan
//!     36     4  hnsw_m           u32  (0 without a graph)
//!     40     4  hnsw_m0          u32
//!     44     4  ef_construction  u32
//!     48     4  entry_point      u32  (point offset)
//!     52     4  max_level        u32
//!     56     8  build_seconds    f64
//!     64    16  reserved (zero)
//!     80 16×16  section table, (offset u64, length u64); an absent section is (0, 0):
//!                 0 vectors        count × dim × f32 (the metric's stored rows)
//!                 1 ids            count × u64   (external id of each point offset)
//!                 2 levels         count × u8    (top layer of each point)       } graph
//!                 3 level0         count × (1 + m0) × u32   [len, links…]         } only
//!                 4 upper_offsets  count × u32   (u32::MAX = layer 0 only)        }
//!                 5 upper          blocks of (1 + m) × u32  [len, links…]         }
//!                 6 scan centroids scan_m × 16 × scan_dsub × f32                  } scan
//!                 7 scan codes     ⌈count/32⌉ blocks × scan_m/2 × 32 B (4-bit)    } only
//!                 8 sq8 offsets    dim × f32                                      }
//!                 9 sq8 steps      dim × f32                                      }
//!                10 sq8 codes      count × dim × u8                               }
//!                11 calibration    UTF-8 JSON, at most 16 MiB (v3; optional): the
//!                                  recall table of `calibrate::Calibration`
//!                12 list centroids scan_lists × dim × f32      (v4; scan with lists only)
//!                13 list starts    (scan_lists + 1) × u32: list i holds point
//!                                  offsets [start_i, start_(i+1)); 0 first, count last
//!             14–15 reserved (0, 0)
//!    336     8  file_size        u64
//!    344     8  body_checksum    u64  xxh3-64 of bytes [header_size, file_size)
//!    352     4  scan_dsub        u32  (dimensions per 4-bit sub-quantiser; 0 without scan)
//!    356     4  scan_m           u32  (sub-quantisers, even)
//!    360     4  default_method   u32  (1 = HNSW, 2 = scan): what `auto` searches use
//!    364     4  scan_lists       u32  (v4: lists the scan's points are partitioned
//!                                       into, in list order; 0 = no partition)
//!    368     4  flags            u32  (v5; bit 0: the ids are the user's, not row numbers)
//!    372   132  reserved (zero)
//!    504     8  header_checksum  u64  xxh3-64 of bytes [0, 504)
//!    512        body: the sections, each starting on a 64-byte boundary,
//!               zero padding between them, in any order, never overlapping
//!               (the writer puts them in table order; the build appends the
//!               calibration last)
//! ```
//!
//! Version 4 is version 5 with metric 0. Version 3 is version 4 without
//! sections 12 and 13 (`scan_lists` 0).
//! Version 2 is version 3 without section 11. Version 1 is the same up to byte 80, then a 6-entry table (sections 0–5),
//! `file_size` at 176, `body_checksum` at 184, `header_checksum` at 248 over
//! [0, 248), and a 256-byte header.
//!
//! [`open`] checks, in order: size ≥ header, magic, version, header checksum,
//! recorded vs actual size, section bounds/alignment/lengths, body checksum,
//! then the graph's structure (every link in range and on a layer its target
//! has) and the scan's (sizes, finite parameters), then parses the
//! calibration and checks it names only methods the file holds, so a file
//! that passes can be searched without a bounds failure. Point offsets (positions, u32) and
//! external ids (u64) are distinct: the ids section maps one to the other.

use crate::calibrate::table::Calibration;
use crate::error::{Error, Result};
use crate::metric::Metric;
use crate::fsutil::write_atomic_then;
use crate::header::{HeaderError, RawHeader};
use crate::hnsw::{GraphView, HnswGraph, HnswParams, NO_UPPER};
use crate::params::Method;
use crate::scan::lists::ListsView;
use crate::scan::{ScanCodes, ScanShape, ScanView};
use memmap2::Mmap;
use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

#[cfg(target_endian = "big")]
compile_error!("the index file is little-endian and read in place; big-endian hosts are not supported");
// Section sizes are computed in usize; on 32-bit hosts a crafted header could
// overflow them. VectorWise targets 64-bit x86 and ARM only.
#[cfg(not(target_pointer_width = "64"))]
compile_error!("VectorWise supports 64-bit targets only");

/// Largest dimension the format accepts (the builder refuses more, too).
pub const MAX_DIM: usize = 65_536;
/// Largest point count the format accepts: offsets are u32 and the upper-layer
/// pool is indexed by u32, so half the u32 range leaves room for both.
pub const MAX_POINTS: usize = (u32::MAX / 2) as usize;

pub const MAGIC: &[u8; 8] = b"VWINDEX\0";
/// The version [`write`] produces.
pub const FORMAT_VERSION: u32 = 5;
/// What to do about a damaged calibration table.
const RECALIBRATE: &str = "measure it again with `vectorwise calibrate --index <file>`";
/// Largest calibration section accepted.
const MAX_CALIBRATION_BYTES: usize = 16 << 20;
const SECTION_ALIGN: usize = 64;
const MAX_SECTIONS: usize = crate::header::SECTIONS;
const KIND_GRAPH: u32 = 1;
const KIND_SCAN: u32 = 2;
const FLAG_USER_IDS: u32 = 1;

/// The header every version from 2 on has.
const HEADER_SIZE: usize = 512;

/// Section numbers (see the module doc).
mod sec {
    pub const VECTORS: usize = 0;
    pub const IDS: usize = 1;
    pub const LEVELS: usize = 2;
    pub const LEVEL0: usize = 3;
    pub const UPPER_OFFSETS: usize = 4;
    pub const UPPER: usize = 5;
    pub const SCAN_CENTROIDS: usize = 6;
    pub const SCAN_CODES: usize = 7;
    pub const SQ8_MIN: usize = 8;
    pub const SQ8_STEP: usize = 9;
    pub const SQ8_CODES: usize = 10;
    pub const CALIBRATION: usize = 11;
    pub const LIST_CENTROIDS: usize = 12;
    pub const LIST_STARTS: usize = 13;
}

/// Fields of the header that describe the index (everything but layout and checksums).
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub format_version: u32,
    /// Whether the ids section holds ids the user gave (else row numbers).
    pub user_ids: bool,
    pub metric: Metric,
    /// Width of the stored rows (see [`Metric::space_dim`]).
    pub dim: u32,
    pub count: u64,
    /// HNSW parameters; `None` when the file has no graph.
    pub graph: Option<HnswParams>,
    pub entry_point: u32,
    pub max_level: u8,
    /// Scan code shape; `None` when the file has no scan codes.
    pub scan: Option<ScanShape>,
    /// Lists the scan's points are partitioned into; 0 without a partition.
    pub scan_lists: u32,
    /// What `auto` searches use.
    pub default_method: Method,
    pub build_seconds: f64,
    sections: [Range<usize>; MAX_SECTIONS],
}

/// What [`write`] stores. At least one of `graph` and `scan` must be given.
#[derive(Debug)]
pub struct IndexParts<'a> {
    pub metric: Metric,
    /// Width of the stored rows.
    pub dim: usize,
    pub vectors: &'a [f32],
    /// External ids; `None` means "the point's position in the input".
    pub ids: Option<&'a [u64]>,
    /// Whether `ids` are the user's (a partitioned scan passes row numbers
    /// in list order otherwise).
    pub user_ids: bool,
    pub graph: Option<&'a HnswGraph>,
    pub scan: Option<&'a ScanCodes>,
    /// What `auto` searches use: `Hnsw` or `Scan`, and the file must hold it.
    pub default_method: Method,
    pub build_seconds: f64,
    /// The recall table, when measured.
    pub calibration: Option<&'a Calibration>,
}

/// The header fields [`write_sections`] needs besides the sections.
struct HeaderFields {
    metric: Metric,
    user_ids: bool,
    dim: usize,
    count: usize,
    graph: Option<(HnswParams, u32, u8)>,
    scan: Option<ScanShape>,
    scan_lists: usize,
    default_method: Method,
    build_seconds: f64,
}

/// Writes the index atomically (temp file, fsync, rename) in the current version.
pub fn write(path: &Path, parts: &IndexParts<'_>) -> Result<()> {
    write_inner(path, parts, |_| Ok(()))
}

fn write_inner(path: &Path, parts: &IndexParts<'_>, finish: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let invalid = |reason: &str| Err(Error::InvalidParameter { name: "parts", reason: reason.into() });
    let count = if parts.dim == 0 { 0 } else { parts.vectors.len() / parts.dim };
    if count == 0 || parts.vectors.len() != count * parts.dim || parts.ids.is_some_and(|i| i.len() != count) {
        return invalid("vectors and ids disagree on the point count");
    }
    if parts.graph.is_some_and(|g| g.levels.len() != count) || parts.scan.is_some_and(|s| s.shape.count != count || s.shape.dim != parts.dim) {
        return invalid("the graph or scan codes were built for other vectors");
    }
    let method_ok = match parts.default_method {
        Method::Hnsw => parts.graph.is_some(),
        Method::Scan => parts.scan.is_some(),
        _ => false,
    };
    if !method_ok {
        return invalid("the default method must be `hnsw` or `scan` and present in the file");
    }
    let default_ids: Vec<u64>;
    let ids = match parts.ids {
        Some(ids) => ids,
        None => {
            default_ids = (0..count as u64).collect();
            &default_ids
        }
    };
    let mut sections: [&[u8]; MAX_SECTIONS] = [&[]; MAX_SECTIONS];
    sections[sec::VECTORS] = bytemuck::cast_slice(parts.vectors);
    sections[sec::IDS] = bytemuck::cast_slice(ids);
    if let Some(g) = parts.graph {
        sections[sec::LEVELS] = &g.levels;
        sections[sec::LEVEL0] = bytemuck::cast_slice(&g.level0);
        sections[sec::UPPER_OFFSETS] = bytemuck::cast_slice(&g.upper_offsets);
        sections[sec::UPPER] = bytemuck::cast_slice(&g.upper);
    }
    if let Some(sc) = parts.scan {
        sections[sec::SCAN_CENTROIDS] = bytemuck::cast_slice(&sc.centroids);
        sections[sec::SCAN_CODES] = &sc.codes;
        sections[sec::SQ8_MIN] = bytemuck::cast_slice(&sc.sq8_min);
        sections[sec::SQ8_STEP] = bytemuck::cast_slice(&sc.sq8_step);
        sections[sec::SQ8_CODES] = &sc.sq8;
        if let Some(lists) = &sc.lists {
            if lists.view().check(parts.dim, count).is_err() {
                return invalid("the scan's lists do not describe these vectors");
            }
            sections[sec::LIST_CENTROIDS] = bytemuck::cast_slice(&lists.centroids);
            sections[sec::LIST_STARTS] = bytemuck::cast_slice(&lists.starts);
        }
    }
    let calibration = parts.calibration.map(calibration_bytes).transpose()?;
    if let Some(c) = &calibration {
        sections[sec::CALIBRATION] = c;
    }
    let fields = HeaderFields {
        metric: parts.metric,
        user_ids: parts.ids.is_some() && parts.user_ids,
        dim: parts.dim,
        count,
        graph: parts.graph.map(|g| (g.params, g.entry_point, g.max_level)),
        scan: parts.scan.map(|s| s.shape),
        scan_lists: parts.scan.and_then(|s| s.lists.as_ref()).map_or(0, |l| l.view().len()),
        default_method: parts.default_method,
        build_seconds: parts.build_seconds,
    };
    write_sections(path, &fields, &sections, finish)
}

/// [`write`], then `finish` on the complete temporary file before it is
/// synced and renamed into place (the build uses it to calibrate the new
/// index and [`append_calibration`] its table, writing the file once).
pub fn write_then(path: &Path, parts: &IndexParts<'_>, finish: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    write_inner(path, parts, finish)
}

fn calibration_bytes(c: &Calibration) -> Result<Vec<u8>> {
    let bytes = serde_json::to_vec(c)
        .map_err(|e| Error::InvalidParameter { name: "calibration", reason: format!("cannot encode: {e}") })?;
    if bytes.len() > MAX_CALIBRATION_BYTES {
        return Err(Error::InvalidParameter { name: "calibration", reason: "table too large".into() });
    }
    Ok(bytes)
}

/// Writes `file`'s index again, atomically, to `path` (which may be `file`'s
/// own path: the mapping keeps the old file's bytes until it is dropped),
/// with `calibration` in place of any it had. Writes the current version.
pub fn write_calibrated(path: &Path, file: &MappedFile, calibration: &Calibration) -> Result<()> {
    let h = &file.header;
    let mut sections: [&[u8]; MAX_SECTIONS] = [&[]; MAX_SECTIONS];
    for (i, s) in sections.iter_mut().enumerate() {
        *s = file.section(i);
    }
    let bytes = calibration_bytes(calibration)?;
    sections[sec::CALIBRATION] = &bytes;
    let fields = HeaderFields {
        metric: h.metric,
        user_ids: h.user_ids,
        dim: h.dim as usize,
        count: h.count as usize,
        graph: h.graph.map(|g| (g, h.entry_point, h.max_level)),
        scan: h.scan,
        scan_lists: h.scan_lists as usize,
        default_method: h.default_method,
        build_seconds: h.build_seconds,
    };
    write_sections(path, &fields, &sections, |_| Ok(()))
}

/// Appends `calibration` as the last section of a current-version file that
/// has none, in place, and reseals the header. Only for a file no one else
/// sees yet (the temporary of [`write_then`]): the change is not atomic.
pub fn append_calibration(path: &Path, calibration: &Calibration) -> Result<()> {
    use std::io::{Seek, SeekFrom};
    let bytes = calibration_bytes(calibration)?;
    let mut file = File::options().read(true).write(true).open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: read-only map of a file this process just wrote and no one else
    // knows of (a temporary beside its target); it is dropped before the
    // file is extended.
    let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let (header, mut raw) = parse_header(path, &mmap)?;
    if header.format_version != FORMAT_VERSION || !header.sections[sec::CALIBRATION].is_empty() {
        return Err(Error::InvalidParameter { name: "index", reason: "append_calibration needs a new file without a table".into() });
    }
    let old_size = mmap.len();
    let offset = old_size.next_multiple_of(SECTION_ALIGN);
    let padding = vec![0u8; offset - old_size];
    let new_size = offset + bytes.len();
    let mut hasher = Xxh3::new();
    hasher.update(&mmap[HEADER_SIZE..]);
    hasher.update(&padding);
    hasher.update(&bytes);
    drop(mmap);
    raw.sections[sec::CALIBRATION] = [offset as u64, bytes.len() as u64];
    raw.file_size = new_size as u64;
    raw.body_checksum = hasher.digest();
    let h = raw.sealed();
    let io = |e| Error::io(path, e);
    file.seek(SeekFrom::Start(old_size as u64)).map_err(io)?;
    file.write_all(&padding).map_err(io)?;
    file.write_all(&bytes).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    file.write_all(&h).map_err(io)?;
    Ok(())
}

/// Lays out `sections` after a current-version header and writes the file
/// atomically, running `finish` on the temporary before the rename.
fn write_sections(
    path: &Path,
    f: &HeaderFields,
    sections: &[&[u8]; MAX_SECTIONS],
    finish: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let mut table = [[0u64; 2]; MAX_SECTIONS];
    let mut at = HEADER_SIZE;
    for (i, s) in sections.iter().enumerate() {
        if s.is_empty() {
            continue; // absent: (0, 0)
        }
        at = at.next_multiple_of(SECTION_ALIGN);
        table[i] = [at as u64, s.len() as u64];
        at += s.len();
    }
    let file_size = at;
    let write_body = |w: &mut dyn Write| -> std::io::Result<()> {
        let mut pos = HEADER_SIZE;
        for (i, s) in sections.iter().enumerate() {
            if s.is_empty() {
                continue;
            }
            let start = table[i][0] as usize;
            w.write_all(&[0u8; SECTION_ALIGN][..start - pos])?;
            w.write_all(s)?;
            pos = start + s.len();
        }
        Ok(())
    };
    let mut hasher = HashWriter(Xxh3::new());
    write_body(&mut hasher).expect("hashing cannot fail");

    let kind = if f.graph.is_some() { KIND_GRAPH } else { 0 } | if f.scan.is_some() { KIND_SCAN } else { 0 };
    let (graph, entry_point, max_level) = f.graph.map_or((HnswParams { m: 0, m0: 0, ef_construction: 0 }, 0, 0), |g| g);
    let h = RawHeader {
        magic: *MAGIC,
        format_version: FORMAT_VERSION,
        header_size: HEADER_SIZE as u32,
        metric: f.metric.code(),
        dim: f.dim as u32,
        count: f.count as u64,
        index_kind: kind,
        hnsw_m: graph.m,
        hnsw_m0: graph.m0,
        ef_construction: graph.ef_construction,
        entry_point,
        max_level: u32::from(max_level),
        build_seconds: f.build_seconds,
        sections: table,
        file_size: file_size as u64,
        body_checksum: hasher.0.digest(),
        scan_dsub: f.scan.map_or(0, |s| s.dsub as u32),
        scan_m: f.scan.map_or(0, |s| s.m as u32),
        default_method: if f.default_method == Method::Hnsw { 1 } else { 2 },
        scan_lists: f.scan_lists as u32,
        flags: if f.user_ids { FLAG_USER_IDS } else { 0 },
        ..bytemuck::Zeroable::zeroed()
    }
    .sealed();

    write_atomic_then(
        path,
        |w| {
            w.write_all(&h)?;
            write_body(w)
        },
        finish,
    )
}

struct HashWriter(Xxh3);
impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A validated, memory-mapped index file.
#[derive(Debug)]
pub struct MappedFile {
    pub path: PathBuf,
    pub header: Header,
    /// The recall table (format 3), parsed and checked at open.
    pub calibration: Option<Calibration>,
    /// The scan's list centroids encoded by its quantiser (derived at open,
    /// not stored: [`ListsView::codes`]).
    list_codes: Vec<u8>,
    /// xxh3-128 of the header's bytes (see [`MappedFile::identity`]).
    identity: u128,
    mmap: Mmap,
}

impl MappedFile {
    pub fn file_size(&self) -> u64 {
        self.mmap.len() as u64
    }

    /// The file's identity: xxh3-128 of its header's bytes, which hold the
    /// sizes, the settings and the body's checksum (checked at open), so two
    /// files share it only when their bodies share an xxh3-64 and their
    /// headers the rest. Computed at open from the header alone.
    pub fn identity(&self) -> u128 {
        self.identity
    }

    fn section(&self, i: usize) -> &[u8] {
        &self.mmap[self.header.sections[i].clone()]
    }

    /// The stored vectors, row-major.
    pub fn vectors(&self) -> &[f32] {
        bytemuck::cast_slice(self.section(sec::VECTORS))
    }

    /// External id of each point offset.
    pub fn ids(&self) -> &[u64] {
        bytemuck::cast_slice(self.section(sec::IDS))
    }

    /// The HNSW graph, when the file has one.
    pub fn graph(&self) -> Option<GraphView<'_>> {
        Some(GraphView {
            params: self.header.graph?,
            entry_point: self.header.entry_point,
            max_level: self.header.max_level,
            levels: self.section(sec::LEVELS),
            level0: bytemuck::cast_slice(self.section(sec::LEVEL0)),
            upper_offsets: bytemuck::cast_slice(self.section(sec::UPPER_OFFSETS)),
            upper: bytemuck::cast_slice(self.section(sec::UPPER)),
        })
    }

    /// The quantised scan codes, when the file has them.
    pub fn scan(&self) -> Option<ScanView<'_>> {
        Some(ScanView {
            shape: self.header.scan?,
            centroids: bytemuck::cast_slice(self.section(sec::SCAN_CENTROIDS)),
            codes: self.section(sec::SCAN_CODES),
            sq8_min: bytemuck::cast_slice(self.section(sec::SQ8_MIN)),
            sq8_step: bytemuck::cast_slice(self.section(sec::SQ8_STEP)),
            sq8: self.section(sec::SQ8_CODES),
            lists: (self.header.scan_lists > 0).then(|| ListsView {
                centroids: bytemuck::cast_slice(self.section(sec::LIST_CENTROIDS)),
                starts: bytemuck::cast_slice(self.section(sec::LIST_STARTS)),
                codes: &self.list_codes,
            }),
        })
    }
}

/// Opens and fully validates an index file. See the module doc for the checks.
pub fn open(path: &Path) -> Result<MappedFile> {
    open_with(path, true)
}

/// [`open`], optionally leaving the calibration section unread (for
/// `vectorwise calibrate`, which replaces it, even when it is damaged).
pub fn open_with(path: &Path, read_calibration: bool) -> Result<MappedFile> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only and private to this process. Another process
    // truncating or rewriting the file while it is mapped could change the bytes
    // under us (or fault on truncation); VectorWise only ever replaces index files
    // by atomic rename, which leaves this mapping's inode intact.
    let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let (header, raw) = parse_header(path, &mmap)?;
    if xxh3_64(&mmap[raw.header_size as usize..]) != raw.body_checksum {
        return Err(Error::corrupt(path, "body checksum mismatch: the file is damaged; rebuild it"));
    }
    let identity = xxhash_rust::xxh3::xxh3_128(&mmap[..raw.header_size as usize]);
    let mut mapped = MappedFile { path: path.to_path_buf(), header, calibration: None, list_codes: Vec::new(), identity, mmap };
    let raw = mapped.section(sec::CALIBRATION);
    if read_calibration && !raw.is_empty() {
        let parsed: Calibration = serde_json::from_slice(raw)
            .map_err(|e| Error::corrupt(path, format!("calibration table is not valid: {e}; {RECALIBRATE}")))?;
        let (g, s) = (mapped.header.graph.is_some(), mapped.header.scan.is_some());
        parsed.check(g, s, mapped.header.dim as usize).map_err(|reason| Error::corrupt(path, format!("{reason}; {RECALIBRATE}")))?;
        mapped.calibration = Some(parsed);
    }
    if mapped.header.graph.is_some() {
        check_graph(path, &mapped)?;
    }
    // Encoded before the check, which checks them with the rest; a shape the
    // check rejects encodes to nothing.
    mapped.list_codes = mapped.scan().and_then(|scan| scan.lists.map(|l| scan.encode(l.centroids))).unwrap_or_default();
    if let Some(scan) = mapped.scan() {
        scan.check().map_err(|reason| Error::corrupt(path, reason))?;
    }
    Ok(mapped)
}

fn parse_header(path: &Path, bytes: &[u8]) -> Result<(Header, RawHeader)> {
    let bad = |reason: String| Error::corrupt(path, reason);
    if bytes.len() >= 8 && &bytes[..8] != MAGIC {
        return Err(bad("not a VectorWise index file (bad magic)".into()));
    }
    let smallest = RawHeader::size_of_version(1);
    if bytes.len() < smallest {
        return Err(bad(format!("truncated: {} bytes, the smallest header needs {smallest}", bytes.len())));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if !(1..=FORMAT_VERSION).contains(&version) {
        return Err(bad(format!(
            "index format version {version} is not supported (this build reads versions 1 to {FORMAT_VERSION}); rebuild the index"
        )));
    }
    let h = RawHeader::read(bytes, version).map_err(|e| match e {
        HeaderError::Truncated { have, need } => bad(format!("truncated: {have} bytes, the header alone needs {need}")),
        HeaderError::ChecksumMismatch => bad("header checksum mismatch: the file is damaged; rebuild it".into()),
    })?;
    let header_size = RawHeader::size_of_version(version);
    if h.header_size as usize != header_size {
        return Err(bad(format!("header size {} is not {header_size}", h.header_size)));
    }
    let recorded = h.file_size;
    if recorded != bytes.len() as u64 {
        return Err(bad(format!("truncated or padded: the header records {recorded} bytes but the file has {}", bytes.len())));
    }
    let metric = match (version, Metric::from_code(h.metric)) {
        (5, Some(m)) | (1..=4, Some(m @ Metric::L2)) => m,
        _ => return Err(bad(format!("unknown metric {}", h.metric))),
    };
    let kind = h.index_kind;
    let allowed = if version == 1 { KIND_GRAPH } else { KIND_GRAPH | KIND_SCAN };
    if kind == 0 || kind & !allowed != 0 || (version == 1 && kind != KIND_GRAPH) {
        return Err(bad(format!("unknown index kind {kind}")));
    }
    let (dim, count) = (h.dim, h.count);
    let min_dim = metric.space_dim(1) as u32;
    if !(min_dim..=MAX_DIM as u32).contains(&dim) {
        return Err(bad(format!("dimension {dim} is outside {min_dim}..={MAX_DIM}")));
    }
    if count == 0 || count > MAX_POINTS as u64 {
        return Err(bad(format!("point count {count} is outside 1..={MAX_POINTS}")));
    }
    let (n, d) = (count as usize, dim as usize);
    let graph = if kind & KIND_GRAPH != 0 {
        let params = HnswParams { m: h.hnsw_m, m0: h.hnsw_m0, ef_construction: h.ef_construction };
        if !(2..=256).contains(&params.m) || params.m0 < params.m || params.m0 > 512 {
            return Err(bad(format!("HNSW m={} m0={} are out of range", params.m, params.m0)));
        }
        Some(params)
    } else {
        None
    };
    let scan = if kind & KIND_SCAN != 0 {
        let (dsub, m) = (h.scan_dsub as usize, h.scan_m as usize);
        let shape = ScanShape::new(d, n, dsub).map_err(|e| bad(format!("scan codes: {e}")))?;
        if shape.m != m {
            return Err(bad(format!("scan codes: {m} sub-quantisers recorded, {} expected", shape.m)));
        }
        Some(shape)
    } else {
        None
    };
    let default_method = match (version, h.default_method) {
        (1, _) => Method::Hnsw,
        (_, 1) if graph.is_some() => Method::Hnsw,
        (_, 2) if scan.is_some() => Method::Scan,
        (_, other) => return Err(bad(format!("default method {other} is unknown or absent from the file"))),
    };
    // Expected length of each section: `Some(Some(len))` exact (0: absent,
    // i.e. (0, 0)); `Some(None)` the upper-layer pool, a whole number of link
    // blocks; `None` the calibration, any length up to its limit.
    let mut expected: [Option<Option<usize>>; MAX_SECTIONS] = [Some(Some(0)); MAX_SECTIONS];
    expected[sec::VECTORS] = Some(Some(n * d * 4));
    expected[sec::IDS] = Some(Some(n * 8));
    if let Some(p) = graph {
        expected[sec::LEVELS] = Some(Some(n));
        expected[sec::LEVEL0] = Some(Some(n * (1 + p.m0 as usize) * 4));
        expected[sec::UPPER_OFFSETS] = Some(Some(n * 4));
        expected[sec::UPPER] = Some(None); // a multiple of the block size
    }
    if let Some(s) = scan {
        expected[sec::SCAN_CENTROIDS] = Some(Some(s.centroid_floats() * 4));
        expected[sec::SCAN_CODES] = Some(Some(s.code_bytes()));
        expected[sec::SQ8_MIN] = Some(Some(d * 4));
        expected[sec::SQ8_STEP] = Some(Some(d * 4));
        expected[sec::SQ8_CODES] = Some(Some(s.sq8_bytes()));
    }
    if version >= 3 {
        expected[sec::CALIBRATION] = None; // any length up to the limit, or absent
    }
    let scan_lists = if version >= 4 { h.scan_lists } else { 0 };
    if scan_lists > 0 {
        if scan.is_none() || scan_lists as u64 > count {
            return Err(bad(format!("{scan_lists} scan lists for {count} points{}", if scan.is_none() { " without scan codes" } else { "" })));
        }
        expected[sec::LIST_CENTROIDS] = Some(Some(scan_lists as usize * d * 4));
        expected[sec::LIST_STARTS] = Some(Some((scan_lists as usize + 1) * 4));
    }
    let mut sections: [Range<usize>; MAX_SECTIONS] = Default::default();
    for i in 0..RawHeader::sections_of_version(version) {
        let [off, len] = h.sections[i];
        if expected[i].is_none() {
            if len as usize > MAX_CALIBRATION_BYTES {
                return Err(bad(format!("section {i} is {len} bytes, more than the calibration limit")));
            }
            if len == 0 {
                if off != 0 {
                    return Err(bad(format!("section {i} should be absent but is ({off}, 0)")));
                }
                continue;
            }
        }
        let want = expected[i].flatten();
        if want == Some(0) {
            if off != 0 || len != 0 {
                return Err(bad(format!("section {i} should be absent but is ({off}, {len})")));
            }
            continue;
        }
        if len == 0 && off == 0 && want.is_none() {
            continue; // an empty upper-layer pool (no point above layer 0)
        }
        let end = off.checked_add(len).filter(|&e| e <= bytes.len() as u64);
        let Some(end) = end else {
            return Err(bad(format!("section {i} ({off}+{len}) runs past the end of the file")));
        };
        let (off, len, end) = (off as usize, len as usize, end as usize);
        if off % SECTION_ALIGN != 0 || off < header_size {
            return Err(bad(format!("section {i} at {off} is misplaced")));
        }
        match want {
            Some(e) if e != len => return Err(bad(format!("section {i} is {len} bytes, expected {e}"))),
            None if i == sec::UPPER && len % ((1 + graph.map_or(0, |p| p.m as usize)) * 4) != 0 => {
                return Err(bad(format!("section {i} is {len} bytes, not a whole number of link blocks")));
            }
            _ => {}
        }
        sections[i] = off..end;
    }
    // Sections may come in any order in the body but never overlap.
    let mut placed: Vec<&Range<usize>> = sections.iter().filter(|r| !r.is_empty()).collect();
    placed.sort_unstable_by_key(|r| r.start);
    if let Some(w) = placed.windows(2).find(|w| w[1].start < w[0].end) {
        return Err(bad(format!("sections at {} and {} overlap", w[0].start, w[1].start)));
    }
    let (max_level, entry_point) = (h.max_level, h.entry_point);
    if graph.is_some() && (max_level > 15 || entry_point as u64 >= count) {
        return Err(bad(format!("entry point {entry_point} / top level {max_level} out of range")));
    }
    if version >= 5 && h.flags & !FLAG_USER_IDS != 0 {
        return Err(bad(format!("unknown flags {:#x}", h.flags)));
    }
    let header = Header {
        format_version: version,
        user_ids: version >= 5 && h.flags & FLAG_USER_IDS != 0,
        metric,
        dim,
        count,
        graph,
        entry_point,
        max_level: max_level as u8,
        scan,
        scan_lists,
        default_method,
        build_seconds: h.build_seconds,
        sections,
    };
    Ok((header, h))
}

/// Structural checks so that searching a file that passed them cannot index
/// out of bounds: every link points at an existing point that lives on that layer.
fn check_graph(path: &Path, f: &MappedFile) -> Result<()> {
    let Some(g) = f.graph() else { return Ok(()) };
    let n = g.levels.len();
    let bad = |reason: String| Err(Error::corrupt(path, format!("graph is inconsistent: {reason}")));
    if g.levels[g.entry_point as usize] != g.max_level {
        return bad("the entry point is not on the top layer".into());
    }
    let m0 = g.params.m0 as usize;
    for (p, block) in g.level0.chunks_exact(1 + m0).enumerate() {
        let len = block[0] as usize;
        if len > m0 || block[1..1 + len].iter().any(|&l| l as usize >= n) {
            return bad(format!("point {p} has bad layer-0 links"));
        }
    }
    let stride = 1 + g.params.m as usize;
    for p in 0..n {
        let level = g.levels[p];
        let off = g.upper_offsets[p];
        if level > g.max_level {
            return bad(format!("point {p} is above the top layer"));
        }
        if level == 0 {
            if off != NO_UPPER {
                return bad(format!("point {p} has upper links but no upper layer"));
            }
            continue;
        }
        let start = off as usize;
        if off == NO_UPPER || start % stride != 0 || start + level as usize * stride > g.upper.len() {
            return bad(format!("point {p} has bad upper-layer offsets"));
        }
        for l in 1..=level {
            let block = &g.upper[start + (l as usize - 1) * stride..start + l as usize * stride];
            let len = block[0] as usize;
            if len > stride - 1 || block[1..1 + len].iter().any(|&t| t as usize >= n || g.levels[t as usize] < l) {
                return bad(format!("point {p} has bad links on layer {l}"));
            }
        }
    }
    Ok(())
}
