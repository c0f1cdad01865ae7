//! What a search answers besides ids: payloads on request, and a score
//! whose order is the distance's under every metric.

mod common;

use common::*;
use quarry_proto::v1 as pb;
use quarry_proto::v1::collections_client::CollectionsClient;
use quarry_proto::v1::query_client::QueryClient;
use quarry_proto::v1::write_client::WriteClient;

fn vector(id: u64) -> Vec<f32> {
    (0..8)
        .map(|i| ((id * 7 + i * 3) % 11) as f32 - 5.0 + 0.01 * id as f32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_on_request_and_a_score_in_the_order_of_the_distance() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[], "max_message_bytes = 65536\n");
    let ch = server.channel().await;
    for (name, metric) in [
        ("l2", pb::Metric::L2),
        ("ip", pb::Metric::Ip),
        ("cos", pb::Metric::Cosine),
    ] {
        CollectionsClient::new(ch.clone())
            .create_collection(pb::CreateCollectionRequest {
                name: name.into(),
                dim: 8,
                metric: metric as i32,
                ..Default::default()
            })
            .await
            .unwrap();
        let points = (0..200u64)
            .map(|id| pb::Point {
                id,
                vector: vector(id),
                payload: format!("doc-{id}").into_bytes(),
            })
            .collect();
        WriteClient::new(ch.clone())
            .upsert(pb::UpsertRequest {
                collection: name.into(),
                points,
            })
            .await
            .unwrap();
        let mut q = QueryClient::new(ch.clone());
        let ask = |with_payload| pb::SearchRequest {
            collection: name.into(),
            vector: vector(42),
            params: Some(pb::SearchParams { k: 10, l: 64, w: 4 }),
            with_payload,
        };
        let r = q.search(ask(true)).await.unwrap().into_inner();
        assert_eq!(r.neighbors.len(), 10, "{name}");
        for n in &r.neighbors {
            assert_eq!(n.payload, format!("doc-{}", n.id).into_bytes(), "{name}");
            let want = match metric {
                pb::Metric::Cosine => 1.0 - n.distance,
                _ => -n.distance,
            };
            assert_eq!(n.score, want, "{name}");
        }
        assert!(r
            .neighbors
            .windows(2)
            .all(|w| w[0].distance <= w[1].distance && w[0].score >= w[1].score));
        if metric == pb::Metric::Cosine {
            // The query is a stored vector: similarity 1 with itself.
            assert_eq!(r.neighbors[0].id, 42);
            assert!((r.neighbors[0].score - 1.0).abs() < 1e-4, "{:?}", r.neighbors[0]);
        }
        // Without the flag, the same neighbours and no payloads.
        let plain = q.search(ask(false)).await.unwrap().into_inner();
        assert_eq!(
            plain.neighbors.iter().map(|n| n.id).collect::<Vec<_>>(),
            r.neighbors.iter().map(|n| n.id).collect::<Vec<_>>()
        );
        assert!(plain.neighbors.iter().all(|n| n.payload.is_empty()));
        // A batch too.
        let b = q
            .search_batch(pb::SearchBatchRequest {
                collection: name.into(),
                vectors: [vector(1), vector(2)].concat(),
                params: None,
                with_payload: true,
            })
            .await
            .unwrap()
            .into_inner();
        for res in &b.results {
            assert!(res
                .neighbors
                .iter()
                .all(|n| n.payload == format!("doc-{}", n.id).into_bytes()));
        }
    }
    // Describe counts every byte the collections hold on disk (their WAL,
    // with no segment yet), as du would.
    for name in ["l2", "ip", "cos"] {
        let on_disk = dir_bytes(&tmp.path().join("data").join("collections").join(name).join("live"));
        let d = describe(ch.clone(), name).await;
        assert!(
            on_disk > 0 && d.disk_bytes == on_disk,
            "{name}: describe {} vs {on_disk}",
            d.disk_bytes
        );
    }
    // What /metrics says of it all.
    let (c, _) = code_of(
        QueryClient::new(ch.clone())
            .search(pb::SearchRequest {
                collection: "l2".into(),
                vector: vec![0.5; 20_000],
                params: None,
                with_payload: false,
            })
            .await,
    );
    assert_eq!(c, tonic::Code::ResourceExhausted);
    let m = scrape(&server);
    let value = |series: &str| -> f64 {
        m.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {series} in\n{m}"))
            .parse()
            .unwrap()
    };
    for name in ["l2", "ip", "cos"] {
        let c = format!("{{collection=\"{name}\"}}");
        // One search with payloads, one without, a batch of two.
        assert_eq!(value(&format!("quarry_collection_queries_total{c}")), 4.0, "{name}");
        assert_eq!(
            value(&format!("quarry_collection_query_latency_microseconds_count{c}")),
            4.0
        );
        assert_eq!(value(&format!("quarry_collection_writes_total{c}")), 200.0);
        assert_eq!(value(&format!("quarry_collection_fresh_vectors{c}")), 200.0);
        assert_eq!(value(&format!("quarry_collection_segments{c}")), 0.0);
        let last = value(&format!("quarry_collection_last_lsn{c}"));
        assert!(last >= 1.0 && value(&format!("quarry_collection_durable_lsn{c}")) == last);
    }
    assert_eq!(value("quarry_refused_messages_total{reason=\"oversized\"}"), 1.0);
    assert_eq!(value("quarry_operations{state=\"running\"}"), 0.0);
    // Every series the Grafana dashboard plots is one quarryd exports
    // (the replication ones need a pair).
    let dash = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../ops/grafana-quarry.json")).unwrap();
    let names: std::collections::BTreeSet<&str> = dash
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("quarry_") && !w.starts_with("quarry_replication_"))
        .collect();
    assert!(names.len() > 15, "{names:?}");
    for n in names {
        assert!(
            m.contains(&format!("# TYPE {n} ")) || m.contains(&format!("\n{n}")),
            "the dashboard plots {n}, which /metrics lacks"
        );
    }
    let info = m
        .lines()
        .find(|l| l.starts_with("quarry_build_info{"))
        .expect("build info");
    assert!(
        info.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))) && info.ends_with(" 1"),
        "{info}"
    );
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            }
        })
        .sum()
}

/// A batch larger than every shard queue together (max_batch against
/// shards x queue_depth) is answered whole on an idle server, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_the_shard_queues_is_answered_whole() {
    let tmp = tempfile::tempdir().unwrap();
    // 2 shards x 4 queued: 8 places for a batch of 100.
    let server = Server::start(&tmp.path().join("data"), &[], "queue_depth = 4\nmax_batch = 100\n");
    let ch = server.channel().await;
    CollectionsClient::new(ch.clone())
        .create_collection(pb::CreateCollectionRequest {
            name: "b".into(),
            dim: 8,
            metric: pb::Metric::L2 as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    let points = (0..100u64)
        .map(|id| pb::Point {
            id,
            vector: vector(id),
            payload: Vec::new(),
        })
        .collect();
    WriteClient::new(ch.clone())
        .upsert(pb::UpsertRequest {
            collection: "b".into(),
            points,
        })
        .await
        .unwrap();
    let r = QueryClient::new(ch)
        .search_batch(pb::SearchBatchRequest {
            collection: "b".into(),
            vectors: (0..100u64).flat_map(vector).collect(),
            params: Some(pb::SearchParams { k: 1, l: 20, w: 0 }),
            with_payload: false,
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<u64> = r.results.iter().map(|x| x.neighbors[0].id).collect();
    assert_eq!(ids, (0..100).collect::<Vec<_>>());
}
