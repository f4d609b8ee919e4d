//! Series keys and per-series column data.

use crate::batch::Column;

/// The identity of a series within a table: its tags, sorted by tag name.
/// Rows without tags belong to the series with the empty key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SeriesKey(pub(crate) Vec<(String, String)>);

impl SeriesKey {
    /// Builds a key from `(tag, value)` pairs in any order.
    pub fn new(mut tags: Vec<(String, String)>) -> Self {
        tags.sort();
        tags.dedup_by(|a, b| a.0 == b.0);
        SeriesKey(tags)
    }

    /// The tags, sorted by name.
    pub fn tags(&self) -> &[(String, String)] {
        &self.0
    }

    /// A hash that is the same in every process and version (FNV-1a over the tags).
    pub(crate) fn stable_hash(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for (k, v) in &self.0 {
            for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }

    /// The value of a tag, if the series has it.
    pub fn get(&self, tag: &str) -> Option<&str> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(tag)).ok().and_then(|i| self.0.get(i)).map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Display for SeriesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// Rows of one series: timestamps and field columns indexed by table column
/// id (`None` where the series has no values of that column).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct SeriesData {
    pub(crate) times: Vec<i64>,
    pub(crate) columns: Vec<Option<Column>>,
}

impl SeriesData {
    pub(crate) fn len(&self) -> usize {
        self.times.len()
    }

    /// True if times are strictly increasing (sorted, no duplicates).
    pub(crate) fn is_strictly_sorted(&self) -> bool {
        self.times.windows(2).all(|w| w[0] < w[1])
    }
}

/// Merges rows of one series from several sources into time order with
/// duplicates resolved. Sources are given oldest first; for rows with the
/// same timestamp, each column takes the value of the newest source (and
/// within a source, the latest row) that has a non-null value there: the
/// last write wins, column by column, as in InfluxDB.
pub(crate) fn merge(mut sources: Vec<SeriesData>) -> SeriesData {
    sources.retain(|s| !s.times.is_empty());
    let width = sources.iter().map(|s| s.columns.len()).max().unwrap_or(0);
    if sources.len() == 1 && sources[0].is_strictly_sorted() {
        let mut only = sources.pop().unwrap_or_default();
        only.columns.resize(width, None);
        let n = only.times.len();
        for c in only.columns.iter_mut().flatten() {
            c.pad_to(n);
        }
        return only;
    }
    // (time, source, row): sorting by all three keeps arrival order among duplicates.
    let mut idx: Vec<(i64, u32, u32)> = Vec::with_capacity(sources.iter().map(SeriesData::len).sum());
    for (s, src) in sources.iter().enumerate() {
        idx.extend(src.times.iter().enumerate().map(|(r, t)| (*t, s as u32, r as u32)));
    }
    idx.sort_unstable();
    // Group boundaries: runs of equal time.
    let mut groups: Vec<(usize, usize)> = Vec::with_capacity(idx.len());
    let mut start = 0;
    for i in 1..=idx.len() {
        if i == idx.len() || idx[i].0 != idx[start].0 {
            groups.push((start, i));
            start = i;
        }
    }
    let times: Vec<i64> = groups.iter().map(|(s, _)| idx[*s].0).collect();
    let mut columns: Vec<Option<Column>> = vec![None; width];
    for (c, slot) in columns.iter_mut().enumerate() {
        let Some(t) =
            sources.iter().find_map(|s| s.columns.get(c).and_then(Option::as_ref)).map(|col| col.values.field_type())
        else {
            continue;
        };
        let mut out = Column::with_capacity(t, times.len());
        for &(gs, ge) in &groups {
            let winner = idx[gs..ge].iter().rev().find_map(|&(_, s, r)| {
                let col = sources.get(s as usize)?.columns.get(c)?.as_ref()?;
                col.is_valid(r as usize).then_some((col, r as usize))
            });
            match winner {
                Some((col, r)) => out.push_from(col, r),
                None => out.push_null(),
            }
        }
        *slot = Some(out);
    }
    SeriesData { times, columns }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Values;

    fn src(times: Vec<i64>, vals: Vec<Option<f64>>) -> SeriesData {
        let valid = vals.iter().map(Option::is_some).collect();
        let values = Values::F64(vals.iter().map(|v| v.unwrap_or(0.0)).collect());
        SeriesData { times, columns: vec![Some(Column { values, valid })] }
    }

    #[test]
    fn merge_sorts_and_last_write_wins_per_column() {
        let a = src(vec![3, 1, 2, 1], vec![Some(3.0), Some(1.0), Some(2.0), Some(1.5)]);
        let b = src(vec![2, 4], vec![None, Some(4.0)]);
        let m = merge(vec![a, b]);
        assert_eq!(m.times, vec![1, 2, 3, 4]);
        let c = m.columns[0].as_ref().unwrap();
        assert_eq!(c.values, Values::F64(vec![1.5, 2.0, 3.0, 4.0]));
        assert_eq!(c.valid, vec![true; 4]);
    }
}
