//! The DataFusion table provider over an engine table, and its scan plan.

use std::fmt;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;

use super::external;
use crate::scan::{CmpOp, FieldCondition, FieldFilter};
use crate::schema::{ColumnKind, FieldType, TIME_COLUMN, TableSchema};
use crate::{Database, FieldValue, ScanRequest};

/// A table of a Telemark database, as DataFusion sees it.
#[derive(Debug)]
pub(crate) struct TelemarkTable {
    db: Arc<Database>,
    database: String,
    table: String,
    schema: TableSchema,
    arrow: SchemaRef,
    writable: bool,
}

impl TelemarkTable {
    /// Database and table.
    pub(crate) fn names(&self) -> (&str, &str) {
        (&self.database, &self.table)
    }

    pub(crate) fn new(db: Arc<Database>, database: &str, table: &str, schema: TableSchema, writable: bool) -> Self {
        let arrow = crate::arrow_schema(&schema);
        TelemarkTable { db, database: database.to_string(), table: table.to_string(), schema, arrow, writable }
    }
}

/// A filter the engine applies exactly.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pushed {
    /// `time >= t`
    From(i64),
    /// `time < t`
    Until(i64),
    /// `tag IN (values)`
    Tag(String, Vec<String>),
    /// `tag IS NOT NULL`
    Present(String),
    /// `field <op> constant` or `field IS NOT NULL`
    Field(FieldFilter),
}

/// The engine's spelling of a comparison operator.
fn cmp_op(op: Operator) -> Option<CmpOp> {
    Some(match op {
        Operator::Eq => CmpOp::Eq,
        Operator::NotEq => CmpOp::NotEq,
        Operator::Lt => CmpOp::Lt,
        Operator::LtEq => CmpOp::LtEq,
        Operator::Gt => CmpOp::Gt,
        Operator::GtEq => CmpOp::GtEq,
        _ => return None,
    })
}

fn timestamp_ns(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampNanosecond(Some(t), _) => Some(*t),
        ScalarValue::TimestampMicrosecond(Some(t), _) => t.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(t), _) => t.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(t), _) => t.checked_mul(1_000_000_000),
        _ => None,
    }
}

pub(crate) fn string(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => {
            Some(s.clone())
        }
        ScalarValue::Dictionary(_, inner) => string(inner),
        _ => None,
    }
}

fn literal(e: &Expr) -> Option<&ScalarValue> {
    match e {
        Expr::Literal(v, _) => Some(v),
        _ => None,
    }
}

fn column(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column(c) => Some(c.name.as_str()),
        _ => None,
    }
}

impl TelemarkTable {
    pub(crate) fn db(&self) -> &Database {
        &self.db
    }

    /// A read-only copy (for the last-value cache's table, see [`super::last`]).
    pub(crate) fn reopened(&self) -> TelemarkTable {
        TelemarkTable::new(self.db.clone(), &self.database, &self.table, self.schema.clone(), false)
    }

    /// Another table of the same database, read-only (`None` if it does not exist).
    pub(crate) fn sibling(&self, table: &str) -> Option<TelemarkTable> {
        let schema = self.db.table_schema(&self.database, table)?;
        Some(TelemarkTable::new(self.db.clone(), &self.database, table, schema, false))
    }

    pub(crate) fn has_column(&self, name: &str) -> bool {
        self.schema.id_of(name).is_some()
    }

    pub(crate) fn is_tag(&self, name: &str) -> bool {
        self.schema.id_of(name).and_then(|i| self.schema.column(i)).is_some_and(|c| c.kind == ColumnKind::Tag)
    }

    /// The type of field column `name`, if it is one.
    fn field_type(&self, name: &str) -> Option<FieldType> {
        match self.schema.id_of(name).and_then(|i| self.schema.column(i))?.kind {
            ColumnKind::Field(t) => Some(t),
            ColumnKind::Tag => None,
        }
    }

    /// `v` as a value of field column `name`, if it is exactly of that column's
    /// type (DataFusion has coerced the two sides of a comparison by now; a
    /// column under a cast is not a bare column and is not pushed).
    fn field_constant(&self, name: &str, v: &ScalarValue) -> Option<FieldValue> {
        Some(match (self.field_type(name)?, v) {
            (FieldType::F64, ScalarValue::Float64(Some(x))) => FieldValue::F64(*x),
            (FieldType::I64, ScalarValue::Int64(Some(x))) => FieldValue::I64(*x),
            (FieldType::U64, ScalarValue::UInt64(Some(x))) => FieldValue::U64(*x),
            (FieldType::Bool, ScalarValue::Boolean(Some(x))) => FieldValue::Bool(*x),
            (FieldType::String, ScalarValue::Utf8(Some(x)) | ScalarValue::LargeUtf8(Some(x))) => {
                FieldValue::Str(x.clone())
            }
            _ => return None,
        })
    }

    /// The engine filters an expression stands for, or `None` if it cannot be pushed.
    pub(crate) fn classify(&self, e: &Expr) -> Option<Vec<Pushed>> {
        match e {
            // DataFusion rewrites a short `tag IN (a, b)` into `tag = a OR tag = b`.
            Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
                match (self.classify(left)?.as_slice(), self.classify(right)?.as_slice()) {
                    ([Pushed::Tag(a, va)], [Pushed::Tag(b, vb)]) if a == b => {
                        Some(vec![Pushed::Tag(a.clone(), va.iter().chain(vb).cloned().collect())])
                    }
                    _ => None,
                }
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (col, op, lit) = match (column(left), literal(right), column(right), literal(left)) {
                    (Some(c), Some(v), _, _) => (c, *op, v),
                    (_, _, Some(c), Some(v)) => (c, op.swap()?, v),
                    _ => return None,
                };
                if col == TIME_COLUMN {
                    let t = timestamp_ns(lit)?;
                    return Some(match op {
                        Operator::GtEq => vec![Pushed::From(t)],
                        Operator::Gt => vec![Pushed::From(t.checked_add(1)?)],
                        Operator::Lt => vec![Pushed::Until(t)],
                        Operator::LtEq => vec![Pushed::Until(t.checked_add(1)?)],
                        Operator::Eq => vec![Pushed::From(t), Pushed::Until(t.checked_add(1)?)],
                        _ => return None,
                    });
                }
                if op == Operator::Eq && self.is_tag(col) {
                    return Some(vec![Pushed::Tag(col.to_string(), vec![string(lit)?])]);
                }
                let condition = FieldCondition::Compare(cmp_op(op)?, self.field_constant(col, lit)?);
                Some(vec![Pushed::Field(FieldFilter { column: col.to_string(), condition })])
            }
            Expr::InList(l) if !l.negated => {
                let col = column(&l.expr)?;
                if !self.is_tag(col) {
                    return None;
                }
                let values = l.list.iter().map(|v| literal(v).and_then(string)).collect::<Option<Vec<_>>>()?;
                Some(vec![Pushed::Tag(col.to_string(), values)])
            }
            // A series has a tag or not: `tag IS NOT NULL` selects series.
            Expr::IsNotNull(e) => {
                let col = column(e)?;
                if self.is_tag(col) {
                    return Some(vec![Pushed::Present(col.to_string())]);
                }
                self.field_type(col)?;
                Some(vec![Pushed::Field(FieldFilter { column: col.to_string(), condition: FieldCondition::Present })])
            }
            Expr::Between(b) if !b.negated && column(&b.expr) == Some(TIME_COLUMN) => {
                let lo = timestamp_ns(literal(&b.low)?)?;
                let hi = timestamp_ns(literal(&b.high)?)?;
                Some(vec![Pushed::From(lo), Pushed::Until(hi.checked_add(1)?)])
            }
            _ => None,
        }
    }
}

#[async_trait]
impl TableProvider for TelemarkTable {
    fn schema(&self) -> SchemaRef {
        self.arrow.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match self.classify(f) {
                Some(_) => TableProviderFilterPushDown::Exact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let partitions = state.config().target_partitions().max(1);
        let mut req = ScanRequest::new(&self.database, &self.table);
        for p in filters.iter().filter_map(|f| self.classify(f)).flatten() {
            match p {
                Pushed::From(t) => req.start = Some(req.start.map_or(t, |s| s.max(t))),
                Pushed::Until(t) => req.end = Some(req.end.map_or(t, |e| e.min(t))),
                Pushed::Present(tag) => {
                    if !req.required_tags.contains(&tag) {
                        req = req.require_tag(tag);
                    }
                }
                Pushed::Tag(tag, values) => {
                    // Two filters on one tag: keep the intersection.
                    if let Some(f) = req.tag_filters.iter_mut().find(|f| f.tag == tag) {
                        f.values.retain(|v| values.contains(v));
                    } else {
                        req = req.filter_tag(tag, values);
                    }
                }
                Pushed::Field(f) => req.field_filters.push(f),
            }
        }
        let names: Vec<String> = match projection {
            Some(p) => p.iter().filter_map(|&i| self.arrow.fields().get(i).map(|f| f.name().clone())).collect(),
            None => self.arrow.fields().iter().map(|f| f.name().clone()).collect(),
        };
        let schema =
            Arc::new(self.arrow.project(
                projection.map(Vec::as_slice).unwrap_or(&(0..self.arrow.fields().len()).collect::<Vec<_>>()),
            )?);
        let columns = names
            .iter()
            .map(|n| match n.as_str() {
                TIME_COLUMN => ScanColumn::Time,
                n if self.is_tag(n) => ScanColumn::Tag,
                _ => ScanColumn::Field,
            })
            .collect();
        req = req.project(names);
        Ok(Arc::new(TelemarkScanExec::new(self.db.clone(), req, schema, columns, limit, partitions)))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !self.writable {
            return Err(DataFusionError::Plan(format!(
                "permission denied: this token may not write database `{}`",
                self.database
            )));
        }
        if insert_op != InsertOp::Append {
            return Err(DataFusionError::NotImplemented(format!(
                "{insert_op} is not supported; Telemark tables take INSERT INTO (appends; same series and time: last write wins)"
            )));
        }
        let sink = InsertSink {
            db: self.db.clone(),
            database: self.database.clone(),
            table: self.table.clone(),
            schema: self.arrow.clone(),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }

    async fn delete_from(&self, _state: &dyn Session, filters: Vec<Expr>) -> Result<Arc<dyn ExecutionPlan>> {
        if !self.writable {
            return Err(DataFusionError::Plan(format!(
                "permission denied: this token may not write database `{}` (DELETE needs write access)",
                self.database
            )));
        }
        if filters.is_empty() {
            // Also what DataFusion leaves of a WHERE that is always true or always false.
            return Err(DataFusionError::Plan(format!(
                "DELETE needs a WHERE naming the rows of {}.{} (none is left here, or it is always true or false): \
                 WHERE <tag> = '…' or <tag> IN (…), optionally AND time >= … AND time < …",
                self.database, self.table
            )));
        }
        let mut req = crate::DeleteRequest::new(&self.table);
        for f in &filters {
            let pushed =
                self.classify(f).filter(|p| !p.iter().any(|x| matches!(x, Pushed::Present(_) | Pushed::Field(_))));
            let Some(pushed) = pushed else {
                let field = f.column_refs().into_iter().find_map(|c| {
                    let def = self.schema.id_of(&c.name).and_then(|i| self.schema.column(i))?;
                    (def.kind != ColumnKind::Tag).then(|| format!("`{}` is a {}", c.name, def.kind))
                });
                return Err(DataFusionError::Plan(match field {
                    Some(what) => format!(
                        "DELETE selects rows by tags and time only; {what}, so `{f}` cannot choose rows to delete"
                    ),
                    None => format!(
                        "DELETE supports conditions on tags (= or IN) and on time (>=, >, <, <=, =, BETWEEN) \
                         joined by AND; `{f}` is not one"
                    ),
                }));
            };
            for p in pushed {
                match p {
                    Pushed::From(t) => req.start = Some(req.start.map_or(t, |s| s.max(t))),
                    Pushed::Until(t) => req.end = Some(req.end.map_or(t, |e| e.min(t))),
                    Pushed::Present(_) | Pushed::Field(_) => {}
                    Pushed::Tag(tag, values) => {
                        if let Some(f) = req.tag_filters.iter_mut().find(|f| f.tag == tag) {
                            f.values.retain(|v| values.contains(v));
                        } else {
                            req = req.filter_tag(tag, values);
                        }
                    }
                }
            }
        }
        // Contradictory conditions (`d = 'a' AND d = 'b'`, an empty time range) delete nothing.
        let empty_range = matches!((req.start, req.end), (Some(s), Some(e)) if s >= e);
        if empty_range || req.tag_filters.iter().any(|f| f.values.is_empty()) {
            return Ok(Arc::new(super::delete::DeleteExec::nothing()));
        }
        Ok(Arc::new(super::delete::DeleteExec::new(self.db.clone(), self.database.clone(), req)))
    }
}

/// What a column of a scan's output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanColumn {
    Time,
    /// Constant for every row of a series.
    Tag,
    Field,
}

/// Reads a Telemark table with time range, tag filters, projection and limit pushed down.
#[derive(Debug)]
pub struct TelemarkScanExec {
    db: Arc<Database>,
    request: ScanRequest,
    schema: SchemaRef,
    columns: Vec<ScanColumn>,
    limit: Option<usize>,
    partitions: usize,
    properties: Arc<PlanProperties>,
}

impl TelemarkScanExec {
    /// A scan split into `partitions` shares of the series, read in parallel.
    fn new(
        db: Arc<Database>,
        request: ScanRequest,
        schema: SchemaRef,
        columns: Vec<ScanColumn>,
        limit: Option<usize>,
        partitions: usize,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        TelemarkScanExec { db, request, schema, columns, limit, partitions, properties }
    }

    /// What output column `i` is.
    pub(crate) fn column(&self, i: usize) -> Option<ScanColumn> {
        self.columns.get(i).copied()
    }
}

impl DisplayAs for TelemarkScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.request;
        write!(f, "TelemarkScanExec: table={}.{}", r.database, r.table)?;
        if r.start.is_some() || r.end.is_some() {
            let show = |v: Option<i64>| v.map_or("unbounded".to_string(), |t| t.to_string());
            write!(f, ", time=[{}, {})", show(r.start), show(r.end))?;
        }
        for tf in &r.tag_filters {
            write!(f, ", {} IN ({})", tf.tag, tf.values.join(", "))?;
        }
        for t in &r.required_tags {
            write!(f, ", {t} IS NOT NULL")?;
        }
        for ff in &r.field_filters {
            write!(f, ", {ff}")?;
        }
        if let Some(p) = &r.projection {
            write!(f, ", projection=[{}]", p.join(", "))?;
        }
        if let Some(l) = self.limit {
            write!(f, ", limit={l}")?;
        }
        if self.partitions > 1 {
            write!(f, ", partitions={}", self.partitions)?;
        }
        Ok(())
    }
}

impl ExecutionPlan for TelemarkScanExec {
    fn name(&self) -> &'static str {
        "TelemarkScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    leaf_plan_methods!();

    fn execute(&self, partition: usize, _context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let mut request = self.request.clone();
        if self.partitions > 1 {
            request.partition = Some((partition, self.partitions));
        }
        let stream = self.db.scan(&request).map_err(external)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
        let mut remaining = self.limit.unwrap_or(usize::MAX);
        // Decoding is CPU work: keep it off the async workers.
        tokio::task::spawn_blocking(move || {
            for batch in stream {
                if remaining == 0 {
                    break;
                }
                let item = batch.map_err(external).map(|b| {
                    let b = if b.num_rows() > remaining { b.slice(0, remaining) } else { b };
                    remaining -= b.num_rows();
                    b
                });
                let failed = item.is_err();
                if tx.blocking_send(item).is_err() || failed {
                    break; // the consumer went away, or we reported an error
                }
            }
        });
        let batches = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches)))
    }
}

/// Writes the rows of `INSERT INTO` through the engine's durable write path.
#[derive(Debug)]
struct InsertSink {
    db: Arc<Database>,
    database: String,
    table: String,
    schema: SchemaRef,
}

impl DisplayAs for InsertSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TelemarkInsert: table={}.{}", self.database, self.table)
    }
}

#[async_trait]
impl DataSink for InsertSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(&self, mut data: SendableRecordBatchStream, _context: &Arc<TaskContext>) -> Result<u64> {
        let mut rows = 0u64;
        let table_schema = self.db.table_schema(&self.database, &self.table);
        while let Some(batch) = data.next().await {
            let batch = batch?;
            let write = super::record_batch_to_write(&self.table, &batch, table_schema.as_ref()).map_err(external)?;
            let db = self.db.clone();
            let database = self.database.clone();
            let outcome = tokio::task::spawn_blocking(move || db.write(&database, &write))
                .await
                .map_err(|e| DataFusionError::Execution(format!("insert task failed: {e}")))?
                .map_err(external)?;
            if let Some(first) = outcome.rejected.first() {
                return Err(DataFusionError::Execution(format!(
                    "{} of {} rows rejected after {} rows were written; first: {first}",
                    outcome.rejected.len(),
                    batch.num_rows(),
                    rows + outcome.rows_written as u64
                )));
            }
            rows += outcome.rows_written as u64;
        }
        Ok(rows)
    }
}
