//! The last-value cache against the plain query: after any mix of writes
//! (fields in separate rows, nulls, NaN, duplicate and out-of-order times),
//! deletes, flushes, compactions and reopens, `Database::last_values` and
//! `SELECT * FROM last_values('t')` answer what
//! `SELECT tags, last(x, time), ... GROUP BY tags` answers.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is a test failure")]

mod sql_rows;

use std::sync::Arc;

use proptest::prelude::*;
use sql_rows::{render, rows};
use telemark_engine::query::QueryEngine;
use telemark_engine::{Database, DeleteRequest, Options, WriteBatch};

#[derive(Debug, Clone)]
struct Row {
    device: u8,
    region: Option<u8>,
    time: i64,
    x: Option<f64>,
    y: Option<i64>,
    s: Option<String>,
}

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<Row>),
    Delete { device: u8, start: i64, end: i64 },
    Flush,
    Compact,
    Reopen,
}

fn row() -> impl Strategy<Value = Row> {
    (
        0u8..5,
        proptest::option::of(0u8..2),
        0i64..40,
        proptest::option::weighted(0.6, prop_oneof![8 => -1e3f64..1e3, 1 => Just(f64::NAN)]),
        proptest::option::weighted(0.5, -50i64..50),
        proptest::option::weighted(0.3, "[a-c]{0,3}"),
    )
        .prop_map(|(device, region, time, x, y, s)| {
            // Two series never share a time (ties between series have no one answer, in any
            // database); rows of one series often do, and the last write wins.
            let series = i64::from(device) * 3 + region.map_or(0, |r| i64::from(r) + 1);
            Row { device, region, time: time * 1_000_000_000 + series, x, y, s }
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => proptest::collection::vec(row(), 1..12).prop_map(Op::Write),
        1 => (0u8..5, 0i64..40, 1i64..20).prop_map(|(device, start, len)| Op::Delete {
            device,
            start: start * 1_000_000_000,
            end: (start + len) * 1_000_000_000,
        }),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

fn options() -> Options {
    let mut o = Options { background_flush: false, ..Options::default() };
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
        if let Some(x) = r.x {
            w = w.field("x", x);
        }
        if let Some(y) = r.y {
            w = w.field("y", y);
        }
        if let Some(s) = &r.s {
            w = w.field("s", s.as_str());
        }
        // Every row has a field: a row of tags only says nothing about last values.
        if r.x.is_none() && r.y.is_none() && r.s.is_none() {
            let _ = w.field("y", 0i64);
        }
    }
    let out = db.write("db", &b).unwrap();
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
}

const COLUMNS: [&str; 6] = ["device", "region", "time", "x", "y", "s"];

async fn check(db: &Arc<Database>, rewrites: bool) {
    let engine = QueryEngine::new(db.clone()).with_partitions(2);
    let Some(schema) = db.table_schema("db", "t") else { return };
    let has = |c: &str| schema.id_of(c).is_some();
    // Columns the table does not have yet are NULL on both sides.
    let col = |c: &str| if has(c) { c.to_string() } else { format!("NULL AS {c}") };
    let last = |c: &str| if has(c) { format!("last({c}, time) AS {c}") } else { format!("NULL AS {c}") };
    let any = ["x", "y", "s"].iter().filter(|c| has(c)).map(|c| format!("{c} IS NOT NULL")).collect::<Vec<_>>();
    let plain = format!(
        "SELECT device, {}, max(CASE WHEN {} THEN time END) AS time, {}, {}, {} FROM t GROUP BY device, {}",
        col("region"),
        any.join(" OR "),
        last("x"),
        last("y"),
        last("s"),
        if has("region") { "region" } else { "1" }
    );
    let expected: Vec<String> =
        render(&engine.sql(Some("db"), &plain).await.unwrap().collect().await.unwrap(), &COLUMNS)
            .into_iter()
            // A series whose every value was deleted is absent from the cache.
            .filter(|r| r.split('|').nth(2) != Some("NULL"))
            .collect();
    let via_sql = format!(
        "SELECT device, {}, time, {}, {}, {} FROM last_values('t')",
        col("region"),
        col("x"),
        col("y"),
        col("s")
    );
    let got = render(&engine.sql(Some("db"), &via_sql).await.unwrap().collect().await.unwrap(), &COLUMNS);
    assert_eq!(got, expected, "SQL last_values vs GROUP BY");
    let api = db.last_values("db", "t", &[], None).unwrap();
    let api_rows: Vec<String> = render(&[api], &COLUMNS.map(|c| if has(c) { c } else { "time" })).into_iter().collect();
    assert_eq!(api_rows.len(), expected.len());
    // One device through the tag index, and its count.
    let one: Vec<String> = expected.iter().filter(|r| r.starts_with("d1|")).cloned().collect();
    let got_one = render(
        &engine.sql(Some("db"), &format!("{via_sql} WHERE device = 'd1'")).await.unwrap().collect().await.unwrap(),
        &COLUMNS,
    );
    assert_eq!(got_one, one, "one device");
    let count =
        engine.sql(Some("db"), "SELECT count(*) AS n FROM last_values('t')").await.unwrap().collect().await.unwrap();
    assert_eq!(render(&count, &["n"]), vec![expected.len().to_string()]);
    if rewrites {
        latest_per_device_from_the_cache(&engine, has("region"), &["x", "y", "s"].map(has)).await;
    }
}

/// "The latest per device" is answered from the cache, and equals the scan of
/// every row (a time filter, always true here, keeps that query on the scan).
async fn latest_per_device_from_the_cache(engine: &QueryEngine, region: bool, fields: &[bool; 3]) {
    let lasts: Vec<String> = ["x", "y", "s"]
        .iter()
        .zip(fields)
        .filter(|(_, has)| **has)
        .map(|(c, _)| format!("last({c}, time) AS {c}"))
        .collect();
    if lasts.is_empty() {
        return;
    }
    let lasts = lasts.join(", ");
    let mut shapes =
        vec![(format!("SELECT device, {lasts} FROM t"), "GROUP BY device"), (format!("SELECT {lasts} FROM t"), "")];
    if region {
        shapes.push((format!("SELECT device, region, {lasts} FROM t"), "GROUP BY device, region"));
        shapes.push((
            format!("SELECT region, {lasts} FROM t WHERE region IS NOT NULL AND device IN ('d1', 'd2')"),
            "GROUP BY region",
        ));
    }
    for (select, group) in shapes {
        let cached = format!("{select} {group}");
        let glue = if select.contains(" WHERE ") { "AND" } else { "WHERE" };
        let scanned = format!("{select} {glue} time >= to_timestamp(0) {group}");
        assert_eq!(rows(engine, &cached).await, rows(engine, &scanned).await, "{cached}");
        let plan = rows(engine, &format!("EXPLAIN {cached}")).await.join("\n");
        assert!(plan.contains("LastValueCacheExec"), "{cached}: {plan}");
        let plan = rows(engine, &format!("EXPLAIN {scanned}")).await.join("\n");
        assert!(!plan.contains("LastValueCacheExec"), "{scanned}: {plan}");
    }
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut db = Arc::new(Database::open(dir.path(), options()).unwrap());
    let last = ops.len().saturating_sub(1);
    for (i, op) in ops.into_iter().enumerate() {
        let reopened = matches!(op, Op::Reopen);
        match op {
            Op::Write(rows) => write(&db, &rows),
            Op::Delete { device, start, end } => {
                if db.table_schema("db", "t").is_some() {
                    let req =
                        DeleteRequest::new("t").filter_tag("device", [format!("d{device}")]).time_range(start, end);
                    db.delete("db", &req).unwrap();
                }
            }
            Op::Flush => db.flush().unwrap(),
            Op::Compact => {
                db.compact().unwrap();
            }
            Op::Reopen => {
                Arc::try_unwrap(db).unwrap().close().unwrap();
                db = Arc::new(Database::open(dir.path(), options()).unwrap());
            }
        }
        // The rewritten queries after a restart and at the end (every op would make the test slow).
        rt.block_on(check(&db, reopened || i == last));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn last_values_equal_the_plain_query(ops in proptest::collection::vec(op(), 1..16)) {
        run(ops);
    }
}

/// Without its snapshot (a data directory of an older version, a restored
/// backup) the cache is rebuilt by scanning, and answers the same.
#[test]
fn a_missing_or_damaged_snapshot_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let db = Database::open(dir.path(), options()).unwrap();
    for i in 0..50 {
        write(
            &db,
            &[Row {
                device: (i % 5) as u8,
                region: None,
                time: i * 1_000_000_000,
                x: Some(i as f64),
                y: None,
                s: None,
            }],
        );
        if i % 10 == 9 {
            db.flush().unwrap();
        }
    }
    write(&db, &[Row { device: 1, region: None, time: 0, x: None, y: Some(7), s: Some("old".into()) }]);
    db.flush().unwrap();
    let before = render(&[db.last_values("db", "t", &[], None).unwrap()], &["device", "time", "x", "y", "s"]);
    assert_eq!(before.len(), 5);
    assert!(before.contains(&"d1|1970-01-01T00:00:46|46.0|7|old".to_string()), "{before:?}");
    db.close().unwrap();
    let snapshot = dir.path().join("lastvalues");
    for damage in ["remove", "flip"] {
        match damage {
            "remove" => std::fs::remove_file(&snapshot).unwrap(),
            _ => {
                let mut b = std::fs::read(&snapshot).unwrap();
                let n = b.len();
                b[n / 2] ^= 0x10;
                std::fs::write(&snapshot, b).unwrap();
            }
        }
        let db = Arc::new(Database::open(dir.path(), options()).unwrap());
        let after = render(&[db.last_values("db", "t", &[], None).unwrap()], &["device", "time", "x", "y", "s"]);
        assert_eq!(after, before, "after {damage}");
        rt.block_on(check(&db, true));
        Arc::try_unwrap(db).unwrap().close().unwrap();
        assert!(snapshot.exists(), "the rebuilt cache is saved again");
    }
}
