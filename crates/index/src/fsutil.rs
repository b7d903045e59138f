//! Atomic file writes: write a temporary file beside the target, fsync it,
//! rename it over the target, fsync the directory. A crash leaves either the
//! old file or the new one, never a torn one, and perhaps a temporary
//! (`.NAME.tmp-PID`), which the next write of that target, or
//! [`remove_stale_temporaries`] at start, removes once its process is gone.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Removes the temporaries a killed writer of `path` left beside it: files
/// named `.NAME.tmp-PID` whose process no longer runs (this process's own
/// pid is left to the writer that uses it; where liveness cannot be checked,
/// nothing is removed). Returns how many were removed.
pub fn remove_stale_temporaries(path: &Path) -> usize {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else { return 0 };
    let prefix = format!(".{name}.tmp-");
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && process_is_gone(pid) && entry.file_type().is_ok_and(|t| t.is_file()) {
            if std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

/// Whether no process `pid` runs (Linux: no `/proc/PID`); `false` where
/// that cannot be told.
fn process_is_gone(pid: u32) -> bool {
    let proc = Path::new("/proc");
    proc.join("self").exists() && !proc.join(pid.to_string()).exists()
}

/// Writes `path` atomically with the bytes `write` produces.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    write_atomic_then(path, write, |_| Ok(()))
}

/// [`write_atomic`], with `finish` run on the written temporary file (its
/// path) before it is synced and renamed: it may read it back and append to
/// it. An error from either leaves `path` untouched and removes the temporary.
pub(crate) fn write_atomic_then(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    finish: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    remove_stale_temporaries(path);
    let result = (|| -> std::io::Result<File> {
        // A leftover from a killed run with the same pid is ours to replace;
        // create_new then refuses to follow anything planted at that name.
        let _ = std::fs::remove_file(&tmp);
        let file = File::options().write(true).create_new(true).open(&tmp)?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        Ok(file)
    })();
    let file = match result {
        Ok(file) => file,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(&tmp, e));
        }
    };
    if let Err(e) = finish(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    // One sync covers what `finish` appended through its own handle (same inode).
    if let Err(e) = file.sync_all() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })?;
    // Make the rename itself durable. Not every platform can open a directory; ignore those.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
