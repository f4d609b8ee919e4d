//! Column chunk compression codecs.
//!
//! A segment stores each column as a sequence of chunks; the chunk header
//! records the [`CodecId`] (one byte), the value count and the byte length,
//! and the codec owns the bytes in between. Codecs therefore do **not** store
//! the value count themselves: every decoder takes it as an argument.
//!
//! | id | [`CodecId`]        | column type | scheme                                                   | byte layout in      |
//! |----|--------------------|-------------|----------------------------------------------------------|---------------------|
//! | 1  | `TimestampGorilla` | `i64` time  | delta-of-delta / common divisor, prefix-coded buckets    | `codec/timestamp.rs` |
//! | 2  | `FloatGorilla`     | `f64`       | Gorilla XOR with leading/trailing-zero window             | `codec/float.rs`     |
//! | 3  | `IntDeltaZigzag`   | `i64`       | delta, zig-zag, bit-packed blocks of 128                  | `codec/integer.rs`   |
//! | 4  | `UintDelta`        | `u64`       | as 3, on the wrapping `u64` difference                    | `codec/integer.rs`   |
//! | 5  | `BoolBitpack`      | `bool`      | one bit a value                                           | `codec/boolean.rs`   |
//! | 6  | `StringDictZstd`   | `String`    | dictionary + bit-packed indices, zstd level 3             | `codec/string.rs`    |
//! | 7  | `FloatDecimal`     | `f64`       | ALP-style `d / 10^e`, exceptions raw, integers as 12      | `codec/decimal.rs`   |
//! | 8  | `FloatRle`         | `f64`       | runs of equal bit patterns (constant = one run)           | `codec/rle.rs`       |
//! | 9  | `IntRle`           | `i64`       | runs: zig-zag varint value delta, varint length           | `codec/rle.rs`       |
//! | 10 | `UintRle`          | `u64`       | as 9                                                      | `codec/rle.rs`       |
//! | 11 | `BoolRle`          | `bool`      | runs: one varint of length and value                      | `codec/rle.rs`       |
//! | 12 | `IntFor`           | `i64`       | frame of reference on values or deltas, blocks of 1024    | `codec/pack.rs`      |
//! | 13 | `UintFor`          | `u64`       | as 12                                                     | `codec/pack.rs`      |
//! | 14 | `TimestampGrid`    | `i64` time  | offsets from `t0 + i * step` ÷ common divisor, as 12      | `codec/grid.rs`      |
//!
//! Writers pick a codec per chunk with the `encode_*_auto` functions
//! (`codec/adaptive.rs`), which measure the candidates for the column type
//! and write the smallest; readers dispatch on the header's id with the
//! `decode_*_any` functions.
//!
//! Rules shared by every codec:
//!
//! - All multi-byte integers are little-endian; bit streams are LSB-first
//!   (see `codec/bits.rs`).
//! - Encoders append to the output vector and never fail. An empty input
//!   encodes to zero bytes.
//! - Decoders append exactly `count` values or return a [`CodecError`] and
//!   leave the output vector as it was. They never panic, whatever the bytes
//!   and the count, and they reject a count the data cannot possibly hold
//!   before allocating, so memory stays proportional to the input.
//! - A chunk must be consumed exactly: leftover bytes after the last value
//!   are an error ("trailing bytes"), as is needing more bytes than given
//!   ("truncated"). Unused bits in the last byte of a bit stream are ignored.

use std::fmt;

mod adaptive;
mod bits;
mod boolean;
mod decimal;
mod float;
mod grid;
mod integer;
mod pack;
mod rle;
mod stage;
mod string;
mod timestamp;

pub use adaptive::{
    decode_bool_any, decode_f64_any, decode_i64_any, decode_timestamps_any, decode_u64_any, encode_bool_auto,
    encode_f64_auto, encode_i64_auto, encode_timestamps_auto, encode_u64_auto,
};

pub use boolean::{decode_bool, encode_bool};
pub use decimal::{decode_f64_decimal, encode_f64_decimal};
pub use float::{decode_f64, encode_f64};
pub use grid::{decode_timestamps_grid, encode_timestamps_grid};
pub use integer::{decode_i64, decode_u64, encode_i64, encode_u64};
pub use pack::{decode_i64_for, decode_u64_for, encode_i64_for, encode_u64_for};
pub use rle::{
    decode_bool_rle, decode_f64_rle, decode_i64_rle, decode_u64_rle, encode_bool_rle, encode_f64_rle, encode_i64_rle,
    encode_u64_rle,
};
pub use stage::{ZSTD_STAGE_LEVEL, ZSTD_STAGE_MIN_BYTES, unzstd_stage, zstd_stage, zstd_stage_limit};
pub use string::{MAX_STRING_PAYLOAD, decode_strings, encode_strings};
pub use timestamp::{decode_timestamps, encode_timestamps};

/// Identifies the encoding of a column chunk; stored as one byte in the
/// segment chunk header. Never renumber: the numbers are part of the file
/// format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum CodecId {
    /// `i64` timestamps, delta-of-delta (see [`encode_timestamps`]).
    TimestampGorilla = 1,
    /// `f64` values, Gorilla XOR (see [`encode_f64`]).
    FloatGorilla = 2,
    /// `i64` values, delta + zig-zag + bit-packing (see [`encode_i64`]).
    IntDeltaZigzag = 3,
    /// `u64` values, wrapping delta + zig-zag + bit-packing (see [`encode_u64`]).
    UintDelta = 4,
    /// `bool` values, one bit each (see [`encode_bool`]).
    BoolBitpack = 5,
    /// Strings, dictionary + zstd (see [`encode_strings`]).
    StringDictZstd = 6,
    /// `f64` values as decimal integers with exceptions (see [`encode_f64_decimal`]).
    FloatDecimal = 7,
    /// `f64` values, run-length (see [`encode_f64_rle`]).
    FloatRle = 8,
    /// `i64` values, run-length (see [`encode_i64_rle`]).
    IntRle = 9,
    /// `u64` values, run-length (see [`encode_u64_rle`]).
    UintRle = 10,
    /// `bool` values, run-length (see [`encode_bool_rle`]).
    BoolRle = 11,
    /// `i64` values, frame-of-reference bit-packing (see [`encode_i64_for`]).
    IntFor = 12,
    /// `u64` values, frame-of-reference bit-packing (see [`encode_u64_for`]).
    UintFor = 13,
    /// `i64` timestamps as offsets from a regular grid (see [`encode_timestamps_grid`]).
    TimestampGrid = 14,
}

impl CodecId {
    /// Short human-readable name, used in error messages and tooling.
    pub fn name(self) -> &'static str {
        match self {
            CodecId::TimestampGorilla => "timestamp-gorilla",
            CodecId::FloatGorilla => "float-gorilla",
            CodecId::IntDeltaZigzag => "int-delta-zigzag",
            CodecId::UintDelta => "uint-delta",
            CodecId::BoolBitpack => "bool-bitpack",
            CodecId::StringDictZstd => "string-dict-zstd",
            CodecId::FloatDecimal => "float-decimal",
            CodecId::FloatRle => "float-rle",
            CodecId::IntRle => "int-rle",
            CodecId::UintRle => "uint-rle",
            CodecId::BoolRle => "bool-rle",
            CodecId::IntFor => "int-for",
            CodecId::UintFor => "uint-for",
            CodecId::TimestampGrid => "timestamp-grid",
        }
    }
}

impl fmt::Display for CodecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<u8> for CodecId {
    type Error = CodecError;

    /// Parses the codec byte of a chunk header; unknown ids are an error
    /// (most likely a segment written by a newer Telemark, or corruption).
    fn try_from(byte: u8) -> Result<Self, CodecError> {
        Ok(match byte {
            1 => CodecId::TimestampGorilla,
            2 => CodecId::FloatGorilla,
            3 => CodecId::IntDeltaZigzag,
            4 => CodecId::UintDelta,
            5 => CodecId::BoolBitpack,
            6 => CodecId::StringDictZstd,
            7 => CodecId::FloatDecimal,
            8 => CodecId::FloatRle,
            9 => CodecId::IntRle,
            10 => CodecId::UintRle,
            11 => CodecId::BoolRle,
            12 => CodecId::IntFor,
            13 => CodecId::UintFor,
            14 => CodecId::TimestampGrid,
            other => {
                return Err(CodecError {
                    codec: "codec-id",
                    offset: 0,
                    reason: format!(
                        "unknown codec id {other} (this build knows 1..=14); the segment was \
                         written by a newer Telemark or its chunk header is corrupt"
                    ),
                });
            }
        })
    }
}

/// A chunk could not be decoded: its bytes (or the value count recorded for
/// it) are corrupt. `offset` is the byte offset inside the chunk where the
/// problem was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{codec} chunk is malformed at byte {offset}: {reason}")]
pub struct CodecError {
    /// [`CodecId::name`] of the codec that rejected the chunk.
    pub codec: &'static str,
    /// Byte offset inside the chunk where decoding failed.
    pub offset: usize,
    /// What was expected and what was found.
    pub reason: String,
}

impl CodecError {
    pub(crate) fn new(codec: CodecId, offset: usize, reason: impl Into<String>) -> Self {
        CodecError { codec: codec.name(), offset, reason: reason.into() }
    }

    /// The count recorded for a chunk is more than its bytes can hold.
    pub(crate) fn implausible_count(codec: CodecId, count: usize, len: usize, max: usize) -> Self {
        CodecError::new(
            codec,
            0,
            format!(
                "value count {count} is implausible for {len} bytes (at most {max} values fit); \
                 the chunk header's count or length is corrupt"
            ),
        )
    }
}

/// Grows `out` by `count` default values for a decoder to fill in place;
/// returns the index of the first new slot.
///
/// Callers must have bounded `count` by the input size first. Using
/// `try_reserve` turns an allocation failure into an error instead of an
/// abort.
pub(crate) fn grow_for<T: Copy + Default>(codec: CodecId, out: &mut Vec<T>, count: usize) -> Result<usize, CodecError> {
    let start = out.len();
    out.try_reserve(count)
        .map_err(|e| CodecError::new(codec, 0, format!("cannot allocate room for {count} values: {e}")))?;
    out.resize(start + count, T::default());
    Ok(start)
}

/// Appends `count` values decoded by `decode_into` to `out`: rejects a count
/// above `max` (what `data` could hold) before allocating, and leaves `out`
/// as it was when decoding fails.
pub(crate) fn decode_appending<T: Copy + Default>(
    codec: CodecId,
    data: &[u8],
    count: usize,
    max: usize,
    out: &mut Vec<T>,
    decode_into: impl FnOnce(&[u8], &mut [T]) -> Result<(), CodecError>,
) -> Result<(), CodecError> {
    if count > max {
        return Err(CodecError::implausible_count(codec, count, data.len(), max));
    }
    let start = grow_for(codec, out, count)?;
    let result = match out.get_mut(start..) {
        Some(slots) => decode_into(data, slots),
        None => Ok(()),
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn codec_ids_are_stable() {
        let all = [
            (1u8, CodecId::TimestampGorilla),
            (2, CodecId::FloatGorilla),
            (3, CodecId::IntDeltaZigzag),
            (4, CodecId::UintDelta),
            (5, CodecId::BoolBitpack),
            (6, CodecId::StringDictZstd),
            (7, CodecId::FloatDecimal),
            (8, CodecId::FloatRle),
            (9, CodecId::IntRle),
            (10, CodecId::UintRle),
            (11, CodecId::BoolRle),
            (12, CodecId::IntFor),
            (13, CodecId::UintFor),
            (14, CodecId::TimestampGrid),
        ];
        let names: std::collections::HashSet<&str> = all.iter().map(|(_, id)| id.name()).collect();
        assert_eq!(names.len(), all.len(), "codec names are unique");
        for (byte, id) in all {
            assert_eq!(id as u8, byte);
            assert_eq!(CodecId::try_from(byte), Ok(id));
        }
        for byte in [0u8, 15, 200, 255] {
            let err = CodecId::try_from(byte).unwrap_err();
            assert!(err.to_string().contains("unknown codec id"), "{err}");
        }
    }

    /// Flips bytes of valid chunks and decodes them with nearby counts:
    /// reaches deeper decoder states than random bytes do.
    fn decode_mutated(data: &mut [u8], flips: &[(usize, u8)], count: usize) {
        if !data.is_empty() {
            for &(at, xor) in flips {
                let len = data.len();
                data[at % len] ^= xor;
            }
        }
        for n in [count.saturating_sub(1), count, count + 1, count * 2] {
            let mut ts = Vec::new();
            let ok = decode_timestamps(data, n, &mut ts).is_ok();
            assert_eq!(ts.len(), if ok { n } else { 0 });
            let mut fs = Vec::new();
            let ok = decode_f64(data, n, &mut fs).is_ok();
            assert_eq!(fs.len(), if ok { n } else { 0 });
            let _ = decode_i64(data, n, &mut Vec::new());
            let _ = decode_u64(data, n, &mut Vec::new());
            let _ = decode_bool(data, n, &mut Vec::new());
            let _ = decode_strings(data, n, &mut Vec::new());
            for id in (1..=14).filter_map(|b| CodecId::try_from(b).ok()) {
                let mut fs = vec![0.5];
                match decode_f64_any(id, data, n, &mut fs) {
                    Ok(()) => assert_eq!(fs.len(), n + 1),
                    Err(_) => assert_eq!(fs.len(), 1),
                }
                let mut is = vec![7];
                match decode_i64_any(id, data, n, &mut is) {
                    Ok(()) => assert_eq!(is.len(), n + 1),
                    Err(_) => assert_eq!(is.len(), 1),
                }
                let mut ts = Vec::new();
                let ok = decode_timestamps_any(id, data, n, &mut ts).is_ok();
                assert_eq!(ts.len(), if ok { n } else { 0 });
                let mut us = Vec::new();
                let ok = decode_u64_any(id, data, n, &mut us).is_ok();
                assert_eq!(us.len(), if ok { n } else { 0 });
                let mut bs = Vec::new();
                let ok = decode_bool_any(id, data, n, &mut bs).is_ok();
                assert_eq!(bs.len(), if ok { n } else { 0 });
            }
        }
    }

    proptest! {
        #[test]
        fn mutated_chunks_never_panic(
            ints in proptest::collection::vec(any::<i64>(), 0..200),
            small in proptest::collection::vec(-3i64..3, 0..200),
            flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 1..4),
        ) {
            let floats: Vec<f64> = ints.iter().map(|&i| i as f64 / 7.0).collect();
            let bools: Vec<bool> = small.iter().map(|&i| i > 0).collect();
            let strings: Vec<String> = small.iter().map(|i| format!("s{i}")).collect();
            let mut chunks = Vec::new();
            let mut buf = Vec::new();
            encode_timestamps(&ints, &mut buf);
            chunks.push((std::mem::take(&mut buf), ints.len()));
            encode_timestamps(&small, &mut buf);
            chunks.push((std::mem::take(&mut buf), small.len()));
            encode_f64(&floats, &mut buf);
            chunks.push((std::mem::take(&mut buf), floats.len()));
            encode_i64(&small, &mut buf);
            chunks.push((std::mem::take(&mut buf), small.len()));
            encode_u64(&ints.iter().map(|&i| i as u64).collect::<Vec<_>>(), &mut buf);
            chunks.push((std::mem::take(&mut buf), ints.len()));
            encode_bool(&bools, &mut buf);
            chunks.push((std::mem::take(&mut buf), bools.len()));
            encode_strings(&strings, &mut buf);
            chunks.push((std::mem::take(&mut buf), strings.len()));
            // the new codecs, directly and as the chooser picks them
            let decimals: Vec<f64> = small.iter().map(|&i| i as f64 / 100.0 + 72.0).collect();
            let mut mixed = decimals.clone();
            if let Some(v) = mixed.get_mut(small.len() / 2) {
                *v = f64::NAN;
            }
            let runs: Vec<i64> = small.iter().flat_map(|&i| std::iter::repeat_n(i, 5)).collect();
            let unsigned: Vec<u64> = ints.iter().map(|&i| i as u64).collect();
            for values in [&floats, &decimals, &mixed] {
                encode_f64_decimal(values, &mut buf);
                chunks.push((std::mem::take(&mut buf), values.len()));
                encode_f64_rle(values, &mut buf);
                chunks.push((std::mem::take(&mut buf), values.len()));
                encode_f64_auto(values, &mut buf);
                chunks.push((std::mem::take(&mut buf), values.len()));
            }
            for values in [&ints, &small, &runs] {
                encode_i64_for(values, &mut buf);
                chunks.push((std::mem::take(&mut buf), values.len()));
                encode_i64_rle(values, &mut buf);
                chunks.push((std::mem::take(&mut buf), values.len()));
                encode_timestamps_grid(values, &mut buf);
                chunks.push((std::mem::take(&mut buf), values.len()));
                encode_i64_auto(values, &mut buf);
                chunks.push((std::mem::take(&mut buf), values.len()));
                encode_timestamps_auto(values, &mut buf);
                chunks.push((std::mem::take(&mut buf), values.len()));
            }
            encode_u64_for(&unsigned, &mut buf);
            chunks.push((std::mem::take(&mut buf), unsigned.len()));
            encode_u64_rle(&unsigned, &mut buf);
            chunks.push((std::mem::take(&mut buf), unsigned.len()));
            encode_bool_rle(&bools, &mut buf);
            chunks.push((std::mem::take(&mut buf), bools.len()));
            for (mut data, count) in chunks {
                decode_mutated(&mut data, &flips, count);
            }
        }

        #[test]
        fn gorilla_rejects_any_wrong_count(
            ints in proptest::collection::vec(any::<i64>(), 1..100),
            wrong in 0usize..120,
        ) {
            prop_assume!(wrong != ints.len());
            let mut data = Vec::new();
            encode_timestamps(&ints, &mut data);
            prop_assert!(decode_timestamps(&data, wrong, &mut Vec::new()).is_err());
            let floats: Vec<f64> = ints.iter().map(|&i| f64::from_bits(i as u64)).collect();
            data.clear();
            encode_f64(&floats, &mut data);
            prop_assert!(decode_f64(&data, wrong, &mut Vec::new()).is_err());
        }
    }

    #[test]
    fn error_message_names_codec_and_offset() {
        let err = CodecError::new(CodecId::FloatGorilla, 17, "bad window");
        assert_eq!(err.to_string(), "float-gorilla chunk is malformed at byte 17: bad window");
    }
}
