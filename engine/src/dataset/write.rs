//! Writing vector and id files atomically (`.fbin` streamed or whole,
//! `.ibin`).
//!
//! Owns: the temporary-file-then-rename discipline for data set files.
//! Does not own: reading them (`super`).

use super::*;

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
