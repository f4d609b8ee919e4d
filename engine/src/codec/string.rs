//! `StringDictZstd` (codec id 6): dictionary encoding compressed with zstd.
//!
//! # Byte layout
//!
//! An empty chunk (count 0) is zero bytes. Otherwise:
//!
//! | bytes | content |
//! |-------|---------|
//! | 4     | `n`, length of the uncompressed payload, `u32` little-endian, at most [`MAX_STRING_PAYLOAD`] |
//! | rest  | one zstd frame (level 3) that decompresses to exactly `n` bytes |
//!
//! The uncompressed payload:
//!
//! | bytes                      | content |
//! |----------------------------|---------|
//! | 4                          | `d`, the number of distinct strings, `u32` LE, `1 ≤ d ≤ count` |
//! | `4 * d`                    | each distinct string's byte length, `u32` LE |
//! | sum of lengths             | the distinct strings' UTF-8 bytes, concatenated, in first-seen order |
//! | `ceil(count * w / 8)`      | each value's dictionary index, `w = ceil(log2(d))` bits each (0 when `d == 1`), LSB-first (see `codec/bits.rs`) |
//!
//! Anything left in the payload after the indices is rejected, as are
//! indices `≥ d` and invalid UTF-8. Unused bits of the last index byte are
//! written as 0 and ignored.
//!
//! # Limits
//!
//! The decoder refuses a payload over [`MAX_STRING_PAYLOAD`] (512 MiB), and
//! refuses to materialize more than 1 GiB of output (`count` × 24-byte
//! `String` headers plus all string bytes), so a corrupt count or a tiny
//! zstd frame that claims a huge, repetitive payload cannot exhaust memory.
//! The encoder cannot fail, so writers must keep a chunk's distinct strings
//! under those limits (segment writers cut chunks far below them).

use std::collections::HashMap;

use super::bits::{BitReader, BitWriter};
use super::{CodecError, CodecId};

const ID: CodecId = CodecId::StringDictZstd;

/// Largest uncompressed payload (dictionary plus indices) a
/// `StringDictZstd` chunk may hold: 512 MiB. Writers must cut chunks before
/// their distinct strings approach it; decoders reject larger ones.
pub const MAX_STRING_PAYLOAD: usize = 512 << 20;

/// Largest amount of memory one decode may hand out: `String` headers plus
/// string bytes.
const MAX_DECODED_BYTES: usize = 1 << 30;

/// Bits per dictionary index: `ceil(log2(dict_len))`.
fn index_width(dict_len: usize) -> u32 {
    if dict_len <= 1 { 0 } else { usize::BITS - (dict_len - 1).leading_zeros() }
}

/// Encodes strings with `StringDictZstd` and appends them to `out`.
///
/// The distinct strings plus the packed indices must stay under
/// [`MAX_STRING_PAYLOAD`] bytes or the chunk will not decode. Byte layout:
/// module docs of `codec/string.rs`.
///
/// # Panics
///
/// Only if zstd fails to compress an in-memory buffer into a buffer of its
/// own worst-case bound, which it does not do (the alternative would be an
/// encoder that returns an error nobody can act on).
pub fn encode_strings<S: AsRef<str>>(values: &[S], out: &mut Vec<u8>) {
    if values.is_empty() {
        return;
    }
    let mut lookup: HashMap<&str, u32> = HashMap::new();
    let mut dict: Vec<&str> = Vec::new();
    let mut indices: Vec<u32> = Vec::with_capacity(values.len());
    for v in values {
        let s = v.as_ref();
        let next = dict.len() as u32;
        let idx = *lookup.entry(s).or_insert_with(|| {
            dict.push(s);
            next
        });
        indices.push(idx);
    }
    let width = index_width(dict.len());
    let dict_bytes: usize = dict.iter().map(|s| s.len()).sum();
    let mut payload = Vec::with_capacity(4 + 4 * dict.len() + dict_bytes + (values.len() * width as usize).div_ceil(8));
    payload.extend_from_slice(&(dict.len() as u32).to_le_bytes());
    for s in &dict {
        payload.extend_from_slice(&(s.len() as u32).to_le_bytes());
    }
    for s in &dict {
        payload.extend_from_slice(s.as_bytes());
    }
    if width > 0 {
        let mut w = BitWriter::new(&mut payload);
        for &idx in &indices {
            w.write(u64::from(idx), width);
        }
        w.finish();
    }
    #[expect(
        clippy::expect_used,
        reason = "ZSTD_compress only fails for a bad level or a destination below compress_bound (bulk::compress \
                  allocates compress_bound), and writers keep payloads far below 4 GiB (see the limits above)"
    )]
    super::stage::put_zstd_frame(&payload, out).expect("zstd compression of an in-memory buffer");
}

/// Decodes `count` strings written by [`encode_strings`] from `data`
/// (exactly the encoded bytes) and appends them to `out`.
///
/// On error `out` is left unchanged. Invalid UTF-8, out-of-range indices, a
/// payload over [`MAX_STRING_PAYLOAD`] or a result over 1 GiB are errors.
///
/// # Errors
///
/// [`CodecError`] when the zstd frame is damaged or its size differs from
/// the header, the payload is inconsistent with `count`, a string is not
/// UTF-8, an index is out of range, or a limit above is exceeded.
pub fn decode_strings(data: &[u8], count: usize, out: &mut Vec<String>) -> Result<(), CodecError> {
    let start = out.len();
    let result = decode_into(data, count, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn decode_into(data: &[u8], count: usize, out: &mut Vec<String>) -> Result<(), CodecError> {
    if count == 0 {
        return if data.is_empty() {
            Ok(())
        } else {
            Err(CodecError::new(ID, 0, format!("{} bytes for a chunk of 0 values", data.len())))
        };
    }
    let header_bytes = std::mem::size_of::<String>();
    let headers = count.saturating_mul(header_bytes);
    if headers > MAX_DECODED_BYTES {
        return Err(CodecError::new(
            ID,
            0,
            format!(
                "value count {count} is implausible: decoding would need over {MAX_DECODED_BYTES} bytes; \
                 the chunk header's count is corrupt"
            ),
        ));
    }
    let payload =
        super::stage::unzstd_stage(data, MAX_STRING_PAYLOAD).map_err(|reason| CodecError::new(ID, 0, reason))?;
    // From here on offsets are positions in the decompressed payload, which
    // the messages say.
    let payload_err =
        |at: usize, reason: String| CodecError::new(ID, 4, format!("at decompressed payload byte {at}: {reason}"));

    let Some((dict_len_bytes, rest)) = payload.split_first_chunk::<4>() else {
        return Err(payload_err(0, "truncated: no dictionary size".into()));
    };
    let dict_len = u32::from_le_bytes(*dict_len_bytes) as usize;
    if dict_len == 0 || dict_len > count {
        return Err(payload_err(0, format!("dictionary of {dict_len} strings is impossible for {count} values")));
    }
    let lens_size = dict_len.saturating_mul(4);
    let Some((lens, rest)) = rest.split_at_checked(lens_size) else {
        return Err(payload_err(4, format!("truncated: {dict_len} string lengths need {lens_size} bytes")));
    };
    let mut dict: Vec<&str> = Vec::with_capacity(dict_len);
    let mut bytes = rest;
    let mut at = 4 + lens_size;
    for len in lens.chunks_exact(4) {
        let mut le = [0u8; 4];
        le.copy_from_slice(len);
        let len = u32::from_le_bytes(le) as usize;
        let Some((s, tail)) = bytes.split_at_checked(len) else {
            return Err(payload_err(
                at,
                format!("truncated: dictionary string {} needs {len} bytes, {} remain", dict.len(), bytes.len()),
            ));
        };
        let s = std::str::from_utf8(s)
            .map_err(|e| payload_err(at, format!("dictionary string {} is not valid UTF-8: {e}", dict.len())))?;
        dict.push(s);
        bytes = tail;
        at += len;
    }

    let width = index_width(dict_len);
    // width <= 32 because dict_len <= u32::MAX, so this cannot overflow u128.
    let index_bytes = (count as u128 * u128::from(width)).div_ceil(8);
    if bytes.len() as u128 != index_bytes {
        return Err(payload_err(
            at,
            format!("{count} indices of {width} bits need {index_bytes} bytes, {} remain", bytes.len()),
        ));
    }

    // First pass: validate every index and size the output before
    // allocating any of it.
    let mut total = headers;
    let mut r = BitReader::new(bytes);
    for i in 0..count {
        let idx = r.read_short(width) as usize;
        let Some(s) = dict.get(idx) else {
            return Err(payload_err(
                at.saturating_add(i.saturating_mul(width as usize) / 8),
                format!("index {idx} of value {i} is outside the dictionary of {dict_len} strings"),
            ));
        };
        total = total.saturating_add(s.len());
    }
    if total > MAX_DECODED_BYTES {
        return Err(CodecError::new(
            ID,
            0,
            format!(
                "decoding would take {total} bytes, over the {MAX_DECODED_BYTES}-byte limit; \
                 the chunk is corrupt or was written too large"
            ),
        ));
    }
    out.try_reserve(count)
        .map_err(|e| CodecError::new(ID, 0, format!("cannot allocate room for {count} strings: {e}")))?;
    let mut r = BitReader::new(bytes);
    for _ in 0..count {
        let idx = r.read_short(width) as usize;
        if let Some(&s) = dict.get(idx) {
            out.push(s.to_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip<S: AsRef<str>>(values: &[S]) -> Vec<u8> {
        let mut data = vec![0xEE];
        encode_strings(values, &mut data);
        let mut out = vec!["keep".to_string()];
        decode_strings(&data[1..], values.len(), &mut out).unwrap();
        assert_eq!(out.len(), values.len() + 1);
        assert_eq!(out[0], "keep");
        for (a, b) in out[1..].iter().zip(values) {
            assert_eq!(a, b.as_ref());
        }
        data[1..].to_vec()
    }

    #[test]
    fn empty_single_and_repeats() {
        assert!(round_trip::<&str>(&[]).is_empty());
        round_trip(&[""]);
        round_trip(&["only"]);
        round_trip(&["", "", ""]);
        round_trip(&["a", "b", "a", "c", "", "b", "ünïcødé ✓", "a"]);
        round_trip(&vec!["same"; 5000]);
    }

    #[test]
    fn index_widths() {
        assert_eq!(index_width(1), 0);
        assert_eq!(index_width(2), 1);
        assert_eq!(index_width(3), 2);
        assert_eq!(index_width(4), 2);
        assert_eq!(index_width(5), 3);
        assert_eq!(index_width(256), 8);
        assert_eq!(index_width(257), 9);
        for n in [2usize, 3, 255, 256, 257, 1000] {
            let values: Vec<String> =
                (0..n).map(|i| format!("host-{i}")).chain((0..n).map(|i| format!("host-{}", n - 1 - i))).collect();
            round_trip(&values);
        }
    }

    fn chunk_with_payload(payload: &[u8]) -> Vec<u8> {
        let mut data = (payload.len() as u32).to_le_bytes().to_vec();
        data.extend_from_slice(&zstd::bulk::compress(payload, 3).unwrap());
        data
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut payload = Vec::new();
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.extend_from_slice(&2u32.to_le_bytes());
        payload.extend_from_slice(&[0xC3, 0x28]);
        let err = decode_strings(&chunk_with_payload(&payload), 3, &mut Vec::new()).unwrap_err();
        assert!(err.reason.contains("UTF-8"), "{err}");
    }

    #[test]
    fn index_out_of_range_is_an_error() {
        let mut payload = Vec::new();
        payload.extend_from_slice(&3u32.to_le_bytes());
        for s in ["a", "b", "c"] {
            payload.extend_from_slice(&(s.len() as u32).to_le_bytes());
        }
        payload.extend_from_slice(b"abc");
        payload.push(0b11_10_01_00); // indices 0, 1, 2, 3 at 2 bits
        let mut out = vec![String::from("x")];
        let err = decode_strings(&chunk_with_payload(&payload), 4, &mut out).unwrap_err();
        assert!(err.reason.contains("outside the dictionary"), "{err}");
        assert_eq!(out, vec![String::from("x")]);
    }

    #[test]
    fn length_mismatch_and_limits() {
        let mut data = Vec::new();
        encode_strings(&["a", "b", "a"], &mut data);
        let mut wrong = data.clone();
        wrong[0] = wrong[0].wrapping_add(1);
        assert!(decode_strings(&wrong, 3, &mut Vec::new()).is_err());
        wrong[0..4].copy_from_slice(&(MAX_STRING_PAYLOAD as u32 + 1).to_le_bytes());
        let err = decode_strings(&wrong, 3, &mut Vec::new()).unwrap_err();
        assert!(err.reason.contains("limit"), "{err}");
        assert!(decode_strings(&data, usize::MAX, &mut Vec::new()).is_err());
        assert!(decode_strings(&data, 0, &mut Vec::new()).is_err());
        let mut trailing = data.clone();
        trailing.push(0);
        assert!(decode_strings(&trailing, 3, &mut Vec::new()).is_err());
    }

    #[test]
    fn repetitive_bomb_is_refused() {
        // one 1 MiB string repeated 2000 times: tiny on disk, 2 GB decoded
        let big = "x".repeat(1 << 20);
        let mut data = Vec::new();
        encode_strings(&[big.as_str()], &mut data);
        let err = decode_strings(&data, 2000, &mut Vec::new()).unwrap_err();
        assert!(err.reason.contains("limit") || err.reason.contains("impossible"), "{err}");
    }

    #[test]
    fn truncation_is_an_error() {
        let values: Vec<String> = (0..300).map(|i| format!("sensor-{}", i % 17)).collect();
        let mut data = Vec::new();
        encode_strings(&values, &mut data);
        for cut in 0..data.len() {
            let mut out = Vec::new();
            assert!(decode_strings(&data[..cut], values.len(), &mut out).is_err(), "cut {cut}");
            assert!(out.is_empty());
        }
    }

    proptest! {
        #[test]
        fn round_trips_arbitrary(values in proptest::collection::vec(any::<String>(), 0..200)) {
            round_trip(&values);
        }

        #[test]
        fn round_trips_low_cardinality(values in proptest::collection::vec(prop::sample::select(vec!["ok", "warn", "error", "", "ünï"]), 0..500)) {
            round_trip(&values);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), count in 0usize..100_000) {
            let mut out = Vec::new();
            match decode_strings(&data, count, &mut out) {
                Ok(()) => prop_assert_eq!(out.len(), count),
                Err(_) => prop_assert!(out.is_empty()),
            }
        }

        #[test]
        fn arbitrary_payload_never_panics(payload in proptest::collection::vec(any::<u8>(), 0..200), count in 0usize..100_000) {
            let mut out = Vec::new();
            let _ = decode_strings(&chunk_with_payload(&payload), count, &mut out);
        }
    }
}
