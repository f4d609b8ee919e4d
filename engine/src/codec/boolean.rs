//! `BoolBitpack` (codec id 5): one bit a value.
//!
//! # Byte layout
//!
//! `ceil(count / 8)` bytes; value `i` is bit `i % 8` (LSB first) of byte
//! `i / 8`, 1 for `true`. Unused high bits of the last byte are written as 0
//! and ignored when reading. A chunk whose length is not exactly
//! `ceil(count / 8)` is rejected. An empty chunk (count 0) is zero bytes.

use super::{CodecError, CodecId, grow_for};

const ID: CodecId = CodecId::BoolBitpack;

/// Encodes booleans with `BoolBitpack` and appends them to `out`.
pub fn encode_bool(values: &[bool], out: &mut Vec<u8>) {
    out.reserve(values.len().div_ceil(8));
    for group in values.chunks(8) {
        let byte = group.iter().enumerate().fold(0u8, |byte, (i, &v)| byte | (u8::from(v) << i));
        out.push(byte);
    }
}

/// Decodes `count` booleans written by [`encode_bool`] from `data` (exactly
/// `ceil(count / 8)` bytes) and appends them to `out`.
///
/// On error `out` is left unchanged.
///
/// # Errors
///
/// [`CodecError`] when `data` is not exactly `ceil(count / 8)` bytes.
pub fn decode_bool(data: &[u8], count: usize, out: &mut Vec<bool>) -> Result<(), CodecError> {
    let expected = count.div_ceil(8);
    if data.len() != expected {
        let (offset, what) =
            if data.len() < expected { (data.len(), "truncated") } else { (expected, "trailing bytes") };
        return Err(CodecError::new(
            ID,
            offset,
            format!("{what}: {count} values need exactly {expected} bytes, the chunk has {}", data.len()),
        ));
    }
    let start = grow_for(ID, out, count)?;
    if let Some(slots) = out.get_mut(start..) {
        for (group, &byte) in slots.chunks_mut(8).zip(data) {
            for (i, slot) in group.iter_mut().enumerate() {
                *slot = (byte >> i) & 1 != 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_is_lsb_first() {
        let mut out = Vec::new();
        encode_bool(&[true, false, false, false, false, false, false, true, true], &mut out);
        assert_eq!(out, vec![0b1000_0001, 0b1]);
        let mut back = Vec::new();
        decode_bool(&out, 9, &mut back).unwrap();
        assert_eq!(back, vec![true, false, false, false, false, false, false, true, true]);
    }

    #[test]
    fn empty_and_single() {
        let mut out = Vec::new();
        encode_bool(&[], &mut out);
        assert!(out.is_empty());
        let mut back = Vec::new();
        decode_bool(&[], 0, &mut back).unwrap();
        assert!(back.is_empty());
        encode_bool(&[true], &mut out);
        decode_bool(&out, 1, &mut back).unwrap();
        assert_eq!(back, vec![true]);
    }

    #[test]
    fn wrong_length_is_an_error() {
        let values = vec![true; 20];
        let mut data = Vec::new();
        encode_bool(&values, &mut data);
        for cut in 0..data.len() {
            let mut out = vec![false];
            assert!(decode_bool(&data[..cut], 20, &mut out).is_err());
            assert_eq!(out, vec![false]);
        }
        data.push(0);
        assert!(decode_bool(&data, 20, &mut Vec::new()).is_err());
        assert!(decode_bool(&[], usize::MAX, &mut Vec::new()).is_err());
    }

    proptest! {
        #[test]
        fn round_trips(values in proptest::collection::vec(any::<bool>(), 0..500)) {
            let mut data = vec![7];
            encode_bool(&values, &mut data);
            prop_assert_eq!(data.len(), 1 + values.len().div_ceil(8));
            let mut out = vec![true];
            decode_bool(&data[1..], values.len(), &mut out).unwrap();
            prop_assert_eq!(&out[1..], &values[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), count in 0usize..100_000) {
            let mut out = Vec::new();
            match decode_bool(&data, count, &mut out) {
                Ok(()) => prop_assert_eq!(out.len(), count),
                Err(_) => prop_assert!(out.is_empty()),
            }
        }
    }
}
