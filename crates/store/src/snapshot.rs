//! Snapshots: a collection as of one log position, in one tar archive, and
//! back.
//!
//! ```text
//! <data-dir>/.snapshots/<collection>/<snapshot>.tar   (written atomically)
//!   snapshot.json    format, collection, name, created, position, points, settings,
//!                    payload indexes, and the files that follow (path, bytes)
//!   manifest.json    the collection's manifest as of the position (log from LSN 1)
//!   segments/…       each sealed segment's index and payload files, as they are (immutable);
//!                    its deleted set as of the position (`<id>.deleted-1`)
//!   wal/…            the memory segments' live points as upsert records (the log's own
//!                    frames), LSNs from 1
//!   uuids.bin        the UUIDs of the points and their keys, when any point has one
//!   checksums.json   xxh3-64 of every file above, `snapshot.json` included
//! ```
//!
//! **Consistency.** Under the collection's write lock (no write is applied
//! meanwhile) [`Collection::capture`] takes the segment list, the sealed
//! segments' deleted sets, the memory segments' lengths and deleted flags,
//! and pins the sealed segments' files (a checkpoint's clean-up spares them
//! while the copy runs) and opens them (the copy reads those handles, so a
//! delete of the collection meanwhile, or a new one of the same name, cannot
//! fail it or change what it copies); everything else happens outside the lock. The
//! archive then holds exactly the writes applied up to that position; the
//! log is synced up to it before the archive is written, so every write it
//! holds is durable and every write acknowledged before the request began
//! is in it. A restored collection opens like any other: its manifest names
//! the segments, its log replays the memory points.
//!
//! **Checks.** [`unpack`] reads the entries in order, refuses a file not
//! listed, out of place, of another size, or whose checksum differs, and an
//! archive that ends before `checksums.json` (truncated), each with an error
//! naming the file.

use crate::collection::{Collection, deleted_name, segments_dir};
use crate::error::{Error, Result};
use crate::manifest::{CollectionConfig, MANIFEST, Manifest, SegmentEntry};
use crate::payload_index::FieldSpec;
use crate::record::{PointWrite, Record};
use crate::segment::{MemSegment, SealedSegment, SegmentId};
use crate::wal::{FileWal, Lsn, SyncMode, Wal};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use xxhash_rust::xxh3::Xxh3;

pub const SNAPSHOT_FORMAT: u32 = 1;
const INFO: &str = "snapshot.json";
const SUMS: &str = "checksums.json";
/// Largest `snapshot.json` / `checksums.json` read (a bound on a hostile archive).
const MAX_META_BYTES: u64 = 16 << 20;
/// Points per upsert record of a snapshot's log.
const RECORD_POINTS: usize = 1024;

/// What `snapshot.json` says: the archive's first entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotInfo {
    pub format: u32,
    pub name: String,
    pub collection: String,
    /// When it was taken, RFC 3339 (UTC).
    pub created: String,
    pub created_unix_ms: u64,
    /// The LSN of the last write it holds (0: none yet).
    pub position: u64,
    /// Live points.
    pub points: usize,
    pub config: CollectionConfig,
    pub payload_indexes: Vec<FieldSpec>,
    /// The files that follow, in order.
    pub files: Vec<SnapshotFile>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotFile {
    pub path: String,
    pub bytes: u64,
}

/// A stored snapshot, as listed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SnapshotSummary {
    pub name: String,
    /// Archive bytes.
    pub size: u64,
    pub created: String,
    pub points: usize,
    pub position: u64,
}

impl SnapshotSummary {
    pub(crate) fn of(info: &SnapshotInfo, size: u64) -> SnapshotSummary {
        SnapshotSummary { name: info.name.clone(), size, created: info.created.clone(), points: info.points, position: info.position }
    }
}

/// Segment files a snapshot is copying: a checkpoint does not remove them.
/// Shared by a collection and the [`Pin`]s of its snapshots.
pub(crate) type Pins = Arc<Mutex<HashMap<SegmentId, usize>>>;

/// Keeps its segments' files until dropped.
#[derive(Debug)]
pub(crate) struct Pin {
    pins: Pins,
    ids: Vec<SegmentId>,
}

impl Pin {
    pub(crate) fn new(pins: &Pins, ids: Vec<SegmentId>) -> Pin {
        let mut map = pins.lock();
        for &id in &ids {
            *map.entry(id).or_default() += 1;
        }
        Pin { pins: Arc::clone(pins), ids }
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        let mut map = self.pins.lock();
        for id in &self.ids {
            if let Some(n) = map.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    map.remove(id);
                }
            }
        }
    }
}

/// A memory segment as of the capture: its first `len` points, with the
/// deleted flags they had.
#[derive(Debug)]
pub(crate) struct MemCapture {
    pub segment: Arc<MemSegment>,
    pub deleted: Vec<bool>,
}

/// A collection as of one log position (see [`Collection::capture`]).
#[derive(Debug)]
pub(crate) struct Capture {
    pub sealed: Vec<(Arc<SealedSegment>, Vec<u32>)>,
    /// The sealed segments' files (index, payloads), opened under the
    /// write lock as `segments/<name>` of the archive: read from these
    /// handles, they are this collection's even if it is deleted meanwhile
    /// (its folder renamed and removed) and another one of the same name
    /// created in its place.
    pub files: Vec<(String, std::fs::File)>,
    pub memory: Vec<MemCapture>,
    /// The first LSN not included.
    pub next_lsn: Lsn,
    pub next_segment: u64,
    pub fields: Vec<FieldSpec>,
    pub points: usize,
    /// The UUIDs' keys as of the position (`None`: no UUID was ever given one).
    pub uuids: Option<crate::ids::UuidMap>,
    pub _pin: Pin,
}

impl Collection {
    /// The collection as of now, under the write lock: segments, deleted
    /// sets, memory lengths; the sealed segments' files pinned.
    pub(crate) fn capture(&self) -> Result<Capture> {
        let ws = self.write.lock();
        self.check_open()?;
        let set = self.set();
        let sealed: Vec<(Arc<SealedSegment>, Vec<u32>)> = set.sealed.iter().map(|s| (Arc::clone(s), s.deleted.ones())).collect();
        let memory = set
            .frozen
            .iter()
            .chain(std::iter::once(&set.mutable))
            .map(|m| MemCapture { segment: Arc::clone(m), deleted: m.data.read().deleted.clone() })
            .collect();
        let pin = Pin::new(&self.pins, set.sealed.iter().map(|s| s.id).collect());
        // Not dropped (checked above, under the lock a drop takes before it
        // moves the folder), and pinned: every file is there.
        let mut files = Vec::with_capacity(2 * set.sealed.len());
        for s in &set.sealed {
            for from in std::iter::once(s.index.path()).chain(s.payloads.path()) {
                let file = std::fs::File::open(from).map_err(|e| Error::io(from, e))?;
                files.push((format!("segments/{}", file_name(from)), file));
            }
        }
        Ok(Capture {
            sealed,
            files,
            memory,
            next_lsn: self.wal.next_lsn(),
            next_segment: ws.next_segment,
            fields: ws.fields.to_vec(),
            points: ws.ids.len(),
            uuids: Some(self.uuids.read()).filter(|m| m.ever_used()).map(|m| m.clone()),
            _pin: pin,
        })
    }

    /// Writes a snapshot of the collection to `path` (atomically), named
    /// `name`; see the module doc.
    pub(crate) fn snapshot_to(&self, path: &Path, name: &str) -> Result<SnapshotInfo> {
        let start = std::time::Instant::now();
        let capture = self.capture()?;
        let captured = start.elapsed();
        // Durable up to the position, so the archive holds no write that a
        // crash could still take back.
        if capture.next_lsn > 1 {
            self.wal.sync(capture.next_lsn - 1)?;
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let staging = dir.join(format!(".{name}.staging-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        let result = write_archive(self, &capture, path, name, &staging);
        let _ = std::fs::remove_dir_all(&staging);
        if let Ok(info) = &result {
            let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
            tracing::info!(
                collection = self.name, snapshot = name, points = info.points, position = info.position, bytes,
                capture_ms = captured.as_secs_f64() * 1e3, seconds = start.elapsed().as_secs_f64(), "snapshot written"
            );
        }
        result
    }
}

/// One file of the archive: where it is read from (opened).
struct Source {
    path: String,
    from: PathBuf,
    file: std::fs::File,
    bytes: u64,
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn write_archive(c: &Collection, cap: &Capture, path: &Path, name: &str, staging: &Path) -> Result<SnapshotInfo> {
    let seg_dir = segments_dir(&c.dir);
    let staged_segments = staging.join("segments");
    std::fs::create_dir_all(&staged_segments).map_err(|e| Error::io(&staged_segments, e))?;
    // Where each file is read from: the sealed segments' own files through
    // the handles the capture opened (never by path: see `Capture::files`),
    // the staged ones (sidecars, log, manifest) by path.
    let mut sources: Vec<(String, PathBuf, Option<&std::fs::File>)> = Vec::new();
    let mut opened = cap.files.iter();
    let mut entries = Vec::with_capacity(cap.sealed.len());
    for (s, deleted) in &cap.sealed {
        let index = file_name(s.index.path());
        let payloads = s.payloads.path().map(file_name);
        for name in std::iter::once(&index).chain(&payloads) {
            let from = seg_dir.join(name);
            let Some((path, file)) = opened.next().filter(|(p, _)| *p == format!("segments/{name}")) else {
                return Err(Error::corrupt(from, "not among the files the snapshot captured"));
            };
            sources.push((path.clone(), from, Some(file)));
        }
        let sidecar = (!deleted.is_empty()).then(|| deleted_name(s.id, 1));
        if let Some(d) = &sidecar {
            let staged = staged_segments.join(d);
            crate::files::write_deleted(&staged, deleted)?;
            sources.push((format!("segments/{d}"), staged, None));
        }
        let generation = u64::from(sidecar.is_some());
        entries.push(SegmentEntry { id: s.id, index, payloads, deleted: sidecar, deleted_generation: generation, points: s.len() });
    }
    // The memory segments' live points, as the log's upsert records.
    let wal_dir = staging.join("wal");
    let wal = FileWal::open(&wal_dir, 1, SyncMode::Always)?;
    let mut batch: Vec<PointWrite> = Vec::with_capacity(RECORD_POINTS);
    let mut last = 0;
    for m in &cap.memory {
        let seg = &m.segment;
        let d = seg.data.read();
        for (o, &deleted) in m.deleted.iter().enumerate() {
            if deleted {
                continue;
            }
            let vector = d.vectors[o * seg.dim..(o + 1) * seg.dim].to_vec();
            let id = d.ids[o];
            let uuid = cap.uuids.as_ref().and_then(|m| m.live_uuid_of(id)).filter(|_| crate::ids::is_uuid_key(id));
            batch.push(PointWrite { id, uuid, vector, payload: d.payloads[o].clone() });
            if batch.len() == RECORD_POINTS {
                last = wal.append(&Record::Upsert(std::mem::take(&mut batch)).encode())?;
            }
        }
    }
    if !batch.is_empty() {
        last = wal.append(&Record::Upsert(batch).encode())?;
    }
    if last > 0 {
        wal.sync(last)?;
    }
    drop(wal);
    let mut logs: Vec<String> = std::fs::read_dir(&wal_dir)
        .map_err(|e| Error::io(&wal_dir, e))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".log"))
        .collect();
    logs.sort();
    for l in logs {
        sources.push((format!("wal/{l}"), wal_dir.join(l), None));
    }
    let manifest = Manifest {
        format: 1,
        config: c.config.clone(),
        segments: entries,
        payload_indexes: cap.fields.clone(),
        wal_from: 1,
        next_segment: cap.next_segment,
    };
    manifest.write(staging)?;
    sources.insert(0, (MANIFEST.to_string(), staging.join(MANIFEST), None));
    if let Some(m) = &cap.uuids {
        m.write(staging)?;
        sources.push((crate::ids::UUIDS_FILE.to_string(), staging.join(crate::ids::UUIDS_FILE), None));
    }

    let sources: Vec<Source> = sources
        .into_iter()
        .map(|(path, from, opened)| {
            let file = match opened {
                Some(f) => f.try_clone(),
                None => std::fs::File::open(&from),
            }
            .map_err(|e| Error::io(&from, e))?;
            let bytes = file.metadata().map_err(|e| Error::io(&from, e))?.len();
            Ok(Source { path, from, file, bytes })
        })
        .collect::<Result<_>>()?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let info = SnapshotInfo {
        format: SNAPSHOT_FORMAT,
        name: name.to_string(),
        collection: c.name.clone(),
        created: rfc3339(now.as_secs()),
        created_unix_ms: now.as_millis() as u64,
        position: cap.next_lsn - 1,
        points: cap.points,
        config: c.config.clone(),
        payload_indexes: cap.fields.clone(),
        files: sources.iter().map(|s| SnapshotFile { path: s.path.clone(), bytes: s.bytes }).collect(),
    };
    let info_bytes = serde_json::to_vec_pretty(&info).expect("snapshot info serialises");
    let mtime = now.as_secs();
    // A read failure inside the archive writer comes back as an I/O error
    // of the temporary; keep the store's own error to report it.
    let failure: std::cell::RefCell<Option<Error>> = std::cell::RefCell::new(None);
    let written = vectorwise_index::write_atomic(path, |w| {
        let mut tar = tar::Builder::new(w);
        let mut sums: BTreeMap<String, String> = BTreeMap::new();
        sums.insert(INFO.into(), hex(xxhash_rust::xxh3::xxh3_64(&info_bytes)));
        tar.append_data(&mut header(info_bytes.len() as u64, mtime), INFO, info_bytes.as_slice())?;
        for s in &sources {
            let mut reader = Hashing { inner: (&s.file).take(s.bytes), hash: Xxh3::new(), bytes: 0 };
            tar.append_data(&mut header(s.bytes, mtime), &s.path, &mut reader)?;
            if reader.bytes != s.bytes {
                *failure.borrow_mut() = Some(Error::corrupt(&s.from, "changed size while a snapshot copied it"));
                return Err(std::io::Error::other("a file changed size"));
            }
            sums.insert(s.path.clone(), hex(reader.hash.digest()));
        }
        let sums = serde_json::to_vec_pretty(&sums).expect("checksums serialise");
        tar.append_data(&mut header(sums.len() as u64, mtime), SUMS, sums.as_slice())?;
        tar.finish()
    });
    if let Err(e) = written {
        return Err(failure.into_inner().unwrap_or_else(|| e.into()));
    }
    Ok(info)
}

fn header(size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn hex(v: u64) -> String {
    format!("{v:016x}")
}

/// A reader that hashes (xxh3-64) and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hash: Xxh3,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

fn bad(reason: impl Into<String>) -> Error {
    Error::BadSnapshot(reason.into())
}

/// Whether `path` is a file an archive may hold besides its two metadata
/// files: `manifest.json`, `segments/<file>` or `wal/<file>`, the file's name
/// of `A-Z a-z 0-9 . _ -`, not starting with a dot.
fn valid_member(path: &str) -> bool {
    if path == MANIFEST || path == crate::ids::UUIDS_FILE {
        return true;
    }
    let Some((dir, name)) = path.split_once('/') else { return false };
    matches!(dir, "segments" | "wal")
        && (1..=100).contains(&name.len())
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Reads one metadata entry (at most [`MAX_META_BYTES`], all it declares).
fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, what: &str) -> Result<Vec<u8>> {
    let size = entry.header().size().map_err(|e| bad(format!("`{what}`: bad size in its header: {e}")))?;
    if size > MAX_META_BYTES {
        return Err(bad(format!("`{what}` is larger than {MAX_META_BYTES} bytes")));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("`{what}` cannot be read (the archive is truncated or damaged): {e}")))?;
    if bytes.len() as u64 != size {
        return Err(bad(format!("`{what}` ends after {} of its {size} bytes (the archive is truncated)", bytes.len())));
    }
    Ok(bytes)
}

/// Checks a snapshot archive and writes its files into `into` (created; must
/// not exist), each synced; returns what `snapshot.json` says. Refuses a
/// damaged, truncated or foreign archive with [`Error::BadSnapshot`] naming
/// what is wrong; `into` may then hold part of the files (the caller removes it).
pub fn unpack(archive: impl Read, into: &Path) -> Result<SnapshotInfo> {
    let mut archive = tar::Archive::new(archive);
    let mut entries = archive.entries().map_err(|e| bad(format!("not a tar archive: {e}")))?;
    let mut next = |what: &str| -> Result<tar::Entry<'_, _>> {
        match entries.next() {
            None => Err(bad(format!("the archive ends before `{what}` (truncated?)"))),
            Some(Err(e)) => Err(bad(format!("the archive is damaged or truncated before `{what}`: {e}"))),
            Some(Ok(entry)) => {
                let path = entry.path_bytes().into_owned();
                if path != what.as_bytes() {
                    let found = String::from_utf8_lossy(&path).into_owned();
                    return Err(bad(format!("expected `{what}` next, found `{found}`")));
                }
                if entry.header().entry_type() != tar::EntryType::Regular {
                    return Err(bad(format!("`{what}` is not a regular file")));
                }
                Ok(entry)
            }
        }
    };
    let mut sums: BTreeMap<String, String> = BTreeMap::new();
    let info_bytes = read_meta(&mut next(INFO)?, INFO)?;
    sums.insert(INFO.into(), hex(xxhash_rust::xxh3::xxh3_64(&info_bytes)));
    let info: SnapshotInfo = serde_json::from_slice(&info_bytes).map_err(|e| bad(format!("`{INFO}` is not a VectorWise snapshot description: {e}")))?;
    if info.format != SNAPSHOT_FORMAT {
        return Err(bad(format!("snapshot format {} (this build reads {SNAPSHOT_FORMAT})", info.format)));
    }
    info.config.check().map_err(|e| bad(format!("`{INFO}`: bad settings: {e}")))?;
    let mut seen = std::collections::HashSet::new();
    for f in &info.files {
        if !valid_member(&f.path) || !seen.insert(f.path.as_str()) {
            return Err(bad(format!("`{INFO}` lists a bad or repeated file `{}`", f.path)));
        }
    }
    if !seen.contains(MANIFEST) {
        return Err(bad(format!("`{INFO}` lists no `{MANIFEST}`")));
    }
    for sub in ["segments", "wal"] {
        let d = into.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    for f in &info.files {
        let mut entry = next(&f.path)?;
        let size = entry.header().size().map_err(|e| bad(format!("`{}`: bad size in its header: {e}", f.path)))?;
        if size != f.bytes {
            return Err(bad(format!("`{}` is {size} bytes; `{INFO}` says {}", f.path, f.bytes)));
        }
        let target = into.join(&f.path);
        let mut out = std::fs::File::options().write(true).create_new(true).open(&target).map_err(|e| Error::io(&target, e))?;
        let mut hash = Xxh3::new();
        let mut copied = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry.read(&mut buf).map_err(|e| bad(format!("`{}` cannot be read (the archive is truncated or damaged): {e}", f.path)))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| Error::io(&target, e))?;
            copied += n as u64;
        }
        if copied != f.bytes {
            return Err(bad(format!("`{}` ends after {copied} of its {} bytes (the archive is truncated)", f.path, f.bytes)));
        }
        out.sync_all().map_err(|e| Error::io(&target, e))?;
        sums.insert(f.path.clone(), hex(hash.digest()));
    }
    let stored: BTreeMap<String, String> = serde_json::from_slice(&read_meta(&mut next(SUMS)?, SUMS)?)
        .map_err(|e| bad(format!("`{SUMS}` is not a checksum list: {e}")))?;
    for (path, sum) in &sums {
        match stored.get(path) {
            Some(s) if s == sum => {}
            Some(_) => return Err(bad(format!("`{path}`: checksum mismatch (the archive is damaged)"))),
            None => return Err(bad(format!("`{SUMS}` has no checksum for `{path}`"))),
        }
    }
    if stored.len() != sums.len() {
        return Err(bad(format!("`{SUMS}` lists files the archive does not hold")));
    }
    match entries.next() {
        None => {}
        Some(Ok(e)) => return Err(bad(format!("unexpected entry `{}` after `{SUMS}`", String::from_utf8_lossy(&e.path_bytes())))),
        Some(Err(e)) => return Err(bad(format!("the archive is damaged after `{SUMS}`: {e}"))),
    }
    for d in [into.join("segments"), into.join("wal"), into.to_path_buf()] {
        sync_dir(&d);
    }
    Ok(info)
}

/// What `snapshot.json` of the archive at `path` says (its first entry only).
pub fn read_info(path: &Path) -> Result<SnapshotInfo> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut entries = archive.entries().map_err(|e| bad(format!("not a tar archive: {e}")))?;
    let mut entry = match entries.next() {
        Some(Ok(e)) if e.path_bytes().as_ref() == INFO.as_bytes() => e,
        _ => return Err(bad(format!("{}: no `{INFO}` first", path.display()))),
    };
    let bytes = read_meta(&mut entry, INFO)?;
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("{}: `{INFO}`: {e}", path.display())))
}

pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of Unix seconds (the civil-from-days algorithm of
/// H. Hinnant's `chrono`-free date library).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_563_310), "2026-12-06T13:21:50Z");
    }

    /// A merge while a snapshot copies removes the merged segments from the
    /// manifest, but their files stay until the snapshot lets them go.
    #[test]
    fn pinned_segment_files_outlive_a_merge_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path(), SyncMode::Always).unwrap();
        let config = CollectionConfig { seal_points: 10, ..CollectionConfig::new(4, vectorwise_index::Metric::L2) };
        let (c, _) = store.create("c", config).unwrap();
        let batch = |from: u64| {
            (from..from + 10).map(|id| crate::NewPoint { id: id.into(), vector: vec![id as f32, 1.0, 2.0, 3.0], payload: None }).collect()
        };
        for i in 0..3 {
            c.upsert(batch(i * 10)).unwrap();
            c.flush().unwrap();
        }
        let capture = c.capture().unwrap();
        let files: Vec<PathBuf> = capture.sealed.iter().map(|(s, _)| s.index.path().to_path_buf()).collect();
        assert_eq!(files.len(), 3);
        c.upsert(batch(30)).unwrap();
        c.flush().unwrap();
        assert_eq!(c.set().sealed.len(), 1, "the four were merged");
        assert!(files.iter().all(|f| f.exists()), "a pinned segment's file was removed");
        drop(capture);
        c.checkpoint().unwrap();
        assert!(files.iter().all(|f| !f.exists()), "released, they go at the next checkpoint");
    }

    #[test]
    fn member_paths_are_confined() {
        for ok in ["manifest.json", "segments/000000000001.vwi", "wal/00000000000000000001.log", "segments/000000000003.deleted-1"] {
            assert!(valid_member(ok), "{ok}");
        }
        for no in ["../x", "segments/../x", "segments/.x", "/etc/passwd", "wal/a/b", "segments/", "other/x", "snapshot.json"] {
            assert!(!valid_member(no), "{no}");
        }
    }
}
