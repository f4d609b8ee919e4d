//! Query answers as sorted text rows, for the SQL tests that compare two
//! ways of answering (`last_values.rs`, `rollups.rs`).

use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use telemark_engine::query::QueryEngine;

/// The rows of `batches`, `columns` rendered `a|b|…` (NULL as `NULL`), sorted.
pub(crate) fn render(batches: &[arrow_array::RecordBatch], columns: &[&str]) -> Vec<String> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for b in batches {
        let fmts: Vec<_> = columns
            .iter()
            .map(|c| {
                let col = b.column_by_name(c).unwrap_or_else(|| panic!("no column {c} in {:?}", b.schema()));
                ArrayFormatter::try_new(col.as_ref(), &opts).unwrap()
            })
            .collect();
        for r in 0..b.num_rows() {
            rows.push(fmts.iter().map(|f| f.value(r).to_string()).collect::<Vec<_>>().join("|"));
        }
    }
    rows.sort();
    rows
}

/// Every column of the answer to `sql` in database `db`, rendered and sorted.
pub(crate) async fn rows(engine: &QueryEngine, sql: &str) -> Vec<String> {
    let batches = engine.sql(Some("db"), sql).await.unwrap().collect().await.unwrap();
    let Some(first) = batches.first() else { return Vec::new() };
    let names: Vec<String> = first.schema().fields().iter().map(|f| f.name().clone()).collect();
    render(&batches, &names.iter().map(String::as_str).collect::<Vec<_>>())
}
