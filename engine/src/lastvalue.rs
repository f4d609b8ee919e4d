//! The last-value cache: the newest value of every field of every series,
//! kept in memory, so "the latest state of each device" is a lookup, not a
//! scan of history, including devices silent for months.
//!
//! - **Merged field by field.** Each field keeps its own newest `(time,
//!   value)`: fields that arrive in separate writes all show. A row older than
//!   a field's newest does not replace it; a later write at the same time
//!   does (last write wins, as in scans). Nulls never replace a value. So a
//!   field's cached value is what `last(field, time)` over the table answers.
//! - **Updated on commit**, in WAL order, with the rows the write buffer
//!   groups by series anyway; and on WAL replay.
//! - **Rebuilt at open without scanning history:** every flush writes a
//!   snapshot (`lastvalues`, see `docs/format.md`) before the WAL files it
//!   covers are deleted; open loads it and replays the WAL records after it.
//!   Reapplying a record the snapshot already holds changes nothing the
//!   replay does not set right, so the snapshot need not be a consistent cut
//!   and is written shard by shard while writes go on. Only when the file is
//!   missing (a data directory of an older version, a restored backup) or
//!   damaged does open rebuild the cache by scanning every table, once.
//! - **Deletes** drop the cells whose time they cover and mark the series
//!   stale; [`crate::Database::delete`] then rescans just those series.
//!   Retention hides cells older than the cutoff and drops them when their
//!   files are dropped.
//! - **Memory:** about 100 bytes per series, plus its tag names and values,
//!   plus about 40 bytes per field (and a string field's value); a tag index
//!   (about 60 bytes per series and tag) is built the first time a lookup
//!   filters on that tag. There is no eviction: the bound is the number of
//!   series times the fields per series, reported by
//!   [`crate::DatabaseStats::last_value_series`] and
//!   [`crate::DatabaseStats::last_value_bytes`]. `Options::last_value_cache
//!   = false` turns the cache off.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, StringViewBuilder, TimestampNanosecondBuilder,
    UInt64Builder,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Schema};
use indexmap::IndexMap;

use crate::batch::{BatchColumn, Column, Values};
use crate::bytes::{FileHeader, PutBytes, Reader};
use crate::db::{read, write};
use crate::delete::Tombstone;
use crate::scan::TagFilter;
use crate::schema::{ColumnKind, FieldType, TIME_COLUMN, TableSchema};
use crate::series::SeriesKey;
use crate::wal::format::TableWrite;
use crate::{Error, Result};

/// Shards per table: a whole-table read locks one at a time, so writers
/// wait for a sixteenth of it at most.
const SHARDS: usize = 16;
/// The snapshot's file name in the data directory.
pub(crate) const FILE: &str = "lastvalues";
/// The snapshot's header.
pub(crate) const HEADER: FileHeader =
    FileHeader { format: "last-value cache", magic: *b"TMKLAST\0", version: 1, oldest: 1 };
/// A snapshot block holds about this many bytes of series.
const BLOCK_BYTES: usize = 1 << 20;
const BLOCK_META: u8 = 1;
const BLOCK_TABLE: u8 = 2;
const BLOCK_SERIES: u8 = 3;
const BLOCK_END: u8 = 4;

/// Removes a snapshot's temporary file a crash left behind.
pub(crate) fn remove_leftovers(dir: &Path) {
    let tmp = dir.join(FILE).with_extension("tmp");
    if tmp.exists()
        && let Err(e) = std::fs::remove_file(&tmp)
    {
        tracing::warn!(path = %tmp.display(), error = %e, "cannot remove a leftover temporary file");
    }
}

/// A cached field value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    Str(Box<str>),
}

impl Value {
    fn of(c: &Column, row: usize) -> Option<Value> {
        if !c.is_valid(row) {
            return None;
        }
        Some(match &c.values {
            Values::F64(v) => Value::F64(*v.get(row)?),
            Values::I64(v) => Value::I64(*v.get(row)?),
            Values::U64(v) => Value::U64(*v.get(row)?),
            Values::Bool(v) => Value::Bool(*v.get(row)?),
            Values::Str(v) => Value::Str(v.get(row)?.as_str().into()),
        })
    }

    fn field_type(&self) -> FieldType {
        match self {
            Value::F64(_) => FieldType::F64,
            Value::I64(_) => FieldType::I64,
            Value::U64(_) => FieldType::U64,
            Value::Bool(_) => FieldType::Bool,
            Value::Str(_) => FieldType::String,
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Value::Str(s) => s.len(),
            _ => 0,
        }
    }
}

/// The newest value of one field of a series.
#[derive(Debug, Clone, PartialEq)]
struct Cell {
    /// The column's id in the table schema.
    column: u32,
    time: i64,
    value: Value,
}

/// The cells of one series, by column id.
#[derive(Debug, Clone, Default, PartialEq)]
struct Row {
    cells: Vec<Cell>,
    /// A delete removed cells: the series is rescanned (see [`crate::Database::delete`]).
    stale: bool,
}

impl Row {
    /// Takes `(time, value)` for `column` unless the cell holds a newer time.
    fn offer(&mut self, column: u32, time: i64, fields_hint: usize, value: impl FnOnce() -> Option<Value>) {
        match self.cells.binary_search_by_key(&column, |c| c.column) {
            Ok(i) => {
                if let Some(c) = self.cells.get_mut(i)
                    && time >= c.time
                    && let Some(v) = value()
                {
                    c.time = time;
                    c.value = v;
                }
            }
            Err(i) => {
                if let Some(v) = value() {
                    if self.cells.capacity() == 0 {
                        // Most series write the same fields every time: room for this write's.
                        self.cells.reserve_exact(fields_hint);
                    }
                    self.cells.insert(i, Cell { column, time, value: v });
                }
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        self.cells.capacity() * std::mem::size_of::<Cell>()
            + self.cells.iter().map(|c| c.value.heap_bytes()).sum::<usize>()
    }
}

type Hasher = foldhash::fast::FixedState;

fn hasher() -> Hasher {
    foldhash::fast::FixedState::with_seed(0x7e1e_3a4c)
}

/// Series of one shard, with tag indexes built on demand.
#[derive(Debug)]
struct Shard {
    rows: IndexMap<SeriesKey, Row, Hasher>,
    /// tag → value → positions in `rows`, for tags lookups have filtered on.
    by_tag: HashMap<String, HashMap<String, Vec<u32>>>,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { rows: IndexMap::with_hasher(hasher()), by_tag: HashMap::new() }
    }
}

impl Shard {
    /// The row of `key` (whose hash is `hash`), inserted if new.
    fn row(&mut self, key: &SeriesKey, hash: u64) -> &mut Row {
        use indexmap::map::raw_entry_v1::{RawEntryApiV1, RawEntryMut};
        let Shard { rows, by_tag } = self;
        match rows.raw_entry_mut_v1().from_key_hashed_nocheck(hash, key) {
            RawEntryMut::Occupied(e) => e.into_mut(),
            RawEntryMut::Vacant(v) => {
                let i = v.index();
                for (tag, index) in by_tag.iter_mut() {
                    if let Some(value) = key.get(tag) {
                        index.entry(value.to_string()).or_default().push(i as u32);
                    }
                }
                v.insert_hashed_nocheck(hash, key.clone(), Row::default()).1
            }
        }
    }

    /// Removes rows with no cells left (positions change: the tag indexes are dropped).
    fn drop_empty(&mut self) {
        let before = self.rows.len();
        self.rows.retain(|_, r| !r.cells.is_empty() || r.stale);
        if self.rows.len() != before {
            self.by_tag.clear();
        }
    }

    /// Positions of the rows matching `filters` (all of them without filters).
    fn matching(&mut self, filters: &[TagFilter]) -> Vec<usize> {
        let Some(first) = filters.first() else {
            return (0..self.rows.len()).collect();
        };
        if !self.by_tag.contains_key(&first.tag) {
            let mut index: HashMap<String, Vec<u32>> = HashMap::new();
            for (i, key) in self.rows.keys().enumerate() {
                if let Some(v) = key.get(&first.tag) {
                    index.entry(v.to_string()).or_default().push(i as u32);
                }
            }
            self.by_tag.insert(first.tag.clone(), index);
        }
        let Some(index) = self.by_tag.get(&first.tag) else {
            return Vec::new();
        };
        let mut out: Vec<usize> = first
            .values
            .iter()
            .filter_map(|v| index.get(v))
            .flatten()
            .map(|&i| i as usize)
            .filter(|&i| {
                self.rows.get_index(i).is_some_and(|(key, _)| {
                    filters.iter().skip(1).all(|f| key.get(&f.tag).is_some_and(|v| f.values.iter().any(|x| x == v)))
                })
            })
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The cache of one table.
#[derive(Debug)]
struct TableCache {
    shards: Vec<RwLock<Shard>>,
}

impl TableCache {
    fn new() -> Self {
        TableCache { shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect() }
    }

    /// The shard of `key`, and the key's hash (the shard's map uses the same hasher).
    fn shard(&self, key: &SeriesKey) -> (&RwLock<Shard>, u64) {
        let h = hasher().hash_one(key);
        let i = (h % SHARDS as u64) as usize;
        // `shards` has SHARDS entries.
        (self.shards.get(i).unwrap_or_else(|| unreachable!("shard {i}")), h)
    }
}

/// The last-value cache of a database directory.
#[derive(Debug)]
pub(crate) struct LastValues {
    enabled: bool,
    tables: RwLock<HashMap<(String, String), Arc<TableCache>>>,
    /// Every WAL record up to this sequence number is applied.
    applied_seq: AtomicU64,
    /// `applied_seq` when the snapshot on disk was taken (or loaded).
    saved_seq: AtomicU64,
    /// Some series may be stale (a delete removed values, the rescan has not finished).
    maybe_stale: AtomicBool,
}

/// Applies the rows of one write, series by series (see [`LastValues::writer`]).
#[derive(Debug)]
pub(crate) struct SeriesWriter<'a> {
    table: Option<Arc<TableCache>>,
    write: &'a TableWrite,
    fields: Vec<(u32, &'a BatchColumn)>,
}

impl SeriesWriter<'_> {
    /// Offers the rows `rows` of series `key` (in write order).
    pub(crate) fn series(&mut self, key: &SeriesKey, rows: &[u32]) {
        let Some(table) = &self.table else { return };
        let (shard, hash) = table.shard(key);
        let mut shard = write(shard);
        let row = shard.row(key, hash);
        let n = self.fields.len();
        for (id, c) in &self.fields {
            let mut best: Option<(i64, usize)> = None;
            for &r in rows {
                let r = r as usize;
                if !c.data.is_valid(r) {
                    continue;
                }
                let Some(&t) = self.write.times.get(r) else { continue };
                // The later of two rows at one time wins, as the later write does.
                if best.is_none_or(|(b, _)| t >= b) {
                    best = Some((t, r));
                }
            }
            if let Some((t, r)) = best {
                row.offer(*id, t, n, || Value::of(&c.data, r));
            }
        }
    }
}

impl LastValues {
    pub(crate) fn new(enabled: bool) -> Self {
        LastValues {
            enabled,
            tables: RwLock::new(HashMap::new()),
            applied_seq: AtomicU64::new(0),
            saved_seq: AtomicU64::new(0),
            maybe_stale: AtomicBool::new(false),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    fn table(&self, database: &str, table: &str) -> Option<Arc<TableCache>> {
        read(&self.tables).get(&(database.to_string(), table.to_string())).cloned()
    }

    fn table_or_new(&self, database: &str, table: &str) -> Arc<TableCache> {
        if let Some(t) = self.table(database, table) {
            return t;
        }
        write(&self.tables)
            .entry((database.to_string(), table.to_string()))
            .or_insert_with(|| Arc::new(TableCache::new()))
            .clone()
    }

    /// A writer for the rows of `write`, whose columns are all in `schema`.
    pub(crate) fn writer<'a>(&self, w: &'a TableWrite, schema: &TableSchema) -> SeriesWriter<'a> {
        if !self.enabled {
            return SeriesWriter { table: None, write: w, fields: Vec::new() };
        }
        let fields = w
            .columns
            .iter()
            .filter(|c| c.kind != ColumnKind::Tag)
            .filter_map(|c| Some((u32::try_from(schema.id_of(&c.name)?).ok()?, c)))
            .collect();
        SeriesWriter { table: Some(self.table_or_new(&w.database, &w.table)), write: w, fields }
    }

    /// Applies a whole write (grouping its rows by series itself).
    pub(crate) fn apply(&self, w: &TableWrite, schema: &TableSchema) {
        if !self.enabled {
            return;
        }
        let mut writer = self.writer(w, schema);
        for (key, rows) in crate::buffer::series_of(w) {
            writer.series(&key, &rows);
        }
    }

    /// Records that every WAL record up to `seq` is applied.
    pub(crate) fn applied(&self, seq: u64) {
        self.applied_seq.fetch_max(seq, Ordering::Release);
    }

    /// Drops the cells a delete covers and marks their series stale.
    /// Returns true if any series needs a rescan.
    pub(crate) fn delete(&self, t: &Tombstone) -> bool {
        let Some(table) = self.table(&t.database, &t.table) else { return false };
        let range = t.range();
        let mut any = false;
        for shard in &table.shards {
            let mut shard = write(shard);
            for (key, row) in shard.rows.iter_mut() {
                if !t.matches(key) {
                    continue;
                }
                let before = row.cells.len();
                row.cells.retain(|c| !range.contains(c.time));
                if row.cells.len() != before {
                    row.stale = true;
                    any = true;
                }
            }
        }
        if any {
            self.maybe_stale.store(true, Ordering::Release);
        }
        any
    }

    /// True when on and every series is exact (none waits for a rescan).
    #[cfg_attr(not(feature = "sql"), allow(dead_code))]
    pub(crate) fn exact(&self) -> bool {
        self.enabled && !self.maybe_stale.load(Ordering::Acquire)
    }

    /// Tables with stale series.
    pub(crate) fn stale_tables(&self) -> Vec<(String, String)> {
        let tables = read(&self.tables);
        tables
            .iter()
            .filter(|(_, t)| t.shards.iter().any(|s| read(s).rows.values().any(|r| r.stale)))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The stale series of a table.
    fn stale_keys(&self, database: &str, table: &str) -> HashSet<SeriesKey> {
        let Some(t) = self.table(database, table) else { return HashSet::new() };
        let mut out = HashSet::new();
        for shard in &t.shards {
            out.extend(read(shard).rows.iter().filter(|(_, r)| r.stale).map(|(k, _)| k.clone()));
        }
        out
    }

    /// Refreshes the stale series of a table from a scan of just them.
    pub(crate) fn refresh(&self, inner: &crate::db::Inner, database: &str, table: &str) -> Result<()> {
        let keys = self.stale_keys(database, table);
        if keys.is_empty() {
            return Ok(());
        }
        let mut req = crate::ScanRequest::new(database, table);
        // The union of the stale keys' tags selects at least them; rows of others are skipped below.
        let mut values: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> = Default::default();
        for k in &keys {
            for (tag, v) in k.tags() {
                values.entry(tag).or_default().insert(v);
            }
        }
        let every_key_has = |tag: &str| keys.iter().all(|k| k.get(tag).is_some());
        for (tag, vals) in values {
            if every_key_has(tag) {
                req = req.filter_tag(tag, vals);
            }
        }
        self.fold_scan(inner, &req, |k| keys.contains(k))?;
        let t = self.table_or_new(database, table);
        for shard in &t.shards {
            let mut shard = write(shard);
            for (k, row) in shard.rows.iter_mut() {
                if keys.contains(k) {
                    row.stale = false;
                }
            }
            shard.drop_empty();
        }
        if self.stale_tables().is_empty() {
            self.maybe_stale.store(false, Ordering::Release);
        }
        Ok(())
    }

    /// Offers every row a scan returns, of series `keep` accepts.
    fn fold_scan(
        &self,
        inner: &crate::db::Inner,
        req: &crate::ScanRequest,
        keep: impl Fn(&SeriesKey) -> bool,
    ) -> Result<()> {
        let Some(schema) = read(&inner.catalog).get(&req.database).and_then(|t| t.get(&req.table)).cloned() else {
            return Ok(());
        };
        let table = self.table_or_new(&req.database, &req.table);
        let stream = inner.scan(req)?;
        for batch in stream {
            let batch = batch?;
            fold_batch(&table, &schema, &batch, &keep);
        }
        Ok(())
    }

    /// Rebuilds the whole cache by scanning every table (when no usable snapshot exists).
    pub(crate) fn rebuild(&self, inner: &crate::db::Inner) -> Result<()> {
        write(&self.tables).clear();
        let tables: Vec<(String, String)> = read(&inner.catalog)
            .iter()
            .flat_map(|(db, t)| t.keys().map(move |name| (db.clone(), name.clone())))
            .collect();
        let started = std::time::Instant::now();
        for (db, table) in &tables {
            self.fold_scan(inner, &crate::ScanRequest::new(db, table), |_| true)?;
        }
        tracing::info!(
            tables = tables.len(),
            series = self.series(),
            seconds = started.elapsed().as_secs_f64(),
            "last-value cache rebuilt by scanning every table (no usable snapshot)"
        );
        Ok(())
    }

    /// Drops cells older than `cutoff` (their rows' files were dropped by retention).
    pub(crate) fn expire(&self, database: &str, table: &str, cutoff: i64) {
        let Some(t) = self.table(database, table) else { return };
        for shard in &t.shards {
            let mut shard = write(shard);
            for row in shard.rows.values_mut() {
                row.cells.retain(|c| c.time >= cutoff);
            }
            shard.drop_empty();
        }
    }

    /// Series cached.
    pub(crate) fn series(&self) -> usize {
        read(&self.tables).values().flat_map(|t| t.shards.iter()).map(|s| read(s).rows.len()).sum()
    }

    /// About the bytes the cache holds.
    pub(crate) fn bytes(&self) -> usize {
        let per_series = std::mem::size_of::<SeriesKey>() + std::mem::size_of::<Row>() + 24;
        let mut total = 0;
        for t in read(&self.tables).values() {
            for shard in &t.shards {
                let s = read(shard);
                for (k, r) in &s.rows {
                    total += per_series
                        + k.tags().iter().map(|(a, b)| 48 + a.len() + b.len()).sum::<usize>()
                        + r.heap_bytes();
                }
                total +=
                    s.by_tag.values().flat_map(|m| m.iter()).map(|(v, p)| 56 + v.len() + 4 * p.len()).sum::<usize>();
            }
        }
        total
    }

    /// One row per series of `table` matching `filters` and having the
    /// `required` tags: `time` (the newest of its fields' times), then the
    /// table's columns in id order (or the `projection`'s columns), each field
    /// holding its newest value. Cells older than `cutoff` (retention) are
    /// left out, and series with none left.
    ///
    /// With `cells`, a row per cell instead: its time, the series' tags and
    /// the one field's value (the other fields null); a series with no cell
    /// of the projected fields gets one row of nulls at its newest time. So
    /// `last(x, time) ... GROUP BY <tags>` over these rows equals the same
    /// over the table's rows.
    #[allow(clippy::too_many_arguments, reason = "one internal caller per layout")]
    pub(crate) fn read(
        &self,
        database: &str,
        table: &str,
        schema: &TableSchema,
        filters: &[TagFilter],
        required: &[String],
        projection: Option<&[String]>,
        cutoff: i64,
        cells: bool,
    ) -> Result<RecordBatch> {
        let full = crate::arrow_schema(schema);
        let names: Vec<String> = match projection {
            Some(p) => p.to_vec(),
            None => full.fields().iter().map(|f| f.name().clone()).collect(),
        };
        let mut out: Vec<OutColumn> = Vec::with_capacity(names.len());
        for name in &names {
            if name == TIME_COLUMN {
                out.push(OutColumn::Time(TimestampNanosecondBuilder::new()));
                continue;
            }
            let id = schema.id_of(name).ok_or_else(|| Error::NotFound {
                what: "column",
                name: format!("{database}.{table}.{name}"),
                hint: String::new(),
            })?;
            let kind = schema.column(id).map_or(ColumnKind::Tag, |c| c.kind);
            out.push(OutColumn::new(name, id as u32, kind));
        }
        let fields: Vec<_> = names.iter().filter_map(|n| full.field_with_name(n).ok().cloned()).collect();
        let arrow = Arc::new(Schema::new(fields));
        let projected: Vec<u32> = out.iter().filter_map(OutColumn::field_id).collect();
        if let Some(t) = self.table(database, table) {
            for shard in &t.shards {
                let mut shard = write(shard);
                let positions = shard.matching(filters);
                for i in positions {
                    let Some((key, row)) = shard.rows.get_index(i) else { continue };
                    if !required.iter().all(|tag| key.get(tag).is_some()) {
                        continue;
                    }
                    let newest = row.cells.iter().filter(|c| c.time >= cutoff).map(|c| c.time).max();
                    let Some(newest) = newest else { continue };
                    if !cells {
                        for c in out.iter_mut() {
                            c.push(key, row, newest, cutoff, None);
                        }
                        continue;
                    }
                    let mut any = false;
                    for cell in row.cells.iter().filter(|c| c.time >= cutoff && projected.contains(&c.column)) {
                        any = true;
                        for c in out.iter_mut() {
                            c.push(key, row, cell.time, cutoff, Some(cell.column));
                        }
                    }
                    if !any {
                        for c in out.iter_mut() {
                            c.push(key, row, newest, cutoff, Some(u32::MAX));
                        }
                    }
                }
            }
        }
        let columns: Vec<ArrayRef> = out.into_iter().map(OutColumn::finish).collect();
        RecordBatch::try_new(arrow, columns).map_err(|e| Error::Internal(format!("last values of {table}: {e}")))
    }
}

/// A column of a [`LastValues::read`] answer being built.
enum OutColumn {
    Time(TimestampNanosecondBuilder),
    Tag(String, StringViewBuilder),
    F64(u32, Float64Builder),
    I64(u32, Int64Builder),
    U64(u32, UInt64Builder),
    Bool(u32, BooleanBuilder),
    Str(u32, StringBuilder),
}

impl OutColumn {
    fn new(name: &str, id: u32, kind: ColumnKind) -> Self {
        match kind {
            ColumnKind::Tag => OutColumn::Tag(name.to_string(), StringViewBuilder::new()),
            ColumnKind::Field(FieldType::F64) => OutColumn::F64(id, Float64Builder::new()),
            ColumnKind::Field(FieldType::I64) => OutColumn::I64(id, Int64Builder::new()),
            ColumnKind::Field(FieldType::U64) => OutColumn::U64(id, UInt64Builder::new()),
            ColumnKind::Field(FieldType::Bool) => OutColumn::Bool(id, BooleanBuilder::new()),
            ColumnKind::Field(FieldType::String) => OutColumn::Str(id, StringBuilder::new()),
        }
    }

    /// The field's column id (`None` for time and tags).
    fn field_id(&self) -> Option<u32> {
        match self {
            OutColumn::Time(_) | OutColumn::Tag(..) => None,
            OutColumn::F64(id, _)
            | OutColumn::I64(id, _)
            | OutColumn::U64(id, _)
            | OutColumn::Bool(id, _)
            | OutColumn::Str(id, _) => Some(*id),
        }
    }

    /// Appends `row`'s value (`time` for the time column); with `only`, the
    /// fields other than that column are null.
    fn push(&mut self, key: &SeriesKey, row: &Row, time: i64, cutoff: i64, only: Option<u32>) {
        let cell = |id: u32| {
            if only.is_some_and(|o| o != id) {
                return None;
            }
            row.cells
                .binary_search_by_key(&id, |c| c.column)
                .ok()
                .and_then(|i| row.cells.get(i))
                .filter(|c| c.time >= cutoff)
                .map(|c| &c.value)
        };
        match self {
            OutColumn::Time(b) => b.append_value(time),
            OutColumn::Tag(name, b) => b.append_option(key.get(name)),
            OutColumn::F64(id, b) => b.append_option(match cell(*id) {
                Some(Value::F64(v)) => Some(*v),
                _ => None,
            }),
            OutColumn::I64(id, b) => b.append_option(match cell(*id) {
                Some(Value::I64(v)) => Some(*v),
                _ => None,
            }),
            OutColumn::U64(id, b) => b.append_option(match cell(*id) {
                Some(Value::U64(v)) => Some(*v),
                _ => None,
            }),
            OutColumn::Bool(id, b) => b.append_option(match cell(*id) {
                Some(Value::Bool(v)) => Some(*v),
                _ => None,
            }),
            OutColumn::Str(id, b) => b.append_option(match cell(*id) {
                Some(Value::Str(v)) => Some(&**v),
                _ => None,
            }),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            OutColumn::Time(mut b) => Arc::new(b.finish()),
            OutColumn::Tag(_, mut b) => Arc::new(b.finish()),
            OutColumn::F64(_, mut b) => Arc::new(b.finish()),
            OutColumn::I64(_, mut b) => Arc::new(b.finish()),
            OutColumn::U64(_, mut b) => Arc::new(b.finish()),
            OutColumn::Bool(_, mut b) => Arc::new(b.finish()),
            OutColumn::Str(_, mut b) => Arc::new(b.finish()),
        }
    }
}

/// A tag's value in a scanned batch (tags are `Utf8View`, or `Utf8`).
fn tag_at(col: &ArrayRef, row: usize) -> Option<&str> {
    use arrow_array::cast::AsArray;
    if col.is_null(row) {
        return None;
    }
    match col.data_type() {
        DataType::Utf8View => Some(col.as_string_view().value(row)),
        DataType::Utf8 => Some(col.as_string::<i32>().value(row)),
        _ => None,
    }
}

/// Offers the rows of a scanned batch (rows come grouped by series).
fn fold_batch(table: &TableCache, schema: &TableSchema, batch: &RecordBatch, keep: &impl Fn(&SeriesKey) -> bool) {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type, TimestampNanosecondType, UInt64Type};
    let Some(times) = batch.column_by_name(TIME_COLUMN).and_then(|c| c.as_primitive_opt::<TimestampNanosecondType>())
    else {
        return;
    };
    let mut tags: Vec<(&str, &ArrayRef)> = Vec::new();
    let mut fields: Vec<(u32, &ArrayRef)> = Vec::new();
    for (f, col) in batch.schema_ref().fields().iter().zip(batch.columns()) {
        let Some(id) = schema.id_of(f.name()) else { continue };
        match schema.column(id).map(|c| c.kind) {
            Some(ColumnKind::Tag) => tags.push((f.name().as_str(), col)),
            Some(ColumnKind::Field(_)) => fields.push((id as u32, col)),
            None => {}
        }
    }
    let value_at = |col: &ArrayRef, row: usize| -> Option<Value> {
        if col.is_null(row) {
            return None;
        }
        Some(match col.data_type() {
            DataType::Float64 => Value::F64(col.as_primitive_opt::<Float64Type>()?.value(row)),
            DataType::Int64 => Value::I64(col.as_primitive_opt::<Int64Type>()?.value(row)),
            DataType::UInt64 => Value::U64(col.as_primitive_opt::<UInt64Type>()?.value(row)),
            DataType::Boolean => Value::Bool(col.as_boolean_opt()?.value(row)),
            DataType::Utf8 => Value::Str(col.as_string_opt::<i32>()?.value(row).into()),
            _ => return None,
        })
    };
    // Rows come grouped by series and in time order within one: offer each
    // field's last non-null value of every run of a series, once.
    let key_at = |row: usize| {
        SeriesKey::new(tags.iter().filter_map(|(n, c)| Some((n.to_string(), tag_at(c, row)?.to_string()))).collect())
    };
    let same_series = |key: &SeriesKey, row: usize| tags.iter().all(|(n, c)| tag_at(c, row) == key.get(n));
    let mut start = 0;
    while start < batch.num_rows() {
        let key = key_at(start);
        let mut end = start + 1;
        while end < batch.num_rows() && same_series(&key, end) {
            end += 1;
        }
        if keep(&key) {
            let (shard, hash) = table.shard(&key);
            let mut shard = write(shard);
            let r = shard.row(&key, hash);
            for (id, col) in &fields {
                if let Some(row) = (start..end).rev().find(|&row| !col.is_null(row)) {
                    r.offer(*id, times.value(row), fields.len(), || value_at(col, row));
                }
            }
        }
        start = end;
    }
}

impl LastValues {
    /// Writes the snapshot to `dir` if anything changed since the last one.
    /// Called before WAL files are deleted: it covers every record up to the
    /// sequence number it records.
    pub(crate) fn save(&self, backend: &dyn crate::fs::FileBackend, dir: &Path) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let seq = self.applied_seq.load(Ordering::Acquire);
        if seq == self.saved_seq.load(Ordering::Acquire) && dir.join(FILE).exists() {
            return Ok(());
        }
        let bytes = self.encode(seq);
        crate::fs::write_atomic(backend, &dir.join(FILE), &bytes)?;
        self.saved_seq.store(seq, Ordering::Release);
        Ok(())
    }

    /// The snapshot: header, then CRC-framed blocks (see `docs/format.md`).
    fn encode(&self, seq: u64) -> Vec<u8> {
        let mut out = HEADER.encode().to_vec();
        let mut meta = vec![BLOCK_META];
        meta.put_u64(seq);
        frame(&mut out, &meta);
        let tables: Vec<((String, String), Arc<TableCache>)> =
            read(&self.tables).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut total = 0u64;
        for (i, ((db, table), t)) in tables.iter().enumerate() {
            let mut head = vec![BLOCK_TABLE];
            head.put_varint(i as u64);
            head.put_str(db);
            head.put_str(table);
            frame(&mut out, &head);
            let mut block = Vec::new();
            let mut count = 0u64;
            for shard in &t.shards {
                let shard = read(shard);
                for (key, row) in &shard.rows {
                    encode_series(&mut block, key, row);
                    count += 1;
                    if block.len() >= BLOCK_BYTES {
                        flush_series(&mut out, i, &mut block, &mut count, &mut total);
                    }
                }
            }
            flush_series(&mut out, i, &mut block, &mut count, &mut total);
        }
        let mut end = vec![BLOCK_END];
        end.put_u64(total);
        frame(&mut out, &end);
        out
    }

    /// Loads the snapshot in `dir`: the sequence number it covers, or `None`
    /// when there is none or it cannot be used (damaged: logged).
    pub(crate) fn load(
        &self,
        dir: &Path,
        catalog: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, TableSchema>>,
    ) -> Option<u64> {
        if !self.enabled {
            return None;
        }
        let path = dir.join(FILE);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the last-value snapshot; rebuilding the cache");
                return None;
            }
        };
        match self.decode(&path, &data, catalog) {
            Ok(seq) => {
                self.applied_seq.store(seq, Ordering::Release);
                self.saved_seq.store(seq, Ordering::Release);
                Some(seq)
            }
            Err(e) => {
                write(&self.tables).clear();
                tracing::warn!(error = %e, "the last-value snapshot is unusable; rebuilding the cache");
                None
            }
        }
    }

    fn decode(
        &self,
        path: &Path,
        data: &[u8],
        catalog: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, TableSchema>>,
    ) -> Result<u64> {
        HEADER.check(path, data)?;
        let body = data.get(crate::bytes::FILE_HEADER_LEN..).unwrap_or_default();
        let bad = |offset: usize, detail: String| Error::corruption(path, offset as u64, detail);
        let mut r = Reader::new(body);
        let mut seq = None;
        let mut tables: HashMap<u64, (Arc<TableCache>, Option<TableSchema>)> = HashMap::new();
        let mut total = 0u64;
        loop {
            let at = r.pos() + crate::bytes::FILE_HEADER_LEN;
            let len = r.u32("block length").map_err(|e| bad(at, e.detail))? as usize;
            let crc = r.u32("block checksum").map_err(|e| bad(at, e.detail))?;
            let payload = r.take(len, "block").map_err(|e| bad(at, e.detail))?;
            if !crate::bytes::checksum_matches(crc, crc32c::crc32c(payload)) {
                return Err(bad(at, "block checksum mismatch".into()));
            }
            let mut b = Reader::new(payload);
            let fail = |e: crate::bytes::ReadError| bad(at + 8 + e.offset, e.detail);
            match b.u8("block kind").map_err(fail)? {
                BLOCK_META => seq = Some(b.u64("sequence number").map_err(fail)?),
                BLOCK_TABLE => {
                    let i = b.varint("table number").map_err(fail)?;
                    let db = b.str("database").map_err(fail)?;
                    let table = b.str("table").map_err(fail)?;
                    let schema = catalog.get(db).and_then(|t| t.get(table)).cloned();
                    tables.insert(i, (self.table_or_new(db, table), schema));
                }
                BLOCK_SERIES => {
                    let i = b.varint("table number").map_err(fail)?;
                    let (table, schema) =
                        tables.get(&i).ok_or_else(|| bad(at, format!("series of unknown table {i}")))?;
                    let n = b.varint("series count").map_err(fail)?;
                    for _ in 0..n {
                        let (key, row) = decode_series(&mut b).map_err(fail)?;
                        total += 1;
                        // A table dropped from the catalog, or a column of another type, is not restored.
                        let Some(schema) = schema else { continue };
                        let row = Row {
                            cells: row
                                .cells
                                .into_iter()
                                .filter(|c| {
                                    schema.column(c.column as usize).map(|d| d.kind)
                                        == Some(ColumnKind::Field(c.value.field_type()))
                                })
                                .collect(),
                            stale: row.stale,
                        };
                        if row.stale {
                            self.maybe_stale.store(true, Ordering::Release);
                        }
                        let (shard, hash) = table.shard(&key);
                        *write(shard).row(&key, hash) = row;
                    }
                }
                BLOCK_END => {
                    let expected = b.u64("series total").map_err(fail)?;
                    if expected != total {
                        return Err(bad(at, format!("{total} series read, the snapshot says {expected}")));
                    }
                    return seq.ok_or_else(|| bad(at, "no sequence number block".into()));
                }
                other => return Err(bad(at, format!("unknown block kind {other}"))),
            }
        }
    }
}

fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.put_u32(payload.len() as u32);
    out.put_u32(crc32c::crc32c(payload));
    out.extend_from_slice(payload);
}

fn flush_series(out: &mut Vec<u8>, table: usize, block: &mut Vec<u8>, count: &mut u64, total: &mut u64) {
    if *count == 0 {
        return;
    }
    let mut payload = Vec::with_capacity(block.len() + 16);
    payload.push(BLOCK_SERIES);
    payload.put_varint(table as u64);
    payload.put_varint(*count);
    payload.extend_from_slice(block);
    frame(out, &payload);
    *total += *count;
    *count = 0;
    block.clear();
}

fn encode_series(out: &mut Vec<u8>, key: &SeriesKey, row: &Row) {
    out.put_u8(u8::from(row.stale));
    out.put_varint(key.tags().len() as u64);
    for (k, v) in key.tags() {
        out.put_str(k);
        out.put_str(v);
    }
    out.put_varint(row.cells.len() as u64);
    for c in &row.cells {
        out.put_varint(u64::from(c.column));
        out.put_i64(c.time);
        out.put_u8(c.value.field_type().code());
        match &c.value {
            Value::F64(v) => out.put_u64(v.to_bits()),
            Value::I64(v) => out.put_i64(*v),
            Value::U64(v) => out.put_u64(*v),
            Value::Bool(v) => out.put_u8(u8::from(*v)),
            Value::Str(v) => out.put_str(v),
        }
    }
}

fn decode_series(r: &mut Reader<'_>) -> crate::bytes::ReadResult<(SeriesKey, Row)> {
    let stale = r.u8("stale flag")? != 0;
    let n = r.len(1 << 16, "tag count")?;
    let mut tags = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let k = r.str("tag name")?.to_string();
        let v = r.str("tag value")?.to_string();
        tags.push((k, v));
    }
    let n = r.len(1 << 20, "cell count")?;
    let mut cells: Vec<Cell> = Vec::with_capacity(n.min(256));
    for _ in 0..n {
        let column = u32::try_from(r.varint("column id")?).map_err(|_| r.error("column id out of range"))?;
        let time = r.i64("time")?;
        let value = match FieldType::from_code(r.u8("value type")?) {
            Some(FieldType::F64) => Value::F64(f64::from_bits(r.u64("float")?)),
            Some(FieldType::I64) => Value::I64(r.i64("integer")?),
            Some(FieldType::U64) => Value::U64(r.u64("unsigned")?),
            Some(FieldType::Bool) => Value::Bool(r.u8("boolean")? != 0),
            Some(FieldType::String) => Value::Str(r.str("string")?.into()),
            None => return Err(r.error("unknown value type")),
        };
        if cells.last().is_some_and(|c| c.column >= column) {
            return Err(r.error("cells out of column order"));
        }
        cells.push(Cell { column, time, value });
    }
    Ok((SeriesKey::new(tags), Row { cells, stale }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[(u32, i64, f64)]) -> Row {
        let mut r = Row::default();
        for &(c, t, v) in cells {
            r.offer(c, t, 1, || Some(Value::F64(v)));
        }
        r
    }

    #[test]
    fn newer_or_equal_time_wins_per_field() {
        let mut r = row(&[(1, 10, 1.0), (2, 5, 2.0)]);
        r.offer(1, 9, 1, || Some(Value::F64(9.0)));
        r.offer(2, 5, 1, || Some(Value::F64(3.0)));
        r.offer(3, 1, 1, || None);
        assert_eq!(r, row(&[(1, 10, 1.0), (2, 5, 3.0)]));
    }

    #[test]
    fn snapshot_roundtrip_and_damage() {
        let lv = LastValues::new(true);
        let t = lv.table_or_new("db", "t");
        for i in 0..3000 {
            let key = SeriesKey::new(vec![("device".into(), format!("d{i}"))]);
            let (shard, hash) = t.shard(&key);
            let mut s = write(shard);
            let r = s.row(&key, hash);
            r.offer(1, i, 2, || Some(Value::F64(i as f64)));
            r.offer(2, i, 2, || Some(Value::Str(format!("s{i}").into())));
        }
        let mut schema = TableSchema::default();
        schema.push("device", ColumnKind::Tag);
        schema.push("x", ColumnKind::Field(FieldType::F64));
        schema.push("s", ColumnKind::Field(FieldType::String));
        let catalog = [("db".to_string(), [("t".to_string(), schema)].into_iter().collect())].into_iter().collect();
        let bytes = lv.encode(42);
        let back = LastValues::new(true);
        assert_eq!(back.decode(Path::new("lv"), &bytes, &catalog).ok(), Some(42));
        assert_eq!(back.series(), 3000);
        // Every truncation and every flipped byte is refused, never a panic or a silent partial load.
        for cut in [0, 10, 16, 20, bytes.len() / 2, bytes.len() - 1] {
            let b = LastValues::new(true);
            assert!(b.decode(Path::new("lv"), bytes.get(..cut).unwrap_or_default(), &catalog).is_err(), "cut {cut}");
        }
        for at in (0..bytes.len()).step_by(997) {
            let mut damaged = bytes.clone();
            if let Some(x) = damaged.get_mut(at) {
                *x ^= 0x40;
            }
            let b = LastValues::new(true);
            assert!(b.decode(Path::new("lv"), &damaged, &catalog).is_err(), "byte {at}");
        }
    }
}
