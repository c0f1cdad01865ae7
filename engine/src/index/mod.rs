//! A disk index as a whole: building one into a directory, and opening it
//! for search (PQ codes, navigation tier and hot-node cache in RAM; the
//! graph stays on disk).
//!
//! Owns: the build pipeline (PQ → Vamana → navigation tier → files →
//! manifest) and its memory estimate (`build`), the partitioned build for
//! data larger than the budget (`partition`), rewriting a built index in
//! a new layout (`relayout`), an index opened for search and the RAM it
//! holds (`open`, [`RamUsage`]), its hot-node cache (`cache`) and the full
//! check of a directory (`verify`).
//!
//! Does not touch: the bytes of each file (`format` defines and writes
//! them), graph construction (`graph`), the query loop (`search`), or
//! anything mutable — segments, the WAL and collections are built on top
//! of this module, never inside it.

mod build;
mod cache;
mod open;
pub mod partition;
mod relayout;
mod verify;

pub use build::{build_index, stage, BuildReport, IndexBuildOptions, MemoryEstimate};
pub use cache::NodeCache;
pub use open::DiskIndex;
pub use relayout::{relayout, RelayoutReport};
pub use verify::{verify_index, VerifySummary};

use crate::format::FormatError;
use crate::graph::BuildError;
use crate::io::ReadError;

/// Everything that can go wrong building or opening an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A file is missing, corrupt, truncated or of the wrong version.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The graph build refused or failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Reading sectors failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Input that cannot be indexed.
    #[error("invalid input: {0}")]
    Invalid(String),
}

/// Result alias for index operations.
pub type Result<T> = std::result::Result<T, IndexError>;

/// RAM held by an open index, by component.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct RamUsage {
    /// PQ codes (n × pq_bytes).
    pub pq_codes: usize,
    /// PQ centroids.
    pub pq_pivots: usize,
    /// Navigation tier.
    pub nav: usize,
    /// Hot-node cache.
    pub cache: usize,
    /// External id map.
    pub ids: usize,
}

impl RamUsage {
    /// Sum of the components, bytes.
    pub fn total(&self) -> u64 {
        (self.pq_codes + self.pq_pivots + self.nav + self.cache + self.ids) as u64
    }
}

impl std::ops::AddAssign for RamUsage {
    fn add_assign(&mut self, o: Self) {
        self.pq_codes += o.pq_codes;
        self.pq_pivots += o.pq_pivots;
        self.nav += o.nav;
        self.cache += o.cache;
        self.ids += o.ids;
    }
}
