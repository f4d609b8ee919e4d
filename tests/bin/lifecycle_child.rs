//! Child process for the crash-matrix test: runs a fixed lifecycle of a
//! database — writes over several daily partitions, flushes, deletes,
//! retention, compactions, close — and reports every step on stdout, so the
//! parent knows what was acknowledged when a failpoint (`TELEMARK_FAILPOINT`,
//! engine feature `failpoints`) aborts it.
//!
//! Usage: `lifecycle-child DATA_DIR BASE FROM UNTIL`
//!
//! - `BASE`: the time of day 0 (ns since the epoch); row times are relative
//!   to it, so the parent can place them around the retention cutoff.
//! - `FROM`, `UNTIL`: the steps of [`SCENARIO`] to run, `FROM..UNTIL`. A run
//!   that stops before the last step exits at once without closing the
//!   database, as a crash between two steps would.
//!
//! Output, flushed line by line: `STEP <i>` before step `i`; after a write
//! returns `ACK <id> <rows written>`; after a delete returns
//! `DELETED d<device> <rows matched>`; after every step `DONE <i>`.
//!
//! The crash-matrix test includes this file as a module to share the
//! scenario, so everything here is `pub(crate)`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is a test failure")]

use std::io::Write;
use std::time::Duration;

use std::path::{Path, PathBuf};

use telemark_engine::tiering::{TierStore, TieringOptions};
use telemark_engine::{CompactionOptions, Database, DeleteRequest, Options, WriteBatch};

pub(crate) const DATABASE: &str = "life";
pub(crate) const TABLE: &str = "readings";
pub(crate) const HOUR: i64 = 3_600_000_000_000;
pub(crate) const DAY: i64 = 24 * HOUR;
/// The retention set by [`Step::SetRetention`]: days -35 and older expire,
/// days -2 and newer stay, whatever the hour of the run.
pub(crate) const KEEP: Duration = Duration::from_secs(30 * 86_400);
const ALL: &[u8] = &[0, 1, 2, 3, 4, 5];

/// One step of the lifecycle.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Step {
    /// Writes batch `id`: a row of every device of `devices` at every `day`
    /// (relative to BASE) and `hour`, with fields `id` and `v` ([`value`]).
    Write {
        id: i64,
        days: &'static [i64],
        hours: &'static [i64],
        devices: &'static [u8],
    },
    Flush,
    /// Deletes the rows of one device, within `[start, end)` (ns relative to BASE) if given.
    Delete {
        device: u8,
        range: Option<(i64, i64)>,
    },
    /// Sets retention [`KEEP`] on the database.
    SetRetention,
    EnforceRetention,
    Compact,
    /// Moves partitions older than 7 days to the object store.
    Tier,
    /// Backs the database up to the directory `<dir>.backups`.
    Backup,
    Close,
}

/// The lifecycle: several files per partition, rows 40 days old written
/// before retention is set and refused after, deletes of a whole device and
/// of time ranges (with rows rewritten after them), overwrites of compacted
/// rows (last write wins), and rows still in the write buffer at close.
pub(crate) const SCENARIO: &[Step] = &[
    Step::Write { id: 1, days: &[-40, -2], hours: &[1, 7], devices: ALL },
    Step::Write { id: 2, days: &[-39, -1], hours: &[2, 8], devices: ALL },
    Step::Flush,
    // Overwrites day -2 hour 1 of batch 1.
    Step::Write { id: 3, days: &[-2, -1], hours: &[1, 3], devices: ALL },
    Step::Flush,
    Step::Write { id: 4, days: &[-40, -1, 0], hours: &[9], devices: ALL },
    Step::Flush,
    // Days -10 and -9 go to the object store at the first `Tier`.
    Step::Write { id: 10, days: &[-10, -9], hours: &[5, 6], devices: ALL },
    Step::Flush,
    Step::Write { id: 11, days: &[-10], hours: &[6, 7], devices: ALL },
    Step::Delete { device: 1, range: None },
    // After the delete: d1's row stays; d2's goes with the next delete.
    Step::Write { id: 5, days: &[-1], hours: &[4], devices: &[1, 2] },
    Step::Delete { device: 2, range: Some((-2 * DAY, -DAY + 5 * HOUR)) },
    Step::Flush,
    Step::SetRetention,
    // Day -35 is refused by retention, day -1 written.
    Step::Write { id: 6, days: &[-35, -1], hours: &[10], devices: ALL },
    Step::EnforceRetention,
    Step::Write { id: 7, days: &[-1, 0], hours: &[11], devices: ALL },
    Step::Compact,
    Step::Backup,
    Step::Tier,
    // A delete reaching into a cold day (purged from the object by the next compaction),
    // and a late row into a cold day that overwrites a cold row.
    Step::Delete { device: 4, range: Some((-10 * DAY, -9 * DAY)) },
    Step::Write { id: 12, days: &[-10], hours: &[5], devices: &[0, 4] },
    Step::Delete { device: 3, range: Some((-DAY, -DAY + 9 * HOUR)) },
    // Overwrites compacted rows; d3's come back after its delete.
    Step::Write { id: 8, days: &[-1], hours: &[1, 2, 3], devices: ALL },
    Step::Compact,
    Step::Backup,
    Step::Write { id: 9, days: &[0], hours: &[12], devices: ALL },
    Step::Close,
];

/// A row as written: series `device`, `time`, and the batch `id` that wrote it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Row {
    pub(crate) device: u8,
    pub(crate) time: i64,
    pub(crate) id: i64,
    pub(crate) v: f64,
}

/// Field `v` of the row batch `id` writes for `device` at `offset` ns after BASE.
pub(crate) fn value(id: i64, device: u8, offset: i64) -> f64 {
    id as f64 * 1000.0 + f64::from(device) * 100.0 + offset as f64 / HOUR as f64
}

/// The rows of a [`Step::Write`] (none for other steps).
pub(crate) fn rows(base: i64, step: &Step) -> Vec<Row> {
    let Step::Write { id, days, hours, devices } = *step else { return Vec::new() };
    let mut out = Vec::new();
    for &day in days {
        for &hour in hours {
            for &device in devices {
                let offset = day * DAY + hour * HOUR;
                out.push(Row { device, time: base + offset, id, v: value(id, device, offset) });
            }
        }
    }
    out
}

/// The request of a [`Step::Delete`].
pub(crate) fn delete_request(base: i64, device: u8, range: Option<(i64, i64)>) -> DeleteRequest {
    let req = DeleteRequest::new(TABLE).filter_tag("device", [format!("d{device}")]);
    match range {
        Some((start, end)) => req.time_range(base + start, base + end),
        None => req,
    }
}

/// The object store of the data directory `dir`: the directory `<dir>.objects`.
pub(crate) fn object_dir(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".objects");
    PathBuf::from(name)
}

/// Backups of the data directory `dir` go to the directory `<dir>.backups`.
pub(crate) fn backup_dir(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_owned();
    name.push(".backups");
    PathBuf::from(name)
}

/// Options without background threads, so only the scenario's steps flush,
/// compact and tier; tiering to a local directory beside `dir`.
pub(crate) fn options(dir: &Path) -> Options {
    options_with_store(&object_dir(dir))
}

/// [`options`] with the object store in directory `objects`.
pub(crate) fn options_with_store(objects: &Path) -> Options {
    let store = TierStore::from_url(&format!("file://{}", objects.display())).unwrap();
    let mut tiering = TieringOptions::new(store);
    tiering.background = false;
    tiering.after = Duration::from_secs(7 * 86_400);
    // The matrix checks that a reopen leaves no unreferenced object: collect at once.
    tiering.gc_grace = Duration::ZERO;
    Options {
        background_flush: false,
        compaction: CompactionOptions { background: false, ..CompactionOptions::default() },
        tiering: Some(tiering),
        ..Options::default()
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn fail(step: usize, what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("step {step}: {what} failed: {e}");
    std::process::exit(1);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, base, from, until] = args.as_slice() else {
        eprintln!("usage: lifecycle-child DATA_DIR BASE FROM UNTIL");
        std::process::exit(2);
    };
    let (Ok(base), Ok(from), Ok(until)) = (base.parse::<i64>(), from.parse::<usize>(), until.parse::<usize>()) else {
        eprintln!("BASE, FROM and UNTIL must be integers");
        std::process::exit(2);
    };
    let mut db = Some(Database::open(dir, options(Path::new(dir))).unwrap_or_else(|e| fail(from, "open", e)));
    for (i, step) in SCENARIO.iter().enumerate().take(until).skip(from) {
        say(&format!("STEP {i}"));
        let Some(d) = db.as_ref() else { fail(i, "a step after close", "the database is closed") };
        match *step {
            Step::Write { id, .. } => {
                let mut batch = WriteBatch::new(TABLE);
                for r in rows(base, step) {
                    batch.row(r.time).tag("device", format!("d{}", r.device)).field("id", r.id).field("v", r.v);
                }
                let out = d.write(DATABASE, &batch).unwrap_or_else(|e| fail(i, "write", e));
                if let Some(e) = out.rejected.iter().find(|e| !e.message.contains("retention")) {
                    fail(i, "write", format!("a row was refused for something else than retention: {e}"));
                }
                say(&format!("ACK {id} {}", out.rows_written));
            }
            Step::Flush => d.flush().unwrap_or_else(|e| fail(i, "flush", e)),
            Step::Delete { device, range } => {
                let out =
                    d.delete(DATABASE, &delete_request(base, device, range)).unwrap_or_else(|e| fail(i, "delete", e));
                say(&format!("DELETED d{device} {}", out.rows_matched));
            }
            Step::SetRetention => {
                d.set_retention(DATABASE, None, Some(KEEP)).unwrap_or_else(|e| fail(i, "set_retention", e));
            }
            Step::EnforceRetention => {
                d.enforce_retention().unwrap_or_else(|e| fail(i, "enforce_retention", e));
            }
            Step::Compact => {
                let report = d.compact().unwrap_or_else(|e| fail(i, "compact", e));
                if !report.failures.is_empty() {
                    fail(i, "compact", format!("{:?}", report.failures));
                }
            }
            Step::Tier => {
                let report = d.tier(None).unwrap_or_else(|e| fail(i, "tier", e));
                if !report.failures.is_empty() {
                    fail(i, "tier", format!("{:?}", report.failures));
                }
            }
            Step::Backup => {
                let to = TierStore::from_url(&format!("file://{}", backup_dir(Path::new(dir)).display())).unwrap();
                d.backup(&to, &mut |_| {}).unwrap_or_else(|e| fail(i, "backup", e));
            }
            Step::Close => {
                if let Some(d) = db.take() {
                    d.close().unwrap_or_else(|e| fail(i, "close", e));
                }
            }
        }
        say(&format!("DONE {i}"));
    }
    if until < SCENARIO.len() {
        // Leave without closing (no flush), as a crash between two steps would.
        std::process::exit(0);
    }
}
