//! The navigation tier: a small in-RAM HNSW over a sample of the index's
//! nodes, holding f16 copies of their vectors. A query descends it to find
//! entry points close to the query, so the disk search starts near its
//! answer instead of at the medoid (fewer hops, fewer IOs).
//!
//! Owns: the sample, its HNSW layers, (de)serialisation. Built sequentially
//! in a seeded order with seeded levels, so it is deterministic.

use super::beam::{CandidateList, VisitedSet};
use crate::kernels;
use crate::Metric;
use half::f16;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Navigation-tier parameters.
#[derive(Clone, Debug)]
pub struct NavParams {
    /// Points in the sample (capped at n).
    pub sample: usize,
    /// Links per node on upper layers (layer 0 has 2m).
    pub m: usize,
    /// Construction beam width.
    pub ef_construction: usize,
    /// Seed.
    pub seed: u64,
}

impl NavParams {
    /// Defaults: m = 16, ef_construction = 100, the given sample size.
    pub fn new(sample: usize, seed: u64) -> Self {
        NavParams {
            sample,
            m: 16,
            ef_construction: 100,
            seed,
        }
    }
    /// Default sample size for n points: 1 % of n, at least min(n, 256),
    /// at most 100 000.
    pub fn default_sample(n: usize) -> usize {
        (n / 100).max(256.min(n)).min(100_000)
    }
}

/// The navigation HNSW.
#[derive(Clone, Debug, PartialEq)]
pub struct NavTier {
    dim: usize,
    m: usize,
    metric: Metric,
    /// Graph node id of each sample point.
    nodes: Vec<u32>,
    levels: Vec<u8>,
    vectors: Vec<f16>,
    /// Start of each point's link block in `adj`.
    start: Vec<usize>,
    /// For each point and level: degree then `m_l` slots.
    adj: Vec<u32>,
    entry: u32,
    max_level: u8,
}

/// Per-thread scratch for nav searches.
#[derive(Clone, Debug)]
pub struct NavScratch {
    list: CandidateList,
    visited: VisitedSet,
}

impl NavTier {
    fn slots(&self, level: usize) -> usize {
        if level == 0 {
            2 * self.m
        } else {
            self.m
        }
    }
    fn block_len(m: usize, level: u8) -> usize {
        (1 + 2 * m) + level as usize * (1 + m)
    }
    fn link_offset(&self, i: u32, level: usize) -> usize {
        let s = self.start[i as usize];
        if level == 0 {
            s
        } else {
            s + (1 + 2 * self.m) + (level - 1) * (1 + self.m)
        }
    }
    /// Links of sample point `i` at `level`.
    #[inline]
    pub fn links(&self, i: u32, level: usize) -> &[u32] {
        let o = self.link_offset(i, level);
        let d = self.adj[o] as usize;
        &self.adj[o + 1..o + 1 + d]
    }
    fn set_links(&mut self, i: u32, level: usize, nb: &[u32]) {
        let o = self.link_offset(i, level);
        assert!(nb.len() <= self.slots(level));
        self.adj[o] = nb.len() as u32;
        self.adj[o + 1..o + 1 + nb.len()].copy_from_slice(nb);
    }
    /// Number of sample points.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
    /// Dimensions of the stored vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Metric the tier ranks by.
    pub fn metric(&self) -> Metric {
        self.metric
    }
    /// Graph node ids of the sample.
    pub fn nodes(&self) -> &[u32] {
        &self.nodes
    }
    /// RAM held, in bytes.
    pub fn ram_bytes(&self) -> usize {
        self.nodes.len() * 4 + self.levels.len() + self.vectors.len() * 2 + self.start.len() * 8 + self.adj.len() * 4
    }
    fn vec(&self, i: u32) -> &[f16] {
        &self.vectors[i as usize * self.dim..(i as usize + 1) * self.dim]
    }
    #[inline]
    fn dist(&self, q: &[f32], i: u32) -> f32 {
        match self.metric {
            Metric::Ip => -kernels::dot_f16(q, self.vec(i)),
            _ => kernels::l2_sq_f16(q, self.vec(i)),
        }
    }

    /// Scratch for searches.
    pub fn scratch(&self) -> NavScratch {
        NavScratch {
            list: CandidateList::new(16),
            visited: VisitedSet::new(self.len().max(1)),
        }
    }

    /// Build over a seeded sample of `data` (n × dim, cosine already
    /// normalised).
    pub fn build(data: &[f32], dim: usize, metric: Metric, p: &NavParams) -> NavTier {
        let n = data.len() / dim;
        let row = |i: usize, out: &mut Vec<f32>| -> Result<(), std::convert::Infallible> {
            out.extend_from_slice(&data[i * dim..(i + 1) * dim]);
            Ok(())
        };
        match Self::build_with(n, dim, metric, p, row, &mut |_, _| {}) {
            Ok(t) => t,
            Err(never) => match never {},
        }
    }

    /// As [`build`](Self::build) over `n` points that `row(i, out)` appends
    /// to `out` on demand (only the sample's rows are asked for, in sample
    /// order), e.g. read from an existing index's stored vectors. The same
    /// seed and rows give the same tier as `build`. `progress(done, total)`
    /// is called as points are inserted.
    pub fn build_with<E>(
        n: usize,
        dim: usize,
        metric: Metric,
        p: &NavParams,
        mut row: impl FnMut(usize, &mut Vec<f32>) -> Result<(), E>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<NavTier, E> {
        let s = p.sample.min(n).max(1);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(p.seed ^ 0x4e41_5600);
        let ids: Vec<usize> = sample(&mut rng, n, s).into_vec();
        let ml = 1.0 / (p.m as f64).ln();
        let levels: Vec<u8> = (0..s)
            .map(|_| {
                let u: f64 = rng.random_range(f64::EPSILON..1.0);
                ((-u.ln() * ml).floor() as usize).min(12) as u8
            })
            .collect();
        let mut start = Vec::with_capacity(s);
        let mut total = 0;
        for &l in &levels {
            start.push(total);
            total += Self::block_len(p.m, l);
        }
        let mut full: Vec<f32> = Vec::with_capacity(s * dim);
        let mut one = Vec::with_capacity(dim);
        for &i in &ids {
            one.clear();
            row(i, &mut one)?;
            assert_eq!(one.len(), dim, "row {i} must have {dim} values");
            full.extend_from_slice(&one);
        }
        let mut t = NavTier {
            dim,
            m: p.m,
            metric,
            nodes: ids.iter().map(|&i| i as u32).collect(),
            levels,
            vectors: full.iter().map(|x| f16::from_f32(*x)).collect(),
            start,
            adj: vec![0; total],
            entry: 0,
            max_level: 0,
        };
        // Point 0 is inserted first: it is the entry, at its own level.
        t.max_level = t.levels[0];
        let mut sc = NavScratch {
            list: CandidateList::new(p.ef_construction),
            visited: VisitedSet::new(s),
        };
        let frow = |i: u32| &full[i as usize * dim..(i as usize + 1) * dim];
        for i in 1..s as u32 {
            if i % 1024 == 0 {
                progress(i as usize, s);
            }
            let q = frow(i);
            let level = t.levels[i as usize] as usize;
            let mut cur = t.entry;
            for lc in (level + 1..=t.max_level as usize).rev() {
                cur = t.greedy_step(&|i| t.dist(q, i), cur, lc);
            }
            for lc in (0..=level.min(t.max_level as usize)).rev() {
                t.search_layer(&|i| t.dist(q, i), &[cur], p.ef_construction, lc, &mut sc);
                let cands: Vec<(f32, u32)> = sc.list.as_slice().iter().map(|c| (c.dist, c.id)).collect();
                cur = cands[0].1;
                let chosen = select(&cands, t.slots(lc), &frow, q);
                t.set_links(i, lc, &chosen);
                for &nb in &chosen {
                    let mut l: Vec<u32> = t.links(nb, lc).to_vec();
                    l.push(i);
                    if l.len() > t.slots(lc) {
                        let nbv = frow(nb);
                        let mut c: Vec<(f32, u32)> = l.iter().map(|&x| (kernels::l2_sq(nbv, frow(x)), x)).collect();
                        c.sort_by(|a, b| (a.0, a.1).partial_cmp(&(b.0, b.1)).expect("finite"));
                        l = select(&c, t.slots(lc), &frow, nbv);
                    }
                    t.set_links(nb, lc, &l);
                }
            }
            if level > t.max_level as usize {
                t.max_level = level as u8;
                t.entry = i;
            }
        }
        progress(s, s);
        Ok(t)
    }

    fn greedy_step(&self, dist: &impl Fn(u32) -> f32, mut cur: u32, level: usize) -> u32 {
        let mut best = dist(cur);
        loop {
            let mut moved = false;
            for &v in self.links(cur, level) {
                let d = dist(v);
                if d < best {
                    best = d;
                    cur = v;
                    moved = true;
                }
            }
            if !moved {
                return cur;
            }
        }
    }

    fn search_layer(&self, dist: &impl Fn(u32) -> f32, eps: &[u32], ef: usize, level: usize, s: &mut NavScratch) {
        s.list.reset(ef);
        s.visited.clear();
        for &e in eps {
            if s.visited.insert(e) {
                s.list.insert(dist(e), e);
            }
        }
        while let Some(i) = s.list.first_unexpanded() {
            let c = s.list.take(i);
            for &v in self.links(c.id, level) {
                if s.visited.insert(v) {
                    s.list.insert(dist(v), v);
                }
            }
        }
    }

    /// Up to `count` graph node ids near `q`, closest first, from a layer-0
    /// search with beam `ef`, using the tier's own f16 vectors.
    pub fn entry_points(&self, q: &[f32], ef: usize, count: usize, s: &mut NavScratch, out: &mut Vec<u32>) {
        self.entry_points_by_sample(|i| self.dist(q, i), ef, count, s, out)
    }

    /// The `width`-byte rows of `table` (one row per graph node, e.g. PQ
    /// codes) for the sample points, in sample order. Scoring the tier from
    /// this copy touches a few MB that stay in cache instead of one random
    /// row of the whole table per visit.
    pub fn sample_rows(&self, table: &[u8], width: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.nodes.len() * width);
        for &v in &self.nodes {
            out.extend_from_slice(&table[v as usize * width..(v as usize + 1) * width]);
        }
        out
    }

    /// As [`entry_points`](Self::entry_points), scoring sample point `i`
    /// (an index into [`nodes`](Self::nodes)) with `sample_dist(i)`, e.g.
    /// the query's PQ table over the rows [`sample_rows`](Self::sample_rows)
    /// gathered (entry points need only be near).
    pub fn entry_points_by_sample(
        &self,
        sample_dist: impl Fn(u32) -> f32,
        ef: usize,
        count: usize,
        s: &mut NavScratch,
        out: &mut Vec<u32>,
    ) {
        out.clear();
        if self.is_empty() {
            return;
        }
        let mut cur = self.entry;
        for lc in (1..=self.max_level as usize).rev() {
            cur = self.greedy_step(&sample_dist, cur, lc);
        }
        self.search_layer(&sample_dist, &[cur], ef.max(count), 0, s);
        out.extend(s.list.as_slice().iter().take(count).map(|c| self.nodes[c.id as usize]));
    }

    /// The same tier over a graph whose nodes were renamed: graph node `i`
    /// is now `new_of[i]`.
    pub fn relabeled(&self, new_of: &[u32]) -> NavTier {
        let mut t = self.clone();
        for v in &mut t.nodes {
            *v = new_of[*v as usize];
        }
        t
    }

    /// Serialise (see docs/format.md, nav.qsec).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [
            self.dim,
            self.nodes.len(),
            self.m,
            self.entry as usize,
            self.max_level as usize,
            self.metric.as_u8() as usize,
        ] {
            b.extend_from_slice(&(v as u32).to_le_bytes());
        }
        b.extend_from_slice(bytemuck::cast_slice(&self.nodes));
        b.extend_from_slice(&self.levels);
        b.resize(b.len().div_ceil(4) * 4, 0);
        b.extend_from_slice(bytemuck::cast_slice(&self.vectors));
        b.resize(b.len().div_ceil(4) * 4, 0);
        b.extend_from_slice(bytemuck::cast_slice(&self.adj));
        b
    }

    /// Inverse of [`to_bytes`](Self::to_bytes), checking every size and id.
    pub fn from_bytes(b: &[u8], graph_n: u64) -> Result<Self, String> {
        let mut pos = 0usize;
        let mut take = |len: usize| -> Result<&[u8], String> {
            let s = b
                .get(pos..pos + len)
                .ok_or_else(|| format!("truncated at byte {pos} (need {len} more)"))?;
            pos += len;
            Ok(s)
        };
        let mut hdr = [0usize; 6];
        for h in hdr.iter_mut() {
            *h = u32::from_le_bytes(take(4)?.try_into().expect("4")) as usize;
        }
        let [dim, s, m, entry, max_level, metric] = hdr;
        let metric = Metric::from_u8(metric as u8).ok_or("bad metric code")?;
        if dim == 0 || m == 0 || (s > 0 && entry >= s) {
            return Err(format!("bad header: dim {dim}, sample {s}, m {m}, entry {entry}"));
        }
        let nodes: Vec<u32> = take(4 * s)?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4")))
            .collect();
        if let Some(bad) = nodes.iter().find(|&&x| x as u64 >= graph_n) {
            return Err(format!("sample node {bad} beyond graph size {graph_n}"));
        }
        let levels = take(s)?.to_vec();
        if levels.iter().any(|&l| l as usize > max_level) || (s > 0 && levels[entry] as usize != max_level) {
            return Err("a level exceeds max_level".into());
        }
        take((4 - s % 4) % 4)?;
        let vectors: Vec<f16> = take(2 * s * dim)?
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]))
            .collect();
        take((4 - (2 * s * dim) % 4) % 4)?;
        let mut start = Vec::with_capacity(s);
        let mut total = 0;
        for &l in &levels {
            start.push(total);
            total += Self::block_len(m, l);
        }
        let adj: Vec<u32> = take(4 * total)?
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4")))
            .collect();
        if pos != b.len() {
            return Err(format!("{} trailing bytes", b.len() - pos));
        }
        let t = NavTier {
            dim,
            m,
            metric,
            nodes,
            levels,
            vectors,
            start,
            adj,
            entry: entry as u32,
            max_level: max_level as u8,
        };
        // Every link at level l must name a sample point that is on level l
        // too: a search follows it there and reads that point's level-l block.
        for i in 0..s as u32 {
            for l in 0..=t.levels[i as usize] as usize {
                let o = t.link_offset(i, l);
                if t.adj[o] as usize > t.slots(l)
                    || t.links(i, l)
                        .iter()
                        .any(|&x| x as usize >= s || (t.levels[x as usize] as usize) < l)
                {
                    return Err(format!("links of sample point {i} at level {l} are out of range"));
                }
            }
        }
        Ok(t)
    }
}

/// HNSW's neighbour-selection heuristic: keep a candidate only if it is
/// closer to the base than to every neighbour kept so far (L2²).
fn select<'a>(cands: &[(f32, u32)], m: usize, row: &impl Fn(u32) -> &'a [f32], _q: &[f32]) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::with_capacity(m);
    for &(d, c) in cands {
        if out.len() == m {
            break;
        }
        let cv = row(c);
        if out.iter().all(|&k| kernels::l2_sq(cv, row(k)) > d) {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `nav_tier` fuzz target (input kept as
    /// fuzz/corpus/nav_tier/crash-link-to-a-lower-level): from_bytes
    /// accepted a link at level 1 to a point that has only level 0, and a
    /// search that followed it read past the adjacency table.
    #[test]
    fn a_link_to_a_point_below_its_level_is_refused() {
        let dim = 8;
        let data = crate::graph::vamana::tests_support::clustered(500, dim, 3);
        let mut t = NavTier::build(&data, dim, Metric::L2, &NavParams::new(200, 1));
        let low = (0..t.len() as u32).find(|&i| t.levels[i as usize] == 0).unwrap();
        let high = (0..t.len() as u32).find(|&i| t.levels[i as usize] >= 1).unwrap();
        assert!(NavTier::from_bytes(&t.to_bytes(), 500).is_ok());
        let o = t.link_offset(high, 1);
        t.adj[o] = t.adj[o].max(1);
        t.adj[o + 1] = low;
        assert!(NavTier::from_bytes(&t.to_bytes(), 500).is_err());
    }

    #[test]
    fn finds_entries_near_the_query_and_round_trips() {
        let dim = 16;
        let data = crate::graph::vamana::tests_support::clustered(4000, dim, 9);
        let t = NavTier::build(&data, dim, Metric::L2, &NavParams::new(800, 1));
        assert_eq!(t, NavTier::build(&data, dim, Metric::L2, &NavParams::new(800, 1)));
        let back = NavTier::from_bytes(&t.to_bytes(), 4000).unwrap();
        assert_eq!(back, t);
        assert!(NavTier::from_bytes(&t.to_bytes()[..100], 4000).is_err());
        assert!(NavTier::from_bytes(&t.to_bytes(), 10).is_err());
        // The best entry point must be (nearly) the nearest sample point.
        let mut s = t.scratch();
        let mut out = Vec::new();
        let mut exact_hits = 0;
        for qi in 0..100 {
            let q = &data[qi * 31 * dim..(qi * 31 + 1) * dim];
            t.entry_points(q, 32, 4, &mut s, &mut out);
            let best = t.nodes().iter().copied().min_by(|a, b| {
                let da = kernels::l2_sq(q, &data[*a as usize * dim..(*a as usize + 1) * dim]);
                let db = kernels::l2_sq(q, &data[*b as usize * dim..(*b as usize + 1) * dim]);
                da.partial_cmp(&db).unwrap()
            });
            if out.first().copied() == best {
                exact_hits += 1;
            }
        }
        assert!(
            exact_hits >= 90,
            "nearest sample point found for {exact_hits}/100 queries"
        );
    }

    #[test]
    fn built_from_rows_on_demand_is_the_same_tier_and_scores_by_sample() {
        let dim = 16;
        let n = 3000;
        let data = crate::graph::vamana::tests_support::clustered(n, dim, 4);
        let p = NavParams::new(500, 7);
        let whole = NavTier::build(&data, dim, Metric::L2, &p);
        let mut asked = Vec::new();
        let mut reports = 0;
        let on_demand = NavTier::build_with(
            n,
            dim,
            Metric::L2,
            &p,
            |i, out: &mut Vec<f32>| -> Result<(), String> {
                asked.push(i);
                out.extend_from_slice(&data[i * dim..(i + 1) * dim]);
                Ok(())
            },
            &mut |_, _| reports += 1,
        )
        .unwrap();
        assert_eq!(on_demand, whole);
        assert_eq!(asked, whole.nodes().iter().map(|&v| v as usize).collect::<Vec<_>>());
        assert!(reports > 0, "progress is reported while inserting");
        // A failing row aborts the build with that error.
        let failed = NavTier::build_with(n, dim, Metric::L2, &p, |_, _| Err("disk gone"), &mut |_, _| {});
        assert_eq!(failed.unwrap_err(), "disk gone");

        // Rows gathered in sample order: scoring sample point i from the
        // gathered table gives the same entries as scoring its graph node
        // from the whole table.
        let table: Vec<u8> = (0..n * 3).map(|x| (x * 37 % 251) as u8).collect();
        let rows = whole.sample_rows(&table, 3);
        assert_eq!(rows.len(), whole.len() * 3);
        let q = &data[..dim];
        let by_node = |v: u32| {
            let r = &table[v as usize * 3..v as usize * 3 + 3];
            kernels::l2_sq(q, &data[v as usize * dim..(v as usize + 1) * dim]) + f32::from(r[0])
        };
        let by_sample = |i: u32| {
            let r = &rows[i as usize * 3..i as usize * 3 + 3];
            let v = whole.nodes()[i as usize];
            kernels::l2_sq(q, &data[v as usize * dim..(v as usize + 1) * dim]) + f32::from(r[0])
        };
        let (mut s, mut a, mut b) = (whole.scratch(), Vec::new(), Vec::new());
        whole.entry_points_by_sample(|i| by_node(whole.nodes()[i as usize]), 32, 4, &mut s, &mut a);
        whole.entry_points_by_sample(by_sample, 32, 4, &mut s, &mut b);
        assert_eq!(a, b);
        assert_eq!(a.len(), 4);
    }
}

#[cfg(test)]
mod level_tests {
    use super::*;

    #[test]
    fn every_build_round_trips_whatever_the_sample() {
        // Regression: the first point's level must set max_level, or
        // from_bytes rejects a freshly built tier.
        let dim = 8;
        let data = crate::graph::vamana::tests_support::clustered(300, dim, 5);
        for seed in 0..200 {
            for sample in [1, 2, 4, 16] {
                let t = NavTier::build(&data, dim, Metric::L2, &NavParams::new(sample, seed));
                let back = NavTier::from_bytes(&t.to_bytes(), 300);
                assert!(back.is_ok(), "seed {seed} sample {sample}: {:?}", back.err());
            }
        }
    }
}
