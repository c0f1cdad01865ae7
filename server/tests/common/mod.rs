//! Helpers shared by the end-to-end tests: start the real `quarryd`
//! binary on loopback, a small clustered data set with exact neighbours,
//! search and recall helpers.
#![allow(dead_code)]

use quarry_engine::dataset::synth::{generate_vectors, Stream, SynthParams};
use quarry_engine::dataset::{groundtruth::exact_knn, write_fbin};
use quarry_engine::Metric;
use quarry_proto::v1 as pb;
use quarry_proto::v1::query_client::QueryClient;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::Code;

pub const DIM: usize = 32;

pub struct Server {
    pub child: Child,
    pub addr: String,
    /// Every line quarryd wrote to stderr so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _log: std::thread::JoinHandle<()>,
}

impl Server {
    /// Start quarryd on ephemeral ports over `data`, with extra env vars
    /// and config lines; wait for its "listening" line.
    pub fn start(data: &Path, env: &[(&str, &str)], config: &str) -> Server {
        let cfg = data.with_extension("toml");
        std::fs::write(
            &cfg,
            format!("listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\nshards = 2\nlog = \"info\"\n{config}"),
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quarryd"));
        cmd.arg("--config").arg(&cfg).arg("--data-dir").arg(data);
        cmd.stderr(Stdio::piped()).stdout(Stdio::null());
        cmd.env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env("NO_COLOR", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("quarryd starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = lines.clone();
        let log = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[quarryd] {line}");
                kept.lock().unwrap().push(line.clone());
                if let Some(i) = line.find("grpc=") {
                    let a = line[i + 5..].split_whitespace().next().unwrap().to_string();
                    let _ = tx.send(a);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("quarryd printed its listening address");
        Server {
            child,
            addr: format!("http://{addr}"),
            log: lines,
            _log: log,
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.addr.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub fn sigterm(&self) {
        // kill(1) rather than libc::kill keeps the test free of unsafe.
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(t.elapsed() < within, "quarryd did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A clustered data set written as .fbin, with its queries and exact top-10.
pub fn dataset(dir: &Path, n: usize) -> (PathBuf, Vec<f32>, Vec<Vec<u32>>) {
    let mut p = SynthParams::defaults(n, DIM);
    p.queries = 100;
    p.clusters = 50;
    p.rank = 16;
    let base = generate_vectors(&p, Stream::Base, 0).unwrap();
    let queries = generate_vectors(&p, Stream::Queries, 0).unwrap();
    let path = dir.join(format!("base-{n}.fbin"));
    write_fbin(&path, n, DIM, &base).unwrap();
    let gt = exact_knn(&base, &queries, DIM, 10, Metric::L2, 0, &mut |_, _| {}).unwrap();
    let truth = (0..100).map(|q| gt.row(q).to_vec()).collect();
    (path, queries, truth)
}

/// Create collection `name` (L2, DIM, small graph and PQ parameters).
pub async fn create(ch: Channel, name: &str, mutable: bool) {
    create_with(ch, name, mutable, pb::Residency::Unspecified).await
}

/// [`create`] with a residency.
pub async fn create_with(ch: Channel, name: &str, mutable: bool, residency: pb::Residency) {
    quarry_proto::v1::collections_client::CollectionsClient::new(ch)
        .create_collection(pb::CreateCollectionRequest {
            name: name.into(),
            dim: DIM as u32,
            metric: pb::Metric::L2 as i32,
            index_params: Some(pb::IndexParams {
                max_degree: 24,
                build_list_size: 48,
                pq_bytes: 16,
                ..Default::default()
            }),
            stored_vector: 0,
            mutable,
            residency: residency as i32,
        })
        .await
        .unwrap();
}

/// Bulk-load `source` into collection `name` (ids `first_id` + row) with
/// BuildIndex and wait for the operation to finish; its id.
pub async fn build_and_wait(ch: Channel, name: &str, source: &Path, first_id: u64) -> String {
    let mut c = quarry_proto::v1::collections_client::CollectionsClient::new(ch);
    let op = c
        .build_index(pb::BuildIndexRequest {
            collection: name.into(),
            source_path: source.display().to_string(),
            first_id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let t = Instant::now();
    loop {
        let o = c
            .get_operation(pb::GetOperationRequest { id: op.id.clone() })
            .await
            .unwrap()
            .into_inner();
        assert!(o.progress >= 0.0 && o.progress <= 1.0);
        match pb::OperationState::try_from(o.state).unwrap() {
            pb::OperationState::Done => break,
            pb::OperationState::Failed => panic!("build failed: {}", o.error),
            _ => {}
        }
        assert!(t.elapsed() < Duration::from_secs(120), "build took too long");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    op.id
}

/// The ids of the `k` nearest to `v` (any dimension) in collection `name`,
/// at list size `l` and W 4.
pub async fn search_ids(q: &mut QueryClient<Channel>, name: &str, v: &[f32], k: u32, l: u32) -> Vec<u64> {
    q.search(pb::SearchRequest {
        collection: name.into(),
        vector: v.to_vec(),
        params: Some(pb::SearchParams { k, l, w: 4 }),
        with_payload: false,
    })
    .await
    .unwrap()
    .into_inner()
    .neighbors
    .iter()
    .map(|n| n.id)
    .collect()
}

/// Every query of `queries` (DIM each) at k 10, L 40.
pub async fn search_all(ch: Channel, name: &str, queries: &[f32]) -> Vec<Vec<u64>> {
    let mut q = QueryClient::new(ch);
    let mut out = Vec::new();
    for v in queries.chunks_exact(DIM) {
        out.push(search_ids(&mut q, name, v, 10, 40).await);
    }
    out
}

/// DescribeCollection of `name`.
pub async fn describe(ch: Channel, name: &str) -> pb::Collection {
    quarry_proto::v1::collections_client::CollectionsClient::new(ch)
        .describe_collection(pb::DescribeCollectionRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
}

pub fn recall(got: &[Vec<u64>], truth: &[Vec<u32>]) -> f64 {
    let hits: usize = got
        .iter()
        .zip(truth)
        .map(|(g, t)| g.iter().filter(|id| t[..10].contains(&(**id as u32))).count())
        .sum();
    hits as f64 / (10 * got.len()) as f64
}

pub fn code_of<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, String) {
    let s = r.expect_err("expected an error status");
    (s.code(), s.message().to_string())
}

/// GET /metrics from the server's metrics listener (its address from the
/// "quarryd listening" line).
pub fn scrape(server: &Server) -> String {
    use std::io::{Read, Write};
    let addr = server
        .log
        .lock()
        .unwrap()
        .iter()
        .find_map(|l| {
            l.split_once("metrics=")
                .map(|(_, r)| r.split_whitespace().next().unwrap().to_string())
        })
        .expect("quarryd logged its metrics address");
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    s
}

/// Poll `ok` every 50 ms until it holds; fail after `within`.
pub async fn wait_for(what: &str, within: Duration, mut ok: impl AsyncFnMut() -> bool) {
    let t = Instant::now();
    while !ok().await {
        assert!(t.elapsed() < within, "{what} did not happen within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Compact collection `name` and wait until the operation is done.
pub async fn compact_and_wait(ch: Channel, name: &str) {
    let op = quarry_proto::v1::admin_client::AdminClient::new(ch.clone())
        .compact(pb::CompactRequest {
            collection: name.into(),
        })
        .await
        .unwrap()
        .into_inner();
    wait_for("the compaction", Duration::from_secs(120), async || {
        let o = quarry_proto::v1::collections_client::CollectionsClient::new(ch.clone())
            .get_operation(pb::GetOperationRequest { id: op.id.clone() })
            .await
            .unwrap()
            .into_inner();
        assert_ne!(o.state, pb::OperationState::Failed as i32, "{}", o.error);
        o.state == pb::OperationState::Done as i32
    })
    .await;
}

/// Delete `ids` from collection `name`.
pub async fn delete(ch: Channel, name: &str, ids: Vec<u64>) {
    quarry_proto::v1::write_client::WriteClient::new(ch)
        .delete(pb::DeleteRequest {
            collection: name.into(),
            ids,
        })
        .await
        .unwrap();
}

/// The names of every collection, as ListCollections answers.
pub async fn names(ch: Channel) -> Vec<String> {
    quarry_proto::v1::collections_client::CollectionsClient::new(ch)
        .list_collections(pb::ListCollectionsRequest {})
        .await
        .unwrap()
        .into_inner()
        .collections
        .into_iter()
        .map(|c| c.name)
        .collect()
}
