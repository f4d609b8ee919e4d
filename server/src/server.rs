//! Running the server: open the database, start the HTTP and Flight SQL
//! listeners, and shut down cleanly (flushing) on SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use arrow_flight::flight_service_server::FlightServiceServer;
use telemark_engine::Database;
use telemark_engine::query::QueryEngine;
use tokio::net::TcpListener;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::flight::TelemarkFlightSql;
use crate::metrics::Metrics;

/// Everything a request handler needs.
#[derive(Debug)]
pub struct AppState {
    /// The storage engine.
    pub db: Arc<Database>,
    /// SQL over it.
    pub engine: QueryEngine,
    /// Token checks.
    pub auth: Authenticator,
    /// The server's metrics.
    pub metrics: Arc<Metrics>,
    /// The effective configuration.
    pub config: Arc<Config>,
    /// Counters of the ingest paths (line protocol, MQTT).
    pub ingest_stats: Arc<telemark_ingest::stats::IngestStats>,
    /// Alerting, when rules are configured (set once the MQTT listener is up).
    pub alerts: std::sync::OnceLock<Arc<telemark_ingest::alerts::Alerts>>,
}

/// Runs until SIGINT or SIGTERM, then flushes and closes the database.
pub async fn serve(config: Config) -> Result<(), String> {
    config.check_exposure()?;
    let options = config.engine_options()?;
    let dir = config.data_dir.clone();
    let (db, report) = tokio::task::spawn_blocking(move || Database::open_with_report(&dir, options))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot open the data directory {}: {e}", config.data_dir.display()))?;
    if let Some(torn) = &report.torn_tail {
        tracing::warn!(file = %torn.file.display(), offset = torn.offset, bytes = torn.bytes_dropped, "cut a torn WAL tail left by a crash");
    }
    tracing::info!(data_dir = %config.data_dir.display(), segments = report.segments, replayed = report.wal_records_replayed, "database open");
    let db = Arc::new(db);
    for (database, table, keep) in config.retention_rules()? {
        let engine = db.clone();
        tokio::task::spawn_blocking(move || engine.set_retention(&database, table.as_deref(), Some(keep)))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("applying the [[retention]] rules: {e}"))?;
    }
    let state = Arc::new(AppState {
        engine: QueryEngine::new(db.clone()),
        db: db.clone(),
        auth: Authenticator::new(config.tokens.clone()),
        metrics: Arc::new(Metrics::default()),
        config: Arc::new(config.clone()),
        ingest_stats: Arc::default(),
        alerts: std::sync::OnceLock::new(),
    });
    let tls = match &config.tls {
        Some(t) => {
            let cert = std::fs::read(&t.cert).map_err(|e| format!("tls.cert {}: {e}", t.cert.display()))?;
            let key = std::fs::read(&t.key).map_err(|e| format!("tls.key {}: {e}", t.key.display()))?;
            Some((cert, key))
        }
        None => None,
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let http_listener = TcpListener::bind(config.http_addr)
        .await
        .map_err(|e| format!("cannot bind HTTP on {}: {e}", config.http_addr))?;
    let flight_listener = TcpListener::bind(config.flight_addr)
        .await
        .map_err(|e| format!("cannot bind Flight SQL on {}: {e}", config.flight_addr))?;
    let http_addr = http_listener.local_addr().map_err(|e| e.to_string())?;
    let flight_addr = flight_listener.local_addr().map_err(|e| e.to_string())?;

    let http = {
        let mut stop = stop_rx.clone();
        let router = crate::http::router(state.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            match tls {
                None => {
                    axum::serve(http_listener, router).with_graceful_shutdown(shutdown).await.map_err(|e| e.to_string())
                }
                Some((cert, key)) => crate::tls::serve_https(http_listener, router, &cert, &key, shutdown).await,
            }
        })
    };
    let flight = {
        let mut stop = stop_rx.clone();
        let max = config.max_grpc_message_bytes;
        let service = FlightServiceServer::new(TelemarkFlightSql::new(state.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let mut builder = tonic::transport::Server::builder();
        if let Some((cert, key)) = &tls {
            let identity = tonic::transport::Identity::from_pem(cert, key);
            builder = builder
                .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))
                .map_err(|e| format!("TLS configuration: {e}"))?;
        }
        let incoming = tokio_stream_incoming(flight_listener);
        tokio::spawn(async move {
            builder
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
                .map_err(|e| e.to_string())
        })
    };
    let mut mqtt_tasks = Vec::new();
    // Alerting starts before the MQTT listener accepts anyone, so its
    // subscription checks are in place for the first client.
    let alert_options = config.alert.options()?;
    let start_alerts = |publisher: Option<Arc<telemark_ingest::mqtt::MqttContext>>| -> Result<(), String> {
        let Some(options) = alert_options.clone() else { return Ok(()) };
        let p = publisher.clone().map(|c| c as Arc<dyn telemark_ingest::alerts::Publisher>);
        let queries: Arc<dyn telemark_ingest::alerts::SqlRunner> =
            Arc::new(crate::alerts::Queries(state.engine.clone()));
        let alerts = telemark_ingest::alerts::Alerts::start(
            &config.data_dir.join("alerts"),
            options,
            db.clone(),
            p,
            Some(queries),
        )?;
        if let Some(ctx) = &publisher {
            let _ = ctx.hooks.set(alerts.clone());
        }
        let _ = state.alerts.set(alerts);
        Ok(())
    };
    if config.mqtt.enabled {
        mqtt_tasks = start_mqtt(&config, &state, &stop_rx, |ctx| start_alerts(Some(ctx.clone()))).await?;
    } else {
        start_alerts(None)?;
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Tests and scripts wait for these lines.
    println!("telemark: HTTP API listening on {scheme}://{http_addr}");
    println!("telemark: Flight SQL listening on {}://{flight_addr}", if tls.is_some() { "grpc+tls" } else { "grpc" });
    tracing::info!(%http_addr, %flight_addr, "serving");

    wait_for_signal().await;
    tracing::info!("shutting down: stopping listeners, flushing the write buffer");
    let _ = stop_tx.send(true);
    for (name, task) in [("HTTP", http), ("Flight SQL", flight)] {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(%name, error = %e, "listener failed"),
            Err(e) => tracing::error!(%name, error = %e, "listener task panicked"),
        }
    }
    for task in mqtt_tasks {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "MQTT task panicked");
        }
    }
    if let Some(alerts) = state.alerts.get() {
        alerts.stop();
    }
    drop(state);
    // The ingest writer thread holds the database until its last handle is gone.
    let mut waited = 0;
    while Arc::strong_count(&db) > 1 && waited < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        waited += 1;
    }
    let db = Arc::try_unwrap(db).map_err(|_| "the database is still in use at shutdown".to_string())?;
    tokio::task::spawn_blocking(move || db.close())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("flush at shutdown failed: {e}"))?;
    println!("telemark: stopped cleanly");
    Ok(())
}

/// Accepted connections as tonic's incoming stream.
fn tokio_stream_incoming(
    listener: TcpListener,
) -> impl futures::Stream<Item = Result<tokio::net::TcpStream, std::io::Error>> + Send + 'static {
    futures::stream::unfold(listener, |l| async move {
        let r = l.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((r, l))
    })
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Parses `host:port` or a URL's authority into a socket address.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|e| format!("`{s}` is not an address like 127.0.0.1:8181: {e}"))
}

/// Starts the MQTT listener(s) and bridges; prints where they listen.
async fn start_mqtt(
    config: &Config,
    state: &Arc<AppState>,
    stop: &tokio::sync::watch::Receiver<bool>,
    before_listening: impl FnOnce(&Arc<telemark_ingest::mqtt::MqttContext>) -> Result<(), String>,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    use telemark_ingest::mqtt;
    let m = &config.mqtt;
    let rules = telemark_ingest::RuleSet::compile(&m.rules)?;
    let bridges = m
        .bridges
        .iter()
        .map(|b| telemark_ingest::bridge::Bridge::new(b.clone(), &rules.filters()))
        .collect::<Result<Vec<_>, _>>()?;
    let tls = match &m.tls {
        None => None,
        Some(t) => {
            let read = |p: &std::path::Path, what: &str| {
                std::fs::read(p).map_err(|e| format!("mqtt.tls.{what} {}: {e}", p.display()))
            };
            let files = mqtt::tls::TlsFiles {
                cert_pem: read(&t.cert, "cert")?,
                key_pem: read(&t.key, "key")?,
                client_ca_pem: t.client_ca.as_ref().map(|p| read(p, "client_ca")).transpose()?,
            };
            Some(mqtt::tls::server_config(&files)?)
        }
    };
    let sink =
        telemark_ingest::Sink::start(state.db.clone()).map_err(|e| format!("cannot start the ingest writer: {e}"))?;
    let ctx = Arc::new(mqtt::MqttContext::new(
        state.db.clone(),
        sink,
        rules,
        Arc::new(crate::auth::MqttAuth(state.auth.clone())),
        state.ingest_stats.clone(),
        m.listener_options(),
    ));
    before_listening(&ctx)?;
    let mut tasks = Vec::new();
    let plain = TcpListener::bind(m.addr).await.map_err(|e| format!("cannot bind MQTT on {}: {e}", m.addr))?;
    let plain_addr = plain.local_addr().map_err(|e| e.to_string())?;
    tasks.push(tokio::spawn(mqtt::serve(plain, ctx.clone(), stop.clone())));
    println!("telemark: MQTT listening on {}", mqtt::describe(&plain_addr, false));
    if let Some(tls) = tls {
        let listener =
            TcpListener::bind(m.tls_addr).await.map_err(|e| format!("cannot bind MQTT TLS on {}: {e}", m.tls_addr))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        tasks.push(tokio::spawn(mqtt::serve_tls(listener, ctx.clone(), tls, stop.clone())));
        println!("telemark: MQTT over TLS listening on {}", mqtt::describe(&addr, true));
    }
    for bridge in bridges {
        tasks.push(tokio::spawn(bridge.run(ctx.clone(), stop.clone())));
    }
    Ok(tasks)
}
