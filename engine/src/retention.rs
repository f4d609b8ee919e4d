//! Retention: how long rows are kept, per database with optional per-table
//! overrides.
//!
//! Retention is measured against the wall clock, never against the newest
//! row, so a row dated in the future evicts nothing. A row is expired when
//! its time is before `now − keep`. Expired rows
//!
//! - are hidden from every scan at once (the scan's time range starts at the
//!   cutoff);
//! - are refused on write, like any rejected row, with an error naming the
//!   cutoff;
//! - are not written again by a flush or compaction;
//! - leave the disk when every row of a segment file has expired: the file
//!   and its manifest entry are dropped together, so the manifest stays small
//!   however many retention cycles run.

#[cfg(feature = "tiering")]
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A retention rule, as kept in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionRule {
    /// Database.
    pub database: String,
    /// Table; `None` = every table of the database without a rule of its own.
    #[serde(default)]
    pub table: Option<String>,
    /// How long rows are kept, in seconds.
    pub keep_secs: u64,
}

impl RetentionRule {
    /// How long rows are kept.
    pub fn keep(&self) -> Duration {
        Duration::from_secs(self.keep_secs)
    }

    /// `keep` written back as the shortest exact duration (`"30d"`, `"36h"`).
    pub fn keep_text(&self) -> String {
        format_duration(self.keep())
    }
}

/// The rule that applies to a table: its own, else its database's.
pub(crate) fn rule_for<'a>(rules: &'a [RetentionRule], database: &str, table: &str) -> Option<&'a RetentionRule> {
    rules
        .iter()
        .find(|r| r.database == database && r.table.as_deref() == Some(table))
        .or_else(|| rules.iter().find(|r| r.database == database && r.table.is_none()))
}

/// The oldest time kept in a table (rows before it are expired), given the
/// wall clock `now` in nanoseconds; `i64::MIN` when nothing expires.
pub(crate) fn cutoff(rules: &[RetentionRule], database: &str, table: &str, now: i64) -> i64 {
    match rule_for(rules, database, table) {
        Some(r) => now.saturating_sub(i64::try_from(r.keep().as_nanos()).unwrap_or(i64::MAX)),
        None => i64::MIN,
    }
}

/// Parses a duration such as `30d`, `12h`, `90m`, `1w`, `3600s` or
/// `1d12h` (units s, m, h, d, w). At least one second.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let bad = |why: &str| {
        Error::InvalidInput(format!(
            "invalid duration {text:?}: {why}; write a number and a unit (s, m, h, d, w), e.g. \"30d\" or \"12h\""
        ))
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(bad("it is empty"));
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let (num, after) = rest.split_at(digits);
        let n: u64 = num.parse().map_err(|_| bad("the number is too large"))?;
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, next) = after.split_at(unit_len);
        let secs = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            "" => return Err(bad("a number has no unit")),
            _ => return Err(bad(&format!("unknown unit {unit:?}"))),
        };
        total = n.checked_mul(secs).and_then(|x| total.checked_add(x)).ok_or_else(|| bad("it is too long"))?;
        rest = next.trim_start();
    }
    if total == 0 {
        return Err(bad("it must be at least one second"));
    }
    // Beyond ~292 years the cutoff would not fit in nanoseconds.
    if total > 9_000_000_000 {
        return Err(bad("it is too long"));
    }
    Ok(Duration::from_secs(total))
}

/// Writes a duration with the largest exact unit of d, h, m, s (`"30d"`, `"90m"`).
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if s > 0 && s.is_multiple_of(len) {
            return format!("{}{unit}", s / len);
        }
    }
    format!("{s}s")
}

impl crate::db::Inner {
    /// Drops every segment file whose rows have all expired: out of the
    /// manifest (stored atomically) and the scan state, then off the disk
    /// once no scan holds it. Returns how many files went.
    pub(crate) fn enforce_retention(&self) -> Result<usize> {
        use crate::db::{lock, read, write};
        let rules = read(&self.retention).clone();
        if rules.is_empty() {
            return Ok(0);
        }
        let _one_job = lock(&self.compaction_lock);
        let mut manifest = lock(&self.manifest);
        let now = crate::delete::now_nanos();
        let mut next = manifest.clone();
        let mut dropped: Vec<(String, String, u64)> = Vec::new();
        let mut cold_dropped: Vec<(String, String, crate::manifest::ColdEntry)> = Vec::new();
        #[cfg(feature = "tiering")]
        let mut cold_gone: Vec<Arc<crate::tiering::ColdHandle>> = Vec::new();
        for (db, d) in next.databases.iter_mut() {
            for (table, t) in d.tables.iter_mut() {
                let cut = cutoff(&rules, db, table, now);
                t.segments.retain(|s| {
                    let expired = s.max_time < cut;
                    if expired {
                        dropped.push((db.clone(), table.clone(), s.id));
                    }
                    !expired
                });
                t.cold.retain(|c| {
                    let expired = c.max_time < cut;
                    if expired {
                        cold_dropped.push((db.clone(), table.clone(), c.clone()));
                    }
                    !expired
                });
            }
        }
        if dropped.is_empty() && cold_dropped.is_empty() {
            return Ok(0);
        }
        let mut gone = Vec::with_capacity(dropped.len());
        {
            let mut state = write(&self.state);
            for (db, table, id) in &dropped {
                if let Some(list) = state.segments.get_mut(&(db.clone(), table.clone())) {
                    list.retain(|h| {
                        let hit = h.entry.id == *id;
                        if hit {
                            gone.push(h.clone());
                        }
                        !hit
                    });
                }
            }
            state.segments.retain(|_, list| !list.is_empty());
            #[cfg(feature = "tiering")]
            for (db, table, c) in &cold_dropped {
                if let Some(list) = state.cold.get_mut(&(db.clone(), table.clone())) {
                    list.retain(|h| {
                        let hit = h.entry.id == c.id;
                        if hit {
                            cold_gone.push(h.clone());
                        }
                        !hit
                    });
                }
            }
            self.settle_tombstones(&mut next, &mut state);
        }
        if let Err(e) = next.store(self.backend.as_ref(), &self.dir) {
            self.poison(format!("storing the manifest after a retention drop failed: {e}"));
            return Err(e);
        }
        *manifest = next;
        drop(manifest);
        crate::failpoint::hit("retention.manifest_swapped");
        // Values whose files are gone leave the last-value cache too.
        let tables: std::collections::BTreeSet<(&String, &String)> =
            dropped.iter().map(|(db, t, _)| (db, t)).chain(cold_dropped.iter().map(|(db, t, _)| (db, t))).collect();
        for (db, table) in tables {
            self.last_values.expire(db, table, cutoff(&rules, db, table, now));
        }
        for h in &gone {
            h.reader.mark_obsolete();
        }
        // Their objects go once no running scan holds them.
        #[cfg(feature = "tiering")]
        if let Some(tier) = &self.tier {
            for h in &cold_gone {
                h.retire(tier, &self.cold_dir);
            }
        }
        drop(cold_dropped);
        let n = gone.len();
        drop(gone);
        self.counters.retention_files_dropped.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(files = n, "retention dropped expired segment files");
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        assert_eq!(parse_duration("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_duration("1d12h").unwrap(), Duration::from_secs(36 * 3600));
        assert_eq!(parse_duration(" 90m ").unwrap(), Duration::from_secs(5400));
        assert_eq!(format_duration(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(format_duration(Duration::from_secs(14 * 86_400)), "14d");
        assert_eq!(format_duration(Duration::from_secs(36 * 3600)), "36h");
        assert_eq!(format_duration(Duration::from_secs(61)), "61s");
        for bad in ["", "30", "d", "30x", "0s", "99999999999999999999d", "-1d"] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains("invalid duration"), "{bad}: {e}");
        }
    }

    #[test]
    fn table_rule_overrides_database_rule() {
        let rules = vec![
            RetentionRule { database: "db".into(), table: None, keep_secs: 100 },
            RetentionRule { database: "db".into(), table: Some("t".into()), keep_secs: 10 },
        ];
        let now = 1_000_000_000_000;
        assert_eq!(cutoff(&rules, "db", "t", now), now - 10_000_000_000);
        assert_eq!(cutoff(&rules, "db", "u", now), now - 100_000_000_000);
        assert_eq!(cutoff(&rules, "other", "t", now), i64::MIN);
    }
}
