//! Partial aggregation by runs (`SeriesAggregateExec`) against DataFusion's
//! own aggregation of the same rows: random series (two tags, one of them
//! sometimes absent), out-of-order and repeated times, nulls, NaN and
//! infinities, written in several batches with flushes between them and read
//! in small scan batches, so runs cross batch, file and partition bounds.
//! Every query's `EXPLAIN` must show the run aggregate, and its answer must
//! equal DataFusion's over a memory table holding the rows the scan returns.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is a test failure")]

mod sql_rows;

use std::sync::Arc;

use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use proptest::prelude::*;
use sql_rows::{render, rows};
use telemark_engine::query::QueryEngine;
use telemark_engine::{Database, Options, WriteBatch};

const MS: i64 = 1_000_000;

#[derive(Debug, Clone)]
struct Row {
    device: u8,
    region: Option<u8>,
    time: i64,
    /// Sums and averages: quarters (exact in any order), NaN and infinities.
    f: Option<f64>,
    /// Minimum and maximum: halves and infinities, no NaN (DataFusion's own
    /// min/max with NaN depends on row order).
    g: Option<f64>,
    i: Option<i64>,
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => (-400i32..400).prop_map(|k| f64::from(k) / 4.0),
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(-0.0),
    ]
}

fn row() -> impl Strategy<Value = Row> {
    (
        0u8..5,
        proptest::option::weighted(0.8, 0u8..2),
        0i64..60_000,
        proptest::option::weighted(0.8, float()),
        proptest::option::weighted(
            0.8,
            prop_oneof![
                8 => (1i32..200).prop_map(|k| f64::from(k) / 2.0 - 50.0),
                1 => Just(f64::INFINITY),
                1 => Just(f64::NEG_INFINITY),
            ],
        ),
        proptest::option::weighted(0.7, -1_000i64..1_000),
    )
        .prop_map(|(device, region, ms, f, g, i)| Row { device, region, time: ms * MS, f, g, i })
}

fn write(db: &Database, rows: &[Row]) {
    let mut b = WriteBatch::new("t");
    for r in rows {
        let mut w = b.row(r.time).tag("device", format!("d{}", r.device));
        if let Some(region) = r.region {
            w = w.tag("region", format!("r{region}"));
        }
        if let Some(f) = r.f {
            w = w.field("f", f);
        }
        if let Some(g) = r.g {
            w = w.field("g", g);
        }
        if let Some(i) = r.i {
            let _ = w.field("i", i);
        }
    }
    let out = db.write("db", &b).unwrap();
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
}

const AGGREGATES: &str = "count(*) AS n, count(f) AS nf, sum(f) AS sf, avg(f) AS af, min(g) AS ming, max(g) AS maxg, \
     sum(g) AS sg, sum(i) AS si, min(i) AS mini, max(i) AS maxi, avg(i) AS ai, \
     avg(CAST(substr(device, 2) AS DOUBLE)) AS dn, max(length(region)) AS rl, min(device || region) AS dr";

fn queries() -> Vec<String> {
    vec![
        format!("SELECT device, {AGGREGATES} FROM t GROUP BY device"),
        format!("SELECT device, region, {AGGREGATES} FROM t GROUP BY device, region"),
        format!("SELECT region, {AGGREGATES} FROM t WHERE g > 0 GROUP BY region"),
        format!(
            "SELECT date_bin(INTERVAL '7 seconds', time) AS b, device, {AGGREGATES} FROM t \
             WHERE time >= '1970-01-01T00:00:05Z' GROUP BY 1, device"
        ),
        format!("SELECT date_bin(INTERVAL '20 seconds', time) AS b, {AGGREGATES} FROM t GROUP BY 1"),
        "SELECT region, device, avg(sf) FROM (SELECT device, region, sum(f) AS sf FROM t GROUP BY device, region) \
         GROUP BY region, device"
            .to_string(),
    ]
}

/// Conditions on fields that the scan applies itself (no `FilterExec` left),
/// with NaN, infinities, -0 and nulls in `f`.
const FIELD_FILTERS: &[&str] = &[
    "SELECT * FROM t WHERE f > 1.5",
    "SELECT * FROM t WHERE f >= 0 AND f < 10",
    "SELECT * FROM t WHERE f = 0",
    "SELECT * FROM t WHERE f <> 0.25",
    "SELECT * FROM t WHERE f = CAST('NaN' AS DOUBLE)",
    "SELECT * FROM t WHERE f < CAST('-Infinity' AS DOUBLE) OR f IS NULL",
    "SELECT time, device FROM t WHERE f IS NOT NULL AND i <= 3",
    "SELECT device, count(*) AS n, sum(i) AS si FROM t WHERE 2 > g AND i <> 7 GROUP BY device",
    "SELECT region, avg(f) AS af FROM t WHERE g >= -10 AND region IS NOT NULL GROUP BY region",
];

/// DataFusion alone, over a memory table of the rows Telemark's scan returns.
async fn reference(engine: &QueryEngine) -> SessionContext {
    let batches = engine.sql(Some("db"), "SELECT * FROM t").await.unwrap().collect().await.unwrap();
    let schema = batches.first().map(|b| b.schema()).unwrap();
    let ctx = SessionContext::new();
    ctx.register_table("t", Arc::new(MemTable::try_new(schema, vec![batches]).unwrap())).unwrap();
    ctx
}

fn run(writes: Vec<Vec<Row>>, flush_after: Vec<bool>) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = Options { background_flush: false, scan_batch_rows: 7, ..Options::default() };
    options.compaction.background = false;
    let db = Arc::new(Database::open(dir.path(), options).unwrap());
    // One row with every column, so each query's columns exist.
    write(&db, &[Row { device: 9, region: Some(9), time: 0, f: Some(0.5), g: Some(1.5), i: Some(7) }]);
    for (rows, flush) in writes.iter().zip(flush_after.iter().chain(std::iter::repeat(&false))) {
        write(&db, rows);
        if *flush {
            db.flush().unwrap();
        }
    }
    let engine = QueryEngine::new(db).with_partitions(3);
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(async {
        let plain = reference(&engine).await;
        for sql in queries() {
            let plan = rows(&engine, &format!("EXPLAIN {sql}")).await.join("\n");
            assert!(plan.contains("SeriesAggregateExec"), "not aggregated by runs: {sql}\n{plan}");
            let ours = rows(&engine, &sql).await;
            let batches = plain.sql(&sql).await.unwrap().collect().await.unwrap();
            let names: Vec<String> = match batches.first() {
                Some(b) => b.schema().fields().iter().map(|f| f.name().clone()).collect(),
                None => Vec::new(),
            };
            let theirs = render(&batches, &names.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(ours, theirs, "{sql}");
        }
        for sql in FIELD_FILTERS {
            let plan = rows(&engine, &format!("EXPLAIN {sql}")).await.join("\n");
            let pushed = !sql.contains(" OR ");
            assert_eq!(!plan.contains("FilterExec"), pushed, "{sql}\n{plan}");
            let ours = rows(&engine, sql).await;
            let batches = plain.sql(sql).await.unwrap().collect().await.unwrap();
            let names: Vec<String> = match batches.first() {
                Some(b) => b.schema().fields().iter().map(|f| f.name().clone()).collect(),
                None => Vec::new(),
            };
            let theirs = render(&batches, &names.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(ours, theirs, "{sql}");
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn run_aggregates_equal_datafusions_own(
        writes in proptest::collection::vec(proptest::collection::vec(row(), 1..40), 1..5),
        flush_after in proptest::collection::vec(any::<bool>(), 0..5),
    ) {
        run(writes, flush_after);
    }
}

/// Groupings that do not follow series stay with DataFusion's hash aggregate.
#[test]
fn other_groupings_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::open(dir.path(), Options { background_flush: false, ..Options::default() }).unwrap());
    write(&db, &[Row { device: 1, region: Some(0), time: 5, f: Some(1.0), g: Some(2.0), i: Some(3) }]);
    let engine = QueryEngine::new(db).with_partitions(2);
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(async {
        for sql in [
            "SELECT i, count(*) FROM t GROUP BY i",
            "SELECT time, count(*) FROM t GROUP BY time",
            "SELECT device || '!', count(*) FROM t GROUP BY 1",
            "SELECT device, count(DISTINCT i) FROM t GROUP BY device",
            "SELECT device, last(g, time) FROM t WHERE g > 0 GROUP BY device",
            "SELECT device, i, sum(f) FROM t GROUP BY device, i",
        ] {
            let plan = rows(&engine, &format!("EXPLAIN {sql}")).await.join("\n");
            assert!(!plan.contains("SeriesAggregateExec"), "{sql}\n{plan}");
            assert_eq!(rows(&engine, sql).await.len(), 1, "{sql}");
        }
    });
}
