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
    /// How IOs, hops and L grow past the measured sizes: `end`, the line
    /// through the two largest sizes (the growth where the runs end), or
    /// `all`, least squares over every size (more optimistic: the cost
    /// of a recall grows faster than ln n).
    #[arg(long, value_enum, default_value_t = model::Growth::End)]
    pub growth: model::Growth,
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
    pub growth: model::Growth,
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
    let families = families(runs);
    if families.is_empty() {
        bail!("the costs hold no runs");
    }
    let mut notes = Vec::new();
    let f = match &a.family {
        Some(name) => {
            let Some(fam) = families.iter().find(|x| &x.name == name) else {
                bail!(
                    "no family {name:?} in the costs (have: {})",
                    families.iter().map(|x| x.name.as_str()).collect::<Vec<_>>().join(", ")
                );
            };
            fit_family(runs, &families, fam, a.recall, a.growth)?
        }
        None => choose_family(runs, &families, a, &mut notes)?,
    };
    let f = borrow_cache_curve(runs, &families, f, &mut notes);
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
        growth: a.growth,
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

/// One measured family: its name, dimension, degree and measured sizes.
struct Family {
    name: String,
    dim: u32,
    r: u32,
    sizes: usize,
}

fn families(runs: &[Run]) -> Vec<Family> {
    let mut v: Vec<Family> = Vec::new();
    for r in runs {
        if !v.iter().any(|f| f.name == r.family) {
            v.push(Family {
                name: r.family.clone(),
                dim: r.dim,
                r: r.r,
                sizes: model::sizes(runs, &r.family).len(),
            });
        }
    }
    v
}

/// Fit `fam` at `recall`. A family measured at one size borrows its
/// growth with n from the family with the most sizes, of the same degree
/// R where there is one (the growth depends on the graph).
fn fit_family(
    runs: &[Run],
    families: &[Family],
    fam: &Family,
    recall: f64,
    growth: model::Growth,
) -> Result<model::Fitted> {
    let lender = families
        .iter()
        .filter(|x| x.name != fam.name && x.sizes >= 2)
        .max_by_key(|x| (x.r == fam.r, x.sizes, std::cmp::Reverse(x.name.clone())));
    let lent = match lender {
        Some(l) if fam.sizes < 2 => Some(model::fit(runs, &l.name, recall, None, growth)?),
        _ => None,
    };
    Ok(model::fit(runs, &fam.name, recall, lent.as_ref(), growth)?)
}

/// With no `--family`: of the families whose dimension is nearest to
/// `--dim`, the one that reaches the recall with the fewest IOs per query
/// at `--vectors` (a family whose runs never reach it is skipped, and
/// said so).
fn choose_family(runs: &[Run], families: &[Family], a: &PlanArgs, notes: &mut Vec<String>) -> Result<model::Fitted> {
    let gap = |f: &Family| (f.dim as i64 - a.dim as i64).abs();
    let nearest = families.iter().map(gap).min().expect("not empty");
    let ln = (a.vectors as f64).ln();
    let mut best: Option<model::Fitted> = None;
    let mut failed = Vec::new();
    let near: Vec<&Family> = families.iter().filter(|f| gap(f) == nearest).collect();
    for fam in &near {
        match fit_family(runs, families, fam, a.recall, a.growth) {
            Ok(f) => {
                if best.as_ref().is_none_or(|b| f.ios.at(ln) < b.ios.at(ln)) {
                    best = Some(f);
                }
            }
            Err(e) => failed.push(format!("{}: {e}", fam.name)),
        }
    }
    let Some(best) = best else {
        bail!("no measured family reaches recall {}: {}", a.recall, failed.join("; "));
    };
    if near.len() > 1 {
        notes.push(format!(
            "family {} chosen of {} measured at {}-d: the fewest IOs per query at this size{}",
            best.family,
            near.len(),
            best.dim,
            if failed.is_empty() {
                String::new()
            } else {
                format!(" ({} cannot reach the recall)", failed.len())
            }
        ));
    }
    Ok(best)
}

/// A family measured without a cache sweep takes the read cut of a
/// family that has one (the nearest in dimension), since which nodes a
/// search visits most depends on the graph's hubs, not on the records.
fn borrow_cache_curve(
    runs: &[Run],
    families: &[Family],
    mut f: model::Fitted,
    notes: &mut Vec<String>,
) -> model::Fitted {
    if f.cache_curve.len() > 2 {
        return f;
    }
    let donor = families
        .iter()
        .filter(|x| x.name != f.family)
        .map(|x| (x, model::cache_curve(runs, &x.name)))
        .filter(|(_, c)| c.len() > 2)
        .min_by_key(|(x, _)| ((x.dim as i64 - f.dim as i64).abs(), x.r != f.r));
    if let Some((x, curve)) = donor {
        notes.push(format!(
            "no cache share measured for family {}: its read cut is family {}'s",
            f.family, x.name
        ));
        f.cache_curve = curve;
    }
    f
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
        "model: family {} ({}-d{}, R {}, PQ {} B, {} records), measured at n = {:?}, growth {}{}",
        p.family,
        p.family_dim,
        p.family_lid.map(|l| format!(", LID {l:.1}")).unwrap_or_default(),
        p.r,
        p.pq_bytes,
        p.measured_disk_vector,
        p.measured_sizes,
        match p.growth {
            model::Growth::End => "through the two largest sizes",
            model::Growth::All => "fitted over every size",
        },
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(recall: f64) -> PlanArgs {
        PlanArgs {
            vectors: 10_000_000,
            dim: 96,
            recall,
            qps: None,
            p99_ms: None,
            ram_gb: 24.0,
            cores: 2,
            device_iops: None,
            cache_share: Some(0.1),
            disk_vector: None,
            build_ram_gb: None,
            growth: model::Growth::All,
            family: None,
            costs: None,
            json: false,
        }
    }

    /// "f" (R 32, with a cache sweep) as model's synthetic set; "g" (R 64)
    /// reads half as much, reaches recall 0.99 where "f" stops at 0.93,
    /// and has no cache sweep.
    fn two_families() -> Vec<Run> {
        let mut runs = model::tests::synthetic();
        let mut g: Vec<Run> = runs.iter().filter(|r| r.cache_nodes == 0).cloned().collect();
        for r in &mut runs {
            r.recall_at_k = r.recall_at_k.min(0.93);
        }
        for r in &mut g {
            r.family = "g".into();
            r.r = 64;
            r.mean_ios *= 0.5;
            // Hops no longer a multiple of IOs, so the latency planes fit.
            r.mean_hops += r.l as f64;
            r.recall_at_k = r.recall_at_k.min(0.99);
        }
        runs.extend(g);
        runs
    }

    #[test]
    fn the_family_that_reaches_the_recall_with_fewest_reads_is_chosen() {
        let runs = two_families();
        let p = predict(&runs, &args(0.9)).unwrap();
        assert_eq!(p.family, "g");
        assert!(
            p.notes.iter().any(|n| n.contains("family g chosen of 2")),
            "{:?}",
            p.notes
        );
        // Asked by name, the other one answers.
        let f = predict(
            &runs,
            &PlanArgs {
                family: Some("f".into()),
                ..args(0.9)
            },
        )
        .unwrap();
        assert_eq!(f.family, "f");
        assert!(f.ios_per_query > p.ios_per_query);
        // Only "g" reaches 0.95; nothing reaches 0.995, and the error says why.
        let p = predict(&runs, &args(0.95)).unwrap();
        assert_eq!(p.family, "g");
        assert!(p.notes.iter().any(|n| n.contains("1 cannot reach")), "{:?}", p.notes);
        let e = predict(&runs, &args(0.995)).unwrap_err().to_string();
        assert!(
            e.contains("no measured family reaches recall 0.995") && e.contains("highest: 0.93"),
            "{e}"
        );
    }

    #[test]
    fn a_family_without_a_cache_sweep_borrows_one_and_one_size_borrows_its_own_degree() {
        let runs = two_families();
        let p = predict(
            &runs,
            &PlanArgs {
                family: Some("g".into()),
                ..args(0.9)
            },
        )
        .unwrap();
        assert!(
            p.notes.iter().any(|n| n.contains("its read cut is family f's")),
            "{:?}",
            p.notes
        );
        // With f's curve a 10 % cache removes some reads; without one the
        // straight line would remove exactly 10 %.
        let none = predict(
            &runs,
            &PlanArgs {
                family: Some("g".into()),
                cache_share: Some(0.0),
                ..args(0.9)
            },
        )
        .unwrap();
        let cut = 1.0 - p.ios_per_query / none.ios_per_query;
        let want = model::cache_cut(&model::cache_curve(&runs, "f"), 0.1);
        assert!((cut - want).abs() < 1e-9, "{cut} vs {want}");
        // A one-size R 64 family grows with n as "g" does, not as "f".
        let mut more = runs.clone();
        let mut at_1m: Vec<Run> = runs
            .iter()
            .filter(|r| r.family == "g" && r.n == 1_000_000)
            .cloned()
            .collect();
        // A third L, so one size alone has enough points for the planes.
        let mid = Run {
            l: 30,
            recall_at_k: 0.9,
            mean_ios: (at_1m[0].mean_ios + at_1m[1].mean_ios) / 2.0,
            mean_hops: at_1m[0].mean_hops + 1.0,
            ..at_1m[0].clone()
        };
        at_1m.insert(1, mid);
        for r in at_1m {
            more.push(Run {
                family: "h".into(),
                ..r
            });
        }
        let h = predict(
            &more,
            &PlanArgs {
                family: Some("h".into()),
                ..args(0.9)
            },
        )
        .unwrap();
        assert_eq!(h.slope_from.as_deref(), Some("g"));
    }
}
