//! Pins on-disk format version 1, byte for byte, as documented in
//! `docs/format.md`.
//!
//! Each test builds a tiny index through the public API and then reads the
//! files back with nothing but `std`, `crc32c`, `half` and `serde_json`,
//! checking every documented offset, size, code, padding and checksum. The
//! expected values are computed here from the formulas in the document, not
//! from the engine's own layout code, so a change to the engine's writers
//! that is not also a deliberate format change (new FORMAT_VERSION, updated
//! docs/format.md, updated test) fails here with "format v1 changed: ...".

use half::f16;
use quarry_engine::format::StoredType;
use quarry_engine::graph::BuildParams;
use quarry_engine::index::{build_index, IndexBuildOptions};
use quarry_engine::{DiskIndex, Metric};
use std::path::Path;

const SECTOR: usize = 4096;
const SECTION_HEADER_LEN: usize = 64;
const NO_NEIGHBOR: u32 = 0xFFFF_FFFF;

/// Assert a condition of format v1.
macro_rules! pin {
    ($cond:expr, $($msg:tt)+) => {
        assert!($cond, "format v1 changed: {}", format!($($msg)+))
    };
}

/// Assert that a documented field holds the expected value.
macro_rules! pin_eq {
    ($got:expr, $want:expr, $($msg:tt)+) => {{
        let (got, want) = (&$got, &$want);
        assert!(
            got == want,
            "format v1 changed: {}: found {:?}, expected {:?}",
            format!($($msg)+),
            got,
            want
        )
    }};
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}
fn f32_at(b: &[u8], o: usize) -> f32 {
    f32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn ceil4(x: usize) -> usize {
    x.div_ceil(4) * 4
}

/// Deterministic data in [-1, 1) from a 64-bit LCG (no dependence on the
/// engine's generators, so the test data cannot drift with them).
fn data(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n * dim)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

struct Case {
    n: usize,
    dim: usize,
    metric: Metric,
    stored: StoredType,
    r: usize,
    pq_bytes: usize,
    nav_sample: usize,
    rerank: bool,
}

impl Case {
    fn options(&self) -> IndexBuildOptions {
        let mut g = BuildParams::new(self.r, 2 * self.r);
        g.threads = 1;
        IndexBuildOptions {
            metric: self.metric,
            graph: g,
            pq_bytes: self.pq_bytes,
            stored: self.stored,
            nav_sample: self.nav_sample,
            rerank_file: self.rerank,
            opq: false,
            ram_budget: None,
            colocate: false,
        }
    }
    /// External ids that are not 0..n, so the id map is really checked.
    fn ids(&self) -> Vec<u64> {
        (0..self.n as u64).map(|i| 0x0102_0304_0506_0000 + 7 * i).collect()
    }
    fn metric_code(&self) -> u8 {
        match self.metric {
            Metric::L2 => 0,
            Metric::Ip => 1,
            Metric::Cosine => 2,
        }
    }
    fn stored_code(&self) -> u8 {
        match self.stored {
            StoredType::F32 => 0,
            StoredType::F16 => 1,
            StoredType::I8 => 2,
        }
    }
    /// Bytes of the vector part of a record before padding (docs/format.md).
    fn vector_bytes(&self) -> usize {
        match self.stored {
            StoredType::F32 => 4 * self.dim,
            StoredType::F16 => 2 * self.dim,
            StoredType::I8 => 4 + self.dim,
        }
    }
    fn degree_offset(&self) -> usize {
        ceil4(self.vector_bytes())
    }
    fn node_size(&self) -> usize {
        self.degree_offset() + 4 + 4 * self.r
    }
    fn nodes_per_sector(&self) -> usize {
        if self.node_size() <= SECTOR {
            SECTOR / self.node_size()
        } else {
            0
        }
    }
    fn sectors_per_node(&self) -> usize {
        if self.node_size() <= SECTOR {
            0
        } else {
            self.node_size().div_ceil(SECTOR)
        }
    }
    #[allow(clippy::manual_checked_ops)]
    /// Absolute byte offset of node i's record in graph.qgr.
    fn node_offset(&self, i: usize) -> usize {
        let nps = self.nodes_per_sector();
        if nps > 0 {
            (1 + i / nps) * SECTOR + (i % nps) * self.node_size()
        } else {
            (1 + i * self.sectors_per_node()) * SECTOR
        }
    }
    fn data_sectors(&self) -> usize {
        let nps = self.nodes_per_sector();
        if nps > 0 {
            self.n.div_ceil(nps)
        } else {
            self.n * self.sectors_per_node()
        }
    }
}

/// Vectors as the index stores them (cosine rows normalised by the engine's
/// own `normalize`, whose summation order is the kernels' business).
fn stored_input(c: &Case, base: &[f32]) -> Vec<f32> {
    let mut v = base.to_vec();
    if c.metric == Metric::Cosine {
        v.chunks_exact_mut(c.dim).for_each(quarry_engine::metric::normalize);
    }
    v
}

fn build(c: &Case, seed: u64) -> (tempfile::TempDir, Vec<f32>) {
    let dir = tempfile::tempdir().unwrap();
    let base = data(c.n, c.dim, seed);
    build_index(
        base.clone().into(),
        c.dim,
        &c.ids(),
        dir.path(),
        &c.options(),
        &mut |_, _, _| {},
    )
    .unwrap();
    (dir, base)
}

fn read(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("format v1 changed: {name}: {e}"))
}

/// The graph file: header sector, placement, every record's degree and
/// padding, node 0's vector, the node-data crc and the header crc.
/// Returns the medoid and how many padding neighbour slots were seen.
fn check_graph(c: &Case, dir: &Path, input: &[f32]) -> (u64, usize) {
    let b = read(dir, "graph.qgr");
    let h = &b[..SECTOR];
    pin_eq!(&h[0..8], b"QRYGRAPH", "graph magic at 0..8");
    pin_eq!(u32_at(h, 8), 1, "graph format version at 8");
    pin_eq!(u32_at(h, 12), 4096, "graph header_len at 12");
    pin_eq!(u32_at(h, 16) as usize, c.dim, "graph dim at 16");
    pin_eq!(h[20], c.metric_code(), "graph metric code at 20");
    pin_eq!(h[21], c.stored_code(), "graph stored type code at 21");
    pin_eq!(&h[22..24], &[0, 0], "graph reserved bytes 22..24");
    pin_eq!(u32_at(h, 24) as usize, c.r, "graph R at 24");
    pin_eq!(u32_at(h, 28) as usize, c.node_size(), "graph node_size at 28");
    pin_eq!(u64_at(h, 32) as usize, c.n, "graph n at 32");
    let medoid = u64_at(h, 40);
    pin!(medoid < c.n as u64, "graph medoid {medoid} at 40 is not < n");
    pin_eq!(
        u32_at(h, 48) as usize,
        c.nodes_per_sector(),
        "graph nodes_per_sector at 48"
    );
    pin_eq!(
        u32_at(h, 52) as usize,
        c.sectors_per_node(),
        "graph sectors_per_node at 52"
    );
    let total = 1 + c.data_sectors();
    pin_eq!(u64_at(h, 56) as usize, total, "graph total_sectors at 56");
    pin_eq!(b.len(), total * SECTOR, "graph file length");
    pin_eq!(
        u32_at(h, 64),
        crc32c::crc32c(&b[SECTOR..]),
        "graph node-data crc32c at 64 (over bytes 4096..EOF)"
    );
    pin!(
        h[68..SECTOR - 4].iter().all(|&x| x == 0),
        "graph header bytes 68..4092 are not all zero"
    );
    pin_eq!(
        u32_at(h, SECTOR - 4),
        crc32c::crc32c(&h[..SECTOR - 4]),
        "graph header crc32c at 4092 (over bytes 0..4092)"
    );

    // Every record: degree, neighbour range, 0xFFFFFFFF padding slots, and
    // zero bytes wherever no record lies.
    let d = c.degree_offset();
    let mut covered = vec![false; b.len()];
    covered[..SECTOR].iter_mut().for_each(|x| *x = true);
    let mut padding_slots = 0;
    for i in 0..c.n {
        let o = c.node_offset(i);
        let rec = &b[o..o + c.node_size()];
        covered[o..o + c.node_size()].iter_mut().for_each(|x| *x = true);
        if c.nodes_per_sector() > 0 {
            pin!(
                o / SECTOR == (o + c.node_size() - 1) / SECTOR,
                "node {i} straddles a sector boundary"
            );
        } else {
            pin_eq!(o % SECTOR, 0, "offset of node {i} within its first sector");
        }
        let degree = u32_at(rec, d) as usize;
        pin!(
            degree >= 1 && degree <= c.r,
            "node {i}: degree {degree} at record offset {d} is not in 1..=R"
        );
        for s in 0..c.r {
            let v = u32_at(rec, d + 4 + 4 * s);
            if s < degree {
                pin!(
                    (v as usize) < c.n && v as usize != i,
                    "node {i}: neighbour slot {s} holds {v}"
                );
            } else {
                pin_eq!(v, NO_NEIGHBOR, "node {i}: padding neighbour slot {s}");
                padding_slots += 1;
            }
        }
        pin!(
            rec[c.vector_bytes()..d].iter().all(|&x| x == 0),
            "node {i}: vector padding bytes are not zero"
        );
    }
    for (pos, _) in covered.iter().enumerate().filter(|(_, c)| !**c) {
        pin_eq!(b[pos], 0, "graph byte {pos} outside any record");
    }

    // Node 0's vector, decoded as documented.
    let o = c.node_offset(0);
    let v0 = &input[..c.dim];
    match c.stored {
        StoredType::F32 => {
            for (k, x) in v0.iter().enumerate() {
                pin_eq!(f32_at(&b, o + 4 * k), *x, "node 0 f32 element {k}");
            }
        }
        StoredType::F16 => {
            for (k, x) in v0.iter().enumerate() {
                let got = f16::from_le_bytes([b[o + 2 * k], b[o + 2 * k + 1]]);
                pin_eq!(got.to_bits(), f16::from_f32(*x).to_bits(), "node 0 f16 element {k}");
            }
        }
        StoredType::I8 => {
            let max = v0.iter().fold(0f32, |m, x| m.max(x.abs()));
            let scale = f32_at(&b, o);
            pin_eq!(scale, max / 127.0, "node 0 i8 scale (max |x| / 127) at 0");
            for (k, x) in v0.iter().enumerate() {
                let q = b[o + 4 + k] as i8;
                let want = (x / scale).round().clamp(-127.0, 127.0) as i8;
                pin_eq!(q, want, "node 0 i8 code {k} at {}", 4 + k);
            }
        }
    }
    (medoid, padding_slots)
}

/// The common 64-byte header of a section file; returns (payload, params).
fn check_section<'a>(name: &str, b: &'a [u8], magic: &[u8; 8]) -> (&'a [u8], [u64; 3]) {
    pin!(b.len() >= SECTION_HEADER_LEN, "{name} shorter than 64 bytes");
    pin_eq!(&b[0..8], magic, "{name} magic at 0..8");
    pin_eq!(u32_at(b, 8), 1, "{name} format version at 8");
    pin_eq!(u32_at(b, 12), 64, "{name} header_len at 12");
    let payload_len = u64_at(b, 16) as usize;
    pin_eq!(
        payload_len,
        b.len() - SECTION_HEADER_LEN,
        "{name} payload_len at 16 (file length - 64)"
    );
    let payload = &b[SECTION_HEADER_LEN..];
    pin_eq!(u32_at(b, 24), crc32c::crc32c(payload), "{name} payload crc32c at 24");
    pin_eq!(&b[28..32], &[0; 4], "{name} reserved bytes 28..32");
    pin_eq!(&b[56..60], &[0; 4], "{name} reserved bytes 56..60");
    pin_eq!(
        u32_at(b, 60),
        crc32c::crc32c(&b[..60]),
        "{name} header crc32c at 60 (over bytes 0..60)"
    );
    (payload, [u64_at(b, 32), u64_at(b, 40), u64_at(b, 48)])
}

fn check_pq(c: &Case, dir: &Path) {
    let b = read(dir, "pq_pivots.qsec");
    let (p, params) = check_section("pq_pivots.qsec", &b, b"QRYPQPIV");
    pin_eq!(
        params,
        [c.dim as u64, c.pq_bytes as u64, 0],
        "pq_pivots.qsec params [dim, m, 0]"
    );
    pin_eq!(
        p.len(),
        8 + 4 * (c.dim + 256 * c.dim),
        "pq_pivots.qsec payload length 8 + 4 (dim + 256 dim)"
    );
    pin_eq!(u32_at(p, 0) as usize, c.dim, "pq_pivots.qsec payload dim at 0");
    pin_eq!(u32_at(p, 4) as usize, c.pq_bytes, "pq_pivots.qsec payload m at 4");

    let b = read(dir, "pq_codes.qsec");
    let (p, params) = check_section("pq_codes.qsec", &b, b"QRYPQCOD");
    pin_eq!(
        params,
        [c.n as u64, c.pq_bytes as u64, 0],
        "pq_codes.qsec params [n, m, 0]"
    );
    pin_eq!(p.len(), c.n * c.pq_bytes, "pq_codes.qsec payload n x m bytes");
}

fn check_ids(c: &Case, dir: &Path) {
    let b = read(dir, "ids.qsec");
    let (p, params) = check_section("ids.qsec", &b, b"QRYIDMAP");
    pin_eq!(params, [c.n as u64, 0, 0], "ids.qsec params [n, 0, 0]");
    pin_eq!(p.len(), 8 * c.n, "ids.qsec payload 8 n bytes");
    for (i, want) in c.ids().iter().enumerate() {
        pin_eq!(u64_at(p, 8 * i), *want, "ids.qsec u64 LE id of node {i}");
    }
}

fn check_nav(c: &Case, dir: &Path, input: &[f32]) -> u64 {
    let b = read(dir, "nav.qsec");
    let (p, params) = check_section("nav.qsec", &b, b"QRYNAVHN");
    let s = c.nav_sample.min(c.n);
    pin_eq!(params, [s as u64, 0, 0], "nav.qsec params [sample, 0, 0]");
    pin_eq!(u32_at(p, 0) as usize, c.dim, "nav.qsec dim at 0");
    pin_eq!(u32_at(p, 4) as usize, s, "nav.qsec sample count at 4");
    let m = u32_at(p, 8) as usize;
    pin_eq!(m, 16, "nav.qsec m at 8");
    let entry = u32_at(p, 12) as usize;
    pin!(entry < s, "nav.qsec entry {entry} at 12 is not < sample");
    let max_level = u32_at(p, 16);
    pin!(max_level <= 12, "nav.qsec max_level {max_level} at 16 > 12");
    pin_eq!(u32_at(p, 20), c.metric_code() as u32, "nav.qsec metric at 20");
    let mut pos = 24;
    let nodes: Vec<usize> = (0..s).map(|k| u32_at(p, pos + 4 * k) as usize).collect();
    pos += 4 * s;
    pin!(nodes.iter().all(|&x| x < c.n), "nav.qsec node id >= n");
    let levels = &p[pos..pos + s];
    pin!(
        levels.iter().all(|&l| l as u32 <= max_level),
        "nav.qsec level above max_level"
    );
    pin!(
        levels.iter().any(|&l| l as u32 == max_level),
        "nav.qsec max_level not attained"
    );
    pos = ceil4(pos + s);
    for (k, &node) in nodes.iter().enumerate() {
        for j in 0..c.dim {
            let o = pos + 2 * (k * c.dim + j);
            pin_eq!(
                f16::from_le_bytes([p[o], p[o + 1]]).to_bits(),
                f16::from_f32(input[node * c.dim + j]).to_bits(),
                "nav.qsec f16 vector of sample point {k}, element {j}"
            );
        }
    }
    pos = ceil4(pos + 2 * s * c.dim);
    let words: usize = levels.iter().map(|&l| (1 + 2 * m) + l as usize * (1 + m)).sum();
    pin_eq!(p.len(), pos + 4 * words, "nav.qsec payload length");
    let mut o = pos;
    for (k, &l) in levels.iter().enumerate() {
        for level in 0..=l as usize {
            let slots = if level == 0 { 2 * m } else { m };
            let deg = u32_at(p, o) as usize;
            pin!(deg <= slots, "nav.qsec point {k} level {level}: degree {deg}");
            for t in 0..deg {
                let x = u32_at(p, o + 4 + 4 * t) as usize;
                pin!(x < s, "nav.qsec point {k} level {level} link {x} >= sample");
            }
            o += 4 * (1 + slots);
        }
    }
    s as u64
}

fn check_rerank(c: &Case, dir: &Path, input: &[f32]) {
    let b = read(dir, "rerank.qsec");
    let (_, params) = check_section("rerank.qsec", &b, b"QRYRERNK");
    let vb = 4 * c.dim;
    let (per, spv) = if vb <= SECTOR {
        (SECTOR / vb, 1)
    } else {
        (1, vb.div_ceil(SECTOR))
    };
    pin_eq!(
        params,
        [c.n as u64, c.dim as u64, per as u64],
        "rerank.qsec params [n, dim, per_sector]"
    );
    let sectors = if spv == 1 { c.n.div_ceil(per) } else { c.n * spv };
    pin_eq!(b.len(), SECTOR * (1 + sectors), "rerank.qsec file length");
    pin!(
        b[SECTION_HEADER_LEN..SECTOR].iter().all(|&x| x == 0),
        "rerank.qsec bytes 64..4096 are not zero"
    );
    let mut covered = vec![false; b.len()];
    for i in 0..c.n {
        let o = if spv == 1 {
            SECTOR * (1 + i / per) + (i % per) * vb
        } else {
            SECTOR * (1 + i * spv)
        };
        for j in 0..c.dim {
            pin_eq!(
                f32_at(&b, o + 4 * j),
                input[i * c.dim + j],
                "rerank.qsec vector {i} element {j}"
            );
        }
        covered[o..o + vb].iter_mut().for_each(|x| *x = true);
    }
    for pos in SECTOR..b.len() {
        if !covered[pos] {
            pin_eq!(b[pos], 0, "rerank.qsec padding byte {pos}");
        }
    }
}

fn check_manifest(c: &Case, dir: &Path, nav_nodes: u64, files: &[&str]) {
    let b = read(dir, "manifest.json");
    let m: serde_json::Value =
        serde_json::from_slice(&b).unwrap_or_else(|e| panic!("format v1 changed: manifest.json is not JSON: {e}"));
    let metric = ["l2", "ip", "cosine"][c.metric_code() as usize];
    let stored = ["f32", "f16", "i8"][c.stored_code() as usize];
    let o = c.options();
    let want = serde_json::json!({
        "format_version": 1,
        "n": c.n,
        "dim": c.dim,
        "metric": metric,
        "stored": stored,
        "r": c.r,
        "l_build": o.graph.l,
        "pq_bytes": c.pq_bytes,
        "seed": o.graph.seed,
        "nav_nodes": nav_nodes,
        "rerank_file": c.rerank,
        "colocated": false,
    });
    for (k, v) in want.as_object().unwrap() {
        pin_eq!(m[k], *v, "manifest.json field {k}");
    }
    // alpha is an f32 written in its shortest decimal form ("1.2").
    pin_eq!(
        m["alpha"].as_f64().map(|a| a as f32),
        Some(o.graph.alpha),
        "manifest.json field alpha"
    );
    let keys: Vec<&String> = m.as_object().unwrap().keys().collect();
    pin_eq!(
        keys.len(),
        want.as_object().unwrap().len() + 2,
        "manifest.json field count ({keys:?})"
    );
    let entries = m["files"].as_array().expect("files array");
    let names: Vec<&str> = entries.iter().map(|e| e["name"].as_str().unwrap()).collect();
    pin_eq!(names, files, "manifest.json files, in order");
    for e in entries {
        let name = e["name"].as_str().unwrap();
        let bytes = read(dir, name);
        pin_eq!(
            e["bytes"].as_u64(),
            Some(bytes.len() as u64),
            "manifest.json size of {name}"
        );
        pin_eq!(
            e["crc32c"].as_u64(),
            Some(crc32c::crc32c(&bytes) as u64),
            "manifest.json whole-file crc32c of {name}"
        );
        pin_eq!(e.as_object().unwrap().len(), 3, "manifest.json entry fields");
    }
    // Nothing else in the directory: no temp files left behind.
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let mut want: Vec<String> = files.iter().map(|s| s.to_string()).collect();
    want.push("manifest.json".into());
    want.sort();
    pin_eq!(on_disk, want, "index directory listing");
}

/// Check everything; returns the number of padding neighbour slots seen.
fn check_all(c: &Case, seed: u64) -> usize {
    let (dir, base) = build(c, seed);
    let dir = dir.path();
    let input = stored_input(c, &base);
    let (medoid, padding_slots) = check_graph(c, dir, &input);
    check_pq(c, dir);
    check_ids(c, dir);
    let mut files = vec!["graph.qgr", "pq_pivots.qsec", "pq_codes.qsec", "ids.qsec"];
    let nav_nodes = if c.nav_sample > 0 {
        files.push("nav.qsec");
        check_nav(c, dir, &input)
    } else {
        pin!(
            !dir.join("nav.qsec").exists(),
            "nav.qsec written without a navigation tier"
        );
        0
    };
    if c.rerank {
        files.push("rerank.qsec");
        check_rerank(c, dir, &input);
    } else {
        pin!(
            !dir.join("rerank.qsec").exists(),
            "rerank.qsec written without rerank_file"
        );
    }
    check_manifest(c, dir, nav_nodes, &files);
    // And the engine itself still reads what was pinned.
    let idx = DiskIndex::open(dir).unwrap();
    pin_eq!(idx.header().medoid, medoid, "medoid as opened");
    pin_eq!(idx.len(), c.n, "n as opened");
    padding_slots
}

/// f16, L2, several nodes per sector, navigation tier and rerank file.
#[test]
fn v1_f16_l2_packed_sectors_with_nav_and_rerank() {
    let c = Case {
        n: 300,
        dim: 24,
        metric: Metric::L2,
        stored: StoredType::F16,
        r: 8,
        pq_bytes: 6,
        nav_sample: 60,
        rerank: true,
    };
    // Documented example numbers for this shape.
    assert_eq!(c.node_size(), 84);
    assert_eq!(c.nodes_per_sector(), 48);
    let padded = check_all(&c, 1);
    assert!(padded > 0, "test data no longer exercises neighbour padding");
}

/// i8 at an odd dimension (vector padding), cosine, no optional files.
#[test]
fn v1_i8_cosine_odd_dim_without_optional_files() {
    let c = Case {
        n: 200,
        dim: 21,
        metric: Metric::Cosine,
        stored: StoredType::I8,
        r: 6,
        pq_bytes: 7,
        nav_sample: 0,
        rerank: false,
    };
    assert_eq!(c.degree_offset(), 28);
    let padded = check_all(&c, 2);
    assert!(padded > 0, "test data no longer exercises neighbour padding");
}

/// f32 records larger than a sector (each on its own pair of sectors), IP,
/// and a rerank file whose vectors also take two sectors each.
#[test]
fn v1_f32_ip_multi_sector_records() {
    let c = Case {
        n: 60,
        dim: 1100,
        metric: Metric::Ip,
        stored: StoredType::F32,
        r: 8,
        pq_bytes: 10,
        nav_sample: 16,
        rerank: true,
    };
    assert_eq!(c.sectors_per_node(), 2);
    check_all(&c, 3);
}
