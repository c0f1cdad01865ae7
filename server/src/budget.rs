//! The server's one memory budget: RAM that open collections hold, plus
//! reservations for work that is about to allocate (builds, bulk loads,
//! flushes and merges).
//!
//! Owns: [`MemoryBudget`] and the [`Reservation`] guard. A reservation is
//! checked and taken in one atomic step (two builds cannot both see the
//! same free memory), and released when the guard is dropped, however the
//! work ends. Does not own: measuring what collections hold (the caller
//! passes it) or estimating what a build needs
//! (`quarry_engine::index::MemoryEstimate`).

use crate::error::ServiceError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The budget and what is reserved against it.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    reserved: AtomicU64,
}

/// Bytes reserved until this is dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.reserved.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            limit,
            reserved: AtomicU64::new(0),
        })
    }

    /// The budget, bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes reserved now.
    pub fn reserved(&self) -> u64 {
        self.reserved.load(Ordering::Acquire)
    }

    /// Reserve `bytes` if they fit beside `held` (what open collections
    /// hold now) and every other reservation; else RESOURCE_EXHAUSTED with
    /// `what` ("building \"docs\" from 1000000 x 384 vectors") and the
    /// figures: needed, free, budget.
    pub fn try_reserve(self: &Arc<Self>, held: u64, bytes: u64, what: &str) -> Result<Reservation, ServiceError> {
        let mut r = self.reserved.load(Ordering::Acquire);
        loop {
            let in_use = held.saturating_add(r);
            if in_use.saturating_add(bytes) > self.limit {
                return Err(ServiceError::ResourceExhausted(format!(
                    "{what} needs about {} MiB but {} of the memory budget's {} MiB are free (raise memory_budget_mb)",
                    bytes.div_ceil(1 << 20),
                    self.limit.saturating_sub(in_use) >> 20,
                    self.limit >> 20
                )));
            }
            match self
                .reserved
                .compare_exchange_weak(r, r + bytes, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    return Ok(Reservation {
                        budget: self.clone(),
                        bytes,
                    })
                }
                Err(now) => r = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_checked_and_taken_at_once_and_released_on_drop() {
        let b = MemoryBudget::new(100 << 20);
        let a = b.try_reserve(10 << 20, 60 << 20, "a build").unwrap();
        assert_eq!(b.reserved(), 60 << 20);
        let e = b.try_reserve(10 << 20, 40 << 20, "a merge").unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("a merge needs about 40 MiB but 30 of the memory budget's 100 MiB are free"),
            "{m}"
        );
        drop(a);
        assert_eq!(b.reserved(), 0);
        let c = b.try_reserve(10 << 20, 40 << 20, "a merge").unwrap();
        assert_eq!(c.bytes(), 40 << 20);
        // Many threads racing for the same free memory: the total granted
        // never passes the budget.
        let b = MemoryBudget::new(1000);
        let granted: Vec<Reservation> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    let b = b.clone();
                    s.spawn(move || {
                        (0..50)
                            .filter_map(|_| b.try_reserve(0, 7, "x").ok())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(granted.len(), 1000 / 7);
        assert!(b.reserved() <= 1000);
    }
}
