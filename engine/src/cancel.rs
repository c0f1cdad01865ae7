//! A cancellation flag for long work (builds, merges): set from another
//! thread, checked by the work between its steps.
//!
//! Owns: [`CancelToken`]. Does not own: what a cancelled piece of work
//! leaves behind (each caller cleans up its own files).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Shared flag; clones see the same state. The default is never set
/// unless someone holding a clone calls [`CancelToken::cancel`].
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh, unset token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask the work to stop at its next check.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}
