//! `quarryctl plan`: what an index of N × D vectors at a recall target
//! needs and gives on the hardware described (RAM, SSD, IOs, CPU, QPS,
//! latency, build time and build RAM), from runs measured on this
//! machine and stored in the repository (`tools/costs/`).
//!
//! Owns: the arguments, reading the costs, choosing the family and the
//! cache share, the build estimate and the printout. Does not own: the
//! fits (`model`), or any constant standing in for a measurement.

pub mod model;

use anyhow::{bail, Context, Result};
use clap::Args;
use model::Run;
use quarry_engine::format::{NodeLayout, StoredType};
use quarry_engine::graph::hnsw::NavParams;
use quarry_engine::graph::vamana::BuildParams;
use quarry_engine::index::partition::estimate_shards;
use quarry_engine::index::{IndexBuildOptions, MemoryEstimate};
use quarry_engine::Metric;
use std::path::PathBuf;

/// The runs measured on this project's machine (2 vCPU, NVMe-backed
/// virtual disk), written by `benches/plan/run.sh`.
const MEASURED: &str = include_str!("../../costs/runs.jsonl");

#[derive(Args)]
pub struct PlanArgs {
    /// Vectors in the index.
    #[arg(long)]
    pub vectors: u64,
    /// Dimension.
    #[arg(long)]
    pub dim: u32,
    /// Recall@10 target.
    #[arg(long)]
    pub recall: f64,
    /// Queries per second the deployment must serve (adds how many
    /// nodes that takes).
    #[arg(long)]
    pub qps: Option<f64>,
    /// p99 latency bound, ms (says whether it holds).
    #[arg(long)]
    pub p99_ms: Option<f64>,
    /// RAM of the machine, GiB; 80 % of it is given to the index (PQ,
    /// navigation, ids, then the hot-node cache).
    #[arg(long, default_value_t = 24.0)]
    pub ram_gb: f64,
    /// Cores of the machine.
    #[arg(long, default_value_t = 2)]
    pub cores: u32,
    /// The SSD's 4 KiB random-read IOPS at high queue depth (default: the
    /// one measured beside the runs).
    #[arg(long)]
    pub device_iops: Option<f64>,
    /// Share of nodes in the hot-node cache (0..=1; default: the most
    /// that fits the RAM).
    #[arg(long)]
    pub cache_share: Option<f64>,
    /// Stored-vector type of the records: f32, f16 or i8 (default: the
    /// measured family's). Changes the record size (SSD, cache, reads of
    /// records that span sectors), not the modelled IOs or recall.
    #[arg(long)]
    pub disk_vector: Option<String>,
    /// Build memory budget, GiB (default: the RAM's 80 %).
    #[arg(long)]
    pub build_ram_gb: Option<f64>,
    /// Measured family to use (default: the one whose dimension is
    /// nearest to --dim).
    #[arg(long)]
    pub family: Option<String>,
    /// Costs file (JSON lines, one measured search point each) instead
    /// of the ones built in.
    #[arg(long)]
    pub costs: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Parse a costs file (one [`Run`] per line; blank lines skipped).
pub fn parse_runs(text: &str) -> Result<Vec<Run>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("costs line {}", i + 1)))
        .collect()
}

/// The model's answer for one request.
#[derive(Debug, serde::Serialize)]
pub struct Plan {
    pub family: String,
    pub family_dim: u32,
    pub family_lid: Option<f64>,
    pub measured_sizes: Vec<u64>,
    pub slope_from: Option<String>,
    pub extrapolation: f64,
    pub r: u32,
    pub pq_bytes: u32,
    pub measured_disk_vector: String,
    pub disk_vector: String,
    pub search_l: f64,
    pub cache_share: f64,
    pub ram_pq_bytes: u64,
    pub ram_nav_bytes: u64,
    pub ram_ids_bytes: u64,
    pub ram_cache_bytes: u64,
    pub ram_total_bytes: u64,
    pub ram_bytes_per_vector: f64,
    pub ssd_bytes: u64,
    pub ios_per_query: f64,
    pub hops_per_query: f64,
    pub core_us_per_query: f64,
    pub qps_per_core: f64,
    pub qps_node: f64,
    pub qps_bound: &'static str,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub build_mode: String,
    pub build_shards: usize,
    pub build_ram_bytes: u64,
    pub build_scratch_bytes: u64,
    pub build_hours: f64,
    pub nodes_for_qps: Option<u64>,
    pub p99_met: Option<bool>,
    pub fits_ram: bool,
    pub notes: Vec<String>,
}

/// Shard-size imbalance the build estimate assumes (the largest shard
/// over the mean, before the planner's 10 % slack): the 10M partitioned
/// run's largest shard held 4.24M of its 20M assignments over 5 shards
/// (docs/results/partition-2026-12-05.md).
const SHARD_IMBALANCE: f64 = 1.06;

/// Predict for `a` from `runs`.
pub fn predict(runs: &[Run], a: &PlanArgs) -> Result<Plan> {
    if !(0.0..1.0).contains(&a.recall) || a.vectors == 0 || a.dim == 0 || a.cores == 0 {
        bail!("--recall must be in [0, 1), and --vectors, --dim and --cores above 0");
    }
    let mut families: Vec<(String, u32, usize)> = Vec::new();
    for r in runs {
        if !families.iter().any(|f| f.0 == r.family) {
            families.push((r.family.clone(), r.dim, model::sizes(runs, &r.family).len()));
        }
    }
    if families.is_empty() {
        bail!("the costs hold no runs");
    }
    let name = match &a.family {
        Some(f) => {
            if !families.iter().any(|x| &x.0 == f) {
                bail!(
                    "no family {f:?} in the costs (have: {})",
                    families.iter().map(|x| x.0.as_str()).collect::<Vec<_>>().join(", ")
                );
            }
            f.clone()
        }
        None => families
            .iter()
            .min_by_key(|f| (f.1 as i64 - a.dim as i64).abs())
            .expect("not empty")
            .0
            .clone(),
    };
    // The family with the most sizes lends its growth with n.
    let scaler = families.iter().max_by_key(|f| f.2).expect("not empty").0.clone();
    let lender = if scaler != name {
        Some(model::fit(runs, &scaler, a.recall, None)?)
    } else {
        None
    };
    let f = model::fit(runs, &name, a.recall, lender.as_ref())?;
    let mut notes = Vec::new();
    if !f.censored.is_empty() {
        notes.push(format!(
            "sizes {:?} reach the target at their smallest measured L and are left out of the fits",
            f.censored
        ));
    }
    if f.dim != a.dim {
        notes.push(format!(
            "measured at dim {} (family {}), asked for {}: IOs follow the graph, but time per hop and build time per point were measured at {}-d",
            f.dim, f.family, a.dim, f.dim
        ));
    }
    let n = a.vectors;
    let nf = n as f64;
    let largest = f.measured.iter().map(|m| m.n).max().unwrap_or(1);
    let extrapolation = nf / largest as f64;
    if extrapolation > 1.0 {
        notes.push(format!(
            "extrapolated {extrapolation:.1}x past the largest measured size ({largest}) along ln n"
        ));
    }
    let stored: StoredType = a
        .disk_vector
        .as_deref()
        .unwrap_or(&f.disk_vector)
        .parse()
        .map_err(|e: String| anyhow::anyhow!("--disk-vector: {e}"))?;
    if stored.to_string() != f.disk_vector {
        notes.push(format!(
            "records stored as {stored}, measured as {}: recall at a given L was measured with {} records",
            f.disk_vector, f.disk_vector
        ));
    }
    let layout = NodeLayout::new(a.dim as usize, stored, f.r as usize);
    // RAM: PQ codes, navigation sample, ids, then the cache.
    let pq = n * f.pq_bytes as u64;
    let nav = (NavParams::default_sample(n as usize) as f64 * a.dim as f64 * f.nav_bytes_per_dim) as u64;
    let ids = n * 8;
    let budget = (a.ram_gb * 0.8 * (1u64 << 30) as f64) as u64;
    let fixed = pq + nav + ids;
    let fits_ram = fixed <= budget;
    let share = match a.cache_share {
        Some(s) if (0.0..=1.0).contains(&s) => s,
        Some(s) => bail!("--cache-share {s} is not in 0..=1"),
        None => (budget.saturating_sub(fixed) as f64 / (nf * layout.node_size as f64)).min(1.0),
    };
    let cache = (share * nf * layout.node_size as f64) as u64;
    let ram = fixed + cache;
    // Disk: the graph file (a header sector and the records), codes and
    // ids files.
    let ssd = (1 + layout.data_sectors(n)) * 4096 + pq + ids;
    // Search.
    let ln = nf.ln();
    let ios0 = f.ios.at(ln).max(1.0);
    let ios = ios0 * (1.0 - model::cache_cut(&f.cache_curve, share));
    let hops = f.hops.at(ln).max(1.0);
    let core_us = f.core_us.at(hops, ios).max(1.0);
    let qps_per_core = 1e6 / core_us;
    let device = a
        .device_iops
        .or(f.device_iops)
        .context("no device IOPS measured in the costs: pass --device-iops")?;
    let cpu_qps = qps_per_core * a.cores as f64;
    // A record that spans sectors is one read of that many 4 KiB sectors;
    // the device's IOPS count 4 KiB reads.
    let sectors = layout.read_sectors() as f64;
    let io_qps = if ios > 0.0 {
        device / (ios * sectors)
    } else {
        f64::INFINITY
    };
    let (qps_node, qps_bound) = if cpu_qps <= io_qps {
        (cpu_qps, "cpu")
    } else {
        (io_qps, "device IOPS")
    };
    let p50 = f.p50.at(hops, ios).max(1.0) / 1000.0;
    let p99 = (f.p99.at(hops, ios) / 1000.0).max(p50);
    if share > 0.0 && f.cache_curve.len() <= 2 {
        notes.push("no cache share measured for this family: the cut is a straight line from none to all".into());
    }
    // Build: one pass if it fits, else partitioned.
    let build_budget = (a.build_ram_gb.unwrap_or(a.ram_gb * 0.8) * (1u64 << 30) as f64) as u64;
    let mut graph = BuildParams::new(f.r as usize, f.build_l as usize);
    graph.threads = a.cores as usize;
    let o = IndexBuildOptions {
        metric: Metric::L2,
        graph,
        pq_bytes: f.pq_bytes as usize,
        stored,
        nav_sample: NavParams::default_sample(n as usize),
        rerank_file: false,
        opq: false,
        ram_budget: Some(build_budget),
        colocate: true,
    };
    let per_point = |m: f64| {
        f.build
            .map(|b| b.at(m.ln()).max(0.0) / a.cores as f64)
            .unwrap_or(f64::NAN)
    };
    let one_pass = MemoryEstimate::for_build(n as usize, a.dim as usize, &o).total();
    let (mode, shards, build_ram, scratch, secs) = if one_pass <= build_budget {
        ("one pass".to_string(), 1, one_pass, 0, nf * per_point(nf))
    } else {
        match estimate_shards(n as usize, a.dim as usize, &o, build_budget, SHARD_IMBALANCE) {
            Some(p) => {
                // Every point is built twice, in shards of `largest`, at
                // degree 2R/3 (taken to cost 2/3 of R per point).
                let secs = 2.0 * nf * per_point(p.largest as f64) * 2.0 / 3.0;
                (
                    "partitioned".to_string(),
                    p.shards,
                    p.shard_phase_bytes.max(p.merge_phase_bytes),
                    p.scratch_bytes,
                    secs,
                )
            }
            None => {
                notes.push(format!(
                    "no partitioned build fits {:.0} GiB: its merge holds the merged graph, n x (R+1) x 4 B = {:.0} GiB, in RAM",
                    build_budget as f64 / (1u64 << 30) as f64,
                    (n * (f.r as u64 + 1) * 4) as f64 / (1u64 << 30) as f64
                ));
                ("does not fit".to_string(), 0, 0, 0, f64::NAN)
            }
        }
    };
    Ok(Plan {
        family: f.family.clone(),
        family_dim: f.dim,
        family_lid: f.lid,
        measured_sizes: f.measured.iter().map(|m| m.n).collect(),
        slope_from: f.borrowed_slope.clone(),
        extrapolation,
        r: f.r,
        pq_bytes: f.pq_bytes,
        measured_disk_vector: f.disk_vector.clone(),
        disk_vector: stored.to_string(),
        search_l: f.l.at(ln),
        cache_share: share,
        ram_pq_bytes: pq,
        ram_nav_bytes: nav,
        ram_ids_bytes: ids,
        ram_cache_bytes: cache,
        ram_total_bytes: ram,
        ram_bytes_per_vector: ram as f64 / nf,
        ssd_bytes: ssd,
        ios_per_query: ios,
        hops_per_query: hops,
        core_us_per_query: core_us,
        qps_per_core,
        qps_node,
        qps_bound,
        p50_ms: p50,
        p99_ms: p99,
        build_mode: mode,
        build_shards: shards,
        build_ram_bytes: build_ram,
        build_scratch_bytes: scratch,
        build_hours: secs / 3600.0,
        nodes_for_qps: a.qps.map(|q| (q / qps_node).ceil().max(1.0) as u64),
        p99_met: a.p99_ms.map(|b| p99 <= b),
        fits_ram,
        notes,
    })
}

/// Run `quarryctl plan`.
pub fn run(a: PlanArgs) -> Result<()> {
    let text = match &a.costs {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        None => MEASURED.to_string(),
    };
    let runs = parse_runs(&text)?;
    let p = predict(&runs, &a)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
        return Ok(());
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    println!(
        "{} x {}-d at recall@10 {} on {} cores, {} GiB RAM",
        a.vectors, a.dim, a.recall, a.cores, a.ram_gb
    );
    println!(
        "model: family {} ({}-d{}, R {}, PQ {} B, {} records), measured at n = {:?}{}",
        p.family,
        p.family_dim,
        p.family_lid.map(|l| format!(", LID {l:.1}")).unwrap_or_default(),
        p.r,
        p.pq_bytes,
        p.measured_disk_vector,
        p.measured_sizes,
        p.slope_from
            .as_ref()
            .map(|s| format!("; growth with n from {s}"))
            .unwrap_or_default()
    );
    println!(
        "RAM: {:.2} GiB = PQ {:.2} + navigation {:.2} + ids {:.2} + cache {:.2} ({:.1} % of nodes); {:.0} B/vector{}",
        gib(p.ram_total_bytes),
        gib(p.ram_pq_bytes),
        gib(p.ram_nav_bytes),
        gib(p.ram_ids_bytes),
        gib(p.ram_cache_bytes),
        p.cache_share * 100.0,
        p.ram_bytes_per_vector,
        if p.fits_ram {
            ""
        } else {
            "  ** PQ, navigation and ids alone exceed 80 % of the RAM **"
        }
    );
    println!("SSD: {:.1} GiB", gib(p.ssd_bytes));
    println!(
        "search: L {:.0}, {:.1} IOs/query ({:.1} hops), {:.0} thread-us/query (a polling thread's time, read waits included), {:.0} QPS/core; node {:.0} QPS ({}-bound); p50 {:.2} ms, p99 {:.2} ms",
        p.search_l,
        p.ios_per_query,
        p.hops_per_query,
        p.core_us_per_query,
        p.qps_per_core,
        p.qps_node,
        p.qps_bound,
        p.p50_ms,
        p.p99_ms
    );
    println!(
        "build: {}{}, peak RAM {:.1} GiB, scratch {:.1} GiB, {:.1} h",
        p.build_mode,
        if p.build_shards > 1 {
            format!(" ({} shards)", p.build_shards)
        } else {
            String::new()
        },
        gib(p.build_ram_bytes),
        gib(p.build_scratch_bytes),
        p.build_hours
    );
    if let Some(k) = p.nodes_for_qps {
        println!(
            "--qps {}: {k} node(s) (plus a standby each for HA)",
            a.qps.unwrap_or_default()
        );
    }
    if let Some(ok) = p.p99_met {
        println!(
            "--p99-ms {}: {}",
            a.p99_ms.unwrap_or_default(),
            if ok { "met" } else { "NOT met" }
        );
    }
    for n in &p.notes {
        println!("note: {n}");
    }
    Ok(())
}
