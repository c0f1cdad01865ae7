//! End-to-end tests of writes against the real `quarryd`: read-your-writes
//! over gRPC (upsert, overwrite, delete, payloads), every bad write input,
//! BulkUpsert, flushes, compaction, a restart that keeps everything, and
//! the kill -9 crash harness (`QUARRY_CRASH_KILLS`, default 4; the closing
//! run used 50).

mod common;

use common::{code_of, compact_and_wait, create, dataset, describe, search_ids, wait_for, Server, DIM};
use quarry_engine::Metric;
use quarry_proto::v1 as pb;
use quarry_proto::v1::admin_client::AdminClient;
use quarry_proto::v1::collections_client::CollectionsClient;
use quarry_proto::v1::query_client::QueryClient;
use quarry_proto::v1::write_client::WriteClient;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::Channel;
use tonic::Code;

const CONFIG: &str =
    "flush_at = 300\nwrite_stall_at = 100000\nmax_segments = 2\nmax_payload_bytes = 64\nmax_batch = 256\n";

fn point(id: u64, v: &[f32]) -> pb::Point {
    pb::Point {
        id,
        vector: v.to_vec(),
        payload: id.to_le_bytes().to_vec(),
    }
}

async fn top(ch: Channel, name: &str, v: &[f32], k: u32) -> Vec<u64> {
    search_ids(&mut QueryClient::new(ch), name, v, k, 64).await
}

/// One id's record; an id Get lists as missing comes back as NOT_FOUND
/// here, so callers treat it like any other miss.
async fn get(ch: Channel, name: &str, id: u64) -> Result<pb::Record, tonic::Status> {
    let mut r = QueryClient::new(ch)
        .get(pb::GetRequest {
            collection: name.into(),
            ids: vec![id],
        })
        .await?
        .into_inner();
    match (r.records.pop(), r.missing_ids.as_slice()) {
        (Some(rec), []) => Ok(rec),
        (None, [m]) if *m == id => Err(tonic::Status::not_found(format!("id {id} is missing"))),
        other => panic!("Get of one id answered {other:?}"),
    }
}

/// Exact top-k ids of `q` among `live` (id -> vector).
fn exact(live: &HashMap<u64, Vec<f32>>, q: &[f32], k: usize) -> Vec<u64> {
    let mut d: Vec<(f32, u64)> = live.iter().map(|(&id, v)| (Metric::L2.distance(q, v), id)).collect();
    d.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    d.into_iter().take(k).map(|x| x.1).collect()
}

async fn recall_vs(ch: Channel, name: &str, live: &HashMap<u64, Vec<f32>>, queries: &[f32]) -> f64 {
    let mut hits = 0;
    let n = queries.len() / DIM;
    for q in queries.chunks_exact(DIM) {
        let truth = exact(live, q, 10);
        let got = top(ch.clone(), name, q, 10).await;
        hits += got.iter().filter(|id| truth.contains(id)).count();
    }
    hits as f64 / (10 * n) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upsert_delete_get_search_bad_inputs_compact_and_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (source, queries, _) = dataset(tmp.path(), 3000);
    let base = quarry_engine::dataset::VectorFile::open(&source)
        .unwrap()
        .read_rows_f32(0, 3000);
    let row = |i: usize| &base[i * DIM..(i + 1) * DIM];
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &[], CONFIG);
    let ch = server.channel().await;
    create(ch.clone(), "w", true).await;
    let mut w = WriteClient::new(ch.clone());
    let mut live: HashMap<u64, Vec<f32>> = HashMap::new();

    // Read-your-writes: every acknowledged batch is visible to the very
    // next get and search.
    for b in 0..10u64 {
        let points: Vec<pb::Point> = (b * 200..(b + 1) * 200).map(|i| point(i, row(i as usize))).collect();
        let r = w
            .upsert(pb::UpsertRequest {
                collection: "w".into(),
                points,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.count, 200);
        assert_eq!(r.last_lsn, (b + 1) * 200);
        for i in b * 200..(b + 1) * 200 {
            live.insert(i, row(i as usize).to_vec());
        }
        let probe = b * 200 + 137;
        let rec = get(ch.clone(), "w", probe).await.unwrap();
        assert_eq!(rec.vector, row(probe as usize));
        assert_eq!(rec.payload, probe.to_le_bytes());
        assert_eq!(top(ch.clone(), "w", row(probe as usize), 1).await, vec![probe]);
    }
    // Overwrite 50 ids with rows 2000.. and delete 100 others.
    let points: Vec<pb::Point> = (0..50u64).map(|i| point(i * 3, row(2000 + i as usize))).collect();
    w.upsert(pb::UpsertRequest {
        collection: "w".into(),
        points,
    })
    .await
    .unwrap();
    for i in 0..50u64 {
        live.insert(i * 3, row(2000 + i as usize).to_vec());
        assert_eq!(
            get(ch.clone(), "w", i * 3).await.unwrap().vector,
            row(2000 + i as usize)
        );
    }
    assert_eq!(
        top(ch.clone(), "w", row(2010), 1).await,
        vec![30],
        "the new version is found"
    );
    let dead: Vec<u64> = (1000..1100).collect();
    let r = w
        .delete(pb::DeleteRequest {
            collection: "w".into(),
            ids: dead.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.count, 100);
    for id in &dead {
        live.remove(id);
        let (code, msg) = code_of(get(ch.clone(), "w", *id).await);
        assert_eq!(code, Code::NotFound, "{msg}");
        assert!(!top(ch.clone(), "w", row(*id as usize), 10).await.contains(id));
    }

    // Bad inputs: each gets its status, and nothing of a refused batch is
    // written.
    let before = describe(ch.clone(), "w").await.writes.unwrap().last_lsn;
    let mut bad_dim = vec![point(5000, row(0)), point(5001, row(1))];
    bad_dim[1].vector.pop();
    let mut nan = vec![point(5002, row(2))];
    nan[0].vector[7] = f32::NAN;
    let mut big = vec![point(5003, row(3))];
    big[0].payload = vec![0; 65];
    let too_many: Vec<pb::Point> = (0..257).map(|i| point(6000 + i, row(i as usize))).collect();
    for (points, code, needle) in [
        (
            bad_dim,
            Code::InvalidArgument,
            "points[1].vector (id 5001) has 31 values",
        ),
        (nan, Code::InvalidArgument, "points[0].vector (id 5002)[7] is NaN"),
        (big, Code::InvalidArgument, "max_payload_bytes = 64"),
        (too_many, Code::ResourceExhausted, "max_batch = 256"),
        (Vec::new(), Code::InvalidArgument, "points is empty"),
    ] {
        let (c, m) = code_of(
            w.upsert(pb::UpsertRequest {
                collection: "w".into(),
                points,
            })
            .await,
        );
        assert_eq!(c, code, "{m}");
        assert!(m.contains(needle), "{m:?} should contain {needle:?}");
    }
    assert_eq!(
        code_of(get(ch.clone(), "w", 5000).await).0,
        Code::NotFound,
        "refused batch left nothing"
    );
    let (c, m) = code_of(
        w.upsert(pb::UpsertRequest {
            collection: "nope".into(),
            points: vec![point(1, row(1))],
        })
        .await,
    );
    assert_eq!(c, Code::NotFound, "{m}");
    // Every collection takes writes: one created without `mutable` too
    // (the field is ignored), and it can be compacted.
    CollectionsClient::new(ch.clone())
        .create_collection(pb::CreateCollectionRequest {
            name: "ro".into(),
            dim: DIM as u32,
            metric: pb::Metric::L2 as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let r = w
        .delete(pb::DeleteRequest {
            collection: "ro".into(),
            ids: vec![1],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.count, 1);
    AdminClient::new(ch.clone())
        .compact(pb::CompactRequest {
            collection: "ro".into(),
        })
        .await
        .unwrap();
    assert_eq!(describe(ch.clone(), "w").await.writes.unwrap().last_lsn, before);

    // BulkUpsert: 5 messages of 100 points, one acknowledgement.
    let msgs: Vec<pb::UpsertRequest> = (0..5u64)
        .map(|m| pb::UpsertRequest {
            collection: "w".into(),
            points: (0..100u64)
                .map(|i| {
                    let id = 10_000 + m * 100 + i;
                    point(id, row(2100 + (m * 100 + i) as usize))
                })
                .collect(),
        })
        .collect();
    let r = w.bulk_upsert(tokio_stream::iter(msgs)).await.unwrap().into_inner();
    assert_eq!(r.count, 500);
    for i in 0..500u64 {
        live.insert(10_000 + i, row(2100 + i as usize).to_vec());
    }
    let rec = get(ch.clone(), "w", 10_499).await.unwrap();
    assert_eq!(rec.vector, row(2599));

    // Flushes happen in the background (flush_at = 300), and once writes
    // stop the flusher drains the fresh index below flush_at by itself,
    // also when the last writes arrived while a flush was running.
    wait_for(
        "flushes down to under flush_at fresh vectors",
        Duration::from_secs(120),
        async || {
            let c = describe(ch.clone(), "w").await;
            let ws = c.writes.unwrap();
            ws.flushes >= 1
                && ws.segments >= 1
                && ws.fresh_vectors < 300
                && !ws.flushing
                && c.vector_count == live.len() as u64
        },
    )
    .await;
    let r1 = recall_vs(ch.clone(), "w", &live, &queries[..50 * DIM]).await;
    assert!(r1 >= 0.9, "recall@10 over fresh + segments {r1}");

    // Compact: one segment, nothing fresh, same recall.
    compact_and_wait(ch.clone(), "w").await;
    let c = describe(ch.clone(), "w").await;
    let ws = c.writes.unwrap();
    assert_eq!((ws.segments, ws.fresh_vectors), (1, 0), "{ws:?}");
    assert_eq!(c.vector_count, live.len() as u64);
    let r2 = recall_vs(ch.clone(), "w", &live, &queries[..50 * DIM]).await;
    assert!(r2 >= 0.9, "recall@10 after compaction {r2}");
    // A little more, left in the fresh index across the restart.
    w.upsert(pb::UpsertRequest {
        collection: "w".into(),
        points: vec![point(20_000, row(2900))],
    })
    .await
    .unwrap();
    live.insert(20_000, row(2900).to_vec());
    let answers: Vec<Vec<u64>> = {
        let mut a = Vec::new();
        for q in queries[..20 * DIM].chunks_exact(DIM) {
            a.push(top(ch.clone(), "w", q, 10).await);
        }
        a
    };

    // Restart: everything is still there, and answers are the same.
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(30)).success());
    drop(server);
    let server = Server::start(&data, &[], CONFIG);
    let ch = server.channel().await;
    assert_eq!(describe(ch.clone(), "w").await.vector_count, live.len() as u64);
    for id in [0u64, 3, 30, 999, 10_499, 20_000] {
        assert_eq!(get(ch.clone(), "w", id).await.unwrap().vector, live[&id], "id {id}");
    }
    assert_eq!(code_of(get(ch.clone(), "w", 1050).await).0, Code::NotFound);
    for (q, want) in queries[..20 * DIM].chunks_exact(DIM).zip(&answers) {
        assert_eq!(&top(ch.clone(), "w", q, 10).await, want);
    }
}

/// What the harness knows about one id.
#[derive(Clone, Copy, Debug, Default)]
struct Known {
    /// Acknowledged state: Some(version) live with that version's vector,
    /// None absent (never written, or deleted).
    acked: Option<u32>,
    /// An unacknowledged op in flight when the server died: its outcome
    /// is either state.
    pending: Option<Option<u32>>,
}

const IDS: u64 = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_writes_loses_no_acknowledged_write() {
    let kills: usize = std::env::var("QUARRY_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let tmp = tempfile::tempdir().unwrap();
    let (source, queries, _) = dataset(tmp.path(), 4000);
    let base = Arc::new(
        quarry_engine::dataset::VectorFile::open(&source)
            .unwrap()
            .read_rows_f32(0, 4000),
    );
    // Version v of id i is row i + 1000 * (v % 4): distinct for every
    // (id, v mod 4).
    let vec_of = {
        let base = base.clone();
        move |id: u64, v: u32| base[(id as usize + 1000 * (v as usize % 4)) * DIM..][..DIM].to_vec()
    };
    let data = tmp.path().join("data");
    let known: Arc<Mutex<HashMap<u64, Known>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(7);
    let (mut checked, mut lost, mut uncertain) = (0usize, 0usize, 0usize);
    let acked_ops = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for life in 0..=kills {
        let server = Server::start(&data, &[], CONFIG);
        let ch = server.channel().await;
        if life == 0 {
            create(ch.clone(), "c", true).await;
        }
        // Check every id against what was acknowledged before the kill.
        let mut live: HashMap<u64, Vec<f32>> = HashMap::new();
        {
            let mut k = known.lock().unwrap().clone();
            for id in 0..IDS {
                let e = k.entry(id).or_default();
                let actual = match get(ch.clone(), "c", id).await {
                    Ok(r) => {
                        let v = (0..4).find(|&v| vec_of(id, v) == r.vector);
                        assert!(v.is_some(), "id {id}: a vector that was never written");
                        assert_eq!(r.payload, id.to_le_bytes());
                        v
                    }
                    Err(s) if s.code() == Code::NotFound => None,
                    Err(s) => panic!("get {id}: {s}"),
                };
                let norm = |x: Option<u32>| x.map(|v| v % 4);
                match e.pending.take() {
                    Some(p) => {
                        uncertain += 1;
                        assert!(
                            norm(actual) == norm(e.acked) || norm(actual) == norm(p),
                            "id {id}: {actual:?} is neither the acknowledged {:?} nor the pending {p:?}",
                            e.acked
                        );
                        e.acked = if norm(actual) == norm(p) { p } else { e.acked };
                    }
                    None => {
                        checked += 1;
                        if norm(actual) != norm(e.acked) {
                            lost += 1;
                            eprintln!("LOST: id {id} acknowledged {:?}, found {actual:?}", e.acked);
                        }
                    }
                }
                if let Some(v) = e.acked {
                    live.insert(id, vec_of(id, v));
                }
            }
            *known.lock().unwrap() = k;
        }
        assert_eq!(lost, 0, "acknowledged writes lost after {life} kills");
        if live.len() >= 100 {
            let r = recall_vs(ch.clone(), "c", &live, &queries[..30 * DIM]).await;
            eprintln!("life {life}: {} live, recall@10 {r:.3}", live.len());
            assert!(r >= 0.85, "recall@10 {r} after restart {life}");
        }
        if life == kills {
            break;
        }
        // Two writers (disjoint ids) and a searcher, until the kill.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for wid in 0..2u64 {
            let (ch, known, stop, vec_of, acked_ops) = (
                ch.clone(),
                known.clone(),
                stop.clone(),
                vec_of.clone(),
                acked_ops.clone(),
            );
            let seed = rng.random::<u64>();
            tasks.push(tokio::spawn(async move {
                let mut r = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
                let mut w = WriteClient::new(ch);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let n = r.random_range(1..8);
                    let ids: Vec<u64> = {
                        let mut v: Vec<u64> = (0..n).map(|_| r.random_range(0..IDS / 2) * 2 + wid).collect();
                        v.sort_unstable();
                        v.dedup();
                        v
                    };
                    let delete = r.random_bool(0.2);
                    let mut plan = Vec::new();
                    {
                        let mut k = known.lock().unwrap();
                        for &id in &ids {
                            let e = k.entry(id).or_default();
                            let next = if delete {
                                None
                            } else {
                                Some(e.acked.map_or(0, |v| v + 1))
                            };
                            e.pending = Some(next);
                            plan.push((id, next));
                        }
                    }
                    let res = if delete {
                        w.delete(pb::DeleteRequest {
                            collection: "c".into(),
                            ids: ids.clone(),
                        })
                        .await
                    } else {
                        let points = plan.iter().map(|&(id, v)| point(id, &vec_of(id, v.unwrap()))).collect();
                        w.upsert(pb::UpsertRequest {
                            collection: "c".into(),
                            points,
                        })
                        .await
                    };
                    let mut k = known.lock().unwrap();
                    match res {
                        Ok(_) => {
                            acked_ops.fetch_add(plan.len(), std::sync::atomic::Ordering::Relaxed);
                            for (id, next) in plan {
                                let e = k.get_mut(&id).unwrap();
                                e.acked = next;
                                e.pending = None;
                            }
                        }
                        // The server died under it: the outcome stays
                        // pending, unless it was refused outright.
                        Err(s) if s.code() == Code::ResourceExhausted => {
                            for (id, _) in plan {
                                k.get_mut(&id).unwrap().pending = None;
                            }
                        }
                        Err(_) => return,
                    }
                }
            }));
        }
        {
            let (ch, stop) = (ch.clone(), stop.clone());
            let q = queries[..DIM].to_vec();
            tasks.push(tokio::spawn(async move {
                let mut c = QueryClient::new(ch);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = c
                        .search(pb::SearchRequest {
                            collection: "c".into(),
                            vector: q.clone(),
                            params: Some(pb::SearchParams { k: 10, l: 32, w: 4 }),
                            with_payload: false,
                        })
                        .await;
                    if r.is_err() {
                        return;
                    }
                }
            }));
        }
        let run = Duration::from_millis(rng.random_range(300..2000));
        tokio::time::sleep(run).await;
        let mut server = server;
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
    }
    eprintln!(
        "crash harness: {kills} kills, {} acknowledged writes, {checked} id states checked against them after restarts, {uncertain} in flight at a kill (either outcome allowed), {lost} lost",
        acked_ops.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_eq!(lost, 0);
    assert!(checked > 0);
}
