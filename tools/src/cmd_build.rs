//! `quarryctl build`: build a disk index from a vector file.
//!
//! Owns: the command-line face of `quarry_engine::index::build_index`:
//! argument parsing, the up-front memory check, progress bars, and the
//! build report.

use crate::cmd_gen::progress_bar;
use anyhow::{Context, Result};
use indicatif::ProgressBar;
use quarry_engine::dataset::VectorFile;
use quarry_engine::format::StoredType;
use quarry_engine::graph::{BuildParams, NavParams};
use quarry_engine::index::partition::{build_partitioned, MergeCut, PartitionOptions};
use quarry_engine::index::{build_index, IndexBuildOptions, MemoryEstimate};
use quarry_engine::Metric;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

/// Progress as log lines, for non-terminal stderr.
#[derive(Default)]
struct PlainProgress {
    stage: String,
    start: Option<Instant>,
    next_pct: u64,
}

impl PlainProgress {
    fn update(&mut self, stage: &str, done: usize, total: usize) {
        if self.stage != stage {
            self.stage = stage.to_string();
            self.start = Some(Instant::now());
            self.next_pct = 0;
        }
        let pct = if total == 0 {
            100
        } else {
            (done.min(total) as u64 * 100) / total as u64
        };
        if pct < self.next_pct {
            return;
        }
        self.next_pct = pct + 5;
        let el = self.start.map_or(0.0, |s| s.elapsed().as_secs_f64());
        let eta = if done > 0 && done < total {
            el * (total - done) as f64 / done as f64
        } else {
            0.0
        };
        eprintln!("{stage}: {pct:>3}% ({done}/{total}), elapsed {el:.0} s, ETA {eta:.0} s");
    }
}

/// Progress of a staged job: on a terminal, a bar per stage; otherwise
/// (logs, systemd) a line every 5 % with the elapsed time and an ETA.
pub(crate) struct StageProgress {
    tty: bool,
    bar: Option<(String, ProgressBar)>,
    plain: PlainProgress,
}

impl StageProgress {
    pub(crate) fn new() -> Self {
        StageProgress {
            tty: std::io::stderr().is_terminal(),
            bar: None,
            plain: PlainProgress::default(),
        }
    }

    pub(crate) fn update(&mut self, st: &str, done: usize, total: usize) {
        if !self.tty {
            self.plain.update(st, done, total);
            return;
        }
        if self.bar.as_ref().map(|(s, _)| s.as_str()) != Some(st) {
            if let Some((_, b)) = self.bar.take() {
                b.finish();
            }
            self.bar = Some((st.to_string(), progress_bar(total as u64, st)));
        }
        if let Some((_, b)) = &self.bar {
            b.set_position(done as u64);
        }
    }

    pub(crate) fn finish(&mut self) {
        if let Some((_, b)) = self.bar.take() {
            b.finish();
        }
    }
}

/// Arguments of `quarryctl build`.
#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// Base vectors (.fbin, .u8bin, .i8bin, .fvecs, .bvecs, .npy).
    #[arg(long)]
    pub base: PathBuf,
    /// Output index directory (created).
    #[arg(long)]
    pub index: PathBuf,
    /// Metric: l2, ip or cosine.
    #[arg(long, default_value_t = Metric::L2)]
    pub metric: Metric,
    /// Maximum out-degree.
    #[arg(long = "R", visible_alias = "r", default_value_t = 64)]
    pub r: usize,
    /// Build search list size.
    #[arg(long = "L", visible_alias = "l", default_value_t = 100)]
    pub l: usize,
    /// RobustPrune alpha.
    #[arg(long, default_value_t = 1.2)]
    pub alpha: f32,
    /// PQ bytes per vector (RAM per vector for codes) [default: a quarter
    /// of the dimension, at most 128, as the server chooses].
    #[arg(long)]
    pub pq_bytes: Option<usize>,
    /// Stored vector type in the graph file: f32, f16 or i8 [default: f16
    /// from 512 dimensions, else f32, as the server chooses].
    #[arg(long)]
    pub disk_vector: Option<StoredType>,
    /// Worker threads (the result does not depend on it).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Build memory budget in GiB. Over it the build is partitioned
    /// (k-means shards, each built in RAM, merged); refused up front, with
    /// the figures, if even that cannot fit.
    #[arg(long, default_value_t = 16.0)]
    pub build_ram_gb: f64,
    /// Partition even if the one-pass build fits the budget.
    #[arg(long)]
    pub partition: bool,
    /// Fewest shards of a partitioned build (odd, at least 3; the budget
    /// may ask for more).
    #[arg(long, default_value_t = 3)]
    pub min_shards: usize,
    /// How a partitioned build cuts each merged list back to R: prune
    /// (RobustPrune over PQ-decoded vectors) or shuffle (seeded).
    #[arg(long, default_value = "prune")]
    pub merge_cut: MergeCut,
    /// Where a partitioned build puts its shard files (default: the index
    /// directory); they are removed at the end.
    #[arg(long)]
    pub scratch: Option<PathBuf>,
    /// Seed (insertion order, PQ, navigation sample).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Navigation tier sample size (default: 1% of n, at least 256, at most 100k; 0 = none).
    #[arg(long)]
    pub nav_sample: Option<usize>,
    /// Also write a full-precision f32 rerank file.
    #[arg(long)]
    pub rerank_file: bool,
    /// Keep the build order on disk instead of renaming nodes so that
    /// graph neighbours share sectors (only matters when several records
    /// fit in a sector, e.g. i8 at 1024-d or 384-d vectors).
    #[arg(long)]
    pub no_colocate: bool,
    /// Learn an OPQ rotation before PQ (helps data of low intrinsic rank;
    /// costs a dim x dim eigen-decomposition at build time).
    #[arg(long)]
    pub opq: bool,
}

fn threads(t: usize) -> usize {
    if t == 0 {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    } else {
        t
    }
}

/// Runs `quarryctl build`.
pub fn run(a: BuildArgs) -> Result<()> {
    let file = VectorFile::open(&a.base)?;
    let (n, dim) = (file.len(), file.dim());
    let mut graph = BuildParams::new(a.r, a.l);
    graph.alpha = a.alpha;
    graph.seed = a.seed;
    graph.threads = threads(a.threads);
    let pq_bytes = a.pq_bytes.unwrap_or(IndexBuildOptions::default_pq_bytes(dim));
    let stored = a.disk_vector.unwrap_or(IndexBuildOptions::default_stored(dim));
    let o = IndexBuildOptions {
        metric: a.metric,
        graph,
        pq_bytes,
        stored,
        nav_sample: a.nav_sample.unwrap_or_else(|| NavParams::default_sample(n)),
        rerank_file: a.rerank_file,
        opq: a.opq,
        ram_budget: Some((a.build_ram_gb * (1u64 << 30) as f64) as u64),
        colocate: !a.no_colocate,
    };
    let est = MemoryEstimate::for_build(n, dim, &o);
    let need = est.total();
    eprintln!(
        "build: {} ({n} x {dim}, {}), metric {}, R {}, L {}, alpha {}, PQ {} B, disk vectors {}, {} threads",
        a.base.display(),
        file.elem_type().name(),
        a.metric,
        a.r,
        a.l,
        a.alpha,
        pq_bytes,
        stored,
        o.graph.threads
    );
    eprintln!(
        "memory estimate: {:.2} GiB ({est}); budget {:.2} GiB",
        need as f64 / (1u64 << 30) as f64,
        a.build_ram_gb
    );
    let partition = a.partition || need > o.ram_budget.unwrap_or(u64::MAX);
    file.check_finite()?;
    if partition {
        eprintln!(
            "{}: partitioned build (at least {} shards, merge cut {:?})",
            if a.partition { "--partition" } else { "over the budget" },
            a.min_shards.max(3) | 1,
            a.merge_cut
        );
        let po = PartitionOptions {
            cut: a.merge_cut,
            min_shards: a.min_shards,
            scratch: a.scratch.clone(),
        };
        let ids: Vec<u64> = (0..n as u64).collect();
        let t = std::time::Instant::now();
        let mut progress = StageProgress::new();
        // Rows are read with pread, so the file's pages stay out of the
        // build's resident set.
        let (report, part) = build_partitioned(&file, &ids, &a.index, &o, &po, &mut |st, done, total| {
            progress.update(st, done, total)
        })
        .with_context(|| {
            format!(
                "building {} partitioned within --build-ram-gb {}",
                a.index.display(),
                a.build_ram_gb
            )
        })?;
        progress.finish();
        let mut json = serde_json::to_value(&report)?;
        json["build_seconds"] = serde_json::json!(t.elapsed().as_secs_f64());
        json["threads"] = serde_json::json!(o.graph.threads);
        json["partition"] = serde_json::to_value(&part)?;
        std::fs::write(a.index.join("build_report.json"), serde_json::to_vec_pretty(&json)?)?;
        println!("{}", serde_json::to_string(&json)?);
        return Ok(());
    }
    // Borrowed straight from the mapping for .fbin (no second copy).
    let data = file.f32_data();
    let ids: Vec<u64> = (0..n as u64).collect();
    let t = std::time::Instant::now();
    let mut progress = StageProgress::new();
    let report = build_index(data, dim, &ids, &a.index, &o, &mut |st, done, total| {
        progress.update(st, done, total)
    })
    .with_context(|| format!("building {}", a.index.display()))?;
    progress.finish();
    let mut json = serde_json::to_value(&report)?;
    json["build_seconds"] = serde_json::json!(t.elapsed().as_secs_f64());
    json["threads"] = serde_json::json!(o.graph.threads);
    std::fs::write(a.index.join("build_report.json"), serde_json::to_vec_pretty(&json)?)?;
    println!("{}", serde_json::to_string(&json)?);
    Ok(())
}
