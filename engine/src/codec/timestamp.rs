//! `TimestampGorilla` (codec id 1): delta-of-delta timestamps.
//!
//! Based on the timestamp scheme of Facebook's Gorilla paper, with two
//! changes for nanosecond data: bucket widths sized for nanoseconds, and a
//! per-chunk common divisor so that timestamps with millisecond (or
//! microsecond, or second) jitter cost as little as they would in
//! millisecond units.
//!
//! # Byte layout
//!
//! With `t[i]` the timestamps, all arithmetic wrapping in `i64`:
//! `delta[i] = t[i] - t[i-1]` and `dod[i] = delta[i] - delta[i-1]`.
//!
//! | bytes     | present when | content |
//! |-----------|--------------|---------|
//! | 8         | count ≥ 1    | `t[0]`, `i64` little-endian |
//! | 1..=10    | count ≥ 2    | `delta[1]`, zig-zag LEB128 varint |
//! | 1..=10    | count ≥ 3    | divisor `g`, LEB128 varint, `1 ≤ g ≤ i64::MAX` |
//! | rest      | count ≥ 3    | bit stream (LSB-first, see `codec/bits.rs`) of `count - 2` entries |
//!
//! An empty chunk (count 0) is zero bytes. Each bit-stream entry encodes
//! `q[i]` for `i` in `2..count`, where `dod[i] = q[i] * g` (wrapping), as
//! `z = zigzag(q[i])` in the first bucket that holds it:
//!
//! | prefix (reading order) | payload      | holds                |
//! |------------------------|--------------|----------------------|
//! | `0`                    | none         | `z == 0` (`dod == 0`) |
//! | `10`                   | 6 bits of z  | `z < 2^6`            |
//! | `110`                  | 13 bits      | `z < 2^13`           |
//! | `1110`                 | 24 bits      | `z < 2^24`           |
//! | `11110`                | 40 bits      | `z < 2^40`           |
//! | `11111`                | 64 bits      | anything             |
//!
//! The encoder picks `g` as the greatest common divisor of all `|dod|` (1 if
//! they are all zero), so for timestamps in nanoseconds that only ever move by
//! whole milliseconds, `q` is the delta-of-delta in milliseconds: ±5 ms
//! jitter on a 10 s interval costs under 8 bits a value instead of ~32.
//!
//! The widths were picked by measuring 10 000-value series: 10 s intervals
//! with ±1/±5/±50/±500 ms jitter in whole ms, with ±1 µs/±1 ms/±5 ms of
//! nanosecond noise, exponential arrivals at ms/µs/ns precision, and a
//! regular series missing 1 % of samples. 6/13/24/40 costs 6.7 and 7.7 bits
//! a value for ±1 and ±5 ms jitter (7/14/24/40: 7.5 and 8.6; Gorilla's
//! 7/9/12/32 without the divisor: 55 and 65), 28 for ±1 ms of ns noise, 45 for
//! irregular ns arrivals. The 40-bit bucket covers a dod of ±9 minutes in
//! ns; the 24-bit one ±8 ms of ns noise; the 6-bit one ±32 units.
//!
//! The unused high bits of the stream's last byte are set to 1. Every
//! entry short enough to hide there contains a 0 bit, so the decoder, which
//! requires those bits to be 1 and the stream to end in the chunk's last
//! byte, rejects a value count that is wrong by any amount.

use super::bits::{BitReader, BitWriter, gcd, low_mask, read_uvarint, unzigzag, write_uvarint, zigzag};
use super::{CodecError, CodecId, decode_appending};

const ID: CodecId = CodecId::TimestampGorilla;

/// Payload widths of the buckets with prefixes `0`, `10`, `110`, `1110`,
/// `11110`, packed one byte each so the decoder can look them up with a
/// shift (prefix length `t + 1` for `t` leading one bits).
const BUCKET_WIDTHS: u64 = (6 << 8) | (13 << 16) | (24 << 24) | (40 << 32);
/// Number of buckets with a payload narrower than 64 bits, plus the `0` one.
const SHORT_BUCKETS: u32 = 5;

#[inline(always)]
fn bucket_width(t: u32) -> u32 {
    ((BUCKET_WIDTHS >> (8 * t)) & 0xff) as u32
}

/// Greatest common divisor of all delta-of-deltas, as a positive `i64`;
/// 1 when they are all zero or the GCD does not fit.
fn common_divisor(values: &[i64]) -> i64 {
    let mut g = 0u64;
    for w in values.windows(3) {
        if let [a, b, c] = *w {
            let dod = c.wrapping_sub(b).wrapping_sub(b.wrapping_sub(a));
            g = gcd(g, dod.unsigned_abs());
            if g == 1 {
                break;
            }
        }
    }
    i64::try_from(g).ok().filter(|&g| g > 0).unwrap_or(1)
}

/// Encodes timestamps (nanoseconds or any other unit; any order, any
/// values) with `TimestampGorilla` and appends them to `out`.
///
/// Regular intervals cost one bit a value. Byte layout: module docs of
/// `codec/timestamp.rs`.
pub fn encode_timestamps(values: &[i64], out: &mut Vec<u8>) {
    let Some((&first, rest)) = values.split_first() else {
        return;
    };
    out.extend_from_slice(&first.to_le_bytes());
    let Some(&second) = rest.first() else {
        return;
    };
    let mut delta = second.wrapping_sub(first);
    write_uvarint(out, zigzag(delta));
    if values.len() < 3 {
        return;
    }
    let g = common_divisor(values);
    write_uvarint(out, g as u64);

    let mut prev = second;
    let mut w = BitWriter::new(out);
    for &t in rest.iter().skip(1) {
        let d = t.wrapping_sub(prev);
        let dod = d.wrapping_sub(delta);
        prev = t;
        delta = d;
        // Exact: g divides every dod, and g > 0 so the division cannot overflow.
        let z = zigzag(dod / g);
        if z == 0 {
            w.write(0, 1);
        } else if z < 1 << 6 {
            w.write(0b01 | (z << 2), 2 + 6);
        } else if z < 1 << 13 {
            w.write(0b011 | (z << 3), 3 + 13);
        } else if z < 1 << 24 {
            w.write(0b0111 | (z << 4), 4 + 24);
        } else if z < 1 << 40 {
            w.write(0b01111 | (z << 5), 5 + 40);
        } else {
            w.write(0b11111, 5);
            w.write(z, 64);
        }
    }
    w.finish_with_ones();
}

/// Decodes `count` timestamps written by [`encode_timestamps`] from `data`
/// (exactly the encoded bytes) and appends them to `out`.
///
/// On error `out` is left unchanged. A count larger than `data` can hold
/// (more than `8 * data.len() + 2`) is rejected before allocating.
///
/// # Errors
///
/// [`CodecError`] when the chunk is truncated, has trailing bytes, holds a
/// different number of values than `count`, or has a zero divisor.
pub fn decode_timestamps(data: &[u8], count: usize, out: &mut Vec<i64>) -> Result<(), CodecError> {
    decode_appending(ID, data, count, data.len().saturating_mul(8).saturating_add(2), out, decode_into)
}

fn decode_into(data: &[u8], slots: &mut [i64]) -> Result<(), CodecError> {
    let Some((first_slot, rest)) = slots.split_first_mut() else {
        return if data.is_empty() {
            Ok(())
        } else {
            Err(CodecError::new(ID, 0, format!("{} bytes for a chunk of 0 values", data.len())))
        };
    };
    let Some(first_bytes) = data.first_chunk::<8>() else {
        return Err(CodecError::new(
            ID,
            0,
            format!("truncated: the first timestamp needs 8 bytes, the chunk has {}", data.len()),
        ));
    };
    let mut prev = i64::from_le_bytes(*first_bytes);
    *first_slot = prev;
    let mut pos = 8;

    let Some((second_slot, rest)) = rest.split_first_mut() else {
        return expect_end(data, pos);
    };
    let mut delta = match read_uvarint(data, &mut pos) {
        Some(z) => unzigzag(z),
        None => return Err(bad_varint(pos, "first delta")),
    };
    prev = prev.wrapping_add(delta);
    *second_slot = prev;

    if rest.is_empty() {
        return expect_end(data, pos);
    }
    let g = match read_uvarint(data, &mut pos) {
        Some(g) if g >= 1 && g <= i64::MAX as u64 => g as i64,
        Some(g) => {
            return Err(CodecError::new(ID, pos, format!("divisor {g} is out of range 1..=i64::MAX")));
        }
        None => return Err(bad_varint(pos, "divisor")),
    };
    let stream = data.get(pos..).unwrap_or(&[]);
    let mut r = BitReader::new(stream);
    let mut slots = rest.iter_mut();
    loop {
        r.refill();
        let buf = r.peek();
        if buf & 0b11 == 0 {
            // A run of `0` entries: the interval did not change. (A lone
            // `0` takes the branch-free path below, as bucket 0.)
            let run = buf.trailing_zeros().min(r.available());
            let mut taken = 0;
            for slot in slots.by_ref().take(run as usize) {
                prev = prev.wrapping_add(delta);
                *slot = prev;
                taken += 1;
            }
            if taken == 0 {
                break;
            }
            r.consume(taken);
            continue;
        }
        let Some(slot) = slots.next() else {
            break;
        };
        let t = buf.trailing_ones().min(SHORT_BUCKETS);
        let z = if t < SHORT_BUCKETS {
            let width = bucket_width(t);
            let z = (buf >> (t + 1)) & low_mask(width);
            r.consume(t + 1 + width);
            z
        } else {
            r.consume(SHORT_BUCKETS);
            r.read(64)
        };
        delta = delta.wrapping_add(unzigzag(z).wrapping_mul(g));
        prev = prev.wrapping_add(delta);
        *slot = prev;
    }
    r.check_end_ones().map_err(|(off, reason)| CodecError::new(ID, pos.saturating_add(off), reason))
}

fn expect_end(data: &[u8], pos: usize) -> Result<(), CodecError> {
    if data.len() == pos {
        Ok(())
    } else {
        Err(CodecError::new(
            ID,
            pos,
            format!(
                "{} trailing bytes after the last value (chunk length or value count is wrong)",
                data.len().saturating_sub(pos)
            ),
        ))
    }
}

fn bad_varint(pos: usize, what: &str) -> CodecError {
    CodecError::new(ID, pos, format!("{what} is not a valid varint (truncated or longer than 10 bytes)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(values: &[i64]) -> Vec<u8> {
        let mut buf = vec![0xAA]; // encoders append: keep a prefix to prove it
        encode_timestamps(values, &mut buf);
        let data = &buf[1..];
        let mut out = vec![-7];
        decode_timestamps(data, values.len(), &mut out).unwrap();
        assert_eq!(&out[1..], values);
        data.to_vec()
    }

    #[test]
    fn empty_single_and_pairs() {
        assert!(round_trip(&[]).is_empty());
        assert_eq!(round_trip(&[42]).len(), 8);
        round_trip(&[i64::MIN]);
        round_trip(&[0, i64::MAX]);
        round_trip(&[i64::MAX, i64::MIN]);
    }

    #[test]
    fn huge_and_negative_deltas() {
        round_trip(&[i64::MIN, i64::MAX, i64::MIN, 0, i64::MAX, -1, i64::MIN]);
        round_trip(&[0, i64::MIN, i64::MAX, 0]);
        round_trip(&[i64::MAX, i64::MAX, i64::MIN, i64::MIN, i64::MAX]);
        // dod == i64::MIN alone: divisor would be 2^63, which must fall back to 1
        round_trip(&[0, 0, i64::MIN]);
        round_trip(&[0, 0, i64::MIN, i64::MIN]);
    }

    #[test]
    fn unsorted_and_duplicate() {
        round_trip(&[5, 3, 9, 9, 9, -4, 100, 100, 2, 1_700_000_000_000_000_000]);
    }

    #[test]
    fn regular_interval_is_one_bit_a_value() {
        let start = 1_700_000_000_000_000_000i64;
        let values: Vec<i64> = (0..1000).map(|i| start + i * 10_000_000_000).collect();
        let data = round_trip(&values);
        // 8 + varint(2e10) + varint(1) + 998 bits
        assert!(data.len() <= 8 + 5 + 1 + 125, "{}", data.len());
    }

    #[test]
    fn millisecond_jitter_uses_divisor() {
        let start = 1_700_000_000_000_000_000i64;
        let jitter = [3, -5, 0, 5, -2, 1, 4, -4, 2, -1];
        let values: Vec<i64> =
            (0..1000).map(|i| start + i * 10_000_000_000 + jitter[i as usize % 10] * 1_000_000).collect();
        let data = round_trip(&values);
        assert!(data.len() <= 8 + 6 + 3 + 998 * 8 / 8 + 1, "{}", data.len());
    }

    #[test]
    fn every_bucket_boundary() {
        for z in [0u64, 1, 63, 64, (1 << 13) - 1, 1 << 13, (1 << 24) - 1, 1 << 24, (1 << 40) - 1, 1 << 40, u64::MAX] {
            let dod = unzigzag(z);
            // t2 - 2 t1 + t0 == dod, with a second value whose dod is 1 so g == 1
            let values = [0i64, 0, dod, dod.wrapping_mul(2).wrapping_add(1)];
            round_trip(&values);
        }
    }

    #[test]
    fn gcd_works() {
        assert_eq!(gcd(0, 0), 0);
        assert_eq!(gcd(0, 12), 12);
        assert_eq!(gcd(12, 18), 6);
        assert_eq!(gcd(1 << 63, 1 << 20), 1 << 20);
        assert_eq!(gcd(u64::MAX, 3), 3);
    }

    #[test]
    fn truncation_is_an_error() {
        let values: Vec<i64> = (0..300).map(|i| i * i * 7919 - 3 * i).collect();
        let mut data = Vec::new();
        encode_timestamps(&values, &mut data);
        for cut in 0..data.len() {
            let mut out = vec![1, 2];
            let res = decode_timestamps(&data[..cut], values.len(), &mut out);
            assert!(res.is_err(), "cut at {cut} of {}", data.len());
            assert_eq!(out, vec![1, 2], "output must be unchanged on error");
        }
        let mut longer = data.clone();
        longer.push(0);
        assert!(decode_timestamps(&longer, values.len(), &mut Vec::new()).is_err());
        for wrong in [values.len() - 1, values.len() + 1, values.len() + 7] {
            assert!(decode_timestamps(&data, wrong, &mut Vec::new()).is_err(), "count {wrong}");
        }
    }

    #[test]
    fn implausible_count_is_rejected_without_allocating() {
        let err = decode_timestamps(&[0; 4], usize::MAX, &mut Vec::new()).unwrap_err();
        assert!(err.reason.contains("implausible"), "{err}");
        assert!(decode_timestamps(&[0; 4], 35, &mut Vec::new()).is_err());
    }

    #[test]
    fn zero_divisor_is_rejected() {
        let mut data = 0i64.to_le_bytes().to_vec();
        data.extend_from_slice(&[0, 0, 0]); // delta 0, divisor 0, one byte of stream
        assert!(decode_timestamps(&data, 3, &mut Vec::new()).is_err());
    }

    proptest! {
        #[test]
        fn round_trips_arbitrary(values in proptest::collection::vec(any::<i64>(), 0..300)) {
            round_trip(&values);
        }

        #[test]
        fn round_trips_near_regular(
            start in any::<i64>(),
            step in 0i64..100_000_000_000,
            jitter in proptest::collection::vec(-5_000_000i64..5_000_000, 0..500),
            unit in prop::sample::select(vec![1i64, 1_000, 1_000_000]),
        ) {
            let values: Vec<i64> = jitter.iter().enumerate()
                .map(|(i, j)| start.wrapping_add(step.wrapping_mul(i as i64)).wrapping_add(j / unit * unit))
                .collect();
            round_trip(&values);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), count in 0usize..100_000) {
            let mut out = Vec::new();
            match decode_timestamps(&data, count, &mut out) {
                Ok(()) => prop_assert_eq!(out.len(), count),
                Err(_) => prop_assert!(out.is_empty()),
            }
        }
    }
}
