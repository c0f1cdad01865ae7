//! The on-disk index format (version [`FORMAT_VERSION`]): every byte is
//! described in `docs/format.md`.
//!
//! Owns: encoding and decoding of the graph file's header sector and node
//! records, the common header of the other section files, checksums, and the
//! manifest that ties an index directory together. Does not own: how nodes
//! are read at query time (`io`) or what they mean for a search (`search`).
//!
//! Opening an index checks headers and sizes only (cheap, O(1) in index
//! size); [`verify`] reads everything and checks every checksum.

mod graph_file;
mod manifest;
mod section;

pub use graph_file::{GraphHeader, GraphWriter, NodeLayout, NodeRef};
pub use manifest::{FileEntry, Manifest, MANIFEST_FILE};
pub use section::{read_section, read_section_huge, write_section, SectionHeader, SectionWriter, SECTION_HEADER_LEN};

use std::path::{Path, PathBuf};

/// Current version of every Quarry index file.
pub const FORMAT_VERSION: u32 = 1;
/// The unit of disk I/O and of node placement.
pub const SECTOR: usize = 4096;

/// File names inside an index directory.
pub mod files {
    /// Sector 0 header + node records.
    pub const GRAPH: &str = "graph.qgr";
    /// PQ centre and centroids.
    pub const PQ_PIVOTS: &str = "pq_pivots.qsec";
    /// PQ codes, one row per node.
    pub const PQ_CODES: &str = "pq_codes.qsec";
    /// The HNSW navigation tier.
    pub const NAV: &str = "nav.qsec";
    /// External u64 id of each internal slot.
    pub const IDS: &str = "ids.qsec";
    /// Optional full-precision rerank vectors, sector aligned.
    pub const RERANK: &str = "rerank.qsec";
}

/// How node vectors are stored in the graph file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredType {
    /// 4 bytes per dimension, exact.
    F32,
    /// IEEE half precision, 2 bytes per dimension.
    F16,
    /// One f32 scale then 1 signed byte per dimension.
    I8,
}

impl StoredType {
    /// On-disk code.
    pub fn as_u8(self) -> u8 {
        match self {
            StoredType::F32 => 0,
            StoredType::F16 => 1,
            StoredType::I8 => 2,
        }
    }
    /// From the on-disk code.
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(StoredType::F32),
            1 => Some(StoredType::F16),
            2 => Some(StoredType::I8),
            _ => None,
        }
    }
    /// Bytes the vector part of a node takes, before padding.
    pub fn vector_bytes(self, dim: usize) -> usize {
        match self {
            StoredType::F32 => 4 * dim,
            StoredType::F16 => 2 * dim,
            StoredType::I8 => 4 + dim,
        }
    }
}

impl std::str::FromStr for StoredType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(StoredType::F32),
            "f16" => Ok(StoredType::F16),
            "i8" => Ok(StoredType::I8),
            o => Err(format!("unknown stored vector type '{o}': expected f32, f16 or i8")),
        }
    }
}

impl std::fmt::Display for StoredType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoredType::F32 => "f32",
            StoredType::F16 => "f16",
            StoredType::I8 => "i8",
        })
    }
}

/// What is wrong with an index file. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The OS refused a read or write.
    #[error("{path}: {source}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is shorter than its header or manifest says.
    #[error("{path}: truncated: expected {expected} bytes, found {found}")]
    Truncated {
        /// File concerned.
        path: PathBuf,
        /// Size the header or manifest requires.
        expected: u64,
        /// Actual size.
        found: u64,
    },
    /// The magic bytes do not match the expected file kind.
    #[error("{path}: not a Quarry {kind} file (bad magic {found:?})")]
    BadMagic {
        /// File concerned.
        path: PathBuf,
        /// Expected kind.
        kind: &'static str,
        /// Magic found.
        found: [u8; 8],
    },
    /// Written by a format version this build does not read.
    #[error("{path}: format version {found} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// File concerned.
        path: PathBuf,
        /// Version found.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// A checksum did not match.
    #[error("{path}: checksum mismatch in {section}: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// File concerned.
        path: PathBuf,
        /// Which part of the file.
        section: String,
        /// Stored crc32c.
        stored: u32,
        /// Computed crc32c.
        computed: u32,
    },
    /// A field holds an impossible value.
    #[error("{path}: invalid {field}: {detail}")]
    Invalid {
        /// File concerned.
        path: PathBuf,
        /// Field name.
        field: &'static str,
        /// What is wrong.
        detail: String,
    },
}

/// Result alias for the format module.
pub type Result<T> = std::result::Result<T, FormatError>;

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FormatError + '_ {
    move |source| FormatError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// crc32c of a byte slice (hardware accelerated where available).
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// Length and crc32c of a whole file, read in 1 MiB pieces (an index file
/// can be terabytes: it is never read into RAM whole).
pub fn crc32c_of_file(path: &Path) -> std::io::Result<(u64, u32)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut len, mut crc) = (0u64, 0u32);
    loop {
        match f.read(&mut buf) {
            Ok(0) => return Ok((len, crc)),
            Ok(got) => {
                crc = crc32c::crc32c_append(crc, &buf[..got]);
                len += got as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Write `bytes` to `path` atomically through the one
/// [`crate::storage::write_atomic`] (temp file, fsync, rename, fsync of
/// the directory), with the error as a [`FormatError`].
pub(crate) fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::storage::write_atomic(&crate::storage::RealFs, path, bytes).map_err(io_err(path))
}

/// Finish a file streamed to `tmp` with a placeholder header: write
/// `header` at offset 0, fsync, rename to `path`, fsync the directory.
pub(crate) fn seal_streamed(
    file: std::io::BufWriter<std::fs::File>,
    tmp: &Path,
    path: &Path,
    header: &[u8],
) -> Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = file.into_inner().map_err(|e| FormatError::Io {
        path: tmp.to_path_buf(),
        source: e.into_error(),
    })?;
    f.seek(SeekFrom::Start(0)).map_err(io_err(tmp))?;
    f.write_all(header).map_err(io_err(tmp))?;
    f.sync_all().map_err(io_err(tmp))?;
    std::fs::rename(tmp, path).map_err(io_err(path))?;
    sync_dir(path)
}

/// fsync the directory containing `path`, so a rename into it is durable.
pub fn sync_dir(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
    }
    Ok(())
}

/// Report of a full verification.
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// Files whose checksums were checked.
    pub files_checked: usize,
    /// Bytes read.
    pub bytes_read: u64,
}

/// Read every file of the index in `dir` and check every checksum: the
/// manifest's whole-file crc, each section header and payload crc, and the
/// graph file's header and node-data crc.
pub fn verify(dir: &Path) -> Result<VerifyReport> {
    let manifest = Manifest::load(dir)?;
    let mut report = VerifyReport::default();
    for entry in &manifest.files {
        let path = dir.join(&entry.name);
        let bytes = std::fs::read(&path).map_err(io_err(&path))?;
        if bytes.len() as u64 != entry.bytes {
            return Err(FormatError::Truncated {
                path,
                expected: entry.bytes,
                found: bytes.len() as u64,
            });
        }
        let computed = crc32c(&bytes);
        if computed != entry.crc32c {
            return Err(FormatError::Checksum {
                path,
                section: "whole file (manifest entry)".into(),
                stored: entry.crc32c,
                computed,
            });
        }
        if entry.name == files::GRAPH {
            let h = GraphHeader::decode(&path, &bytes[..SECTOR.min(bytes.len())], bytes.len() as u64)?;
            let computed = crc32c(&bytes[SECTOR..]);
            if computed != h.data_crc32c {
                return Err(FormatError::Checksum {
                    path,
                    section: "node sectors".into(),
                    stored: h.data_crc32c,
                    computed,
                });
            }
        } else {
            section::check_bytes(&path, &bytes)?;
        }
        report.files_checked += 1;
        report.bytes_read += bytes.len() as u64;
    }
    Ok(report)
}

#[cfg(test)]
mod tests;

/// Placement of f32 vectors in the optional rerank file: after the 64-byte
/// section header and padding to 4096, vectors are packed `per_sector` to a
/// sector (never straddling), or, when one vector exceeds a sector, each
/// starts on its own run of `sectors_per_vector` sectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RerankLayout {
    /// Dimensions.
    pub dim: usize,
    /// Vectors per sector (≥ 1) or 1 when a vector spans sectors.
    pub per_sector: usize,
    /// Sectors per vector (1 when several fit one sector).
    pub sectors_per_vector: usize,
}

impl RerankLayout {
    /// Layout for `dim`-dimensional f32 vectors.
    pub fn new(dim: usize) -> Self {
        let bytes = 4 * dim;
        if bytes <= SECTOR {
            RerankLayout {
                dim,
                per_sector: SECTOR / bytes,
                sectors_per_vector: 1,
            }
        } else {
            RerankLayout {
                dim,
                per_sector: 1,
                sectors_per_vector: bytes.div_ceil(SECTOR),
            }
        }
    }
    /// Payload sectors for n vectors.
    pub fn sectors(&self, n: usize) -> usize {
        if self.sectors_per_vector == 1 {
            n.div_ceil(self.per_sector)
        } else {
            n * self.sectors_per_vector
        }
    }
    /// Bytes one read fetches.
    pub fn read_len(&self) -> usize {
        self.sectors_per_vector * SECTOR
    }
    /// Absolute file sector of vector `i` (the header sector is sector 0)
    /// and its byte offset within the read.
    pub fn locate(&self, i: usize) -> (u64, usize) {
        if self.sectors_per_vector == 1 {
            (1 + (i / self.per_sector) as u64, (i % self.per_sector) * 4 * self.dim)
        } else {
            (1 + (i * self.sectors_per_vector) as u64, 0)
        }
    }
}
