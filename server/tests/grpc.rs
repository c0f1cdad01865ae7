//! End-to-end tests of the real `quarryd` binary on loopback: build and
//! search over gRPC, every bad-input class, SIGTERM under load, restart,
//! and the systemd notify protocol with the watchdog.

mod common;

use common::{build_and_wait, code_of, create, create_with, dataset, describe, recall, search_all, Server, DIM};
use quarry_proto::v1 as pb;
use quarry_proto::v1::collections_client::CollectionsClient;
use quarry_proto::v1::query_client::QueryClient;
use std::path::Path;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::Code;

async fn create_and_build(ch: Channel, name: &str, source: &Path) -> String {
    create(ch.clone(), name, false).await;
    build_and_wait(ch, name, source, 0).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_search_get_and_every_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let (source, queries, truth) = dataset(tmp.path(), 4000);
    let server = Server::start(
        &tmp.path().join("data"),
        &[],
        "max_batch = 64\nmax_message_bytes = 65536\n",
    );
    let ch = server.channel().await;
    create_and_build(ch.clone(), "docs", &source).await;

    // Recall over gRPC.
    let got = search_all(ch.clone(), "docs", &queries).await;
    let r = recall(&got, &truth);
    assert!(r >= 0.9, "recall@10 over gRPC = {r}");

    // Batch search answers the same as single searches.
    let mut q = QueryClient::new(ch.clone());
    let batch = q
        .search_batch(pb::SearchBatchRequest {
            collection: "docs".into(),
            vectors: queries[..10 * DIM].to_vec(),
            params: Some(pb::SearchParams { k: 10, l: 40, w: 4 }),
            with_payload: false,
        })
        .await
        .unwrap()
        .into_inner();
    let b: Vec<Vec<u64>> = batch
        .results
        .iter()
        .map(|r| r.neighbors.iter().map(|n| n.id).collect())
        .collect();
    assert_eq!(b, got[..10].to_vec());
    // Every answer carries the server's timings: the handler's time spans
    // the queue and the shard's time.
    for r in &batch.results {
        let s = r.stats.as_ref().expect("stats");
        assert!(s.shard_micros > 0.0, "{s:?}");
        assert!(s.handler_micros >= s.shard_micros + s.queue_micros, "{s:?}");
    }

    // Get returns the stored vector (f32 at this dimension).
    let g = q
        .get(pb::GetRequest {
            collection: "docs".into(),
            ids: vec![0, 3999],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(g.records.len(), 2);
    assert_eq!(g.records[1].id, 3999);
    assert_eq!(g.records[1].vector.len(), DIM);

    let good = queries[..DIM].to_vec();
    let search = |vector: Vec<f32>, params: Option<pb::SearchParams>, name: &str| pb::SearchRequest {
        collection: name.into(),
        vector,
        params,
        with_payload: false,
    };
    // Wrong dimension.
    let (c, m) = code_of(q.search(search(vec![0.0; DIM + 1], None, "docs")).await);
    assert_eq!(c, Code::InvalidArgument, "{m}");
    assert!(m.contains("dimension 32"), "{m}");
    // NaN and Inf.
    let mut bad = good.clone();
    bad[5] = f32::NAN;
    let (c, m) = code_of(q.search(search(bad, None, "docs")).await);
    assert_eq!(c, Code::InvalidArgument);
    assert!(m.contains("vector[5]"), "{m}");
    let mut bad = good.clone();
    bad[0] = f32::INFINITY;
    assert_eq!(
        code_of(q.search(search(bad, None, "docs")).await).0,
        Code::InvalidArgument
    );
    // k, L, W out of range.
    for (p, field) in [
        (pb::SearchParams { k: 5000, l: 0, w: 0 }, "max_k"),
        (pb::SearchParams { k: 10, l: 5, w: 0 }, "params.l"),
        (pb::SearchParams { k: 10, l: 20000, w: 0 }, "params.l"),
        (pb::SearchParams { k: 10, l: 40, w: 65 }, "params.w"),
    ] {
        let (c, m) = code_of(q.search(search(good.clone(), Some(p), "docs")).await);
        assert_eq!(c, Code::InvalidArgument, "{m}");
        assert!(m.contains(field), "{field}: {m}");
    }
    // Oversized batch (max_batch = 64).
    let (c, m) = code_of(
        q.search_batch(pb::SearchBatchRequest {
            collection: "docs".into(),
            vectors: queries[..DIM].repeat(65),
            params: None,
            with_payload: false,
        })
        .await,
    );
    assert_eq!(c, Code::ResourceExhausted, "{m}");
    assert!(m.contains("max_batch = 64"), "{m}");
    // Oversized message (max_message_bytes = 65536).
    let (c, m) = code_of(q.search(search(vec![0.5; 40_000], None, "docs")).await);
    assert_eq!(c, Code::ResourceExhausted, "{m}");
    // Unknown collection.
    let (c, m) = code_of(q.search(search(good.clone(), None, "nope")).await);
    assert_eq!(c, Code::NotFound, "{m}");
    assert!(m.contains("\"nope\""), "{m}");
    // Unknown ids are listed, the others returned, in request order.
    let g = q
        .get(pb::GetRequest {
            collection: "docs".into(),
            ids: vec![123_456, 3999, 7, 999_999],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(g.missing_ids, [123_456, 999_999]);
    assert_eq!(g.records.iter().map(|r| r.id).collect::<Vec<_>>(), [3999, 7]);
    // An empty collection answers with no neighbours; one that is building
    // keeps serving, and a second build of it is refused.
    let mut cc = CollectionsClient::new(ch.clone());
    cc.create_collection(pb::CreateCollectionRequest {
        name: "later".into(),
        dim: DIM as u32,
        metric: pb::Metric::L2 as i32,
        ..Default::default()
    })
    .await
    .unwrap();
    let r = q
        .search(search(good.clone(), None, "later"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.neighbors.is_empty(), "{r:?}");
    let (big, _, _) = dataset(tmp.path(), 30_000);
    let build = |cc: &mut CollectionsClient<Channel>| {
        let req = pb::BuildIndexRequest {
            collection: "later".into(),
            source_path: big.display().to_string(),
            threads: 1,
            ..Default::default()
        };
        let mut cc = cc.clone();
        async move { cc.build_index(req).await }
    };
    build(&mut cc).await.unwrap();
    let r = q
        .search(search(good.clone(), None, "later"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.neighbors.is_empty() || r.neighbors.len() == 10, "{r:?}");
    let (c, m) = code_of(build(&mut cc).await);
    assert_eq!(c, Code::FailedPrecondition, "{m}");
    assert!(m.contains("already building"), "{m}");
    // Bad create requests.
    for (req, field) in [
        (
            pb::CreateCollectionRequest {
                name: "a/b".into(),
                dim: 8,
                metric: 1,
                ..Default::default()
            },
            "name",
        ),
        (
            pb::CreateCollectionRequest {
                name: "x".into(),
                dim: 0,
                metric: 1,
                ..Default::default()
            },
            "dim",
        ),
        (
            pb::CreateCollectionRequest {
                name: "x".into(),
                dim: 8,
                metric: 0,
                ..Default::default()
            },
            "metric",
        ),
    ] {
        let (c, m) = code_of(cc.create_collection(req).await);
        assert_eq!(c, Code::InvalidArgument, "{m}");
        assert!(m.contains(field), "{field}: {m}");
    }
    let (c, _) = code_of(
        cc.create_collection(pb::CreateCollectionRequest {
            name: "docs".into(),
            dim: 8,
            metric: 1,
            ..Default::default()
        })
        .await,
    );
    assert_eq!(c, Code::AlreadyExists);
    // A build from a file of the wrong dimension or a missing file.
    let (c, m) = code_of(
        cc.build_index(pb::BuildIndexRequest {
            collection: "docs".into(),
            source_path: "/nonexistent/x.fbin".into(),
            ..Default::default()
        })
        .await,
    );
    assert_eq!(c, Code::InvalidArgument, "{m}");
    assert!(m.contains("source_path"), "{m}");
    // A malformed protobuf body.
    let status = raw_call(
        ch.clone(),
        "/quarry.v1.Query/Search",
        vec![0xff, 0xff, 0xff, 0x0f, 0x01],
    )
    .await;
    assert!(
        status.code() != Code::Ok && status.code() != Code::Unknown,
        "{status:?}"
    );

    // Still serving, with the same answers.
    let again = search_all(ch.clone(), "docs", &queries[..10 * DIM]).await;
    assert_eq!(again, got[..10].to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ram_resident_collection_reads_nothing_and_stays_resident_across_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (source, queries, truth) = dataset(tmp.path(), 3000);
    let data = tmp.path().join("data");
    // No segment is small enough to be held in RAM by size alone.
    let cfg = "ram_segment_nodes = 0\ndrain_timeout_secs = 5\n";
    let mut server = Server::start(&data, &[], cfg);
    let ch = server.channel().await;
    for (name, residency) in [("disk", pb::Residency::Unspecified), ("ram", pb::Residency::Ram)] {
        create_with(ch.clone(), name, false, residency).await;
        build_and_wait(ch.clone(), name, &source, 0).await;
    }
    // Records of DIM f32 values, a degree and 24 neighbours (common::create).
    let record = (DIM * 4 + 4 + 24 * 4) as u64;
    let reads = |ch: Channel, name: &'static str| {
        let queries = queries.clone();
        async move {
            let mut q = QueryClient::new(ch);
            let mut ios = 0u64;
            for v in queries.chunks_exact(DIM).take(50) {
                let r = q
                    .search(pb::SearchRequest {
                        collection: name.into(),
                        vector: v.to_vec(),
                        params: Some(pb::SearchParams { k: 10, l: 40, w: 4 }),
                        with_payload: false,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                ios += r.stats.expect("stats").ios as u64;
            }
            ios
        }
    };
    let check = |d: pb::Collection, r: pb::Collection| {
        assert_eq!(d.residency, pb::Residency::Disk as i32, "{d:?}");
        assert_eq!(r.residency, pb::Residency::Ram as i32, "{r:?}");
        assert_eq!(d.ram.unwrap().cache, 0);
        assert_eq!(r.ram.unwrap().cache, 3000 * record, "every record in RAM");
    };
    check(describe(ch.clone(), "disk").await, describe(ch.clone(), "ram").await);
    assert!(reads(ch.clone(), "disk").await > 0);
    assert_eq!(
        reads(ch.clone(), "ram").await,
        0,
        "a RAM-resident collection read the disk"
    );
    // The same index; cached nodes are expanded in another order than
    // read ones, so a tie at the tail may fall the other way.
    let on_disk = search_all(ch.clone(), "disk", &queries).await;
    let in_ram = search_all(ch.clone(), "ram", &queries).await;
    assert!(recall(&on_disk, &truth) >= 0.9);
    let r = recall(&in_ram, &truth);
    assert!(r >= 0.9, "recall@10 of the RAM-resident copy: {r}");
    // A residency that is not one.
    let (c, m) = code_of(
        CollectionsClient::new(ch.clone())
            .create_collection(pb::CreateCollectionRequest {
                name: "odd".into(),
                dim: DIM as u32,
                metric: pb::Metric::L2 as i32,
                residency: 9,
                ..Default::default()
            })
            .await,
    );
    assert_eq!(c, Code::InvalidArgument, "{m}");
    assert!(m.contains("residency"), "{m}");
    // It stays resident across a restart.
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(20)).success());
    let server = Server::start(&data, &[], cfg);
    let ch = server.channel().await;
    check(describe(ch.clone(), "disk").await, describe(ch.clone(), "ram").await);
    assert_eq!(reads(ch.clone(), "ram").await, 0);
    assert_eq!(
        search_all(ch.clone(), "ram", &queries).await,
        in_ram,
        "the same RAM answers after a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_index_larger_than_the_free_budget_is_partitioned() {
    use quarry_engine::graph::vamana::BuildParams;
    use quarry_engine::index::{partition, IndexBuildOptions, MemoryEstimate};
    let tmp = tempfile::tempdir().unwrap();
    let n = 40_000;
    let (source, queries, truth) = dataset(tmp.path(), n);
    // The collection's build (common::create: R 24, L 48, PQ 16, f32;
    // build_threads 2 below) as the catalog estimates it.
    let mut graph = BuildParams::new(24, 48);
    graph.threads = 2;
    let o = IndexBuildOptions {
        metric: quarry_engine::Metric::L2,
        graph,
        pq_bytes: 16,
        stored: quarry_engine::format::StoredType::F32,
        nav_sample: quarry_engine::graph::hnsw::NavParams::default_sample(n),
        rerank_file: false,
        opq: false,
        ram_budget: None,
        colocate: true,
    };
    let mib = |b: u64| b.div_ceil(1 << 20);
    let one_pass = mib(MemoryEstimate::for_build(n, DIM, &o).total());
    // A budget the one-pass build does not fit and a partitioned one does
    // (with room for the data the catalog holds open meanwhile).
    let budget = (one_pass - 1).min(
        mib(partition::estimate_shards(n, DIM, &o, u64::MAX, 1.0)
            .map(|p| p.shard_phase_bytes.max(p.merge_phase_bytes))
            .unwrap())
            + 4,
    );
    assert!(budget < one_pass, "the test needs a budget between the two estimates");
    let server = Server::start(
        &tmp.path().join("data"),
        &[],
        &format!("memory_budget_mb = {budget}\nbuild_threads = 2\nram_segment_nodes = 0\n"),
    );
    let ch = server.channel().await;
    create_and_build(ch.clone(), "big", &source).await;
    let log = server.log.lock().unwrap().join("\n");
    assert!(
        log.contains("partitioned build"),
        "the build was not partitioned:\n{log}"
    );
    let r = recall(&search_all(ch.clone(), "big", &queries).await, &truth);
    assert!(r >= 0.9, "recall@10 of the partitioned bulk load = {r}");
    assert_eq!(describe(ch, "big").await.vector_count, n as u64);
}

/// Send `body` as the raw request bytes of `path`.
async fn raw_call(ch: Channel, path: &'static str, body: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.unwrap();
    let r: Result<tonic::Response<Vec<u8>>, _> = grpc
        .unary(
            tonic::Request::new(body),
            tonic::codegen::http::uri::PathAndQuery::from_static(path),
            RawCodec,
        )
        .await;
    r.expect_err("a malformed message must fail")
}

#[derive(Default, Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

/// A status's message followed by its source chain, `: `-separated (tonic
/// keeps the h2 error that ended a stream in the chain, not the message).
fn error_chain(s: &tonic::Status) -> String {
    let mut out = s.message().to_string();
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        out.push_str(&format!(": {e}"));
        source = e.source();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_and_restart_answers_the_same() {
    let tmp = tempfile::tempdir().unwrap();
    let (source, queries, _) = dataset(tmp.path(), 3000);
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &[], "drain_timeout_secs = 5\n");
    let ch = server.channel().await;
    let built = create_and_build(ch.clone(), "docs", &source).await;
    let before = search_all(ch.clone(), "docs", &queries).await;

    // Eight clients search in a loop; SIGTERM arrives mid-load.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..8 {
        let ch = ch.clone();
        let stop = stop.clone();
        let q = queries[(c * DIM)..(c + 1) * DIM].to_vec();
        clients.push(tokio::spawn(async move {
            let mut client = QueryClient::new(ch);
            let (mut ok, mut other) = (0usize, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = client
                    .search(pb::SearchRequest {
                        collection: "docs".into(),
                        vector: q.clone(),
                        params: None,
                        with_payload: false,
                    })
                    .await;
                match r {
                    Ok(_) => ok += 1,
                    Err(s) => {
                        other.push((s.code(), error_chain(&s)));
                        if other.len() > 50 {
                            break;
                        }
                    }
                }
            }
            (ok, other)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    server.sigterm();
    let status = tokio::task::spawn_blocking(move || {
        let s = server.wait_exit(Duration::from_secs(15));
        (s, server)
    })
    .await
    .unwrap();
    let exit_after = t.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total_ok = 0;
    for (c, client) in clients.into_iter().enumerate() {
        let (ok, other) = client.await.unwrap();
        total_ok += ok;
        let mut kinds = std::collections::BTreeMap::<String, usize>::new();
        for (code, message) in &other {
            *kinds.entry(format!("{code:?}: {message}")).or_default() += 1;
        }
        eprintln!("client {c}: {ok} OK, then {kinds:?}");
        for (code, message) in other {
            // A request the client starts after the server's GOAWAY has
            // arrived, before its channel reconnects, is failed by the
            // client's own h2 layer: never sent, or sent with a stream id
            // above the GOAWAY's last stream id, which HTTP/2 defines as not
            // processed. tonic maps that GOAWAY(NO_ERROR) to INTERNAL. The
            // server never accepted the request, so it is allowed here
            // by the exact h2 error in its source chain. Seen in about 1 in
            // 15 runs. Anything else must be UNAVAILABLE or CANCELLED.
            let refused_by_goaway =
                code == Code::Internal && message.contains("connection error received: not a result of an error");
            assert!(
                matches!(code, Code::Unavailable | Code::Cancelled) || refused_by_goaway,
                "a request got {code:?} during the drain: {message}"
            );
        }
    }
    assert!(total_ok > 0, "no search succeeded before SIGTERM");
    assert!(status.0.success(), "quarryd exited with {:?}", status.0);
    assert!(
        exit_after < Duration::from_secs(6),
        "exit took {exit_after:?} (drain timeout 5 s)"
    );
    drop(status);

    // Restart: the collection opens without a rebuild and answers the same.
    let server = Server::start(&data, &[], "");
    let ch = server.channel().await;
    let after = search_all(ch.clone(), "docs", &queries).await;
    assert_eq!(before, after);
    // The build's operation still answers, and a new one gets a new id.
    let mut c = quarry_proto::v1::collections_client::CollectionsClient::new(ch.clone());
    let o = c
        .get_operation(pb::GetOperationRequest { id: built.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(o.state, pb::OperationState::Done as i32, "{o:?}");
    assert_eq!((o.collection.as_str(), o.vector_count, o.progress), ("docs", 3000, 1.0));
    let again = build_and_wait(ch, "docs", &source, 0).await;
    assert_ne!(again, built, "an operation id was handed out twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_notify_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let tmp = tempfile::tempdir().unwrap();
    let sock_path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut server = Server::start(
        &tmp.path().join("data"),
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
        "",
    );
    let mut buf = [0u8; 4096];
    let mut recv = || {
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let first = recv();
    assert!(first.lines().any(|l| l == "READY=1"), "{first}");
    // Watchdog pings arrive every ~100 ms while the shards answer.
    let t = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        if recv().lines().any(|l| l == "WATCHDOG=1") {
            pings += 1;
        }
    }
    assert!(t.elapsed() < Duration::from_secs(5), "3 pings took {:?}", t.elapsed());
    server.sigterm();
    let mut stopping = false;
    for _ in 0..20 {
        if recv().lines().any(|l| l == "STOPPING=1") {
            stopping = true;
            break;
        }
    }
    assert!(stopping, "no STOPPING=1 after SIGTERM");
    assert!(server.wait_exit(Duration::from_secs(15)).success());
}

/// Run quarryd expecting it to refuse to start; returns its stderr.
fn refused_start(data: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quarryd"))
        .arg("--data-dir")
        .arg(data)
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "quarryd started with {args:?}");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_answers_like_tcp_and_guards_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let (source, queries, _) = dataset(tmp.path(), 2000);
    let sock = tmp.path().join("q.sock");
    // A socket file left by an unclean exit is replaced.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &[], &format!("listen_unix = {:?}\n", sock.display().to_string()));
    let tcp = server.channel().await;
    create_and_build(tcp.clone(), "docs", &source).await;
    let unix = tonic::transport::Endpoint::from_shared(format!("unix:{}", sock.display()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let over_tcp = search_all(tcp, "docs", &queries).await;
    let over_unix = search_all(unix, "docs", &queries).await;
    assert_eq!(over_tcp, over_unix);

    // A second server may not take over a socket that is being served.
    let err = refused_start(&tmp.path().join("data2"), &["--listen-unix", sock.to_str().unwrap()]);
    assert!(err.contains("another server is accepting on it"), "{err}");
    // Nor replace a file that is not a socket.
    let plain = tmp.path().join("plain");
    std::fs::write(&plain, b"keep me").unwrap();
    let err = refused_start(&tmp.path().join("data3"), &["--listen-unix", plain.to_str().unwrap()]);
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read(&plain).unwrap(), b"keep me");

    // A clean exit removes the socket file.
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(15)).success());
    assert!(!sock.exists(), "the socket file outlived quarryd");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_a_held_data_directory_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start(&data, &[], "");
    create(server.channel().await, "kept", true).await;
    let err = refused_start(&data, &[]);
    let pid = server.child.id();
    assert!(
        err.contains(&format!(
            "the data directory {} is in use by another quarryd (pid {pid}",
            data.display()
        )),
        "{err}"
    );
    // The first server was not disturbed: it still answers, and still has
    // its collection.
    assert_eq!(common::names(server.channel().await).await, vec!["kept".to_string()]);
    // After it stops, the directory is free again.
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(15)).success());
    let again = Server::start(&data, &[], "");
    drop(again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_answers_in_v1_and_v1alpha_and_lists_health() {
    use tonic_reflection::pb::{v1, v1alpha};
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[], "");
    let ch = server.channel().await;
    let want = [
        "quarry.v1.Query",
        "quarry.v1.Collections",
        "quarry.v1.Write",
        "quarry.v1.Admin",
        "grpc.health.v1.Health",
    ];
    let mut c = v1::server_reflection_client::ServerReflectionClient::new(ch.clone());
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut out = c
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(l)) =
        out.message().await.unwrap().unwrap().message_response
    else {
        panic!("v1: not a service list");
    };
    let names: Vec<String> = l.service.into_iter().map(|s| s.name).collect();
    for w in want {
        assert!(names.iter().any(|n| n == w), "v1 lists {names:?}, not {w}");
    }
    let mut c = v1alpha::server_reflection_client::ServerReflectionClient::new(ch);
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1alpha::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut out = c
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(l)) =
        out.message().await.unwrap().unwrap().message_response
    else {
        panic!("v1alpha: not a service list");
    };
    let alpha: Vec<String> = l.service.into_iter().map(|s| s.name).collect();
    for w in want {
        assert!(alpha.iter().any(|n| n == w), "v1alpha lists {alpha:?}, not {w}");
    }
}
