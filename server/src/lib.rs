//! quarryd: Quarry's gRPC service.
//!
//! Owns: assembling the service — configuration, catalog, shards, the
//! tonic server (Collections, Query, Write, Admin, health, reflection), the
//! metrics endpoint, systemd notification and the watchdog, and the
//! SIGTERM drain. The parts:
//!
//! - [`config`]: the TOML file and its defaults;
//! - [`datadir`]: the data directory's lock (one server per directory);
//! - [`budget`]: the one memory budget and its reservations;
//! - [`catalog`]: collections on disk, builds, the memory budget;
//! - [`meta`]: `collection.json`'s fields, version and defaults;
//! - [`live`]: collections as the service holds them, write limits, the flusher;
//! - [`shard`]: pinned search threads with bounded queues;
//! - [`wake`]: a shard's eventfd in the network runtime's epoll;
//! - [`service`]: the gRPC handlers and every request limit;
//! - [`metrics`]: Prometheus metrics;
//! - [`operations`]: builds and compactions as GetOperation reports them;
//! - [`replication`]: the warm standby: node identity, handshake decisions,
//!   the `[replication]` settings;
//! - [`notify`]: systemd's notify protocol and watchdog.
//!
//! The gRPC server runs on a single-threaded tokio runtime that shard 0
//! turns from its own loop (`net_threads = 0`, the default), or on a
//! separate runtime (`net_threads >= 1`); searches run on the shards. The
//! control side (signals, metrics, watchdog) runs on the caller's runtime.
//! See ARCHITECTURE.md for why the shards are our own io_uring loop rather
//! than glommio executors.

pub mod auth;
pub mod budget;
pub mod catalog;
pub mod config;
pub mod datadir;
pub mod error;
pub mod http;
pub mod live;
pub mod meta;
pub mod metrics;
pub mod notify;
pub mod op_journal;
pub mod operations;
pub mod replication;
pub mod service;
pub mod shard;
pub mod wake;

use anyhow::Context;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use config::Config;
pub use error::ServiceError;

/// Run quarryd until SIGTERM or SIGINT, then drain and return.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    cfg.validate()?;
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create the data directory {}", cfg.data_dir.display()))?;
    // Held until this function returns (the process exits right after).
    let _lock = datadir::DataDirLock::acquire(&cfg.data_dir)?;
    let t0 = Instant::now();
    let catalog = {
        let (dir, cache, budget, threads) = (
            cfg.data_dir.clone(),
            cfg.cache_nodes,
            cfg.memory_budget_bytes(),
            cfg.build_threads,
        );
        let writes = live::WriteSettings::from_config(&cfg);
        tokio::task::spawn_blocking(move || catalog::Catalog::open(&dir, cache, budget, threads, writes))
            .await?
            .map_err(|e| anyhow::anyhow!("opening the collections in {}: {e}", cfg.data_dir.display()))?
    };
    let catalog = Arc::new(catalog);
    catalog.start_flusher().context("starting the flusher thread")?;
    let replica = start_replication(&cfg, &catalog)?;
    let metrics = Arc::new(metrics::Metrics::default());
    // net_threads = 0: the network side runs on shard 0's thread (see
    // `shard`); otherwise on this runtime.
    let (shards, net) = shard::Shards::start(
        cfg.shard_count(),
        cfg.queue_depth,
        cfg.inflight_per_shard,
        std::time::Duration::from_micros(cfg.shard_poll_us),
        metrics.clone(),
        cfg.net_threads == 0,
    )
    .context("starting the search shards")?;
    let shards = Arc::new(shards);
    {
        let s = Arc::downgrade(&shards);
        catalog.set_retire_hook(Box::new(move || {
            if let Some(s) = s.upgrade() {
                s.nudge();
            }
        }));
    }
    let state = Arc::new(service::AppState {
        config: cfg.clone(),
        catalog: catalog.clone(),
        shards: shards.clone(),
        metrics: metrics.clone(),
        draining: Default::default(),
        started: Instant::now(),
        write_permits: Arc::new(tokio::sync::Semaphore::new(cfg.max_inflight_writes)),
        replica: replica.clone(),
    });

    // Bound here, registered with the runtime that serves it (below).
    let listener =
        std::net::TcpListener::bind(cfg.listen).with_context(|| format!("cannot listen on {} (listen)", cfg.listen))?;
    listener.set_nonblocking(true)?;
    let grpc_addr = listener.local_addr()?;
    let unix_listener = cfg.listen_unix.as_deref().map(bind_unix).transpose()?;
    let metrics_listener = tokio::net::TcpListener::bind(cfg.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {} (metrics_listen)", cfg.metrics_listen))?;
    let metrics_addr = metrics_listener.local_addr()?;
    let http_listener = match cfg.http_listen {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a} (http_listen)"))?,
        ),
        None => None,
    };
    let http_addr = http_listener.as_ref().map(|l| l.local_addr()).transpose()?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    // Reflection in both versions clients use (grpcurl and grpcio's
    // reflection client still ask v1alpha), listing health too.
    let reflection_files = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(quarry_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_files()
        .build_v1()
        .context("building the reflection service")?;
    let reflection_v1alpha = reflection_files()
        .build_v1alpha()
        .context("building the v1alpha reflection service")?;
    use quarry_proto::v1::{
        admin_server::AdminServer, collections_server::CollectionsServer, query_server::QueryServer,
        write_server::WriteServer,
    };
    // Bearer tokens: read at start, so a bad file stops quarryd here.
    let tokens = match &cfg.api_token_file {
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("cannot read api_token_file {}", p.display()))?;
            let t = auth::parse_tokens(&bytes).map_err(|e| anyhow::anyhow!("api_token_file {}: {e}", p.display()))?;
            Some(Arc::new(t))
        }
        None => None,
    };
    // TLS: the files are read and checked now, so a bad one stops quarryd
    // here, naming the key.
    let tls = cfg
        .tls_files()
        .map(|f| f.server(cfg.tls_require_client_cert))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let max = cfg.max_message_bytes;
    let query = QueryServer::new(service::QuerySvc(state.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let collections = CollectionsServer::new(service::CollectionsSvc(state.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let write = WriteServer::new(service::WriteSvc(state.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let admin = AdminServer::new(service::AdminSvc(state.clone()));
    health_reporter.set_serving::<QueryServer<service::QuerySvc>>().await;
    health_reporter
        .set_serving::<CollectionsServer<service::CollectionsSvc>>()
        .await;
    health_reporter.set_serving::<AdminServer<service::AdminSvc>>().await;
    health_reporter.set_serving::<WriteServer<service::WriteSvc>>().await;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let replication_addr = match &replica {
        Some(r) => Some(serve_replication(&cfg, r, &catalog, stop_rx.clone())?),
        None => None,
    };
    // The JSON API calls the same service values; TLS from the same files.
    let http_serve = match http_listener {
        Some(l) => {
            let tls = match cfg.tls_files() {
                Some(f) => Some(Arc::new(
                    http::tls_config(&f, cfg.tls_require_client_cert).map_err(anyhow::Error::msg)?,
                )),
                None => None,
            };
            let services = http::routes::Services {
                collections: service::CollectionsSvc(state.clone()),
                query: service::QuerySvc(state.clone()),
                write: service::WriteSvc(state.clone()),
                admin: service::AdminSvc(state.clone()),
            };
            let api = Arc::new(http::Api::new(services, tokens.clone(), cfg.max_message_bytes));
            Some(http::serve(l, tls, api, stop_rx.clone()))
        }
        None => None,
    };
    let mut grpc_stop = stop_rx.clone();
    let mut unix_stop = stop_rx.clone();
    // The same services on every listener; TLS only on TCP (the Unix
    // socket is guarded by its file's permissions).
    let api_router = |b: tonic::transport::Server| {
        b.layer(error::OversizeStatusLayer)
            .layer(auth::AuthLayer(tokens.clone()))
            .add_service(health_service.clone())
            .add_service(reflection.clone())
            .add_service(reflection_v1alpha.clone())
            .add_service(query.clone())
            .add_service(collections.clone())
            .add_service(write.clone())
            .add_service(admin.clone())
    };
    let router = match &tls {
        Some(t) => api_router(tonic::transport::Server::builder().tls_config(t.clone())?),
        None => api_router(tonic::transport::Server::builder()),
    };
    let unix_serve = unix_listener.map(|l| (api_router(tonic::transport::Server::builder()), l));
    let server = async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let tcp = async {
            router
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = grpc_stop.changed().await;
                })
                .await
                .map_err(anyhow::Error::from)
        };
        // The same services on the Unix socket, on the same runtime, with
        // the same shutdown signal, so the drain covers both.
        let unix = async {
            let Some((router, listener)) = unix_serve else {
                return Ok(());
            };
            let incoming =
                tokio_stream::wrappers::UnixListenerStream::new(tokio::net::UnixListener::from_std(listener)?);
            router
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = unix_stop.changed().await;
                })
                .await
                .map_err(anyhow::Error::from)
        };
        tokio::try_join!(tcp, unix).map(|_| ())
    };
    let mut server = match &net {
        Some(shard0) => shard0.spawn(server),
        None => tokio::spawn(server),
    };
    // On the same runtime as gRPC: the services' futures wait on the shards there.
    if let Some(h) = http_serve {
        match &net {
            Some(shard0) => drop(shard0.spawn(h)),
            None => drop(tokio::spawn(h)),
        }
    }
    let render_state = state.clone();
    let render: Arc<dyn Fn() -> String + Send + Sync> =
        Arc::new(move || render_state.metrics.render(&render_state.render_gauges()));
    tokio::spawn(metrics::serve(metrics_listener, render, stop_rx.clone()));

    tracing::info!(
        grpc = %grpc_addr,
        tls = tls.is_some(),
        tokens = tokens.is_some(),
        grpc_unix = %cfg.listen_unix.as_deref().map_or("-".into(), |p| p.display().to_string()),
        metrics = %metrics_addr,
        http = %http_addr.map_or("-".into(), |a| a.to_string()),
        data_dir = %cfg.data_dir.display(),
        shards = shards.len(),
        collections = catalog.list().len(),
        replication = %replication_addr.map_or("-".into(), |a| a.to_string()),
        role = replica.as_ref().map_or("none", |r| replication::node::role_name(r.role())),
        startup_ms = t0.elapsed().as_secs_f64() * 1e3,
        "quarryd listening"
    );
    notify::ready(&format!("serving on {grpc_addr}"));
    if let Some(period) = notify::watchdog_period() {
        tokio::spawn(notify::watchdog(shards.clone(), period, stop_rx.clone()));
    }

    // Wait for SIGTERM / SIGINT (or the server failing on its own).
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let early = tokio::select! {
        _ = term.recv() => None,
        _ = int.recv() => None,
        r = &mut server => Some(r),
    };
    if let Some(r) = early {
        r?.context("the gRPC server stopped")?;
        return Ok(());
    }
    let drain = Duration::from_secs_f64(cfg.drain_timeout_secs);
    tracing::info!(
        drain_timeout_s = cfg.drain_timeout_secs,
        "shutting down: draining in-flight requests"
    );
    notify::stopping();
    state.draining.store(true, Ordering::SeqCst);
    health_reporter
        .set_not_serving::<QueryServer<service::QuerySvc>>()
        .await;
    health_reporter
        .set_not_serving::<WriteServer<service::WriteSvc>>()
        .await;
    let _ = stop_tx.send(true);
    match tokio::time::timeout(drain, &mut server).await {
        Ok(r) => {
            r?.context("the gRPC server failed while draining")?;
            tracing::info!("drained");
        }
        Err(_) => {
            tracing::warn!(
                drain_timeout_s = cfg.drain_timeout_secs,
                "drain timeout reached; abandoning the requests still running"
            );
            server.abort();
        }
    }
    // Shards finish what they hold, then stop; a flush in progress is
    // waited for (its writes are in the WAL either way).
    let cat = catalog.clone();
    tokio::task::spawn_blocking(move || {
        shards.shutdown();
        cat.stop_flusher();
    })
    .await?;
    if let Some(path) = &cfg.listen_unix {
        if let Err(e) = std::fs::remove_file(path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove the Unix socket");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// This node's part in a pair, when `[replication]` gives it one: its
/// identity, role and epoch (a new primary takes its first epoch), loads
/// from files refused, the follower and the peer watch started.
fn start_replication(
    cfg: &Config,
    catalog: &Arc<catalog::Catalog>,
) -> anyhow::Result<Option<Arc<replication::node::Replica>>> {
    use replication::settings::Role;
    if cfg.replication.role == Role::None {
        return Ok(None);
    }
    let token = cfg
        .replication
        .token()
        .map_err(|e| anyhow::anyhow!(e))?
        .context("replication.token_file is required")?;
    let r = replication::node::Replica::start(
        cfg.replication.clone(),
        token,
        Arc::new(quarry_engine::storage::RealFs),
        cfg.data_dir.clone(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let id = r.identity();
    if r.role() == Role::Primary && id.epoch() == quarry_engine::wal::Epoch::ZERO {
        let first = quarry_engine::wal::Epoch::ZERO.next(id.node());
        r.set_role(Role::Primary, first).map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(epoch = %first, "a new primary takes its first epoch");
    }
    replication::standby::start(r.clone(), catalog.clone()).context("starting the replication threads")?;
    let id = r.identity();
    tracing::info!(
        node_id = %id.node_id, pair_id = %id.pair_id, epoch = %id.epoch(),
        role = replication::node::role_name(r.role()), mode = ?cfg.replication.mode,
        peer = cfg.replication.peer.as_deref().unwrap_or("-"), "replication"
    );
    Ok(Some(r))
}

/// Serve the `Replication` service on `replication_listen` (token checked
/// before any message is read) until `stop`.
fn serve_replication(
    cfg: &Config,
    r: &Arc<replication::node::Replica>,
    catalog: &Arc<catalog::Catalog>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<std::net::SocketAddr> {
    use quarry_proto::replication::v1::replication_server::ReplicationServer;
    let addr = cfg
        .replication
        .replication_listen
        .context("replication.replication_listen is required")?;
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on {addr} (replication.replication_listen)"))?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    // Pings find a standby that vanished behind a silent partition, so
    // its session's thread ends instead of waiting on a dead stream.
    let mut server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(1)))
        .http2_keepalive_timeout(Some(Duration::from_secs(2)));
    if let Some(files) = cfg.replication.tls_files() {
        let tls = files
            .server(cfg.replication.tls_require_client_cert)
            .map_err(|e| anyhow::anyhow!(e))?;
        server = server.tls_config(tls).context("replication TLS")?;
        tracing::info!(
            client_cert = if cfg.replication.tls_require_client_cert {
                "required"
            } else {
                "optional"
            },
            "the replication listener serves TLS"
        );
    }
    let svc = tonic::service::interceptor::InterceptedService::new(
        ReplicationServer::new(replication::service::ReplicationSvc::new(r.clone(), catalog.clone()))
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20),
        replication::service::TokenCheck(r.token.as_str().into()),
    );
    tokio::spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "the replication listener failed");
                return;
            }
        };
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let r = server
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.changed().await;
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "the replication service stopped");
        }
    });
    Ok(bound)
}

/// Bind the Unix-socket listener (`listen_unix`). A socket file left by an
/// unclean exit is replaced; one a running server still accepts on, or a
/// path that is not a socket, is refused rather than taken over.
fn bind_unix(path: &std::path::Path) -> anyhow::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            anyhow::bail!(
                "cannot listen on {} (listen_unix): the path exists and is not a socket",
                path.display()
            );
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "cannot listen on {} (listen_unix): another server is accepting on it",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {} (listen_unix)", path.display()))?;
    }
    let l = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("cannot listen on {} (listen_unix)", path.display()))?;
    l.set_nonblocking(true)?;
    Ok(l)
}
