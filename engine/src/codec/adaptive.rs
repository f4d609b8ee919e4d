//! Per-chunk codec choice: measure the candidates on the chunk, write the
//! smallest, and return its [`CodecId`] for the chunk header.
//!
//! | column     | candidates, in tie-break order (fastest decode first)  | how each is measured |
//! |------------|---------------------------------------------------------|----------------------|
//! | `f64`      | `FloatRle`, `FloatDecimal`, `FloatGorilla`              | RLE: exact size by counting runs; decimal: exponent chosen on a sample, then encoded; Gorilla: encoded |
//! | `i64`      | `IntRle`, `IntFor`, `IntDeltaZigzag`                    | RLE and FOR: exact size without writing; delta-zigzag: encoded |
//! | `u64`      | `UintRle`, `UintFor`, `UintDelta`                       | as `i64` |
//! | `bool`     | `BoolRle`, `BoolBitpack`                                | both exact without writing |
//! | timestamps | `TimestampGrid`, `TimestampGorilla`                     | grid: exact size of its best plan; Gorilla: encoded |
//!
//! Three shortcuts keep encoding cheap. RLE is written at once when it is
//! no larger than the smallest chunk any other candidate could produce
//! (Gorilla needs 8 bytes plus a bit a value, the block stream 2 bytes a
//! block of 1024, `IntDeltaZigzag` a byte per 128 values), which never
//! changes the answer; and sizing RLE stops as soon as it loses. For `f64`
//! the decimal codec's sample (ALP-style, see `codec/decimal.rs`) is also
//! encoded with Gorilla: when the decimal estimate is at most half of
//! Gorilla's, and the full decimal chunk confirms it, Gorilla is not encoded
//! at all (sensor decimals: 5 bits against 50); otherwise Gorilla is encoded,
//! and the decimal candidate is encoded
//! only when its estimate is within 20 % of Gorilla's actual size, which
//! skips the full decimal pass on binary floats (random or computed values,
//! where nearly every value would be an exception). These two can pick a
//! chunk a few percent larger than the best when the sample misleads.
//!
//! An empty chunk is zero bytes under every codec; it is reported as the
//! column type's original codec (`FloatGorilla`, `IntDeltaZigzag`,
//! `UintDelta`, `BoolBitpack`, `TimestampGorilla`).
//!
//! The `decode_*_any` functions dispatch on a chunk header's id. Each accepts
//! exactly the ids its `encode_*_auto` can return, so a corrupt id byte or a
//! column-type mix-up is an error rather than garbage values.

use super::decimal::{self, decode_f64_decimal, encode_with_plan};
use super::grid::{GridPlan, decode_timestamps_grid};
use super::pack::{self, decode_i64_for, decode_u64_for, encode_i64_for, encode_u64_for};
use super::rle::{
    self, decode_bool_rle, decode_f64_rle, decode_i64_rle, decode_u64_rle, encode_bool_rle, encode_f64_rle,
    encode_i64_rle, encode_u64_rle,
};
use super::{
    CodecError, CodecId, decode_bool, decode_f64, decode_i64, decode_timestamps, decode_u64, encode_bool, encode_f64,
    encode_i64, encode_timestamps, encode_u64,
};

/// How much larger than Gorilla's chunk the decimal sample estimate may be
/// for the decimal candidate to be encoded and measured.
const DECIMAL_ESTIMATE_MARGIN: f64 = 1.2;

/// Gorilla is not encoded when the decimal estimate is at most this share
/// of Gorilla's, both measured on the same sample.
const GORILLA_SKIP_RATIO: f64 = 0.5;

/// Gorilla's bits a value on the sample runs (without each run's 64-bit
/// first value); `None` when the runs are too short to say.
fn gorilla_sample_bits(sample: &[&[f64]]) -> Option<f64> {
    let mut scratch = Vec::new();
    let mut bits = 0usize;
    let mut counted = 0usize;
    for run in sample.iter().filter(|run| run.len() >= 2) {
        scratch.clear();
        encode_f64(run, &mut scratch);
        bits += (scratch.len() * 8).saturating_sub(64);
        counted += run.len() - 1;
    }
    (counted > 0).then(|| bits as f64 / counted as f64)
}

/// Encodes `f64` values with whichever of `FloatRle`, `FloatDecimal` and
/// `FloatGorilla` is smallest for them, appends the chunk to `out`, and
/// returns the codec used.
///
/// Lossless for every bit pattern, like each candidate. See the module docs
/// of `codec/adaptive.rs` for how the candidates are measured.
pub fn encode_f64_auto(values: &[f64], out: &mut Vec<u8>) -> CodecId {
    if values.is_empty() {
        return CodecId::FloatGorilla;
    }
    let gorilla_floor = 8 + (values.len() - 1).div_ceil(8);
    let block_floor = 3 + 2 * values.len().div_ceil(pack::BLOCK);
    if rle::f64_rle_len(values, gorilla_floor.min(block_floor)).is_some() {
        encode_f64_rle(values, out);
        return CodecId::FloatRle;
    }
    let plan = decimal::plan(values);
    let mut decimal = Vec::new();
    if let Some(plan) = plan
        && let Some(gorilla_estimate) = gorilla_sample_bits(&decimal::sample_runs(values))
        && plan.bits_per_value <= GORILLA_SKIP_RATIO * gorilla_estimate
    {
        // The sample says decimal wins clearly; believe it only if the real
        // decimal chunk confirms it (a sample can miss rare spikes).
        encode_with_plan(values, plan, &mut decimal);
        if 8.0 * decimal.len() as f64 <= GORILLA_SKIP_RATIO * gorilla_estimate * values.len() as f64 {
            return finish_f64(values, out, CodecId::FloatDecimal, decimal);
        }
    }
    let mut gorilla = Vec::new();
    encode_f64(values, &mut gorilla);
    if decimal.is_empty()
        && let Some(plan) = plan
        && plan.bits_per_value * values.len() as f64 <= DECIMAL_ESTIMATE_MARGIN * 8.0 * gorilla.len() as f64
    {
        encode_with_plan(values, plan, &mut decimal);
    }
    if !decimal.is_empty() && decimal.len() <= gorilla.len() {
        finish_f64(values, out, CodecId::FloatDecimal, decimal)
    } else {
        finish_f64(values, out, CodecId::FloatGorilla, gorilla)
    }
}

/// Writes `chunk` (encoded with `id`) unless RLE is no larger.
fn finish_f64(values: &[f64], out: &mut Vec<u8>, id: CodecId, chunk: Vec<u8>) -> CodecId {
    if rle::f64_rle_len(values, chunk.len()).is_some() {
        encode_f64_rle(values, out);
        return CodecId::FloatRle;
    }
    out.extend_from_slice(&chunk);
    id
}

/// Decodes a chunk written by [`encode_f64_auto`] (or by any `f64` codec)
/// given the id from its header; appends `count` values to `out`.
///
/// # Errors
///
/// [`CodecError`] when the codec's decoder rejects the chunk (`out` is then
/// unchanged), or when `id` is not an `f64` codec.
pub fn decode_f64_any(id: CodecId, data: &[u8], count: usize, out: &mut Vec<f64>) -> Result<(), CodecError> {
    match id {
        CodecId::FloatRle => decode_f64_rle(data, count, out),
        CodecId::FloatDecimal => decode_f64_decimal(data, count, out),
        CodecId::FloatGorilla => decode_f64(data, count, out),
        other => Err(wrong_type(other, "f64")),
    }
}

/// Encodes `i64` values with whichever of `IntRle`, `IntFor` and
/// `IntDeltaZigzag` is smallest for them, appends the chunk to `out`, and
/// returns the codec used.
pub fn encode_i64_auto(values: &[i64], out: &mut Vec<u8>) -> CodecId {
    let ids = [CodecId::IntRle, CodecId::IntFor, CodecId::IntDeltaZigzag];
    encode_int_auto(values, out, ids, |v| v, rle::i64_rle_len, encode_i64_rle, encode_i64_for, encode_i64)
}

/// The choice for `i64` and `u64`: `ids` are the RLE, FOR and
/// delta-zigzag codecs of the type.
#[expect(clippy::too_many_arguments, reason = "one generic body for two column types")]
fn encode_int_auto<T: Copy>(
    values: &[T],
    out: &mut Vec<u8>,
    [rle_id, for_id, zigzag_id]: [CodecId; 3],
    to_i64: impl Fn(T) -> i64,
    rle_len: fn(&[T], usize) -> Option<usize>,
    encode_rle: fn(&[T], &mut Vec<u8>),
    encode_for: fn(&[T], &mut Vec<u8>),
    encode_zigzag: fn(&[T], &mut Vec<u8>),
) -> CodecId {
    if values.is_empty() {
        return zigzag_id;
    }
    let floor = values.len().div_ceil(128).min(2 * values.len().div_ceil(pack::BLOCK));
    if rle_len(values, floor).is_some() {
        encode_rle(values, out);
        return rle_id;
    }
    let packed = pack::encoded_len(values, to_i64);
    let mut zigzag = Vec::new();
    encode_zigzag(values, &mut zigzag);
    if rle_len(values, packed.min(zigzag.len())).is_some() {
        encode_rle(values, out);
        rle_id
    } else if packed <= zigzag.len() {
        encode_for(values, out);
        for_id
    } else {
        out.extend_from_slice(&zigzag);
        zigzag_id
    }
}

/// Decodes a chunk written by [`encode_i64_auto`] (or by any `i64` codec
/// but the timestamp ones) given the id from its header; appends `count`
/// values to `out`.
///
/// # Errors
///
/// [`CodecError`] when the codec's decoder rejects the chunk (`out` is then
/// unchanged), or when `id` is not an `i64` codec.
pub fn decode_i64_any(id: CodecId, data: &[u8], count: usize, out: &mut Vec<i64>) -> Result<(), CodecError> {
    match id {
        CodecId::IntRle => decode_i64_rle(data, count, out),
        CodecId::IntFor => decode_i64_for(data, count, out),
        CodecId::IntDeltaZigzag => decode_i64(data, count, out),
        other => Err(wrong_type(other, "i64")),
    }
}

/// Encodes `u64` values with whichever of `UintRle`, `UintFor` and
/// `UintDelta` is smallest for them, appends the chunk to `out`, and
/// returns the codec used.
pub fn encode_u64_auto(values: &[u64], out: &mut Vec<u8>) -> CodecId {
    let ids = [CodecId::UintRle, CodecId::UintFor, CodecId::UintDelta];
    encode_int_auto(values, out, ids, |v| v as i64, rle::u64_rle_len, encode_u64_rle, encode_u64_for, encode_u64)
}

/// Decodes a chunk written by [`encode_u64_auto`] (or by any `u64` codec)
/// given the id from its header; appends `count` values to `out`.
///
/// # Errors
///
/// [`CodecError`] when the codec's decoder rejects the chunk (`out` is then
/// unchanged), or when `id` is not a `u64` codec.
pub fn decode_u64_any(id: CodecId, data: &[u8], count: usize, out: &mut Vec<u64>) -> Result<(), CodecError> {
    match id {
        CodecId::UintRle => decode_u64_rle(data, count, out),
        CodecId::UintFor => decode_u64_for(data, count, out),
        CodecId::UintDelta => decode_u64(data, count, out),
        other => Err(wrong_type(other, "u64")),
    }
}

/// Encodes booleans with whichever of `BoolRle` and `BoolBitpack` is
/// smaller for them, appends the chunk to `out`, and returns the codec used.
pub fn encode_bool_auto(values: &[bool], out: &mut Vec<u8>) -> CodecId {
    if values.is_empty() {
        return CodecId::BoolBitpack;
    }
    if rle::bool_rle_len(values, values.len().div_ceil(8)).is_some() {
        encode_bool_rle(values, out);
        CodecId::BoolRle
    } else {
        encode_bool(values, out);
        CodecId::BoolBitpack
    }
}

/// Decodes a chunk written by [`encode_bool_auto`] (or by any `bool` codec)
/// given the id from its header; appends `count` values to `out`.
///
/// # Errors
///
/// [`CodecError`] when the codec's decoder rejects the chunk (`out` is then
/// unchanged), or when `id` is not a `bool` codec.
pub fn decode_bool_any(id: CodecId, data: &[u8], count: usize, out: &mut Vec<bool>) -> Result<(), CodecError> {
    match id {
        CodecId::BoolRle => decode_bool_rle(data, count, out),
        CodecId::BoolBitpack => decode_bool(data, count, out),
        other => Err(wrong_type(other, "bool")),
    }
}

/// Encodes timestamps with whichever of `TimestampGrid` and
/// `TimestampGorilla` is smaller for them, appends the chunk to `out`, and
/// returns the codec used.
pub fn encode_timestamps_auto(values: &[i64], out: &mut Vec<u8>) -> CodecId {
    let Some(grid) = GridPlan::best(values) else {
        return CodecId::TimestampGorilla;
    };
    let mut gorilla = Vec::new();
    encode_timestamps(values, &mut gorilla);
    if grid.bytes <= gorilla.len() {
        grid.write(out);
        CodecId::TimestampGrid
    } else {
        out.extend_from_slice(&gorilla);
        CodecId::TimestampGorilla
    }
}

/// Decodes a chunk written by [`encode_timestamps_auto`] (or by any
/// timestamp codec) given the id from its header; appends `count`
/// timestamps to `out`.
///
/// # Errors
///
/// [`CodecError`] when the codec's decoder rejects the chunk (`out` is then
/// unchanged), or when `id` is not a timestamp codec.
pub fn decode_timestamps_any(id: CodecId, data: &[u8], count: usize, out: &mut Vec<i64>) -> Result<(), CodecError> {
    match id {
        CodecId::TimestampGrid => decode_timestamps_grid(data, count, out),
        CodecId::TimestampGorilla => decode_timestamps(data, count, out),
        other => Err(wrong_type(other, "timestamp")),
    }
}

fn wrong_type(id: CodecId, column: &str) -> CodecError {
    CodecError::new(
        id,
        0,
        format!(
            "codec {id} cannot hold {column} values; the chunk header's codec id is corrupt or the column \
             type is wrong"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn auto_f64(values: &[f64]) -> CodecId {
        let mut buf = vec![0x55];
        let id = encode_f64_auto(values, &mut buf);
        let mut out = vec![1.5];
        decode_f64_any(id, &buf[1..], values.len(), &mut out).unwrap();
        let bits: Vec<u64> = out[1..].iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{id}");
        // No candidate is smaller than the one chosen, except when the
        // sample misleads the shortcuts (then only by a little).
        let chosen = buf.len() - 1;
        let mut rle = Vec::new();
        encode_f64_rle(values, &mut rle);
        assert!(chosen <= rle.len(), "{id}: {chosen} bytes, RLE {}", rle.len());
        let mut gorilla = Vec::new();
        encode_f64(values, &mut gorilla);
        assert!(chosen as f64 <= gorilla.len() as f64 * 1.05, "{id}: {chosen} bytes, Gorilla {}", gorilla.len());
        let mut decimal = Vec::new();
        decimal::encode_f64_decimal(values, &mut decimal);
        assert!(
            chosen as f64 <= decimal.len() as f64 * DECIMAL_ESTIMATE_MARGIN,
            "{id}: {chosen}, decimal {}",
            decimal.len()
        );
        id
    }

    fn auto_i64(values: &[i64]) -> CodecId {
        let mut data = Vec::new();
        let id = encode_i64_auto(values, &mut data);
        let mut out = vec![3];
        decode_i64_any(id, &data, values.len(), &mut out).unwrap();
        assert_eq!(&out[1..], values);
        for encode in [encode_i64, encode_i64_for, encode_i64_rle] {
            let mut other = Vec::new();
            encode(values, &mut other);
            assert!(data.len() <= other.len(), "{id}: {} bytes, another codec {}", data.len(), other.len());
        }
        let unsigned: Vec<u64> = values.iter().map(|&v| v as u64).collect();
        let mut data = Vec::new();
        let uid = encode_u64_auto(&unsigned, &mut data);
        let mut out = Vec::new();
        decode_u64_any(uid, &data, values.len(), &mut out).unwrap();
        assert_eq!(out, unsigned);
        id
    }

    fn auto_bool(values: &[bool]) -> CodecId {
        let mut data = Vec::new();
        let id = encode_bool_auto(values, &mut data);
        let mut out = vec![true];
        decode_bool_any(id, &data, values.len(), &mut out).unwrap();
        assert_eq!(&out[1..], values);
        id
    }

    fn auto_timestamps(values: &[i64]) -> CodecId {
        let mut data = Vec::new();
        let id = encode_timestamps_auto(values, &mut data);
        let mut out = vec![-1];
        decode_timestamps_any(id, &data, values.len(), &mut out).unwrap();
        assert_eq!(&out[1..], values);
        let mut gorilla = Vec::new();
        encode_timestamps(values, &mut gorilla);
        assert!(data.len() <= gorilla.len());
        id
    }

    /// xorshift64: deterministic test data without a dependency.
    fn noise(seed: u64) -> impl FnMut() -> u64 {
        let mut state = seed | 1;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    fn walk_2dp(n: usize) -> Vec<f64> {
        let mut next = noise(7);
        let mut cents = 7241i64;
        (0..n)
            .map(|_| {
                let r = next();
                cents += if r & 1 == 0 { (r >> 1) as i64 % 10 + 1 } else { -((r >> 1) as i64 % 10) - 1 };
                cents as f64 / 100.0
            })
            .collect()
    }

    #[test]
    fn empty_chunks() {
        assert_eq!(auto_f64(&[]), CodecId::FloatGorilla);
        assert_eq!(auto_i64(&[]), CodecId::IntDeltaZigzag);
        assert_eq!(auto_bool(&[]), CodecId::BoolBitpack);
        assert_eq!(auto_timestamps(&[]), CodecId::TimestampGorilla);
        let mut out = Vec::new();
        assert_eq!(encode_u64_auto(&[], &mut out), CodecId::UintDelta);
        assert!(out.is_empty());
    }

    #[test]
    fn picks_decimal_for_sensor_walks() {
        assert_eq!(auto_f64(&walk_2dp(1000)), CodecId::FloatDecimal);
        assert_eq!(auto_f64(&walk_2dp(100)), CodecId::FloatDecimal);
        // GPS latitude with 5 decimals
        let mut next = noise(3);
        let mut lat = 4_885_712i64;
        let gps: Vec<f64> = (0..1000)
            .map(|_| {
                lat += (next() % 21) as i64 - 10;
                lat as f64 / 1e5
            })
            .collect();
        assert_eq!(auto_f64(&gps), CodecId::FloatDecimal);
    }

    #[test]
    fn picks_gorilla_for_binary_floats() {
        let mut next = noise(11);
        let random: Vec<f64> = (0..1000).map(|_| (next() >> 11) as f64 / (1u64 << 53) as f64).collect();
        assert_eq!(auto_f64(&random), CodecId::FloatGorilla);
        let sine: Vec<f64> = (0..1000).map(|i| (f64::from(i) * 0.01).sin()).collect();
        assert_eq!(auto_f64(&sine), CodecId::FloatGorilla);
    }

    #[test]
    fn mixed_chunks_fall_back() {
        let mut next = noise(13);
        let mut values = walk_2dp(1000);
        // a few glitches: decimal with exceptions
        for i in (0..1000).step_by(50) {
            values[i] = if i % 100 == 0 { f64::NAN } else { (next() >> 11) as f64 / (1u64 << 53) as f64 };
        }
        assert_eq!(auto_f64(&values), CodecId::FloatDecimal);
        // mostly binary: Gorilla
        for (i, v) in values.iter_mut().enumerate() {
            if i % 10 != 0 {
                *v = (next() >> 11) as f64 / (1u64 << 53) as f64;
            }
        }
        assert_eq!(auto_f64(&values), CodecId::FloatGorilla);
    }

    /// Regression (found by `f64_auto_round_trips_mixed_chunks`): rare
    /// huge spikes that the sample misses. The sample says decimal wins by
    /// far, but each spike widens its block to 63 bits a value; the full
    /// decimal chunk must overrule the sample.
    #[test]
    fn spikes_outside_the_sample_do_not_fool_it() {
        let mut values = walk_2dp(3000);
        // the sample runs start at 0, 424, 848, … and hold 32 values each
        for i in [200, 600, 1000, 1400, 1800, 2200, 2600, 2900] {
            values[i] = 8.988998609669515e16;
        }
        assert_eq!(auto_f64(&values), CodecId::FloatGorilla);
    }

    #[test]
    fn picks_rle_for_constants_and_steps() {
        // a decimal constant is 6 bytes as one width-0 block, 10 as a run
        assert_eq!(auto_f64(&[72.41; 1000]), CodecId::FloatDecimal);
        let mut data = Vec::new();
        encode_f64_auto(&[72.41; 1000], &mut data);
        assert_eq!(data.len(), 6);
        assert_eq!(auto_f64(&[std::f64::consts::PI; 1000]), CodecId::FloatRle);
        assert_eq!(auto_f64(&[f64::NAN; 10]), CodecId::FloatRle);
        let steps: Vec<f64> = (0..1000).map(|i| f64::from(i / 250) * 0.5).collect();
        assert_eq!(auto_f64(&steps), CodecId::FloatRle);
        // an integer constant is one width-0 block (2 bytes), a run needs 3
        assert_eq!(auto_i64(&[42; 1000]), CodecId::IntFor);
        let levels: Vec<i64> = (0..1000).map(|i| (i / 250) * 1000 - 7).collect();
        assert_eq!(auto_i64(&levels), CodecId::IntRle);
        assert_eq!(auto_bool(&[true; 1000]), CodecId::BoolRle);
        let status: Vec<bool> = (0..1000).map(|i| (i / 100) % 2 == 0).collect();
        assert_eq!(auto_bool(&status), CodecId::BoolRle);
    }

    #[test]
    fn picks_packing_for_ints_and_bits_for_noisy_bools() {
        let mut next = noise(5);
        let small: Vec<i64> = (0..1000).map(|_| (next() % 2000) as i64 - 1000).collect();
        assert_eq!(auto_i64(&small), CodecId::IntFor);
        let mut c = 5_000_000i64;
        let counter: Vec<i64> = (0..1000)
            .map(|_| {
                c += (next() % 4) as i64;
                c
            })
            .collect();
        assert_eq!(auto_i64(&counter), CodecId::IntFor);
        let flags: Vec<bool> = (0..1000).map(|_| next().is_multiple_of(2)).collect();
        assert_eq!(auto_bool(&flags), CodecId::BoolBitpack);
    }

    #[test]
    fn timestamps_pick_the_grid_when_it_is_smaller() {
        let start = 1_700_000_000_000_000_000i64;
        let regular: Vec<i64> = (0..1000).map(|i| start + i * 10_000_000_000).collect();
        assert_eq!(auto_timestamps(&regular), CodecId::TimestampGrid);
        let mut next = noise(9);
        let jitter: Vec<i64> =
            (0..1000).map(|i| start + i * 10_000_000_000 + ((next() % 11) as i64 - 5) * 1_000_000).collect();
        assert_eq!(auto_timestamps(&jitter), CodecId::TimestampGrid);
        auto_timestamps(&[start]);
        auto_timestamps(&[i64::MIN, i64::MAX, 0, -1]);
    }

    #[test]
    fn wrong_family_is_an_error() {
        let mut out = Vec::new();
        let err = decode_f64_any(CodecId::IntRle, &[], 0, &mut out).unwrap_err();
        assert!(err.reason.contains("cannot hold f64"), "{err}");
        assert!(decode_i64_any(CodecId::TimestampGorilla, &[], 0, &mut Vec::new()).is_err());
        assert!(decode_u64_any(CodecId::IntFor, &[], 0, &mut Vec::new()).is_err());
        assert!(decode_bool_any(CodecId::FloatRle, &[], 0, &mut Vec::new()).is_err());
        assert!(decode_timestamps_any(CodecId::IntDeltaZigzag, &[], 0, &mut Vec::new()).is_err());
    }

    fn special_f64() -> impl Strategy<Value = f64> {
        prop::sample::select(vec![
            f64::from_bits(0x7ff8_0000_dead_beef),
            f64::from_bits(0xfff0_0000_0000_0001),
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            0.0,
            f64::from_bits(1),
            f64::from_bits(0x800f_ffff_ffff_ffff),
            f64::MIN_POSITIVE,
            f64::MAX,
            0.1 + 0.2,
        ])
    }

    proptest! {
        #[test]
        fn f64_auto_round_trips_every_bit_pattern(bits in proptest::collection::vec(any::<u64>(), 0..300)) {
            let values: Vec<f64> = bits.into_iter().map(f64::from_bits).collect();
            auto_f64(&values);
        }

        #[test]
        fn f64_auto_round_trips_mixed_chunks(
            values in proptest::collection::vec(
                prop_oneof![
                    6 => (-100_000i64..100_000).prop_map(|c| c as f64 / 100.0),
                    1 => any::<f64>(),
                    1 => special_f64(),
                ],
                0..1500,
            ),
            repeat in 1usize..20,
        ) {
            let values: Vec<f64> = values.iter().flat_map(|&v| std::iter::repeat_n(v, repeat)).take(3000).collect();
            auto_f64(&values);
        }

        #[test]
        fn int_auto_round_trips(
            values in proptest::collection::vec(
                prop_oneof![any::<i64>(), -50i64..50, Just(i64::MIN), Just(i64::MAX)],
                0..1500,
            ),
            repeat in 1usize..20,
        ) {
            let values: Vec<i64> = values.iter().flat_map(|&v| std::iter::repeat_n(v, repeat)).take(3000).collect();
            auto_i64(&values);
        }

        #[test]
        fn bool_auto_round_trips(values in proptest::collection::vec(any::<bool>(), 0..500), repeat in 1usize..40) {
            let values: Vec<bool> = values.iter().flat_map(|&v| std::iter::repeat_n(v, repeat)).collect();
            auto_bool(&values);
        }

        #[test]
        fn timestamp_auto_round_trips(
            start in any::<i64>(),
            step in prop_oneof![Just(0i64), 1i64..1_000, Just(10_000_000_000), any::<i64>()],
            jitter in proptest::collection::vec(prop_oneof![Just(0i64), -5i64..=5, any::<i64>()], 0..1500),
            unit in prop::sample::select(vec![1i64, 1_000_000]),
        ) {
            let values: Vec<i64> = jitter.iter().enumerate()
                .map(|(i, j)| start.wrapping_add(step.wrapping_mul(i as i64)).wrapping_add(j.wrapping_mul(unit)))
                .collect();
            auto_timestamps(&values);
        }
    }
}
