//! Little-endian byte encoding helpers shared by the WAL and segment formats.
//! The reader never panics: every read is bounds-checked and reports the
//! offset it failed at.

/// Appends little-endian primitives and length-prefixed strings to a buffer.
pub(crate) trait PutBytes {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_i64(&mut self, v: i64);
    fn put_varint(&mut self, v: u64);
    fn put_str(&mut self, s: &str);
}

impl PutBytes for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.push(v as u8);
    }
    fn put_str(&mut self, s: &str) {
        self.put_varint(s.len() as u64);
        self.extend_from_slice(s.as_bytes());
    }
}

/// Why a read failed: what was being read and at which offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadError {
    pub(crate) offset: usize,
    pub(crate) detail: String,
}

pub(crate) type ReadResult<T> = Result<T, ReadError>;

/// A bounds-checked cursor over a byte slice.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    pub(crate) fn error(&self, detail: impl Into<String>) -> ReadError {
        ReadError { offset: self.pos, detail: detail.into() }
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> ReadResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        match end.and_then(|e| self.data.get(self.pos..e)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(self.error(format!("{what}: needs {n} bytes, {} left", self.remaining()))),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> ReadResult<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u8(&mut self, what: &str) -> ReadResult<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    pub(crate) fn u16(&mut self, what: &str) -> ReadResult<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u32(&mut self, what: &str) -> ReadResult<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u64(&mut self, what: &str) -> ReadResult<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn i64(&mut self, what: &str) -> ReadResult<i64> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn varint(&mut self, what: &str) -> ReadResult<u64> {
        let start = self.pos;
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8(what)?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ReadError { offset: start, detail: format!("{what}: varint longer than 10 bytes") })
    }

    /// A varint that must fit in `usize` and be at most `max`.
    pub(crate) fn len(&mut self, max: usize, what: &str) -> ReadResult<usize> {
        let start = self.pos;
        let v = self.varint(what)?;
        usize::try_from(v)
            .ok()
            .filter(|&n| n <= max)
            .ok_or(ReadError { offset: start, detail: format!("{what}: {v} is larger than the limit {max}") })
    }

    pub(crate) fn str(&mut self, what: &str) -> ReadResult<&'a str> {
        let n = self.len(self.remaining(), what)?;
        let at = self.pos;
        let bytes = self.take(n, what)?;
        std::str::from_utf8(bytes).map_err(|e| ReadError { offset: at, detail: format!("{what}: invalid UTF-8: {e}") })
    }
}

/// Compares a stored checksum with the computed one. Fuzz builds accept any
/// checksum, so the fuzzer can reach the parsers behind them.
#[inline]
pub(crate) fn checksum_matches(stored: u32, actual: u32) -> bool {
    cfg!(fuzzing) || stored == actual
}

/// The 16-byte header every WAL and segment file starts with (and files of
/// code embedding the engine, such as the alert journal):
/// magic (8) | version u16 | reserved u16 | crc32c of the 12 bytes before (u32).
#[derive(Debug, Clone, Copy)]
pub struct FileHeader {
    /// The format's name in error messages ("WAL", "segment").
    pub format: &'static str,
    /// The magic.
    pub magic: [u8; 8],
    /// The version this build writes.
    pub version: u16,
    /// The oldest version this build reads.
    pub oldest: u16,
}

/// Bytes of a [`FileHeader`].
pub const FILE_HEADER_LEN: usize = 16;

impl FileHeader {
    /// The header bytes.
    pub fn encode(&self) -> [u8; FILE_HEADER_LEN] {
        let mut h = [0u8; FILE_HEADER_LEN];
        h[..8].copy_from_slice(&self.magic);
        h[8..10].copy_from_slice(&self.version.to_le_bytes());
        let crc = crc32c::crc32c(&h[..12]);
        h[12..16].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Checks magic, checksum, then version (in that order, so a damaged
    /// version byte reads as damage, not as a newer format).
    pub fn check(&self, path: &std::path::Path, data: &[u8]) -> crate::Result<()> {
        if data.get(..8) != Some(&self.magic[..]) {
            return Err(crate::Error::corruption(path, 0, format!("bad magic: not a Telemark {} file", self.format)));
        }
        let Some(h) = data.get(..FILE_HEADER_LEN) else {
            return Err(crate::Error::corruption(path, 0, "file header is incomplete"));
        };
        let stored = u32::from_le_bytes([h[12], h[13], h[14], h[15]]);
        let actual = crc32c::crc32c(&h[..12]);
        if !checksum_matches(stored, actual) {
            return Err(crate::Error::corruption(
                path,
                12,
                format!("header checksum mismatch (expected {stored:#010x}, found {actual:#010x})"),
            ));
        }
        let version = u16::from_le_bytes([h[8], h[9]]);
        if version > self.version || version < self.oldest {
            return Err(crate::Error::UnsupportedVersion {
                file: path.to_path_buf(),
                format: self.format,
                found: version,
                supported: self.version,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_bounds() {
        let mut b = Vec::new();
        b.put_u8(7);
        b.put_u32(0xdead_beef);
        b.put_varint(u64::MAX);
        b.put_str("héllo");
        b.put_i64(-5);
        let mut r = Reader::new(&b);
        assert_eq!(r.u8("a").unwrap(), 7);
        assert_eq!(r.u32("b").unwrap(), 0xdead_beef);
        assert_eq!(r.varint("c").unwrap(), u64::MAX);
        assert_eq!(r.str("d").unwrap(), "héllo");
        assert_eq!(r.i64("e").unwrap(), -5);
        assert!(r.u8("f").is_err());
        let mut r = Reader::new(&[0xff; 11]);
        assert!(r.varint("x").is_err());
    }
}
