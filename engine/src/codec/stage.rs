//! The optional zstd stage segments apply over a chunk's codec payload
//! (chunk flag 4, segment format version 2; see `docs/format.md`).

use std::cell::RefCell;

/// zstd level of the optional stage over a chunk's codec payload (and of the string codec's frame).
pub const ZSTD_STAGE_LEVEL: i32 = 3;
/// Payloads shorter than this are left alone (a frame costs ~10 bytes).
pub const ZSTD_STAGE_MIN_BYTES: usize = 256;

thread_local! {
    /// zstd contexts, one per thread and reused: creating one allocates and
    /// clears hundreds of kilobytes, more than decoding a chunk costs.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's context from `slot`, made by `make` on first use.
fn with_context<C, T>(
    slot: &'static std::thread::LocalKey<RefCell<Option<C>>>,
    make: impl FnOnce() -> std::io::Result<C>,
    f: impl FnOnce(&mut C) -> std::io::Result<T>,
) -> std::io::Result<T> {
    slot.with(|cell| {
        let mut cell = cell.borrow_mut();
        let context = match cell.as_mut() {
            Some(c) => c,
            None => cell.insert(make()?),
        };
        f(context)
    })
}

/// The payload as `raw_len u32 | zstd frame`, if that is at least 5 % smaller:
/// the codecs leave byte-level redundancy (repeated bit patterns in packed
/// deltas, Gorilla streams) that an entropy coder still finds.
pub fn zstd_stage(payload: &[u8]) -> Option<Vec<u8>> {
    if payload.len() < ZSTD_STAGE_MIN_BYTES {
        return None;
    }
    let mut out = Vec::new();
    put_zstd_frame(payload, &mut out).ok()?;
    (out.len() * 20 <= payload.len() * 19).then_some(out)
}

/// Appends `raw_len u32 | zstd frame (level 3)` of `payload` to `out`: the
/// layout of the zstd stage and of the string codec. Fails only for a
/// payload of 4 GiB or more (its length does not fit) or if zstd fails.
pub(crate) fn put_zstd_frame(payload: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let len = u32::try_from(payload.len()).map_err(|_| format!("{} bytes do not fit a u32 length", payload.len()))?;
    let frame = with_context(&COMPRESSOR, || zstd::bulk::Compressor::new(ZSTD_STAGE_LEVEL), |c| c.compress(payload))
        .map_err(|e| format!("zstd compression failed: {e}"))?;
    out.reserve(4 + frame.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&frame);
    Ok(())
}

/// The largest payload of `values` values the zstd stage is used for (and a
/// reader accepts): far above what any numeric codec needs.
pub fn zstd_stage_limit(values: usize) -> usize {
    values.saturating_mul(16).saturating_add(4096)
}

/// Undoes [`zstd_stage`] (and reads the string codec's frame). `limit` bounds
/// the size a frame may claim, so a damaged length cannot make the reader
/// allocate without bound.
pub fn unzstd_stage(bytes: &[u8], limit: usize) -> Result<Vec<u8>, String> {
    let (len, frame) = bytes.split_at_checked(4).ok_or("zstd payload is shorter than its 4-byte length")?;
    let raw_len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if raw_len > limit {
        return Err(format!("zstd frame claims {raw_len} bytes, over the limit of {limit} for its values"));
    }
    let raw = with_context(&DECOMPRESSOR, zstd::bulk::Decompressor::new, |d| d.decompress(frame, raw_len))
        .map_err(|e| format!("zstd frame does not decompress: {e}"))?;
    if raw.len() != raw_len {
        return Err(format!("zstd frame decompresses to {} bytes, the chunk says {raw_len}", raw.len()));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::{unzstd_stage, zstd_stage, zstd_stage_limit};

    #[test]
    fn zstd_stage_round_trips_and_is_used_only_when_it_pays() {
        let repetitive: Vec<u8> = (0..4096u32).map(|i| (i % 7) as u8).collect();
        let z = zstd_stage(&repetitive).expect("repetitive bytes compress");
        assert!(z.len() < repetitive.len() / 4);
        assert_eq!(unzstd_stage(&z, zstd_stage_limit(4096)).unwrap(), repetitive);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let random: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(zstd_stage(&random).is_none(), "incompressible bytes stay as they are");
        assert!(zstd_stage(&repetitive[..100]).is_none(), "short payloads stay as they are");
    }

    #[test]
    fn damaged_zstd_payloads_are_errors_not_panics_or_huge_allocations() {
        let repetitive: Vec<u8> = (0..4096u32).map(|i| (i % 7) as u8).collect();
        let z = zstd_stage(&repetitive).unwrap();
        assert!(unzstd_stage(&z[..3], 1 << 20).is_err());
        assert!(unzstd_stage(&z[..z.len() - 2], 1 << 20).is_err());
        // A length above what the chunk's values could need is refused before decompressing.
        let mut claim = z.clone();
        claim[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(unzstd_stage(&claim, zstd_stage_limit(10)).unwrap_err().contains("claims"));
        // A length that disagrees with the frame.
        let mut short = z.clone();
        short[..4].copy_from_slice(&100u32.to_le_bytes());
        assert!(unzstd_stage(&short, 1 << 20).is_err());
        let mut garbage = z;
        for b in garbage.iter_mut().skip(4) {
            *b ^= 0x5A;
        }
        assert!(unzstd_stage(&garbage, 1 << 20).is_err());
    }
}
