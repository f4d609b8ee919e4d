//! Model test: random sequences of writes (out of order, duplicates, new
//! columns, type conflicts), deletes by device and time, retention,
//! compactions, flushes and reopens run against the engine and against a
//! plain in-memory model; every scan must agree.
//!
//! Retention is measured against the wall clock, so row times are laid out
//! relative to the moment a case starts: slot `t` is `base + t * 7 h`, every
//! slot at least two days in the past. A retention rule always cuts halfway
//! between two slots (3.5 h from the nearest row), so the seconds a case
//! takes never move a row across the cutoff.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is a test failure")]

use std::collections::BTreeMap;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampNanosecondType, UInt64Type};
use arrow_array::{Array, RecordBatch};
use proptest::prelude::*;
use telemark_engine::{
    ColumnKind, CompactionOptions, Database, DeleteRequest, Error, FieldType, FieldValue, Options, ScanRequest,
    WriteBatch,
};

const HOUR: i64 = 3_600_000_000_000;
const DAY: i64 = 24 * HOUR;
/// Distance between two generated row times; spreads rows over several daily partitions.
const SLOT: i64 = 7 * HOUR;
/// Slots generated: `SLOTS.start * 7 h` .. `SLOTS.end * 7 h` after the base.
const SLOTS: std::ops::Range<i64> = -5..40;

#[derive(Debug, Clone, PartialEq)]
enum V {
    F(u64), // f64 bits, so NaN compares
    I(i64),
    U(u64),
    B(bool),
    S(String),
}

#[derive(Debug, Clone)]
struct Row {
    device: Option<u8>,
    /// Time slot; the time is [`Clock::time`] of it.
    slot: i64,
    fields: Vec<(String, FieldValue)>,
}

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<Row>),
    Flush,
    Reopen {
        close: bool,
    },
    /// Deletes rows of these devices, in slots `[start, end)` if a range is given.
    Delete {
        devices: Vec<u8>,
        range: Option<(i64, i64)>,
    },
    Compact,
    /// Sets a retention that expires every slot below `expire_below` (a rule
    /// never loosens: a lower value keeps the current one).
    Retention {
        expire_below: i64,
    },
    EnforceRetention,
}

/// Fixed types per column name so most writes agree; `v` sometimes comes as an integer to provoke conflicts.
fn field() -> impl Strategy<Value = (String, FieldValue)> {
    prop_oneof![
        4 => prop_oneof![Just(f64::NAN), Just(-0.0), any::<f64>(), (-1000i32..1000).prop_map(|x| f64::from(x) / 100.0)].prop_map(|v| ("v".to_string(), FieldValue::F64(v))),
        1 => any::<i64>().prop_map(|v| ("v".to_string(), FieldValue::I64(v))),
        2 => any::<i64>().prop_map(|v| ("n".to_string(), FieldValue::I64(v))),
        1 => any::<u64>().prop_map(|v| ("u".to_string(), FieldValue::U64(v))),
        1 => any::<bool>().prop_map(|v| ("b".to_string(), FieldValue::Bool(v))),
        1 => "[a-c]{0,3}".prop_map(|v| ("s".to_string(), FieldValue::Str(v))),
        1 => (0u8..4, any::<i64>()).prop_map(|(j, v)| (format!("extra{j}"), FieldValue::I64(v))),
    ]
}

fn row() -> impl Strategy<Value = Row> {
    (prop::option::weighted(0.9, 0u8..4), SLOTS, prop::collection::vec(field(), 1..4))
        .prop_map(|(device, slot, fields)| Row { device, slot, fields })
}

fn op() -> impl Strategy<Value = Op> {
    let range = (SLOTS.start - 1..SLOTS.end + 1, 1i64..20).prop_map(|(start, len)| (start, start + len));
    prop_oneof![
        6 => prop::collection::vec(row(), 1..30).prop_map(Op::Write),
        2 => Just(Op::Flush),
        1 => any::<bool>().prop_map(|close| Op::Reopen { close }),
        // Device 4 never has rows: a delete of nothing.
        2 => (prop::collection::vec(0u8..5, 1..3), prop::option::of(range))
            .prop_map(|(devices, range)| Op::Delete { devices, range }),
        1 => Just(Op::Compact),
        1 => (SLOTS.start + 1..SLOTS.start + 25).prop_map(|expire_below| Op::Retention { expire_below }),
        1 => Just(Op::EnforceRetention),
    ]
}

/// Maps slots to times relative to the wall clock when a case starts.
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// Wall clock at the start of the case (ns since the epoch).
    started: i64,
    /// Time of slot 0: midnight 14 days before the start day, so slot 0 and
    /// 24 fall on partition boundaries and the last slot is over 2 days old.
    base: i64,
}

impl Clock {
    fn now() -> Self {
        let started =
            i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
                .unwrap();
        let base = started.div_euclid(DAY) * DAY - 48 * SLOT;
        Clock { started, base }
    }

    fn time(&self, slot: i64) -> i64 {
        self.base + slot * SLOT
    }

    /// The retention that expires the slots below `slot`: its cutoff lies
    /// half a slot before that slot's time (plus the time since the start).
    fn keep_expiring_below(&self, slot: i64) -> Duration {
        let cutoff = self.time(slot) - SLOT / 2;
        Duration::from_nanos(u64::try_from(self.started - cutoff).unwrap())
    }
}

type Key = (Option<u8>, i64);

#[derive(Default)]
struct Model {
    types: BTreeMap<String, std::mem::Discriminant<FieldValue>>,
    rows: BTreeMap<Key, BTreeMap<String, V>>,
    /// Rows in slots below this one are expired (retention).
    expire_below: Option<i64>,
}

fn to_v(f: &FieldValue) -> V {
    match f {
        FieldValue::F64(x) => V::F(x.to_bits()),
        FieldValue::I64(x) => V::I(*x),
        FieldValue::U64(x) => V::U(*x),
        FieldValue::Bool(x) => V::B(*x),
        FieldValue::Str(x) => V::S(x.clone()),
    }
}

/// What the model expects of a write.
struct WriteExpect {
    written: usize,
    /// Rows refused only for being older than the retention cutoff.
    expired: usize,
}

impl Model {
    fn write(&mut self, clock: &Clock, rows: &[Row]) -> WriteExpect {
        // A value must have its column's stored type; for a column the table does
        // not have yet, the type of its first value in the batch.
        let is_expired = |r: &Row| self.expire_below.is_some_and(|s| r.slot < s);
        // As the engine sees it: the kinds of each name in order of first appearance in the
        // batch (its sub-columns), and per name the kind of the first value in a row that
        // retention does not refuse (within one row, the kind that appeared first in the batch).
        let mut order: BTreeMap<String, Vec<std::mem::Discriminant<FieldValue>>> = BTreeMap::new();
        for r in rows {
            for (name, v) in &r.fields {
                let kinds = order.entry(name.clone()).or_default();
                if !kinds.contains(&std::mem::discriminant(v)) {
                    kinds.push(std::mem::discriminant(v));
                }
            }
        }
        let mut batch_types: BTreeMap<String, std::mem::Discriminant<FieldValue>> = BTreeMap::new();
        for r in rows.iter().filter(|r| !is_expired(r)) {
            for (name, _) in &r.fields {
                if batch_types.contains_key(name) {
                    continue;
                }
                let kinds = &order[name];
                let best = r
                    .fields
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, v)| std::mem::discriminant(v))
                    .min_by_key(|d| kinds.iter().position(|k| k == d));
                if let Some(d) = best {
                    batch_types.insert(name.clone(), d);
                }
            }
        }
        let mut accepted = Vec::new();
        let mut expired = 0;
        for r in rows {
            if is_expired(r) {
                // Refused by retention before anything else: its values set no column type.
                expired += 1;
                continue;
            }
            let mut ok = true;
            let mut vals: BTreeMap<String, V> = BTreeMap::new();
            for (name, v) in &r.fields {
                let d = std::mem::discriminant(v);
                let first = batch_types.get(name).copied().unwrap_or(d);
                let expected = self.types.get(name).copied().unwrap_or(first);
                if d != expected {
                    ok = false;
                }
                vals.insert(name.clone(), to_v(v)); // a repeated field in one row: the last wins
            }
            if ok {
                accepted.push((r, vals));
            }
        }
        // New columns take the batch's type, if a written row holds a value in them.
        for (r, _) in &accepted {
            for (name, _) in &r.fields {
                if let Some(d) = batch_types.get(name) {
                    self.types.entry(name.clone()).or_insert(*d);
                }
            }
        }
        let written = accepted.len();
        for (r, vals) in accepted {
            self.rows.entry((r.device, clock.time(r.slot))).or_default().extend(vals);
        }
        WriteExpect { written, expired }
    }

    /// Removes the rows a delete matches; returns how many.
    fn delete(&mut self, devices: &[u8], range: Option<(i64, i64)>) -> usize {
        let before = self.rows.len();
        self.rows.retain(|(device, time), _| {
            let series = device.is_some_and(|d| devices.contains(&d));
            let in_range = range.is_none_or(|(start, end)| start <= *time && *time < end);
            !(series && in_range)
        });
        before - self.rows.len()
    }

    /// Expires the slots below `slot` (never fewer than before); returns the slot in force.
    fn expire_below(&mut self, clock: &Clock, slot: i64) -> i64 {
        let slot = self.expire_below.map_or(slot, |s| s.max(slot));
        self.expire_below = Some(slot);
        let kept_from = clock.time(slot);
        self.rows.retain(|(_, time), _| *time >= kept_from);
        slot
    }
}

fn batch(clock: &Clock, rows: &[Row]) -> WriteBatch {
    let mut b = WriteBatch::new("m");
    for r in rows {
        let mut w = b.row(clock.time(r.slot));
        if let Some(d) = r.device {
            w = w.tag("device", format!("d{d}"));
        }
        for (name, v) in &r.fields {
            w = w.field(name, v.clone());
        }
    }
    b
}

fn scan(db: &Database, req: ScanRequest) -> BTreeMap<Key, BTreeMap<String, V>> {
    let mut out = BTreeMap::new();
    let Ok(stream) = db.scan(&req) else {
        return out;
    };
    for b in stream {
        let b: RecordBatch = b.unwrap();
        let schema = b.schema();
        let t = b.column_by_name("time").unwrap().as_primitive::<TimestampNanosecondType>();
        for r in 0..b.num_rows() {
            let mut device = None;
            let mut vals = BTreeMap::new();
            for (i, f) in schema.fields().iter().enumerate() {
                let c = b.column(i);
                if f.name() == "time" || c.is_null(r) {
                    continue;
                }
                if f.name() == "device" {
                    device = Some(c.as_string_view().value(r)[1..].parse::<u8>().unwrap());
                    continue;
                }
                let v = match c.data_type() {
                    arrow_schema::DataType::Float64 => V::F(c.as_primitive::<Float64Type>().value(r).to_bits()),
                    arrow_schema::DataType::Int64 => V::I(c.as_primitive::<Int64Type>().value(r)),
                    arrow_schema::DataType::UInt64 => V::U(c.as_primitive::<UInt64Type>().value(r)),
                    arrow_schema::DataType::Boolean => V::B(c.as_boolean().value(r)),
                    arrow_schema::DataType::Utf8 => V::S(c.as_string::<i32>().value(r).to_string()),
                    other => panic!("unexpected type {other}"),
                };
                vals.insert(f.name().clone(), v);
            }
            let prev = out.insert((device, t.value(r)), vals);
            assert!(prev.is_none(), "row {:?} returned twice", (device, t.value(r)));
        }
    }
    out
}

fn options() -> Options {
    Options {
        background_flush: false,
        compaction: CompactionOptions { background: false, ..CompactionOptions::default() },
        ..Options::default()
    }
}

fn run(ops: Vec<Op>) {
    let clock = Clock::now();
    let dir = tempfile::tempdir().unwrap();
    let mut db = Some(Database::open(dir.path(), options()).unwrap());
    let mut model = Model::default();
    for op in &ops {
        let d = db.as_ref().unwrap();
        match op {
            Op::Write(rows) => {
                let out = d.write("model", &batch(&clock, rows)).unwrap();
                let expected = model.write(&clock, rows);
                assert_eq!(out.rows_written, expected.written, "rows written; rejected: {:?}", out.rejected);
                let expired = out.rejected.iter().filter(|e| e.message.contains("retention")).count();
                assert_eq!(expired, expected.expired, "rows refused by retention: {:?}", out.rejected);
            }
            Op::Flush => d.flush().unwrap(),
            Op::Reopen { close } => {
                let d = db.take().unwrap();
                if *close {
                    d.close().unwrap();
                } else {
                    drop(d);
                }
                db = Some(Database::open(dir.path(), options()).unwrap());
            }
            Op::Delete { devices, range } => {
                let range = range.map(|(start, end)| (clock.time(start), clock.time(end)));
                let mut req = DeleteRequest::new("m").filter_tag("device", devices.iter().map(|d| format!("d{d}")));
                if let Some((start, end)) = range {
                    req = req.time_range(start, end);
                }
                match d.delete("model", &req) {
                    Ok(out) => {
                        let matched = model.delete(devices, range);
                        assert_eq!(out.rows_matched, matched as u64, "rows matched by {req:?}");
                    }
                    // The table does not exist yet: nothing was ever written.
                    Err(Error::NotFound { .. }) => assert!(model.rows.is_empty(), "{req:?}: table not found"),
                    Err(e) => panic!("{req:?}: {e}"),
                }
            }
            Op::Compact => {
                let report = d.compact().unwrap();
                assert!(report.failures.is_empty(), "compaction failures: {:?}", report.failures);
            }
            Op::Retention { expire_below } => {
                let slot = model.expire_below(&clock, *expire_below);
                d.set_retention("model", None, Some(clock.keep_expiring_below(slot))).unwrap();
            }
            Op::EnforceRetention => {
                d.enforce_retention().unwrap();
            }
        }
        let d = db.as_ref().unwrap();
        assert_eq!(scan(d, ScanRequest::new("model", "m")), model.rows, "full scan after {op:?}");
    }
    // Filtered scans agree with the filtered model.
    let d = db.as_ref().unwrap();
    let (lo, hi) = (clock.time(3), clock.time(20));
    let expect: BTreeMap<Key, BTreeMap<String, V>> = model
        .rows
        .iter()
        .filter(|((dev, t), _)| (*dev == Some(1) || *dev == Some(2)) && *t >= lo && *t < hi)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    let got = scan(d, ScanRequest::new("model", "m").time_range(lo, hi).filter_tag("device", ["d1", "d2"]));
    assert_eq!(got, expect, "filtered scan");
}

/// Cases per run: 48, or `TELEMARK_MODEL_CASES` for a longer hunt.
fn cases() -> u32 {
    std::env::var("TELEMARK_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn engine_agrees_with_model(ops in prop::collection::vec(op(), 1..25)) {
        run(ops);
    }
}

/// Named regression (an engine bug, fixed): a row refused by retention must not
/// add its columns to the table: a column appears only if a written row
/// holds a value in it. Found by `engine_agrees_with_model`.
#[test]
fn row_refused_by_retention_adds_no_column() {
    let clock = Clock::now();
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), options()).unwrap();
    db.set_retention("model", None, Some(Duration::from_secs(30 * 86_400))).unwrap();
    let mut old = WriteBatch::new("m");
    old.row(clock.started - 40 * DAY).field("v", 1i64);
    let out = db.write("model", &old).unwrap();
    assert_eq!(out.rows_written, 0, "refused by retention");
    let mut recent = WriteBatch::new("m");
    recent.row(clock.started - DAY).field("v", 1.5);
    let out = db.write("model", &recent).unwrap();
    assert_eq!(out.rows_written, 1, "rejected: {:?}", out.rejected);
    assert_eq!(db.column_kind("model", "m", "v"), Some(ColumnKind::Field(FieldType::F64)));
}

/// The same bug seen across a restart: the refused row's column lives only
/// in memory (until a flush stores the catalog), so the schema depends on
/// whether the database was reopened.
#[test]
fn row_refused_by_retention_schema_same_after_reopen() {
    let clock = Clock::now();
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), options()).unwrap();
    db.set_retention("model", None, Some(Duration::from_secs(30 * 86_400))).unwrap();
    let mut old = WriteBatch::new("m");
    old.row(clock.started - 40 * DAY).field("v", 1i64);
    let _ = db.write("model", &old).unwrap();
    let before = db.column_kind("model", "m", "v");
    drop(db);
    let db = Database::open(dir.path(), options()).unwrap();
    assert_eq!(db.column_kind("model", "m", "v"), before, "schema changed by a reopen");
}
