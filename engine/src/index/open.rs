//! An index opened for search: the graph header and manifest checked
//! against each other, the PQ codebook and codes, the navigation tier and
//! the external ids in RAM, and the hot-node cache; the graph itself stays
//! on disk.
//!
//! Owns: [`DiskIndex`] — opening and checking a directory, what it holds
//! in RAM and warming its cache.
//!
//! Does not touch: any file (an open index only reads), the query loop
//! (`search` reads through the accessors here), or checksums (`verify`).

use super::{IndexError, NodeCache, RamUsage, Result};
use crate::format::{self, files, FormatError, GraphHeader, Manifest};
use crate::graph::NavTier;
use crate::io::IoBackend;
use crate::pq::PqCodebook;
use crate::Metric;
use std::path::{Path, PathBuf};

/// An index opened for search.
#[derive(Debug)]
pub struct DiskIndex {
    dir: PathBuf,
    /// Graph file header.
    header: GraphHeader,
    /// Manifest.
    manifest: Manifest,
    /// PQ codebook.
    pq: PqCodebook,
    /// PQ codes, n × m, huge-page backed where the kernel allows.
    codes: crate::hugemem::HugeBytes,
    /// Navigation tier.
    nav: Option<NavTier>,
    /// PQ codes of the navigation sample, in sample order
    /// ([`NavTier::sample_rows`]): the tier is scored from this compact copy.
    nav_codes: Vec<u8>,
    /// External ids.
    ids: Vec<u64>,
    /// Hot-node cache.
    cache: NodeCache,
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

    /// The graph file's header.
    #[inline]
    pub fn header(&self) -> &GraphHeader {
        &self.header
    }
    /// The manifest.
    #[inline]
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    /// The PQ codebook.
    #[inline]
    pub fn pq(&self) -> &PqCodebook {
        &self.pq
    }
    /// The PQ codes, n × [`PqCodebook::m`] bytes, row `i` for internal id `i`.
    #[inline]
    pub fn codes(&self) -> &[u8] {
        &self.codes
    }
    /// The navigation tier, if the index has one.
    #[inline]
    pub fn nav(&self) -> Option<&NavTier> {
        self.nav.as_ref()
    }
    /// The PQ codes of the navigation sample, in sample order
    /// ([`NavTier::sample_rows`]); empty without a tier.
    #[inline]
    pub fn nav_codes(&self) -> &[u8] {
        &self.nav_codes
    }
    /// The external ids, indexed by internal id.
    #[inline]
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }
    /// Replace the external ids (same count): a collection adopting an
    /// index built before collections existed names its nodes by slot.
    pub(crate) fn replace_ids(&mut self, ids: Vec<u64>) {
        assert_eq!(ids.len(), self.ids.len(), "one id per node");
        self.ids = ids;
    }
    /// The hot-node cache (empty until [`warm_cache`](Self::warm_cache)).
    #[inline]
    pub fn cache(&self) -> &NodeCache {
        &self.cache
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
    /// medoid), which are the nodes every query passes near. `nodes` at or
    /// past the index's size holds the whole index in RAM, read front to
    /// back (every node, reachable or not), and searches read nothing.
    /// Returns the number cached.
    pub fn warm_cache(&mut self, nodes: usize, backend: IoBackend) -> Result<usize> {
        // The old cache is dropped first, so the two are never held at
        // once (and a failed read leaves none).
        self.cache = NodeCache::default();
        self.cache = if nodes >= self.len() && !self.is_empty() {
            NodeCache::load_all(self)?
        } else {
            NodeCache::load(self, nodes, backend)?
        };
        Ok(self.cache.len())
    }
}
