//! The index file: one little-endian file, memory-mapped on load, holding the
//! vectors once plus the HNSW graph.
//!
//! ```text
//! offset  size  field
//! ------  ----  ---------------------------------------------------------
//!      0     8  magic  b"VWINDEX\0"
//!      8     4  format_version   u32  (= 1)
//!     12     4  header_size      u32  (= 256)
//!     16     4  metric           u32  (0 = squared L2)
//!     20     4  dim              u32
//!     24     8  count            u64  (points)
//!     32     4  index_kind       u32  (1 = HNSW over full-precision vectors)
//!     36     4  hnsw_m           u32
//!     40     4  hnsw_m0          u32
//!     44     4  ef_construction  u32
//!     48     4  entry_point      u32  (point offset)
//!     52     4  max_level        u32
//!     56     8  build_seconds    f64
//!     64   8×2  reserved (zero)
//!     80  16×6  section table, (offset u64, length u64) for, in file order:
//!                 0 vectors        count × dim × f32
//!                 1 ids            count × u64   (external id of each point offset)
//!                 2 levels         count × u8    (top layer of each point)
//!                 3 level0         count × (1 + m0) × u32   [len, links…]
//!                 4 upper_offsets  count × u32   (u32::MAX = layer 0 only)
//!                 5 upper          blocks of (1 + m) × u32  [len, links…]
//!    176     8  file_size        u64
//!    184     8  body_checksum    u64  xxh3-64 of bytes [header_size, file_size)
//!    192    56  reserved (zero)
//!    248     8  header_checksum  u64  xxh3-64 of bytes [0, 248)
//!    256        body: the sections, each starting on a 64-byte boundary,
//!               zero padding between them
//! ```
//!
//! [`open`] checks, in order: size ≥ header, magic, version, header checksum,
//! recorded vs actual size, section bounds/alignment/lengths, body checksum,
//! then the graph's structure (every link in range and on a layer its target
//! has), so a file that passes can be searched without a bounds failure.
//! Point offsets (positions, u32) and external ids (u64) are distinct: the
//! ids section maps one to the other.

use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::hnsw::{GraphView, HnswGraph, HnswParams, NO_UPPER};
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
pub const FORMAT_VERSION: u32 = 1;
pub const HEADER_SIZE: usize = 256;
const SECTION_ALIGN: usize = 64;
const SECTIONS: usize = 6;
const INDEX_KIND_HNSW: u32 = 1;
const METRIC_L2: u32 = 0;

/// Fields of the header that describe the index (everything but layout and checksums).
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    pub format_version: u32,
    pub dim: u32,
    pub count: u64,
    pub params: HnswParams,
    pub entry_point: u32,
    pub max_level: u8,
    pub build_seconds: f64,
    sections: [Range<usize>; SECTIONS],
}

/// What [`write`] stores.
#[derive(Debug)]
pub struct IndexParts<'a> {
    pub dim: usize,
    pub vectors: &'a [f32],
    /// External ids; `None` means "the point's position in the input".
    pub ids: Option<&'a [u64]>,
    pub graph: &'a HnswGraph,
    pub build_seconds: f64,
}

fn section_bytes<'a>(parts: &'a IndexParts<'_>, ids: &'a [u64]) -> [&'a [u8]; SECTIONS] {
    let g = parts.graph;
    [
        bytemuck::cast_slice(parts.vectors),
        bytemuck::cast_slice(ids),
        &g.levels,
        bytemuck::cast_slice(&g.level0),
        bytemuck::cast_slice(&g.upper_offsets),
        bytemuck::cast_slice(&g.upper),
    ]
}

/// Writes the index atomically (temp file, fsync, rename).
pub fn write(path: &Path, parts: &IndexParts<'_>) -> Result<()> {
    let count = parts.graph.levels.len();
    if parts.vectors.len() != count * parts.dim || parts.ids.is_some_and(|i| i.len() != count) {
        return Err(Error::InvalidParameter { name: "parts", reason: "vectors, ids and graph disagree on the point count".into() });
    }
    let default_ids: Vec<u64>;
    let ids = match parts.ids {
        Some(ids) => ids,
        None => {
            default_ids = (0..count as u64).collect();
            &default_ids
        }
    };
    let sections = section_bytes(parts, ids);
    let mut table = [0u64; 2 * SECTIONS];
    let mut at = HEADER_SIZE;
    for (i, s) in sections.iter().enumerate() {
        at = at.next_multiple_of(SECTION_ALIGN);
        table[2 * i] = at as u64;
        table[2 * i + 1] = s.len() as u64;
        at += s.len();
    }
    let file_size = at;
    let write_body = |w: &mut dyn Write| -> std::io::Result<()> {
        let mut pos = HEADER_SIZE;
        for (i, s) in sections.iter().enumerate() {
            let start = table[2 * i] as usize;
            w.write_all(&[0u8; SECTION_ALIGN][..start - pos])?;
            w.write_all(s)?;
            pos = start + s.len();
        }
        Ok(())
    };
    let mut hasher = HashWriter(Xxh3::new());
    write_body(&mut hasher).expect("hashing cannot fail");
    let body_checksum = hasher.0.digest();

    let g = parts.graph;
    let mut h = [0u8; HEADER_SIZE];
    let mut put = |at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, MAGIC);
    put(8, &FORMAT_VERSION.to_le_bytes());
    put(12, &(HEADER_SIZE as u32).to_le_bytes());
    put(16, &METRIC_L2.to_le_bytes());
    put(20, &(parts.dim as u32).to_le_bytes());
    put(24, &(count as u64).to_le_bytes());
    put(32, &INDEX_KIND_HNSW.to_le_bytes());
    put(36, &g.params.m.to_le_bytes());
    put(40, &g.params.m0.to_le_bytes());
    put(44, &g.params.ef_construction.to_le_bytes());
    put(48, &g.entry_point.to_le_bytes());
    put(52, &(g.max_level as u32).to_le_bytes());
    put(56, &parts.build_seconds.to_le_bytes());
    for (i, v) in table.iter().enumerate() {
        put(80 + 8 * i, &v.to_le_bytes());
    }
    put(176, &(file_size as u64).to_le_bytes());
    put(184, &body_checksum.to_le_bytes());
    let header_checksum = xxh3_64(&h[..248]);
    h[248..256].copy_from_slice(&header_checksum.to_le_bytes());

    write_atomic(path, |w| {
        w.write_all(&h)?;
        write_body(w)
    })
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
    mmap: Mmap,
}

impl MappedFile {
    pub fn file_size(&self) -> u64 {
        self.mmap.len() as u64
    }

    fn section(&self, i: usize) -> &[u8] {
        &self.mmap[self.header.sections[i].clone()]
    }

    /// The stored vectors, row-major.
    pub fn vectors(&self) -> &[f32] {
        bytemuck::cast_slice(self.section(0))
    }

    /// External id of each point offset.
    pub fn ids(&self) -> &[u64] {
        bytemuck::cast_slice(self.section(1))
    }

    pub fn graph(&self) -> GraphView<'_> {
        GraphView {
            params: self.header.params,
            entry_point: self.header.entry_point,
            max_level: self.header.max_level,
            levels: self.section(2),
            level0: bytemuck::cast_slice(self.section(3)),
            upper_offsets: bytemuck::cast_slice(self.section(4)),
            upper: bytemuck::cast_slice(self.section(5)),
        }
    }
}

/// Opens and fully validates an index file. See the module doc for the checks.
pub fn open(path: &Path) -> Result<MappedFile> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is read-only and private to this process. Another process
    // truncating or rewriting the file while it is mapped could change the bytes
    // under us (or fault on truncation); VectorWise only ever replaces index files
    // by atomic rename, which leaves this mapping's inode intact.
    let mmap = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let header = parse_header(path, &mmap)?;
    let body_checksum = u64::from_le_bytes(mmap[184..192].try_into().unwrap());
    if xxh3_64(&mmap[HEADER_SIZE..]) != body_checksum {
        return Err(Error::corrupt(path, "body checksum mismatch: the file is damaged; rebuild it"));
    }
    let mapped = MappedFile { path: path.to_path_buf(), header, mmap };
    check_graph(path, &mapped)?;
    Ok(mapped)
}

fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header> {
    let bad = |reason: String| Error::corrupt(path, reason);
    if bytes.len() < HEADER_SIZE {
        if bytes.len() >= 8 && &bytes[..8] != MAGIC {
            return Err(bad("not a VectorWise index file (bad magic)".into()));
        }
        return Err(bad(format!("truncated: {} bytes, the header alone needs {HEADER_SIZE}", bytes.len())));
    }
    if &bytes[..8] != MAGIC {
        return Err(bad("not a VectorWise index file (bad magic)".into()));
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let version = u32_at(8);
    if version != FORMAT_VERSION {
        return Err(bad(format!("index format version {version} is not supported (this build reads version {FORMAT_VERSION}); rebuild the index")));
    }
    if xxh3_64(&bytes[..248]) != u64_at(248) {
        return Err(bad("header checksum mismatch: the file is damaged; rebuild it".into()));
    }
    if u32_at(12) as usize != HEADER_SIZE {
        return Err(bad(format!("header size {} is not {HEADER_SIZE}", u32_at(12))));
    }
    let recorded = u64_at(176);
    if recorded != bytes.len() as u64 {
        return Err(bad(format!("truncated or padded: the header records {recorded} bytes but the file has {}", bytes.len())));
    }
    if u32_at(16) != METRIC_L2 {
        return Err(bad(format!("unknown metric {}", u32_at(16))));
    }
    if u32_at(32) != INDEX_KIND_HNSW {
        return Err(bad(format!("unknown index kind {}", u32_at(32))));
    }
    let dim = u32_at(20);
    let count = u64_at(24);
    let params = HnswParams { m: u32_at(36), m0: u32_at(40), ef_construction: u32_at(44) };
    if !(1..=MAX_DIM as u32).contains(&dim) {
        return Err(bad(format!("dimension {dim} is outside 1..={MAX_DIM}")));
    }
    if count == 0 || count > MAX_POINTS as u64 {
        return Err(bad(format!("point count {count} is outside 1..={MAX_POINTS}")));
    }
    if !(2..=256).contains(&params.m) || params.m0 < params.m || params.m0 > 512 {
        return Err(bad(format!("HNSW m={} m0={} are out of range", params.m, params.m0)));
    }
    let n = count as usize;
    let expected = [
        Some(n * dim as usize * 4),
        Some(n * 8),
        Some(n),
        Some(n * (1 + params.m0 as usize) * 4),
        Some(n * 4),
        None, // upper: a multiple of the block size, checked below
    ];
    let mut sections: [Range<usize>; SECTIONS] = Default::default();
    let mut end_of_previous = HEADER_SIZE;
    for i in 0..SECTIONS {
        let (off, len) = (u64_at(80 + 16 * i), u64_at(88 + 16 * i));
        let end = off.checked_add(len).filter(|&e| e <= bytes.len() as u64);
        let Some(end) = end else {
            return Err(bad(format!("section {i} ({off}+{len}) runs past the end of the file")));
        };
        let (off, len, end) = (off as usize, len as usize, end as usize);
        if off % SECTION_ALIGN != 0 || off < end_of_previous {
            return Err(bad(format!("section {i} at {off} is misplaced")));
        }
        match expected[i] {
            Some(e) if e != len => return Err(bad(format!("section {i} is {len} bytes, expected {e}"))),
            None if len % ((1 + params.m as usize) * 4) != 0 => {
                return Err(bad(format!("section {i} is {len} bytes, not a whole number of link blocks")));
            }
            _ => {}
        }
        sections[i] = off..end;
        end_of_previous = end;
    }
    let max_level = u32_at(52);
    let entry_point = u32_at(48);
    if max_level > 15 || entry_point as u64 >= count {
        return Err(bad(format!("entry point {entry_point} / top level {max_level} out of range")));
    }
    Ok(Header {
        format_version: version,
        dim,
        count,
        params,
        entry_point,
        max_level: max_level as u8,
        build_seconds: f64::from_le_bytes(bytes[56..64].try_into().unwrap()),
        sections,
    })
}

/// Structural checks so that searching a file that passed them cannot index
/// out of bounds: every link points at an existing point that lives on that layer.
fn check_graph(path: &Path, f: &MappedFile) -> Result<()> {
    let g = f.graph();
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
