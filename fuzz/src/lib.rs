//! The bodies of Quarry's fuzz targets: one `pub fn <target>(data: &[u8])`
//! per parser of bytes from disk or the network. Each feeds the bytes to
//! the parser, must not panic, hang or allocate without bound, and checks
//! the parser's properties (a decoded value re-encodes to the same bytes,
//! an encoding decodes to the same value, a structure the parser accepts
//! can be used without going out of bounds).
//!
//! The fuzz target binaries (`fuzz_targets/*.rs`, built by `cargo fuzz`)
//! and the stable smoke test (`tests/corpus.rs`) call these same functions.
//!
//! Many of these formats are guarded by a crc32c, which a fuzzer cannot
//! forge by chance. So the targets of checksummed formats read their first
//! input byte as a mode: when its bit 0 is set, the harness recomputes the
//! checksums of the rest before parsing, which lets mutations reach the
//! checks behind them. With bit 0 clear the bytes are parsed as they are.

use quarry_engine::collection::{self, Op};
use quarry_engine::dataset::{self, VectorFile};
use quarry_engine::format::{self, GraphHeader, NodeLayout, SectionHeader, StoredType, SECTION_HEADER_LEN, SECTOR};
use quarry_engine::graph::NavTier;
use quarry_engine::pq::{AdcTable, PqCodebook};
use quarry_engine::storage::RealFs;
use quarry_engine::wal::{self, Wal, WalOptions};
use quarry_engine::Metric;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

const METRICS: [Metric; 3] = [Metric::L2, Metric::Ip, Metric::Cosine];

/// The per-thread scratch directory for parsers that take a path: under
/// /dev/shm (tmpfs) when it exists, else the system temp dir. Removed when
/// the thread ends (libFuzzer exits without that, leaving a few KB in
/// /dev/shm/quarry-fuzz-*).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

thread_local! {
    static SCRATCH: RefCell<Option<Scratch>> = const { RefCell::new(None) };
}

/// A fresh, empty directory for this call (the same path every call of
/// this thread).
pub fn scratch_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let dir = &s
            .get_or_insert_with(|| {
                let base = Path::new("/dev/shm");
                let base = if base.is_dir() {
                    base.to_path_buf()
                } else {
                    std::env::temp_dir()
                };
                Scratch(base.join(format!(
                    "quarry-fuzz-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                )))
            })
            .0;
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("create the fuzz scratch directory");
        dir.clone()
    })
}

/// Split off the mode byte: (fix checksums?, other mode bits, rest).
fn mode(data: &[u8]) -> (bool, u8, &[u8]) {
    match data.split_first() {
        Some((m, rest)) => (m & 1 == 1, m >> 1, rest),
        None => (false, 0, data),
    }
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

/// Recompute a trailing crc32c over everything before it.
fn fix_trailing_crc(b: &mut [u8]) {
    if b.len() >= 4 {
        let n = b.len() - 4;
        let c = crc32c::crc32c(&b[..n]);
        b[n..].copy_from_slice(&c.to_le_bytes());
    }
}

/// Recompute the crc of every whole WAL record from `off` on, stopping
/// at the first that does not fit.
fn fix_wal_records(b: &mut [u8], mut off: usize, max: usize) {
    while b.len().saturating_sub(off) >= wal::RECORD_HEADER {
        let len = u32_at(b, off) as usize;
        if len > max || b.len() - off - wal::RECORD_HEADER < len {
            return;
        }
        let end = off + wal::RECORD_HEADER + len;
        let mut c = crc32c::crc32c(&b[off..off + 4]);
        c = crc32c::crc32c_append(c, &b[off + 8..end]);
        b[off + 4..off + 8].copy_from_slice(&c.to_le_bytes());
        off = end;
    }
}

/// `wal::decode_record` at an arbitrary offset with an arbitrary limit;
/// what it accepts re-encodes to the same bytes, and `encode_record`'s
/// output decodes to what was encoded.
///
/// Input: mode, offset (u16), limit selector, then the bytes.
pub fn wal_record(data: &[u8]) {
    let (fix, _, rest) = mode(data);
    if rest.len() < 3 {
        return;
    }
    let off = u16::from_le_bytes([rest[0], rest[1]]) as usize;
    let max = [0, 1, 16, 4096, 16 << 20, usize::MAX][rest[2] as usize % 6];
    let mut b = rest[3..].to_vec();
    if fix {
        fix_wal_records(&mut b, off, max);
    }
    if let Ok((h, body, next)) = wal::decode_record(&b, off, max) {
        assert_eq!(body.start, off + wal::RECORD_HEADER);
        assert_eq!(body.end, next);
        assert!(next <= b.len() && body.len() <= max);
        let mut again = Vec::new();
        wal::encode_record(h.lsn, h.synced, &b[body], &mut again);
        assert_eq!(again, b[off..next], "a decoded record re-encodes to its bytes");
    }
    // The other direction: any body, any LSNs.
    let (lsn, synced) = if b.len() >= 16 {
        (u64_at(&b, 0), u64_at(&b, 8))
    } else {
        (1, 0)
    };
    let mut enc = vec![0xAA; off.min(64)];
    let start = enc.len();
    wal::encode_record(lsn, synced, &b, &mut enc);
    let (h, body, next) = wal::decode_record(&enc, start, b.len()).expect("an encoded record decodes");
    assert_eq!((h.lsn, h.synced, &enc[body], next), (lsn, synced, &b[..], enc.len()));
}

/// Names of the segment files made from the input: the first LSN in the
/// chunk's header when it has one (so most headers match their name).
fn wal_chunks(rest: &[u8], split: bool) -> Vec<(u64, Vec<u8>)> {
    let mut starts = vec![0];
    if split {
        starts.extend((1..rest.len().saturating_sub(3)).filter(|&i| &rest[i..i + 4] == wal::MAGIC));
    }
    starts.push(rest.len());
    starts
        .windows(2)
        .enumerate()
        .map(|(i, w)| {
            let c = rest[w[0]..w[1]].to_vec();
            let first = if c.len() >= wal::HEADER {
                u64_at(&c, 8)
            } else {
                1 + i as u64
            };
            (first, c)
        })
        .collect()
}

/// Recovery of a WAL directory holding the input as segment files:
/// `Wal::open` (torn tail vs corruption), then every record read back with
/// a cursor, LSNs contiguous; opening again must find nothing to cut and
/// the same records; an append after recovery continues the LSNs.
///
/// Input: mode (bit 0: fix record checksums; bit 1: split the rest into
/// several segments at each "QWAL"), then the segment bytes.
pub fn wal_segment(data: &[u8]) {
    let (fix, bits, rest) = mode(data);
    let opts = || WalOptions {
        max_record: 1 << 16,
        ..WalOptions::default()
    };
    let dir = scratch_dir().join("wal");
    std::fs::create_dir_all(&dir).expect("create the WAL directory");
    for (first, mut c) in wal_chunks(rest, bits & 1 == 1) {
        if fix {
            fix_wal_records(&mut c, wal::HEADER, 1 << 16);
        }
        std::fs::write(dir.join(format!("wal-{first:020}.log")), &c).expect("write a segment");
    }
    let fs = Arc::new(RealFs);
    let Ok((w, report)) = Wal::open(fs.clone(), &dir, opts(), 1) else {
        return;
    };
    let (first, last) = (w.first_lsn(), w.last_lsn());
    assert_eq!((report.first_lsn, report.last_lsn), (first, last));
    assert!(first >= 1 && last >= first - 1, "first {first}, last {last}");
    let read_all = |w: &Wal| {
        let mut cur = w.cursor(w.first_lsn()).expect("a cursor at the first LSN");
        let mut lsns = Vec::new();
        loop {
            let batch = w.read(&mut cur, 1 << 12).expect("a recovered log reads back");
            if batch.is_empty() {
                break;
            }
            assert!(lsns.len() + batch.len() <= 1 << 20, "more records than bytes");
            lsns.extend(batch.into_iter().map(|(l, _)| l));
        }
        lsns
    };
    let lsns = read_all(&w);
    assert!(
        lsns.iter().copied().eq(first..=last),
        "records {first}..={last} read back as {lsns:?}"
    );
    drop(w);
    let (w, again) = Wal::open(fs.clone(), &dir, opts(), 1).expect("a recovered log opens again");
    assert!(again.cut.is_none(), "second recovery cut {:?}", again.cut);
    assert_eq!((w.first_lsn(), w.last_lsn()), (first, last));
    assert_eq!(read_all(&w), lsns);
    if last < u64::MAX {
        let at = w.append(&[b"after recovery"]).expect("append after recovery");
        assert_eq!(at, last + 1);
    }
}

/// `collection::Op::decode` on any body for any dimension; what it
/// accepts re-encodes to the same bytes; an encoded op decodes to itself.
///
/// Input: dimension (u8), then the body.
pub fn wal_op(data: &[u8]) {
    let Some((&dim, b)) = data.split_first() else {
        return;
    };
    let dim = dim as usize;
    if let Ok(op) = Op::decode(b, dim) {
        assert_eq!(op.encode(), b, "a decoded op re-encodes to its bytes");
        if let Op::Upsert { vector, .. } = &op {
            assert_eq!(vector.len(), dim);
        }
    }
    // Structured: an upsert built from the input.
    if b.len() >= 9 {
        let id = u64_at(b, 0);
        let plen = (b[8] as usize).min(b.len() - 9);
        let payload = b[9..9 + plen].to_vec();
        let vector: Vec<f32> = b[9 + plen..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
            .collect();
        for op in [
            Op::Upsert {
                id,
                vector: vector.clone(),
                payload,
            },
            Op::Delete { id },
        ] {
            let enc = op.encode();
            let back = Op::decode(&enc, vector.len()).expect("an encoded op decodes");
            // Compared as bytes: a NaN in the vector is not equal to itself.
            assert_eq!(back.encode(), enc);
        }
    }
}

/// `wal::decode_followers`: what it accepts re-encodes to a file of the
/// same length that decodes to the same registry (the encoder writes
/// entries in name order; the decoder takes any order).
///
/// Input: mode (bit 0: fix the trailing crc), then the file.
pub fn followers(data: &[u8]) {
    let (fix, _, rest) = mode(data);
    let mut b = rest.to_vec();
    if fix {
        fix_trailing_crc(&mut b);
    }
    if let Ok(map) = wal::decode_followers(&b) {
        let enc = wal::encode_followers(&map);
        assert_eq!(enc.len(), b.len());
        if map.len() <= 1 {
            assert_eq!(enc, b, "a decoded registry re-encodes to its bytes");
        }
        assert_eq!(wal::decode_followers(&enc).expect("an encoded registry decodes"), map);
    }
}

/// `collection::BackupDescriptor::decode` (a backup's `SNAPSHOT`): what
/// decodes re-encodes to its bytes, and lists only paths a backup may hold.
pub fn backup_descriptor(data: &[u8]) {
    let (fix, _, rest) = mode(data);
    let mut b = rest.to_vec();
    if fix {
        fix_trailing_crc(&mut b);
    }
    if let Ok(d) = collection::BackupDescriptor::decode(&b) {
        assert_eq!(d.encode(), b, "a decoded descriptor re-encodes to its bytes");
        assert!(d.lsn >= d.checkpoint && d.files.iter().all(|f| collection::backup_path_kind(&f.path).is_ok()));
    }
}

/// `wal::decode_epochs` (`epochs.bin`), encode → decode round trips, and
/// the divergence arithmetic over what decodes: `end_of` never answers an
/// epoch above the one asked, and `common_prefix` of a history with itself
/// is the shorter log.
pub fn epochs(data: &[u8]) {
    let (fix, last_byte, rest) = mode(data);
    let mut b = rest.to_vec();
    if fix {
        fix_trailing_crc(&mut b);
    }
    let Ok(h) = wal::decode_epochs(&b) else {
        return;
    };
    assert_eq!(wal::encode_epochs(&h), b, "a decoded history re-encodes to its bytes");
    let last = h.entries().last().map_or(0, |e| e.1).saturating_add(last_byte as u64);
    for &(e, first) in h.entries() {
        let (got, end) = h.end_of(e, last);
        assert_eq!(got, e);
        assert!(
            first <= end && end <= last,
            "epoch {e} from {first} ends at {end}, log at {last}"
        );
        assert_eq!(h.epoch_of(first), e);
    }
    let shorter = last / 2;
    assert_eq!(wal::common_prefix(&h, shorter, &h, last), shorter);
    assert_eq!(
        wal::common_prefix(&h, last, &wal::EpochHistory::default(), last),
        h.end_of(wal::Epoch::ZERO, last).1
    );
}

/// A replication message from the peer (`quarry.replication.v1`): the
/// first byte picks the direction; prost decodes the envelope and
/// `quarry_server::replication::wire` checks and converts what it holds.
/// Whatever is accepted converts back to an equal message.
pub fn replication_msg(data: &[u8]) {
    use prost::Message;
    use quarry_proto::replication::v1 as pb;
    use quarry_server::replication::wire;
    let (_, which, rest) = mode(data);
    if which % 3 == 2 {
        // A primary's collection.json, as its standby reads it.
        if let Ok(m) = quarry_server::meta::CollectionMeta::from_peer(rest) {
            let again = serde_json::to_vec(&m).expect("serializable");
            let back = quarry_server::meta::CollectionMeta::from_peer(&again).expect("re-encoded metadata");
            assert_eq!((back.name, back.incarnation, back.dim), (m.name, m.incarnation, m.dim));
        }
        return;
    }
    if which % 3 == 0 {
        let Ok(m) = pb::FromStandby::decode(rest) else { return };
        match m.msg {
            Some(pb::from_standby::Msg::Hello(h)) => {
                if let Ok(hello) = wire::hello_from(h) {
                    assert_eq!(
                        wire::hello_from(wire::hello_to(&hello)).expect("re-encoded hello"),
                        hello
                    );
                }
            }
            Some(pb::from_standby::Msg::Ack(a)) => {
                if let Ok((name, ack)) = wire::ack_from(a) {
                    assert_eq!(
                        wire::ack_from(wire::ack_to(&name, &ack)).expect("re-encoded ack"),
                        (name, ack)
                    );
                }
            }
            Some(pb::from_standby::Msg::Fenced(f)) => {
                let _ = wire::epoch_from(f.epoch, "fenced.epoch");
            }
            None => {}
        }
    } else {
        let Ok(m) = pb::FromPrimary::decode(rest) else { return };
        let Ok(epoch) = wire::epoch_from(m.epoch, "epoch") else {
            return;
        };
        match m.msg {
            Some(pb::from_primary::Msg::Welcome(w)) => {
                if let Ok(welcome) = wire::welcome_from(w, epoch) {
                    let back = wire::welcome_from(wire::welcome_to(&welcome), epoch).expect("re-encoded welcome");
                    assert_eq!(back, welcome);
                }
            }
            Some(pb::from_primary::Msg::Chunk(c)) => {
                if let Ok((name, chunk)) = wire::chunk_from(c, epoch) {
                    let back = wire::chunk_from(wire::chunk_to(&name, &chunk), epoch).expect("re-encoded chunk");
                    assert_eq!(back, (name, chunk));
                }
            }
            _ => {}
        }
    }
}

/// `collection::Manifest::decode` (manifest.json), `check` against every
/// metric, and encode → decode round trips.
pub fn collection_manifest(data: &[u8]) {
    let Ok(m) = collection::Manifest::decode(data) else {
        return;
    };
    for metric in METRICS {
        let _ = m.check(PathBuf::from("manifest.json"), m.dim, metric);
        let _ = m.check(PathBuf::from("manifest.json"), 1, metric);
    }
    let enc = m.encode();
    let back = collection::Manifest::decode(&enc).expect("an encoded manifest decodes");
    assert_eq!(back, m);
    assert_eq!(back.encode(), enc);
}

/// A segment's `records.bin` and a tombstone file: what the decoders
/// accept re-encodes to the same bytes.
///
/// Input: mode (bit 0: fix the trailing crc), then the file.
pub fn segment_files(data: &[u8]) {
    let (fix, _, rest) = mode(data);
    let mut b = rest.to_vec();
    if fix {
        fix_trailing_crc(&mut b);
    }
    if let Ok(recs) = collection::decode_records(&b) {
        let slots: Vec<u64> = recs.iter().map(|r| r.0).collect();
        let ids: Vec<u64> = recs.iter().map(|r| r.1).collect();
        let payloads: Vec<Arc<[u8]>> = recs.iter().map(|r| Arc::from(&r.2[..])).collect();
        assert_eq!(collection::encode_records(&slots, &ids, &payloads), b);
    }
    if let Ok(dead) = collection::decode_tombstones(&b) {
        assert_eq!(collection::encode_tombstones(&dead), b);
    }
}

/// 4-byte aligned copy of `b` (sector buffers are aligned; fuzz input is not).
fn aligned(b: &[u8]) -> Vec<u32> {
    let mut v = vec![0u32; b.len().div_ceil(4)];
    bytemuck_copy(&mut v, b);
    v
}

fn bytemuck_copy(dst: &mut [u32], src: &[u8]) {
    for (d, c) in dst.iter_mut().zip(src.chunks(4)) {
        let mut w = [0u8; 4];
        w[..c.len()].copy_from_slice(c);
        *d = u32::from_ne_bytes(w);
    }
}

fn as_bytes(v: &[u32], len: usize) -> &[u8] {
    // SAFETY: u32 has no padding and any byte pattern is valid; the slice
    // covers at most the vector's own bytes.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), len.min(4 * v.len())) }
}

/// The graph file: `GraphHeader::decode` of its header sector against the
/// input's length; when accepted, the header re-decodes from its own
/// encoding, every node record lies inside the file, and every record
/// decodes (`NodeLayout::node`) or is refused without panicking.
///
/// Input: mode (bit 0: fix the header sector's crc), then the file.
pub fn graph_file(data: &[u8]) {
    let (fix, _, rest) = mode(data);
    let mut b = rest.to_vec();
    if fix && b.len() >= SECTOR {
        let c = format::crc32c(&b[..SECTOR - 4]);
        b[SECTOR - 4..SECTOR].copy_from_slice(&c.to_le_bytes());
    }
    let path = Path::new("graph.qgr");
    let Ok(h) = GraphHeader::decode(path, &b[..SECTOR.min(b.len())], b.len() as u64) else {
        return;
    };
    assert_eq!(
        GraphHeader::decode(path, &h.encode(), b.len() as u64).expect("re-decodes"),
        h
    );
    let l = h.layout;
    let file = aligned(&b);
    let bytes = as_bytes(&file, b.len());
    let mut out = Vec::new();
    for id in 0..h.n {
        let (sector, off) = l.locate(id as u32);
        let start = sector as usize * SECTOR + off;
        assert!(
            start + l.node_size <= b.len(),
            "node {id} of {} lies outside the {}-byte file",
            h.n,
            b.len()
        );
        if let Ok(node) = l.node(&bytes[start..start + l.read_sectors() * SECTOR - off]) {
            assert!(node.neighbors.len() <= l.r);
            node.vector.to_f32(&mut out);
            assert_eq!(out.len(), l.dim);
        }
    }
}

/// One node record under any small layout: `NodeLayout::node` refuses or
/// returns a record within its bounds; an F32 record re-encodes to its
/// neighbours.
///
/// Input: dim (u16), stored type, R, then the record.
pub fn node_record(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let dim = u16::from_le_bytes([data[0], data[1]]) as usize % 1025;
    let Some(stored) = StoredType::from_u8(data[2] % 4) else {
        return;
    };
    let misalign = data[2] & 0x80 != 0;
    let r = data[3] as usize;
    let l = NodeLayout::new(dim, stored, r);
    let rec = &data[4..];
    let buf = aligned(&[&[0u8][..misalign as usize], rec].concat());
    let bytes = &as_bytes(&buf, rec.len() + misalign as usize)[misalign as usize..];
    let Ok(node) = l.node(bytes) else {
        return;
    };
    assert!(node.neighbors.len() <= r);
    let mut v = Vec::new();
    node.vector.to_f32(&mut v);
    assert_eq!(v.len(), dim);
    if stored == StoredType::F32 {
        let nb = node.neighbors.to_vec();
        let mut again = vec![0u32; l.node_size.div_ceil(4)];
        // SAFETY: as in `as_bytes`, for a mutable view of the vector's bytes.
        let again_bytes = unsafe { std::slice::from_raw_parts_mut(again.as_mut_ptr().cast::<u8>(), l.node_size) };
        l.encode(&v, &nb, again_bytes);
        let back = l.node(again_bytes).expect("an encoded record decodes");
        assert_eq!(back.neighbors, &nb[..]);
    }
}

/// The magics of the index's section files.
const SECTION_MAGICS: [(&[u8; 8], &str); 5] = [
    (b"QRYPQPIV", "PQ pivots"),
    (b"QRYPQCOD", "PQ codes"),
    (b"QRYIDMAP", "id map"),
    (b"QRYNAVHN", "navigation tier"),
    (b"QRYRERNK", "rerank"),
];

/// A section file (`pq_pivots.qsec`, `nav.qsec`, ...): `SectionHeader::decode`
/// on the bytes, and `read_section` / `read_section_huge` on them as a
/// file, which must agree with it; an accepted PQ pivots or navigation
/// payload goes on to its own parser.
///
/// Input: mode (bit 0: fix the header and payload crcs; bits 1-3: which
/// magic is expected, 0 = the file's own), then the file.
pub fn section_file(data: &[u8]) {
    let (fix, bits, rest) = mode(data);
    let mut b = rest.to_vec();
    if fix && b.len() >= SECTION_HEADER_LEN {
        let c = format::crc32c(&b[SECTION_HEADER_LEN..]);
        b[24..28].copy_from_slice(&c.to_le_bytes());
        let c = format::crc32c(&b[..60]);
        b[60..64].copy_from_slice(&c.to_le_bytes());
    }
    let (magic, kind) = match (bits & 7) as usize {
        0 => {
            let mut m = [0u8; 8];
            let n = b.len().min(8);
            m[..n].copy_from_slice(&b[..n]);
            (m, "section")
        }
        i => {
            let (m, k) = SECTION_MAGICS[(i - 1) % SECTION_MAGICS.len()];
            (*m, k)
        }
    };
    let path = scratch_dir().join("file.qsec");
    let decoded = SectionHeader::decode(&path, &magic, kind, &b, b.len() as u64);
    std::fs::write(&path, &b).expect("write the section file");
    let read = format::read_section(&path, &magic, kind, true);
    let huge = format::read_section_huge(&path, &magic, kind);
    let h = match (decoded, huge) {
        (Ok(h), Ok((hh, body))) => {
            assert_eq!(h, hh);
            assert_eq!(body.len() as u64, h.payload_len);
            assert_eq!(&body[..], &b[SECTION_HEADER_LEN..]);
            h
        }
        (Err(_), Err(_)) => {
            assert!(read.is_err());
            return;
        }
        (d, hg) => panic!("decode {:?} but read_section_huge {:?}", d.is_ok(), hg.is_ok()),
    };
    let Ok((rh, payload)) = read else {
        assert_ne!(format::crc32c(&b[SECTION_HEADER_LEN..]), h.payload_crc32c);
        return;
    };
    assert_eq!(rh, h);
    assert_eq!(payload, &b[SECTION_HEADER_LEN..]);
    match &magic {
        b"QRYPQPIV" => pq_payload(&payload, h.params[2] == 1),
        b"QRYNAVHN" => nav_payload(&payload, h.params[0].max(1)),
        _ => {}
    }
}

fn pq_payload(b: &[u8], rotated: bool) {
    let Ok(pq) = PqCodebook::from_bytes(b, rotated) else {
        return;
    };
    assert_eq!(pq.to_bytes(), b, "a decoded codebook re-encodes to its bytes");
    assert_eq!(pq.rotated(), rotated);
    // Use it: a query table and a code for one vector.
    let v: Vec<f32> = (0..pq.dim()).map(|i| i as f32).collect();
    let mut code = vec![0u8; pq.m()];
    pq.encode(&v, &mut code);
    let mut out = vec![0f32; pq.dim()];
    pq.decode(&code, &mut out);
    for metric in METRICS {
        let mut t = AdcTable::default();
        pq.table(&v, metric, &mut t);
        let _ = t.distance(&code);
    }
}

/// `PqCodebook::from_bytes` (the payload of `pq_pivots.qsec`): what it
/// accepts re-encodes to the same bytes and can encode, decode and build a
/// query table.
///
/// Input: rotated flag, then the payload.
pub fn pq_codebook(data: &[u8]) {
    if let Some((&r, b)) = data.split_first() {
        pq_payload(b, r & 1 == 1);
    }
}

fn nav_payload(b: &[u8], graph_n: u64) {
    let Ok(t) = NavTier::from_bytes(b, graph_n) else {
        return;
    };
    assert!(t.nodes().iter().all(|&x| (x as u64) < graph_n));
    let enc = t.to_bytes();
    assert_eq!(enc.len(), b.len());
    let back = NavTier::from_bytes(&enc, graph_n).expect("an encoded tier decodes");
    assert_eq!(back.to_bytes(), enc);
    if !t.is_empty() {
        // Search it: every link the parser accepted must be usable.
        let q = vec![0.5f32; t.dim()];
        let mut s = t.scratch();
        let mut out = Vec::new();
        t.entry_points(&q, 8, 4, &mut s, &mut out);
        assert!(out.iter().all(|&x| (x as u64) < graph_n));
    }
}

/// `NavTier::from_bytes` (the payload of `nav.qsec`): what it accepts
/// re-encodes to a payload of the same length and can be searched.
///
/// Input: graph size (u16), then the payload.
pub fn nav_tier(data: &[u8]) {
    if data.len() >= 2 {
        let n = u16::from_le_bytes([data[0], data[1]]) as u64 + 1;
        nav_payload(&data[2..], n);
    }
}

/// An index's `manifest.json` through `format::Manifest::load` (which also
/// checks each listed file's size in the directory); what it accepts
/// serialises and parses back to itself.
pub fn index_manifest(data: &[u8]) {
    let dir = scratch_dir();
    std::fs::write(dir.join(format::MANIFEST_FILE), data).expect("write the manifest");
    // Lay out the files it lists (plain names, small sizes) so that `load`
    // gets past its size checks.
    if let Ok(m) = serde_json::from_slice::<format::Manifest>(data) {
        for f in m.files.iter().take(16) {
            let plain = Path::new(&f.name).file_name().is_some_and(|n| n == f.name.as_str());
            if plain && f.name != format::MANIFEST_FILE && f.bytes <= 1 << 16 {
                let _ = std::fs::write(dir.join(&f.name), vec![0u8; f.bytes as usize]);
            }
        }
    }
    let Ok(m) = format::Manifest::load(&dir) else {
        return;
    };
    if !m.alpha.is_finite() {
        // "alpha": 1e39 parses as an f32 infinity, which serde_json writes
        // as null. Nothing re-saves a loaded index manifest (alpha is
        // informational), so only finite ones must round-trip.
        return;
    }
    let enc = serde_json::to_vec_pretty(&m).expect("a manifest serialises");
    let back: format::Manifest = serde_json::from_slice(&enc).expect("a serialised manifest parses");
    assert_eq!(back.files, m.files);
    assert_eq!(serde_json::to_vec_pretty(&back).expect("serialises"), enc);
}

/// The data set readers: `VectorFile::open` (.fbin, .u8bin, .i8bin, .fvecs,
/// .bvecs, .npy: headers and sizes), `read_ibin` and `read_ivecs`. What they
/// accept has exactly the rows its header promises, all readable.
///
/// Input: format selector, then the file.
pub fn dataset(data: &[u8]) {
    let Some((&sel, b)) = data.split_first() else {
        return;
    };
    let exts = ["fbin", "u8bin", "i8bin", "fvecs", "bvecs", "npy", "ibin", "ivecs"];
    let ext = exts[sel as usize % exts.len()];
    let path = scratch_dir().join(format!("data.{ext}"));
    std::fs::write(&path, b).expect("write the data set file");
    match ext {
        "ibin" | "ivecs" => {
            let r = if ext == "ibin" {
                dataset::read_ibin(&path)
            } else {
                dataset::read_ivecs(&path)
            };
            if let Ok((n, k, ids)) = r {
                assert_eq!(ids.len(), n * k);
                assert!(4 * ids.len() <= b.len());
            }
        }
        _ => {
            let Ok(f) = VectorFile::open(&path) else {
                return;
            };
            let (n, d) = (f.len(), f.dim());
            assert!(d > 0);
            let bytes = n.checked_mul(d).and_then(|x| x.checked_mul(f.elem_type().size()));
            assert!(
                bytes.is_some_and(|x| x <= b.len()),
                "{n} x {d} {} in a {}-byte file",
                f.elem_type().name(),
                b.len()
            );
            let all = f.to_vec_f32();
            assert_eq!(all.len(), n * d);
            assert_eq!(f.f32_data().len(), n * d);
            let _ = f.check_finite();
            if n > 0 {
                assert_eq!(f.raw_row(n - 1).len(), d * f.elem_type().size());
            }
        }
    }
}

mod server;
pub use server::{api_tokens, collection_meta, operations_journal};

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target, by name (the corpus directory names).
pub const TARGETS: &[(&str, Target)] = &[
    ("wal_record", wal_record),
    ("wal_segment", wal_segment),
    ("wal_op", wal_op),
    ("followers", followers),
    ("backup_descriptor", backup_descriptor),
    ("epochs", epochs),
    ("replication_msg", replication_msg),
    ("collection_manifest", collection_manifest),
    ("segment_files", segment_files),
    ("graph_file", graph_file),
    ("node_record", node_record),
    ("section_file", section_file),
    ("pq_codebook", pq_codebook),
    ("nav_tier", nav_tier),
    ("index_manifest", index_manifest),
    ("dataset", dataset),
    ("operations_journal", operations_journal),
    ("api_tokens", api_tokens),
    ("collection_meta", collection_meta),
];
