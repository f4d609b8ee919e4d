//! `IntFor` (codec id 12) for `i64` and `UintFor` (codec id 13) for `u64`:
//! frame-of-reference bit packing, of the values themselves or of their
//! deltas, chosen per block of 1024.
//!
//! The same block stream is the integer stage of `FloatDecimal`
//! (`codec/decimal.rs`) and `TimestampGrid` (`codec/grid.rs`).
//!
//! # Byte layout
//!
//! A `u64` value is handled as the `i64` with the same bits; all arithmetic
//! wraps in 64 bits, so every sequence round-trips. The values are cut into
//! blocks of 1024 (the last block holds the remaining `count % 1024` when
//! that is not zero). Each block is, byte-aligned, one of:
//!
//! | kind  | header byte | then                                                                  |
//! |-------|-------------|-----------------------------------------------------------------------|
//! | FOR   | `w`         | zig-zag varint `base`; `n` values `v - base`, `w` bits each            |
//! | delta | `0x80 \| w` | zig-zag varint `v[0]`; zig-zag varint `m`; `n - 1` values `(v[i] - v[i-1]) - m`, `w` bits each |
//!
//! where `n` is the block's value count, `w` is 0..=64, the packed values are
//! an LSB-first bit stream (see `codec/bits.rs`) zero-padded to a whole byte,
//! and varints are LEB128 (zig-zag: `0, -1, 1, …` → `0, 1, 2, …`). The
//! encoder takes `base` as the block's minimum and `m` as the minimum delta,
//! so all packed values are non-negative offsets and `w` is the bit width of
//! the largest one; it writes a delta block only when that is strictly
//! smaller than the FOR block, because FOR blocks decode without a serial
//! dependency. A block of equal values is thus the header byte and the
//! base, and a block with constant increments the header byte and two
//! varints.
//!
//! Header bytes with `w > 64` are rejected, as are bytes left over after
//! the last block. An empty chunk (count 0) is zero bytes.
//!
//! Why not zig-zag deltas as in `IntDeltaZigzag`: the offset from the
//! minimum delta needs at most the same number of bits and one fewer for
//! one-sided deltas (a counter's 1..=10 increments pack in 4 bits, not 5).
//! Why 1024: the header and varints of a block (a few bytes) cost under
//! 0.05 bits a value, while one outlier widens only its own block. Measured
//! on the codec benchmark data (`benches/codecs.rs`, chunks of 10 000),
//! blocks of 256 cost 2–3 % more on the decimal sensor walks and save 2 % on
//! irregular timestamps; blocks of 4096 save under 1 % on the walks and cost
//! 2 % more on irregular timestamps.

use super::bits::{BitReader, BitWriter, low_mask, read_uvarint, unzigzag, write_uvarint, zigzag};
use super::{CodecError, CodecId, decode_appending};

/// Values per block.
pub(crate) const BLOCK: usize = 1024;

/// Set in a block header byte for a delta block.
const DELTA_FLAG: u8 = 0x80;

/// Fewest bytes a block can take: header byte plus one-byte base varint.
const MIN_BLOCK_BYTES: usize = 2;

/// Widest packing the decoder unpacks with one 8-byte load a value (the value
/// plus up to 7 bits of misalignment must fit in 64 bits).
const MAX_FAST_WIDTH: u32 = 56;

/// The most values a block stream of `len` bytes can hold.
pub(crate) fn max_values(len: usize) -> usize {
    (len / MIN_BLOCK_BYTES).saturating_mul(BLOCK)
}

/// Bits needed to hold `x`.
#[inline(always)]
fn width(x: u64) -> u32 {
    64 - x.leading_zeros()
}

/// Bytes of `x` as a LEB128 varint.
#[inline(always)]
pub(crate) fn varint_len(x: u64) -> usize {
    (width(x).max(1) as usize).div_ceil(7)
}

/// Encodes `i64` values with `IntFor` and appends them to `out`.
///
/// Best for small random integers (status codes, levels) and for series
/// whose deltas are small and one-sided. Byte layout: module docs of
/// `codec/pack.rs`.
pub fn encode_i64_for(values: &[i64], out: &mut Vec<u8>) {
    encode_blocks(values, |v| v, out);
}

/// Decodes `count` values written by [`encode_i64_for`] from `data` (exactly
/// the encoded bytes) and appends them to `out`.
///
/// On error `out` is left unchanged. A count larger than `data` can hold
/// (more than `512 * data.len()`) is rejected before allocating.
///
/// # Errors
///
/// [`CodecError`] when a block is truncated or wider than 64 bits, or bytes
/// are left after the last block.
pub fn decode_i64_for(data: &[u8], count: usize, out: &mut Vec<i64>) -> Result<(), CodecError> {
    decode_chunk(CodecId::IntFor, data, count, out, |v| v)
}

/// Encodes `u64` values with `UintFor` and appends them to `out`.
///
/// Same layout as [`encode_i64_for`] on the values' bits read as `i64`.
pub fn encode_u64_for(values: &[u64], out: &mut Vec<u8>) {
    encode_blocks(values, |v| v as i64, out);
}

/// Decodes `count` values written by [`encode_u64_for`] from `data` (exactly
/// the encoded bytes) and appends them to `out`.
///
/// On error `out` is left unchanged. A count larger than `data` can hold
/// (more than `512 * data.len()`) is rejected before allocating.
///
/// # Errors
///
/// [`CodecError`] when a block is truncated or wider than 64 bits, or bytes
/// are left after the last block.
pub fn decode_u64_for(data: &[u8], count: usize, out: &mut Vec<u64>) -> Result<(), CodecError> {
    decode_chunk(CodecId::UintFor, data, count, out, |v| v as u64)
}

fn decode_chunk<T: Copy + Default>(
    id: CodecId,
    data: &[u8],
    count: usize,
    out: &mut Vec<T>,
    from_i64: impl Fn(i64) -> T,
) -> Result<(), CodecError> {
    decode_appending(id, data, count, max_values(data.len()), out, |data, slots| {
        let mut pos = 0;
        decode_blocks(id, data, &mut pos, slots, from_i64)?;
        expect_end(id, data, pos)
    })
}

/// Checks that a chunk ends at `pos`.
pub(crate) fn expect_end(id: CodecId, data: &[u8], pos: usize) -> Result<(), CodecError> {
    if pos == data.len() {
        Ok(())
    } else {
        Err(CodecError::new(
            id,
            pos,
            format!(
                "{} trailing bytes after the last value (chunk length or value count is wrong)",
                data.len().saturating_sub(pos)
            ),
        ))
    }
}

/// Appends the block stream of `values` (mapped to `i64` by `to_i64`).
pub(crate) fn encode_blocks<T: Copy>(values: &[T], to_i64: impl Fn(T) -> i64, out: &mut Vec<u8>) {
    let mut block = [0i64; BLOCK];
    for chunk in values.chunks(BLOCK) {
        for (slot, &v) in block.iter_mut().zip(chunk) {
            *slot = to_i64(v);
        }
        if let Some(filled) = block.get(..chunk.len()) {
            encode_block(filled, out);
        }
    }
}

/// How one block is best written.
#[derive(Debug, Clone, Copy)]
struct BlockPlan {
    delta: bool,
    /// Bit width of the packed values.
    width: u32,
    /// `base` for FOR, minimum delta `m` for delta blocks.
    reference: i64,
    /// Encoded size in bytes.
    bytes: usize,
}

/// Measures both block kinds; ties go to FOR.
fn plan_block(block: &[i64]) -> Option<BlockPlan> {
    let (&first, rest) = block.split_first()?;
    let (mut lo, mut hi) = (first, first);
    let (mut dlo, mut dhi) = (i64::MAX, i64::MIN);
    let mut prev = first;
    for &v in rest {
        lo = lo.min(v);
        hi = hi.max(v);
        let d = v.wrapping_sub(prev);
        prev = v;
        dlo = dlo.min(d);
        dhi = dhi.max(d);
    }
    let w_for = width(hi.wrapping_sub(lo) as u64);
    let for_bytes = 1 + varint_len(zigzag(lo)) + (block.len() * w_for as usize).div_ceil(8);
    let for_plan = BlockPlan { delta: false, width: w_for, reference: lo, bytes: for_bytes };
    if rest.is_empty() {
        return Some(for_plan);
    }
    let w_delta = width(dhi.wrapping_sub(dlo) as u64);
    let delta_bytes =
        1 + varint_len(zigzag(first)) + varint_len(zigzag(dlo)) + (rest.len() * w_delta as usize).div_ceil(8);
    Some(if delta_bytes < for_bytes {
        BlockPlan { delta: true, width: w_delta, reference: dlo, bytes: delta_bytes }
    } else {
        for_plan
    })
}

/// Encoded size of the block stream of `values` (mapped to `i64` by
/// `to_i64`), without writing it.
pub(crate) fn encoded_len<T: Copy>(values: &[T], to_i64: impl Fn(T) -> i64) -> usize {
    let mut block = [0i64; BLOCK];
    let mut bytes = 0;
    for chunk in values.chunks(BLOCK) {
        for (slot, &v) in block.iter_mut().zip(chunk) {
            *slot = to_i64(v);
        }
        bytes += block.get(..chunk.len()).and_then(plan_block).map_or(0, |p| p.bytes);
    }
    bytes
}

fn encode_block(block: &[i64], out: &mut Vec<u8>) {
    let Some(plan) = plan_block(block) else {
        return;
    };
    let Some((&first, rest)) = block.split_first() else {
        return;
    };
    out.reserve(plan.bytes);
    // width <= 64 fits the low seven bits.
    if plan.delta {
        out.push(DELTA_FLAG | plan.width as u8);
        write_uvarint(out, zigzag(first));
        write_uvarint(out, zigzag(plan.reference));
        if plan.width > 0 {
            let mut w = BitWriter::new(out);
            let mut prev = first;
            for &v in rest {
                w.write(v.wrapping_sub(prev).wrapping_sub(plan.reference) as u64, plan.width);
                prev = v;
            }
            w.finish();
        }
    } else {
        out.push(plan.width as u8);
        write_uvarint(out, zigzag(plan.reference));
        if plan.width > 0 {
            let mut w = BitWriter::new(out);
            for &v in block {
                w.write(v.wrapping_sub(plan.reference) as u64, plan.width);
            }
            w.finish();
        }
    }
}

fn truncated(id: CodecId, pos: usize, what: &str, len: usize) -> CodecError {
    CodecError::new(id, pos, format!("truncated: expected {what}, the chunk has {len} bytes"))
}

/// Decodes `slots.len()` values from the block stream at `data[*pos..]`,
/// mapping each with `from_i64`, and advances `*pos` past the last block.
#[inline(always)]
pub(crate) fn decode_blocks<T: Copy>(
    id: CodecId,
    data: &[u8],
    pos: &mut usize,
    slots: &mut [T],
    from_i64: impl Fn(i64) -> T,
) -> Result<(), CodecError> {
    let mut reader = BlockReader::new(id, data, *pos, slots.len());
    for block in slots.chunks_mut(BLOCK) {
        reader.next_block(block, &from_i64)?;
    }
    *pos = reader.pos;
    Ok(())
}

/// Reads a block stream one block at a time, reusing its buffers.
#[derive(Debug)]
pub(crate) struct BlockReader<'a> {
    id: CodecId,
    data: &'a [u8],
    /// Offset in `data` of the next block.
    pos: usize,
    /// The unpacked values of the current block.
    offsets: Vec<u64>,
    /// A zero-padded copy of a block's packed bytes, for the last block when
    /// fewer than 8 bytes follow it.
    padded: Vec<u8>,
}

impl<'a> BlockReader<'a> {
    /// Starts reading at `data[pos..]` a stream of `count` values.
    pub(crate) fn new(id: CodecId, data: &'a [u8], pos: usize, count: usize) -> Self {
        BlockReader { id, data, pos, offsets: vec![0; count.min(BLOCK)], padded: Vec::new() }
    }

    /// Offset in the data just past the blocks read so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Decodes the next block, of `block.len()` values (`BLOCK`, or fewer
    /// for the last block), mapping each with `from_i64`.
    #[inline(always)]
    pub(crate) fn next_block<T: Copy>(
        &mut self,
        block: &mut [T],
        from_i64: impl Fn(i64) -> T,
    ) -> Result<(), CodecError> {
        let (id, data) = (self.id, self.data);
        let at = self.pos;
        let Some(&header) = data.get(at) else {
            return Err(truncated(id, at, "a block header byte", data.len()));
        };
        let delta = header & DELTA_FLAG != 0;
        let width = u32::from(header & !DELTA_FLAG);
        if width > 64 {
            return Err(CodecError::new(id, at, format!("block bit width {width} is larger than 64")));
        }
        let mut pos = at + 1;
        let Some(base) = read_uvarint(data, &mut pos).map(unzigzag) else {
            return Err(truncated(id, pos, "a block base varint", data.len()));
        };
        let (reference, packed_count) = if delta {
            let Some(m) = read_uvarint(data, &mut pos).map(unzigzag) else {
                return Err(truncated(id, pos, "a block delta varint", data.len()));
            };
            (m, block.len().saturating_sub(1))
        } else {
            (base, block.len())
        };
        // packed_count <= 1024 and width <= 64: no overflow.
        let nbytes = (packed_count * width as usize).div_ceil(8);
        let end = pos.saturating_add(nbytes);
        if end > data.len() {
            return Err(CodecError::new(
                id,
                pos,
                format!(
                    "truncated: a block of {} values at {width} bits needs {nbytes} bytes, {} remain",
                    block.len(),
                    data.len().saturating_sub(pos)
                ),
            ));
        }
        // Unpacking loads 8 bytes at a time and masks off what belongs to the
        // next value or block, so it may read up to 8 bytes past the packed
        // ones: straight from the chunk when they exist, from a padded copy
        // otherwise.
        let source = match data.get(pos..end + 8) {
            Some(with_slack) => with_slack,
            None => {
                self.padded.clear();
                self.padded.extend_from_slice(data.get(pos..end).unwrap_or(&[]));
                self.padded.extend_from_slice(&[0; 8]);
                &self.padded
            }
        };
        self.pos = end;
        let offsets = self.offsets.get_mut(..packed_count).unwrap_or(&mut []);
        unpack(source, nbytes, width, offsets);
        if delta {
            let Some((first, rest)) = block.split_first_mut() else {
                return Ok(());
            };
            *first = from_i64(base);
            let mut prev = base;
            for (slot, &u) in rest.iter_mut().zip(offsets.iter()) {
                prev = prev.wrapping_add(reference.wrapping_add(u as i64));
                *slot = from_i64(prev);
            }
        } else if width == 0 {
            block.fill(from_i64(base));
        } else {
            for (slot, &u) in block.iter_mut().zip(offsets.iter()) {
                *slot = from_i64(reference.wrapping_add(u as i64));
            }
        }
        Ok(())
    }
}

/// Unpacks `out.len()` values of `width` bits from the first `nbytes` bytes
/// of `source`, which has at least 8 more bytes after them.
#[inline(always)]
fn unpack(source: &[u8], nbytes: usize, width: u32, out: &mut [u64]) {
    if width == 0 {
        out.fill(0);
        return;
    }
    if width > MAX_FAST_WIDTH {
        let mut r = BitReader::new(source.get(..nbytes).unwrap_or(&[]));
        for slot in out.iter_mut() {
            *slot = r.read(width);
        }
        return;
    }
    // Every value is one unaligned 8-byte load: no dependency between
    // values. A copy per width lets the compiler turn the offsets and shifts
    // of each group of 8 values (`width` bytes) into constants.
    macro_rules! dispatch {
        ($($w:literal)*) => {
            match width {
                $($w => unpack_fixed::<$w>(source, out),)*
                _ => {}
            }
        };
    }
    dispatch!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28
        29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56);
}

#[inline(always)]
fn load_le(source: &[u8], at: usize) -> u64 {
    source.get(at..).and_then(|rest| rest.first_chunk::<8>()).map_or(0, |w| u64::from_le_bytes(*w))
}

/// [`unpack`] for one width `W` in 1..=56.
#[inline(never)]
fn unpack_fixed<const W: usize>(source: &[u8], out: &mut [u64]) {
    let mask = low_mask(W as u32);
    let mut groups = out.chunks_exact_mut(8);
    let mut at = 0usize;
    for group in groups.by_ref() {
        for (i, slot) in group.iter_mut().enumerate() {
            let bit = i * W;
            *slot = (load_le(source, at + bit / 8) >> (bit % 8)) & mask;
        }
        at += W;
    }
    for (i, slot) in groups.into_remainder().iter_mut().enumerate() {
        let bit = i * W;
        *slot = (load_le(source, at + bit / 8) >> (bit % 8)) & mask;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip_i64(values: &[i64]) -> Vec<u8> {
        let mut buf = vec![3];
        encode_i64_for(values, &mut buf);
        let data = &buf[1..];
        assert_eq!(data.len(), encoded_len(values, |v| v));
        let mut out = vec![-1];
        decode_i64_for(data, values.len(), &mut out).unwrap();
        assert_eq!(&out[1..], values);
        data.to_vec()
    }

    fn round_trip_u64(values: &[u64]) -> Vec<u8> {
        let mut buf = vec![3];
        encode_u64_for(values, &mut buf);
        let mut out = vec![1];
        decode_u64_for(&buf[1..], values.len(), &mut out).unwrap();
        assert_eq!(&out[1..], values);
        buf[1..].to_vec()
    }

    #[test]
    fn extremes() {
        assert!(round_trip_i64(&[]).is_empty());
        assert!(round_trip_u64(&[]).is_empty());
        round_trip_i64(&[0]);
        round_trip_i64(&[i64::MIN]);
        round_trip_i64(&[i64::MAX, i64::MIN]);
        round_trip_i64(&[i64::MIN, i64::MAX, i64::MIN, 0, -1, 1, i64::MAX, i64::MAX]);
        round_trip_u64(&[u64::MAX]);
        round_trip_u64(&[0, u64::MAX, 0, u64::MAX, 1, u64::MAX - 1, 0, 1 << 63, (1 << 63) - 1]);
    }

    #[test]
    fn block_kinds_and_sizes() {
        // small random ints: FOR, 11 bits a value
        let v: Vec<i64> =
            (0..1024u64).map(|i| ((i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) % 2000) as i64 - 1000).collect();
        let data = round_trip_i64(&v);
        assert_eq!(data[0], 11);
        assert_eq!(data.len(), 1 + varint_len(zigzag(*v.iter().min().unwrap())) + 1024 * 11 / 8);
        // a counter with increments 1..=10: delta, 4 bits a value
        let mut c = 1_000_000i64;
        let v: Vec<i64> = (0..1024)
            .map(|i| {
                c += 1 + (i * 13) % 10;
                c
            })
            .collect();
        let data = round_trip_i64(&v);
        assert_eq!(data[0], DELTA_FLAG | 4);
        assert_eq!(data.len(), 1 + 3 + 1 + (1023 * 4usize).div_ceil(8));
        // a constant: one FOR block of width 0
        assert_eq!(round_trip_i64(&[-5; 1000]), vec![0, zigzag(-5) as u8]);
        // an arithmetic sequence: one delta block of width 0
        let v: Vec<i64> = (0..3000).map(|i| 7 * i).collect();
        // (blocks start at 0, 7168 and 14336: 1-, 2- and 3-byte varints)
        assert_eq!(round_trip_i64(&v).len(), 3 + 4 + 5);
    }

    #[test]
    fn block_boundaries() {
        for n in [1usize, 2, 1023, 1024, 1025, 2047, 2048, 2049, 5000] {
            let v: Vec<i64> = (0..n as i64).map(|i| i * i - 100).collect();
            round_trip_i64(&v);
            let u: Vec<u64> = (0..n as u64).map(|i| u64::MAX - i * 3).collect();
            round_trip_u64(&u);
        }
    }

    #[test]
    fn every_width() {
        for w in 0..=64u32 {
            let top = low_mask(w);
            let v: Vec<i64> = (0..300u64).map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) & top) as i64).collect();
            round_trip_i64(&v);
            let mut sorted = v.clone();
            sorted.sort_unstable();
            round_trip_i64(&sorted);
        }
    }

    #[test]
    fn truncation_and_trailing_bytes_are_errors() {
        let v: Vec<i64> = (0..3000).map(|i| i * i - 5000 + (i % 7) * 1000).collect();
        let mut data = Vec::new();
        encode_i64_for(&v, &mut data);
        for cut in 0..data.len() {
            let mut out = vec![4];
            assert!(decode_i64_for(&data[..cut], v.len(), &mut out).is_err(), "cut {cut}");
            assert_eq!(out, vec![4]);
        }
        let mut longer = data.clone();
        longer.push(0);
        assert!(decode_i64_for(&longer, v.len(), &mut Vec::new()).is_err());
    }

    #[test]
    fn bad_width_and_implausible_count() {
        assert!(decode_u64_for(&[65, 0], 1, &mut Vec::new()).is_err());
        assert!(decode_u64_for(&[0x80 | 65, 0, 0], 2, &mut Vec::new()).is_err());
        assert!(decode_u64_for(&[0, 0], 1025, &mut Vec::new()).is_err());
        assert!(decode_u64_for(&[0, 0], 1024, &mut Vec::new()).is_ok());
        let err = decode_i64_for(&[], usize::MAX, &mut Vec::new()).unwrap_err();
        assert!(err.reason.contains("implausible"), "{err}");
    }

    proptest! {
        #[test]
        fn round_trips_i64(values in proptest::collection::vec(any::<i64>(), 0..2100)) {
            round_trip_i64(&values);
        }

        #[test]
        fn round_trips_small_and_walks(
            steps in proptest::collection::vec(-300i64..300, 0..2100),
            walk in any::<bool>(),
        ) {
            let values: Vec<i64> = if walk {
                steps.iter().scan(0i64, |acc, s| { *acc += s; Some(*acc) }).collect()
            } else {
                steps
            };
            round_trip_i64(&values);
        }

        #[test]
        fn round_trips_u64(values in proptest::collection::vec(any::<u64>(), 0..2100)) {
            round_trip_u64(&values);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300), count in 0usize..100_000) {
            let mut out = Vec::new();
            match decode_i64_for(&data, count, &mut out) {
                Ok(()) => prop_assert_eq!(out.len(), count),
                Err(_) => prop_assert!(out.is_empty()),
            }
            let mut out = Vec::new();
            match decode_u64_for(&data, count, &mut out) {
                Ok(()) => prop_assert_eq!(out.len(), count),
                Err(_) => prop_assert!(out.is_empty()),
            }
        }
    }
}
