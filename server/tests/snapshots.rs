//! Snapshots through gRPC against the real `quarryd`: write, snapshot,
//! write more, restore into a new collection holding exactly the writes
//! up to the snapshot's LSN (and still after a restart); every refusal
//! with its status and field; a corrupt snapshot restores nothing; a
//! restore refused on a node of a replication pair; and kill -9 of
//! quarryd during CreateSnapshot at several delays: the snapshot is whole
//! (and restores) or absent, its leftover goes with the next snapshot, and
//! nothing keeps the log after a restart (`QUARRY_SNAPSHOT_KILLS`,
//! default 6).

mod common;

use common::{code_of, compact_and_wait, create, dataset, delete, describe, Server, DIM};
use quarry_proto::v1 as pb;
use quarry_proto::v1::admin_client::AdminClient;
use quarry_proto::v1::query_client::QueryClient;
use quarry_proto::v1::write_client::WriteClient;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::Channel;
use tonic::Code;

type Model = BTreeMap<u64, Option<(Vec<f32>, Vec<u8>)>>;

fn vector(id: u64, version: u64) -> Vec<f32> {
    use rand::{Rng, SeedableRng};
    let mut r = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(id << 8 | version);
    (0..DIM).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

async fn upsert(ch: Channel, name: &str, ids: impl Iterator<Item = u64>, version: u64) {
    let points: Vec<pb::Point> = ids
        .map(|id| pb::Point {
            id,
            vector: vector(id, version),
            payload: format!("{id}/{version}").into_bytes(),
        })
        .collect();
    let mut w = WriteClient::new(ch);
    for chunk in points.chunks(250) {
        w.upsert(pb::UpsertRequest {
            collection: name.into(),
            points: chunk.to_vec(),
        })
        .await
        .unwrap();
    }
}

/// What Get answers for `ids`, in full.
async fn model(ch: Channel, name: &str, ids: impl Iterator<Item = u64>) -> Model {
    let ids: Vec<u64> = ids.collect();
    let mut q = QueryClient::new(ch);
    let mut m = Model::new();
    for chunk in ids.chunks(200) {
        let r = q
            .get(pb::GetRequest {
                collection: name.into(),
                ids: chunk.to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        for rec in r.records {
            m.insert(rec.id, Some((rec.vector, rec.payload)));
        }
        for id in r.missing_ids {
            m.insert(id, None);
        }
    }
    m
}

async fn snapshot(ch: Channel, collection: &str, out: &Path) -> Result<pb::SnapshotInfo, tonic::Status> {
    AdminClient::new(ch)
        .create_snapshot(pb::CreateSnapshotRequest {
            collection: collection.into(),
            out_dir: out.display().to_string(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn restore(ch: Channel, dir: &Path, collection: &str) -> Result<pb::Collection, tonic::Status> {
    AdminClient::new(ch)
        .restore_snapshot(pb::RestoreSnapshotRequest {
            dir: dir.display().to_string(),
            collection: collection.into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// Directory names under `collections/`.
fn on_disk(data: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data.join("collections"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

const CONFIG: &str = "flush_at = 300\nmax_segments = 2\nwal_segment_mb = 1\nmax_batch = 500\nmax_payload_bytes = 64\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_collection_holds_exactly_the_writes_up_to_the_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &[], CONFIG);
    let ch = server.channel().await;
    create(ch.clone(), "c", true).await;
    upsert(ch.clone(), "c", 0..600, 0).await;
    delete(ch.clone(), "c", (0..600).step_by(7).collect()).await;
    // Everything in segments, then fewer writes than flush_at after the
    // checkpoint: the snapshot's log holds them.
    compact_and_wait(ch.clone(), "c").await;
    upsert(ch.clone(), "c", 600..700, 0).await;
    delete(ch.clone(), "c", vec![650, 3]).await;
    let at_s = model(ch.clone(), "c", 0..800).await;
    let last = describe(ch.clone(), "c").await.writes.unwrap().last_lsn;

    let out = tmp.path().join("snaps").join("c-1");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let info = snapshot(ch.clone(), "c", &out).await.unwrap();
    assert_eq!((info.lsn, info.collection.as_str()), (last, "c"), "{info:?}");
    assert!(info.checkpoint_lsn > 0 && info.checkpoint_lsn < info.lsn, "{info:?}");
    assert!(info.linked_files > 0 && info.copy_reason.is_empty(), "{info:?}");
    assert!(out.join("SNAPSHOT").is_file());

    // Writes after the snapshot: overwrites, new ids, deletes.
    upsert(ch.clone(), "c", 0..50, 1).await;
    upsert(ch.clone(), "c", 700..800, 1).await;
    delete(ch.clone(), "c", (100..120).collect()).await;
    let after = model(ch.clone(), "c", 0..800).await;
    assert_ne!(after, at_s);

    let v = AdminClient::new(ch.clone())
        .verify_snapshot(pb::VerifySnapshotRequest {
            dir: out.display().to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((v.lsn, v.files, v.dim), (info.lsn, info.files, DIM as u32));

    let r = restore(ch.clone(), &out, "r").await.unwrap();
    assert_eq!(r.name, "r");
    assert_eq!(r.vector_count, at_s.values().filter(|v| v.is_some()).count() as u64);
    assert_eq!(
        model(ch.clone(), "r", 0..800).await,
        at_s,
        "exactly the writes up to the snapshot"
    );
    assert_eq!(model(ch.clone(), "c", 0..800).await, after, "the source is untouched");
    let top = common::search_ids(&mut QueryClient::new(ch.clone()), "r", &vector(300, 0), 1, 32).await;
    assert_eq!(top, vec![300]);

    // Refusals, each naming its field.
    let (c, m) = code_of(restore(ch.clone(), &out, "c").await);
    assert_eq!(c, Code::AlreadyExists, "{m}");
    let bad = tmp.path().join("snaps").join("bad");
    // A copy of it, as from a backup host.
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(&out)
        .arg(&bad)
        .status()
        .unwrap()
        .success());
    let wal = std::fs::read_dir(bad.join("wal"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut b = std::fs::read(&wal).unwrap();
    let n = b.len();
    b[n - 3] ^= 0x40;
    std::fs::write(&wal, b).unwrap();
    let before = on_disk(&data);
    let (c, m) = code_of(restore(ch.clone(), &bad, "from_bad").await);
    assert!(
        c == Code::FailedPrecondition && m.contains("wal/wal-") && m.contains("crc32c"),
        "{c:?} {m}"
    );
    assert!(!common::names(ch.clone()).await.contains(&"from_bad".to_string()));
    assert_eq!(on_disk(&data), before, "nothing created");
    for (res, code, field) in [
        (
            snapshot(ch.clone(), "c", Path::new("rel/x")).await,
            Code::InvalidArgument,
            "out_dir",
        ),
        (
            snapshot(ch.clone(), "c", &data.join("x")).await,
            Code::InvalidArgument,
            "inside the data directory",
        ),
        (snapshot(ch.clone(), "c", &out).await, Code::AlreadyExists, "out_dir"),
        (
            snapshot(ch.clone(), "nope", &tmp.path().join("n")).await,
            Code::NotFound,
            "nope",
        ),
        (
            snapshot(ch.clone(), "c", &tmp.path().join("no/such/x")).await,
            Code::NotFound,
            "parent",
        ),
    ] {
        let (c, m) = code_of(res);
        assert!(c == code && m.contains(field), "{code:?} {field}: {c:?} {m}");
    }
    for (res, code, field) in [
        (
            restore(ch.clone(), Path::new("rel"), "x").await,
            Code::InvalidArgument,
            "dir",
        ),
        (
            restore(ch.clone(), &tmp.path().join("none"), "x").await,
            Code::NotFound,
            "none",
        ),
        (restore(ch.clone(), &out, "a b").await, Code::InvalidArgument, "name"),
    ] {
        let (c, m) = code_of(res.map(|_| ()));
        assert!(c == code && m.contains(field), "{code:?} {field}: {c:?} {m}");
    }

    // A restart keeps the restored collection; it takes writes after S.
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(30)).success());
    let server = Server::start(&data, &[], CONFIG);
    let ch = server.channel().await;
    assert_eq!(model(ch.clone(), "r", 0..800).await, at_s);
    upsert(ch.clone(), "r", 5000..5001, 9).await;
    let w = describe(ch.clone(), "r").await.writes.unwrap();
    assert_eq!(w.last_lsn, info.lsn + 1, "the restored log continues after S");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pair_node_takes_snapshots_and_refuses_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("token");
    std::fs::write(&token, "snapshot-test-token-0123456789abcdef\n").unwrap();
    let repl = format!(
        "{CONFIG}[replication]\nrole = \"primary\"\npeer = \"127.0.0.1:1\"\nreplication_listen = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n",
        token.display()
    );
    let server = Server::start(&tmp.path().join("data"), &[], &repl);
    let ch = server.channel().await;
    create(ch.clone(), "c", true).await;
    let out = tmp.path().join("s");
    let info = snapshot(ch.clone(), "c", &out).await.unwrap();
    assert_eq!(info.lsn, 0);
    let (c, m) = code_of(restore(ch.clone(), &out, "r").await);
    assert!(
        c == Code::FailedPrecondition && m.contains("replication pair"),
        "{c:?} {m}"
    );
}

/// The collection for the kill test: a bulk-loaded segment and 12,000
/// upserts in the log after it (about 2 MiB of log in 1 MiB segments).
async fn big(ch: Channel, tmp: &Path) -> Model {
    create(ch.clone(), "c", true).await;
    let (source, _, _) = dataset(tmp, 8000);
    common::build_and_wait(ch.clone(), "c", &source, 0).await;
    upsert(ch.clone(), "c", 8000..20_000, 0).await;
    model(ch, "c", (0..20_000).step_by(97)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_create_snapshot_leaves_it_whole_or_absent() {
    let kills: u64 = std::env::var("QUARRY_SNAPSHOT_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let config =
        "flush_at = 100000\nwrite_stall_at = 200000\nwal_segment_mb = 1\nmax_batch = 500\nmax_payload_bytes = 64\n";
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start(&data, &[], config);
    let sample = big(server.channel().await, tmp.path()).await;
    // Snapshots on the data directory's file system (links) and, where
    // there is one, another (copies: slower, so more kills land inside).
    let shm = Path::new("/dev/shm").join(format!("quarry-snapshot-test-{}", std::process::id()));
    let elsewhere = std::fs::create_dir_all(&shm).is_ok().then_some(shm.clone());
    let mut server = server;
    let (mut whole, mut absent, mut leftovers) = (0, 0, 0);
    let mut restored = false;
    for k in 0..kills {
        let base: PathBuf = match (&elsewhere, k % 2) {
            (Some(d), 1) => d.clone(),
            _ => tmp.path().to_path_buf(),
        };
        let out = base.join(format!("snap-{k}"));
        let ch = server.channel().await;
        let call = tokio::spawn({
            let (ch, out) = (ch.clone(), out.clone());
            async move { snapshot(ch, "c", &out).await }
        });
        tokio::time::sleep(Duration::from_millis([0, 3, 8, 15, 30, 60][k as usize % 6] + k / 6)).await;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        let _ = call.await;
        let tmps: Vec<PathBuf> = std::fs::read_dir(&base)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.display().to_string().contains(&format!("snap-{k}.tmp-")))
            .collect();
        assert!(tmps.len() <= 1, "{tmps:?}");
        if out.exists() {
            whole += 1;
            let r = quarry_engine::collection::verify_backup(&quarry_engine::storage::RealFs, &out)
                .unwrap_or_else(|e| panic!("kill {k}: the snapshot is there but not whole: {e}"));
            assert!(r.log_records >= 12_000, "{r:?}");
        } else {
            absent += 1;
        }
        server = Server::start(&data, &[], config);
        let ch = server.channel().await;
        if !out.exists() {
            // The next snapshot to the same place removes the leftover.
            let info = snapshot(ch.clone(), "c", &out).await.unwrap();
            assert_eq!(info.leftovers_removed.len(), tmps.len(), "{info:?}");
            leftovers += tmps.len();
        }
        assert!(tmps.iter().all(|t| !t.exists()), "{tmps:?}");
        if !restored {
            let r = format!("r{k}");
            restore(ch.clone(), &out, &r).await.unwrap();
            assert_eq!(model(ch.clone(), &r, sample.keys().copied()).await, sample, "kill {k}");
            restored = true;
        }
        assert_eq!(
            model(ch.clone(), "c", sample.keys().copied()).await,
            sample,
            "kill {k}: the source"
        );
    }
    eprintln!("snapshot kills: {kills}, {whole} whole, {absent} absent, {leftovers} leftovers removed");
    // Nothing keeps the log: no follower was ever registered, and a
    // compaction lets every log segment but the active one go.
    let ch = server.channel().await;
    assert!(!data.join("collections/c/live/wal/followers.bin").exists());
    let before = describe(ch.clone(), "c").await.writes.unwrap().wal_bytes;
    assert!(before > 3 << 19, "{before} bytes of log");
    compact_and_wait(ch.clone(), "c").await;
    let after = describe(ch.clone(), "c").await.writes.unwrap().wal_bytes;
    assert!(
        after <= 1 << 20,
        "{after} bytes of log after a compaction ({before} before)"
    );
    if let Some(d) = elsewhere {
        let _ = std::fs::remove_dir_all(d);
    }
}
