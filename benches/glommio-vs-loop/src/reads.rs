//! Random 4 KiB O_DIRECT reads at a fixed queue depth, on one thread pinned
//! to one core, for a fixed time: reads per second, per-read latency
//! (submit to observed completion) and CPU time per read, for
//!
//! * Quarry's `UringReader` driven by a plain loop that keeps `depth` reads
//!   in flight and reaps with `complete(1, ..)` (sleeps in `io_uring_enter`),
//! * the same loop reaping with `complete(0, ..)` (busy polling),
//! * a glommio `LocalExecutor` pinned to the same core running `depth` tasks
//!   that each loop on `DmaFile::read_at(offset, 4096)`, with the default
//!   park behaviour and, optionally, with `spin_before_park`.
//!
//! A read counts if its completion is observed inside the measured window
//! (which starts after a warm-up); CPU time covers the same window.

use crate::stats::{ns, Cpu, Rng, Summary};
use quarry_engine::io::{open_reader, Completion, IoBackend};
use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Bytes per read (one sector).
pub const READ_LEN: usize = 4096;

/// Which side is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Quarry loop, `complete(1, ..)`.
    QuarryBlocking,
    /// Quarry loop, `complete(0, ..)` in a busy loop.
    QuarryPolling,
    /// glommio executor, default settings except `io_memory`.
    Glommio,
    /// glommio executor with `spin_before_park`.
    GlommioSpin,
}

impl Variant {
    pub fn label(self) -> &'static str {
        match self {
            Variant::QuarryBlocking => "quarry-blocking",
            Variant::QuarryPolling => "quarry-polling",
            Variant::Glommio => "glommio",
            Variant::GlommioSpin => "glommio-spin",
        }
    }
    pub fn parse(s: &str) -> Option<Variant> {
        [
            Variant::QuarryBlocking,
            Variant::QuarryPolling,
            Variant::Glommio,
            Variant::GlommioSpin,
        ]
        .into_iter()
        .find(|v| v.label() == s)
    }
}

/// Settings for one read measurement.
#[derive(Clone, Debug)]
pub struct ReadCfg {
    pub path: PathBuf,
    /// Number of 4 KiB sectors in the file (reads land in `0..sectors`).
    pub sectors: u64,
    pub depth: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub core: usize,
    /// glommio `io_memory` (None = glommio's default).
    pub io_memory: Option<usize>,
    /// glommio `spin_before_park` for [`Variant::GlommioSpin`].
    pub spin: Duration,
    pub seed: u64,
}

/// Result of one read measurement.
#[derive(Clone, Debug)]
pub struct ReadStats {
    pub variant: Variant,
    pub depth: usize,
    pub reads: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub lat: Summary,
    pub cpu: Cpu,
    /// What the reader says about itself (Quarry's `describe()`, or the
    /// glommio settings).
    pub note: String,
}

impl ReadStats {
    pub fn iops(&self) -> f64 {
        self.reads as f64 / self.elapsed.as_secs_f64()
    }
    /// Microseconds of CPU per read from `cpu_ns`.
    pub fn per_read_us(&self, cpu_ns: u64) -> f64 {
        if self.reads == 0 {
            return f64::NAN;
        }
        cpu_ns as f64 / 1000.0 / self.reads as f64
    }
}

/// Run one measurement (on a fresh thread pinned to `cfg.core`).
pub fn run(variant: Variant, cfg: &ReadCfg) -> Result<ReadStats, String> {
    match variant {
        Variant::QuarryBlocking => quarry(cfg, false),
        Variant::QuarryPolling => quarry(cfg, true),
        Variant::Glommio => glommio(cfg, None),
        Variant::GlommioSpin => glommio(cfg, Some(cfg.spin)),
    }
}

fn quarry(cfg: &ReadCfg, poll: bool) -> Result<ReadStats, String> {
    let cfg = cfg.clone();
    let h = std::thread::Builder::new()
        .name("quarry-reads".into())
        .spawn(move || quarry_thread(&cfg, poll))
        .map_err(|e| e.to_string())?;
    h.join().map_err(|_| "quarry read thread panicked".to_string())?
}

fn quarry_thread(cfg: &ReadCfg, poll: bool) -> Result<ReadStats, String> {
    if !quarry_engine::runtime::pin_to_core(cfg.core) {
        return Err(format!("cannot pin to core {}", cfg.core));
    }
    let mut r = open_reader(&cfg.path, READ_LEN, cfg.depth, IoBackend::Uring).map_err(|e| e.to_string())?;
    let note = r.describe();
    let mut rng = Rng::new(cfg.seed);
    let now0 = Instant::now();
    let mut starts = vec![now0; r.capacity()];
    let mut lat: Vec<u64> = Vec::with_capacity(1 << 20);
    let mut out: Vec<Completion> = Vec::with_capacity(cfg.depth);
    let (mut reads, mut errors, mut sink) = (0u64, 0u64, 0u64);

    for _ in 0..cfg.depth {
        let s = r.submit(rng.below(cfg.sectors), 0).map_err(|e| e.to_string())?;
        starts[s] = Instant::now();
    }
    let warm_end = Instant::now() + cfg.warmup;
    let mut begin: Option<(Instant, Cpu)> = None;
    let end_at = warm_end + cfg.measure;
    let min = if poll { 0 } else { 1 };
    let (t_end, cpu_end) = loop {
        out.clear();
        r.complete(min, &mut out).map_err(|e| e.to_string())?;
        if out.is_empty() {
            continue;
        }
        let now = Instant::now();
        if now >= end_at {
            let cpu = Cpu::now();
            for c in out.drain(..) {
                r.release(c.slot);
            }
            break (now, cpu);
        }
        if begin.is_none() && now >= warm_end {
            begin = Some((now, Cpu::now()));
        }
        let counting = begin.is_some();
        for c in out.drain(..) {
            if counting {
                lat.push(ns(now - starts[c.slot]));
                match c.result {
                    Ok(()) => reads += 1,
                    Err(_) => errors += 1,
                }
            }
            sink = sink.wrapping_add(u64::from(r.buffer(c.slot)[0]));
            r.release(c.slot);
            let s = r.submit(rng.below(cfg.sectors), 0).map_err(|e| e.to_string())?;
            starts[s] = Instant::now();
        }
    };
    // Drain what is still in flight (not counted).
    while r.in_use() > 0 {
        out.clear();
        r.complete(1, &mut out).map_err(|e| e.to_string())?;
        for c in out.drain(..) {
            r.release(c.slot);
        }
    }
    std::hint::black_box(sink);
    let (t0, cpu0) = begin.ok_or("measurement window never started")?;
    Ok(ReadStats {
        variant: if poll {
            Variant::QuarryPolling
        } else {
            Variant::QuarryBlocking
        },
        depth: cfg.depth,
        reads,
        errors,
        elapsed: t_end - t0,
        lat: Summary::of(&mut lat),
        cpu: cpu_end.since(&cpu0),
        note,
    })
}

/// State shared by the glommio reader tasks (one thread, so Rc/RefCell).
struct Shared {
    warm_end: Instant,
    end_at: Instant,
    begin: Cell<Option<(Instant, Cpu)>>,
    finish: Cell<Option<(Instant, Cpu)>>,
    lat: RefCell<Vec<u64>>,
    reads: Cell<u64>,
    errors: Cell<u64>,
    sink: Cell<u64>,
    first_error: RefCell<Option<String>>,
}

/// Build the glommio executor builder used by every glommio measurement.
pub fn builder(core: usize, io_memory: Option<usize>, spin: Option<Duration>) -> glommio::LocalExecutorBuilder {
    let mut b = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(core));
    if let Some(m) = io_memory {
        b = b.io_memory(m);
    }
    if let Some(s) = spin {
        b = b.spin_before_park(s);
    }
    b
}

fn glommio(cfg: &ReadCfg, spin: Option<Duration>) -> Result<ReadStats, String> {
    let c = cfg.clone();
    let handle = builder(cfg.core, cfg.io_memory, spin)
        .name("glommio-reads")
        .spawn(move || async move { glommio_body(c, spin).await })
        .map_err(|e| format!("glommio executor did not start: {e}"))?;
    handle.join().map_err(|e| format!("glommio executor failed: {e}"))?
}

async fn glommio_body(cfg: ReadCfg, spin: Option<Duration>) -> Result<ReadStats, String> {
    let file = Rc::new(
        glommio::io::DmaFile::open(&cfg.path)
            .await
            .map_err(|e| format!("DmaFile::open: {e}"))?,
    );
    let start = Instant::now();
    let shared = Rc::new(Shared {
        warm_end: start + cfg.warmup,
        end_at: start + cfg.warmup + cfg.measure,
        begin: Cell::new(None),
        finish: Cell::new(None),
        lat: RefCell::new(Vec::with_capacity(1 << 20)),
        reads: Cell::new(0),
        errors: Cell::new(0),
        sink: Cell::new(0),
        first_error: RefCell::new(None),
    });
    let mut tasks = Vec::with_capacity(cfg.depth);
    for i in 0..cfg.depth {
        let file = file.clone();
        let sh = shared.clone();
        let sectors = cfg.sectors;
        let mut rng = Rng::new(cfg.seed.wrapping_add(i as u64 * 0x1000_0001));
        tasks.push(glommio::spawn_local(async move {
            loop {
                let off = rng.below(sectors) * READ_LEN as u64;
                let t0 = Instant::now();
                let res = file.read_at(off, READ_LEN).await;
                let t1 = Instant::now();
                if t1 >= sh.end_at {
                    if sh.finish.get().is_none() {
                        sh.finish.set(Some((t1, Cpu::now())));
                    }
                    break;
                }
                if t1 >= sh.warm_end && sh.begin.get().is_none() {
                    sh.begin.set(Some((t1, Cpu::now())));
                }
                let counting = sh.begin.get().is_some();
                match res {
                    Ok(buf) if buf.len() == READ_LEN => {
                        sh.sink.set(sh.sink.get().wrapping_add(u64::from(buf[0])));
                        if counting {
                            sh.reads.set(sh.reads.get() + 1);
                        }
                    }
                    Ok(buf) => {
                        if counting {
                            sh.errors.set(sh.errors.get() + 1);
                        }
                        sh.first_error
                            .borrow_mut()
                            .get_or_insert_with(|| format!("short read: {} bytes", buf.len()));
                    }
                    Err(e) => {
                        if counting {
                            sh.errors.set(sh.errors.get() + 1);
                        }
                        sh.first_error.borrow_mut().get_or_insert_with(|| e.to_string());
                    }
                }
                if counting {
                    sh.lat.borrow_mut().push(ns(t1 - t0));
                }
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    std::hint::black_box(shared.sink.get());
    if let Ok(f) = Rc::try_unwrap(file) {
        let _ = f.close().await;
    }
    let (t0, cpu0) = shared.begin.get().ok_or("measurement window never started")?;
    let (t1, cpu1) = shared.finish.get().ok_or("measurement window never ended")?;
    let mut lat = shared.lat.take();
    let mut note = format!(
        "glommio 0.9.0 DmaFile::read_at, {} tasks, io_memory={}",
        cfg.depth,
        cfg.io_memory.map_or("default".into(), |m| m.to_string())
    );
    if let Some(s) = spin {
        note.push_str(&format!(", spin_before_park={s:?}"));
    }
    if let Some(e) = shared.first_error.borrow().as_ref() {
        note.push_str(&format!(", first error: {e}"));
    }
    Ok(ReadStats {
        variant: if spin.is_some() {
            Variant::GlommioSpin
        } else {
            Variant::Glommio
        },
        depth: cfg.depth,
        reads: shared.reads.get(),
        errors: shared.errors.get(),
        elapsed: t1 - t0,
        lat: Summary::of(&mut lat),
        cpu: cpu1.since(&cpu0),
        note,
    })
}
