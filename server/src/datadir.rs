//! The data directory's lock: one `quarryd` per `--data-dir`.
//!
//! Owns: `quarryd.lock` in the data directory, an `flock` held for the
//! process's life, with the holder's pid written in it so that a second
//! server can name it. The kernel drops the lock when the process exits
//! (even under `kill -9`), so a stale lock file never blocks a restart.
//! Does not own: anything else in the directory (the catalog's).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "quarryd.lock";

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("the data directory {dir} is in use by another quarryd (pid {holder}, per {lock}); stop it, or give this server another --data-dir")]
    Held {
        /// The data directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The holder's pid as written in the lock file ("unknown" if it
        /// could not be read).
        holder: String,
    },
    /// The lock file could not be created, locked or written.
    #[error("cannot lock the data directory {dir} ({lock}): {source}")]
    Io {
        /// The data directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The held lock; dropping it (or exiting) releases it.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Lock `dir` (which must exist) for this process, or say who holds it.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, LockError> {
        let lock = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            dir: dir.to_path_buf(),
            lock: lock.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let holder = match file.read_to_string(&mut text) {
                    Ok(_) if !text.trim().is_empty() => text.trim().to_string(),
                    _ => "unknown".to_string(),
                };
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    lock,
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(DataDirLock {
            _file: file,
            path: lock,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_with_the_holders_pid() {
        let d = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(d.path()).unwrap();
        let text = std::fs::read_to_string(held.path()).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        // flock locks belong to the open file description: a second open
        // in the same process conflicts just as another process would.
        let e = DataDirLock::acquire(d.path()).unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, LockError::Held { .. }), "{m}");
        assert!(
            m.contains(&d.path().display().to_string()) && m.contains(&format!("pid {}", std::process::id())),
            "{m}"
        );
        drop(held);
        let again = DataDirLock::acquire(d.path()).unwrap();
        drop(again);
    }
}
