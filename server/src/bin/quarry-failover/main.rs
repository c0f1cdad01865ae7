//! `quarry-failover`: two real quarryd processes in a pair, under
//! concurrent writes and searches, failed over again and again; every
//! acknowledged write is checked on the new primary after each round.
//!
//! ```text
//! quarry-failover --quarryd PATH --dir DIR [--rounds N] [--fault kill|stop|switchover]
//!                 [--primary-down] [--writers W] [--ids N] [--lease-ms L] [--seed S]
//! ```
//! Faults: `kill` (kill -9 the primary, promote the standby, restart the
//! old primary, which learns it was failed over and follows), `partition`
//! (the nodes reach each other only through proxies of this harness;
//! cut both ways or only the standby's stream, promote the standby by
//! lease while clients still reach the old primary, check it accepts no
//! write, heal), `stop`
//! (SIGSTOP the primary past its lease, promote the standby by lease,
//! SIGCONT the old one and check it accepts no write), `switchover` (the
//! planned handover under load). Without `--primary-down` a kill's
//! promotion waits for the old primary's lease.
//!
//! `--tls-dir DIR` runs the replication link over mutual TLS with the
//! files `ops/pair-certs.sh DIR node0=IP:127.0.0.1 node1=IP:127.0.0.1
//! harness=IP:127.0.0.1` makes (the harness dials with `harness.crt`).
//!
//! `--measure SECS --mode sync|async|single [--no-search]` runs no fault:
//! the writers and a searcher on the standby for SECS, then prints write throughput and
//! latency, the standby's search latency and the standby's lag (the
//! replication overhead; `single` is one node without replication).
//!
//! Prints one JSON line: rounds, acknowledged writes, ids checked, lost
//! (must be 0), writes accepted by a fenced node (must be 0), the time
//! from the fault to the first write accepted by the new primary, the
//! longest write pause, refusals and outcome-unknown answers. Exits 1 on
//! any loss or violation.

mod node;
mod proxy;

use anyhow::{bail, Context, Result};
use node::{peer, public, repl, req, write_conf, Node, TLS};
use proxy::Proxy;
use quarry_proto::replication::v1 as rpb;
use quarry_proto::v1 as pb;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DIM: usize = 16;

struct Args {
    quarryd: PathBuf,
    dir: PathBuf,
    rounds: usize,
    fault: String,
    primary_down: bool,
    writers: usize,
    ids: u64,
    lease_ms: u64,
    seed: u64,
    base_port: u16,
    measure: u64,
    mode: String,
    no_search: bool,
    tls_dir: Option<PathBuf>,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        quarryd: PathBuf::new(),
        dir: PathBuf::new(),
        rounds: 5,
        fault: "kill".into(),
        primary_down: false,
        writers: 4,
        ids: 2000,
        lease_ms: 1000,
        seed: 1,
        base_port: 17800,
        measure: 0,
        mode: "sync".into(),
        no_search: false,
        tls_dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--quarryd" => a.quarryd = v()?.into(),
            "--dir" => a.dir = v()?.into(),
            "--rounds" => a.rounds = v()?.parse()?,
            "--fault" => a.fault = v()?,
            "--primary-down" => a.primary_down = true,
            "--writers" => a.writers = v()?.parse()?,
            "--ids" => a.ids = v()?.parse()?,
            "--lease-ms" => a.lease_ms = v()?.parse()?,
            "--seed" => a.seed = v()?.parse()?,
            "--base-port" => a.base_port = v()?.parse()?,
            "--measure" => a.measure = v()?.parse()?,
            "--mode" => a.mode = v()?,
            "--no-search" => a.no_search = true,
            "--tls-dir" => a.tls_dir = Some(v()?.into()),
            "-h" | "--help" => {
                println!("see the module documentation: quarry-failover --quarryd PATH --dir DIR [--rounds N] [--fault kill|stop|switchover] [--primary-down] [--writers W] [--ids N] [--lease-ms L] [--seed S] [--base-port P]");
                std::process::exit(0);
            }
            _ => bail!("unknown argument {k}"),
        }
    }
    if a.quarryd.as_os_str().is_empty() || a.dir.as_os_str().is_empty() {
        bail!("--quarryd and --dir are required");
    }
    if !["sync", "async", "single"].contains(&a.mode.as_str()) {
        bail!("--mode must be sync, async or single");
    }
    if !["kill", "stop", "switchover", "partition"].contains(&a.fault.as_str()) {
        bail!("--fault must be kill, stop, switchover or partition");
    }
    Ok(a)
}

fn vector(seq: u64) -> Vec<f32> {
    (0..DIM).map(|d| ((seq * 31 + d as u64 * 7) % 97) as f32).collect()
}

#[derive(Default)]
struct Book {
    /// Per id, the highest sequence number acknowledged.
    acked: HashMap<u64, u64>,
    /// Every sequence number attempted, with its id.
    attempted: HashMap<u64, u64>,
    acked_writes: u64,
    refused: u64,
    unknown: u64,
}

struct Shared {
    nodes: Vec<String>,
    primary: AtomicUsize,
    stop: AtomicBool,
    seq: AtomicU64,
    book: Mutex<Book>,
    /// The fault's time, and the first write accepted after it.
    fault_at: Mutex<Option<Instant>>,
    first_ok: Mutex<Option<Instant>>,
    /// The node whose first accepted write ends the fault's clock.
    awaited: AtomicUsize,
    last_ok: Mutex<Instant>,
    longest_gap: Mutex<Duration>,
    searches_ok: AtomicU64,
    searches_failed: AtomicU64,
    /// Latency of acknowledged writes and of searches, µs.
    write_us: Mutex<hdrhistogram::Histogram<u64>>,
    search_us: Mutex<hdrhistogram::Histogram<u64>>,
    /// The node the searcher asks (usize::MAX: both in turn; usize::MAX -
    /// 1: none, no searcher).
    search_node: AtomicUsize,
}

/// Writer `w` of `n` writes ids `w, w + n, w + 2n, …` below `ids`, one
/// at a time, so an id's acknowledged writes are in sequence order.
async fn writer(sh: Arc<Shared>, seed: u64, w: u64, n: u64, ids: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut chans: HashMap<usize, tonic::transport::Channel> = HashMap::new();
    while !sh.stop.load(Ordering::SeqCst) {
        let p = sh.primary.load(Ordering::SeqCst);
        let ch = match chans.get(&p) {
            Some(c) => c.clone(),
            None => match public(&sh.nodes[p]).await {
                Ok(c) => {
                    chans.insert(p, c.clone());
                    c
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let id = rng.random_range(0..ids.div_ceil(n)) * n + w;
        let seq = sh.seq.fetch_add(1, Ordering::SeqCst) + 1;
        sh.book.lock().expect("lock").attempted.insert(seq, id);
        let mut r = tonic::Request::new(pb::UpsertRequest {
            collection: "c".into(),
            points: vec![pb::Point {
                id,
                vector: vector(seq),
                payload: seq.to_le_bytes().to_vec(),
            }],
        });
        r.set_timeout(Duration::from_secs(3));
        let t = Instant::now();
        let got = pb::write_client::WriteClient::new(ch).upsert(r).await;
        let now = Instant::now();
        match got {
            Ok(_) => {
                let _ = sh.write_us.lock().expect("lock").record((now - t).as_micros() as u64);
                record_ok(&sh, p, id, seq, now)
            }
            Err(s) => {
                let unknown = s.metadata().get("quarry-outcome").is_some();
                {
                    let mut b = sh.book.lock().expect("lock");
                    if unknown {
                        b.unknown += 1;
                    } else {
                        b.refused += 1;
                    }
                }
                if s.code() == tonic::Code::Unavailable && s.message().contains("transport") {
                    chans.remove(&p);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn record_ok(sh: &Shared, node: usize, id: u64, seq: u64, now: Instant) {
    let mut b = sh.book.lock().expect("lock");
    let e = b.acked.entry(id).or_insert(0);
    *e = (*e).max(seq);
    b.acked_writes += 1;
    drop(b);
    let gap = {
        let mut last = sh.last_ok.lock().expect("lock");
        let gap = now.saturating_duration_since(*last);
        *last = now;
        gap
    };
    let mut g = sh.longest_gap.lock().expect("lock");
    *g = (*g).max(gap);
    drop(g);
    let mut f = sh.first_ok.lock().expect("lock");
    if sh.fault_at.lock().expect("lock").is_some() && f.is_none() && node == sh.awaited.load(Ordering::SeqCst) {
        *f = Some(now);
    }
}

async fn searcher(sh: Arc<Shared>) {
    let mut chans: HashMap<usize, tonic::transport::Channel> = HashMap::new();
    let mut n = 0u64;
    while !sh.stop.load(Ordering::SeqCst) {
        n += 1;
        let i = match sh.search_node.load(Ordering::SeqCst) {
            usize::MAX => (n % 2) as usize,
            i => i,
        };
        if let std::collections::hash_map::Entry::Vacant(slot) = chans.entry(i) {
            if let Ok(c) = public(&sh.nodes[i]).await {
                slot.insert(c);
            }
        }
        let Some(ch) = chans.get(&i).cloned() else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let t = Instant::now();
        let r = pb::query_client::QueryClient::new(ch)
            .search(pb::SearchRequest {
                collection: "c".into(),
                vector: vector(n),
                params: None,
                with_payload: false,
            })
            .await;
        match r {
            Ok(_) => {
                let _ = sh
                    .search_us
                    .lock()
                    .expect("lock")
                    .record(t.elapsed().as_micros() as u64);
                sh.searches_ok.fetch_add(1, Ordering::Relaxed)
            }
            Err(_) => {
                chans.remove(&i);
                sh.searches_failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        if sh.search_node.load(Ordering::SeqCst) == usize::MAX {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Every acknowledged write, read back from node `p`: (ids checked, lost).
async fn verify(sh: &Shared, p: usize) -> Result<(usize, Vec<String>)> {
    // Acknowledged before the reads; attempted (by any write the reads
    // may see) after them.
    let acked = sh.book.lock().expect("lock").acked.clone();
    let ch = public(&sh.nodes[p]).await?;
    let mut q = pb::query_client::QueryClient::new(ch);
    let ids: Vec<u64> = acked.keys().copied().collect();
    let mut lost = Vec::new();
    let mut got = Vec::new();
    for batch in ids.chunks(500) {
        let r = q
            .get(pb::GetRequest {
                collection: "c".into(),
                ids: batch.to_vec(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("Get on node {p}: {s}"))?
            .into_inner();
        for id in &r.missing_ids {
            lost.push(format!("id {id}: missing (acked seq {})", acked[id]));
        }
        let recs = r.records;
        got.extend(recs);
    }
    let attempted = sh.book.lock().expect("lock").attempted.clone();
    {
        for r in got {
            let seq = u64::from_le_bytes(r.payload.get(..8).and_then(|b| b.try_into().ok()).unwrap_or([0; 8]));
            let want = acked[&r.id];
            if seq < want || attempted.get(&seq) != Some(&r.id) || r.vector != vector(seq) {
                lost.push(format!("id {}: holds seq {seq}, acked seq {want}", r.id));
            }
        }
    }
    Ok((ids.len(), lost))
}

async fn wait_in_sync(p: &str, s: &str, within: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if let (Some(a), Some(b)) = (peer(p).await, peer(s).await) {
            // An async standby is never eligible (it may lack writes).
            if a.role == "primary" && a.connected && b.role == "standby" && (b.eligible || b.mode == "async") {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// `failover` on the standby at `addr`: the RPC's answer (`Err` outside:
/// the standby could not be reached).
async fn promote(addr: &str, primary_down: bool) -> Result<Result<rpb::PromoteReply, tonic::Status>> {
    let mut c = repl(addr).await?;
    Ok(c.promote(req(rpb::PromoteRequest {
        primary_down,
        accept_loss: false,
        degraded: false,
    }))
    .await
    .map(|r| r.into_inner()))
}

/// 20 writes to the old primary after its standby was promoted: how many
/// it accepted (must be 0).
async fn probe(addr: &str, round: usize) -> Result<u64> {
    let ch = public(addr).await?;
    let mut w = pb::write_client::WriteClient::new(ch);
    let mut accepted = 0;
    for k in 0..20u64 {
        let mut r = tonic::Request::new(pb::UpsertRequest {
            collection: "c".into(),
            points: vec![pb::Point {
                id: 1 << 40 | (round as u64) << 8 | k,
                vector: vector(k),
                payload: vec![],
            }],
        });
        r.set_timeout(Duration::from_millis(500));
        if w.upsert(r).await.is_ok() {
            accepted += 1;
        }
    }
    Ok(accepted)
}

async fn public_ready(addr: &str) -> Result<()> {
    let t = Instant::now();
    while public(addr).await.is_err() {
        if t.elapsed() > Duration::from_secs(30) {
            bail!("{addr} did not listen within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// No fault: writers and a searcher for `--measure` seconds; the
/// standby's lag sampled every 50 ms.
async fn measure(a: &Args, sh: &Arc<Shared>, nodes: &[Node], tasks: Vec<tokio::task::JoinHandle<()>>) -> Result<()> {
    if nodes.len() > 1 {
        wait_in_sync(&nodes[0].repl, &nodes[1].repl, Duration::from_secs(30)).await;
    }
    sh.write_us.lock().expect("lock").reset();
    sh.search_us.lock().expect("lock").reset();
    let acked0 = sh.book.lock().expect("lock").acked_writes;
    let t = Instant::now();
    let (mut lag_max, mut lag_sum, mut lag_n, mut lag_s_max) = (0u64, 0u64, 0u64, 0f64);
    while t.elapsed() < Duration::from_secs(a.measure) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if nodes.len() > 1 {
            if let Some(p) = peer(&nodes[0].repl).await {
                for c in &p.collections {
                    let l = c.last_lsn.saturating_sub(c.peer_lsn);
                    lag_max = lag_max.max(l);
                    lag_sum += l;
                    lag_n += 1;
                    lag_s_max = lag_s_max.max(c.lag_seconds);
                }
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let acked = sh.book.lock().expect("lock").acked_writes - acked0;
    sh.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    let w = sh.write_us.lock().expect("lock").clone();
    let q = sh.search_us.lock().expect("lock").clone();
    let b = sh.book.lock().expect("lock");
    println!(
        "{}",
        serde_json::json!({
            "mode": a.mode, "writers": a.writers, "seconds": secs,
            "writes_per_s": acked as f64 / secs,
            "write_p50_us": w.value_at_quantile(0.5), "write_p99_us": w.value_at_quantile(0.99),
            "write_max_us": w.max(),
            "search_node": if nodes.len() > 1 { "standby" } else { "single" },
            "searches": q.len(), "search_p50_us": q.value_at_quantile(0.5), "search_p99_us": q.value_at_quantile(0.99),
            "lag_records_max": lag_max, "lag_records_mean": if lag_n > 0 { lag_sum as f64 / lag_n as f64 } else { 0.0 },
            "lag_seconds_max": lag_s_max,
            "refused": b.refused, "outcome_unknown": b.unknown,
        })
    );
    Ok(())
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let a = parse()?;
    std::fs::create_dir_all(&a.dir)?;
    if let Some(t) = &a.tls_dir {
        let (cert, key) = (t.join("harness.crt"), t.join("harness.key"));
        let tls = quarry_proto::tls::client_only(&t.join("ca.crt"), Some((&cert, &key)), None)
            .map_err(|e| anyhow::anyhow!(e))?;
        let _ = TLS.set(tls);
    }
    let (p0, p1) = (a.base_port, a.base_port + 10);
    // With --fault partition each node dials its peer through a proxy:
    // node 0 through base+5, node 1 through base+15.
    let proxied = a.fault == "partition";
    let proxies = if proxied {
        vec![Proxy::start(p0 + 5, p1 + 2).await?, Proxy::start(p1 + 5, p0 + 2).await?]
    } else {
        Vec::new()
    };
    let (to1, to0) = if proxied { (p0 + 5, p1 + 5) } else { (p1 + 2, p0 + 2) };
    let mut nodes = vec![write_conf(
        &a.dir,
        0,
        (p0, to1),
        a.lease_ms,
        &a.mode,
        a.tls_dir.as_deref(),
    )?];
    if a.mode != "single" {
        nodes.push(write_conf(
            &a.dir,
            1,
            (p1, to0),
            a.lease_ms,
            &a.mode,
            a.tls_dir.as_deref(),
        )?);
    }
    for n in &mut nodes {
        n.start(&a.quarryd)?;
    }
    let t_start = Instant::now();
    if a.mode == "single" {
        public_ready(&nodes[0].public).await?;
    } else if !wait_in_sync(&nodes[0].repl, &nodes[1].repl, Duration::from_secs(30)).await {
        for n in &mut nodes {
            n.kill();
        }
        bail!("the pair did not form within 30 s (logs in {})", a.dir.display());
    }
    let ch = public(&nodes[0].public).await?;
    pb::collections_client::CollectionsClient::new(ch)
        .create_collection(pb::CreateCollectionRequest {
            name: "c".into(),
            dim: DIM as u32,
            metric: pb::Metric::L2 as i32,
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("creating the collection: {:?}: {}", s.code(), s.message()))?;
    let sh = Arc::new(Shared {
        nodes: nodes.iter().map(|n| n.public.clone()).collect(),
        primary: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        seq: AtomicU64::new(0),
        book: Mutex::new(Book::default()),
        fault_at: Mutex::new(None),
        first_ok: Mutex::new(None),
        awaited: AtomicUsize::new(usize::MAX),
        last_ok: Mutex::new(Instant::now()),
        longest_gap: Mutex::new(Duration::ZERO),
        searches_ok: AtomicU64::new(0),
        searches_failed: AtomicU64::new(0),
        write_us: Mutex::new(hdrhistogram::Histogram::new(3)?),
        search_us: Mutex::new(hdrhistogram::Histogram::new(3)?),
        search_node: AtomicUsize::new(if a.measure > 0 { nodes.len() - 1 } else { usize::MAX }),
    });
    let mut tasks = Vec::new();
    for w in 0..a.writers {
        tasks.push(tokio::spawn(writer(
            sh.clone(),
            a.seed * 1000 + w as u64,
            w as u64,
            a.writers as u64,
            a.ids,
        )));
    }
    if !a.no_search {
        tasks.push(tokio::spawn(searcher(sh.clone())));
    }
    if a.measure > 0 {
        return measure(&a, &sh, &nodes, tasks).await;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(a.seed);
    let mut to_first_write = Vec::new();
    let mut pauses = Vec::new();
    let mut lost_total = Vec::new();
    let mut fenced_accepts = 0u64;
    let mut partitions_both = 0usize;
    let mut checked = 0usize;
    let mut rounds = 0;
    let mut problem = None;
    // Wait for the standby to be in sync with the collection, then go.
    wait_in_sync(&nodes[0].repl, &nodes[1].repl, Duration::from_secs(30)).await;
    for round in 0..a.rounds {
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..2000))).await;
        let p = sh.primary.load(Ordering::SeqCst);
        let s = 1 - p;
        *sh.first_ok.lock().expect("lock") = None;
        sh.awaited.store(s, Ordering::SeqCst);
        *sh.longest_gap.lock().expect("lock") = Duration::ZERO;
        *sh.last_ok.lock().expect("lock") = Instant::now();
        let t0 = Instant::now();
        *sh.fault_at.lock().expect("lock") = Some(t0);
        match a.fault.as_str() {
            "kill" | "stop" => {
                if a.fault == "kill" {
                    nodes[p].kill();
                } else {
                    nodes[p].signal("STOP");
                }
                if let Err(e) = promote(&nodes[s].repl, a.primary_down && a.fault == "kill").await? {
                    problem = Some(format!("round {round}: the promotion failed: {}", e.message()));
                    break;
                }
                sh.primary.store(s, Ordering::SeqCst);
                if a.fault == "kill" {
                    nodes[p].start(&a.quarryd)?;
                } else {
                    nodes[p].signal("CONT");
                    fenced_accepts += probe(&nodes[p].public, round).await?;
                }
            }
            "partition" => {
                // Both ways, or only the standby's stream to the primary
                // (the primary still reaches the standby's listener).
                let both = rng.random_bool(0.5);
                proxies[s].cut(true);
                if both {
                    proxies[p].cut(true);
                }
                if let Err(e) = promote(&nodes[s].repl, false).await? {
                    problem = Some(format!("round {round}: the promotion failed: {}", e.message()));
                    break;
                }
                sh.primary.store(s, Ordering::SeqCst);
                // Clients still reach the old primary: it must take nothing.
                fenced_accepts += probe(&nodes[p].public, round).await?;
                for x in &proxies {
                    x.cut(false);
                }
                partitions_both += both as usize;
            }
            _ => {
                let mut c = repl(&nodes[p].repl).await?;
                match c.switchover(req(rpb::SwitchoverRequest { timeout_ms: 10_000 })).await {
                    Ok(_) => sh.primary.store(s, Ordering::SeqCst),
                    Err(e) => {
                        problem = Some(format!("round {round}: the switchover failed: {}", e.message()));
                        break;
                    }
                }
            }
        }
        // The first write the new primary accepts.
        let tw = Instant::now();
        loop {
            if let Some(f) = *sh.first_ok.lock().expect("lock") {
                to_first_write.push((f - t0).as_secs_f64() * 1e3);
                break;
            }
            if tw.elapsed() > Duration::from_secs(60) {
                problem = Some(format!("round {round}: no write accepted within 60 s of the fault"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if problem.is_some() {
            break;
        }
        if !wait_in_sync(&nodes[s].repl, &nodes[p].repl, Duration::from_secs(60)).await {
            problem = Some(format!(
                "round {round}: the old primary did not rejoin in sync within 60 s"
            ));
            break;
        }
        pauses.push(sh.longest_gap.lock().expect("lock").as_secs_f64() * 1e3);
        let (n, lost) = verify(&sh, s).await?;
        checked = n;
        lost_total.extend(lost);
        rounds += 1;
        *sh.fault_at.lock().expect("lock") = None;
    }
    sh.stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = t.await;
    }
    // A last check once the writers stopped.
    let p = sh.primary.load(Ordering::SeqCst);
    if problem.is_none() {
        let (n, lost) = verify(&sh, p).await?;
        checked = n;
        lost_total.extend(lost);
    }
    for n in &mut nodes {
        n.kill();
    }
    let b = sh.book.lock().expect("lock");
    let out = serde_json::json!({
        "fault": a.fault, "primary_down": a.primary_down, "lease_ms": a.lease_ms,
        "rounds_asked": a.rounds, "failovers": rounds,
        "acked_writes": b.acked_writes, "ids_checked": checked,
        "lost": lost_total.len(), "lost_examples": lost_total.iter().take(5).collect::<Vec<_>>(),
        "fenced_node_accepted": fenced_accepts,
        "partitions_both_ways": partitions_both,
        "refused": b.refused, "outcome_unknown": b.unknown,
        "fault_to_first_write_ms_p50": pct(&mut to_first_write.clone(), 0.5),
        "fault_to_first_write_ms_max": pct(&mut to_first_write.clone(), 1.0),
        "longest_write_pause_ms_max": pct(&mut pauses.clone(), 1.0),
        "searches_ok": sh.searches_ok.load(Ordering::Relaxed),
        "searches_failed": sh.searches_failed.load(Ordering::Relaxed),
        "seconds": t_start.elapsed().as_secs_f64(),
        "problem": problem,
    });
    println!("{out}");
    if !lost_total.is_empty() || fenced_accepts > 0 || problem.is_some() {
        std::process::exit(1);
    }
    Ok(())
}
