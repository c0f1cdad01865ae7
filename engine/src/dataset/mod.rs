//! Vector data sets on disk: reading `.fbin`/`.u8bin`/`.i8bin`, TEXMEX
//! `.fvecs`/`.bvecs` and `.npy` files, writing `.fbin` and `.ibin`, plus the
//! synthetic generator ([`synth`]), exact ground truth ([`groundtruth`]) and
//! local intrinsic dimension ([`lid`]).
//!
//! Owns: file formats, their validation and error messages, and atomic
//! writes (temp file + rename, so a killed process never leaves a half file
//! under the final name).
//! Does not own: the index's own on-disk format (see `format`).
//!
//! Every error names the file and what is wrong with it.

pub mod groundtruth;
mod ids;
mod layout;
pub mod lid;
pub mod synth;
mod write;

pub use ids::{read_ibin, read_ivecs};
use layout::{bin_layout, npy_layout, vecs_layout};
pub use write::{write_fbin, write_ibin, FbinWriter};

use memmap2::Mmap;
use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Everything that can go wrong reading or writing a data set.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The operating system refused an open, read, write, sync or rename.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The extension names no format this module reads.
    #[error(
        "{}: unknown vector file extension (expected .fbin, .u8bin, .i8bin, .fvecs, .bvecs or .npy)",
        path.display()
    )]
    UnknownFormat {
        /// The file concerned.
        path: PathBuf,
    },
    /// The file ends before the header or the data it announces.
    #[error("{}: truncated: {detail}", path.display())]
    Truncated {
        /// The file concerned.
        path: PathBuf,
        /// What was expected and what was found.
        detail: String,
    },
    /// The file is longer than its header says, or not a whole number of rows.
    #[error("{}: size mismatch: {detail}", path.display())]
    SizeMismatch {
        /// The file concerned.
        path: PathBuf,
        /// What was expected and what was found.
        detail: String,
    },
    /// The header cannot be parsed or holds impossible values (d = 0, ...).
    #[error("{}: bad header: {detail}", path.display())]
    BadHeader {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// An `.npy` element type other than `<f4`, `|u1`, `|i1`.
    #[error("{}: npy dtype {dtype} is not supported (expected '<f4', '|u1' or '|i1')", path.display())]
    UnsupportedDtype {
        /// The file concerned.
        path: PathBuf,
        /// The `descr` found in the header.
        dtype: String,
    },
    /// An `.npy` array that is not 2-D in C order.
    #[error("{}: unsupported npy layout: {detail}", path.display())]
    UnsupportedLayout {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A `.fvecs`/`.bvecs` row whose dimension differs from the first row's.
    #[error("{}: row {row} has dimension {found}, but row 0 has {expected}", path.display())]
    InconsistentDim {
        /// The file concerned.
        path: PathBuf,
        /// The offending row.
        row: usize,
        /// Its dimension field.
        found: i64,
        /// The first row's dimension.
        expected: usize,
    },
    /// A NaN or infinite value, at the first place one occurs.
    #[error("{}: row {row}, column {col} is {value} (not finite)", path.display())]
    NonFinite {
        /// The file concerned.
        path: PathBuf,
        /// Row of the first non-finite value.
        row: usize,
        /// Column of the first non-finite value.
        col: usize,
        /// The value.
        value: f32,
    },
    /// Arguments that do not fit together for writing a file (data length
    /// not n × d, sizes over u32, ...).
    #[error("{}: {detail}", path.display())]
    InvalidInput {
        /// The file that was to be written.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Arguments that do not fit together for an in-memory computation
    /// (ground truth, LID, generator parameters); no file is involved.
    #[error("{0}")]
    InvalidArgument(String),
}

/// Result of every dataset operation.
pub type Result<T> = std::result::Result<T, DatasetError>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The element type stored in a vector file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElemType {
    /// 32-bit float, little-endian.
    F32,
    /// Unsigned byte.
    U8,
    /// Signed byte.
    I8,
}

impl ElemType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            ElemType::F32 => 4,
            ElemType::U8 | ElemType::I8 => 1,
        }
    }

    /// Short name used in messages: `f32`, `u8`, `i8`.
    pub fn name(self) -> &'static str {
        match self {
            ElemType::F32 => "f32",
            ElemType::U8 => "u8",
            ElemType::I8 => "i8",
        }
    }
}

/// A file format [`VectorFile`] reads, chosen from the extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.fbin`: u32 n, u32 d, then n × d f32.
    Fbin,
    /// `.u8bin`: u32 n, u32 d, then n × d u8.
    U8bin,
    /// `.i8bin`: u32 n, u32 d, then n × d i8.
    I8bin,
    /// `.fvecs`: per row, i32 d then d f32.
    Fvecs,
    /// `.bvecs`: per row, i32 d then d u8.
    Bvecs,
    /// `.npy` v1/v2/v3, 2-D, C order, `<f4`, `|u1` or `|i1`.
    Npy,
}

impl Format {
    /// The format named by `path`'s extension (case-insensitive).
    pub fn from_path(path: &Path) -> Result<Format> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("fbin") => Ok(Format::Fbin),
            Some("u8bin") => Ok(Format::U8bin),
            Some("i8bin") => Ok(Format::I8bin),
            Some("fvecs") => Ok(Format::Fvecs),
            Some("bvecs") => Ok(Format::Bvecs),
            Some("npy") => Ok(Format::Npy),
            _ => Err(DatasetError::UnknownFormat {
                path: path.to_path_buf(),
            }),
        }
    }
}

/// A memory-mapped, validated file of `len()` vectors of `dim()` elements.
///
/// Opening checks the header and that the file size is exactly what the
/// header announces; rows are converted to f32 on read.
pub struct VectorFile {
    path: PathBuf,
    map: Mmap,
    /// The same file, for reads that bypass the mapping ([`Self::pread_rows_into`]).
    file: File,
    format: Format,
    elem: ElemType,
    n: usize,
    d: usize,
    /// Byte offset of row 0's first element.
    data_offset: usize,
    /// Bytes from one row's first element to the next row's.
    row_stride: usize,
}

impl std::fmt::Debug for VectorFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorFile")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("elem", &self.elem)
            .field("n", &self.n)
            .field("d", &self.d)
            .finish()
    }
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn read_i32(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

impl VectorFile {
    /// Opens and validates `path`; the format comes from its extension.
    pub fn open(path: impl AsRef<Path>) -> Result<VectorFile> {
        let path = path.as_ref();
        let format = Format::from_path(path)?;
        let file = File::open(path).map_err(io_err(path))?;
        let len = file.metadata().map_err(io_err(path))?.len();
        if len == 0 {
            return Err(DatasetError::Truncated {
                path: path.to_path_buf(),
                detail: "file is empty".into(),
            });
        }
        // SAFETY: the mapping is read-only and private to this process. Data
        // sets are not modified while Quarry reads them (writers in this
        // module replace files by rename, which leaves an open mapping on
        // the old inode intact); a concurrent truncation by another program
        // could still raise SIGBUS, which is the accepted risk of mmap.
        let map = unsafe { Mmap::map(&file) }.map_err(io_err(path))?;
        let (elem, n, d, data_offset, row_stride) = match format {
            Format::Fbin => bin_layout(path, &map, ElemType::F32)?,
            Format::U8bin => bin_layout(path, &map, ElemType::U8)?,
            Format::I8bin => bin_layout(path, &map, ElemType::I8)?,
            Format::Fvecs => vecs_layout(path, &map, ElemType::F32)?,
            Format::Bvecs => vecs_layout(path, &map, ElemType::U8)?,
            Format::Npy => npy_layout(path, &map)?,
        };
        Ok(VectorFile {
            path: path.to_path_buf(),
            map,
            file,
            format,
            elem,
            n,
            d,
            data_offset,
            row_stride,
        })
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True when the file holds no vectors.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Elements per vector.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// The stored element type.
    pub fn elem_type(&self) -> ElemType {
        self.elem
    }

    /// The file's format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The path the file was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored bytes of row `i` (`dim() × elem_type().size()` bytes).
    /// Panics if `i >= len()`.
    pub fn raw_row(&self, i: usize) -> &[u8] {
        assert!(
            i < self.n,
            "{}: row {i} out of range ({} rows)",
            self.path.display(),
            self.n
        );
        let at = self.data_offset + i * self.row_stride;
        &self.map[at..at + self.d * self.elem.size()]
    }

    /// Row `i` converted to f32 into `out`. Panics if `i >= len()` or
    /// `out.len() != dim()`.
    pub fn row_f32(&self, i: usize, out: &mut [f32]) {
        assert_eq!(out.len(), self.d, "output buffer length must equal dim");
        decode(self.elem, self.raw_row(i), out);
    }

    /// Rows `start .. start + count` as f32, row-major. Panics if the range
    /// is out of bounds.
    pub fn read_rows_f32(&self, start: usize, count: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; count * self.d];
        self.read_rows_into(start, &mut out);
        out
    }

    /// Rows from `start` into `out` (whose length must be a multiple of
    /// `dim()`), as f32. Panics if the range is out of bounds.
    pub fn read_rows_into(&self, start: usize, out: &mut [f32]) {
        let count = self.rows_in(start, out.len());
        let row_bytes = self.d * self.elem.size();
        if self.row_stride == row_bytes {
            let at = self.data_offset + start * row_bytes;
            decode(self.elem, &self.map[at..at + count * row_bytes], out);
        } else {
            for (r, o) in out.chunks_exact_mut(self.d).enumerate() {
                self.row_f32(start + r, o);
            }
        }
    }

    /// As [`Self::read_rows_into`], but read with `pread` rather than
    /// through the mapping: the pages go to the page cache, not into this
    /// process's resident set (a build larger than its RAM budget streams
    /// the file several times). Errors name the file.
    pub fn pread_rows_into(&self, start: usize, out: &mut [f32]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let count = self.rows_in(start, out.len());
        if count == 0 {
            return Ok(());
        }
        let row_bytes = self.d * self.elem.size();
        let span = (count - 1) * self.row_stride + row_bytes;
        let mut buf = vec![0u8; span];
        self.file
            .read_exact_at(&mut buf, (self.data_offset + start * self.row_stride) as u64)
            .map_err(io_err(&self.path))?;
        for (r, o) in out.chunks_exact_mut(self.d).enumerate() {
            decode(self.elem, &buf[r * self.row_stride..r * self.row_stride + row_bytes], o);
        }
        Ok(())
    }

    /// Rows an output of `len` floats from row `start` holds. Panics
    /// unless `len` is whole rows and they are in range.
    fn rows_in(&self, start: usize, len: usize) -> usize {
        assert!(len.is_multiple_of(self.d), "output length must be a multiple of dim");
        let count = len / self.d;
        assert!(
            start.checked_add(count).is_some_and(|e| e <= self.n),
            "{}: rows {start}..{} out of range ({} rows)",
            self.path.display(),
            start + count,
            self.n
        );
        count
    }

    /// The whole file as f32, row-major.
    pub fn to_vec_f32(&self) -> Vec<f32> {
        self.read_rows_f32(0, self.n)
    }

    /// The whole file as f32: borrowed straight from the mapping when it is
    /// already contiguous, aligned little-endian f32 (`.fbin`, most `.npy`),
    /// otherwise converted into a new buffer.
    pub fn f32_data(&self) -> Cow<'_, [f32]> {
        let row_bytes = self.d * self.elem.size();
        if cfg!(target_endian = "little") && self.elem == ElemType::F32 && self.row_stride == row_bytes {
            let bytes = &self.map[self.data_offset..self.data_offset + self.n * row_bytes];
            if let Ok(s) = bytemuck::try_cast_slice::<u8, f32>(bytes) {
                return Cow::Borrowed(s);
            }
        }
        Cow::Owned(self.to_vec_f32())
    }

    /// Errors with the first row and column holding NaN or ±Inf. Byte
    /// formats always pass.
    pub fn check_finite(&self) -> Result<()> {
        // No rows: nothing to check, and `dim()` of an empty file is bounded
        // by nothing (an 8-byte .fbin may say 0 x 4e9), so no row buffer.
        if self.elem != ElemType::F32 || self.n == 0 {
            return Ok(());
        }
        // Read in blocks of about 16 MiB with pread, so checking a file
        // larger than RAM does not pull it into this process's resident set.
        let per = ((16usize << 20) / (self.d * 4)).max(1);
        let mut buf = vec![0.0f32; per.min(self.n) * self.d];
        let mut first = 0;
        while first < self.n {
            let c = per.min(self.n - first);
            let block = &mut buf[..c * self.d];
            self.pread_rows_into(first, block)?;
            if let Some(at) = block.iter().position(|x| !x.is_finite()) {
                return Err(DatasetError::NonFinite {
                    path: self.path.clone(),
                    row: first + at / self.d,
                    col: at % self.d,
                    value: block[at],
                });
            }
            first += c;
        }
        Ok(())
    }
}

fn decode(elem: ElemType, bytes: &[u8], out: &mut [f32]) {
    match elem {
        ElemType::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes(b.try_into().expect("4 bytes"));
            }
        }
        ElemType::U8 => {
            for (o, b) in out.iter_mut().zip(bytes) {
                *o = *b as f32;
            }
        }
        ElemType::I8 => {
            for (o, b) in out.iter_mut().zip(bytes) {
                *o = *b as i8 as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests;

/// A file shorter than its header promises is truncated; a longer one does
/// not match its header either.
fn check_len(path: &Path, len: u64, expected: u64, detail: String) -> Result<()> {
    if len < expected {
        return Err(DatasetError::Truncated {
            path: path.to_path_buf(),
            detail,
        });
    }
    if len > expected {
        return Err(DatasetError::SizeMismatch {
            path: path.to_path_buf(),
            detail,
        });
    }
    Ok(())
}
