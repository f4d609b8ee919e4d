//! Rollups against the plain scan: after any mix of writes (late and
//! out-of-order rows, nulls, two tags), deletes, flushes, compactions,
//! refreshes, reopens and crashes (the database dropped without a flush, so
//! the WAL is replayed), every query the rollup rewrite answers equals the
//! same query kept on the scan, and `EXPLAIN` shows which one read the rollup.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is a test failure")]

mod sql_rows;

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use sql_rows::rows;
use telemark_engine::query::QueryEngine;
use telemark_engine::{Database, DeleteRequest, Options, RollupRule, WriteBatch};

const S: i64 = 1_000_000_000;

#[derive(Debug, Clone)]
struct Row {
    device: u8,
    region: Option<u8>,
    time: i64,
    x: Option<i32>,
    y: Option<i64>,
}

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<Row>),
    Delete { device: Option<u8>, start: i64, end: i64 },
    Flush,
    Compact,
    Refresh,
    Reopen,
    Crash,
}

fn row() -> impl Strategy<Value = Row> {
    (
        0u8..4,
        proptest::option::of(0u8..2),
        0i64..120_000,
        proptest::option::weighted(0.7, -1000i32..1000),
        proptest::option::weighted(0.5, -50i64..50),
    )
        .prop_map(|(device, region, ms, x, y)| Row { device, region, time: ms * 1_000_000, x, y })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => proptest::collection::vec(row(), 1..15).prop_map(Op::Write),
        1 => (proptest::option::of(0u8..4), 0i64..120, 1i64..60).prop_map(|(device, start, len)| Op::Delete {
            device,
            start: start * S,
            end: (start + len) * S,
        }),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        2 => Just(Op::Refresh),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

fn options() -> Options {
    let mut o = Options {
        background_flush: false,
        rollups: vec![RollupRule::new("db", "t", Duration::from_secs(10))],
        ..Options::default()
    };
    o.compaction.background = false;
    o.compaction.min_files = 2;
    o
}

fn write(db: &Database, rows: &[Row]) {
    let mut b = WriteBatch::new("t");
    for r in rows {
        let mut w = b.row(r.time).tag("device", format!("d{}", r.device));
        if let Some(region) = r.region {
            w = w.tag("region", format!("r{region}"));
        }
        // Whole numbers as floats: sums are exact in any order.
        if let Some(x) = r.x {
            w = w.field("x", f64::from(x));
        }
        if let Some(y) = r.y {
            let _ = w.field("y", y);
        }
    }
    let out = db.write("db", &b).unwrap();
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
}

async fn explain(engine: &QueryEngine, sql: &str) -> String {
    rows(engine, &format!("EXPLAIN {sql}")).await.join("\n")
}

/// Each query with `{where}` standing for its extra conditions.
const QUERIES: [(&str, bool); 6] = [
    (
        "SELECT date_bin(INTERVAL '20 seconds', time) AS b, device, region, min(x), max(x), sum(x), count(x), avg(x), count(*), last(y, time) FROM t WHERE time >= '1970-01-01T00:00:10Z' AND time < '1970-01-01T00:01:40Z' {where} GROUP BY 1, device, region",
        true,
    ),
    (
        "SELECT date_bin(INTERVAL '30 seconds', time) AS b, region, min(y), max(y), sum(y), avg(y), count(*) FROM t WHERE time >= '1970-01-01T00:00:03Z' AND time <= '1970-01-01T00:01:47.5Z' {where} GROUP BY 1, region",
        true,
    ),
    (
        "SELECT date_bin(INTERVAL '1 day', time) AS b, max(x), sum(x), count(y) FROM t WHERE device IN ('d1', 'd2') {where} GROUP BY 1",
        true,
    ),
    (
        "SELECT date_bin(INTERVAL '10 seconds', time) AS b, device, avg(x) FROM t WHERE time > '1970-01-01T00:00:05Z' {where} GROUP BY 1, device",
        true,
    ),
    // Shorter than a bucket: no whole bucket, the scan answers.
    (
        "SELECT date_bin(INTERVAL '10 seconds', time) AS b, max(x) FROM t WHERE time >= '1970-01-01T00:00:01Z' AND time < '1970-01-01T00:00:09Z' {where} GROUP BY 1",
        false,
    ),
    // 15 s is not a multiple of 10 s.
    (
        "SELECT date_bin(INTERVAL '15 seconds', time) AS b, max(x) FROM t WHERE x IS NULL OR x IS NOT NULL {where} GROUP BY 1",
        false,
    ),
];

async fn check(db: &Arc<Database>) {
    if db.table_schema("db", "t").is_none() {
        return;
    }
    let engine = QueryEngine::new(db.clone()).with_partitions(2);
    for (q, rewritten) in QUERIES {
        let fast = q.replace("{where}", "");
        // `device <> ''` is always true here, and keeps the query on the rows.
        let slow = q.replace("{where}", "AND device <> ''");
        let plan = explain(&engine, &fast).await;
        if !rewritten {
            assert!(!plan.contains("t_10s"), "{fast}\n{plan}");
        }
        assert!(!explain(&engine, &slow).await.contains("t_10s"));
        assert_eq!(rows(&engine, &fast).await, rows(&engine, &slow).await, "{fast}");
    }
}

fn run(ops: Vec<Op>) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut db = Arc::new(Database::open(dir.path(), options()).unwrap());
    // Every column exists from the start, so every query plans.
    write(&db, &[Row { device: 0, region: Some(0), time: 0, x: Some(1), y: Some(1) }]);
    for op in ops {
        match op {
            Op::Write(r) => write(&db, &r),
            Op::Delete { device, start, end } => {
                if db.table_schema("db", "t").is_some() {
                    let mut req = DeleteRequest::new("t").time_range(start, end);
                    if let Some(d) = device {
                        req = req.filter_tag("device", [format!("d{d}")]);
                    }
                    let _ = db.delete("db", &req).unwrap();
                }
            }
            Op::Flush => db.flush().unwrap(),
            Op::Compact => {
                let _ = db.compact().unwrap();
            }
            Op::Refresh => {
                let _ = db.refresh_rollups().unwrap();
            }
            Op::Reopen => {
                // A clean close flushes: the marks come back from rollups/.
                Arc::try_unwrap(db).expect("no other handle").close().unwrap();
                db = Arc::new(Database::open(dir.path(), options()).unwrap());
            }
            Op::Crash => {
                // Dropped without close: the buffer is lost, the WAL replayed at open.
                drop(db);
                db = Arc::new(Database::open(dir.path(), options()).unwrap());
            }
        }
        rt.block_on(check(&db));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    #[test]
    fn rollup_answers_equal_the_scan(ops in proptest::collection::vec(op(), 1..14)) {
        run(ops);
    }
}

/// Marks survive a flush that trims the WAL: buckets written before it and
/// never recomputed are recomputed after a reopen.
#[test]
fn marks_are_saved_before_the_wal_is_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Row> = (0..50)
        .map(|i| Row { device: (i % 3) as u8, region: Some(0), time: i * 2 * S, x: Some(i as i32), y: Some(i) })
        .collect();
    {
        let db = Database::open(dir.path(), options()).unwrap();
        write(&db, &rows);
        db.flush().unwrap();
        assert!(dir.path().join("rollups/db.t_10s").exists());
        assert!(db.table_schema("db", "t_10s").is_none(), "nothing recomputed yet");
    }
    let db = Arc::new(Database::open(dir.path(), options()).unwrap());
    let report = db.refresh_rollups().unwrap();
    assert_eq!(report.buckets, 10);
    assert_eq!(report.rows, 30);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        check(&db).await;
        // The whole-bucket query reads the rollup, and nothing is left to recompute.
        let engine = QueryEngine::new(db.clone());
        let q = QUERIES[2].0.replace("{where}", "");
        assert!(explain(&engine, &q).await.contains("TableScan: t_10s"));
        assert_eq!(db.refresh_rollups().unwrap(), Default::default());
    });
}

/// Rows written before the rule existed are rolled up when it appears, and
/// a field that appears later counts 0, not NULL, in the buckets before it.
#[test]
fn a_new_rule_is_backfilled_and_late_fields_count_zero() {
    let dir = tempfile::tempdir().unwrap();
    let plain = Options { background_flush: false, ..Options::default() };
    {
        let db = Database::open(dir.path(), plain).unwrap();
        let rows: Vec<Row> = (0..60)
            .map(|i| Row { device: (i % 2) as u8, region: Some(1), time: i * S, x: Some(i as i32), y: None })
            .collect();
        write(&db, &rows);
        db.close().unwrap();
    }
    let db = Arc::new(Database::open(dir.path(), options()).unwrap());
    // y appears only now, at 100 s.
    write(&db, &[Row { device: 0, region: Some(1), time: 100 * S, x: Some(1), y: Some(5) }]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let engine = QueryEngine::new(db.clone());
        let q = "SELECT date_bin(INTERVAL '20 seconds', time) AS b, device, region, sum(x), count(x), count(y), count(*) FROM t WHERE time >= '1970-01-01T00:00:00Z' AND time < '1970-01-01T00:02:00Z' {where} GROUP BY 1, device, region";
        let fast = q.replace("{where}", "");
        let slow = q.replace("{where}", "AND device <> ''");
        assert!(explain(&engine, &fast).await.contains("t_10s"));
        let got = rows(&engine, &fast).await;
        assert_eq!(got, rows(&engine, &slow).await);
        assert_eq!(got.len(), 7, "{got:?}");
        assert!(got.iter().all(|r| !r.contains("NULL")), "{got:?}");
    });
}
