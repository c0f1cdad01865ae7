//! `quarryctl status` and `quarryctl collections …`: talk to a running
//! quarryd over gRPC.
//!
//! Owns: the command-line face of the Collections, Write and Admin
//! services.
//! Output is one JSON object per line with `--json`, else a short table.

use crate::remote_out::{
    collection_json, print_collection, print_describe, print_operation, print_records, print_search, print_upserted,
    print_write, Upserted,
};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use quarry_proto::v1 as pb;
use quarry_proto::v1::admin_client::AdminClient;
use quarry_proto::v1::collections_client::CollectionsClient;
use std::time::Duration;

/// Where the server is, and how to be let in.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// quarryd's gRPC address: host:port, http://host:port,
    /// https://host:port (with --ca) or unix:PATH.
    #[arg(long, env = "QUARRY_SERVER", default_value = "127.0.0.1:7700", global = true)]
    pub server: String,
    /// JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// A file whose first line is an API token of the server's
    /// api_token_file (or QUARRY_API_TOKEN_FILE).
    #[arg(long, env = "QUARRY_API_TOKEN_FILE", global = true, conflicts_with = "token")]
    pub api_token_file: Option<std::path::PathBuf>,
    /// The API token itself; prefer QUARRY_TOKEN or --api-token-file, which
    /// other users cannot read in the process list.
    #[arg(long, env = "QUARRY_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// With https://: the CA that signed quarryd's certificate (PEM; or
    /// QUARRY_CA).
    #[arg(long, env = "QUARRY_CA", global = true)]
    pub ca: Option<std::path::PathBuf>,
    /// With https://: a client certificate (PEM) for a server that asks
    /// for one (or QUARRY_CLIENT_CERT); with --client-key.
    #[arg(long, env = "QUARRY_CLIENT_CERT", global = true, requires = "client_key")]
    pub client_cert: Option<std::path::PathBuf>,
    /// Its private key (PEM; or QUARRY_CLIENT_KEY).
    #[arg(long, env = "QUARRY_CLIENT_KEY", global = true, requires = "client_cert")]
    pub client_key: Option<std::path::PathBuf>,
    /// The name quarryd's certificate must carry, when it is not the host
    /// in --server.
    #[arg(long, global = true)]
    pub server_name: Option<String>,
}

impl Conn {
    fn access(&self) -> Result<crate::server_addr::Access> {
        let token = match (&self.token, &self.api_token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(p)) => Some(crate::server_addr::read_token(p)?),
            (None, None) => None,
        };
        Ok(crate::server_addr::Access {
            ca: self.ca.clone(),
            identity: self.client_cert.clone().zip(self.client_key.clone()),
            server_name: self.server_name.clone(),
            token,
        })
    }
}

/// A channel that sends the bearer token with every request.
pub(crate) type Api = tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>;

/// Adds `authorization: Bearer <token>` when there is a token.
#[derive(Clone)]
pub(crate) struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// `quarryctl status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    conn: Conn,
    /// Also show the node's part in a pair: its replication_listen,
    /// host:port (or QUARRY_REPLICATION), with --token-file.
    #[arg(long, env = "QUARRY_REPLICATION")]
    replication: Option<String>,
    /// The pair's token file (or QUARRY_TOKEN_FILE).
    #[arg(long, env = "QUARRY_TOKEN_FILE")]
    token_file: Option<std::path::PathBuf>,
    #[command(flatten)]
    tls: crate::cmd_replication::ReplTls,
}

/// `quarryctl collections`.
#[derive(Args, Debug)]
pub struct CollectionsArgs {
    #[command(flatten)]
    conn: Conn,
    #[command(subcommand)]
    cmd: CollectionsCmd,
}

#[derive(Subcommand, Debug)]
enum CollectionsCmd {
    /// List every collection.
    List,
    /// One collection in full.
    Describe {
        /// Collection name.
        name: String,
    },
    /// Create an empty collection.
    Create {
        /// Collection name ([A-Za-z0-9_-], up to 64).
        name: String,
        /// Dimension.
        #[arg(long)]
        dim: u32,
        /// l2, ip or cosine.
        #[arg(long, default_value = "l2")]
        metric: String,
        /// Maximum degree R (0 = server default).
        #[arg(long = "R", visible_alias = "r", default_value_t = 0)]
        r: u32,
        /// Build L (0 = server default).
        #[arg(long = "L", visible_alias = "l", default_value_t = 0)]
        l: u32,
        /// PQ bytes per vector (0 = server default).
        #[arg(long, default_value_t = 0)]
        pq_bytes: u32,
        /// RobustPrune alpha, 1.0..=2.0 (0 = server default, 1.2).
        #[arg(long, default_value_t = 0.0)]
        alpha: f32,
        /// Learn an OPQ rotation before PQ (data of low intrinsic rank).
        #[arg(long)]
        opq: bool,
        /// Navigation tier sample size (0 = server default: 1 % of n, at
        /// most 100,000).
        #[arg(long, default_value_t = 0)]
        nav_sample: u32,
        /// Stored vector type: f32, f16 or i8 (default: the server's choice).
        #[arg(long)]
        disk_vector: Option<String>,
        /// Where the graph records live while it serves: disk (read per
        /// query) or ram (all of them in RAM, counted against the server's
        /// memory budget; searches read nothing). Fixed at create.
        #[arg(long, default_value = "disk", value_parser = ["disk", "ram"])]
        residency: String,
        /// Accepted for scripts written before every collection took
        /// writes; it changes nothing.
        #[arg(long, hide = true)]
        mutable: bool,
    },
    /// Upsert every vector of a file (read here, on the client) into a
    /// collection through one BulkUpsert stream; ids are
    /// --first-id + row. Prints vectors/s.
    Upsert {
        /// Collection name.
        name: String,
        /// Vector file (.fbin, .fvecs, .npy, ...).
        #[arg(long)]
        source: std::path::PathBuf,
        /// Id of the first row.
        #[arg(long, default_value_t = 0)]
        first_id: u64,
        /// Rows per stream message.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Only the first N rows.
        #[arg(long)]
        limit: Option<usize>,
        /// Send each --batch rows as its own unary Upsert, one at a time,
        /// instead of one BulkUpsert stream.
        #[arg(long)]
        unary: bool,
    },
    /// Merge a collection's fresh index and every disk segment
    /// into one segment (dropping deleted vectors), following progress.
    Compact {
        /// Collection name.
        name: String,
        /// Return at once instead of following the progress.
        #[arg(long)]
        no_wait: bool,
    },
    /// Bulk-load a file on the server into a collection at batch-build
    /// speed (a new disk segment; ids in the file replace earlier
    /// versions). The collection keeps serving and taking writes.
    Build {
        /// Collection name.
        name: String,
        /// Vector file path, as the server sees it.
        #[arg(long)]
        source: String,
        /// Id of the file's first row (ids are --first-id + row).
        #[arg(long, default_value_t = 0)]
        first_id: u64,
        /// A file of one little-endian u64 id per vector, as the server
        /// sees it (instead of --first-id).
        #[arg(long)]
        ids: Option<String>,
        /// Return at once instead of following the progress.
        #[arg(long)]
        no_wait: bool,
    },
    /// Search a collection with every query in a file; print recall
    /// (with --gt) and client-side latency.
    Search {
        /// Collection name.
        name: String,
        /// Query vectors (.fbin etc.), read here on the client.
        #[arg(long)]
        queries: std::path::PathBuf,
        /// Ground truth (.ibin) for recall.
        #[arg(long)]
        gt: Option<std::path::PathBuf>,
        /// Neighbours.
        #[arg(long, default_value_t = 10)]
        k: u32,
        /// Search list size (0 = server default).
        #[arg(long = "L", visible_alias = "l", default_value_t = 0)]
        l: u32,
        /// Beam width (0 = server default).
        #[arg(long = "W", visible_alias = "w", default_value_t = 0)]
        w: u32,
        /// Use only the first N queries.
        #[arg(long)]
        max_queries: Option<usize>,
    },
    /// Drop a collection and its files (a running build of it is
    /// cancelled first).
    Drop {
        /// Collection name.
        name: String,
    },
    /// Points by id: each found one (id, vector, payload), then the ids
    /// not in the collection.
    Get {
        /// Collection name.
        name: String,
        /// Ids, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        ids: Vec<u64>,
    },
    /// Delete points by id (an unknown id is not an error).
    Delete {
        /// Collection name.
        name: String,
        /// Ids, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        ids: Vec<u64>,
    },
    /// One build or compaction by id, as it stands (or as it ended).
    Operation {
        /// Operation id, as BuildIndex or compact printed it.
        id: String,
    },
    /// Stop a running build or compaction; waits until it has stopped
    /// unless --no-wait.
    Cancel {
        /// Operation id.
        id: String,
        /// Return at once.
        #[arg(long)]
        no_wait: bool,
    },
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

pub(crate) async fn channel(c: &Conn) -> Result<Api> {
    let access = c.access()?;
    let bearer = Bearer(access.bearer()?);
    let ch = crate::server_addr::channel(&c.server, &access).await?;
    Ok(Api::new(ch, bearer))
}

pub(crate) fn status_err(s: tonic::Status) -> anyhow::Error {
    use std::error::Error;
    // A status made by the client's transport, not quarryd: say what
    // broke, and the likely cause when the connection was cut at once.
    if s.source().is_some() {
        let chain = quarry_proto::tls::error_chain(&s);
        return anyhow::anyhow!(
            "{:?}: the connection failed: {chain} (a quarryd with tls_cert set answers only https:// with --ca)",
            s.code()
        );
    }
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

/// Rows `start..start + rows` of `file` as one Upsert request, ids
/// `first_id` + row.
fn upsert_request(
    file: &quarry_engine::dataset::VectorFile,
    collection: &str,
    first_id: u64,
    start: usize,
    rows: usize,
) -> pb::UpsertRequest {
    let points = file
        .read_rows_f32(start, rows)
        .chunks_exact(file.dim())
        .enumerate()
        .map(|(i, v)| pb::Point {
            id: first_id + (start + i) as u64,
            vector: v.to_vec(),
            payload: Vec::new(),
        })
        .collect();
    pb::UpsertRequest {
        collection: collection.into(),
        points,
    }
}

/// The JSON line `collections upsert` prints.
pub fn run_status(a: StatusArgs) -> Result<()> {
    runtime()?.block_on(async {
        let mut admin = AdminClient::new(channel(&a.conn).await?);
        let s = admin.stats(pb::StatsRequest {}).await.map_err(status_err)?.into_inner();
        if a.conn.json {
            let shards: Vec<_> = s
                .shards
                .iter()
                .map(|x| {
                    serde_json::json!({"shard": x.shard, "queries": x.queries, "queue_depth": x.queue_depth,
                    "in_flight": x.in_flight, "expired": x.expired, "rejected": x.rejected})
                })
                .collect();
            let ram = s.ram.unwrap_or_default();
            println!(
                "{}",
                serde_json::json!({
                    "version": s.version, "uptime_seconds": s.uptime_seconds, "shards": shards,
                    "collections": s.collections.iter().map(collection_json).collect::<Vec<_>>(),
                    "ram_bytes": ram.total, "memory_budget_bytes": s.memory_budget_bytes, "rss_bytes": s.rss_bytes,
                    "latency_p50_us": s.latency_p50_us, "latency_p99_us": s.latency_p99_us,
                    "latency_p999_us": s.latency_p999_us, "mean_ios": s.mean_ios, "cache_hit_rate": s.cache_hit_rate,
                })
            );
            return Ok(());
        }
        println!(
            "quarryd {} up {:.0} s at {}",
            s.version, s.uptime_seconds, a.conn.server
        );
        let ram = s.ram.unwrap_or_default();
        println!(
            "RAM: indexes {:.1} MiB of a {:.1} MiB budget; process RSS {:.1} MiB",
            ram.total as f64 / 1048576.0,
            s.memory_budget_bytes as f64 / 1048576.0,
            s.rss_bytes as f64 / 1048576.0
        );
        println!(
            "searches: p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us; {:.1} IOs/query; cache hit rate {:.3}",
            s.latency_p50_us, s.latency_p99_us, s.latency_p999_us, s.mean_ios, s.cache_hit_rate
        );
        for x in &s.shards {
            println!(
                "shard {}: {} queries, queue {}, in flight {}, expired {}, rejected {}",
                x.shard, x.queries, x.queue_depth, x.in_flight, x.expired, x.rejected
            );
        }
        for c in &s.collections {
            print_collection(c, false);
        }
        if let Some(addr) = &a.replication {
            let Some(token_file) = &a.token_file else {
                bail!("--replication needs --token-file (or QUARRY_TOKEN_FILE)");
            };
            let r = crate::cmd_replication::fetch_status(addr, token_file, &a.tls).await?;
            crate::cmd_replication::print_status(&r, false);
        }
        Ok(())
    })
}

/// Poll an operation until it ends, printing progress; print the result.
async fn follow(c: &mut CollectionsClient<Api>, id: &str, what: &str, json: bool) -> Result<()> {
    let mut last = -1.0;
    loop {
        let o = c
            .get_operation(pb::GetOperationRequest { id: id.to_string() })
            .await
            .map_err(status_err)?
            .into_inner();
        if o.progress - last >= 0.05 || o.state != pb::OperationState::Running as i32 {
            eprintln!(
                "{:>5.1} %  {:<8} elapsed {:>6.0} s  eta {:>6.0} s",
                o.progress * 100.0,
                o.stage,
                o.elapsed_seconds,
                o.eta_seconds
            );
            last = o.progress;
        }
        match pb::OperationState::try_from(o.state) {
            Ok(pb::OperationState::Done) => {
                print_operation(&o, json);
                return Ok(());
            }
            Ok(pb::OperationState::Failed) => bail!("{what} failed: {}", o.error),
            Ok(pb::OperationState::Cancelled) => bail!("{what} was cancelled: {}", o.error),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// Run `quarryctl collections …`.
pub fn run_collections(a: CollectionsArgs) -> Result<()> {
    runtime()?.block_on(async {
        let mut c = CollectionsClient::new(channel(&a.conn).await?);
        match a.cmd {
            CollectionsCmd::List => {
                let l = c
                    .list_collections(pb::ListCollectionsRequest {})
                    .await
                    .map_err(status_err)?
                    .into_inner();
                if l.collections.is_empty() && !a.conn.json {
                    println!("no collections");
                }
                for x in &l.collections {
                    print_collection(x, a.conn.json);
                }
            }
            CollectionsCmd::Describe { name } => {
                let x = c
                    .describe_collection(pb::DescribeCollectionRequest { name })
                    .await
                    .map_err(status_err)?
                    .into_inner();
                print_describe(&x, a.conn.json);
            }
            CollectionsCmd::Create {
                name,
                dim,
                metric,
                r,
                l,
                pq_bytes,
                alpha,
                opq,
                nav_sample,
                disk_vector,
                residency,
                mutable,
            } => {
                let residency = match residency.as_str() {
                    "ram" => pb::Residency::Ram,
                    _ => pb::Residency::Disk,
                };
                let metric = match metric.as_str() {
                    "l2" => pb::Metric::L2,
                    "ip" => pb::Metric::Ip,
                    "cosine" => pb::Metric::Cosine,
                    o => bail!("unknown metric {o:?}: expected l2, ip or cosine"),
                };
                let stored = match disk_vector.as_deref() {
                    None => pb::StoredVector::Unspecified,
                    Some("f32") => pb::StoredVector::F32,
                    Some("f16") => pb::StoredVector::F16,
                    Some("i8") => pb::StoredVector::I8,
                    Some(o) => bail!("unknown --disk-vector {o:?}: expected f32, f16 or i8"),
                };
                let x = c
                    .create_collection(pb::CreateCollectionRequest {
                        name,
                        dim,
                        metric: metric as i32,
                        index_params: Some(pb::IndexParams {
                            max_degree: r,
                            build_list_size: l,
                            pq_bytes,
                            alpha,
                            opq,
                            nav_sample,
                        }),
                        stored_vector: stored as i32,
                        mutable,
                        residency: residency as i32,
                    })
                    .await
                    .map_err(status_err)?
                    .into_inner();
                print_collection(&x, a.conn.json);
            }
            CollectionsCmd::Build {
                name,
                source,
                first_id,
                ids,
                no_wait,
            } => {
                let op = c
                    .build_index(pb::BuildIndexRequest {
                        collection: name,
                        source_path: source,
                        ids_path: ids.unwrap_or_default(),
                        first_id,
                        ..Default::default()
                    })
                    .await
                    .map_err(status_err)?
                    .into_inner();
                eprintln!("build started: operation {}", op.id);
                if no_wait {
                    print_operation(&op, a.conn.json);
                    return Ok(());
                }
                follow(&mut c, &op.id, "build", a.conn.json).await?;
            }
            CollectionsCmd::Upsert {
                name,
                source,
                first_id,
                batch,
                limit,
                unary,
            } => {
                let file = quarry_engine::dataset::VectorFile::open(&source)
                    .with_context(|| format!("--source {}", source.display()))?;
                let (dim, n) = (file.dim(), limit.unwrap_or(usize::MAX).min(file.len()));
                let batch = batch.clamp(1, 1 << 16);
                let mut w = quarry_proto::v1::write_client::WriteClient::new(channel(&a.conn).await?)
                    .max_encoding_message_size(256 << 20);
                let (tx, rx) = tokio::sync::mpsc::channel::<pb::UpsertRequest>(2);
                let t0 = std::time::Instant::now();
                let coll = name.clone();
                if unary {
                    let (mut count, mut last_lsn) = (0u64, 0u64);
                    for start in (0..n).step_by(batch) {
                        let rows = batch.min(n - start);
                        let r = w
                            .upsert(upsert_request(&file, &coll, first_id, start, rows))
                            .await
                            .map_err(status_err)?
                            .into_inner();
                        count += r.count;
                        last_lsn = r.last_lsn;
                    }
                    print_upserted(
                        &Upserted {
                            name: &name,
                            count,
                            last_lsn,
                            t0,
                            dim,
                            batch,
                            unary: true,
                        },
                        a.conn.json,
                    );
                    return Ok(());
                }
                let feeder = tokio::task::spawn_blocking(move || {
                    let mut last_report = std::time::Instant::now();
                    for start in (0..n).step_by(batch) {
                        let rows = batch.min(n - start);
                        if tx
                            .blocking_send(upsert_request(&file, &coll, first_id, start, rows))
                            .is_err()
                        {
                            return;
                        }
                        if last_report.elapsed() > Duration::from_secs(5) {
                            let secs = t0.elapsed().as_secs_f64();
                            eprintln!(
                                "{:>10} / {n} sent ({:.1} %), {:.0} vectors/s",
                                start + rows,
                                100.0 * (start + rows) as f64 / n as f64,
                                (start + rows) as f64 / secs
                            );
                            last_report = std::time::Instant::now();
                        }
                    }
                });
                let r = w
                    .bulk_upsert(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await
                    .map_err(status_err)?
                    .into_inner();
                let _ = feeder.await;
                print_upserted(
                    &Upserted {
                        name: &name,
                        count: r.count,
                        last_lsn: r.last_lsn,
                        t0,
                        dim,
                        batch,
                        unary: false,
                    },
                    a.conn.json,
                );
            }
            CollectionsCmd::Compact { name, no_wait } => {
                let mut admin = AdminClient::new(channel(&a.conn).await?);
                let op = admin
                    .compact(pb::CompactRequest { collection: name })
                    .await
                    .map_err(status_err)?
                    .into_inner();
                eprintln!("compaction started: operation {}", op.id);
                if no_wait {
                    print_operation(&op, a.conn.json);
                    return Ok(());
                }
                follow(&mut c, &op.id, "compaction", a.conn.json).await?;
            }
            CollectionsCmd::Search {
                name,
                queries,
                gt,
                k,
                l,
                w,
                max_queries,
            } => {
                let file = quarry_engine::dataset::VectorFile::open(&queries)?;
                let dim = file.dim();
                let nq = max_queries.unwrap_or(usize::MAX).min(file.len());
                let data = file.read_rows_f32(0, nq);
                let truth = match &gt {
                    Some(p) => Some(quarry_engine::dataset::read_ibin(p)?),
                    None => None,
                };
                let mut q = quarry_proto::v1::query_client::QueryClient::new(channel(&a.conn).await?);
                let mut lat = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
                let (mut hits, mut ios) = (0usize, 0u64);
                let t0 = std::time::Instant::now();
                for (i, v) in data.chunks_exact(dim).enumerate() {
                    let t = std::time::Instant::now();
                    let r = q
                        .search(pb::SearchRequest {
                            collection: name.clone(),
                            vector: v.to_vec(),
                            params: Some(pb::SearchParams { k, l, w }),
                            with_payload: false,
                        })
                        .await
                        .map_err(status_err)?
                        .into_inner();
                    lat.record(t.elapsed().as_micros().max(1) as u64)?;
                    ios += r.stats.map_or(0, |s| s.ios as u64);
                    if let Some((_, gk, ids)) = &truth {
                        let row = &ids[i * gk..i * gk + (k as usize).min(*gk)];
                        hits += r.neighbors.iter().filter(|n| row.contains(&(n.id as u32))).count();
                    }
                }
                let secs = t0.elapsed().as_secs_f64();
                let recall = truth.as_ref().map(|_| hits as f64 / (nq * k as usize) as f64);
                print_search(
                    &serde_json::json!({"collection": name, "queries": nq, "k": k, "L": l, "W": w,
                        "recall_at_k": recall, "qps_one_client": nq as f64 / secs,
                        "lat_p50_us": lat.value_at_quantile(0.5), "lat_p99_us": lat.value_at_quantile(0.99),
                        "mean_ios": ios as f64 / nq.max(1) as f64}),
                    a.conn.json,
                );
            }
            CollectionsCmd::Drop { name } => {
                c.drop_collection(pb::DropCollectionRequest { name: name.clone() })
                    .await
                    .map_err(status_err)?;
                eprintln!("dropped {name}");
            }
            CollectionsCmd::Get { name, ids } => {
                let mut q = quarry_proto::v1::query_client::QueryClient::new(channel(&a.conn).await?);
                let r = q
                    .get(pb::GetRequest { collection: name, ids })
                    .await
                    .map_err(status_err)?
                    .into_inner();
                print_records(&r, a.conn.json);
            }
            CollectionsCmd::Delete { name, ids } => {
                let mut w = quarry_proto::v1::write_client::WriteClient::new(channel(&a.conn).await?);
                let r = w
                    .delete(pb::DeleteRequest {
                        collection: name.clone(),
                        ids,
                    })
                    .await
                    .map_err(status_err)?
                    .into_inner();
                print_write(&name, "deleted", &r, a.conn.json);
            }
            CollectionsCmd::Operation { id } => {
                let o = c
                    .get_operation(pb::GetOperationRequest { id })
                    .await
                    .map_err(status_err)?
                    .into_inner();
                print_operation(&o, a.conn.json);
            }
            CollectionsCmd::Cancel { id, no_wait } => {
                let mut o = c
                    .cancel_operation(pb::CancelOperationRequest { id: id.clone() })
                    .await
                    .map_err(status_err)?
                    .into_inner();
                while !no_wait && o.state == pb::OperationState::Running as i32 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    o = c
                        .get_operation(pb::GetOperationRequest { id: id.clone() })
                        .await
                        .map_err(status_err)?
                        .into_inner();
                }
                print_operation(&o, a.conn.json);
            }
        }
        Ok(())
    })
}

/// `quarryctl health`.
#[derive(Args, Debug)]
pub struct HealthArgs {
    #[command(flatten)]
    conn: Conn,
    /// A service to ask about (e.g. quarry.v1.Query); default: the server
    /// as a whole.
    #[arg(long, default_value = "")]
    service: String,
}

/// Run `quarryctl health`: the gRPC health check; fails unless SERVING.
pub fn run_health(a: HealthArgs) -> Result<()> {
    use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
    runtime()?.block_on(async {
        let r = HealthClient::new(channel(&a.conn).await?)
            .check(HealthCheckRequest {
                service: a.service.clone(),
            })
            .await
            .map_err(status_err)?
            .into_inner();
        let status = ServingStatus::try_from(r.status).unwrap_or(ServingStatus::Unknown);
        let name = status.as_str_name();
        let what = if a.service.is_empty() {
            "quarryd"
        } else {
            a.service.as_str()
        };
        if a.conn.json {
            println!("{}", serde_json::json!({"service": what, "status": name}));
        } else {
            println!("{what}: {name}");
        }
        if status != ServingStatus::Serving {
            bail!("{what} is {name}");
        }
        Ok(())
    })
}
