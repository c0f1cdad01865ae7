//! `quarryctl relayout`: rewrite an index with another stored-vector type
//! and/or co-located sectors, reusing its graph, PQ codebook and
//! navigation tier (no rebuild; `--nav-sample` rebuilds the tier only).

use crate::cmd_build::StageProgress;
use anyhow::{Context, Result};
use quarry_engine::format::StoredType;
use std::path::PathBuf;

/// Arguments of `quarryctl relayout`.
#[derive(clap::Args, Debug)]
pub struct RelayoutArgs {
    /// Source index directory (read only).
    #[arg(long)]
    pub index: PathBuf,
    /// New index directory (created; must differ from the source).
    #[arg(long)]
    pub out: PathBuf,
    /// Stored vector type of the new graph file: f32, f16 or i8. i8 fits
    /// three 1024-d records (R ≤ 84) in a sector.
    #[arg(long = "disk-vector")]
    pub disk_vector: StoredType,
    /// Keep the source's node order instead of co-locating neighbours.
    #[arg(long)]
    pub no_colocate: bool,
    /// Rebuild the navigation tier over this many points (0 = none) from the
    /// source's vectors, instead of reusing the source's tier.
    #[arg(long)]
    pub nav_sample: Option<usize>,
}

/// Runs `quarryctl relayout`.
pub fn run(a: RelayoutArgs) -> Result<()> {
    let mut progress = StageProgress::new();
    let report = quarry_engine::index::relayout(
        &a.index,
        &a.out,
        a.disk_vector,
        !a.no_colocate,
        a.nav_sample,
        &mut |st, d, t| progress.update(st, d, t),
    )
    .with_context(|| format!("relayout of {} into {}", a.index.display(), a.out.display()))?;
    progress.finish();
    eprintln!(
        "relayout: {} nodes, {} per sector, sector-mates that are neighbours {:.1}% -> {:.1}%, {:.1} s",
        report.n,
        report.nodes_per_sector,
        100.0 * report.mate_fraction_before,
        100.0 * report.mate_fraction_after,
        report.seconds
    );
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
