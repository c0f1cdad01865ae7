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

/// Slots of bulk-loaded rows have this bit set; LSNs (the slots of
/// single upserts) never reach it.
pub const BULK_SLOT_BIT: u64 = 1 << 63;

/// The slot of row `row` of bulk load number `bulk` (bulk 0 is an index
/// adopted from before collections took writes).
pub fn bulk_slot(bulk: u64, row: usize) -> u64 {
    debug_assert!(bulk < 1 << 31 && (row as u64) < 1 << 32);
    BULK_SLOT_BIT | bulk << 32 | row as u64
}

/// The bulk load number of a bulk slot.
pub fn bulk_of(slot: u64) -> Option<u64> {
    (slot & BULK_SLOT_BIT != 0).then_some((slot & !BULK_SLOT_BIT) >> 32)
}

/// An immutable disk segment.
pub struct Segment {
    pub(super) name: String,
    pub(super) dir: PathBuf,
    pub(super) index: Arc<DiskIndex>,
    /// slot → row.
    pub(super) rows: HashMap<u64, u32>,
    /// The f32 vectors are in `vectors.bin`; without it (an adopted index)
    /// they are read back from the graph file's stored vectors.
    vectors_file: bool,
    fs: Arc<dyn Vfs>,
    pub(super) retired: AtomicBool,
}

impl Segment {
    /// The vector of row `row`, as f32.
    pub(super) fn vector(&self, dim: usize, row: u32) -> Result<Vec<f32>> {
        if !self.vectors_file {
            return stored_vector(&self.index, row);
        }
        let p = self.dir.join(VECTORS_FILE);
        let b = self
            .fs
            .read_at(&p, row as u64 * dim as u64 * 4, dim * 4)
            .map_err(io_err(&p, "read"))?;
        if b.len() != dim * 4 {
            return Err(CollectionError::Corrupt(format!("{}: short at row {row}", p.display())));
        }
        Ok(super::op::f32s(&b))
    }

    /// Every row's vector, row after row (for a merge).
    pub(super) fn all_vectors(&self, dim: usize) -> Result<Vec<f32>> {
        if !self.vectors_file {
            let mut out = Vec::with_capacity(self.index.len() * dim);
            for row in 0..self.index.len() as u32 {
                out.extend(stored_vector(&self.index, row)?);
            }
            return Ok(out);
        }
        let p = self.dir.join(VECTORS_FILE);
        let b = self.fs.read(&p).map_err(io_err(&p, "read"))?;
        Ok(super::op::f32s(&b))
    }
}

/// Node `row`'s stored vector from the graph file (f16 or i8 decoded).
fn stored_vector(index: &DiskIndex, row: u32) -> Result<Vec<f32>> {
    use std::os::unix::fs::FileExt;
    let path = index.graph_path();
    let layout = index.header().layout;
    let (sector, off) = layout.locate(row);
    let mut buf = vec![0u8; layout.read_sectors() * crate::io::SECTOR];
    std::fs::File::open(&path)
        .and_then(|f| f.read_exact_at(&mut buf, sector * crate::io::SECTOR as u64))
        .map_err(io_err(&path, "read"))?;
    let node = layout
        .node(&buf[off..off + layout.node_size])
        .map_err(|e| CollectionError::Corrupt(format!("{}: node {row}: {e}", path.display())))?;
    let mut v = Vec::new();
    node.vector.to_f32(&mut v);
    Ok(v)
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
    #[allow(clippy::too_many_arguments)]
    pub(super) fn write_segment(
        &self,
        name: &str,
        data: &[f32],
        slots: &[u64],
        ids: &[u64],
        payloads: &[Arc<[u8]>],
        threads: usize,
        ram_budget: Option<u64>,
        cancel: &crate::cancel::CancelToken,
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> Result<Segment> {
        let fs = self.fs.as_ref();
        let tmp = self.dir.join(format!("{name}.tmp"));
        let built = self.write_segment_in(
            &tmp, name, data, slots, ids, payloads, threads, ram_budget, cancel, progress,
        );
        if built.is_err() && fs.exists(&tmp) {
            // A failed or cancelled build leaves nothing behind (a crash
            // leaves `<name>.tmp`, removed at the next open).
            if let Err(e) = fs.remove_dir_all(&tmp) {
                tracing::warn!(path = %tmp.display(), error = %e, "cannot remove an unfinished segment");
            }
        }
        built
    }

    #[allow(clippy::too_many_arguments)]
    fn write_segment_in(
        &self,
        tmp: &Path,
        name: &str,
        data: &[f32],
        slots: &[u64],
        ids: &[u64],
        payloads: &[Arc<[u8]>],
        threads: usize,
        ram_budget: Option<u64>,
        cancel: &crate::cancel::CancelToken,
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> Result<Segment> {
        let fs = self.fs.as_ref();
        let tmp = tmp.to_path_buf();
        if fs.exists(&tmp) {
            fs.remove_dir_all(&tmp).map_err(io_err(&tmp, "remove"))?;
        }
        let idx = tmp.join("index");
        fs.create_dir_all(&idx).map_err(io_err(&idx, "create"))?;
        let mut o = self.opts.build.clone();
        o.nav_sample = crate::graph::NavParams::default_sample(slots.len()).min(o.nav_sample.max(1));
        if threads > 0 {
            o.graph.threads = threads;
        }
        // Over the budget, `build_index` builds partitioned.
        o.ram_budget = ram_budget.or(o.ram_budget);
        o.graph.cancel = cancel.clone();
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
///
/// A name starting with `../` is an index directory built before
/// collections took writes (`collections/<c>/index-<gen>`), adopted as bulk
/// load 0: it has no records or vectors file; its rows' slots are
/// [`bulk_slot`]`(0, row)`, its ids are the index's own, its payloads are
/// empty, and its vectors are read back from the graph file.
#[allow(clippy::type_complexity)]
pub(super) fn load_segment(
    fs: &Arc<dyn Vfs>,
    dir: &Path,
    name: &str,
    opts: &CollectionOptions,
) -> Result<(Segment, Vec<(u64, u64, Vec<u8>)>)> {
    let dim = opts.dim;
    let sdir = dir.join(name);
    let adopted = name.starts_with("../");
    let index_dir = if adopted { sdir.clone() } else { sdir.join("index") };
    let mut index = DiskIndex::open(&index_dir)?;
    if index.dim() != dim || index.metric() != opts.metric {
        return Err(CollectionError::Corrupt(format!(
            "{}: the index is {}-d {}; the collection is {dim}-d {}",
            index_dir.display(),
            index.dim(),
            index.metric(),
            opts.metric
        )));
    }
    let recs = if adopted {
        let recs: Vec<(u64, u64, Vec<u8>)> = index
            .ids()
            .iter()
            .enumerate()
            .map(|(row, &id)| (bulk_slot(0, row), id, Vec::new()))
            .collect();
        index.replace_ids(recs.iter().map(|r| r.0).collect());
        recs
    } else {
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
        recs
    };
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
    } else if opts.cache_nodes > 0 {
        index.warm_cache(opts.cache_nodes.min(index.len()), opts.io)?;
    }
    let rows = recs.iter().enumerate().map(|(i, r)| (r.0, i as u32)).collect();
    Ok((
        Segment {
            name: name.to_string(),
            dir: sdir,
            index: Arc::new(index),
            rows,
            vectors_file: !adopted,
            fs: fs.clone(),
            retired: AtomicBool::new(false),
        },
        recs,
    ))
}
