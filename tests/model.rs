//! Model test: random sequences of writes (out of order, duplicates, new
//! columns, type conflicts), flushes and reopens run against the engine and
//! against a plain in-memory model; every scan must agree.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is a test failure")]

use std::collections::BTreeMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampNanosecondType, UInt64Type};
use arrow_array::{Array, RecordBatch};
use proptest::prelude::*;
use telemark_engine::{Database, FieldValue, Options, ScanRequest, WriteBatch};

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
    time: i64,
    fields: Vec<(String, FieldValue)>,
}

#[derive(Debug, Clone)]
enum Op {
    Write(Vec<Row>),
    Flush,
    Reopen { close: bool },
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
    (prop::option::weighted(0.9, 0u8..4), -5i64..40, prop::collection::vec(field(), 1..4)).prop_map(
        |(device, t, fields)| Row {
            device,
            time: t * 1_000_000_000 * 3600 * 7, // spreads rows over several daily partitions
            fields,
        },
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(row(), 1..30).prop_map(Op::Write),
        2 => Just(Op::Flush),
        1 => any::<bool>().prop_map(|close| Op::Reopen { close }),
    ]
}

type Key = (Option<u8>, i64);

#[derive(Default)]
struct Model {
    types: BTreeMap<String, std::mem::Discriminant<FieldValue>>,
    rows: BTreeMap<Key, BTreeMap<String, V>>,
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

impl Model {
    fn write(&mut self, rows: &[Row]) -> usize {
        // A value must have its column's stored type; for a column the table does
        // not have yet, the type of its first value in the batch.
        let mut batch_types: BTreeMap<String, std::mem::Discriminant<FieldValue>> = BTreeMap::new();
        let mut accepted = Vec::new();
        for r in rows {
            let mut ok = true;
            let mut vals: BTreeMap<String, V> = BTreeMap::new();
            for (name, v) in &r.fields {
                let d = std::mem::discriminant(v);
                let first = *batch_types.entry(name.clone()).or_insert(d);
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
        let n = accepted.len();
        for (r, vals) in accepted {
            self.rows.entry((r.device, r.time)).or_default().extend(vals);
        }
        n
    }
}

fn batch(rows: &[Row]) -> WriteBatch {
    let mut b = WriteBatch::new("m");
    for r in rows {
        let mut w = b.row(r.time);
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

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options { background_flush: false, ..Options::default() };
    let mut db = Some(Database::open(dir.path(), options()).unwrap());
    let mut model = Model::default();
    for op in &ops {
        let d = db.as_ref().unwrap();
        match op {
            Op::Write(rows) => {
                let out = d.write("model", &batch(rows)).unwrap();
                let expected = model.write(rows);
                assert_eq!(out.rows_written, expected, "rows written; rejected: {:?}", out.rejected);
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
        }
        let d = db.as_ref().unwrap();
        assert_eq!(scan(d, ScanRequest::new("model", "m")), model.rows, "full scan after {op:?}");
    }
    // Filtered scans agree with the filtered model.
    let d = db.as_ref().unwrap();
    let hour = 3_600_000_000_000i64;
    let (lo, hi) = (3 * 7 * hour, 20 * 7 * hour);
    let expect: BTreeMap<Key, BTreeMap<String, V>> = model
        .rows
        .iter()
        .filter(|((dev, t), _)| (*dev == Some(1) || *dev == Some(2)) && *t >= lo && *t < hi)
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    let got = scan(d, ScanRequest::new("model", "m").time_range(lo, hi).filter_tag("device", ["d1", "d2"]));
    assert_eq!(got, expect, "filtered scan");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn engine_agrees_with_model(ops in prop::collection::vec(op(), 1..25)) {
        run(ops);
    }
}
