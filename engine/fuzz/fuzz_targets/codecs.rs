#![no_main]
//! Decodes arbitrary bytes with every codec; the first two bytes choose the count.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    telemark_engine::fuzz::codecs(data);
});
