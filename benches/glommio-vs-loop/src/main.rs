//! glommio-vs-loop: measures, side by side in one process, glommio 0.9
//! executors against Quarry's own io_uring loop on one pinned core:
//!
//! 1. random 4 KiB O_DIRECT reads at queue depths 1/8/32 (IOPS, latency
//!    mean/p50/p99, CPU µs per read) — see [`reads`];
//! 2. the cross-thread wake-up round trip to a parked shard — see [`wake`];
//! 3. whether glommio's executor starts at all under the memlock limit with
//!    its default `io_memory` — see [`probe`].
//!
//! Prints progress to stderr, then one human-readable table and one JSON
//! line per measurement to stdout. Standalone crate, not part of the
//! Quarry workspace. `cargo run --release -- --help` lists the options.

#![forbid(unsafe_code)]

mod probe;
mod reads;
mod stats;
mod wake;

use reads::{ReadCfg, ReadStats, Variant};
use stats::{json_str, us};
use std::path::PathBuf;
use std::time::Duration;
use wake::{WakeCfg, WakeStats, WakeVariant};

const GLOMMIO_VERSION: &str = "0.9.0";

const HELP: &str = "glommio-vs-loop: glommio executors vs Quarry's io_uring loop

USAGE: glommio-vs-loop [OPTIONS]

  --file PATH          file to read (default: largest file in
                       ~/.cache/quarry-exp/dev-f16-coloc)
  --secs S             measured seconds per read measurement (default 3)
  --warmup S           unmeasured warm-up seconds before each (default 0.5)
  --depths LIST        queue depths, comma-separated (default 1,8,32)
  --core N             core of the measured thread / shard (default 1)
  --other-core N       core of the wake-up requester (default 0)
  --io-memory BYTES    glommio io_memory for the measurements; K/M suffix
                       allowed; 'default' = glommio's 10 MiB (default 1M)
  --spin-us N          spin_before_park for the glommio-spin variant
                       (default 1000)
  --variants LIST      read variants (default quarry-blocking,
                       quarry-polling,glommio,glommio-spin)
  --wake-variants LIST (default quarry-parker,glommio-flume,
                       glommio-shared-channel)
  --wake-iters N       measured wake-up round trips (default 20000)
  --wake-warmup N      unmeasured round trips first (default 1000)
  --pause-us MIN-MAX   random busy pause between round trips (default 50-200)
  --only LIST          sections to run: probe,reads,wake (default all)
  --seed N             random seed (default 42)
";

struct Args {
    file: PathBuf,
    secs: f64,
    warmup: f64,
    depths: Vec<usize>,
    core: usize,
    other_core: usize,
    io_memory: Option<usize>,
    spin_us: u64,
    variants: Vec<Variant>,
    wake_variants: Vec<WakeVariant>,
    wake_iters: usize,
    wake_warmup: usize,
    pause: (u64, u64),
    only: Vec<String>,
    seed: u64,
}

fn parse_bytes(s: &str) -> Result<Option<usize>, String> {
    if s == "default" {
        return Ok(None);
    }
    let (num, mul) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        _ => (s, 1),
    };
    num.parse::<usize>()
        .map(|n| Some(n * mul))
        .map_err(|e| format!("bad byte count '{s}': {e}"))
}

fn default_file() -> Result<PathBuf, String> {
    let home = std::env::var_os("HOME").ok_or("HOME not set; pass --file")?;
    let dir = PathBuf::from(home).join(".cache/quarry-exp/dev-f16-coloc");
    let mut best: Option<(u64, PathBuf)> = None;
    for e in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}; pass --file", dir.display()))? {
        let e = e.map_err(|e| e.to_string())?;
        let m = e.metadata().map_err(|e| e.to_string())?;
        if m.is_file() && best.as_ref().is_none_or(|(l, _)| m.len() > *l) {
            best = Some((m.len(), e.path()));
        }
    }
    best.map(|(_, p)| p)
        .ok_or_else(|| format!("{} is empty; pass --file", dir.display()))
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        file: PathBuf::new(),
        secs: 3.0,
        warmup: 0.5,
        depths: vec![1, 8, 32],
        core: 1,
        other_core: 0,
        io_memory: Some(1 << 20),
        spin_us: 1000,
        variants: vec![
            Variant::QuarryBlocking,
            Variant::QuarryPolling,
            Variant::Glommio,
            Variant::GlommioSpin,
        ],
        wake_variants: vec![
            WakeVariant::QuarryParker,
            WakeVariant::GlommioFlume,
            WakeVariant::GlommioSharedChannel,
        ],
        wake_iters: 20_000,
        wake_warmup: 1_000,
        pause: (50, 200),
        only: vec!["probe".into(), "reads".into(), "wake".into()],
        seed: 42,
    };
    let mut file = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            print!("{HELP}");
            std::process::exit(0);
        }
        let val = it.next().ok_or_else(|| format!("{flag} needs a value (see --help)"))?;
        let num = |v: &str| v.parse::<u64>().map_err(|e| format!("{flag} {v}: {e}"));
        let list = |v: &str| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        };
        match flag.as_str() {
            "--file" => file = Some(PathBuf::from(val)),
            "--secs" => a.secs = val.parse().map_err(|e| format!("--secs {val}: {e}"))?,
            "--warmup" => a.warmup = val.parse().map_err(|e| format!("--warmup {val}: {e}"))?,
            "--depths" => {
                a.depths = list(&val)
                    .iter()
                    .map(|d| d.parse::<usize>().map_err(|e| format!("--depths {d}: {e}")))
                    .collect::<Result<_, _>>()?;
                if a.depths.iter().any(|&d| d == 0 || d > 4096) {
                    return Err("--depths must be in 1..=4096".into());
                }
            }
            "--core" => a.core = num(&val)? as usize,
            "--other-core" => a.other_core = num(&val)? as usize,
            "--io-memory" => a.io_memory = parse_bytes(&val)?,
            "--spin-us" => a.spin_us = num(&val)?,
            "--variants" => {
                a.variants = list(&val)
                    .iter()
                    .map(|v| Variant::parse(v).ok_or_else(|| format!("unknown read variant '{v}'")))
                    .collect::<Result<_, _>>()?
            }
            "--wake-variants" => {
                a.wake_variants = list(&val)
                    .iter()
                    .map(|v| WakeVariant::parse(v).ok_or_else(|| format!("unknown wake variant '{v}'")))
                    .collect::<Result<_, _>>()?
            }
            "--wake-iters" => a.wake_iters = num(&val)? as usize,
            "--wake-warmup" => a.wake_warmup = num(&val)? as usize,
            "--pause-us" => {
                let (lo, hi) = val.split_once('-').ok_or("--pause-us wants MIN-MAX")?;
                a.pause = (num(lo)?, num(hi)?);
                if a.pause.0 > a.pause.1 {
                    return Err("--pause-us MIN must not exceed MAX".into());
                }
            }
            "--only" => a.only = list(&val),
            "--seed" => a.seed = num(&val)?,
            _ => return Err(format!("unknown option {flag} (see --help)")),
        }
    }
    a.file = match file {
        Some(f) => f,
        None => default_file()?,
    };
    Ok(a)
}

fn opt_bytes(m: Option<usize>) -> String {
    m.map_or_else(|| "default (10 MiB)".into(), |b| format!("{b} bytes"))
}

fn json_opt_bytes(m: Option<usize>) -> String {
    m.map_or_else(|| "null".into(), |b| b.to_string())
}

fn read_row(r: &ReadStats) -> String {
    format!(
        "{:<16} {:>5} {:>10.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.2} {:>10.2} {:>7}",
        r.variant.label(),
        r.depth,
        r.iops(),
        us(r.lat.mean_ns),
        us(r.lat.p50_ns as f64),
        us(r.lat.p99_ns as f64),
        us(r.lat.max_ns as f64),
        r.per_read_us(r.cpu.thread_ns),
        r.per_read_us(r.cpu.process_ns),
        r.errors
    )
}

fn read_json(r: &ReadStats, secs: f64) -> String {
    format!(
        concat!(
            "{{\"bench\":\"reads\",\"impl\":{},\"depth\":{},\"secs\":{},\"elapsed_s\":{:.4},",
            "\"reads\":{},\"errors\":{},\"iops\":{:.1},\"lat_mean_us\":{:.2},\"lat_p50_us\":{:.2},",
            "\"lat_p99_us\":{:.2},\"lat_p999_us\":{:.2},\"lat_max_us\":{:.2},\"lat_over_1ms\":{},",
            "\"thread_cpu_us_per_read\":{:.3},\"thread_user_us_per_read\":{:.3},",
            "\"thread_sys_us_per_read\":{:.3},\"process_cpu_us_per_read\":{:.3},",
            "\"thread_cpu_util\":{:.3},\"note\":{}}}"
        ),
        json_str(r.variant.label()),
        r.depth,
        secs,
        r.elapsed.as_secs_f64(),
        r.reads,
        r.errors,
        r.iops(),
        us(r.lat.mean_ns),
        us(r.lat.p50_ns as f64),
        us(r.lat.p99_ns as f64),
        us(r.lat.p999_ns as f64),
        us(r.lat.max_ns as f64),
        r.lat.over_1ms,
        r.per_read_us(r.cpu.thread_ns),
        r.per_read_us(r.cpu.thread_user_ns),
        r.per_read_us(r.cpu.thread_sys_ns),
        r.per_read_us(r.cpu.process_ns),
        r.cpu.thread_ns as f64 / 1e9 / r.elapsed.as_secs_f64(),
        json_str(&r.note)
    )
}

fn wake_row(w: &WakeStats) -> String {
    format!(
        "{:<24} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>7}",
        w.variant.label(),
        w.rtt.count,
        us(w.rtt.mean_ns),
        us(w.rtt.p50_ns as f64),
        us(w.rtt.p99_ns as f64),
        us(w.rtt.p999_ns as f64),
        us(w.rtt.max_ns as f64),
        w.rtt.over_1ms
    )
}

fn wake_json(w: &WakeStats, a: &Args) -> String {
    format!(
        concat!(
            "{{\"bench\":\"wake\",\"impl\":{},\"iters\":{},\"pause_us\":[{},{}],\"rtt_mean_us\":{:.2},",
            "\"rtt_p50_us\":{:.2},\"rtt_p99_us\":{:.2},\"rtt_p999_us\":{:.2},\"rtt_max_us\":{:.2},\"over_1ms\":{},\"note\":{}}}"
        ),
        json_str(w.variant.label()),
        w.rtt.count,
        a.pause.0,
        a.pause.1,
        us(w.rtt.mean_ns),
        us(w.rtt.p50_ns as f64),
        us(w.rtt.p99_ns as f64),
        us(w.rtt.p999_ns as f64),
        us(w.rtt.max_ns as f64),
        w.rtt.over_1ms,
        json_str(&w.note)
    )
}

fn probe_json(p: &probe::Probe) -> String {
    let logs: Vec<String> = p.logs.iter().map(|l| json_str(l)).collect();
    format!(
        "{{\"bench\":\"probe\",\"impl\":\"glommio\",\"io_memory\":{},\"started\":{},\"read_ok\":{},\"error\":{},\"warnings\":[{}]}}",
        json_opt_bytes(p.io_memory),
        p.started,
        p.read_ok,
        p.error.as_deref().map_or_else(|| "null".into(), json_str),
        logs.join(",")
    )
}

/// The 1-minute load average (`/proc/loadavg`), to spot a busy machine.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "null".into())
}

fn main() {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    probe::install_logger();
    let file_len = match std::fs::metadata(&a.file) {
        Ok(m) => m.len(),
        Err(e) => {
            eprintln!("error: {}: {e}", a.file.display());
            std::process::exit(2);
        }
    };
    let sectors = file_len / reads::READ_LEN as u64;
    if sectors == 0 {
        eprintln!("error: {} is smaller than 4 KiB", a.file.display());
        std::process::exit(2);
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memlock = probe::memlock_limit();
    let ipc_lock = probe::has_cap_ipc_lock();
    let load_start = loadavg();
    let mut json: Vec<String> = Vec::new();
    json.push(format!(
        concat!(
            "{{\"bench\":\"env\",\"glommio\":\"{}\",\"file\":{},\"file_bytes\":{},\"sectors\":{},",
            "\"cpus\":{},\"core\":{},\"other_core\":{},\"memlock_soft\":{},\"cap_ipc_lock\":{},",
            "\"io_memory\":{},\"secs\":{},\"warmup_s\":{}}}"
        ),
        GLOMMIO_VERSION,
        json_str(&a.file.display().to_string()),
        file_len,
        sectors,
        cpus,
        a.core,
        a.other_core,
        json_str(&memlock),
        ipc_lock.map_or_else(|| "null".into(), |b| b.to_string()),
        json_opt_bytes(a.io_memory),
        a.secs,
        a.warmup
    ));
    eprintln!(
        "file {} ({} bytes, {} sectors); {} cpus; measured core {}, requester core {}; memlock {}; CAP_IPC_LOCK {:?}",
        a.file.display(),
        file_len,
        sectors,
        cpus,
        a.core,
        a.other_core,
        memlock,
        ipc_lock
    );

    // 1. Probe glommio start-up with the default and the chosen io_memory.
    let mut probes = Vec::new();
    if a.only.iter().any(|s| s == "probe") {
        let mut mems = vec![None];
        if a.io_memory.is_some() {
            mems.push(a.io_memory);
        }
        for m in mems {
            let p = probe::run(a.core, m, &a.file);
            eprintln!("probe io_memory={}: {:?}", opt_bytes(m), p);
            json.push(probe_json(&p));
            probes.push(p);
        }
    }

    // 2. Reads: variants interleaved per depth, so drift hits all alike.
    let mut read_rows: Vec<Result<ReadStats, (Variant, usize, String)>> = Vec::new();
    if a.only.iter().any(|s| s == "reads") {
        for (i, &depth) in a.depths.iter().enumerate() {
            for (j, &v) in a.variants.iter().enumerate() {
                let cfg = ReadCfg {
                    path: a.file.clone(),
                    sectors,
                    depth,
                    warmup: Duration::from_secs_f64(a.warmup),
                    measure: Duration::from_secs_f64(a.secs),
                    core: a.core,
                    io_memory: a.io_memory,
                    spin: Duration::from_micros(a.spin_us),
                    seed: a.seed.wrapping_add((i * 16 + j) as u64),
                };
                let _ = probe::take_logs();
                let r = reads::run(v, &cfg);
                let logs = probe::take_logs();
                match r {
                    Ok(mut s) => {
                        if !logs.is_empty() {
                            s.note.push_str(&format!("; glommio warnings: {}", logs.join(" | ")));
                        }
                        eprintln!("{}", read_row(&s));
                        json.push(read_json(&s, a.secs));
                        read_rows.push(Ok(s));
                    }
                    Err(e) => {
                        eprintln!("{} depth {depth}: FAILED: {e}", v.label());
                        json.push(format!(
                            "{{\"bench\":\"reads\",\"impl\":{},\"depth\":{},\"error\":{}}}",
                            json_str(v.label()),
                            depth,
                            json_str(&e)
                        ));
                        read_rows.push(Err((v, depth, e)));
                    }
                }
            }
        }
    }

    // 3. Wake-up round trips.
    let mut wake_rows: Vec<Result<WakeStats, (WakeVariant, String)>> = Vec::new();
    if a.only.iter().any(|s| s == "wake") {
        for (j, &v) in a.wake_variants.iter().enumerate() {
            let cfg = WakeCfg {
                core: a.core,
                other_core: a.other_core,
                iters: a.wake_iters,
                warmup_iters: a.wake_warmup,
                pause_min_us: a.pause.0,
                pause_max_us: a.pause.1,
                io_memory: a.io_memory,
                seed: a.seed.wrapping_add(1000 + j as u64),
            };
            match wake::run(v, &cfg) {
                Ok(w) => {
                    eprintln!("{}", wake_row(&w));
                    json.push(wake_json(&w, &a));
                    wake_rows.push(Ok(w));
                }
                Err(e) => {
                    eprintln!("{}: FAILED: {e}", v.label());
                    json.push(format!(
                        "{{\"bench\":\"wake\",\"impl\":{},\"error\":{}}}",
                        json_str(v.label()),
                        json_str(&e)
                    ));
                    wake_rows.push(Err((v, e)));
                }
            }
        }
    }

    // Output: table, then JSON lines.
    let load_end = loadavg();
    json.push(format!(
        "{{\"bench\":\"load\",\"loadavg1_start\":{load_start},\"loadavg1_end\":{load_end}}}"
    ));
    println!(
        "glommio-vs-loop  (glommio {GLOMMIO_VERSION}; file {}, {} sectors of 4 KiB)",
        a.file.display(),
        sectors
    );
    println!(
        "cpus {cpus}, measured core {}, requester core {}, memlock soft limit {memlock}, CAP_IPC_LOCK {}",
        a.core,
        a.other_core,
        ipc_lock.map_or("unknown".into(), |b| b.to_string())
    );
    println!("1-min load average: {load_start} at start, {load_end} at end (the benchmark itself adds ~1)");
    if !probes.is_empty() {
        println!();
        println!(
            "glommio start-up probe (executor pinned to core {}, one 4 KiB DmaFile read):",
            a.core
        );
        for p in &probes {
            println!(
                "  io_memory {:<18} started={:<5} read_ok={:<5} error={} warnings={}",
                opt_bytes(p.io_memory),
                p.started,
                p.read_ok,
                p.error.as_deref().unwrap_or("none"),
                if p.logs.is_empty() {
                    "none".into()
                } else {
                    p.logs.join(" | ")
                }
            );
        }
    }
    if !read_rows.is_empty() {
        println!();
        println!(
            "random 4 KiB O_DIRECT reads, {} s per row after {} s warm-up; glommio io_memory {}",
            a.secs,
            a.warmup,
            opt_bytes(a.io_memory)
        );
        println!(
            "{:<16} {:>5} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>7}",
            "impl", "depth", "IOPS", "mean_us", "p50_us", "p99_us", "max_us", "thrCPU/rd", "procCPU/rd", "errors"
        );
        for r in &read_rows {
            match r {
                Ok(s) => println!("{}", read_row(s)),
                Err((v, d, e)) => println!("{:<16} {:>5} FAILED: {e}", v.label(), d),
            }
        }
        println!("(CPU columns: µs of CPU per completed read; thr = the measured thread, proc = whole process)");
    }
    if !wake_rows.is_empty() {
        println!();
        println!(
            "wake-up round trip to a parked shard (core {} <- requester core {}), random {}-{} µs busy pause between requests",
            a.core, a.other_core, a.pause.0, a.pause.1
        );
        println!(
            "{:<24} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
            "impl", "iters", "mean_us", "p50_us", "p99_us", "p99.9_us", "max_us", "n>1ms"
        );
        for w in &wake_rows {
            match w {
                Ok(s) => println!("{}", wake_row(s)),
                Err((v, e)) => println!("{:<24} FAILED: {e}", v.label()),
            }
        }
        for w in wake_rows.iter().flatten() {
            println!("  {}: {}", w.variant.label(), w.note);
        }
    }
    if !read_rows.is_empty() {
        println!();
        println!("reader set-up (deepest depth of each impl):");
        for v in &a.variants {
            if let Some(r) = read_rows.iter().flatten().rfind(|r| r.variant == *v) {
                println!("  {}: {}", v.label(), r.note);
            }
        }
    }
    println!();
    for j in &json {
        println!("{j}");
    }
}
