//! The file-system seam for everything Quarry must not lose.
//!
//! Owns: the [`Vfs`] and [`VFile`] traits, the real file system
//! ([`RealFs`]), its fault-injecting twin ([`CrashFs`]: ENOSPC, EIO, power
//! loss with torn writes), and the ONE atomic-replace helper
//! [`write_atomic`] (temporary file, fsync, rename, fsync of the
//! directory) that the WAL's follower registry, a collection's manifest
//! and tombstones, an index's small files and the server's catalog all
//! write through. Does not own: what the files mean (`wal`, `collection`,
//! `format`) or reading index sectors for search (`io`).

pub mod crashfs;
pub mod vfs;

pub use crashfs::{CrashFs, Fault, FaultKind};
pub use vfs::{write_atomic, RealFs, SyncHandle, VFile, Vfs};
