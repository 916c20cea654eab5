//! Writing files so that a crash never leaves a half-written file under the real name, and
//! cleaning up after writers that were killed.
//!
//! [`write_atomically`] writes to a temporary sibling `.NAME.tmp-PID-N`, flushes it to disk,
//! renames it over `NAME` and flushes the directory. A process killed in the middle leaves
//! only the temporary behind; the next write of the same name removes such leftovers, but
//! only those whose writer is gone ([`remove_stale_temporaries`]): a temporary of a process
//! that is still running is never touched. The same rule covers the `.NAME.partial-PID`
//! directories in which `convert` stages a dataset. Every file the project writes (shards,
//! `schema.json`, `manifest.json`, model files, checkpoints, reports) goes through here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Leftovers older than this are removed even where liveness cannot be checked (no `/proc`).
const STALE_AGE: Duration = Duration::from_secs(24 * 3600);

/// Writes `bytes` to `path` through a temporary sibling, fsync and rename; removes stale
/// temporaries of `path` left by killed writers first.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    remove_stale_temporaries(path);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = sibling(path, &format!("tmp-{}-{n}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_parent(path);
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The staging directory in which a dataset for `out` is built before being renamed into
/// place: `.NAME.partial-PID` next to `out`.
pub fn staging_dir(out: &Path) -> PathBuf {
    sibling(out, &format!("partial-{}", std::process::id()))
}

/// `.NAME.TAG` next to `path`.
fn sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    path.with_file_name(format!(".{name}.{tag}"))
}

/// Flushes the directory holding `path`, so that a rename survives a power cut (best
/// effort: some platforms cannot open a directory for syncing).
fn sync_parent(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = std::fs::File::open(parent) {
        let _ = d.sync_all();
    }
}

/// Removes the temporaries (`.NAME.tmp-PID-N` files, `.NAME.partial-PID` directories) that
/// writers of `path` left behind when they were killed, and returns how many it removed.
///
/// A leftover is removed only when its writer is certainly gone: its process id is not this
/// process's and, where `/proc` exists, no process with that id is running; elsewhere only
/// when it is older than a day. Errors are ignored (a leftover that cannot be removed is
/// harmless, it only wastes space).
pub fn remove_stale_temporaries(path: &Path) -> usize {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return 0;
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return 0;
    };
    let prefix = format!(".{name}.");
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(tag) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let pid = if let Some(rest) = tag.strip_prefix("tmp-") {
            rest.split('-').next()
        } else {
            tag.strip_prefix("partial-")
        };
        let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !writer_is_gone(pid, &entry) {
            continue;
        }
        let p = entry.path();
        let ok = if p.is_dir() {
            std::fs::remove_dir_all(&p).is_ok()
        } else {
            std::fs::remove_file(&p).is_ok()
        };
        removed += usize::from(ok);
    }
    removed
}

/// Whether the process that made a temporary is certainly no longer running.
fn writer_is_gone(pid: u32, entry: &std::fs::DirEntry) -> bool {
    if pid == std::process::id() {
        return false;
    }
    let proc = Path::new("/proc");
    if proc.join("self").exists() {
        return !proc.join(pid.to_string()).exists();
    }
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > STALE_AGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("atomic-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A process id that is not running: the largest pid Linux allows is below 2^22.
    const DEAD_PID: u32 = 4_000_000_000;

    #[test]
    fn stale_temporaries_of_dead_writers_are_removed_live_ones_kept() {
        let d = temp("stale");
        let target = d.join("model.safetensors");
        let dead_file = d.join(format!(".model.safetensors.tmp-{DEAD_PID}-0"));
        let dead_dir = d.join(format!(".model.safetensors.partial-{DEAD_PID}"));
        let ours = d.join(format!(".model.safetensors.tmp-{}-99", std::process::id()));
        let other = d.join(format!(".other.tmp-{DEAD_PID}-0"));
        // The parent of this test runner is alive (pid 1 always is).
        let live = d.join(".model.safetensors.tmp-1-0");
        for f in [&dead_file, &ours, &other, &live] {
            std::fs::write(f, b"partial").unwrap();
        }
        std::fs::create_dir_all(dead_dir.join("inner")).unwrap();
        write_atomically(&target, b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        assert!(!dead_file.exists() && !dead_dir.exists());
        assert!(ours.exists() && other.exists() && live.exists());
        // Nothing of this write's own is left.
        let names: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_and_the_old_file() {
        let d = temp("fail");
        let target = d.join("x");
        std::fs::write(&target, b"old").unwrap();
        // A directory in the way of the rename makes it fail.
        let blocked = d.join("sub");
        std::fs::create_dir_all(blocked.join("child")).unwrap();
        assert!(write_atomically(&blocked, b"new").is_err());
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 2);
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        std::fs::remove_dir_all(d).unwrap();
    }
}
