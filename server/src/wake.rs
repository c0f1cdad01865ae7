//! A shard's eventfd as a readiness source for the network runtime.
//!
//! Owns: registering a duplicate of a shard's eventfd with a tokio
//! runtime's epoll, and waiting on it. The shard that hosts the network
//! side (`net_threads = 0`) sleeps in that runtime rather than in its
//! parking ring, so that one sleep ends for any of: a connection with
//! data, a job pushed by a handler ([`quarry_engine::io::Waker`]), or a
//! read completion (the data rings signal the same eventfd).
//!
//! `unsafe` here: tokio's `AsyncFd::register_with_interest`, whose
//! contract is that the descriptor stays open and unchanged for the
//! `AsyncFd`'s life. Tested under valgrind by `.ci/valgrind.sh`.

use quarry_engine::io::Parker;
use std::os::fd::OwnedFd;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A shard's eventfd registered with the current tokio runtime.
pub struct WakeFd {
    fd: AsyncFd<OwnedFd>,
}

impl WakeFd {
    /// Register `parker`'s eventfd (made non-blocking) with the runtime
    /// this is called in.
    pub fn register(parker: &Parker) -> std::io::Result<WakeFd> {
        parker.set_nonblocking()?;
        let dup = parker.try_clone_fd()?;
        // SAFETY: the AsyncFd owns `dup`, a descriptor of its own (not
        // shared with any other owner), so it stays open and refers to the
        // same eventfd for the AsyncFd's whole life, and `as_raw_fd` on an
        // OwnedFd always returns that one descriptor.
        let fd = unsafe { AsyncFd::register_with_interest(dup, Interest::READABLE) }.map_err(|e| e.into_parts().1)?;
        Ok(WakeFd { fd })
    }

    /// Until a wake-up has been signalled since the last one was consumed
    /// (at once if one already has), consuming it.
    pub async fn wait(&self, parker: &Parker) -> std::io::Result<()> {
        loop {
            if parker.try_consume()? {
                return Ok(());
            }
            let mut ready = self.fd.readable().await?;
            if parker.try_consume()? {
                return Ok(());
            }
            ready.clear_ready();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_wake_before_the_wait_is_not_lost() {
        let rt = rt();
        let p = Parker::new().unwrap();
        let w = rt.block_on(async { WakeFd::register(&p) }).unwrap();
        p.waker().wake();
        rt.block_on(w.wait(&p)).unwrap();
        // Consumed: nothing is pending any more.
        assert!(!p.try_consume().unwrap());
    }

    #[test]
    fn wakes_from_another_thread_and_runs_tasks_meanwhile() {
        let rt = rt();
        let p = Parker::new().unwrap();
        let w = rt.block_on(async { WakeFd::register(&p) }).unwrap();
        let waker = p.waker();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            waker.wake();
        });
        let ticked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = ticked.clone();
        rt.spawn(async move { flag.store(true, std::sync::atomic::Ordering::SeqCst) });
        let t0 = Instant::now();
        rt.block_on(w.wait(&p)).unwrap();
        assert!(t0.elapsed() >= Duration::from_millis(40), "returned before the wake");
        assert!(
            ticked.load(std::sync::atomic::Ordering::SeqCst),
            "a spawned task did not run while waiting"
        );
        t.join().unwrap();
    }
}
