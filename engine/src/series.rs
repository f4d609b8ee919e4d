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

    /// Gives the series `width` columns, each as long as its times.
    fn pad_to_width(&mut self, width: usize) {
        self.columns.resize(width, None);
        let n = self.times.len();
        for c in self.columns.iter_mut().flatten() {
            c.pad_to(n);
        }
    }

    /// Rows `idx` (ascending), as a series of their own.
    pub(crate) fn take(&self, idx: &[usize]) -> SeriesData {
        SeriesData {
            times: idx.iter().map(|&i| self.times.get(i).copied().unwrap_or_default()).collect(),
            columns: self
                .columns
                .iter()
                .map(|c| {
                    c.as_ref().map(|c| {
                        let mut out = Column::with_capacity(c.values.field_type(), idx.len());
                        out.extend_take(c, idx);
                        out
                    })
                })
                .collect(),
        }
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
///
/// Sources that are already strictly sorted (every segment, most buffers)
/// are merged run by run: the output is a sequence of ranges copied whole
/// from one source, with single-row groups only where timestamps collide.
pub(crate) fn merge(mut sources: Vec<SeriesData>) -> SeriesData {
    sources.retain(|s| !s.times.is_empty());
    let width = sources.iter().map(|s| s.columns.len()).max().unwrap_or(0);
    for s in sources.iter_mut() {
        if !s.is_strictly_sorted() {
            *s = merge_unsorted(vec![std::mem::take(s)], width);
        }
    }
    if sources.len() <= 1 {
        let mut only = sources.pop().unwrap_or_default();
        only.pad_to_width(width);
        return only;
    }
    let (steps, dups) = plan_sorted(&sources);
    let total = steps.iter().map(|s| s.len()).sum();
    let mut times = Vec::with_capacity(total);
    for step in &steps {
        match *step {
            Step::Run { src, lo, hi } => times.extend_from_slice(
                sources.get(src as usize).and_then(|s| s.times.get(lo as usize..hi as usize)).unwrap_or_default(),
            ),
            Step::Dup { at, .. } => times.push(dups.get(at as usize).map_or(0, |d| d.0)),
        }
    }
    let mut columns: Vec<Option<Column>> = vec![None; width];
    for (c, slot) in columns.iter_mut().enumerate() {
        let col_of = |s: u32| sources.get(s as usize).and_then(|s| s.columns.get(c)).and_then(Option::as_ref);
        let Some(t) = (0..sources.len() as u32).find_map(col_of).map(|col| col.values.field_type()) else {
            continue;
        };
        let mut out = Column::with_capacity(t, total);
        for step in &steps {
            match *step {
                Step::Run { src, lo, hi } => match col_of(src) {
                    Some(col) => out.extend_range(col, lo as usize, hi as usize),
                    None => out.extend_nulls((hi - lo) as usize),
                },
                Step::Dup { at, n } => {
                    let group = dups.get(at as usize..(at + n) as usize).unwrap_or_default();
                    let winner = group.iter().rev().find_map(|&(_, s, r)| {
                        let col = col_of(s)?;
                        col.is_valid(r as usize).then_some((col, r as usize))
                    });
                    match winner {
                        Some((col, r)) => out.push_from(col, r),
                        None => out.push_null(),
                    }
                }
            }
        }
        *slot = Some(out);
    }
    SeriesData { times, columns }
}

/// The rows of one series from several sources (oldest first, as for
/// [`merge`]), as non-empty pieces to be read one after another: the sources
/// themselves, reordered by time, when each is strictly sorted and none
/// overlaps another in time (a series spread over time partitions), so no row
/// is copied; otherwise the one [`merge`] of them all.
pub(crate) fn in_order(mut sources: Vec<SeriesData>) -> Vec<SeriesData> {
    sources.retain(|s| !s.times.is_empty());
    if sources.len() > 1 && sources.iter().all(SeriesData::is_strictly_sorted) {
        let mut order: Vec<usize> = (0..sources.len()).collect();
        order.sort_by_key(|&i| sources.get(i).and_then(|s| s.times.first().copied()));
        let disjoint = order.windows(2).all(|w| match (sources.get(w[0]), sources.get(w[1])) {
            (Some(a), Some(b)) => a.times.last() < b.times.first(),
            _ => false,
        });
        if disjoint {
            let width = sources.iter().map(|s| s.columns.len()).max().unwrap_or(0);
            // Apart in time, so no two rows collide and the order of age no longer matters.
            sources.sort_by_key(|s| s.times.first().copied());
            for s in &mut sources {
                s.pad_to_width(width);
            }
            return sources;
        }
    }
    let merged = merge(sources);
    if merged.times.is_empty() { Vec::new() } else { vec![merged] }
}

/// One piece of a merge of strictly sorted sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Rows `lo..hi` of source `src`, none of whose times occur elsewhere.
    Run { src: u32, lo: u32, hi: u32 },
    /// One output row whose time occurs in `n` sources: `dups[at..at + n]`, oldest source first.
    Dup { at: u32, n: u32 },
}

impl Step {
    fn len(&self) -> usize {
        match *self {
            Step::Run { lo, hi, .. } => (hi - lo) as usize,
            Step::Dup { .. } => 1,
        }
    }
}

/// The steps of a k-way merge of strictly sorted sources, and the
/// `(time, source, row)` entries of colliding rows.
fn plan_sorted(sources: &[SeriesData]) -> (Vec<Step>, Vec<(i64, u32, u32)>) {
    let mut pos = vec![0usize; sources.len()];
    let head = |pos: &[usize], s: usize| sources.get(s).and_then(|src| src.times.get(pos.get(s).copied()?)).copied();
    let mut steps = Vec::new();
    let mut dups = Vec::new();
    loop {
        // The smallest head, how many sources share it, and the next larger head.
        let mut min: Option<(i64, usize)> = None;
        let mut ties = 0;
        let mut second = i64::MAX;
        for s in 0..sources.len() {
            let Some(t) = head(&pos, s) else { continue };
            match min {
                None => {
                    min = Some((t, s));
                    ties = 1;
                }
                Some((m, _)) if t < m => {
                    second = m;
                    min = Some((t, s));
                    ties = 1;
                }
                Some((m, _)) if t == m => ties += 1,
                Some(_) => second = second.min(t),
            }
        }
        let Some((t, s)) = min else { break };
        if ties == 1 {
            let times = sources.get(s).map_or(&[][..], |src| src.times.as_slice());
            let lo = pos.get(s).copied().unwrap_or(0);
            let rest = times.get(lo..).unwrap_or_default();
            let hi = lo + rest.partition_point(|x| *x < second);
            steps.push(Step::Run { src: s as u32, lo: lo as u32, hi: hi as u32 });
            if let Some(p) = pos.get_mut(s) {
                *p = hi;
            }
        } else {
            let at = dups.len() as u32;
            for s in 0..sources.len() {
                if head(&pos, s) == Some(t) {
                    dups.push((t, s as u32, pos.get(s).copied().unwrap_or(0) as u32));
                    if let Some(p) = pos.get_mut(s) {
                        *p += 1;
                    }
                }
            }
            steps.push(Step::Dup { at, n: dups.len() as u32 - at });
        }
    }
    (steps, dups)
}

/// The general merge: sorts `(time, source, row)` of every row, for sources
/// that may be unsorted or hold duplicate times themselves.
fn merge_unsorted(sources: Vec<SeriesData>, width: usize) -> SeriesData {
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

    fn arb_source(sorted: bool) -> impl proptest::strategy::Strategy<Value = SeriesData> {
        use proptest::prelude::*;
        let row = (0i64..40, proptest::option::of(-5i64..5), proptest::option::of(any::<bool>()));
        proptest::collection::vec(row, 0..30).prop_map(move |mut rows| {
            if sorted {
                rows.sort_by_key(|r| r.0);
                rows.dedup_by_key(|r| r.0);
            }
            let times = rows.iter().map(|r| r.0).collect();
            let a = Column {
                values: Values::I64(rows.iter().map(|r| r.1.unwrap_or(0)).collect()),
                valid: rows.iter().map(|r| r.1.is_some()).collect(),
            };
            let b = Column {
                values: Values::Bool(rows.iter().map(|r| r.2.unwrap_or(false)).collect()),
                valid: rows.iter().map(|r| r.2.is_some()).collect(),
            };
            // Some sources lack the second column, as old segments do.
            let columns = if rows.len() % 3 == 0 { vec![Some(a)] } else { vec![Some(a), Some(b)] };
            SeriesData { times, columns }
        })
    }

    proptest::proptest! {
        /// The run-by-run merge of sorted sources gives exactly what sorting every row gives.
        #[test]
        fn run_merge_equals_sorting_every_row(
            sorted in proptest::collection::vec(arb_source(true), 0..5),
            unsorted in proptest::collection::vec(arb_source(false), 0..2),
        ) {
            let mut all = sorted;
            all.extend(unsorted);
            all.retain(|s| !s.times.is_empty());
            let width = all.iter().map(|s| s.columns.len()).max().unwrap_or(0);
            let mut expected = merge_unsorted(all.clone(), width);
            let n = expected.times.len();
            for c in expected.columns.iter_mut().flatten() {
                c.pad_to(n);
            }
            let got = merge(all);
            proptest::prop_assert_eq!(got.times, expected.times);
            proptest::prop_assert_eq!(got.columns, expected.columns);
        }

        /// Reading the pieces `in_order` gives, one after another, reads the
        /// merge; sources apart in time come back as they are, without a copy.
        #[test]
        fn pieces_in_order_read_as_the_merge(
            sorted in proptest::collection::vec(arb_source(true), 0..4),
            unsorted in proptest::collection::vec(arb_source(false), 0..2),
            shifts in proptest::collection::vec(0i64..4, 4),
            apart in proptest::prelude::any::<bool>(),
        ) {
            let mut all = sorted;
            if apart {
                for (s, k) in all.iter_mut().zip(&shifts) {
                    s.times.iter_mut().for_each(|t| *t += k * 100);
                }
            }
            let distinct = shifts.iter().collect::<std::collections::BTreeSet<_>>().len() == shifts.len();
            let separate = apart && distinct && unsorted.iter().all(|s| s.times.is_empty());
            let expected_pieces = all.iter().filter(|s| !s.times.is_empty()).count();
            all.extend(unsorted);
            let expected = merge(all.clone());
            let pieces = in_order(all);
            proptest::prop_assert!(pieces.iter().all(|p| !p.times.is_empty()));
            if separate && expected_pieces > 1 {
                proptest::prop_assert_eq!(pieces.len(), expected_pieces);
            }
            let times: Vec<i64> = pieces.iter().flat_map(|p| p.times.iter().copied()).collect();
            proptest::prop_assert_eq!(&times, &expected.times);
            for (c, want) in expected.columns.iter().enumerate() {
                let Some(want) = want else {
                    proptest::prop_assert!(pieces.iter().all(|p| p.columns.get(c).is_none_or(Option::is_none)));
                    continue;
                };
                let mut got = Column::new(want.values.field_type());
                for p in &pieces {
                    match p.columns.get(c).and_then(Option::as_ref) {
                        Some(col) => got.extend_range(col, 0, p.times.len()),
                        None => got.extend_nulls(p.times.len()),
                    }
                }
                // Values under nulls are unspecified; compare what is valid.
                proptest::prop_assert_eq!(&got.valid, &want.valid);
                for r in (0..times.len()).filter(|&r| want.is_valid(r)) {
                    let (mut a, mut b) = (Column::new(want.values.field_type()), Column::new(want.values.field_type()));
                    a.push_from(&got, r);
                    b.push_from(want, r);
                    proptest::prop_assert_eq!(a, b);
                }
            }
        }
    }
}
