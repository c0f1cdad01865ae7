//! One kind of collection, end to end over gRPC: a file bulk-loaded with
//! BuildIndex, then upserts and deletes, a restart, a second file loaded
//! into the collection that has data; and a data directory written by the
//! previous release (read-only built collection, mutable collection) that
//! opens and takes writes.

mod common;

use common::{build_and_wait, create, dataset, delete, describe, recall, search_all, search_ids, Server, DIM};
use quarry_proto::v1 as pb;
use quarry_proto::v1::query_client::QueryClient;
use quarry_proto::v1::write_client::WriteClient;
use std::path::Path;
use std::time::Duration;
use tonic::transport::Channel;

async fn get(ch: Channel, name: &str, ids: Vec<u64>) -> Vec<pb::Record> {
    QueryClient::new(ch)
        .get(pb::GetRequest {
            collection: name.into(),
            ids,
        })
        .await
        .unwrap()
        .into_inner()
        .records
}

async fn top1(ch: Channel, name: &str, v: &[f32]) -> Option<u64> {
    search_ids(&mut QueryClient::new(ch), name, v, 10, 40)
        .await
        .first()
        .copied()
}

async fn upsert(ch: Channel, name: &str, id: u64, vector: Vec<f32>) {
    WriteClient::new(ch)
        .upsert(pb::UpsertRequest {
            collection: name.into(),
            points: vec![pb::Point {
                id,
                vector,
                payload: vec![],
            }],
        })
        .await
        .unwrap();
}

fn restart(server: &mut Server, data: &Path) -> Server {
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(30)).success());
    Server::start(data, &[], "flush_at = 500\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_built_collection_takes_writes_restarts_and_takes_a_second_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (source, queries, truth) = dataset(tmp.path(), 4000);
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &[], "");
    let ch = server.channel().await;
    create(ch.clone(), "docs", false).await;
    build_and_wait(ch.clone(), "docs", &source, 0).await;
    assert_eq!(describe(ch.clone(), "docs").await.vector_count, 4000);
    let r = recall(&search_all(ch.clone(), "docs", &queries).await, &truth);
    assert!(r >= 0.9, "recall@10 after the bulk load {r}");

    // Writes after the build: a new point exactly at query 0, and 50 ids
    // of the file deleted.
    upsert(ch.clone(), "docs", 20_000, queries[..DIM].to_vec()).await;
    assert_eq!(top1(ch.clone(), "docs", &queries[..DIM]).await, Some(20_000));
    delete(ch.clone(), "docs", (0..50).collect()).await;
    let answers = search_all(ch.clone(), "docs", &queries).await;
    assert!(answers.iter().flatten().all(|&id| id >= 50), "a deleted id came back");
    let truth_live: Vec<Vec<u32>> = truth
        .iter()
        .map(|t| t.iter().copied().filter(|&i| i >= 50).collect())
        .collect();
    let hits: usize = answers
        .iter()
        .zip(&truth_live)
        .map(|(g, t)| g.iter().filter(|id| t.contains(&(**id as u32))).count())
        .sum();
    let possible: usize = truth_live.iter().map(|t| t.len().min(10)).sum();
    assert!(
        hits as f64 >= 0.9 * possible as f64,
        "recall after deletes {hits}/{possible}"
    );
    assert_eq!(describe(ch.clone(), "docs").await.vector_count, 4000 - 50 + 1);

    // A restart gives the same answers.
    let mut server = restart(&mut server, &data);
    let ch = server.channel().await;
    assert_eq!(search_all(ch.clone(), "docs", &queries).await, answers);
    assert_eq!(
        get(ch.clone(), "docs", vec![20_000]).await[0].vector,
        queries[..DIM].to_vec()
    );

    // A second file into the collection that has data: 100 rows with ids
    // 3950..4049 replace 3950..3999 and add 4000..4049.
    let second = tmp.path().join("second.fbin");
    quarry_engine::dataset::write_fbin(&second, 100, DIM, &queries).unwrap();
    build_and_wait(ch.clone(), "docs", &second, 3950).await;
    assert_eq!(describe(ch.clone(), "docs").await.vector_count, 4000 - 50 + 1 + 50);
    assert_eq!(
        get(ch.clone(), "docs", vec![3960]).await[0].vector,
        queries[10 * DIM..11 * DIM].to_vec()
    );
    // Query 1 is now a stored point (id 3951); query 0 is both 3950 and
    // 20,000 (the same vector).
    assert_eq!(top1(ch.clone(), "docs", &queries[DIM..2 * DIM]).await, Some(3951));
    let mut server = restart(&mut server, &data);
    let ch = server.channel().await;
    assert_eq!(describe(ch.clone(), "docs").await.vector_count, 4001);
    assert_eq!(top1(ch.clone(), "docs", &queries[DIM..2 * DIM]).await, Some(3951));
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(30)).success());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// `collections/ro`: built by BuildIndex from 600 × 16-d vectors (ids
/// 0..599, R 16, 4 PQ bytes) by the release of 2026-11-22;
/// `collections/mut`: created mutable, 200 upserts (ids 5000..5199) in its
/// WAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_the_previous_release_opens_and_takes_writes() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/datadir-2026-11-22");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_dir(&fixture, &data);
    let index = data.join("collections/ro/index-1");
    let graph_before = std::fs::read(index.join("graph.qgr")).unwrap();
    let cfg = "";
    let mut server = Server::start(&data, &[], cfg);
    let ch = server.channel().await;
    let ro = describe(ch.clone(), "ro").await;
    assert_eq!((ro.vector_count, ro.dim), (600, 16));
    assert_eq!(describe(ch.clone(), "mut").await.vector_count, 200);
    // The built index serves as it is: each stored vector finds itself.
    let recs = get(ch.clone(), "ro", (0..20).collect()).await;
    let mut found = 0;
    for r in &recs {
        found += usize::from(top1(ch.clone(), "ro", &r.vector).await == Some(r.id));
    }
    assert!(found >= 19, "{found} of 20 stored vectors found themselves");
    // And takes writes.
    let v: Vec<f32> = (0..16).map(|i| 100.0 + i as f32).collect();
    upsert(ch.clone(), "ro", 777_777, v.clone()).await;
    delete(ch.clone(), "ro", vec![0, 1, 2]).await;
    assert_eq!(top1(ch.clone(), "ro", &v).await, Some(777_777));
    assert_eq!(describe(ch.clone(), "ro").await.vector_count, 600 - 3 + 1);
    upsert(ch.clone(), "mut", 1, v.clone()).await;
    let mut server = restart(&mut server, &data);
    let ch = server.channel().await;
    assert_eq!(describe(ch.clone(), "ro").await.vector_count, 598);
    assert_eq!(top1(ch.clone(), "ro", &v).await, Some(777_777));
    let g = QueryClient::new(ch.clone())
        .get(pb::GetRequest {
            collection: "ro".into(),
            ids: vec![0],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        g.records.is_empty() && g.missing_ids == [0],
        "a deleted id stays deleted"
    );
    assert_eq!(describe(ch.clone(), "mut").await.vector_count, 201);
    // The old index's files were not rewritten.
    assert_eq!(std::fs::read(index.join("graph.qgr")).unwrap(), graph_before);
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(30)).success());
}

/// A BulkUpsert stream of at least `flush_at` points into an empty
/// collection is bulk-loaded (one segment built at batch speed, nothing in
/// the fresh index); a later id in the stream replaces an earlier one;
/// payloads are kept. A shorter stream goes through the write path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_upsert_into_an_empty_collection_is_built_as_a_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &[], "flush_at = 500\n");
    let ch = server.channel().await;
    create(ch.clone(), "s", false).await;
    // Distinct for every id used here (7919 is invertible mod the prime
    // 10007).
    let v = |i: u64| -> Vec<f32> {
        (0..DIM as u64)
            .map(|d| ((i * 7919 + d * 104_729) % 10_007) as f32 / 100.0)
            .collect()
    };
    let msgs: Vec<pb::UpsertRequest> = (0..3u64)
        .map(|m| pb::UpsertRequest {
            collection: "s".into(),
            points: (0..400u64)
                .map(|i| {
                    // Message 2 sends ids 0..400 again with new vectors.
                    let id = if m == 2 { i } else { m * 400 + i };
                    pb::Point {
                        id,
                        vector: v(id + 1000 * m),
                        payload: format!("{m}").into_bytes(),
                    }
                })
                .collect(),
        })
        .collect();
    let r = WriteClient::new(ch.clone())
        .bulk_upsert(tokio_stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.count, 800, "800 distinct ids");
    let d = describe(ch.clone(), "s").await;
    let w = d.writes.unwrap();
    assert_eq!((d.vector_count, w.segments, w.fresh_vectors), (800, 1, 0));
    let check = |ch: Channel| async move {
        let recs = get(ch.clone(), "s", vec![5, 405]).await;
        assert_eq!(
            (recs[0].vector.clone(), recs[0].payload.clone()),
            (v(2005), b"2".to_vec())
        );
        assert_eq!(
            (recs[1].vector.clone(), recs[1].payload.clone()),
            (v(1405), b"1".to_vec())
        );
        assert_eq!(top1(ch, "s", &v(1405)).await, Some(405));
    };
    check(ch.clone()).await;
    // 300 points (under flush_at): inserted into the fresh index.
    create(ch.clone(), "small", false).await;
    let msg = pb::UpsertRequest {
        collection: "small".into(),
        points: (0..300u64)
            .map(|id| pb::Point {
                id,
                vector: v(id),
                payload: vec![],
            })
            .collect(),
    };
    let r = WriteClient::new(ch.clone())
        .bulk_upsert(tokio_stream::iter(vec![msg]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.count, 300);
    let w = describe(ch.clone(), "small").await.writes.unwrap();
    assert_eq!((w.segments, w.fresh_vectors), (0, 300));
    let mut server2 = restart(&mut server, &data);
    check(server2.channel().await).await;
    assert_eq!(describe(server2.channel().await, "small").await.vector_count, 300);
    server2.sigterm();
    assert!(server2.wait_exit(Duration::from_secs(30)).success());
}
