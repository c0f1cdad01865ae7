//! The graph file: a 4 KiB header sector followed by node records packed
//! into 4 KiB sectors, never straddling a sector boundary (or, for records
//! larger than a sector, each starting on its own sector).

use super::{crc32c, io_err, FormatError, Result, StoredType, FORMAT_VERSION, SECTOR};
use crate::Metric;
use half::f16;
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"QRYGRAPH";
/// Padding value of unused neighbour slots.
pub const NO_NEIGHBOR: u32 = u32::MAX;

/// Where node records sit and how big they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeLayout {
    /// Dimensions of the stored vector.
    pub dim: usize,
    /// Stored vector type.
    pub stored: StoredType,
    /// Maximum out-degree.
    pub r: usize,
    /// Bytes of one record, a multiple of 4.
    pub node_size: usize,
    /// Records per sector (≥ 1) when a record fits a sector, else 0.
    pub nodes_per_sector: usize,
    /// Sectors per record when it does not fit one, else 0.
    pub sectors_per_node: usize,
}

impl NodeLayout {
    /// The layout for the given shape.
    pub fn new(dim: usize, stored: StoredType, r: usize) -> Self {
        let vec_padded = stored.vector_bytes(dim).div_ceil(4) * 4;
        let node_size = vec_padded + 4 + 4 * r;
        if node_size <= SECTOR {
            NodeLayout {
                dim,
                stored,
                r,
                node_size,
                nodes_per_sector: SECTOR / node_size,
                sectors_per_node: 0,
            }
        } else {
            NodeLayout {
                dim,
                stored,
                r,
                node_size,
                nodes_per_sector: 0,
                sectors_per_node: node_size.div_ceil(SECTOR),
            }
        }
    }

    /// Offset within the record of the degree field.
    fn degree_offset(&self) -> usize {
        self.stored.vector_bytes(self.dim).div_ceil(4) * 4
    }

    /// Sectors one read must fetch to get a whole record.
    pub fn read_sectors(&self) -> usize {
        self.sectors_per_node.max(1)
    }

    /// First sector (absolute, counting the header) holding node `id`, and
    /// the record's byte offset within the read buffer.
    pub fn locate(&self, id: u32) -> (u64, usize) {
        if self.nodes_per_sector > 0 {
            let nps = self.nodes_per_sector as u64;
            (1 + id as u64 / nps, (id as u64 % nps) as usize * self.node_size)
        } else {
            (1 + id as u64 * self.sectors_per_node as u64, 0)
        }
    }

    /// Sectors of node data for `n` nodes (header excluded).
    pub fn data_sectors(&self, n: u64) -> u64 {
        if self.nodes_per_sector > 0 {
            n.div_ceil(self.nodes_per_sector as u64)
        } else {
            n * self.sectors_per_node as u64
        }
    }

    /// Encode a record: the stored form of `v` and the neighbour list.
    pub fn encode(&self, v: &[f32], neighbors: &[u32], out: &mut [u8]) {
        assert_eq!(v.len(), self.dim);
        assert!(neighbors.len() <= self.r);
        let out = &mut out[..self.node_size];
        out.fill(0);
        match self.stored {
            StoredType::F32 => out[..4 * self.dim].copy_from_slice(bytemuck::cast_slice(v)),
            StoredType::F16 => {
                for (i, x) in v.iter().enumerate() {
                    out[2 * i..2 * i + 2].copy_from_slice(&f16::from_f32(*x).to_le_bytes());
                }
            }
            StoredType::I8 => {
                let mut q = vec![0i8; self.dim];
                let s = crate::kernels::quantize_i8(v, &mut q);
                out[..4].copy_from_slice(&s.to_le_bytes());
                out[4..4 + self.dim].copy_from_slice(bytemuck::cast_slice(&q));
            }
        }
        let d = self.degree_offset();
        out[d..d + 4].copy_from_slice(&(neighbors.len() as u32).to_le_bytes());
        let nb = &mut out[d + 4..d + 4 + 4 * self.r];
        for (i, slot) in nb.chunks_exact_mut(4).enumerate() {
            let v = neighbors.get(i).copied().unwrap_or(NO_NEIGHBOR);
            slot.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// View a record held in `bytes` (which must be 4-byte aligned, as
    /// sector buffers are).
    pub fn node<'a>(&self, bytes: &'a [u8]) -> std::result::Result<NodeRef<'a>, String> {
        if bytes.len() < self.node_size {
            return Err(format!("record needs {} bytes, got {}", self.node_size, bytes.len()));
        }
        let d = self.degree_offset();
        let degree = u32::from_le_bytes(bytes[d..d + 4].try_into().expect("4 bytes")) as usize;
        if degree > self.r {
            return Err(format!("degree {degree} exceeds R = {}", self.r));
        }
        let nb: &[u32] = bytemuck::try_cast_slice(&bytes[d + 4..d + 4 + 4 * degree])
            .map_err(|e| format!("neighbour list misaligned: {e}"))?;
        let vector = match self.stored {
            StoredType::F32 => StoredVector::F32(
                bytemuck::try_cast_slice(&bytes[..4 * self.dim]).map_err(|e| format!("vector misaligned: {e}"))?,
            ),
            StoredType::F16 => StoredVector::F16(
                bytemuck::try_cast_slice(&bytes[..2 * self.dim]).map_err(|e| format!("vector misaligned: {e}"))?,
            ),
            StoredType::I8 => StoredVector::I8(
                f32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")),
                bytemuck::cast_slice(&bytes[4..4 + self.dim]),
            ),
        };
        Ok(NodeRef { vector, neighbors: nb })
    }
}

/// A stored vector borrowed from a record.
#[derive(Clone, Copy, Debug)]
pub enum StoredVector<'a> {
    /// Exact.
    F32(&'a [f32]),
    /// Half precision.
    F16(&'a [f16]),
    /// Scale and codes.
    I8(f32, &'a [i8]),
}

impl StoredVector<'_> {
    /// Distance from an f32 query under `metric` (cosine data is stored
    /// normalised and compared with L2², which ranks identically).
    pub fn distance(&self, metric: Metric, q: &[f32]) -> f32 {
        use crate::kernels as k;
        match (metric, self) {
            (Metric::Ip, StoredVector::F32(v)) => -k::dot(q, v),
            (Metric::Ip, StoredVector::F16(v)) => -k::dot_f16(q, v),
            (Metric::Ip, StoredVector::I8(s, v)) => -k::dot_i8(q, v, *s),
            (_, StoredVector::F32(v)) => k::l2_sq(q, v),
            (_, StoredVector::F16(v)) => k::l2_sq_f16(q, v),
            (_, StoredVector::I8(s, v)) => k::l2_sq_i8(q, v, *s),
        }
    }

    /// Decode to f32.
    pub fn to_f32(self, out: &mut Vec<f32>) {
        out.clear();
        match self {
            StoredVector::F32(v) => out.extend_from_slice(v),
            StoredVector::F16(v) => out.extend(v.iter().map(|x| x.to_f32())),
            StoredVector::I8(s, v) => out.extend(v.iter().map(|x| *x as f32 * s)),
        }
    }
}

/// A decoded node record.
#[derive(Clone, Copy, Debug)]
pub struct NodeRef<'a> {
    /// The stored vector.
    pub vector: StoredVector<'a>,
    /// Out-neighbours (internal ids).
    pub neighbors: &'a [u32],
}

/// The graph file's header sector.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GraphHeader {
    /// Record layout.
    pub layout: NodeLayout,
    /// Metric the graph was built for.
    pub metric: Metric,
    /// Number of nodes.
    pub n: u64,
    /// Entry node when there is no navigation tier.
    pub medoid: u64,
    /// Total file sectors including the header.
    pub total_sectors: u64,
    /// crc32c over all bytes after the header sector.
    pub data_crc32c: u32,
}

impl GraphHeader {
    /// Encode into a 4 KiB sector.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; SECTOR];
        let l = &self.layout;
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&(SECTOR as u32).to_le_bytes());
        b[16..20].copy_from_slice(&(l.dim as u32).to_le_bytes());
        b[20] = self.metric.as_u8();
        b[21] = l.stored.as_u8();
        b[24..28].copy_from_slice(&(l.r as u32).to_le_bytes());
        b[28..32].copy_from_slice(&(l.node_size as u32).to_le_bytes());
        b[32..40].copy_from_slice(&self.n.to_le_bytes());
        b[40..48].copy_from_slice(&self.medoid.to_le_bytes());
        b[48..52].copy_from_slice(&(l.nodes_per_sector as u32).to_le_bytes());
        b[52..56].copy_from_slice(&(l.sectors_per_node as u32).to_le_bytes());
        b[56..64].copy_from_slice(&self.total_sectors.to_le_bytes());
        b[64..68].copy_from_slice(&self.data_crc32c.to_le_bytes());
        let crc = crc32c(&b[..SECTOR - 4]);
        b[SECTOR - 4..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decode and validate a header sector of `path` whose file is
    /// `file_len` bytes long.
    pub fn decode(path: &Path, b: &[u8], file_len: u64) -> Result<Self> {
        let p = || PathBuf::from(path);
        if b.len() < SECTOR {
            return Err(FormatError::Truncated {
                path: p(),
                expected: SECTOR as u64,
                found: file_len,
            });
        }
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&b[0..8]);
        if &magic != MAGIC {
            return Err(FormatError::BadMagic {
                path: p(),
                kind: "graph",
                found: magic,
            });
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let stored_crc = u32_at(SECTOR - 4);
        let computed = crc32c(&b[..SECTOR - 4]);
        if stored_crc != computed {
            return Err(FormatError::Checksum {
                path: p(),
                section: "header sector".into(),
                stored: stored_crc,
                computed,
            });
        }
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                path: p(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let invalid = |field, detail: String| FormatError::Invalid {
            path: p(),
            field,
            detail,
        };
        let metric = Metric::from_u8(b[20]).ok_or_else(|| invalid("metric", format!("code {}", b[20])))?;
        let stored =
            StoredType::from_u8(b[21]).ok_or_else(|| invalid("stored vector type", format!("code {}", b[21])))?;
        let dim = u32_at(16) as usize;
        let r = u32_at(24) as usize;
        if dim == 0 || r == 0 {
            return Err(invalid("shape", format!("dim {dim}, R {r}")));
        }
        let layout = NodeLayout::new(dim, stored, r);
        if layout.node_size != u32_at(28) as usize
            || layout.nodes_per_sector != u32_at(48) as usize
            || layout.sectors_per_node != u32_at(52) as usize
        {
            return Err(invalid(
                "node layout",
                format!(
                    "header node_size {} does not match dim {dim}, {stored}, R {r}",
                    u32_at(28)
                ),
            ));
        }
        let n = u64_at(32);
        let medoid = u64_at(40);
        if n == 0 || medoid >= n || n >= u32::MAX as u64 {
            return Err(invalid("node count", format!("n {n}, medoid {medoid}")));
        }
        let total_sectors = u64_at(56);
        if total_sectors != 1 + layout.data_sectors(n) {
            return Err(invalid(
                "total sectors",
                format!("{total_sectors} but {n} nodes need {}", 1 + layout.data_sectors(n)),
            ));
        }
        let expected = total_sectors * SECTOR as u64;
        if file_len != expected {
            return Err(FormatError::Truncated {
                path: p(),
                expected,
                found: file_len,
            });
        }
        Ok(GraphHeader {
            layout,
            metric,
            n,
            medoid,
            total_sectors,
            data_crc32c: u32_at(64),
        })
    }

    /// Open `path`, read the header sector and check it against the file size.
    pub fn read(path: &Path) -> Result<Self> {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(io_err(path))?;
        let len = f.metadata().map_err(io_err(path))?.len();
        let mut b = vec![0u8; SECTOR.min(len as usize)];
        f.read_exact(&mut b).map_err(io_err(path))?;
        Self::decode(path, &b, len)
    }
}

/// Streams node records, in id order, into a new graph file.
pub struct GraphWriter {
    path: PathBuf,
    tmp: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
    layout: NodeLayout,
    metric: Metric,
    n: u64,
    written: u64,
    sector: Vec<u8>,
    in_sector: usize,
    crc: u32,
}

impl GraphWriter {
    /// Start writing `n` nodes to `path` (via a temp file renamed on finish).
    pub fn create(path: &Path, layout: NodeLayout, metric: Metric, n: u64) -> Result<Self> {
        let tmp = path.with_extension("tmp");
        let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).map_err(io_err(&tmp))?);
        file.write_all(&vec![0u8; SECTOR]).map_err(io_err(&tmp))?;
        let buf = layout.read_sectors() * SECTOR;
        Ok(GraphWriter {
            path: path.into(),
            tmp,
            file,
            layout,
            metric,
            n,
            written: 0,
            sector: vec![0u8; buf],
            in_sector: 0,
            crc: 0,
        })
    }

    fn flush_sector(&mut self) -> Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, &self.sector);
        self.file.write_all(&self.sector).map_err(io_err(&self.tmp))?;
        self.sector.fill(0);
        self.in_sector = 0;
        Ok(())
    }

    /// Append the next node.
    pub fn push(&mut self, v: &[f32], neighbors: &[u32]) -> Result<()> {
        let l = self.layout;
        let off = self.in_sector * l.node_size;
        l.encode(v, neighbors, &mut self.sector[off..]);
        self.in_sector += 1;
        self.written += 1;
        if l.nodes_per_sector == 0 || self.in_sector == l.nodes_per_sector {
            self.flush_sector()?;
        }
        Ok(())
    }

    /// Write the header, fsync, and rename into place.
    pub fn finish(mut self, medoid: u64) -> Result<GraphHeader> {
        if self.written != self.n {
            return Err(FormatError::Invalid {
                path: self.path.clone(),
                field: "node count",
                detail: format!("wrote {} of {} nodes", self.written, self.n),
            });
        }
        if self.in_sector > 0 {
            self.flush_sector()?;
        }
        let header = GraphHeader {
            layout: self.layout,
            metric: self.metric,
            n: self.n,
            medoid,
            total_sectors: 1 + self.layout.data_sectors(self.n),
            data_crc32c: self.crc,
        };
        super::seal_streamed(self.file, &self.tmp, &self.path, &header.encode())?;
        Ok(header)
    }
}
