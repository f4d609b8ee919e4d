//! Scans: read a table's rows in a time range, filtered by tags, as Arrow
//! record batches.
//!
//! A scan prunes segments by time range, prunes series through the tag
//! postings, decodes only the projected columns, merges the write buffer's
//! rows, and resolves duplicates (last write wins). Rows come out grouped by
//! series, in time order within each series.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow_array::builder::make_view;
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, StringViewArray,
    TimestampNanosecondArray, UInt64Array,
};
use arrow_buffer::{Buffer, NullBuffer, NullBufferBuilder, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::batch::{Column, FieldValue, Values};
use crate::schema::{ColumnKind, FieldType, TIME_COLUMN, TableSchema};
use crate::segment::{SegmentReader, TimeRange};
use crate::series::{SeriesData, SeriesKey, in_order, merge};
use crate::{Error, Result};

/// A tag predicate: the tag equals one of `values` (`=` is `IN` with one value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFilter {
    /// Tag column name.
    pub tag: String,
    /// Accepted values.
    pub values: Vec<String>,
}

/// How a field is compared with a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
}

impl CmpOp {
    /// Whether a value that orders `o` against the constant passes.
    fn holds(self, o: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self {
            CmpOp::Eq => o == Equal,
            CmpOp::NotEq => o != Equal,
            CmpOp::Lt => o == Less,
            CmpOp::LtEq => o != Greater,
            CmpOp::Gt => o == Greater,
            CmpOp::GtEq => o != Less,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::NotEq => "<>",
            CmpOp::Lt => "<",
            CmpOp::LtEq => "<=",
            CmpOp::Gt => ">",
            CmpOp::GtEq => ">=",
        }
    }
}

/// What a row's field must hold. A row where the field is null never
/// matches, as in SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldCondition {
    /// `field IS NOT NULL`
    Present,
    /// `field <op> value`, the value of the field's own type. Floats compare
    /// as SQL `WHERE` does in DataFusion: -0 is taken as +0, then IEEE 754
    /// total order (NaN equals NaN and is above every number).
    Compare(CmpOp, FieldValue),
}

/// A condition on one field column.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldFilter {
    /// Field column name.
    pub column: String,
    /// What its value must be.
    pub condition: FieldCondition,
}

impl std::fmt::Display for FieldFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.condition {
            FieldCondition::Present => write!(f, "{} IS NOT NULL", self.column),
            FieldCondition::Compare(op, v) => {
                write!(f, "{} {} ", self.column, op.symbol())?;
                match v {
                    FieldValue::F64(x) => write!(f, "{x}"),
                    FieldValue::I64(x) => write!(f, "{x}"),
                    FieldValue::U64(x) => write!(f, "{x}"),
                    FieldValue::Bool(x) => write!(f, "{x}"),
                    FieldValue::Str(x) => write!(f, "{x:?}"),
                }
            }
        }
    }
}

/// What to read.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanRequest {
    /// Database name.
    pub database: String,
    /// Table name.
    pub table: String,
    /// Inclusive start of the time range (ns); `None` = unbounded.
    pub start: Option<i64>,
    /// Exclusive end of the time range (ns); `None` = unbounded.
    pub end: Option<i64>,
    /// Rows must match every filter.
    pub tag_filters: Vec<TagFilter>,
    /// Rows must have these tags (`tag IS NOT NULL`).
    pub required_tags: Vec<String>,
    /// Rows must pass every condition on their fields (applied after
    /// duplicates are resolved, so a row is judged by the values it is read with).
    pub field_filters: Vec<FieldFilter>,
    /// Columns to return, in this order; `None` = `time`, then every tag and
    /// field column in the order they were added.
    pub projection: Option<Vec<String>>,
    /// Read only the series of this share, `(index, count)`: series are
    /// divided by a stable hash of their key, so `count` scans with
    /// `index` 0..count together read every series exactly once (parallel scans).
    pub partition: Option<(usize, usize)>,
}

impl ScanRequest {
    /// Everything in a table.
    pub fn new(database: impl Into<String>, table: impl Into<String>) -> Self {
        ScanRequest {
            database: database.into(),
            table: table.into(),
            start: None,
            end: None,
            tag_filters: Vec::new(),
            required_tags: Vec::new(),
            field_filters: Vec::new(),
            projection: None,
            partition: None,
        }
    }

    /// Restricts to `start <= time < end`.
    pub fn time_range(mut self, start: i64, end: i64) -> Self {
        self.start = Some(start);
        self.end = Some(end);
        self
    }

    /// Adds a `tag IN (values)` filter.
    pub fn filter_tag(mut self, tag: impl Into<String>, values: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tag_filters.push(TagFilter { tag: tag.into(), values: values.into_iter().map(Into::into).collect() });
        self
    }

    /// Keeps only series that have `tag` (`tag IS NOT NULL`).
    pub fn require_tag(mut self, tag: impl Into<String>) -> Self {
        self.required_tags.push(tag.into());
        self
    }

    /// Keeps only rows whose field `column` meets `condition`.
    pub fn filter_field(mut self, column: impl Into<String>, condition: FieldCondition) -> Self {
        self.field_filters.push(FieldFilter { column: column.into(), condition });
        self
    }

    /// Returns only these columns.
    pub fn project(mut self, columns: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.projection = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    /// True if `key` belongs to this request's share of the series.
    pub(crate) fn in_partition(&self, key: &SeriesKey) -> bool {
        match self.partition {
            Some((index, count)) if count > 1 => key.stable_hash() % count as u64 == index as u64,
            _ => true,
        }
    }

    pub(crate) fn range(&self) -> TimeRange {
        TimeRange { start: self.start.unwrap_or(i64::MIN), end: self.end.unwrap_or(i64::MAX) }
    }

    pub(crate) fn matches(&self, key: &SeriesKey) -> bool {
        self.in_partition(key)
            && self.tag_filters.iter().all(|f| key.get(&f.tag).is_some_and(|v| f.values.iter().any(|x| x == v)))
            && self.required_tags.iter().all(|t| key.get(t).is_some())
    }
}

/// The Arrow type a column is returned as. Tags are `Utf8View`: a series
/// has one value per tag, so a scan repeats one 16-byte view per row (short
/// values live inside the view) instead of copying the string, and grouping
/// compares views. String fields are plain `Utf8`.
pub fn arrow_type(kind: ColumnKind) -> DataType {
    if kind == ColumnKind::Tag {
        return DataType::Utf8View;
    }
    match kind.value_type() {
        FieldType::F64 => DataType::Float64,
        FieldType::I64 => DataType::Int64,
        FieldType::U64 => DataType::UInt64,
        FieldType::Bool => DataType::Boolean,
        FieldType::String => DataType::Utf8,
    }
}

/// The Arrow schema of a whole table: `time`, then its columns in id order.
pub fn arrow_schema(schema: &TableSchema) -> SchemaRef {
    let mut fields = vec![time_field()];
    fields.extend(schema.columns().iter().map(|c| Field::new(&c.name, arrow_type(c.kind), true)));
    Arc::new(Schema::new(fields))
}

fn time_field() -> Field {
    Field::new(TIME_COLUMN, DataType::Timestamp(TimeUnit::Nanosecond, None), false)
}

#[derive(Debug, Clone)]
enum OutColumn {
    Time,
    Tag(String),
    Field(usize, FieldType),
}

/// Where rows of a series come from.
#[derive(Debug)]
pub(crate) enum Source {
    /// A series of a segment file, and the time ranges deletes hide in it.
    Segment(Arc<SegmentReader>, u32, Vec<TimeRange>),
    Buffer(SeriesData),
    /// A series of a cold file (by its index there), and the ranges deletes hide.
    #[cfg(feature = "tiering")]
    Cold(Arc<crate::tiering::ColdHandle>, usize, Vec<TimeRange>),
}

/// A planned scan: the output shape and, per series, its sources oldest first.
#[derive(Debug)]
pub(crate) struct ScanPlan {
    pub(crate) schema: SchemaRef,
    out: Vec<OutColumn>,
    wanted: Vec<(usize, String, ColumnKind)>,
    /// Field conditions by column id (`None`: a column the table lacks, null everywhere).
    conditions: Vec<(Option<usize>, FieldCondition)>,
    width: usize,
    range: TimeRange,
    pub(crate) series: Vec<(SeriesKey, Vec<Source>)>,
    batch_rows: usize,
    /// Reads cold sources.
    #[cfg(feature = "tiering")]
    pub(crate) tier: Option<Arc<crate::tiering::Tier>>,
}

impl ScanPlan {
    /// Resolves the projection against the table schema.
    pub(crate) fn new(req: &ScanRequest, table: &TableSchema, batch_rows: usize) -> Result<Self> {
        let names: Vec<String> = match &req.projection {
            Some(p) => p.clone(),
            None => {
                std::iter::once(TIME_COLUMN.to_string()).chain(table.columns().iter().map(|c| c.name.clone())).collect()
            }
        };
        let mut out = Vec::with_capacity(names.len());
        let mut fields = Vec::with_capacity(names.len());
        let mut wanted = Vec::new();
        for name in &names {
            if name == TIME_COLUMN {
                out.push(OutColumn::Time);
                fields.push(time_field());
                continue;
            }
            let id = table.id_of(name).ok_or_else(|| Error::NotFound {
                what: "column",
                name: format!("{}.{}.{name}", req.database, req.table),
                hint: String::new(),
            })?;
            let def = table.column(id).ok_or_else(|| Error::Internal("column id without definition".into()))?;
            fields.push(Field::new(name, arrow_type(def.kind), true));
            match def.kind {
                ColumnKind::Tag => out.push(OutColumn::Tag(name.clone())),
                ColumnKind::Field(t) => {
                    out.push(OutColumn::Field(id, t));
                    if !wanted.iter().any(|(i, _, _)| *i == id) {
                        wanted.push((id, name.clone(), def.kind));
                    }
                }
            }
        }
        for f in &req.tag_filters {
            match table.id_of(&f.tag).and_then(|id| table.column(id)) {
                Some(def) if def.kind == ColumnKind::Tag => {}
                Some(def) => {
                    return Err(Error::InvalidInput(format!(
                        "column `{}` of {}.{} is {}, not a tag; filter it in SQL instead",
                        f.tag,
                        req.database,
                        req.table,
                        def.kind.with_article()
                    )));
                }
                None => {} // an unknown tag matches no series
            }
        }
        let mut conditions = Vec::with_capacity(req.field_filters.len());
        for f in &req.field_filters {
            let Some(id) = table.id_of(&f.column) else {
                conditions.push((None, f.condition.clone())); // null in every row: nothing matches
                continue;
            };
            let def = table.column(id).ok_or_else(|| Error::Internal("column id without definition".into()))?;
            let ColumnKind::Field(t) = def.kind else {
                return Err(Error::InvalidInput(format!(
                    "column `{}` of {}.{} is a tag, not a field; filter tags by value instead",
                    f.column, req.database, req.table
                )));
            };
            if let FieldCondition::Compare(_, v) = &f.condition
                && v.field_type() != t
            {
                return Err(Error::InvalidInput(format!(
                    "column `{}` of {}.{} is {}; it cannot be compared with {} value",
                    f.column,
                    req.database,
                    req.table,
                    def.kind.with_article(),
                    ColumnKind::Field(v.field_type()).with_article()
                )));
            }
            if !wanted.iter().any(|(i, _, _)| *i == id) {
                wanted.push((id, f.column.clone(), def.kind));
            }
            conditions.push((Some(id), f.condition.clone()));
        }
        Ok(ScanPlan {
            schema: Arc::new(Schema::new(fields)),
            out,
            wanted,
            conditions,
            width: table.len(),
            range: req.range(),
            series: Vec::new(),
            batch_rows: batch_rows.max(1),
            #[cfg(feature = "tiering")]
            tier: None,
        })
    }

    /// Table column ids of the fields to decode.
    pub(crate) fn wanted_ids(&self) -> Vec<usize> {
        self.wanted.iter().map(|(i, _, _)| *i).collect()
    }

    pub(crate) fn width(&self) -> usize {
        self.width
    }

    pub(crate) fn range(&self) -> TimeRange {
        self.range
    }
}

/// -0 as +0, other values as they are: DataFusion's comparisons see them so.
fn positive_zero(x: f64) -> f64 {
    if x == 0.0 { 0.0 } else { x }
}

/// Keeps the rows of `sel` whose value in `col` meets `cond`.
fn retain_matching(sel: &mut Vec<usize>, col: Option<&Column>, cond: &FieldCondition) {
    let Some(col) = col else {
        sel.clear();
        return;
    };
    let valid = |i: usize| col.valid.get(i).copied().unwrap_or(false);
    let FieldCondition::Compare(op, constant) = cond else {
        sel.retain(|&i| valid(i));
        return;
    };
    let op = *op;
    match (&col.values, constant) {
        (Values::F64(v), FieldValue::F64(c)) => {
            let c = positive_zero(*c);
            sel.retain(|&i| valid(i) && v.get(i).is_some_and(|x| op.holds(positive_zero(*x).total_cmp(&c))));
        }
        (Values::I64(v), FieldValue::I64(c)) => {
            sel.retain(|&i| valid(i) && v.get(i).is_some_and(|x| op.holds(x.cmp(c))))
        }
        (Values::U64(v), FieldValue::U64(c)) => {
            sel.retain(|&i| valid(i) && v.get(i).is_some_and(|x| op.holds(x.cmp(c))))
        }
        (Values::Bool(v), FieldValue::Bool(c)) => {
            sel.retain(|&i| valid(i) && v.get(i).is_some_and(|x| op.holds(x.cmp(c))));
        }
        (Values::Str(v), FieldValue::Str(c)) => {
            sel.retain(|&i| valid(i) && v.get(i).is_some_and(|x| op.holds(x.as_str().cmp(c.as_str()))));
        }
        _ => sel.clear(), // checked against the schema when the scan was planned
    }
}

/// The rows `lo..hi` of `data` that meet every condition, into `sel`.
fn select(
    conditions: &[(Option<usize>, FieldCondition)],
    data: &SeriesData,
    lo: usize,
    hi: usize,
    sel: &mut Vec<usize>,
) {
    sel.clear();
    sel.extend(lo..hi);
    for (id, cond) in conditions {
        if sel.is_empty() {
            break;
        }
        let col = id.and_then(|id| data.columns.get(id)).and_then(Option::as_ref);
        retain_matching(sel, col, cond);
    }
}

/// The rows of a scan, as Arrow record batches of at most
/// `Options::scan_batch_rows` rows. Segments are decoded lazily, series by series.
#[derive(Debug)]
pub struct ScanStream {
    plan: ScanPlan,
    next_series: usize,
    /// The series being read: its pieces in time order and the next row of the first.
    current: Option<(SeriesKey, VecDeque<SeriesData>, usize)>,
    /// Rows of the current piece that meet the field conditions (reused).
    selected: Vec<usize>,
    failed: bool,
}

impl ScanStream {
    pub(crate) fn new(plan: ScanPlan) -> Self {
        ScanStream { plan, next_series: 0, current: None, selected: Vec::new(), failed: false }
    }

    /// The schema of every batch.
    pub fn schema(&self) -> SchemaRef {
        self.plan.schema.clone()
    }

    /// Number of series the scan will visit (after pruning).
    pub fn series_count(&self) -> usize {
        self.plan.series.len()
    }

    fn load_next(&mut self) -> Result<bool> {
        while self.next_series < self.plan.series.len() {
            let i = self.next_series;
            self.next_series += 1;
            let Some((key, sources)) = self.plan.series.get_mut(i) else {
                break;
            };
            let mut datas = Vec::with_capacity(sources.len());
            for s in std::mem::take(sources) {
                match s {
                    Source::Buffer(d) => datas.push(d),
                    Source::Segment(seg, id, hidden) => {
                        let wanted: Vec<(usize, &str, ColumnKind)> =
                            self.plan.wanted.iter().map(|(i, n, k)| (*i, n.as_str(), *k)).collect();
                        let mut data = seg.read_series(id, &wanted, self.plan.width, self.plan.range)?;
                        if !hidden.is_empty() {
                            crate::delete::retain_rows(&mut data, &hidden, i64::MIN);
                        }
                        datas.push(data);
                    }
                    #[cfg(feature = "tiering")]
                    Source::Cold(cold, i, hidden) => {
                        let tier = self
                            .plan
                            .tier
                            .as_ref()
                            .ok_or_else(|| Error::Internal("a cold source without a tier".into()))?;
                        let mut data =
                            tier.read_series(&cold, i, &self.plan.wanted, self.plan.width, self.plan.range)?;
                        if !hidden.is_empty() {
                            crate::delete::retain_rows(&mut data, &hidden, i64::MIN);
                        }
                        datas.push(data);
                    }
                }
            }
            let pieces = in_order(datas);
            if !pieces.is_empty() {
                self.current = Some((key.clone(), pieces.into(), 0));
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The next series' rows (sorted by time, every wanted column by id), in
    /// place of batches: for code of the engine that works series by series.
    pub(crate) fn next_series(&mut self) -> Result<Option<(SeriesKey, SeriesData)>> {
        if self.current.is_none() && !self.load_next()? {
            return Ok(None);
        }
        let Some((key, pieces, _)) = self.current.take() else { return Ok(None) };
        let data = merge(pieces.into());
        if self.plan.conditions.is_empty() {
            return Ok(Some((key, data)));
        }
        select(&self.plan.conditions, &data, 0, data.len(), &mut self.selected);
        Ok(Some((key, data.take(&self.selected))))
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let mut acc = Accumulator::new(&self.plan.out, self.plan.batch_rows);
        while acc.rows < self.plan.batch_rows {
            if self.current.is_none() && !self.load_next()? {
                break;
            }
            let Some((key, pieces, offset)) = self.current.as_mut() else {
                break;
            };
            let Some(data) = pieces.front() else {
                self.current = None;
                continue;
            };
            let take = (self.plan.batch_rows - acc.rows).min(data.times.len().saturating_sub(*offset));
            if self.plan.conditions.is_empty() {
                acc.push(&self.plan.out, key, data, *offset, *offset + take);
            } else {
                select(&self.plan.conditions, data, *offset, *offset + take, &mut self.selected);
                acc.push_selected(&self.plan.out, key, data, &self.selected);
            }
            *offset += take;
            if *offset >= data.times.len() {
                pieces.pop_front();
                *offset = 0;
                if pieces.is_empty() {
                    self.current = None;
                }
            }
        }
        if acc.rows == 0 {
            return Ok(None);
        }
        acc.finish(self.plan.schema.clone()).map(Some)
    }
}

impl Iterator for ScanStream {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_batch() {
            Ok(b) => b.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// A tag column from runs of one value: each distinct long value is stored
/// once in the data buffer and every row of its run repeats the same view.
fn tag_array(runs: &[(Option<String>, usize)], rows: usize) -> StringViewArray {
    let mut views: Vec<u128> = Vec::with_capacity(rows);
    let mut data: Vec<u8> = Vec::new();
    let mut nulls = NullBufferBuilder::new(rows);
    let mut last_long: Option<(&str, u128)> = None;
    for (value, n) in runs {
        let view = match value.as_deref() {
            None => {
                nulls.append_n_nulls(*n);
                views.resize(views.len() + n, 0);
                continue;
            }
            Some(v) if v.len() <= 12 => make_view(v.as_bytes(), 0, 0),
            Some(v) => match last_long {
                Some((prev, view)) if prev == v => view,
                _ => {
                    // Offsets fit: a batch holds at most `scan_batch_rows` runs of tag values.
                    let view = make_view(v.as_bytes(), 0, data.len() as u32);
                    data.extend_from_slice(v.as_bytes());
                    last_long = Some((v, view));
                    view
                }
            },
        };
        nulls.append_n_non_nulls(*n);
        views.resize(views.len() + n, view);
    }
    // SAFETY: every view was made by `make_view` from a `&str` (valid UTF-8);
    // long values point into buffer 0 at the offset their bytes were copied to.
    unsafe { StringViewArray::new_unchecked(ScalarBuffer::from(views), vec![Buffer::from_vec(data)], nulls.finish()) }
}

/// Output being gathered for one record batch.
enum Acc {
    Time,
    /// Runs of (tag value, rows): a series has one value for all its rows.
    Tag(Vec<(Option<String>, usize)>),
    Field(Column),
}

struct Accumulator {
    rows: usize,
    /// Whether `time` is an output column (`times` stays empty otherwise).
    with_times: bool,
    times: Vec<i64>,
    cols: Vec<Acc>,
}

impl Accumulator {
    /// Room for `rows` rows (a batch), so columns are not regrown as they fill.
    fn new(out: &[OutColumn], rows: usize) -> Self {
        let cols = out
            .iter()
            .map(|c| match c {
                OutColumn::Time => Acc::Time,
                OutColumn::Tag(_) => Acc::Tag(Vec::new()),
                OutColumn::Field(_, t) => Acc::Field(Column::with_capacity(*t, rows)),
            })
            .collect();
        let with_times = out.iter().any(|c| matches!(c, OutColumn::Time));
        let times = if with_times { Vec::with_capacity(rows) } else { Vec::new() };
        Accumulator { rows: 0, with_times, times, cols }
    }

    /// Adds rows `sel` (ascending) of `data`.
    fn push_selected(&mut self, out: &[OutColumn], key: &SeriesKey, data: &SeriesData, sel: &[usize]) {
        if sel.is_empty() {
            return;
        }
        if self.with_times {
            self.times.extend(sel.iter().map(|&i| data.times.get(i).copied().unwrap_or_default()));
        }
        for (c, acc) in out.iter().zip(self.cols.iter_mut()) {
            match (c, acc) {
                (OutColumn::Tag(name), Acc::Tag(runs)) => runs.push((key.get(name).map(str::to_string), sel.len())),
                (OutColumn::Field(id, _), Acc::Field(col)) => match data.columns.get(*id).and_then(Option::as_ref) {
                    Some(src) => col.extend_take(src, sel),
                    None => col.extend_nulls(sel.len()),
                },
                _ => {}
            }
        }
        self.rows += sel.len();
    }

    fn push(&mut self, out: &[OutColumn], key: &SeriesKey, data: &SeriesData, lo: usize, hi: usize) {
        if self.with_times {
            self.times.extend_from_slice(data.times.get(lo..hi).unwrap_or_default());
        }
        for (c, acc) in out.iter().zip(self.cols.iter_mut()) {
            match (c, acc) {
                (OutColumn::Tag(name), Acc::Tag(runs)) => runs.push((key.get(name).map(str::to_string), hi - lo)),
                (OutColumn::Field(id, _), Acc::Field(col)) => match data.columns.get(*id).and_then(Option::as_ref) {
                    Some(src) => col.extend_range(src, lo, hi),
                    None => col.extend_nulls(hi - lo),
                },
                _ => {}
            }
        }
        self.rows += hi - lo;
    }

    fn finish(self, schema: SchemaRef) -> Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.cols.len());
        let times = ScalarBuffer::from(self.times);
        for acc in self.cols {
            let a: ArrayRef = match acc {
                Acc::Time => Arc::new(TimestampNanosecondArray::new(times.clone(), None)),
                Acc::Tag(runs) => Arc::new(tag_array(&runs, self.rows)),
                Acc::Field(col) => {
                    let nulls = if col.valid.iter().all(|v| *v) { None } else { Some(NullBuffer::from(col.valid)) };
                    match col.values {
                        Values::F64(v) => Arc::new(Float64Array::new(ScalarBuffer::from(v), nulls)),
                        Values::I64(v) => Arc::new(Int64Array::new(ScalarBuffer::from(v), nulls)),
                        Values::U64(v) => Arc::new(UInt64Array::new(ScalarBuffer::from(v), nulls)),
                        Values::Bool(v) => Arc::new(BooleanArray::new(v.into(), nulls)),
                        Values::Str(v) => {
                            let valid = nulls.as_ref();
                            Arc::new(StringArray::from_iter(
                                v.iter()
                                    .enumerate()
                                    .map(|(i, s)| valid.is_none_or(|n| n.is_valid(i)).then_some(s.as_str())),
                            ))
                        }
                    }
                }
            };
            arrays.push(a);
        }
        // An empty projection (e.g. `count(*)`) still carries its row count.
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(self.rows));
        RecordBatch::try_new_with_options(schema, arrays, &options)
            .map_err(|e| Error::Internal(format!("building a record batch: {e}")))
    }
}
