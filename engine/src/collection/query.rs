//! Searching a collection: every disk segment and the fresh indexes
//! together, merged into one answer of live ids.
//!
//! Owns: the per-thread readers over the segments and the merged search.
//! Does not own: the beam search itself (`crate::search`).

use super::{Collection, CollectionError, Result};
use crate::index::DiskIndex;
use crate::search::{Neighbor, QueryResult, QueryStats, SearchParams, Searcher};
use std::sync::Arc;

/// Per-thread searchers over the segments (one io ring each), by segment
/// name. A handful at most (`max_segments`), so a list: a query finds its
/// readers by position without hashing or allocating.
#[derive(Default)]
pub struct Readers {
    open: Vec<(String, Searcher<Arc<DiskIndex>>)>,
}

impl Collection {
    /// The `k` nearest live vectors to `q` over the fresh index and every
    /// segment (list size `l`, beam width `w`).
    pub fn search(&self, q: &[f32], k: usize, l: usize, w: usize, readers: &mut Readers) -> Result<Vec<Neighbor>> {
        self.search_stats(q, k, l, w, readers).map(|(h, _)| h)
    }

    /// [`Collection::search`] with the cost: reads, hops and cache
    /// hits summed over the segments, and the wall time.
    ///
    /// Every segment's disk search is started first, the in-RAM fresh
    /// indexes are searched while those reads are in flight, and then the
    /// segment searches are driven together (each on its own reader), so a
    /// query costs about its slowest part, not the sum. With
    /// [`CollectionOptions::split_l`] each part searches with a list size in
    /// proportion to its share of the vectors, `ceil(L * n / N)` clamped to
    /// `k..=L`: the k nearest overall hold about that share from each part,
    /// so a small segment needs a short list, and the total reads stay
    /// near a single index's.
    pub fn search_stats(
        &self,
        q: &[f32],
        k: usize,
        l: usize,
        w: usize,
        readers: &mut Readers,
    ) -> Result<(Vec<Neighbor>, QueryStats)> {
        let t0 = std::time::Instant::now();
        let mut stats = QueryStats::default();
        crate::vector::check_vector(self.opts.dim, q).map_err(|error| CollectionError::Vector {
            field: "query".into(),
            error,
        })?;
        if k == 0 || l < k {
            return Err(CollectionError::InvalidArgument(format!(
                "need 1 <= k <= L (k = {k}, L = {l})"
            )));
        }
        let mut cand: Vec<(f32, u64)> = Vec::new();
        // Under one read lock (so a flush switching the fresh index into a
        // segment cannot hide vectors between the two): snapshot the
        // segments, start their disk searches, then search the in-RAM
        // fresh indexes while those reads are in flight.
        // Positions in `readers.open` of the searches started; a search's
        // token is its index here.
        let mut started: Vec<usize> = Vec::new();
        let mut first_err: Option<CollectionError> = None;
        {
            let st = self.state.read().expect("lock");
            let segments = &st.segments;
            readers.open.retain(|(n, _)| segments.iter().any(|s| &s.name == n));
            let fresh_n = st.active.len() + st.frozen.as_ref().map_or(0, |f| f.len());
            let total = fresh_n + segments.iter().map(|s| s.index.len()).sum::<usize>();
            let share = |n: usize| -> usize {
                if self.opts.split_l && total > 0 {
                    (l * n).div_ceil(total).clamp(k, l)
                } else {
                    l
                }
            };
            for seg in segments {
                if seg.index.is_empty() {
                    continue;
                }
                let lk = share(seg.index.len()).min(seg.index.len());
                let p = SearchParams::new(lk, lk, w.max(1));
                let pos = match readers.open.iter().position(|(n, _)| n == &seg.name) {
                    Some(pos) => pos,
                    None => match Searcher::new(seg.index.clone(), self.opts.io, p.reader_depth(1)) {
                        Ok(s) => {
                            readers.open.push((seg.name.clone(), s));
                            readers.open.len() - 1
                        }
                        Err(e) => {
                            first_err.get_or_insert(CollectionError::Search(e.into()));
                            continue;
                        }
                    },
                };
                match readers.open[pos].1.start_query(started.len() as u64, q, &p) {
                    Ok(()) => started.push(pos),
                    Err(e) => {
                        first_err.get_or_insert(e.into());
                    }
                }
            }
            let live = |s: u64| st.slots.contains_key(&s);
            cand.extend(st.active.search(q, k, share(st.active.len()), live));
            if let Some(f) = &st.frozen {
                cand.extend(f.search(q, k, share(f.len()), live));
            }
        }
        // Drive every segment's search to its end (also after an error, so
        // no query is left in a reader for the next call to trip over).
        // With one reader left busy, wait on its ring (one io_uring_enter
        // per completion, the searcher's own wait); with several, poll each
        // in turn, yielding the core between rounds rather than spinning
        // bare (a bare spinner on the disk interrupt's CPU slows every
        // read's completion).
        let mut results: Vec<Option<QueryResult>> = vec![None; started.len()];
        let mut pending = started.len();
        while pending > 0 {
            let busy = started.iter().filter(|&&pos| readers.open[pos].1.active() > 0).count();
            for &pos in &started {
                let s = &mut readers.open[pos].1;
                if s.active() > 0 {
                    s.poll(busy == 1, &mut |tok, r| {
                        results[tok as usize] = Some(r);
                        pending -= 1;
                    });
                }
            }
            if pending > 0 && busy > 1 {
                std::thread::yield_now();
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        for r in results.into_iter().flatten() {
            let (nbs, qs) = r?;
            stats.ios += qs.ios;
            stats.hops += qs.hops;
            stats.cache_hits += qs.cache_hits;
            stats.pq_distances += qs.pq_distances;
            stats.exact_distances += qs.exact_distances;
            stats.read_wait_micros += qs.read_wait_micros;
            stats.reads_waited += qs.reads_waited;
            cand.extend(nbs.into_iter().map(|n| (n.distance, n.id)));
        }
        let st = self.state.read().expect("lock");
        cand.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        cand.dedup_by_key(|c| c.1);
        let hits = cand
            .into_iter()
            .filter_map(|(d, s)| st.slots.get(&s).map(|e| Neighbor { id: e.id, distance: d }))
            .take(k)
            .collect();
        stats.micros = t0.elapsed().as_secs_f64() * 1e6;
        Ok((hits, stats))
    }
}
