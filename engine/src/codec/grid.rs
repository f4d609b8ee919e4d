//! `TimestampGrid` (codec id 14): timestamps as offsets from a regular
//! grid, divided by their common divisor and bit-packed.
//!
//! Gateways sample on a timer: every 10 s, give or take a few milliseconds.
//! Delta-of-delta coding (`TimestampGorilla`) sees the jitter twice — once
//! when a sample is late, once when the next one is on time — so ±5 ms costs
//! it about 8 bits a value. Measured from the grid `t0 + i * step`, the
//! offset is the jitter itself, 4 bits at ±5 ms in whole milliseconds, and a
//! regular series is a few bytes per 1024 values instead of one bit each.
//!
//! # Byte layout
//!
//! An empty chunk (count 0) is zero bytes. Otherwise, with all arithmetic
//! wrapping in `i64`:
//!
//! | bytes   | content |
//! |---------|---------|
//! | 8       | `t0`, the first timestamp, `i64` little-endian |
//! | 1..=10  | `step`, zig-zag LEB128 varint |
//! | 1..=10  | `g`, the divisor, LEB128 varint, `1 ≤ g ≤ i64::MAX` |
//! | rest    | `q[i]` for `i` in `0..count`, as the block stream of `codec/pack.rs` (frame of reference or delta, bit-packed, blocks of 1024) |
//!
//! and `t[i] = t0 + i * step + q[i] * g`.
//!
//! The encoder takes the median interval as `step`; for unsorted times it
//! also tries 0 (plain frame of reference) and keeps the smaller chunk.
//! For each step it takes `g` as the greatest common divisor of all offsets
//! `t[i] - t0 - i * step` (1 when they are all zero or it does not fit in
//! `i64`), so timestamps in nanoseconds that only move by whole milliseconds
//! cost what they would in milliseconds. A delta block then covers clocks
//! that drift (each interval is `step` plus a little), and a frame-of-reference
//! block covers a steady clock with jitter around it; the block stream picks
//! per block.

use super::bits::{gcd, read_uvarint, unzigzag, write_uvarint, zigzag};
use super::pack::{self, expect_end, varint_len};
use super::{CodecError, CodecId, decode_appending};

const ID: CodecId = CodecId::TimestampGrid;

/// Bytes before the block stream at the least: `t0`, one-byte `step` and `g`.
const MIN_HEADER_BYTES: usize = 10;

/// A chunk ready to write: the grid and the offsets in units of `g`.
#[derive(Debug)]
pub(crate) struct GridPlan {
    t0: i64,
    step: i64,
    g: i64,
    offsets: Vec<i64>,
    /// Exact encoded size in bytes.
    pub(crate) bytes: usize,
}

impl GridPlan {
    fn new(values: &[i64], step: i64) -> Option<GridPlan> {
        let &t0 = values.first()?;
        let mut offsets: Vec<i64> = Vec::with_capacity(values.len());
        let mut grid = t0;
        let mut g = 0u64;
        for &t in values {
            let r = t.wrapping_sub(grid);
            grid = grid.wrapping_add(step);
            let magnitude = r.unsigned_abs();
            // The divisor rarely changes after the first offsets: a remainder
            // check is much cheaper than a GCD.
            if g == 0 {
                g = magnitude;
            } else if g != 1 && magnitude % g != 0 {
                g = gcd(g, magnitude);
            }
            offsets.push(r);
        }
        let g = i64::try_from(g).ok().filter(|&g| g > 0).unwrap_or(1);
        if g > 1 {
            for r in &mut offsets {
                // Exact: g divides every offset, and g > 0 cannot overflow.
                *r /= g;
            }
        }
        let bytes = 8 + varint_len(zigzag(step)) + varint_len(g as u64) + pack::encoded_len(&offsets, |q| q);
        Some(GridPlan { t0, step, g, offsets, bytes })
    }

    /// The smaller of the median-interval grid and no grid; `None` for an
    /// empty chunk.
    pub(crate) fn best(values: &[i64]) -> Option<GridPlan> {
        let mut intervals: Vec<i64> =
            values.iter().zip(values.iter().skip(1)).map(|(a, b)| b.wrapping_sub(*a)).collect();
        let sorted = values.iter().zip(values.iter().skip(1)).all(|(a, b)| a <= b);
        let middle = intervals.len() / 2;
        let median = if intervals.is_empty() { 0 } else { *intervals.select_nth_unstable(middle).1 };
        let on_grid = GridPlan::new(values, median)?;
        // On sorted times the median interval, a difference of two times, is
        // a multiple of the common divisor of all `t - t0`: the grid's
        // divisor is a multiple of no grid's and its delta blocks are as
        // narrow, so no grid rarely wins there.
        if median == 0 || sorted {
            return Some(on_grid);
        }
        match GridPlan::new(values, 0) {
            Some(flat) if flat.bytes < on_grid.bytes => Some(flat),
            _ => Some(on_grid),
        }
    }

    /// Appends the chunk.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.reserve(self.bytes);
        out.extend_from_slice(&self.t0.to_le_bytes());
        write_uvarint(out, zigzag(self.step));
        write_uvarint(out, self.g as u64);
        pack::encode_blocks(&self.offsets, |q| q, out);
    }
}

/// Encodes timestamps (any unit, any order, any values) with
/// `TimestampGrid` and appends them to `out`.
///
/// Byte layout: module docs of `codec/grid.rs`.
pub fn encode_timestamps_grid(values: &[i64], out: &mut Vec<u8>) {
    if let Some(plan) = GridPlan::best(values) {
        plan.write(out);
    }
}

/// Decodes `count` timestamps written by [`encode_timestamps_grid`] from
/// `data` (exactly the encoded bytes) and appends them to `out`.
///
/// On error `out` is left unchanged. A count larger than `data` can hold
/// (about 512 values a byte) is rejected before allocating.
///
/// # Errors
///
/// [`CodecError`] when the chunk is truncated, has a divisor of 0 or above
/// `i64::MAX`, a block wider than 64 bits, or bytes after the last block.
pub fn decode_timestamps_grid(data: &[u8], count: usize, out: &mut Vec<i64>) -> Result<(), CodecError> {
    let max = pack::max_values(data.len().saturating_sub(MIN_HEADER_BYTES));
    decode_appending(ID, data, count, max, out, decode_into)
}

fn decode_into(data: &[u8], slots: &mut [i64]) -> Result<(), CodecError> {
    if slots.is_empty() {
        return expect_end(ID, data, 0);
    }
    let Some(t0) = data.first_chunk::<8>().map(|b| i64::from_le_bytes(*b)) else {
        return Err(CodecError::new(
            ID,
            0,
            format!("truncated: the first timestamp needs 8 bytes, the chunk has {}", data.len()),
        ));
    };
    let mut pos = 8;
    let Some(step) = read_uvarint(data, &mut pos).map(unzigzag) else {
        return Err(CodecError::new(ID, pos, "step is not a valid varint (truncated?)"));
    };
    let at = pos;
    let g = match read_uvarint(data, &mut pos) {
        Some(g) if g >= 1 && g <= i64::MAX as u64 => g as i64,
        Some(g) => return Err(CodecError::new(ID, at, format!("divisor {g} is out of range 1..=i64::MAX"))),
        None => return Err(CodecError::new(ID, at, "divisor is not a valid varint (truncated?)")),
    };
    pack::decode_blocks(ID, data, &mut pos, slots, |q| q)?;
    expect_end(ID, data, pos)?;
    let mut grid = t0;
    if g == 1 {
        for t in slots.iter_mut() {
            *t = grid.wrapping_add(*t);
            grid = grid.wrapping_add(step);
        }
    } else {
        for t in slots.iter_mut() {
            *t = grid.wrapping_add(t.wrapping_mul(g));
            grid = grid.wrapping_add(step);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const START: i64 = 1_700_000_000_000_000_000;
    const TEN_S: i64 = 10_000_000_000;

    fn round_trip(values: &[i64]) -> Vec<u8> {
        let mut buf = vec![0xAA];
        encode_timestamps_grid(values, &mut buf);
        let data = &buf[1..];
        if let Some(plan) = GridPlan::best(values) {
            assert_eq!(plan.bytes, data.len());
        }
        let mut out = vec![-7];
        decode_timestamps_grid(data, values.len(), &mut out).unwrap();
        assert_eq!(&out[1..], values);
        data.to_vec()
    }

    #[test]
    fn empty_single_and_extremes() {
        assert!(round_trip(&[]).is_empty());
        assert_eq!(round_trip(&[42]).len(), 8 + 1 + 1 + 2);
        round_trip(&[i64::MIN]);
        round_trip(&[i64::MIN, i64::MAX, i64::MIN, 0, i64::MAX, -1, i64::MIN]);
        round_trip(&[0, 0, i64::MIN, i64::MIN]);
        round_trip(&[i64::MAX, i64::MAX, i64::MIN, i64::MIN, i64::MAX]);
        round_trip(&[5, 3, 9, 9, 9, -4, 100, 100, 2, START]);
    }

    #[test]
    fn regular_is_a_few_bytes_a_block() {
        let values: Vec<i64> = (0..3000).map(|i| START + i * TEN_S).collect();
        let data = round_trip(&values);
        // header 8 + 5 + 1, then three FOR blocks of width 0: header byte and base 0
        assert_eq!(data.len(), 8 + 5 + 1 + 3 * 2);
    }

    #[test]
    fn millisecond_jitter_is_four_bits() {
        let jitter = [3, -5, 0, 5, -2, 1, 4, -4, 2, -1];
        let values: Vec<i64> = (0..1000).map(|i| START + i * TEN_S + jitter[i as usize % 10] * 1_000_000).collect();
        let data = round_trip(&values);
        // offsets in ms from -5 (first value +3): -8..=2, 11 values: 4 bits
        assert!(data.len() <= 8 + 5 + 3 + 3 + 500, "{}", data.len());
    }

    #[test]
    fn missing_samples_and_drift() {
        let values: Vec<i64> = (0..2000).filter(|i| i % 97 != 5).map(|i| START + i * TEN_S).collect();
        let data = round_trip(&values);
        assert!(data.len() < 8 * 2000 / 8 / 4, "{}", data.len());
        // a clock that runs 1 ms slow each interval, plus ms jitter
        let mut t = START;
        let drifting: Vec<i64> = (0..2000)
            .map(|i| {
                t += TEN_S + 1_000_000 * (1 + i % 3);
                t
            })
            .collect();
        let data = round_trip(&drifting);
        assert!(data.len() < 2000 * 2 / 8 + 40, "{}", data.len());
    }

    #[test]
    fn malformed_headers_are_errors() {
        let mut data = 0i64.to_le_bytes().to_vec();
        data.extend_from_slice(&[0, 0, 0, 0]); // step 0, divisor 0, block
        assert!(decode_timestamps_grid(&data, 3, &mut Vec::new()).unwrap_err().reason.contains("divisor"));
        let mut data = 0i64.to_le_bytes().to_vec();
        data.push(0);
        data.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]); // 2^64 - 1
        data.extend_from_slice(&[0, 0]);
        assert!(decode_timestamps_grid(&data, 3, &mut Vec::new()).unwrap_err().reason.contains("divisor"));
        assert!(decode_timestamps_grid(&[0; 7], 1, &mut Vec::new()).is_err());
        assert!(decode_timestamps_grid(&[0; 12], 0, &mut Vec::new()).is_err());
    }

    #[test]
    fn truncation_is_an_error() {
        let values: Vec<i64> = (0..3000).map(|i| i * i * 7919 - 3 * i).collect();
        let mut data = Vec::new();
        encode_timestamps_grid(&values, &mut data);
        for cut in 0..data.len() {
            let mut out = vec![1, 2];
            assert!(decode_timestamps_grid(&data[..cut], values.len(), &mut out).is_err(), "cut at {cut}");
            assert_eq!(out, vec![1, 2]);
        }
        let mut longer = data.clone();
        longer.push(0);
        assert!(decode_timestamps_grid(&longer, values.len(), &mut Vec::new()).is_err());
        let err = decode_timestamps_grid(&[0; 12], usize::MAX, &mut Vec::new()).unwrap_err();
        assert!(err.reason.contains("implausible"), "{err}");
    }

    proptest! {
        #[test]
        fn round_trips_arbitrary(values in proptest::collection::vec(any::<i64>(), 0..1500)) {
            round_trip(&values);
        }

        #[test]
        fn round_trips_near_regular(
            start in any::<i64>(),
            step in 0i64..100_000_000_000,
            jitter in proptest::collection::vec(-5_000_000i64..5_000_000, 0..1500),
            unit in prop::sample::select(vec![1i64, 1_000, 1_000_000]),
            drift in any::<bool>(),
        ) {
            let mut t = start;
            let values: Vec<i64> = jitter.iter().enumerate()
                .map(|(i, j)| {
                    let j = j / unit * unit;
                    if drift {
                        t = t.wrapping_add(step).wrapping_add(j);
                        t
                    } else {
                        start.wrapping_add(step.wrapping_mul(i as i64)).wrapping_add(j)
                    }
                })
                .collect();
            round_trip(&values);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), count in 0usize..100_000) {
            let mut out = Vec::new();
            match decode_timestamps_grid(&data, count, &mut out) {
                Ok(()) => prop_assert_eq!(out.len(), count),
                Err(_) => prop_assert!(out.is_empty()),
            }
        }
    }
}
