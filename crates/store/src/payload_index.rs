//! Payload indexes: for the keys a collection declares, per segment, the
//! structures that answer a filter's conditions for every point at once,
//! as a set of offsets ([`AllowSet`], a dense bitset: the boolean algebra
//! of a filter is a pass over words, and the engine takes the result as it
//! is).
//!
//! - `keyword`: each string value's points;
//! - `integer`: each integer value's points, and every numeric value
//!   sorted (for ranges);
//! - `float`: every numeric value sorted;
//! - `bool`: the points holding `true`, those holding `false`;
//! - every type: the points holding any value at the key (for `is_empty`).
//!
//! A value's points are a sorted list of offsets while they are few and a
//! bitset once they pass 1/32 of the segment (where the bitset is smaller):
//! a filter letting half of a million points through costs a copy of
//! 125 KiB, where building its set point by point from a roaring bitmap took
//! 80 % of a 11 ms search (perf, 1M x 128).
//!
//! A condition an index cannot answer exactly (a `match` of a type the index
//! does not hold, a `range` on a keyword index, a key without an index) is
//! answered by reading the segment's payloads: [`select`] says which keys
//! it had to read that way. Both agree with [`Filter::matches`] (tested).
//!
//! Built point by point in memory segments. A sealed segment's are built
//! once, when it is sealed or the key is declared, and kept beside it
//! (`<segment>.pidx-<spec hash>`, [`store`] / [`load`]); opening the segment
//! reads them instead of parsing every payload again. The files are a cache
//! of what the payloads say: one missing, damaged or made for another file
//! is rebuilt from the payloads (and written again), with a warning.
//!
//! ```text
//! pidx: "VWPIDX02" | index file identity u128 | payloads' xxh3-64 u64 | points u64 | spec_len u32 | spec JSON
//!       | non_empty | keywords: n u64, n × (len u32, UTF-8, posting) | integers: n u64, n × (i64, posting)
//!       | numbers: n u64, n × (f64, offset u32), sorted | false, true: posting × 2 | xxh3-64 of all before
//! posting: 0u8 | n u64 | n × offset u32 (ascending)   or   1u8 | words u64 | words × u64 (a bitset)
//! ```

use crate::filter::{Condition, Filter, KeyPath, MatchValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use vectorwise_index::AllowSet;

/// What an index holds of a key's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    Keyword,
    Integer,
    Float,
    Bool,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Keyword => "keyword",
            FieldType::Integer => "integer",
            FieldType::Float => "float",
            FieldType::Bool => "bool",
        }
    }
}

/// A declared payload index: the key and the type of its values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    pub field: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
}

/// The points holding one value.
#[derive(Debug)]
enum Posting {
    /// Ascending offsets (each at most once).
    Sparse(Vec<u32>),
    Dense(AllowSet),
}

impl Default for Posting {
    fn default() -> Self {
        Posting::Sparse(Vec::new())
    }
}

impl Posting {
    /// Adds `offset` (at least the last one added).
    fn push(&mut self, offset: u32) {
        match self {
            Posting::Sparse(v) => {
                if v.last() != Some(&offset) {
                    v.push(offset);
                }
            }
            Posting::Dense(d) => {
                d.insert(offset);
            }
        }
    }

    /// Dense once more than 1/32 of `len` points hold it.
    fn finish(&mut self, len: usize) {
        if let Posting::Sparse(v) = self {
            if v.len() * 32 > len {
                *self = Posting::Dense(AllowSet::from_offsets(len, v.iter().copied()));
            }
        }
    }

    /// Appends `later`'s points (all past its own; both sparse).
    fn append(&mut self, later: Posting) {
        match (self, later) {
            (Posting::Sparse(a), Posting::Sparse(mut b)) => {
                if a.is_empty() {
                    *a = b;
                } else {
                    a.append(&mut b);
                }
            }
            (a, b) => {
                // Only unfinished (sparse) postings are appended.
                let mut all = Vec::new();
                for p in [std::mem::take(a), b] {
                    match p {
                        Posting::Sparse(v) => all.extend(v),
                        Posting::Dense(d) => all.extend(d.iter()),
                    }
                }
                *a = Posting::Sparse(all);
            }
        }
    }

    /// Adds its points to `out`.
    fn add_to(&self, out: &mut AllowSet) {
        match self {
            Posting::Sparse(v) => {
                for &o in v {
                    out.insert(o);
                }
            }
            Posting::Dense(d) => out.union_with(d),
        }
    }
}

/// One key's index in one segment.
#[derive(Debug)]
pub(crate) struct FieldIndex {
    spec: FieldSpec,
    key: KeyPath,
    non_empty: Posting,
    keywords: HashMap<Box<str>, Posting>,
    integers: HashMap<i64, Posting>,
    /// Every numeric value with its point (integer and float indexes);
    /// sorted once the segment is sealed.
    numbers: Vec<(f64, u32)>,
    sorted: bool,
    bools: [Posting; 2],
}

impl FieldIndex {
    pub(crate) fn spec(&self) -> &FieldSpec {
        &self.spec
    }

    fn new(spec: &FieldSpec) -> FieldIndex {
        FieldIndex {
            key: KeyPath::parse(&spec.field).unwrap_or_else(|_| KeyPath::parse("_").expect("a valid key")),
            spec: spec.clone(),
            non_empty: Posting::default(),
            keywords: HashMap::new(),
            integers: HashMap::new(),
            numbers: Vec::new(),
            sorted: true,
            bools: [Posting::default(), Posting::default()],
        }
    }

    /// Adds the point at `offset` (offsets come in rising order).
    fn insert(&mut self, offset: u32, payload: &Value) {
        let values = self.key.values(payload);
        if values.is_empty() {
            return;
        }
        self.non_empty.push(offset);
        for v in values {
            match (self.spec.field_type, v) {
                (FieldType::Keyword, Value::String(s)) => {
                    self.keywords.entry(s.as_str().into()).or_default().push(offset);
                }
                (FieldType::Integer | FieldType::Float, Value::Number(n)) => {
                    if self.spec.field_type == FieldType::Integer {
                        if let Some(i) = n.as_i64() {
                            self.integers.entry(i).or_default().push(offset);
                        }
                    }
                    if let Some(x) = n.as_f64() {
                        // Total order, as `finish` sorts and `load` checks (-0.0 before 0.0).
                        self.sorted &= self.numbers.last().is_none_or(|&(last, _)| last.total_cmp(&x).is_le());
                        self.numbers.push((x, offset));
                    }
                }
                (FieldType::Bool, Value::Bool(b)) => {
                    self.bools[usize::from(*b)].push(offset);
                }
                _ => {}
            }
        }
    }

    /// Takes in `later`, built over offsets all past this one's (the next
    /// chunk of a parallel build).
    fn append(&mut self, later: FieldIndex) {
        self.non_empty.append(later.non_empty);
        for (k, p) in later.keywords {
            self.keywords.entry(k).or_default().append(p);
        }
        for (k, p) in later.integers {
            self.integers.entry(k).or_default().append(p);
        }
        let [f, t] = later.bools;
        self.bools[0].append(f);
        self.bools[1].append(t);
        self.sorted &= later.sorted && self.numbers.last().zip(later.numbers.first()).is_none_or(|(a, b)| a.0.total_cmp(&b.0).is_le());
        self.numbers.extend(later.numbers);
    }

    /// Sorts the numbers and makes the large postings dense (a sealed
    /// segment's, of `len` points).
    fn finish(&mut self, len: usize, parallel: bool) {
        if !self.sorted {
            use rayon::slice::ParallelSliceMut;
            let order = |a: &(f64, u32), b: &(f64, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
            if parallel {
                self.numbers.par_sort_unstable_by(order);
            } else {
                self.numbers.sort_unstable_by(order);
            }
            self.sorted = true;
        }
        self.non_empty.finish(len);
        for p in self.keywords.values_mut().chain(self.integers.values_mut()).chain(self.bools.iter_mut()) {
            p.finish(len);
        }
    }

    /// The points of `0..len` meeting `c`, when this index can say exactly.
    fn answer(&self, c: &Condition, len: usize) -> Option<AllowSet> {
        match c {
            Condition::Match { key, values } if *key == self.key => {
                let postings = values
                    .iter()
                    .map(|v| match (self.spec.field_type, v) {
                        (FieldType::Keyword, MatchValue::Keyword(s)) => Some(self.keywords.get(s.as_str())),
                        (FieldType::Integer, MatchValue::Integer(i)) => Some(self.integers.get(i)),
                        (FieldType::Bool, MatchValue::Bool(b)) => Some(Some(&self.bools[usize::from(*b)])),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()?;
                let mut out = AllowSet::none(len);
                for p in postings.into_iter().flatten() {
                    p.add_to(&mut out);
                }
                Some(out)
            }
            Condition::Range { key, range } if *key == self.key => {
                if !matches!(self.spec.field_type, FieldType::Integer | FieldType::Float) {
                    return None;
                }
                let mut out = AllowSet::none(len);
                if self.sorted {
                    // The values meeting the lower bounds start at `lo`; those
                    // meeting the upper bounds end before `hi`.
                    let lo = self.numbers.partition_point(|&(x, _)| range.gt.is_some_and(|b| x <= b) || range.gte.is_some_and(|b| x < b));
                    let hi = self.numbers.partition_point(|&(x, _)| range.lt.is_none_or(|b| x < b) && range.lte.is_none_or(|b| x <= b));
                    for &(_, o) in &self.numbers[lo..hi.max(lo)] {
                        out.insert(o);
                    }
                } else {
                    for &(_, o) in self.numbers.iter().filter(|&&(x, _)| range.contains(x)) {
                        out.insert(o);
                    }
                }
                Some(out)
            }
            Condition::IsEmpty(key) if *key == self.key => {
                let mut out = AllowSet::all(len);
                let mut present = AllowSet::none(len);
                self.non_empty.add_to(&mut present);
                out.difference_with(&present);
                Some(out)
            }
            _ => None,
        }
    }
}

const PIDX_MAGIC: &[u8; 8] = b"VWPIDX02";

/// What a pidx file is made for: the index file (its identity), the
/// payloads (their checksum, 0 for none) and the point count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentStamp {
    pub identity: u128,
    pub payloads: u64,
    pub len: usize,
}

/// The file of segment `segment`'s index for `spec`.
pub(crate) fn pidx_name(segment: u64, spec: &FieldSpec) -> String {
    let text = serde_json::to_string(spec).expect("a spec serialises");
    format!("{segment:012}.pidx-{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

impl Posting {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Posting::Sparse(v) => {
                out.push(0);
                out.extend_from_slice(&(v.len() as u64).to_le_bytes());
                for o in v {
                    out.extend_from_slice(&o.to_le_bytes());
                }
            }
            Posting::Dense(d) => {
                out.push(1);
                out.extend_from_slice(&(d.words().len() as u64).to_le_bytes());
                for w in d.words() {
                    out.extend_from_slice(&w.to_le_bytes());
                }
            }
        }
    }

    /// A posting over `len` points (offsets ascending and below `len`).
    fn read(r: &mut crate::bytes::Reader<'_>, len: usize) -> Option<Posting> {
        match r.u8()? {
            0 => {
                let n = r.count(4)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    let o = r.u32()?;
                    if o as usize >= len || v.last().is_some_and(|&l| l >= o) {
                        return None;
                    }
                    v.push(o);
                }
                Some(Posting::Sparse(v))
            }
            1 => {
                let n = r.count(8)?;
                if n != len.div_ceil(64) {
                    return None;
                }
                let words = (0..n).map(|_| r.u64()).collect::<Option<Vec<u64>>>()?;
                Some(Posting::Dense(AllowSet::from_words(len, words)))
            }
            _ => None,
        }
    }
}

/// Writes a sealed segment's finished index to `path` (for the segment
/// `stamp` describes) atomically, never creating a folder: a folder gone
/// (the collection dropped meanwhile) is nothing to write, and another
/// thread of this process writing the same file (the same bytes) is left to it.
pub(crate) fn store(path: &Path, f: &FieldIndex, stamp: SegmentStamp) -> std::io::Result<()> {
    debug_assert!(f.sorted);
    let len = stamp.len;
    let mut out = Vec::with_capacity(64 + 16 * f.numbers.len() + 4 * len);
    out.extend_from_slice(PIDX_MAGIC);
    out.extend_from_slice(&stamp.identity.to_le_bytes());
    out.extend_from_slice(&stamp.payloads.to_le_bytes());
    out.extend_from_slice(&(len as u64).to_le_bytes());
    let spec = serde_json::to_string(&f.spec).expect("a spec serialises");
    out.extend_from_slice(&(spec.len() as u32).to_le_bytes());
    out.extend_from_slice(spec.as_bytes());
    f.non_empty.write(&mut out);
    out.extend_from_slice(&(f.keywords.len() as u64).to_le_bytes());
    for (k, p) in &f.keywords {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k.as_bytes());
        p.write(&mut out);
    }
    out.extend_from_slice(&(f.integers.len() as u64).to_le_bytes());
    for (i, p) in &f.integers {
        out.extend_from_slice(&i.to_le_bytes());
        p.write(&mut out);
    }
    out.extend_from_slice(&(f.numbers.len() as u64).to_le_bytes());
    for (x, o) in &f.numbers {
        out.extend_from_slice(&x.to_bits().to_le_bytes());
        out.extend_from_slice(&o.to_le_bytes());
    }
    for p in &f.bools {
        p.write(&mut out);
    }
    let sum = xxhash_rust::xxh3::xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut file = match std::fs::File::options().write(true).create_new(true).open(&tmp) {
        Ok(f) => f,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotFound) => return Ok(()),
        Err(e) => return Err(e),
    };
    let written = (|| {
        std::io::Write::write_all(&mut file, &out)?;
        file.sync_data()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Reads the index for `spec` of the segment `stamp` describes. `Ok(None)`:
/// no such file; `Err`: one that is damaged or made for another segment or
/// spec (the caller rebuilds).
pub(crate) fn load(path: &Path, spec: &FieldSpec, stamp: SegmentStamp) -> Result<Option<FieldIndex>, String> {
    let len = stamp.len;
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if bytes.len() < 8 + 16 + 8 + 8 + 4 + 8 || &bytes[..8] != PIDX_MAGIC {
        return Err("not a payload index file, or truncated".into());
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    if xxhash_rust::xxh3::xxh3_64(body).to_le_bytes() != sum {
        return Err("fails its checksum".into());
    }
    let mut r = crate::bytes::Reader::new(body);
    // Past the magic, checked above.
    r.take(8);
    let bad = || "malformed".to_string();
    let file_identity = r.u128().ok_or_else(bad)?;
    let payloads = r.u64().ok_or_else(bad)?;
    let points = r.u64().ok_or_else(bad)?;
    if file_identity != stamp.identity || payloads != stamp.payloads || points != len as u64 {
        return Err("made for another segment file".into());
    }
    let spec_len = r.u32().ok_or_else(bad)? as usize;
    let stored: FieldSpec = serde_json::from_slice(r.take(spec_len).ok_or_else(bad)?).map_err(|_| bad())?;
    if stored != *spec {
        return Err("made for another index".into());
    }
    let mut f = FieldIndex::new(spec);
    f.non_empty = Posting::read(&mut r, len).ok_or_else(bad)?;
    for _ in 0..r.count(5).ok_or_else(bad)? {
        let n = r.u32().ok_or_else(bad)? as usize;
        let k = std::str::from_utf8(r.take(n).ok_or_else(bad)?).map_err(|_| bad())?;
        let p = Posting::read(&mut r, len).ok_or_else(bad)?;
        if f.keywords.insert(k.into(), p).is_some() {
            return Err(bad());
        }
    }
    for _ in 0..r.count(9).ok_or_else(bad)? {
        let i = r.u64().ok_or_else(bad)? as i64;
        let p = Posting::read(&mut r, len).ok_or_else(bad)?;
        if f.integers.insert(i, p).is_some() {
            return Err(bad());
        }
    }
    let n = r.count(12).ok_or_else(bad)?;
    f.numbers.reserve_exact(n);
    for _ in 0..n {
        let x = f64::from_bits(r.u64().ok_or_else(bad)?);
        let o = r.u32().ok_or_else(bad)?;
        if o as usize >= len || x.is_nan() || f.numbers.last().is_some_and(|&(last, _)| last.total_cmp(&x).is_gt()) {
            return Err(bad());
        }
        f.numbers.push((x, o));
    }
    for b in 0..2 {
        f.bools[b] = Posting::read(&mut r, len).ok_or_else(bad)?;
    }
    if !r.done() {
        return Err(bad());
    }
    Ok(Some(f))
}

/// Points per task of a parallel index build.
const PARALLEL_CHUNK: usize = 16_384;

/// A segment's payload indexes, one per declared key.
#[derive(Debug, Default)]
pub(crate) struct FieldIndexes {
    fields: Vec<Arc<FieldIndex>>,
}

impl FieldIndexes {
    /// Finished indexes read from files, to pass as `keep` to [`FieldIndexes::build`].
    pub(crate) fn from_loaded(current: Option<&FieldIndexes>, loaded: Vec<FieldIndex>) -> FieldIndexes {
        let mut fields: Vec<Arc<FieldIndex>> = current.map(|c| c.fields.clone()).unwrap_or_default();
        fields.extend(loaded.into_iter().map(|mut f| {
            f.sorted = true;
            Arc::new(f)
        }));
        FieldIndexes { fields }
    }

    /// The indexes of `self` that `keep` did not hand it (built by
    /// [`FieldIndexes::build`]), with their specs.
    pub(crate) fn fresh_since<'a>(&'a self, keep: &FieldIndexes) -> impl Iterator<Item = &'a FieldIndex> {
        let kept: Vec<*const FieldIndex> = keep.fields.iter().map(Arc::as_ptr).collect();
        self.fields.iter().filter(move |f| !kept.contains(&Arc::as_ptr(f))).map(|f| &**f)
    }

    /// Its indexes.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &FieldIndex> {
        self.fields.iter().map(|f| &**f)
    }

    /// Whether it holds an index for `spec`.
    pub(crate) fn has(&self, spec: &FieldSpec) -> bool {
        self.fields.iter().any(|f| f.spec == *spec)
    }

    /// Indexes for `specs` over `payloads` (offset order, `len` of them), a
    /// sealed segment's: finished, and those of `keep` with a spec in
    /// `specs` reused, not rebuilt. On the rayon pool when `parallel`; never
    /// so under the collection's write lock (a pool worker blocked on that
    /// lock would never run the build's tasks).
    pub(crate) fn build<'a>(
        specs: &[FieldSpec],
        keep: Option<&FieldIndexes>,
        len: usize,
        payloads: impl Iterator<Item = Option<&'a str>>,
        parallel: bool,
    ) -> FieldIndexes {
        let mut out = Self::build_open(specs, keep, payloads, parallel);
        let finish = |f: &mut Arc<FieldIndex>| {
            // Reused ones are shared and finished already.
            if let Some(f) = Arc::get_mut(f) {
                f.finish(len, parallel);
            }
        };
        if parallel {
            use rayon::prelude::*;
            out.fields.par_iter_mut().for_each(finish);
        } else {
            out.fields.iter_mut().for_each(finish);
        }
        out
    }

    /// [`FieldIndexes::build`] for a memory segment: not finished (points are
    /// added later; a dense posting has a fixed length), nothing shared.
    pub(crate) fn build_open<'a>(
        specs: &[FieldSpec],
        keep: Option<&FieldIndexes>,
        payloads: impl Iterator<Item = Option<&'a str>>,
        parallel: bool,
    ) -> FieldIndexes {
        let reused = |s: &FieldSpec| keep.and_then(|k| k.fields.iter().find(|f| f.spec == *s).cloned());
        let missing: Vec<&FieldSpec> = specs.iter().filter(|s| reused(s).is_none()).collect();
        let mut fresh: Vec<FieldIndex> = missing.iter().map(|s| FieldIndex::new(s)).collect();
        if !fresh.is_empty() {
            // Parsing is the cost: chunks of points are parsed and indexed on
            // the pool, then appended in order (postings stay sorted).
            use rayon::prelude::*;
            let payloads: Vec<Option<&str>> = payloads.collect();
            let part = |(c, chunk): (usize, &[Option<&str>])| {
                let mut part: Vec<FieldIndex> = missing.iter().map(|s| FieldIndex::new(s)).collect();
                for (i, p) in chunk.iter().enumerate() {
                    let Some(value) = p.and_then(|t| serde_json::from_str::<Value>(t).ok()) else { continue };
                    for f in &mut part {
                        f.insert((c * PARALLEL_CHUNK + i) as u32, &value);
                    }
                }
                part
            };
            let chunks: Vec<Vec<FieldIndex>> = if parallel {
                payloads.par_chunks(PARALLEL_CHUNK).enumerate().map(part).collect()
            } else {
                payloads.chunks(PARALLEL_CHUNK).enumerate().map(part).collect()
            };
            for part in chunks {
                for (f, p) in fresh.iter_mut().zip(part) {
                    f.append(p);
                }
            }
        }
        let mut fresh = fresh.into_iter().map(Arc::new);
        let fields = specs.iter().map(|s| reused(s).unwrap_or_else(|| fresh.next().expect("one built per spec not reused"))).collect();
        FieldIndexes { fields }
    }

    /// Empty indexes for `specs` that points are inserted into one by one
    /// (a memory segment's).
    pub(crate) fn empty(specs: &[FieldSpec]) -> FieldIndexes {
        FieldIndexes { fields: specs.iter().map(|s| Arc::new(FieldIndex::new(s))).collect() }
    }

    /// Adds the point at `offset` (past every earlier one) with payload
    /// text `payload` (a memory segment's indexes, not shared).
    pub(crate) fn insert(&mut self, offset: u32, payload: Option<&str>) {
        if self.fields.is_empty() {
            return;
        }
        let Some(text) = payload else { return };
        // Payloads were checked to be JSON objects before they were logged.
        let Ok(value) = serde_json::from_str::<Value>(text) else { return };
        for f in &mut self.fields {
            // A memory segment's indexes are its own (only sealed ones are
            // reused by a rebuild), so this is the one reference.
            if let Some(f) = Arc::get_mut(f) {
                f.insert(offset, &value);
            }
        }
    }

    /// Whether the indexes are exactly those of `specs`.
    pub(crate) fn is(&self, specs: &[FieldSpec]) -> bool {
        self.fields.len() == specs.len() && specs.iter().all(|s| self.fields.iter().any(|f| f.spec == *s))
    }

    fn answer(&self, c: &Condition, len: usize) -> Option<AllowSet> {
        self.fields.iter().find_map(|f| f.answer(c, len))
    }
}

/// What [`select`] needs of a segment.
pub(crate) struct SegmentPoints<'a> {
    pub len: usize,
    pub indexes: &'a FieldIndexes,
    /// The payload text at an offset.
    pub payload: &'a dyn Fn(u32) -> Option<&'a str>,
    /// The id at an offset.
    pub id: &'a dyn Fn(u32) -> u64,
    /// The offsets here of the live points with these ids.
    pub offsets_of: &'a dyn Fn(&[u64]) -> Vec<u32>,
}

/// The points of a segment `filter` lets through (deleted ones included:
/// the caller removes them), and the keys whose conditions had to read
/// payloads.
pub(crate) fn select(filter: &Filter, seg: &SegmentPoints<'_>, budget: &ScanBudget) -> crate::Result<(AllowSet, Vec<String>)> {
    let mut ctx = Ctx { seg, scans: 0, parsed: None, unindexed: Vec::new(), budget, over: false };
    let out = ctx.filter(filter);
    ctx.unindexed.sort();
    ctx.unindexed.dedup();
    if ctx.over {
        return Err(budget.error(&ctx.unindexed));
    }
    Ok((out, ctx.unindexed))
}

/// Most payload checks (conditions decided point by point from payloads,
/// times the points they read) one search may make: about half a second
/// of one core. A filter of many conditions on keys without a payload
/// index, over many points, would otherwise hold a search thread for
/// seconds (a helper's crafted filter: 961 such conditions on 50k points,
/// 2–3 s a search, four at once stalled every collection); past the budget
/// the search is refused, naming the keys to index.
pub const MAX_PAYLOAD_CHECKS: usize = 10_000_000;

/// What is left of a search's [`MAX_PAYLOAD_CHECKS`], shared by the
/// segments it selects (from several threads in a batch).
#[derive(Debug)]
pub(crate) struct ScanBudget(std::sync::atomic::AtomicUsize);

impl ScanBudget {
    pub(crate) fn new() -> ScanBudget {
        ScanBudget(std::sync::atomic::AtomicUsize::new(MAX_PAYLOAD_CHECKS))
    }

    /// Takes `n` checks; false (and nothing taken) when fewer are left.
    fn take(&self, n: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.0.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| left.checked_sub(n)).is_ok()
    }

    fn error(&self, keys: &[String]) -> crate::Error {
        crate::Error::invalid(
            vec![crate::error::Loc::Field("filter")],
            format!(
                "the filter decides too many conditions from the payloads of too many points (over {MAX_PAYLOAD_CHECKS} checks); \
                 declare a payload index on {} (PUT /collections/{{name}}/index), or use fewer conditions on unindexed keys",
                if keys.is_empty() { "its keys".to_owned() } else { keys.join(", ") }
            ),
        )
    }
}

struct Ctx<'s, 'a> {
    seg: &'s SegmentPoints<'a>,
    /// Conditions decided from the payloads so far.
    scans: usize,
    /// Every payload parsed whole, once more than [`STREAMED_SCANS`]
    /// conditions need them.
    parsed: Option<Vec<Option<Value>>>,
    unindexed: Vec<String>,
    budget: &'s ScanBudget,
    /// The budget ran out: every later scan is skipped, the search refused.
    over: bool,
}

impl Ctx<'_, '_> {
    fn filter(&mut self, f: &Filter) -> AllowSet {
        // The first `must` is the start (no copy of a full set to AND into).
        let mut acc: Option<AllowSet> = None;
        for c in &f.must {
            let bits = self.condition(c);
            match acc.as_mut() {
                None => acc = Some(bits),
                Some(a) => a.intersect_with(&bits),
            }
        }
        if !f.should.is_empty() {
            let mut any = AllowSet::none(self.seg.len);
            for c in &f.should {
                any.union_with(&self.condition(c));
            }
            match acc.as_mut() {
                None => acc = Some(any),
                Some(a) => a.intersect_with(&any),
            }
        }
        let mut acc = acc.unwrap_or_else(|| AllowSet::all(self.seg.len));
        for c in &f.must_not {
            acc.difference_with(&self.condition(c));
        }
        acc
    }

    fn condition(&mut self, c: &Condition) -> AllowSet {
        match c {
            Condition::Nested(f) => self.filter(f),
            Condition::HasId(ids) => AllowSet::from_offsets(self.seg.len, (self.seg.offsets_of)(ids)),
            // Resolved to `HasId` before a search (`Filter::resolve_uuids`).
            Condition::HasUuid(_) => AllowSet::none(self.seg.len),
            _ => match self.seg.indexes.answer(c, self.seg.len) {
                Some(bits) => bits,
                None => self.scan(c),
            },
        }
    }

    /// `c` decided point by point from the payloads. The first
    /// [`STREAMED_SCANS`] such conditions of a filter parse, of each payload,
    /// only the value under their top-level key (every other value skipped
    /// unparsed, nothing kept); past them every payload is parsed whole once
    /// and kept for the rest, so a filter of many such conditions costs one
    /// full parse, not one pass each.
    fn scan(&mut self, c: &Condition) -> AllowSet {
        let key = match c {
            Condition::Match { key, .. } | Condition::Range { key, .. } | Condition::IsEmpty(key) => key,
            // Decided without payloads (see `condition`).
            Condition::HasId(_) | Condition::HasUuid(_) | Condition::Nested(_) => return self.condition(c),
        };
        self.unindexed.push(key.as_str().to_string());
        self.scans += 1;
        let seg = self.seg;
        let mut out = AllowSet::none(seg.len);
        if self.over || !self.budget.take(seg.len.max(1)) {
            self.over = true;
            return out;
        }
        if self.parsed.is_none() && self.scans <= STREAMED_SCANS {
            for o in 0..seg.len as u32 {
                let payload = (seg.payload)(o).and_then(|text| only_key(text, key.head()));
                if c.matches((seg.id)(o), payload.as_ref()) {
                    out.insert(o);
                }
            }
            return out;
        }
        let parsed = self.parsed.get_or_insert_with(|| {
            (0..seg.len as u32).map(|o| (seg.payload)(o).and_then(|t| serde_json::from_str::<Value>(t).ok())).collect()
        });
        for (o, payload) in parsed.iter().enumerate() {
            if c.matches((seg.id)(o as u32), payload.as_ref()) {
                out.insert(o as u32);
            }
        }
        out
    }
}

/// Conditions of one filter decided by a partial parse each ([`only_key`])
/// before the payloads are parsed whole once for the rest: at 200k points
/// (12 keys a payload) a partial pass took 51–67 ms and a whole parse
/// 406–452 ms (`filter_probe search`, idle machine), so two passes stay
/// under one whole parse and a filter of 1,024 such conditions costs about
/// what it did before partial parsing.
const STREAMED_SCANS: usize = 2;

/// The payload object `text` reduced to its value at `key` (an empty object
/// without it); `None` when `text` is not a JSON object. A repeated key
/// keeps its last value, as a full parse does.
fn only_key(text: &str, key: &str) -> Option<Value> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Only<'k>(&'k str);
    struct KeyIs<'k>(&'k str);
    impl<'de> Visitor<'de> for KeyIs<'_> {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a key")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
            Ok(v == self.0)
        }
    }
    impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
        type Value = bool;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_str(self)
        }
    }
    impl<'de> Visitor<'de> for Only<'_> {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut found = None;
            while let Some(wanted) = map.next_key_seed(KeyIs(self.0))? {
                if wanted {
                    found = Some(map.next_value::<Value>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            let mut out = serde_json::Map::new();
            if let Some(v) = found {
                out.insert(self.0.to_string(), v);
            }
            Ok(Value::Object(out))
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value = de.deserialize_map(Only(key)).ok()?;
    de.end().ok()?;
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::NumRange;
    use proptest::prelude::*;
    use serde_json::json;

    fn spec(field: &str, t: FieldType) -> FieldSpec {
        FieldSpec { field: field.into(), field_type: t }
    }

    /// A random payload over a few keys and value types (arrays, nulls,
    /// nesting, numbers that are and are not integers).
    fn payload() -> impl Strategy<Value = Option<Value>> {
        let leaf = prop_oneof![
            Just(Value::Null),
            (0..4u8).prop_map(|i| json!(format!("t{i}"))),
            (-3..4i64).prop_map(|i| json!(i)),
            (-3.0..4.0f64).prop_map(|x| json!((x * 2.0).round() / 2.0)),
            any::<bool>().prop_map(|b| json!(b)),
        ];
        let value = prop_oneof![leaf.clone(), proptest::collection::vec(leaf.clone(), 0..3).prop_map(Value::Array)];
        let obj = (proptest::option::of(value.clone()), proptest::option::of(value.clone()), proptest::option::of(value))
            .prop_map(|(a, b, c)| {
                let mut m = serde_json::Map::new();
                if let Some(a) = a {
                    m.insert("a".into(), a);
                }
                if let Some(b) = b {
                    m.insert("b".into(), b);
                }
                if let Some(c) = c {
                    m.insert("n".into(), json!({"c": c}));
                }
                Value::Object(m)
            });
        proptest::option::of(obj)
    }

    fn condition() -> impl Strategy<Value = Condition> {
        let key = prop_oneof![Just("a"), Just("b"), Just("n.c"), Just("z")].prop_map(|k| KeyPath::parse(k).unwrap());
        let mv = prop_oneof![
            (0..5u8).prop_map(|i| MatchValue::Keyword(format!("t{i}"))),
            (-3..4i64).prop_map(MatchValue::Integer),
            any::<bool>().prop_map(MatchValue::Bool),
        ];
        let bound = proptest::option::of((-8..8i32).prop_map(|x| f64::from(x) / 2.0));
        let leaf = prop_oneof![
            (key.clone(), proptest::collection::vec(mv, 0..3)).prop_map(|(key, values)| Condition::Match { key, values }),
            (key.clone(), bound.clone(), bound.clone(), bound.clone(), bound)
                .prop_map(|(key, gt, gte, lt, lte)| Condition::Range { key, range: NumRange { gt, gte, lt, lte } }),
            proptest::collection::vec(0..40u64, 0..4).prop_map(Condition::HasId),
            key.prop_map(Condition::IsEmpty),
        ];
        leaf.prop_recursive(2, 12, 3, |inner| {
            (proptest::collection::vec(inner.clone(), 0..3), proptest::collection::vec(inner.clone(), 0..3), proptest::collection::vec(inner, 0..2))
                .prop_map(|(must, should, must_not)| Condition::Nested(Box::new(Filter { must, should, must_not })))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        /// Indexed or not, sealed (sorted) or memory (insertion order), the
        /// selected points are exactly those `Filter::matches` accepts.
        #[test]
        fn select_agrees_with_the_reference(
            payloads in proptest::collection::vec(payload(), 0..40),
            must in proptest::collection::vec(condition(), 0..3),
            should in proptest::collection::vec(condition(), 0..3),
            must_not in proptest::collection::vec(condition(), 0..2),
            indexed in proptest::collection::vec((0..4usize, 0..4usize), 0..4),
        ) {
            let keys = ["a", "b", "n.c", "z"];
            let types = [FieldType::Keyword, FieldType::Integer, FieldType::Float, FieldType::Bool];
            let mut specs: Vec<FieldSpec> = indexed.iter().map(|&(k, t)| spec(keys[k], types[t])).collect();
            let mut seen = std::collections::HashSet::new();
            specs.retain(|s| seen.insert(s.field.clone()));
            let texts: Vec<Option<std::sync::Arc<str>>> = payloads.iter().map(|p| p.as_ref().map(|v| std::sync::Arc::from(v.to_string()))).collect();
            let filter = Filter { must, should, must_not };
            // Ids are 3 × offset, so has_id tests a mapping.
            let want: Vec<u32> = (0..payloads.len() as u32).filter(|&o| filter.matches(u64::from(o) * 3, payloads[o as usize].as_ref())).collect();
            let sealed = FieldIndexes::build(&specs, None, texts.len(), texts.iter().map(|t| t.as_deref()), true);
            let mut memory = FieldIndexes::empty(&specs);
            for (o, t) in texts.iter().enumerate() {
                memory.insert(o as u32, t.as_deref());
            }
            let loaded = round_trip(&sealed, &specs, texts.len());
            for indexes in [&sealed, &memory, &loaded] {
                let seg = SegmentPoints {
                    len: payloads.len(),
                    indexes,
                    payload: &|o| texts[o as usize].as_deref(),
                    id: &|o| u64::from(o) * 3,
                    offsets_of: &|ids| ids.iter().filter(|&&id| id % 3 == 0 && id / 3 < payloads.len() as u64).map(|&id| (id / 3) as u32).collect(),
                };
                let (got, _) = select(&filter, &seg, &ScanBudget::new()).unwrap();
                prop_assert_eq!(got.iter().collect::<Vec<_>>(), want.clone());
                prop_assert_eq!(got.count(), want.len());
            }
        }
    }

    /// `indexes` written to files and read back (what a reopened segment uses).
    fn round_trip(indexes: &FieldIndexes, specs: &[FieldSpec], len: usize) -> FieldIndexes {
        let dir = tempfile::tempdir().unwrap();
        let loaded: Vec<FieldIndex> = indexes
            .fields
            .iter()
            .map(|f| {
                let path = dir.path().join(pidx_name(1, &f.spec));
                let stamp = SegmentStamp { identity: 42, payloads: 7, len };
                store(&path, f, stamp).unwrap();
                load(&path, &f.spec, stamp).unwrap().expect("written")
            })
            .collect();
        let keep = FieldIndexes::from_loaded(None, loaded);
        let out = FieldIndexes::build(specs, Some(&keep), len, std::iter::empty(), false);
        assert_eq!(out.fresh_since(&keep).count(), 0, "every index came from its file");
        out
    }

    #[test]
    fn payload_index_files_refuse_damage_and_other_segments() {
        let texts: Vec<Option<std::sync::Arc<str>>> = (0..3000).map(|i| Some(std::sync::Arc::from(json!({"t": format!("k{}", i % 3), "x": i}).to_string()))).collect();
        let specs = [spec("t", FieldType::Keyword), spec("x", FieldType::Integer)];
        let built = FieldIndexes::build(&specs, None, 3000, texts.iter().map(|t| t.as_deref()), false);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(pidx_name(7, &specs[0]));
        let stamp = SegmentStamp { identity: 9, payloads: 5, len: 3000 };
        assert!(load(&path, &specs[0], stamp).unwrap().is_none(), "no file: None");
        store(&path, &built.fields[0], stamp).unwrap();
        assert!(load(&path, &specs[0], stamp).unwrap().is_some());
        for other in [SegmentStamp { identity: 10, ..stamp }, SegmentStamp { payloads: 6, ..stamp }, SegmentStamp { len: 2999, ..stamp }] {
            assert!(load(&path, &specs[0], other).unwrap_err().contains("another segment file"), "{other:?}");
        }
        assert!(load(&path, &specs[1], stamp).unwrap_err().contains("another index"));
        let bytes = std::fs::read(&path).unwrap();
        for at in [0, 40, bytes.len() / 2, bytes.len() - 9] {
            let mut b = bytes.clone();
            b[at] ^= 0x10;
            std::fs::write(&path, &b).unwrap();
            assert!(load(&path, &specs[0], stamp).is_err(), "a flipped byte at {at}");
        }
        for cut in [10, bytes.len() / 3, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(load(&path, &specs[0], stamp).is_err(), "cut at {cut}");
        }
        assert_ne!(pidx_name(7, &specs[0]), pidx_name(7, &spec("t", FieldType::Integer)), "a spec's type is in its name");
        // Never a folder created: one gone (its collection dropped) is nothing to write.
        let gone = dir.path().join("dropped/segments").join(pidx_name(7, &specs[0]));
        store(&gone, &built.fields[0], stamp).unwrap();
        assert!(!dir.path().join("dropped").exists());
    }

    /// -0.0 after 0.0 (in offset order) is not sorted by total order: the
    /// build sorts it, so the file it writes is read back (the reviewer's case).
    #[test]
    fn negative_zero_after_zero_round_trips() {
        let texts: Vec<Option<std::sync::Arc<str>>> = ["{\"x\":0.0}", "{\"x\":-0.0}", "{\"x\":1.5}"].iter().map(|t| Some(std::sync::Arc::from(*t))).collect();
        let specs = [spec("x", FieldType::Float)];
        let built = FieldIndexes::build(&specs, None, 3, texts.iter().map(|t| t.as_deref()), false);
        round_trip(&built, &specs, 3);
    }

    #[test]
    fn a_parallel_build_over_many_chunks_answers_like_the_reference() {
        // Three chunks and a bit, values repeating across chunk boundaries.
        let n = 3 * PARALLEL_CHUNK + 1000;
        let payload = |i: usize| json!({"tag": [format!("t{}", i % 13), format!("u{}", i % 5)], "x": (i * 7919) % 1000, "f": (i % 3) as f64 / 2.0, "b": i % 4 == 0});
        let texts: Vec<Option<std::sync::Arc<str>>> =
            (0..n).map(|i| (i % 17 != 0).then(|| std::sync::Arc::from(payload(i).to_string()))).collect();
        let specs = [spec("tag", FieldType::Keyword), spec("x", FieldType::Integer), spec("f", FieldType::Float), spec("b", FieldType::Bool)];
        let built = FieldIndexes::build(&specs, None, n, texts.iter().map(|t| t.as_deref()), true);
        let parsed: Vec<Option<Value>> = texts.iter().map(|t| t.as_ref().map(|t| serde_json::from_str(t).unwrap())).collect();
        // Dense postings (a value of more than 1/32 of the points) through files too.
        let loaded = round_trip(&built, &specs, n);
        for indexes in [&built, &loaded] {
            let seg = SegmentPoints { len: n, indexes, payload: &|_| panic!("indexed"), id: &u64::from, offsets_of: &|_| Vec::new() };
            let key = |k: &str| KeyPath::parse(k).unwrap();
            let conditions = [
                Condition::Match { key: key("tag"), values: vec![MatchValue::Keyword("t3".into()), MatchValue::Keyword("u1".into())] },
                Condition::Match { key: key("x"), values: vec![MatchValue::Integer(500)] },
                Condition::Range { key: key("x"), range: NumRange { gte: Some(100.0), lt: Some(130.0), ..Default::default() } },
                Condition::Range { key: key("f"), range: NumRange { gt: Some(0.0), ..Default::default() } },
                Condition::Match { key: key("b"), values: vec![MatchValue::Bool(true)] },
                Condition::IsEmpty(key("tag")),
            ];
            for c in conditions {
                let f = Filter { must: vec![c.clone()], ..Default::default() };
                let (got, unindexed) = select(&f, &seg, &ScanBudget::new()).unwrap();
                assert!(unindexed.is_empty());
                let want: Vec<u32> = (0..n as u32).filter(|&o| c.matches(u64::from(o), parsed[o as usize].as_ref())).collect();
                assert_eq!(got.iter().collect::<Vec<_>>(), want, "{c:?}");
            }
        }
    }

    #[test]
    fn indexed_conditions_do_not_read_payloads() {
        let texts: Vec<Option<std::sync::Arc<str>>> =
            (0..100).map(|i| Some(std::sync::Arc::from(json!({"tag": format!("t{}", i % 10), "price": i}).to_string()))).collect();
        let specs = [spec("tag", FieldType::Keyword), spec("price", FieldType::Integer)];
        let indexes = FieldIndexes::build(&specs, None, 100, texts.iter().map(|t| t.as_deref()), false);
        let seg = SegmentPoints {
            len: 100,
            indexes: &indexes,
            payload: &|_| panic!("an indexed condition read a payload"),
            id: &u64::from,
            offsets_of: &|_| Vec::new(),
        };
        let f = Filter {
            must: vec![
                Condition::Match { key: KeyPath::parse("tag").unwrap(), values: vec![MatchValue::Keyword("t3".into())] },
                Condition::Range { key: KeyPath::parse("price").unwrap(), range: NumRange { gte: Some(20.0), lt: Some(60.0), ..Default::default() } },
            ],
            ..Default::default()
        };
        let (got, unindexed) = select(&f, &seg, &ScanBudget::new()).unwrap();
        assert_eq!(got.iter().collect::<Vec<_>>(), vec![23, 33, 43, 53]);
        assert!(unindexed.is_empty());
    }

    /// The scan's partial parse sees what a full parse sees at its key.
    #[test]
    fn only_key_reduces_a_payload_to_one_key_as_a_full_parse_reads_it() {
        let full = |t: &str, k: &str| {
            let v: Value = serde_json::from_str(t).ok()?;
            let mut m = serde_json::Map::new();
            if let Some(x) = v.as_object()?.get(k) {
                m.insert(k.to_string(), x.clone());
            }
            Some(Value::Object(m))
        };
        for (text, key) in [
            (r#"{"a": 1, "b": {"c": [1, "x"]}}"#, "b"),
            (r#"{"a": 1, "b": 2}"#, "z"),
            (r#"{"a\u0062": 5, "ab": 6}"#, "ab"),
            (r#"{"a": 1, "a": 2}"#, "a"),
            (r#"{"s": "q\"uote", "t": [{"u": null}]}"#, "t"),
            (r#"[1, 2]"#, "a"),
            (r#"{"a": 1} trailing"#, "a"),
            (r#"{"a": "#, "a"),
        ] {
            assert_eq!(only_key(text, key), full(text, key), "{text} at {key}");
        }
    }
}
