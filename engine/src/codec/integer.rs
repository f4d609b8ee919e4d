//! `IntDeltaZigzag` (codec id 3) for `i64` and `UintDelta` (codec id 4) for
//! `u64`: delta, zig-zag, then bit-packing in blocks of 128 values.
//!
//! # Byte layout
//!
//! `d[i] = v[i] - v[i-1]` with `v[-1] = 0`, computed as a wrapping 64-bit
//! subtraction (for `u64`, `v[i].wrapping_sub(v[i-1])` reinterpreted as
//! `i64`), so any sequence including `i64::MIN`/`MAX` and `u64::MAX`
//! round-trips. Each `d[i]` is zig-zag mapped to `z[i]`.
//!
//! The values are cut into blocks of 128 (the last block holds the remaining
//! `count % 128` when that is not zero). Each block is, byte-aligned:
//!
//! | bytes               | content |
//! |---------------------|---------|
//! | 1                   | `w`, the bit width of the block's largest `z` (0..=64) |
//! | `ceil(n * w / 8)`   | the block's `n` values `z`, `w` bits each, LSB-first (see `codec/bits.rs`) |
//!
//! A full block is therefore `1 + 16 * w` bytes; a block of equal deltas
//! (`w == 0`) is one byte. An empty chunk (count 0) is zero bytes. Leftover
//! bytes after the last block are rejected.

use super::bits::{BitReader, BitWriter, low_mask, unzigzag, zigzag};
use super::{CodecError, decode_appending};
use crate::codec::CodecId;

/// Values per bit-packed block.
const BLOCK: usize = 128;

/// Widest block the decoder unpacks with one 8-byte load a value (the value
/// plus up to 7 bits of misalignment must fit in 64 bits).
const MAX_FAST_WIDTH: u32 = 56;

/// Encodes `i64` values with `IntDeltaZigzag` and appends them to `out`.
///
/// Byte layout: module docs of `codec/integer.rs`.
pub fn encode_i64(values: &[i64], out: &mut Vec<u8>) {
    encode_bits(values, |v| v as u64, out);
}

/// Decodes `count` values written by [`encode_i64`] from `data` (exactly the
/// encoded bytes) and appends them to `out`.
///
/// On error `out` is left unchanged. A count larger than `data` can hold
/// (more than `128 * data.len()`) is rejected before allocating.
///
/// # Errors
///
/// [`CodecError`] when a block is truncated or wider than 64 bits, or bytes
/// are left after the last block.
pub fn decode_i64(data: &[u8], count: usize, out: &mut Vec<i64>) -> Result<(), CodecError> {
    decode_bits(CodecId::IntDeltaZigzag, data, count, out, |bits| bits as i64)
}

/// Encodes `u64` values with `UintDelta` and appends them to `out`.
///
/// Same layout as [`encode_i64`] on the wrapping difference.
pub fn encode_u64(values: &[u64], out: &mut Vec<u8>) {
    encode_bits(values, |v| v, out);
}

/// Decodes `count` values written by [`encode_u64`] from `data` (exactly the
/// encoded bytes) and appends them to `out`.
///
/// On error `out` is left unchanged. A count larger than `data` can hold
/// (more than `128 * data.len()`) is rejected before allocating.
///
/// # Errors
///
/// [`CodecError`] when a block is truncated or wider than 64 bits, or bytes
/// are left after the last block.
pub fn decode_u64(data: &[u8], count: usize, out: &mut Vec<u64>) -> Result<(), CodecError> {
    decode_bits(CodecId::UintDelta, data, count, out, |bits| bits)
}

/// Shared encoder on the values' 64-bit patterns: wrapping arithmetic is the
/// same for `i64` and `u64`.
#[inline(always)]
fn encode_bits<T: Copy>(values: &[T], to_bits: impl Fn(T) -> u64, out: &mut Vec<u8>) {
    let mut prev = 0u64;
    let mut zz = [0u64; BLOCK];
    for block in values.chunks(BLOCK) {
        let mut any = 0u64;
        for (z, &v) in zz.iter_mut().zip(block) {
            let bits = to_bits(v);
            *z = zigzag(bits.wrapping_sub(prev) as i64);
            prev = bits;
            any |= *z;
        }
        let width = 64 - any.leading_zeros();
        out.push(width as u8);
        if width == 0 {
            continue;
        }
        let mut w = BitWriter::new(out);
        for &z in zz.iter().take(block.len()) {
            w.write(z, width);
        }
        w.finish();
    }
}

#[inline(always)]
fn decode_bits<T: Copy + Default>(
    id: CodecId,
    data: &[u8],
    count: usize,
    out: &mut Vec<T>,
    from_bits: impl Fn(u64) -> T,
) -> Result<(), CodecError> {
    decode_appending(id, data, count, data.len().saturating_mul(BLOCK), out, |data, slots| {
        decode_into(id, data, slots, from_bits)
    })
}

#[inline(always)]
fn decode_into<T: Copy>(
    id: CodecId,
    data: &[u8],
    slots: &mut [T],
    from_bits: impl Fn(u64) -> T,
) -> Result<(), CodecError> {
    let mut pos = 0usize;
    let mut prev = 0u64;
    // A block's packed bits plus 8 bytes so any value's 8-byte load fits.
    let mut scratch = [0u8; BLOCK * MAX_FAST_WIDTH as usize / 8 + 8];
    for block in slots.chunks_mut(BLOCK) {
        let Some(&width) = data.get(pos) else {
            return Err(CodecError::new(
                id,
                pos,
                format!("truncated: expected a block header byte, the chunk has {} bytes", data.len()),
            ));
        };
        let width = u32::from(width);
        if width > 64 {
            return Err(CodecError::new(id, pos, format!("block bit width {width} is larger than 64")));
        }
        pos += 1;
        // block.len() <= 128 and width <= 64: no overflow.
        let nbytes = (block.len() * width as usize).div_ceil(8);
        let Some(packed) = data.get(pos..pos.saturating_add(nbytes)) else {
            return Err(CodecError::new(
                id,
                pos,
                format!(
                    "truncated: a block of {} values at {width} bits needs {nbytes} bytes, {} remain",
                    block.len(),
                    data.len().saturating_sub(pos)
                ),
            ));
        };
        pos += nbytes;
        if width == 0 {
            for slot in block.iter_mut() {
                *slot = from_bits(prev);
            }
            continue;
        }
        if width <= MAX_FAST_WIDTH {
            // Every value is one unaligned 8-byte load from a padded copy
            // of the block: no dependency between values except the sum.
            if let Some(dst) = scratch.get_mut(..packed.len()) {
                dst.copy_from_slice(packed);
            }
            let mask = low_mask(width);
            for (i, slot) in block.iter_mut().enumerate() {
                let bit = i * width as usize;
                let word = scratch
                    .get(bit / 8..)
                    .and_then(|rest| rest.first_chunk::<8>())
                    .map_or(0, |w| u64::from_le_bytes(*w));
                let z = (word >> (bit % 8)) & mask;
                prev = prev.wrapping_add(unzigzag(z) as u64);
                *slot = from_bits(prev);
            }
        } else {
            let mut r = BitReader::new(packed);
            for slot in block.iter_mut() {
                prev = prev.wrapping_add(unzigzag(r.read(width)) as u64);
                *slot = from_bits(prev);
            }
        }
    }
    if pos == data.len() {
        Ok(())
    } else {
        Err(CodecError::new(
            id,
            pos,
            format!("{} trailing bytes after the last block (chunk length or value count is wrong)", data.len() - pos),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip_i64(values: &[i64]) -> Vec<u8> {
        let mut buf = vec![3];
        encode_i64(values, &mut buf);
        let mut out = vec![-1];
        decode_i64(&buf[1..], values.len(), &mut out).unwrap();
        assert_eq!(&out[1..], values);
        buf[1..].to_vec()
    }

    fn round_trip_u64(values: &[u64]) -> Vec<u8> {
        let mut buf = vec![3];
        encode_u64(values, &mut buf);
        let mut out = vec![1];
        decode_u64(&buf[1..], values.len(), &mut out).unwrap();
        assert_eq!(&out[1..], values);
        buf[1..].to_vec()
    }

    #[test]
    fn extremes() {
        assert!(round_trip_i64(&[]).is_empty());
        assert!(round_trip_u64(&[]).is_empty());
        round_trip_i64(&[0]);
        round_trip_i64(&[i64::MIN]);
        round_trip_i64(&[i64::MAX]);
        round_trip_i64(&[i64::MIN, i64::MAX, i64::MIN, 0, -1, 1, i64::MAX, i64::MAX]);
        round_trip_u64(&[u64::MAX]);
        round_trip_u64(&[0, u64::MAX, 0, u64::MAX, 1, u64::MAX - 1, 0]);
    }

    #[test]
    fn block_boundaries() {
        for n in [1usize, 127, 128, 129, 255, 256, 257, 1000] {
            let v: Vec<i64> = (0..n as i64).map(|i| i * 3 - 100).collect();
            round_trip_i64(&v);
            let u: Vec<u64> = (0..n as u64).map(|i| u64::MAX - i * i).collect();
            round_trip_u64(&u);
        }
    }

    #[test]
    fn block_sizes() {
        let v: Vec<i64> = (0..1024).map(|i| 5 + 7 * i).collect();
        let data = round_trip_i64(&v);
        // deltas 5, 7, 7, …: zig-zag 10 and 14 need 4 bits in all 8 blocks
        assert_eq!(data.len(), 8 * (1 + 16 * 4));
        // a constant: the first block carries 9 (zig-zag 18, 5 bits), the
        // other 7 blocks (the last one short) are a zero-width byte each
        let c = round_trip_i64(&[9; 1000]);
        assert_eq!(c.len(), (1 + 16 * 5) + 7);
    }

    #[test]
    fn truncation_is_an_error() {
        let v: Vec<i64> = (0..300).map(|i| i * i - 5000).collect();
        let mut data = Vec::new();
        encode_i64(&v, &mut data);
        for cut in 0..data.len() {
            let mut out = vec![4];
            assert!(decode_i64(&data[..cut], v.len(), &mut out).is_err(), "cut {cut}");
            assert_eq!(out, vec![4]);
        }
        let mut longer = data.clone();
        longer.push(0);
        assert!(decode_i64(&longer, v.len(), &mut Vec::new()).is_err());
    }

    #[test]
    fn bad_width_and_implausible_count() {
        assert!(decode_u64(&[65], 1, &mut Vec::new()).is_err());
        assert!(decode_u64(&[0], 129, &mut Vec::new()).is_err());
        assert!(decode_u64(&[0], 128, &mut Vec::new()).is_ok());
        let err = decode_i64(&[], usize::MAX, &mut Vec::new()).unwrap_err();
        assert!(err.reason.contains("implausible"), "{err}");
    }

    proptest! {
        #[test]
        fn round_trips_i64(values in proptest::collection::vec(any::<i64>(), 0..600)) {
            round_trip_i64(&values);
        }

        #[test]
        fn round_trips_small_i64(values in proptest::collection::vec(-300i64..300, 0..600)) {
            round_trip_i64(&values);
        }

        #[test]
        fn round_trips_u64(values in proptest::collection::vec(any::<u64>(), 0..600)) {
            round_trip_u64(&values);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300), count in 0usize..100_000) {
            let mut out = Vec::new();
            match decode_i64(&data, count, &mut out) {
                Ok(()) => prop_assert_eq!(out.len(), count),
                Err(_) => prop_assert!(out.is_empty()),
            }
            let mut out = Vec::new();
            match decode_u64(&data, count, &mut out) {
                Ok(()) => prop_assert_eq!(out.len(), count),
                Err(_) => prop_assert!(out.is_empty()),
            }
        }
    }
}
