//! What a search is asked and what it answers: [`SearchParams`] and their
//! ranges, [`WaitMode`], [`Neighbor`], [`QueryStats`], [`SearchError`].
//!
//! Owns: those types. Does not own: the search (`super::Searcher`).

use crate::io::ReadError;

/// Search parameters.
#[derive(Clone, Copy, Debug)]
pub struct SearchParams {
    /// Results wanted.
    pub k: usize,
    /// Candidate list size (≥ k).
    pub l: usize,
    /// Reads in flight per query.
    pub w: usize,
    /// Use the navigation tier for entry points (else the medoid).
    pub use_nav: bool,
    /// Navigation-tier search beam.
    pub nav_ef: usize,
    /// Score navigation-tier points with the query's PQ table over their
    /// codes (a compact copy of the sample's, `DiskIndex::nav_codes`)
    /// instead of the tier's f16 vectors: the same IOs on the dev set and
    /// at 1M (ARCHITECTURE.md, "A query").
    pub nav_pq: bool,
    /// Entry points taken from the navigation tier.
    pub nav_entries: usize,
    /// Re-score this many of the best candidates with full-precision f32
    /// vectors from the rerank file (0 = use the stored vectors only). Each
    /// re-scored vector costs a sector read (shared when several sit in one
    /// sector). Needs an index built with `--rerank-file`.
    pub rerank: usize,
    /// Once a node is read, rank it in the candidate list by its exact
    /// (stored-vector) distance instead of its PQ estimate. Off by default:
    /// on the dev set it bought recall only with proportionally more IOs
    /// (0.949 at 36 IOs vs 0.956 at 35 IOs without it).
    pub refine_exact: bool,
    /// When a read brings a sector holding several records, score the
    /// target's sector-mates exactly too, and expand any of them the search
    /// later wants from a per-query copy of the sector, with no read of
    /// their own. On by default; it pays most on a co-located index (see
    /// `graph::layout`).
    pub sector_mates: bool,
    /// Re-issue a read still outstanding after this many microseconds and
    /// use whichever copy arrives first (0 = never). A shared disk has a
    /// long tail (here p99.5 of a 4 KiB read ≈ 1.8 ms against a 0.3 ms
    /// p95), and one slow read holds up a whole query; the twin costs one
    /// extra read for the few reads that are that slow.
    pub hedge_us: u32,
    /// Soft time budget in microseconds (0 = none). A query still waiting
    /// for reads this long after it started stops reading and answers from
    /// the nodes it has scored exactly so far (as long as it has k of
    /// them), so one stalled read or a stalled device cannot hold it up;
    /// [`QueryStats::budget_cut`] marks such answers. It is checked each
    /// time the searcher polls: continuously in `WaitMode::Poll`, at the
    /// next completion in `WaitMode::Block`.
    pub budget_us: u32,
}

impl SearchParams {
    /// k, L, W with default navigation settings.
    pub fn new(k: usize, l: usize, w: usize) -> Self {
        SearchParams {
            k,
            l,
            w,
            use_nav: true,
            nav_ef: 32,
            nav_pq: true,
            nav_entries: 4,
            rerank: 0,
            refine_exact: false,
            sector_mates: true,
            hedge_us: 0,
            budget_us: 0,
        }
    }
    /// Reader depth (buffers) for `inflight` queries with these
    /// parameters: W per query, doubled when hedged twins or the reads a
    /// budget-cut query leaves behind may hold buffers too.
    pub fn reader_depth(&self, inflight: usize) -> usize {
        let spare = if self.hedge_us > 0 || self.budget_us > 0 { 2 } else { 1 };
        (spare * inflight.max(1) * self.w).max(1)
    }

    /// Check ranges; the message names the field and the limit.
    pub fn validate(&self, n: usize) -> Result<(), SearchError> {
        let bad = |m: String| Err(SearchError::BadRequest(m));
        if self.k == 0 || self.k > 1000 {
            return bad(format!("k = {} is out of range 1..=1000", self.k));
        }
        if self.l < self.k || self.l > 10_000 {
            return bad(format!("L = {} must be in k..=10000 (k = {})", self.l, self.k));
        }
        if self.w == 0 || self.w > 64 {
            return bad(format!("W = {} is out of range 1..=64", self.w));
        }
        if n == 0 {
            return bad("the index is empty".into());
        }
        if self.hedge_us > 1_000_000 {
            return bad(format!("hedge_us = {} is out of range 0..=1000000", self.hedge_us));
        }
        if self.budget_us > 60_000_000 {
            return bad(format!("budget_us = {} is out of range 0..=60000000", self.budget_us));
        }
        if self.rerank != 0 && (self.rerank < self.k || self.rerank > self.l) {
            return bad(format!(
                "rerank = {} must be 0 or in k..=L ({}..={})",
                self.rerank, self.k, self.l
            ));
        }
        Ok(())
    }
}

/// Per-query statistics.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct QueryStats {
    /// 4 KiB sector reads issued (every sector counts).
    pub ios: u32,
    /// Nodes served from the hot-node cache.
    pub cache_hits: u32,
    /// Nodes expanded (sector-mates included).
    pub hops: u32,
    /// Nodes expanded from a sector read for another node (no read of
    /// their own).
    pub mate_expansions: u32,
    /// Reads issued a second time because the first was slow (counted in
    /// `ios` too).
    pub hedged_reads: u32,
    /// PQ (ADC) distance computations.
    pub pq_distances: u32,
    /// Exact (stored-vector) distance computations.
    pub exact_distances: u32,
    /// 1 when the query hit its time budget (`budget_us`) and answered
    /// without waiting for its outstanding reads, else 0.
    pub budget_cut: u32,
    /// Wall time from start to answer, microseconds.
    pub micros: f64,
    /// Sum over the reads this query used of the time from issuing each
    /// read to the searcher finding its completion, microseconds: the
    /// device's latency plus however late the caller polled. Divided by
    /// `reads_waited` it is the mean wait per read, which compares two
    /// ways of driving the same searcher (a quarryd shard against an
    /// in-process loop) without the noise of whole-query latency.
    pub read_wait_micros: f64,
    /// Reads counted in `read_wait_micros` (a hedged pair counts once; a
    /// read abandoned by a time budget not at all).
    pub reads_waited: u32,
}

/// One result.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Neighbor {
    /// External id.
    pub id: u64,
    /// Distance under the index metric (smaller is closer; for cosine,
    /// 1 − cos; for IP, −⟨q, x⟩).
    pub distance: f32,
}

/// Why a query failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum SearchError {
    /// The request itself is invalid.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A sector read failed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A node record is corrupt.
    #[error("corrupt node {node} in the graph file: {detail}")]
    Corrupt {
        /// Internal id.
        node: u32,
        /// What is wrong.
        detail: String,
    },
}

/// Answer of one query.
pub type QueryResult = Result<(Vec<Neighbor>, QueryStats), SearchError>;

/// How a closed-loop search waits for its reads.
///
/// On a virtual machine an idle vCPU halts, and waking it for each read
/// completion costs tens of microseconds (a VM exit and an inter-processor
/// interrupt). `Poll` keeps checking the completion queue instead of
/// sleeping in `io_uring_enter`: one busy core per searching thread, in
/// exchange for that wake-up latency (dev set, one query in flight: p50
/// 794 µs polling vs 1,118 µs blocking, docs/results/grpc-dev-2026-11-21-poll.md). `Block` sleeps until a read completes and uses no CPU
/// while waiting. The pread reader completes reads synchronously, so the
/// choice only matters for io_uring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WaitMode {
    /// Sleep in the kernel until a read completes.
    Block,
    /// Busy-poll the completion queue.
    #[default]
    Poll,
}

impl std::fmt::Display for WaitMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WaitMode::Block => "block",
            WaitMode::Poll => "poll",
        })
    }
}

impl std::str::FromStr for WaitMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "block" => Ok(WaitMode::Block),
            "poll" => Ok(WaitMode::Poll),
            other => Err(format!("unknown wait mode {other:?}: expected block or poll")),
        }
    }
}
