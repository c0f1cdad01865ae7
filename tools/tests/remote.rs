//! `quarryctl` against a real `quarryd` (the workspace's own binary,
//! built beside quarryctl by `cargo test --workspace`): the forms of
//! `--server` and `QUARRY_SERVER`, and snapshots created, verified and
//! restored online and offline.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

struct Quarryd {
    child: Child,
    /// host:port of its gRPC listener.
    addr: String,
    sock: PathBuf,
}

impl Quarryd {
    fn start(dir: &Path) -> Quarryd {
        Quarryd::start_with(dir, "")
    }

    /// With extra configuration lines.
    fn start_with(dir: &Path, extra: &str) -> Quarryd {
        let bin = Path::new(env!("CARGO_BIN_EXE_quarryctl")).with_file_name("quarryd");
        assert!(
            bin.exists(),
            "{} is missing: these tests run under `cargo test --workspace`, which builds it",
            bin.display()
        );
        let sock = dir.join("grpc.sock");
        let cfg = dir.join("quarryd.toml");
        std::fs::write(
            &cfg,
            format!(
                "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\nlisten_unix = {:?}\nshards = 1\n{extra}",
                sock.display().to_string()
            ),
        )
        .unwrap();
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(&cfg)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .env("NO_COLOR", "1")
            .env_remove("NOTIFY_SOCKET")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find("grpc=") {
                    let _ = tx.send(line[i + 5..].split_whitespace().next().unwrap().to_string());
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).expect("quarryd is listening");
        Quarryd { child, addr, sock }
    }
}

impl Drop for Quarryd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn quarryctl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_quarryctl"));
    c.args(args);
    for k in [
        "QUARRY_SERVER",
        "QUARRY_TOKEN",
        "QUARRY_API_TOKEN_FILE",
        "QUARRY_CA",
        "QUARRY_CLIENT_CERT",
        "QUARRY_CLIENT_KEY",
    ] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// quarryctl `args` against the server at `addr`.
fn call_on(addr: &str, args: &[&str]) -> Output {
    let all: Vec<&str> = args.iter().copied().chain(["--server", addr]).collect();
    quarryctl(&all, &[])
}

/// The stdout of a `call_on` that must succeed.
fn run_on(addr: &str, args: &[&str]) -> String {
    let o = call_on(addr, args);
    assert!(o.status.success(), "{args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `quarryctl gen` of `n` × `dim` into `out`, 10 queries.
fn gen(out: &Path, n: usize, dim: usize) {
    let (n, dim) = (n.to_string(), dim.to_string());
    let o = quarryctl(
        &[
            "gen",
            "--out",
            out.to_str().unwrap(),
            "--n",
            &n,
            "--dim",
            &dim,
            "--queries",
            "10",
            "--no-lid",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_server_is_found_by_host_port_uri_unix_socket_or_environment() {
    let dir = tempfile::tempdir().unwrap();
    let q = Quarryd::start(dir.path());
    let uri = format!("http://{}", q.addr);
    let unix = format!("unix:{}", q.sock.display());
    // An empty server says so.
    let o = quarryctl(&["collections", "list", "--server", &q.addr], &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "no collections");
    let o = quarryctl(&["collections", "create", "a", "--dim", "8", "--server", &unix], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = quarryctl(
        &["collections", "create", "b", "--dim", "8"],
        &[("QUARRY_SERVER", &uri)],
    );
    assert!(o.status.success(), "{}", text(&o));
    for env in [&q.addr, &uri, &unix] {
        let o = quarryctl(&["collections", "list", "--json"], &[("QUARRY_SERVER", env)]);
        assert!(o.status.success(), "{env}: {}", text(&o));
        let names: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["name"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(names, ["a", "b"], "{env}");
    }
    // The connection flags may also come before the command.
    let o = quarryctl(&["--server", &q.addr, "--json", "collections", "list"], &[]);
    assert!(o.status.success() && text(&o).contains("\"name\""), "{}", text(&o));
    // --server wins over the environment.
    let o = quarryctl(
        &["collections", "list", "--server", &q.addr],
        &[("QUARRY_SERVER", "unix:/nonexistent")],
    );
    assert!(o.status.success(), "{}", text(&o));
    // What cannot work is named.
    for (server, says) in [
        (
            "unix:/nonexistent/q.sock",
            "cannot connect to quarryd at unix socket /nonexistent/q.sock",
        ),
        ("ftp://h:1", "\"ftp\" is not served"),
        ("127.0.0.1", "expected host:port"),
    ] {
        let o = quarryctl(&["collections", "list", "--server", server], &[]);
        assert!(!o.status.success() && text(&o).contains(says), "{server}: {}", text(&o));
    }
}

#[test]
fn a_build_is_followed_cancelled_and_reported_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let q = Quarryd::start(dir.path());
    let run = |args: &[&str]| run_on(&q.addr, args);
    let data = dir.path().join("set");
    gen(&data, 30_000, 32);
    let base = data.join("base.fbin");
    run(&["collections", "create", "docs", "--dim", "32"]);
    let started = run(&[
        "collections",
        "build",
        "docs",
        "--source",
        base.to_str().unwrap(),
        "--no-wait",
        "--json",
    ]);
    let id = serde_json::from_str::<serde_json::Value>(started.trim()).unwrap()["operation_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Cancel waits for the build to stop and says how it ended.
    let out = run(&["collections", "cancel", &id, "--json"]);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (v["operation_id"].as_str(), v["state"].as_str()),
        (Some(id.as_str()), Some("cancelled")),
        "{out}"
    );
    // `operation` reports it later too, as a table line by default.
    let line = run(&["collections", "operation", &id]);
    assert!(line.starts_with(&id) && line.contains("cancelled"), "{line}");
    // A second cancel is refused with the reason.
    let o = call_on(&q.addr, &["collections", "cancel", &id]);
    assert!(
        !o.status.success() && text(&o).contains("already ended (cancelled)"),
        "{}",
        text(&o)
    );
    // And the collection builds afterwards.
    let done = run(&["collections", "build", "docs", "--source", base.to_str().unwrap()]);
    assert!(
        done.starts_with("build-docs-") && done.contains(" done ") && done.contains("30000 vectors"),
        "{done}"
    );
}

#[test]
fn points_health_and_describe_answer_as_tables_or_json() {
    let dir = tempfile::tempdir().unwrap();
    let q = Quarryd::start(dir.path());
    let call = |args: &[&str]| call_on(&q.addr, args);
    let run = |args: &[&str]| run_on(&q.addr, args);
    let data = dir.path().join("set");
    gen(&data, 300, 8);
    assert_eq!(run(&["health"]).trim(), "quarryd: SERVING");
    let h: serde_json::Value = serde_json::from_str(run(&["health", "--json"]).trim()).unwrap();
    assert_eq!(h["status"], "SERVING");
    let o = call(&["health", "--service", "no.such.Service"]);
    assert!(!o.status.success() && text(&o).contains("NotFound"), "{}", text(&o));
    // Every index parameter the API has.
    run(&[
        "collections",
        "create",
        "p",
        "--dim",
        "8",
        "--r",
        "16",
        "--l",
        "40",
        "--alpha",
        "1.3",
        "--nav-sample",
        "50",
        "--pq-bytes",
        "4",
    ]);
    let d: serde_json::Value = serde_json::from_str(run(&["collections", "describe", "p", "--json"]).trim()).unwrap();
    assert_eq!(
        (d["R"].as_u64(), d["L"].as_u64(), d["pq_bytes"].as_u64()),
        (Some(16), Some(40), Some(4))
    );
    assert!((d["alpha"].as_f64().unwrap() - 1.3).abs() < 1e-6, "{d}");
    let table = run(&["collections", "describe", "p"]);
    assert!(
        table.lines().any(|l| l.starts_with("alpha ") && l.contains("1.3")),
        "{table}"
    );
    let o = call(&["collections", "create", "bad", "--dim", "8", "--alpha", "3"]);
    assert!(!o.status.success() && text(&o).contains("alpha"), "{}", text(&o));
    // Upsert, get (found and missing), delete.
    let up = run(&[
        "collections",
        "upsert",
        "p",
        "--source",
        data.join("base.fbin").to_str().unwrap(),
    ]);
    assert!(up.starts_with("p: 300 vectors upserted"), "{up}");
    let got = run(&["collections", "get", "p", "--ids", "1,2,999"]);
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), 3, "{got}");
    assert!(
        lines[0].starts_with("1 ") && lines[1].starts_with("2 ") && lines[0].contains("8-d"),
        "{got}"
    );
    assert_eq!(lines[2], "missing: 999");
    let js: Vec<serde_json::Value> = run(&["collections", "get", "p", "--ids", "2,999", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(js[0]["vector"].as_array().unwrap().len(), 8);
    assert_eq!(js[1]["missing_ids"], serde_json::json!([999]));
    assert!(run(&["collections", "delete", "p", "--ids", "1"]).starts_with("p: 1 deleted"));
    assert_eq!(run(&["collections", "get", "p", "--ids", "1"]).trim(), "missing: 1");
    // A search prints its summary line.
    let s = run(&[
        "collections",
        "search",
        "p",
        "--queries",
        data.join("queries.fbin").to_str().unwrap(),
    ]);
    assert!(s.starts_with("p: 10 queries, k 10") && s.contains("reads/query"), "{s}");
}

#[test]
fn tokens_and_tls_through_quarryctl_with_each_refusal_said() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/pair-certs.sh"))
        .arg(&tls)
        .arg("server=DNS:quarry.test,IP:127.0.0.1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let (read, admin) = ("read-0123456789abcdef", "admin-0123456789abcdef");
    let tokens = dir.path().join("api.tokens");
    std::fs::write(&tokens, format!("read {read}\nadmin {admin}\n")).unwrap();
    let admin_file = dir.path().join("admin.token");
    std::fs::write(&admin_file, format!("{admin}\n")).unwrap();
    let f = |n: &str| tls.join(n).display().to_string();
    let q = Quarryd::start_with(
        dir.path(),
        &format!(
            "api_token_file = {:?}\ntls_cert = {:?}\ntls_key = {:?}\n",
            tokens.display().to_string(),
            f("server.crt"),
            f("server.key")
        ),
    );
    let https = format!("https://{}", q.addr);
    let ca = f("ca.crt");
    // Each call and what it printed, for the transcript.
    let call = |args: &[&str], env: &[(&str, &str)]| {
        let o = quarryctl(args, env);
        eprintln!(
            "$ {} quarryctl {}\n{}",
            env.iter().map(|(k, _)| format!("{k}=…")).collect::<Vec<_>>().join(" "),
            args.join(" "),
            text(&o)
        );
        o
    };
    let refused = |o: &Output, says: &str| {
        assert!(
            !o.status.success() && text(o).contains(says),
            "expected {says:?}: {}",
            text(o)
        );
    };

    // https:// without the CA, and plain HTTP to the TLS port.
    refused(&call(&["collections", "list", "--server", &https], &[]), "needs --ca");
    refused(
        &call(&["collections", "list", "--server", &q.addr, "--token", admin], &[]),
        "the connection failed",
    );
    // TLS, no token: UNAUTHENTICATED.
    refused(
        &call(&["collections", "list", "--server", &https, "--ca", &ca], &[]),
        "Unauthenticated",
    );
    // A read token lists, and is refused a create.
    let o = call(
        &["collections", "list", "--server", &https, "--ca", &ca],
        &[("QUARRY_TOKEN", read)],
    );
    assert!(
        o.status.success() && text(&o).contains("no collections"),
        "{}",
        text(&o)
    );
    let create = [
        "collections",
        "create",
        "c",
        "--dim",
        "8",
        "--server",
        &https,
        "--ca",
        &ca,
    ];
    refused(&call(&create, &[("QUARRY_TOKEN", read)]), "PermissionDenied");
    // The admin token from a file creates; the read token then describes.
    let admin_path = admin_file.display().to_string();
    let o = call(&[&create[..], &["--api-token-file", &admin_path]].concat(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = call(
        &["collections", "describe", "c", "--server", &https, "--ca", &ca],
        &[("QUARRY_TOKEN", read)],
    );
    assert!(o.status.success(), "{}", text(&o));
    // The Unix socket is plain but still asks for the token.
    let unix = format!("unix:{}", q.sock.display());
    refused(
        &call(&["collections", "list", "--server", &unix], &[]),
        "Unauthenticated",
    );
    let o = call(&["collections", "list", "--server", &unix], &[("QUARRY_TOKEN", read)]);
    assert!(o.status.success() && text(&o).contains('c'), "{}", text(&o));
    // Health needs no token.
    let o = call(&["health", "--server", &https, "--ca", &ca], &[]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn snapshots_are_created_verified_and_restored_online_and_offline() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = Quarryd::start(dir.path());
    let run = |q: &Quarryd, args: &[&str]| run_on(&q.addr, args);
    let data = dir.path().join("set");
    gen(&data, 300, 8);
    run(&q, &["collections", "create", "p", "--dim", "8"]);
    run(
        &q,
        &[
            "collections",
            "upsert",
            "p",
            "--source",
            data.join("base.fbin").to_str().unwrap(),
        ],
    );
    run(&q, &["collections", "delete", "p", "--ids", "7"]);
    let snap = dir.path().join("snap");
    let json = |out: String| -> serde_json::Value { serde_json::from_str(out.trim()).unwrap() };
    let i = json(run(
        &q,
        &["snapshot", "create", "p", "--out", snap.to_str().unwrap(), "--json"],
    ));
    assert_eq!(
        (i["collection"].as_str(), i["lsn"].as_u64()),
        (Some("p"), Some(301)),
        "{i}"
    );
    let table = run(&q, &["snapshot", "verify", snap.to_str().unwrap()]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("lsn ") && l.trim_end().ends_with(" 301")),
        "{table}"
    );
    let restore = ["snapshot", "restore", snap.to_str().unwrap(), "--collection"];
    let d = json(run(&q, &[&restore[..], &["online", "--json"]].concat()));
    assert_eq!(
        (d["name"].as_str(), d["vectors"].as_u64()),
        (Some("online"), Some(299)),
        "{d}"
    );
    // Offline: refused while quarryd holds the data directory.
    let data_dir = dir.path().join("data");
    let args = [&restore[..], &["offline", "--data-dir", data_dir.to_str().unwrap()]].concat();
    let o = quarryctl(&args, &[]);
    assert!(
        !o.status.success() && text(&o).contains("in use by another quarryd"),
        "{}",
        text(&o)
    );
    let _ = q.child.kill();
    let _ = q.child.wait();
    let o = quarryctl(&args, &[]);
    assert!(o.status.success(), "{}", text(&o));
    q = Quarryd::start(dir.path());
    let got = run(&q, &["collections", "get", "offline", "--ids", "6,7"]);
    assert!(got.starts_with("6 ") && got.contains("missing: 7"), "{got}");
    let o = call_on(
        &q.addr,
        &["snapshot", "verify", dir.path().join("nothing").to_str().unwrap()],
    );
    assert!(!o.status.success() && text(&o).contains("nothing"), "{}", text(&o));
}
