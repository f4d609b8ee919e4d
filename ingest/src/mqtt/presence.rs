//! Client presence: every connect and disconnect of an MQTT client (with
//! the reason it ended) is stored as a row of `_telemark.presence` and
//! published on `$telemark/presence/<connected|disconnected>/<client_id>`,
//! as AWS IoT does on `$aws/events/presence/…`. Subscribing to
//! `$telemark/…` needs read access to `_telemark`.
//!
//! A client taken over by a new connection with the same id ends with
//! reason `taken_over`, and that disconnect is published after the new
//! connection's connect: consumers judging whether a device is online
//! should ignore `taken_over` disconnects.

use std::sync::Arc;

use telemark_engine::WriteBatch;

use super::MqttContext;
use super::broker::Message;
use crate::topic::filter_matches;

/// The database of presence rows.
pub const PRESENCE_DATABASE: &str = "_telemark";
/// The table of presence rows.
pub const PRESENCE_TABLE: &str = "presence";
/// Topics of presence events start with this.
pub const PRESENCE_PREFIX: &str = "$telemark/presence";

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent DISCONNECT.
    Clean,
    /// Nothing arrived within 1.5 × keep-alive.
    KeepAliveTimeout,
    /// Another connection with the same client id took the session.
    TakenOver,
    /// The client broke the protocol.
    ProtocolError,
    /// The socket closed or failed without DISCONNECT.
    ConnectionLost,
    /// The server is stopping.
    ServerShutdown,
    /// Storage failed; the server closed the connection.
    StorageError,
}

impl DisconnectReason {
    /// As stored and published.
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::Clean => "clean",
            DisconnectReason::KeepAliveTimeout => "keep_alive_timeout",
            DisconnectReason::TakenOver => "taken_over",
            DisconnectReason::ProtocolError => "protocol_error",
            DisconnectReason::ConnectionLost => "connection_lost",
            DisconnectReason::ServerShutdown => "server_shutdown",
            DisconnectReason::StorageError => "storage_error",
        }
    }
}

/// What other parts (alerting) learn of clients, and may veto.
pub trait ClientHooks: Send + Sync + std::fmt::Debug {
    /// A client connected, pinged or published: it is alive.
    fn alive(&self, client_id: &str);
    /// Whether a client with `grant` may subscribe to `filter`; the error says why not.
    fn may_subscribe(&self, grant: &super::Grant, filter: &str) -> Result<(), String>;
}

/// Refuses filters that can match presence topics without read access to `_telemark`.
pub fn check_presence_subscription(grant: &super::Grant, filter: &str) -> Result<(), String> {
    let sample = format!("{PRESENCE_PREFIX}/connected/x");
    if filter_matches(filter, &sample) && !grant.may_read(PRESENCE_DATABASE) {
        return Err(format!("{filter:?} matches presence topics, which need read access to {PRESENCE_DATABASE:?}"));
    }
    Ok(())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Records and publishes a presence event.
pub fn event(ctx: &Arc<MqttContext>, client_id: &str, peer: &str, reason: Option<DisconnectReason>) {
    let at = now_ms();
    let kind = if reason.is_some() { "disconnected" } else { "connected" };
    let payload = serde_json::json!({
        "client_id": client_id,
        "event": kind,
        "reason": reason.map(DisconnectReason::as_str),
        "peer": peer,
        "at": at,
    });
    ctx.broker.publish(Message {
        topic: format!("{PRESENCE_PREFIX}/{kind}/{}", client_id.replace(['/', '+', '#'], "_")),
        payload: serde_json::to_vec(&payload).unwrap_or_default().into(),
        qos: 1,
        retain: false,
    });
    let mut batch = WriteBatch::new(PRESENCE_TABLE);
    let row =
        batch.row(at.saturating_mul(1_000_000)).tag("client_id", client_id).field("event", kind).field("peer", peer);
    if let Some(r) = reason {
        row.field("reason", r.as_str());
    }
    let ctx = ctx.clone();
    tokio::spawn(async move {
        match ctx.sink.write(vec![(PRESENCE_DATABASE.to_string(), batch)]).await {
            Ok(results) => {
                for r in results {
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "storing a presence event failed");
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "presence event not stored: the writer stopped"),
        }
    });
}
