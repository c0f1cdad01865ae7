//! `quarry-bench`: load generator for quarryd, and the same workload run
//! in-process on the engine for comparison.
//!
//! ```text
//! quarry-bench --server http://127.0.0.1:7700 --collection NAME --queries q.fbin [--gt gt.ibin]
//!              [--clients N | --rate QPS] [--duration S] [--k 10 --L 64 --W 8] [--deadline-ms D]
//! quarry-bench --in-process INDEX_DIR --queries q.fbin [--gt gt.ibin] [--threads T --inflight I] [--wait poll|block]
//! ```
//! Closed loop (`--clients N`): N clients send back to back. Open loop
//! (`--rate R`): requests are due at start + i/R whatever the server does,
//! and latency is measured from the due time, so a stalled server is
//! charged for every request it delayed (coordinated omission corrected);
//! a dedicated OS thread paces the requests with high-resolution sleeps.
//! Prints one JSON object: QPS, p50/p99/p99.9 (hdrhistogram), recall@k,
//! statuses by code, this process's own CPU use (it shares the cores), and
//! per request the overhead (client latency minus the engine's time in the
//! shard, `overhead_p50_us`) and that engine time (`shard_p50_us`). The
//! overhead is split in two with the handler's own timing: the service's
//! code path (`server_path_p50_us`: validation, queue, hand-offs) and the
//! transport (`transport_p50_us`: encoding, HTTP/2, the network).
//!
//! Requests go over quarry-bench's lean client transport by default
//! (`lean_grpc`: tonic's generated client and codec over `h2` directly,
//! each unary request in one write); `--stock-client` uses tonic's own
//! `Channel`, which is what a tonic application would see.
//!
//! `--interleave INDEX_DIR` measures the 1-client added latency: it
//! alternates blocks (`--block-ms`) of gRPC searches with blocks of the
//! same engine searches in-process on the index quarryd serves, so both
//! sides see the same disk conditions. It also prints each side's mean
//! wait per read (`in_process_read_wait_us`, `grpc_read_wait_us`: from
//! issuing a read to the searcher finding it done), which separates a
//! slower shard search into waiting for reads and computing.
//!
//! ```text
//! quarry-bench --plot-from results.jsonl --plot out.png [--title T]
//! ```
//! draws recall against QPS and against p50/p99 latency from collected
//! JSON lines (one series per `--label`; see `plot.rs`).

use anyhow::{bail, Context, Result};
use clap::Parser;
use hdrhistogram::Histogram;
use quarry_engine::search::WaitMode;
use quarry_proto::v1 as pb;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
#[command(name = "quarry-bench", version, about = "gRPC load generator for quarryd")]
struct Args {
    /// quarryd address.
    #[arg(long, default_value = "http://127.0.0.1:7700")]
    server: String,
    /// Collection to search.
    #[arg(long, default_value = "")]
    collection: String,
    /// Query vectors (cycled through).
    #[arg(long, required_unless_present_any = ["plot_from", "ping"])]
    queries: Option<PathBuf>,
    /// Ground truth (.ibin) for recall@k.
    #[arg(long)]
    gt: Option<PathBuf>,
    /// Closed loop with this many concurrent clients.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Open loop at this many queries per second (overrides --clients).
    #[arg(long)]
    rate: Option<f64>,
    /// Seconds of measurement.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// In-process mode: how a searching thread waits for reads (poll or
    /// block; quarryd's shards poll too, see `shard_poll_us`).
    #[arg(long, default_value = "poll")]
    wait: WaitMode,
    /// Neighbours.
    #[arg(long, default_value_t = 10)]
    k: u32,
    /// Search list size (0 = server default).
    #[arg(long = "L", visible_alias = "l", default_value_t = 0)]
    l: u32,
    /// Beam width (0 = server default).
    #[arg(long = "W", visible_alias = "w", default_value_t = 8)]
    w: u32,
    /// Per-request deadline in milliseconds (sent as grpc-timeout).
    #[arg(long)]
    deadline_ms: Option<u64>,
    /// Run the same queries in-process on this index directory instead of
    /// over gRPC (the comparison for gRPC overhead).
    #[arg(long)]
    in_process: Option<PathBuf>,
    /// In-process: measure only the one-query-at-a-time latency (for
    /// `duration` seconds), not the saturation QPS.
    #[arg(long, requires = "in_process")]
    latency_only: bool,
    /// In-process: threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// In-process: queries in flight per thread.
    #[arg(long, default_value_t = 8)]
    inflight: usize,
    /// Transport floor: instead of searching, one client sends the gRPC
    /// health check (`grpc.health.v1.Health/Check`) back to back for `--duration` seconds and the
    /// round trip's percentiles are printed (what tonic, HTTP/2 and the
    /// loopback path cost on this machine with no search in the way).
    #[arg(long, conflicts_with_all = ["in_process", "rate", "plot_from"])]
    ping: bool,
    /// Added latency, interleaved: one client alternates blocks of
    /// `--block-ms` of searches over gRPC with blocks of the same searches
    /// in-process on this index directory (the one quarryd serves), for
    /// `--duration` seconds, and prints both sides' percentiles and the
    /// difference of their p50s. Alternating every fraction of a second
    /// puts both sides under the same disk conditions, which drift by more
    /// than the difference from one minute to the next on a VM.
    #[arg(long, conflicts_with_all = ["in_process", "rate", "plot_from", "ping"])]
    interleave: Option<PathBuf>,
    /// `--interleave`: milliseconds per block.
    #[arg(long, default_value_t = 500, requires = "interleave")]
    block_ms: u64,
    /// Use tonic's own client transport (`Channel`) instead of the lean
    /// one (`lean_grpc`: h2 directly, each unary request in one write), to
    /// measure what a stock tonic client costs.
    #[arg(long)]
    stock_client: bool,
    /// Label put in the JSON (and the plot's series name).
    #[arg(long, default_value = "")]
    label: String,
    /// Plot mode: read quarry-bench JSON lines from this file (e.g. several
    /// runs at different --L appended together) and draw them to --plot.
    #[arg(long, requires = "plot")]
    plot_from: Option<PathBuf>,
    /// PNG to write in plot mode.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Plot title.
    #[arg(long, default_value = "quarry-bench")]
    title: String,
}

#[path = "../lean_grpc.rs"]
mod lean_grpc;
#[path = "../plot.rs"]
mod plot;

fn cpu_seconds() -> f64 {
    quarry_engine::runtime::cpu_seconds()
}

struct Tally {
    hist: Histogram<u64>,
    /// Per request: client latency minus the engine's time inside the
    /// shard (`stats.shard_micros`), i.e. what the service path adds
    /// (network, tonic/h2, queueing, hand-offs), paired request by request
    /// so that disk noise cancels.
    overhead: Histogram<u64>,
    /// The engine's own time per request inside the shard.
    shard: Histogram<u64>,
    /// Split of `overhead`: what the service's own code path adds
    /// (handler time minus shard time: validation, queue, hand-offs)...
    server_path: Histogram<u64>,
    /// ...and the transport (client latency minus handler time: encoding,
    /// HTTP/2, the network, both ways).
    transport: Histogram<u64>,
    codes: std::collections::BTreeMap<String, u64>,
    hits: u64,
    judged: u64,
}

fn main() -> Result<()> {
    let a = Args::parse();
    if let (Some(from), Some(out)) = (&a.plot_from, &a.plot) {
        let points = plot::read_points(from)?;
        plot::plot(&points, out, &a.title)?;
        eprintln!("quarry-bench: {} points plotted to {}", points.len(), out.display());
        return Ok(());
    }
    if a.ping {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        return rt.block_on(ping(&a));
    }
    let qpath = a.queries.clone().context("--queries is required")?;
    let file = quarry_engine::dataset::VectorFile::open(&qpath)?;
    let dim = file.dim();
    let queries = Arc::new(file.to_vec_f32());
    let nq = file.len();
    let gt = match &a.gt {
        Some(p) => {
            let (gn, gk, ids) = quarry_engine::dataset::read_ibin(p)?;
            if gn < nq || gk < a.k as usize {
                bail!(
                    "{} has {gn} rows of {gk}; need {nq} rows of at least {}",
                    p.display(),
                    a.k
                );
            }
            Some(Arc::new((gk, ids)))
        }
        None => None,
    };
    if let Some(dir) = &a.in_process {
        return in_process(&a, dir, &Workload::new(&queries, dim, nq, gt.as_deref()));
    }
    if a.collection.is_empty() {
        bail!("--collection is required (or --in-process INDEX_DIR)");
    }
    // One thread: the client shares the machine's cores with quarryd, and
    // a single-threaded runtime avoids a cross-thread hand-off per reply.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    if let Some(dir) = a.interleave.clone() {
        return rt.block_on(interleaved(&a, &dir, &Workload::new(&queries, dim, nq, gt.as_deref())));
    }
    rt.block_on(remote(a, queries, dim, nq, gt))
}

/// One answered request's latency, split by the server's own timings.
struct Split {
    /// Client latency minus the shard's time.
    overhead: u64,
    /// The shard's time.
    shard: u64,
    /// The handler's time minus the shard's.
    server_path: u64,
    /// Client latency minus the handler's time.
    transport: u64,
}

impl Split {
    /// `us`: client latency; `stats`: the server's figures (absent from a
    /// server that sends none, which then count as zero).
    fn of(us: u64, stats: Option<&pb::QueryStats>) -> Split {
        let (shard, handler) = stats.map_or((0.0, 0.0), |s| (s.shard_micros, s.handler_micros));
        let clamp = |x: f64| x.max(1.0) as u64;
        Split {
            overhead: clamp(us as f64 - shard),
            shard: clamp(shard),
            server_path: clamp(handler - shard),
            transport: clamp(us as f64 - handler),
        }
    }
}

/// (true neighbours found, neighbours judged) for query `qi`; (0, 0)
/// without ground truth.
fn judge(gt: Option<&(usize, Vec<u32>)>, qi: usize, k: usize, ids: impl Iterator<Item = u64>) -> (u64, u64) {
    match gt {
        Some((gk, g)) => {
            let row = &g[qi * gk..qi * gk + k];
            (ids.filter(|id| row.contains(&(*id as u32))).count() as u64, k as u64)
        }
        None => (0, 0),
    }
}

async fn remote(
    a: Args,
    queries: Arc<Vec<f32>>,
    dim: usize,
    nq: usize,
    gt: Option<Arc<(usize, Vec<u32>)>>,
) -> Result<()> {
    let ch = connect(&a).await?;
    let tally = Arc::new(Mutex::new(Tally {
        hist: Histogram::new_with_bounds(1, 120_000_000, 3)?,
        overhead: Histogram::new_with_bounds(1, 120_000_000, 3)?,
        shard: Histogram::new_with_bounds(1, 120_000_000, 3)?,
        server_path: Histogram::new_with_bounds(1, 120_000_000, 3)?,
        transport: Histogram::new_with_bounds(1, 120_000_000, 3)?,
        codes: Default::default(),
        hits: 0,
        judged: 0,
    }));
    let next = Arc::new(AtomicUsize::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let req = {
        let a = a.clone();
        let queries = queries.clone();
        move |qi: usize| {
            let mut r = tonic::Request::new(pb::SearchRequest {
                collection: a.collection.clone(),
                vector: queries[qi * dim..(qi + 1) * dim].to_vec(),
                params: Some(pb::SearchParams { k: a.k, l: a.l, w: a.w }),
                with_payload: false,
            });
            if let Some(ms) = a.deadline_ms {
                r.set_timeout(Duration::from_millis(ms));
            }
            r
        }
    };
    let record = {
        let tally = tally.clone();
        let gt = gt.clone();
        let measuring = measuring.clone();
        let k = a.k as usize;
        move |qi: usize, since: Instant, r: Result<tonic::Response<pb::SearchResponse>, tonic::Status>| {
            if !measuring.load(Ordering::Relaxed) {
                return;
            }
            let us = since.elapsed().as_micros().max(1) as u64;
            let mut t = tally.lock().expect("lock");
            match r {
                Ok(resp) => {
                    t.hist.saturating_record(us);
                    *t.codes.entry("ok".into()).or_insert(0) += 1;
                    let resp = resp.into_inner();
                    let split = Split::of(us, resp.stats.as_ref());
                    t.overhead.saturating_record(split.overhead);
                    t.shard.saturating_record(split.shard);
                    t.server_path.saturating_record(split.server_path);
                    t.transport.saturating_record(split.transport);
                    let (h, j) = judge(gt.as_deref(), qi, k, resp.neighbors.iter().map(|n| n.id));
                    t.hits += h;
                    t.judged += j;
                }
                Err(s) => *t.codes.entry(format!("{:?}", s.code())).or_insert(0) += 1,
            }
        }
    };
    let cpu0 = cpu_seconds();
    let mut handles = Vec::new();
    let t_start = Instant::now();
    let warm = Duration::from_secs_f64(a.warmup);
    let total = warm + Duration::from_secs_f64(a.duration);
    if let Some(rate) = a.rate {
        // Open loop: request i is due at start + i / rate. A plain OS
        // thread paces the requests: tokio's timer ticks in whole
        // milliseconds, which would start requests up to 1 ms late and,
        // since latency is measured from the due time (coordinated
        // omission corrected), add that lateness to every figure.
        // `std::thread::sleep` uses high-resolution timers.
        let inflight = Arc::new(AtomicUsize::new(0));
        let pacer = {
            let (req, record) = (req.clone(), record.clone());
            let (ch, measuring, inflight) = (ch.clone(), measuring.clone(), inflight.clone());
            let rt = tokio::runtime::Handle::current();
            std::thread::Builder::new().name("pacer".into()).spawn(move || {
                let mut i: u64 = 0;
                loop {
                    let due = t_start + Duration::from_secs_f64(i as f64 / rate);
                    if due >= t_start + total {
                        break;
                    }
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    }
                    if !measuring.load(Ordering::Relaxed) && due >= t_start + warm {
                        measuring.store(true, Ordering::Relaxed);
                    }
                    let qi = (i as usize) % nq;
                    let (req, record, inflight) = (req.clone(), record.clone(), inflight.clone());
                    let mut client = pb::query_client::QueryClient::new(ch.clone());
                    inflight.fetch_add(1, Ordering::Relaxed);
                    rt.spawn(async move {
                        let r = client.search(req(qi)).await;
                        record(qi, due, r);
                        inflight.fetch_sub(1, Ordering::Relaxed);
                    });
                    i += 1;
                }
            })?
        };
        while !pacer.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = pacer.join();
        // Let the stragglers finish (bounded).
        let t = Instant::now();
        while inflight.load(Ordering::Relaxed) > 0 && t.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    } else {
        for _ in 0..a.clients.max(1) {
            let (req, record) = (req.clone(), record.clone());
            let (next, stop) = (next.clone(), stop.clone());
            let mut client = pb::query_client::QueryClient::new(ch.clone());
            handles.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let qi = next.fetch_add(1, Ordering::Relaxed) % nq;
                    let t = Instant::now();
                    let r = client.search(req(qi)).await;
                    record(qi, t, r);
                }
            }));
        }
        tokio::time::sleep(warm).await;
        measuring.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs_f64(a.duration)).await;
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            let _ = h.await;
        }
    }
    let wall = a.duration;
    let cpu = cpu_seconds() - cpu0;
    let t = tally.lock().expect("lock");
    let ok = t.codes.get("ok").copied().unwrap_or(0);
    let out = serde_json::json!({
        "label": a.label,
        "mode": if a.rate.is_some() { "open" } else { "closed" }, "stock_client": a.stock_client,
        "clients": a.clients, "rate": a.rate, "k": a.k, "L": a.l, "W": a.w,
        "duration_s": wall,
        "qps": ok as f64 / wall,
        "lat_p50_us": t.hist.value_at_quantile(0.5),
        "lat_p99_us": t.hist.value_at_quantile(0.99),
        "lat_p999_us": t.hist.value_at_quantile(0.999),
        "lat_mean_us": t.hist.mean(),
        "overhead_p50_us": t.overhead.value_at_quantile(0.5),
        "overhead_p99_us": t.overhead.value_at_quantile(0.99),
        "shard_p50_us": t.shard.value_at_quantile(0.5),
        "server_path_p50_us": t.server_path.value_at_quantile(0.5),
        "transport_p50_us": t.transport.value_at_quantile(0.5),
        "recall_at_k": if t.judged > 0 { Some(t.hits as f64 / t.judged as f64) } else { None },
        "statuses": t.codes,
        "client_cpu_cores": cpu / (t_start.elapsed().as_secs_f64()),
        "coordinated_omission_corrected": a.rate.is_some(),
    });
    println!("{out}");
    Ok(())
}

/// `--interleave`: one client alternates blocks of `--block-ms`: one
/// block of in-process searches back to back, then one of gRPC searches,
/// and so on, each side keeping its own histogram. Blocks rather than
/// single queries: a gRPC search right after an in-process one would find
/// quarryd's shards parked (cold), and the shards' polling would slow the
/// in-process search sharing their core, neither of which happens to a
/// steady client. The two sides start half the query file apart, so
/// neither is served by a cache the other just warmed.
async fn interleaved(a: &Args, dir: &std::path::Path, w: &Workload<'_>) -> Result<()> {
    let (queries, dim, nq, gt) = (w.queries, w.dim, w.nq, w.gt);
    use quarry_engine::search::{SearchParams, Searcher};
    if a.collection.is_empty() {
        bail!("--interleave needs --collection (the collection quarryd serves from that index)");
    }
    if a.l == 0 {
        bail!("--interleave needs an explicit --L, so that both sides search with the same list size");
    }
    let index = open_index(dir, dim)?;
    let p = SearchParams::new(a.k as usize, a.l as usize, a.w as usize);
    // Created and used on this thread only (io_uring SINGLE_ISSUER rings).
    let mut s = Searcher::new(&index, quarry_engine::io::IoBackend::Auto, a.w as usize)?;
    s.set_wait_mode(a.wait);
    let ch = connect(a).await?;
    let mut client = pb::query_client::QueryClient::new(ch);
    let hist = || Histogram::<u64>::new_with_bounds(1, 120_000_000, 3);
    let (mut h_local, mut h_grpc, mut h_over, mut h_shard) = (hist()?, hist()?, hist()?, hist()?);
    let (mut h_server, mut h_transport) = (hist()?, hist()?);
    // (sum of read waits in µs, reads) per side: the mean wait per read.
    let (mut wait_l, mut wait_g) = ((0.0f64, 0u64), (0.0f64, 0u64));
    let (mut hits_l, mut judged_l, mut hits_g, mut judged_g) = (0u64, 0u64, 0u64, 0u64);
    let t0 = Instant::now();
    let warm = Duration::from_secs_f64(a.warmup);
    let total = warm + Duration::from_secs_f64(a.duration);
    let mut cpu0 = None;
    let block = Duration::from_millis(a.block_ms.max(1));
    let (mut ql, mut qg) = (0usize, nq / 2);
    let mut side = 0usize;
    while t0.elapsed() < total {
        let measuring = t0.elapsed() >= warm;
        if measuring {
            cpu0.get_or_insert_with(cpu_seconds);
        }
        let b0 = Instant::now();
        while b0.elapsed() < block {
            if side == 0 {
                let q = &queries[ql * dim..(ql + 1) * dim];
                let t = Instant::now();
                let (res, st) = s.search(q, &p)?;
                let us = t.elapsed().as_micros().max(1) as u64;
                if measuring {
                    h_local.saturating_record(us);
                    wait_l.0 += st.read_wait_micros;
                    wait_l.1 += u64::from(st.reads_waited);
                    let (h, j) = judge(gt, ql, a.k as usize, res.iter().map(|n| n.id));
                    hits_l += h;
                    judged_l += j;
                }
                ql = (ql + 1) % nq;
            } else {
                let req = pb::SearchRequest {
                    collection: a.collection.clone(),
                    vector: queries[qg * dim..(qg + 1) * dim].to_vec(),
                    params: Some(pb::SearchParams { k: a.k, l: a.l, w: a.w }),
                    with_payload: false,
                };
                let t = Instant::now();
                let resp = client.search(req).await.context("a gRPC search failed")?.into_inner();
                let us = t.elapsed().as_micros().max(1) as u64;
                if measuring {
                    let split = Split::of(us, resp.stats.as_ref());
                    h_grpc.saturating_record(us);
                    if let Some(st) = resp.stats.as_ref() {
                        wait_g.0 += st.read_wait_micros;
                        wait_g.1 += u64::from(st.reads_waited);
                    }
                    h_over.saturating_record(split.overhead);
                    h_shard.saturating_record(split.shard);
                    h_server.saturating_record(split.server_path);
                    h_transport.saturating_record(split.transport);
                    let (h, j) = judge(gt, qg, a.k as usize, resp.neighbors.iter().map(|n| n.id));
                    hits_g += h;
                    judged_g += j;
                }
                qg = (qg + 1) % nq;
            }
        }
        side = 1 - side;
    }
    let cpu = cpu_seconds() - cpu0.unwrap_or_else(cpu_seconds);
    let recall = |hits: u64, judged: u64| (judged > 0).then(|| hits as f64 / judged as f64);
    let per_read = |(sum, n): (f64, u64)| (n > 0).then(|| sum / n as f64);
    println!(
        "{}",
        serde_json::json!({
            "label": a.label, "mode": "interleaved", "stock_client": a.stock_client, "k": a.k, "L": a.l, "W": a.w,
            "wait": a.wait.to_string(), "block_ms": a.block_ms, "duration_s": a.duration,
            "in_process_queries": h_local.len(), "grpc_queries": h_grpc.len(),
            "in_process_p50_us": h_local.value_at_quantile(0.5),
            "in_process_p99_us": h_local.value_at_quantile(0.99),
            "grpc_p50_us": h_grpc.value_at_quantile(0.5),
            "grpc_p99_us": h_grpc.value_at_quantile(0.99),
            "added_p50_us": h_grpc.value_at_quantile(0.5) as i64 - h_local.value_at_quantile(0.5) as i64,
            "overhead_p50_us": h_over.value_at_quantile(0.5),
            "shard_p50_us": h_shard.value_at_quantile(0.5),
            "server_path_p50_us": h_server.value_at_quantile(0.5),
            "transport_p50_us": h_transport.value_at_quantile(0.5),
            "in_process_recall_at_k": recall(hits_l, judged_l),
            "grpc_recall_at_k": recall(hits_g, judged_g),
            "client_cpu_cores": cpu / a.duration,
            "in_process_read_wait_us": per_read(wait_l),
            "grpc_read_wait_us": per_read(wait_g),
        })
    );
    Ok(())
}

/// Connect to `--server` (an `http://` or `unix:` address).
async fn connect(a: &Args) -> Result<lean_grpc::Transport> {
    lean_grpc::Transport::connect(&a.server, a.stock_client).await
}

/// `--ping`: the round trip of the cheapest RPC, one at a time.
async fn ping(a: &Args) -> Result<()> {
    let ch = connect(a).await?;
    let mut client = tonic_health::pb::health_client::HealthClient::new(ch);
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let t0 = Instant::now();
    let warm = Duration::from_secs_f64(a.warmup);
    let total = warm + Duration::from_secs_f64(a.duration);
    let mut cpu0 = None;
    while t0.elapsed() < total {
        let t = Instant::now();
        client
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .context("the health check failed")?;
        if t0.elapsed() >= warm {
            cpu0.get_or_insert_with(cpu_seconds);
            hist.saturating_record(t.elapsed().as_micros().max(1) as u64);
        }
    }
    let cpu = cpu_seconds() - cpu0.unwrap_or_else(cpu_seconds);
    println!(
        "{}",
        serde_json::json!({
            "label": a.label, "mode": "ping", "stock_client": a.stock_client, "calls": hist.len(),
            "rtt_p10_us": hist.value_at_quantile(0.1),
            "rtt_p50_us": hist.value_at_quantile(0.5),
            "rtt_p99_us": hist.value_at_quantile(0.99),
            "client_cpu_cores": cpu / a.duration,
        })
    );
    Ok(())
}

/// The queries (row-major, `dim` each) and their ground truth, for the
/// modes that search in-process.
struct Workload<'a> {
    queries: &'a [f32],
    dim: usize,
    nq: usize,
    gt: Option<&'a (usize, Vec<u32>)>,
}

impl<'a> Workload<'a> {
    fn new(queries: &'a [f32], dim: usize, nq: usize, gt: Option<&'a (usize, Vec<u32>)>) -> Self {
        Workload { queries, dim, nq, gt }
    }
}

/// The engine index at `dir`, checked against the queries' dimension.
fn open_index(dir: &std::path::Path, dim: usize) -> Result<quarry_engine::index::DiskIndex> {
    let index = quarry_engine::index::DiskIndex::open(dir)?;
    if index.dim() != dim {
        bail!("queries are {dim}-d, the index is {}-d", index.dim());
    }
    Ok(index)
}

fn in_process(a: &Args, dir: &std::path::Path, w: &Workload<'_>) -> Result<()> {
    let (queries, dim, nq, gt) = (w.queries, w.dim, w.nq, w.gt);
    use quarry_engine::search::{search_parallel, SearchParams, Searcher};
    let index = open_index(dir, dim)?;
    let l = if a.l == 0 { 64.max(a.k as usize) } else { a.l as usize };
    let p = SearchParams::new(a.k as usize, l, a.w as usize);
    let io = quarry_engine::io::IoBackend::Auto;
    // Single-query latency, one query in flight (what one gRPC client sees
    // minus the network).
    let mut s = Searcher::new(&index, io, a.w as usize)?;
    s.set_wait_mode(a.wait);
    // Timed like a gRPC run: `warmup` seconds unrecorded, then `duration`
    // seconds, cycling through the queries.
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let (mut hits, mut judged) = (0u64, 0u64);
    let t_start = Instant::now();
    let warm = Duration::from_secs_f64(a.warmup);
    let total = warm + Duration::from_secs_f64(a.duration);
    let mut qi = 0usize;
    while t_start.elapsed() < total {
        let q = &queries[qi * dim..(qi + 1) * dim];
        let t = Instant::now();
        let (res, _) = s.search(q, &p)?;
        if t_start.elapsed() >= warm {
            hist.record(t.elapsed().as_micros().max(1) as u64)?;
            let (h, j) = judge(gt, qi, a.k as usize, res.iter().map(|n| n.id));
            hits += h;
            judged += j;
        }
        qi = (qi + 1) % nq;
    }
    drop(s);
    // Saturation (unless --latency-only): every query on `threads` threads,
    // passes until `duration` has elapsed.
    let (threads, inflight, qps, cpu_cores) = if a.latency_only {
        (1, 1, hist.len() as f64 / a.duration, None)
    } else {
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        let mut done = 0usize;
        while t0.elapsed().as_secs_f64() < a.duration {
            let r = search_parallel(&index, queries, &p, a.threads, a.inflight, io, a.wait)?;
            done += r.len();
        }
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        (a.threads, a.inflight, done as f64 / wall, Some(cpu / wall))
    };
    println!(
        "{}",
        serde_json::json!({
            "label": a.label, "mode": "in-process", "threads": threads, "inflight": inflight, "wait": a.wait.to_string(),
            "k": a.k, "L": l, "W": a.w, "queries": nq,
            "qps": qps,
            "lat_p50_us": hist.value_at_quantile(0.5),
            "lat_p99_us": hist.value_at_quantile(0.99),
            "lat_p999_us": hist.value_at_quantile(0.999),
            "lat_mean_us": hist.mean(),
            "recall_at_k": if judged > 0 { Some(hits as f64 / judged as f64) } else { None },
            "cpu_cores": cpu_cores,
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_divides_latency_by_the_servers_timings() {
        let stats = pb::QueryStats {
            shard_micros: 700.0,
            handler_micros: 750.0,
            queue_micros: 10.0,
            ..Default::default()
        };
        let s = Split::of(1000, Some(&stats));
        assert_eq!((s.overhead, s.shard, s.server_path, s.transport), (300, 700, 50, 250));
        // A server that sends no timings: everything counts as transport,
        // and nothing goes negative.
        let s = Split::of(1000, None);
        assert_eq!((s.overhead, s.shard, s.server_path, s.transport), (1000, 1, 1, 1000));
    }
}
