//! Pipelined beam search over the disk graph.
//!
//! Owns: the per-query state machine and the per-thread loop that keeps
//! many queries in flight over one [`SectorReader`]. Does not own: the
//! reader implementations (`io`), the record format (`format`), or what is
//! kept in RAM (`index`).
//!
//! A query keeps a candidate list of size L ordered by PQ distance. While
//! fewer than W of its reads are in flight, it issues a read for its
//! closest unexpanded candidate (or expands it at once if the node is in
//! the hot-node cache). When any read completes, that node is expanded
//! immediately — exact distance from its stored vector, PQ distances for
//! its unseen neighbours — and new reads are issued. There is no
//! round-by-round barrier (DiskANN waits for the whole beam; PipeANN-style
//! pipelining does not). The query ends when no unexpanded candidate is
//! left in the top L and nothing is in flight; the answer is the k visited
//! nodes with the best exact (stored-vector) distances.

mod idset;
mod params;

pub use idset::IdSet;

use crate::format::{NodeLayout, NodeRef};
use crate::graph::hnsw::NavScratch;
use crate::graph::{CandidateList, NavTier};
use crate::index::DiskIndex;
use crate::io::{self, Completion, IoBackend, ReadError, SectorReader};
use crate::pq::AdcTable;
use crate::Metric;
use std::borrow::Borrow;
use std::time::Instant;

pub use params::{Neighbor, QueryResult, QueryStats, SearchError, SearchParams, WaitMode};

/// A read a query waits for.
#[derive(Clone, Copy, Debug)]
struct Pending {
    sector: u64,
    id: u32,
    issued: Instant,
    hedged: bool,
}

/// A read's tag: slot, the slot's generation, node id.
#[inline]
fn tag(slot: usize, gen: u16, id: u32) -> u64 {
    ((slot as u64) << 48) | (u64::from(gen) << 32) | u64::from(id)
}

/// Most queries one searcher can hold at once (the slot is 16 bits of a
/// read's tag).
pub const MAX_QUERIES_IN_FLIGHT: usize = u16::MAX as usize;

struct QueryState {
    token: u64,
    params: SearchParams,
    query: Vec<f32>,
    table: AdcTable,
    list: CandidateList,
    seen: IdSet,
    /// Scratch: the unseen neighbours of the node being expanded.
    fresh: Vec<u32>,
    full: Vec<(f32, u32)>,
    /// Bumped at each start, so a late read of an earlier query in this
    /// slot is recognised and dropped.
    gen: u16,
    /// Reads this query waits for (its reads in flight, one per sector;
    /// a hedged twin does not count twice).
    pending: Vec<Pending>,
    /// Sectors this query has read that hold several records: (sector,
    /// offset of its copy in `arena`).
    stash: Vec<(u64, usize)>,
    /// Sectors whose cached mates were scored when one of their nodes was
    /// expanded from the cache.
    mated: Vec<u64>,
    arena: Vec<u8>,
    /// Candidates taken for expansion whose sector was already in flight
    /// for another node: expanded when that read arrives, with no read of
    /// their own.
    riders: Vec<u32>,
    stats: QueryStats,
    start: Instant,
    error: Option<SearchError>,
    active: bool,
}

impl QueryState {
    fn new() -> Self {
        QueryState {
            token: 0,
            params: SearchParams::new(1, 1, 1),
            query: Vec::new(),
            table: AdcTable::default(),
            list: CandidateList::new(1),
            seen: IdSet::with_capacity(1024),
            fresh: Vec::new(),
            full: Vec::new(),
            gen: 0,
            pending: Vec::new(),
            stash: Vec::new(),
            mated: Vec::new(),
            arena: Vec::new(),
            riders: Vec::new(),
            stats: QueryStats::default(),
            start: Instant::now(),
            error: None,
            active: false,
        }
    }
}

/// A per-thread searcher: one reader (one ring), many queries in flight.
///
/// `I` is how the searcher holds its index: `&DiskIndex` for a scoped
/// loop, `Arc<DiskIndex>` for a long-lived service shard.
///
/// Two ways to drive it: [`run`](Self::run) answers a slice of queries
/// (closed loop, as `quarryctl search` does); [`start_query`] and
/// [`poll`](Self::poll) form an open loop for a service, where queries
/// arrive at any time, each with its own parameters.
///
/// [`start_query`]: Self::start_query
pub struct Searcher<I: Borrow<DiskIndex>> {
    index: I,
    wait: WaitMode,
    layout: NodeLayout,
    reader: Box<dyn SectorReader>,
    slots: Vec<QueryState>,
    active: usize,
    nav_scratch: Option<NavScratch>,
    entries: Vec<u32>,
    done: Vec<Completion>,
    rerank_reader: Option<Box<dyn SectorReader>>,
}

impl<I: Borrow<DiskIndex>> Searcher<I> {
    /// A searcher over `index` with a reader of `depth` buffers.
    pub fn new(index: I, backend: IoBackend, depth: usize) -> Result<Self, ReadError> {
        let ix: &DiskIndex = index.borrow();
        let layout = ix.header().layout;
        let reader = io::open_reader(&ix.graph_path(), layout.read_sectors() * io::SECTOR, depth, backend)?;
        let rerank = if ix.manifest().rerank_file {
            let rl = crate::format::RerankLayout::new(ix.dim());
            Some(io::open_reader(&ix.rerank_path(), rl.read_len(), 32, backend)?)
        } else {
            None
        };
        let mut s = Self::with_reader(index, reader);
        s.rerank_reader = rerank;
        Ok(s)
    }

    /// A searcher over `index` reading through `reader` (e.g. a
    /// [`crate::io::FaultReader`]).
    pub fn with_reader(index: I, reader: Box<dyn SectorReader>) -> Self {
        let ix: &DiskIndex = index.borrow();
        let layout = ix.header().layout;
        let nav_scratch = ix.nav().map(NavTier::scratch);
        Searcher {
            index,
            wait: WaitMode::default(),
            layout,
            reader,
            slots: Vec::new(),
            active: 0,
            nav_scratch,
            entries: Vec::new(),
            done: Vec::new(),
            rerank_reader: None,
        }
    }

    /// How [`run`](Self::run) and [`search`](Self::search) wait for reads.
    pub fn set_wait_mode(&mut self, mode: WaitMode) {
        self.wait = mode;
    }

    /// The index searched.
    pub fn index(&self) -> &DiskIndex {
        self.index.borrow()
    }

    /// The reader's description (backend, registered buffers, O_DIRECT).
    pub fn reader_description(&self) -> String {
        self.reader.describe()
    }

    /// Ask the reader(s) to signal `fd` (an eventfd) whenever a read
    /// completes, so a caller parked elsewhere wakes up. False where the
    /// reader cannot (pread completes synchronously; nothing to wait for).
    pub fn notify_completions(&mut self, fd: std::os::fd::RawFd) -> bool {
        let main = self.reader.notify_completions(fd);
        if let Some(r) = self.rerank_reader.as_deref_mut() {
            r.notify_completions(fd);
        }
        main
    }

    /// Queries started and not yet answered.
    pub fn active(&self) -> usize {
        self.active
    }

    /// Answer one query.
    pub fn search(&mut self, q: &[f32], p: &SearchParams) -> QueryResult {
        let mut out = None;
        self.run(q, 1, p, |_, r| out = Some(r))?;
        out.expect("one query yields one result")
    }

    /// Answer every query in `queries` (row-major, dim each) with up to
    /// `inflight` queries interleaved on this thread; `on_done(index,
    /// result)` is called as each finishes (not in order). Fails up front
    /// on invalid parameters or query shape.
    pub fn run(
        &mut self,
        queries: &[f32],
        inflight: usize,
        p: &SearchParams,
        mut on_done: impl FnMut(usize, QueryResult),
    ) -> Result<(), SearchError> {
        let dim = self.index().dim();
        p.validate(self.index().len())?;
        if !queries.len().is_multiple_of(dim) {
            return Err(SearchError::BadRequest(format!(
                "query length {} is not a multiple of the dimension {dim}",
                queries.len()
            )));
        }
        let nq = queries.len() / dim;
        let inflight = inflight.max(1);
        let mut next = 0;
        let mut emit = |t: u64, r: QueryResult| on_done(t as usize, r);
        while next < nq || self.active > 0 {
            while next < nq && self.active < inflight {
                if let Err(e) = self.start_query(next as u64, &queries[next * dim..(next + 1) * dim], p) {
                    emit(next as u64, Err(e));
                }
                next += 1;
            }
            match self.wait {
                WaitMode::Block => self.poll(true, &mut emit),
                WaitMode::Poll => {
                    self.poll(false, &mut emit);
                    std::hint::spin_loop();
                }
            }
        }
        Ok(())
    }

    /// Start answering `q` with parameters `p`; the answer comes out of a
    /// later [`poll`](Self::poll) tagged with `token`. Invalid parameters or
    /// a query of the wrong length or with a non-finite value fail here,
    /// and nothing is started.
    pub fn start_query(&mut self, token: u64, q: &[f32], p: &SearchParams) -> Result<(), SearchError> {
        let index: &DiskIndex = self.index.borrow();
        p.validate(index.len())?;
        crate::vector::check_vector(index.dim(), q).map_err(|e| SearchError::BadRequest(e.describe("query")))?;
        let s = match self.slots.iter().position(|st| !st.active) {
            Some(s) => s,
            None if self.slots.len() >= MAX_QUERIES_IN_FLIGHT => {
                return Err(SearchError::BadRequest(format!(
                    "this searcher already has {MAX_QUERIES_IN_FLIGHT} queries in flight"
                )));
            }
            None => {
                self.slots.push(QueryState::new());
                self.slots.len() - 1
            }
        };
        let st = &mut self.slots[s];
        st.token = token;
        st.params = *p;
        st.start = Instant::now();
        st.query.clear();
        st.query.extend_from_slice(q);
        if index.metric() == Metric::Cosine {
            crate::metric::normalize(&mut st.query);
        }
        index.pq().table(&st.query, index.metric(), &mut st.table);
        st.list.reset(p.l);
        st.seen.clear();
        st.full.clear();
        st.gen = st.gen.wrapping_add(1);
        st.pending.clear();
        st.stash.clear();
        st.mated.clear();
        st.arena.clear();
        st.riders.clear();
        st.stats = QueryStats::default();
        st.error = None;
        st.active = true;
        self.active += 1;
        self.entries.clear();
        match (index.nav(), &mut self.nav_scratch) {
            (Some(nav), Some(scratch)) if p.use_nav => {
                if p.nav_pq {
                    let (table, codes, m) = (&st.table, index.nav_codes(), index.pq().m());
                    let dist = |i: u32| table.distance(&codes[i as usize * m..(i as usize + 1) * m]);
                    nav.entry_points_by_sample(dist, p.nav_ef, p.nav_entries, scratch, &mut self.entries)
                } else {
                    nav.entry_points(&st.query, p.nav_ef, p.nav_entries, scratch, &mut self.entries)
                }
            }
            _ => {}
        }
        if self.entries.is_empty() {
            self.entries.push(index.header().medoid as u32);
        }
        let m = index.pq().m();
        for &e in &self.entries {
            if st.seen.insert(e) {
                let d = st.table.distance(&index.codes()[e as usize * m..(e as usize + 1) * m]);
                st.stats.pq_distances += 1;
                st.list.insert(d, e);
            }
        }
        Ok(())
    }

    /// Make progress on every active query: issue reads up to each one's W,
    /// expand arrived nodes, and hand finished answers to `on_done(token,
    /// result)`. With `wait`, blocks until at least one read completes (if
    /// any is in flight); without, only submits and reaps what is ready.
    pub fn poll(&mut self, wait: bool, on_done: &mut dyn FnMut(u64, QueryResult)) {
        self.issue_and_finish(on_done);
        if self.active == 0 {
            return;
        }
        if let Err(e) = self.reader.complete(usize::from(wait), &mut self.done) {
            for st in self.slots.iter_mut().filter(|s| s.active) {
                st.error.get_or_insert(SearchError::Read(e.clone()));
            }
        }
        let index: &DiskIndex = self.index.borrow();
        let reaped_at = (!self.done.is_empty()).then(Instant::now);
        for c in self.done.drain(..) {
            let s = (c.tag >> 48) as usize;
            let gen = (c.tag >> 32) as u16;
            let id = c.tag as u32;
            let st = &mut self.slots[s];
            let (sector, off) = self.layout.locate(id);
            let waiting = if st.active && st.gen == gen {
                st.pending.iter().position(|p| p.sector == sector && p.id == id)
            } else {
                None
            };
            let Some(k) = waiting else {
                // The slower twin of a hedged read, or a read of a query
                // that has already answered.
                self.reader.release(c.slot);
                continue;
            };
            let read = st.pending.swap_remove(k);
            if let Some(t) = reaped_at {
                st.stats.read_wait_micros += t.saturating_duration_since(read.issued).as_secs_f64() * 1e6;
                st.stats.reads_waited += 1;
            }
            match c.result {
                Ok(()) => {
                    if st.error.is_none() {
                        let buf = self.reader.buffer(c.slot);
                        let rec = &buf[off..off + self.layout.node_size];
                        let mut r = expand(index, &self.layout, st, id, rec);
                        if r.is_ok() && st.params.sector_mates && self.layout.nodes_per_sector > 1 {
                            r = take_mates(index, &self.layout, st, id, sector, buf);
                        }
                        if let Err(e) = r {
                            st.error = Some(e);
                        }
                    }
                }
                Err(e) => {
                    st.error.get_or_insert(SearchError::Read(e));
                }
            }
            self.reader.release(c.slot);
        }
        self.hedge();
        self.issue_and_finish(on_done);
        if !wait {
            // Reads issued just now must reach the kernel before the
            // caller sleeps elsewhere.
            if let Err(e) = self.reader.flush() {
                for st in self.slots.iter_mut().filter(|s| s.active) {
                    st.error.get_or_insert(SearchError::Read(e.clone()));
                }
            }
        }
    }

    /// Re-issue every read that has waited longer than its query's
    /// `hedge_us` (once per read): whichever copy arrives first is used.
    fn hedge(&mut self) {
        if !self.slots.iter().any(|st| st.active && st.params.hedge_us > 0) {
            return;
        }
        let now = Instant::now();
        let read_sectors = self.layout.read_sectors() as u32;
        for (s, st) in self.slots.iter_mut().enumerate() {
            if !st.active || st.params.hedge_us == 0 || st.error.is_some() {
                continue;
            }
            let after = std::time::Duration::from_micros(u64::from(st.params.hedge_us));
            for p in st.pending.iter_mut() {
                if p.hedged || now.duration_since(p.issued) < after {
                    continue;
                }
                if self.reader.in_use() >= self.reader.capacity() {
                    return;
                }
                match self.reader.submit(p.sector, tag(s, st.gen, p.id)) {
                    Ok(_) => {
                        p.hedged = true;
                        st.stats.ios += read_sectors;
                        st.stats.hedged_reads += 1;
                    }
                    // Out of buffers or a failing submit: the original read
                    // is still on its way, so carry on without the twin.
                    Err(_) => return,
                }
            }
        }
    }

    /// Issue reads for every active query and finish those with nothing
    /// left to do.
    fn issue_and_finish(&mut self, on_done: &mut dyn FnMut(u64, QueryResult)) {
        for s in 0..self.slots.len() {
            if !self.slots[s].active {
                continue;
            }
            self.issue(s);
            let st = &mut self.slots[s];
            if st.params.budget_us > 0
                && !st.pending.is_empty()
                && st.error.is_none()
                && st.full.len() >= st.params.k
                && st.start.elapsed().as_micros() >= u128::from(st.params.budget_us)
            {
                // Out of time: answer from what is scored. The reads still
                // in flight come back to a finished (or newer) query and
                // are dropped by their tag's generation.
                st.pending.clear();
                st.riders.clear();
                st.stats.budget_cut = 1;
            }
            let cut = st.stats.budget_cut == 1;
            if cut || (st.pending.is_empty() && (st.error.is_some() || st.list.first_unexpanded().is_none())) {
                let r = self.finish(s);
                self.slots[s].active = false;
                self.active -= 1;
                on_done(self.slots[s].token, r);
            }
        }
    }

    /// Issue reads for slot `s` up to its W in flight, expanding cached
    /// nodes inline.
    fn issue(&mut self, s: usize) {
        let index: &DiskIndex = self.index.borrow();
        loop {
            let st = &mut self.slots[s];
            if st.error.is_some() || st.pending.len() >= st.params.w {
                return;
            }
            let Some(i) = st.list.first_unexpanded() else {
                return;
            };
            let id = st.list.as_slice()[i].id;
            if let Some(rec) = index.cache().get(id) {
                st.list.take(i);
                st.stats.cache_hits += 1;
                let mut r = expand(index, &self.layout, st, id, rec);
                if r.is_ok() && st.params.sector_mates && self.layout.nodes_per_sector > 1 {
                    r = score_cached_mates(index, &self.layout, st, id);
                }
                if let Err(e) = r {
                    st.error = Some(e);
                }
                continue;
            }
            let (sector, off) = self.layout.locate(id);
            if st.params.sector_mates && self.layout.nodes_per_sector > 1 {
                if let Some(&(_, at)) = st.stash.iter().find(|x| x.0 == sector) {
                    // Read already, for a sector-mate, and scored then.
                    st.list.take(i);
                    st.stats.mate_expansions += 1;
                    // The arena is moved out while its record is in use.
                    let arena = std::mem::take(&mut st.arena);
                    let rec = &arena[at + off..at + off + self.layout.node_size];
                    let r = self
                        .layout
                        .node(rec)
                        .map_err(|detail| SearchError::Corrupt { node: id, detail })
                        .and_then(|node| push_neighbors(index, st, id, node.neighbors));
                    st.arena = arena;
                    if let Err(e) = r {
                        st.error = Some(e);
                    }
                    continue;
                }
                if st.pending.iter().any(|p| p.sector == sector) {
                    // Its sector is already on its way for another node.
                    st.list.take(i);
                    st.riders.push(id);
                    continue;
                }
            }
            if self.reader.in_use() >= self.reader.capacity() {
                return;
            }
            match self.reader.submit(sector, tag(s, st.gen, id)) {
                Ok(_) => {
                    st.list.take(i);
                    st.pending.push(Pending {
                        sector,
                        id,
                        issued: Instant::now(),
                        hedged: false,
                    });
                    st.stats.ios += self.layout.read_sectors() as u32;
                }
                Err(ReadError::Full(_)) => return,
                Err(e) => {
                    st.error = Some(SearchError::Read(e));
                    return;
                }
            }
        }
    }

    fn finish(&mut self, s: usize) -> QueryResult {
        let index: &DiskIndex = self.index.borrow();
        let st = &mut self.slots[s];
        let p = st.params;
        if let Some(e) = st.error.take() {
            return Err(e);
        }
        st.full
            .sort_unstable_by(|a, b| (a.0, a.1).partial_cmp(&(b.0, b.1)).expect("finite distances"));
        // A node can be scored twice (as a sector-mate and from the cache).
        st.full.dedup_by_key(|x| x.1);
        if p.rerank > 0 {
            let Some(reader) = self.rerank_reader.as_deref_mut() else {
                return Err(SearchError::BadRequest(
                    "rerank was asked for but the index has no rerank file (build with --rerank-file)".into(),
                ));
            };
            let count = p.rerank.min(st.full.len());
            st.stats.ios += rerank(index, reader, &st.query, &mut st.full[..count])?;
            st.stats.exact_distances += count as u32;
        }
        let metric = index.metric();
        let res = st
            .full
            .iter()
            .take(p.k)
            .map(|&(d, id)| Neighbor {
                id: index.ids()[id as usize],
                distance: if metric == Metric::Cosine { d / 2.0 } else { d },
            })
            .collect();
        st.stats.micros = st.start.elapsed().as_secs_f64() * 1e6;
        Ok((res, st.stats))
    }
}

/// Re-score `cands` with f32 vectors from the rerank file (one read per
/// distinct sector, all in flight together), then re-sort them. Returns the
/// sectors read.
fn rerank(
    index: &DiskIndex,
    reader: &mut dyn SectorReader,
    q: &[f32],
    cands: &mut [(f32, u32)],
) -> Result<u32, SearchError> {
    let rl = crate::format::RerankLayout::new(index.dim());
    let dim = index.dim();
    let metric = index.metric();
    let mut sectors: Vec<u64> = cands.iter().map(|c| rl.locate(c.1 as usize).0).collect();
    sectors.sort_unstable();
    sectors.dedup();
    let mut done = Vec::new();
    let mut ios = 0u32;
    let mut v = vec![0f32; dim];
    for chunk in sectors.chunks(reader.capacity()) {
        for &sec in chunk {
            reader.submit(sec, sec)?;
        }
        let mut got = 0;
        while got < chunk.len() {
            reader.complete(1, &mut done)?;
            for c in done.drain(..) {
                got += 1;
                let res = c.result.clone();
                if res.is_ok() {
                    let buf = reader.buffer(c.slot);
                    for cand in cands.iter_mut().filter(|x| rl.locate(x.1 as usize).0 == c.tag) {
                        let off = rl.locate(cand.1 as usize).1;
                        for (o, b) in v.iter_mut().zip(buf[off..off + 4 * dim].chunks_exact(4)) {
                            *o = f32::from_le_bytes(b.try_into().expect("4"));
                        }
                        cand.0 = match metric {
                            Metric::Ip => -crate::kernels::dot(q, &v),
                            _ => crate::kernels::l2_sq(q, &v),
                        };
                    }
                }
                reader.release(c.slot);
                res?;
            }
        }
        ios += (chunk.len() * rl.sectors_per_vector) as u32;
    }
    cands.sort_unstable_by(|a, b| (a.0, a.1).partial_cmp(&(b.0, b.1)).expect("finite distances"));
    Ok(ios)
}

/// Expand node `id` whose record is `rec`: exact distance, then PQ
/// distances for unseen neighbours.
#[inline]
fn expand(index: &DiskIndex, layout: &NodeLayout, st: &mut QueryState, id: u32, rec: &[u8]) -> Result<(), SearchError> {
    let node = layout
        .node(rec)
        .map_err(|detail| SearchError::Corrupt { node: id, detail })?;
    let d = score(index, st, id, &node)?;
    if st.params.refine_exact {
        st.list.refine(id, d);
    }
    push_neighbors(index, st, id, node.neighbors)
}

/// The sector read for `id` (in `buf`) also holds other records: score
/// each exactly (a free candidate for the answer), expand the riders that
/// were waiting for this sector, and keep a copy of the sector so a later
/// expansion of any mate needs no read. Which nodes the search expands is
/// unchanged; only their reads are saved.
fn take_mates(
    index: &DiskIndex,
    layout: &NodeLayout,
    st: &mut QueryState,
    id: u32,
    sector: u64,
    buf: &[u8],
) -> Result<(), SearchError> {
    let nps = layout.nodes_per_sector as u32;
    let base = id - id % nps;
    let end = (base + nps).min(index.len() as u32);
    for u in (base..end).filter(|&u| u != id) {
        let off = (u - base) as usize * layout.node_size;
        let node = layout
            .node(&buf[off..off + layout.node_size])
            .map_err(|detail| SearchError::Corrupt { node: u, detail })?;
        score(index, st, u, &node)?;
        if let Some(k) = st.riders.iter().position(|&x| x == u) {
            st.riders.swap_remove(k);
            st.stats.mate_expansions += 1;
            push_neighbors(index, st, u, node.neighbors)?;
        }
    }
    let len = (end - base) as usize * layout.node_size;
    st.stash.push((sector, st.arena.len()));
    st.arena.extend_from_slice(&buf[..len]);
    Ok(())
}

/// `id` was expanded from the cache: score its sector-mates that are cached
/// too, once per sector, as a read of that sector would have (see
/// `take_mates`), so a RAM-resident index finds the candidates the same
/// index finds from disk. Mates not cached are left alone: scoring them
/// would cost a read.
fn score_cached_mates(index: &DiskIndex, layout: &NodeLayout, st: &mut QueryState, id: u32) -> Result<(), SearchError> {
    let (sector, _) = layout.locate(id);
    if st.mated.contains(&sector) || st.stash.iter().any(|x| x.0 == sector) {
        return Ok(());
    }
    st.mated.push(sector);
    let nps = layout.nodes_per_sector as u32;
    let base = id - id % nps;
    let end = (base + nps).min(index.len() as u32);
    for u in (base..end).filter(|&u| u != id) {
        if let Some(rec) = index.cache().get(u) {
            let node = layout
                .node(rec)
                .map_err(|detail| SearchError::Corrupt { node: u, detail })?;
            score(index, st, u, &node)?;
        }
    }
    Ok(())
}

/// Exact distance of node `id` from its stored vector, recorded as a
/// candidate for the answer.
#[inline]
fn score(index: &DiskIndex, st: &mut QueryState, id: u32, node: &NodeRef<'_>) -> Result<f32, SearchError> {
    let d = node.vector.distance(index.metric(), &st.query);
    if !d.is_finite() {
        return Err(SearchError::Corrupt {
            node: id,
            detail: "stored vector is not finite".into(),
        });
    }
    st.full.push((d, id));
    st.stats.exact_distances += 1;
    Ok(d)
}

/// PQ-score the unseen neighbours of `id` into the candidate list.
#[inline]
fn push_neighbors(index: &DiskIndex, st: &mut QueryState, id: u32, neighbors: &[u32]) -> Result<(), SearchError> {
    let n = index.len() as u32;
    st.stats.hops += 1;
    let m = index.pq().m();
    // Two passes: first find the unseen neighbours and prefetch their code
    // rows (each is a likely cache miss in a large code array), then score
    // them, so the misses overlap instead of queueing one after another.
    st.fresh.clear();
    for &v in neighbors {
        if v >= n {
            return Err(SearchError::Corrupt {
                node: id,
                detail: format!("neighbour id {v} is beyond n = {n}"),
            });
        }
        if st.seen.insert(v) {
            crate::kernels::prefetch(&index.codes()[v as usize * m..(v as usize + 1) * m]);
            st.fresh.push(v);
        }
    }
    for &v in &st.fresh {
        let pd = st.table.distance(&index.codes()[v as usize * m..(v as usize + 1) * m]);
        st.list.insert(pd, v);
    }
    st.stats.pq_distances += st.fresh.len() as u32;
    Ok(())
}

/// Run `queries` on `threads` threads, each pinned to its core with its own
/// reader (ring), `inflight` queries interleaved per thread. Results come
/// back in query order.
pub fn search_parallel(
    index: &DiskIndex,
    queries: &[f32],
    p: &SearchParams,
    threads: usize,
    inflight: usize,
    backend: IoBackend,
    wait: WaitMode,
) -> Result<Vec<QueryResult>, SearchError> {
    let dim = index.dim();
    let nq = queries.len() / dim;
    let threads = threads.max(1);
    let depth = p.reader_depth(inflight);
    let chunk = 16usize;
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<QueryResult>> = vec![None; nq];
    let parts: Vec<Result<Vec<(usize, QueryResult)>, SearchError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let counter = &counter;
                scope.spawn(move || -> Result<Vec<(usize, QueryResult)>, SearchError> {
                    crate::runtime::pin_to_core(t);
                    let mut searcher = Searcher::new(index, backend, depth)?;
                    searcher.set_wait_mode(wait);
                    let mut out = Vec::new();
                    loop {
                        let start = counter.fetch_add(chunk, std::sync::atomic::Ordering::Relaxed);
                        if start >= nq {
                            break;
                        }
                        let end = (start + chunk).min(nq);
                        searcher.run(&queries[start * dim..end * dim], inflight, p, |i, r| {
                            out.push((start + i, r))
                        })?;
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("search thread panicked"))
            .collect()
    });
    for part in parts {
        for (i, r) in part? {
            results[i] = Some(r);
        }
    }
    Ok(results.into_iter().map(|r| r.expect("every query answered")).collect())
}

#[cfg(test)]
mod tests;
