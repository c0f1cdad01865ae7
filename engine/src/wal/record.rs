//! The write-ahead log's bytes: segment file names and headers, and the
//! record codec (docs/format.md, "Write-ahead log").
//!
//! Owns: encoding and decoding one record and one segment header, and the
//! scan that tells a torn tail from corruption. Does not own: files, LSN
//! assignment or syncing (`super`).

use super::Lsn;

/// The segment file magic.
pub const MAGIC: &[u8; 4] = b"QWAL";
/// The segment format version.
pub const VERSION: u32 = 1;
/// Segment header bytes.
pub const HEADER: usize = 16;
/// Record header bytes (len, crc, lsn, synced).
pub const RECORD_HEADER: usize = 24;

/// Check the framing shared by the log's small files (`followers.bin`,
/// `epochs.bin`): `magic`, version u32, count u32, then the entries, then
/// a crc32c of everything before it. Returns the entry count and the end
/// of the entries (the trailer's offset), or Err((offset, why)); `what`
/// names the file's contents in the message.
pub(crate) fn small_file(b: &[u8], magic: &[u8; 4], version: u32, what: &str) -> Result<(u32, usize), (u64, String)> {
    if b.len() < 16 {
        return Err((0, format!("{} bytes, shorter than the smallest {what} (16)", b.len())));
    }
    let body = magic_and_crc(b, magic)?;
    let found = u32::from_le_bytes(b[4..8].try_into().expect("4 bytes"));
    if found != version {
        return Err((4, format!("version {found} (this build reads {version})")));
    }
    Ok((u32::from_le_bytes(b[8..12].try_into().expect("4 bytes")), body))
}

/// Check a small file's `magic` (its first 4 bytes; `b` is at least 8
/// long) and its trailing crc32c over every byte before it. Returns the
/// offset of the trailer, or Err((offset, why)).
pub(crate) fn magic_and_crc(b: &[u8], magic: &[u8; 4]) -> Result<usize, (u64, String)> {
    if &b[..4] != magic {
        return Err((0, format!("bad magic (expected {})", String::from_utf8_lossy(magic))));
    }
    let body = b.len() - 4;
    let stored = u32::from_le_bytes(b[body..].try_into().expect("4 bytes"));
    let crc = crc32c::crc32c(&b[..body]);
    if crc != stored {
        return Err((
            body as u64,
            format!("checksum mismatch (stored {stored:#010x}, computed {crc:#010x})"),
        ));
    }
    Ok(body)
}

pub(crate) fn seg_name(first: Lsn) -> String {
    format!("wal-{first:020}.log")
}

pub(crate) fn parse_seg_name(n: &str) -> Option<Lsn> {
    n.strip_prefix("wal-")?.strip_suffix(".log")?.parse().ok()
}

/// Encode one record; `synced` is the last LSN durable before it.
pub fn encode_record(lsn: Lsn, synced: Lsn, body: &[u8], out: &mut Vec<u8>) {
    let len = (body.len() as u32).to_le_bytes();
    let start = out.len();
    out.extend_from_slice(&len);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&synced.to_le_bytes());
    out.extend_from_slice(body);
    let mut crc = crc32c::crc32c(&len);
    crc = crc32c::crc32c_append(crc, &out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A decoded record's header.
pub struct RecordHead {
    /// The record's LSN.
    pub lsn: Lsn,
    /// The last LSN durable when it was written.
    pub synced: Lsn,
}

/// Decode the record at `b[off..]`: Ok((head, body range, next offset)),
/// or Err(why) if it is incomplete or damaged (or `off` is past the end).
pub fn decode_record(b: &[u8], off: usize, max: usize) -> Result<(RecordHead, std::ops::Range<usize>, usize), String> {
    let left = b.len().saturating_sub(off);
    if left < RECORD_HEADER {
        return Err(format!("{left} bytes left, short of a record header"));
    }
    let len = u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(b[off + 4..off + 8].try_into().expect("4 bytes"));
    let lsn = u64::from_le_bytes(b[off + 8..off + 16].try_into().expect("8 bytes"));
    let synced = u64::from_le_bytes(b[off + 16..off + 24].try_into().expect("8 bytes"));
    if len > max {
        return Err(format!("record length {len} is over the limit {max}"));
    }
    let end = off + RECORD_HEADER + len;
    if b.len() < end {
        return Err(format!("record of {len} bytes runs past the end of the file"));
    }
    let mut c = crc32c::crc32c(&b[off..off + 4]);
    c = crc32c::crc32c_append(c, &b[off + 8..end]);
    if c != crc {
        return Err(format!("checksum mismatch (stored {crc:#010x}, computed {c:#010x})"));
    }
    Ok((RecordHead { lsn, synced }, off + RECORD_HEADER..end, end))
}

pub(crate) fn header(first: Lsn) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER);
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&first.to_le_bytes());
    h
}

/// Whether a valid record from offset `from` on says LSN `bad` was
/// already durable when it was written (then the bad record at `bad` is
/// corruption, not a torn tail).
pub(crate) fn durable_record_after(b: &[u8], from: usize, bad: Lsn, max: usize) -> bool {
    (from..b.len().saturating_sub(RECORD_HEADER - 1))
        .any(|o| matches!(decode_record(b, o, max), Ok((h, _, _)) if h.lsn > bad && h.synced >= bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `wal_record` fuzz target: an offset past the end of the
    /// buffer panicked computing the bytes left (`b.len() - off`).
    #[test]
    fn an_offset_past_the_end_is_an_error() {
        let mut b = Vec::new();
        encode_record(1, 0, b"x", &mut b);
        for off in [b.len(), b.len() + 1, b.len() + 4096, usize::MAX] {
            assert!(decode_record(&b, off, 16).is_err(), "offset {off}");
        }
        assert!(decode_record(&b, 0, 16).is_ok());
    }
}
