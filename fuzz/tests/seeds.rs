//! Writes the seed files of `corpus/` from the real encoders (ignored by
//! default; run it after a format change and commit what changed):
//!
//!     cargo test --release --no-default-features --test seeds -- --ignored
//!
//! Seeds are named `seed-*`; files found by the fuzzer keep libFuzzer's
//! names (or `crash-*` for reproducers) and are never rewritten here.

use quarry_engine::collection::{self, Op};
use quarry_engine::dataset;
use quarry_engine::format::{self, files, StoredType, SECTOR};
use quarry_engine::graph::BuildParams;
use quarry_engine::index::{build_index, IndexBuildOptions};
use quarry_engine::storage::RealFs;
use quarry_engine::wal::{self, Wal, WalOptions};
use quarry_engine::Metric;
use std::path::Path;
use std::sync::Arc;

fn put(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn with(prefix: &[u8], b: &[u8]) -> Vec<u8> {
    [prefix, b].concat()
}

fn upsert(id: u64, dim: usize) -> Op {
    Op::Upsert {
        id,
        vector: (0..dim).map(|i| i as f32 * 0.5 - 1.0).collect(),
        payload: format!("payload {id}").into_bytes(),
    }
}

#[test]
#[ignore = "writes corpus/; run by hand"]
fn write_seeds() {
    let tmp = quarry_fuzz::scratch_dir();

    // WAL record and operation bodies.
    let body = upsert(7, 4).encode();
    let mut rec = Vec::new();
    wal::encode_record(1, 0, &body, &mut rec);
    put("wal_record", "upsert", &with(&[0, 0, 0, 4], &rec));
    let mut rec2 = vec![0u8; 10];
    wal::encode_record(2, 1, &Op::Delete { id: 9 }.encode(), &mut rec2);
    put("wal_record", "delete-at-10", &with(&[0, 10, 0, 3], &rec2));
    put("wal_op", "upsert-4d", &with(&[4], &body));
    put("wal_op", "upsert-0d", &with(&[0], &upsert(1, 0).encode()));
    put("wal_op", "delete", &with(&[4], &Op::Delete { id: u64::MAX }.encode()));

    // A real WAL: one segment with records, and a log of three segments.
    let fs = Arc::new(RealFs);
    let one = tmp.join("wal1");
    let (w, _) = Wal::open(fs.clone(), &one, WalOptions::default(), 1).unwrap();
    for i in 0..4 {
        w.append(&[&upsert(i, 4).encode()]).unwrap();
    }
    w.append(&[&Op::Delete { id: 2 }.encode()]).unwrap();
    w.begin_epoch(wal::Epoch { term: 1, node: 0xfeed }).unwrap();
    w.register_follower("standby-1", 3).unwrap();
    w.register_follower("b", 1).unwrap();
    let seg = std::fs::read(w.newest_file()).unwrap();
    let fol = std::fs::read(one.join(wal::FOLLOWERS_FILE)).unwrap();
    let eps = std::fs::read(one.join(wal::EPOCHS_FILE)).unwrap();
    drop(w);
    put("wal_segment", "five-records", &with(&[0], &seg));
    put("wal_segment", "torn-tail", &with(&[0], &seg[..seg.len() - 7]));
    put("wal_segment", "header-only", &with(&[0], &seg[..wal::HEADER]));
    put("followers", "two", &with(&[0], &fol));
    put("epochs", "one", &with(&[6], &eps));
    let three_epochs = wal::EpochHistory::from_entries(vec![
        (wal::Epoch { term: 1, node: 1 }, 1),
        (wal::Epoch { term: 2, node: 9 }, 40),
        (wal::Epoch { term: 2, node: 10 }, 41),
    ])
    .unwrap();
    put("epochs", "three", &with(&[20], &wal::encode_epochs(&three_epochs)));
    put("epochs", "none", &with(&[0], &wal::encode_epochs(&Default::default())));
    put(
        "followers",
        "none",
        &with(&[0], &wal::encode_followers(&Default::default())),
    );

    let three = tmp.join("wal3");
    let opts = WalOptions {
        segment_bytes: 120,
        ..WalOptions::default()
    };
    let (w, _) = Wal::open(fs.clone(), &three, opts, 5).unwrap();
    for i in 0..6 {
        w.append(&[&upsert(i, 2).encode()]).unwrap();
    }
    drop(w);
    let mut names: Vec<_> = std::fs::read_dir(&three)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    let mut all = vec![2u8]; // bit 1: split at each QWAL
    for n in &names {
        all.extend(std::fs::read(n).unwrap());
    }
    put("wal_segment", "three-segments", &all);

    // Collection manifest, records and tombstones.
    let mut m = collection::Manifest::new(4, Metric::Cosine);
    m.checkpoint_lsn = 42;
    m.generation = 3;
    m.segments = vec!["seg-00000000000000000042-00000003".into()];
    m.tombstones = Some("tombstones-00000003.bin".into());
    put("collection_manifest", "one-segment", &m.encode());
    put(
        "collection_manifest",
        "empty",
        &collection::Manifest::new(768, Metric::L2).encode(),
    );
    let payloads: Vec<Arc<[u8]>> = vec![Arc::from(&b"a"[..]), Arc::from(&b""[..]), Arc::from(&b"xyz"[..])];
    put(
        "segment_files",
        "records",
        &with(&[0], &collection::encode_records(&[0, 1, 5], &[10, 11, 15], &payloads)),
    );
    put(
        "segment_files",
        "tombstones",
        &with(&[0], &collection::encode_tombstones(&[1, 5, 9])),
    );

    // A small index: graph, sections, manifest.
    let (n, dim) = (64usize, 8usize);
    let mut x = 1u64;
    let data: Vec<f32> = (0..n * dim)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    let ids: Vec<u64> = (100..100 + n as u64).collect();
    let idx = tmp.join("index");
    std::fs::create_dir_all(&idx).unwrap();
    let o = IndexBuildOptions {
        metric: Metric::L2,
        graph: BuildParams::new(8, 16),
        pq_bytes: 4,
        stored: StoredType::F32,
        nav_sample: 16,
        rerank_file: false,
        opq: false,
        ram_budget: None,
        colocate: false,
    };
    build_index(data.clone().into(), dim, &ids, &idx, &o, &mut |_, _, _| {}).unwrap();
    let graph = std::fs::read(idx.join(files::GRAPH)).unwrap();
    put("graph_file", "f32-64x8", &with(&[0], &graph));
    put(
        "node_record",
        "f32-8d-r8",
        &with(&[8, 0, 0, 8], &graph[SECTOR..SECTOR + 68]),
    );
    put("node_record", "i8-8d-r4", &with(&[8, 0, 2, 4], &[1u8; 32]));
    put(
        "index_manifest",
        "f32-64x8",
        &std::fs::read(idx.join(format::MANIFEST_FILE)).unwrap(),
    );
    for (i, f) in [files::PQ_PIVOTS, files::PQ_CODES, files::IDS, files::NAV]
        .into_iter()
        .enumerate()
    {
        let b = std::fs::read(idx.join(f)).unwrap();
        put("section_file", f, &with(&[(i as u8 + 1) << 1], &b));
        if i == 2 {
            put("section_file", "own-magic", &with(&[0], &b));
        }
    }
    let (_, piv) = format::read_section(&idx.join(files::PQ_PIVOTS), b"QRYPQPIV", "PQ pivots", true).unwrap();
    put("pq_codebook", "8d-m4", &with(&[0], &piv));
    let (_, nav) = format::read_section(&idx.join(files::NAV), b"QRYNAVHN", "nav", true).unwrap();
    put("nav_tier", "16-of-64", &with(&(n as u16 - 1).to_le_bytes(), &nav));

    // Data set files.
    let d = tmp.join("x.fbin");
    dataset::write_fbin(&d, 3, 4, &data[..12]).unwrap();
    put("dataset", "fbin-3x4", &with(&[0], &std::fs::read(&d).unwrap()));
    let d = tmp.join("x.ibin");
    dataset::write_ibin(&d, 2, 3, &[1, 2, 3, 4, 5, 6]).unwrap();
    put("dataset", "ibin-2x3", &with(&[6], &std::fs::read(&d).unwrap()));
    let mut u8bin = vec![2, 0, 0, 0, 3, 0, 0, 0];
    u8bin.extend([1, 2, 3, 250, 251, 252]);
    put("dataset", "u8bin-2x3", &with(&[1], &u8bin));
    put("dataset", "i8bin-2x3", &with(&[2], &u8bin));
    let mut fvecs = Vec::new();
    for r in 0..2 {
        fvecs.extend(2i32.to_le_bytes());
        fvecs.extend((r as f32).to_le_bytes());
        fvecs.extend(1.5f32.to_le_bytes());
    }
    put("dataset", "fvecs-2x2", &with(&[3], &fvecs));
    put("dataset", "ivecs-2x2", &with(&[7], &fvecs));
    let bvecs = [3, 0, 0, 0, 1, 2, 3, 3, 0, 0, 0, 4, 5, 6];
    put("dataset", "bvecs-2x3", &with(&[4], &bvecs));
    for (name, hdr, elems) in [
        (
            "npy-v1-f4",
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
            24,
        ),
        (
            "npy-v1-u1",
            "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2), }",
            6,
        ),
    ] {
        let mut h = hdr.to_string();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((h.len() as u16).to_le_bytes());
        b.extend(h.as_bytes());
        b.extend(vec![0x3f; elems]);
        put("dataset", name, &with(&[5], &b));
    }
    let mut v2 = b"\x93NUMPY\x02\x00".to_vec();
    let h = "{'descr': '|i1', 'fortran_order': False, 'shape': (1, 4), }\n";
    v2.extend((h.len() as u32).to_le_bytes());
    v2.extend(h.as_bytes());
    v2.extend([1, 2, 3, 4]);
    put("dataset", "npy-v2-i1", &with(&[5], &v2));
}

#[test]
#[ignore = "writes corpus/; run by hand"]
fn write_replication_seeds() {
    use prost::Message;
    use quarry_proto::replication::v1 as pb;
    use quarry_server::replication::handshake::{CollectionPlan, NodeReport, SnapshotReason};
    use quarry_server::replication::session::{CollectionState, Hello, Welcome};
    use quarry_server::replication::stream::{Ack, Chunk};
    use quarry_server::replication::wire;
    let e = |term, node| wal::Epoch { term, node };
    let hello = Hello {
        node: NodeReport {
            pair_id: "0f".repeat(16),
            node_id: 2,
            epoch: e(3, 1),
            has_data: true,
        },
        collections: vec![CollectionState {
            name: "docs".into(),
            incarnation: 9,
            history: wal::EpochHistory::from_entries(vec![(e(1, 1), 1), (e(3, 1), 50)]).unwrap(),
            durable: 70,
            checkpoint: 40,
            needs_snapshot: false,
        }],
    };
    let up = |msg| {
        pb::FromStandby {
            epoch: Some(wire::epoch_to(e(3, 1))),
            msg: Some(msg),
        }
        .encode_to_vec()
    };
    put(
        "replication_msg",
        "hello",
        &with(&[0], &up(pb::from_standby::Msg::Hello(wire::hello_to(&hello)))),
    );
    let ack = Ack {
        received: 71,
        durable: 71,
        applied: 71,
        echo_sent_at_us: 5,
    };
    put(
        "replication_msg",
        "ack",
        &with(&[0], &up(pb::from_standby::Msg::Ack(wire::ack_to("docs", &ack)))),
    );
    let down = |msg| {
        pb::FromPrimary {
            epoch: Some(wire::epoch_to(e(3, 1))),
            msg: Some(msg),
        }
        .encode_to_vec()
    };
    let welcome = Welcome {
        pair_id: "0f".repeat(16),
        node_id: 1,
        epoch: e(3, 1),
        plans: vec![
            ("docs".into(), 9, CollectionPlan::Stream { from: 71 }),
            ("logs".into(), 4, CollectionPlan::Truncate { after: 12 }),
            (
                "img".into(),
                5,
                CollectionPlan::Snapshot(SnapshotReason::OtherIncarnation),
            ),
        ],
        drop: vec!["gone".into()],
        metas: [("img".to_string(), meta_json())].into_iter().collect(),
    };
    quarry_server::meta::CollectionMeta::from_peer(&meta_json()).expect("the seed is a valid collection.json");
    put("replication_msg", "collection_json", &with(&[4], &meta_json()));
    put(
        "replication_msg",
        "welcome",
        &with(&[2], &down(pb::from_primary::Msg::Welcome(wire::welcome_to(&welcome)))),
    );
    let body = upsert(7, 4).encode();
    let chunk = Chunk {
        epoch: e(3, 1),
        first_lsn: 71,
        crcs: vec![crc32c::crc32c(&body)],
        records: vec![body],
        sent_at_us: 9,
        primary_durable: 71,
    };
    put(
        "replication_msg",
        "chunk",
        &with(
            &[2],
            &down(pb::from_primary::Msg::Chunk(wire::chunk_to("docs", &chunk))),
        ),
    );

    // An operations journal as quarryd writes it: a build done, a
    // compaction failed, one interrupted by a restart; and a torn tail.
    let jdir = quarry_fuzz::scratch_dir().join("ops");
    std::fs::create_dir_all(&jdir).unwrap();
    let fs: Arc<dyn quarry_engine::storage::Vfs> = Arc::new(RealFs);
    {
        use quarry_server::operations::Operations;
        let ops = Operations::open(fs.clone(), &jdir).unwrap();
        let b = ops.start("build", "docs", "reading", 100).unwrap();
        b.lock().unwrap().finish(Ok(100));
        let c = ops.start("compact", "docs", "queued", 100).unwrap();
        c.lock().unwrap().finish(Err("no space left on device".into()));
        ops.start("build", "img", "reading", 7).unwrap();
    }
    drop(quarry_server::operations::Operations::open(fs.clone(), &jdir).unwrap());
    let journal = std::fs::read(jdir.join(quarry_server::op_journal::FILE)).unwrap();
    put("operations_journal", "three", &journal);
    put("operations_journal", "torn", &journal[..journal.len() - 7]);
}

#[test]
#[ignore = "writes corpus/; run by hand"]
fn write_backup_seeds() {
    let file = |path: &str, len, crc| collection::SnapshotFile {
        path: path.into(),
        len,
        crc,
    };
    let d = collection::BackupDescriptor {
        checkpoint: 40,
        lsn: 57,
        created_unix_ms: 1_765_000_000_000,
        dim: 8,
        metric: Metric::L2,
        collection: "img".into(),
        meta: meta_json(),
        files: vec![
            file("manifest.json", 180, 0x1234_5678),
            file("seg-00000000000000000040-00000002/index/graph.qgr", 8192, 7),
            file("seg-00000000000000000040-00000002/records.bin", 904, 8),
            file("tomb-00000000000000000040-00000002.bin", 20, 9),
            file("wal/wal-00000000000000000041.log", 3100, 10),
        ],
    };
    put("backup_descriptor", "five-files", &with(&[0], &d.encode()));
    // Mode 1: mutations of it get their checksum fixed, so reach the checks behind it.
    put("backup_descriptor", "five-files-fix", &with(&[1], &d.encode()));
    let empty = collection::BackupDescriptor {
        checkpoint: 0,
        lsn: 0,
        collection: "a".into(),
        meta: Vec::new(),
        files: vec![file("wal/wal-00000000000000000001.log", 16, 11)],
        ..d
    };
    put("backup_descriptor", "empty-log", &with(&[0], &empty.encode()));
}

/// A primary's `collection.json` as quarryd writes it.
fn meta_json() -> Vec<u8> {
    br#"{
  "version": 1,
  "name": "img",
  "dim": 8,
  "metric": "l2",
  "params": {"max_degree": 64, "build_list_size": 100, "alpha": 1.2, "pq_bytes": 2, "opq": false, "nav_sample": 0},
  "stored": "f32",
  "state": "ready",
  "index_dir": null,
  "generation": 0,
  "operation_id": "",
  "error": "",
  "vector_count": 0,
  "mutable": true,
  "incarnation": 5
}"#
    .to_vec()
}
