//! A collection's manifest: which segments and tombstone file are current,
//! and the checkpoint LSN up to which the WAL is folded into them
//! (docs/format.md, "Collection manifest").
//!
//! Owns: `manifest.json`'s contents, its version, reading and encoding it,
//! and the check that a manifest belongs to the collection being opened.
//! Does not own: when it is switched (`super::flush`, through
//! `storage::write_atomic`).

use crate::wal::Lsn;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The manifest's file name in a collection directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The manifest format this build reads and writes.
pub const MANIFEST_VERSION: u32 = 1;

/// What `manifest.json` holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`] when written.
    pub version: u32,
    /// Vector dimension.
    pub dim: usize,
    /// Metric name ("l2", "ip", "cosine").
    pub metric: String,
    /// Every WAL record up to this LSN is in the segments.
    pub checkpoint_lsn: Lsn,
    /// Bumped by every manifest switch; part of new segment names, so a
    /// merge never reuses the name of a live segment.
    pub generation: u64,
    /// Current segment directories, in search order.
    pub segments: Vec<String>,
    /// Current tombstone file, if any slot in the segments is dead.
    pub tombstones: Option<String>,
}

/// A manifest that does not belong to the collection being opened.
#[derive(Debug, thiserror::Error)]
pub enum ManifestMismatch {
    /// Written by another format version.
    #[error("{path}: manifest version {found}; this build reads version {MANIFEST_VERSION} (open it with the Quarry release that wrote it)")]
    Version {
        /// The manifest file.
        path: PathBuf,
        /// The version it holds.
        found: u32,
    },
    /// Written for another dimension or metric.
    #[error("{path}: the collection on disk is {found_dim}-d {found_metric}; it is being opened as {want_dim}-d {want_metric}")]
    Shape {
        /// The manifest file.
        path: PathBuf,
        /// Its dimension.
        found_dim: usize,
        /// Its metric.
        found_metric: String,
        /// The dimension asked for.
        want_dim: usize,
        /// The metric asked for.
        want_metric: String,
    },
}

impl Manifest {
    /// An empty collection's manifest.
    pub fn new(dim: usize, metric: crate::Metric) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            dim,
            metric: metric.name().into(),
            ..Manifest::default()
        }
    }

    /// Parse `manifest.json` bytes (any version: check it with
    /// [`Manifest::check`]). Err: why it does not parse.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    /// The bytes written to disk.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest always serialises")
    }

    /// Whether this manifest (read from `path`) belongs to a collection of
    /// `dim` values under `metric`, in this build's format.
    pub fn check(&self, path: PathBuf, dim: usize, metric: crate::Metric) -> Result<(), ManifestMismatch> {
        if self.version != MANIFEST_VERSION {
            return Err(ManifestMismatch::Version {
                path,
                found: self.version,
            });
        }
        if self.dim != dim || self.metric != metric.name() {
            return Err(ManifestMismatch::Shape {
                path,
                found_dim: self.dim,
                found_metric: self.metric.clone(),
                want_dim: dim,
                want_metric: metric.name().into(),
            });
        }
        Ok(())
    }
}
