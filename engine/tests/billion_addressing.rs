//! 1B addressing: a graph file laid out for 1,000,000,000 nodes of 1024-d
//! vectors (the real record layout: f16, R = 64, one sector a node, and
//! f32, two sectors a node), sparse so it takes no real space, with a few
//! records written near node 999,999,999 (past byte 4e12, or 8e12 for
//! f32) and read back through the io_uring and pread readers and the
//! format's offset arithmetic; the id map's section at 1B entries (8 GB,
//! sparse) and the tombstone file's slots checked at the same sizes.
//!
//! ext4 with 4 KiB blocks allows 16 TiB per file: the f32 layout at 1B
//! (8.0 TB) fits, and so would 2B nodes of one sector. A file system
//! that refuses the size (tmpfs on a small machine does not: it is sparse
//! too) makes this test say so rather than pass.

use quarry_engine::collection::{decode_tombstones, encode_tombstones};
use quarry_engine::format::{GraphHeader, NodeLayout, SectionHeader, StoredType, SECTION_HEADER_LEN};
use quarry_engine::io::{PreadReader, SectorReader, UringReader};
use quarry_engine::Metric;
use std::os::unix::fs::FileExt;

const N: u64 = 1_000_000_000;
const DIM: usize = 1024;
const SECTOR: u64 = 4096;

fn rw(path: &std::path::Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .unwrap()
}

/// A vector that names its node.
fn vector(id: u32) -> Vec<f32> {
    (0..DIM)
        .map(|d| ((id as u64 * 31 + d as u64) % 1000) as f32 / 8.0)
        .collect()
}

fn neighbours(id: u32) -> Vec<u32> {
    (1..=64).map(|k| id.wrapping_sub(k) % N as u32).collect()
}

/// Read node `id`'s record through `r` and check it.
fn check(r: &mut dyn SectorReader, layout: &NodeLayout, id: u32) {
    let (sector, off) = layout.locate(id);
    let slot = r.submit(sector, id as u64).unwrap();
    let mut done = Vec::new();
    while done.is_empty() {
        r.complete(1, &mut done).unwrap();
    }
    assert_eq!(done[0].slot, slot);
    done[0].result.as_ref().unwrap();
    let node = layout.node(&r.buffer(slot)[off..]).unwrap();
    let mut v = Vec::new();
    node.vector.to_f32(&mut v);
    assert_eq!(v, vector(id), "{}: node {id}'s vector", r.describe());
    assert_eq!(
        node.neighbors.to_vec(),
        neighbours(id),
        "{}: node {id}'s list",
        r.describe()
    );
    r.release(slot);
}

fn graph_file(dir: &std::path::Path, stored: StoredType, want_bytes_past: u64) {
    let layout = NodeLayout::new(DIM, stored, 64);
    let total_sectors = 1 + layout.data_sectors(N);
    let path = dir.join(format!("graph-{stored}.bin"));
    let f = rw(&path);
    if let Err(e) = f.set_len(total_sectors * SECTOR) {
        panic!(
            "{}: cannot size a sparse file to {} bytes ({e}); this file system limits files below Quarry's 1B layout",
            path.display(),
            total_sectors * SECTOR
        );
    }
    let header = GraphHeader {
        layout,
        metric: Metric::L2,
        n: N,
        medoid: 999_999_999,
        total_sectors,
        data_crc32c: 0,
    };
    f.write_all_at(&header.encode(), 0).unwrap();
    let ids = [0u32, 123_456_789, 999_999_997, 999_999_998, 999_999_999];
    let mut rec = vec![0u8; layout.node_size];
    for &id in &ids {
        layout.encode(&vector(id), &neighbours(id), &mut rec);
        let (sector, off) = layout.locate(id);
        f.write_all_at(&rec, sector * SECTOR + off as u64).unwrap();
    }
    f.sync_all().unwrap();
    let (last, _) = layout.locate(999_999_999);
    assert!(
        last * SECTOR > want_bytes_past,
        "node 999,999,999 at byte {}",
        last * SECTOR
    );
    assert_eq!(
        last + layout.read_sectors() as u64,
        total_sectors,
        "the last node ends the file"
    );
    // The header decodes against the real file length.
    let mut hb = vec![0u8; SECTOR as usize];
    f.read_exact_at(&mut hb, 0).unwrap();
    let h = GraphHeader::decode(&path, &hb, f.metadata().unwrap().len()).unwrap();
    assert_eq!((h.n, h.medoid, h.total_sectors), (N, 999_999_999, total_sectors));
    // Sparse: a few records, not terabytes.
    use std::os::unix::fs::MetadataExt;
    assert!(
        f.metadata().unwrap().blocks() * 512 < 64 << 20,
        "the file is not sparse"
    );
    let read_len = layout.read_sectors() * SECTOR as usize;
    let mut p = PreadReader::open(&path, read_len, 4).unwrap();
    for &id in &ids {
        check(&mut p, &layout, id);
    }
    match UringReader::open(&path, read_len, 4) {
        Ok(mut u) => {
            for &id in &ids {
                check(&mut u, &layout, id);
            }
        }
        Err(e) if std::env::var("QUARRY_REQUIRE_URING").is_err() => {
            eprintln!("io_uring unavailable here ({e}); checked through pread only");
        }
        Err(e) => panic!("io_uring required: {e}"),
    }
    drop(f);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_billion_node_graph_file_is_addressed_and_read_past_4_tb() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // f16: 2,308-byte records, one a sector: node 999,999,999 at 4.096e12.
    graph_file(dir.path(), StoredType::F16, 4_000_000_000_000);
    // f32: 4,356-byte records, two sectors each: past 8e12.
    graph_file(dir.path(), StoredType::F32, 8_000_000_000_000);
}

#[test]
fn the_id_map_and_tombstones_hold_a_billion_entries() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("ids.bin");
    let f = rw(&path);
    let payload = N * 8;
    f.set_len(SECTION_HEADER_LEN as u64 + payload).unwrap();
    let h = SectionHeader {
        magic: *b"QRYIDMAP",
        payload_len: payload,
        payload_crc32c: 0,
        params: [N, 0, 0],
    };
    f.write_all_at(&h.encode(), 0).unwrap();
    // Entry i sits at SECTION_HEADER_LEN + 8 i (docs/format.md).
    let at = |i: u64| SECTION_HEADER_LEN as u64 + 8 * i;
    for i in [0u64, 500_000_000, 999_999_999] {
        f.write_all_at(&(u64::MAX - i).to_le_bytes(), at(i)).unwrap();
    }
    let len = f.metadata().unwrap().len();
    let mut hb = [0u8; SECTION_HEADER_LEN];
    f.read_exact_at(&mut hb, 0).unwrap();
    let back = SectionHeader::decode(&path, b"QRYIDMAP", "id map", &hb, len).unwrap();
    assert_eq!((back.payload_len, back.params[0]), (payload, N));
    for i in [0u64, 500_000_000, 999_999_999] {
        let mut b = [0u8; 8];
        f.read_exact_at(&mut b, at(i)).unwrap();
        assert_eq!(u64::from_le_bytes(b), u64::MAX - i);
    }
    // A file one byte short of 1B entries is refused as truncated.
    f.set_len(len - 1).unwrap();
    assert!(SectionHeader::decode(&path, b"QRYIDMAP", "id map", &hb, len - 1).is_err());
    // Tombstones are u64 slots: an upsert's slot is its LSN, a bulk row's
    // is 2^63 | load << 32 | row, so row 999,999,999 of load 2^31 - 1 and
    // LSNs past 2^40 round-trip.
    let bulk = |load: u64, row: u64| 1u64 << 63 | load << 32 | row;
    let dead = vec![
        3,
        1 << 40,
        N * 4,
        bulk(1, 0),
        bulk(1, 999_999_999),
        bulk((1 << 31) - 1, 999_999_999),
    ];
    assert_eq!(decode_tombstones(&encode_tombstones(&dead)).unwrap(), dead);
    assert_eq!(
        bulk(1, 999_999_999) & 0xffff_ffff,
        999_999_999,
        "a 1B-row bulk load fits its 32 row bits"
    );
}
