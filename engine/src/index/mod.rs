//! A disk index as a whole: building one into a directory, and opening it
//! for search (PQ codes, navigation tier and hot-node cache in RAM; the
//! graph stays on disk).
//!
//! Owns: the build pipeline (PQ → Vamana → navigation tier → files →
//! manifest), the RAM accounting of an open index, and the hot-node cache.

use crate::format::{self, files, FormatError, GraphHeader, GraphWriter, Manifest, NodeLayout, StoredType};
use crate::graph::{self, BuildError, BuildParams, NavParams, NavTier};
use crate::io::{self, IoBackend, ReadError};
use crate::pq::{PqCodebook, PqParams};
use crate::Metric;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Everything that can go wrong building or opening an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A file is missing, corrupt, truncated or of the wrong version.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The graph build refused or failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Reading sectors failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// Input that cannot be indexed.
    #[error("invalid input: {0}")]
    Invalid(String),
}

/// Result alias for index operations.
pub type Result<T> = std::result::Result<T, IndexError>;

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

/// Estimated peak bytes of a build of n × dim vectors.
pub fn estimate_build_bytes(n: usize, dim: usize, o: &IndexBuildOptions) -> (u64, String) {
    let (g, detail) = graph::vamana::estimate_bytes(n, dim, &o.graph);
    let pq = (n * o.pq_bytes) as u64 + (65_536 * dim * 4) as u64;
    let ids = (n * 8) as u64;
    let nav = (o.nav_sample * dim * 6) as u64;
    (
        g + pq + ids + nav,
        format!(
            "{detail} + PQ {:.2} GiB + ids/nav {:.2} GiB",
            pq as f64 / (1u64 << 30) as f64,
            (ids + nav) as f64 / (1u64 << 30) as f64
        ),
    )
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
    let (need, detail) = estimate_build_bytes(n, dim, o);
    if let Some(budget) = o.ram_budget {
        if need > budget {
            return Err(BuildError::OverBudget {
                need_gib: need as f64 / (1u64 << 30) as f64,
                budget_gib: budget as f64 / (1u64 << 30) as f64,
                detail,
            }
            .into());
        }
    }
    let layout = NodeLayout::new(dim, o.stored, o.graph.r);
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
        estimated_bytes: need,
        ..Default::default()
    };

    let t = std::time::Instant::now();
    progress(stage::PQ, 0, 1);
    let mut pq_params = PqParams::new(o.pq_bytes, o.graph.seed, o.graph.threads);
    pq_params.opq = o.opq;
    let pq = PqCodebook::train(data, dim, &pq_params).map_err(|e| IndexError::Invalid(e.to_string()))?;
    let codes = pq.encode_all(data, o.graph.threads);
    progress(stage::PQ, 1, 1);
    report.pq_seconds = t.elapsed().as_secs_f64();

    let t = std::time::Instant::now();
    let (g, stats) = graph::build(data, dim, o.metric, &o.graph, &mut |d, total| {
        progress(stage::GRAPH, d, total)
    })?;
    report.graph_seconds = t.elapsed().as_secs_f64();
    report.mean_degree = stats.mean_degree;
    report.repaired_links = stats.repaired;

    let t = std::time::Instant::now();
    progress(stage::NAV, 0, 1);
    let nav =
        (o.nav_sample > 0).then(|| NavTier::build(data, dim, o.metric, &NavParams::new(o.nav_sample, o.graph.seed)));
    progress(stage::NAV, 1, 1);
    report.nav_seconds = t.elapsed().as_secs_f64();

    let t = std::time::Instant::now();
    let (g, order, colocated) = graph::layout::arrange(g, layout.nodes_per_sector, o.colocate);
    report.sector_mate_fraction = graph::layout::mate_fraction(&g, layout.nodes_per_sector);
    let sink = IndexFiles {
        dir,
        layout,
        metric: o.metric,
        graph: &g,
        order: &order,
        pq_pivots: &pq.to_bytes(),
        pq_rotated: pq.rotated(),
        codes: &codes,
        ids,
        nav: nav.as_ref(),
        rerank: o.rerank_file,
        colocated,
    };
    let manifest = sink.write(
        &mut |old, out| {
            out.clear();
            out.extend_from_slice(&data[old as usize * dim..(old as usize + 1) * dim]);
            Ok(())
        },
        &BuildMeta {
            l_build: o.graph.l as u32,
            alpha: o.graph.alpha,
            seed: o.graph.seed,
        },
        progress,
    )?;
    report.write_seconds = t.elapsed().as_secs_f64();
    report.index_bytes = manifest.files.iter().map(|f| f.bytes).sum();
    report.peak_rss_bytes = crate::runtime::peak_rss_bytes();
    Ok(report)
}

/// Build parameters recorded in the manifest.
struct BuildMeta {
    l_build: u32,
    alpha: f32,
    seed: u64,
}

/// Everything an index directory holds, ready to be written in disk order:
/// new node `j` is old node `order[j]` (`graph` is already renamed;
/// `codes`, `ids` and `nav` are in the old naming and renamed as written).
struct IndexFiles<'a> {
    dir: &'a Path,
    layout: NodeLayout,
    metric: Metric,
    graph: &'a graph::Graph,
    order: &'a [u32],
    pq_pivots: &'a [u8],
    pq_rotated: bool,
    codes: &'a [u8],
    ids: &'a [u64],
    nav: Option<&'a NavTier>,
    rerank: bool,
    colocated: bool,
}

impl IndexFiles<'_> {
    /// Write every file, then the manifest (last, so a directory without
    /// one is an unfinished write). `vector(old, out)` fills `out` with old
    /// node `old`'s full-precision vector.
    fn write(
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

/// What a relayout did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RelayoutReport {
    /// Nodes.
    pub n: usize,
    /// Records per sector in the new file.
    pub nodes_per_sector: usize,
    /// Fraction of sector-mates that are out-neighbours, before and after.
    pub mate_fraction_before: f64,
    /// See `mate_fraction_before`.
    pub mate_fraction_after: f64,
    /// Seconds.
    pub seconds: f64,
    /// Total size of the new index on disk.
    pub index_bytes: u64,
    /// Points in the new index's navigation tier.
    pub nav_nodes: usize,
    /// Seconds spent rebuilding the navigation tier (0 when reused).
    pub nav_seconds: f64,
}

/// Rewrite the index in `src` into `dst` with vectors stored as `stored`
/// and, with `colocate`, nodes renamed so that graph neighbours share
/// sectors. The graph, PQ codebook and navigation tier are reused (no
/// rebuild); vectors come from the source's stored vectors (or its rerank
/// file when it has one, which is exact). With `nav_sample`, the navigation
/// tier is instead rebuilt over that many points (0 = none), from the same
/// vectors. `dst` must not be `src`.
pub fn relayout(
    src: &Path,
    dst: &Path,
    stored: StoredType,
    colocate: bool,
    nav_sample: Option<usize>,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<RelayoutReport> {
    use std::os::unix::fs::FileExt;
    let t = std::time::Instant::now();
    if dst.exists() && dst.canonicalize().ok() == src.canonicalize().ok() {
        return Err(IndexError::Invalid(format!(
            "relayout needs a new directory: {} is the source",
            dst.display()
        )));
    }
    let ix = DiskIndex::open(src)?;
    let n = ix.len();
    let old = ix.header.layout;
    let gpath = ix.graph_path();
    let g = read_graph(&gpath, &ix.header, progress)?;
    let file = std::fs::File::open(&gpath)
        .map_err(format::io_err(&gpath))
        .map_err(IndexError::from)?;
    let new = NodeLayout::new(old.dim, stored, old.r);
    let mut report = RelayoutReport {
        n,
        nodes_per_sector: new.nodes_per_sector,
        mate_fraction_before: graph::layout::mate_fraction(&g, new.nodes_per_sector),
        ..Default::default()
    };
    let (g, order, colocated) = graph::layout::arrange(g, new.nodes_per_sector, colocate);
    report.mate_fraction_after = graph::layout::mate_fraction(&g, new.nodes_per_sector);
    std::fs::create_dir_all(dst)
        .map_err(format::io_err(dst))
        .map_err(IndexError::from)?;
    let _ = std::fs::remove_file(dst.join(format::MANIFEST_FILE));
    let pivots = std::fs::read(src.join(files::PQ_PIVOTS))
        .map_err(format::io_err(&src.join(files::PQ_PIVOTS)))
        .map_err(IndexError::from)?;
    let pivots = &pivots[format::SECTION_HEADER_LEN..];
    // Pass 2: vectors by random access in the new order (the page cache
    // serves the source file; only one record is held at a time).
    let rerank = ix.manifest.rerank_file.then(|| ix.rerank_path());
    let rerank_file = match &rerank {
        Some(p) => Some(
            std::fs::File::open(p)
                .map_err(format::io_err(p))
                .map_err(IndexError::from)?,
        ),
        None => None,
    };
    let rl = format::RerankLayout::new(old.dim);
    let mut rec = vec![0u8; old.read_sectors() * format::SECTOR];
    let mut vector = |id: u32, out: &mut Vec<f32>| -> Result<()> {
        out.clear();
        if let (Some(f), Some(p)) = (&rerank_file, &rerank) {
            let (sec, off) = rl.locate(id as usize);
            let mut b = vec![0u8; 4 * old.dim];
            f.read_exact_at(&mut b, sec * format::SECTOR as u64 + off as u64)
                .map_err(format::io_err(p))
                .map_err(IndexError::from)?;
            out.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4"))));
            return Ok(());
        }
        let (sec, off) = old.locate(id);
        let len = old.node_size;
        file.read_exact_at(&mut rec[..off + len], sec * format::SECTOR as u64)
            .map_err(format::io_err(&gpath))
            .map_err(IndexError::from)?;
        let node = old.node(&rec[off..off + len]).map_err(|detail| FormatError::Invalid {
            path: gpath.clone(),
            field: "node record",
            detail: format!("node {id}: {detail}"),
        })?;
        node.vector.to_f32(out);
        Ok(())
    };
    let rebuilt_nav = match nav_sample {
        Some(0) => None,
        Some(sample) => {
            let t = std::time::Instant::now();
            let p = NavParams::new(sample, ix.manifest.seed);
            let nav = NavTier::build_with(
                n,
                old.dim,
                ix.metric(),
                &p,
                |i, out| vector(i as u32, out),
                &mut |d, total| progress(stage::NAV, d, total),
            )?;
            report.nav_seconds = t.elapsed().as_secs_f64();
            Some(nav)
        }
        None => None,
    };
    let nav = if nav_sample.is_some() {
        rebuilt_nav.as_ref()
    } else {
        ix.nav.as_ref()
    };
    report.nav_nodes = nav.map_or(0, NavTier::len);
    let sink = IndexFiles {
        dir: dst,
        layout: new,
        metric: ix.metric(),
        graph: &g,
        order: &order,
        pq_pivots: pivots,
        pq_rotated: ix.pq.rotated(),
        codes: &ix.codes,
        ids: &ix.ids,
        nav,
        rerank: ix.manifest.rerank_file,
        colocated,
    };
    let manifest = sink.write(
        &mut vector,
        &BuildMeta {
            l_build: ix.manifest.l_build,
            alpha: ix.manifest.alpha,
            seed: ix.manifest.seed,
        },
        progress,
    )?;
    report.index_bytes = manifest.files.iter().map(|f| f.bytes).sum();
    report.seconds = t.elapsed().as_secs_f64();
    Ok(report)
}

/// Records of hot nodes kept in RAM, keyed by internal id.
#[derive(Debug, Default)]
pub struct NodeCache {
    slot: HashMap<u32, u32>,
    /// Records, node_size bytes each, in u32 storage so they are 4-aligned.
    data: Vec<u32>,
    words: usize,
}

impl NodeCache {
    /// The cached record of `id`, if any.
    #[inline]
    pub fn get(&self, id: u32) -> Option<&[u8]> {
        self.slot
            .get(&id)
            .map(|&s| bytemuck::cast_slice(&self.data[s as usize * self.words..(s as usize + 1) * self.words]))
    }
    /// Number of cached nodes.
    pub fn len(&self) -> usize {
        self.slot.len()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.slot.is_empty()
    }
    /// RAM held in bytes.
    pub fn ram_bytes(&self) -> usize {
        self.data.len() * 4 + self.slot.len() * 16
    }
}

/// RAM held by an open index, by component.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct RamUsage {
    /// PQ codes (n × pq_bytes).
    pub pq_codes: usize,
    /// PQ centroids.
    pub pq_pivots: usize,
    /// Navigation tier.
    pub nav: usize,
    /// Hot-node cache.
    pub cache: usize,
    /// External id map.
    pub ids: usize,
}

impl RamUsage {
    /// Sum of the components, bytes.
    pub fn total(&self) -> u64 {
        (self.pq_codes + self.pq_pivots + self.nav + self.cache + self.ids) as u64
    }
}

impl std::ops::AddAssign for RamUsage {
    fn add_assign(&mut self, o: Self) {
        self.pq_codes += o.pq_codes;
        self.pq_pivots += o.pq_pivots;
        self.nav += o.nav;
        self.cache += o.cache;
        self.ids += o.ids;
    }
}

/// An index opened for search.
#[derive(Debug)]
pub struct DiskIndex {
    dir: PathBuf,
    /// Graph file header.
    pub header: GraphHeader,
    /// Manifest.
    pub manifest: Manifest,
    /// PQ codebook.
    pub pq: PqCodebook,
    /// PQ codes, n × m, huge-page backed where the kernel allows.
    pub codes: crate::hugemem::HugeBytes,
    /// Navigation tier.
    pub nav: Option<NavTier>,
    /// PQ codes of the navigation sample, in sample order
    /// ([`NavTier::sample_rows`]): the tier is scored from this compact copy.
    pub nav_codes: Vec<u8>,
    /// External ids.
    pub ids: Vec<u64>,
    /// Hot-node cache.
    pub cache: NodeCache,
}

impl DiskIndex {
    /// Open the index in `dir`, checking headers and sizes (not checksums:
    /// use [`format::verify`] for that). The graph file is not read beyond
    /// its header sector.
    pub fn open(dir: &Path) -> Result<Self> {
        let manifest = Manifest::load(dir)?;
        let gpath = dir.join(files::GRAPH);
        let header = GraphHeader::read(&gpath)?;
        let mismatch = |what: &str, a: u64, b: u64| {
            IndexError::Format(FormatError::Invalid {
                path: gpath.clone(),
                field: "shape",
                detail: format!("{what}: graph header says {a}, manifest says {b}"),
            })
        };
        if header.n != manifest.n {
            return Err(mismatch("n", header.n, manifest.n));
        }
        if header.layout.dim as u64 != manifest.dim as u64 {
            return Err(mismatch("dim", header.layout.dim as u64, manifest.dim as u64));
        }
        if header.layout.r as u64 != manifest.r as u64 {
            return Err(mismatch("R", header.layout.r as u64, manifest.r as u64));
        }
        if header.metric != manifest.metric || header.layout.stored != manifest.stored {
            return Err(IndexError::Format(FormatError::Invalid {
                path: gpath.clone(),
                field: "shape",
                detail: format!(
                    "graph header says {} / {}, manifest says {} / {}",
                    header.metric, header.layout.stored, manifest.metric, manifest.stored
                ),
            }));
        }
        let n = header.n as usize;
        let (ph, pivots) = format::read_section(&dir.join(files::PQ_PIVOTS), b"QRYPQPIV", "PQ pivots", false)?;
        let pq = PqCodebook::from_bytes(&pivots, ph.params[2] == 1).map_err(|detail| FormatError::Invalid {
            path: dir.join(files::PQ_PIVOTS),
            field: "codebook",
            detail,
        })?;
        if pq.dim() != header.layout.dim || ph.params[1] != pq.m() as u64 {
            return Err(mismatch("pq dim", pq.dim() as u64, header.layout.dim as u64));
        }
        let (ch, codes) = format::read_section_huge(&dir.join(files::PQ_CODES), b"QRYPQCOD", "PQ codes")?;
        if ch.params[0] != n as u64 || codes.len() != n * pq.m() {
            return Err(mismatch("pq codes", codes.len() as u64, (n * pq.m()) as u64));
        }
        let (_, idb) = format::read_section(&dir.join(files::IDS), b"QRYIDMAP", "id map", false)?;
        if idb.len() != 8 * n {
            return Err(mismatch("id map bytes", idb.len() as u64, 8 * n as u64));
        }
        let ids: Vec<u64> = idb
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
            .collect();
        let nav = if manifest.nav_nodes > 0 {
            let (_, nb) = format::read_section(&dir.join(files::NAV), b"QRYNAVHN", "navigation tier", false)?;
            let nav = NavTier::from_bytes(&nb, n as u64).map_err(|detail| FormatError::Invalid {
                path: dir.join(files::NAV),
                field: "navigation tier",
                detail,
            })?;
            if nav.dim() != header.layout.dim || nav.metric() != header.metric || nav.len() as u64 != manifest.nav_nodes
            {
                return Err(IndexError::Format(FormatError::Invalid {
                    path: dir.join(files::NAV),
                    field: "navigation tier",
                    detail: format!(
                        "{} points of dim {} ({}), but the index has dim {} ({}) and the manifest lists {} points",
                        nav.len(),
                        nav.dim(),
                        nav.metric(),
                        header.layout.dim,
                        header.metric,
                        manifest.nav_nodes
                    ),
                }));
            }
            Some(nav)
        } else {
            None
        };
        let nav_codes = nav.as_ref().map_or_else(Vec::new, |t| t.sample_rows(&codes, pq.m()));
        Ok(DiskIndex {
            dir: dir.into(),
            header,
            manifest,
            pq,
            codes,
            nav,
            nav_codes,
            ids,
            cache: NodeCache::default(),
        })
    }

    /// The rerank file's path (present when built with `rerank_file`).
    pub fn rerank_path(&self) -> PathBuf {
        self.dir.join(files::RERANK)
    }

    /// The graph file's path.
    pub fn graph_path(&self) -> PathBuf {
        self.dir.join(files::GRAPH)
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.header.n as usize
    }
    /// Whether the index is empty (never, for a valid file).
    pub fn is_empty(&self) -> bool {
        self.header.n == 0
    }
    /// Dimensions.
    pub fn dim(&self) -> usize {
        self.header.layout.dim
    }
    /// Metric.
    pub fn metric(&self) -> Metric {
        self.header.metric
    }

    /// RAM by component.
    pub fn ram(&self) -> RamUsage {
        RamUsage {
            pq_codes: self.codes.len(),
            pq_pivots: self.pq.byte_len(),
            nav: self.nav.as_ref().map_or(0, |t| t.ram_bytes()) + self.nav_codes.len(),
            cache: self.cache.ram_bytes(),
            ids: self.ids.len() * 8,
        }
    }

    /// Fill the hot-node cache with up to `nodes` records, in breadth-first
    /// order from the search's entry points (the navigation sample, or the
    /// medoid), which are the nodes every query passes near. Returns the
    /// number cached.
    pub fn warm_cache(&mut self, nodes: usize, backend: IoBackend) -> Result<usize> {
        let layout = self.header.layout;
        let n = self.len();
        let nodes = nodes.min(n);
        self.cache = NodeCache::default();
        if nodes == 0 {
            return Ok(0);
        }
        let words = layout.node_size / 4;
        let mut order: Vec<u32> = Vec::with_capacity(nodes);
        let mut seen = vec![false; n];
        let seeds: Vec<u32> = match &self.nav {
            Some(t) => std::iter::once(self.header.medoid as u32)
                .chain(t.nodes().iter().copied())
                .collect(),
            None => vec![self.header.medoid as u32],
        };
        let mut frontier: Vec<u32> = Vec::new();
        for s in seeds {
            if !seen[s as usize] && order.len() < nodes {
                seen[s as usize] = true;
                order.push(s);
                frontier.push(s);
            }
        }
        let mut reader = io::open_reader(&self.graph_path(), layout.read_sectors() * io::SECTOR, 64, backend)?;
        let mut cache = NodeCache {
            slot: HashMap::with_capacity(nodes),
            data: Vec::with_capacity(nodes * words),
            words,
        };
        let mut done = Vec::new();
        // Read the frontier level by level, caching each record and
        // collecting the next level from its neighbours.
        while !frontier.is_empty() {
            let mut next = Vec::new();
            for chunk in frontier.chunks(reader.capacity()) {
                for &id in chunk {
                    reader.submit(layout.locate(id).0, id as u64)?;
                }
                let mut got = 0;
                while got < chunk.len() {
                    reader.complete(1, &mut done)?;
                    for c in done.drain(..) {
                        got += 1;
                        c.result?;
                        let id = c.tag as u32;
                        let off = layout.locate(id).1;
                        let rec = &reader.buffer(c.slot)[off..off + layout.node_size];
                        let node = layout.node(rec).map_err(|detail| FormatError::Invalid {
                            path: self.graph_path(),
                            field: "node record",
                            detail: format!("node {id}: {detail}"),
                        })?;
                        for &v in node.neighbors {
                            if (v as usize) < n && !seen[v as usize] && order.len() + next.len() < nodes {
                                seen[v as usize] = true;
                                next.push(v);
                            }
                        }
                        cache.slot.insert(id, cache.slot.len() as u32);
                        cache.data.extend(
                            rec.chunks_exact(4)
                                .map(|w| u32::from_ne_bytes(w.try_into().expect("4"))),
                        );
                        reader.release(c.slot);
                    }
                }
            }
            order.extend_from_slice(&next);
            frontier = next;
        }
        self.cache = cache;
        Ok(self.cache.len())
    }
}

/// What `verify_index` checked.
#[derive(Clone, Debug, serde::Serialize)]
pub struct VerifySummary {
    /// Files whose checksums matched.
    pub files_checked: usize,
    /// Bytes read.
    pub bytes_read: u64,
    /// Nodes checked.
    pub nodes: u64,
    /// Mean out-degree.
    pub mean_degree: f64,
    /// Maximum out-degree found.
    pub max_degree: usize,
}

/// The adjacency of the graph file at `path` (whose header is `header`),
/// streamed 256 records' sectors at a time; `progress(GRAPH, done, n)`.
/// Degree ≤ R and neighbour ids < n are checked here, so a corrupt file is
/// an error naming the node, never an out-of-range index later.
fn read_graph(path: &Path, header: &GraphHeader, progress: &mut dyn FnMut(&str, usize, usize)) -> Result<graph::Graph> {
    use std::os::unix::fs::FileExt;
    let layout = header.layout;
    let n = header.n as usize;
    let invalid = |detail: String| {
        IndexError::Format(FormatError::Invalid {
            path: path.to_path_buf(),
            field: "graph",
            detail,
        })
    };
    let file = std::fs::File::open(path)
        .map_err(format::io_err(path))
        .map_err(IndexError::from)?;
    let mut g = graph::Graph::empty(n, layout.r, header.medoid as u32);
    let rs = layout.read_sectors();
    let per = layout.nodes_per_sector.max(1);
    let chunk_sectors = 256 * rs;
    let mut buf = crate::io::AlignedBuf::new(chunk_sectors * format::SECTOR);
    let total_sectors = layout.data_sectors(n as u64) as usize;
    let (mut id, mut sector) = (0usize, 0usize);
    while sector < total_sectors {
        let take = chunk_sectors.min(total_sectors - sector);
        let bytes = &mut buf.as_mut_slice()[..take * format::SECTOR];
        file.read_exact_at(bytes, (1 + sector) as u64 * format::SECTOR as u64)
            .map_err(format::io_err(path))
            .map_err(IndexError::from)?;
        for rec in 0..(take / rs) * per {
            if id >= n {
                break;
            }
            let off = (rec / per) * rs * format::SECTOR + (rec % per) * layout.node_size;
            let node = layout
                .node(&bytes[off..off + layout.node_size])
                .map_err(|d| invalid(format!("node {id}: {d}")))?;
            if let Some(bad) = node.neighbors.iter().find(|&&v| v as usize >= n) {
                return Err(invalid(format!("node {id} links to {bad}, beyond n = {n}")));
            }
            g.set_neighbors(id as u32, node.neighbors);
            id += 1;
        }
        sector += take;
        progress(stage::GRAPH, id, n);
    }
    Ok(g)
}

/// Check every checksum ([`format::verify`]) and the graph invariants:
/// degree ≤ R, neighbour ids < n, no self-loops or duplicate edges, every
/// node reachable from the medoid.
pub fn verify_index(dir: &Path) -> Result<VerifySummary> {
    let rep = format::verify(dir)?;
    let gpath = dir.join(files::GRAPH);
    let header = GraphHeader::read(&gpath)?;
    let n = header.n as usize;
    let g = read_graph(&gpath, &header, &mut |_, _, _| {})?;
    let invalid = |detail: String| {
        IndexError::Format(FormatError::Invalid {
            path: gpath.clone(),
            field: "graph",
            detail,
        })
    };
    let (max_degree, total) = (0..n as u32)
        .map(|i| g.neighbors(i).len())
        .fold((0, 0), |(m, t), d| (m.max(d), t + d));
    g.check_invariants().map_err(invalid)?;
    Ok(VerifySummary {
        files_checked: rep.files_checked,
        bytes_read: rep.bytes_read,
        nodes: n as u64,
        mean_degree: total as f64 / n as f64,
        max_degree,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::StoredType;
    use crate::testutil::{clustered, options};

    #[test]
    fn relayout_keeps_answers_ids_and_invariants() {
        use crate::search::{SearchParams, Searcher};
        let tmp = tempfile::tempdir().unwrap();
        let dim = 32;
        let (base, queries) = clustered(2500, 30, dim, 6);
        let ids: Vec<u64> = (0..2500u64).map(|i| 1_000_000 + 3 * i).collect();
        let mut o = options(Metric::L2, StoredType::F32, 16, 8);
        o.colocate = false;
        let src = tmp.path().join("src");
        build_index(
            std::borrow::Cow::Borrowed(&base[..]),
            dim,
            &ids,
            &src,
            &o,
            &mut |_, _, _| {},
        )
        .unwrap();
        let dst = tmp.path().join("dst");
        let r = relayout(&src, &dst, StoredType::I8, true, None, &mut |_, _, _| {}).unwrap();
        assert_eq!(r.n, 2500);
        // 39 records to a sector and R = 16: at most 16 of 38 mates can be
        // neighbours.
        assert!(
            r.mate_fraction_after > 0.1 && r.mate_fraction_after > 10.0 * r.mate_fraction_before,
            "{r:?}"
        );
        verify_index(&dst).expect("the relaid index verifies");
        let a = DiskIndex::open(&src).unwrap();
        let b = DiskIndex::open(&dst).unwrap();
        assert!(b.manifest.colocated && b.manifest.stored == StoredType::I8);
        assert_ne!(a.ids, b.ids, "nodes were renamed");
        let truth = crate::testutil::exact_knn(&base, &queries, dim, 10, Metric::L2);
        let p = SearchParams::new(10, 40, 4);
        let recall_of = |s: &mut Searcher<&DiskIndex>| {
            let got: Vec<Vec<u64>> = queries
                .chunks_exact(dim)
                .map(|q| {
                    s.search(q, &p)
                        .unwrap()
                        .0
                        .iter()
                        .map(|n| (n.id - 1_000_000) / 3)
                        .collect()
                })
                .collect();
            crate::testutil::recall(&got, &truth, 10)
        };
        for ix in [&a, &b] {
            let mut s = Searcher::new(ix, IoBackend::Auto, 8).unwrap();
            let rc = recall_of(&mut s);
            assert!(rc >= 0.9, "{}: recall {rc}", ix.manifest.stored);
            // A base vector finds itself under its external id.
            let own = s.search(&base[7 * dim..8 * dim], &p).unwrap().0;
            assert_eq!(own[0].id, ids[7]);
        }
        // Rebuilding the navigation tier (here over 300 points) during a
        // relayout gives a searchable index with the new tier.
        let dst2 = tmp.path().join("dst2");
        let r2 = relayout(&src, &dst2, StoredType::F16, true, Some(300), &mut |_, _, _| {}).unwrap();
        assert_eq!(r2.nav_nodes, 300);
        verify_index(&dst2).expect("the relaid index with a new tier verifies");
        let c = DiskIndex::open(&dst2).unwrap();
        assert_eq!(c.manifest.nav_nodes, 300);
        assert_eq!(c.nav_codes.len(), 300 * c.pq.m());
        let rc = recall_of(&mut Searcher::new(&c, IoBackend::Auto, 8).unwrap());
        assert!(rc >= 0.9, "new tier: recall {rc}");
        // `Some(0)` drops the tier.
        let dst3 = tmp.path().join("dst3");
        assert_eq!(
            relayout(&src, &dst3, StoredType::F16, false, Some(0), &mut |_, _, _| {})
                .unwrap()
                .nav_nodes,
            0
        );
        assert!(DiskIndex::open(&dst3).unwrap().nav.is_none());
        // The source is refused as the destination, and left intact.
        assert!(relayout(&src, &src, StoredType::I8, true, None, &mut |_, _, _| {}).is_err());
        verify_index(&src).unwrap();
    }

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
    fn over_budget_is_refused_up_front_with_the_split() {
        let tmp = tempfile::tempdir().unwrap();
        let mut o = options(Metric::L2, StoredType::F32, 16, 8);
        o.ram_budget = Some(1024);
        let (r, stages) = try_build(&o, &tmp.path().join("ix"));
        let e = r.unwrap_err().to_string();
        assert!(e.contains("GiB") && e.contains("vectors"), "{e}");
        assert!(stages.is_empty(), "a refused build started {stages:?}");
        assert!(!tmp.path().join("ix").exists());
    }
}
