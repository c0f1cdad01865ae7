//! A reader that wraps another and injects failures, so tests can show that
//! I/O errors surface as errors (never panics or wrong answers). Corrupt
//! data is tested by corrupting the file itself (see the search tests).

use super::{Completion, ReadError, SectorReader, Slot};
use std::collections::{HashMap, HashSet};

/// What to break.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    /// Fail every n-th read (1 = every read).
    pub fail_every: Option<u64>,
    /// Fail any read that starts at one of these sectors.
    pub fail_sectors: HashSet<u64>,
    /// Make `submit` itself fail on the n-th read (a refused submission).
    pub refuse_submit_at: Option<u64>,
}

/// Fault-injecting wrapper.
pub struct FaultReader {
    inner: Box<dyn SectorReader>,
    plan: FaultPlan,
    reads: u64,
    doomed: HashMap<Slot, u64>,
    /// Injected failures so far.
    pub injected: u64,
}

impl FaultReader {
    /// Wrap `inner` with `plan`.
    pub fn new(inner: Box<dyn SectorReader>, plan: FaultPlan) -> Self {
        FaultReader {
            inner,
            plan,
            reads: 0,
            doomed: HashMap::new(),
            injected: 0,
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
        Ok(slot)
    }
    fn complete(&mut self, min: usize, out: &mut Vec<Completion>) -> Result<(), ReadError> {
        let start = out.len();
        self.inner.complete(min, out)?;
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
