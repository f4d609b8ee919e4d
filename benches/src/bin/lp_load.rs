//! `telemark-lp-load`: posts the fleet workload as line protocol to an
//! InfluxDB-compatible write endpoint and reports the ingest rate.
//!
//! ```text
//! telemark-lp-load --url 'http://127.0.0.1:8181/api/v2/write?bucket=fleet&precision=ns' --trucks 1000 --hours 1
//! ```
//! The same bytes go to every target, so Telemark, VictoriaMetrics
//! (`http://…:8428/write`) and InfluxDB 1.x (`http://…:8086/write?db=fleet`)
//! are compared on equal input. Prints one JSON object.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use telemark_benches::fleet::{Fleet, FleetSpec};
use tokio::sync::Mutex;

#[derive(Debug, Parser)]
#[command(about = "HTTP line protocol ingest benchmark")]
struct Args {
    /// Write URL, query string included.
    #[arg(long)]
    url: String,
    /// `Authorization` header value, if any.
    #[arg(long)]
    auth: Option<String>,
    /// Trucks.
    #[arg(long, default_value_t = 1000)]
    trucks: usize,
    /// Hours.
    #[arg(long, default_value_t = 1.0)]
    hours: f64,
    /// Seconds between reports.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Lines per request.
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    /// Concurrent requests.
    #[arg(long, default_value_t = 4)]
    connections: usize,
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let a = Args::parse();
    // Generate everything first, so generation is not timed.
    let mut fleet = Fleet::new(FleetSpec {
        trucks: a.trucks,
        hours: a.hours,
        interval_secs: a.interval,
        seed: a.seed,
        ..FleetSpec::default()
    });
    let mut bodies = Vec::new();
    let (mut lines, mut values, mut bytes) = (0usize, 0usize, 0usize);
    let mut body = String::new();
    let mut in_body = 0;
    while let Some(rows) = fleet.next_step() {
        for row in &rows {
            fleet.line_protocol(row, &mut body);
            lines += 1;
            values += row.fields.len();
            in_body += 1;
            if in_body == a.batch {
                bytes += body.len();
                bodies.push(Bytes::from(std::mem::take(&mut body)));
                in_body = 0;
            }
        }
    }
    if !body.is_empty() {
        bytes += body.len();
        bodies.push(Bytes::from(body));
    }
    let queue = Arc::new(Mutex::new(bodies.into_iter()));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..a.connections.max(1) {
        let queue = queue.clone();
        let client = client.clone();
        let url = a.url.clone();
        let auth = a.auth.clone();
        workers.push(tokio::spawn(async move {
            loop {
                let Some(body) = queue.lock().await.next() else { return Ok::<(), String>(()) };
                let mut req = http::Request::post(&url).header("content-type", "text/plain; charset=utf-8");
                if let Some(auth) = &auth {
                    req = req.header("authorization", auth);
                }
                let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
                let resp = client.request(req).await.map_err(|e| format!("POST {url}: {e}"))?;
                let status = resp.status();
                let text = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
                if !status.is_success() {
                    return Err(format!("POST {url}: {status}: {}", String::from_utf8_lossy(&text)));
                }
            }
        }));
    }
    for w in workers {
        w.await.map_err(|e| e.to_string())??;
    }
    let secs = started.elapsed().as_secs_f64();
    #[expect(clippy::cast_precision_loss, reason = "rates")]
    let report = serde_json::json!({
        "url": a.url,
        "lines": lines,
        "values": values,
        "bytes": bytes,
        "seconds": secs,
        "lines_per_sec": lines as f64 / secs,
        "values_per_sec": values as f64 / secs,
    });
    println!("{report}");
    Ok(())
}
