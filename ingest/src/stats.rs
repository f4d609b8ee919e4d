//! Ingest counters, rendered by the server at `/metrics`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Counters of every ingest path; all monotonic except the connection gauge.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Line protocol lines stored (HTTP and MQTT).
    pub lines_written: AtomicU64,
    /// Line protocol lines rejected.
    pub lines_rejected: AtomicU64,
    /// MQTT connections open now.
    pub mqtt_connections: AtomicI64,
    /// MQTT connections accepted since start.
    pub mqtt_connections_total: AtomicU64,
    /// Connections refused (limit, authentication, TLS).
    pub mqtt_connections_refused: AtomicU64,
    /// PUBLISH packets received from clients (and the bridge).
    pub mqtt_messages_received: AtomicU64,
    /// Messages whose rows were stored.
    pub mqtt_messages_stored: AtomicU64,
    /// Rows stored from MQTT.
    pub mqtt_rows_written: AtomicU64,
    /// Payloads a rule could not decode (kept in `_rejected`).
    pub mqtt_payloads_rejected: AtomicU64,
    /// Publishes refused by an identity policy.
    pub mqtt_policy_denied: AtomicU64,
    /// Connections closed for a malformed or oversized packet.
    pub mqtt_protocol_errors: AtomicU64,
    /// Messages delivered to subscribers.
    pub mqtt_messages_delivered: AtomicU64,
    /// Messages received through broker bridges.
    pub bridge_messages_received: AtomicU64,
}

impl IngestStats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// `(name, help, value)` for each counter, for a metrics exporter.
    pub fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("telemark_lines_written_total", "Line protocol lines stored.", g(&self.lines_written)),
            ("telemark_lines_rejected_total", "Line protocol lines rejected.", g(&self.lines_rejected)),
            ("telemark_mqtt_connections_total", "MQTT connections accepted.", g(&self.mqtt_connections_total)),
            ("telemark_mqtt_connections_refused_total", "MQTT connections refused.", g(&self.mqtt_connections_refused)),
            (
                "telemark_mqtt_messages_received_total",
                "MQTT PUBLISH packets received.",
                g(&self.mqtt_messages_received),
            ),
            (
                "telemark_mqtt_messages_stored_total",
                "MQTT messages whose rows were stored.",
                g(&self.mqtt_messages_stored),
            ),
            ("telemark_mqtt_rows_written_total", "Rows stored from MQTT.", g(&self.mqtt_rows_written)),
            (
                "telemark_mqtt_payloads_rejected_total",
                "MQTT payloads that could not be decoded (see _rejected).",
                g(&self.mqtt_payloads_rejected),
            ),
            (
                "telemark_mqtt_policy_denied_total",
                "MQTT publishes refused by an identity policy.",
                g(&self.mqtt_policy_denied),
            ),
            (
                "telemark_mqtt_protocol_errors_total",
                "MQTT connections closed for a malformed packet.",
                g(&self.mqtt_protocol_errors),
            ),
            (
                "telemark_mqtt_messages_delivered_total",
                "MQTT messages delivered to subscribers.",
                g(&self.mqtt_messages_delivered),
            ),
            (
                "telemark_bridge_messages_received_total",
                "Messages received from bridged brokers.",
                g(&self.bridge_messages_received),
            ),
        ]
    }

    /// Open MQTT connections.
    pub fn connections(&self) -> i64 {
        self.mqtt_connections.load(Ordering::Relaxed)
    }
}
