//! Arrow record batches (from `INSERT INTO`, Flight SQL ingest) to write batches.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampNanosecondType, UInt64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use datafusion::arrow::compute::cast;

use crate::batch::{BatchColumn, Column, Values};
use crate::schema::{ColumnKind, FieldType, TIME_COLUMN, TableSchema};
use crate::{Error, Result, WriteBatch};

/// The kind a column of an Arrow batch takes when the table does not have
/// it yet: strings are tags, numbers and booleans are fields.
fn kind_for(data_type: &DataType) -> Option<ColumnKind> {
    Some(match data_type {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnKind::Tag,
        DataType::Dictionary(_, v) if matches!(**v, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => {
            ColumnKind::Tag
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => ColumnKind::Field(FieldType::F64),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => ColumnKind::Field(FieldType::I64),
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => ColumnKind::Field(FieldType::U64),
        DataType::Boolean => ColumnKind::Field(FieldType::Bool),
        _ => return None,
    })
}

/// Converts an Arrow batch into rows for `table`. The batch needs a `time`
/// column (a timestamp, or integers as nanoseconds) without nulls. Columns the
/// table has keep their kind; new string columns become tags and new numeric
/// or boolean columns fields.
pub fn record_batch_to_write(table: &str, batch: &RecordBatch, existing: Option<&TableSchema>) -> Result<WriteBatch> {
    let schema = batch.schema();
    let time_idx = schema.index_of(TIME_COLUMN).map_err(|_| {
        Error::InvalidInput(format!(
            "table `{table}`: the data has no `time` column (a timestamp, or integer nanoseconds)"
        ))
    })?;
    let time = cast(batch.column(time_idx), &DataType::Timestamp(TimeUnit::Nanosecond, None))
        .map_err(|e| Error::InvalidInput(format!("table `{table}`: column `time`: {e}")))?;
    let time = time.as_primitive::<TimestampNanosecondType>();
    if time.null_count() > 0 {
        return Err(Error::InvalidInput(format!(
            "table `{table}`: column `time` has {} null values",
            time.null_count()
        )));
    }
    let n = batch.num_rows();
    let times = time.values().to_vec();
    let mut columns = Vec::new();
    for (i, field) in schema.fields().iter().enumerate() {
        if i == time_idx {
            continue;
        }
        let name = field.name();
        let stored = existing.and_then(|s| s.id_of(name).and_then(|id| s.column(id))).map(|c| c.kind);
        let kind = stored.or_else(|| kind_for(field.data_type())).ok_or_else(|| {
            Error::InvalidInput(format!(
                "table `{table}`: column `{name}` has type {}, which Telemark does not store",
                field.data_type()
            ))
        })?;
        let target = match kind.value_type() {
            FieldType::F64 => DataType::Float64,
            FieldType::I64 => DataType::Int64,
            FieldType::U64 => DataType::UInt64,
            FieldType::Bool => DataType::Boolean,
            FieldType::String => DataType::Utf8,
        };
        let array = cast(batch.column(i), &target).map_err(|e| {
            Error::InvalidInput(format!(
                "table `{table}`: column `{name}` is {} in the table, got {}: {e}",
                kind.with_article(),
                field.data_type()
            ))
        })?;
        let valid: Vec<bool> = (0..n).map(|r| array.is_valid(r)).collect();
        let values = match kind.value_type() {
            FieldType::F64 => Values::F64(array.as_primitive::<Float64Type>().values().to_vec()),
            FieldType::I64 => Values::I64(array.as_primitive::<Int64Type>().values().to_vec()),
            FieldType::U64 => Values::U64(array.as_primitive::<UInt64Type>().values().to_vec()),
            FieldType::Bool => Values::Bool((0..n).map(|r| array.as_boolean().value(r)).collect()),
            FieldType::String => {
                let s = array.as_string::<i32>();
                // An empty tag value means "no such tag", as in the row builder.
                let valid_tag = |r: usize| s.is_valid(r) && !(kind == ColumnKind::Tag && s.value(r).is_empty());
                let strings =
                    (0..n).map(|r| if valid_tag(r) { s.value(r).to_string() } else { String::new() }).collect();
                let valid = (0..n).map(valid_tag).collect();
                columns.push(BatchColumn {
                    name: name.clone(),
                    kind,
                    data: Column { values: Values::Str(strings), valid },
                });
                continue;
            }
        };
        columns.push(BatchColumn { name: name.clone(), kind, data: Column { values, valid } });
    }
    let out = WriteBatch::from_columns(table, times, columns);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{BooleanArray, Float32Array, Int32Array, StringArray, TimestampMillisecondArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    #[test]
    fn columns_keep_nulls_kinds_and_units() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("time", DataType::Timestamp(TimeUnit::Millisecond, None), false),
            Field::new("device", DataType::Utf8, true),
            Field::new("temp", DataType::Float32, true),
            Field::new("n", DataType::Int32, true),
            Field::new("ok", DataType::Boolean, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampMillisecondArray::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec![Some("a"), Some(""), None])),
                Arc::new(Float32Array::from(vec![Some(1.5), None, Some(3.0)])),
                Arc::new(Int32Array::from(vec![Some(7), Some(8), None])),
                Arc::new(BooleanArray::from(vec![None, Some(true), Some(false)])),
            ],
        )
        .unwrap();
        let w = record_batch_to_write("t", &batch, None).unwrap();
        assert_eq!(w.times, vec![1_000_000, 2_000_000, 3_000_000]);
        let col = |name: &str| w.columns.iter().find(|c| c.name == name).unwrap();
        assert_eq!(col("device").kind, ColumnKind::Tag);
        assert_eq!(col("device").data.valid, vec![true, false, false], "empty and null tags are absent");
        assert_eq!(col("temp").kind, ColumnKind::Field(FieldType::F64));
        assert_eq!(col("temp").data.valid, vec![true, false, true]);
        assert_eq!(col("n").data.values, Values::I64(vec![7, 8, 0]));
        assert_eq!(col("ok").data.valid, vec![false, true, true]);

        // An existing string field stays a field.
        let mut existing = TableSchema::default();
        existing.push("device", ColumnKind::Field(FieldType::String));
        let w = record_batch_to_write("t", &batch, Some(&existing)).unwrap();
        assert_eq!(col_kind(&w, "device"), ColumnKind::Field(FieldType::String));

        let no_time = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("v", DataType::Int32, false)])),
            vec![Arc::new(Int32Array::from(vec![1]))],
        )
        .unwrap();
        let e = record_batch_to_write("t", &no_time, None).unwrap_err().to_string();
        assert!(e.contains("no `time` column"), "{e}");
    }

    fn col_kind(w: &WriteBatch, name: &str) -> ColumnKind {
        w.columns.iter().find(|c| c.name == name).map(|c| c.kind).unwrap()
    }
}
