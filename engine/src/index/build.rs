//! Building an index into a directory: the input checks, the memory
//! estimate and budget check, then PQ → Vamana → navigation tier → files →
//! manifest.
//!
//! Owns: [`IndexBuildOptions`], [`BuildReport`], the build's memory
//! estimate, the stage names, and writing a whole index directory in disk
//! order ([`IndexFiles`], which `relayout` reuses).
//!
//! Does not touch: an open index (`open`), the bytes of each file
//! (`format` defines them; this only calls its writers), or how the graph
//! and the navigation tier are built (`graph`).

use super::{IndexError, Result};
use crate::format::{self, files, GraphWriter, Manifest, NodeLayout, StoredType};
use crate::graph::{self, BuildParams, GraphEstimate, NavParams, NavTier};
use crate::pq::{PqCodebook, PqParams};
use crate::Metric;
use std::path::Path;

/// How to build an index.
#[derive(Clone, Debug)]
pub struct IndexBuildOptions {
    /// Metric.
    pub metric: Metric,
    /// Vamana parameters (R, L, alpha, seed, threads).
    pub graph: BuildParams,
    /// PQ bytes per vector.
    pub pq_bytes: usize,
    /// Stored vector type in the graph file.
    pub stored: StoredType,
    /// Navigation tier sample size (0 = no navigation tier).
    pub nav_sample: usize,
    /// Also write a full-precision f32 rerank file.
    pub rerank_file: bool,
    /// Learn an OPQ rotation before PQ (for data of low intrinsic rank).
    pub opq: bool,
    /// Build memory budget in bytes (None = unlimited).
    pub ram_budget: Option<u64>,
    /// Rename nodes so that graph neighbours share sectors (when several
    /// records fit in one).
    pub colocate: bool,
}

impl IndexBuildOptions {
    /// PQ bytes when none are asked for: a quarter of the dimension
    /// (4 dimensions per code byte), at most 128 (the server and
    /// `quarryctl build` share it).
    pub fn default_pq_bytes(dim: usize) -> usize {
        (dim / 4).clamp(1, 128)
    }

    /// Stored vector type when none is asked for: f16 from 512
    /// dimensions (halves the records, and so the reads of records that
    /// span sectors, at a recall cost below what these sizes notice),
    /// else f32.
    pub fn default_stored(dim: usize) -> StoredType {
        if dim >= 512 {
            StoredType::F16
        } else {
            StoredType::F32
        }
    }
}

/// What a build did and what it cost.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct BuildReport {
    /// Vectors indexed.
    pub n: usize,
    /// Seconds per stage.
    pub pq_seconds: f64,
    /// Graph build seconds.
    pub graph_seconds: f64,
    /// Navigation tier seconds.
    pub nav_seconds: f64,
    /// File writing seconds.
    pub write_seconds: f64,
    /// Mean out-degree.
    pub mean_degree: f64,
    /// Links added to repair connectivity.
    pub repaired_links: usize,
    /// Estimated peak bytes (checked against the budget before starting).
    pub estimated_bytes: u64,
    /// Peak RSS measured at the end of the build.
    pub peak_rss_bytes: u64,
    /// Total index size on disk.
    pub index_bytes: u64,
    /// Fraction of sector-mates that are out-neighbours (0 with one record
    /// per sector).
    pub sector_mate_fraction: f64,
}

/// Estimated peak bytes of a build, by part: what the budget check
/// compares, and what a refused build's message breaks down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// The Vamana build (vectors, adjacency, visited sets, batch buffers).
    pub graph: GraphEstimate,
    /// PQ codes (n × pq_bytes) and the training sample (65,536 × dim f32).
    pub pq_bytes: u64,
    /// External ids, n × u64.
    pub ids_bytes: u64,
    /// The navigation tier, sample × dim × 6.
    pub nav_bytes: u64,
}

impl MemoryEstimate {
    /// The estimate for a build of n × dim vectors with `o`.
    pub fn for_build(n: usize, dim: usize, o: &IndexBuildOptions) -> Self {
        MemoryEstimate {
            graph: GraphEstimate::for_build(n, dim, &o.graph),
            pq_bytes: (n * o.pq_bytes) as u64 + (65_536 * dim * 4) as u64,
            ids_bytes: (n * 8) as u64,
            // A tier samples at most every point (`usize::MAX` asks each
            // segment for the default of its size).
            nav_bytes: (o.nav_sample.min(n) * dim * 6) as u64,
        }
    }

    /// Sum of the parts, bytes.
    pub fn total(&self) -> u64 {
        self.graph.total() + self.pq_bytes + self.ids_bytes + self.nav_bytes
    }
}

/// The breakdown in GiB (ids and navigation tier together), as build
/// errors and `quarryctl build` print it.
impl std::fmt::Display for MemoryEstimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} + PQ {:.2} GiB + ids/nav {:.2} GiB",
            self.graph,
            self.pq_bytes as f64 / (1u64 << 30) as f64,
            (self.ids_bytes + self.nav_bytes) as f64 / (1u64 << 30) as f64
        )
    }
}

/// Stage names passed to the progress callback.
pub mod stage {
    /// Training PQ.
    pub const PQ: &str = "pq";
    /// Building the graph.
    pub const GRAPH: &str = "graph";
    /// Building the navigation tier.
    pub const NAV: &str = "nav";
    /// Writing files.
    pub const WRITE: &str = "write";
    /// Partitioned build: reading the sample and planning the shards.
    pub const PARTITION: &str = "partition";
    /// Partitioned build: each point to the shards of its 2 nearest centres.
    pub const ASSIGN: &str = "assign";
    /// Partitioned build: the shards' graphs (points over all shards).
    pub const SHARDS: &str = "shards";
    /// Partitioned build: merging the shard graphs.
    pub const MERGE: &str = "merge";
}

/// Build an index over `data` (n × dim row-major f32, finite; borrowed, e.g.
/// from a memory-mapped file, or owned) with external
/// ids `ids` into `dir`. For cosine, `data` is normalised here.
/// `progress(stage, done, total)` reports long stages.
pub fn build_index(
    data: std::borrow::Cow<'_, [f32]>,
    dim: usize,
    ids: &[u64],
    dir: &Path,
    o: &IndexBuildOptions,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<BuildReport> {
    let n = data.len() / dim.max(1);
    if dim == 0 || n == 0 || data.len() != n * dim {
        return Err(IndexError::Invalid(format!(
            "{} floats is not a whole number of {dim}-d vectors",
            data.len()
        )));
    }
    if ids.len() != n {
        return Err(IndexError::Invalid(format!("{} ids for {n} vectors", ids.len())));
    }
    if let Some((i, _)) = data.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(IndexError::Invalid(format!(
            "vector {} has a NaN or infinite value at dimension {}",
            i / dim,
            i % dim
        )));
    }
    // Parameters are checked before the long stages start, not after PQ
    // training.
    o.graph.validate()?;
    let est = MemoryEstimate::for_build(n, dim, o);
    let need = est.total();
    // The budget check, before anything is written: over it, the
    // partitioned build (`partition`), which refuses with the figures if
    // even that cannot fit.
    if o.ram_budget.is_some_and(|b| need > b) {
        tracing::info!(
            vectors = n,
            one_pass_bytes = need,
            budget_bytes = o.ram_budget,
            "over the build budget: partitioned build"
        );
        let rows = super::partition::SliceRows { data: &data, dim };
        let (report, _) = super::partition::build_partitioned(
            &rows,
            ids,
            dir,
            o,
            &super::partition::PartitionOptions::default(),
            progress,
        )?;
        return Ok(report);
    }
    build_in_ram(data, dim, ids, dir, o, need, progress)
}

/// [`build_index`] over the whole data set at once, its input and budget
/// already checked: PQ, the Vamana graph and the navigation tier built in
/// RAM, then every file written. `estimated_bytes` is reported as is.
fn build_in_ram(
    data: std::borrow::Cow<'_, [f32]>,
    dim: usize,
    ids: &[u64],
    dir: &Path,
    o: &IndexBuildOptions,
    estimated_bytes: u64,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<BuildReport> {
    let n = ids.len();
    std::fs::create_dir_all(dir)
        .map_err(format::io_err(dir))
        .map_err(IndexError::from)?;
    // An unfinished build has no manifest: remove any old one first.
    let _ = std::fs::remove_file(dir.join(format::MANIFEST_FILE));
    // Cosine needs normalised vectors, so its data is copied once; other
    // metrics build straight from the caller's (possibly memory-mapped)
    // vectors, which keeps one copy of them resident, not two.
    let mut data = data;
    if o.metric == Metric::Cosine {
        for row in data.to_mut().chunks_exact_mut(dim) {
            crate::metric::normalize(row);
        }
    }
    let data: &[f32] = &data;
    let mut report = BuildReport {
        n,
        estimated_bytes,
        ..Default::default()
    };

    let t = std::time::Instant::now();
    progress(stage::PQ, 0, 1);
    let mut pq_params = PqParams::new(o.pq_bytes, o.graph.seed, o.graph.threads);
    pq_params.opq = o.opq;
    let pq = PqCodebook::train(data, dim, &pq_params).map_err(|e| IndexError::Invalid(e.to_string()))?;
    let codes = pq.encode_all(data, o.graph.threads);
    progress(stage::PQ, 1, 1);
    o.graph.check_cancel()?;
    report.pq_seconds = t.elapsed().as_secs_f64();

    let t = std::time::Instant::now();
    let (g, stats) = graph::build(data, dim, o.metric, &o.graph, &mut |d, total| {
        progress(stage::GRAPH, d, total)
    })?;
    report.graph_seconds = t.elapsed().as_secs_f64();
    report.mean_degree = stats.mean_degree;
    report.repaired_links = stats.repaired;

    let t = std::time::Instant::now();
    o.graph.check_cancel()?;
    progress(stage::NAV, 0, 1);
    let nav =
        (o.nav_sample > 0).then(|| NavTier::build(data, dim, o.metric, &NavParams::new(o.nav_sample, o.graph.seed)));
    progress(stage::NAV, 1, 1);
    o.graph.check_cancel()?;
    report.nav_seconds = t.elapsed().as_secs_f64();

    let mut vector = |old: u32, out: &mut Vec<f32>| {
        out.clear();
        out.extend_from_slice(&data[old as usize * dim..(old as usize + 1) * dim]);
        Ok(())
    };
    let files = BuiltParts {
        pq: &pq,
        codes: &codes,
        ids,
        nav: nav.as_ref(),
    };
    write_built(dir, o, dim, g, &files, &mut vector, &mut report, progress)?;
    report.peak_rss_bytes = crate::runtime::peak_rss_bytes();
    Ok(report)
}

/// What a build made besides its graph, for [`write_built`].
pub(super) struct BuiltParts<'a> {
    pub(super) pq: &'a PqCodebook,
    pub(super) codes: &'a [u8],
    pub(super) ids: &'a [u64],
    pub(super) nav: Option<&'a NavTier>,
}

/// The last stage of a build, one-pass or partitioned: `g` laid out on
/// disk (co-located when asked and several records share a sector), every
/// file written (`vector(old, out)` gives a node's full vector), the
/// report's layout and write figures filled in.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_built(
    dir: &Path,
    o: &IndexBuildOptions,
    dim: usize,
    g: graph::Graph,
    parts: &BuiltParts<'_>,
    vector: &mut dyn FnMut(u32, &mut Vec<f32>) -> Result<()>,
    report: &mut BuildReport,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<()> {
    let t = std::time::Instant::now();
    let layout = NodeLayout::new(dim, o.stored, o.graph.r);
    let (g, order, colocated) = graph::layout::arrange(g, layout.nodes_per_sector, o.colocate);
    report.sector_mate_fraction = graph::layout::mate_fraction(&g, layout.nodes_per_sector);
    let sink = IndexFiles {
        dir,
        layout,
        metric: o.metric,
        graph: &g,
        order: &order,
        pq_pivots: &parts.pq.to_bytes(),
        pq_rotated: parts.pq.rotated(),
        codes: parts.codes,
        ids: parts.ids,
        nav: parts.nav,
        rerank: o.rerank_file,
        colocated,
    };
    let manifest = sink.write(
        vector,
        &BuildMeta {
            l_build: o.graph.l as u32,
            alpha: o.graph.alpha,
            seed: o.graph.seed,
        },
        progress,
    )?;
    report.write_seconds = t.elapsed().as_secs_f64();
    report.index_bytes = manifest.files.iter().map(|f| f.bytes).sum();
    Ok(())
}

/// Build parameters recorded in the manifest.
pub(super) struct BuildMeta {
    pub(super) l_build: u32,
    pub(super) alpha: f32,
    pub(super) seed: u64,
}

/// Everything an index directory holds, ready to be written in disk order:
/// new node `j` is old node `order[j]` (`graph` is already renamed;
/// `codes`, `ids` and `nav` are in the old naming and renamed as written).
pub(super) struct IndexFiles<'a> {
    pub(super) dir: &'a Path,
    pub(super) layout: NodeLayout,
    pub(super) metric: Metric,
    pub(super) graph: &'a graph::Graph,
    pub(super) order: &'a [u32],
    pub(super) pq_pivots: &'a [u8],
    pub(super) pq_rotated: bool,
    pub(super) codes: &'a [u8],
    pub(super) ids: &'a [u64],
    pub(super) nav: Option<&'a NavTier>,
    pub(super) rerank: bool,
    pub(super) colocated: bool,
}

impl IndexFiles<'_> {
    /// Write every file, then the manifest (last, so a directory without
    /// one is an unfinished write). `vector(old, out)` fills `out` with old
    /// node `old`'s full-precision vector.
    pub(super) fn write(
        &self,
        vector: &mut dyn FnMut(u32, &mut Vec<f32>) -> Result<()>,
        meta: &BuildMeta,
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> Result<Manifest> {
        let (dir, n, dim) = (self.dir, self.order.len(), self.layout.dim);
        let mut v = Vec::with_capacity(dim);
        let mut w = GraphWriter::create(&dir.join(files::GRAPH), self.layout, self.metric, n as u64)?;
        for (j, &old) in self.order.iter().enumerate() {
            vector(old, &mut v)?;
            w.push(&v, self.graph.neighbors(j as u32))?;
            if j % 65_536 == 0 {
                progress(stage::WRITE, j, n);
            }
        }
        w.finish(self.graph.medoid as u64)?;
        let m = self.codes.len() / n.max(1);
        format::write_section(
            &dir.join(files::PQ_PIVOTS),
            b"QRYPQPIV",
            [dim as u64, m as u64, self.pq_rotated as u64],
            self.pq_pivots,
        )?;
        let mut codes = Vec::with_capacity(self.codes.len());
        let mut ids = Vec::with_capacity(n);
        for &old in self.order {
            codes.extend_from_slice(&self.codes[old as usize * m..(old as usize + 1) * m]);
            ids.push(self.ids[old as usize]);
        }
        format::write_section(&dir.join(files::PQ_CODES), b"QRYPQCOD", [n as u64, m as u64, 0], &codes)?;
        drop(codes);
        format::write_section(
            &dir.join(files::IDS),
            b"QRYIDMAP",
            [n as u64, 0, 0],
            bytemuck::cast_slice(&ids),
        )?;
        let mut names = vec![files::GRAPH, files::PQ_PIVOTS, files::PQ_CODES, files::IDS];
        if let Some(nav) = self.nav {
            let nav = nav.relabeled(&graph::layout::inverse(self.order));
            format::write_section(
                &dir.join(files::NAV),
                b"QRYNAVHN",
                [nav.len() as u64, 0, 0],
                &nav.to_bytes(),
            )?;
            names.push(files::NAV);
        }
        if self.rerank {
            // The payload starts with padding so vectors sit on 4 KiB sector
            // boundaries of the file, as O_DIRECT requires (docs/format.md).
            let rl = format::RerankLayout::new(dim);
            let mut w = format::SectionWriter::create(
                &dir.join(files::RERANK),
                b"QRYRERNK",
                [n as u64, dim as u64, rl.per_sector as u64],
            )?;
            w.write(&vec![0u8; format::SECTOR - format::SECTION_HEADER_LEN])?;
            let mut sector = vec![0u8; rl.read_len()];
            let mut i = 0;
            while i < n {
                sector.fill(0);
                let take = if rl.sectors_per_vector == 1 {
                    rl.per_sector.min(n - i)
                } else {
                    1
                };
                for k in 0..take {
                    vector(self.order[i + k], &mut v)?;
                    sector[k * 4 * dim..(k + 1) * 4 * dim].copy_from_slice(bytemuck::cast_slice(&v));
                }
                w.write(&sector)?;
                i += take;
            }
            w.finish()?;
            names.push(files::RERANK);
        }
        progress(stage::WRITE, n, n);
        let manifest = Manifest {
            format_version: format::FORMAT_VERSION,
            n: n as u64,
            dim: dim as u32,
            metric: self.metric,
            stored: self.layout.stored,
            r: self.layout.r as u32,
            l_build: meta.l_build,
            alpha: meta.alpha,
            pq_bytes: m as u32,
            seed: meta.seed,
            nav_nodes: self.nav.map_or(0, |t| t.len() as u64),
            rerank_file: self.rerank,
            colocated: self.colocated,
            files: names
                .iter()
                .map(|f| Manifest::entry(dir, f))
                .collect::<std::result::Result<_, _>>()?,
        };
        manifest.save(dir)?;
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{clustered, options};

    /// Build a tiny index; the error and the stages that were started.
    fn try_build(o: &IndexBuildOptions, dir: &Path) -> (Result<BuildReport>, Vec<String>) {
        let (base, _) = clustered(300, 0, 16, 5);
        let ids: Vec<u64> = (0..300).collect();
        let mut stages = Vec::new();
        let r = build_index(
            std::borrow::Cow::Borrowed(&base[..]),
            16,
            &ids,
            dir,
            o,
            &mut |s, _, _| stages.push(s.to_string()),
        );
        (r, stages)
    }

    #[test]
    fn bad_graph_params_are_refused_before_any_stage() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = options(Metric::L2, StoredType::F32, 32, 8);
        o.graph.l = 16;
        let (r, stages) = try_build(&o, &tmp.path().join("ix"));
        let e = r.unwrap_err().to_string();
        assert!(e.contains("L ≥ R") && e.contains("R 32, L 16"), "{e}");
        assert!(stages.is_empty(), "a refused build started {stages:?}");
        assert!(!tmp.path().join("ix").exists());
        // The same options with L ≥ R build.
        o.graph.l = 64;
        let (r, stages) = try_build(&o, &tmp.path().join("ix"));
        r.unwrap();
        assert!(!stages.is_empty());
    }

    #[test]
    fn below_even_the_partitioned_build_is_refused_up_front_with_the_figures() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = options(Metric::L2, StoredType::F32, 16, 8);
        o.ram_budget = Some(1024);
        let (r, stages) = try_build(&o, &tmp.path().join("ix"));
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("GiB") && e.contains("merged graph") && e.contains("vectors in RAM"),
            "{e}"
        );
        assert!(stages.is_empty(), "a refused build started {stages:?}");
        assert!(!tmp.path().join("ix").exists());
    }

    #[test]
    fn memory_estimate_sums_its_parts_and_prints_the_breakdown() {
        // 1M × 1024-d, R 64, L 100, 8 threads, 128 B PQ, 10,000 nav points.
        let mut o = options(Metric::L2, StoredType::F32, 64, 128);
        o.graph.l = 100;
        o.graph.threads = 8;
        o.nav_sample = 10_000;
        let mut unbounded = o.clone();
        unbounded.nav_sample = usize::MAX;
        let small = MemoryEstimate::for_build(1000, 1024, &unbounded);
        assert_eq!(
            small.nav_bytes,
            1000 * 1024 * 6,
            "the default-per-segment sentinel counts at most every point"
        );
        let e = MemoryEstimate::for_build(1_000_000, 1024, &o);
        assert_eq!(
            e.graph,
            GraphEstimate {
                vectors_bytes: 4_096_000_000,
                graph_bytes: 260_000_000,
                visited_bytes: 32_000_000,
                batch_bytes: 314_240_000,
            }
        );
        assert_eq!(
            (e.pq_bytes, e.ids_bytes, e.nav_bytes),
            (396_435_456, 8_000_000, 61_440_000)
        );
        assert_eq!(e.total(), 5_168_115_456);
        assert_eq!(
            e.to_string(),
            "vectors 3.81 GiB + graph 0.24 GiB + visited sets 0.03 GiB + batch buffers 0.29 GiB \
             + PQ 0.37 GiB + ids/nav 0.06 GiB"
        );
    }
}
