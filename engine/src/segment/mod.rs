//! Mutable collections: what turns the immutable disk index into a
//! collection that takes upserts and deletes without losing an
//! acknowledged write.
//!
//! * [`vfs`]: the file-system seam every durable write goes through.
//! * [`crashfs`]: its fault-injecting twin (ENOSPC, EIO, power loss).
//! * [`wal`]: the write-ahead log.
//! * [`fresh`]: the in-RAM graph over recent writes.
//! * [`live`]: the mutable collection (ids, payloads, tombstones, flushes,
//!   recovery).

pub mod crashfs;
pub mod fresh;
pub mod live;
pub mod vfs;
pub mod wal;

#[cfg(test)]
mod wal_tests;

#[cfg(test)]
mod live_tests;
