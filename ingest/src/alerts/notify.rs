//! Notifications: the JSON published over MQTT, the Alertmanager v4
//! webhook body, and webhook delivery with retries.
//!
//! Each webhook has one delivery task that sends its notifications in
//! order (so per instance, firing always arrives before resolved), each
//! with an `Idempotency-Key` unique to the transition. A failure is
//! retried with jittered exponential backoff (the receiver's `Retry-After`
//! is honoured, capped at `max_backoff_secs`) until it succeeds or
//! `give_up_after` has passed; a 4xx answer other than 408 and 429 means the
//! receiver rejects the body, which retrying cannot fix, so it is dropped
//! (logged and counted). Every request has a timeout, so a hung receiver
//! holds only its own queue.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::eval::{Instance, State};

/// One `[[alert.webhook]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Name, used in rules' `sinks` and as the body's `receiver`.
    pub name: String,
    /// Where notifications are POSTed (http or https).
    pub url: String,
    /// Per request. Default 10.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// First retry delay. Default 1000.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff_ms: u64,
    /// Longest delay between attempts. Default 300.
    #[serde(default = "default_max_backoff")]
    pub max_backoff_secs: u64,
    /// A notification undelivered this long is dropped (logged, counted). Default `24h`.
    #[serde(default = "default_give_up")]
    pub give_up_after: String,
    /// Extra request headers (an `Authorization`, say).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

fn default_timeout() -> u64 {
    10
}
fn default_initial_backoff() -> u64 {
    1000
}
fn default_max_backoff() -> u64 {
    300
}
fn default_give_up() -> String {
    "24h".into()
}

/// A notification on its way to a sink.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub seq: u64,
    pub instance: Instance,
    /// Rendered annotations.
    pub annotations: BTreeMap<String, String>,
}

/// What a delivery task reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    pub seq: u64,
    pub sink: String,
    pub dropped: bool,
}

/// Webhook counters.
#[derive(Debug, Default)]
pub struct WebhookStats {
    pub delivered: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub dropped: AtomicU64,
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| "0001-01-01T00:00:00Z".into(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The MQTT payload: the instance's state as JSON.
pub fn mqtt_payload(n: &Outgoing) -> Vec<u8> {
    let i = &n.instance;
    serde_json::to_vec(&serde_json::json!({
        "rule": i.rule,
        "device": i.device,
        "state": i.state.as_str(),
        "labels": i.labels,
        "annotations": n.annotations,
        "value": i.value,
        "starts_at": i.fired_at.map(rfc3339),
        "ends_at": i.resolved_at.map(rfc3339),
        "fingerprint": i.fingerprint,
        "seq": n.seq,
    }))
    .unwrap_or_default()
}

/// The Alertmanager v4 webhook body for one notification.
pub fn alertmanager_body(receiver: &str, n: &Outgoing, external_url: &str) -> serde_json::Value {
    let i = &n.instance;
    let status = if i.state == State::Resolved { "resolved" } else { "firing" };
    let group_labels = serde_json::json!({ "alertname": i.rule });
    serde_json::json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{}\"}}", i.rule),
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": i.labels,
        "commonAnnotations": n.annotations,
        "externalURL": external_url,
        "alerts": [{
            "status": status,
            "labels": i.labels,
            "annotations": n.annotations,
            "startsAt": rfc3339(i.fired_at.unwrap_or(i.active_at)),
            "endsAt": i.resolved_at.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339),
            "generatorURL": external_url,
            "fingerprint": i.fingerprint,
        }],
    })
}

/// The idempotency key of a notification: the same on every retry and after a restart.
pub fn idempotency_key(n: &Outgoing) -> String {
    format!("{}-{}", n.instance.fingerprint, n.seq)
}

/// A small xorshift for jitter (no cryptographic need).
fn jitter(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let ms = at.timestamp_millis() - chrono::Utc::now().timestamp_millis();
    Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// One webhook's delivery loop: runs until `rx` closes.
pub async fn deliver(
    config: WebhookConfig,
    give_up_after: Duration,
    external_url: String,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Outgoing>,
    report: impl Fn(Delivered) + Send + 'static,
    stats: Arc<WebhookStats>,
) {
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(config.timeout_secs.max(1))).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(webhook = %config.name, error = %e, "cannot build the webhook client; its notifications stay queued");
            return;
        }
    };
    let mut seed = u64::try_from(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(1)).unwrap_or(1) | 1;
    let max_backoff = Duration::from_secs(config.max_backoff_secs.max(1));
    while let Some(n) = rx.recv().await {
        let body = alertmanager_body(&config.name, &n, &external_url);
        let key = idempotency_key(&n);
        let first = Instant::now();
        let mut attempt: u32 = 0;
        let dropped = loop {
            let mut req = client.post(&config.url).header("Idempotency-Key", &key).json(&body);
            for (k, v) in &config.headers {
                req = req.header(k, v);
            }
            let (wait, why) = match req.send().await {
                Ok(r) if r.status().is_success() => break false,
                Ok(r) if r.status().as_u16() == 429 || r.status().as_u16() == 408 || r.status().is_server_error() => {
                    (retry_after(r.headers()), format!("HTTP {}", r.status()))
                }
                Ok(r) => {
                    tracing::error!(webhook = %config.name, seq = n.seq, status = %r.status(), "the webhook receiver rejected a notification; dropped (retrying cannot fix a 4xx)");
                    break true;
                }
                Err(e) => (None, e.to_string()),
            };
            stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
            let base = Duration::from_millis(config.initial_backoff_ms.max(1))
                .saturating_mul(1u32 << attempt.min(20))
                .min(max_backoff);
            // Full jitter between half the backoff and all of it; a Retry-After is honoured as given.
            let wait = wait.unwrap_or_else(|| base.mul_f64(0.5 + 0.5 * jitter(&mut seed))).min(max_backoff);
            attempt = attempt.saturating_add(1);
            if first.elapsed() + wait > give_up_after {
                tracing::error!(webhook = %config.name, seq = n.seq, attempts = attempt, error = %why, "a notification could not be delivered within give_up_after; dropped");
                break true;
            }
            tracing::warn!(webhook = %config.name, seq = n.seq, attempt, error = %why, retry_in = ?wait, "webhook delivery failed; retrying");
            tokio::time::sleep(wait).await;
        };
        if dropped {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
        }
        report(Delivered { seq: n.seq, sink: config.name.clone(), dropped });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_alertmanagers() {
        let inst = Instance {
            rule: "hot".into(),
            device: "t-1".into(),
            fingerprint: "00ff".into(),
            labels: BTreeMap::from([("alertname".into(), "hot".into()), ("device_id".into(), "t-1".into())]),
            state: State::Resolved,
            value: 31.0,
            condition: false,
            active_at: 0,
            fired_at: Some(1_700_000_000_000),
            resolved_at: Some(1_700_000_060_000),
            cleared_at: None,
            last_time: 0,
            run: 0,
            clear_run: 0,
            seq: 0,
        };
        let n = Outgoing { seq: 7, instance: inst, annotations: BTreeMap::new() };
        let b = alertmanager_body("ops", &n, "http://telemark");
        assert_eq!(b["version"], "4");
        assert_eq!(b["status"], "resolved");
        assert_eq!(b["receiver"], "ops");
        assert_eq!(b["alerts"][0]["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(b["alerts"][0]["endsAt"], "2023-11-14T22:14:20.000Z");
        assert_eq!(b["alerts"][0]["labels"]["device_id"], "t-1");
        assert_eq!(idempotency_key(&n), "00ff-7");
    }
}
