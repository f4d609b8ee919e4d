//! TEMPORARY raw codec stub (replaced by the real codecs). Same API.
#![allow(missing_docs, clippy::all)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum CodecId {
    TimestampGorilla = 1,
    FloatGorilla = 2,
    IntDeltaZigzag = 3,
    UintDelta = 4,
    BoolBitpack = 5,
    StringDictZstd = 6,
}
impl TryFrom<u8> for CodecId {
    type Error = CodecError;
    fn try_from(v: u8) -> Result<Self, CodecError> {
        Ok(match v {
            1 => Self::TimestampGorilla,
            2 => Self::FloatGorilla,
            3 => Self::IntDeltaZigzag,
            4 => Self::UintDelta,
            5 => Self::BoolBitpack,
            6 => Self::StringDictZstd,
            _ => {
                return Err(CodecError { codec: "?", offset: 0, reason: format!("unknown codec {v}") });
            }
        })
    }
}
impl CodecId {
    pub fn name(self) -> &'static str {
        "stub"
    }
}
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{codec} chunk is malformed at byte {offset}: {reason}")]
pub struct CodecError {
    pub codec: &'static str,
    pub offset: usize,
    pub reason: String,
}
fn e() -> CodecError {
    CodecError { codec: "stub", offset: 0, reason: "short".into() }
}
pub fn encode_timestamps(v: &[i64], out: &mut Vec<u8>) {
    for x in v {
        out.extend_from_slice(&x.to_le_bytes())
    }
}
pub fn decode_timestamps(d: &[u8], n: usize, out: &mut Vec<i64>) -> Result<(), CodecError> {
    if d.len() < n * 8 {
        return Err(e());
    }
    for c in d.chunks_exact(8).take(n) {
        out.push(i64::from_le_bytes(c.try_into().unwrap()))
    }
    Ok(())
}
pub fn encode_i64(v: &[i64], out: &mut Vec<u8>) {
    encode_timestamps(v, out)
}
pub fn decode_i64(d: &[u8], n: usize, out: &mut Vec<i64>) -> Result<(), CodecError> {
    decode_timestamps(d, n, out)
}
pub fn encode_u64(v: &[u64], out: &mut Vec<u8>) {
    for x in v {
        out.extend_from_slice(&x.to_le_bytes())
    }
}
pub fn decode_u64(d: &[u8], n: usize, out: &mut Vec<u64>) -> Result<(), CodecError> {
    if d.len() < n * 8 {
        return Err(e());
    }
    for c in d.chunks_exact(8).take(n) {
        out.push(u64::from_le_bytes(c.try_into().unwrap()))
    }
    Ok(())
}
pub fn encode_f64(v: &[f64], out: &mut Vec<u8>) {
    for x in v {
        out.extend_from_slice(&x.to_bits().to_le_bytes())
    }
}
pub fn decode_f64(d: &[u8], n: usize, out: &mut Vec<f64>) -> Result<(), CodecError> {
    if d.len() < n * 8 {
        return Err(e());
    }
    for c in d.chunks_exact(8).take(n) {
        out.push(f64::from_bits(u64::from_le_bytes(c.try_into().unwrap())))
    }
    Ok(())
}
pub fn encode_bool(v: &[bool], out: &mut Vec<u8>) {
    for x in v {
        out.push(*x as u8)
    }
}
pub fn decode_bool(d: &[u8], n: usize, out: &mut Vec<bool>) -> Result<(), CodecError> {
    if d.len() < n {
        return Err(e());
    }
    for b in &d[..n] {
        out.push(*b != 0)
    }
    Ok(())
}
pub fn encode_strings<S: AsRef<str>>(v: &[S], out: &mut Vec<u8>) {
    for s in v {
        let s = s.as_ref();
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes())
    }
}
pub fn decode_strings(d: &[u8], n: usize, out: &mut Vec<String>) -> Result<(), CodecError> {
    let mut p = 0;
    for _ in 0..n {
        let l = u32::from_le_bytes(d.get(p..p + 4).ok_or_else(e)?.try_into().unwrap()) as usize;
        p += 4;
        out.push(String::from_utf8(d.get(p..p + l).ok_or_else(e)?.to_vec()).map_err(|_| e())?);
        p += l;
    }
    Ok(())
}
