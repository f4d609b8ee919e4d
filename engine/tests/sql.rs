//! SQL behaviour as golden files: every `tests/sql/*.slt` runs against a
//! database loaded with the fixed data below.
//!
//! File format (a subset of sqllogictest):
//!
//! ```text
//! # comment
//! statement ok            -- the next SQL (until a blank line) must succeed
//! statement error <text>  -- it must fail with a message containing <text>
//! query [rowsort]         -- the SQL's rows must equal the lines after `----`
//! ```
//! Rows are printed as `|`-separated values; NULL as `NULL`. Run with
//! `TELEMARK_SLT_UPDATE=1` to rewrite the expected output (then review the diff).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is a test failure")]

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use telemark_engine::query::QueryEngine;
use telemark_engine::{Database, Options, RollupRule, WriteBatch};

/// 2024-11-30T00:00:00Z in ns.
const T0: i64 = 1_732_924_800_000_000_000;
const MIN: i64 = 60_000_000_000;

fn load(db: &Database) {
    // Three trucks, readings every minute for an hour, one of them out of order and overwritten.
    let mut b = WriteBatch::new("readings");
    for m in 0..60i64 {
        for (i, name) in ["truck-1", "truck-2", "truck-3"].iter().enumerate() {
            let i = i as i64;
            b.row(T0 + m * MIN)
                .tag("name", *name)
                .tag("fleet", if i == 2 { "South" } else { "North" })
                .field("velocity", (m % 10 + i * 10) as f64)
                .field("fuel", 100 - m - i)
                .field("moving", m % 10 != 0);
        }
    }
    let _ = db.write("fleet", &b).unwrap();
    db.flush().unwrap();
    let mut b = WriteBatch::new("readings");
    b.row(T0 + 5 * MIN).tag("name", "truck-1").tag("fleet", "North").field("velocity", 99.5);
    let _ = db.write("fleet", &b).unwrap();
    let mut b = WriteBatch::new("diagnostics");
    for m in (0..60i64).step_by(15) {
        b.row(T0 + m * MIN)
            .tag("name", "truck-1")
            .field("status", if m == 30 { "fault" } else { "ok" })
            .field("load", m as u64);
    }
    let _ = db.write("fleet", &b).unwrap();
    let mut b = WriteBatch::new("other");
    b.row(T0).tag("site", "x").field("v", 1.0);
    let _ = db.write("lab", &b).unwrap();
}

fn render(batches: &[arrow_array::RecordBatch]) -> Vec<String> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for b in batches {
        let fmts: Vec<_> = b.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap()).collect();
        for r in 0..b.num_rows() {
            let row = fmts.iter().map(|f| f.value(r).to_string()).collect::<Vec<_>>().join("|");
            // Multi-line values (EXPLAIN) become several lines; blank lines end a block, so drop them.
            rows.extend(row.lines().map(str::trim_end).filter(|l| !l.is_empty()).map(str::to_string));
        }
    }
    rows
}

enum Block {
    Comment(String),
    Ok(String),
    Error(String, String),
    Query { sql: String, rowsort: bool, expected: Vec<String>, header: String },
}

fn parse(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        if line.starts_with('#') {
            blocks.push(Block::Comment(line.to_string()));
            continue;
        }
        let mut sql = Vec::new();
        while let Some(l) = lines.peek() {
            if l.trim().is_empty() || l.trim() == "----" {
                break;
            }
            sql.push(lines.next().unwrap().to_string());
        }
        let sql = sql.join("\n");
        if line == "statement ok" {
            blocks.push(Block::Ok(sql));
        } else if let Some(msg) = line.strip_prefix("statement error ") {
            blocks.push(Block::Error(sql, msg.to_string()));
        } else if line.starts_with("query") {
            let mut expected = Vec::new();
            if lines.peek().is_some_and(|l| l.trim() == "----") {
                lines.next();
                while let Some(l) = lines.peek() {
                    if l.trim().is_empty() {
                        break;
                    }
                    expected.push(lines.next().unwrap().to_string());
                }
            }
            blocks.push(Block::Query { sql, rowsort: line.contains("rowsort"), expected, header: line.to_string() });
        } else {
            panic!("unknown directive: {line}");
        }
    }
    blocks
}

async fn run_file(engine: &QueryEngine, path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut failures = Vec::new();
    let mut updated = String::new();
    for block in parse(&text) {
        match block {
            Block::Comment(c) => updated += &format!("{c}\n"),
            Block::Ok(sql) => {
                updated += &format!("statement ok\n{sql}\n\n");
                if let Err(e) = run(engine, &sql).await {
                    failures.push(format!("{}: `{sql}` failed: {e}", path.display()));
                }
            }
            Block::Error(sql, msg) => {
                updated += &format!("statement error {msg}\n{sql}\n\n");
                match run(engine, &sql).await {
                    Ok(_) => {
                        failures.push(format!("{}: `{sql}` succeeded, expected an error with {msg:?}", path.display()))
                    }
                    Err(e) if !e.contains(&msg) => {
                        failures.push(format!("{}: `{sql}` failed with {e:?}, expected {msg:?}", path.display()))
                    }
                    Err(_) => {}
                }
            }
            Block::Query { sql, rowsort, expected, header } => {
                let got = match run(engine, &sql).await {
                    Ok(b) => {
                        let mut rows = render(&b);
                        if rowsort {
                            rows.sort();
                        }
                        rows
                    }
                    Err(e) => vec![format!("ERROR: {e}")],
                };
                updated +=
                    &format!("{header}\n{sql}\n----\n{}\n", got.iter().map(|r| format!("{r}\n")).collect::<String>());
                if got != expected {
                    failures.push(format!(
                        "{}: query\n{sql}\nexpected:\n{}\ngot:\n{}",
                        path.display(),
                        expected.join("\n"),
                        got.join("\n")
                    ));
                }
            }
        }
    }
    if std::env::var("TELEMARK_SLT_UPDATE").is_ok() {
        std::fs::write(path, updated.trim_end().to_string() + "\n").unwrap();
    }
    failures
}

async fn run(engine: &QueryEngine, sql: &str) -> Result<Vec<arrow_array::RecordBatch>, String> {
    let df = engine.sql(Some("fleet"), sql).await.map_err(|e| e.to_string())?;
    df.collect().await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_sql_files() {
    let mut files: Vec<_> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    for f in &files {
        // Each file starts from the same data, so files do not depend on each other.
        let dir = tempfile::tempdir().unwrap();
        // `rollup*.slt` files run with a 15-minute rollup of readings (see rollup.slt).
        let rollups = if f.file_name().is_some_and(|n| n.to_string_lossy().starts_with("rollup")) {
            vec![RollupRule::new("fleet", "readings", std::time::Duration::from_secs(900))]
        } else {
            Vec::new()
        };
        let db = Arc::new(
            Database::open(dir.path(), Options { background_flush: false, rollups, ..Options::default() }).unwrap(),
        );
        load(&db);
        // Fixed parallelism, so plans in EXPLAIN do not depend on the machine.
        failures.extend(run_file(&QueryEngine::new(db).with_partitions(2), f).await);
    }
    assert!(failures.is_empty(), "{} failures:\n\n{}", failures.len(), failures.join("\n\n"));
}
