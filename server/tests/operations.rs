//! Builds as operations over gRPC: CancelOperation, a drop that cancels
//! the running build, what either leaves on disk, and the refusals.

mod common;

use common::*;
use quarry_proto::v1 as pb;
use quarry_proto::v1::collections_client::CollectionsClient;
use std::path::Path;
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::Code;

/// Poll operation `id` until it is no longer running.
async fn settle(c: &mut CollectionsClient<Channel>, id: &str) -> pb::Operation {
    let t = Instant::now();
    loop {
        let o = c
            .get_operation(pb::GetOperationRequest { id: id.into() })
            .await
            .unwrap()
            .into_inner();
        if o.state != pb::OperationState::Running as i32 {
            return o;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "{id} still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every path under `dir` whose name marks unfinished work.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") || name == ".partition" {
            out.push(e.path().display().to_string());
        }
        if e.path().is_dir() {
            out.extend(leftovers(&e.path()));
        }
    }
    out
}

async fn start_build(c: &mut CollectionsClient<Channel>, name: &str, source: &Path) -> String {
    c.build_index(pb::BuildIndexRequest {
        collection: name.into(),
        source_path: source.display().to_string(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_build_leaves_nothing_and_a_drop_cancels_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (source, queries, truth) = dataset(tmp.path(), 30_000);
    let data = tmp.path().join("data");
    let server = Server::start(&data, &[], "");
    let ch = server.channel().await;
    let mut c = CollectionsClient::new(ch.clone());
    create(ch.clone(), "docs", false).await;

    // Cancelled as soon as it starts: CANCELLED, nothing on disk, nothing
    // in the collection.
    let id = start_build(&mut c, "docs", &source).await;
    let o = c
        .cancel_operation(pb::CancelOperationRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(o.id, id);
    let o = settle(&mut c, &id).await;
    assert_eq!(o.state, pb::OperationState::Cancelled as i32, "{o:?}");
    assert!(o.error.contains("cancelled"), "{o:?}");
    assert_eq!(leftovers(&data), Vec::<String>::new());
    assert_eq!(describe(ch.clone(), "docs").await.vector_count, 0);
    // An ended operation cannot be cancelled; an unknown one is not found.
    let (code, msg) = code_of(c.cancel_operation(pb::CancelOperationRequest { id: id.clone() }).await);
    assert_eq!(code, Code::FailedPrecondition, "{msg}");
    assert!(msg.contains("already ended (cancelled)"), "{msg}");
    let (code, _) = code_of(
        c.cancel_operation(pb::CancelOperationRequest {
            id: "build-docs-999".into(),
        })
        .await,
    );
    assert_eq!(code, Code::NotFound);

    // The collection builds afterwards and answers.
    build_and_wait(ch.clone(), "docs", &source, 0).await;
    let got = search_all(ch.clone(), "docs", &queries).await;
    assert!(recall(&got, &truth) >= 0.9);

    // Dropping a collection while it builds cancels the build first.
    create(ch.clone(), "img", false).await;
    let id = start_build(&mut c, "img", &source).await;
    c.drop_collection(pb::DropCollectionRequest { name: "img".into() })
        .await
        .unwrap();
    let o = settle(&mut c, &id).await;
    assert_eq!(o.state, pb::OperationState::Cancelled as i32, "{o:?}");
    let (code, _) = code_of(
        c.describe_collection(pb::DescribeCollectionRequest { name: "img".into() })
            .await,
    );
    assert_eq!(code, Code::NotFound);
    assert!(!data.join("collections").join("img").exists());
    assert_eq!(leftovers(&data), Vec::<String>::new());
    // The other collection is untouched.
    assert_eq!(search_all(ch, "docs", &queries).await, got);
}
