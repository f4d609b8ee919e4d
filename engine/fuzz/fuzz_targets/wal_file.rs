#![no_main]
//! Replays arbitrary bytes as a WAL file, and decodes them as a record payload.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    telemark_engine::fuzz::wal_payload(data);
    telemark_engine::fuzz::wal_file(data);
});
