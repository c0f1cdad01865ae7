//! `quarryctl gt`: exact brute-force ground truth for a query file against a
//! base file, written as `.ibin`.
//!
//! Owns: the command-line face of `quarry_engine::dataset::groundtruth`.

use crate::cmd_gen::progress_bar;
use anyhow::{bail, Context, Result};
use quarry_engine::dataset::groundtruth::{self, exact_knn};
use quarry_engine::dataset::{write_fbin, write_ibin, VectorFile};
use quarry_engine::Metric;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `quarryctl gt`.
#[derive(clap::Args, Debug)]
pub struct GtArgs {
    /// Base vectors (.fbin, .u8bin, .i8bin, .fvecs, .bvecs, .npy).
    #[arg(long)]
    pub base: PathBuf,
    /// Query vectors, same dimension as the base.
    #[arg(long)]
    pub queries: PathBuf,
    /// Output .ibin (u32 n, u32 k, then n × k ids, closest first).
    #[arg(long)]
    pub out: PathBuf,
    /// Neighbours per query.
    #[arg(long, default_value_t = groundtruth::DEFAULT_K)]
    pub k: usize,
    /// Metric: l2, ip or cosine.
    #[arg(long, default_value_t = Metric::L2)]
    pub metric: Metric,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Also write the distances (n × k f32, the metric's "smaller is closer"
    /// convention) to this .fbin.
    #[arg(long)]
    pub distances_out: Option<PathBuf>,
}

/// Runs `quarryctl gt`.
pub fn run(args: GtArgs) -> Result<()> {
    let base = VectorFile::open(&args.base)?;
    let queries = VectorFile::open(&args.queries)?;
    if base.dim() != queries.dim() {
        bail!(
            "{} has dimension {} but {} has dimension {}",
            args.base.display(),
            base.dim(),
            args.queries.display(),
            queries.dim()
        );
    }
    base.check_finite()?;
    queries.check_finite()?;
    eprintln!(
        "ground truth: {} queries x {} base, d = {}, k = {}, metric {}",
        queries.len(),
        base.len(),
        base.dim(),
        args.k,
        args.metric
    );
    let t = Instant::now();
    let base_data = base.f32_data();
    let query_data = queries.f32_data();
    let pb = progress_bar(base.len() as u64, "gt");
    let gt = exact_knn(
        &base_data,
        &query_data,
        base.dim(),
        args.k,
        args.metric,
        args.threads,
        &mut |done, _| pb.set_position(done as u64),
    )
    .context("computing ground truth")?;
    pb.finish();
    write_ibin(&args.out, gt.n_queries, gt.k, &gt.ids)?;
    eprintln!(
        "wrote {} ({} x {}) in {:.1} s",
        args.out.display(),
        gt.n_queries,
        gt.k,
        t.elapsed().as_secs_f64()
    );
    if let Some(p) = &args.distances_out {
        write_fbin(p, gt.n_queries, gt.k, &gt.distances)?;
        eprintln!("wrote {}", p.display());
    }
    Ok(())
}
