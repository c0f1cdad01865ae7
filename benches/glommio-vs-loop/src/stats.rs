//! Measuring helpers shared by every benchmark: latency summaries
//! (mean, p50, p99, max over all recorded samples), CPU time of the
//! calling thread and of the whole process (read from `/proc`, so no
//! `unsafe` `getrusage` call), a tiny random number generator for read
//! offsets and pauses, and JSON string escaping for the output lines.

use std::time::Duration;

/// Summary of a set of latency samples, in nanoseconds.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub count: usize,
    pub mean_ns: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    /// Samples above 1 ms.
    pub over_1ms: usize,
}

impl Summary {
    /// Summarise `samples` (sorted in place). Percentiles are nearest-rank.
    pub fn of(samples: &mut [u64]) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        let rank = |p: f64| {
            let r = (p * n as f64).ceil() as usize;
            samples[r.clamp(1, n) - 1]
        };
        let sum: u128 = samples.iter().map(|&x| x as u128).sum();
        Summary {
            count: n,
            mean_ns: sum as f64 / n as f64,
            p50_ns: rank(0.50),
            p99_ns: rank(0.99),
            p999_ns: rank(0.999),
            max_ns: samples[n - 1],
            over_1ms: n - samples.partition_point(|&x| x <= 1_000_000),
        }
    }
}

/// Nanoseconds as microseconds, for printing.
pub fn us(ns: f64) -> f64 {
    ns / 1000.0
}

/// A duration in whole nanoseconds, saturating.
pub fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// CPU time consumed so far, as read from `/proc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    /// On-CPU time of the calling thread in ns (`/proc/thread-self/schedstat`,
    /// first field: user + kernel time run in this thread's context).
    pub thread_ns: u64,
    /// User time of the calling thread in ns (`/proc/thread-self/stat`
    /// utime, clock-tick resolution).
    pub thread_user_ns: u64,
    /// System time of the calling thread in ns (`/proc/thread-self/stat`
    /// stime, clock-tick resolution).
    pub thread_sys_ns: u64,
    /// User + system time of the whole process in ns (`/proc/self/stat`,
    /// clock-tick resolution; includes helper threads such as glommio's
    /// blocking pool and any io_uring io-wq workers).
    pub process_ns: u64,
}

/// Linux reports utime/stime in USER_HZ ticks, which is 100 on x86-64 and
/// arm64 (`sysconf(_SC_CLK_TCK)` would need `unsafe`).
const TICK_NS: u64 = 10_000_000;

fn stat_times(path: &str) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(path).ok()?;
    // Fields after the ")" that closes the command name: index 0 is field 3
    // (state), so utime (field 14) is index 11 and stime (15) index 12.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some((f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?))
}

impl Cpu {
    /// Read the calling thread's and the process's CPU time now.
    pub fn now() -> Cpu {
        let thread_ns = std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        let (tu, ts) = stat_times("/proc/thread-self/stat").unwrap_or((0, 0));
        let (pu, ps) = stat_times("/proc/self/stat").unwrap_or((0, 0));
        Cpu {
            thread_ns,
            thread_user_ns: tu * TICK_NS,
            thread_sys_ns: ts * TICK_NS,
            process_ns: (pu + ps) * TICK_NS,
        }
    }

    /// CPU time spent between `earlier` and `self`.
    pub fn since(&self, earlier: &Cpu) -> Cpu {
        Cpu {
            thread_ns: self.thread_ns.saturating_sub(earlier.thread_ns),
            thread_user_ns: self.thread_user_ns.saturating_sub(earlier.thread_user_ns),
            thread_sys_ns: self.thread_sys_ns.saturating_sub(earlier.thread_sys_ns),
            process_ns: self.process_ns.saturating_sub(earlier.process_ns),
        }
    }
}

/// xorshift64*: fast, deterministic, good enough to scatter read offsets.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() >> 32) * n) >> 32
    }
    /// Uniform-ish in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// Busy-wait for `d` (keeps the calling vCPU awake, unlike a sleep).
pub fn spin_for(d: Duration) {
    let t = std::time::Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// Escape `s` for use inside a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        let s = Summary::of(&mut v);
        assert_eq!((s.p50_ns, s.p99_ns, s.max_ns), (50, 99, 100));
        assert!((s.mean_ns - 50.5).abs() < 1e-9);
        let mut w = vec![5, 1_000_000, 1_000_001, 7_000_000];
        assert_eq!(Summary::of(&mut w).over_1ms, 2);
    }

    #[test]
    fn rng_stays_in_range() {
        let mut r = Rng::new(7);
        for _ in 0..10_000 {
            assert!(r.below(56_111) < 56_111);
            let b = r.between(50, 200);
            assert!((50..=200).contains(&b));
        }
    }

    #[test]
    fn cpu_reads_proc() {
        let a = Cpu::now();
        spin_for(Duration::from_millis(30));
        let d = Cpu::now().since(&a);
        assert!(d.thread_ns >= 20_000_000, "{d:?}");
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_str("a\"b\\\n"), "\"a\\\"b\\\\\\n\"");
    }
}
