//! Parking a shard thread until there is something to do.
//!
//! Owns: one eventfd per shard, and the small io_uring the shard sleeps in.
//! A shard has two kinds of wake-up: a new request pushed by the network
//! side, and a completed disk read. Both signal the same eventfd — the
//! producer writes to it ([`Waker::wake`]), and each data ring is told to
//! signal it on every completion ([`crate::io::SectorReader::notify_completions`]).
//! The shard parks by queueing a READ of that eventfd on its parking ring
//! and sleeping in `io_uring_enter` until it completes. There is no polling
//! sleep and no lost wake-up: a signal sent before the shard parks leaves
//! the eventfd's counter non-zero, so the READ completes at once.
//!
//! Where io_uring is refused (see `io::open_reader`'s fallback), the shard
//! parks in a blocking `read(2)` of the eventfd instead; the pread reader
//! never leaves reads in flight, so only producers need to wake it then.
//!
//! `unsafe` here: the eventfd syscalls, and queueing a READ into a buffer
//! the kernel writes later. Tested under valgrind by `.ci/valgrind.sh`.

use io_uring::{opcode, types, IoUring};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

const PARK_TAG: u64 = 0x5041_524b; // "PARK"

/// Wakes a parked [`Parker`] from any thread.
#[derive(Clone, Debug)]
pub struct Waker {
    fd: Arc<OwnedFd>,
}

impl Waker {
    /// Make the parker's next (or current) park return.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live local to an eventfd we own
        // (kept open by the Arc). An eventfd write can only fail with
        // EAGAIN when the counter would overflow, and then the parker is
        // already due to wake, so the result is deliberately ignored.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

/// Sleeps until woken by a [`Waker`] or a signalled read completion.
pub struct Parker {
    fd: Arc<OwnedFd>,
    ring: Option<IoUring>,
    buf: Box<u64>,
    armed: bool,
}

impl std::fmt::Debug for Parker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parker")
            .field("fd", &self.fd.as_raw_fd())
            .field("uring", &self.ring.is_some())
            .finish()
    }
}

impl Parker {
    /// A parker with its own eventfd, sleeping in io_uring where the kernel
    /// allows it (else in `read(2)`, with a log line).
    pub fn new() -> std::io::Result<Self> {
        // SAFETY: eventfd(2) takes no pointers; a non-negative return is a
        // fresh descriptor that nothing else owns.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `raw` was just returned by eventfd and is owned by no one
        // else.
        let fd = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        let ring = if std::env::var_os("QUARRY_DISABLE_URING").is_some() {
            None
        } else {
            match IoUring::new(2) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "io_uring refused for the shard's parking ring; parking in read(2)");
                    None
                }
            }
        };
        Ok(Parker {
            fd,
            ring,
            buf: Box::new(0),
            armed: false,
        })
    }

    /// The eventfd, for [`crate::io::SectorReader::notify_completions`].
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// A handle that wakes this parker.
    pub fn waker(&self) -> Waker {
        Waker { fd: self.fd.clone() }
    }

    /// Make the eventfd non-blocking, for a caller that waits for it in an
    /// event loop (epoll) and then [`try_consume`](Self::try_consume)s it
    /// instead of calling [`park`](Self::park). `park` keeps working on
    /// io_uring (the kernel polls a non-blocking eventfd); the `read(2)`
    /// fallback would spin, so event-loop callers do not use it.
    pub fn set_nonblocking(&self) -> std::io::Result<()> {
        let fd = self.fd.as_raw_fd();
        // SAFETY: F_GETFL / F_SETFL on a descriptor we own; no pointers.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// A second descriptor for the eventfd (for an event loop to register;
    /// it shares the counter and the non-blocking flag).
    pub fn try_clone_fd(&self) -> std::io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// Take a pending wake-up without sleeping: `Ok(true)` if one had been
    /// signalled (the counter is reset), `Ok(false)` if none had. Needs
    /// [`set_nonblocking`](Self::set_nonblocking) first.
    pub fn try_consume(&self) -> std::io::Result<bool> {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live local from our eventfd.
        let r = unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        if r == 8 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::WouldBlock => Ok(false),
            std::io::ErrorKind::Interrupted => self.try_consume(),
            _ => Err(e),
        }
    }

    /// Whether the parker sleeps in io_uring (else in read(2)).
    pub fn uses_uring(&self) -> bool {
        self.ring.is_some()
    }

    /// Sleep until a wake-up has been signalled since the last park
    /// returned (at once if one already has).
    pub fn park(&mut self) -> std::io::Result<()> {
        let Some(ring) = self.ring.as_mut() else {
            let mut v: u64 = 0;
            loop {
                // SAFETY: reads 8 bytes into a live local from our eventfd.
                let r = unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
                if r == 8 {
                    return Ok(());
                }
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        };
        Self::arm(ring, &self.fd, &mut self.buf, &mut self.armed)?;
        loop {
            match ring.submit_and_wait(1) {
                Ok(_) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
        for cqe in ring.completion() {
            if cqe.user_data() == PARK_TAG {
                self.armed = false;
                if cqe.result() < 0 {
                    return Err(std::io::Error::from_raw_os_error(-cqe.result()));
                }
            }
        }
        Ok(())
    }

    /// Queue the eventfd READ (once) and hand it to the kernel.
    fn arm(ring: &mut IoUring, fd: &OwnedFd, buf: &mut Box<u64>, armed: &mut bool) -> std::io::Result<()> {
        if *armed {
            return Ok(());
        }
        let sqe = opcode::Read::new(types::Fd(fd.as_raw_fd()), (&mut **buf as *mut u64).cast(), 8)
            .build()
            .user_data(PARK_TAG);
        // SAFETY: the 8-byte target is the heap allocation behind `buf`
        // (the parker's own), which lives as long as the parker; Drop does
        // not free it while the READ is armed (it wakes and reaps it
        // first). The ring has 2 entries and at most one READ is queued.
        unsafe { ring.submission().push(&sqe) }
            .map_err(|_| std::io::Error::other("parking ring submission queue full"))?;
        *armed = true;
        ring.submit()?;
        Ok(())
    }
}

impl Drop for Parker {
    fn drop(&mut self) {
        if self.armed {
            // Complete the pending READ so the kernel is done with `buf`.
            self.waker().wake();
            if let Some(ring) = self.ring.as_mut() {
                while self.armed {
                    if ring.submit_and_wait(1).is_err() {
                        // Leak the buffer rather than free memory the
                        // kernel may still write to.
                        std::mem::forget(std::mem::replace(&mut self.buf, Box::new(0)));
                        return;
                    }
                    for cqe in ring.completion() {
                        if cqe.user_data() == PARK_TAG {
                            self.armed = false;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_wake_before_park_is_not_lost() {
        let mut p = Parker::new().unwrap();
        p.waker().wake();
        p.park().unwrap(); // returns at once
    }

    #[test]
    fn wakes_from_another_thread() {
        let mut p = Parker::new().unwrap();
        let w = p.waker();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            w.wake();
        });
        let t0 = Instant::now();
        p.park().unwrap();
        assert!(
            t0.elapsed() >= Duration::from_millis(40),
            "park returned before the wake"
        );
        t.join().unwrap();
    }

    #[test]
    fn try_consume_takes_each_wake_once() {
        let p = Parker::new().unwrap();
        p.set_nonblocking().unwrap();
        assert!(!p.try_consume().unwrap(), "nothing signalled yet");
        p.waker().wake();
        p.waker().wake();
        assert!(p.try_consume().unwrap());
        assert!(!p.try_consume().unwrap(), "two wakes before a consume are one");
    }

    #[test]
    fn drop_while_armed_is_clean() {
        let mut p = Parker::new().unwrap();
        if let Some(ring) = p.ring.as_mut() {
            Parker::arm(ring, &p.fd, &mut p.buf, &mut p.armed).unwrap();
            assert!(p.armed);
        }
        drop(p); // wakes and reaps the READ before freeing its buffer
    }

    #[test]
    fn read_completion_wakes_the_parker() {
        use crate::io::{SectorReader, UringReader};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 8192]).unwrap();
        let Ok(mut r) = UringReader::open(&path, 4096, 2) else {
            return; // io_uring refused here; the pread path never parks on reads
        };
        let mut p = Parker::new().unwrap();
        assert!(r.notify_completions(p.fd()));
        r.submit(1, 9).unwrap();
        let mut out = Vec::new();
        r.complete(0, &mut out).unwrap(); // submit without waiting
        p.park().unwrap(); // woken by the completion's eventfd signal
        while out.is_empty() {
            r.complete(1, &mut out).unwrap();
        }
        assert_eq!(out[0].tag, 9);
        assert!(r.buffer(out[0].slot).iter().all(|&b| b == 7));
        r.release(out[0].slot);
    }
}
