//! Crash matrix: a child process runs a database's lifecycle (writes,
//! flushes, deletes, retention, compactions, close; see
//! `bin/lifecycle_child.rs`) and is aborted at a named failpoint of the
//! engine; the test reopens the data directory and checks that
//!
//! - every acknowledged row is there exactly once with the values of the
//!   last acknowledged write of it, except the rows acknowledged deletes
//!   removed and the rows older than retention once it was set;
//! - deleted rows stay deleted: only a delete that was logged but not
//!   acknowledged (the step the child died in) may or may not have happened,
//!   and whichever it was holds from then on;
//! - `verify()` reads every file and finds no unreferenced one (opening
//!   removes what the crash left behind);
//! - a compaction after the reopen succeeds, purges every delete (the delete
//!   log lists exactly the applied deletes) and changes no answer, and a
//!   second reopen gives the same answers again.
//!
//! Every failpoint is hit at each step of the lifecycle that reaches it: the
//! steps before are run by a first child, which exits between two steps
//! without closing, and a second child armed with the failpoint runs from
//! there on, so the crash lands at the first reach after that step.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is a test failure")]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampNanosecondType};
use telemark_engine::{Database, ScanRequest};

#[path = "bin/lifecycle_child.rs"]
#[allow(dead_code, reason = "the child's `main` runs only in the child process; the test shares its scenario")]
mod lifecycle_child;

use lifecycle_child::{
    DATABASE, DAY, KEEP, SCENARIO, Step, TABLE, backup_dir, delete_request, object_dir, options, options_with_store,
    rows,
};
use telemark_engine::tiering::TierStore;

/// What a scan returns: `(device, time)` → `(id, v as bits)`.
type Rows = BTreeMap<(u8, i64), (i64, u64)>;

/// A delete as the delete log records it: `(device, start, end)`.
type DeleteKey = (String, i64, i64);

fn now_nanos() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(since.as_nanos()).unwrap()
}

/// What the lifecycle should have left after some of its steps.
#[derive(Debug, Clone, Default)]
struct Model {
    rows: Rows,
    retention: bool,
    /// The deletes applied, in order.
    deletes: Vec<DeleteKey>,
}

impl Model {
    fn cutoff(&self) -> i64 {
        if self.retention { now_nanos() - i64::try_from(KEEP.as_nanos()).unwrap() } else { i64::MIN }
    }

    /// Applies one step; returns the rows a write writes or a delete matches.
    fn apply(&mut self, base: i64, step: &Step) -> Option<u64> {
        match *step {
            Step::Write { .. } => {
                let cutoff = self.cutoff();
                let written: Vec<_> = rows(base, step).into_iter().filter(|r| r.time >= cutoff).collect();
                for r in &written {
                    self.rows.insert((r.device, r.time), (r.id, r.v.to_bits()));
                }
                Some(written.len() as u64)
            }
            Step::Delete { device, range } => {
                let req = delete_request(base, device, range);
                let (start, end) = (req.start.unwrap_or(i64::MIN), req.end.unwrap_or(i64::MAX));
                let before = self.rows.len();
                self.rows.retain(|(d, t), _| !(*d == device && start <= *t && *t < end));
                self.deletes.push((format!("d{device}"), start, end));
                Some((before - self.rows.len()) as u64)
            }
            Step::SetRetention => {
                self.retention = true;
                let cutoff = self.cutoff();
                self.rows.retain(|(_, t), _| *t >= cutoff);
                None
            }
            Step::Flush | Step::EnforceRetention | Step::Compact | Step::Tier | Step::Backup | Step::Close => None,
        }
    }
}

/// What the children printed.
#[derive(Debug, Default)]
struct Log {
    /// Steps that returned, in order.
    done: Vec<usize>,
    /// The step the last child started and did not finish.
    in_flight: Option<usize>,
    /// Rows written (`ACK`) or matched (`DELETED`), per step.
    outcomes: BTreeMap<usize, u64>,
    lines: Vec<String>,
}

impl Log {
    fn read(&mut self, stdout: &str) {
        let mut current = None;
        for line in stdout.lines() {
            self.lines.push(line.to_string());
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["STEP", i] => {
                    current = Some(i.parse::<usize>().unwrap());
                    self.in_flight = current;
                }
                ["DONE", i] => {
                    let i = i.parse::<usize>().unwrap();
                    assert_eq!(current, Some(i), "DONE {i} without STEP {i}");
                    self.done.push(i);
                    self.in_flight = None;
                }
                ["ACK", _, n] | ["DELETED", _, n] => {
                    self.outcomes.insert(current.expect("an outcome before any step"), n.parse().unwrap());
                }
                _ => panic!("unexpected line from the child: {line:?}"),
            }
        }
    }
}

/// Runs the child over steps `from..until` in `dir`; returns its stdout and
/// the failpoint it died at, if it died.
fn run_child(dir: &Path, base: i64, from: usize, until: usize, failpoint: Option<&str>) -> (String, Option<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lifecycle-child"));
    cmd.arg(dir).arg(base.to_string()).arg(from.to_string()).arg(until.to_string());
    cmd.stdin(Stdio::null()).env_remove("TELEMARK_FAILPOINT");
    if let Some(name) = failpoint {
        cmd.env("TELEMARK_FAILPOINT", name);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if out.status.success() {
        return (stdout, None);
    }
    let Some(name) = failpoint.filter(|name| stderr.contains(&format!("failpoint {name}: aborting"))) else {
        panic!(
            "child (steps {from}..{until}, failpoint {failpoint:?}) failed with {}:\n{stderr}\n{stdout}",
            out.status
        );
    };
    (stdout, Some(name.to_string()))
}

/// Crashes the lifecycle at failpoint `name` at every step that reaches it.
fn crash_at_every_reach(name: &str) {
    let started = std::time::Instant::now();
    let base = now_nanos().div_euclid(DAY) * DAY;
    let mut crashed_steps = Vec::new();
    let mut from = 0;
    while from < SCENARIO.len() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::default();
        if from > 0 {
            let (stdout, died) = run_child(dir.path(), base, 0, from, None);
            assert_eq!(died, None);
            log.read(&stdout);
            assert_eq!(log.in_flight, None, "the first child stopped in a step: {:?}", log.lines);
        }
        let (stdout, died) = run_child(dir.path(), base, from, SCENARIO.len(), Some(name));
        log.read(&stdout);
        let label = format!("failpoint {name}, armed from step {from}");
        match died {
            Some(_) => {
                let step = log.in_flight.unwrap_or_else(|| panic!("{label}: died outside a step: {:?}", log.lines));
                let label = format!("{label}, crashed in step {step} ({:?})", SCENARIO[step]);
                check(dir.path(), base, &log, &label);
                crashed_steps.push(step);
                from = step + 1;
            }
            None => {
                // Not reached after `from`: the lifecycle ran to the end (after a restart at `from`).
                check(dir.path(), base, &log, &label);
                break;
            }
        }
    }
    assert!(!crashed_steps.is_empty(), "failpoint {name} is never reached by the lifecycle");
    eprintln!("failpoint {name}: crashed in steps {crashed_steps:?} in {:.1?}", started.elapsed());
}

/// Reopens `dir` after the children of `log` and checks it against the model.
fn check(dir: &Path, base: i64, log: &Log, label: &str) {
    // The steps that returned are the scenario's first ones, each with the outcome the model expects.
    let mut model = Model::default();
    for (n, &i) in log.done.iter().enumerate() {
        assert_eq!(i, n, "{label}: steps done out of order: {:?}", log.done);
        let step = &SCENARIO[i];
        let expected = model.apply(base, step);
        assert_eq!(log.outcomes.get(&i).copied(), expected, "{label}: outcome of step {i} ({step:?})");
    }
    // A delete the child died in may or may not have happened; nothing else changes rows.
    let mut alternatives = vec![model.clone()];
    if let Some(i) = log.in_flight {
        assert_eq!(i, log.done.len(), "{label}: died in step {i}, after steps {:?}", log.done);
        match &SCENARIO[i] {
            step @ Step::Delete { .. } => {
                let mut applied = model.clone();
                applied.apply(base, step);
                alternatives.push(applied);
            }
            Step::Flush | Step::EnforceRetention | Step::Compact | Step::Tier | Step::Backup | Step::Close => {}
            step @ (Step::Write { .. } | Step::SetRetention) => panic!("{label}: no failpoint in step {step:?}"),
        }
    }

    let db = Database::open(dir, options(dir)).unwrap_or_else(|e| panic!("{label}: reopen failed: {e}"));
    verify(&db, dir, &format!("{label}, after reopen"));
    let got = read_rows(&db);
    let matching: Vec<&Model> = alternatives.iter().filter(|m| m.rows == got).collect();
    assert!(!matching.is_empty(), "{label}: after reopen, {}", diff(&alternatives[0].rows, &got));
    check_last_values(&db, &got, &format!("{label}, after reopen"));
    check_backup(dir, base, log, label);

    let report = db.compact().unwrap_or_else(|e| panic!("{label}: compaction after reopen failed: {e}"));
    assert!(report.failures.is_empty(), "{label}: compaction after reopen: {:?}", report.failures);
    verify(&db, dir, &format!("{label}, after compaction"));
    let after = read_rows(&db);
    assert!(after == got, "{label}: compaction changed the answer: {}", diff(&got, &after));
    let (pending, purged) = db.deletes(Some(DATABASE));
    assert!(pending.is_empty(), "{label}: deletes still pending after a full compaction: {pending:?}");
    let mut logged: Vec<DeleteKey> = purged
        .iter()
        .map(|t| {
            assert!(t.table == TABLE && t.tags.len() == 1 && t.tags[0].1.len() == 1, "{label}: delete {t:?}");
            (t.tags[0].1[0].clone(), t.start, t.end)
        })
        .collect();
    logged.sort();
    assert!(
        matching.iter().any(|m| {
            let mut applied = m.deletes.clone();
            applied.sort();
            applied == logged
        }),
        "{label}: the delete log {logged:?} is not the deletes applied {:?}",
        alternatives.iter().map(|m| &m.deletes).collect::<Vec<_>>()
    );
    db.close().unwrap_or_else(|e| panic!("{label}: close failed: {e}"));

    let db = Database::open(dir, options(dir)).unwrap_or_else(|e| panic!("{label}: second reopen failed: {e}"));
    verify(&db, dir, &format!("{label}, after the second reopen"));
    let again = read_rows(&db);
    assert!(again == got, "{label}: the second reopen changed the answer: {}", diff(&got, &again));
    check_last_values(&db, &again, &format!("{label}, after the second reopen"));
}

/// The newest complete backup restores to the rows as of the last backup
/// step that returned; a backup the child died in is not complete (no
/// BACKUP file) and a restore never picks it.
fn check_backup(dir: &Path, base: i64, log: &Log, label: &str) {
    let mut model = Model::default();
    let mut expected = None;
    for &i in &log.done {
        model.apply(base, &SCENARIO[i]);
        if matches!(SCENARIO[i], Step::Backup) {
            expected = Some(model.rows.clone());
        }
    }
    let target = tempfile::tempdir().unwrap();
    let restored = target.path().join("restored");
    let from = TierStore::from_url(&format!("file://{}", backup_dir(dir).display())).unwrap();
    let result = telemark_engine::backup::restore(&from, None, &restored, &mut |_| {});
    match (expected, result) {
        (None, Err(e)) => assert!(e.to_string().contains("no complete backup"), "{label}: restore: {e}"),
        (None, Ok(r)) => panic!("{label}: restored {} although no backup step returned", r.name),
        (Some(_), Err(e)) => panic!("{label}: restoring the newest complete backup failed: {e}"),
        (Some(rows), Ok(_)) => {
            let db = Database::open(&restored, options_with_store(&object_dir(dir)))
                .unwrap_or_else(|e| panic!("{label}: opening the restored backup failed: {e}"));
            let got = read_rows(&db);
            assert!(got == rows, "{label}: the restored backup: {}", diff(&rows, &got));
        }
    }
}

fn verify(db: &Database, dir: &Path, label: &str) {
    let report = db.verify().unwrap_or_else(|e| panic!("{label}: verify failed: {e}"));
    assert!(report.unreferenced.is_empty(), "{label}: files the manifest does not list: {:?}", report.unreferenced);
    // One copy of every cold partition: every object in the store is referenced.
    let objects = walk(&object_dir(dir)).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).count();
    assert_eq!(objects, db.stats().cold_files, "{label}: objects in the store vs cold files referenced");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

fn read_rows(db: &Database) -> Rows {
    let mut out = Rows::new();
    let req = ScanRequest::new(DATABASE, TABLE).project(["time", "device", "id", "v"]);
    for b in db.scan(&req).unwrap() {
        let b = b.unwrap();
        let time = b.column(0).as_primitive::<TimestampNanosecondType>();
        let device = b.column(1).as_string_view();
        let id = b.column(2).as_primitive::<Int64Type>();
        let v = b.column(3).as_primitive::<Float64Type>();
        for r in 0..b.num_rows() {
            let d: u8 = device.value(r).strip_prefix('d').and_then(|d| d.parse().ok()).unwrap();
            let prev = out.insert((d, time.value(r)), (id.value(r), v.value(r).to_bits()));
            assert!(prev.is_none(), "row (d{d}, {}) returned twice", time.value(r));
        }
    }
    out
}

/// The last-value cache agrees with the rows: each device's newest row, per field.
fn check_last_values(db: &Database, rows: &Rows, label: &str) {
    let mut expected: BTreeMap<u8, (i64, i64, u64)> = BTreeMap::new();
    for (&(d, t), &(id, v)) in rows {
        expected.insert(d, (t, id, v)); // rows iterate by (device, time): the last one per device is the newest
    }
    let b = db.last_values(DATABASE, TABLE, &[], Some(&["device".into(), "time".into(), "id".into(), "v".into()]));
    let b = b.unwrap_or_else(|e| panic!("{label}: last values: {e}"));
    let device = b.column(0).as_string_view();
    let time = b.column(1).as_primitive::<TimestampNanosecondType>();
    let id = b.column(2).as_primitive::<Int64Type>();
    let v = b.column(3).as_primitive::<Float64Type>();
    let mut got = BTreeMap::new();
    for r in 0..b.num_rows() {
        let d: u8 = device.value(r).strip_prefix('d').and_then(|d| d.parse().ok()).unwrap();
        got.insert(d, (time.value(r), id.value(r), v.value(r).to_bits()));
    }
    assert_eq!(got, expected, "{label}: the last-value cache (device -> time, id, v bits) against the rows");
}

/// The first differences between what was expected and what a scan returned.
fn diff(expected: &Rows, got: &Rows) -> String {
    let missing: Vec<_> = expected.keys().filter(|k| !got.contains_key(k)).take(8).collect();
    let extra: Vec<_> = got.keys().filter(|k| !expected.contains_key(k)).take(8).collect();
    let changed: Vec<_> =
        expected.iter().filter_map(|(k, v)| got.get(k).filter(|g| *g != v).map(|g| (k, v.0, g.0))).take(8).collect();
    format!(
        "{} rows expected, {} returned; missing (device, time): {missing:?}; unexpected: {extra:?}; \
         other values (key, expected id, found id): {changed:?}",
        expected.len(),
        got.len()
    )
}

macro_rules! crash_tests {
    ($($test:ident: $name:literal,)*) => {
        $(
            #[doc = concat!("Crashes the lifecycle at `", $name, "` at every step that reaches it.")]
            #[test]
            fn $test() {
                crash_at_every_reach($name);
            }
        )*
        /// The failpoints the tests above crash at.
        const COVERED: &[&str] = &[$($name),*];
    };
}

crash_tests! {
    crash_after_flush_segments_written: "flush.segments_written",
    crash_after_flush_manifest_stored: "flush.manifest_stored",
    crash_after_flush_last_values_saved: "flush.last_values_saved",
    crash_after_compaction_output_written: "compaction.output_written",
    crash_after_compaction_manifest_swapped: "compaction.manifest_swapped",
    crash_after_compaction_inputs_deleted: "compaction.inputs_deleted",
    crash_after_retention_manifest_swapped: "retention.manifest_swapped",
    crash_after_delete_logged: "delete.logged",
    crash_after_tier_uploaded: "tier.uploaded",
    crash_after_tier_index_written: "tier.index_written",
    crash_after_tier_manifest_swapped: "tier.manifest_swapped",
    crash_after_backup_files_uploaded: "backup.files_uploaded",
}

/// Garbage collection has work only after a crash: the first child dies
/// after an upload (leaving an object nothing references), the second dies
/// in the collection at its open, after deleting that object.
#[test]
fn crash_during_garbage_collection() {
    let base = now_nanos().div_euclid(DAY) * DAY;
    let tier_step = SCENARIO.iter().position(|s| matches!(s, Step::Tier)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::default();
    let (stdout, died) = run_child(dir.path(), base, 0, SCENARIO.len(), Some("tier.uploaded"));
    assert!(died.is_some());
    log.read(&stdout);
    assert_eq!(log.in_flight, Some(tier_step), "{:?}", log.lines);
    let parquet = |d: &Path| walk(d).into_iter().filter(|p| p.extension().is_some_and(|e| e == "parquet")).count();
    assert_eq!(parquet(&object_dir(dir.path())), 1, "the unreferenced upload");
    let (stdout, died) = run_child(dir.path(), base, tier_step + 1, SCENARIO.len(), Some("tier.garbage_deleted"));
    assert_eq!(died.as_deref(), Some("tier.garbage_deleted"), "{stdout}");
    assert!(stdout.is_empty(), "the second child died at open, before any step: {stdout}");
    assert_eq!(parquet(&object_dir(dir.path())), 0, "garbage collection deleted the unreferenced upload");
    check(dir.path(), base, &log, "crashed in garbage collection at open");
}

#[test]
fn every_failpoint_has_a_crash_test() {
    let mut names = telemark_engine::failpoint::NAMES.to_vec();
    let mut covered = COVERED.to_vec();
    covered.push("tier.garbage_deleted");
    names.sort_unstable();
    covered.sort_unstable();
    assert_eq!(covered, names, "add a crash test for each new failpoint");
}

#[test]
fn lifecycle_without_crash() {
    let base = now_nanos().div_euclid(DAY) * DAY;
    let dir = tempfile::tempdir().unwrap();
    let (stdout, died) = run_child(dir.path(), base, 0, SCENARIO.len(), None);
    assert_eq!(died, None);
    let mut log = Log::default();
    log.read(&stdout);
    assert_eq!(log.done, (0..SCENARIO.len()).collect::<Vec<_>>(), "steps done");
    check(dir.path(), base, &log, "no failpoint");
}
