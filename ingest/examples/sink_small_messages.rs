//! How fast the ingest sink stores one-row messages, the shape MQTT devices
//! send: `connections` tasks each submit their share of `messages` one at a
//! time and wait for each to be durable, as a QoS 1 publisher does.
//!
//! ```text
//! cargo run -p telemark-ingest --example sink_small_messages -- [messages] [connections]
//! ```
//!
//! Rows follow the fleet benchmark: eight tags, `readings` (seven fields)
//! and `diagnostics` (three) in turn. The database is in a temporary
//! directory with the default options (fsync on every group commit).

use std::sync::Arc;
use std::time::Instant;

use telemark_engine::{Database, Options, WriteBatch};
use telemark_ingest::Sink;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn message(truck: usize, i: usize) -> WriteBatch {
    let time = 1_700_000_000_000_000_000 + i64::try_from(i).unwrap_or(0) * 10_000_000_000;
    let x = i as f64;
    let table = if i.is_multiple_of(2) { "readings" } else { "diagnostics" };
    let mut batch = WriteBatch::new(table);
    let row = batch
        .row(time)
        .tag("name", format!("truck_{truck}"))
        .tag("fleet", ["North", "South", "East", "West"][truck % 4])
        .tag("driver", format!("driver_{}", truck % 50))
        .tag("model", ["F-150", "G-2000", "H-2"][truck % 3])
        .tag("device_version", "v1.5")
        .tag("load_capacity", "1500")
        .tag("fuel_capacity", "150")
        .tag("nominal_fuel_consumption", "12");
    if table == "readings" {
        row.field("latitude", 52.1 + x * 1e-5)
            .field("longitude", 4.3 + x * 1e-5)
            .field("elevation", 120.0)
            .field("velocity", x % 90.0)
            .field("heading", x % 360.0)
            .field("grade", 0.5)
            .field("fuel_consumption", 11.5);
    } else {
        row.field("load", 900.0).field("fuel_state", 0.75).field("status", 0.0);
    }
    batch
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let messages: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let connections: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(64).max(1);
    let dir = tempfile::tempdir()?;
    let db = Arc::new(Database::open(dir.path(), Options::default())?);
    let sink = Sink::start(db.clone())?;

    // Built beforehand, so the clock measures the sink and the engine, not the builder.
    let shares: Vec<Vec<WriteBatch>> = (0..connections)
        .map(|truck| {
            let share = messages / connections + usize::from(truck < messages % connections);
            (0..share).map(|i| message(truck, i)).collect()
        })
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for (truck, share) in shares.into_iter().enumerate() {
        let sink = sink.clone();
        tasks.push(tokio::spawn(async move {
            for (i, batch) in share.into_iter().enumerate() {
                let results = sink.write(vec![("fleet".to_string(), batch)]).await?;
                for r in results {
                    let outcome = r?;
                    if outcome.rows_written != 1 {
                        return Err(format!("message {i} of truck {truck}: {outcome:?}").into());
                    }
                }
            }
            Ok::<_, BoxError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let elapsed = started.elapsed();
    let stats = db.stats();
    println!(
        "{messages} one-row messages from {connections} connections in {elapsed:.2?}: {:.0} msg/s; {} WAL fsyncs ({:.1} messages each), {} rows written",
        messages as f64 / elapsed.as_secs_f64(),
        stats.wal_syncs,
        messages as f64 / stats.wal_syncs.max(1) as f64,
        stats.rows_written,
    );
    Ok(())
}
