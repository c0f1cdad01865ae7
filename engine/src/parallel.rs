//! Deterministic data parallelism on scoped std threads.
//!
//! Owns: splitting index ranges across threads so that results land in
//! index order whatever the thread count — the basis of byte-identical
//! builds. Threads take chunks from a shared counter (load balance), but a
//! result's position depends only on its index.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Compute `f(i)` for `i in 0..n` on `threads` threads; returns results in
/// index order. `init` builds per-thread scratch state.
pub fn map_indexed<T, S, I, F>(n: usize, threads: usize, init: I, f: F) -> Vec<T>
where
    T: Send,
    I: Fn() -> S + Sync,
    F: Fn(&mut S, usize) -> T + Sync,
{
    let threads = threads.max(1).min(n.max(1));
    if threads == 1 {
        let mut s = init();
        return (0..n).map(|i| f(&mut s, i)).collect();
    }
    let chunk = (n / (threads * 16)).clamp(1, 1024);
    let next = AtomicUsize::new(0);
    let mut parts: Vec<Vec<(usize, Vec<T>)>> = Vec::new();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut s = init();
                    let mut mine = Vec::new();
                    loop {
                        let start = next.fetch_add(chunk, Ordering::Relaxed);
                        if start >= n {
                            break;
                        }
                        let end = (start + chunk).min(n);
                        mine.push((start, (start..end).map(|i| f(&mut s, i)).collect()));
                    }
                    mine
                })
            })
            .collect();
        for h in handles {
            parts.push(h.join().expect("worker thread panicked"));
        }
    });
    let mut all: Vec<(usize, Vec<T>)> = parts.into_iter().flatten().collect();
    all.sort_unstable_by_key(|(s, _)| *s);
    all.into_iter().flat_map(|(_, v)| v).collect()
}

/// Run `f(i)` for every `i in 0..n` for its side effects on per-thread
/// state; like [`map_indexed`] with unit results.
pub fn for_each_indexed<S, I, F>(n: usize, threads: usize, init: I, f: F)
where
    I: Fn() -> S + Sync,
    F: Fn(&mut S, usize) + Sync,
{
    map_indexed(n, threads, init, |s, i| f(s, i));
}

#[cfg(test)]
mod tests {
    #[test]
    fn order_is_independent_of_threads() {
        let one = super::map_indexed(10_000, 1, || (), |_, i| i * 3);
        for t in [2, 3, 8] {
            assert_eq!(super::map_indexed(10_000, t, || (), |_, i| i * 3), one);
        }
    }
}
