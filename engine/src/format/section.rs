//! The 64-byte header shared by every non-graph index file, and whole-file
//! read/write of such "section files".

use super::{crc32c, io_err, FormatError, Result, FORMAT_VERSION};
use std::path::Path;

/// Length of the common section header.
pub const SECTION_HEADER_LEN: usize = 64;

/// Decoded common header. `params` carry three file-specific u64 values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionHeader {
    /// Identifies the file kind.
    pub magic: [u8; 8],
    /// Length of the payload after the header.
    pub payload_len: u64,
    /// crc32c of the payload.
    pub payload_crc32c: u32,
    /// File-specific parameters (see docs/format.md).
    pub params: [u64; 3],
}

impl SectionHeader {
    /// The 64 header bytes (magic, version, lengths, crc32c of the payload
    /// and of the header; docs/format.md).
    pub fn encode(&self) -> [u8; SECTION_HEADER_LEN] {
        let mut b = [0u8; SECTION_HEADER_LEN];
        b[0..8].copy_from_slice(&self.magic);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(SECTION_HEADER_LEN as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.payload_len.to_le_bytes());
        b[24..28].copy_from_slice(&self.payload_crc32c.to_le_bytes());
        for (i, p) in self.params.iter().enumerate() {
            b[32 + 8 * i..40 + 8 * i].copy_from_slice(&p.to_le_bytes());
        }
        let crc = crc32c(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decode and validate the header bytes of `path` (kind = `magic`), given
    /// the file's actual size.
    pub fn decode(path: &Path, magic: &[u8; 8], kind: &'static str, b: &[u8], file_len: u64) -> Result<Self> {
        if b.len() < SECTION_HEADER_LEN {
            return Err(FormatError::Truncated {
                path: path.into(),
                expected: SECTION_HEADER_LEN as u64,
                found: file_len,
            });
        }
        let mut found = [0u8; 8];
        found.copy_from_slice(&b[0..8]);
        if &found != magic {
            return Err(FormatError::BadMagic {
                path: path.into(),
                kind,
                found,
            });
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let stored = u32_at(60);
        let computed = crc32c(&b[..60]);
        if stored != computed {
            return Err(FormatError::Checksum {
                path: path.into(),
                section: "header".into(),
                stored,
                computed,
            });
        }
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                path: path.into(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let h = SectionHeader {
            magic: found,
            payload_len: u64_at(16),
            payload_crc32c: u32_at(24),
            params: [u64_at(32), u64_at(40), u64_at(48)],
        };
        // A payload length near 2^64 is damage, not a size to add to.
        let expected = (SECTION_HEADER_LEN as u64).saturating_add(h.payload_len);
        if file_len != expected {
            return Err(FormatError::Truncated {
                path: path.into(),
                expected,
                found: file_len,
            });
        }
        Ok(h)
    }
}

/// Write a section file atomically: header (with payload crc) then payload.
pub fn write_section(path: &Path, magic: &[u8; 8], params: [u64; 3], payload: &[u8]) -> Result<()> {
    let h = SectionHeader {
        magic: *magic,
        payload_len: payload.len() as u64,
        payload_crc32c: crc32c(payload),
        params,
    };
    let mut bytes = Vec::with_capacity(SECTION_HEADER_LEN + payload.len());
    bytes.extend_from_slice(&h.encode());
    bytes.extend_from_slice(payload);
    super::write_file_atomic(path, &bytes)
}

/// Read a whole section file, check header and sizes, and (if `check_crc`)
/// the payload checksum. Returns the header and the payload.
pub fn read_section(
    path: &Path,
    magic: &[u8; 8],
    kind: &'static str,
    check_crc: bool,
) -> Result<(SectionHeader, Vec<u8>)> {
    let mut bytes = std::fs::read(path).map_err(io_err(path))?;
    let h = SectionHeader::decode(path, magic, kind, &bytes, bytes.len() as u64)?;
    if check_crc {
        check_payload(path, &h, &bytes[SECTION_HEADER_LEN..])?;
    }
    bytes.drain(..SECTION_HEADER_LEN);
    Ok((h, bytes))
}

/// As [`read_section`] without the crc check, reading the payload straight
/// into a [`HugeBytes`](crate::hugemem::HugeBytes) table (no second copy, no
/// move of the payload).
pub fn read_section_huge(
    path: &Path,
    magic: &[u8; 8],
    kind: &'static str,
) -> Result<(SectionHeader, crate::hugemem::HugeBytes)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let file_len = f.metadata().map_err(io_err(path))?.len();
    let mut head = Vec::with_capacity(SECTION_HEADER_LEN);
    (&mut f)
        .take(SECTION_HEADER_LEN as u64)
        .read_to_end(&mut head)
        .map_err(io_err(path))?;
    let h = SectionHeader::decode(path, magic, kind, &head, file_len)?;
    let body = crate::hugemem::HugeBytes::read_exact_from(&mut f, h.payload_len as usize).map_err(io_err(path))?;
    Ok((h, body))
}

/// Check a section file's header and payload crc, whatever its kind.
pub(super) fn check_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut magic = [0u8; 8];
    if bytes.len() >= 8 {
        magic.copy_from_slice(&bytes[..8]);
    }
    let h = SectionHeader::decode(path, &magic, "section", bytes, bytes.len() as u64)?;
    check_payload(path, &h, &bytes[SECTION_HEADER_LEN..])
}

/// The payload's crc32c against the header's.
fn check_payload(path: &Path, h: &SectionHeader, payload: &[u8]) -> Result<()> {
    let computed = crc32c(payload);
    if computed != h.payload_crc32c {
        return Err(FormatError::Checksum {
            path: path.into(),
            section: "payload".into(),
            stored: h.payload_crc32c,
            computed,
        });
    }
    Ok(())
}

/// Streams a section file whose payload is too large to hold twice in RAM:
/// the header is written last (payload length and crc known by then), then
/// the file is fsynced and renamed into place.
pub struct SectionWriter {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    magic: [u8; 8],
    params: [u64; 3],
    len: u64,
    crc: u32,
}

impl SectionWriter {
    /// Start writing `path` (through a temp file).
    pub fn create(path: &Path, magic: &[u8; 8], params: [u64; 3]) -> Result<Self> {
        use std::io::Write;
        let tmp = path.with_extension("tmp");
        let f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
        let mut file = std::io::BufWriter::with_capacity(1 << 20, f);
        file.write_all(&[0u8; SECTION_HEADER_LEN]).map_err(io_err(&tmp))?;
        Ok(SectionWriter {
            path: path.into(),
            tmp,
            file,
            magic: *magic,
            params,
            len: 0,
            crc: 0,
        })
    }

    /// Append payload bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.len += bytes.len() as u64;
        self.file.write_all(bytes).map_err(io_err(&self.tmp))
    }

    /// Write the header, fsync, rename into place and fsync the directory.
    pub fn finish(self) -> Result<()> {
        let h = SectionHeader {
            magic: self.magic,
            payload_len: self.len,
            payload_crc32c: self.crc,
            params: self.params,
        };
        super::seal_streamed(self.file, &self.tmp, &self.path, &h.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `section_file` fuzz target (input kept as
    /// fuzz/corpus/section_file/crash-payload-len-overflow): a header with a
    /// valid crc whose payload length is near u64::MAX overflowed adding
    /// the header's length to it.
    #[test]
    fn a_payload_length_near_2_64_is_truncation_not_overflow() {
        for payload_len in [u64::MAX, u64::MAX - 63, u64::MAX - 64] {
            let h = SectionHeader {
                magic: *b"QRYPQCOD",
                payload_len,
                payload_crc32c: 0,
                params: [0; 3],
            };
            let b = h.encode();
            let e = SectionHeader::decode(Path::new("x.qsec"), b"QRYPQCOD", "PQ codes", &b, 64).unwrap_err();
            assert!(matches!(e, FormatError::Truncated { found: 64, .. }), "{e}");
        }
    }
}
