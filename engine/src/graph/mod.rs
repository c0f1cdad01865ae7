//! In-RAM graphs: the Vamana build (deterministic parallel batch
//! insertion), the fresh index over recent writes (single inserts), the
//! one RobustPrune both use, the connectivity repair, and the HNSW
//! navigation tier.
//!
//! Owns: graph construction and the in-memory adjacency representation.
//! Does not own: vectors' storage on disk (`format`) or disk-resident
//! search (`search`).

pub(crate) mod beam;
pub mod fresh;
pub mod hnsw;
pub mod layout;
pub(crate) mod prune;
pub mod repair;
pub mod vamana;

pub use beam::{Candidate, CandidateList, VisitedSet};
pub use fresh::{FreshIndex, InsertPlan};
pub use hnsw::{NavParams, NavTier};
pub use vamana::{build, BuildError, BuildParams, BuildStats, Graph, GraphEstimate};
