//! `FloatGorilla` (codec id 2): Gorilla XOR compression of `f64` values.
//!
//! Works on the raw IEEE-754 bits (`f64::to_bits`), so NaN payloads, the sign
//! of zero, subnormals and infinities round-trip bit-exactly.
//!
//! # Byte layout
//!
//! An empty chunk (count 0) is zero bytes. Otherwise the chunk is one bit
//! stream (LSB-first, see `codec/bits.rs`) padded to a whole byte:
//!
//! 1. 64 bits: the first value's bits (so the first 8 bytes are the `f64`
//!    little-endian).
//! 2. For each further value, `x = bits XOR previous bits`, then
//!
//! | prefix (reading order) | then                                         | meaning |
//! |------------------------|----------------------------------------------|---------|
//! | `0`                    | nothing                                      | `x == 0`, same value as before |
//! | `10`                   | `len` bits                                   | `x >> tz`, reusing the current window `(lz, len)` |
//! | `11`                   | 5 bits `lz`, 6 bits `len` (0 means 64), `len` bits | a new window, then `x >> tz` |
//!
//! where a window is `lz` leading zero bits (0..=31), `len` meaningful bits
//! (1..=64) and `tz = 64 - lz - len` trailing zero bits; `lz + len ≤ 64` or the
//! chunk is rejected. The current window starts as `lz = 0, len = 64`, so a
//! `10` entry is valid from the second value on.
//!
//! The encoder reuses the window when `x` fits in it (its leading zeros ≥
//! `lz` and trailing zeros ≥ `tz`) *and* that is no longer than opening the
//! tightest new window (`2 + len ≤ 13 + new len`); otherwise it opens one.
//! That cost check (not in the paper) stops one noisy value from pinning a
//! wide window on the rest of the chunk. Decoders do not depend on it.
//!
//! The unused high bits of the last byte are set to 1. Every entry short
//! enough to hide there contains a 0 bit, so the decoder, which requires
//! those bits to be 1 and the stream to end in the chunk's last byte, rejects
//! a value count that is wrong by any amount.

use super::bits::{BitReader, BitWriter, low_mask};
use super::{CodecError, CodecId, decode_appending};

const ID: CodecId = CodecId::FloatGorilla;

/// Bits of a new-window header after the 2-bit prefix: 5 (lz) + 6 (len).
const WINDOW_HEADER_BITS: u32 = 11;

/// Encodes `f64` values with `FloatGorilla` and appends them to `out`.
///
/// A repeated value costs one bit. Byte layout: module docs of
/// `codec/float.rs`.
pub fn encode_f64(values: &[f64], out: &mut Vec<u8>) {
    let Some((first, rest)) = values.split_first() else {
        return;
    };
    let mut w = BitWriter::new(out);
    let mut prev = first.to_bits();
    w.write(prev, 64);
    let mut lz_prev = 0u32;
    let mut len_prev = 64u32;
    let mut tz_prev = 0u32;
    for v in rest {
        let bits = v.to_bits();
        let x = bits ^ prev;
        prev = bits;
        if x == 0 {
            w.write(0, 1);
            continue;
        }
        let lz = x.leading_zeros().min(31);
        let tz = x.trailing_zeros();
        let len = 64 - lz - tz;
        if lz >= lz_prev && tz >= tz_prev && 2 + len_prev <= 2 + WINDOW_HEADER_BITS + len {
            let payload = x >> tz_prev;
            if len_prev <= 62 {
                w.write(0b01 | (payload << 2), 2 + len_prev);
            } else {
                w.write(0b01, 2);
                w.write(payload, len_prev);
            }
        } else {
            // len is 1..=64; 64 is stored as 0 in six bits.
            let header = 0b11 | (u64::from(lz) << 2) | (u64::from(len & 63) << 7);
            let payload = x >> tz;
            if len <= 64 - 13 {
                w.write(header | (payload << 13), 13 + len);
            } else {
                w.write(header, 13);
                w.write(payload, len);
            }
            lz_prev = lz;
            len_prev = len;
            tz_prev = tz;
        }
    }
    w.finish_with_ones();
}

/// Decodes `count` values written by [`encode_f64`] from `data` (exactly the
/// encoded bytes) and appends them to `out`.
///
/// On error `out` is left unchanged. A count larger than `data` can hold
/// (more than `8 * data.len() + 1`) is rejected before allocating.
///
/// # Errors
///
/// [`CodecError`] when the chunk is truncated, has trailing bytes, holds a
/// different number of values than `count`, or declares a window wider than
/// 64 bits.
pub fn decode_f64(data: &[u8], count: usize, out: &mut Vec<f64>) -> Result<(), CodecError> {
    decode_appending(ID, data, count, data.len().saturating_mul(8).saturating_add(1), out, decode_into)
}

fn decode_into(data: &[u8], slots: &mut [f64]) -> Result<(), CodecError> {
    let Some((first_slot, rest)) = slots.split_first_mut() else {
        return if data.is_empty() {
            Ok(())
        } else {
            Err(CodecError::new(ID, 0, format!("{} bytes for a chunk of 0 values", data.len())))
        };
    };
    let mut r = BitReader::new(data);
    let mut prev = r.read(64);
    *first_slot = f64::from_bits(prev);
    let mut len = 64u32;
    let mut tz = 0u32;
    let mut slots = rest.iter_mut();
    loop {
        r.refill();
        let buf = r.peek();
        if buf & 1 == 0 {
            // A run of `0` entries: the value repeats.
            let run = buf.trailing_zeros().min(r.available());
            let value = f64::from_bits(prev);
            let mut taken = 0;
            for slot in slots.by_ref().take(run as usize) {
                *slot = value;
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
        let skip = if buf & 2 == 0 {
            2
        } else {
            let header = (buf >> 2) as u32;
            let lz = header & 31;
            len = match (header >> 5) & 63 {
                0 => 64,
                n => n,
            };
            if lz + len > 64 {
                let at = r.bits_consumed() / 8;
                return Err(CodecError::new(
                    ID,
                    usize::try_from(at).unwrap_or(usize::MAX),
                    format!("window of {lz} leading zero bits and {len} meaningful bits exceeds 64 bits"),
                ));
            }
            tz = 64 - lz - len;
            2 + WINDOW_HEADER_BITS
        };
        let meaningful = if skip + len <= BitReader::REFILL_BITS {
            let m = (buf >> skip) & low_mask(len);
            r.consume(skip + len);
            m
        } else {
            r.consume(skip);
            r.read(len)
        };
        prev ^= meaningful << tz;
        *slot = f64::from_bits(prev);
    }
    r.check_end_ones().map_err(|(off, reason)| CodecError::new(ID, off, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(values: &[f64]) -> Vec<u8> {
        let mut buf = vec![0x55];
        encode_f64(values, &mut buf);
        let data = &buf[1..];
        let mut out = vec![1.5];
        decode_f64(data, values.len(), &mut out).unwrap();
        assert_eq!(out.len(), values.len() + 1);
        for (i, (a, b)) in out[1..].iter().zip(values).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "value {i}: {a} vs {b}");
        }
        data.to_vec()
    }

    fn specials() -> Vec<f64> {
        vec![
            f64::from_bits(0x7ff8_0000_dead_beef),
            f64::from_bits(0x7ff0_0000_0000_0001),
            f64::from_bits(0xfff8_0000_0000_0000),
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            f64::from_bits(1),
            f64::from_bits(0x800f_ffff_ffff_ffff),
            f64::MIN_POSITIVE,
            f64::MIN,
            f64::MAX,
            f64::EPSILON,
            1.0,
            -1.0,
        ]
    }

    #[test]
    fn empty_and_single() {
        assert!(round_trip(&[]).is_empty());
        for v in specials() {
            assert_eq!(round_trip(&[v]).len(), 8);
        }
    }

    #[test]
    fn special_values_bit_exact() {
        let s = specials();
        round_trip(&s);
        // every ordered pair, so each special follows each other one
        let mut pairs = Vec::new();
        for a in &s {
            for b in &s {
                pairs.push(*a);
                pairs.push(*b);
            }
        }
        round_trip(&pairs);
        let mut rev = pairs.clone();
        rev.reverse();
        round_trip(&rev);
    }

    #[test]
    fn constant_is_one_bit_a_value() {
        let data = round_trip(&[72.41; 1000]);
        assert_eq!(data.len(), 8 + 999usize.div_ceil(8));
        assert_eq!(*data.last().unwrap(), 0b1000_0000, "999 zero bits, then one padding 1");
    }

    #[test]
    fn window_reuse_with_64_meaningful_bits() {
        // the initial window is (lz 0, len 64): the first XOR may use it
        round_trip(&[f64::from_bits(0), f64::from_bits(u64::MAX), f64::from_bits(1), f64::from_bits(1 << 63)]);
        round_trip(&[0.0, f64::from_bits(0x8000_0000_0000_0001), f64::from_bits(0x8000_0000_0000_0003), 0.0]);
    }

    #[test]
    fn bad_window_is_rejected() {
        // first value 0.0, then prefix 11, lz = 31, len = 40 -> 71 bits
        let mut data = vec![0u8; 8];
        let header: u64 = 0b11 | (31 << 2) | (40 << 7);
        data.extend_from_slice(&header.to_le_bytes()[..2]);
        data.extend_from_slice(&[0; 6]);
        let err = decode_f64(&data, 2, &mut Vec::new()).unwrap_err();
        assert!(err.reason.contains("exceeds 64 bits"), "{err}");
    }

    #[test]
    fn truncation_is_an_error() {
        let values: Vec<f64> = (0..300).map(|i| (f64::from(i) * 0.37).sin() * 100.0).collect();
        let mut data = Vec::new();
        encode_f64(&values, &mut data);
        for cut in 0..data.len() {
            let mut out = vec![9.0];
            assert!(decode_f64(&data[..cut], values.len(), &mut out).is_err(), "cut at {cut}");
            assert_eq!(out, vec![9.0]);
        }
        let mut longer = data.clone();
        longer.push(0);
        assert!(decode_f64(&longer, values.len(), &mut Vec::new()).is_err());
        for wrong in [values.len() - 1, values.len() + 1, values.len() + 7] {
            assert!(decode_f64(&data, wrong, &mut Vec::new()).is_err(), "count {wrong}");
        }
    }

    #[test]
    fn implausible_count_is_rejected() {
        assert!(decode_f64(&[0; 8], 66, &mut Vec::new()).is_err());
        assert!(decode_f64(&[], 1, &mut Vec::new()).is_err());
        assert!(decode_f64(&[], usize::MAX, &mut Vec::new()).is_err());
    }

    proptest! {
        #[test]
        fn round_trips_arbitrary_bits(bits in proptest::collection::vec(any::<u64>(), 0..300)) {
            let values: Vec<f64> = bits.into_iter().map(f64::from_bits).collect();
            round_trip(&values);
        }

        #[test]
        fn round_trips_mixed(values in proptest::collection::vec(
            prop_oneof![
                any::<f64>(),
                (-1000i32..1000).prop_map(|c| f64::from(c) / 100.0),
                prop::sample::select(specials()),
            ], 0..300)) {
            round_trip(&values);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), count in 0usize..100_000) {
            let mut out = Vec::new();
            match decode_f64(&data, count, &mut out) {
                Ok(()) => prop_assert_eq!(out.len(), count),
                Err(_) => prop_assert!(out.is_empty()),
            }
        }
    }
}
