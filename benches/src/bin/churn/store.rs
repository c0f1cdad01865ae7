//! The collections on disk: writing ops in batches, a timed flush, and
//! copying or clearing a collection directory.

use super::*;

/// Flush with per-stage timing; returns (report json, seconds, merged, segments after).
pub(crate) fn timed_flush(c: &Collection, label: &str) -> Result<(Value, f64, bool)> {
    let t0 = Instant::now();
    let mut stages: Vec<(String, f64)> = Vec::new();
    let mut cur: Option<(String, Instant)> = None;
    let mut next_pct = 0usize;
    let mut progress = |st: &str, done: usize, total: usize| {
        if cur.as_ref().map(|(s, _)| s.as_str()) != Some(st) {
            if let Some((s, t)) = cur.take() {
                stages.push((s, t.elapsed().as_secs_f64()));
            }
            cur = Some((st.to_string(), Instant::now()));
            next_pct = 0;
        }
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        if st == "graph" && pct >= next_pct {
            eprintln!("  [{label}] {st} {pct}% ({:.0} s)", t0.elapsed().as_secs_f64());
            next_pct = pct + 25;
        }
    };
    let rep = c.flush(&mut progress)?;
    if let Some((s, t)) = cur.take() {
        stages.push((s, t.elapsed().as_secs_f64()));
    }
    let secs = t0.elapsed().as_secs_f64();
    let staged: f64 = stages.iter().map(|s| s.1).sum();
    let mut st = serde_json::Map::new();
    for (s, v) in &stages {
        st.insert(s.clone(), json!(v));
    }
    Ok((
        json!({
            "seconds": secs,
            "merged": rep.merged,
            "vectors": rep.vectors,
            "segments_after": rep.segments,
            "wal_segments_deleted": rep.wal_segments_deleted,
            "stage_seconds": st,
            "seconds_outside_stages": secs - staged,
        }),
        secs,
        rep.merged,
    ))
}

/// Write `ops` in batches; returns seconds.
pub(crate) fn write_all(c: &Collection, ops: Vec<Op>, batch: usize) -> Result<f64> {
    let t = Instant::now();
    let mut it = ops.into_iter().peekable();
    while it.peek().is_some() {
        let b: Vec<Op> = it.by_ref().take(batch.max(1)).collect();
        c.write(b)?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Remove a collection directory this benchmark made earlier.
pub(crate) fn clear_collection(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let empty = std::fs::read_dir(dir)?.next().is_none();
    if !empty && !dir.join("manifest.json").exists() {
        bail!(
            "{} exists and does not look like a collection (no manifest.json); refusing to delete it",
            dir.display()
        );
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))
}

/// Copy a collection directory (files and subdirectories); nothing may
/// write to `src` meanwhile.
pub(crate) fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst).with_context(|| format!("create {}", dst.display()))?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to = dst.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), &to).with_context(|| format!("copy {}", e.path().display()))?;
        }
    }
    Ok(())
}
