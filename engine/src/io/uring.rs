//! The io_uring reader: O_DIRECT reads of fixed-size sector runs into a
//! pool of aligned buffers, with the file registered and, where the memlock
//! limit allows, the buffers registered too (`READ_FIXED`).
//!
//! All `unsafe` for io_uring lives here. The invariant that makes it sound:
//! a buffer handed to the kernel in an SQE belongs to a slot marked
//! in-flight, and nothing borrows that slot's memory until its CQE has been
//! reaped; the ring (and so every pending read) is torn down in `Drop`
//! before the buffers are freed (field order + explicit drain).

use super::{open_direct, AlignedBuf, Completion, ReadError, SectorReader, Slot, SECTOR};
use io_uring::{opcode, types, IoUring};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    /// SQE pushed, no CQE yet.
    InFlight,
    /// CQE reaped; data readable until released.
    Done,
}

/// io_uring sector reader (one per thread).
pub struct UringReader {
    ring: IoUring,
    path: PathBuf,
    _file: std::fs::File,
    direct: bool,
    registered_bufs: bool,
    read_len: usize,
    bufs: Vec<AlignedBuf>,
    state: Vec<SlotState>,
    tags: Vec<u64>,
    sectors: Vec<u64>,
    free: Vec<Slot>,
    in_flight: usize,
    unsubmitted: usize,
}

impl UringReader {
    /// Set up a ring of `depth` entries over `path`. Fails if io_uring is
    /// refused (the caller may fall back to pread). If registering the
    /// buffers fails (typically RLIMIT_MEMLOCK), logs it and continues with
    /// unregistered buffers.
    pub fn open(path: &Path, read_len: usize, depth: usize) -> Result<Self, ReadError> {
        assert!(read_len.is_multiple_of(SECTOR) && depth > 0 && depth <= 4096);
        let setup = |what, e: std::io::Error| ReadError::Setup {
            path: path.into(),
            what,
            msg: e.to_string(),
        };
        if std::env::var_os("QUARRY_DISABLE_URING").is_some() {
            return Err(setup(
                "io_uring",
                std::io::Error::other("disabled by QUARRY_DISABLE_URING"),
            ));
        }
        let (file, direct) = open_direct(path)?;
        let entries = depth.next_power_of_two() as u32;
        let ring = match std::env::var("QUARRY_URING_SETUP").as_deref() {
            // The kernel's defaults: a completion is posted by task work that
            // interrupts this thread (an inter-processor interrupt when the
            // disk's interrupt lands on another core).
            Ok("plain") => IoUring::new(entries),
            Ok("coop") => IoUring::builder()
                .setup_coop_taskrun()
                .setup_taskrun_flag()
                .build(entries),
            // Default: completions are run when this thread asks for them
            // (DEFER_TASKRUN), never by interrupting it; the TASKRUN flag
            // tells a polling caller when to ask (see `complete`). The ring
            // then belongs to the thread that created it (SINGLE_ISSUER),
            // which is how every reader is used. Kernels before 6.1 refuse
            // the flags; those get the plain ring.
            _ => IoUring::builder()
                .setup_single_issuer()
                .setup_defer_taskrun()
                .setup_taskrun_flag()
                .build(entries)
                .or_else(|e| {
                    static ONCE: std::sync::Once = std::sync::Once::new();
                    ONCE.call_once(|| {
                        tracing::info!(error = %e, "io_uring DEFER_TASKRUN refused (kernel < 6.1?); using plain rings");
                    });
                    IoUring::new(entries)
                }),
        }
        .map_err(|e| setup("io_uring", e))?;
        ring.submitter()
            .register_files(&[file.as_raw_fd()])
            .map_err(|e| setup("io_uring registered file", e))?;
        let mut bufs: Vec<AlignedBuf> = (0..depth).map(|_| AlignedBuf::new(read_len)).collect();
        let iovecs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: read_len,
            })
            .collect();
        // SAFETY: every iovec points at a live AlignedBuf of read_len bytes
        // owned by `bufs`, which moves into Self and outlives the ring's use
        // of them (buffers are unregistered when the ring is dropped, and
        // Drop drains in-flight reads before freeing them). Moving the Vec
        // does not move the heap allocations the iovecs point at.
        let registered_bufs = match unsafe { ring.submitter().register_buffers(&iovecs) } {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    path = %path.display(), error = %e,
                    "io_uring buffer registration refused (memlock limit?); using unregistered buffers"
                );
                false
            }
        };
        Ok(UringReader {
            ring,
            path: path.into(),
            _file: file,
            direct,
            registered_bufs,
            read_len,
            state: vec![SlotState::Free; depth],
            tags: vec![0; depth],
            sectors: vec![0; depth],
            free: (0..depth).rev().collect(),
            bufs,
            in_flight: 0,
            unsubmitted: 0,
        })
    }

    /// Whether buffers are registered with the kernel.
    pub fn buffers_registered(&self) -> bool {
        self.registered_bufs
    }

    fn reap(&mut self, out: &mut Vec<Completion>) {
        let read_len = self.read_len;
        for cqe in self.ring.completion() {
            let slot = cqe.user_data() as usize;
            debug_assert!(self.state[slot] == SlotState::InFlight);
            self.state[slot] = SlotState::Done;
            self.in_flight -= 1;
            let res = cqe.result();
            let sector = self.sectors[slot];
            let result = if res < 0 {
                Err(ReadError::Os {
                    path: self.path.clone(),
                    sector,
                    msg: std::io::Error::from_raw_os_error(-res).to_string(),
                })
            } else if (res as usize) < read_len {
                Err(ReadError::Short {
                    path: self.path.clone(),
                    sector,
                    got: res as usize,
                    want: read_len,
                })
            } else {
                Ok(())
            };
            out.push(Completion {
                slot,
                tag: self.tags[slot],
                result,
            });
        }
    }
}

impl SectorReader for UringReader {
    fn read_len(&self) -> usize {
        self.read_len
    }
    fn capacity(&self) -> usize {
        self.bufs.len()
    }
    fn in_use(&self) -> usize {
        self.bufs.len() - self.free.len()
    }

    fn submit(&mut self, sector: u64, tag: u64) -> Result<Slot, ReadError> {
        let slot = self.free.pop().ok_or(ReadError::Full(self.bufs.len()))?;
        let ptr = self.bufs[slot].as_mut_ptr();
        let offset = sector * SECTOR as u64;
        let len = self.read_len as u32;
        let sqe = if self.registered_bufs {
            opcode::ReadFixed::new(types::Fixed(0), ptr, len, slot as u16)
                .offset(offset)
                .build()
        } else {
            opcode::Read::new(types::Fixed(0), ptr, len).offset(offset).build()
        }
        .user_data(slot as u64);
        // SAFETY: the buffer behind `ptr` is owned by self.bufs[slot], which
        // is now marked InFlight: no safe accessor hands it out until the
        // CQE is reaped, and Drop waits for in-flight reads. The SQ has at
        // least `depth` entries and at most `depth` slots exist, so the push
        // cannot overflow; if it ever does we report it instead of losing it.
        let pushed = unsafe { self.ring.submission().push(&sqe) };
        if pushed.is_err() {
            self.free.push(slot);
            return Err(ReadError::Full(self.bufs.len()));
        }
        self.state[slot] = SlotState::InFlight;
        self.tags[slot] = tag;
        self.sectors[slot] = sector;
        self.in_flight += 1;
        self.unsubmitted += 1;
        Ok(slot)
    }

    fn complete(&mut self, min_complete: usize, out: &mut Vec<Completion>) -> Result<(), ReadError> {
        let before = out.len();
        self.reap(out);
        let want = min_complete.saturating_sub(out.len() - before).min(self.in_flight);
        // With DEFER_TASKRUN a finished read is only posted to the
        // completion queue when this thread enters the kernel with
        // GETEVENTS; the TASKRUN flag says one is waiting, so a polling
        // caller (min_complete 0) enters only then.
        if self.unsubmitted > 0 || want > 0 || self.ring.submission().taskrun() {
            loop {
                match self.ring.submit_and_wait(want) {
                    Ok(_) => break,
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        self.reap(out);
                        continue;
                    }
                    Err(e) => {
                        return Err(ReadError::Os {
                            path: self.path.clone(),
                            sector: 0,
                            msg: format!("io_uring_enter: {e}"),
                        })
                    }
                }
            }
            self.unsubmitted = 0;
            self.reap(out);
        }
        Ok(())
    }

    fn buffer(&self, slot: Slot) -> &[u8] {
        assert!(
            self.state[slot] == SlotState::Done,
            "buffer({slot}) read before its completion"
        );
        &self.bufs[slot].as_slice()[..self.read_len]
    }

    fn release(&mut self, slot: Slot) {
        assert!(
            self.state[slot] == SlotState::Done,
            "release({slot}) of a slot that is not complete"
        );
        self.state[slot] = SlotState::Free;
        self.free.push(slot);
    }

    fn flush(&mut self) -> Result<(), ReadError> {
        while self.unsubmitted > 0 {
            match self.ring.submit() {
                Ok(_) => self.unsubmitted = 0,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                // EBUSY: the completion queue is full; the next complete()
                // reaps and resubmits.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => break,
                Err(e) => {
                    return Err(ReadError::Os {
                        path: self.path.clone(),
                        sector: 0,
                        msg: format!("io_uring_enter: {e}"),
                    })
                }
            }
        }
        Ok(())
    }

    fn notify_completions(&mut self, fd: std::os::fd::RawFd) -> bool {
        match self.ring.submitter().register_eventfd(fd) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "io_uring eventfd registration refused");
                false
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "io_uring, {} buffers, {}",
            if self.registered_bufs {
                "registered"
            } else {
                "unregistered"
            },
            if self.direct { "O_DIRECT" } else { "buffered" }
        )
    }
}

impl Drop for UringReader {
    fn drop(&mut self) {
        // Wait for every in-flight read so the kernel never writes into a
        // freed buffer.
        let mut sink = Vec::new();
        while self.in_flight > 0 {
            if self.ring.submit_and_wait(1).is_err() {
                break;
            }
            self.reap(&mut sink);
        }
    }
}
