#![no_main]
//! Opens arbitrary bytes as a segment file and reads every series.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    telemark_engine::fuzz::segment_file(data);
});
