//! Rewriting a built index into a new directory with another stored vector
//! type and, optionally, nodes renamed so that graph neighbours share
//! sectors, reusing its graph, PQ codebook and navigation tier.
//!
//! Owns: [`relayout`] and [`RelayoutReport`].
//!
//! Does not touch: the source directory (it is only read), or how files
//! are written (`build::IndexFiles` writes them, as for a build).

use super::build::{stage, BuildMeta, IndexFiles};
use super::verify::read_graph;
use super::{DiskIndex, IndexError, Result};
use crate::format::{self, files, FormatError, NodeLayout, StoredType};
use crate::graph::{self, NavParams, NavTier};
use std::path::Path;

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
    let old = ix.header().layout;
    let gpath = ix.graph_path();
    let g = read_graph(&gpath, ix.header(), progress)?;
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
    let rerank = ix.manifest().rerank_file.then(|| ix.rerank_path());
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
            let p = NavParams::new(sample, ix.manifest().seed);
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
        ix.nav()
    };
    report.nav_nodes = nav.map_or(0, NavTier::len);
    let sink = IndexFiles {
        dir: dst,
        layout: new,
        metric: ix.metric(),
        graph: &g,
        order: &order,
        pq_pivots: pivots,
        pq_rotated: ix.pq().rotated(),
        codes: ix.codes(),
        ids: ix.ids(),
        nav,
        rerank: ix.manifest().rerank_file,
        colocated,
    };
    let manifest = sink.write(
        &mut vector,
        &BuildMeta {
            l_build: ix.manifest().l_build,
            alpha: ix.manifest().alpha,
            seed: ix.manifest().seed,
        },
        progress,
    )?;
    report.index_bytes = manifest.files.iter().map(|f| f.bytes).sum();
    report.seconds = t.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{build_index, verify_index};
    use crate::io::IoBackend;
    use crate::testutil::{clustered, options};
    use crate::Metric;

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
        assert!(b.manifest().colocated && b.manifest().stored == StoredType::I8);
        assert_ne!(a.ids(), b.ids(), "nodes were renamed");
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
            assert!(rc >= 0.9, "{}: recall {rc}", ix.manifest().stored);
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
        assert_eq!(c.manifest().nav_nodes, 300);
        assert_eq!(c.nav_codes().len(), 300 * c.pq().m());
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
        assert!(DiskIndex::open(&dst3).unwrap().nav().is_none());
        // The source is refused as the destination, and left intact.
        assert!(relayout(&src, &src, StoredType::I8, true, None, &mut |_, _, _| {}).is_err());
        verify_index(&src).unwrap();
    }
}
