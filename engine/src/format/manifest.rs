//! `manifest.json`: the list of an index's files with sizes and checksums,
//! plus the build parameters. Written last, atomically, so an index
//! directory without a manifest is an unfinished build.

use super::{io_err, FormatError, Result, StoredType, FORMAT_VERSION};
use crate::Metric;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Name of the manifest inside an index directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// One file of the index.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Name relative to the index directory.
    pub name: String,
    /// Exact size in bytes.
    pub bytes: u64,
    /// crc32c of the whole file.
    pub crc32c: u32,
}

/// The manifest.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Format version of the whole index.
    pub format_version: u32,
    /// Number of vectors.
    pub n: u64,
    /// Dimensions.
    pub dim: u32,
    /// Metric.
    pub metric: Metric,
    /// Stored vector type in the graph file.
    pub stored: StoredType,
    /// Maximum degree.
    pub r: u32,
    /// Build beam width.
    pub l_build: u32,
    /// RobustPrune alpha.
    pub alpha: f32,
    /// PQ bytes per vector.
    pub pq_bytes: u32,
    /// Build seed.
    pub seed: u64,
    /// Nodes in the navigation tier (0 = none).
    pub nav_nodes: u64,
    /// Whether a full-precision rerank file exists.
    pub rerank_file: bool,
    /// Whether nodes were renamed so that graph neighbours share sectors
    /// (informational: reading is the same either way). Absent in
    /// manifests written before it existed, which means false.
    #[serde(default)]
    pub colocated: bool,
    /// Files, each with size and checksum.
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// Compute the entry (size, crc) for a file that exists in `dir`.
    pub fn entry(dir: &Path, name: &str) -> Result<FileEntry> {
        // Streamed: a graph file is as large as the index.
        let path = dir.join(name);
        let (bytes, crc) = super::crc32c_of_file(&path).map_err(io_err(&path))?;
        Ok(FileEntry {
            name: name.into(),
            bytes,
            crc32c: crc,
        })
    }

    /// Write atomically to `dir/manifest.json`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("manifest serialises");
        super::write_file_atomic(&dir.join(MANIFEST_FILE), &json)
    }

    /// Load and check version and that every listed file has its size.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| FormatError::Invalid {
            path: path.clone(),
            field: "manifest",
            detail: e.to_string(),
        })?;
        if m.format_version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                path,
                found: m.format_version,
                supported: FORMAT_VERSION,
            });
        }
        for f in &m.files {
            let p = dir.join(&f.name);
            let len = std::fs::metadata(&p).map_err(io_err(&p))?.len();
            if len != f.bytes {
                return Err(FormatError::Truncated {
                    path: p,
                    expected: f.bytes,
                    found: len,
                });
            }
        }
        Ok(m)
    }
}
