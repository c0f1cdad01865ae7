//! Start-up probe: whether a glommio executor starts under this machine's
//! memlock limit with a given `io_memory` (glommio's default is 10 MiB,
//! registered with each of its three io_uring rings), and whether it can
//! then do one O_DIRECT `DmaFile` read. Records the exact error text if the
//! executor fails, and any warning glommio logs through the `log` crate
//! (it only warns, and carries on with unregistered buffers, when buffer
//! registration is refused). Also reports the facts that decide it: the
//! memlock rlimit and whether this process holds CAP_IPC_LOCK (which makes
//! the kernel skip memlock accounting for io_uring registered buffers).

use std::path::Path;
use std::sync::Mutex;

static LOGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            let text = format!("{} {}: {}", r.level(), r.target(), r.args());
            // glommio logs pretty-printed Debug values; keep one line each.
            let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
            if let Ok(mut l) = LOGS.lock() {
                l.push(line);
            }
        }
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture;

/// Route `log` records at warn and above into [`take_logs`].
pub fn install_logger() {
    if log::set_logger(&CAPTURE).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}

/// Warnings captured since the last call.
pub fn take_logs() -> Vec<String> {
    LOGS.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default()
}

/// The soft memlock limit as `/proc/self/limits` shows it.
pub fn memlock_limit() -> String {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max locked memory"))
                .map(|l| l.split_whitespace().skip(3).take(3).collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Whether CAP_IPC_LOCK (bit 14) is in this process's effective set.
pub fn has_cap_ipc_lock() -> Option<bool> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = s
        .lines()
        .find(|l| l.starts_with("CapEff:"))?
        .split_whitespace()
        .nth(1)?;
    let v = u64::from_str_radix(hex, 16).ok()?;
    Some(v & (1 << 14) != 0)
}

/// Outcome of one probe.
#[derive(Debug, Clone)]
pub struct Probe {
    pub io_memory: Option<usize>,
    /// Executor constructed and ran its task.
    pub started: bool,
    /// One 4 KiB DmaFile read succeeded.
    pub read_ok: bool,
    /// Error text, if the executor failed or the read failed.
    pub error: Option<String>,
    /// Warnings glommio logged meanwhile.
    pub logs: Vec<String>,
}

/// Start an executor pinned to `core` with `io_memory` (None = default)
/// and read the first 4 KiB of `path` through it.
pub fn run(core: usize, io_memory: Option<usize>, path: &Path) -> Probe {
    let _ = take_logs();
    let p = path.to_path_buf();
    let res = crate::reads::builder(core, io_memory, None)
        .name("glommio-probe")
        .spawn(move || async move {
            let f = glommio::io::DmaFile::open(&p)
                .await
                .map_err(|e| format!("DmaFile::open: {e}"))?;
            let r = f
                .read_at(0, crate::reads::READ_LEN)
                .await
                .map_err(|e| format!("DmaFile::read_at: {e}"))?;
            let n = r.len();
            drop(r);
            let _ = f.close().await;
            Ok::<usize, String>(n)
        });
    let (started, read_ok, error) = match res {
        Err(e) => (false, false, Some(format!("spawn: {e}"))),
        Ok(h) => match h.join() {
            Err(e) => (false, false, Some(e.to_string())),
            Ok(Err(e)) => (true, false, Some(e)),
            Ok(Ok(n)) if n == crate::reads::READ_LEN => (true, true, None),
            Ok(Ok(n)) => (true, false, Some(format!("short read: {n} bytes"))),
        },
    };
    Probe {
        io_memory,
        started,
        read_ok,
        error,
        logs: take_logs(),
    }
}
