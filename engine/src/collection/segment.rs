//! An immutable disk segment of a collection: a disk index whose ids are
//! slots, the records (slot, id, payload) and the f32 vectors beside it,
//! and the tombstone file listing dead slots.
//!
//! Owns: the segment directory's files and their codecs (docs/format.md,
//! "Collection segment"), writing a segment durably under a temporary
//! name, and loading one. Does not own: which segments are current (the
//! manifest, `super::manifest`) or the id map (`super`).

use super::{io_err, Collection, CollectionError, CollectionOptions, Result};
use crate::index::{build_index, DiskIndex};
use crate::storage::Vfs;
use crate::wal::Lsn;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A segment's records file: per node, slot, id and payload.
pub const RECORDS_FILE: &str = "records.bin";
/// A segment's vectors file: per node, the f32 vector.
pub const VECTORS_FILE: &str = "vectors.bin";

/// An immutable disk segment.
pub struct Segment {
    pub(super) name: String,
    pub(super) dir: PathBuf,
    pub(super) index: Arc<DiskIndex>,
    /// slot → row.
    pub(super) rows: HashMap<u64, u32>,
    fs: Arc<dyn Vfs>,
    pub(super) retired: AtomicBool,
}

impl Drop for Segment {
    fn drop(&mut self) {
        if self.retired.load(Ordering::Acquire) {
            if let Err(e) = self.fs.remove_dir_all(&self.dir) {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove a retired segment");
            }
        }
    }
}

pub(super) fn seg_name(lsn: Lsn, generation: u64) -> String {
    format!("seg-{lsn:020}-{generation:08}")
}

/// `b` followed by its crc32c (little endian).
fn with_crc(mut b: Vec<u8>) -> Vec<u8> {
    let c = crc32c::crc32c(&b);
    b.extend_from_slice(&c.to_le_bytes());
    b
}

/// The body of a file that ends with its crc32c. Err: why not.
fn check_crc(b: &[u8]) -> std::result::Result<&[u8], String> {
    if b.len() < 4 {
        return Err(format!("{} bytes, too short for a checksum", b.len()));
    }
    let (body, c) = b.split_at(b.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(c.try_into().expect("4")) {
        return Err("checksum mismatch".into());
    }
    Ok(body)
}

/// The records file's bytes (docs/format.md, "Collection segment").
pub fn encode_records(slots: &[u64], ids: &[u64], payloads: &[Arc<[u8]>]) -> Vec<u8> {
    let mut rec = Vec::new();
    for ((s, id), p) in slots.iter().zip(ids).zip(payloads) {
        rec.extend_from_slice(&s.to_le_bytes());
        rec.extend_from_slice(&id.to_le_bytes());
        rec.extend_from_slice(&(p.len() as u32).to_le_bytes());
        rec.extend_from_slice(p);
    }
    with_crc(rec)
}

/// Parse a records file: [(slot, id, payload)] in row order. Err: why it
/// is damaged.
#[allow(clippy::type_complexity)]
pub fn decode_records(b: &[u8]) -> std::result::Result<Vec<(u64, u64, Vec<u8>)>, String> {
    let body = check_crc(b)?;
    let mut recs = Vec::new();
    let mut o = 0;
    while o < body.len() {
        let bad = || format!("record at byte {o} is cut short");
        let h = body.get(o..o + 20).ok_or_else(bad)?;
        let slot = u64::from_le_bytes(h[..8].try_into().expect("8"));
        let id = u64::from_le_bytes(h[8..16].try_into().expect("8"));
        let pl = u32::from_le_bytes(h[16..20].try_into().expect("4")) as usize;
        let p = body.get(o + 20..o + 20 + pl).ok_or_else(bad)?.to_vec();
        recs.push((slot, id, p));
        o += 20 + pl;
    }
    Ok(recs)
}

/// A tombstone file's bytes: the dead slots, sorted.
pub fn encode_tombstones(dead: &[u64]) -> Vec<u8> {
    with_crc(dead.iter().flat_map(|s| s.to_le_bytes()).collect())
}

/// Parse a tombstone file. Err: why it is damaged.
pub fn decode_tombstones(b: &[u8]) -> std::result::Result<Vec<u64>, String> {
    let body = check_crc(b)?;
    if body.len() % 8 != 0 {
        return Err(format!("{} bytes of slots, not a multiple of 8", body.len()));
    }
    Ok(body
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
        .collect())
}

impl Collection {
    /// Write a segment directory under a temporary name, make every byte
    /// and name durable, and rename it into place.
    pub(super) fn write_segment(
        &self,
        name: &str,
        data: &[f32],
        slots: &[u64],
        ids: &[u64],
        payloads: &[Arc<[u8]>],
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> Result<Segment> {
        let fs = self.fs.as_ref();
        let tmp = self.dir.join(format!("{name}.tmp"));
        if fs.exists(&tmp) {
            fs.remove_dir_all(&tmp).map_err(io_err(&tmp, "remove"))?;
        }
        let idx = tmp.join("index");
        fs.create_dir_all(&idx).map_err(io_err(&idx, "create"))?;
        let mut o = self.opts.build.clone();
        o.nav_sample = crate::graph::NavParams::default_sample(slots.len()).min(o.nav_sample.max(1));
        build_index(data.into(), self.opts.dim, slots, &idx, &o, progress)?;
        for f in fs.list(&idx).map_err(io_err(&idx, "list"))? {
            let p = idx.join(f);
            fs.sync_file(&p).map_err(io_err(&p, "sync"))?;
        }
        fs.sync_dir(&idx).map_err(io_err(&idx, "sync"))?;
        for (file, bytes) in [
            (RECORDS_FILE, encode_records(slots, ids, payloads)),
            (VECTORS_FILE, bytemuck::cast_slice::<f32, u8>(data).to_vec()),
        ] {
            let p = tmp.join(file);
            let mut f = fs.create(&p).map_err(io_err(&p, "create"))?;
            f.append(&bytes).map_err(io_err(&p, "write"))?;
            f.sync().map_err(io_err(&p, "sync"))?;
        }
        fs.sync_dir(&tmp).map_err(io_err(&tmp, "sync"))?;
        let fin = self.dir.join(name);
        fs.rename(&tmp, &fin).map_err(io_err(&tmp, "rename"))?;
        fs.sync_dir(&self.dir).map_err(io_err(&self.dir, "sync"))?;
        let (seg, _) = load_segment(&self.fs, &self.dir, name, &self.opts)?;
        Ok(seg)
    }
}

/// Open segment `name` and read its records: (segment, [(slot, id, payload)]).
#[allow(clippy::type_complexity)]
pub(super) fn load_segment(
    fs: &Arc<dyn Vfs>,
    dir: &Path,
    name: &str,
    opts: &CollectionOptions,
) -> Result<(Segment, Vec<(u64, u64, Vec<u8>)>)> {
    let dim = opts.dim;
    let sdir = dir.join(name);
    let mut index = DiskIndex::open(&sdir.join("index"))?;
    let rp = sdir.join(RECORDS_FILE);
    let b = fs.read(&rp).map_err(io_err(&rp, "read"))?;
    let recs = decode_records(&b).map_err(|why| CollectionError::Corrupt(format!("{}: {why}", rp.display())))?;
    let vp = sdir.join(VECTORS_FILE);
    let vlen = fs.file_len(&vp).map_err(io_err(&vp, "stat"))?;
    if vlen != (recs.len() * dim * 4) as u64 || index.len() != recs.len() {
        return Err(CollectionError::Corrupt(format!(
            "{}: {} records, {} index nodes and {vlen} bytes of vectors disagree",
            sdir.display(),
            recs.len(),
            index.len()
        )));
    }
    if index.len() <= opts.ram_segment_nodes {
        let n = index.len();
        let cached = index.warm_cache(n, opts.io)?;
        if cached < n {
            tracing::debug!(
                segment = name,
                cached,
                nodes = n,
                "part of a RAM segment is unreachable from its entry points; the rest is read from disk"
            );
        }
    }
    let rows = recs.iter().enumerate().map(|(i, r)| (r.0, i as u32)).collect();
    Ok((
        Segment {
            name: name.to_string(),
            dir: sdir,
            index: Arc::new(index),
            rows,
            fs: fs.clone(),
            retired: AtomicBool::new(false),
        },
        recs,
    ))
}
