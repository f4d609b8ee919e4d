//! Plain Arrow types for clients: views, large and dictionary strings become
//! `Utf8` (the engine returns tags as `Utf8View`; Grafana, JDBC and older
//! Arrow readers do not read views).

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;

/// Arrow types every Flight SQL client reads: views, large and dictionary strings become plain.
fn plain_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::Dictionary(_, v) => plain_type(v),
        other => other.clone(),
    }
}

pub(crate) fn plain_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                Field::new(f.name(), plain_type(f.data_type()), f.is_nullable()).with_metadata(f.metadata().clone())
            })
            .collect::<Vec<_>>(),
    ))
}

pub(crate) fn plain_batch(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.schema().fields().iter().zip(schema.fields()).all(|(a, b)| a.data_type() == b.data_type()) {
        return RecordBatch::try_new(schema.clone(), batch.columns().to_vec());
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| arrow::compute::cast(c, f.data_type()))
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}
