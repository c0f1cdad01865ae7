//! In-RAM graphs: the Vamana build (RobustPrune, deterministic parallel
//! batch insertion) and the HNSW navigation tier.
//!
//! Owns: graph construction and the in-memory adjacency representation.
//! Does not own: vectors' storage on disk (`format`) or disk-resident
//! search (`search`).

pub(crate) mod beam;
pub mod hnsw;
pub mod layout;
pub mod vamana;

pub use beam::{Candidate, CandidateList, VisitedSet};
pub use hnsw::{NavParams, NavTier};
pub use vamana::{build, BuildError, BuildParams, BuildStats, Graph, GraphEstimate};
