//! Quarry's engine: everything between a file of vectors and the answer to a
//! k-nearest-neighbour query, for an index whose graph lives on NVMe.
//!
//! The modules follow the data flow of a build and of a query:
//!
//! `kernels` → `pq` → `graph` → `format` → `io` → `search` → `index`
//!
//! and of a write:
//!
//! `storage` → `wal` → `collection` (which builds its segments with
//! `index` and searches them with `search`).
//!
//! * [`kernels`]: SIMD distances with runtime dispatch.
//! * [`dataset`]: reading and writing vector files (fbin, u8bin, fvecs,
//!   bvecs, npy, ibin), the synthetic generator, ground truth and LID.
//!
//! See ARCHITECTURE.md for the whole picture.

pub mod cancel;
pub mod collection;
pub mod dataset;
pub mod format;
pub mod graph;
pub mod hugemem;
pub mod index;
pub mod io;
pub mod kernels;
pub mod metric;
pub mod opq;
pub mod parallel;
pub mod pq;
pub mod runtime;
pub mod search;
pub mod storage;
#[cfg(test)]
pub(crate) mod testutil;
pub mod vector;
pub mod wal;

pub use collection::{Collection, CollectionError, CollectionOptions};
pub use index::{DiskIndex, IndexBuildOptions, IndexError};
pub use metric::Metric;
pub use search::{Neighbor, QueryStats, SearchParams, Searcher};
