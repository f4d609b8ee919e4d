//! Rollups: per-series aggregates of a table over fixed time buckets (say
//! 1 h), kept in an ordinary table of their own and maintained as data
//! arrives, so a panel over a year reads 8 760 rows per series instead of
//! every reading.
//!
//! A rule ([`RollupRule`]) names a source table, an interval and a target
//! table (default `<table>_<interval>`, e.g. `readings_1h`). For every
//! numeric field `f` of the source the target has `f_min`, `f_max`, `f_sum`,
//! `f_count` (non-null values) and `f_last` (the value at the latest time),
//! plus `rows` (source rows in the bucket); its tags are the source's and its
//! `time` is the bucket's start. Boolean and string fields are not rolled up.
//!
//! **Maintenance.** Every committed write marks the buckets its rows fall in
//! as dirty; a delete marks the buckets of its time range. Dirty buckets are
//! recomputed from the source (every series of the bucket, late rows
//! included) and written to the target, overwriting the bucket's rows (a
//! bucket dirtied by a delete is cleared first). The background flush thread
//! does this about once a second; [`crate::Database::refresh_rollups`] does
//! it on demand, and SQL answered from a rollup refreshes the buckets it reads
//! first, so its answer includes every row written before the query.
//!
//! **Durability.** Marks live in memory. The WAL holds the writes that made
//! them, so a crash re-marks them on replay; before a flush trims the WAL,
//! each rule's marks (and the buckets recomputed since the last flush, whose
//! target rows may still be only in the WAL) are saved to
//! `rollups/<database>.<target>` (magic `TMKROLL`, CRC on every block) and
//! loaded at open.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::batch::Values;
use crate::bytes::{FileHeader, PutBytes, Reader};
use crate::schema::{ColumnKind, FieldType};
use crate::series::{SeriesData, SeriesKey};
use crate::{DeleteRequest, Error, Result, ScanRequest, WriteBatch};

/// The aggregates kept per field, as column suffixes (`f_min`, …).
pub const AGGREGATES: [&str; 5] = ["min", "max", "sum", "count", "last"];
/// The column counting source rows per bucket.
pub const ROWS_COLUMN: &str = "rows";
/// The directory of the saved marks, in the data directory.
const DIR: &str = "rollups";
/// The header of a saved marks file.
pub(crate) const HEADER: FileHeader =
    FileHeader { format: "rollup marks", magic: *b"TMKROLL\0", version: 1, oldest: 1 };
/// Target rows written per batch while recomputing.
const BATCH_ROWS: usize = 20_000;

/// The column of aggregate `agg` of field `field` in a rollup table.
pub fn column(field: &str, agg: &str) -> String {
    format!("{field}_{agg}")
}

/// Keep per-series aggregates of `database.table` per `interval` in
/// `database.target`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RollupRule {
    /// Database of the source and the target.
    pub database: String,
    /// Source table.
    pub table: String,
    /// Bucket width: whole seconds, at least one.
    pub interval: Duration,
    /// Target table.
    pub target: String,
}

impl RollupRule {
    /// A rule with the default target name, `<table>_<interval>` (`readings_1h`).
    pub fn new(database: impl Into<String>, table: impl Into<String>, interval: Duration) -> Self {
        let table = table.into();
        let target = format!("{table}_{}", interval_name(interval));
        RollupRule { database: database.into(), table, interval, target }
    }

    /// The same rule writing to `target`.
    pub fn with_target(mut self, target: impl Into<String>) -> Self {
        self.target = target.into();
        self
    }

    /// The bucket width in nanoseconds.
    pub fn stride(&self) -> i64 {
        i64::try_from(self.interval.as_nanos()).unwrap_or(i64::MAX)
    }

    fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::InvalidInput(format!("rollup of {}.{}: {why}", self.database, self.table)));
        if self.interval < Duration::from_secs(1) || self.interval.subsec_nanos() != 0 {
            return bad(format!("interval {:?} must be whole seconds, at least 1s", self.interval));
        }
        if self.target == self.table {
            return bad("the target must be another table".into());
        }
        crate::schema::validate_name("table", &self.target)
    }
}

/// `1h`, `15m`, `1d`, `30s`.
pub fn interval_name(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// The start of the bucket of `t`.
pub(crate) fn bucket(t: i64, stride: i64) -> i64 {
    t.saturating_sub(t.rem_euclid(stride))
}

/// What recomputing found and wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupReport {
    /// Buckets recomputed.
    pub buckets: usize,
    /// Rows written to rollup tables.
    pub rows: usize,
}

/// Buckets waiting to be recomputed.
#[derive(Debug, Default)]
struct Marks {
    /// Bucket start → clear the bucket's target rows first (a delete cut it).
    dirty: BTreeMap<i64, bool>,
    /// Being recomputed now: saved like `dirty`, and a query waits for them.
    taken: BTreeMap<i64, bool>,
    /// Recomputed since the last save: their target rows may be only in the WAL.
    recent: BTreeSet<i64>,
    /// Deletes from the source not yet applied to the target.
    deletes: Vec<DeleteMark>,
    /// Mark every bucket the source has rows in (a new rule, or its interval
    /// changed); `true`: delete the target's rows first.
    backfill: Option<bool>,
}

/// A delete from the source: its tag filters and time range.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DeleteMark {
    tags: Vec<(String, Vec<String>)>,
    start: i64,
    end: i64,
}

/// One rule and its marks.
#[derive(Debug)]
pub(crate) struct Rollup {
    pub(crate) rule: RollupRule,
    stride: i64,
    marks: Mutex<Marks>,
    /// Held while recomputing, so two refreshes do not interleave.
    busy: Mutex<()>,
}

/// The rollups of a database.
#[derive(Debug, Default)]
pub(crate) struct Rollups {
    rules: Vec<Rollup>,
    /// Wakes the rollup thread (on close).
    wake: (Mutex<bool>, std::sync::Condvar),
}

/// The rollup thread: recomputes marked buckets about once a second. Its own
/// thread, not the flush thread's: recomputing writes, and a write may wait
/// for a flush to make room.
pub(crate) fn background(weak: std::sync::Weak<crate::db::Inner>) {
    use std::sync::atomic::Ordering;
    let mut failing = Failing::default();
    loop {
        let Some(inner) = weak.upgrade() else { return };
        {
            let (m, cv) = &inner.rollups.wake;
            let mut woken = lock(m);
            if !*woken && !inner.closed.load(Ordering::SeqCst) {
                woken =
                    cv.wait_timeout(woken, Duration::from_secs(1)).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
            }
            *woken = false;
        }
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        if inner.poisoned().is_some() {
            continue;
        }
        failing.record(inner.refresh_rollups(None).err().map(|e| e.to_string()));
    }
}

/// How often the same failure is logged again while it lasts.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

/// The rollup thread's failures, logged when they start, change, or have
/// lasted another minute, and when they end: the thread retries every second.
#[derive(Debug, Default)]
struct Failing {
    /// The error, when it was last logged, and the failed attempts since.
    current: Option<(String, std::time::Instant, u64)>,
}

impl Failing {
    fn record(&mut self, error: Option<String>) {
        match (error, &mut self.current) {
            (None, current) => {
                if let Some((error, _, attempts)) = current.take() {
                    tracing::info!(%error, attempts, "recomputing rollups works again");
                }
            }
            (Some(e), Some((last, at, attempts))) if *last == e && at.elapsed() < FAILURE_LOG_EVERY => *attempts += 1,
            (Some(e), current) => {
                let repeated = current.as_ref().filter(|(last, _, _)| *last == e).map_or(0, |(_, _, n)| *n);
                tracing::error!(
                    error = %e,
                    failed_attempts_since_last_logged = repeated,
                    "recomputing rollups failed; retrying every second (logged again in a minute if it lasts)"
                );
                *current = Some((e, std::time::Instant::now(), 0));
            }
        }
    }

    #[cfg(test)]
    fn logged_error(&self) -> Option<&str> {
        self.current.as_ref().map(|(e, _, _)| e.as_str())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A file name for any database and table name (bytes other than ASCII
/// letters, digits, `_` and `-` as `%XX`).
fn file_name(database: &str, table: &str) -> String {
    let mut out = String::new();
    for (i, part) in [database, table].into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for b in part.bytes() {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

impl Rollups {
    pub(crate) fn new(rules: &[RollupRule]) -> Result<Self> {
        for (i, r) in rules.iter().enumerate() {
            r.validate()?;
            for other in &rules[..i] {
                if other.database == r.database && (other.target == r.target || other.target == r.table) {
                    return Err(Error::InvalidInput(format!(
                        "rollup of {}.{}: table {} is already the target of another rollup",
                        r.database, r.table, other.target
                    )));
                }
                if other.database == r.database && other.table == r.target {
                    return Err(Error::InvalidInput(format!(
                        "rollup of {}.{}: its target {} is the source of another rollup",
                        r.database, r.table, r.target
                    )));
                }
            }
        }
        let rules = rules
            .iter()
            .map(|r| Rollup { rule: r.clone(), stride: r.stride(), marks: Mutex::default(), busy: Mutex::new(()) })
            .collect();
        Ok(Rollups { rules, wake: Default::default() })
    }

    /// Wakes the rollup thread.
    pub(crate) fn wake(&self) {
        *lock(&self.wake.0) = true;
        self.wake.1.notify_all();
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub(crate) fn all(&self) -> &[Rollup] {
        &self.rules
    }

    fn of<'a>(&'a self, database: &'a str, table: &'a str) -> impl Iterator<Item = &'a Rollup> + 'a {
        self.rules.iter().filter(move |r| r.rule.database == database && r.rule.table == table)
    }

    /// Marks the buckets of rows just committed to `database.table`.
    pub(crate) fn wrote(&self, database: &str, table: &str, times: &[i64]) {
        for r in self.of(database, table) {
            let mut marks = lock(&r.marks);
            let (mut lo, mut hi) = (0i64, 0i64);
            for &t in times {
                // Rows of a write mostly share a bucket with the row before.
                if t < lo || t >= hi {
                    lo = bucket(t, r.stride);
                    hi = lo.saturating_add(r.stride);
                    marks.dirty.entry(lo).or_insert(false);
                }
            }
        }
    }

    /// Marks a delete from `database.table`.
    pub(crate) fn deleted(&self, t: &crate::delete::Tombstone) {
        for r in self.of(&t.database, &t.table) {
            lock(&r.marks).deletes.push(DeleteMark { tags: t.tags.clone(), start: t.start, end: t.end });
        }
    }

    /// Whether some bucket in `[start, end)` waits for recomputing (or is being recomputed).
    pub(crate) fn dirty_in(&self, r: &Rollup, start: i64, end: i64) -> bool {
        let m = lock(&r.marks);
        let start = bucket(start, r.stride);
        m.backfill.is_some()
            || !m.deletes.is_empty()
            || (start < end
                && (m.dirty.range(start..end).next().is_some() || m.taken.range(start..end).next().is_some()))
    }

    /// The rule whose target is `database.table`.
    pub(crate) fn by_target(&self, database: &str, table: &str) -> Option<&Rollup> {
        self.rules.iter().find(|r| r.rule.database == database && r.rule.target == table)
    }

    fn path(dir: &Path, r: &RollupRule) -> PathBuf {
        dir.join(DIR).join(file_name(&r.database, &r.target))
    }

    /// Saves every rule's marks (before the WAL that made them is trimmed).
    pub(crate) fn save(&self, backend: &dyn crate::fs::FileBackend, dir: &Path) -> Result<()> {
        if self.rules.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(dir.join(DIR)).map_err(|e| Error::io(dir.join(DIR), e))?;
        for r in &self.rules {
            let bytes = {
                let mut m = lock(&r.marks);
                let bytes = encode(r, &m);
                m.recent.clear();
                bytes
            };
            crate::fs::write_atomic(backend, &Self::path(dir, &r.rule), &bytes)?;
        }
        Ok(())
    }

    /// Loads the saved marks. A rule without a file (new, or absent from an
    /// earlier run) or whose file was for another interval or source is
    /// backfilled from the source's rows. Files of rules no longer configured
    /// are removed, so a rule added again is backfilled too. A damaged file
    /// fails the open.
    pub(crate) fn load(&self, dir: &Path) -> Result<()> {
        let known: BTreeSet<PathBuf> = self.rules.iter().map(|r| Self::path(dir, &r.rule)).collect();
        if let Ok(entries) = std::fs::read_dir(dir.join(DIR)) {
            for e in entries.flatten() {
                if !known.contains(&e.path()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        for r in &self.rules {
            let path = Self::path(dir, &r.rule);
            let data = match std::fs::read(&path) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    lock(&r.marks).backfill = Some(true);
                    continue;
                }
                Err(e) => return Err(Error::io(path, e)),
            };
            let (stride, table, loaded) = decode(&path, &data)?;
            let mut m = lock(&r.marks);
            if stride != r.stride || table != r.rule.table {
                m.backfill = Some(true);
                continue;
            }
            for (b, clear) in loaded.dirty {
                *m.dirty.entry(b).or_insert(false) |= clear;
            }
            m.deletes.extend(loaded.deletes);
            m.backfill = loaded.backfill;
        }
        Ok(())
    }
}

/// Header, then one framed block: `u32 len | u32 crc32c | payload`; see `docs/format.md`.
fn encode(r: &Rollup, m: &Marks) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.put_u64(r.stride as u64);
    payload.put_str(&r.rule.table);
    payload.push(match m.backfill {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    });
    let mut buckets: BTreeMap<i64, bool> = m.recent.iter().map(|b| (*b, false)).collect();
    for (b, c) in m.dirty.iter().chain(&m.taken) {
        *buckets.entry(*b).or_insert(false) |= *c;
    }
    payload.put_varint(buckets.len() as u64);
    for (b, clear) in &buckets {
        payload.put_u64(*b as u64);
        payload.push(u8::from(*clear));
    }
    payload.put_varint(m.deletes.len() as u64);
    for d in &m.deletes {
        payload.put_u64(d.start as u64);
        payload.put_u64(d.end as u64);
        payload.put_varint(d.tags.len() as u64);
        for (tag, values) in &d.tags {
            payload.put_str(tag);
            payload.put_varint(values.len() as u64);
            for v in values {
                payload.put_str(v);
            }
        }
    }
    let mut out = HEADER.encode().to_vec();
    out.put_u32(payload.len() as u32);
    out.put_u32(crc32c::crc32c(&payload));
    out.extend_from_slice(&payload);
    out
}

/// The stride and source table the marks were saved for, and the marks.
fn decode(path: &Path, data: &[u8]) -> Result<(i64, String, Marks)> {
    HEADER.check(path, data)?;
    let body = data.get(crate::bytes::FILE_HEADER_LEN..).unwrap_or_default();
    let bad = |offset: usize, detail: String| {
        Error::corruption(path, (offset + crate::bytes::FILE_HEADER_LEN) as u64, detail)
    };
    let mut r = Reader::new(body);
    let len = r.u32("block length").map_err(|e| bad(e.offset, e.detail))? as usize;
    let crc = r.u32("block checksum").map_err(|e| bad(e.offset, e.detail))?;
    let payload = r.take(len, "block").map_err(|e| bad(e.offset, e.detail))?;
    if !crate::bytes::checksum_matches(crc, crc32c::crc32c(payload)) {
        return Err(bad(0, "checksum mismatch".into()));
    }
    if r.remaining() != 0 {
        return Err(bad(r.pos(), "bytes after the block".into()));
    }
    let mut p = Reader::new(payload);
    let mut m = Marks::default();
    let rd = |e: crate::bytes::ReadError| bad(8 + e.offset, e.detail);
    let stride = p.i64("interval").map_err(rd)?;
    let table = p.str("source table").map_err(rd)?.to_string();
    m.backfill = match p.u8("backfill").map_err(rd)? {
        0 => None,
        1 => Some(false),
        2 => Some(true),
        other => return Err(bad(8 + p.pos() - 1, format!("unknown backfill flag {other}"))),
    };
    let n = p.len(payload.len() / 9, "bucket count").map_err(rd)?;
    for _ in 0..n {
        let b = p.i64("bucket").map_err(rd)?;
        let clear = p.u8("flag").map_err(rd)? != 0;
        m.dirty.insert(b, clear);
    }
    let n = p.len(payload.len() / 17, "delete count").map_err(rd)?;
    for _ in 0..n {
        let start = p.i64("delete start").map_err(rd)?;
        let end = p.i64("delete end").map_err(rd)?;
        let tags = p.len(payload.len(), "tag count").map_err(rd)?;
        let mut d = DeleteMark { tags: Vec::new(), start, end };
        for _ in 0..tags {
            let tag = p.str("tag").map_err(rd)?.to_string();
            let count = p.len(payload.len(), "value count").map_err(rd)?;
            let values = (0..count).map(|_| p.str("value").map(str::to_string)).collect::<std::result::Result<_, _>>();
            d.tags.push((tag, values.map_err(rd)?));
        }
        m.deletes.push(d);
    }
    if p.remaining() != 0 {
        return Err(bad(8 + p.pos(), "bytes after the marks".into()));
    }
    Ok((stride, table, m))
}

impl crate::db::Inner {
    /// Recomputes the dirty buckets of every rollup (those in `[start, end)` if given).
    pub(crate) fn refresh_rollups(&self, range: Option<(i64, i64)>) -> Result<RollupReport> {
        let mut report = RollupReport::default();
        for r in self.rollups.all() {
            let one = self.refresh_rollup(r, range)?;
            report.buckets += one.buckets;
            report.rows += one.rows;
        }
        Ok(report)
    }

    /// The oldest time the source keeps: buckets before it cannot change, and
    /// are never recomputed (the rollup keeps what retention dropped).
    fn source_cutoff(&self, rule: &RollupRule) -> i64 {
        let rules = self.retention.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        crate::retention::cutoff(&rules, &rule.database, &rule.table, crate::delete::now_nanos())
    }

    pub(crate) fn refresh_rollup(&self, r: &Rollup, range: Option<(i64, i64)>) -> Result<RollupReport> {
        let _busy = lock(&r.busy);
        let rule = &r.rule;
        let target_exists = || self.table_schema(&rule.database, &rule.target).is_some();
        // A new rule, or a new interval: every bucket the source has rows in.
        let backfill = lock(&r.marks).backfill;
        if let Some(clear) = backfill {
            if clear && target_exists() {
                let _ = self.delete(&rule.database, &DeleteRequest::new(&rule.target))?;
            }
            let mut found = BTreeSet::new();
            if self.table_schema(&rule.database, &rule.table).is_some() {
                for b in self.scan(&ScanRequest::new(&rule.database, &rule.table).project(["time"]))? {
                    let b = b?;
                    let times = b.column(0).as_any().downcast_ref::<arrow_array::TimestampNanosecondArray>();
                    found.extend(times.into_iter().flat_map(|t| t.values().iter().map(|t| bucket(*t, r.stride))));
                }
            }
            let mut m = lock(&r.marks);
            for b in found {
                m.dirty.entry(b).or_insert(false);
            }
            m.backfill = None;
        }
        // Deletes: the matched series' rows go from the buckets the delete
        // covers whole; the (at most two) buckets it cuts are recomputed.
        let cutoff = self.source_cutoff(rule);
        let pending: Vec<DeleteMark> = lock(&r.marks).deletes.clone();
        for d in &pending {
            let whole_from =
                if d.start == i64::MIN { i64::MIN } else { bucket(d.start.saturating_add(r.stride - 1), r.stride) };
            let whole_to = if d.end == i64::MAX { i64::MAX } else { bucket(d.end, r.stride) };
            if whole_from < whole_to && target_exists() {
                let mut req = DeleteRequest::new(&rule.target);
                req.tag_filters = d
                    .tags
                    .iter()
                    .map(|(tag, values)| crate::TagFilter { tag: tag.clone(), values: values.clone() })
                    .collect();
                req.start = (whole_from != i64::MIN).then_some(whole_from);
                req.end = (whole_to != i64::MAX).then_some(whole_to);
                let _ = self.delete(&rule.database, &req)?;
            }
            let mut m = lock(&r.marks);
            let cut = [
                (d.start != i64::MIN && d.start.rem_euclid(r.stride) != 0).then(|| bucket(d.start, r.stride)),
                (d.end != i64::MAX && d.end.rem_euclid(r.stride) != 0).then(|| bucket(d.end, r.stride)),
            ];
            for b in cut.into_iter().flatten().filter(|b| *b >= cutoff) {
                m.dirty.insert(b, true);
            }
        }
        lock(&r.marks).deletes.drain(..pending.len());
        let taken: Vec<(i64, bool)> = {
            let mut m = lock(&r.marks);
            let keys: Vec<i64> = match range {
                Some((s, e)) if bucket(s, r.stride) >= e => Vec::new(),
                Some((s, e)) => m.dirty.range(bucket(s, r.stride)..e).map(|(b, _)| *b).collect(),
                None => m.dirty.keys().copied().collect(),
            };
            let mut taken = Vec::with_capacity(keys.len());
            for b in keys {
                let Some(clear) = m.dirty.remove(&b) else { continue };
                // Retention dropped (some of) the bucket's rows: what the rollup has stays.
                if b >= cutoff {
                    m.taken.insert(b, clear);
                    taken.push((b, clear));
                }
            }
            taken
        };
        let mut report = RollupReport::default();
        let result = self.recompute(r, &taken, &mut report);
        let mut m = lock(&r.marks);
        for (b, _) in &taken {
            m.taken.remove(b);
        }
        match result {
            Ok(()) => {
                m.recent.extend(taken.iter().map(|(b, _)| *b));
                Ok(report)
            }
            Err(e) => {
                // Put the marks back: the next refresh tries again.
                for (b, clear) in taken {
                    *m.dirty.entry(b).or_insert(false) |= clear;
                }
                Err(e)
            }
        }
    }

    /// Recomputes `buckets` (sorted), in runs of adjacent buckets, each one scan of the source.
    fn recompute(&self, r: &Rollup, buckets: &[(i64, bool)], report: &mut RollupReport) -> Result<()> {
        let rule = &r.rule;
        let Some(schema) = self.table_schema(&rule.database, &rule.table) else { return Ok(()) };
        let fields: Vec<(usize, &str, FieldType)> = schema
            .columns()
            .iter()
            .enumerate()
            .filter_map(|(id, c)| match c.kind {
                ColumnKind::Field(t @ (FieldType::F64 | FieldType::I64 | FieldType::U64)) => {
                    Some((id, c.name.as_str(), t))
                }
                _ => None,
            })
            .collect();
        // A tag named like a rollup column would put a tag and a field of one name in a row.
        let outputs: BTreeSet<String> = fields
            .iter()
            .flat_map(|(_, f, _)| AGGREGATES.iter().map(move |a| column(f, a)))
            .chain([ROWS_COLUMN.to_string()])
            .collect();
        if let Some(c) = schema.columns().iter().find(|c| c.kind == ColumnKind::Tag && outputs.contains(&c.name)) {
            return Err(Error::InvalidInput(format!(
                "rollup of {}.{}: tag `{}` has the name of a rollup column; rename the tag or drop the rule",
                rule.database, rule.table, c.name
            )));
        }
        let mut i = 0;
        while i < buckets.len() {
            let mut j = i + 1;
            while j < buckets.len() && buckets[j].0 == buckets[j - 1].0.saturating_add(r.stride) && j - i < 1024 {
                j += 1;
            }
            let (start, end) = (buckets[i].0, buckets[j - 1].0.saturating_add(r.stride));
            // A delete cut a bucket of the run: clear the run (every bucket of it is
            // rewritten below, queries wait for it), with one tombstone.
            if buckets[i..j].iter().any(|(_, clear)| *clear)
                && self.table_schema(&rule.database, &rule.target).is_some()
            {
                let _ = self.delete(&rule.database, &DeleteRequest::new(&rule.target).time_range(start, end))?;
            }
            let mut out = WriteBatch::new(&rule.target);
            let mut stream = self.scan(&ScanRequest::new(&rule.database, &rule.table).time_range(start, end))?;
            while let Some((key, data)) = stream.next_series()? {
                aggregate(&key, &data, &fields, r.stride, &mut out);
                if out.len() >= BATCH_ROWS {
                    report.rows += self.write_rollup(rule, &out)?;
                    out = WriteBatch::new(&rule.target);
                }
            }
            if !out.is_empty() {
                report.rows += self.write_rollup(rule, &out)?;
            }
            report.buckets += j - i;
            i = j;
        }
        Ok(())
    }
}

impl crate::db::Inner {
    /// Writes recomputed rows; a refused row (the target table was written
    /// to by hand with other types) fails the refresh, which is retried.
    fn write_rollup(&self, rule: &RollupRule, rows: &WriteBatch) -> Result<usize> {
        let outcome = self.write(&rule.database, rows)?;
        match outcome.rejected.first() {
            None => Ok(outcome.rows_written),
            Some(e) => Err(Error::InvalidInput(format!(
                "rollup of {}.{} into {}: {}",
                rule.database, rule.table, rule.target, e.message
            ))),
        }
    }
}

/// `(count, min, max, sum, last)` of the valid values of rows `lo..hi`, in one pass.
fn summarize<T: Copy>(
    v: &[T],
    valid: &[bool],
    lo: usize,
    hi: usize,
    less: impl Fn(&T, &T) -> bool,
    add: impl Fn(T, T) -> T,
) -> (usize, Option<(T, T, T, T)>) {
    let mut count = 0;
    let mut acc: Option<(T, T, T, T)> = None;
    for i in (lo..hi).filter(|i| valid.get(*i).copied().unwrap_or(false)) {
        let Some(&x) = v.get(i) else { continue };
        count += 1;
        acc = Some(match acc {
            None => (x, x, x, x),
            Some((min, max, sum, _)) => {
                (if less(&x, &min) { x } else { min }, if less(&max, &x) { x } else { max }, add(sum, x), x)
            }
        });
    }
    (count, acc)
}

/// Sets a field's rollup columns: `count` always, the others when there was a value.
fn put<'a, T: Into<crate::FieldValue>>(
    row: crate::RowWriter<'a>,
    name: &str,
    (count, acc): (usize, Option<(T, T, T, T)>),
) -> crate::RowWriter<'a> {
    let row = row.field(&column(name, "count"), count as i64);
    match acc {
        Some((min, max, sum, last)) => row
            .field(&column(name, "min"), min)
            .field(&column(name, "max"), max)
            .field(&column(name, "sum"), sum)
            .field(&column(name, "last"), last),
        None => row,
    }
}

/// Appends one target row per bucket of a series' rows (sorted by time).
fn aggregate(
    key: &SeriesKey,
    data: &SeriesData,
    fields: &[(usize, &str, FieldType)],
    stride: i64,
    out: &mut WriteBatch,
) {
    let times = &data.times;
    let mut lo = 0;
    while lo < times.len() {
        let b = bucket(times[lo], stride);
        let end = b.saturating_add(stride);
        let hi = lo + times[lo..].partition_point(|t| *t < end);
        let mut row = out.row(b);
        for (k, v) in key.tags() {
            row = row.tag(k, v.as_str());
        }
        row = row.field(ROWS_COLUMN, (hi - lo) as i64);
        for (id, name, _) in fields {
            let Some(col) = data.columns.get(*id).and_then(Option::as_ref) else {
                row = row.field(&column(name, "count"), 0i64);
                continue;
            };
            let valid = &col.valid;
            row = match &col.values {
                Values::F64(v) => {
                    put(row, name, summarize(v, valid, lo, hi, |a, b| a.total_cmp(b).is_lt(), |a, b| a + b))
                }
                Values::I64(v) => put(row, name, summarize(v, valid, lo, hi, |a, b| a < b, i64::wrapping_add)),
                Values::U64(v) => put(row, name, summarize(v, valid, lo, hi, |a, b| a < b, u64::wrapping_add)),
                Values::Bool(_) | Values::Str(_) => row,
            };
        }
        lo = hi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lasting_failure_is_logged_once_a_minute_not_every_second() {
        let mut f = Failing::default();
        f.record(Some("tag `rows` collides".into()));
        for _ in 0..5 {
            f.record(Some("tag `rows` collides".into()));
        }
        assert_eq!(f.current.as_ref().map(|c| c.2), Some(5), "repeats are counted, not logged");
        f.record(Some("disk full".into()));
        assert_eq!(f.logged_error(), Some("disk full"));
        assert_eq!(f.current.as_ref().map(|c| c.2), Some(0), "a new error is logged at once");
        if let Some(c) = f.current.as_mut() {
            c.1 = c.1.checked_sub(FAILURE_LOG_EVERY).unwrap_or(c.1);
        }
        f.record(Some("disk full".into()));
        assert_eq!(f.current.as_ref().map(|c| c.2), Some(0), "a minute on, the same error is logged again");
        f.record(None);
        assert_eq!(f.logged_error(), None);
    }

    #[test]
    fn names() {
        assert_eq!(interval_name(Duration::from_secs(3600)), "1h");
        assert_eq!(interval_name(Duration::from_secs(60)), "1m");
        assert_eq!(interval_name(Duration::from_secs(86_400 * 7)), "7d");
        assert_eq!(interval_name(Duration::from_secs(90)), "90s");
        assert_eq!(RollupRule::new("fleet", "readings", Duration::from_secs(3600)).target, "readings_1h");
        assert_eq!(bucket(-1, 10), -10);
        assert_eq!(bucket(19, 10), 10);
    }

    #[test]
    fn marks_round_trip_and_damage_is_refused() {
        let rule = RollupRule::new("fleet", "readings", Duration::from_secs(3600));
        let r = Rollup { stride: rule.stride(), rule, marks: Mutex::default(), busy: Mutex::new(()) };
        let mut m = Marks::default();
        m.dirty.insert(3600, false);
        m.dirty.insert(-7200, true);
        m.taken.insert(7200, true);
        m.recent.insert(0);
        m.deletes.push(DeleteMark {
            tags: vec![("name".into(), vec!["a".into(), "b".into()])],
            start: i64::MIN,
            end: 5,
        });
        m.backfill = Some(false);
        let bytes = encode(&r, &m);
        let (stride, table, back) = decode(Path::new("x"), &bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((stride, table.as_str()), (3_600_000_000_000, "readings"));
        assert_eq!(back.dirty, BTreeMap::from([(-7200, true), (0, false), (3600, false), (7200, true)]));
        assert_eq!(back.deletes, m.deletes);
        assert_eq!(back.backfill, Some(false));
        for cut in 0..bytes.len() {
            assert!(decode(Path::new("x"), &bytes[..cut]).is_err(), "truncated at {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(decode(Path::new("x"), &b).is_err(), "flipped byte {i}");
        }
        assert_eq!(file_name("fleet", "a/b c_1h"), "fleet.a%2Fb%20c_1h");
    }

    #[test]
    fn rules_are_checked() {
        let h = Duration::from_secs(3600);
        assert!(Rollups::new(&[RollupRule::new("d", "t", Duration::from_millis(1500))]).is_err());
        assert!(Rollups::new(&[RollupRule::new("d", "t", h).with_target("t")]).is_err());
        let chained = [RollupRule::new("d", "t", h), RollupRule::new("d", "t_1h", Duration::from_secs(86_400))];
        assert!(Rollups::new(&chained).is_err());
        assert!(Rollups::new(&[RollupRule::new("d", "t", h), RollupRule::new("d", "u", h)]).is_ok());
    }
}
