//! Sector reads: the [`SectorReader`] trait and its implementations.
//!
//! Owns: getting fixed-size, 4 KiB-aligned runs of sectors from the graph
//! file into aligned buffers, many in flight at once. Does not own: what the
//! bytes mean (`format`) or which sectors to read (`search`).
//!
//! * [`UringReader`]: io_uring, O_DIRECT, registered file, registered
//!   buffers (falling back to plain buffers, with a log line, when memlock
//!   refuses them). No SQPOLL: on 2 cores a polling kernel thread would
//!   steal a whole core from the shards.
//! * [`PreadReader`]: portable synchronous fallback, used automatically
//!   (with a log line) where io_uring is refused.
//! * [`FaultReader`]: wraps another reader and injects errors, for tests.
//!
//! A reader belongs to one thread (it is `Send`, not `Sync`): the
//! thread-per-core model gives each shard its own ring.

mod aligned;
mod fault;
mod park;
mod pread;
mod uring;

pub use aligned::AlignedBuf;
pub use fault::{FaultPlan, FaultReader};
pub use park::{Parker, Waker};
pub use pread::PreadReader;
pub use uring::UringReader;

use std::path::{Path, PathBuf};

/// Bytes per sector.
pub const SECTOR: usize = crate::format::SECTOR;

/// Index of a buffer slot in a reader's pool.
pub type Slot = usize;

/// A finished read.
#[derive(Debug)]
pub struct Completion {
    /// The slot holding the data.
    pub slot: Slot,
    /// The caller's tag from [`SectorReader::submit`].
    pub tag: u64,
    /// Whether the read succeeded (and was complete).
    pub result: Result<(), ReadError>,
}

/// Why a read failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// Opening or setting up the reader failed.
    #[error("{path}: cannot set up {what}: {msg}")]
    Setup {
        /// File concerned.
        path: PathBuf,
        /// What was being set up.
        what: &'static str,
        /// OS message.
        msg: String,
    },
    /// The OS returned an error for one read.
    #[error("{path}: read of sector {sector} failed: {msg}")]
    Os {
        /// File concerned.
        path: PathBuf,
        /// First sector of the read.
        sector: u64,
        /// OS message.
        msg: String,
    },
    /// The read returned fewer bytes than asked (file truncated under us).
    #[error("{path}: short read at sector {sector}: {got} of {want} bytes")]
    Short {
        /// File concerned.
        path: PathBuf,
        /// First sector of the read.
        sector: u64,
        /// Bytes returned.
        got: usize,
        /// Bytes asked.
        want: usize,
    },
    /// No free buffer slot: the caller submitted more than `capacity()`.
    #[error("reader is full ({0} reads in flight)")]
    Full(usize),
    /// Injected by [`FaultReader`].
    #[error("injected fault at sector {0}")]
    Injected(u64),
}

/// Fixed-size sector reads with many in flight.
///
/// Protocol: `submit` queues a read into a free slot; `complete` pushes
/// queued reads to the device and returns finished ones; the caller reads
/// `buffer(slot)` and must `release(slot)` before the slot is reused.
pub trait SectorReader: Send {
    /// Bytes each read fetches (a multiple of 4096).
    fn read_len(&self) -> usize;
    /// Maximum reads in flight (the buffer pool size).
    fn capacity(&self) -> usize;
    /// Slots currently submitted or holding unreleased data.
    fn in_use(&self) -> usize;
    /// Queue a read of `read_len()` bytes starting at `sector`.
    fn submit(&mut self, sector: u64, tag: u64) -> Result<Slot, ReadError>;
    /// Submit queued reads and append finished ones to `out`, waiting until
    /// at least `min_complete` have finished (0 = do not wait).
    fn complete(&mut self, min_complete: usize, out: &mut Vec<Completion>) -> Result<(), ReadError>;
    /// The data of a completed slot.
    fn buffer(&self, slot: Slot) -> &[u8];
    /// Return a slot to the pool.
    fn release(&mut self, slot: Slot);
    /// Human-readable description ("io_uring, registered buffers", ...).
    fn describe(&self) -> String;
    /// Hand queued reads to the kernel without waiting or reaping (so a
    /// caller may sleep elsewhere while they run). The default does
    /// nothing: readers that read at submit time have nothing queued.
    fn flush(&mut self) -> Result<(), ReadError> {
        Ok(())
    }
    /// Signal eventfd `fd` whenever a read completes, so a thread parked
    /// elsewhere (a service shard waiting for new requests too) wakes up.
    /// Returns false where the reader cannot; the default cannot.
    fn notify_completions(&mut self, fd: std::os::fd::RawFd) -> bool {
        let _ = fd;
        false
    }
}

/// Which reader to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoBackend {
    /// io_uring if the kernel allows it, else pread (with a log line).
    Auto,
    /// io_uring or an error.
    Uring,
    /// pread only.
    Pread,
}

impl std::str::FromStr for IoBackend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(IoBackend::Auto),
            "uring" | "io_uring" => Ok(IoBackend::Uring),
            "pread" => Ok(IoBackend::Pread),
            o => Err(format!("unknown io backend '{o}': expected auto, uring or pread")),
        }
    }
}

/// Open a reader on `path` for reads of `read_len` bytes with `depth`
/// buffers, choosing the implementation per `backend`.
pub fn open_reader(
    path: &Path,
    read_len: usize,
    depth: usize,
    backend: IoBackend,
) -> Result<Box<dyn SectorReader>, ReadError> {
    match backend {
        IoBackend::Pread => Ok(Box::new(PreadReader::open(path, read_len, depth)?)),
        IoBackend::Uring => Ok(Box::new(UringReader::open(path, read_len, depth)?)),
        IoBackend::Auto => match UringReader::open(path, read_len, depth) {
            Ok(r) => Ok(Box::new(r)),
            Err(e) => {
                tracing::warn!(error = %e, "io_uring refused; falling back to the pread reader");
                Ok(Box::new(PreadReader::open(path, read_len, depth)?))
            }
        },
    }
}

/// Open `path` for reading with O_DIRECT, or without it (logged) where the
/// filesystem refuses O_DIRECT (tmpfs). Returns the file and whether
/// O_DIRECT is on.
pub(crate) fn open_direct(path: &Path) -> Result<(std::fs::File, bool), ReadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let setup = |e: std::io::Error| ReadError::Setup {
        path: path.into(),
        what: "file",
        msg: e.to_string(),
    };
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            tracing::warn!(path = %path.display(), "O_DIRECT refused by the filesystem; reads go through the page cache");
            Ok((std::fs::File::open(path).map_err(setup)?, false))
        }
        Err(e) => Err(setup(e)),
    }
}

#[cfg(test)]
mod tests;
