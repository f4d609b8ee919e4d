//! The built-in MQTT listener: devices connect with MQTT 3.1.1 or 5.0, over
//! TCP or TLS with X.509 client certificates.
//!
//! - PUBLISH at QoS 0, 1 and 2. A PUBACK (QoS 1) or PUBREC (QoS 2) is sent
//!   only once the rows the topic rules made of the message are durable; a
//!   resend (DUP) of a QoS 1 message in the same session overwrites the
//!   rows instead of duplicating them, and a repeated QoS 2 PUBLISH before
//!   its PUBREL is answered without storing again.
//! - SUBSCRIBE/UNSUBSCRIBE (granted QoS at most 1), retained messages, will
//!   messages, keep-alive, persistent sessions (clean session = 0 or a v5
//!   session expiry) for subscriptions and in-flight QoS 2 state while the
//!   process runs. Messages for a disconnected subscriber are not queued.
//! - Limits: maximum packet size, maximum connections, in-flight window
//!   (the v5 Receive Maximum; a 3.1.1 client past it is read no further
//!   until acks go out). A malformed packet closes only its connection.

pub mod broker;
pub mod codec;
mod connection;
pub mod presence;
pub mod tls;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use telemark_engine::{Database, WriteBatch};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::rules::{Publish, RuleSet, rejected_row};
use crate::sink::{DatabaseBatch, Sink, SinkClosed};
use crate::stats::IngestStats;

pub use broker::Broker;

/// Listener limits.
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    /// Largest packet accepted, header included.
    pub max_packet_bytes: usize,
    /// Most connections at once, plain and TLS together.
    pub max_connections: usize,
    /// QoS 1/2 messages a connection may have awaiting acknowledgement.
    pub max_inflight: u16,
    /// Time a new connection has to send CONNECT (and finish TLS).
    pub connect_timeout: Duration,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            max_packet_bytes: 1 << 20,
            max_connections: 20_000,
            max_inflight: 64,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// What a connected client may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who it is, for logs (token name, certificate identity, or "anonymous").
    pub name: String,
    /// Databases it may write; `None` = all.
    pub databases: Option<BTreeSet<String>>,
    /// Databases whose alerts and presence events it may subscribe to; `None` = all.
    pub read: Option<BTreeSet<String>>,
}

impl Grant {
    /// A grant for everything.
    pub fn all(name: impl Into<String>) -> Self {
        Grant { name: name.into(), databases: None, read: None }
    }

    /// A device: it may write everything (topic policies bound it) and read
    /// nothing (alert and presence topics are for operators' tokens).
    pub fn device(name: impl Into<String>) -> Self {
        Grant { name: name.into(), databases: None, read: Some(BTreeSet::new()) }
    }

    /// True if it may read `database` (subscribe to its alerts).
    pub fn may_read(&self, database: &str) -> bool {
        self.read.as_ref().is_none_or(|d| d.contains(database))
    }

    /// True if it may write `database`.
    pub fn may_write(&self, database: &str) -> bool {
        self.databases.as_ref().is_none_or(|d| d.contains(database))
    }
}

/// Credentials presented at CONNECT.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// MQTT client id.
    pub client_id: &'a str,
    /// CONNECT username.
    pub username: Option<&'a str>,
    /// CONNECT password.
    pub password: Option<&'a [u8]>,
    /// Identity from a verified client certificate.
    pub certificate: Option<&'a str>,
}

/// Decides who may connect; the server implements it with its tokens.
pub trait Authorizer: Send + Sync + std::fmt::Debug + 'static {
    /// A grant, or the reason the client is refused.
    fn authenticate(&self, credentials: &Credentials<'_>) -> Result<Grant, String>;
}

/// Everything connections share.
#[derive(Debug)]
pub struct MqttContext {
    /// The database rows go to.
    pub db: Arc<Database>,
    /// Durable write queue.
    pub sink: Sink,
    /// Topic rules.
    pub rules: RuleSet,
    /// Sessions and subscriptions.
    pub broker: Broker,
    /// Who may connect.
    pub auth: Arc<dyn Authorizer>,
    /// Counters.
    pub stats: Arc<IngestStats>,
    /// Limits.
    pub options: ListenerOptions,
    /// Told of live clients, and asked about subscriptions (alerting sets it).
    pub hooks: std::sync::OnceLock<Arc<dyn presence::ClientHooks>>,
    connections: Arc<Semaphore>,
}

impl crate::alerts::Publisher for MqttContext {
    fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) {
        self.broker.publish(broker::Message { topic: topic.to_string(), payload: payload.into(), qos: 1, retain });
    }
}

/// A publish refused by a policy or a missing right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// Rows made of a message, ready to be written.
#[derive(Debug, Default)]
pub struct Prepared {
    writes: Vec<DatabaseBatch>,
    /// `_rejected` rows for payloads no rule could decode, with the reasons.
    rejected: Vec<(String, String)>,
    topic: String,
    client_id: String,
    payload_head: Vec<u8>,
    payload_bytes: usize,
    now_ns: i64,
}

impl Prepared {
    /// True if nothing is to be written.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.rejected.is_empty()
    }
}

/// Completes when `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Nanoseconds since the epoch, now.
pub fn now_ns() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl MqttContext {
    /// Builds the shared context; `sink` writes into `db`.
    pub fn new(
        db: Arc<Database>,
        sink: Sink,
        rules: RuleSet,
        auth: Arc<dyn Authorizer>,
        stats: Arc<IngestStats>,
        options: ListenerOptions,
    ) -> Self {
        let connections = Arc::new(Semaphore::new(options.max_connections));
        MqttContext {
            db,
            sink,
            rules,
            broker: Broker::new(stats.clone()),
            auth,
            stats,
            options,
            hooks: std::sync::OnceLock::new(),
            connections,
        }
    }

    /// Applies policies and rules to a message: the rows to write, or why the publish is refused.
    pub fn prepare(&self, p: &Publish<'_>, grant: Option<&Grant>) -> Result<Prepared, Refused> {
        self.rules.check_policy(p.topic, p.identity).map_err(|e| Refused(e.0))?;
        let routed = self.rules.route(p, self.db.as_ref());
        let mut prepared = Prepared {
            topic: p.topic.to_string(),
            client_id: p.client_id.to_string(),
            payload_head: p.payload.get(..crate::rules::REJECTED_PAYLOAD_BYTES).unwrap_or(p.payload).to_vec(),
            payload_bytes: p.payload.len(),
            now_ns: p.now_ns,
            ..Default::default()
        };
        for w in routed.writes {
            if let Some(g) = grant
                && !g.may_write(&w.database)
            {
                return Err(Refused(format!(
                    "`{}` may not write database `{}` (topic `{}`)",
                    g.name, w.database, p.topic
                )));
            }
            prepared.writes.extend(w.batches.into_iter().map(|b| (w.database.clone(), b)));
        }
        for (database, reason) in routed.rejections {
            tracing::warn!(topic = p.topic, client_id = p.client_id, %database, %reason, "payload rejected; kept in the _rejected table");
            IngestStats::add(&self.stats.mqtt_payloads_rejected, 1);
            prepared.rejected.push((database, reason));
        }
        Ok(prepared)
    }

    /// Writes prepared rows; returns when they are durable. Rows the engine
    /// refuses (type conflicts) go to `_rejected` as well.
    pub async fn store(&self, prepared: Prepared) -> Result<(), SinkClosed> {
        if prepared.is_empty() {
            return Ok(());
        }
        let mut writes = prepared.writes;
        let origin = Publish {
            topic: &prepared.topic,
            payload: &prepared.payload_head,
            client_id: &prepared.client_id,
            identity: None,
            now_ns: prepared.now_ns,
        };
        let n_data = writes.len();
        for (database, reason) in &prepared.rejected {
            writes.push((database.clone(), rejected_row(&origin, reason, prepared.payload_bytes)));
        }
        let databases: Vec<String> = writes.iter().map(|(d, _)| d.clone()).collect();
        let results = self.sink.write(writes).await?;
        let mut followup: Vec<(String, WriteBatch)> = Vec::new();
        let mut rows = 0u64;
        for (i, (result, database)) in results.into_iter().zip(databases).enumerate() {
            if i >= n_data {
                continue;
            }
            let reasons: Vec<String> = match result {
                Ok(o) => {
                    rows += o.rows_written as u64;
                    o.rejected.into_iter().map(|r| r.message).collect()
                }
                Err(e) => {
                    if !matches!(
                        e,
                        telemark_engine::Error::InvalidName { .. } | telemark_engine::Error::InvalidInput(_)
                    ) {
                        // The database cannot write: the message is not acknowledged.
                        tracing::error!(error = %e, "MQTT write failed");
                        return Err(SinkClosed);
                    }
                    vec![e.to_string()]
                }
            };
            for reason in reasons {
                tracing::warn!(topic = %prepared.topic, client_id = %prepared.client_id, %database, %reason, "rows rejected; kept in the _rejected table");
                IngestStats::add(&self.stats.mqtt_payloads_rejected, 1);
                followup.push((database.clone(), rejected_row(&origin, &reason, prepared.payload_bytes)));
            }
        }
        IngestStats::add(&self.stats.mqtt_rows_written, rows);
        if rows > 0 {
            IngestStats::add(&self.stats.mqtt_messages_stored, 1);
        }
        if !followup.is_empty() {
            self.sink.write(followup).await?;
        }
        Ok(())
    }
}

/// Accepts plain TCP connections until `stop` turns true.
pub async fn serve(listener: TcpListener, ctx: Arc<MqttContext>, stop: watch::Receiver<bool>) {
    serve_with(listener, ctx, stop, None).await;
}

/// Accepts TLS connections until `stop` turns true.
pub async fn serve_tls(
    listener: TcpListener,
    ctx: Arc<MqttContext>,
    tls: Arc<rustls::ServerConfig>,
    stop: watch::Receiver<bool>,
) {
    serve_with(listener, ctx, stop, Some(tokio_rustls::TlsAcceptor::from(tls))).await;
}

async fn serve_with(
    listener: TcpListener,
    ctx: Arc<MqttContext>,
    mut stop: watch::Receiver<bool>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "MQTT accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = crate::mqtt::stopped(&mut stop) => break,
        };
        let Ok(permit) = ctx.connections.clone().try_acquire_owned() else {
            IngestStats::add(&ctx.stats.mqtt_connections_refused, 1);
            tracing::warn!(%peer, limit = ctx.options.max_connections, "MQTT connection refused: too many connections");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let ctx = ctx.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            let _permit = permit;
            match tls {
                None => connection::run(tcp, peer, None, ctx, stop).await,
                Some(acceptor) => {
                    let timeout = ctx.options.connect_timeout;
                    let stream = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            IngestStats::add(&ctx.stats.mqtt_connections_refused, 1);
                            tracing::warn!(%peer, error = %e, "MQTT TLS handshake refused");
                            return;
                        }
                        Err(_) => {
                            tracing::warn!(%peer, "MQTT TLS handshake timed out");
                            return;
                        }
                    };
                    let identity =
                        stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(tls::identity_of);
                    connection::run(stream, peer, identity, ctx, stop).await;
                }
            }
        });
        // Reap finished connection tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}
    }
    // Connections see `stop` too and say goodbye; give them a moment.
    let _ = tokio::time::timeout(Duration::from_secs(5), async { while tasks.join_next().await.is_some() {} }).await;
}

/// The address a listener is bound to, for logs.
pub fn describe(addr: &SocketAddr, tls: bool) -> String {
    format!("{}://{addr}", if tls { "mqtts" } else { "mqtt" })
}
