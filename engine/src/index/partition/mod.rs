//! The partitioned build, for data larger than the build's RAM budget
//! (DiskANN's merged Vamana): k-means over a sample into an odd number of
//! shards (at least 3), each point in the shards of its 2 nearest centres,
//! each shard's Vamana built in RAM at degree 2R/3, the shard graphs
//! merged by unioning each node's lists in global ids and cutting them
//! back to R.
//!
//! Deterministic: the same input, parameters and seed give byte-identical
//! files whatever the thread count (the shard count comes from the budget,
//! so it too must be equal). Every random choice is seeded, parallel work
//! is merged in index order, and the merge cut is either RobustPrune over
//! PQ-decoded vectors or a shuffle seeded by the node id.
//!
//! Owns: the shard plan and its memory estimate, the passes over the
//! source rows, the scratch files (`shard-<s>.ids`, `shard-<s>.graph`) and
//! their accounting, the merge. Does not own: the one-pass build and the
//! file writers (`build`), graph construction (`graph`), PQ (`pq`).

mod kmeans;
mod scratch;

use super::build::{stage, write_built, BuildReport, BuiltParts, IndexBuildOptions};
use super::{IndexError, Result};
use crate::dataset::VectorFile;
use crate::format::{self, NodeLayout};
use crate::graph::{self, BuildParams, Graph, GraphEstimate, NavParams, NavTier};
use crate::parallel::map_indexed;
use crate::pq::{training_rows, PqCodebook, PqParams};
use crate::Metric;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use scratch::{ShardReader, ShardWriter};
use std::path::{Path, PathBuf};

pub use kmeans::{kmeans_pp, two_nearest};

/// Rows of vectors a build reads, by index: a slice already in RAM, or a
/// file read in blocks (its pages stay out of the build's resident set).
pub trait Rows: Sync {
    /// Number of rows.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Elements per row.
    fn dim(&self) -> usize;
    /// Rows from `first` into `out` (a whole number of rows).
    fn read(&self, first: usize, out: &mut [f32]) -> Result<()>;
    /// Bytes of the source held in this process's memory (counted
    /// against the budget).
    fn resident_bytes(&self) -> u64;
}

/// Rows in a slice (n × dim).
pub struct SliceRows<'a> {
    /// The vectors, row-major.
    pub data: &'a [f32],
    /// Their dimension.
    pub dim: usize,
}

impl Rows for SliceRows<'_> {
    fn len(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn read(&self, first: usize, out: &mut [f32]) -> Result<()> {
        out.copy_from_slice(&self.data[first * self.dim..first * self.dim + out.len()]);
        Ok(())
    }
    fn resident_bytes(&self) -> u64 {
        std::mem::size_of_val(self.data) as u64
    }
}

impl Rows for VectorFile {
    fn len(&self) -> usize {
        VectorFile::len(self)
    }
    fn dim(&self) -> usize {
        VectorFile::dim(self)
    }
    fn read(&self, first: usize, out: &mut [f32]) -> Result<()> {
        self.pread_rows_into(first, out)
            .map_err(|e| IndexError::Invalid(e.to_string()))
    }
    fn resident_bytes(&self) -> u64 {
        0
    }
}

/// How a node's merged list (the union of its lists in its two shards)
/// is cut back to R.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeCut {
    /// RobustPrune over the candidates' PQ-decoded vectors (the codes are
    /// in RAM already).
    #[default]
    Prune,
    /// A shuffle seeded by the node id, then the first R (DiskANN's
    /// merge, made deterministic).
    Shuffle,
}

impl std::str::FromStr for MergeCut {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "prune" => Ok(MergeCut::Prune),
            "shuffle" => Ok(MergeCut::Shuffle),
            _ => Err(format!("merge cut {s:?} is not prune or shuffle")),
        }
    }
}

/// Options of the partitioned build beyond [`IndexBuildOptions`].
#[derive(Clone, Debug, Default)]
pub struct PartitionOptions {
    /// How merged lists are cut back to R.
    pub cut: MergeCut,
    /// Fewest shards (raised to odd, at least 3; the budget may ask more).
    pub min_shards: usize,
    /// Where the shard files go, in a `.partition` directory removed at
    /// the end (default: the index directory).
    pub scratch: Option<PathBuf>,
}

/// The shard plan: how many, how big, what the phases need.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardPlan {
    /// Shard count (odd, ≥ 3).
    pub shards: usize,
    /// Largest shard, estimated from the sample.
    pub largest: usize,
    /// Peak bytes while a shard builds.
    pub shard_phase_bytes: u64,
    /// Peak bytes while the graphs merge and the files are written.
    pub merge_phase_bytes: u64,
    /// Scratch disk the shard files take.
    pub scratch_bytes: u64,
    /// The k-means centres (shards × dim).
    centres: Vec<f32>,
}

/// Threads the shard plan assumes when it counts visited sets (n × 4 B
/// each): fixed, so the same budget gives the same shards, and so the
/// same index, on any machine. More threads than this use a little more
/// RAM than planned.
const PLAN_THREADS: usize = 8;

/// Rows per streaming block: about 64 MiB of f32.
fn block_rows(dim: usize) -> usize {
    ((64usize << 20) / (dim * 4).max(1)).max(1)
}

/// The shard builds' parameters: degree 2R/3 (at least 2), the rest as
/// asked, the seed varied per shard, no connectivity repair (the merged
/// graph is repaired once; at 10M, R' = 21, the per-shard repair ran a
/// greedy search for each of a great many orphans, single-threaded, for
/// longer than the shard's build).
fn shard_params(p: &BuildParams, shard: usize) -> BuildParams {
    let mut s = p.clone();
    s.repair = false;
    s.r = (2 * p.r / 3).max(2);
    s.l = p.l.max(s.r);
    s.seed = p.seed ^ (0x5348_0000 + shard as u64);
    s
}

/// Bytes every phase holds: PQ codes, ids, the source if resident, the
/// PQ/k-means sample, one streaming block.
fn base_bytes(n: usize, dim: usize, o: &IndexBuildOptions, resident: u64, sample: usize) -> u64 {
    (n * o.pq_bytes + n * 8) as u64 + resident + (sample * dim * 4) as u64 + (block_rows(dim).min(n) * dim * 4) as u64
}

/// Read the rows of `ids` (ascending) into a new buffer, normalising for
/// cosine.
fn gather(rows: &dyn Rows, ids: &[usize], metric: Metric) -> Result<Vec<f32>> {
    let dim = rows.dim();
    let mut out = vec![0f32; ids.len() * dim];
    for (k, &i) in ids.iter().enumerate() {
        rows.read(i, &mut out[k * dim..(k + 1) * dim])?;
    }
    if metric == Metric::Cosine {
        out.chunks_exact_mut(dim).for_each(crate::metric::normalize);
    }
    Ok(out)
}

/// Stream every row in blocks: `f(first, block)` with cosine rows
/// normalised.
fn stream(rows: &dyn Rows, metric: Metric, mut f: impl FnMut(usize, &[f32]) -> Result<()>) -> Result<()> {
    let (n, dim) = (rows.len(), rows.dim());
    let b = block_rows(dim);
    let mut buf = vec![0f32; b * dim];
    let mut first = 0;
    while first < n {
        let c = b.min(n - first);
        let block = &mut buf[..c * dim];
        rows.read(first, block)?;
        if metric == Metric::Cosine {
            block.chunks_exact_mut(dim).for_each(crate::metric::normalize);
        }
        f(first, block)?;
        first += c;
    }
    Ok(())
}

/// Plan the shards under `budget`: k-means++ on `sample` (rows of `dim`)
/// for k = 3, 5, 7, … until the largest shard's build (estimated from the
/// sample's assignment, with 10 % slack) fits beside what every phase
/// holds. Refused, with the figures, when even the merge cannot fit.
pub fn plan_shards(
    n: usize,
    dim: usize,
    sample: &[f32],
    o: &IndexBuildOptions,
    po: &PartitionOptions,
    resident: u64,
    budget: u64,
) -> Result<ShardPlan> {
    let s = sample.len() / dim.max(1);
    if s == 0 || n == 0 {
        return Err(IndexError::Invalid("no vectors to partition".into()));
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let base = base_bytes(n, dim, o, resident, s);
    let (merged, copies, merge_phase) = merge_phase_bytes(n, dim, o, base);
    if merge_phase > budget {
        return Err(IndexError::Invalid(format!(
            "even partitioned, the build needs {:.2} GiB to merge the shard graphs (the merged graph n × (R+1) × 4 B = {:.2} GiB{}, PQ codes and ids {:.2} GiB{}) but the budget is {:.2} GiB; raise the budget or lower R",
            gib(merge_phase),
            gib(merged),
            if copies == 2 { ", twice while co-location renames it" } else { "" },
            gib((n * (o.pq_bytes + 8)) as u64),
            if resident > 0 {
                format!(", the vectors in RAM {:.2} GiB", gib(resident))
            } else {
                String::new()
            },
            gib(budget)
        )));
    }
    // The plan must not depend on the thread count (the index would):
    // it counts 8 visited sets, one per thread, whatever the threads.
    let mut sp = shard_params(&o.graph, 0);
    sp.threads = PLAN_THREADS;
    let mut k = po.min_shards.max(3) | 1;
    loop {
        if k > s.min(1023) {
            return Err(IndexError::Invalid(format!(
                "no shard count up to {} fits one shard's build in the budget of {:.2} GiB ({:.2} GiB of it is PQ codes, ids and buffers); raise the budget",
                k - 2,
                gib(budget),
                gib(base)
            )));
        }
        let centres = kmeans_pp(sample, dim, k, 10, o.graph.seed, o.graph.threads);
        let pairs = map_indexed(
            s,
            o.graph.threads,
            || (),
            |_, i| two_nearest(&centres, dim, &sample[i * dim..(i + 1) * dim]),
        );
        let mut counts = vec![0usize; k];
        for (a, b) in pairs {
            counts[a as usize] += 1;
            counts[b as usize] += 1;
        }
        let top = counts.iter().copied().max().unwrap_or(0);
        let largest = (((top as f64 * n as f64 / s as f64) * 1.1).ceil() as usize).min(n);
        let shard = shard_build_bytes(largest, dim, &sp);
        if base + shard <= budget {
            return Ok(ShardPlan {
                shards: k,
                largest,
                shard_phase_bytes: base + shard,
                merge_phase_bytes: merge_phase,
                scratch_bytes: scratch_bytes(n, &sp),
                centres,
            });
        }
        k += 2;
    }
}

/// The merge phase: (the merged graph's bytes, its copies, the phase's
/// peak). Co-location renames the graph into a second copy, with the
/// order and its inverse; the writer renames codes and ids.
fn merge_phase_bytes(n: usize, dim: usize, o: &IndexBuildOptions, base: u64) -> (u64, u64, u64) {
    let merged = (n * (o.graph.r + 1) * 4) as u64;
    let copies = if o.colocate && NodeLayout::new(dim, o.stored, o.graph.r).nodes_per_sector > 1 {
        2
    } else {
        1
    };
    let peak = base + copies * merged + (n * (12 + o.pq_bytes + 8)) as u64 + (o.nav_sample.min(n) * dim * 6) as u64;
    (merged, copies, peak)
}

/// One shard's build: its vectors and graph build, and its id list.
fn shard_build_bytes(largest: usize, dim: usize, sp: &BuildParams) -> u64 {
    GraphEstimate::for_build(largest, dim, sp).total() + (largest * 4) as u64
}

/// Scratch disk: two id lists' worth of u32 and two shard graphs' worth
/// of (degree + neighbours) per point (each point is in two shards).
fn scratch_bytes(n: usize, sp: &BuildParams) -> u64 {
    (2 * n * 4 + 2 * n * (sp.r + 1) * 4) as u64
}

/// What a partitioned build of `n` × `dim` vectors with `o` would need,
/// without the data (for capacity planning, `quarryctl plan`): shards
/// assumed `imbalance` times the mean (2n/k points each; the planner of
/// a real build measures it on a sample; 10M clustered points gave
/// 1.06). The vectors are read from disk (none resident); the PQ sample
/// is the usual 65,536 rows. `None` when no odd k up to 1023 fits.
pub fn estimate_shards(n: usize, dim: usize, o: &IndexBuildOptions, budget: u64, imbalance: f64) -> Option<ShardPlan> {
    let base = base_bytes(n, dim, o, 0, 65_536.min(n));
    let (_, _, merge_phase) = merge_phase_bytes(n, dim, o, base);
    if merge_phase > budget {
        return None;
    }
    let mut sp = shard_params(&o.graph, 0);
    sp.threads = PLAN_THREADS;
    (3..=1023).step_by(2).find_map(|k| {
        let largest = ((2.0 * n as f64 / k as f64 * imbalance * 1.1).ceil() as usize).min(n);
        let shard = base + shard_build_bytes(largest, dim, &sp);
        (shard <= budget).then(|| ShardPlan {
            shards: k,
            largest,
            shard_phase_bytes: shard,
            merge_phase_bytes: merge_phase,
            scratch_bytes: scratch_bytes(n, &sp),
            centres: Vec::new(),
        })
    })
}

/// Refuse a build whose scratch files (`need` bytes for `k` shards)
/// would not fit the `free` bytes of `dir` (unknown: let it try).
fn check_scratch(dir: &Path, k: usize, need: u64, free: Option<u64>) -> Result<()> {
    match free {
        Some(free) if free < need => Err(IndexError::Invalid(format!(
            "the partitioned build needs {:.2} GiB of scratch disk in {} ({k} shards: id lists and shard graphs) but {:.2} GiB is free; free space or choose another scratch directory (--scratch)",
            need as f64 / (1u64 << 30) as f64,
            dir.display(),
            free as f64 / (1u64 << 30) as f64
        ))),
        _ => Ok(()),
    }
}

/// What the partitioned build adds to [`BuildReport`].
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PartitionReport {
    /// Shard count.
    pub shards: usize,
    /// Points per shard (each point is in two).
    pub shard_sizes: Vec<usize>,
    /// Estimated peak while a shard builds, and while merging, bytes.
    pub shard_phase_bytes: u64,
    /// See above.
    pub merge_phase_bytes: u64,
    /// Scratch disk used, bytes.
    pub scratch_bytes: u64,
    /// Measured peak RSS from the start through the shard builds, bytes.
    pub shard_phase_peak_rss: u64,
    /// Measured peak RSS from the merge to the last file, bytes.
    pub merge_phase_peak_rss: u64,
    /// The merge's cut.
    pub cut: MergeCut,
    /// Seconds: sample and plan, PQ pass, assignment pass, shard builds, merge.
    pub plan_seconds: f64,
    /// See above.
    pub assign_seconds: f64,
    /// See above.
    pub shards_seconds: f64,
    /// See above.
    pub merge_seconds: f64,
    /// Shard graphs kept from an interrupted run of the same build.
    pub shards_resumed: usize,
    /// Links added so the medoid reaches every node of the merged graph.
    pub repaired_links: usize,
    /// Nodes the medoid still cannot reach (0 unless the repair gave up).
    pub unreachable: usize,
}

/// Build an index over `rows` (checked finite by the caller) with
/// external ids `ids` into `dir`, partitioned as the module says, in at
/// most `o.ram_budget` bytes as estimated. `progress(stage, done, total)`
/// reports every stage.
pub fn build_partitioned(
    rows: &dyn Rows,
    ids: &[u64],
    dir: &Path,
    o: &IndexBuildOptions,
    po: &PartitionOptions,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<(BuildReport, PartitionReport)> {
    let (n, dim) = (rows.len(), rows.dim());
    if n == 0 || dim == 0 {
        return Err(IndexError::Invalid("no vectors to build from".into()));
    }
    if ids.len() != n {
        return Err(IndexError::Invalid(format!("{} ids for {n} vectors", ids.len())));
    }
    if n >= u32::MAX as usize {
        return Err(IndexError::Invalid(format!(
            "{n} vectors exceed one index's u32 id space"
        )));
    }
    o.graph.validate()?;
    let threads = o.graph.threads.max(1);
    let budget = o.ram_budget.unwrap_or(u64::MAX);
    let mut rep = PartitionReport {
        cut: po.cut,
        ..Default::default()
    };

    // 1. The sample (PQ's training rows) and the plan.
    let t = std::time::Instant::now();
    let mut pq_params = PqParams::new(o.pq_bytes, o.graph.seed, threads);
    pq_params.opq = o.opq;
    let sample = gather(rows, &training_rows(n, &pq_params), o.metric)?;
    let plan = plan_shards(n, dim, &sample, o, po, rows.resident_bytes(), budget)?;
    let k = plan.shards;
    // Nothing is reported or written before the plan holds.
    progress(stage::PARTITION, 0, 1);
    (rep.shards, rep.shard_phase_bytes, rep.merge_phase_bytes) = (k, plan.shard_phase_bytes, plan.merge_phase_bytes);
    let scratch_dir = po.scratch.as_deref().unwrap_or(dir).join(".partition");
    std::fs::create_dir_all(&scratch_dir).map_err(format::io_err(&scratch_dir))?;
    // Files an interrupted run left count as free: they are rewritten or
    // kept, never doubled.
    let left: u64 = std::fs::read_dir(&scratch_dir)
        .map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0);
    let free = crate::runtime::free_bytes(&scratch_dir).map(|f| f + left);
    if let Err(e) = check_scratch(&scratch_dir, k, plan.scratch_bytes, free) {
        let _ = std::fs::remove_dir(&scratch_dir);
        return Err(e);
    }
    let pq = PqCodebook::train(&sample, dim, &pq_params).map_err(|e| IndexError::Invalid(e.to_string()))?;
    drop(sample);
    progress(stage::PARTITION, 1, 1);
    rep.plan_seconds = t.elapsed().as_secs_f64();

    // 2. Pass 1: every row's PQ code and the mean (for the medoid).
    let t_pq = std::time::Instant::now();
    let m = o.pq_bytes;
    let mut codes = vec![0u8; n * m];
    let mut mean = vec![0f64; dim];
    stream(rows, o.metric, |first, block| {
        let c = pq.encode_all(block, threads);
        codes[first * m..first * m + c.len()].copy_from_slice(&c);
        for r in block.chunks_exact(dim) {
            for (a, x) in mean.iter_mut().zip(r) {
                *a += *x as f64;
            }
        }
        progress(stage::PQ, first + block.len() / dim, n);
        Ok(o.graph.check_cancel()?)
    })?;
    let mean: Vec<f32> = mean.iter().map(|a| (a / n as f64) as f32).collect();
    let pq_seconds = t_pq.elapsed().as_secs_f64();

    // 3. Pass 2: each row to the shards of its two nearest centres; the
    // medoid is the row nearest the mean (ties to the lower id).
    let t = std::time::Instant::now();
    let mut w = ShardWriter::create(&scratch_dir, k)?;
    let mut medoid = (f32::INFINITY, 0u32);
    stream(rows, o.metric, |first, block| {
        let c = block.len() / dim;
        let out = map_indexed(
            c,
            threads,
            || (),
            |_, i| {
                let x = &block[i * dim..(i + 1) * dim];
                (two_nearest(&plan.centres, dim, x), crate::kernels::l2_sq(&mean, x))
            },
        );
        for (i, ((a, b), d)) in out.into_iter().enumerate() {
            let g = (first + i) as u32;
            w.push_id(a as usize, g)?;
            w.push_id(b as usize, g)?;
            if d < medoid.0 {
                medoid = (d, g);
            }
        }
        progress(stage::ASSIGN, first + c, n);
        Ok(o.graph.check_cancel()?)
    })?;
    let sizes = w.finish_ids()?;
    rep.shard_sizes = sizes.clone();
    rep.assign_seconds = t.elapsed().as_secs_f64();

    // 4. Each shard: its rows gathered, its graph built, its lists written
    // in global ids. The peak RSS is measured up to here, then for the
    // merge on its own (the kernel's high-water mark reset in between).
    let t = std::time::Instant::now();
    let total: usize = sizes.iter().sum();
    let mut before = 0usize;
    for (s, &size) in sizes.iter().enumerate() {
        let ids_s = w.read_ids(s)?;
        let sp = shard_params(&o.graph, s);
        // A shard graph an interrupted run of the same build finished is
        // kept (the build is deterministic, so it is the graph this run
        // would make): a long build resumes where it stopped.
        let key = format!(
            "quarry shard graph v2 (no repair): n {n}, dim {dim}, metric {}, shard {s} of {k}, points {size}, ids crc32c {:08x}, R {}, L {}, alpha {}, max_candidates {}, seed {}",
            o.metric,
            crate::format::crc32c(bytemuck::cast_slice(&ids_s)),
            sp.r,
            sp.l,
            sp.alpha,
            sp.max_candidates,
            sp.seed
        );
        if w.finished(s, &key, sp.r)? {
            rep.shards_resumed += 1;
            before += size;
            progress(stage::SHARDS, before, total);
            continue;
        }
        let local: Vec<usize> = ids_s.into_iter().map(|g| g as usize).collect();
        debug_assert_eq!(local.len(), size);
        let vecs = gather(rows, &local, o.metric)?;
        let (g, _) = graph::build(&vecs, dim, o.metric, &sp, &mut |d, _| {
            progress(stage::SHARDS, before + d.min(size), total)
        })?;
        drop(vecs);
        w.write_graph(s, &g, &local, &key)?;
        drop(g);
        // The shard's vectors and graph were freed: give them back, so the
        // next shard (and the merge) start from what is really held.
        crate::runtime::release_free_memory();
        before += size;
    }
    rep.shards_seconds = t.elapsed().as_secs_f64();
    rep.shard_phase_peak_rss = crate::runtime::peak_rss_bytes();
    crate::runtime::reset_peak_rss();

    // 5. The merge: each node's lists from its shards (both files are in
    // global id order), united, cut back to R.
    let t = std::time::Instant::now();
    let mut merged = Graph::empty(n, o.graph.r, medoid.1);
    let mut readers = ShardReader::open(&w, k)?;
    let block = 65_536usize;
    let mut first = 0usize;
    while first < n {
        let c = block.min(n - first);
        let mut lists = Vec::with_capacity(c);
        for u in first..first + c {
            lists.push(readers.union(u as u32)?);
        }
        let cut = map_indexed(
            c,
            threads,
            || (),
            |_, i| cut_list((first + i) as u32, &lists[i], &pq, &codes, o, po.cut),
        );
        for (i, l) in cut.iter().enumerate() {
            merged.set_neighbors((first + i) as u32, l);
        }
        first += c;
        progress(stage::MERGE, first, n);
        o.graph.check_cancel()?;
    }
    drop(readers);
    rep.scratch_bytes = w.bytes();
    w.remove()?;
    rep.merge_seconds = t.elapsed().as_secs_f64();
    rep.repaired_links = graph::vamana::repair_without_vectors(&mut merged);
    rep.unreachable = graph::vamana::unreachable(&merged);

    // 6. The navigation tier and the files, as the one-pass build writes them.
    let mut report = BuildReport {
        n,
        estimated_bytes: plan.shard_phase_bytes.max(plan.merge_phase_bytes),
        pq_seconds,
        graph_seconds: rep.assign_seconds + rep.shards_seconds + rep.merge_seconds,
        ..Default::default()
    };
    report.mean_degree = (0..n as u32).map(|i| merged.neighbors(i).len() as f64).sum::<f64>() / n as f64;
    let read_row = |i: usize, out: &mut Vec<f32>| -> Result<()> {
        let s = out.len();
        out.resize(s + dim, 0.0);
        rows.read(i, &mut out[s..])?;
        if o.metric == Metric::Cosine {
            crate::metric::normalize(&mut out[s..]);
        }
        Ok(())
    };
    let t = std::time::Instant::now();
    progress(stage::NAV, 0, 1);
    let nav = if o.nav_sample > 0 {
        Some(NavTier::build_with(
            n,
            dim,
            o.metric,
            &NavParams::new(o.nav_sample, o.graph.seed),
            read_row,
            &mut |_, _| {},
        )?)
    } else {
        None
    };
    progress(stage::NAV, 1, 1);
    report.nav_seconds = t.elapsed().as_secs_f64();
    let parts = BuiltParts {
        pq: &pq,
        codes: &codes,
        ids,
        nav: nav.as_ref(),
    };
    let mut vector = |old: u32, out: &mut Vec<f32>| {
        out.clear();
        read_row(old as usize, out)
    };
    write_built(dir, o, dim, merged, &parts, &mut vector, &mut report, progress)?;
    rep.merge_phase_peak_rss = crate::runtime::peak_rss_bytes();
    // The build's peak: the larger phase's (the high-water mark was reset
    // between them).
    report.peak_rss_bytes = rep.shard_phase_peak_rss.max(rep.merge_phase_peak_rss);
    Ok((report, rep))
}

/// Cut node `u`'s united list back to R.
fn cut_list(u: u32, list: &[u32], pq: &PqCodebook, codes: &[u8], o: &IndexBuildOptions, cut: MergeCut) -> Vec<u32> {
    let r = o.graph.r;
    if list.len() <= r {
        return list.to_vec();
    }
    match cut {
        MergeCut::Shuffle => {
            let mut l = list.to_vec();
            l.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(
                o.graph.seed ^ (u as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            ));
            l.truncate(r);
            l
        }
        MergeCut::Prune => {
            let (dim, m) = (pq.dim(), pq.m());
            let mut known: Vec<u32> = list.to_vec();
            known.push(u);
            known.sort_unstable();
            known.dedup();
            let mut vecs = vec![0f32; known.len() * dim];
            for (k, &id) in known.iter().enumerate() {
                pq.decode(
                    &codes[id as usize * m..(id as usize + 1) * m],
                    &mut vecs[k * dim..(k + 1) * dim],
                );
            }
            let at = |id: u32| -> &[f32] {
                let k = known.binary_search(&id).expect("a candidate of this list");
                &vecs[k * dim..(k + 1) * dim]
            };
            let uv = at(u);
            let mut pool: Vec<(f32, u32)> = list.iter().map(|&c| (crate::kernels::l2_sq(uv, at(c)), c)).collect();
            crate::graph::prune::robust_prune(u, &mut pool, at, r, o.graph.alpha, o.graph.max_candidates)
        }
    }
}

#[cfg(test)]
mod tests;
