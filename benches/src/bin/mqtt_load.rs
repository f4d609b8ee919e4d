//! `telemark-mqtt-load`: MQTT publishers against Telemark's listener.
//!
//! Each publisher is one MQTT 3.1.1 connection sending the fleet workload's
//! JSON `readings` messages for its truck (topic `fleet/{fleet}/{name}/readings`)
//! at QoS 0 or 1 with up to `--inflight` unacknowledged messages. Reports
//! messages/s and points/s, PUBLISH→PUBACK latency (QoS 1), and
//! PUBLISH→queryable latency measured by a probe that publishes a marked
//! message every 100 ms and polls the SQL API until it is visible.
//! Throughput counts until the last message is stored (QoS 0 included:
//! the run waits until `count(*)` reaches the number sent).
//!
//! `--fleet-replay` instead sends the whole fleet workload of `--trucks`,
//! `--hours`, `--interval` and `--seed` — the rows `telemark-lp-load` posts,
//! both tables, duplicates and late rows included, one row a message, each
//! truck's in generator order — as JSON with every tag
//! (`Fleet::mqtt_json_all_tags`) on `fleet/{fleet}/{name}/{table}`, from
//! `--publishers` connections (trucks dealt round-robin; at most one per
//! truck). It needs rules mapping those topics to the tables, e.g.
//!
//! ```toml
//! [[mqtt.rule]]
//! topic = "fleet/{fleet}/{name}/readings"
//! database = "fleet"
//! table = "readings"
//! time_field = "timestamp"
//! time_unit = "ms"
//! tag_keys = ["driver", "model", "device_version", "load_capacity", "fuel_capacity", "nominal_fuel_consumption"]
//! # and the same for diagnostics
//! ```
//!
//! and a fresh database: it waits until `count(*)` of each table equals the
//! distinct rows sent (failing if it exceeds them, or after `--wait-secs`),
//! and reports messages/s, rows/s and field values/s up to then.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use clap::Parser;
use telemark_benches::fleet::{Fleet, FleetSpec};
use telemark_benches::stats::{Summary, ms};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, Semaphore};

#[derive(Debug, Parser)]
#[command(about = "MQTT ingest benchmark")]
struct Args {
    /// Listener address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// HTTP API base URL, for the visibility probe and the final count.
    #[arg(long, default_value = "http://127.0.0.1:8181")]
    http: String,
    /// Database the rule writes to.
    #[arg(long, default_value = "fleet")]
    db: String,
    /// Concurrent publishers (one truck each).
    #[arg(long, default_value_t = 100)]
    publishers: usize,
    /// Messages per publisher.
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// QoS 0 or 1.
    #[arg(long, default_value_t = 1)]
    qos: u8,
    /// Unacknowledged messages per publisher (QoS 1).
    #[arg(long, default_value_t = 20)]
    inflight: usize,
    /// Total messages per second across publishers; 0 = as fast as acks allow.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Seed of the fleet data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// API token (sent as the MQTT password and the HTTP bearer token).
    #[arg(long)]
    token: Option<String>,
    /// Idle device connections to open (CONNECT, then silence) and hold during the run.
    #[arg(long, default_value_t = 0)]
    idle: usize,
    /// Send the whole fleet workload (both tables) instead of `--messages` readings a publisher.
    #[arg(long)]
    fleet_replay: bool,
    /// Trucks (`--fleet-replay`).
    #[arg(long, default_value_t = 100)]
    trucks: usize,
    /// Hours of data (`--fleet-replay`).
    #[arg(long, default_value_t = 1.0)]
    hours: f64,
    /// Seconds between a truck's reports (`--fleet-replay`).
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// How long to wait for the rows to become visible after the last message (`--fleet-replay`).
    #[arg(long, default_value_t = 600)]
    wait_secs: u64,
}

/// Opens `n` connections that CONNECT (keep-alive 20 min) and then stay silent.
async fn open_idle(a: &Args, n: usize) -> Result<Vec<TcpStream>, String> {
    let mut held = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(256) {
        let opens = chunk.iter().map(|i| {
            let addr = a.mqtt.clone();
            let token = a.token.clone();
            let i = *i;
            async move {
                let mut s = TcpStream::connect(&addr).await.map_err(|e| format!("idle connection {i}: {e}"))?;
                let mut body = Vec::new();
                put_str(&mut body, b"MQTT");
                body.extend([4, 0x02 | if token.is_some() { 0xC0 } else { 0 }, 0x04, 0xB0]);
                put_str(&mut body, format!("idle-{i}").as_bytes());
                if let Some(t) = &token {
                    put_str(&mut body, b"bench");
                    put_str(&mut body, t.as_bytes());
                }
                s.write_all(&frame(0x10, &body)).await.map_err(|e| e.to_string())?;
                let mut ack = [0u8; 4];
                s.read_exact(&mut ack).await.map_err(|e| format!("idle connection {i}: no CONNACK: {e}"))?;
                if ack[3] != 0 {
                    return Err(format!("idle connection {i} refused: {ack:?}"));
                }
                Ok::<_, String>(s)
            }
        });
        for r in futures_join(opens).await {
            held.push(r?);
        }
    }
    Ok(held)
}

async fn futures_join<F>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&u16::try_from(s.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(s);
}

fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut n = body.len();
    loop {
        let mut b = u8::try_from(n % 128).unwrap_or(0);
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

fn connect_packet(client_id: &str, token: Option<&str>) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, b"MQTT");
    let flags = 0x02 | if token.is_some() { 0xC0 } else { 0 };
    body.extend([4, flags, 0, 60]);
    put_str(&mut body, client_id.as_bytes());
    if let Some(t) = token {
        put_str(&mut body, b"bench");
        put_str(&mut body, t.as_bytes());
    }
    frame(0x10, &body)
}

fn publish_packet(topic: &str, payload: &[u8], qos: u8, id: u16) -> Vec<u8> {
    let mut body = Vec::new();
    put_str(&mut body, topic.as_bytes());
    if qos > 0 {
        body.extend(id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    frame(0x30 | (qos << 1), &body)
}

/// Reads one frame: (first byte, body).
async fn read_frame(r: &mut tokio::io::ReadHalf<TcpStream>, buf: &mut BytesMut) -> Result<(u8, Vec<u8>), String> {
    loop {
        if buf.len() >= 2 {
            let mut len = 0usize;
            let mut i = 1;
            let mut complete = false;
            while i < buf.len() && i <= 4 {
                let b = buf[i];
                len |= usize::from(b & 0x7f) << (7 * (i - 1));
                i += 1;
                if b & 0x80 == 0 {
                    complete = true;
                    break;
                }
            }
            if complete && buf.len() >= i + len {
                let first = buf[0];
                buf.advance(i);
                let body = buf.split_to(len).to_vec();
                return Ok((first, body));
            }
        }
        let n = r.read_buf(buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed by the server".into());
        }
    }
}

struct Publisher {
    /// `(topic, payload)`; topics are shared, a replay holds millions of messages.
    messages: Vec<(Arc<str>, Vec<u8>)>,
    client_id: String,
}

async fn run_publisher(
    p: Publisher,
    a: Arc<Args>,
    start: Instant,
    per_pub_interval: Option<Duration>,
) -> Result<Vec<Duration>, String> {
    let stream = TcpStream::connect(&a.mqtt).await.map_err(|e| format!("connect {}: {e}", a.mqtt))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut r, mut w) = tokio::io::split(stream);
    w.write_all(&connect_packet(&p.client_id, a.token.as_deref())).await.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::new();
    let (first, body) = read_frame(&mut r, &mut buf).await?;
    if first != 0x20 || body.get(1) != Some(&0) {
        return Err(format!("CONNACK refused: {first:#x} {body:?}"));
    }
    let window = Arc::new(Semaphore::new(a.inflight.max(1)));
    let sent: Arc<Mutex<HashMap<u16, Instant>>> = Arc::default();
    let total = p.messages.len();
    let reader = {
        let window = window.clone();
        let sent = sent.clone();
        let qos = a.qos;
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(total);
            if qos == 0 {
                return Ok(latencies);
            }
            while latencies.len() < total {
                let (first, body) = read_frame(&mut r, &mut buf).await?;
                if first >> 4 == 4 {
                    let id =
                        u16::from_be_bytes([body.first().copied().unwrap_or(0), body.get(1).copied().unwrap_or(0)]);
                    if let Some(t) = sent.lock().await.remove(&id) {
                        latencies.push(t.elapsed());
                    }
                    window.add_permits(1);
                }
            }
            Ok::<_, String>(latencies)
        })
    };
    let mut id: u16 = 0;
    for (i, (topic, payload)) in p.messages.iter().enumerate() {
        if let Some(iv) = per_pub_interval {
            tokio::time::sleep_until((start + iv * u32::try_from(i).unwrap_or(u32::MAX)).into()).await;
        }
        if a.qos > 0 {
            window.acquire().await.map_err(|e| e.to_string())?.forget();
            id = id.checked_add(1).unwrap_or(1);
            sent.lock().await.insert(id, Instant::now());
        }
        w.write_all(&publish_packet(topic, payload, a.qos, id)).await.map_err(|e| e.to_string())?;
    }
    let latencies = reader.await.map_err(|e| e.to_string())??;
    let _ = w.write_all(&[0xe0, 0]).await;
    Ok(latencies)
}

async fn count(client: &Client, a: &Args, sql: &str) -> Result<u64, String> {
    let url = format!("{}/api/v3/query_sql?db={}&format=json&q={}", a.http, a.db, urlencode(sql));
    let mut req = http::Request::get(&url);
    if let Some(t) = &a.token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(http_body_util::Full::new(bytes::Bytes::new())).map_err(|e| e.to_string())?;
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.map_err(|e| e.to_string())?.to_bytes();
    if !status.is_success() {
        // The table does not exist before the first message lands.
        return Ok(0);
    }
    let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(v.get(0).and_then(|r| r.get("n")).and_then(serde_json::Value::as_u64).unwrap_or(0))
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Publishes a marked message every 100 ms and times until a query sees it.
async fn probe(
    a: Arc<Args>,
    client: Client,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Result<Vec<Duration>, String> {
    let stream = TcpStream::connect(&a.mqtt).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut r, mut w) = tokio::io::split(stream);
    w.write_all(&connect_packet("bench-probe", a.token.as_deref())).await.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::new();
    read_frame(&mut r, &mut buf).await?;
    let mut out = Vec::new();
    let mut k = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        k += 1;
        let name = format!("probe_{k}");
        let payload = format!(r#"{{"timestamp":{},"velocity":1.0}}"#, 1_733_011_200_000u64 + k);
        let t0 = Instant::now();
        w.write_all(&publish_packet(&format!("fleet/probe/{name}/readings"), payload.as_bytes(), 0, 0))
            .await
            .map_err(|e| e.to_string())?;
        let sql = format!("SELECT count(*) AS n FROM readings WHERE name = '{name}'");
        loop {
            if count(&client, &a, &sql).await? >= 1 {
                out.push(t0.elapsed());
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                return Err(format!("probe message {name} not visible after 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let a = Arc::new(Args::parse());
    if a.fleet_replay { fleet_replay(a).await } else { devices(a).await }
}

/// The whole fleet workload over MQTT, then wait until every row is visible.
async fn fleet_replay(a: Arc<Args>) -> Result<(), String> {
    let mut fleet = Fleet::new(FleetSpec {
        trucks: a.trucks,
        hours: a.hours,
        interval_secs: a.interval,
        seed: a.seed,
        ..FleetSpec::default()
    });
    let n = a.publishers.clamp(1, a.trucks.max(1));
    let mut publishers: Vec<Publisher> =
        (0..n).map(|i| Publisher { messages: Vec::new(), client_id: format!("fleet-replay-{}-{i}", a.seed) }).collect();
    // Generated before the clock starts, like telemark-lp-load's bodies.
    let mut topics: HashMap<String, Arc<str>> = HashMap::new();
    let mut distinct: HashMap<&'static str, std::collections::HashSet<(usize, i64)>> = HashMap::new();
    let (mut messages, mut values, mut bytes) = (0usize, 0usize, 0usize);
    while let Some(rows) = fleet.next_step() {
        for row in &rows {
            let (topic, payload) = fleet.mqtt_json_all_tags(row);
            let topic = topics.entry(topic).or_insert_with_key(|t| Arc::from(t.as_str())).clone();
            distinct.entry(row.table).or_default().insert((row.truck, row.time));
            messages += 1;
            values += row.fields.len();
            bytes += payload.len();
            if let Some(p) = publishers.get_mut(row.truck % n) {
                p.messages.push((topic, payload.into_bytes()));
            }
        }
    }
    let expected: Vec<(&str, u64)> = {
        let mut e: Vec<_> = distinct.iter().map(|(t, rows)| (*t, rows.len() as u64)).collect();
        e.sort_unstable();
        e
    };
    drop(distinct);
    let client: Client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let interval = (a.rate > 0).then(|| {
        #[expect(clippy::cast_precision_loss, reason = "a rate")]
        let per_pub = a.rate as f64 / n as f64;
        Duration::from_secs_f64(1.0 / per_pub)
    });
    let start = Instant::now();
    let tasks: Vec<_> =
        publishers.into_iter().map(|p| tokio::spawn(run_publisher(p, a.clone(), start, interval))).collect();
    let mut acks = Vec::with_capacity(messages);
    for t in tasks {
        acks.extend(t.await.map_err(|e| e.to_string())??);
    }
    let sent_secs = start.elapsed().as_secs_f64();
    let mut seen = Vec::with_capacity(expected.len());
    loop {
        seen.clear();
        for (table, _) in &expected {
            seen.push(count(&client, &a, &format!("SELECT count(*) AS n FROM {table}")).await?);
        }
        let report = || {
            expected
                .iter()
                .zip(&seen)
                .map(|((t, want), got)| format!("{t}: {got} of {want}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if expected.iter().zip(&seen).any(|((_, want), got)| got > want) {
            return Err(format!("more rows than distinct rows sent ({}): is the database fresh?", report()));
        }
        if expected.iter().zip(&seen).all(|((_, want), got)| got == want) {
            break;
        }
        if start.elapsed().as_secs_f64() > sent_secs + a.wait_secs as f64 {
            return Err(format!("rows visible {} s after the last message: {}", a.wait_secs, report()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored_secs = start.elapsed().as_secs_f64();
    let ack = Summary::of(&mut acks);
    #[expect(clippy::cast_precision_loss, reason = "rates")]
    let report = serde_json::json!({
        "mode": "fleet-replay",
        "trucks": a.trucks,
        "hours": a.hours,
        "interval": a.interval,
        "seed": a.seed,
        "publishers": n,
        "qos": a.qos,
        "inflight": a.inflight,
        "messages": messages,
        "rows_sent": messages,
        "values": values,
        "payload_bytes": bytes,
        "rows": expected.iter().map(|(t, n)| ((*t).to_string(), serde_json::Value::from(*n))).collect::<serde_json::Map<_, _>>(),
        "send_seconds": sent_secs,
        "stored_seconds": stored_secs,
        "messages_per_sec": messages as f64 / stored_secs,
        "rows_per_sec": messages as f64 / stored_secs,
        "values_per_sec": values as f64 / stored_secs,
        "puback_p50_ms": ms(ack.p50), "puback_p99_ms": ms(ack.p99),
    });
    println!("{report}");
    Ok(())
}

/// Device-style publishers, one truck each, sending `--messages` readings.
async fn devices(a: Arc<Args>) -> Result<(), String> {
    // Times start now, so runs against the same server never overwrite each other's rows.
    let now_ns = i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
    )
    .unwrap_or(0);
    let start_ns = now_ns - now_ns % 1_000_000_000;
    let mut fleet =
        Fleet::new(FleetSpec { trucks: a.publishers, hours: 1e9, interval_secs: 10, seed: a.seed, start_ns });
    let mut publishers: Vec<Publisher> = (0..a.publishers)
        .map(|i| Publisher { messages: Vec::with_capacity(a.messages), client_id: format!("bench-{}-{i}", a.seed) })
        .collect();
    let mut points = 0usize;
    // The generator repeats a few rows (as gateways do); they would overwrite, not add, so send each once.
    let mut seen = std::collections::HashSet::new();
    while publishers.iter().any(|p| p.messages.len() < a.messages) {
        let Some(rows) = fleet.next_step() else { break };
        for row in rows.iter().filter(|r| r.table == "readings") {
            if let Some(p) = publishers.get_mut(row.truck)
                && p.messages.len() < a.messages
                && seen.insert((row.truck, row.time))
            {
                let (topic, payload) = fleet.mqtt_json(row);
                points += row.fields.len();
                p.messages.push((topic.into(), payload.into_bytes()));
            }
        }
    }
    let total: usize = publishers.iter().map(|p| p.messages.len()).sum();
    let client: Client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let this_run = format!(
        "SELECT count(*) AS n FROM readings WHERE time >= to_timestamp_nanos({start_ns}) AND name NOT LIKE 'probe%'"
    );
    let interval = (a.rate > 0).then(|| {
        #[expect(clippy::cast_precision_loss, reason = "a rate")]
        let per_pub = a.rate as f64 / a.publishers.max(1) as f64;
        Duration::from_secs_f64(1.0 / per_pub)
    });
    let idle_started = Instant::now();
    let idle = open_idle(&a, a.idle).await?;
    let idle_secs = idle_started.elapsed().as_secs_f64();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = tokio::spawn(probe(a.clone(), client.clone(), stop.clone()));
    let start = Instant::now();
    let tasks: Vec<_> =
        publishers.into_iter().map(|p| tokio::spawn(run_publisher(p, a.clone(), start, interval))).collect();
    let mut acks = Vec::new();
    for t in tasks {
        acks.extend(t.await.map_err(|e| e.to_string())??);
    }
    let sent_secs = start.elapsed().as_secs_f64();
    // Done when every message is stored (rows with the same truck and time overwrite, so count distinct rows sent).
    let expected = total as u64;
    loop {
        let n = count(&client, &a, &this_run).await?;
        if n >= expected {
            break;
        }
        if start.elapsed() > Duration::from_secs(600) {
            return Err(format!("only {n} of {expected} rows visible after 600 s"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stored_secs = start.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut visible = prober.await.map_err(|e| e.to_string())??;
    let ack = Summary::of(&mut acks);
    let vis = Summary::of(&mut visible);
    #[expect(clippy::cast_precision_loss, reason = "rates")]
    let report = serde_json::json!({
        "publishers": a.publishers,
        "qos": a.qos,
        "messages": total,
        "points": points,
        "target_rate": a.rate,
        "send_seconds": sent_secs,
        "stored_seconds": stored_secs,
        "messages_per_sec": total as f64 / stored_secs,
        "points_per_sec": points as f64 / stored_secs,
        "puback_p50_ms": ms(ack.p50), "puback_p99_ms": ms(ack.p99),
        "visible_p50_ms": ms(vis.p50), "visible_p99_ms": ms(vis.p99), "visible_samples": vis.n,
        "idle_connections": idle.len(), "idle_connect_seconds": idle_secs,
    });
    drop(idle);
    println!("{report}");
    Ok(())
}
