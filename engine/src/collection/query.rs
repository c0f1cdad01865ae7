//! Searching a collection: every disk segment and the fresh indexes
//! together, merged into one answer of live ids.
//!
//! Owns: [`CollectionSearcher`], the open-loop searcher of one collection
//! (`start_query`/`poll`, like [`crate::search::Searcher`], so a service
//! shard interleaves a collection's queries with everything else on its
//! rings and waits with its own policy), and the closed-loop
//! [`Collection::search`] built on it. Does not own: the beam search
//! itself (`crate::search`) or the liveness of slots (`super`).
//!
//! A query starts one disk search per segment (each segment has its own
//! `Searcher`, one io ring, in this searcher), searches the in-RAM fresh
//! indexes while those reads are in flight, and is answered when its last
//! segment search finishes: candidates merged by distance, deduplicated,
//! filtered to live slots, mapped to external ids. With
//! [`CollectionOptions::split_l`](super::CollectionOptions::split_l) each
//! part searches with a list size in proportion to its share of the
//! vectors, `ceil(L * n / N)` clamped to `k..=L`: the k nearest overall
//! hold about that share from each part, so a small segment needs a short
//! list, and the total reads stay near a single index's.

use super::{Collection, CollectionError, Result};
use crate::index::DiskIndex;
use crate::io::IoBackend;
use crate::search::{Neighbor, QueryResult, QueryStats, SearchParams, Searcher};
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

/// What a finished collection query hands back.
pub type CollectionResult = Result<(Vec<Neighbor>, QueryStats)>;

/// One segment's searcher.
struct SegmentReader {
    name: String,
    searcher: Searcher<Arc<DiskIndex>>,
    /// Its ring signals the caller's eventfd on completions.
    notifies: bool,
}

/// A query waiting for its segment searches.
struct Pending {
    k: usize,
    parts_left: usize,
    cand: Vec<(f32, u64)>,
    stats: QueryStats,
    error: Option<CollectionError>,
    started: Instant,
}

/// Searches one collection, many queries at a time: one reader per disk
/// segment, started with [`CollectionSearcher::start_query`] and driven
/// with [`CollectionSearcher::poll`]. A handful of segments at most
/// (`max_segments`), so the readers are a list.
pub struct CollectionSearcher {
    /// Reader depth (buffers) per segment; 0 = enough for one query.
    depth: usize,
    notify: Option<RawFd>,
    readers: Vec<SegmentReader>,
    queries: HashMap<u64, Pending>,
    /// Segment search token → the collection query it belongs to.
    parts: HashMap<u64, u64>,
    next_part: u64,
    /// Queries answered without waiting for a read (no disk part, or
    /// every part refused at start).
    ready: Vec<(u64, CollectionResult)>,
    finished: Vec<(u64, QueryResult)>,
}

impl Default for CollectionSearcher {
    fn default() -> Self {
        CollectionSearcher::new(0)
    }
}

impl CollectionSearcher {
    /// A searcher whose segment readers have `depth` buffers each (0:
    /// enough for one query at a time).
    pub fn new(depth: usize) -> Self {
        CollectionSearcher {
            depth,
            notify: None,
            readers: Vec::new(),
            queries: HashMap::new(),
            parts: HashMap::new(),
            next_part: 0,
            ready: Vec::new(),
            finished: Vec::new(),
        }
    }

    /// Ask every segment reader, now and later, to signal `fd` (an
    /// eventfd) whenever a read completes. False if a reader cannot (then
    /// the caller must poll while [`CollectionSearcher::active`] > 0).
    pub fn notify_completions(&mut self, fd: RawFd) -> bool {
        self.notify = Some(fd);
        let mut all = true;
        for r in &mut self.readers {
            r.notifies = r.searcher.notify_completions(fd);
            all &= r.notifies;
        }
        all
    }

    /// Whether every reader signals the eventfd given to
    /// [`CollectionSearcher::notify_completions`].
    pub fn notifies(&self) -> bool {
        self.notify.is_some() && self.readers.iter().all(|r| r.notifies)
    }

    /// Queries started and not yet handed back.
    pub fn active(&self) -> usize {
        self.queries.len() + self.ready.len()
    }

    /// Segment readers with reads in flight.
    pub fn busy_readers(&self) -> usize {
        self.readers.iter().filter(|r| r.searcher.active() > 0).count()
    }

    /// Start query `token` (any value not in use) over `coll`. Errors in
    /// the request itself are returned at once; a failure of a segment's
    /// search is the query's answer, handed back by `poll`.
    pub fn start_query(&mut self, coll: &Collection, token: u64, q: &[f32], p: &SearchParams) -> Result<()> {
        crate::vector::check_vector(coll.opts.dim, q).map_err(|error| CollectionError::Vector {
            field: "query".into(),
            error,
        })?;
        // Ranges of k, L, W and the rest (an empty collection is not an
        // error: it answers nothing).
        p.validate(1)?;
        let (k, l) = (p.k, p.l);
        let started = Instant::now();
        let mut pending = Pending {
            k,
            parts_left: 0,
            cand: Vec::new(),
            stats: QueryStats::default(),
            error: None,
            started,
        };
        // Under one read lock (so a flush switching the fresh index into a
        // segment cannot hide vectors between the two): snapshot the
        // segments, start their disk searches, then search the in-RAM
        // fresh indexes while those reads are in flight.
        let st = coll.state.read().expect("lock");
        let segments = &st.segments;
        // Readers of segments a merge retired go once they are idle.
        self.readers
            .retain(|r| r.searcher.active() > 0 || segments.iter().any(|s| s.name == r.name));
        let fresh_n = st.active.len() + st.frozen.as_ref().map_or(0, |f| f.len());
        let total = fresh_n + segments.iter().map(|s| s.index.len()).sum::<usize>();
        let share = |n: usize| -> usize {
            if coll.opts.split_l && total > 0 {
                (l * n).div_ceil(total).clamp(k, l)
            } else {
                l
            }
        };
        // One segment and nothing else, every row live: the segment's own
        // answer is the collection's, so it is asked exactly what the
        // caller asked (a built index searched as such).
        let sole = segments.len() == 1 && fresh_n == 0 && st.slots.len() == segments[0].rows.len();
        for seg in segments {
            if seg.index.is_empty() {
                continue;
            }
            let sp = if sole {
                *p
            } else {
                let lk = share(seg.index.len()).min(seg.index.len());
                SearchParams { k: lk, l: lk, ..*p }
            };
            let pos = match self.readers.iter().position(|r| r.name == seg.name) {
                Some(pos) => pos,
                None => {
                    let depth = if self.depth > 0 { self.depth } else { sp.reader_depth(1) };
                    match Searcher::new(seg.index.clone(), coll.opts.io, depth) {
                        Ok(mut searcher) => {
                            let notifies = self.notify.is_some_and(|fd| searcher.notify_completions(fd));
                            self.readers.push(SegmentReader {
                                name: seg.name.clone(),
                                searcher,
                                notifies,
                            });
                            self.readers.len() - 1
                        }
                        Err(e) => {
                            pending.error.get_or_insert(CollectionError::Search(e.into()));
                            continue;
                        }
                    }
                }
            };
            let part = self.next_part;
            self.next_part += 1;
            match self.readers[pos].searcher.start_query(part, q, &sp) {
                Ok(()) => {
                    self.parts.insert(part, token);
                    pending.parts_left += 1;
                }
                Err(e) => {
                    pending.error.get_or_insert(e.into());
                }
            }
        }
        let live = |s: u64| st.slots.contains_key(&s);
        pending
            .cand
            .extend(st.active.search(q, k, share(st.active.len()), live));
        if let Some(f) = &st.frozen {
            pending.cand.extend(f.search(q, k, share(f.len()), live));
        }
        drop(st);
        if pending.parts_left == 0 {
            let answer = finish(coll, pending);
            self.ready.push((token, answer));
        } else {
            self.queries.insert(token, pending);
        }
        Ok(())
    }

    /// Make progress on every started query and hand each finished answer
    /// to `on_done(token, result)`. With `wait` and exactly one segment
    /// reader busy, blocks on that reader until a read completes; otherwise
    /// only submits and reaps what is ready (the caller decides how to
    /// wait: on the eventfd, or by polling again).
    pub fn poll(&mut self, coll: &Collection, wait: bool, on_done: &mut dyn FnMut(u64, CollectionResult)) {
        for (token, r) in self.ready.drain(..) {
            on_done(token, r);
        }
        if self.queries.is_empty() {
            return;
        }
        let wait = wait && self.busy_readers() == 1;
        let finished = &mut self.finished;
        for r in &mut self.readers {
            if r.searcher.active() > 0 {
                r.searcher.poll(wait, &mut |part, res| finished.push((part, res)));
            }
        }
        for (part, res) in self.finished.drain(..) {
            let token = self.parts.remove(&part).expect("every part belongs to a query");
            let p = self.queries.get_mut(&token).expect("a query with parts left");
            p.parts_left -= 1;
            match res {
                Ok((nbs, qs)) => {
                    p.stats.ios += qs.ios;
                    p.stats.hops += qs.hops;
                    p.stats.cache_hits += qs.cache_hits;
                    p.stats.pq_distances += qs.pq_distances;
                    p.stats.exact_distances += qs.exact_distances;
                    p.stats.read_wait_micros += qs.read_wait_micros;
                    p.stats.reads_waited += qs.reads_waited;
                    p.stats.budget_cut = p.stats.budget_cut.max(qs.budget_cut);
                    p.cand.extend(nbs.into_iter().map(|n| (n.distance, n.id)));
                }
                Err(e) => {
                    p.error.get_or_insert(e.into());
                }
            }
            if p.parts_left == 0 {
                let p = self.queries.remove(&token).expect("present");
                on_done(token, finish(coll, p));
            }
        }
    }
}

/// A query whose every part has answered: its error, or the k nearest
/// live candidates with external ids.
fn finish(coll: &Collection, mut p: Pending) -> CollectionResult {
    if let Some(e) = p.error {
        return Err(e);
    }
    let st = coll.state.read().expect("lock");
    p.cand.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    p.cand.dedup_by_key(|c| c.1);
    let hits = p
        .cand
        .into_iter()
        .filter_map(|(d, s)| st.slots.get(&s).map(|e| Neighbor { id: e.id, distance: d }))
        .take(p.k)
        .collect();
    p.stats.micros = p.started.elapsed().as_secs_f64() * 1e6;
    Ok((hits, p.stats))
}

impl Collection {
    /// The `k` nearest live vectors to `q` over the fresh index and every
    /// segment (list size `l`, beam width `w`), one query at a time on
    /// `searcher`.
    pub fn search(
        &self,
        q: &[f32],
        k: usize,
        l: usize,
        w: usize,
        searcher: &mut CollectionSearcher,
    ) -> Result<Vec<Neighbor>> {
        self.search_stats(q, k, l, w, searcher).map(|(h, _)| h)
    }

    /// [`Collection::search`] with the cost: reads, hops and cache hits
    /// summed over the segments, and the wall time. Every segment's
    /// search runs at once, so a query costs about its slowest part.
    pub fn search_stats(
        &self,
        q: &[f32],
        k: usize,
        l: usize,
        w: usize,
        searcher: &mut CollectionSearcher,
    ) -> Result<(Vec<Neighbor>, QueryStats)> {
        self.search_with(q, &SearchParams::new(k, l, w), searcher)
    }

    /// [`Collection::search_stats`] with every search parameter.
    pub fn search_with(
        &self,
        q: &[f32],
        p: &SearchParams,
        searcher: &mut CollectionSearcher,
    ) -> Result<(Vec<Neighbor>, QueryStats)> {
        assert_eq!(searcher.active(), 0, "search_with needs an idle searcher");
        searcher.start_query(self, 0, q, p)?;
        let mut out = None;
        while out.is_none() {
            searcher.poll(self, true, &mut |_, r| out = Some(r));
            if out.is_none() && searcher.busy_readers() > 1 {
                // Several rings busy: yield between polls rather than spin
                // bare (a bare spinner on the disk interrupt's CPU slows
                // every read's completion).
                std::thread::yield_now();
            }
        }
        out.expect("answered")
    }

    /// The reader backend searches use.
    pub fn io_backend(&self) -> IoBackend {
        self.opts.io
    }
}
