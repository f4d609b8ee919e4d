//! What a small SQL query costs in-process, before any network: a session,
//! parsing, logical and physical planning, and running it. The floor every
//! Flight SQL or HTTP query pays on top of its round trip.
//!
//! Run: `cargo bench -p telemark-engine --features sql --bench sql`

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark code: a panic is a failure")]

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use datafusion::prelude::SessionContext;
use telemark_engine::query::QueryEngine;
use telemark_engine::{Database, Options, WriteBatch};

const DEVICES: usize = 100;
const STEPS: i64 = 1_000;
/// A whole minute (2023-11-14T22:13:00Z), so an hour from it holds 60 one-minute buckets.
const T0: i64 = 1_699_999_980_000_000_000;

/// 100 trucks × 1 000 readings 10 s apart, flushed to segments.
fn database(dir: &std::path::Path) -> Arc<Database> {
    let db = Arc::new(Database::open(dir, Options { background_flush: false, ..Options::default() }).expect("open"));
    let mut b = WriteBatch::new("readings");
    for step in 0..STEPS {
        for d in 0..DEVICES {
            let x = (step as f64 * 0.1 + d as f64).sin();
            b.row(T0 + step * 10_000_000_000)
                .tag("name", format!("truck-{d}"))
                .tag("fleet", ["North", "South"][d % 2])
                .field("velocity", (x * 6000.0).round() / 100.0)
                .field("fuel", ((x + 1.0) * 5000.0).round() / 100.0);
        }
    }
    let _ = db.write("fleet", &b).expect("write");
    db.flush().expect("flush");
    db
}

/// An hour of one truck in 1-minute averages, as a Grafana panel asks it.
fn panel_sql() -> String {
    let (from, to) = (T0 + 3_600_000_000_000, T0 + 7_200_000_000_000);
    format!(
        "SELECT date_bin(INTERVAL '1 minute', time) AS t, avg(velocity) AS v FROM readings \
         WHERE name = 'truck-42' AND time >= to_timestamp_nanos({from}) AND time < to_timestamp_nanos({to}) \
         GROUP BY t ORDER BY t"
    )
}

fn block<F: std::future::Future>(rt: &tokio::runtime::Runtime, f: F) -> F::Output {
    rt.block_on(f)
}

fn small_queries(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = database(dir.path());
    let engine = QueryEngine::new(db);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let panel = panel_sql();
    let fleet = "SELECT fleet, avg(velocity), max(fuel) FROM readings GROUP BY fleet";

    let mut g = c.benchmark_group("sql");
    g.bench_function("session", |b| b.iter(|| engine.context(Some("fleet"))));
    let plan = |ctx: &SessionContext, sql: &str| {
        block(&rt, async {
            let df = QueryEngine::plan(ctx, sql).await.expect("plan");
            df.create_physical_plan().await.expect("physical plan")
        })
    };
    let run = |sql: &str| {
        block(&rt, async {
            let df = engine.sql(Some("fleet"), sql).await.expect("plan");
            df.collect().await.expect("run")
        })
    };
    g.bench_function("plan/select_1", |b| b.iter(|| plan(&engine.context(Some("fleet")), "SELECT 1")));
    g.bench_function("run/select_1", |b| b.iter(|| run("SELECT 1")));
    g.bench_function("plan/panel_one_truck_1h", |b| b.iter(|| plan(&engine.context(Some("fleet")), &panel)));
    g.bench_function("plan/panel_one_truck_1h_logical_only", |b| {
        b.iter(|| block(&rt, QueryEngine::plan(&engine.context(Some("fleet")), &panel)).expect("plan"))
    });
    g.bench_function("plan/panel_one_truck_1h_analyzed_optimized_logical", |b| {
        b.iter(|| {
            let ctx = engine.context(Some("fleet"));
            let df = block(&rt, QueryEngine::plan(&ctx, &panel)).expect("plan");
            ctx.state().optimize(df.logical_plan()).expect("optimize")
        })
    });
    g.bench_function("run/panel_one_truck_1h", |b| {
        b.iter(|| assert_eq!(run(&panel).iter().map(|b| b.num_rows()).sum::<usize>(), 60))
    });
    g.sample_size(20);
    g.bench_function("run/fleet_avg_by_tag_100k_rows", |b| {
        b.iter(|| assert_eq!(run(fleet).iter().map(|b| b.num_rows()).sum::<usize>(), 2))
    });
    g.finish();
}

criterion_group!(benches, small_queries);
criterion_main!(benches);
