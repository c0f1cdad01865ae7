//! The real `quarryctl` binary, end to end: gen → gt → build → verify →
//! search, plus the errors a user sees for bad input.

use std::path::Path;
use std::process::{Command, Output};

fn quarryctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quarryctl"))
        .args(args)
        .output()
        .expect("quarryctl runs")
}

fn ok(args: &[&str]) -> String {
    let out = quarryctl(args);
    assert!(
        out.status.success(),
        "quarryctl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn err(args: &[&str]) -> String {
    let out = quarryctl(args);
    assert!(!out.status.success(), "quarryctl {args:?} should have failed");
    String::from_utf8(out.stderr).unwrap()
}

fn p(dir: &Path, name: &str) -> String {
    dir.join(name).to_str().unwrap().to_string()
}

#[test]
fn generate_build_verify_and_search() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let data = p(dir, "data");
    ok(&[
        "gen",
        "--out",
        &data,
        "--n",
        "4000",
        "--dim",
        "32",
        "--queries",
        "50",
        "--lid-sample",
        "100",
    ]);
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("data/meta.json")).unwrap()).unwrap();
    assert!(meta["lid"]["mean"].as_f64().unwrap() > 1.0, "{meta}");
    let (base, queries, gt, idx) = (
        p(dir, "data/base.fbin"),
        p(dir, "data/queries.fbin"),
        p(dir, "gt.ibin"),
        p(dir, "idx"),
    );
    ok(&["gt", "--base", &base, "--queries", &queries, "--out", &gt]);
    let report = ok(&[
        "build",
        "--base",
        &base,
        "--index",
        &idx,
        "--metric",
        "l2",
        "--R",
        "24",
        "--L",
        "48",
        "--alpha",
        "1.2",
        "--pq-bytes",
        "8",
        "--disk-vector",
        "f16",
        "--threads",
        "2",
        "--build-ram-gb",
        "1",
    ]);
    let report: serde_json::Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(report["n"], 4000);
    assert!(report["peak_rss_bytes"].as_u64().unwrap() > 0);
    ok(&["verify", "--index", &idx]);
    // The same data partitioned into 3 shards (forced: it fits the budget).
    let pidx = p(dir, "idx-part");
    let part = ok(&[
        "build",
        "--base",
        &base,
        "--index",
        &pidx,
        "--R",
        "24",
        "--L",
        "48",
        "--pq-bytes",
        "8",
        "--threads",
        "2",
        "--partition",
        "--merge-cut",
        "shuffle",
    ]);
    let part: serde_json::Value = serde_json::from_str(part.trim()).unwrap();
    assert_eq!(
        (part["n"].as_u64(), part["partition"]["shards"].as_u64()),
        (Some(4000), Some(3)),
        "{part}"
    );
    assert_eq!(part["partition"]["cut"], "shuffle");
    ok(&["verify", "--index", &pidx]);
    let out = ok(&[
        "search",
        "--index",
        &idx,
        "--queries",
        &queries,
        "--gt",
        &gt,
        "--k",
        "10",
        "--L",
        "20,40",
        "--W",
        "4",
        "--threads",
        "2",
        "--cache-nodes",
        "100",
        "--json",
    ]);
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    for field in [
        "L",
        "W",
        "recall_at_k",
        "qps",
        "lat_mean_us",
        "lat_p50_us",
        "lat_p99_us",
        "mean_ios",
        "mean_hops",
        "rss_bytes",
    ] {
        assert!(rows[0].get(field).is_some(), "missing {field} in {}", rows[0]);
    }
    assert!(rows[1]["recall_at_k"].as_f64().unwrap() >= 0.9, "{}", rows[1]);
    assert!(rows[1]["mean_ios"].as_f64().unwrap() > 0.0);
    assert_eq!(rows[0]["cache_nodes"], 100);
}

#[test]
fn bad_input_gets_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // A truncated fbin: header says 100 x 8 but holds fewer bytes.
    let bad = dir.join("bad.fbin");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&100u32.to_le_bytes());
    bytes.extend_from_slice(&8u32.to_le_bytes());
    bytes.extend_from_slice(&[0u8; 64]);
    std::fs::write(&bad, &bytes).unwrap();
    let e = err(&["build", "--base", bad.to_str().unwrap(), "--index", &p(dir, "idx")]);
    assert!(e.contains("bad.fbin"), "{e}");
    // A NaN in the data names the row and column.
    let nan = dir.join("nan.fbin");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&3u32.to_le_bytes());
    bytes.extend_from_slice(&2u32.to_le_bytes());
    for x in [1.0f32, 2.0, 3.0, f32::NAN, 5.0, 6.0] {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&nan, &bytes).unwrap();
    let e = err(&["build", "--base", nan.to_str().unwrap(), "--index", &p(dir, "idx2")]);
    assert!(e.contains("nan.fbin") && e.contains('1'), "{e}");
    // An over-budget build is refused up front with the breakdown.
    let data = p(dir, "data");
    ok(&[
        "gen",
        "--out",
        &data,
        "--n",
        "2000",
        "--dim",
        "16",
        "--queries",
        "10",
        "--no-lid",
    ]);
    let e = err(&[
        "build",
        "--base",
        &p(dir, "data/base.fbin"),
        "--index",
        &p(dir, "idx3"),
        "--build-ram-gb",
        "0.0001",
    ]);
    assert!(e.contains("--build-ram-gb") && e.contains("merged graph"), "{e}");
    assert!(!dir.join("idx3/manifest.json").exists());
    // Queries of the wrong dimension.
    ok(&[
        "build",
        "--base",
        &p(dir, "data/base.fbin"),
        "--index",
        &p(dir, "idx4"),
        "--R",
        "16",
        "--L",
        "32",
        "--pq-bytes",
        "4",
    ]);
    let e = err(&["search", "--index", &p(dir, "idx4"), "--queries", nan.to_str().unwrap()]);
    assert!(e.contains("dimension"), "{e}");
    // A missing index directory.
    let e = err(&["verify", "--index", &p(dir, "nope")]);
    assert!(e.contains("manifest.json"), "{e}");
}

#[test]
fn plan_answers_from_the_measured_costs_and_says_what_it_cannot() {
    let plan = |extra: &[&str]| -> (String, serde_json::Value) {
        let mut a = vec!["plan", "--dim", "96", "--recall", "0.9", "--json"];
        a.extend(extra);
        let out = ok(&a);
        let v = serde_json::from_str(&out).unwrap();
        (out, v)
    };
    let (out, v) = plan(&["--vectors", "10000000", "--cache-share", "0"]);
    let f = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {out}"));
    // RAM is the format's arithmetic: PQ codes and ids are n × bytes.
    assert_eq!(f("ram_pq_bytes"), 1e7 * f("pq_bytes"));
    assert_eq!(f("ram_ids_bytes"), 8e7);
    assert!(
        f("ios_per_query") > 1.0 && f("qps_node") > 0.0 && f("p99_ms") >= f("p50_ms"),
        "{out}"
    );
    assert!(f("extrapolation") > 1.0, "10M is past every measured size: {out}");
    // With no share asked, the cache takes what the RAM leaves: 10M × 96
    // fits 24 GiB whole, and then nothing is read.
    let (whole, w) = plan(&["--vectors", "10000000", "--ram-gb", "24"]);
    assert_eq!(w["cache_share"].as_f64(), Some(1.0), "{whole}");
    assert_eq!(w["ios_per_query"].as_f64(), Some(0.0), "{whole}");
    assert!(w["p50_ms"].as_f64().unwrap() < f("p50_ms"), "{whole}");
    // A bigger index needs more reads per query at the same recall.
    let (big, b) = plan(&["--vectors", "1000000000", "--cache-share", "0"]);
    let (small, s) = plan(&["--vectors", "1000000", "--cache-share", "0"]);
    assert!(
        b["ios_per_query"].as_f64() > s["ios_per_query"].as_f64(),
        "{big}\n{small}"
    );
    // The text form names its model and its extrapolation.
    let text = ok(&["plan", "--vectors", "1000000000", "--dim", "96", "--recall", "0.9"]);
    assert!(
        text.contains("model: family") && text.contains("extrapolated"),
        "{text}"
    );
    for (args, want) in [
        (vec!["--recall", "1.5"], "--recall"),
        (vec!["--recall", "0.9", "--family", "nope"], "no family \"nope\""),
        (vec!["--recall", "0.99999"], "beyond every measured run"),
        (vec!["--recall", "0.9", "--cache-share", "2"], "--cache-share"),
    ] {
        let mut a = vec!["plan", "--vectors", "1000000", "--dim", "96"];
        a.extend(args);
        let e = err(&a);
        assert!(e.contains(want), "{a:?}: {e}");
    }
    let costs = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(costs.path(), "{\"family\": 3}\n").unwrap();
    let e = err(&[
        "plan",
        "--vectors",
        "1000000",
        "--dim",
        "96",
        "--recall",
        "0.9",
        "--costs",
        costs.path().to_str().unwrap(),
    ]);
    assert!(e.contains("costs line 1"), "{e}");
}

#[test]
fn collections_create_refuses_an_unknown_residency() {
    let e = err(&["collections", "create", "x", "--dim", "8", "--residency", "tape"]);
    assert!(e.contains("residency") && e.contains("ram"), "{e}");
}
