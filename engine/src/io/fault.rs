//! A reader that wraps another and injects failures and stalls, so tests
//! can show that I/O errors surface as errors (never panics or wrong
//! answers) and that a stalled read cannot hold a query past its budget.
//! Corrupt data is tested by corrupting the file itself (see the search
//! tests).

use super::{Completion, ReadError, SectorReader, Slot};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// What to break.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    /// Fail every n-th read (1 = every read).
    pub fail_every: Option<u64>,
    /// Fail any read that starts at one of these sectors.
    pub fail_sectors: HashSet<u64>,
    /// Make `submit` itself fail on the n-th read (a refused submission).
    pub refuse_submit_at: Option<u64>,
    /// Hold back the completion of every n-th read until `stall` has
    /// passed since it was submitted (a stalled device or a lost request).
    pub stall_every: Option<u64>,
    /// How long a stalled read takes.
    pub stall: std::time::Duration,
}

/// Fault-injecting wrapper.
pub struct FaultReader {
    inner: Box<dyn SectorReader>,
    plan: FaultPlan,
    reads: u64,
    doomed: HashMap<Slot, u64>,
    /// Stalled reads: when each may complete.
    due: HashMap<Slot, Instant>,
    /// Completions of stalled reads that arrived early, held back.
    held: Vec<(Instant, Completion)>,
    /// Injected failures so far.
    pub injected: u64,
    /// Reads stalled so far.
    pub stalled: u64,
}

impl FaultReader {
    /// Wrap `inner` with `plan`.
    pub fn new(inner: Box<dyn SectorReader>, plan: FaultPlan) -> Self {
        FaultReader {
            inner,
            plan,
            reads: 0,
            doomed: HashMap::new(),
            due: HashMap::new(),
            held: Vec::new(),
            injected: 0,
            stalled: 0,
        }
    }
}

impl FaultReader {
    /// Move stalled reads' completions (from `out[start..]`) to `held`, and
    /// release the held ones that are due.
    fn hold_stalled(&mut self, start: usize, out: &mut Vec<Completion>) {
        let mut k = start;
        while k < out.len() {
            if let Some(due) = self.due.remove(&out[k].slot) {
                let c = out.remove(k);
                self.held.push((due, c));
            } else {
                k += 1;
            }
        }
        let now = Instant::now();
        let mut k = 0;
        while k < self.held.len() {
            if self.held[k].0 <= now {
                out.push(self.held.swap_remove(k).1);
            } else {
                k += 1;
            }
        }
    }
}

impl SectorReader for FaultReader {
    fn read_len(&self) -> usize {
        self.inner.read_len()
    }
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }
    fn in_use(&self) -> usize {
        self.inner.in_use()
    }
    fn submit(&mut self, sector: u64, tag: u64) -> Result<Slot, ReadError> {
        self.reads += 1;
        if self.plan.refuse_submit_at == Some(self.reads) {
            self.injected += 1;
            return Err(ReadError::Injected(sector));
        }
        let slot = self.inner.submit(sector, tag)?;
        let every = self
            .plan
            .fail_every
            .is_some_and(|n| n > 0 && self.reads.is_multiple_of(n));
        if every || self.plan.fail_sectors.contains(&sector) {
            self.doomed.insert(slot, sector);
        }
        if self
            .plan
            .stall_every
            .is_some_and(|n| n > 0 && self.reads.is_multiple_of(n))
        {
            self.stalled += 1;
            self.due.insert(slot, Instant::now() + self.plan.stall);
        }
        Ok(slot)
    }
    fn complete(&mut self, min: usize, out: &mut Vec<Completion>) -> Result<(), ReadError> {
        let start = out.len();
        // Block in the inner reader only when nothing is held back (a held
        // read may be the one the caller waits for).
        let wait = if self.held.is_empty() { min } else { 0 };
        self.inner.complete(wait, out)?;
        self.hold_stalled(start, out);
        while out.len() - start < min && !self.held.is_empty() {
            std::thread::sleep(std::time::Duration::from_micros(20));
            self.inner.complete(0, out)?;
            self.hold_stalled(start, out);
        }
        for c in &mut out[start..] {
            if let Some(sector) = self.doomed.remove(&c.slot) {
                self.injected += 1;
                c.result = Err(ReadError::Injected(sector));
            }
        }
        Ok(())
    }
    fn buffer(&self, slot: Slot) -> &[u8] {
        self.inner.buffer(slot)
    }
    fn release(&mut self, slot: Slot) {
        self.doomed.remove(&slot);
        self.due.remove(&slot);
        self.inner.release(slot)
    }
    fn describe(&self) -> String {
        format!("fault-injecting({})", self.inner.describe())
    }
    fn notify_completions(&mut self, fd: std::os::fd::RawFd) -> bool {
        self.inner.notify_completions(fd)
    }
    fn flush(&mut self) -> Result<(), ReadError> {
        self.inner.flush()
    }
}
