//! Thread placement and process memory figures.
//!
//! Owns: pinning a thread to a core (the thread-per-core model: one shard,
//! one ring, one core) and reading RSS / peak RSS from /proc.

/// Pin the calling thread to `core` (modulo the number of CPUs). Returns
/// whether the kernel accepted it.
pub fn pin_to_core(core: usize) -> bool {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // SAFETY: cpu_set_t is a plain bitmask; zeroed is a valid empty set, and
    // CPU_SET writes within it for any index below CPU_SETSIZE (we take the
    // index modulo the CPU count, far below 1024).
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: see above; `set` is a live, exclusively borrowed cpu_set_t.
    unsafe { libc::CPU_SET(core % cpus, &mut set) };
    // SAFETY: pid 0 = the calling thread; the pointer and size describe
    // `set`, which outlives the call.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

/// Let the calling thread run on every CPU again (undo [`pin_to_core`]).
/// Threads inherit their creator's affinity, so a thread spawned by a
/// pinned shard (a tokio blocking-pool thread running a build, say) calls
/// this first. Returns whether the kernel accepted it.
pub fn unpin() -> bool {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // SAFETY: as in `pin_to_core`: a zeroed cpu_set_t is a valid empty set
    // and every index set is below the CPU count, far below CPU_SETSIZE.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in 0..cpus.min(libc::CPU_SETSIZE as usize) {
        // SAFETY: see above.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: pid 0 = the calling thread; the pointer and size describe
    // `set`, which outlives the call.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 }
}

fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The nice value background work (flushes, merges, bulk loads) runs at:
/// when a search shard wakes up it gets the core ahead of a build.
pub const BACKGROUND_NICE: i32 = 10;

/// Background guards alive now (see [`background_running`]).
static BACKGROUND: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Whether background work (a flush, merge or bulk load) is running in
/// this process: a search shard then waits for its reads instead of
/// yielding between polls, since a yield hands the core to the background
/// threads for a whole scheduler slice.
pub fn background_running() -> bool {
    BACKGROUND.load(std::sync::atomic::Ordering::Relaxed) > 0
}

/// The calling thread runs at [`BACKGROUND_NICE`] until the guard is
/// dropped (then at its nice value from before). Threads it spawns
/// meanwhile inherit the value (Linux: nice is per thread and copied at
/// clone), so a build's worker threads are background too. If the kernel
/// refuses, nothing changes and the guard does nothing.
pub struct BackgroundPriority {
    before: Option<i32>,
}

impl BackgroundPriority {
    /// Lower the calling thread's priority.
    pub fn enter() -> BackgroundPriority {
        let before = thread_nice();
        // Only ever lower a priority (a thread already below it stays).
        let ok = before.is_some_and(|b| b < BACKGROUND_NICE && set_thread_nice(BACKGROUND_NICE));
        BACKGROUND.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        BackgroundPriority {
            before: if ok { before } else { None },
        }
    }
}

impl Drop for BackgroundPriority {
    fn drop(&mut self) {
        BACKGROUND.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(n) = self.before {
            // Raising it back may need CAP_SYS_NICE when unprivileged; a
            // thread left at the background value only runs later work
            // at lower priority.
            if !set_thread_nice(n) {
                tracing::debug!(nice = n, "could not restore a thread's priority after background work");
            }
        }
    }
}

/// The calling thread's nice value.
fn thread_nice() -> Option<i32> {
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    // getpriority returns -1 both as a value and on error: clear errno first.
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: PRIO_PROCESS with a thread id reads that thread's nice value;
    // no pointers are passed.
    let n = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
    // SAFETY: as above.
    let err = unsafe { *libc::__errno_location() };
    (err == 0).then_some(n)
}

/// Set the calling thread's nice value; false if refused.
fn set_thread_nice(n: i32) -> bool {
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    // SAFETY: PRIO_PROCESS with a thread id sets that thread's nice value;
    // no pointers are passed.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, n) == 0 }
}

/// CPU time (user + system) this process has used, all threads, seconds.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes one `rusage` into the zeroed local it is
    // given; RUSAGE_SELF is always valid.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return 0.0;
        }
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Current resident set size in bytes (0 if unknown).
pub fn rss_bytes() -> u64 {
    status_kib("VmRSS:").unwrap_or(0) * 1024
}

/// Bytes free to an unprivileged writer on the file system holding
/// `path` (None if it cannot be asked).
pub fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain old data; zeroed is a valid value to be
    // overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a live, exclusively
    // borrowed statvfs; both outlive the call.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Reset the peak resident set size to the current one (Linux
/// `/proc/self/clear_refs` "5"), so a stage's own peak can be read after
/// it. Returns whether the kernel took it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Hand freed heap memory back to the kernel (glibc `malloc_trim`): a
/// stage that freed a large working set then lets the next stage's peak
/// start from what is really held. Returns whether anything was released.
pub fn release_free_memory() -> bool {
    // SAFETY: malloc_trim takes no pointers and only walks the allocator's
    // own free lists; 0 = keep no extra padding at the top of the heap.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Peak resident set size in bytes (0 if unknown).
pub fn peak_rss_bytes() -> u64 {
    status_kib("VmHWM:").unwrap_or(0) * 1024
}

/// Bytes this process has caused to be read from storage
/// (`/proc/self/io` read_bytes; O_DIRECT reads count, page-cache hits do not).
pub fn io_read_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("read_bytes:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pinning_and_memory_figures() {
        let c0 = super::cpu_seconds();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(super::cpu_seconds() > c0, "CPU time must grow while spinning");
        assert!(super::pin_to_core(0));
        // Pinning to a core beyond the CPU count wraps instead of failing.
        assert!(super::pin_to_core(1000));
        let v = std::hint::black_box(vec![1u8; 64 << 20]);
        let rss = super::rss_bytes();
        assert!(rss >= 64 << 20, "64 MiB touched but RSS is {rss}");
        assert!(super::peak_rss_bytes() >= rss);
        assert_eq!(std::hint::black_box(&v)[12345], 1);
        drop(v);
    }

    #[test]
    fn the_peak_resets_to_the_current_rss_and_freed_memory_goes_back() {
        let v = std::hint::black_box(vec![3u8; 96 << 20]);
        assert_eq!(std::hint::black_box(&v)[777], 3);
        drop(v);
        super::release_free_memory();
        let peak = super::peak_rss_bytes();
        assert!(super::reset_peak_rss());
        let after = super::peak_rss_bytes();
        // The 96 MiB block is gone from the new peak.
        assert!(after + (64 << 20) < peak, "peak {peak} -> {after} after the reset");
    }

    #[test]
    fn free_bytes_of_a_real_and_a_missing_path() {
        let d = tempfile::tempdir().unwrap();
        let free = super::free_bytes(d.path()).expect("statvfs of a temp dir");
        assert!(free > 0);
        assert_eq!(super::free_bytes(&d.path().join("missing/dir")), None);
        assert_eq!(super::free_bytes(std::path::Path::new("a\0b")), None);
    }

    #[test]
    fn background_priority_applies_to_the_thread_and_its_children_and_is_restored() {
        // Its own thread, so no other test shares the change.
        std::thread::spawn(|| {
            let before = super::thread_nice().expect("nice readable");
            {
                let _g = super::BackgroundPriority::enter();
                assert_eq!(super::thread_nice(), Some(super::BACKGROUND_NICE.max(before)));
                let child = std::thread::spawn(super::thread_nice).join().unwrap();
                assert_eq!(
                    child,
                    Some(super::BACKGROUND_NICE.max(before)),
                    "a spawned worker inherits it"
                );
            }
            // Root (CI) may raise it back; others may not, and keep it.
            let after = super::thread_nice().unwrap();
            assert!(after == before || after == super::BACKGROUND_NICE, "{after}");
        })
        .join()
        .unwrap();
    }
}
