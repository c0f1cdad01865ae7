//! End-to-end: the public API's bearer tokens and TLS, against the real
//! quarryd binary. No token → UNAUTHENTICATED; a read token on a write →
//! PERMISSION_DENIED; health and /metrics stay open; a client that does
//! not trust the server's CA, or that the server does not trust, is
//! refused in the handshake; an open non-loopback listener and a bad
//! token file stop quarryd at start.

mod common;

use common::*;
use quarry_proto::v1 as pb;
use quarry_proto::v1::collections_client::CollectionsClient;
use quarry_proto::v1::query_client::QueryClient;
use quarry_proto::v1::write_client::WriteClient;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

const READ: &str = "read-token-for-tests-0001";
const ADMIN: &str = "admin-token-for-tests-0001";

fn with<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

fn create_req(name: &str) -> pb::CreateCollectionRequest {
    pb::CreateCollectionRequest {
        name: name.into(),
        dim: DIM as u32,
        metric: pb::Metric::L2 as i32,
        ..Default::default()
    }
}

fn upsert_req(name: &str, id: u64) -> pb::UpsertRequest {
    pb::UpsertRequest {
        collection: name.into(),
        points: vec![pb::Point {
            id,
            vector: vec![id as f32; DIM],
            payload: Vec::new(),
        }],
    }
}

fn search_req(name: &str) -> pb::SearchRequest {
    pb::SearchRequest {
        collection: name.into(),
        vector: vec![1.0; DIM],
        params: Some(pb::SearchParams { k: 1, l: 0, w: 0 }),
        with_payload: false,
    }
}

async fn health(ch: Channel) -> Result<i32, tonic::Status> {
    tonic_health::pb::health_client::HealthClient::new(ch)
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .map(|r| r.into_inner().status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_need_a_token_writes_need_admin_and_health_and_metrics_stay_open() {
    let tmp = tempfile::tempdir().unwrap();
    let tokens = tmp.path().join("api.tokens");
    std::fs::write(&tokens, format!("# test tokens\nread {READ}\nadmin {ADMIN}\n")).unwrap();
    let server = Server::start(
        &tmp.path().join("data"),
        &[],
        &format!("api_token_file = \"{}\"\n", tokens.display()),
    );
    let ch = server.channel().await;
    let mut cols = CollectionsClient::new(ch.clone());
    let mut write = WriteClient::new(ch.clone());
    let mut query = QueryClient::new(ch.clone());

    // No token, a token that is not the server's, a token without
    // "Bearer ": UNAUTHENTICATED, and the message says what to send.
    let (code, msg) = code_of(cols.list_collections(with(pb::ListCollectionsRequest {}, None)).await);
    assert_eq!(code, Code::Unauthenticated, "{msg}");
    assert!(msg.contains("authorization: Bearer"), "{msg}");
    let (code, msg) = code_of(
        query
            .search(with(search_req("c"), Some("not-a-token-of-this-server")))
            .await,
    );
    assert_eq!(code, Code::Unauthenticated, "{msg}");
    assert!(!msg.contains("not-a-token"), "a refused token is never echoed: {msg}");
    let mut raw = tonic::Request::new(pb::ListCollectionsRequest {});
    raw.metadata_mut().insert("authorization", READ.parse().unwrap());
    assert_eq!(code_of(cols.list_collections(raw).await).0, Code::Unauthenticated);

    // A read token: writes and collection changes are PERMISSION_DENIED
    // and change nothing.
    let (code, msg) = code_of(cols.create_collection(with(create_req("c"), Some(READ))).await);
    assert_eq!(code, Code::PermissionDenied, "{msg}");
    assert!(msg.contains("CreateCollection") && msg.contains("admin"), "{msg}");
    let listed = cols
        .list_collections(with(pb::ListCollectionsRequest {}, Some(READ)))
        .await
        .unwrap()
        .into_inner();
    assert!(listed.collections.is_empty());

    // The admin token does everything; then the read token searches,
    // gets and describes, but cannot upsert, delete or drop.
    cols.create_collection(with(create_req("c"), Some(ADMIN)))
        .await
        .unwrap();
    write.upsert(with(upsert_req("c", 1), Some(ADMIN))).await.unwrap();
    let hits = query
        .search(with(search_req("c"), Some(READ)))
        .await
        .unwrap()
        .into_inner()
        .neighbors;
    assert_eq!(hits.iter().map(|n| n.id).collect::<Vec<_>>(), vec![1]);
    cols.describe_collection(with(pb::DescribeCollectionRequest { name: "c".into() }, Some(READ)))
        .await
        .unwrap();
    for (what, r) in [
        (
            "upsert",
            write.upsert(with(upsert_req("c", 2), Some(READ))).await.map(|_| ()),
        ),
        (
            "delete",
            write
                .delete(with(
                    pb::DeleteRequest {
                        collection: "c".into(),
                        ids: vec![1],
                    },
                    Some(READ),
                ))
                .await
                .map(|_| ()),
        ),
        (
            "drop",
            cols.drop_collection(with(pb::DropCollectionRequest { name: "c".into() }, Some(READ)))
                .await
                .map(|_| ()),
        ),
    ] {
        assert_eq!(code_of(r).0, Code::PermissionDenied, "{what}");
    }
    let got = query
        .get(with(
            pb::GetRequest {
                collection: "c".into(),
                ids: vec![1, 2],
            },
            Some(READ),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.missing_ids, vec![2], "the refused upsert wrote nothing");
    assert_eq!(got.records.len(), 1, "the refused delete deleted nothing");

    // Health answers without a token; /metrics is open and counts.
    assert_eq!(health(ch.clone()).await.unwrap(), 1);
    let m = scrape(&server);
    assert!(m.starts_with("HTTP/1.") && m.contains("quarry_build_info"), "{m}");
}

#[test]
fn an_open_public_listener_and_a_bad_token_file_stop_quarryd_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |config: &str| {
        let cfg = tmp.path().join("q.toml");
        std::fs::write(&cfg, format!("metrics_listen = \"127.0.0.1:0\"\n{config}")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_quarryd"))
            .arg("--config")
            .arg(&cfg)
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{config}: quarryd must refuse to start");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let e = run("listen = \"0.0.0.0:0\"\n");
    assert!(
        e.contains("no api_token_file is set") && e.contains("allow_unauthenticated"),
        "{e}"
    );
    let tokens = tmp.path().join("t");
    std::fs::write(&tokens, format!("read {READ}\nwrite {ADMIN}\n")).unwrap();
    let e = run(&format!(
        "listen = \"127.0.0.1:0\"\napi_token_file = \"{}\"\n",
        tokens.display()
    ));
    assert!(
        e.contains("api_token_file") && e.contains("line 2") && !e.contains(ADMIN),
        "{e}"
    );
    let e = run("listen = \"127.0.0.1:0\"\ntls_cert = \"/nonexistent/server.crt\"\ntls_key = \"/nonexistent/k\"\n");
    assert!(e.contains("tls_cert /nonexistent/server.crt"), "{e}");
}

/// `ops/pair-certs.sh DIR NAME=SAN...`: a CA and certificates signed by it.
fn certs(dir: &Path, names: &[&str]) {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/pair-certs.sh"))
        .arg(dir)
        .args(names)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn pem(p: PathBuf) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

/// Connect over TLS trusting `ca`, presenting `identity` when given, and
/// list collections: Ok, or the whole error chain as text.
async fn list_over_tls(addr: &str, ca: &Path, identity: Option<(&Path, &Path)>) -> Result<(), String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem(ca.into())))
        .domain_name("quarry.test");
    if let Some((c, k)) = identity {
        tls = tls.identity(Identity::from_pem(pem(c.into()), pem(k.into())));
    }
    let chain = |e: &dyn std::error::Error| quarry_proto::tls::error_chain(e);
    let ch = Endpoint::from_shared(addr.to_string())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| chain(&e))?;
    CollectionsClient::new(ch)
        .list_collections(pb::ListCollectionsRequest {})
        .await
        .map(|_| ())
        .map_err(|s| format!("{:?}: {}: {}", s.code(), s.message(), chain(&s)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates_refuses_a_wrong_ca_either_way() {
    let tmp = tempfile::tempdir().unwrap();
    let (good, rogue) = (tmp.path().join("tls"), tmp.path().join("rogue"));
    certs(&good, &["server=DNS:quarry.test,IP:127.0.0.1", "client=DNS:client"]);
    certs(&rogue, &["server=DNS:quarry.test,IP:127.0.0.1", "client=DNS:client"]);
    let g = |n: &str| good.join(n);
    let r = |n: &str| rogue.join(n);
    let server = Server::start(
        &tmp.path().join("data"),
        &[],
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_ca = \"{}\"\ntls_require_client_cert = true\n",
            g("server.crt").display(),
            g("server.key").display(),
            g("ca.crt").display()
        ),
    );
    let https = server.addr.replace("http://", "https://");
    let client = Some((g("client.crt"), g("client.key")));
    let client = client.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));

    // The right CA both ways: served.
    list_over_tls(&https, &g("ca.crt"), client).await.unwrap();

    // The client does not trust the server's CA: the handshake fails on
    // the client's side.
    let e = list_over_tls(&https, &r("ca.crt"), client).await.unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    eprintln!("wrong CA on the client: {e}");

    // The server does not trust the client's certificate, or gets none.
    let rogue_client = Some((r("client.crt"), r("client.key")));
    let rogue_client = rogue_client.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
    let e = list_over_tls(&https, &g("ca.crt"), rogue_client).await.unwrap_err();
    eprintln!("client certificate from another CA: {e}");
    let e2 = list_over_tls(&https, &g("ca.crt"), None).await.unwrap_err();
    eprintln!("no client certificate: {e2}");

    // Plain HTTP/2 to the TLS listener gets nothing.
    let plain = Endpoint::from_shared(server.addr.clone())
        .unwrap()
        .connect_timeout(Duration::from_secs(5));
    let plain = match plain.connect().await {
        Ok(ch) => CollectionsClient::new(ch)
            .list_collections(pb::ListCollectionsRequest {})
            .await
            .map(|_| ())
            .map_err(|s| s.code()),
        Err(_) => Err(Code::Unavailable),
    };
    assert!(plain.is_err(), "plain HTTP/2 must not be served on the TLS port");

    // The metrics endpoint is plain HTTP and keeps working.
    assert!(scrape(&server).contains("quarry_build_info"));
    // The refusals were the handshake's: quarryd still serves.
    list_over_tls(&https, &g("ca.crt"), client).await.unwrap();
}
