//! Telemark embedded quickstart: opens (or creates) `./telemark-data`, writes
//! an hour of simulated truck telemetry, flushes it to compressed segments,
//! reads it back with a tag filter and a time range, and prints what it did.
//!
//! Run it with `cargo run --release -p telemark-engine --example quickstart`
//! (a data directory can be passed as the first argument).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is a test failure")]

use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use telemark_engine::{Database, Options, ScanRequest, WriteBatch};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "telemark-data".to_string());
    let (db, report) = Database::open_with_report(&dir, Options::default())?;
    println!("opened {dir}: {} segments, {} WAL records replayed", report.segments, report.wal_records_replayed);

    // One hour of 10-second readings from 100 trucks, starting at a fixed instant
    // plus the segments already present, so every run adds new data.
    let start = 1_700_000_000_000_000_000i64 + db.stats().segments as i64 * 3_600_000_000_000;
    let trucks = 100;
    let started = Instant::now();
    let mut rows = 0;
    for step in 0..360i64 {
        let t = start + step * 10_000_000_000;
        let mut batch = WriteBatch::new("readings");
        for truck in 0..trucks {
            let phase = (step as f64 / 60.0) + truck as f64;
            batch
                .row(t)
                .tag("name", format!("truck-{truck}"))
                .tag("fleet", ["North", "South", "East", "West"][truck % 4])
                .field("latitude", ((45.0 + phase.sin()) * 1e5).round() / 1e5)
                .field("longitude", ((7.0 + phase.cos()) * 1e5).round() / 1e5)
                .field("velocity", ((40.0 + 20.0 * (phase * 3.0).sin()) * 10.0).round() / 10.0)
                .field("fuel_state", ((1.0 - step as f64 / 720.0) * 100.0).round() / 100.0);
        }
        rows += db.write("fleet", &batch)?.rows_written;
    }
    let write_secs = started.elapsed().as_secs_f64();
    println!(
        "wrote {rows} rows ({:.0} rows/s, each batch fsynced before it was acknowledged)",
        rows as f64 / write_secs
    );

    db.flush()?;
    let stats = db.stats();
    println!("flushed: {} segments, {} bytes for {} rows", stats.segments, stats.segment_bytes, stats.segment_rows);

    let request = ScanRequest::new("fleet", "readings")
        .filter_tag("name", ["truck-7"])
        .time_range(start, start + 600_000_000_000)
        .project(["time", "velocity"]);
    let mut n = 0;
    let mut sum = 0.0;
    for batch in db.scan(&request)? {
        let batch = batch?;
        let v = batch.column(1).as_primitive::<Float64Type>();
        n += batch.num_rows();
        sum += v.iter().flatten().sum::<f64>();
    }
    println!("truck-7, first 10 minutes: {n} readings, mean velocity {:.1}", sum / n.max(1) as f64);
    db.close()?;
    Ok(())
}
