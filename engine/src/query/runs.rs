//! Runs of equal keys: where adjacent rows of a batch's group-key columns
//! change value.
//!
//! Arrow's `partition` kernel answers the same question for any type. A
//! scan's key columns are tags (`Utf8View`, one view repeated over a series'
//! rows) and time buckets (fixed-width integers), and over runs of hundreds
//! of rows most adjacent pairs are equal; [`Changes`] compares those as
//! plain machine words, 64 pairs to a bitmask word, and reads string bytes
//! only where two views differ. Other types go to Arrow's kernel. Columns
//! can be added after its runs are read (the per-series tags
//! of `SeriesAggregateExec`) without comparing the first ones again.

use std::ops::Range;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    ArrowPrimitiveType, Date32Type, Date64Type, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type,
    UInt64Type,
};
use arrow_array::{Array, ArrayRef};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, TimeUnit};
use datafusion::arrow::compute::partition;
use datafusion::error::Result;

/// The ranges of rows over which every column of `columns` (all of one
/// length) keeps one value, nulls equal to each other: what Arrow's
/// `partition(columns)?.ranges()` returns.
#[cfg(test)]
fn key_runs(columns: &[ArrayRef]) -> Result<Vec<Range<usize>>> {
    let mut changes = Changes::new(columns.first().map_or(0, |c| c.len()));
    changes.mark(columns)?;
    Ok(changes.runs())
}

/// Where adjacent rows of a batch differ in any of the columns marked so
/// far: more columns can be marked after reading the runs, splitting them
/// further without comparing the first columns again.
pub(crate) struct Changes {
    rows: usize,
    /// Bit `i` set: row `i + 1` differs from row `i`.
    bits: Vec<u64>,
}

impl Changes {
    pub(crate) fn new(rows: usize) -> Self {
        Changes { rows, bits: vec![0u64; rows.saturating_sub(1).div_ceil(64)] }
    }

    /// Marks where each of `columns` (of `rows` rows each) changes value.
    pub(crate) fn mark(&mut self, columns: &[ArrayRef]) -> Result<()> {
        let pairs = self.rows.saturating_sub(1);
        for column in columns {
            if !mark_changes(column.as_ref(), pairs, &mut self.bits) {
                for range in partition(std::slice::from_ref(column))?.ranges().iter().skip(1) {
                    let i = range.start - 1;
                    if let Some(word) = self.bits.get_mut(i / 64) {
                        *word |= 1 << (i % 64);
                    }
                }
            }
        }
        Ok(())
    }

    /// The runs of rows between the changes marked so far.
    pub(crate) fn runs(&self) -> Vec<Range<usize>> {
        if self.rows == 0 {
            return Vec::new();
        }
        let mut runs = Vec::new();
        let mut start = 0;
        for (w, &word) in self.bits.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let end = w * 64 + bits.trailing_zeros() as usize + 1;
                runs.push(start..end);
                start = end;
                bits &= bits - 1;
            }
        }
        runs.push(start..self.rows);
        runs
    }
}

/// Sets the bit of every adjacent pair of `column` that differs; false if
/// the type has no fast path here.
fn mark_changes(column: &dyn Array, pairs: usize, changes: &mut [u64]) -> bool {
    match column.data_type() {
        DataType::Utf8View => {
            let strings = column.as_string_view();
            let mut differ = vec![0u64; changes.len()];
            words_differ(strings.views(), pairs, &mut differ);
            // Equal views are equal strings (same length, and the same inline
            // bytes or the same buffer and offset); views that differ may
            // still hold equal bytes: those few pairs are compared as strings.
            for (w, word) in differ.iter_mut().enumerate() {
                let mut bits = *word;
                while bits != 0 {
                    let k = bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    let i = w * 64 + k;
                    if strings.value(i) == strings.value(i + 1) {
                        *word &= !(1u64 << k);
                    }
                }
            }
            merge(changes, &differ, strings.nulls(), pairs);
            true
        }
        DataType::Int8 => primitive::<Int8Type>(column, pairs, changes),
        DataType::Int16 => primitive::<Int16Type>(column, pairs, changes),
        DataType::Int32 => primitive::<Int32Type>(column, pairs, changes),
        DataType::Int64 => primitive::<Int64Type>(column, pairs, changes),
        DataType::UInt8 => primitive::<UInt8Type>(column, pairs, changes),
        DataType::UInt16 => primitive::<UInt16Type>(column, pairs, changes),
        DataType::UInt32 => primitive::<UInt32Type>(column, pairs, changes),
        DataType::UInt64 => primitive::<UInt64Type>(column, pairs, changes),
        DataType::Date32 => primitive::<Date32Type>(column, pairs, changes),
        DataType::Date64 => primitive::<Date64Type>(column, pairs, changes),
        DataType::Timestamp(TimeUnit::Second, _) => primitive::<TimestampSecondType>(column, pairs, changes),
        DataType::Timestamp(TimeUnit::Millisecond, _) => primitive::<TimestampMillisecondType>(column, pairs, changes),
        DataType::Timestamp(TimeUnit::Microsecond, _) => primitive::<TimestampMicrosecondType>(column, pairs, changes),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => primitive::<TimestampNanosecondType>(column, pairs, changes),
        _ => false,
    }
}

/// Integers (and types stored as integers) compare exactly as machine words.
fn primitive<T: ArrowPrimitiveType>(column: &dyn Array, pairs: usize, changes: &mut [u64]) -> bool {
    let Some(values) = column.as_primitive_opt::<T>() else { return false };
    let mut differ = vec![0u64; changes.len()];
    words_differ(values.values(), pairs, &mut differ);
    merge(changes, &differ, column.nulls(), pairs);
    true
}

/// Bit `k` of word `w` of `out`: `values[i] != values[i + 1]` for `i = 64w + k < pairs`.
fn words_differ<T: PartialEq>(values: &[T], pairs: usize, out: &mut [u64]) {
    let (Some(a), Some(b)) = (values.get(..pairs), values.get(1..=pairs)) else { return };
    for ((word, a), b) in out.iter_mut().zip(a.chunks(64)).zip(b.chunks(64)) {
        let mut bits = 0u64;
        for (k, (x, y)) in a.iter().zip(b).enumerate() {
            bits |= u64::from(x != y) << k;
        }
        *word = bits;
    }
}

/// ORs into `changes` the pairs that differ, given the pairs whose values
/// differ: with nulls, a pair differs when exactly one side is null, or
/// neither is and the values differ (a null slot's value means nothing).
fn merge(changes: &mut [u64], values_differ: &[u64], nulls: Option<&NullBuffer>, pairs: usize) {
    let Some(nulls) = nulls.filter(|n| n.null_count() > 0) else {
        for (c, d) in changes.iter_mut().zip(values_differ) {
            *c |= d;
        }
        return;
    };
    let firsts = nulls.inner().slice(0, pairs);
    let seconds = nulls.inner().slice(1, pairs);
    let firsts = firsts.bit_chunks();
    let seconds = seconds.bit_chunks();
    for (((c, d), a), b) in changes.iter_mut().zip(values_differ).zip(firsts.iter_padded()).zip(seconds.iter_padded()) {
        *c |= (a ^ b) | (a & b & d); // past `pairs` both are padded with zeros
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{BooleanArray, Float64Array, Int64Array, StringArray, StringViewArray, TimestampNanosecondArray};
    use proptest::prelude::*;

    use super::*;

    fn strings() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            Just(Some(String::new())),
            Just(Some("a".to_string())),
            Just(Some("b".to_string())),
            Just(Some("truck-0000000001".to_string())),
            Just(Some("truck-0000000002".to_string())),
        ]
    }

    fn column(kind: u8, len: usize) -> BoxedStrategy<ArrayRef> {
        let optional = |s: BoxedStrategy<i64>| proptest::collection::vec(proptest::option::weighted(0.9, s), len);
        match kind {
            0 => optional((0i64..3).boxed()).prop_map(|v| Arc::new(Int64Array::from(v)) as ArrayRef).boxed(),
            1 => optional((0i64..2).boxed())
                .prop_map(|v| Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC")) as ArrayRef)
                .boxed(),
            2 => proptest::collection::vec(strings(), len)
                .prop_map(|v| Arc::new(StringViewArray::from_iter(v)) as ArrayRef)
                .boxed(),
            // Equal strings in separate buffers: views that differ for long equal values.
            3 => proptest::collection::vec(strings(), len)
                .prop_map(|v| {
                    let half = v.len() / 2;
                    let a = StringViewArray::from_iter(v.iter().take(half).cloned());
                    let b = StringViewArray::from_iter(v.iter().skip(half).cloned());
                    datafusion::arrow::compute::concat(&[&a, &b]).unwrap_or_else(|_| Arc::new(a))
                })
                .boxed(),
            4 => {
                proptest::collection::vec(proptest::option::of(prop_oneof![Just(0.0), Just(-0.0), Just(f64::NAN)]), len)
                    .prop_map(|v| Arc::new(Float64Array::from(v)) as ArrayRef)
                    .boxed()
            }
            5 => proptest::collection::vec(proptest::option::of(any::<bool>()), len)
                .prop_map(|v| Arc::new(BooleanArray::from(v)) as ArrayRef)
                .boxed(),
            _ => proptest::collection::vec(strings(), len)
                .prop_map(|v| Arc::new(StringArray::from_iter(v)) as ArrayRef)
                .boxed(),
        }
    }

    fn columns() -> impl Strategy<Value = (Vec<ArrayRef>, usize)> {
        (1usize..200, proptest::collection::vec(0u8..7, 1..4), 0usize..5).prop_flat_map(|(len, kinds, offset)| {
            let cols: Vec<BoxedStrategy<ArrayRef>> = kinds.iter().map(|k| column(*k, len + offset)).collect();
            (cols, Just(offset))
        })
    }

    proptest! {
        /// The same runs as Arrow's kernel, sliced arrays included, whether
        /// the columns are marked at once or the first one before the rest.
        #[test]
        fn runs_equal_arrows_partition((cols, offset) in columns()) {
            let cols: Vec<ArrayRef> = cols.iter().map(|c| c.slice(offset, c.len() - offset)).collect();
            let expected = partition(&cols).unwrap().ranges();
            prop_assert_eq!(key_runs(&cols).unwrap(), expected.clone());
            let (first, rest) = cols.split_at(1);
            let mut changes = Changes::new(cols[0].len());
            changes.mark(first).unwrap();
            prop_assert_eq!(changes.runs(), partition(first).unwrap().ranges());
            changes.mark(rest).unwrap();
            prop_assert_eq!(changes.runs(), expected);
        }
    }

    #[test]
    fn no_rows_no_runs() {
        let empty: ArrayRef = Arc::new(Int64Array::from(Vec::<i64>::new()));
        assert!(key_runs(&[empty]).unwrap().is_empty());
        assert!(key_runs(&[]).unwrap().is_empty());
    }
}
