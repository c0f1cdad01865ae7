//! The header of each vector file format, read into one layout: element
//! type, row count, dimension, where the rows start and how far apart they
//! are (`.fbin`-style, TEXMEX `.fvecs`/`.bvecs`, `.npy`).
//!
//! Owns: parsing and checking headers. Does not own: reading rows
//! (`super::VectorFile`).

use super::*;

pub(super) type Layout = (ElemType, usize, usize, usize, usize);

/// `.fbin`-style: u32 n, u32 d, then the rows.
pub(super) fn bin_layout(path: &Path, map: &[u8], elem: ElemType) -> Result<Layout> {
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
pub(super) fn vecs_layout(path: &Path, map: &[u8], elem: ElemType) -> Result<Layout> {
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
pub(super) fn npy_layout(path: &Path, map: &[u8]) -> Result<Layout> {
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
