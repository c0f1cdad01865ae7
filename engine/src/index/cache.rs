//! The hot-node cache: graph records of the nodes every query passes near,
//! held in RAM so a search need not read them, and how it is filled.
//!
//! Owns: [`NodeCache`] and the breadth-first read that fills it.
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
        Ok(cache)
    }
}
