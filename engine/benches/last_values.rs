//! The last-value cache at 1 M series: what it costs on ingest (same run,
//! cache on against off), its memory, the latency of "the latest values of
//! one device" and "of the whole fleet" (API and SQL, p50/p99), the
//! snapshot a flush writes, and how long open takes with the snapshot
//! against a rebuild by scanning.
//!
//! Run: `cargo bench -p telemark-engine --features sql --bench last_values`
//! (`LV_SERIES=100000` for a smaller fleet).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark code: a panic is a failure")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use telemark_engine::query::QueryEngine;
use telemark_engine::{Database, Durability, Options, TagFilter, WriteBatch};

const FIELDS: [&str; 7] = ["latitude", "longitude", "elevation", "velocity", "heading", "grade", "fuel_consumption"];

fn batch(first_device: usize, devices: usize, step: i64) -> WriteBatch {
    let mut b = WriteBatch::new("readings");
    for d in first_device..first_device + devices {
        let x = (step as f64 * 0.1 + d as f64).sin();
        let mut w = b
            .row(1_700_000_000_000_000_000 + step * 10_000_000_000 + d as i64)
            .tag("name", format!("truck-{d}"))
            .tag("fleet", ["North", "South", "East", "West"][d % 4]);
        for (i, f) in FIELDS.iter().enumerate() {
            w = w.field(f, ((x * (i + 1) as f64 + 50.0) * 100.0).round() / 100.0);
        }
    }
    b
}

fn options(cache: bool) -> Options {
    let mut o = Options {
        background_flush: false,
        durability: Durability::Buffered,
        max_buffer_bytes: 4 << 30,
        max_buffer_memory: 8 << 30,
        last_value_cache: cache,
        ..Options::default()
    };
    o.compaction.background = false;
    o
}

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    format!("p50 {:>9.3} ms  p99 {:>9.3} ms  (n={})", ms(at(0.5)), ms(at(0.99)), samples.len())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Writes of 1 000 devices x 100 steps (a message per device each), cache
/// on and off alternately.
fn ingest_overhead() {
    let batches: Vec<WriteBatch> = (0..100).map(|s| batch(0, 1000, s)).collect();
    let rows = 100_000.0;
    let mut on = Vec::new();
    let mut off = Vec::new();
    for round in 0..10 {
        for cache in [round % 2 == 0, round % 2 == 1] {
            let dir = tempfile::tempdir().unwrap();
            let db = Database::open(dir.path(), options(cache)).unwrap();
            let started = Instant::now();
            for b in &batches {
                let _ = db.write("bench", b).unwrap();
            }
            let rate = rows / started.elapsed().as_secs_f64();
            if cache { on.push(rate) } else { off.push(rate) }
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (on, off) = (median(on), median(off));
    println!(
        "ingest, 1 000 devices x 7 fields, 100 writes of a row per device, buffered: cache off {:.2} M rows/s, on {:.2} M rows/s ({:.2}x)",
        off / 1e6,
        on / 1e6,
        on / off
    );
}

/// Writes `series` devices (a row each, and a second one for every tenth),
/// then flushes: (directory, database, write seconds, flush seconds).
fn load(series: usize, cache: bool) -> (tempfile::TempDir, Database, f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), options(cache)).unwrap();
    let started = Instant::now();
    for first in (0..series).step_by(10_000) {
        let _ = db.write("bench", &batch(first, 10_000.min(series - first), 0)).unwrap();
    }
    for first in (0..series).step_by(100_000) {
        let _ = db.write("bench", &batch(first, 10_000.min(series - first), 1)).unwrap();
    }
    let written = started.elapsed().as_secs_f64();
    let started = Instant::now();
    db.flush().unwrap();
    (dir, db, written, started.elapsed().as_secs_f64())
}

/// `SELECT name, fleet, last(latitude, time), last(longitude, time) ... GROUP BY name, fleet`
/// (TSBS last-loc) over 1 000 trucks with 1 000 rows of history each: from the
/// cache, and from the scan (a time filter that holds for every row keeps it there).
fn latest_per_truck() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(dir.path(), options(true)).unwrap());
    for step in 0..1000 {
        let _ = db.write("bench", &batch(0, 1000, step)).unwrap();
    }
    db.flush().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let engine = QueryEngine::new(db.clone());
    let select =
        "SELECT name, fleet, last(latitude, time) AS latitude, last(longitude, time) AS longitude FROM readings";
    let group = "GROUP BY name, fleet";
    let cached = format!("{select} WHERE fleet = 'North' {group}");
    let scanned = format!("{select} WHERE fleet = 'North' AND time >= to_timestamp(0) {group}");
    let mut times = Vec::new();
    for sql in [&cached, &scanned] {
        let mut samples = Vec::new();
        let mut answer = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let batches = rt.block_on(async { engine.sql(Some("bench"), sql).await.unwrap().collect().await.unwrap() });
            samples.push(t.elapsed());
            answer = batches;
        }
        assert_eq!(answer.iter().map(|b| b.num_rows()).sum::<usize>(), 250);
        samples.sort();
        times.push(samples[samples.len() / 2]);
    }
    println!(
        "latest position per truck (250 of 1 000 trucks, 1 M rows): cache p50 {:.2} ms, scan p50 {:.2} ms ({:.3}x)",
        ms(times[0]),
        ms(times[1]),
        times[0].as_secs_f64() / times[1].as_secs_f64()
    );
}

fn main() {
    ingest_overhead();
    latest_per_truck();
    let series: usize = std::env::var("LV_SERIES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    {
        let (_dir, db, written, flushed) = load(series, false);
        println!("{series} series, cache off: written in {written:.1} s, flushed in {flushed:.2} s");
        db.close().unwrap();
    }
    let rss0 = rss_mib();
    let (dir, db, written, flushed) = load(series, true);
    let snapshot = std::fs::metadata(dir.path().join("lastvalues")).map(|m| m.len()).unwrap_or(0);
    println!("{series} series, cache on:  written in {written:.1} s, flushed in {flushed:.2} s (with the snapshot)");
    println!("snapshot {:.1} MB ({:.0} B per series)", snapshot as f64 / 1e6, snapshot as f64 / series as f64);
    let stats = db.stats();
    println!(
        "cache: {} series, about {:.0} MB ({:.0} B per series); process RSS {:.0} MiB over the start",
        stats.last_value_series,
        db.last_value_bytes() as f64 / 1e6,
        db.last_value_bytes() as f64 / series as f64,
        rss_mib() - rss0
    );
    db.close().unwrap();

    let started = Instant::now();
    let db = Arc::new(Database::open(dir.path(), options(true)).unwrap());
    println!("open with the snapshot: {:.2} s", started.elapsed().as_secs_f64());

    let device = |i: usize| format!("truck-{}", (i * 7919) % series);
    let mut one = Vec::new();
    for i in 0..2000 {
        let f = [TagFilter { tag: "name".into(), values: vec![device(i)] }];
        let t = Instant::now();
        let b = db.last_values("bench", "readings", &f, None).unwrap();
        one.push(t.elapsed());
        assert_eq!(b.num_rows(), 1);
    }
    println!("one device, API:       {}", percentiles(one));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let engine = QueryEngine::new(db.clone());
    let mut one_sql = Vec::new();
    for i in 0..500 {
        let sql = format!("SELECT * FROM last_values('readings') WHERE name = '{}'", device(i));
        let t = Instant::now();
        let rows: usize = rt.block_on(async {
            engine.sql(Some("bench"), &sql).await.unwrap().collect().await.unwrap().iter().map(|b| b.num_rows()).sum()
        });
        one_sql.push(t.elapsed());
        assert_eq!(rows, 1);
    }
    println!("one device, SQL:       {}", percentiles(one_sql));
    let mut all = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let b = db.last_values("bench", "readings", &[], None).unwrap();
        all.push(t.elapsed());
        assert_eq!(b.num_rows(), series);
    }
    println!("whole table, API:      {}", percentiles(all));
    let mut all_sql = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let rows: usize = rt.block_on(async {
            let df = engine.sql(Some("bench"), "SELECT * FROM last_values('readings')").await.unwrap();
            df.collect().await.unwrap().iter().map(|b| b.num_rows()).sum()
        });
        all_sql.push(t.elapsed());
        assert_eq!(rows, series);
    }
    println!("whole table, SQL:      {}", percentiles(all_sql));
    drop(engine);
    Arc::try_unwrap(db).unwrap().close().unwrap();

    std::fs::remove_file(dir.path().join("lastvalues")).unwrap();
    let started = Instant::now();
    let db = Database::open(dir.path(), options(true)).unwrap();
    println!("open without it (rebuilt by scanning every row): {:.2} s", started.elapsed().as_secs_f64());
    db.close().unwrap();
}
