//! PNG plots of `quarry-bench` results: recall@k against QPS, and against
//! latency (p50 and p99), one series per label.
//!
//! Owns: reading quarry-bench's JSON lines back and drawing them with
//! plotters' bitmap backend. Text is drawn with a TrueType font from the
//! machine (`QUARRY_PLOT_FONT`, else DejaVu Sans or Liberation Sans from
//! their Debian paths); without one, plotting fails with a message naming
//! the package to install, and the JSON results are unaffected.

use anyhow::{anyhow, bail, Context, Result};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// One measured point.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Series name (quarry-bench's `--label`, else its mode).
    pub label: String,
    /// recall@k.
    pub recall: f64,
    /// Queries per second.
    pub qps: f64,
    /// Median latency, µs.
    pub p50_us: f64,
    /// 99th percentile latency, µs.
    pub p99_us: f64,
}

/// The points in a file of quarry-bench JSON lines (other lines, and
/// results without a recall, are skipped).
pub fn read_points(path: &Path) -> Result<Vec<Point>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('{') {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}: line {} is not JSON", path.display(), i + 1))?;
        let num = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
        let (Some(recall), Some(qps), Some(p50_us), Some(p99_us)) =
            (num("recall_at_k"), num("qps"), num("lat_p50_us"), num("lat_p99_us"))
        else {
            continue;
        };
        let label = match v.get("label").and_then(|l| l.as_str()) {
            Some(l) if !l.is_empty() => l.to_string(),
            _ => v.get("mode").and_then(|m| m.as_str()).unwrap_or("run").to_string(),
        };
        out.push(Point {
            label,
            recall,
            qps,
            p50_us,
            p99_us,
        });
    }
    if out.is_empty() {
        bail!(
            "{} holds no quarry-bench result with a recall (run with --gt)",
            path.display()
        );
    }
    Ok(out)
}

fn font_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("QUARRY_PLOT_FONT") {
        return Ok(PathBuf::from(p));
    }
    let candidates = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            anyhow!(
                "no TrueType font for the plot's text: install fonts-dejavu-core (Debian) or set QUARRY_PLOT_FONT to a .ttf file"
            )
        })
}

fn register_font() -> Result<()> {
    static DONE: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let path = font_path().map_err(|e| e.to_string())?;
        let bytes = std::fs::read(&path).map_err(|e| format!("reading font {}: {e}", path.display()))?;
        // plotters keeps registered fonts for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{} is not a usable TrueType font", path.display()))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

fn span(xs: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.02).max(1e-3);
    (lo - pad, hi + pad)
}

/// Draw `points` into `out` (PNG, 1400 × 600): recall against QPS on the
/// left, recall against p50 (solid) and p99 (dashed) latency on the right.
pub fn plot(points: &[Point], out: &Path, title: &str) -> Result<()> {
    if points.is_empty() {
        bail!("nothing to plot");
    }
    register_font()?;
    let draw_err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", out.display());
    let mut labels: Vec<&str> = points.iter().map(|p| p.label.as_str()).collect();
    labels.dedup();
    labels.sort_unstable();
    labels.dedup();
    let series = |label: &str| {
        let mut s: Vec<&Point> = points.iter().filter(|p| p.label == label).collect();
        s.sort_by(|a, b| a.recall.total_cmp(&b.recall));
        s
    };
    let root = BitMapBackend::new(out, (1400, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(&e))?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(|e| draw_err(&e))?;
    let (left, right) = root.split_horizontally(700);
    let recall = span(points.iter().map(|p| p.recall));
    let recall = (recall.0, recall.1.min(1.0005));
    // Left: recall against QPS.
    let qps = span(points.iter().map(|p| p.qps));
    let mut c = ChartBuilder::on(&left)
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(qps.0.max(0.0)..qps.1, recall.0..recall.1)
        .map_err(|e| draw_err(&e))?;
    c.configure_mesh()
        .x_desc("QPS")
        .y_desc("recall@k")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| draw_err(&e))?;
    for (i, label) in labels.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let s = series(label);
        c.draw_series(LineSeries::new(
            s.iter().map(|p| (p.qps, p.recall)),
            color.stroke_width(2),
        ))
        .map_err(|e| draw_err(&e))?
        .label(label.to_string())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        c.draw_series(s.iter().map(|p| Circle::new((p.qps, p.recall), 4, color.filled())))
            .map_err(|e| draw_err(&e))?;
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| draw_err(&e))?;
    // Right: recall against latency, p50 solid with dots, p99 dashed.
    let lat = span(points.iter().flat_map(|p| [p.p50_us, p.p99_us]));
    let mut c = ChartBuilder::on(&right)
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(lat.0.max(0.0)..lat.1, recall.0..recall.1)
        .map_err(|e| draw_err(&e))?;
    c.configure_mesh()
        .x_desc("latency µs (p50 solid, p99 dashed)")
        .y_desc("recall@k")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| draw_err(&e))?;
    for (i, label) in labels.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let s = series(label);
        c.draw_series(LineSeries::new(
            s.iter().map(|p| (p.p50_us, p.recall)),
            color.stroke_width(2),
        ))
        .map_err(|e| draw_err(&e))?
        .label(format!("{label} p50"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        c.draw_series(s.iter().map(|p| Circle::new((p.p50_us, p.recall), 4, color.filled())))
            .map_err(|e| draw_err(&e))?;
        c.draw_series(DashedLineSeries::new(
            s.iter().map(|p| (p.p99_us, p.recall)),
            6,
            4,
            color.stroke_width(2),
        ))
        .map_err(|e| draw_err(&e))?;
        c.draw_series(
            s.iter()
                .map(|p| TriangleMarker::new((p.p99_us, p.recall), 5, color.filled())),
        )
        .map_err(|e| draw_err(&e))?;
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| draw_err(&e))?;
    root.present().map_err(|e| draw_err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_the_results_it_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let res = dir.path().join("r.jsonl");
        let mut lines = String::from("warming up\n");
        for (l, (recall, qps, p50, p99)) in [(0.90, 2000.0, 600.0, 1100.0), (0.95, 1500.0, 800.0, 1500.0)]
            .into_iter()
            .enumerate()
        {
            lines += &serde_json::json!({"label": "grpc", "recall_at_k": recall, "qps": qps, "lat_p50_us": p50, "lat_p99_us": p99, "L": l}).to_string();
            lines += "\n";
            lines += &serde_json::json!({"mode": "in-process", "recall_at_k": recall + 0.01, "qps": qps * 1.2, "lat_p50_us": p50 - 90.0, "lat_p99_us": p99 - 50.0}).to_string();
            lines += "\n";
        }
        // A result without recall is skipped, not plotted as zero.
        lines += "{\"label\":\"grpc\",\"qps\":10,\"lat_p50_us\":1,\"lat_p99_us\":2,\"recall_at_k\":null}\n";
        std::fs::write(&res, lines).unwrap();
        let pts = read_points(&res).unwrap();
        assert_eq!(pts.len(), 4);
        assert_eq!(pts.iter().filter(|p| p.label == "in-process").count(), 2);
        let png = dir.path().join("r.png");
        plot(&pts, &png, "test").unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(
            bytes.len() > 10_000,
            "a 1400x600 plot with text is not {} bytes",
            bytes.len()
        );

        std::fs::write(&res, "{\"qps\": 1}\n").unwrap();
        assert!(read_points(&res)
            .unwrap_err()
            .to_string()
            .contains("no quarry-bench result"));
    }
}
