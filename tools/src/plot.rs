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

/// One curve of a panel: x from each point against its recall. Solid
/// curves have dots and a legend entry (`label` + `legend`); dashed ones
/// have triangles and share the colour of the solid curve of their series.
struct Curve {
    x: fn(&Point) -> f64,
    dashed: bool,
    legend: &'static str,
}

/// Draw one panel: axes, every series' curves, the legend.
fn panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    x: (f64, f64),
    y: (f64, f64),
    x_desc: &str,
    series: &[(&str, Vec<&Point>)],
    curves: &[Curve],
) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let mut c = ChartBuilder::on(area)
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(x.0.max(0.0)..x.1, y.0..y.1)
        .map_err(|x| e(&x))?;
    c.configure_mesh()
        .x_desc(x_desc)
        .y_desc("recall@k")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|x| e(&x))?;
    for (i, (label, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        for curve in curves {
            let xy = pts.iter().map(|p| ((curve.x)(p), p.recall));
            if curve.dashed {
                c.draw_series(DashedLineSeries::new(xy.clone(), 6, 4, color.stroke_width(2)))
                    .map_err(|x| e(&x))?;
                c.draw_series(xy.map(|p| TriangleMarker::new(p, 5, color.filled())))
                    .map_err(|x| e(&x))?;
            } else {
                c.draw_series(LineSeries::new(xy.clone(), color.stroke_width(2)))
                    .map_err(|x| e(&x))?
                    .label(format!("{label}{}", curve.legend))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
                c.draw_series(xy.map(|p| Circle::new(p, 4, color.filled())))
                    .map_err(|x| e(&x))?;
            }
        }
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|x| e(&x))?;
    Ok(())
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
    labels.sort_unstable();
    labels.dedup();
    let series: Vec<(&str, Vec<&Point>)> = labels
        .into_iter()
        .map(|label| {
            let mut s: Vec<&Point> = points.iter().filter(|p| p.label == label).collect();
            s.sort_by(|a, b| a.recall.total_cmp(&b.recall));
            (label, s)
        })
        .collect();
    let root = BitMapBackend::new(out, (1400, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_err(&e))?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(|e| draw_err(&e))?;
    let (left, right) = root.split_horizontally(700);
    let recall = span(points.iter().map(|p| p.recall));
    let recall = (recall.0, recall.1.min(1.0005));
    let qps = Curve {
        x: |p| p.qps,
        dashed: false,
        legend: "",
    };
    panel(
        &left,
        span(points.iter().map(|p| p.qps)),
        recall,
        "QPS",
        &series,
        &[qps],
    )
    .map_err(|e| draw_err(&e))?;
    let p50 = Curve {
        x: |p| p.p50_us,
        dashed: false,
        legend: " p50",
    };
    let p99 = Curve {
        x: |p| p.p99_us,
        dashed: true,
        legend: "",
    };
    let lat = span(points.iter().flat_map(|p| [p.p50_us, p.p99_us]));
    panel(
        &right,
        lat,
        recall,
        "latency µs (p50 solid, p99 dashed)",
        &series,
        &[p50, p99],
    )
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
