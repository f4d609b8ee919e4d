//! Write batches: the unit of ingestion.
//!
//! A [`WriteBatch`] holds rows for one table in columnar form. Build it row by
//! row with [`WriteBatch::row`]; the engine validates it against the table's
//! schema, rejects only the rows that conflict, and lands the rest.

use std::collections::HashMap;

use crate::schema::{ColumnKind, FieldType};

/// One field value offered for a row.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// 64-bit float.
    F64(f64),
    /// Signed integer.
    I64(i64),
    /// Unsigned integer.
    U64(u64),
    /// Boolean.
    Bool(bool),
    /// String.
    Str(String),
}

impl FieldValue {
    /// The column type this value belongs in.
    pub fn field_type(&self) -> FieldType {
        match self {
            FieldValue::F64(_) => FieldType::F64,
            FieldValue::I64(_) => FieldType::I64,
            FieldValue::U64(_) => FieldType::U64,
            FieldValue::Bool(_) => FieldType::Bool,
            FieldValue::Str(_) => FieldType::String,
        }
    }
}

impl From<f64> for FieldValue {
    fn from(v: f64) -> Self {
        FieldValue::F64(v)
    }
}
impl From<i64> for FieldValue {
    fn from(v: i64) -> Self {
        FieldValue::I64(v)
    }
}
impl From<i32> for FieldValue {
    fn from(v: i32) -> Self {
        FieldValue::I64(i64::from(v))
    }
}
impl From<u64> for FieldValue {
    fn from(v: u64) -> Self {
        FieldValue::U64(v)
    }
}
impl From<bool> for FieldValue {
    fn from(v: bool) -> Self {
        FieldValue::Bool(v)
    }
}
impl From<&str> for FieldValue {
    fn from(v: &str) -> Self {
        FieldValue::Str(v.to_string())
    }
}
impl From<String> for FieldValue {
    fn from(v: String) -> Self {
        FieldValue::Str(v)
    }
}

/// Dense typed values of a column; a null slot holds a default value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Values {
    F64(Vec<f64>),
    I64(Vec<i64>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
    Str(Vec<String>),
}

impl Values {
    pub(crate) fn new(t: FieldType) -> Self {
        Self::with_capacity(t, 0)
    }

    pub(crate) fn with_capacity(t: FieldType, n: usize) -> Self {
        match t {
            FieldType::F64 => Values::F64(Vec::with_capacity(n)),
            FieldType::I64 => Values::I64(Vec::with_capacity(n)),
            FieldType::U64 => Values::U64(Vec::with_capacity(n)),
            FieldType::Bool => Values::Bool(Vec::with_capacity(n)),
            FieldType::String => Values::Str(Vec::with_capacity(n)),
        }
    }

    pub(crate) fn field_type(&self) -> FieldType {
        match self {
            Values::F64(_) => FieldType::F64,
            Values::I64(_) => FieldType::I64,
            Values::U64(_) => FieldType::U64,
            Values::Bool(_) => FieldType::Bool,
            Values::Str(_) => FieldType::String,
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Values::F64(v) => v.len(),
            Values::I64(v) => v.len(),
            Values::U64(v) => v.len(),
            Values::Bool(v) => v.len(),
            Values::Str(v) => v.len(),
        }
    }

    pub(crate) fn push_default(&mut self) {
        match self {
            Values::F64(v) => v.push(0.0),
            Values::I64(v) => v.push(0),
            Values::U64(v) => v.push(0),
            Values::Bool(v) => v.push(false),
            Values::Str(v) => v.push(String::new()),
        }
    }

    /// Pushes a value of the same type; returns false (and pushes nothing) on a type mismatch.
    pub(crate) fn push_value(&mut self, value: FieldValue) -> bool {
        match (self, value) {
            (Values::F64(v), FieldValue::F64(x)) => v.push(x),
            (Values::I64(v), FieldValue::I64(x)) => v.push(x),
            (Values::U64(v), FieldValue::U64(x)) => v.push(x),
            (Values::Bool(v), FieldValue::Bool(x)) => v.push(x),
            (Values::Str(v), FieldValue::Str(x)) => v.push(x),
            _ => return false,
        }
        true
    }

    /// Overwrites slot `i` with a value of the same type.
    fn set_value(&mut self, i: usize, value: FieldValue) -> bool {
        match (self, value) {
            (Values::F64(v), FieldValue::F64(x)) => v.get_mut(i).map(|s| *s = x).is_some(),
            (Values::I64(v), FieldValue::I64(x)) => v.get_mut(i).map(|s| *s = x).is_some(),
            (Values::U64(v), FieldValue::U64(x)) => v.get_mut(i).map(|s| *s = x).is_some(),
            (Values::Bool(v), FieldValue::Bool(x)) => v.get_mut(i).map(|s| *s = x).is_some(),
            (Values::Str(v), FieldValue::Str(x)) => v.get_mut(i).map(|s| *s = x).is_some(),
            _ => false,
        }
    }

    /// Appends slot `i` of `other` (same type) to self.
    pub(crate) fn push_from(&mut self, other: &Values, i: usize) {
        match (self, other) {
            (Values::F64(a), Values::F64(b)) => a.push(b.get(i).copied().unwrap_or_default()),
            (Values::I64(a), Values::I64(b)) => a.push(b.get(i).copied().unwrap_or_default()),
            (Values::U64(a), Values::U64(b)) => a.push(b.get(i).copied().unwrap_or_default()),
            (Values::Bool(a), Values::Bool(b)) => a.push(b.get(i).copied().unwrap_or_default()),
            (Values::Str(a), Values::Str(b)) => a.push(b.get(i).cloned().unwrap_or_default()),
            (a, _) => a.push_default(),
        }
    }

    /// Approximate heap bytes used by all slot values.
    fn approx_bytes(&self) -> usize {
        match self {
            Values::Str(v) => v.iter().map(|s| 24 + s.len()).sum(),
            _ => 8 * self.len(),
        }
    }

    /// Approximate heap bytes used by slot values, for buffer accounting.
    pub(crate) fn approx_bytes_of(&self, i: usize) -> usize {
        match self {
            Values::Str(v) => 24 + v.get(i).map_or(0, String::len),
            _ => 8,
        }
    }
}

/// A column of values with a validity mask (`valid[i]` false = null).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Column {
    pub(crate) values: Values,
    pub(crate) valid: Vec<bool>,
}

impl Column {
    pub(crate) fn new(t: FieldType) -> Self {
        Column { values: Values::new(t), valid: Vec::new() }
    }

    pub(crate) fn with_capacity(t: FieldType, n: usize) -> Self {
        Column { values: Values::with_capacity(t, n), valid: Vec::with_capacity(n) }
    }

    pub(crate) fn len(&self) -> usize {
        self.valid.len()
    }

    pub(crate) fn is_valid(&self, i: usize) -> bool {
        self.valid.get(i).copied().unwrap_or(false)
    }

    pub(crate) fn push_null(&mut self) {
        self.values.push_default();
        self.valid.push(false);
    }

    pub(crate) fn pad_to(&mut self, n: usize) {
        if self.len() < n {
            self.extend_nulls(n - self.len());
        }
    }

    /// Appends `n` nulls.
    pub(crate) fn extend_nulls(&mut self, n: usize) {
        let len = self.len() + n;
        match &mut self.values {
            Values::F64(v) => v.resize(len, 0.0),
            Values::I64(v) => v.resize(len, 0),
            Values::U64(v) => v.resize(len, 0),
            Values::Bool(v) => v.resize(len, false),
            Values::Str(v) => v.resize(len, String::new()),
        }
        self.valid.resize(len, false);
    }

    /// Appends rows `lo..hi` of `other` (same type); rows past its end are null.
    pub(crate) fn extend_range(&mut self, other: &Column, lo: usize, hi: usize) {
        let end = hi.min(other.len()).max(lo);
        match (&mut self.values, &other.values) {
            (Values::F64(a), Values::F64(b)) => a.extend_from_slice(b.get(lo..end).unwrap_or_default()),
            (Values::I64(a), Values::I64(b)) => a.extend_from_slice(b.get(lo..end).unwrap_or_default()),
            (Values::U64(a), Values::U64(b)) => a.extend_from_slice(b.get(lo..end).unwrap_or_default()),
            (Values::Bool(a), Values::Bool(b)) => a.extend_from_slice(b.get(lo..end).unwrap_or_default()),
            (Values::Str(a), Values::Str(b)) => a.extend_from_slice(b.get(lo..end).unwrap_or_default()),
            _ => {
                self.extend_nulls(hi.saturating_sub(lo));
                return;
            }
        }
        self.valid.extend_from_slice(other.valid.get(lo..end).unwrap_or_default());
        self.extend_nulls(hi.saturating_sub(end));
    }

    /// Appends rows `idx` of `other` (null where `other` is shorter).
    pub(crate) fn extend_take(&mut self, other: &Column, idx: &[usize]) {
        fn take<T: Clone + Default>(a: &mut Vec<T>, b: &[T], idx: &[usize]) {
            a.extend(idx.iter().map(|&i| b.get(i).cloned().unwrap_or_default()));
        }
        match (&mut self.values, &other.values) {
            (Values::F64(a), Values::F64(b)) => take(a, b, idx),
            (Values::I64(a), Values::I64(b)) => take(a, b, idx),
            (Values::U64(a), Values::U64(b)) => take(a, b, idx),
            (Values::Bool(a), Values::Bool(b)) => take(a, b, idx),
            (Values::Str(a), Values::Str(b)) => take(a, b, idx),
            _ => {
                self.extend_nulls(idx.len());
                return;
            }
        }
        take(&mut self.valid, &other.valid, idx);
    }

    /// Appends row `i` of `other` (null if `other` is shorter or null there).
    pub(crate) fn push_from(&mut self, other: &Column, i: usize) {
        if other.is_valid(i) {
            self.values.push_from(&other.values, i);
            self.valid.push(true);
        } else {
            self.push_null();
        }
    }
}

/// A row of a batch that was not written, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// Index of the row in the batch, from 0.
    pub row: usize,
    /// The column at fault, if one is.
    pub column: Option<String>,
    /// What was wrong, naming database, table, column and types.
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "row {}: {}", self.row, self.message)
    }
}

/// What happened to a batch: how many rows landed and which were rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct WriteOutcome {
    /// Rows made durable and visible.
    pub rows_written: usize,
    /// Field values written (non-null field cells of the written rows).
    pub fields_written: usize,
    /// Rows rejected, with reasons. The other rows landed.
    pub rejected: Vec<RowError>,
}

impl WriteOutcome {
    /// Splits the outcome of writing a batch built from `parts` with
    /// [`WriteBatch::append`] (the first part, then the others appended in
    /// order) into one outcome per part: its rejected rows, numbered within
    /// the part, and the rows and field values of it that were written.
    ///
    /// The outcomes are those of writing each part alone, one after the
    /// other, whenever no part's fate depends on the others, as when every
    /// column of every part is already in the table and each part has at
    /// most one column of another kind than the table's (see
    /// [`WriteBatch::append`] for the exceptions).
    pub fn split<'a>(self, parts: impl IntoIterator<Item = &'a WriteBatch>) -> Vec<WriteOutcome> {
        let mut rejected = self.rejected;
        rejected.sort_by_key(|e| e.row);
        let mut rejected = rejected.into_iter().peekable();
        let mut start = 0usize;
        let mut out = Vec::new();
        for part in parts {
            let end = start + part.len();
            let mut mine = Vec::new();
            while let Some(mut e) = rejected.next_if(|e| e.row < end) {
                if e.row >= start {
                    e.row -= start;
                    mine.push(e);
                }
            }
            let bad: std::collections::HashSet<usize> = mine.iter().map(|e| e.row).collect();
            let fields_written = part
                .columns
                .iter()
                .filter(|c| matches!(c.kind, ColumnKind::Field(_)))
                .map(|c| {
                    c.data.valid.iter().take(part.len()).enumerate().filter(|(r, v)| **v && !bad.contains(r)).count()
                })
                .sum();
            let rows_written = part.len().saturating_sub(bad.len());
            out.push(WriteOutcome { rows_written, fields_written, rejected: mine });
            start = end;
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BatchColumn {
    pub(crate) name: String,
    pub(crate) kind: ColumnKind,
    pub(crate) data: Column,
}

/// Rows for one table, stored by column.
///
/// ```
/// use telemark_engine::WriteBatch;
/// let mut batch = WriteBatch::new("readings");
/// batch.row(1_700_000_000_000_000_000).tag("device_id", "truck-7").field("speed", 61.5).field("moving", true);
/// batch.row(1_700_000_010_000_000_000).tag("device_id", "truck-7").field("speed", 58.0);
/// assert_eq!(batch.len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct WriteBatch {
    pub(crate) table: String,
    pub(crate) times: Vec<i64>,
    pub(crate) columns: Vec<BatchColumn>,
    /// First column of each name.
    index: HashMap<String, usize, foldhash::fast::FixedState>,
    /// A name given values of several kinds has one column per kind, chained
    /// here in order of first appearance; the engine keeps the kind the table
    /// has (or the first, for a new column) and rejects the rows of the others.
    pub(crate) next_variant: Vec<Option<usize>>,
}

impl WriteBatch {
    /// An empty batch for `table`.
    pub fn new(table: impl Into<String>) -> Self {
        WriteBatch {
            table: table.into(),
            times: Vec::new(),
            columns: Vec::new(),
            index: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(0)),
            next_variant: Vec::new(),
        }
    }

    /// A batch from whole columns (each as long as `times`), for bulk paths
    /// such as Arrow ingest. A column given twice keeps its first occurrence.
    #[cfg(feature = "sql")]
    pub(crate) fn from_columns(table: &str, times: Vec<i64>, columns: Vec<BatchColumn>) -> Self {
        let mut batch = WriteBatch::new(table);
        batch.times = times;
        for c in columns {
            if batch.index.contains_key(&c.name) {
                continue;
            }
            batch.index.insert(c.name.clone(), batch.columns.len());
            batch.columns.push(c);
            batch.next_variant.push(None);
        }
        batch
    }

    /// The table the rows go to.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Moves the rows to another table.
    pub fn set_table(&mut self, table: impl Into<String>) {
        self.table = table.into();
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// True if the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Approximate bytes the rows take (a number 8, a string its length
    /// and 24, a time 8), for a caller that bounds how much it holds or
    /// writes at once.
    pub fn approx_bytes(&self) -> usize {
        8 * self.times.len()
            + self.columns.iter().map(|c| c.data.values.approx_bytes() + c.data.valid.len()).sum::<usize>()
    }

    /// Starts a new row at `time` (nanoseconds since the Unix epoch, UTC).
    pub fn row(&mut self, time: i64) -> RowWriter<'_> {
        self.times.push(time);
        RowWriter { batch: self }
    }

    fn add_column(&mut self, name: &str, kind: ColumnKind, row: usize) -> usize {
        let mut data = Column::new(kind.value_type());
        data.pad_to(row);
        self.columns.push(BatchColumn { name: name.to_string(), kind, data });
        self.next_variant.push(None);
        self.columns.len() - 1
    }

    /// The column holding `kind` values of `name`, added (null up to `row`)
    /// if the batch has none yet.
    fn column_for(&mut self, name: &str, kind: ColumnKind, row: usize) -> usize {
        match self.index.get(name) {
            Some(&first) => {
                let mut i = first;
                loop {
                    if self.columns.get(i).is_some_and(|c| c.kind == kind) {
                        break i;
                    }
                    match self.next_variant.get(i).copied().flatten() {
                        Some(next) => i = next,
                        None => {
                            let new = self.add_column(name, kind, row);
                            if let Some(link) = self.next_variant.get_mut(i) {
                                *link = Some(new);
                            }
                            break new;
                        }
                    }
                }
            }
            None => {
                let new = self.add_column(name, kind, row);
                self.index.insert(name.to_string(), new);
                new
            }
        }
    }

    /// The name and kind of each column, in order of first appearance. A
    /// name given values of several kinds (a float here, a string there)
    /// appears once per kind; the engine keeps the kind the table has (or the
    /// first, for a new column) and rejects the rows holding the others.
    pub fn column_kinds(&self) -> impl Iterator<Item = (&str, ColumnKind)> + '_ {
        self.columns.iter().map(|c| (c.name.as_str(), c.kind))
    }

    /// Appends the rows of `other` after the rows of this batch, in order, as
    /// if they had been added here row by row: the result is the batch those
    /// rows would have built. `other`'s table is ignored.
    ///
    /// Writing the combined batch lands the same rows as writing the two
    /// one after the other (a later row of a series and time still wins)
    /// with one WAL record instead of two. It rejects the same rows, too,
    /// unless a row's fate depends on the other batch: a column new to the
    /// table takes the first kind of the *combined* batch, and a row with
    /// several faults is reported for the first in the combined column
    /// order. [`WriteOutcome::split`] gives each part its own outcome back.
    ///
    /// ```
    /// use telemark_engine::WriteBatch;
    /// let mut a = WriteBatch::new("readings");
    /// a.row(1).tag("device_id", "truck-7").field("speed", 61.5);
    /// let mut b = WriteBatch::new("readings");
    /// b.row(2).tag("device_id", "truck-8").field("fuel", 0.4);
    /// a.append(&b);
    /// assert_eq!(a.len(), 2);
    /// assert_eq!(a.column_kinds().count(), 3);
    /// ```
    pub fn append(&mut self, other: &WriteBatch) {
        let start = self.times.len();
        let n = other.times.len();
        for c in &other.columns {
            let idx = self.column_for(&c.name, c.kind, start);
            if let Some(col) = self.columns.get_mut(idx) {
                col.data.pad_to(start);
                col.data.extend_range(&c.data, 0, n);
            }
        }
        self.times.extend_from_slice(&other.times);
        // Whole columns let the engine take them as they are, without copying row by row.
        let len = self.times.len();
        for c in &mut self.columns {
            c.data.pad_to(len);
        }
    }

    fn set(&mut self, name: &str, kind: ColumnKind, value: FieldValue) {
        let row = self.times.len().saturating_sub(1);
        let idx = self.column_for(name, kind, row);
        let Some(col) = self.columns.get_mut(idx) else {
            return;
        };
        if col.data.len() == row + 1 {
            // The same column set twice in one row: the later value wins.
            if col.data.values.set_value(row, value)
                && let Some(v) = col.data.valid.get_mut(row)
            {
                *v = true;
            }
            return;
        }
        col.data.pad_to(row);
        if col.data.values.push_value(value) {
            col.data.valid.push(true);
        } else {
            col.data.push_null();
        }
    }

    /// Pads every column to the batch length.
    #[cfg(test)]
    pub(crate) fn pad_columns(&mut self) {
        let n = self.times.len();
        for c in &mut self.columns {
            c.data.pad_to(n);
        }
    }
}

/// Sets the tags and fields of the row just started with [`WriteBatch::row`].
#[derive(Debug)]
pub struct RowWriter<'a> {
    batch: &'a mut WriteBatch,
}

impl RowWriter<'_> {
    /// Sets a tag. An empty value means the row has no such tag.
    pub fn tag(self, name: &str, value: impl Into<String>) -> Self {
        let value = value.into();
        if !value.is_empty() {
            self.batch.set(name, ColumnKind::Tag, FieldValue::Str(value));
        }
        self
    }

    /// Sets a field.
    pub fn field(self, name: &str, value: impl Into<FieldValue>) -> Self {
        let value = value.into();
        let kind = ColumnKind::Field(value.field_type());
        self.batch.set(name, kind, value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Database, Options, ScanRequest};
    use proptest::prelude::*;

    #[test]
    fn builder_pads_and_keeps_each_kind_of_a_column_apart() {
        let mut b = WriteBatch::new("t");
        b.row(1).field("a", 1.0);
        b.row(2).field("b", 2i64);
        b.row(3).field("a", "oops").field("a", 3.0);
        b.pad_columns();
        assert_eq!(b.columns.len(), 3);
        assert_eq!(b.columns[0].data.valid, vec![true, false, true]);
        assert_eq!(b.columns[2].kind, ColumnKind::Field(FieldType::String));
        assert_eq!(b.columns[2].data.valid, vec![false, false, true]);
        assert_eq!(b.next_variant, vec![Some(2), None, None]);
    }

    /// A value for one of a few shared names: tags and fields of every type
    /// collide on names, so appended batches meet variants of a column.
    #[derive(Debug, Clone)]
    enum Cell {
        Tag(usize, String),
        Field(usize, FieldValue),
    }

    const NAMES: [&str; 4] = ["a", "b", "c", "d"];

    fn cell() -> impl Strategy<Value = Cell> {
        let name = 0..NAMES.len();
        prop_oneof![
            (name.clone(), "[xy]{0,1}").prop_map(|(n, v)| Cell::Tag(n, v)),
            (name.clone(), -2.0f64..2.0).prop_map(|(n, v)| Cell::Field(n, FieldValue::F64(v))),
            (name.clone(), -2i64..2).prop_map(|(n, v)| Cell::Field(n, FieldValue::I64(v))),
            (name.clone(), any::<bool>()).prop_map(|(n, v)| Cell::Field(n, FieldValue::Bool(v))),
            (name, "[pq]").prop_map(|(n, v)| Cell::Field(n, FieldValue::Str(v))),
        ]
    }

    fn build(table: &str, rows: &[(i64, Vec<Cell>)]) -> WriteBatch {
        let mut b = WriteBatch::new(table);
        for (time, cells) in rows {
            let mut w = b.row(*time);
            for c in cells {
                w = match c {
                    Cell::Tag(n, v) => w.tag(NAMES[*n], v.as_str()),
                    Cell::Field(n, v) => w.field(NAMES[*n], v.clone()),
                };
            }
        }
        b
    }

    fn assert_same_batch(mut a: WriteBatch, mut b: WriteBatch) {
        a.pad_columns();
        b.pad_columns();
        assert_eq!(a.times, b.times);
        assert_eq!(a.columns, b.columns);
        assert_eq!(a.next_variant, b.next_variant);
        assert_eq!(a.index, b.index);
    }

    proptest! {
        #[test]
        fn appending_builds_the_batch_the_rows_would_build(
            rows in prop::collection::vec((0i64..4, prop::collection::vec(cell(), 0..5)), 0..12),
            cuts in prop::collection::vec(0usize..12, 0..3),
        ) {
            let whole = build("t", &rows);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(rows.len())).collect();
            cuts.sort_unstable();
            cuts.push(rows.len());
            // The first part built row by row (columns end at their last value), the others appended.
            let mut start = cuts.first().copied().unwrap_or(0);
            let mut appended = build("t", &rows[..start]);
            for end in cuts.into_iter().skip(1) {
                appended.append(&build("other", &rows[start..end]));
                start = end;
                // Whole columns, so the engine can take them without copying row by row.
                prop_assert!(appended.columns.iter().all(|c| c.data.len() == appended.len()));
            }
            prop_assert_eq!(appended.table(), "t");
            assert_same_batch(whole, appended);
        }
    }

    #[test]
    fn appending_to_a_batch_then_adding_rows_keeps_building_it() {
        let rows = |b: &mut WriteBatch, t: i64| {
            b.row(t).tag("d", "x").field("a", 1.0);
            b.row(t + 1).field("b", "s").field("a", 2i64);
        };
        let mut whole = WriteBatch::new("t");
        rows(&mut whole, 0);
        rows(&mut whole, 10);
        whole.row(20).field("c", true).field("c", false);
        let mut appended = WriteBatch::new("t");
        rows(&mut appended, 0);
        let mut other = WriteBatch::new("t");
        rows(&mut other, 10);
        appended.append(&other);
        appended.row(20).field("c", true).field("c", false);
        assert_same_batch(whole, appended);
    }

    fn scan_all(db: &Database, database: &str, table: &str) -> Vec<arrow_array::RecordBatch> {
        db.scan(&ScanRequest::new(database, table)).unwrap().collect::<crate::Result<Vec<_>>>().unwrap()
    }

    /// Parts that agree with the table's columns, all but one kind each,
    /// written as one appended batch: each part gets the outcome, and the
    /// table the rows, that writing the parts one by one gives.
    #[test]
    fn split_gives_each_part_the_outcome_of_writing_it_alone() {
        let seed = {
            let mut b = WriteBatch::new("readings");
            b.row(0).tag("device", "d0").field("speed", 1.0).field("moving", true).field("odometer", 10i64);
            b
        };
        let part = |rows: &[(i64, &str, FieldValue, Option<bool>)]| {
            let mut b = WriteBatch::new("readings");
            for (t, device, speed, moving) in rows {
                let w = b.row(*t).tag("device", *device).field("speed", speed.clone());
                if let Some(m) = moving {
                    w.field("moving", *m);
                }
            }
            b
        };
        let parts = [
            part(&[(1, "d1", 1.5.into(), Some(true)), (2, "d2", 2.5.into(), None)]),
            // Row 1 gives `speed` a string: rejected, row 0 and 2 land.
            part(&[(1, "d1", 7.0.into(), None), (3, "d1", "fast".into(), Some(false)), (4, "", 4.0.into(), None)]),
            // Every row rejected.
            part(&[(5, "d3", 5i64.into(), None)]),
            // The same series and time as the first part: the later value wins.
            part(&[(2, "d2", 9.0.into(), Some(false))]),
        ];

        let one_by_one_dir = tempfile::tempdir().unwrap();
        let one_by_one = Database::open(one_by_one_dir.path(), Options::default()).unwrap();
        assert_eq!(one_by_one.write("fleet", &seed).unwrap().rows_written, 1);
        let expected: Vec<WriteOutcome> = parts.iter().map(|p| one_by_one.write("fleet", p).unwrap()).collect();

        let merged_dir = tempfile::tempdir().unwrap();
        let merged_db = Database::open(merged_dir.path(), Options::default()).unwrap();
        assert_eq!(merged_db.write("fleet", &seed).unwrap().rows_written, 1);
        let mut merged = parts[0].clone();
        parts[1..].iter().for_each(|p| merged.append(p));
        let outcomes = merged_db.write("fleet", &merged).unwrap().split(&parts);

        assert_eq!(outcomes, expected);
        assert_eq!(outcomes[1].rejected[0].row, 1);
        assert_eq!(outcomes[2].rows_written, 0);
        assert_eq!(outcomes[3].fields_written, 2);
        assert_eq!(scan_all(&merged_db, "fleet", "readings"), scan_all(&one_by_one, "fleet", "readings"));
    }

    #[test]
    fn approx_bytes_grows_with_rows_and_strings() {
        let mut b = WriteBatch::new("t");
        assert_eq!(b.approx_bytes(), 0);
        b.row(1).field("f", 1.0);
        let one = b.approx_bytes();
        assert!(one >= 16, "{one}");
        b.row(2).field("s", "x".repeat(1000));
        assert!(b.approx_bytes() >= one + 1000);
        let mut twice = b.clone();
        twice.append(&b);
        assert!(twice.approx_bytes() >= 2 * b.approx_bytes());
    }

    #[test]
    fn split_counts_each_parts_rows_and_fields() {
        let mut a = WriteBatch::new("t");
        a.row(1).tag("d", "x").field("f", 1.0).field("g", 2i64);
        let b = WriteBatch::new("t");
        let mut c = WriteBatch::new("t");
        c.row(2).field("f", 3.0);
        c.row(3).tag("d", "y");
        let outcome = WriteOutcome { rows_written: 3, fields_written: 3, rejected: Vec::new() };
        let split = outcome.split([&a, &b, &c]);
        let counts: Vec<(usize, usize)> = split.iter().map(|o| (o.rows_written, o.fields_written)).collect();
        assert_eq!(counts, vec![(1, 2), (0, 0), (2, 1)]);
    }
}
