//! Quarry's engine: everything between a file of vectors and the answer to a
//! k-nearest-neighbour query, for an index whose graph lives on NVMe.
//!
//! The modules follow the data flow of a build and of a query:
//!
//! `kernels` → `pq` → `graph` → `nav` → `format` → `io` → `search`
//!
//! * [`kernels`]: SIMD distances with runtime dispatch.
//! * [`dataset`]: reading and writing vector files (fbin, u8bin, fvecs,
//!   bvecs, npy, ibin), the synthetic generator, ground truth and LID.
//! See ARCHITECTURE.md for the whole picture.

pub mod dataset;
pub mod kernels;
pub mod metric;

pub use metric::Metric;
