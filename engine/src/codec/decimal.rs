//! `FloatDecimal` (codec id 7): ALP-style decimal compression of `f64`.
//!
//! Sensors send decimals (`72.41`, `0.5`, `48.85712`), which are awkward
//! binary fractions: Gorilla's XOR sees noise in every mantissa bit. Like
//! ALP (Afroozeh, Kuffó and Boncz, SIGMOD 2024) this codec finds one
//! exponent `e` for the chunk such that each value is an integer `d`
//! divided by `10^e`, checks that the value comes back bit for bit, and
//! bit-packs the integers. Values that do not come back — NaNs, `-0.0`,
//! infinities, subnormals, values with more digits than the rest — are
//! stored raw as exceptions, so the codec is lossless for every bit pattern.
//!
//! # Byte layout
//!
//! An empty chunk (count 0) is zero bytes. Otherwise:
//!
//! | bytes       | content |
//! |-------------|---------|
//! | 1           | `e`, the exponent, 0..=18 |
//! | 1           | `f`, the factor exponent, 0..=18 |
//! | 1..=10      | `x`, the number of exceptions, LEB128 varint, `x ≤ count` |
//! | `x` varints | exception positions, strictly increasing and `< count`: the first as is, then each as the gap to the previous one minus 1 |
//! | `8 * x`     | the exceptions' bits (`f64::to_bits`), `u64` little-endian each, in position order |
//! | rest        | the `count` integers `d`, as the block stream of `codec/pack.rs` (frame of reference or delta, bit-packed, blocks of 1024) |
//!
//! Value `i` is `(d[i] as f64 * 10^f) / 10^e`, evaluated in IEEE-754 double
//! precision with round-to-nearest: the product is exact while
//! `|d * 10^f| < 2^53`, and the quotient is the correctly rounded `d / 10^e`,
//! which is exactly the `f64` that parsing the decimal text gives. Then each
//! exception overwrites its position. The encoder writes the previous `d`
//! (the next one for leading exceptions) at an exception's position, so it
//! costs nothing in a delta block and does not widen a FOR block.
//!
//! Using division rather than ALP's multiplication by the inexact `10^-e`
//! means every decimal with at most 15 significant digits round-trips for
//! the right `e`, so exceptions stay rare without ALP's search over `(e, f)`
//! pairs. The factor only matters for whole numbers with trailing zeros
//! (`1 500 000.0` is `15` with `f = 5`, and `1e20` fits only with a factor);
//! the encoder sets at most one of `e` and `f`, the decoder accepts both.
//!
//! # Choosing `e` and `f`
//!
//! The encoder samples the chunk the way ALP's second level does: the whole
//! chunk when it holds at most 256 values, otherwise eight runs of 32
//! consecutive values spread evenly over it (consecutive, so delta widths
//! can be measured). For up to 64 of the sampled values it finds the
//! smallest `e` at which the value round-trips, and for whole numbers the
//! largest `f`; each distinct answer is a candidate, plus `e = f = 0`. Each
//! candidate is then scored on the whole sample as the packed bits (the
//! narrower of frame of reference and delta, per sample run) plus 72 bits a
//! exception, and the cheapest wins (ties: smaller `e`, then smaller `f`).

use super::bits::{read_uvarint, write_uvarint};
use super::pack::{self, expect_end};
use super::{CodecError, CodecId, decode_appending};

const ID: CodecId = CodecId::FloatDecimal;

/// `10^i` for `i` in 0..=18, all exact in `f64`.
const POW10: [f64; 19] =
    [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18];

/// Largest exponent and factor exponent.
const MAX_EXPONENT: u8 = 18;

/// Bytes before the first exception position: `e`, `f`, one-byte `x`.
const MIN_HEADER_BYTES: usize = 3;

/// Estimated cost of one exception in bits: its raw value and a position.
const EXCEPTION_BITS: u64 = 72;

/// Chunks up to this size are sampled whole.
const SAMPLE_WHOLE: usize = 256;
/// Otherwise this many runs of [`SAMPLE_RUN`] consecutive values.
const SAMPLE_RUNS: usize = 8;
const SAMPLE_RUN: usize = 32;
/// Sampled values whose own best exponent becomes a candidate.
const CANDIDATE_PROBES: usize = 64;

/// `1.5 * 2^52`: adding and subtracting it rounds a double of magnitude
/// below `2^51` to the nearest integer (ties to even) without a libm call.
const ROUNDING_MAGIC: f64 = 6_755_399_441_055_744.0;
const ROUNDING_LIMIT: f64 = 2_251_799_813_685_248.0; // 2^51

/// Value of the integer `d` at factor multiplier `mul = 10^f` and divisor
/// `div = 10^e`. The encoder's check and the decoder must evaluate exactly
/// this expression (multiplying or dividing by an exact 1.0 is a no-op, so
/// the decoder may skip it).
#[inline(always)]
fn decimal_value(d: i64, mul: f64, div: f64) -> f64 {
    (d as f64 * mul) / div
}

/// The integer `d` that represents `v` at `(e, f)`, if `v` round-trips.
#[inline(always)]
fn to_decimal(v: f64, e: u8, f: u8) -> Option<i64> {
    let div = POW10.get(usize::from(e)).copied()?;
    let mul = POW10.get(usize::from(f)).copied()?;
    let x = v * div / mul;
    let rounded = if x.abs() < ROUNDING_LIMIT { (x + ROUNDING_MAGIC) - ROUNDING_MAGIC } else { x };
    // Saturating for huge values and 0 for NaN: the check below rejects both.
    let d = rounded as i64;
    (decimal_value(d, mul, div).to_bits() == v.to_bits()).then_some(d)
}

/// The exponent and factor a chunk is written with, and what the sample
/// says it will cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DecimalPlan {
    e: u8,
    f: u8,
    /// Estimated bits a value (packed integer plus exception share).
    pub(crate) bits_per_value: f64,
}

/// The sample: runs of consecutive values (see the module docs).
pub(crate) fn sample_runs(values: &[f64]) -> Vec<&[f64]> {
    let n = values.len();
    if n <= SAMPLE_WHOLE {
        return vec![values];
    }
    (0..SAMPLE_RUNS)
        .filter_map(|i| {
            let start = i * (n - SAMPLE_RUN) / (SAMPLE_RUNS - 1);
            values.get(start..start + SAMPLE_RUN)
        })
        .collect()
}

/// Candidate `(e, f)` pairs from the best exponent of individual values.
fn candidates(sample: &[&[f64]]) -> Vec<(u8, u8)> {
    let mut exponents = 1u32; // e = 0 is always a candidate
    let mut factors = 0u32;
    let per_run = CANDIDATE_PROBES.div_ceil(sample.len().max(1));
    for &v in sample.iter().flat_map(|run| run.iter().step_by((run.len() / per_run).max(1))) {
        if let Some(e) = (0..=MAX_EXPONENT).find(|&e| to_decimal(v, e, 0).is_some()) {
            exponents |= 1 << e;
        }
        if v.fract() == 0.0
            && v != 0.0
            && let Some(f) = (1..=MAX_EXPONENT).rev().find(|&f| to_decimal(v, 0, f).is_some())
        {
            factors |= 1 << f;
        }
    }
    let by_exponent = (0..=MAX_EXPONENT).filter(|e| exponents & (1 << e) != 0).map(|e| (e, 0));
    let by_factor = (1..=MAX_EXPONENT).filter(|f| factors & (1 << f) != 0).map(|f| (0, f));
    by_exponent.chain(by_factor).collect()
}

/// Estimated bits to write the sample at `(e, f)`; `None` as soon as they
/// exceed `bound`.
fn sample_cost(sample: &[&[f64]], e: u8, f: u8, bound: u64) -> Option<u64> {
    let mut bits = 0u64;
    for run in sample {
        let mut exceptions = 0u64;
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        let (mut dlo, mut dhi) = (i64::MAX, i64::MIN);
        let mut prev: Option<i64> = None;
        for &v in run.iter() {
            match to_decimal(v, e, f) {
                Some(d) => {
                    lo = lo.min(d);
                    hi = hi.max(d);
                    if let Some(p) = prev {
                        let delta = d.wrapping_sub(p);
                        dlo = dlo.min(delta);
                        dhi = dhi.max(delta);
                    }
                    prev = Some(d);
                }
                None => exceptions += 1,
            }
        }
        if exceptions > 0 && prev.is_some() {
            // the repeated integer at an exception is a zero delta
            dlo = dlo.min(0);
            dhi = dhi.max(0);
        }
        let width = |lo: i64, hi: i64| if lo > hi { 0 } else { 64 - (hi.wrapping_sub(lo) as u64).leading_zeros() };
        let packed = width(lo, hi).min(width(dlo, dhi));
        bits += run.len() as u64 * u64::from(packed) + exceptions * EXCEPTION_BITS;
        if bits > bound {
            return None;
        }
    }
    Some(bits)
}

/// Picks the exponent and factor for `values` from a sample (see the module
/// docs); `None` for an empty chunk.
pub(crate) fn plan(values: &[f64]) -> Option<DecimalPlan> {
    if values.is_empty() {
        return None;
    }
    let sample = sample_runs(values);
    let sampled: usize = sample.iter().map(|run| run.len()).sum();
    // Largest exponents first: they usually have the fewest exceptions, so
    // the smaller ones are soon cut off by the bound. Ties go to the smaller
    // exponent (then factor), which is later in this order.
    let mut best = (u64::MAX, 0, 0);
    for (e, f) in candidates(&sample).into_iter().rev() {
        if let Some(cost) = sample_cost(&sample, e, f, best.0) {
            best = (cost, e, f);
        }
    }
    let (cost, e, f) = best;
    Some(DecimalPlan { e, f, bits_per_value: cost as f64 / sampled.max(1) as f64 })
}

/// Encodes `f64` values with `FloatDecimal` and appends them to `out`.
///
/// Lossless for every bit pattern; compact when most values are decimals
/// with a common number of digits after the point. Byte layout: module docs
/// of `codec/decimal.rs`.
pub fn encode_f64_decimal(values: &[f64], out: &mut Vec<u8>) {
    if let Some(plan) = plan(values) {
        encode_with_plan(values, plan, out);
    }
}

/// Encodes `values` at the exponent and factor of `plan` (from [`plan`] on
/// the same values).
pub(crate) fn encode_with_plan(values: &[f64], plan: DecimalPlan, out: &mut Vec<u8>) {
    if values.is_empty() {
        return;
    }
    let mut ints = Vec::with_capacity(values.len());
    let mut exceptions = Vec::new();
    let mut first_ok = None;
    let mut last = 0i64;
    for (i, &v) in values.iter().enumerate() {
        match to_decimal(v, plan.e, plan.f) {
            Some(d) => {
                first_ok.get_or_insert(i);
                last = d;
                ints.push(d);
            }
            None => {
                exceptions.push(i);
                ints.push(last);
            }
        }
    }
    if let Some(first) = first_ok
        && let Some(&d) = ints.get(first)
        && let Some(leading) = ints.get_mut(..first)
    {
        leading.fill(d);
    }
    out.push(plan.e);
    out.push(plan.f);
    write_uvarint(out, exceptions.len() as u64);
    let mut next = 0usize;
    for &p in &exceptions {
        write_uvarint(out, (p - next) as u64);
        next = p + 1;
    }
    for &p in &exceptions {
        if let Some(v) = values.get(p) {
            out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }
    pack::encode_blocks(&ints, |d| d, out);
}

/// Decodes `count` values written by [`encode_f64_decimal`] from `data`
/// (exactly the encoded bytes) and appends them to `out`.
///
/// On error `out` is left unchanged. A count larger than `data` can hold
/// (more than 512 values a byte) is rejected before allocating.
///
/// # Errors
///
/// [`CodecError`] when the exponent or factor is above 18, an exception
/// position is out of order or past `count`, a block is truncated or wider
/// than 64 bits, or bytes are left after the last block.
pub fn decode_f64_decimal(data: &[u8], count: usize, out: &mut Vec<f64>) -> Result<(), CodecError> {
    let max = pack::max_values(data.len().saturating_sub(MIN_HEADER_BYTES));
    decode_appending(ID, data, count, max, out, decode_into)
}

/// Reads the next exception position, at least `next` (the previous
/// position plus one, 0 for the first) and below `count`.
fn read_position(data: &[u8], pos: &mut usize, next: usize, count: usize) -> Result<usize, CodecError> {
    let at = *pos;
    let gap = read_uvarint(data, pos)
        .ok_or_else(|| CodecError::new(ID, at, "exception position is not a valid varint (truncated?)"))?;
    match usize::try_from(gap).ok().and_then(|g| next.checked_add(g)).filter(|&p| p < count) {
        Some(p) => Ok(p),
        None => Err(CodecError::new(
            ID,
            at,
            format!("exception position {next} + {gap} is past the chunk's {count} values"),
        )),
    }
}

fn decode_into(data: &[u8], slots: &mut [f64]) -> Result<(), CodecError> {
    let count = slots.len();
    if count == 0 {
        return expect_end(ID, data, 0);
    }
    let (Some(&e), Some(&f)) = (data.first(), data.get(1)) else {
        return Err(CodecError::new(
            ID,
            data.len(),
            format!("truncated: the exponent and factor need 2 bytes, the chunk has {}", data.len()),
        ));
    };
    let (Some(&div), Some(&mul)) = (POW10.get(usize::from(e)), POW10.get(usize::from(f))) else {
        return Err(CodecError::new(ID, 0, format!("exponent {e} or factor {f} is out of range 0..={MAX_EXPONENT}")));
    };
    let mut pos = 2;
    let exceptions = match read_uvarint(data, &mut pos).map(usize::try_from) {
        Some(Ok(x)) if x <= count => x,
        Some(_) => {
            return Err(CodecError::new(ID, 2, format!("more exceptions than the chunk's {count} values")));
        }
        None => return Err(CodecError::new(ID, 2, "exception count is not a valid varint (truncated?)")),
    };
    let positions_at = pos;
    let mut next = 0;
    for _ in 0..exceptions {
        next = read_position(data, &mut pos, next, count)? + 1;
    }
    // exceptions <= count <= 512 * data.len(): no overflow.
    let raw_len = exceptions * 8;
    let Some(raw) = data.get(pos..pos.saturating_add(raw_len)) else {
        return Err(CodecError::new(
            ID,
            pos,
            format!(
                "truncated: {exceptions} exceptions need {raw_len} bytes, {} remain",
                data.len().saturating_sub(pos)
            ),
        ));
    };
    pos += raw_len;
    let mut reader = pack::BlockReader::new(ID, data, pos, count);
    for block in slots.chunks_mut(pack::BLOCK) {
        match (e, f) {
            (0, 0) => reader.next_block(block, |d| d as f64)?,
            (_, 0) => reader.next_block(block, |d| d as f64 / div)?,
            (0, _) => reader.next_block(block, |d| d as f64 * mul)?,
            _ => reader.next_block(block, |d| decimal_value(d, mul, div))?,
        }
    }
    expect_end(ID, data, reader.pos())?;
    let mut at = positions_at;
    let mut next = 0;
    for word in raw.chunks_exact(8) {
        let p = read_position(data, &mut at, next, count)?;
        next = p + 1;
        if let (Some(slot), Some(bits)) = (slots.get_mut(p), word.first_chunk::<8>()) {
            *slot = f64::from_bits(u64::from_le_bytes(*bits));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(values: &[f64]) -> Vec<u8> {
        let mut buf = vec![0x55];
        encode_f64_decimal(values, &mut buf);
        let data = &buf[1..];
        let mut out = vec![1.5];
        decode_f64_decimal(data, values.len(), &mut out).unwrap();
        assert_eq!(out.len(), values.len() + 1);
        for (i, (a, b)) in out[1..].iter().zip(values).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "value {i}: {a} vs {b}");
        }
        data.to_vec()
    }

    fn exceptions_of(data: &[u8]) -> usize {
        let mut pos = 2;
        read_uvarint(data, &mut pos).unwrap() as usize
    }

    pub(crate) fn specials() -> Vec<f64> {
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
            1e20,
            -1e300,
            0.1 + 0.2,
            1.0,
            -1.0,
        ]
    }

    /// A two-decimal random walk like the codec benchmark's.
    fn walk(n: usize) -> Vec<f64> {
        let mut cents = 7241i64;
        let mut state = 0x2545_f491_4f6c_dd1du64;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let step = (state % 10) as i64 + 1;
                cents += if state & (1 << 40) == 0 { step } else { -step };
                cents as f64 / 100.0
            })
            .collect()
    }

    #[test]
    fn empty_and_single() {
        assert!(round_trip(&[]).is_empty());
        for v in specials() {
            round_trip(&[v]);
        }
        assert!(decode_f64_decimal(&[0, 0, 0], 0, &mut Vec::new()).is_err());
    }

    #[test]
    fn sensor_walk_has_no_exceptions_and_packs_tight() {
        let values = walk(1000);
        let data = round_trip(&values);
        assert_eq!(data[0], 2, "exponent");
        assert_eq!(data[1], 0, "factor");
        assert_eq!(exceptions_of(&data), 0);
        // steps of ±0.01..=0.10 are deltas -10..=10: 5 bits a value
        assert!(data.len() <= 3 + 8 + 999 * 5 / 8 + 1, "{} bytes", data.len());
    }

    #[test]
    fn exponents_follow_the_digits() {
        for (digits, scale) in [(0u8, 1i64), (1, 10), (3, 1000), (5, 100_000), (9, 1_000_000_000)] {
            // 12 plus -0.500..=0.500 in the last digits (parsed-decimal values, not sums)
            let values: Vec<f64> =
                (0..500i64).map(|i| (12 * scale + (i * 37 % 1001 - 500)) as f64 / scale as f64).collect();
            let data = round_trip(&values);
            assert_eq!(data[0], digits, "scale {scale}");
            assert_eq!(exceptions_of(&data), 0);
        }
    }

    #[test]
    fn factor_for_round_thousands() {
        let values: Vec<f64> = (0..500).map(|i| f64::from(i % 17) * 1000.0 + 1_500_000.0).collect();
        let data = round_trip(&values);
        assert_eq!((data[0], data[1]), (0, 3));
        let huge: Vec<f64> = (1..300).map(|i| f64::from(i) * 1e20).collect();
        let data = round_trip(&huge);
        assert_eq!(exceptions_of(&data), 0, "1e20 multiples fit with a factor");
    }

    #[test]
    fn specials_are_exceptions() {
        let mut values = walk(300);
        let s = specials();
        for (k, v) in s.iter().enumerate() {
            values[k * 15] = *v;
        }
        values[299] = f64::NAN;
        let data = round_trip(&values);
        assert_eq!(data[0], 2);
        // 0.0, 1.0, -1.0 are decimals; 1e20 needs a factor; the rest are exceptions
        assert_eq!(exceptions_of(&data), s.len() - 3 + 1);
        // all-exception chunks, leading and trailing exceptions
        round_trip(&s);
        round_trip(&[f64::NAN; 40]);
        round_trip(&[-0.0, -0.0, 1.5, 2.5, f64::INFINITY]);
    }

    #[test]
    fn random_binary_floats_mostly_exceptions() {
        let mut state = 1u64;
        let values: Vec<f64> = (0..1000)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                (state >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect();
        round_trip(&values);
        let plan = plan(&values).unwrap();
        assert!(plan.bits_per_value > 60.0, "{plan:?}");
    }

    #[test]
    fn malformed_headers_are_errors() {
        let values = walk(100);
        let mut data = Vec::new();
        encode_f64_decimal(&values, &mut data);
        for bad in [19u8, 200] {
            let mut d = data.clone();
            d[0] = bad;
            assert!(decode_f64_decimal(&d, 100, &mut Vec::new()).unwrap_err().reason.contains("out of range"));
            let mut d = data.clone();
            d[1] = bad;
            assert!(decode_f64_decimal(&d, 100, &mut Vec::new()).is_err());
        }
        // exception count above count, position past count, unordered positions
        let mut d = vec![0, 0, 3, 0, 0, 0];
        assert!(decode_f64_decimal(&d, 2, &mut Vec::new()).unwrap_err().reason.contains("more exceptions"));
        d = vec![0, 0, 1, 2];
        d.extend_from_slice(&[0; 8]);
        d.extend_from_slice(&[0, 0]);
        assert!(decode_f64_decimal(&d, 2, &mut Vec::new()).unwrap_err().reason.contains("past the chunk"));
        d[3] = 1;
        let mut out = Vec::new();
        decode_f64_decimal(&d, 2, &mut out).unwrap();
        assert_eq!(out.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), vec![0, 0]);
    }

    #[test]
    fn truncation_is_an_error() {
        let mut values = walk(2500);
        values[7] = f64::NAN;
        values[2000] = 0.1 + 0.2;
        let mut data = Vec::new();
        encode_f64_decimal(&values, &mut data);
        for cut in 0..data.len() {
            let mut out = vec![9.0];
            assert!(decode_f64_decimal(&data[..cut], values.len(), &mut out).is_err(), "cut at {cut}");
            assert_eq!(out, vec![9.0]);
        }
        let mut longer = data.clone();
        longer.push(0);
        assert!(decode_f64_decimal(&longer, values.len(), &mut Vec::new()).is_err());
    }

    #[test]
    fn implausible_count_is_rejected() {
        assert!(
            decode_f64_decimal(&[0, 0, 0, 0, 0], 1025, &mut Vec::new()).unwrap_err().reason.contains("implausible")
        );
        assert!(decode_f64_decimal(&[0, 0, 0, 0, 0], 1024, &mut Vec::new()).is_ok());
        assert!(decode_f64_decimal(&[], usize::MAX, &mut Vec::new()).is_err());
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
                4 => (-100_000i64..100_000, 0u8..6).prop_map(|(c, e)| c as f64 / POW10[usize::from(e)]),
                1 => any::<f64>(),
                1 => prop::sample::select(specials()),
                1 => any::<u64>().prop_map(f64::from_bits),
            ], 0..1500)) {
            round_trip(&values);
        }

        #[test]
        fn round_trips_decimals(
            cents in proptest::collection::vec(-10_000_000i64..10_000_000, 0..1500),
            e in 0u8..=18,
        ) {
            let values: Vec<f64> = cents.iter().map(|&c| c as f64 / POW10[usize::from(e)]).collect();
            let data = round_trip(&values);
            if !values.is_empty() {
                prop_assert!(exceptions_of(&data) <= values.len() / 50, "{} exceptions", exceptions_of(&data));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), count in 0usize..100_000) {
            let mut out = Vec::new();
            match decode_f64_decimal(&data, count, &mut out) {
                Ok(()) => prop_assert_eq!(out.len(), count),
                Err(_) => prop_assert!(out.is_empty()),
            }
        }
    }
}
