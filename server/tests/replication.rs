//! The warm standby with real processes: two `quarryd` binaries on
//! loopback, failed over by `quarry-failover` (kill -9, SIGSTOP past the
//! lease, switchover, a partition through its proxies) with every
//! acknowledged write checked; the token;
//! a standby's refusal of writes; a sync primary without its standby
//! (outcome unknown, then no lease, then degrade, then back in sync);
//! the link over mutual TLS and each way a TLS client is refused.

use quarry_proto::replication::v1 as rpb;
use quarry_proto::v1 as pb;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::Code;

const TOKEN: &str = "test-token-0123456789abcdef";

/// Ports no other test of this file uses (each test takes its own block of 20;
/// the failover runs take blocks 20 and up).
fn ports(block: u16) -> u16 {
    20000 + (std::process::id() as u16 % 200) * 100 + block * 20
}

fn failover(dir: &Path, args: &[&str], port: u16) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_quarry-failover"))
        .arg("--quarryd")
        .arg(env!("CARGO_BIN_EXE_quarryd"))
        .arg("--dir")
        .arg(dir)
        .arg("--base-port")
        .arg(port.to_string())
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("quarry-failover runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(out.status.success(), "{args:?}: {v}");
    v
}

#[test]
fn failovers_of_every_kind_lose_no_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    let tls = tmp.path().join("tls");
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/pair-certs.sh"))
        .arg(&tls)
        .args(["node0=IP:127.0.0.1", "node1=IP:127.0.0.1", "harness=IP:127.0.0.1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tls = tls.display().to_string();
    for (i, (args, rounds)) in [
        (vec!["--fault", "kill", "--primary-down", "--rounds", "3"], 3),
        (vec!["--fault", "kill", "--rounds", "2", "--lease-ms", "500"], 2),
        (vec!["--fault", "stop", "--rounds", "2", "--lease-ms", "500"], 2),
        (vec!["--fault", "switchover", "--rounds", "3"], 3),
        (vec!["--fault", "partition", "--rounds", "2", "--lease-ms", "500"], 2),
        // Over mutual TLS.
        (
            vec![
                "--fault",
                "kill",
                "--rounds",
                "1",
                "--lease-ms",
                "500",
                "--tls-dir",
                &tls,
            ],
            1,
        ),
        (vec!["--fault", "switchover", "--rounds", "1", "--tls-dir", &tls], 1),
    ]
    .into_iter()
    .enumerate()
    {
        let v = failover(&tmp.path().join(format!("run{i}")), &args, ports(20 + i as u16));
        eprintln!("{v}");
        assert_eq!(v["failovers"], rounds, "{v}");
        assert_eq!(v["lost"], 0, "{v}");
        assert_eq!(v["fenced_node_accepted"], 0, "{v}");
        assert!(v["acked_writes"].as_u64().unwrap() > 100, "{v}");
        assert!(v["ids_checked"].as_u64().unwrap() > 50, "{v}");
    }
}

struct Node {
    child: Child,
    public: String,
    repl: String,
}

impl Node {
    fn start(dir: &Path, role: &str, port: u16, peer: u16) -> Node {
        Node::start_with(dir, role, port, peer, 2000, "")
    }

    /// `extra`: more keys of the `[replication]` table.
    fn start_with(dir: &Path, role: &str, port: u16, peer: u16, write_timeout_ms: u64, extra: &str) -> Node {
        std::fs::create_dir_all(dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        let conf = dir.join("quarryd.toml");
        std::fs::write(
            &conf,
            format!(
                "data_dir = \"{}\"\nlisten = \"127.0.0.1:{port}\"\nmetrics_listen = \"127.0.0.1:{}\"\nshards = 1\nflush_at = 200\n[replication]\nrole = \"{role}\"\npeer = \"127.0.0.1:{}\"\nreplication_listen = \"127.0.0.1:{}\"\ntoken_file = \"{}\"\nlease_ms = 400\nwrite_timeout_ms = {write_timeout_ms}\n{extra}",
                dir.join("data").display(),
                port + 1,
                peer + 2,
                port + 2,
                token.display()
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_quarryd"))
            .arg("--config")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Node {
            child,
            public: format!("http://127.0.0.1:{port}"),
            repl: format!("http://127.0.0.1:{}", port + 2),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn channel(addr: &str) -> tonic::transport::Channel {
    let t = Instant::now();
    loop {
        match tonic::transport::Endpoint::from_shared(addr.to_string())
            .unwrap()
            .connect()
            .await
        {
            Ok(c) => return c,
            Err(e) if t.elapsed() > Duration::from_secs(30) => panic!("{addr}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn with_token<T>(m: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(m);
    r.metadata_mut().insert("x-quarry-token", token.parse().unwrap());
    r
}

async fn status(n: &Node) -> rpb::PeerReply {
    rpb::replication_client::ReplicationClient::new(channel(&n.repl).await)
        .peer(with_token(rpb::PeerRequest {}, TOKEN))
        .await
        .unwrap()
        .into_inner()
}

async fn upsert(n: &Node, id: u64, timeout: Duration) -> Result<pb::WriteResponse, tonic::Status> {
    let mut r = tonic::Request::new(pb::UpsertRequest {
        collection: "c".into(),
        points: vec![pb::Point {
            id,
            vector: vec![id as f32; 4],
            payload: vec![],
        }],
    });
    r.set_timeout(timeout);
    pb::write_client::WriteClient::new(channel(&n.public).await)
        .upsert(r)
        .await
        .map(|r| r.into_inner())
}

/// GET /metrics on a local port.
fn metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    s
}

async fn until(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) {
    let t = Instant::now();
    while !f().await {
        assert!(t.elapsed() < within, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_standby_refusal_lost_standby_and_degrade() {
    let tmp = tempfile::tempdir().unwrap();
    let (pa, pb_) = (ports(5), ports(5) + 10);
    let a = Node::start_with(&tmp.path().join("a"), "primary", pa, pb_, 300, "");
    let mut b = Node::start(&tmp.path().join("b"), "standby", pb_, pa);

    // The replication listener: no token, a wrong one, then the right one.
    let mut rc = rpb::replication_client::ReplicationClient::new(channel(&a.repl).await);
    let e = rc.peer(rpb::PeerRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = rc
        .promote(with_token(rpb::PromoteRequest::default(), "wrong-token-0123456789"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    // The public port does not serve it at all.
    let e = rpb::replication_client::ReplicationClient::new(channel(&a.public).await)
        .peer(with_token(rpb::PeerRequest {}, TOKEN))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented, "{e:?}");

    until("the pair forms", Duration::from_secs(30), async || {
        status(&b).await.eligible
    })
    .await;
    pb::collections_client::CollectionsClient::new(channel(&a.public).await)
        .create_collection(pb::CreateCollectionRequest {
            name: "c".into(),
            dim: 4,
            metric: pb::Metric::L2 as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    until(
        "the standby has the collection in sync",
        Duration::from_secs(30),
        async || {
            let s = status(&b).await;
            s.eligible && s.collections.iter().any(|c| c.name == "c")
        },
    )
    .await;
    for id in 0..20 {
        upsert(&a, id, Duration::from_secs(5)).await.unwrap();
    }
    // The standby has them durably and serves them, and refuses writes.
    let got = pb::query_client::QueryClient::new(channel(&b.public).await)
        .get(pb::GetRequest {
            collection: "c".into(),
            ids: (0..20).collect(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.records.len(), 20);
    let e = upsert(&b, 99, Duration::from_secs(5)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("standby"), "{}", e.message());

    // The pair's metrics, on both nodes.
    let m = metrics(pa + 1);
    for want in [
        "quarry_replication_role 1",
        "quarry_replication_connected 1",
        "quarry_replication_lag_records{collection=\"c\"} 0",
        "quarry_replication_acks_total",
    ] {
        assert!(m.contains(want), "{want} in the primary's metrics:\n{m}");
    }
    let m = metrics(pb_ + 1);
    assert!(
        m.contains("quarry_replication_role 2") && m.contains("quarry_replication_eligible 1"),
        "{m}"
    );

    // The standby dies. Within the lease a write waits for it and ends
    // with its outcome unknown; past the lease writes are refused up front.
    let _ = b.child.kill();
    let _ = b.child.wait();
    // Node a waits 300 ms for its standby (write_timeout_ms), then answers
    // DEADLINE_EXCEEDED itself; the client waits longer. Admitted after
    // the lease (400 ms) ran out instead, it is refused up front.
    let e = upsert(&a, 100, Duration::from_secs(3)).await.unwrap_err();
    if e.code() == Code::Unavailable {
        assert!(e.message().contains("no write lease"), "{e:?}");
    } else {
        assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
        assert_eq!(
            e.metadata().get("quarry-outcome").map(|v| v.to_str().unwrap()),
            Some("unknown"),
            "{e:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let e = upsert(&a, 101, Duration::from_secs(2)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("no write lease"), "{}", e.message());
    assert!(e.metadata().get("quarry-outcome").is_none(), "refused, not unknown");

    // Degraded, the primary acknowledges alone.
    let d = rpb::replication_client::ReplicationClient::new(channel(&a.repl).await)
        .degrade(with_token(rpb::DegradeRequest { degraded: true }, TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert!(d.degraded);
    upsert(&a, 102, Duration::from_secs(2)).await.unwrap();
    assert!(status(&a).await.degraded);

    // The standby comes back, catches up (the writes acknowledged alone
    // included), and the primary is no longer degraded.
    b = Node::start(&tmp.path().join("b"), "standby", pb_, pa);
    until("the standby is back in sync", Duration::from_secs(30), async || {
        status(&b).await.eligible
    })
    .await;
    assert!(!status(&a).await.degraded);
    let got = pb::query_client::QueryClient::new(channel(&b.public).await)
        .get(pb::GetRequest {
            collection: "c".into(),
            ids: vec![100, 102],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.records.len(), 2, "the outcome-unknown write and the degraded one");

    // Two failover commands at once: one promotes, the other is refused.
    drop(a);
    let promote = async || {
        rpb::replication_client::ReplicationClient::new(channel(&b.repl).await)
            .promote(with_token(
                rpb::PromoteRequest {
                    primary_down: true,
                    ..Default::default()
                },
                TOKEN,
            ))
            .await
    };
    let (x, y) = tokio::join!(promote(), promote());
    let oks = [&x, &y].iter().filter(|r| r.is_ok()).count();
    assert_eq!(oks, 1, "{x:?} {y:?}");
    let e = match (x, y) {
        (Err(e), _) | (_, Err(e)) => e,
        _ => unreachable!("one of them failed"),
    };
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert_eq!(status(&b).await.role, "primary");
}

async fn create_c(n: &Node) {
    pb::collections_client::CollectionsClient::new(channel(&n.public).await)
        .create_collection(pb::CreateCollectionRequest {
            name: "c".into(),
            dim: 4,
            metric: pb::Metric::L2 as i32,
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn drop_c(n: &Node) {
    pb::collections_client::CollectionsClient::new(channel(&n.public).await)
        .drop_collection(pb::DropCollectionRequest { name: "c".into() })
        .await
        .unwrap();
}

/// Which of `ids` node `n` holds in collection c (None: no collection).
async fn held(n: &Node, ids: std::ops::Range<u64>) -> Option<Vec<u64>> {
    let mut q = pb::query_client::QueryClient::new(channel(&n.public).await);
    let mut out = Vec::new();
    for id in ids {
        match q
            .get(pb::GetRequest {
                collection: "c".into(),
                ids: vec![id],
            })
            .await
        {
            Ok(r) if !r.get_ref().records.is_empty() => out.push(id),
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound && s.message().contains("does not exist") => return None,
            Err(_) => {}
        }
    }
    Some(out)
}

async fn incarnation(n: &Node) -> Option<u64> {
    status(n)
        .await
        .collections
        .iter()
        .find(|c| c.name == "c")
        .map(|c| c.incarnation)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_and_recreated_collection_reaches_the_standby_as_a_new_incarnation() {
    let tmp = tempfile::tempdir().unwrap();
    let (pa, pb_) = (ports(7), ports(7) + 10);
    let a = Node::start(&tmp.path().join("a"), "primary", pa, pb_);
    let mut b = Node::start(&tmp.path().join("b"), "standby", pb_, pa);
    until("the pair forms", Duration::from_secs(30), async || {
        status(&b).await.eligible
    })
    .await;
    create_c(&a).await;
    until("c reaches the standby", Duration::from_secs(30), async || {
        let s = status(&b).await;
        s.eligible && s.collections.iter().any(|c| c.name == "c")
    })
    .await;
    for id in 0..10 {
        upsert(&a, id, Duration::from_secs(5)).await.unwrap();
    }
    assert_eq!(held(&b, 0..10).await, Some((0..10).collect()));

    // Connected: dropped and created again, with other writes.
    let first = incarnation(&a).await.unwrap();
    drop_c(&a).await;
    create_c(&a).await;
    let second = incarnation(&a).await.unwrap();
    assert_ne!(first, second);
    until(
        "the new incarnation reaches the standby",
        Duration::from_secs(30),
        async || incarnation(&b).await == Some(second) && status(&b).await.eligible,
    )
    .await;
    for id in 100..105 {
        upsert(&a, id, Duration::from_secs(5)).await.unwrap();
    }
    assert_eq!(held(&b, 0..10).await, Some(vec![]), "nothing of the old incarnation");
    assert_eq!(held(&b, 100..105).await, Some((100..105).collect()));

    // Lagging: the standby is down meanwhile; the primary, degraded,
    // drops and recreates it and writes. The standby comes back holding
    // the older incarnation and is given the new one, not spliced.
    let _ = b.child.kill();
    let _ = b.child.wait();
    rpb::replication_client::ReplicationClient::new(channel(&a.repl).await)
        .degrade(with_token(rpb::DegradeRequest { degraded: true }, TOKEN))
        .await
        .unwrap();
    drop_c(&a).await;
    create_c(&a).await;
    let third = incarnation(&a).await.unwrap();
    for id in 200..205 {
        upsert(&a, id, Duration::from_secs(5)).await.unwrap();
    }
    b = Node::start(&tmp.path().join("b"), "standby", pb_, pa);
    until(
        "the standby catches up to the third incarnation",
        Duration::from_secs(30),
        async || incarnation(&b).await == Some(third) && status(&b).await.eligible,
    )
    .await;
    assert_eq!(held(&b, 100..105).await, Some(vec![]));
    assert_eq!(held(&b, 200..205).await, Some((200..205).collect()));
    assert!(status(&b).await.snapshots_received >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_build_on_the_primary_reaches_the_standby_as_its_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let (pa, pb_) = (ports(9), ports(9) + 10);
    let a = Node::start(&tmp.path().join("a"), "primary", pa, pb_);
    let b = Node::start(&tmp.path().join("b"), "standby", pb_, pa);
    until("the pair forms", Duration::from_secs(30), async || {
        status(&b).await.eligible
    })
    .await;
    create_c(&a).await;
    until("c reaches the standby in sync", Duration::from_secs(30), async || {
        let s = status(&b).await;
        s.eligible && s.collections.iter().any(|c| c.name == "c")
    })
    .await;
    // 3000 x 4 vectors in an .fbin the primary reads.
    let n = 3000u32;
    let mut f = Vec::new();
    f.extend_from_slice(&n.to_le_bytes());
    f.extend_from_slice(&4u32.to_le_bytes());
    for i in 0..n {
        for d in 0..4 {
            f.extend_from_slice(&(((i * 7 + d * 13) % 101) as f32).to_le_bytes());
        }
    }
    let src = tmp.path().join("base.fbin");
    std::fs::write(&src, &f).unwrap();
    let mut cc = pb::collections_client::CollectionsClient::new(channel(&a.public).await);
    let op = cc
        .build_index(pb::BuildIndexRequest {
            collection: "c".into(),
            source_path: src.display().to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    until("the build finishes", Duration::from_secs(120), async || {
        let o = cc
            .get_operation(pb::GetOperationRequest { id: op.id.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_ne!(o.state, pb::OperationState::Failed as i32, "{}", o.error);
        o.state == pb::OperationState::Done as i32
    })
    .await;
    // The build's segment is on the standby: its rows are there, exactly.
    until("the standby holds the build", Duration::from_secs(60), async || {
        let s = status(&b).await;
        let p = status(&a).await;
        let last = p.collections.iter().find(|c| c.name == "c").map(|c| c.last_lsn);
        s.collections.iter().find(|c| c.name == "c").map(|c| c.applied_lsn) == last
    })
    .await;
    let got = pb::query_client::QueryClient::new(channel(&b.public).await)
        .get(pb::GetRequest {
            collection: "c".into(),
            ids: vec![0, 1234, 2999],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.records.len(), 3);
    for r in &got.records {
        let i = r.id as u32;
        let want: Vec<f32> = (0..4).map(|d| ((i * 7 + d * 13) % 101) as f32).collect();
        assert_eq!(r.vector, want, "id {i}");
    }
    // The standby flushes on its own as records arrive (flush_at = 200).
    for id in 10_000..10_300 {
        upsert(&a, id, Duration::from_secs(5)).await.unwrap();
    }
    let mut bc = pb::collections_client::CollectionsClient::new(channel(&b.public).await);
    until("the standby flushed", Duration::from_secs(60), async || {
        let c = bc
            .describe_collection(pb::DescribeCollectionRequest { name: "c".into() })
            .await
            .unwrap()
            .into_inner();
        c.writes.is_some_and(|w| w.flushes >= 1 && w.fresh_vectors < 200)
    })
    .await;
    let seg = std::fs::read_dir(tmp.path().join("b/data/collections/c/live"))
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("bulk-"));
    assert!(seg, "the standby holds the bulk segment's directory");
}

/// A replication client over TLS trusting `ca`, presenting `id` when
/// given; `Err` carries the whole cause chain.
async fn tls_client(
    addr: &str,
    ca: &Path,
    id: Option<(&std::path::PathBuf, &std::path::PathBuf)>,
    name: Option<&str>,
) -> Result<rpb::replication_client::ReplicationClient<tonic::transport::Channel>, String> {
    let tls = quarry_proto::tls::client_only(ca, id, name)?;
    let ch = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .map_err(|e| quarry_proto::tls::error_chain(&e))?
        .connect()
        .await
        .map_err(|e| quarry_proto::tls::error_chain(&e))?;
    Ok(rpb::replication_client::ReplicationClient::new(ch))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replication_link_runs_over_mutual_tls_and_refuses_every_other_client() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("tls");
    let rogue = tmp.path().join("rogue");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/pair-certs.sh");
    for (dir, names) in [
        (
            &certs,
            vec!["a=DNS:node-a,IP:127.0.0.1", "b=DNS:node-b,IP:127.0.0.1", "ops=DNS:ops"],
        ),
        (&rogue, vec!["x=DNS:node-a,IP:127.0.0.1"]),
    ] {
        let out = Command::new("bash")
            .arg(&script)
            .arg(dir)
            .args(&names)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let f = |n: &str| certs.join(n);
    let conf = |n: &str| {
        format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_ca = \"{}\"\ntls_require_client_cert = true\n",
            f(&format!("{n}.crt")).display(),
            f(&format!("{n}.key")).display(),
            f("ca.crt").display()
        )
    };
    let (pa, pb_) = (ports(11), ports(11) + 10);
    let a = Node::start_with(&tmp.path().join("a"), "primary", pa, pb_, 2000, &conf("a"));
    let b = Node::start_with(&tmp.path().join("b"), "standby", pb_, pa, 2000, &conf("b"));
    let (ra, rb) = (format!("127.0.0.1:{}", pa + 2), format!("127.0.0.1:{}", pb_ + 2));
    let (ops_cert, ops_key) = (f("ops.crt"), f("ops.key"));
    let ops = Some((&ops_cert, &ops_key));

    // The pair forms over TLS: the standby is eligible and writes are
    // acknowledged by both nodes.
    let t = Instant::now();
    loop {
        if let Ok(mut c) = tls_client(&rb, &f("ca.crt"), ops, None).await {
            if let Ok(r) = c.peer(with_token(rpb::PeerRequest {}, TOKEN)).await {
                if r.get_ref().eligible {
                    break;
                }
            }
        }
        assert!(t.elapsed() < Duration::from_secs(30), "the pair forms over TLS");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    create_c(&a).await;
    for id in 0..20 {
        upsert(&a, id, Duration::from_secs(5)).await.unwrap();
    }
    assert_eq!(held(&b, 0..20).await, Some((0..20).collect()));

    // Plain HTTP/2 to a TLS listener gets no answer.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{ra}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await;
    if let Ok(ch) = plain {
        let r = rpb::replication_client::ReplicationClient::new(ch)
            .peer(with_token(rpb::PeerRequest {}, TOKEN))
            .await;
        assert!(r.is_err(), "plaintext was answered: {r:?}");
    }
    // A client that trusts another CA refuses the node's certificate.
    let e = tls_client(&ra, &rogue.join("ca.crt"), None, None).await.unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    // A name the certificate does not carry is refused.
    let e = tls_client(&ra, &f("ca.crt"), ops, Some("node-z")).await.unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    // The node refuses a client without a certificate, and one whose
    // certificate another CA signed (with TLS 1.3 the refusal may come
    // with the first call rather than the handshake).
    let (x_cert, x_key) = (rogue.join("x.crt"), rogue.join("x.key"));
    for id in [None, Some((&x_cert, &x_key))] {
        let r = match tls_client(&ra, &f("ca.crt"), id, None).await {
            Err(e) => Err(e),
            Ok(mut c) => c
                .peer(with_token(rpb::PeerRequest {}, TOKEN))
                .await
                .map_err(|s| format!("{s:?}")),
        };
        assert!(r.is_err(), "a client with {id:?} was answered");
    }
    // TLS does not replace the token.
    let e = tls_client(&ra, &f("ca.crt"), ops, None)
        .await
        .unwrap()
        .peer(rpb::PeerRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let st = tls_client(&ra, &f("ca.crt"), ops, Some("node-a"))
        .await
        .unwrap()
        .peer(with_token(rpb::PeerRequest {}, TOKEN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((st.role.as_str(), st.connected), ("primary", true));
    drop((a, b));

    // A node whose key file holds no key does not start, and says which key.
    let dir = tmp.path().join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let bad = conf("a").replace(&f("a.key").display().to_string(), &f("a.crt").display().to_string());
    std::fs::write(
        dir.join("q.toml"),
        format!(
            "data_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\n[replication]\nrole = \"primary\"\npeer = \"127.0.0.1:1\"\nreplication_listen = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n{bad}",
            dir.join("data").display(),
            dir.join("token").display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_quarryd"))
        .arg("--config")
        .arg(dir.join("q.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("replication.tls_key"), "{err}");
}
