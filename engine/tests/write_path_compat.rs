//! Pins the write path's on-disk formats, byte for byte, as documented in
//! `docs/format.md` ("Write-ahead log", "Followers file", "Collection
//! directory"): the WAL segment header and record, the WAL
//! operation bodies, `followers.bin`, `records.bin`, tombstone files and
//! the collection manifest. Expected bytes are built here from the
//! documented layouts with nothing but `std` and `crc32c`, so an engine
//! change that is not a deliberate format change fails with
//! "format changed: ...".

use quarry_engine::collection::{decode_records, decode_tombstones, encode_records, encode_tombstones, Manifest, Op};
use quarry_engine::wal::{decode_followers, decode_record, encode_followers, encode_record, HEADER, MAGIC, VERSION};
use quarry_engine::Metric;
use std::sync::Arc;

macro_rules! pin_eq {
    ($got:expr, $want:expr, $what:expr) => {{
        let (got, want) = (&$got, &$want);
        assert!(
            got == want,
            "format changed: {}: found {:?}, expected {:?}",
            $what,
            got,
            want
        )
    }};
}

fn le32(x: u32) -> [u8; 4] {
    x.to_le_bytes()
}
fn le64(x: u64) -> [u8; 8] {
    x.to_le_bytes()
}

#[test]
fn wal_segment_header_and_record_v1() {
    pin_eq!(*MAGIC, *b"QWAL", "segment magic");
    pin_eq!(VERSION, 1, "segment version");
    pin_eq!(HEADER, 16, "segment header bytes");
    // [len u32][crc32c u32][lsn u64][synced u64][body]; the crc covers
    // bytes 0..4 followed by 8..24+len.
    let body = b"hello";
    let mut want = Vec::new();
    want.extend(le32(5));
    want.extend([0; 4]);
    want.extend(le64(42));
    want.extend(le64(40));
    want.extend(body);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&want[0..4]), &want[8..]);
    want[4..8].copy_from_slice(&le32(crc));
    let mut got = Vec::new();
    encode_record(42, 40, body, &mut got);
    pin_eq!(got, want, "WAL record bytes");
    let (head, range, next) = decode_record(&want, 0, 1 << 20).unwrap();
    pin_eq!(
        (head.lsn, head.synced, range, next),
        (42, 40, 24..29, 29),
        "WAL record decode"
    );
}

#[test]
fn wal_operation_bodies_v1() {
    let up = Op::Upsert {
        id: 7,
        vector: vec![1.5, -2.0],
        payload: b"ab".to_vec(),
    };
    let mut want = vec![1u8];
    want.extend(le64(7));
    want.extend(le32(2));
    want.extend(b"ab");
    want.extend(1.5f32.to_le_bytes());
    want.extend((-2.0f32).to_le_bytes());
    pin_eq!(up.encode(), want, "upsert body");
    let mut want = vec![2u8];
    want.extend(le64(9));
    pin_eq!(Op::Delete { id: 9 }.encode(), want, "delete body");
    let mut want = vec![3u8];
    want.extend(15u16.to_le_bytes());
    want.extend(b"bulk-0000000004");
    pin_eq!(
        Op::AddSegment {
            name: "bulk-0000000004".into()
        }
        .encode(),
        want,
        "add-segment body"
    );
}

#[test]
fn followers_file_v1() {
    // Header QWFL, version 1, count; entries sorted by name: state u8,
    // name length u8, name, acked u64, registered u64, last ack u64; crc32c
    // of everything before it.
    let mut want = Vec::new();
    want.extend(b"QWFL");
    want.extend(le32(1));
    want.extend(le32(2));
    for (state, name, acked, reg, last) in [(0u8, "a", 10u64, 100u64, 101u64), (1, "standby", 3, 50, 60)] {
        want.push(state);
        want.push(name.len() as u8);
        want.extend(name.as_bytes());
        want.extend(le64(acked));
        want.extend(le64(reg));
        want.extend(le64(last));
    }
    let crc = crc32c::crc32c(&want);
    want.extend(le32(crc));
    let map = decode_followers(&want).unwrap();
    pin_eq!(map.len(), 2, "followers decoded");
    pin_eq!(encode_followers(&map), want, "followers.bin bytes");
    let empty = encode_followers(&Default::default());
    pin_eq!(empty.len(), 16, "an empty registry");
}

#[test]
fn segment_records_and_tombstones_v1() {
    // records.bin: per node slot u64, id u64, payload length u32, payload;
    // then crc32c of everything before it.
    let mut want = Vec::new();
    for (slot, id, p) in [(5u64, 100u64, &b""[..]), ((1 << 63) | (2 << 32) | 7, 200, &b"xyz"[..])] {
        want.extend(le64(slot));
        want.extend(le64(id));
        want.extend(le32(p.len() as u32));
        want.extend(p);
    }
    let crc = crc32c::crc32c(&want);
    want.extend(le32(crc));
    let got = encode_records(
        &[5, (1 << 63) | (2 << 32) | 7],
        &[100, 200],
        &[Arc::from(&b""[..]), Arc::from(&b"xyz"[..])],
    );
    pin_eq!(got, want, "records.bin bytes");
    pin_eq!(decode_records(&want).unwrap().len(), 2, "records decoded");
    // tomb-*.bin: dead slots as u64 ascending, then crc32c.
    let mut want = Vec::new();
    want.extend(le64(3));
    want.extend(le64(9));
    let crc = crc32c::crc32c(&want);
    want.extend(le32(crc));
    pin_eq!(encode_tombstones(&[3, 9]), want, "tombstone bytes");
    pin_eq!(decode_tombstones(&want).unwrap(), vec![3, 9], "tombstones decoded");
}

#[test]
fn collection_manifest_v1() {
    // JSON with exactly these keys; version 1.
    let m = Manifest::new(16, Metric::Cosine);
    let v: serde_json::Value = serde_json::from_slice(&m.encode()).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    let mut keys = keys;
    keys.sort();
    pin_eq!(
        keys,
        vec![
            "checkpoint_lsn",
            "dim",
            "generation",
            "metric",
            "segments",
            "tombstones",
            "version"
        ],
        "manifest keys"
    );
    pin_eq!(
        (v["version"].as_u64(), v["dim"].as_u64(), v["metric"].as_str()),
        (Some(1), Some(16), Some("cosine")),
        "manifest values"
    );
    // A manifest written by the 2026-11 release reads back.
    let old = br#"{"version":1,"dim":16,"metric":"l2","checkpoint_lsn":300,"generation":2,"segments":["seg-00000000000000000300-00000002"],"tombstones":null}"#;
    let m = Manifest::decode(old).unwrap();
    pin_eq!(
        (m.checkpoint_lsn, m.generation, m.segments.len()),
        (300, 2, 1),
        "old manifest"
    );
}
