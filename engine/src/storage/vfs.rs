//! The file-system seam for everything Quarry must not lose: the
//! write-ahead log, manifests, id maps, payload files and the sealing of
//! segment files.
//!
//! Owns: the [`Vfs`] and [`VFile`] traits, the real implementation
//! ([`RealFs`], plain `std::fs` with `fdatasync`/`fsync`), and the
//! atomic-replace helper [`write_atomic`] (temporary file, fsync, rename,
//! fsync of the directory). The fault-injecting implementation that can
//! fail with ENOSPC/EIO and simulate power loss is [`super::crashfs`] ([`super::CrashFs`]).
//!
//! The model is deliberately small: files are written by appending (and
//! cut back with `truncate`), replaced whole by rename, and made durable by
//! `sync` (contents) and `sync_dir` (names). Index builds write their files
//! with `std::fs` directly and are sealed afterwards through
//! [`Vfs::sync_file`] and [`Vfs::sync_dir`], so the crash model still
//! decides what survives.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// One open file, written by appending.
pub trait VFile: Send {
    /// Append `buf` at the end (all of it, or an error).
    fn append(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Make every appended byte durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> u64;
    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Cut the file to `len` bytes (durable after the next `sync`).
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// A handle that can sync this file from another thread while appends
    /// continue (group commit).
    fn sync_handle(&self) -> io::Result<Box<dyn SyncHandle>>;
}

/// Syncs one file, from any thread.
pub trait SyncHandle: Send + Sync {
    /// fdatasync: every byte appended before this call becomes durable.
    fn sync(&self) -> io::Result<()>;
}

/// The file-system operations durable state goes through.
pub trait Vfs: Send + Sync {
    /// Create `path` empty (replacing any file there) for appending.
    fn create(&self, path: &Path) -> io::Result<Box<dyn VFile>>;
    /// Open an existing file for appending at its end.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VFile>>;
    /// Read a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Read up to `len` bytes at `offset` (fewer at the end of the file).
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Length of a file.
    fn file_len(&self, path: &Path) -> io::Result<u64>;
    /// Rename within one directory, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Remove a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Remove a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Create a directory (and missing parents).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Make the names in `dir` durable (fsync of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// fsync a file written outside this trait (an index build's output).
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// Make `to` (which must not exist) another name of the file `from` (a
    /// hard link: the same bytes, no copy). Durable by name after
    /// `sync_dir` of `to`'s directory. Fails with the OS error, EXDEV when
    /// the two are on different file systems.
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Names of the entries in `dir`, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> bool;
}

/// Replace `path` with `bytes` atomically: write `path.tmp`, fsync it,
/// rename it over `path`, fsync the directory. After a crash at any point
/// `path` holds either the old bytes or the new ones.
pub fn write_atomic(fs: &dyn Vfs, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("a file needs a directory"))?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = fs.create(&tmp)?;
        f.append(bytes)?;
        f.sync()?;
    }
    fs.rename(&tmp, path)?;
    fs.sync_dir(dir)
}

/// `std::fs`, with real fsyncs.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

struct RealFile {
    f: std::fs::File,
    len: u64,
}

impl VFile for RealFile {
    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        self.f.write_all(buf)?;
        self.len += buf.len() as u64;
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        self.f.sync_data()
    }
    fn len(&self) -> u64 {
        self.len
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.f.set_len(len)?;
        self.f.seek(SeekFrom::Start(len))?;
        self.len = len;
        Ok(())
    }
    fn sync_handle(&self) -> io::Result<Box<dyn SyncHandle>> {
        Ok(Box::new(RealSync(self.f.try_clone()?)))
    }
}

struct RealSync(std::fs::File);

impl SyncHandle for RealSync {
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Vfs for RealFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn VFile>> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        Ok(Box::new(RealFile { f, len: 0 }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn VFile>> {
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        let len = f.seek(SeekFrom::End(0))?;
        Ok(Box::new(RealFile { f, len }))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut f = std::fs::File::open(path)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut out = Vec::with_capacity(len);
        f.take(len as u64).read_to_end(&mut out)?;
        Ok(out)
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
    fn sync_file(&self, path: &Path) -> io::Result<()> {
        std::fs::File::open(path)?.sync_all()
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(dir)? {
            v.push(e?.file_name().to_string_lossy().into_owned());
        }
        v.sort();
        Ok(v)
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_truncate_and_atomic_replace() {
        let d = tempfile::tempdir().unwrap();
        let fs = RealFs;
        let p = d.path().join("a");
        let mut f = fs.create(&p).unwrap();
        f.append(b"hello world").unwrap();
        f.truncate(5).unwrap();
        f.append(b"!").unwrap();
        f.sync().unwrap();
        f.sync_handle().unwrap().sync().unwrap();
        assert_eq!(fs.read(&p).unwrap(), b"hello!");
        assert_eq!(fs.read_at(&p, 4, 100).unwrap(), b"o!");
        drop(f);
        let mut f = fs.open_append(&p).unwrap();
        assert_eq!(f.len(), 6);
        f.append(b"?").unwrap();
        assert_eq!(fs.file_len(&p).unwrap(), 7);
        let m = d.path().join("m.json");
        write_atomic(&fs, &m, b"one").unwrap();
        write_atomic(&fs, &m, b"two").unwrap();
        assert_eq!(fs.read(&m).unwrap(), b"two");
        assert_eq!(fs.list(d.path()).unwrap(), vec!["a".to_string(), "m.json".to_string()]);
    }
}
