//! Crash loop: a child process writes batches and reports each acknowledged
//! one; we kill it with SIGKILL at random moments, reopen the data directory
//! and check that every acknowledged point is there exactly once and that no
//! batch appears half-written.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is a test failure")]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampNanosecondType};
use rand::{Rng, SeedableRng};
use telemark_engine::{Database, Options, ScanRequest};

fn rows_of(k: i64) -> i64 {
    1 + (k * 7919) % 200
}

#[test]
fn sigkill_loop_loses_no_acknowledged_write() {
    let rounds: u64 = std::env::var("TELEMARK_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(25);
    let seed: u64 = std::env::var("TELEMARK_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    eprintln!("crash loop: {rounds} rounds, seed {seed} (set TELEMARK_CRASH_SEED to replay)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: BTreeSet<i64> = BTreeSet::new();
    let mut total_torn = 0;
    for round in 0..rounds {
        let first = round as i64 * 1_000_000;
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash-writer"))
            .arg(dir.path())
            .arg(first.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let seen = seen.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if let Some(k) = line.strip_prefix("ACK ").and_then(|k| k.parse::<i64>().ok()) {
                        seen.lock().unwrap().push(k);
                    }
                }
            })
        };
        // Wait until the child has acknowledged something (it must get past open), then a random extra delay.
        let started = std::time::Instant::now();
        while seen.lock().unwrap().is_empty() {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
                panic!("round {round}: writer exited early with {status}: {err}");
            }
            assert!(started.elapsed() < Duration::from_secs(60), "round {round}: writer acknowledged nothing in 60 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let this_round = seen.lock().unwrap().clone();
        acked.extend(this_round.iter().copied());

        let (db, report) =
            Database::open_with_report(dir.path(), Options { background_flush: false, ..Options::default() })
                .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        if report.torn_tail.is_some() {
            total_torn += 1;
        }
        check(&db, &acked, round);
        eprintln!(
            "round {round}: {} acked this round, {} in all, replayed {} WAL records",
            this_round.len(),
            acked.len(),
            report.wal_records_replayed
        );
        drop(db);
    }
    eprintln!("torn tails cut: {total_torn} of {rounds} rounds");
}

fn check(db: &Database, acked: &BTreeSet<i64>, round: u64) {
    // batch -> rows seen (i values)
    let mut found: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let stream = db.scan(&ScanRequest::new("crashdb", "crash").project(["time", "writer", "k", "i", "x"])).unwrap();
    for b in stream {
        let b = b.unwrap_or_else(|e| panic!("round {round}: scan failed: {e}"));
        let t = b.column(0).as_primitive::<TimestampNanosecondType>();
        let w = b.column(1).as_string_view();
        let k = b.column(2).as_primitive::<Int64Type>();
        let i = b.column(3).as_primitive::<Int64Type>();
        let x = b.column(4).as_primitive::<Float64Type>();
        for r in 0..b.num_rows() {
            let (kk, ii) = (k.value(r), i.value(r));
            assert_eq!(t.value(r), kk * 1000 + ii, "round {round}: time of batch {kk} row {ii}");
            assert_eq!(w.value(r), (kk % 3).to_string(), "round {round}: series of batch {kk}");
            assert_eq!(x.value(r), kk as f64 + ii as f64 / 1000.0, "round {round}: value of batch {kk} row {ii}");
            found.entry(kk).or_default().push(ii);
        }
    }
    for k in acked {
        assert!(found.contains_key(k), "round {round}: acknowledged batch {k} is missing");
    }
    for (k, mut rows) in found {
        rows.sort_unstable();
        let expect: Vec<i64> = (0..rows_of(k)).collect();
        assert_eq!(
            rows,
            expect,
            "round {round}: batch {k} (acknowledged: {}) is not exactly once and whole",
            acked.contains(&k)
        );
    }
}
