//! The full check of an index directory: every file's checksum and the
//! graph's invariants, and streaming the graph's adjacency off disk.
//!
//! Owns: [`verify_index`], [`VerifySummary`] and `read_graph` (which
//! `relayout` also uses).
//!
//! Does not touch: any file (it only reads), or an open index's state.

use super::build::stage;
use super::{IndexError, Result};
use crate::format::{self, files, FormatError, GraphHeader};
use crate::graph;
use std::path::Path;

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
pub(super) fn read_graph(
    path: &Path,
    header: &GraphHeader,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<graph::Graph> {
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
