//! The write-ahead log: what a collection appends before it acknowledges a
//! write, and replays on start.
//!
//! [`Wal`] is the small interface the collection uses, so that a replicated
//! log can take the place of [`FileWal`], the local one. `FileWal` keeps
//! append-only files `wal/<first lsn, 20 digits>.log` of frames
//!
//! ```text
//! len u32 (of lsn + body) | xxh3-64 of (lsn + body) u64 | lsn u64 | body
//! ```
//!
//! little-endian, LSNs consecutive from 1. A frame that does not check out
//! at the end of the newest file is a write torn by a crash (never
//! acknowledged: acknowledgement waits for the sync) and is cut off on
//! open; anywhere else the log is damaged and refuses to open.
//!
//! **Group commit**: appends only `write`; [`Wal::sync`] makes everything up
//! to an LSN durable with one `fdatasync` for every writer waiting at that
//! moment (the first to take the sync lock syncs all that is written; the
//! others find their LSN covered). A failed sync poisons the log: the state
//! of its tail is unknown, so it refuses writes until reopened.

use crate::error::{Error, Result};
use parking_lot::{Condvar, Mutex};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use xxhash_rust::xxh3::xxh3_64;

/// A log sequence number: the position of one record.
pub type Lsn = u64;

/// What a collection needs from its log.
pub trait Wal: Send + Sync + std::fmt::Debug {
    /// Appends one record after every record appended before it; returns
    /// its LSN. Written, not yet durable: see [`Wal::sync`]. On error
    /// nothing of the record is in the log.
    fn append(&self, body: &[u8]) -> Result<Lsn>;
    /// Returns once every record up to `lsn` is durable (per the sync mode).
    fn sync(&self, lsn: Lsn) -> Result<()>;
    /// The LSN the next append gets.
    fn next_lsn(&self) -> Lsn;
    /// Calls `f` with every record from `from` on, in order.
    fn replay(&self, from: Lsn, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<()>;
    /// Drops records below `lsn` (whole files only) once nothing needs them.
    fn truncate_before(&self, lsn: Lsn) -> Result<()>;
    /// Bytes the log holds on disk.
    fn bytes(&self) -> u64;
}

/// When an acknowledged write is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// `fdatasync` before the acknowledgement (group commit). The default.
    Always,
    /// A background sync every interval; a crash may lose up to one
    /// interval of acknowledged writes.
    Interval(Duration),
}

impl std::str::FromStr for SyncMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "always" {
            return Ok(SyncMode::Always);
        }
        let ms = s
            .strip_prefix("interval:")
            .and_then(|v| v.trim_end_matches("ms").parse::<u64>().ok())
            .filter(|&ms| ms > 0)
            .ok_or_else(|| format!("`{s}`: expected `always` or `interval:<milliseconds>` (e.g. interval:100)"))?;
        Ok(SyncMode::Interval(Duration::from_millis(ms)))
    }
}

/// Files rotate past this size, so truncation can drop whole files.
const ROTATE_BYTES: u64 = 64 << 20;
const FRAME_HEAD: usize = 12;

#[derive(Debug)]
struct LogFile {
    first: Lsn,
    path: PathBuf,
    len: u64,
}

#[derive(Debug)]
struct Writer {
    file: File,
    files: Vec<LogFile>,
    next: Lsn,
}

/// The local log: files in one directory.
#[derive(Debug)]
pub struct FileWal {
    dir: PathBuf,
    writer: Mutex<Writer>,
    /// Every LSN below this is durable.
    synced: AtomicU64,
    sync_lock: Mutex<()>,
    poisoned: AtomicBool,
    mode: SyncMode,
    bytes: AtomicU64,
    stop: Arc<(Mutex<bool>, Condvar)>,
}

fn file_name(first: Lsn) -> String {
    format!("{first:020}.log")
}

impl FileWal {
    /// Opens the log in `dir` (created if missing), cutting off a torn tail;
    /// an empty log starts at `start` (the first LSN the collection has not
    /// seen). Interval mode starts its sync thread.
    pub fn open(dir: &Path, start: Lsn, mode: SyncMode) -> Result<Arc<FileWal>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut files: Vec<LogFile> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let name = entry.file_name();
            let Some(first) = name.to_str().and_then(|n| n.strip_suffix(".log")).and_then(|n| n.parse::<u64>().ok()) else {
                continue;
            };
            files.push(LogFile { first, path: entry.path(), len: 0 });
        }
        files.sort_by_key(|f| f.first);
        let mut next = start.max(1);
        let mut last_end = None;
        let count = files.len();
        for (i, f) in files.iter_mut().enumerate() {
            let last = i + 1 == count;
            let (end_lsn, good_len) = scan(&f.path, f.first, &mut |_, _| Ok(()), last)?;
            let actual = std::fs::metadata(&f.path).map_err(|e| Error::io(&f.path, e))?.len();
            if good_len < actual {
                tracing::warn!(file = %f.path.display(), cut = actual - good_len, "write-ahead log: cutting off a torn write at the tail");
                let h = File::options().write(true).open(&f.path).map_err(|e| Error::io(&f.path, e))?;
                h.set_len(good_len).map_err(|e| Error::io(&f.path, e))?;
                h.sync_all().map_err(|e| Error::io(&f.path, e))?;
            }
            f.len = good_len;
            next = next.max(end_lsn);
            last_end = Some(end_lsn);
        }
        // Appends continue the newest file only where its frames end at
        // `next` (LSNs within a file are consecutive).
        let file = match files.last() {
            Some(f) if last_end == Some(next) => File::options().append(true).open(&f.path).map_err(|e| Error::io(&f.path, e))?,
            _ => {
                let path = dir.join(file_name(next));
                let file = File::options().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
                sync_dir(dir);
                files.push(LogFile { first: next, path, len: 0 });
                file
            }
        };
        let bytes = files.iter().map(|f| f.len).sum();
        let wal = Arc::new(FileWal {
            dir: dir.to_path_buf(),
            writer: Mutex::new(Writer { file, files, next }),
            synced: AtomicU64::new(next),
            sync_lock: Mutex::new(()),
            poisoned: AtomicBool::new(false),
            mode,
            bytes: AtomicU64::new(bytes),
            stop: Arc::new((Mutex::new(false), Condvar::new())),
        });
        if let SyncMode::Interval(every) = mode {
            let weak = Arc::downgrade(&wal);
            let stop = Arc::clone(&wal.stop);
            std::thread::Builder::new()
                .name("wal-sync".into())
                .spawn(move || loop {
                    {
                        let mut stopped = stop.0.lock();
                        if !*stopped {
                            stop.1.wait_for(&mut stopped, every);
                        }
                        if *stopped {
                            return;
                        }
                    }
                    let Some(wal) = weak.upgrade() else { return };
                    let next = wal.next_lsn();
                    if let Err(e) = wal.sync_through(next.saturating_sub(1)) {
                        tracing::error!(error = %e, "write-ahead log: background sync failed");
                    }
                })
                .map_err(|e| Error::io(dir, e))?;
        }
        Ok(wal)
    }

    /// Makes everything up to `lsn` durable (group commit).
    fn sync_through(&self, lsn: Lsn) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::LogFailed);
        }
        if self.synced.load(Ordering::Acquire) > lsn {
            return Ok(());
        }
        let _g = self.sync_lock.lock();
        if self.synced.load(Ordering::Acquire) > lsn {
            return Ok(());
        }
        // Everything written so far, in the current file (older files were
        // synced when the log rotated past them).
        let (file, target, path) = {
            let w = self.writer.lock();
            let path = w.files.last().map(|f| f.path.clone()).unwrap_or_default();
            (w.file.try_clone().map_err(|e| Error::io(&path, e))?, w.next, path)
        };
        if let Err(e) = file.sync_data() {
            self.poisoned.store(true, Ordering::Release);
            tracing::error!(file = %path.display(), error = %e, "write-ahead log: fdatasync failed; refusing writes until restart");
            return Err(Error::LogFailed);
        }
        self.synced.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for FileWal {
    fn drop(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Reads the frames of one file, calling `f` for each; returns the LSN after
/// the last good frame and the length of the good prefix. A bad frame ends
/// the scan when `last` (a torn tail), else it is an error.
fn scan(path: &Path, first: Lsn, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>, last: bool) -> Result<(Lsn, u64)> {
    let mut bytes = Vec::new();
    File::open(path).and_then(|mut h| h.read_to_end(&mut bytes)).map_err(|e| Error::io(path, e))?;
    let mut at = 0usize;
    let mut expect = first;
    loop {
        if at == bytes.len() {
            return Ok((expect, at as u64));
        }
        let frame = (|| {
            let head = bytes.get(at..at + FRAME_HEAD)?;
            let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
            let hash = u64::from_le_bytes(head[4..12].try_into().unwrap());
            let body = bytes.get(at + FRAME_HEAD..(at + FRAME_HEAD).checked_add(len)?)?;
            if len < 8 || xxh3_64(body) != hash {
                return None;
            }
            let lsn = u64::from_le_bytes(body[..8].try_into().unwrap());
            (lsn == expect).then_some((lsn, &body[8..], FRAME_HEAD + len))
        })();
        match frame {
            Some((lsn, body, size)) => {
                f(lsn, body)?;
                expect = lsn + 1;
                at += size;
            }
            None if last && torn(&bytes[at..], expect) => return Ok((expect, at as u64)),
            None => return Err(Error::corrupt(path, format!("damaged log frame at byte {at} (LSN {expect})"))),
        }
    }
}

/// Whether the bytes from a bad frame to the end of the newest file can be
/// a write cut short by a crash (never acknowledged: the acknowledgement
/// waits for the sync): a header cut short, a frame whose declared length
/// runs to or past the end (its body not all written), or nothing but zeros
/// (space the file system allocated before the data landed). A bad frame
/// with anything after it is damage, and the log refuses to open rather
/// than drop the acknowledged writes behind it; so is a good frame of the
/// next LSN anywhere after it (a damaged length field can look like a cut).
fn torn(rest: &[u8], lsn: Lsn) -> bool {
    if rest.len() < FRAME_HEAD || rest.iter().all(|&b| b == 0) {
        return true;
    }
    let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
    FRAME_HEAD + len >= rest.len() && !has_frame(&rest[1..], lsn + 1)
}

/// Whether `bytes` hold a well-formed frame of `lsn` anywhere.
fn has_frame(bytes: &[u8], lsn: Lsn) -> bool {
    let want = lsn.to_le_bytes();
    (FRAME_HEAD..bytes.len().saturating_sub(7)).any(|q| {
        if bytes[q..q + 8] != want {
            return false;
        }
        let start = q - FRAME_HEAD;
        let len = u32::from_le_bytes(bytes[start..start + 4].try_into().unwrap()) as usize;
        let hash = u64::from_le_bytes(bytes[start + 4..start + 12].try_into().unwrap());
        bytes.get(q..q + len).is_some_and(|body| len >= 8 && xxh3_64(body) == hash)
    })
}

impl Wal for FileWal {
    fn append(&self, body: &[u8]) -> Result<Lsn> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::LogFailed);
        }
        let mut w = self.writer.lock();
        if w.files.last().is_some_and(|f| f.len >= ROTATE_BYTES) {
            // Seal the full file (synced, so `sync` only ever syncs the
            // newest) and start the next.
            let old = w.files.last().map(|f| f.path.clone()).unwrap_or_default();
            if let Err(e) = w.file.sync_data() {
                self.poisoned.store(true, Ordering::Release);
                tracing::error!(file = %old.display(), error = %e, "write-ahead log: fdatasync failed");
                return Err(Error::LogFailed);
            }
            let path = self.dir.join(file_name(w.next));
            let file = File::options().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
            sync_dir(&self.dir);
            w.file = file;
            let first = w.next;
            w.files.push(LogFile { first, path, len: 0 });
        }
        let lsn = w.next;
        let len = 8 + body.len();
        let len32 = u32::try_from(len).map_err(|_| Error::invalid(vec![], "a write of more than 4 GiB"))?;
        let mut frame = Vec::with_capacity(FRAME_HEAD + len);
        frame.extend_from_slice(&len32.to_le_bytes());
        frame.extend_from_slice(&[0; 8]);
        frame.extend_from_slice(&lsn.to_le_bytes());
        frame.extend_from_slice(body);
        let hash = xxh3_64(&frame[FRAME_HEAD..]);
        frame[4..12].copy_from_slice(&hash.to_le_bytes());
        let before = w.files.last().map_or(0, |f| f.len);
        let path = w.files.last().map(|f| f.path.clone()).unwrap_or_default();
        if let Err(e) = w.file.write_all(&frame) {
            // Take back whatever part reached the file, so the next frame
            // follows a good one.
            if w.file.set_len(before).is_err() {
                self.poisoned.store(true, Ordering::Release);
            }
            return Err(Error::io(&path, e));
        }
        if let Some(f) = w.files.last_mut() {
            f.len += frame.len() as u64;
        }
        self.bytes.fetch_add(frame.len() as u64, Ordering::Relaxed);
        w.next += 1;
        Ok(lsn)
    }

    fn sync(&self, lsn: Lsn) -> Result<()> {
        match self.mode {
            SyncMode::Always => self.sync_through(lsn),
            SyncMode::Interval(_) if self.poisoned.load(Ordering::Acquire) => Err(Error::LogFailed),
            SyncMode::Interval(_) => Ok(()),
        }
    }

    fn next_lsn(&self) -> Lsn {
        self.writer.lock().next
    }

    fn replay(&self, from: Lsn, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<()> {
        let files: Vec<(Lsn, PathBuf, bool)> = {
            let w = self.writer.lock();
            let n = w.files.len();
            w.files.iter().enumerate().map(|(i, f)| (f.first, f.path.clone(), i + 1 == n)).collect()
        };
        for (i, (first, path, last)) in files.iter().enumerate() {
            // Skip files that end before `from`.
            if files.get(i + 1).is_some_and(|next| next.0 <= from) {
                continue;
            }
            scan(path, *first, &mut |lsn, body| if lsn >= from { f(lsn, body) } else { Ok(()) }, *last)?;
        }
        Ok(())
    }

    fn truncate_before(&self, lsn: Lsn) -> Result<()> {
        let mut w = self.writer.lock();
        while w.files.len() > 1 && w.files[1].first <= lsn {
            let f = w.files.remove(0);
            std::fs::remove_file(&f.path).map_err(|e| Error::io(&f.path, e))?;
            self.bytes.fetch_sub(f.len, Ordering::Relaxed);
        }
        Ok(())
    }

    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(wal: &FileWal, from: Lsn) -> Vec<(Lsn, Vec<u8>)> {
        let mut out = Vec::new();
        wal.replay(from, &mut |lsn, b| {
            out.push((lsn, b.to_vec()));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn appends_replay_in_order_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let wal = FileWal::open(dir.path(), 1, SyncMode::Always).unwrap();
        for i in 0..5u8 {
            let lsn = wal.append(&[i; 3]).unwrap();
            wal.sync(lsn).unwrap();
        }
        drop(wal);
        let wal = FileWal::open(dir.path(), 1, SyncMode::Always).unwrap();
        assert_eq!(wal.next_lsn(), 6);
        let all = collect(&wal, 3);
        assert_eq!(all, vec![(3, vec![2; 3]), (4, vec![3; 3]), (5, vec![4; 3])]);
    }

    #[test]
    fn a_torn_tail_is_cut_and_damage_before_it_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let wal = FileWal::open(dir.path(), 1, SyncMode::Always).unwrap();
        for i in 0..3u8 {
            wal.append(&[i; 10]).unwrap();
        }
        wal.sync(3).unwrap();
        drop(wal);
        let path = dir.path().join(file_name(1));
        let full = std::fs::read(&path).unwrap();
        // Torn: the last frame loses its end.
        std::fs::write(&path, &full[..full.len() - 4]).unwrap();
        let wal = FileWal::open(dir.path(), 1, SyncMode::Always).unwrap();
        assert_eq!(wal.next_lsn(), 3);
        assert_eq!(collect(&wal, 1).len(), 2);
        // The cut tail is gone and the next append follows the good frames.
        assert_eq!(wal.append(b"new").unwrap(), 3);
        wal.sync(3).unwrap();
        drop(wal);
        let wal = FileWal::open(dir.path(), 1, SyncMode::Always).unwrap();
        assert_eq!(collect(&wal, 1).last().unwrap(), &(3, b"new".to_vec()));
        drop(wal);
        // Damage in the middle of the newest file is not a torn write: the
        // frames behind it were acknowledged.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[FRAME_HEAD + 9] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = FileWal::open(dir.path(), 1, SyncMode::Always).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        bytes[FRAME_HEAD + 9] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        // A damaged length field is not a cut either: a good frame follows.
        bytes[2] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let err = FileWal::open(dir.path(), 1, SyncMode::Always).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        bytes[2] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        // Zeros past the last good frame (allocated, never written) are a torn tail.
        let mut zeros = bytes.clone();
        zeros.extend_from_slice(&[0; 100]);
        std::fs::write(&path, &zeros).unwrap();
        assert_eq!(FileWal::open(dir.path(), 1, SyncMode::Always).unwrap().next_lsn(), 4);
        std::fs::write(&path, &bytes).unwrap();
        // Damage in an older file is not a torn write.
        let second = dir.path().join(file_name(4));
        std::fs::write(&second, []).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[FRAME_HEAD + 9] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = FileWal::open(dir.path(), 1, SyncMode::Always).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    }

    #[test]
    fn concurrent_writers_share_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let wal = FileWal::open(dir.path(), 1, SyncMode::Always).unwrap();
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let wal = &wal;
                s.spawn(move || {
                    for _ in 0..50 {
                        let lsn = wal.append(&[t; 100]).unwrap();
                        wal.sync(lsn).unwrap();
                        assert!(wal.synced.load(Ordering::Acquire) > lsn);
                    }
                });
            }
        });
        assert_eq!(collect(&wal, 1).len(), 200);
    }

    #[test]
    fn sync_modes_parse() {
        assert_eq!("always".parse::<SyncMode>().unwrap(), SyncMode::Always);
        assert_eq!("interval:100".parse::<SyncMode>().unwrap(), SyncMode::Interval(Duration::from_millis(100)));
        assert!("interval:0".parse::<SyncMode>().is_err());
        assert!("sometimes".parse::<SyncMode>().is_err());
    }
}
