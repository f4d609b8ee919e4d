//! Arrow record batches (from `INSERT INTO`, Flight SQL ingest) to write batches.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampNanosecondType, UInt64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use datafusion::arrow::compute::cast;

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
    enum Col {
        Tag(arrow_array::ArrayRef),
        F64(arrow_array::ArrayRef),
        I64(arrow_array::ArrayRef),
        U64(arrow_array::ArrayRef),
        Bool(arrow_array::ArrayRef),
        Str(arrow_array::ArrayRef),
    }
    let mut cols = Vec::new();
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
                "table `{table}`: column `{name}` is a {kind} in the table, got {}: {e}",
                field.data_type()
            ))
        })?;
        cols.push((
            name.clone(),
            match kind {
                ColumnKind::Tag => Col::Tag(array),
                ColumnKind::Field(FieldType::F64) => Col::F64(array),
                ColumnKind::Field(FieldType::I64) => Col::I64(array),
                ColumnKind::Field(FieldType::U64) => Col::U64(array),
                ColumnKind::Field(FieldType::Bool) => Col::Bool(array),
                ColumnKind::Field(FieldType::String) => Col::Str(array),
            },
        ));
    }
    let mut out = WriteBatch::new(table);
    for r in 0..batch.num_rows() {
        let mut w = out.row(time.value(r));
        for (name, c) in &cols {
            w = match c {
                Col::Tag(a) if a.is_valid(r) => w.tag(name, a.as_string::<i32>().value(r)),
                Col::Str(a) if a.is_valid(r) => w.field(name, a.as_string::<i32>().value(r)),
                Col::F64(a) if a.is_valid(r) => w.field(name, a.as_primitive::<Float64Type>().value(r)),
                Col::I64(a) if a.is_valid(r) => w.field(name, a.as_primitive::<Int64Type>().value(r)),
                Col::U64(a) if a.is_valid(r) => w.field(name, a.as_primitive::<UInt64Type>().value(r)),
                Col::Bool(a) if a.is_valid(r) => w.field(name, a.as_boolean().value(r)),
                _ => w,
            };
        }
    }
    Ok(out)
}
