//! `quarryctl search`: run queries against a disk index and report recall,
//! latency (one query in flight), throughput (all threads), IOs and RAM.
//!
//! Owns: the measurement protocol. For each L it makes two passes over the
//! queries: a latency pass on one pinned thread with one query in flight,
//! and a throughput pass on `--threads` pinned threads with `--inflight`
//! queries interleaved per thread. IOs are counted twice: by the engine
//! (every 4 KiB read it issues) and by the kernel (`/proc/self/io`
//! read_bytes / 4096 around the latency pass), which is how the reference
//! systems are measured.

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use quarry_engine::dataset::{read_ibin, VectorFile};
use quarry_engine::io::IoBackend;
use quarry_engine::runtime;
use quarry_engine::search::{search_parallel, SearchParams, Searcher, WaitMode};
use quarry_engine::DiskIndex;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `quarryctl search`.
#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// Index directory.
    #[arg(long)]
    pub index: PathBuf,
    /// Query vectors.
    #[arg(long)]
    pub queries: PathBuf,
    /// Ground truth (.ibin, ids = row numbers of the base file).
    #[arg(long)]
    pub gt: Option<PathBuf>,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Search list sizes to sweep, comma separated.
    #[arg(long = "L", visible_alias = "l", value_delimiter = ',', default_values_t = vec![20, 30, 50, 100])]
    pub l: Vec<usize>,
    /// Reads in flight per query.
    #[arg(long = "W", visible_alias = "w", default_value_t = 4)]
    pub w: usize,
    /// Threads for the throughput pass (each pinned, with its own ring).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Queries interleaved per thread in the throughput pass.
    #[arg(long, default_value_t = 8)]
    pub inflight: usize,
    /// Hot-node cache size in nodes.
    #[arg(long, default_value_t = 0)]
    pub cache_nodes: usize,
    /// Entry from the medoid only (no navigation tier).
    #[arg(long)]
    pub no_nav: bool,
    /// Entry points taken from the navigation tier.
    #[arg(long, default_value_t = 4)]
    pub nav_entries: usize,
    /// Navigation tier search beam.
    #[arg(long, default_value_t = 32)]
    pub nav_ef: usize,
    /// Re-score this many top candidates with f32 vectors from the rerank
    /// file (index built with --rerank-file); 0 = stored vectors only.
    #[arg(long, default_value_t = 0)]
    pub rerank: usize,
    /// Rank read nodes by their exact distance in the candidate list.
    #[arg(long)]
    pub refine_exact: bool,
    /// Do not expand the other records of a sector read for one node
    /// (measures what sector-mate expansion buys).
    #[arg(long)]
    pub no_sector_mates: bool,
    /// Write one CSV line per query of the latency pass (L, query, micros,
    /// ios, hops, mate_expansions, recall, budget_cut) to this file.
    #[arg(long)]
    pub per_query: Option<PathBuf>,
    /// Re-issue a read still outstanding after this many µs (0 = never).
    #[arg(long, default_value_t = 0)]
    pub hedge_us: u32,
    /// Soft time budget per query in µs (0 = none): a query still waiting
    /// for reads this long after it started answers from what it has
    /// scored exactly (see `budget_cut_fraction`).
    #[arg(long, default_value_t = 0)]
    pub budget_us: u32,
    /// Score the navigation tier with its f16 vectors instead of the
    /// query's PQ table.
    #[arg(long)]
    pub nav_f16: bool,
    /// Reader: auto (io_uring, else pread), uring, pread.
    #[arg(long, default_value = "auto")]
    pub io: IoBackend,
    /// How a searching thread waits for reads: poll (busy-poll the
    /// completion queue; lowest latency, one busy core per thread) or block.
    #[arg(long, default_value = "poll")]
    pub wait: WaitMode,
    /// Use at most this many queries.
    #[arg(long)]
    pub max_queries: Option<usize>,
    /// Skip the throughput pass.
    #[arg(long)]
    pub no_qps: bool,
    /// Print one JSON object per L (else a table).
    #[arg(long)]
    pub json: bool,
}

/// Runs `quarryctl search`.
pub fn run(a: SearchArgs) -> Result<()> {
    let t_open = Instant::now();
    let mut index = DiskIndex::open(&a.index).with_context(|| format!("opening {}", a.index.display()))?;
    let open_ms = t_open.elapsed().as_secs_f64() * 1e3;
    let cached = index.warm_cache(a.cache_nodes, a.io)?;
    let qf = VectorFile::open(&a.queries)?;
    if qf.dim() != index.dim() {
        bail!(
            "{} has dimension {} but the index has dimension {}",
            a.queries.display(),
            qf.dim(),
            index.dim()
        );
    }
    qf.check_finite()?;
    let nq = qf.len().min(a.max_queries.unwrap_or(usize::MAX));
    let queries = qf.read_rows_f32(0, nq);
    let dim = index.dim();
    let gt = match &a.gt {
        Some(p) => {
            let (gn, gk, ids) = read_ibin(p)?;
            if gn < nq || gk < a.k {
                bail!(
                    "{} has {gn} rows of {gk} ids; need at least {nq} rows of {} ids",
                    p.display(),
                    a.k
                );
            }
            Some((gk, ids))
        }
        None => None,
    };
    let ram = index.ram();
    let mut probe = Searcher::new(&index, a.io, 4)?;
    let reader = probe.reader_description();
    eprintln!(
        "index {}: {} x {}, {}, opened in {open_ms:.1} ms; reader {reader}; cache {cached} nodes; simd {}",
        a.index.display(),
        index.len(),
        dim,
        index.metric(),
        quarry_engine::kernels::active().path
    );
    // Warm-up: touch codes, tables and the reader.
    let warm = SearchParams::new(a.k, a.l[0].max(a.k), a.w);
    for q in queries.chunks_exact(dim).take(50) {
        probe.search(q, &warm)?;
    }
    drop(probe);
    if !a.json {
        println!(
            "{:>5} {:>3} {:>8} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9}",
            "L", "W", "recall", "qps", "mean_us", "p50_us", "p99_us", "ios", "hops", "proc_ios"
        );
    }
    let mut per_query = match &a.per_query {
        Some(p) => {
            let mut f =
                std::io::BufWriter::new(std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?);
            writeln!(f, "L,query,micros,ios,hops,mate_expansions,recall,budget_cut")?;
            Some(f)
        }
        None => None,
    };
    for &l in &a.l {
        let mut p = SearchParams::new(a.k, l.max(a.k), a.w);
        p.use_nav = !a.no_nav;
        p.nav_entries = a.nav_entries;
        p.nav_ef = a.nav_ef;
        p.refine_exact = a.refine_exact;
        p.sector_mates = !a.no_sector_mates;
        p.nav_pq = !a.nav_f16;
        p.hedge_us = a.hedge_us;
        p.budget_us = a.budget_us;
        p.rerank = if a.rerank > 0 { a.rerank.clamp(a.k, p.l) } else { 0 };
        // Latency pass: one pinned thread, one query in flight.
        runtime::pin_to_core(0);
        let mut s = Searcher::new(&index, a.io, p.reader_depth(1))?;
        s.set_wait_mode(a.wait);
        let mut hist = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)?;
        let (mut ios, mut hops, mut hits, mut pqd, mut lat_sum) = (0u64, 0u64, 0u64, 0u64, 0f64);
        let (mut mates, mut hedged, mut cut) = (0u64, 0u64, 0u64);
        let mut found = 0usize;
        let io_before = runtime::io_read_bytes();
        let cpu_before = runtime::cpu_seconds();
        for (i, q) in queries.chunks_exact(dim).enumerate() {
            let (res, st) = s.search(q, &p).with_context(|| format!("query {i}"))?;
            hist.record((st.micros * 1000.0).max(1.0) as u64)?;
            lat_sum += st.micros;
            ios += st.ios as u64;
            hops += st.hops as u64;
            mates += st.mate_expansions as u64;
            hedged += st.hedged_reads as u64;
            cut += st.budget_cut as u64;
            hits += st.cache_hits as u64;
            pqd += st.pq_distances as u64;
            let mut hit = 0;
            if let Some((gk, ids)) = &gt {
                let truth = &ids[i * gk..i * gk + a.k];
                hit = res.iter().filter(|r| truth.contains(&(r.id as u32))).count();
                found += hit;
            }
            if let Some(f) = per_query.as_mut() {
                writeln!(
                    f,
                    "{l},{i},{:.1},{},{},{},{},{}",
                    st.micros,
                    st.ios,
                    st.hops,
                    st.mate_expansions,
                    hit as f64 / a.k as f64,
                    st.budget_cut
                )?;
            }
        }
        let proc_ios = (runtime::io_read_bytes() - io_before) as f64 / 4096.0 / nq as f64;
        // With --wait block this is the work per query (user + kernel, the
        // reads' submission and completion included); polling spins, so it
        // is then about the latency itself.
        let cpu_us = (runtime::cpu_seconds() - cpu_before) * 1e6 / nq as f64;
        drop(s);
        // Throughput pass.
        let qps = if a.no_qps {
            None
        } else {
            let t = Instant::now();
            let res = search_parallel(&index, &queries, &p, a.threads, a.inflight, a.io, a.wait)?;
            let secs = t.elapsed().as_secs_f64();
            if let Some(e) = res.iter().find_map(|r| r.as_ref().err()) {
                bail!("throughput pass failed: {e}");
            }
            Some(nq as f64 / secs)
        };
        let nqf = nq as f64;
        let row = serde_json::json!({
            "L": l, "W": a.w, "k": a.k,
            "recall_at_k": gt.as_ref().map(|_| found as f64 / (nqf * a.k as f64)),
            "qps": qps,
            "threads": a.threads, "inflight": a.inflight, "wait": a.wait.to_string(),
            "lat_mean_us": lat_sum / nqf,
            "lat_p50_us": hist.value_at_quantile(0.50) as f64 / 1000.0,
            "lat_p99_us": hist.value_at_quantile(0.99) as f64 / 1000.0,
            "lat_p999_us": hist.value_at_quantile(0.999) as f64 / 1000.0,
            "mean_ios": ios as f64 / nqf,
            "proc_ios_per_query": proc_ios,
            "lat_cpu_us_per_query": cpu_us,
            "mean_hops": hops as f64 / nqf,
            "mean_mate_expansions": mates as f64 / nqf,
            "sector_mates": p.sector_mates,
            "nav_pq": p.nav_pq,
            "hedge_us": p.hedge_us,
            "mean_hedged_reads": hedged as f64 / nqf,
            "budget_us": p.budget_us,
            "budget_cut_fraction": cut as f64 / nqf,
            "mean_cache_hits": hits as f64 / nqf,
            "mean_pq_distances": pqd as f64 / nqf,
            "nav": !a.no_nav,
            "rerank": p.rerank,
            "cache_nodes": cached,
            "rss_bytes": runtime::rss_bytes(),
            "ram_pq_codes_bytes": ram.pq_codes,
            "ram_nav_bytes": ram.nav,
            "ram_cache_bytes": index.cache().ram_bytes(),
            "reader": reader,
            "queries": nq,
        });
        if a.json {
            println!("{row}");
        } else {
            println!(
                "{:>5} {:>3} {:>8.4} {:>9.0} {:>9.1} {:>9.1} {:>9.1} {:>8.1} {:>8.1} {:>9.1}",
                l,
                a.w,
                row["recall_at_k"].as_f64().unwrap_or(f64::NAN),
                qps.unwrap_or(f64::NAN),
                row["lat_mean_us"].as_f64().unwrap_or(0.0),
                row["lat_p50_us"].as_f64().unwrap_or(0.0),
                row["lat_p99_us"].as_f64().unwrap_or(0.0),
                row["mean_ios"].as_f64().unwrap_or(0.0),
                row["mean_hops"].as_f64().unwrap_or(0.0),
                proc_ios
            );
        }
    }
    Ok(())
}
