//! `quarryctl gen` (synthetic clustered data set + its LID) and
//! `quarryctl lid` (LID of any vector file).
//!
//! Owns: the command-line face of `quarry_engine::dataset::{synth, lid}` and
//! the `meta.json` written beside generated data.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use quarry_engine::dataset::lid::{self, LidEstimate, LidParams};
use quarry_engine::dataset::synth::{self, SynthParams};
use quarry_engine::dataset::VectorFile;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Arguments of `quarryctl gen`.
#[derive(clap::Args, Debug)]
pub struct GenArgs {
    /// Output directory (created if missing): base.fbin, queries.fbin, meta.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Base vectors (required: 1M × 1024-d is 4 GiB, too much to write
    /// by surprise).
    #[arg(long)]
    pub n: usize,
    /// Dimension (required, with --n).
    #[arg(long)]
    pub dim: usize,
    /// Query vectors [default: the generator's].
    #[arg(long)]
    pub queries: Option<usize>,
    /// Mixture components [default: the generator's].
    #[arg(long)]
    pub clusters: Option<usize>,
    /// Rank of the subspace holding the mixture [default: the generator's].
    #[arg(long)]
    pub rank: Option<usize>,
    /// Per-axis standard deviation of a cluster in the subspace [default: the generator's].
    #[arg(long)]
    pub cluster_std: Option<f64>,
    /// Per-axis standard deviation of the isotropic noise [default: the generator's].
    #[arg(long)]
    pub noise: Option<f64>,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Points sampled for the LID estimate.
    #[arg(long, default_value_t = lid::DEFAULT_SAMPLE)]
    pub lid_sample: usize,
    /// Skip the LID estimate (meta.json then has "lid": null).
    #[arg(long)]
    pub no_lid: bool,
}

/// Arguments of `quarryctl lid`.
#[derive(clap::Args, Debug)]
pub struct LidArgs {
    /// Vector file (.fbin, .u8bin, .i8bin, .fvecs, .bvecs, .npy).
    #[arg(long)]
    pub base: PathBuf,
    /// Points sampled.
    #[arg(long, default_value_t = lid::DEFAULT_SAMPLE)]
    pub sample: usize,
    /// Neighbours per point.
    #[arg(long, default_value_t = lid::DEFAULT_K)]
    pub k: usize,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// A progress bar with elapsed time, rate and ETA.
pub(crate) fn progress_bar(len: u64, msg: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>10} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} ({per_sec}, ETA {eta})",
        )
        .expect("valid progress template"),
    );
    pb.set_message(msg.to_string());
    pb
}

fn estimate_lid(file: &VectorFile, params: &LidParams, threads: usize) -> Result<LidEstimate> {
    let data = file.f32_data();
    let pb = progress_bar(file.len() as u64, "lid");
    let est = lid::lid_mle(&data, file.dim(), params, threads, &mut |done, total| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    })
    .with_context(|| format!("estimating the LID of {}", file.path().display()))?;
    pb.finish();
    Ok(est)
}

fn print_lid(path: &Path, est: &LidEstimate) {
    println!(
        "LID (MLE, k={}) of {}: {:.2} (mean of {} points; median {:.2}, harmonic {:.2}; {} skipped; n = {})",
        est.k,
        path.display(),
        est.mean,
        est.points,
        est.median,
        est.harmonic,
        est.skipped,
        est.n
    );
}

/// Runs `quarryctl gen`.
pub fn run(args: GenArgs) -> Result<()> {
    let d = SynthParams::defaults(args.n, args.dim);
    let params = SynthParams {
        queries: args.queries.unwrap_or(d.queries),
        clusters: args.clusters.unwrap_or(d.clusters),
        rank: args.rank.unwrap_or(d.rank),
        cluster_std: args.cluster_std.unwrap_or(d.cluster_std),
        noise_std: args.noise.unwrap_or(d.noise_std),
        seed: args.seed,
        ..d
    };
    params.validate()?;
    eprintln!("generating {params:?} into {}", args.out.display());
    let t = Instant::now();
    let pb = progress_bar((params.n + params.queries) as u64, "generate");
    let files = synth::generate(&params, &args.out, args.threads, &mut |done, _| {
        pb.set_position(done as u64)
    })?;
    pb.finish();
    let gen_secs = t.elapsed().as_secs_f64();
    eprintln!(
        "wrote {} and {} in {gen_secs:.1} s",
        files.base.display(),
        files.queries.display()
    );

    let lid_params = LidParams {
        sample: args.lid_sample,
        ..LidParams::default()
    };
    let est = if args.no_lid {
        None
    } else {
        let base = VectorFile::open(&files.base)?;
        let est = estimate_lid(&base, &lid_params, args.threads)?;
        print_lid(&files.base, &est);
        Some(est)
    };

    let meta = serde_json::json!({
        "generator": "quarry synth: Gaussian mixture on a random low-rank subspace plus isotropic noise",
        "params": params,
        "files": { "base": "base.fbin", "queries": "queries.fbin" },
        "lid": est.map(|e| serde_json::json!({
            "estimator": "MLE (Levina-Bickel), mean of per-point estimates",
            "k": e.k,
            "sample": lid_params.sample,
            "sample_seed": lid_params.seed,
            "mean": e.mean,
            "median": e.median,
            "harmonic": e.harmonic,
            "points": e.points,
            "skipped": e.skipped,
        })),
        "generate_seconds": gen_secs,
    });
    let meta_path = args.out.join("meta.json");
    let tmp = args.out.join(".meta.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&meta)? + "\n")
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &meta_path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), meta_path.display()))?;
    eprintln!("wrote {}", meta_path.display());
    Ok(())
}

/// Runs `quarryctl lid`.
pub fn run_lid(args: LidArgs) -> Result<()> {
    let file = VectorFile::open(&args.base)?;
    let params = LidParams {
        k: args.k,
        sample: args.sample,
        ..LidParams::default()
    };
    let est = estimate_lid(&file, &params, args.threads)?;
    print_lid(&args.base, &est);
    Ok(())
}
