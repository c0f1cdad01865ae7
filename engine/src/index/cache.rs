//! The hot-node cache: graph records of the nodes every query passes near,
//! held in RAM so a search need not read them, and how it is filled.
//!
//! Owns: [`NodeCache`], the breadth-first read that fills part of it and
//! the sequential read that fills all of it (a RAM-resident index).
//!
//! Does not touch: the index it caches (read only, through `DiskIndex`),
//! or how a search uses a cached record (`search`).

use super::{DiskIndex, Result};
use crate::format::FormatError;
use crate::io::{self, IoBackend};
use std::collections::HashMap;

/// Records of hot nodes kept in RAM, keyed by internal id.
#[derive(Debug, Default)]
pub struct NodeCache {
    slot: Slots,
    /// Records, node_size bytes each, in u32 storage so they are 4-aligned.
    data: Vec<u32>,
    words: usize,
}

/// Where a node's record sits in `data`.
#[derive(Debug)]
enum Slots {
    /// A few nodes: a map (about 16 bytes per cached node).
    Sparse(HashMap<u32, u32>),
    /// A large share of the index: the slot of every node by id
    /// ([`ABSENT`] if not cached), 4 bytes per node of the index, and
    /// one array load per lookup instead of a hash.
    Dense { slot: Vec<u32>, cached: usize },
    /// Every node, its record at its own id.
    All(usize),
}

impl Default for Slots {
    fn default() -> Self {
        Slots::Sparse(HashMap::new())
    }
}

const ABSENT: u32 = u32::MAX;

impl NodeCache {
    /// The cached record of `id`, if any.
    #[inline]
    pub fn get(&self, id: u32) -> Option<&[u8]> {
        let s = match &self.slot {
            Slots::Sparse(m) => *m.get(&id)?,
            Slots::Dense { slot, .. } => match slot.get(id as usize) {
                Some(&s) if s != ABSENT => s,
                _ => return None,
            },
            Slots::All(n) if (id as usize) < *n => id,
            Slots::All(_) => return None,
        };
        Some(bytemuck::cast_slice(
            &self.data[s as usize * self.words..(s as usize + 1) * self.words],
        ))
    }
    /// Number of cached nodes.
    pub fn len(&self) -> usize {
        match &self.slot {
            Slots::Sparse(m) => m.len(),
            Slots::Dense { cached, .. } => *cached,
            Slots::All(n) => *n,
        }
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether every node of the index is cached (a search reads nothing).
    pub fn holds_all(&self) -> bool {
        matches!(self.slot, Slots::All(_))
    }
    /// RAM held in bytes.
    pub fn ram_bytes(&self) -> usize {
        self.data.len() * 4
            + match &self.slot {
                Slots::Sparse(m) => m.len() * 16,
                Slots::Dense { slot, .. } => slot.len() * 4,
                Slots::All(_) => 0,
            }
    }

    fn insert(&mut self, id: u32, rec: &[u8]) {
        let s = self.len() as u32;
        match &mut self.slot {
            Slots::Sparse(m) => {
                m.insert(id, s);
            }
            Slots::Dense { slot, cached } => {
                slot[id as usize] = s;
                *cached += 1;
            }
            Slots::All(_) => unreachable!("a whole-index cache is filled by load_all"),
        }
        self.data.extend(
            rec.chunks_exact(4)
                .map(|w| u32::from_ne_bytes(w.try_into().expect("4"))),
        );
    }

    /// Every record of `index`, read front to back in large sequential
    /// reads (a RAM-resident index: no lookups, no reads per query).
    pub(super) fn load_all(index: &DiskIndex) -> Result<Self> {
        use std::os::unix::fs::FileExt;
        let layout = index.header().layout;
        let n = index.len();
        let words = layout.node_size / 4;
        let path = index.graph_path();
        let file = std::fs::File::open(&path).map_err(crate::format::io_err(&path))?;
        let need = (layout.data_sectors(n as u64) + 1) * io::SECTOR as u64;
        let have = file.metadata().map_err(crate::format::io_err(&path))?.len();
        if have < need {
            return Err(FormatError::Invalid {
                path: path.clone(),
                field: "graph file",
                detail: format!("{have} bytes, but its {n} records need {need}: the file was cut short"),
            }
            .into());
        }
        let mut data: Vec<u32> = Vec::new();
        data.try_reserve_exact(n * words).map_err(|_| FormatError::Invalid {
            path: path.clone(),
            field: "node cache",
            detail: format!("cannot allocate {} bytes to hold every record", n * layout.node_size),
        })?;
        // Whole sectors per chunk, 4 MiB at most; a record never spans
        // two sectors unless it spans whole ones.
        let per_read = (4 << 20) / io::SECTOR / layout.read_sectors() * layout.read_sectors();
        let mut buf = vec![0u8; per_read * io::SECTOR];
        let mut id = 0u32;
        while (id as usize) < n {
            let (first, _) = layout.locate(id);
            let sectors = (layout.data_sectors(n as u64) + 1 - first).min(per_read as u64) as usize;
            let chunk = &mut buf[..sectors * io::SECTOR];
            file.read_exact_at(chunk, first * io::SECTOR as u64)
                .map_err(crate::format::io_err(&path))?;
            while (id as usize) < n {
                let (sec, off) = layout.locate(id);
                if sec + layout.read_sectors() as u64 > first + sectors as u64 {
                    break;
                }
                let at = (sec - first) as usize * io::SECTOR + off;
                let rec = &chunk[at..at + layout.node_size];
                layout.node(rec).map_err(|detail| FormatError::Invalid {
                    path: path.clone(),
                    field: "node record",
                    detail: format!("node {id}: {detail}"),
                })?;
                data.extend(
                    rec.chunks_exact(4)
                        .map(|w| u32::from_ne_bytes(w.try_into().expect("4"))),
                );
                id += 1;
            }
        }
        Ok(NodeCache {
            slot: Slots::All(n),
            data,
            words,
        })
    }

    /// Up to `nodes` records of `index`, read in breadth-first order from
    /// the search's entry points (the navigation sample, or the medoid).
    pub(super) fn load(index: &DiskIndex, nodes: usize, backend: IoBackend) -> Result<Self> {
        let layout = index.header().layout;
        let n = index.len();
        let nodes = nodes.min(n);
        if nodes == 0 {
            return Ok(NodeCache::default());
        }
        let words = layout.node_size / 4;
        let mut order: Vec<u32> = Vec::with_capacity(nodes);
        let mut seen = vec![false; n];
        let seeds: Vec<u32> = match index.nav() {
            Some(t) => std::iter::once(index.header().medoid as u32)
                .chain(t.nodes().iter().copied())
                .collect(),
            None => vec![index.header().medoid as u32],
        };
        let mut frontier: Vec<u32> = Vec::new();
        for s in seeds {
            if !seen[s as usize] && order.len() < nodes {
                seen[s as usize] = true;
                order.push(s);
                frontier.push(s);
            }
        }
        let mut reader = io::open_reader(&index.graph_path(), layout.read_sectors() * io::SECTOR, 64, backend)?;
        // A map costs about 16 bytes per cached node, the dense array 4 per
        // node of the index: dense once a quarter of the index is cached.
        let slot = if nodes >= n / 4 {
            Slots::Dense {
                slot: vec![ABSENT; n],
                cached: 0,
            }
        } else {
            Slots::Sparse(HashMap::with_capacity(nodes))
        };
        let mut cache = NodeCache {
            slot,
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
                            path: index.graph_path(),
                            field: "node record",
                            detail: format!("node {id}: {detail}"),
                        })?;
                        for &v in node.neighbors {
                            if (v as usize) < n && !seen[v as usize] && order.len() + next.len() < nodes {
                                seen[v as usize] = true;
                                next.push(v);
                            }
                        }
                        cache.insert(id, rec);
                        reader.release(c.slot);
                    }
                }
            }
            order.extend_from_slice(&next);
            frontier = next;
        }
        Ok(cache)
    }
}
