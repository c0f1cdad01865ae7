//! Reading id files: `.ibin` (u32 n, u32 k, then ids) and TEXMEX `.ivecs`.
//!
//! Owns: their headers and size checks.

use super::*;

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
