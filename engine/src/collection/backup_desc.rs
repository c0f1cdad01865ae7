//! The `SNAPSHOT` descriptor of a backup (docs/format.md, "Backup
//! directory"): what the backup holds, at which LSNs, and every file's
//! length and crc32c, under a checksum of its own.
//!
//! Owns: the descriptor's bytes ([`BackupDescriptor::encode`],
//! [`BackupDescriptor::decode`]), its version and limits, and which paths a
//! backup may hold ([`backup_path_kind`]). Does not own: writing or
//! checking the files it lists (`super::backup`, `super::restore`).

use super::snapshot::{plain_path, SnapshotFile};
use crate::wal::Lsn;
use crate::Metric;

/// The descriptor's file name in a backup directory.
pub const DESCRIPTOR_FILE: &str = "SNAPSHOT";
/// The descriptor's magic.
pub const DESCRIPTOR_MAGIC: &[u8; 4] = b"QSNP";
/// The descriptor format version this build writes and reads.
pub const DESCRIPTOR_VERSION: u32 = 1;
/// Largest caller metadata (quarryd's `collection.json`), bytes.
pub const MAX_META: usize = 1 << 20;
/// Most files a backup lists.
pub const MAX_FILES: usize = 1 << 20;
/// Longest file path, bytes.
pub const MAX_PATH: usize = 1024;
/// Longest collection name, bytes.
pub const MAX_NAME: usize = 64;

/// What a backup's `SNAPSHOT` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupDescriptor {
    /// The manifest's checkpoint C: records up to it are in the segments.
    pub checkpoint: Lsn,
    /// The backup's LSN S (≥ C): it holds exactly the records up to S;
    /// those after C are in its copy of the log.
    pub lsn: Lsn,
    /// When the backup began, Unix milliseconds.
    pub created_unix_ms: u64,
    /// Vector dimension.
    pub dim: u32,
    /// Metric.
    pub metric: Metric,
    /// The collection it was taken from (1..=64 of `[A-Za-z0-9_-]`).
    pub collection: String,
    /// The caller's metadata, opaque here (quarryd: `collection.json`).
    pub meta: Vec<u8>,
    /// Every other file of the backup, sorted by path, no path twice.
    pub files: Vec<SnapshotFile>,
}

/// What a path in a backup is, which decides how a restore places it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// A file of a segment directory (`seg-*/`, `bulk-*/`): immutable,
    /// so it may be shared by a hard link.
    Segment,
    /// The manifest, the tombstone file, or a log file (`wal/wal-*.log`):
    /// copied, never shared (a log is appended to).
    Copied,
}

/// What a path in a backup is, or why it may not be in one.
pub fn backup_path_kind(path: &str) -> Result<PathKind, String> {
    if path.len() > MAX_PATH || !plain_path(path) || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "path {path:?} is not a plain relative path of at most {MAX_PATH} printable ASCII bytes"
        ));
    }
    let top = path.split('/').next().unwrap_or_default();
    let depth = path.split('/').count();
    let small = depth == 1 && (path == super::MANIFEST_FILE || (path.starts_with("tomb-") && path.ends_with(".bin")));
    let log = depth == 2 && top == "wal" && path["wal/".len()..].starts_with("wal-") && path.ends_with(".log");
    let kind = if (top.starts_with("seg-") || top.starts_with("bulk-")) && depth >= 2 {
        Some(PathKind::Segment)
    } else if small || log {
        Some(PathKind::Copied)
    } else {
        None
    };
    kind.ok_or_else(|| format!("path {path:?} is none of manifest.json, tomb-*.bin, wal/wal-*.log, seg-*/…, bulk-*/…"))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl BackupDescriptor {
    /// The descriptor's bytes (docs/format.md, "Backup directory"). Files
    /// are written sorted by path.
    pub fn encode(&self) -> Vec<u8> {
        let mut files: Vec<&SnapshotFile> = self.files.iter().collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut b = Vec::with_capacity(64 + self.meta.len() + files.len() * 64);
        b.extend_from_slice(DESCRIPTOR_MAGIC);
        b.extend_from_slice(&DESCRIPTOR_VERSION.to_le_bytes());
        b.extend_from_slice(&self.checkpoint.to_le_bytes());
        b.extend_from_slice(&self.lsn.to_le_bytes());
        b.extend_from_slice(&self.created_unix_ms.to_le_bytes());
        b.extend_from_slice(&self.dim.to_le_bytes());
        b.push(self.metric.as_u8());
        b.push(self.collection.len() as u8);
        b.extend_from_slice(self.collection.as_bytes());
        b.extend_from_slice(&(self.meta.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.meta);
        b.extend_from_slice(&(files.len() as u32).to_le_bytes());
        for f in files {
            b.extend_from_slice(&(f.path.len() as u16).to_le_bytes());
            b.extend_from_slice(f.path.as_bytes());
            b.extend_from_slice(&f.len.to_le_bytes());
            b.extend_from_slice(&f.crc.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parse a descriptor. Err((byte offset, why)) on any damage: short,
    /// bad magic, checksum, version, a field out of range, a path that
    /// may not be in a backup, paths not strictly ascending, bytes after
    /// the last entry.
    pub fn decode(b: &[u8]) -> Result<BackupDescriptor, (u64, String)> {
        if b.len() < 4 + 4 + 8 * 3 + 4 + 2 + 4 + 4 + 4 {
            return Err((0, format!("{} bytes, shorter than the smallest descriptor", b.len())));
        }
        let body = crate::wal::magic_and_crc(b, DESCRIPTOR_MAGIC)?;
        let mut r = Reader { b: &b[..body], at: 4 };
        let version = r.u32()?;
        if version != DESCRIPTOR_VERSION {
            return Err((4, format!("version {version} (this build reads {DESCRIPTOR_VERSION})")));
        }
        let checkpoint = r.u64()?;
        let lsn = r.u64()?;
        if lsn < checkpoint {
            return Err((16, format!("LSN {lsn} is before the checkpoint {checkpoint}")));
        }
        let created_unix_ms = r.u64()?;
        let at = r.at;
        let dim = r.u32()?;
        if !(1..=65_536).contains(&dim) {
            return Err((at as u64, format!("dimension {dim} is out of range 1..=65536")));
        }
        let at = r.at;
        let code = r.take(1)?[0];
        let metric = Metric::from_u8(code).ok_or((at as u64, format!("unknown metric code {code}")))?;
        let at = r.at;
        let n = r.take(1)?[0] as usize;
        let name = std::str::from_utf8(r.take(n)?).unwrap_or_default();
        if !valid_name(name) {
            return Err((
                at as u64,
                "the collection name is not 1..=64 of [A-Za-z0-9_-]".to_string(),
            ));
        }
        let collection = name.to_string();
        let at = r.at;
        let m = r.u32()? as usize;
        if m > MAX_META {
            return Err((at as u64, format!("metadata of {m} bytes is over the limit {MAX_META}")));
        }
        let meta = r.take(m)?.to_vec();
        let at = r.at;
        let count = r.u32()? as usize;
        if count > MAX_FILES {
            return Err((at as u64, format!("{count} files is over the limit {MAX_FILES}")));
        }
        let mut files: Vec<SnapshotFile> = Vec::with_capacity(count.min(body / 14));
        for i in 0..count {
            let at = r.at;
            let p = r.u16()? as usize;
            let path = std::str::from_utf8(r.take(p)?)
                .map_err(|_| (at as u64, format!("file {i}: the path is not UTF-8")))?
                .to_string();
            backup_path_kind(&path).map_err(|why| (at as u64, format!("file {i}: {why}")))?;
            if files.last().is_some_and(|last| last.path >= path) {
                return Err((at as u64, format!("file {i}: {path:?} is not after the path before it")));
            }
            let len = r.u64()?;
            let crc = r.u32()?;
            files.push(SnapshotFile { path, len, crc });
        }
        if r.at != body {
            return Err((r.at as u64, format!("{} bytes after the last file entry", body - r.at)));
        }
        Ok(BackupDescriptor {
            checkpoint,
            lsn,
            created_unix_ms,
            dim,
            metric,
            collection,
            meta,
            files,
        })
    }

    /// Bytes of the listed files in all.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.len).sum()
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], (u64, String)> {
        if self.b.len() - self.at < n {
            return Err((
                self.at as u64,
                format!("{n} bytes needed, {} left before the checksum", self.b.len() - self.at),
            ));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, (u64, String)> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> Result<u32, (u64, String)> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64, (u64, String)> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BackupDescriptor {
        BackupDescriptor {
            checkpoint: 40,
            lsn: 57,
            created_unix_ms: 1_700_000_000_000,
            dim: 16,
            metric: Metric::Cosine,
            collection: "docs_v2".into(),
            meta: b"{\"name\":\"docs_v2\"}".to_vec(),
            files: vec![
                SnapshotFile {
                    path: "wal/wal-00000000000000000041.log".into(),
                    len: 99,
                    crc: 7,
                },
                SnapshotFile {
                    path: "manifest.json".into(),
                    len: 120,
                    crc: 1,
                },
                SnapshotFile {
                    path: "seg-00000000000000000040-00000002/index/graph.qgr".into(),
                    len: 8192,
                    crc: 3,
                },
            ],
        }
    }

    #[test]
    fn a_descriptor_round_trips_sorted_and_every_damage_is_named() {
        let d = sample();
        let b = d.encode();
        let back = BackupDescriptor::decode(&b).unwrap();
        let mut sorted = d.clone();
        sorted.files.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(back, sorted);
        assert_eq!(back.encode(), b, "a decoded descriptor re-encodes to its bytes");
        assert_eq!(back.bytes(), 99 + 120 + 8192);
        // Every flipped byte is caught (the checksum, or the check behind it).
        for i in 0..b.len() {
            let mut x = b.clone();
            x[i] ^= 0x20;
            assert!(BackupDescriptor::decode(&x).is_err(), "byte {i}");
        }
        for cut in [0, 3, 20, b.len() - 1] {
            assert!(BackupDescriptor::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut v = b.clone();
        v[4] = 2;
        let body = v.len() - 4;
        let crc = crc32c::crc32c(&v[..body]);
        v[body..].copy_from_slice(&crc.to_le_bytes());
        let (off, why) = BackupDescriptor::decode(&v).unwrap_err();
        assert_eq!(off, 4);
        assert!(why.contains("version 2"), "{why}");
    }

    #[test]
    fn only_the_files_of_a_collection_directory_may_be_listed() {
        for ok in [
            "manifest.json",
            "tomb-00000000000000000040-00000002.bin",
            "wal/wal-00000000000000000041.log",
            "seg-1/records.bin",
            "bulk-0000000001/index/ids.qsec",
        ] {
            assert!(backup_path_kind(ok).is_ok(), "{ok}");
        }
        assert_eq!(backup_path_kind("seg-1/vectors.bin"), Ok(PathKind::Segment));
        assert_eq!(backup_path_kind("wal/wal-1.log"), Ok(PathKind::Copied));
        for bad in [
            "",
            "/etc/passwd",
            "seg-1/../../x",
            "seg-1",
            "wal/followers.bin",
            "wal/epochs.bin",
            "NEEDS_SNAPSHOT",
            "SNAPSHOT",
            "seg-1/a b",
            "other/x",
        ] {
            assert!(backup_path_kind(bad).is_err(), "{bad:?}");
        }
        let mut d = sample();
        d.files.push(SnapshotFile {
            path: "manifest.json".into(),
            len: 1,
            crc: 1,
        });
        let (_, why) = BackupDescriptor::decode(&d.encode()).unwrap_err();
        assert!(why.contains("is not after"), "a path twice: {why}");
    }
}
