//! The bridge: Telemark subscribes to an existing broker (mosquitto, EMQX,
//! HiveMQ, AWS IoT Core) and stores what arrives through the topic rules.
//!
//! It connects with a fixed client id and a persistent session
//! (clean session = 0) and subscribes at QoS 1, acknowledging each message
//! only once its rows are durable. Messages published while Telemark is
//! down wait in the broker's session and arrive when it is back; a message
//! that was stored but not yet acknowledged when the connection dropped is
//! redelivered and overwrites its rows (same series and time) rather than
//! duplicating them when the payload carries its time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS, TlsConfiguration, Transport};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::mqtt::{MqttContext, now_ns};
use crate::rules::Publish;
use crate::stats::IngestStats;

/// One `[[mqtt.bridge]]` as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// `mqtt://host:1883` or `mqtts://host:8883`.
    pub url: String,
    /// Client id on the broker; it names the persistent session, so keep it stable.
    pub client_id: String,
    /// Topic filters to subscribe to (default: the filters of all rules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// Username on the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password on the broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// CA certificate (PEM file) for mqtts:// brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<std::path::PathBuf>,
    /// Client certificate (PEM file), e.g. for AWS IoT Core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<std::path::PathBuf>,
    /// Client key (PEM file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<std::path::PathBuf>,
    /// Keep-alive in seconds.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_secs: u64,
    /// Largest message accepted from the broker, in bytes.
    #[serde(default = "default_max_packet")]
    pub max_packet_bytes: usize,
}

fn default_keep_alive() -> u64 {
    30
}
fn default_max_packet() -> usize {
    1 << 20
}

/// A started bridge's settings, checked.
#[derive(Debug, Clone)]
pub struct Bridge {
    config: BridgeConfig,
    host: String,
    port: u16,
    tls: Option<TlsConfiguration>,
    topics: Vec<String>,
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("bridge {what} {}: {e}", path.display()))
}

impl Bridge {
    /// Checks a configured bridge; `rule_filters` are subscribed when it names no topics.
    pub fn new(config: BridgeConfig, rule_filters: &[String]) -> Result<Bridge, String> {
        let at = |m: String| format!("mqtt bridge `{}`: {m}", config.url);
        let (tls, rest) = if let Some(r) = config.url.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = config.url.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(at("the url must start with mqtt:// or mqtts://".into()));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse::<u16>().map_err(|_| at(format!("bad port `{p}`")))?),
            None => (rest.to_string(), if tls { 8883 } else { 1883 }),
        };
        if host.is_empty() {
            return Err(at("no host".into()));
        }
        if config.client_id.is_empty() {
            return Err(at("client_id must be set: it names the persistent session on the broker".into()));
        }
        let topics = if config.topics.is_empty() { rule_filters.to_vec() } else { config.topics.clone() };
        if topics.is_empty() {
            return Err(at("no topics to subscribe to: set `topics` or configure [[mqtt.rule]]s".into()));
        }
        for t in &topics {
            crate::topic::validate_topic_filter(t).map_err(|e| at(e.to_string()))?;
        }
        let tls = if tls {
            use rustls_pki_types::pem::PemObject;
            use rustls_pki_types::{CertificateDer, PrivateKeyDer};
            let mut roots = rustls::RootCertStore::empty();
            let ca =
                config.ca.as_ref().ok_or_else(|| at("mqtts:// needs `ca` (the broker's CA certificate)".into()))?;
            for c in CertificateDer::pem_slice_iter(&read(ca, "ca")?) {
                roots.add(c.map_err(|e| at(format!("ca: {e}")))?).map_err(|e| at(format!("ca: {e}")))?;
            }
            let builder =
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .map_err(|e| at(e.to_string()))?
                    .with_root_certificates(roots);
            let cfg = match (&config.cert, &config.key) {
                (Some(cert), Some(key)) => {
                    let chain = CertificateDer::pem_slice_iter(&read(cert, "cert")?)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| at(format!("cert: {e}")))?;
                    let key = PrivateKeyDer::from_pem_slice(&read(key, "key")?).map_err(|e| at(format!("key: {e}")))?;
                    builder.with_client_auth_cert(chain, key).map_err(|e| at(format!("client certificate: {e}")))?
                }
                (None, None) => builder.with_no_client_auth(),
                _ => return Err(at("give both `cert` and `key`, or neither".into())),
            };
            Some(TlsConfiguration::Rustls(Arc::new(cfg)))
        } else {
            None
        };
        Ok(Bridge { config, host, port, tls, topics })
    }

    fn options(&self) -> MqttOptions {
        let mut o = MqttOptions::new(self.config.client_id.clone(), self.host.clone(), self.port);
        o.set_keep_alive(Duration::from_secs(self.config.keep_alive_secs.max(5)))
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_max_packet_size(self.config.max_packet_bytes, self.config.max_packet_bytes)
            .set_inflight(64);
        if let Some(user) = &self.config.username {
            o.set_credentials(user.clone(), self.config.password.clone().unwrap_or_default());
        }
        if let Some(tls) = &self.tls {
            o.set_transport(Transport::tls_with_config(tls.clone()));
        }
        o
    }

    /// Runs until `stop` turns true: connects, reconnects with backoff, stores and acknowledges.
    pub async fn run(self, ctx: Arc<MqttContext>, mut stop: watch::Receiver<bool>) {
        let url = self.config.url.clone();
        let (client, mut eventloop) = AsyncClient::new(self.options(), 256);
        let epoch = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel::<(u64, rumqttc::Publish)>(256);
        let writer = tokio::spawn(store_and_ack(ctx.clone(), client.clone(), epoch.clone(), rx, url.clone()));
        let mut backoff = Duration::from_millis(250);
        loop {
            let event = tokio::select! {
                e = eventloop.poll() => e,
                _ = crate::mqtt::stopped(&mut stop) => break,
            };
            match event {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    epoch.fetch_add(1, Ordering::AcqRel);
                    backoff = Duration::from_millis(250);
                    tracing::info!(%url, session_present = ack.session_present, "bridge connected");
                    if !ack.session_present {
                        for t in &self.topics {
                            if let Err(e) = client.try_subscribe(t.clone(), QoS::AtLeastOnce) {
                                tracing::error!(%url, topic = %t, error = %e, "bridge subscribe failed");
                            }
                        }
                    }
                }
                Ok(Event::Incoming(Incoming::SubAck(s))) => {
                    if s.return_codes.iter().any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure)) {
                        tracing::error!(%url, "the broker refused a bridge subscription");
                    }
                }
                Ok(Event::Incoming(Incoming::Publish(p))) => {
                    IngestStats::add(&ctx.stats.bridge_messages_received, 1);
                    if tx.send((epoch.load(Ordering::Acquire), p)).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(%url, error = %e, retry_in_ms = backoff.as_millis() as u64, "bridge connection lost");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = crate::mqtt::stopped(&mut stop) => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        drop(tx);
        let _ = writer.await;
        let _ = client.try_disconnect();
    }
}

/// Stores messages in arrival order, a group at a time (one fsync per group),
/// and acknowledges each once durable, unless its connection is gone.
async fn store_and_ack(
    ctx: Arc<MqttContext>,
    client: AsyncClient,
    epoch: Arc<AtomicU64>,
    mut rx: mpsc::Receiver<(u64, rumqttc::Publish)>,
    url: String,
) {
    let mut group = Vec::new();
    while rx.recv_many(&mut group, 256).await > 0 {
        let mut stores = Vec::new();
        for (ep, p) in group.drain(..) {
            let publish =
                Publish { topic: &p.topic, payload: &p.payload, client_id: "", identity: None, now_ns: now_ns() };
            let prepared = match ctx.prepare(&publish, None) {
                Ok(prepared) => Some(prepared),
                Err(e) => {
                    tracing::warn!(%url, topic = %p.topic, reason = %e, "bridged message refused; acknowledged and dropped");
                    None
                }
            };
            ctx.broker.publish(crate::mqtt::broker::Message {
                topic: p.topic.clone(),
                payload: p.payload.clone(),
                qos: p.qos as u8,
                retain: p.retain,
            });
            stores.push((ep, p, prepared));
        }
        let results = futures::future::join_all(stores.iter_mut().map(|(_, _, prepared)| {
            let ctx = ctx.clone();
            let prepared = prepared.take();
            async move {
                match prepared {
                    Some(pr) => ctx.store(pr).await.is_ok(),
                    None => true,
                }
            }
        }))
        .await;
        for ((ep, p, _), ok) in stores.into_iter().zip(results) {
            if !ok {
                // Not acknowledged: the broker redelivers it after a reconnect.
                tracing::error!(%url, topic = %p.topic, "storing a bridged message failed; it stays unacknowledged");
                continue;
            }
            if ep == epoch.load(Ordering::Acquire) {
                let _ = client.ack(&p).await;
            }
        }
    }
}
