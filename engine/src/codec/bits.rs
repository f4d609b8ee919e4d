//! Bit-level building blocks shared by the codecs: an LSB-first
//! [`BitWriter`] and [`BitReader`], LEB128 varints and zig-zag mapping.
//!
//! # Bit order
//!
//! Every bit stream in the segment format is **LSB-first**: bits fill each
//! byte from its least significant bit upwards, bytes follow in order, and a
//! field of `n` bits is written least significant bit first. Equivalently, a
//! field that starts at stream bit `p` is bits `p..p + n` of the stream read
//! as one huge little-endian integer. A prefix code such as `110` is written
//! in reading order, so its first bit (`1`) is the lowest bit; this lets the
//! reader classify a prefix with one `trailing_ones`.
//!
//! The unused high bits of a stream's last byte are padding: 0 bits for the
//! bit-packed codecs, 1 bits for the Gorilla streams (see those modules).
//!
//! # Varints
//!
//! Unsigned LEB128: 7 value bits a byte, least significant group first, high
//! bit set on every byte but the last; at most 10 bytes, and the 10th may only
//! hold the value's top bit. Signed values are zig-zag mapped first
//! (`0, -1, 1, -2, …` → `0, 1, 2, 3, …`).

/// Binary GCD; `gcd(0, x) == x`.
pub(crate) fn gcd(mut a: u64, mut b: u64) -> u64 {
    if a == 0 {
        return b;
    }
    if b == 0 {
        return a;
    }
    let shift = (a | b).trailing_zeros();
    a >>= a.trailing_zeros();
    loop {
        b >>= b.trailing_zeros();
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        b -= a;
        if b == 0 {
            return a << shift;
        }
    }
}

/// Maps a signed value to an unsigned one so that small magnitudes of either
/// sign get small codes: `0, -1, 1, -2, 2, …` → `0, 1, 2, 3, 4, …`.
#[inline(always)]
pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
#[inline(always)]
pub(crate) fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

/// A mask of the low `n` bits, for `n` in `0..=64`.
#[inline(always)]
pub(crate) fn low_mask(n: u32) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// Appends `v` as an unsigned LEB128 varint.
pub(crate) fn write_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 varint starting at `*pos` and advances `*pos`
/// past it. Returns `None` (leaving `*pos` unchanged) when the varint runs
/// past the end of `data`, is longer than 10 bytes, or overflows 64 bits.
pub(crate) fn read_uvarint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let rest = data.get(*pos..)?;
    let mut v: u64 = 0;
    for (i, &byte) in rest.iter().take(10).enumerate() {
        let group = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return None;
        }
        v |= group << (7 * i);
        if byte & 0x80 == 0 {
            *pos += i + 1;
            return Some(v);
        }
    }
    None
}

/// Writes an LSB-first bit stream (see the module docs) into a byte vector.
///
/// Bits are gathered in a 64-bit accumulator and appended eight bytes at a
/// time; [`BitWriter::finish`] flushes the partial tail. Dropping the writer
/// without calling `finish` loses the unflushed bits.
#[derive(Debug)]
pub(crate) struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    /// Bits held in `acc`; always `< 64` between calls.
    nbits: u32,
}

impl<'a> BitWriter<'a> {
    /// Starts a stream that appends to `out` (at the next byte boundary).
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter { out, acc: 0, nbits: 0 }
    }

    /// Appends the low `n` bits of `value`, `n` in `0..=64`. Bits of `value`
    /// above `n` must be zero.
    #[inline(always)]
    pub(crate) fn write(&mut self, value: u64, n: u32) {
        debug_assert!(n <= 64);
        debug_assert!(n == 64 || value >> n == 0, "value {value:#x} wider than {n} bits");
        // nbits < 64, so the shift is in range.
        self.acc |= value << self.nbits;
        let total = self.nbits + n;
        if total >= 64 {
            self.out.extend_from_slice(&self.acc.to_le_bytes());
            // Bits of `value` that fitted into the flushed word: 1..=64.
            let used = 64 - self.nbits;
            self.acc = if used >= 64 { 0 } else { value >> used };
            self.nbits = total - 64;
        } else {
            self.nbits = total;
        }
    }

    /// Flushes the remaining bits, padding the last byte with 1 bits.
    ///
    /// The Gorilla streams use this: every entry that fits in 7 bits
    /// contains a 0 bit, so a decoder that checks the padding with
    /// [`BitReader::check_end_ones`] notices a value count that is off by
    /// even one.
    pub(crate) fn finish_with_ones(mut self) {
        let pad = (8 - self.nbits % 8) % 8;
        self.write(low_mask(pad), pad);
        self.finish();
    }

    /// Flushes the remaining bits, zero-padding the last byte.
    pub(crate) fn finish(self) {
        let nbytes = self.nbits.div_ceil(8) as usize;
        let bytes = self.acc.to_le_bytes();
        if let Some(tail) = bytes.get(..nbytes) {
            self.out.extend_from_slice(tail);
        }
    }
}

/// Reads an LSB-first bit stream with a 64-bit buffer refilled eight bytes at
/// a time.
///
/// After [`BitReader::refill`] at least 56 bits are buffered, so a decoder
/// can look at them with [`BitReader::peek`] and [`BitReader::consume`] up to
/// 56 bits before the next refill. Reads past the end of the data see zero
/// bits instead of failing; decoders check [`BitReader::check_end`] once at
/// the end, which keeps the hot loop free of error paths while still
/// rejecting truncated input.
#[derive(Debug)]
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte of `data` not yet (fully) shifted into `buf`.
    pos: usize,
    /// Bits `0..avail` are the next bits of the stream. Bits above `avail`
    /// are either zero or the stream bits that follow, so OR-ing a reload of
    /// the same bytes over them is harmless.
    buf: u64,
    avail: u32,
}

impl<'a> BitReader<'a> {
    /// Minimum number of bits buffered right after a refill.
    pub(crate) const REFILL_BITS: u32 = 56;

    /// Starts reading `data` from its first bit.
    pub(crate) fn new(data: &'a [u8]) -> Self {
        let mut reader = BitReader { data, pos: 0, buf: 0, avail: 0 };
        reader.refill();
        reader
    }

    /// Loads eight bytes at `pos` as a little-endian word, zero-padded past
    /// the end of the data.
    #[inline(always)]
    fn load(&self) -> u64 {
        match self.data.get(self.pos..).and_then(|rest| rest.first_chunk::<8>()) {
            Some(word) => u64::from_le_bytes(*word),
            None => self.load_tail(),
        }
    }

    #[cold]
    #[inline(never)]
    fn load_tail(&self) -> u64 {
        let mut word = [0u8; 8];
        let rest = self.data.get(self.pos..).unwrap_or(&[]);
        for (dst, src) in word.iter_mut().zip(rest) {
            *dst = *src;
        }
        u64::from_le_bytes(word)
    }

    /// Tops the buffer up to at least [`Self::REFILL_BITS`] bits (branch-free
    /// apart from the end-of-data check).
    #[inline(always)]
    pub(crate) fn refill(&mut self) {
        self.buf |= self.load() << self.avail;
        self.pos = self.pos.wrapping_add(((63 - self.avail) >> 3) as usize);
        self.avail |= 56;
    }

    /// The buffered bits; bit 0 is the next bit of the stream. Only the low
    /// [`Self::available`] bits are meaningful.
    #[inline(always)]
    pub(crate) fn peek(&self) -> u64 {
        self.buf
    }

    /// Number of buffered bits.
    #[inline(always)]
    pub(crate) fn available(&self) -> u32 {
        self.avail
    }

    /// Drops the next `n` bits; `n` must not exceed [`Self::available`].
    #[inline(always)]
    pub(crate) fn consume(&mut self, n: u32) {
        debug_assert!(n <= self.avail);
        self.buf >>= n;
        self.avail -= n;
    }

    /// Reads the next `n` bits, `n` in `0..=56`, refilling first.
    #[inline(always)]
    pub(crate) fn read_short(&mut self, n: u32) -> u64 {
        debug_assert!(n <= Self::REFILL_BITS);
        self.refill();
        let v = self.buf & low_mask(n);
        self.consume(n);
        v
    }

    /// Reads the next `n` bits, `n` in `0..=64`.
    #[inline(always)]
    pub(crate) fn read(&mut self, n: u32) -> u64 {
        if n <= Self::REFILL_BITS {
            self.read_short(n)
        } else {
            let lo = self.read_short(32);
            let hi = self.read_short(n.min(64) - 32);
            lo | (hi << 32)
        }
    }

    /// Number of bits consumed so far (may exceed the data when a decoder
    /// read into the zero padding).
    pub(crate) fn bits_consumed(&self) -> u64 {
        (self.pos as u64).saturating_mul(8).saturating_sub(u64::from(self.avail))
    }

    /// Checks that the stream ended exactly in the last byte of the data:
    /// `Err((offset, reason))` when the decoder needed bits past the end
    /// (truncated chunk) or whole bytes were left over (trailing garbage).
    pub(crate) fn check_end(&self) -> Result<(), (usize, String)> {
        let have = self.data.len() as u64;
        let used = self.bits_consumed();
        let used_bytes = used.div_ceil(8);
        if used_bytes > have {
            Err((
                self.data.len(),
                format!(
                    "bit stream is truncated: decoding the requested values needs {used} bits, \
                     the chunk has {} bits",
                    have.saturating_mul(8)
                ),
            ))
        } else if used_bytes < have {
            Err((
                used_bytes as usize,
                format!(
                    "{} trailing bytes after the last value (chunk length or value count is wrong)",
                    have - used_bytes
                ),
            ))
        } else {
            Ok(())
        }
    }

    /// [`Self::check_end`], and also that the unused bits of the last byte
    /// are all 1 (see [`BitWriter::finish_with_ones`]).
    pub(crate) fn check_end_ones(&mut self) -> Result<(), (usize, String)> {
        self.check_end()?;
        let used = self.bits_consumed();
        let pad = (used.div_ceil(8) * 8 - used) as u32;
        self.refill();
        if self.buf & low_mask(pad) == low_mask(pad) {
            Ok(())
        } else {
            Err((
                (used / 8) as usize,
                "the last byte holds more entries than the value count says (its padding \
                 bits must be 1); the chunk header's count is wrong"
                    .to_string(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zigzag_extremes() {
        for v in [0, -1, 1, i64::MIN, i64::MAX, i64::MIN + 1] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(0), 0);
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }

    #[test]
    fn varint_rejects_overlong_and_truncated() {
        let mut pos = 0;
        assert_eq!(read_uvarint(&[0x80; 11], &mut pos), None);
        assert_eq!(read_uvarint(&[0x80, 0x80], &mut pos), None);
        assert_eq!(read_uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02], &mut pos), None);
        assert_eq!(read_uvarint(&[], &mut pos), None);
        assert_eq!(pos, 0);
        let mut buf = Vec::new();
        write_uvarint(&mut buf, u64::MAX);
        assert_eq!(buf.len(), 10);
        assert_eq!(read_uvarint(&buf, &mut pos), Some(u64::MAX));
        assert_eq!(pos, 10);
    }

    #[test]
    fn lsb_first_layout() {
        let mut out = Vec::new();
        let mut w = BitWriter::new(&mut out);
        w.write(0b1, 1);
        w.write(0b011, 3); // prefix "110" in reading order
        w.write(0xABC, 12);
        w.finish();
        assert_eq!(out, vec![0b1100_0111, 0xAB]);
    }

    proptest! {
        #[test]
        fn varint_round_trip(values in proptest::collection::vec(any::<u64>(), 0..50)) {
            let mut buf = Vec::new();
            for &v in &values { write_uvarint(&mut buf, v); }
            let mut pos = 0;
            for &v in &values { prop_assert_eq!(read_uvarint(&buf, &mut pos), Some(v)); }
            prop_assert_eq!(pos, buf.len());
        }

        #[test]
        fn bits_round_trip(fields in proptest::collection::vec((any::<u64>(), 0u32..=64), 0..200)) {
            let fields: Vec<(u64, u32)> = fields.into_iter().map(|(v, n)| (v & low_mask(n), n)).collect();
            let mut out = Vec::new();
            let mut w = BitWriter::new(&mut out);
            for &(v, n) in &fields { w.write(v, n); }
            w.finish();
            let total: u64 = fields.iter().map(|&(_, n)| u64::from(n)).sum();
            prop_assert_eq!(out.len() as u64, total.div_ceil(8));
            let mut r = BitReader::new(&out);
            for &(v, n) in &fields { prop_assert_eq!(r.read(n), v); }
            prop_assert_eq!(r.bits_consumed(), total);
            prop_assert!(r.check_end().is_ok());
        }

        #[test]
        fn reader_never_panics(data in proptest::collection::vec(any::<u8>(), 0..40), reads in proptest::collection::vec(0u32..=64, 0..100)) {
            let mut r = BitReader::new(&data);
            for n in reads { let _ = r.read(n); }
            let _ = r.check_end();
        }
    }
}
