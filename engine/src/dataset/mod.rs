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
pub mod lid;
pub mod synth;

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
        assert!(
            out.len().is_multiple_of(self.d),
            "output length must be a multiple of dim"
        );
        let count = out.len() / self.d;
        assert!(
            start.checked_add(count).is_some_and(|e| e <= self.n),
            "{}: rows {start}..{} out of range ({} rows)",
            self.path.display(),
            start + count,
            self.n
        );
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
        let mut row = vec![0.0f32; self.d];
        for i in 0..self.n {
            self.row_f32(i, &mut row);
            if let Some(col) = row.iter().position(|x| !x.is_finite()) {
                return Err(DatasetError::NonFinite {
                    path: self.path.clone(),
                    row: i,
                    col,
                    value: row[col],
                });
            }
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

type Layout = (ElemType, usize, usize, usize, usize);

/// `.fbin`-style: u32 n, u32 d, then the rows.
fn bin_layout(path: &Path, map: &[u8], elem: ElemType) -> Result<Layout> {
    let len = map.len() as u64;
    if len < 8 {
        return Err(DatasetError::Truncated {
            path: path.to_path_buf(),
            detail: format!("file has {len} bytes, less than the 8-byte header"),
        });
    }
    let n = read_u32(map, 0) as u64;
    let d = read_u32(map, 4) as u64;
    if d == 0 {
        return Err(DatasetError::BadHeader {
            path: path.to_path_buf(),
            detail: format!("header says {n} x 0: dimension must be > 0"),
        });
    }
    // u32 x u32 x 4 can pass 2^64: checked, or a wrapped size could match
    // a tiny file.
    let expected = n
        .checked_mul(d)
        .and_then(|x| x.checked_mul(elem.size() as u64))
        .and_then(|x| x.checked_add(8));
    let detail = format!(
        "header says {n} x {d} {} = {} bytes but file has {len} bytes",
        elem.name(),
        expected.map_or("more than 2^64".to_string(), |e| e.to_string())
    );
    check_len(path, len, expected.unwrap_or(u64::MAX), detail)?;
    let (n, d) = (n as usize, d as usize);
    Ok((elem, n, d, 8, d * elem.size()))
}

/// TEXMEX `.fvecs`/`.bvecs`: every row is i32 d then d elements.
fn vecs_layout(path: &Path, map: &[u8], elem: ElemType) -> Result<Layout> {
    let len = map.len();
    if len < 4 {
        return Err(DatasetError::Truncated {
            path: path.to_path_buf(),
            detail: format!("file has {len} bytes, less than one 4-byte dimension field"),
        });
    }
    let d0 = read_i32(map, 0);
    if d0 <= 0 {
        return Err(DatasetError::BadHeader {
            path: path.to_path_buf(),
            detail: format!("row 0's dimension field is {d0}; it must be > 0"),
        });
    }
    let d = d0 as usize;
    let row = 4 + d * elem.size();
    if !len.is_multiple_of(row) {
        return Err(DatasetError::Truncated {
            path: path.to_path_buf(),
            detail: format!(
                "file has {len} bytes, not a whole number of {row}-byte rows (d = {d} {}): \
                 {} rows and {} bytes left over",
                elem.name(),
                len / row,
                len % row
            ),
        });
    }
    let n = len / row;
    let last = read_i32(map, (n - 1) * row);
    if last != d0 {
        return Err(DatasetError::InconsistentDim {
            path: path.to_path_buf(),
            row: n - 1,
            found: last as i64,
            expected: d,
        });
    }
    Ok((elem, n, d, 4, row))
}

/// `.npy` v1, v2 or v3; 2-D, C order, `<f4` / `|u1` / `|i1`.
fn npy_layout(path: &Path, map: &[u8]) -> Result<Layout> {
    let bad = |detail: String| DatasetError::BadHeader {
        path: path.to_path_buf(),
        detail,
    };
    if map.len() < 10 {
        return Err(DatasetError::Truncated {
            path: path.to_path_buf(),
            detail: format!("file has {} bytes, less than an npy preamble", map.len()),
        });
    }
    if &map[..6] != b"\x93NUMPY" {
        return Err(bad("missing the \\x93NUMPY magic string".into()));
    }
    let major = map[6];
    let (hlen, hstart) = match major {
        1 => (u16::from_le_bytes([map[8], map[9]]) as usize, 10),
        2 | 3 => {
            if map.len() < 12 {
                return Err(DatasetError::Truncated {
                    path: path.to_path_buf(),
                    detail: format!("file has {} bytes, less than an npy v2 preamble", map.len()),
                });
            }
            (read_u32(map, 8) as usize, 12)
        }
        v => return Err(bad(format!("npy format version {v} is not 1, 2 or 3"))),
    };
    if map.len() < hstart + hlen {
        return Err(DatasetError::Truncated {
            path: path.to_path_buf(),
            detail: format!("npy header announces {hlen} bytes but the file has {} bytes", map.len()),
        });
    }
    let header = std::str::from_utf8(&map[hstart..hstart + hlen]).map_err(|_| bad("npy header is not text".into()))?;
    let h = parse_npy_header(header).map_err(bad)?;
    let elem = match h.descr.as_str() {
        "<f4" => ElemType::F32,
        "|u1" | "<u1" | ">u1" | "=u1" | "u1" => ElemType::U8,
        "|i1" | "<i1" | ">i1" | "=i1" | "i1" => ElemType::I8,
        _ => {
            return Err(DatasetError::UnsupportedDtype {
                path: path.to_path_buf(),
                dtype: format!("'{}'", h.descr),
            })
        }
    };
    if h.fortran_order {
        return Err(DatasetError::UnsupportedLayout {
            path: path.to_path_buf(),
            detail: "array is in Fortran order; only C order is supported".into(),
        });
    }
    if h.shape.len() != 2 {
        return Err(DatasetError::UnsupportedLayout {
            path: path.to_path_buf(),
            detail: format!(
                "shape {:?} has {} dimensions; only 2-D arrays are supported",
                h.shape,
                h.shape.len()
            ),
        });
    }
    let (n, d) = (h.shape[0], h.shape[1]);
    if d == 0 {
        return Err(bad(format!("shape ({n}, 0): dimension must be > 0")));
    }
    let offset = hstart + hlen;
    let expected = (n as u64)
        .checked_mul(d as u64)
        .and_then(|x| x.checked_mul(elem.size() as u64))
        .and_then(|x| x.checked_add(offset as u64));
    let len = map.len() as u64;
    let detail = format!(
        "header says {n} x {d} {} = {} bytes but file has {len} bytes",
        elem.name(),
        expected.map_or("more than 2^64".to_string(), |e| e.to_string())
    );
    check_len(path, len, expected.unwrap_or(u64::MAX), detail)?;
    Ok((elem, n, d, offset, d * elem.size()))
}

struct NpyHeader {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// Parses the Python dict literal numpy writes, e.g.
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (10, 3), }`.
fn parse_npy_header(h: &str) -> std::result::Result<NpyHeader, String> {
    fn value_after<'a>(h: &'a str, key: &str) -> std::result::Result<&'a str, String> {
        let at = h
            .find(&format!("'{key}'"))
            .or_else(|| h.find(&format!("\"{key}\"")))
            .ok_or_else(|| format!("npy header has no '{key}' key: {}", h.trim()))?;
        let rest = &h[at + key.len() + 2..];
        let rest = rest.trim_start();
        let rest = rest
            .strip_prefix(':')
            .ok_or_else(|| format!("npy header: no ':' after '{key}'"))?;
        Ok(rest.trim_start())
    }
    let d = value_after(h, "descr")?;
    let descr = match d.chars().next() {
        Some(q @ ('\'' | '"')) => {
            let end = d[1..]
                .find(q)
                .ok_or_else(|| "npy header: unterminated descr string".to_string())?;
            d[1..1 + end].to_string()
        }
        _ => {
            // A structured dtype (a list); reported as unsupported by the caller.
            // (At most 40 characters shown, cut on a character boundary.)
            let end = d
                .find(']')
                .map(|e| e + 1)
                .unwrap_or_else(|| d.char_indices().nth(40).map_or(d.len(), |(i, _)| i));
            d[..end].to_string()
        }
    };
    let f = value_after(h, "fortran_order")?;
    let fortran_order = if f.starts_with("True") {
        true
    } else if f.starts_with("False") {
        false
    } else {
        return Err("npy header: fortran_order is neither True nor False".into());
    };
    let s = value_after(h, "shape")?;
    let s = s
        .strip_prefix('(')
        .ok_or_else(|| "npy header: shape is not a tuple".to_string())?;
    let end = s
        .find(')')
        .ok_or_else(|| "npy header: unterminated shape tuple".to_string())?;
    let shape = s[..end]
        .split(',')
        .map(|t| t.trim().trim_end_matches('L'))
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<usize>()
                .map_err(|_| format!("npy header: shape entry '{t}' is not a number"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(NpyHeader {
        descr,
        fortran_order,
        shape,
    })
}

/// A file being written under a temporary name beside its destination; it
/// takes the final name only on [`AtomicFile::commit`], and the temporary
/// file is removed if it is dropped uncommitted.
struct AtomicFile {
    tmp: PathBuf,
    dest: PathBuf,
    out: Option<BufWriter<File>>,
}

impl AtomicFile {
    fn create(dest: &Path) -> Result<AtomicFile> {
        let name = dest
            .file_name()
            .ok_or_else(|| DatasetError::InvalidInput {
                path: dest.to_path_buf(),
                detail: "not a file name".into(),
            })?
            .to_string_lossy();
        let tmp = dest.with_file_name(format!(".{name}.tmp{}", std::process::id()));
        let file = File::create(&tmp).map_err(io_err(&tmp))?;
        Ok(AtomicFile {
            tmp,
            dest: dest.to_path_buf(),
            out: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        let out = self.out.as_mut().expect("not yet committed");
        out.write_all(bytes).map_err(io_err(&self.tmp))
    }

    fn commit(mut self) -> Result<()> {
        let out = self.out.take().expect("committed once");
        let file = out.into_inner().map_err(|e| DatasetError::Io {
            path: self.tmp.clone(),
            source: e.into_error(),
        })?;
        file.sync_all().map_err(io_err(&self.tmp))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.dest).map_err(io_err(&self.dest))?;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn header_u32(path: &Path, what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| DatasetError::InvalidInput {
        path: path.to_path_buf(),
        detail: format!("{what} = {v} does not fit the u32 header field"),
    })
}

#[cfg(target_endian = "little")]
fn f32_bytes(v: &[f32]) -> Cow<'_, [u8]> {
    Cow::Borrowed(bytemuck::cast_slice(v))
}

#[cfg(not(target_endian = "little"))]
fn f32_bytes(v: &[f32]) -> Cow<'_, [u8]> {
    Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

#[cfg(target_endian = "little")]
fn u32_bytes(v: &[u32]) -> Cow<'_, [u8]> {
    Cow::Borrowed(bytemuck::cast_slice(v))
}

#[cfg(not(target_endian = "little"))]
fn u32_bytes(v: &[u32]) -> Cow<'_, [u8]> {
    Cow::Owned(v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

/// Streams an `.fbin` file row block by row block; the file appears under
/// its final name only when [`FbinWriter::finish`] has checked that exactly
/// `n` rows were written.
pub struct FbinWriter {
    file: AtomicFile,
    n: usize,
    d: usize,
    rows: usize,
}

impl FbinWriter {
    /// Starts `path` (as a temporary file) with header `n x d`.
    pub fn create(path: impl AsRef<Path>, n: usize, d: usize) -> Result<FbinWriter> {
        let path = path.as_ref();
        let (n32, d32) = (header_u32(path, "n", n)?, header_u32(path, "d", d)?);
        if d == 0 {
            return Err(DatasetError::InvalidInput {
                path: path.to_path_buf(),
                detail: "dimension must be > 0".into(),
            });
        }
        let mut file = AtomicFile::create(path)?;
        file.write_all(&n32.to_le_bytes())?;
        file.write_all(&d32.to_le_bytes())?;
        Ok(FbinWriter { file, n, d, rows: 0 })
    }

    /// Appends whole rows (`rows.len()` a multiple of d).
    pub fn write_rows(&mut self, rows: &[f32]) -> Result<()> {
        if !rows.len().is_multiple_of(self.d) || self.rows + rows.len() / self.d > self.n {
            return Err(DatasetError::InvalidInput {
                path: self.file.dest.clone(),
                detail: format!(
                    "writing {} values ({} rows of d = {}) after {} of {} rows",
                    rows.len(),
                    rows.len() as f64 / self.d as f64,
                    self.d,
                    self.rows,
                    self.n
                ),
            });
        }
        self.file.write_all(&f32_bytes(rows))?;
        self.rows += rows.len() / self.d;
        Ok(())
    }

    /// Checks the row count, syncs, and renames the file into place.
    pub fn finish(self) -> Result<()> {
        if self.rows != self.n {
            return Err(DatasetError::InvalidInput {
                path: self.file.dest.clone(),
                detail: format!("header says {} rows but {} were written", self.n, self.rows),
            });
        }
        self.file.commit()
    }
}

/// Writes `n` rows of `d` f32 as `.fbin`, atomically.
pub fn write_fbin(path: impl AsRef<Path>, n: usize, d: usize, data: &[f32]) -> Result<()> {
    let path = path.as_ref();
    if n.checked_mul(d) != Some(data.len()) {
        return Err(DatasetError::InvalidInput {
            path: path.to_path_buf(),
            detail: format!("{n} x {d} values expected but data has {}", data.len()),
        });
    }
    let mut w = FbinWriter::create(path, n, d)?;
    w.write_rows(data)?;
    w.finish()
}

/// Writes `n` rows of `k` ids as `.ibin` (u32 n, u32 k, then ids), atomically.
pub fn write_ibin(path: impl AsRef<Path>, n: usize, k: usize, ids: &[u32]) -> Result<()> {
    let path = path.as_ref();
    if n.checked_mul(k) != Some(ids.len()) {
        return Err(DatasetError::InvalidInput {
            path: path.to_path_buf(),
            detail: format!("{n} x {k} ids expected but got {}", ids.len()),
        });
    }
    let (n32, k32) = (header_u32(path, "n", n)?, header_u32(path, "k", k)?);
    let mut file = AtomicFile::create(path)?;
    file.write_all(&n32.to_le_bytes())?;
    file.write_all(&k32.to_le_bytes())?;
    file.write_all(&u32_bytes(ids))?;
    file.commit()
}

/// Reads an `.ibin` file: `(n, k, ids)` with ids row-major, n × k.
pub fn read_ibin(path: impl AsRef<Path>) -> Result<(usize, usize, Vec<u32>)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let len = bytes.len() as u64;
    if len < 8 {
        return Err(DatasetError::Truncated {
            path: path.to_path_buf(),
            detail: format!("file has {len} bytes, less than the 8-byte header"),
        });
    }
    let n = read_u32(&bytes, 0) as u64;
    let k = read_u32(&bytes, 4) as u64;
    let expected = n
        .checked_mul(k)
        .and_then(|x| x.checked_mul(4))
        .and_then(|x| x.checked_add(8));
    let detail = format!(
        "header says {n} x {k} u32 = {} bytes but file has {len} bytes",
        expected.map_or("more than 2^64".to_string(), |e| e.to_string())
    );
    check_len(path, len, expected.unwrap_or(u64::MAX), detail)?;
    let ids = bytes[8..]
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    Ok((n as usize, k as usize, ids))
}

/// Reads a TEXMEX `.ivecs` file (per row: i32 k then k i32 ids), e.g. the
/// ground truth shipped with SIFT/GIST: `(n, k, ids)` row-major.
pub fn read_ivecs(path: impl AsRef<Path>) -> Result<(usize, usize, Vec<u32>)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    if bytes.len() < 4 {
        return Err(DatasetError::Truncated {
            path: path.to_path_buf(),
            detail: format!("file has {} bytes, less than one row header", bytes.len()),
        });
    }
    let (_, n, k, _, row) = vecs_layout(path, &bytes, ElemType::F32)?;
    let mut ids = Vec::with_capacity(n * k);
    for r in 0..n {
        let at = r * row;
        let found = read_i32(&bytes, at);
        if found as i64 != k as i64 {
            return Err(DatasetError::InconsistentDim {
                path: path.to_path_buf(),
                row: r,
                found: found as i64,
                expected: k,
            });
        }
        ids.extend((0..k).map(|j| read_u32(&bytes, at + 4 + 4 * j)));
    }
    Ok((n, k, ids))
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
