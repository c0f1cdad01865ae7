//! The write-ahead log's errors.
//!
//! Owns: [`WalError`] and the helpers that build it. Does not own: when
//! each is returned (`super` and its submodules).

use super::{Lsn, FOLLOWERS_FILE};
use std::io;
use std::path::{Path, PathBuf};

/// WAL failures.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The file system failed.
    #[error("write-ahead log {path}: {op}: {source}")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A record before the tail, or the follower registry, is damaged.
    #[error("write-ahead log {path} is corrupt at byte {offset}: {why}; {}", corrupt_hint(.path))]
    Corrupt {
        /// Segment file or follower registry.
        path: PathBuf,
        /// Byte offset of the bad record (or registry field).
        offset: u64,
        /// What is wrong.
        why: String,
    },
    /// An earlier sync failed; reopen the log.
    #[error("write-ahead log is unusable after a failed sync ({0}); writes are refused until it is reopened")]
    Poisoned(String),
    /// A record over the limit.
    #[error("record of {len} bytes is over the write-ahead log's limit of {max}")]
    TooLarge {
        /// Body length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The records asked for were deleted by retention.
    #[error("LSN {want} is no longer in the write-ahead log (oldest is {oldest})")]
    Gone {
        /// Asked for.
        want: Lsn,
        /// Oldest kept.
        oldest: Lsn,
    },
    /// A follower name or position the caller passed is not acceptable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Records offered at an LSN that is not the log's next one.
    #[error("records from LSN {got} cannot be appended: the log's next LSN is {next}")]
    Position {
        /// The first LSN offered.
        got: Lsn,
        /// The log's next LSN.
        next: Lsn,
    },
    /// The tail was cut while these records waited for their sync.
    #[error("the write-ahead log was cut while LSNs {first}..={last} waited for their sync; whether they survived is unknown")]
    Truncated {
        /// First LSN of the batch.
        first: Lsn,
        /// Last LSN of the batch.
        last: Lsn,
    },
    /// An epoch that cannot begin where it was asked to.
    #[error("epoch history: {0}")]
    Epoch(String),
    /// No follower is registered under this name.
    #[error("no follower named {0:?} is registered with the write-ahead log")]
    UnknownFollower(String),
    /// A follower asked to start from records retention already deleted.
    #[error("cannot register follower {name:?} from LSN {from}: the write-ahead log starts at LSN {oldest}, the records before it are gone; the follower needs a snapshot first")]
    FollowerGone {
        /// The follower.
        name: String,
        /// The LSN it asked to start from.
        from: Lsn,
        /// Oldest LSN kept.
        oldest: Lsn,
    },
    /// The follower was dropped: the retention cap deleted records it
    /// needed (or they were gone when the log was opened).
    #[error("follower {name:?} was dropped at acked LSN {acked}: the write-ahead log no longer keeps the records after it (retention cap exceeded, or segments deleted by hand); re-sync it from a snapshot and register it again")]
    FollowerDropped {
        /// The follower.
        name: String,
        /// Its last ack before it was dropped.
        acked: Lsn,
    },
}

/// What to do about a damaged file, for [`WalError::Corrupt`]'s message.
pub(super) fn corrupt_hint(path: &Path) -> &'static str {
    if path.file_name().is_some_and(|n| n == FOLLOWERS_FILE) {
        "the follower registry cannot be trusted (restore the file, or delete it to forget every follower: each must register again, from a snapshot if its records are gone)"
    } else {
        "refusing to skip it (restore the file or truncate it there by hand to drop every later record)"
    }
}

pub(super) fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> WalError + 'a {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}
