//! The partitioned build's scratch files: per shard, its points' global
//! ids (`shard-<s>.ids`, u32 LE, ascending), its graph in global ids
//! (`shard-<s>.graph`: per point a u32 degree then `r` u32 slots) and, once
//! that graph is synced in place, `shard-<s>.done` holding the build's key
//! (so an interrupted build resumes after its last finished shard). They
//! are written and read strictly in order, so the merge streams them.
//!
//! Owns: creating, reading back and removing those files, and their byte
//! count. Does not own: what goes in them (`partition`).

use super::super::{IndexError, Result};
use crate::format;
use crate::graph::Graph;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IndexError + '_ {
    move |e| IndexError::from(format::io_err(path)(e))
}

/// Writes the shard files.
pub struct ShardWriter {
    dir: PathBuf,
    ids: Vec<BufWriter<File>>,
    counts: Vec<usize>,
    widths: Vec<usize>,
}

impl ShardWriter {
    fn ids_path(&self, s: usize) -> PathBuf {
        self.dir.join(format!("shard-{s}.ids"))
    }

    fn graph_path(&self, s: usize) -> PathBuf {
        self.dir.join(format!("shard-{s}.graph"))
    }

    fn done_path(&self, s: usize) -> PathBuf {
        self.dir.join(format!("shard-{s}.done"))
    }

    /// Shard `s`'s graph is on disk, whole, from a build with exactly
    /// `key` (its `.done` file, written after the graph was synced and
    /// renamed into place, holds the key); its width is then `r`.
    pub fn finished(&mut self, s: usize, key: &str, r: usize) -> Result<bool> {
        let done = std::fs::read_to_string(self.done_path(s)).unwrap_or_default();
        let want = (self.counts[s] * (r + 1) * 4) as u64;
        let len = std::fs::metadata(self.graph_path(s)).map(|m| m.len()).ok();
        if done == key && len == Some(want) {
            self.widths[s] = r;
            return Ok(true);
        }
        Ok(false)
    }

    /// `k` empty id lists in `dir` (which exists).
    pub fn create(dir: &Path, k: usize) -> Result<ShardWriter> {
        let mut w = ShardWriter {
            dir: dir.to_path_buf(),
            ids: Vec::with_capacity(k),
            counts: vec![0; k],
            widths: vec![0; k],
        };
        for s in 0..k {
            let p = w.ids_path(s);
            let f = File::create(&p).map_err(io(&p))?;
            w.ids.push(BufWriter::with_capacity(1 << 20, f));
        }
        Ok(w)
    }

    /// Append global id `g` to shard `s` (ids arrive ascending).
    pub fn push_id(&mut self, s: usize, g: u32) -> Result<()> {
        self.counts[s] += 1;
        let p = self.dir.clone();
        self.ids[s].write_all(&g.to_le_bytes()).map_err(io(&p))
    }

    /// Flush the id lists; their lengths.
    pub fn finish_ids(&mut self) -> Result<Vec<usize>> {
        for (s, w) in std::mem::take(&mut self.ids).into_iter().enumerate() {
            let p = self.ids_path(s);
            w.into_inner().map_err(|e| io(&p)(e.into_error()))?;
        }
        Ok(self.counts.clone())
    }

    /// Shard `s`'s global ids.
    pub fn read_ids(&self, s: usize) -> Result<Vec<u32>> {
        let p = self.ids_path(s);
        let b = std::fs::read(&p).map_err(io(&p))?;
        if b.len() != self.counts[s] * 4 {
            return Err(IndexError::Invalid(format!(
                "{}: {} bytes, expected {} (a scratch file changed under the build)",
                p.display(),
                b.len(),
                self.counts[s] * 4
            )));
        }
        Ok(b.chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect())
    }

    /// Write shard `s`'s graph `g` (local ids) in global ids: local `i` is
    /// global `global[i]`; then (synced, renamed into place) its `.done`
    /// file holding `key`.
    pub fn write_graph(&mut self, s: usize, g: &Graph, global: &[usize], key: &str) -> Result<()> {
        let _ = std::fs::remove_file(self.done_path(s));
        let p = self.dir.join(format!("shard-{s}.graph.tmp"));
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&p).map_err(io(&p))?);
        let mut rec = vec![0u32; g.r + 1];
        for i in 0..g.len() {
            let nb = g.neighbors(i as u32);
            rec.fill(0);
            rec[0] = nb.len() as u32;
            for (o, &l) in rec[1..].iter_mut().zip(nb) {
                *o = global[l as usize] as u32;
            }
            w.write_all(bytemuck::cast_slice(&rec)).map_err(io(&p))?;
        }
        let f = w.into_inner().map_err(|e| io(&p)(e.into_error()))?;
        f.sync_all().map_err(io(&p))?;
        let fin = self.graph_path(s);
        std::fs::rename(&p, &fin).map_err(io(&fin))?;
        let d = self.done_path(s);
        std::fs::write(&d, key).map_err(io(&d))?;
        self.widths[s] = g.r;
        Ok(())
    }

    /// Bytes of every scratch file now.
    pub fn bytes(&self) -> u64 {
        (0..self.counts.len())
            .flat_map(|s| [self.ids_path(s), self.graph_path(s), self.done_path(s)])
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Remove the scratch directory.
    pub fn remove(&self) -> Result<()> {
        std::fs::remove_dir_all(&self.dir).map_err(io(&self.dir))
    }
}

struct Stream {
    ids: BufReader<File>,
    graph: BufReader<File>,
    width: usize,
    next: Option<u32>,
    path: PathBuf,
}

fn next_u32(r: &mut BufReader<File>) -> std::io::Result<Option<u32>> {
    let mut b = [0u8; 4];
    match r.read_exact(&mut b) {
        Ok(()) => Ok(Some(u32::from_le_bytes(b))),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads every shard's graph in global id order, for the merge.
pub struct ShardReader {
    shards: Vec<Stream>,
    rec: Vec<u32>,
}

impl ShardReader {
    /// Open the `k` shards `w` wrote.
    pub fn open(w: &ShardWriter, k: usize) -> Result<ShardReader> {
        let mut shards = Vec::with_capacity(k);
        for s in 0..k {
            let (ip, gp) = (w.ids_path(s), w.graph_path(s));
            let mut ids = BufReader::with_capacity(1 << 20, File::open(&ip).map_err(io(&ip))?);
            let graph = BufReader::with_capacity(1 << 20, File::open(&gp).map_err(io(&gp))?);
            let next = next_u32(&mut ids).map_err(io(&ip))?;
            shards.push(Stream {
                ids,
                graph,
                width: w.widths[s],
                next,
                path: gp,
            });
        }
        Ok(ShardReader {
            shards,
            rec: Vec::new(),
        })
    }

    /// Node `u`'s lists in every shard that holds it, united (shard
    /// order, first occurrence kept, `u` itself left out). Nodes must be
    /// asked for in ascending order.
    pub fn union(&mut self, u: u32) -> Result<Vec<u32>> {
        let mut out: Vec<u32> = Vec::new();
        for st in &mut self.shards {
            if st.next != Some(u) {
                continue;
            }
            self.rec.resize(st.width + 1, 0);
            st.graph
                .read_exact(bytemuck::cast_slice_mut(&mut self.rec))
                .map_err(io(&st.path))?;
            let deg = (self.rec[0] as usize).min(st.width);
            for &v in &self.rec[1..1 + deg] {
                if v != u && !out.contains(&v) {
                    out.push(v);
                }
            }
            st.next = next_u32(&mut st.ids).map_err(io(&st.path))?;
        }
        Ok(out)
    }
}
