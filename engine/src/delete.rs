//! Deletes by series and time range (e.g. every row of one device, for a
//! GDPR erasure request).
//!
//! A delete is a WAL record like a write, so it is acknowledged only once it
//! is durable and it takes its place in the order of writes: it removes the
//! rows logged before it and none logged after it. Applying it
//!
//! - removes the matching rows from the active write buffer at once;
//! - leaves a [`Tombstone`] that hides matching rows in every older source (a
//!   frozen buffer being flushed, a segment file whose WAL range ends before
//!   the delete) from every scan;
//! - is applied physically by every flush and compaction that writes those
//!   rows again; compaction rewrites each file a tombstone still applies to.
//!
//! A tombstone is *purged* when no file holds rows it applies to any more:
//! it then moves from the manifest's pending list to its delete log (the
//! last [`PURGED_LOG_LIMIT`] entries), the evidence an erasure request needs.

use serde::{Deserialize, Serialize};

use crate::scan::TagFilter;
use crate::segment::TimeRange;
use crate::series::SeriesKey;
use crate::{Error, Result};

/// How many purged deletes the manifest remembers.
pub(crate) const PURGED_LOG_LIMIT: usize = 1000;

/// What to delete: the rows of one table whose series match every tag
/// filter, within an optional time range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteRequest {
    /// Table name.
    pub table: String,
    /// Series must match every filter (`tag IN (values)`).
    pub tag_filters: Vec<TagFilter>,
    /// Inclusive start of the time range (ns); `None` = unbounded.
    pub start: Option<i64>,
    /// Exclusive end of the time range (ns); `None` = unbounded.
    pub end: Option<i64>,
}

impl DeleteRequest {
    /// Every row of `table` (narrow it with [`DeleteRequest::filter_tag`] and
    /// [`DeleteRequest::time_range`]).
    pub fn new(table: impl Into<String>) -> Self {
        DeleteRequest { table: table.into(), tag_filters: Vec::new(), start: None, end: None }
    }

    /// Adds a `tag IN (values)` condition.
    pub fn filter_tag(mut self, tag: impl Into<String>, values: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.tag_filters.push(TagFilter { tag: tag.into(), values: values.into_iter().map(Into::into).collect() });
        self
    }

    /// Restricts to `start <= time < end`.
    pub fn time_range(mut self, start: i64, end: i64) -> Self {
        self.start = Some(start);
        self.end = Some(end);
        self
    }

    pub(crate) fn validate(&self, database: &str) -> Result<()> {
        crate::schema::validate_database_name(database)?;
        crate::schema::validate_name("table", &self.table)?;
        for f in &self.tag_filters {
            if f.values.is_empty() {
                return Err(Error::InvalidInput(format!(
                    "delete from {database}.{}: the condition on tag `{}` lists no values",
                    self.table, f.tag
                )));
            }
        }
        if let (Some(s), Some(e)) = (self.start, self.end)
            && s >= e
        {
            return Err(Error::InvalidInput(format!(
                "delete from {database}.{}: the time range is empty (start {s} is not before end {e})",
                self.table
            )));
        }
        Ok(())
    }
}

/// What [`crate::Database::delete`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeleteOutcome {
    /// The delete's WAL sequence number.
    pub seq: u64,
    /// Rows that matched when the delete was made (counted by a scan just
    /// before it was logged; rows written concurrently may differ).
    pub rows_matched: u64,
}

/// A logged delete, as kept until it is purged and then in the delete log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// WAL sequence number: it removes rows logged before it.
    pub seq: u64,
    /// Database.
    pub database: String,
    /// Table.
    pub table: String,
    /// `(tag, values)`: a series matches if it has each tag with one of its values.
    pub tags: Vec<(String, Vec<String>)>,
    /// Inclusive start (ns), `i64::MIN` when unbounded.
    pub start: i64,
    /// Exclusive end (ns), `i64::MAX` when unbounded.
    pub end: i64,
    /// When the delete was requested (ns since the epoch, wall clock).
    pub requested_at: i64,
    /// Rows that matched when it was requested.
    #[serde(default)]
    pub rows_matched: u64,
    /// When its rows were gone from every file (ns since the epoch), once purged.
    #[serde(default)]
    pub purged_at: Option<i64>,
}

impl Tombstone {
    pub(crate) fn from_request(seq: u64, database: &str, req: &DeleteRequest, rows_matched: u64) -> Self {
        Tombstone {
            seq,
            database: database.to_string(),
            table: req.table.clone(),
            tags: req.tag_filters.iter().map(|f| (f.tag.clone(), f.values.clone())).collect(),
            start: req.start.unwrap_or(i64::MIN),
            end: req.end.unwrap_or(i64::MAX),
            requested_at: now_nanos(),
            rows_matched,
            purged_at: None,
        }
    }

    pub(crate) fn range(&self) -> TimeRange {
        TimeRange { start: self.start, end: self.end }
    }

    pub(crate) fn is_for(&self, database: &str, table: &str) -> bool {
        self.database == database && self.table == table
    }

    /// True if the series is one whose rows this delete removes.
    pub(crate) fn matches(&self, key: &SeriesKey) -> bool {
        self.tags.iter().all(|(tag, values)| key.get(tag).is_some_and(|v| values.iter().any(|x| x == v)))
    }

    /// True if it removes rows from a source holding writes up to `max_seq`,
    /// into which deletes up to `purged_seq` were already applied.
    pub(crate) fn applies_to(&self, max_seq: u64, purged_seq: u64) -> bool {
        self.seq > max_seq && self.seq > purged_seq
    }
}

/// The time ranges of a series' rows that `tombstones` remove from a source
/// holding writes up to `max_seq` (deletes up to `purged_seq` already applied).
pub(crate) fn hidden_ranges<'a>(
    tombstones: impl IntoIterator<Item = &'a Tombstone>,
    database: &str,
    table: &str,
    key: &SeriesKey,
    max_seq: u64,
    purged_seq: u64,
) -> Vec<TimeRange> {
    tombstones
        .into_iter()
        .filter(|t| t.applies_to(max_seq, purged_seq) && t.is_for(database, table) && t.matches(key))
        .map(Tombstone::range)
        .collect()
}

/// Keeps the rows of `data` outside every range of `hidden` (and at or after
/// `keep_from`, the retention cutoff), in place.
pub(crate) fn retain_rows(data: &mut crate::series::SeriesData, hidden: &[TimeRange], keep_from: i64) {
    let keep = |t: i64| t >= keep_from && !hidden.iter().any(|r| r.contains(t));
    if data.times.iter().all(|t| keep(*t)) {
        return;
    }
    let rows: Vec<usize> = (0..data.times.len()).filter(|&i| data.times.get(i).is_some_and(|t| keep(*t))).collect();
    data.times = rows.iter().filter_map(|&i| data.times.get(i).copied()).collect();
    for c in data.columns.iter_mut().flatten() {
        let mut out = crate::batch::Column::with_capacity(c.values.field_type(), rows.len());
        rows.iter().for_each(|&i| out.push_from(c, i));
        *c = out;
    }
}

/// Nanoseconds since the Unix epoch, wall clock.
pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Column, Values};
    use crate::series::SeriesData;

    fn key(dev: &str) -> SeriesKey {
        SeriesKey::new(vec![("device".into(), dev.into()), ("fleet".into(), "north".into())])
    }

    #[test]
    fn tombstones_match_series_and_order() {
        let req = DeleteRequest::new("t").filter_tag("device", ["a", "b"]).time_range(10, 20);
        let t = Tombstone::from_request(5, "db", &req, 0);
        assert!(t.matches(&key("a")) && t.matches(&key("b")) && !t.matches(&key("c")));
        assert!(t.applies_to(4, 0));
        assert!(!t.applies_to(5, 0), "rows logged after the delete stay");
        assert!(!t.applies_to(4, 5), "already purged from that file");
        let hidden = hidden_ranges([&t], "db", "t", &key("a"), 4, 0);
        assert_eq!(hidden.len(), 1);
        assert!(hidden_ranges([&t], "db", "other", &key("a"), 4, 0).is_empty());
    }

    #[test]
    fn retain_rows_drops_hidden_and_expired() {
        let mut d = SeriesData {
            times: vec![1, 10, 15, 20, 30],
            columns: vec![Some(Column { values: Values::I64(vec![1, 2, 3, 4, 5]), valid: vec![true; 5] }), None],
        };
        retain_rows(&mut d, &[TimeRange { start: 10, end: 20 }], 2);
        assert_eq!(d.times, vec![20, 30]);
        let Some(Some(Column { values: Values::I64(v), .. })) = d.columns.first() else { panic!() };
        assert_eq!(v, &vec![4, 5]);
    }

    #[test]
    fn bad_requests_are_named() {
        let e = DeleteRequest::new("t").time_range(5, 5).validate("db").unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
        let e = DeleteRequest::new("t").filter_tag("device", Vec::<String>::new()).validate("db").unwrap_err();
        assert!(e.to_string().contains("device"), "{e}");
    }
}
