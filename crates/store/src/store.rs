//! [`Store`]: the collections of one data directory, by name.

use crate::collection::{Collection, index_name, segments_dir};
use crate::error::{Error, Loc, Result};
use crate::manifest::{CollectionConfig, MANIFEST, Manifest, SegmentEntry};
use crate::snapshot::{SnapshotInfo, SnapshotSummary};
use crate::wal::SyncMode;
use vectorwise_index::Cancel;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Whether `name` is a valid collection name: `[A-Za-z0-9_-]{1,64}`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Every collection of a data directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    sync: SyncMode,
    collections: RwLock<BTreeMap<String, Arc<Collection>>>,
    /// Names whose drop is still removing files: not creatable meanwhile.
    dropping: parking_lot::Mutex<std::collections::HashSet<String>>,
    /// Snapshots being written, as (collection, name): one writer per name.
    snapshotting: parking_lot::Mutex<std::collections::HashSet<(String, String)>>,
    /// Every collection's write backlog limit ([`Collection::set_write_backlog`]).
    backlog: std::sync::atomic::AtomicUsize,
    /// Snapshots a collection may keep (0: no limit; [`Store::set_max_snapshots`]).
    max_snapshots: std::sync::atomic::AtomicUsize,
    /// `.lock`, held (flock, exclusive) while the store is open: one
    /// process per data directory.
    _lock: std::fs::File,
}

/// Snapshots a collection may keep by default: past it, a new one is
/// refused until one is deleted (each holds a full copy of the collection,
/// so a client in a loop would otherwise fill the disk).
pub const DEFAULT_MAX_SNAPSHOTS: usize = 32;

/// The snapshot a file of a snapshots folder is (`<name>.tar`, a valid
/// name); none for temporaries and anything else.
fn archive_name(file: &str) -> Option<&str> {
    file.strip_suffix(".tar").filter(|n| valid_name(n))
}

/// Where the snapshots of a data directory live (a dot folder: never a
/// collection's name).
pub const SNAPSHOTS_DIR: &str = ".snapshots";

impl Store {
    /// Opens every collection in `dir` (created if missing). A damaged
    /// collection stops the open with its file and reason; a directory
    /// another opening holds is refused after [`LOCK_WAIT`].
    pub fn open(dir: &Path, sync: SyncMode) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock_path = dir.join(".lock");
        let lock = std::fs::File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
        if !take_lock(&lock) {
            let source = std::io::Error::new(std::io::ErrorKind::WouldBlock, "the data directory is in use by another VectorWise process");
            return Err(Error::Io { path: dir.to_path_buf(), source });
        }
        let mut collections = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(".creating-") || name.starts_with(".dropping-") {
                // A create or drop that a crash interrupted.
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            if !valid_name(&name) || !path.is_dir() {
                continue;
            }
            if !path.join(MANIFEST).is_file() {
                // A collection's log or segments without the manifest that
                // says what they are: refuse rather than hide its points.
                if path.join("wal").exists() || path.join("segments").exists() {
                    return Err(Error::corrupt(path.join(MANIFEST), "missing: the collection's other files are there"));
                }
                continue;
            }
            let c = Collection::open(&name, &path, sync)?;
            collections.insert(name, c);
        }
        remove_snapshot_leftovers(&dir.join(SNAPSHOTS_DIR));
        Ok(Store {
            dir: dir.to_path_buf(),
            sync,
            collections: RwLock::new(collections),
            dropping: Default::default(),
            snapshotting: Default::default(),
            backlog: std::sync::atomic::AtomicUsize::new(crate::collection::DEFAULT_WRITE_BACKLOG),
            max_snapshots: std::sync::atomic::AtomicUsize::new(DEFAULT_MAX_SNAPSHOTS),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn check_name(name: &str) -> Result<()> {
        if !valid_name(name) {
            return Err(Error::invalid(vec![Loc::Field("name")], "must be 1 to 64 characters from A-Z, a-z, 0-9, `_` and `-`"));
        }
        Ok(())
    }

    /// Creates `name` with `config`; returns it and whether it is new. An
    /// existing collection with the same settings is returned as it is.
    pub fn create(&self, name: &str, config: CollectionConfig) -> Result<(Arc<Collection>, bool)> {
        Self::check_name(name)?;
        config.check()?;
        let mut map = self.collections.write();
        if let Some(c) = map.get(name) {
            if *c.config() == config {
                return Ok((Arc::clone(c), false));
            }
            let reason = describe_difference(c.config(), &config);
            return Err(Error::Conflict { name: name.to_string(), reason });
        }
        self.check_not_dropping(name)?;
        let tmp = self.dir.join(format!(".creating-{name}"));
        let _ = std::fs::remove_dir_all(&tmp);
        // A failed create (a full disk) leaves nothing behind.
        Collection::create_files(&tmp, &config).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&tmp);
        })?;
        Ok((self.install(&mut map, name, &tmp)?, true))
    }

    /// Makes an index file built by `vectorwise build` the collection
    /// `name` (one sealed segment; hard-linked where the file system allows,
    /// else copied). Fails when `name` exists.
    pub fn import(&self, name: &str, index: &Path, seal_points: Option<usize>) -> Result<Arc<Collection>> {
        Self::check_name(name)?;
        let opened = vectorwise_index::Index::open(index)?;
        let mut config = CollectionConfig::new(opened.dim(), opened.metric());
        if let Some(s) = seal_points {
            config.seal_points = s;
        }
        config.check()?;
        let points = opened.len();
        drop(opened);
        let mut map = self.collections.write();
        if map.contains_key(name) {
            return Err(Error::Conflict { name: name.to_string(), reason: "it exists; delete it first".into() });
        }
        self.check_not_dropping(name)?;
        let tmp = self.dir.join(format!(".creating-{name}"));
        let _ = std::fs::remove_dir_all(&tmp);
        let seg_dir = segments_dir(&tmp);
        std::fs::create_dir_all(&seg_dir).map_err(|e| Error::io(&seg_dir, e))?;
        let target = seg_dir.join(index_name(1));
        if std::fs::hard_link(index, &target).is_err() {
            let copy = seg_dir.join(format!(".{}.copy", index_name(1)));
            std::fs::copy(index, &copy).map_err(|e| Error::io(&copy, e))?;
            std::fs::File::open(&copy).and_then(|f| f.sync_all()).map_err(|e| Error::io(&copy, e))?;
            std::fs::rename(&copy, &target).map_err(|e| Error::io(&target, e))?;
        }
        let mut manifest = Manifest::new(config);
        manifest.segments.push(SegmentEntry { id: 1, index: index_name(1), payloads: None, deleted: None, deleted_generation: 0, points });
        manifest.next_segment = 2;
        manifest.write(&tmp)?;
        self.install(&mut map, name, &tmp)
    }

    /// Moves a collection made in `tmp` to its name (atomically), opens it
    /// and adds it to `map`; on failure leaves no directory `map` does not know.
    fn install(&self, map: &mut BTreeMap<String, Arc<Collection>>, name: &str, tmp: &Path) -> Result<Arc<Collection>> {
        let dir = self.dir.join(name);
        std::fs::rename(tmp, &dir).map_err(|e| {
            let _ = std::fs::remove_dir_all(tmp);
            Error::io(&dir, e)
        })?;
        sync_dir(&self.dir);
        let c = self.open_collection(name, &dir).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&dir);
        })?;
        map.insert(name.to_string(), Arc::clone(&c));
        Ok(c)
    }

    /// Opens the collection in `dir` with this store's settings.
    fn open_collection(&self, name: &str, dir: &Path) -> Result<Arc<Collection>> {
        let c = Collection::open(name, dir, self.sync)?;
        c.set_write_backlog(self.backlog.load(std::sync::atomic::Ordering::Relaxed));
        Ok(c)
    }

    fn check_not_dropping(&self, name: &str) -> Result<()> {
        if self.dropping.lock().contains(name) {
            return Err(Error::Conflict { name: name.to_string(), reason: "it is being deleted; retry in a moment".into() });
        }
        Ok(())
    }

    /// Makes `index` the collection `name` unless it already is (the demo
    /// index served as the collection `default`): imported when missing;
    /// imported again when the collection is still exactly an import of
    /// another file (the index was rebuilt) ; kept as it is once written to.
    pub fn ensure_imported(&self, name: &str, index: &Path) -> Result<Arc<Collection>> {
        let existing = self.collections.read().get(name).cloned();
        match existing {
            None => self.import(name, index, None),
            Some(c) if !c.is_pristine_import() => Ok(c),
            Some(c) => {
                let same = c.segment_path(1).is_some_and(|p| same_file(&p, index));
                if same {
                    return Ok(c);
                }
                tracing::info!(collection = name, index = %index.display(), "the served index changed: importing it again");
                self.drop_collection(name)?;
                self.import(name, index, None)
            }
        }
    }

    /// Loads `points` as the new collection `name` in bulk: checked as an
    /// upsert checks them (errors name `points[i]`), built straight into one
    /// sealed segment (no log), then opened. Fails when `name` exists.
    pub fn import_points(&self, name: &str, config: CollectionConfig, points: Vec<crate::NewPoint>) -> Result<Arc<Collection>> {
        Self::check_name(name)?;
        config.check()?;
        let prepared = crate::collection::prepare_points(&config, points)?;
        let mut map = self.collections.write();
        if map.contains_key(name) {
            return Err(Error::Conflict { name: name.to_string(), reason: "it exists; delete it first".into() });
        }
        self.check_not_dropping(name)?;
        let tmp = self.dir.join(format!(".creating-{name}"));
        let _ = std::fs::remove_dir_all(&tmp);
        Self::write_points(&tmp, config, prepared).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&tmp);
        })?;
        self.install(&mut map, name, &tmp)
    }

    /// [`Store::import_points`]'s files, in `tmp`.
    fn write_points(tmp: &Path, config: CollectionConfig, mut prepared: Vec<crate::record::PointWrite>) -> Result<()> {
        Collection::create_files(tmp, &config)?;
        // UUIDs get their keys here, in order (a UUID twice gets one key, and
        // the build refuses the repeat as it does an integer id twice).
        if prepared.iter().any(|p| p.uuid.is_some()) {
            let mut uuids = crate::ids::UuidMap::default();
            let (mut fresh, mut taken) = (std::collections::HashMap::new(), 0);
            for p in prepared.iter_mut() {
                if let Some(u) = p.uuid {
                    p.id = uuids.key_for(u, &mut fresh, &mut taken);
                }
            }
            for p in &prepared {
                if let Some(u) = p.uuid {
                    uuids.set(u, p.id);
                }
            }
            uuids.write(tmp)?;
        }
        let mut manifest = Manifest::new(config.clone());
        if !prepared.is_empty() {
            let ids: Vec<u64> = prepared.iter().map(|p| p.id).collect();
            let payloads: Vec<Option<Arc<str>>> = prepared.iter().map(|p| p.payload.clone()).collect();
            let vectors: Vec<f32> = prepared.into_iter().flat_map(|p| p.vector).collect();
            let matrix = vectorwise_index::Matrix::new(config.dimension, vectors)?;
            let seg_dir = segments_dir(tmp);
            let (index, payload_file, _) =
                crate::optimiser::write_segment(&seg_dir, 1, config.metric, &matrix, &ids, &payloads, None, None, &Cancel::never())?;
            let name_of = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            manifest.segments.push(SegmentEntry {
                id: 1,
                index: name_of(&index),
                payloads: Some(name_of(&payload_file)),
                deleted: None,
                deleted_generation: 0,
                points: ids.len(),
            });
        }
        manifest.next_segment = 2;
        manifest.write(tmp)
    }

    pub fn get(&self, name: &str) -> Result<Arc<Collection>> {
        self.collections.read().get(name).cloned().ok_or_else(|| Error::NotFound(name.to_string()))
    }

    /// Sets the frozen points past which upserts wait for the optimiser, in
    /// every collection, open or opened later (0: never wait). See
    /// [`Collection::set_write_backlog`].
    pub fn set_write_backlog(&self, points: usize) {
        self.backlog.store(points, std::sync::atomic::Ordering::Relaxed);
        for c in self.collections.read().values() {
            c.set_write_backlog(points);
        }
    }

    /// Sets how many snapshots a collection may keep (0: no limit).
    pub fn set_max_snapshots(&self, n: usize) {
        self.max_snapshots.store(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Names and live point counts, by name.
    pub fn list(&self) -> Vec<(String, usize)> {
        let all: Vec<Arc<Collection>> = self.collections.read().values().cloned().collect();
        all.iter().map(|c| (c.name().to_string(), c.len())).collect()
    }

    /// Deletes `name` and its files. Requests already running on it finish
    /// or fail with [`Error::Dropped`].
    pub fn drop_collection(&self, name: &str) -> Result<()> {
        let c = {
            let mut map = self.collections.write();
            let c = map.remove(name).ok_or_else(|| Error::NotFound(name.to_string()))?;
            self.dropping.lock().insert(name.to_string());
            c
        };
        let result = (|| {
            {
                let _ws = c.write.lock();
                c.dropped.store(true, Ordering::Release);
            }
            c.close();
            let dir = self.dir.join(name);
            let gone = self.dir.join(format!(".dropping-{name}"));
            let _ = std::fs::remove_dir_all(&gone);
            std::fs::rename(&dir, &gone).map_err(|e| Error::io(&dir, e))?;
            sync_dir(&self.dir);
            let _ = std::fs::remove_dir_all(&gone);
            Ok(())
        })();
        self.dropping.lock().remove(name);
        result
    }

    /// The folder of `collection`'s snapshots.
    pub fn snapshots_dir(&self, collection: &str) -> PathBuf {
        self.dir.join(SNAPSHOTS_DIR).join(collection)
    }

    fn check_snapshot_name(name: &str) -> Result<()> {
        if !valid_name(name) {
            return Err(Error::invalid(vec![Loc::Field("snapshot")], "must be 1 to 64 characters from A-Z, a-z, 0-9, `_` and `-`"));
        }
        Ok(())
    }

    /// The archive of `collection`'s snapshot `name` (it exists).
    pub fn snapshot_path(&self, collection: &str, name: &str) -> Result<PathBuf> {
        Self::check_name(collection)?;
        Self::check_snapshot_name(name)?;
        let path = self.snapshots_dir(collection).join(format!("{name}.tar"));
        if !path.is_file() {
            return Err(Error::SnapshotNotFound { collection: collection.to_string(), name: name.to_string() });
        }
        Ok(path)
    }

    /// Takes a snapshot of `collection` named `name` (default: its time and
    /// milliseconds, `<YYYYMMDDTHHMMSSZ>-<ms>`); see [`crate::snapshot`].
    pub fn snapshot(&self, collection: &str, name: Option<&str>) -> Result<SnapshotSummary> {
        let explicit = name;
        if let Some(n) = name {
            Self::check_snapshot_name(n)?;
        }
        let c = self.get(collection)?;
        let mut name = match name {
            Some(n) => n.to_string(),
            None => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                let stamp: String = crate::snapshot::rfc3339(now.as_secs()).chars().filter(|ch| ch.is_ascii_alphanumeric()).collect();
                format!("{stamp}-{:03}", now.subsec_millis())
            }
        };
        let dir = self.snapshots_dir(collection);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut path = dir.join(format!("{name}.tar"));
        if explicit.is_none() {
            // Two in one millisecond: the second gets a suffix.
            let base = name.clone();
            let mut n = 1;
            while path.exists() && n < 1000 {
                name = format!("{base}-{n}");
                path = dir.join(format!("{name}.tar"));
                n += 1;
            }
        }
        let key = (collection.to_string(), name.clone());
        {
            let mut writing = self.snapshotting.lock();
            if path.exists() || writing.contains(&key) {
                return Err(Error::SnapshotExists(name));
            }
            // Counted under the lock: two at once cannot both take the last place.
            let limit = self.max_snapshots.load(std::sync::atomic::Ordering::Relaxed);
            if limit > 0 {
                // The archives a DELETE can name (temporaries are not counted).
                let kept = std::fs::read_dir(&dir)
                    .map_err(|e| Error::io(&dir, e))?
                    .filter_map(|e| e.ok())
                    .filter(|e| archive_name(&e.file_name().to_string_lossy()).is_some())
                    .count();
                // Not yet renamed into place (else counted above).
                let being_written =
                    writing.iter().filter(|(c, n)| c == collection && !dir.join(format!("{n}.tar")).exists()).count();
                if kept + being_written >= limit {
                    return Err(Error::TooManySnapshots { collection: collection.to_string(), limit });
                }
            }
            writing.insert(key.clone());
        }
        let result = c.snapshot_to(&path, &name);
        self.snapshotting.lock().remove(&key);
        // The archive reads the segment files through handles opened at the
        // capture, so a delete meanwhile does not fail it; should anything
        // else of the collection's vanish under it, the answer is that the
        // collection was deleted, not an internal error.
        let info = result.map_err(|e| match e {
            Error::Io { .. } | Error::Corrupt { .. } if c.dropped.load(Ordering::Acquire) => Error::Dropped(collection.to_string()),
            e => e,
        })?;
        let size = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?.len();
        Ok(SnapshotSummary::of(&info, size))
    }

    /// `collection`'s snapshots, oldest first. A collection deleted since
    /// keeps its snapshots (a restore brings it back); a collection that
    /// neither exists nor has a snapshot is [`Error::NotFound`].
    pub fn list_snapshots(&self, collection: &str) -> Result<Vec<SnapshotSummary>> {
        Self::check_name(collection)?;
        let dir = self.snapshots_dir(collection);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.get(collection)?;
                return Ok(Vec::new());
            }
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            let Some(name) = archive_name(&file) else { continue };
            let path = e.path();
            let Ok(size) = e.metadata().map(|m| m.len()) else { continue };
            match crate::snapshot::read_info(&path) {
                Ok(info) => out.push(SnapshotSummary { name: name.to_string(), ..SnapshotSummary::of(&info, size) }),
                Err(err) => tracing::warn!(file = %path.display(), error = %err, "not listing an unreadable snapshot"),
            }
        }
        if out.is_empty() {
            self.get(collection)?;
        }
        out.sort_by(|a, b| (&a.created, &a.name).cmp(&(&b.created, &b.name)));
        Ok(out)
    }

    /// Deletes `collection`'s snapshot `name`.
    pub fn delete_snapshot(&self, collection: &str, name: &str) -> Result<()> {
        let path = self.snapshot_path(collection, name)?;
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        sync_dir(&self.snapshots_dir(collection));
        Ok(())
    }

    /// Makes the snapshot archive `archive` the collection `name`: checked
    /// and unpacked beside the collections (`.creating-<name>.restore`, which
    /// a crash leaves for the next open to remove), then renamed into place
    /// and opened. An existing `name` is refused unless `force`, then
    /// replaced in one atomic exchange of the two folders.
    pub fn restore(&self, name: &str, archive: impl std::io::Read, force: bool) -> Result<(Arc<Collection>, SnapshotInfo)> {
        Self::check_name(name)?;
        let exists = |map: &BTreeMap<String, Arc<Collection>>| map.contains_key(name);
        if !force && exists(&self.collections.read()) {
            return Err(Error::Conflict { name: name.to_string(), reason: "it exists; restore with force to replace it".into() });
        }
        let tmp = self.dir.join(format!(".creating-{name}.restore"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let info = match crate::snapshot::unpack(archive, &tmp) {
            Ok(info) => info,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let mut map = self.collections.write();
        let result = match map.get(name).cloned() {
            None => self.check_not_dropping(name).and_then(|()| self.install(&mut map, name, &tmp)),
            Some(_) if !force => Err(Error::Conflict { name: name.to_string(), reason: "it exists; restore with force to replace it".into() }),
            Some(old) => self.replace(&mut map, name, &old, &tmp),
        };
        let _ = std::fs::remove_dir_all(&tmp);
        result.map(|c| (c, info))
    }

    /// Puts the collection unpacked in `tmp` in the place of `old` (closed
    /// first): the two folders are exchanged atomically (Linux
    /// `RENAME_EXCHANGE`), so a crash leaves one or the other, whole; on
    /// file systems without it, `old` is moved aside first. A new one that
    /// does not open is exchanged back and `old` reopened.
    fn replace(&self, map: &mut BTreeMap<String, Arc<Collection>>, name: &str, old: &Arc<Collection>, tmp: &Path) -> Result<Arc<Collection>> {
        {
            let _ws = old.write.lock();
            old.dropped.store(true, Ordering::Release);
        }
        old.close();
        map.remove(name);
        let dir = self.dir.join(name);
        let exchange = |a: &Path, b: &Path| {
            rustix::fs::renameat_with(rustix::fs::CWD, a, rustix::fs::CWD, b, rustix::fs::RenameFlags::EXCHANGE)
        };
        if exchange(tmp, &dir).is_err() {
            let gone = self.dir.join(format!(".dropping-{name}"));
            let _ = std::fs::remove_dir_all(&gone);
            std::fs::rename(&dir, &gone).map_err(|e| Error::io(&dir, e))?;
            let _ = std::fs::remove_dir_all(&gone);
            return self.install(map, name, tmp);
        }
        sync_dir(&self.dir);
        match self.open_collection(name, &dir) {
            Ok(c) => {
                map.insert(name.to_string(), Arc::clone(&c));
                Ok(c)
            }
            Err(e) => {
                if exchange(tmp, &dir).is_ok() {
                    sync_dir(&self.dir);
                    if let Ok(c) = self.open_collection(name, &dir) {
                        map.insert(name.to_string(), c);
                    }
                }
                Err(e)
            }
        }
    }

    /// Asks every optimiser to stop (shutdown) without waiting for a build
    /// in progress: a segment not yet in a manifest is only files, removed
    /// by the next checkpoint; the log still holds its points.
    pub fn close(&self) {
        for c in self.collections.read().values() {
            c.stop_optimiser();
            c.cancel_builds();
        }
    }

    /// [`Store::close`], then waits for each optimiser's step in progress, so
    /// that nothing of this opening writes to the folder any more: what a
    /// process that opens the same folder again must do first (a step still
    /// running would checkpoint over the new opening's files).
    pub fn close_and_wait(&self) {
        self.close();
        for c in self.collections.read().values() {
            c.close();
        }
    }
}

/// How long [`Store::open`] waits for the directory's lock before refusing.
/// A lock goes with the last descriptor of its open file, and a process
/// that spawns a child (a test starting Redis, a supervisor) lends it
/// every descriptor until the child's `exec` closes them: a store dropped
/// in that moment keeps its lock a little longer. A CI run failed
/// `a_restarted_replica_finds_its_answers_in_redis` so, reopening the
/// folder a dropped store had held while another test spawned Redis.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Takes the exclusive lock on `lock`, trying for [`LOCK_WAIT`].
fn take_lock(lock: &std::fs::File) -> bool {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        if rustix::fs::flock(lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Whether two paths hold the same file: one inode (a hard link), or, for a
/// copy on another file system, the same length and the same first and
/// last MiB (the index header with its checksum, and the file's tail).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else { return false };
    if ma.dev() == mb.dev() && ma.ino() == mb.ino() {
        return true;
    }
    if ma.len() != mb.len() {
        return false;
    }
    let ends = |p: &Path| -> std::io::Result<Vec<u8>> {
        let mut f = std::fs::File::open(p)?;
        let mut head = vec![0; (1 << 20).min(ma.len() as usize)];
        f.read_exact(&mut head)?;
        f.seek(SeekFrom::Start(ma.len().saturating_sub(1 << 20)))?;
        let mut tail = Vec::new();
        f.read_to_end(&mut tail)?;
        head.extend(tail);
        Ok(head)
    };
    matches!((ends(a), ends(b)), (Ok(x), Ok(y)) if x == y)
}

/// Removes what a killed snapshot left in `<data>/.snapshots/*/`: its
/// staging folder and the archive's temporary (both dot files).
fn remove_snapshot_leftovers(root: &Path) {
    let Ok(collections) = std::fs::read_dir(root) else { return };
    for c in collections.flatten() {
        let Ok(files) = std::fs::read_dir(c.path()) else { continue };
        for f in files.flatten() {
            if f.file_name().to_string_lossy().starts_with('.') {
                let path = f.path();
                let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            }
        }
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn describe_difference(have: &CollectionConfig, asked: &CollectionConfig) -> String {
    let mut parts = Vec::new();
    if have.dimension != asked.dimension {
        parts.push(format!("dimension {} vs {}", have.dimension, asked.dimension));
    }
    if have.metric != asked.metric {
        parts.push(format!("metric {} vs {}", have.metric.as_str(), asked.metric.as_str()));
    }
    if have.seal_points != asked.seal_points {
        parts.push(format!("seal_points {} vs {}", have.seal_points, asked.seal_points));
    }
    if have.max_payload_bytes != asked.max_payload_bytes {
        parts.push(format!("max_payload_bytes {} vs {}", have.max_payload_bytes, asked.max_payload_bytes));
    }
    format!("it has {}", parts.join(", ").replace(" vs ", ", asked "))
}
