//! Run-length codecs: `FloatRle` (codec id 8) for `f64`, `IntRle` (9) for
//! `i64`, `UintRle` (10) for `u64` and `BoolRle` (11) for `bool`.
//!
//! A constant chunk is one run, so these are also the constant codecs:
//! 1 000 copies of `72.41` take 10 bytes.
//!
//! # Byte layout
//!
//! An empty chunk (count 0) is zero bytes. Otherwise the chunk is a
//! sequence of runs, each `len` copies of one value, with `len` in
//! 1..=16384 and the lengths summing to exactly `count`:
//!
//! | codec      | one run |
//! |------------|---------|
//! | `FloatRle` | 8 bytes: the value's bits (`f64::to_bits`), `u64` little-endian; then `len - 1` as a LEB128 varint |
//! | `IntRle`   | `value - previous run's value` (wrapping; the first run's previous value is 0), zig-zag LEB128 varint; then `len - 1`, LEB128 varint |
//! | `UintRle`  | as `IntRle`, on the values' bits read as `i64` |
//! | `BoolRle`  | one LEB128 varint: `(len - 1) * 2 + value` (`value` 1 for `true`) |
//!
//! Floats compare by bit pattern, so NaN payloads and the sign of zero are
//! kept and a run of one NaN is a run. Neighbouring runs may hold the same
//! value; the encoder only writes that when a run is longer than 16384.
//!
//! # Why runs are capped at 16384
//!
//! So that memory stays proportional to the input: a chunk of `n` bytes
//! holds at most `n / 2 * 16384` values (`n / 9 * 16384` for floats), and
//! `len - 1` always fits a two-byte varint. The decoder walks the runs once
//! to check that their lengths add up to `count` and the chunk ends with the
//! last run, and only then allocates and fills, so a wrong count costs no
//! memory at all. A 64 Mi-value constant chunk still takes 4096 runs, well
//! under a bit a value.

use super::bits::{read_uvarint, unzigzag, write_uvarint, zigzag};
use super::pack::varint_len;
use super::{CodecError, CodecId};

/// Longest run one entry can hold.
pub(crate) const MAX_RUN: usize = 16384;

/// Splits `values` into runs of equal values (by `same`), none longer than
/// [`MAX_RUN`]; calls `emit(value, len)` for each and stops early when it
/// returns `false`.
#[inline(always)]
fn for_each_run<T: Copy>(values: &[T], same: impl Fn(T, T) -> bool, mut emit: impl FnMut(T, usize) -> bool) {
    let Some((&first, rest)) = values.split_first() else {
        return;
    };
    let mut current = first;
    let mut len = 1usize;
    for &v in rest {
        if same(v, current) && len < MAX_RUN {
            len += 1;
        } else {
            if !emit(current, len) {
                return;
            }
            current = v;
            len = 1;
        }
    }
    emit(current, len);
}

fn same_f64(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits()
}

fn same<T: PartialEq>(a: T, b: T) -> bool {
    a == b
}

/// Encodes `f64` values with `FloatRle` and appends them to `out`.
///
/// Byte layout: module docs of `codec/rle.rs`.
pub fn encode_f64_rle(values: &[f64], out: &mut Vec<u8>) {
    for_each_run(values, same_f64, |v, len| {
        out.extend_from_slice(&v.to_bits().to_le_bytes());
        write_uvarint(out, (len - 1) as u64);
        true
    });
}

/// Encoded size of [`encode_f64_rle`] on `values`, without writing it;
/// `None` as soon as it is known to exceed `cap`.
pub(crate) fn f64_rle_len(values: &[f64], cap: usize) -> Option<usize> {
    let mut bytes = 0;
    for_each_run(values, same_f64, |_, len| {
        bytes += 8 + varint_len((len - 1) as u64);
        bytes <= cap
    });
    (bytes <= cap).then_some(bytes)
}

/// Decodes `count` values written by [`encode_f64_rle`] from `data` (exactly
/// the encoded bytes) and appends them to `out`.
///
/// On error `out` is left unchanged, and nothing is allocated unless the
/// run lengths add up to `count`.
///
/// # Errors
///
/// [`CodecError`] when a run is truncated, empty or longer than 16384, the
/// runs hold more or fewer than `count` values, or bytes are left over.
pub fn decode_f64_rle(data: &[u8], count: usize, out: &mut Vec<f64>) -> Result<(), CodecError> {
    decode_runs(CodecId::FloatRle, data, count, out, read_f64_run, f64::from_bits)
}

fn read_f64_run(data: &[u8], pos: &mut usize, _prev: u64) -> Option<(u64, u64)> {
    let bits = data.get(*pos..).and_then(|rest| rest.first_chunk::<8>()).map(|b| u64::from_le_bytes(*b))?;
    let mut at = *pos + 8;
    let len = read_uvarint(data, &mut at)?;
    *pos = at;
    Some((bits, len))
}

/// Encodes `i64` values with `IntRle` and appends them to `out`.
///
/// Byte layout: module docs of `codec/rle.rs`.
pub fn encode_i64_rle(values: &[i64], out: &mut Vec<u8>) {
    encode_int_runs(values, |v| v as u64, out);
}

/// Encoded size of [`encode_i64_rle`] on `values`, without writing it;
/// `None` as soon as it is known to exceed `cap`.
pub(crate) fn i64_rle_len(values: &[i64], cap: usize) -> Option<usize> {
    int_runs_len(values, |v| v as u64, cap)
}

/// Decodes `count` values written by [`encode_i64_rle`] from `data` (exactly
/// the encoded bytes) and appends them to `out`.
///
/// On error `out` is left unchanged, and nothing is allocated unless the
/// run lengths add up to `count`.
///
/// # Errors
///
/// [`CodecError`] when a run is truncated, empty or longer than 16384, the
/// runs hold more or fewer than `count` values, or bytes are left over.
pub fn decode_i64_rle(data: &[u8], count: usize, out: &mut Vec<i64>) -> Result<(), CodecError> {
    decode_runs(CodecId::IntRle, data, count, out, read_int_run, |bits| bits as i64)
}

/// Encodes `u64` values with `UintRle` and appends them to `out`.
///
/// Byte layout: module docs of `codec/rle.rs`.
pub fn encode_u64_rle(values: &[u64], out: &mut Vec<u8>) {
    encode_int_runs(values, |v| v, out);
}

/// Encoded size of [`encode_u64_rle`] on `values`, without writing it;
/// `None` as soon as it is known to exceed `cap`.
pub(crate) fn u64_rle_len(values: &[u64], cap: usize) -> Option<usize> {
    int_runs_len(values, |v| v, cap)
}

/// Decodes `count` values written by [`encode_u64_rle`] from `data` (exactly
/// the encoded bytes) and appends them to `out`.
///
/// On error `out` is left unchanged, and nothing is allocated unless the
/// run lengths add up to `count`.
///
/// # Errors
///
/// [`CodecError`] when a run is truncated, empty or longer than 16384, the
/// runs hold more or fewer than `count` values, or bytes are left over.
pub fn decode_u64_rle(data: &[u8], count: usize, out: &mut Vec<u64>) -> Result<(), CodecError> {
    decode_runs(CodecId::UintRle, data, count, out, read_int_run, |bits| bits)
}

fn encode_int_runs<T: Copy + PartialEq>(values: &[T], to_bits: impl Fn(T) -> u64, out: &mut Vec<u8>) {
    let mut prev = 0u64;
    for_each_run(values, same, |v, len| {
        let bits = to_bits(v);
        write_uvarint(out, zigzag(bits.wrapping_sub(prev) as i64));
        write_uvarint(out, (len - 1) as u64);
        prev = bits;
        true
    });
}

fn int_runs_len<T: Copy + PartialEq>(values: &[T], to_bits: impl Fn(T) -> u64, cap: usize) -> Option<usize> {
    let mut prev = 0u64;
    let mut bytes = 0;
    for_each_run(values, same, |v, len| {
        let bits = to_bits(v);
        bytes += varint_len(zigzag(bits.wrapping_sub(prev) as i64)) + varint_len((len - 1) as u64);
        prev = bits;
        bytes <= cap
    });
    (bytes <= cap).then_some(bytes)
}

fn read_int_run(data: &[u8], pos: &mut usize, prev: u64) -> Option<(u64, u64)> {
    let mut at = *pos;
    let delta = read_uvarint(data, &mut at)?;
    let len = read_uvarint(data, &mut at)?;
    *pos = at;
    Some((prev.wrapping_add(unzigzag(delta) as u64), len))
}

/// Encodes booleans with `BoolRle` and appends them to `out`.
///
/// Byte layout: module docs of `codec/rle.rs`.
pub fn encode_bool_rle(values: &[bool], out: &mut Vec<u8>) {
    for_each_run(values, same, |v, len| {
        write_uvarint(out, (((len - 1) as u64) << 1) | u64::from(v));
        true
    });
}

/// Encoded size of [`encode_bool_rle`] on `values`, without writing it;
/// `None` as soon as it is known to exceed `cap`.
pub(crate) fn bool_rle_len(values: &[bool], cap: usize) -> Option<usize> {
    let mut bytes = 0;
    for_each_run(values, same, |_, len| {
        bytes += varint_len(((len - 1) as u64) << 1);
        bytes <= cap
    });
    (bytes <= cap).then_some(bytes)
}

/// Decodes `count` booleans written by [`encode_bool_rle`] from `data`
/// (exactly the encoded bytes) and appends them to `out`.
///
/// On error `out` is left unchanged, and nothing is allocated unless the
/// run lengths add up to `count`.
///
/// # Errors
///
/// [`CodecError`] when a run is truncated, longer than 16384, the runs
/// hold more or fewer than `count` values, or bytes are left over.
pub fn decode_bool_rle(data: &[u8], count: usize, out: &mut Vec<bool>) -> Result<(), CodecError> {
    decode_runs(CodecId::BoolRle, data, count, out, read_bool_run, |bits| bits != 0)
}

fn read_bool_run(data: &[u8], pos: &mut usize, _prev: u64) -> Option<(u64, u64)> {
    let entry = read_uvarint(data, pos)?;
    Some((entry & 1, entry >> 1))
}

/// Reads one run at `*pos` given the previous run's value bits: returns
/// the value bits and `len - 1`, or `None` when truncated or not a varint.
type ReadRun = fn(&[u8], &mut usize, u64) -> Option<(u64, u64)>;

/// Walks the runs of a chunk that must hold exactly `count` values, calling
/// `emit(value bits, len)` for each.
#[inline(always)]
fn walk_runs(
    id: CodecId,
    data: &[u8],
    count: usize,
    read_run: ReadRun,
    mut emit: impl FnMut(u64, usize),
) -> Result<(), CodecError> {
    let mut pos = 0;
    let mut total = 0usize;
    let mut prev = 0u64;
    while total < count {
        let at = pos;
        let Some((bits, len_minus_one)) = read_run(data, &mut pos, prev) else {
            return Err(CodecError::new(
                id,
                at,
                format!(
                    "truncated: {total} of {count} values decoded and the next run is cut off or not valid \
                     (the chunk has {} bytes)",
                    data.len()
                ),
            ));
        };
        let len = match usize::try_from(len_minus_one) {
            Ok(l) if l < MAX_RUN => l + 1,
            _ => {
                return Err(CodecError::new(
                    id,
                    at,
                    format!("run of {len_minus_one} + 1 values is longer than the limit {MAX_RUN}"),
                ));
            }
        };
        if len > count - total {
            return Err(CodecError::new(
                id,
                at,
                format!("run of {len} values after {total} overshoots the chunk's {count} values (count is wrong)"),
            ));
        }
        emit(bits, len);
        total += len;
        prev = bits;
    }
    if pos == data.len() {
        Ok(())
    } else {
        Err(CodecError::new(
            id,
            pos,
            format!(
                "{} trailing bytes after the last run (chunk length or value count is wrong)",
                data.len().saturating_sub(pos)
            ),
        ))
    }
}

/// Validates the runs against `count` first, then allocates and fills.
#[inline(always)]
fn decode_runs<T: Copy>(
    id: CodecId,
    data: &[u8],
    count: usize,
    out: &mut Vec<T>,
    read_run: ReadRun,
    from_bits: impl Fn(u64) -> T,
) -> Result<(), CodecError> {
    walk_runs(id, data, count, read_run, |_, _| {})?;
    out.try_reserve(count)
        .map_err(|e| CodecError::new(id, 0, format!("cannot allocate room for {count} values: {e}")))?;
    let start = out.len();
    let result = walk_runs(id, data, count, read_run, |bits, len| {
        out.extend(std::iter::repeat_n(from_bits(bits), len));
    });
    if result.is_err() {
        out.truncate(start);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip_f64(values: &[f64]) -> Vec<u8> {
        let mut buf = vec![0x55];
        encode_f64_rle(values, &mut buf);
        let data = &buf[1..];
        assert_eq!(Some(data.len()), f64_rle_len(values, usize::MAX));
        let mut out = vec![1.5];
        decode_f64_rle(data, values.len(), &mut out).unwrap();
        let bits: Vec<u64> = out[1..].iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, values.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        data.to_vec()
    }

    fn round_trip_i64(values: &[i64]) -> Vec<u8> {
        let mut data = Vec::new();
        encode_i64_rle(values, &mut data);
        assert_eq!(Some(data.len()), i64_rle_len(values, usize::MAX));
        let mut out = vec![3];
        decode_i64_rle(&data, values.len(), &mut out).unwrap();
        assert_eq!(&out[1..], values);
        data
    }

    fn round_trip_u64(values: &[u64]) -> Vec<u8> {
        let mut data = Vec::new();
        encode_u64_rle(values, &mut data);
        assert_eq!(Some(data.len()), u64_rle_len(values, usize::MAX));
        let mut out = Vec::new();
        decode_u64_rle(&data, values.len(), &mut out).unwrap();
        assert_eq!(out, values);
        data
    }

    fn round_trip_bool(values: &[bool]) -> Vec<u8> {
        let mut data = Vec::new();
        encode_bool_rle(values, &mut data);
        assert_eq!(Some(data.len()), bool_rle_len(values, usize::MAX));
        if !data.is_empty() {
            assert_eq!(bool_rle_len(values, data.len() - 1), None);
        }
        let mut out = vec![true];
        decode_bool_rle(&data, values.len(), &mut out).unwrap();
        assert_eq!(&out[1..], values);
        data
    }

    #[test]
    fn empty() {
        assert!(round_trip_f64(&[]).is_empty());
        assert!(round_trip_i64(&[]).is_empty());
        assert!(round_trip_u64(&[]).is_empty());
        assert!(round_trip_bool(&[]).is_empty());
        assert!(decode_i64_rle(&[0, 0], 0, &mut Vec::new()).is_err());
    }

    #[test]
    fn constants_are_one_run() {
        let data = round_trip_f64(&[72.41; 1000]);
        let mut expected = 72.41f64.to_bits().to_le_bytes().to_vec();
        expected.extend_from_slice(&[0xe7, 0x07]); // 999
        assert_eq!(data, expected);
        assert_eq!(round_trip_i64(&[-3; 1000]), vec![5, 0xe7, 0x07]);
        assert_eq!(round_trip_u64(&[u64::MAX; 5]), vec![1, 4]);
        assert_eq!(round_trip_bool(&[true; 3]), vec![0b101]);
        assert_eq!(round_trip_bool(&[false, true, true]), vec![0, 0b11]);
    }

    #[test]
    fn long_runs_are_split() {
        let data = round_trip_i64(&vec![7; MAX_RUN * 2 + 1]);
        assert_eq!(data, vec![14, 0xff, 0x7f, 0, 0xff, 0x7f, 0, 0]);
        round_trip_bool(&vec![false; MAX_RUN * 3]);
        round_trip_f64(&vec![f64::NAN; MAX_RUN + 5]);
    }

    #[test]
    fn floats_compare_by_bits() {
        let values = [0.0, -0.0, -0.0, f64::NAN, f64::from_bits(0x7ff8_0000_0000_0001), f64::NAN, f64::NAN];
        let data = round_trip_f64(&values);
        assert_eq!(data.len(), 5 * 9);
    }

    #[test]
    fn wrong_counts_and_bad_runs() {
        let data = round_trip_i64(&[1, 1, 1, 2, 2, 5]);
        for wrong in [0, 1, 2, 4, 5, 7, 100, usize::MAX] {
            let mut out = vec![9];
            assert!(decode_i64_rle(&data, wrong, &mut out).is_err(), "count {wrong}");
            assert_eq!(out, vec![9]);
        }
        for cut in 0..data.len() {
            assert!(decode_i64_rle(&data[..cut], 6, &mut Vec::new()).is_err(), "cut {cut}");
        }
        // len - 1 == 16384 is too long
        let err = decode_u64_rle(&[0, 0x80, 0x80, 0x01], 16385, &mut Vec::new()).unwrap_err();
        assert!(err.reason.contains("longer than"), "{err}");
        let err = decode_bool_rle(&[0x80, 0x80, 0x02], 16385, &mut Vec::new()).unwrap_err();
        assert!(err.reason.contains("longer than"), "{err}");
        // a huge claimed count with a valid first run is rejected without allocating
        let err = decode_f64_rle(&[0; 9], usize::MAX, &mut Vec::new()).unwrap_err();
        assert!(err.reason.contains("truncated"), "{err}");
    }

    proptest! {
        #[test]
        fn f64_round_trips(
            runs in proptest::collection::vec((any::<u64>(), 1usize..40), 0..60),
            picks in proptest::collection::vec(0usize..4, 0..60),
        ) {
            // runs of arbitrary bit patterns, some repeating earlier ones
            let mut values = Vec::new();
            for (i, &(bits, len)) in runs.iter().enumerate() {
                let bits = match picks.get(i) { Some(0) if i > 0 => runs[i - 1].0, _ => bits };
                values.extend(std::iter::repeat_n(f64::from_bits(bits), len));
            }
            round_trip_f64(&values);
        }

        #[test]
        fn ints_round_trip(runs in proptest::collection::vec((any::<i64>(), 1usize..40), 0..60)) {
            let values: Vec<i64> = runs.iter().flat_map(|&(v, len)| std::iter::repeat_n(v, len)).collect();
            round_trip_i64(&values);
            let unsigned: Vec<u64> = values.iter().map(|&v| v as u64).collect();
            round_trip_u64(&unsigned);
        }

        #[test]
        fn bools_round_trip(values in proptest::collection::vec(any::<bool>(), 0..500), long in any::<bool>()) {
            let values: Vec<bool> = if long { values.iter().flat_map(|&b| std::iter::repeat_n(b, 50)).collect() } else { values };
            round_trip_bool(&values);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), count in 0usize..100_000) {
            let mut out = Vec::new();
            match decode_f64_rle(&data, count, &mut out) {
                Ok(()) => prop_assert_eq!(out.len(), count),
                Err(_) => prop_assert!(out.is_empty()),
            }
            let mut out = Vec::new();
            match decode_i64_rle(&data, count, &mut out) {
                Ok(()) => prop_assert_eq!(out.len(), count),
                Err(_) => prop_assert!(out.is_empty()),
            }
            let mut out = Vec::new();
            match decode_u64_rle(&data, count, &mut out) {
                Ok(()) => prop_assert_eq!(out.len(), count),
                Err(_) => prop_assert!(out.is_empty()),
            }
            let mut out = Vec::new();
            match decode_bool_rle(&data, count, &mut out) {
                Ok(()) => prop_assert_eq!(out.len(), count),
                Err(_) => prop_assert!(out.is_empty()),
            }
        }
    }
}
