//! Child process for the crash-loop test: writes batches with the default
//! durability from several threads and prints `ACK <batch>` on stdout after
//! each write returns, until it is killed.
//!
//! Usage: `crash-writer DATA_DIR FIRST_BATCH_ID`
//!
//! Batch `k` holds `rows_of(k)` rows of series `writer=<k % 3>`, at times
//! `k * 1000 + i`, with fields `k` (i64) = k, `i` (i64) = i and `x` (f64) = k + i / 1000.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is a test failure")]

use std::io::Write;
use std::sync::Arc;

use telemark_engine::{Database, Options, WriteBatch};

/// Rows in batch `k` (varies so group commits mix sizes).
pub fn rows_of(k: i64) -> i64 {
    1 + (k * 7919) % 200
}

fn batch(k: i64) -> WriteBatch {
    let mut b = WriteBatch::new("crash");
    for i in 0..rows_of(k) {
        b.row(k * 1000 + i)
            .tag("writer", (k % 3).to_string())
            .field("k", k)
            .field("i", i)
            .field("x", k as f64 + i as f64 / 1000.0);
    }
    b
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(first)) = (args.next(), args.next()) else {
        eprintln!("usage: crash-writer DATA_DIR FIRST_BATCH_ID");
        std::process::exit(2);
    };
    let Ok(first) = first.parse::<i64>() else {
        eprintln!("FIRST_BATCH_ID must be an integer");
        std::process::exit(2);
    };
    // A small buffer so flushes (segment writes, manifest swaps, WAL trims) happen while we are killed.
    let options = Options { max_buffer_bytes: 64 * 1024, ..Options::default() };
    let db = match Database::open(&dir, options) {
        Ok(db) => Arc::new(db),
        Err(e) => {
            eprintln!("open failed: {e}");
            std::process::exit(1);
        }
    };
    let threads = 3;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut k = first + t;
                loop {
                    match db.write("crashdb", &batch(k)) {
                        Ok(_) => {
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "ACK {k}");
                            let _ = out.flush();
                        }
                        Err(e) => {
                            eprintln!("write {k} failed: {e}");
                            std::process::exit(1);
                        }
                    }
                    k += threads;
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}
