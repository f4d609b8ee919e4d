//! The on-disk decoders never panic: on random bytes, on random mutations of
//! valid WAL and segment files, and on every saved fuzzer input in
//! `engine/fuzz/seeds/`. (The same entry points are the cargo-fuzz targets.)

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is a test failure")]

use std::path::Path;

use proptest::prelude::*;
use telemark_engine::{Database, Options, WriteBatch, fuzz};

/// A valid segment file and a valid WAL file made by the real engine.
fn valid_files() -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path(), Options { background_flush: false, ..Options::default() }).unwrap();
    let mut b = WriteBatch::new("m");
    for i in 0..40i64 {
        b.row(i * 997)
            .tag("device", format!("d{}", i % 3))
            .field("f", i as f64 / 3.0)
            .field("n", -i)
            .field("u", i as u64 * 7)
            .field("b", i % 2 == 0)
            .field("s", ["x", "y", "z"][i as usize % 3]);
    }
    let _ = db.write("db", &b).unwrap();
    // A delete record (WAL version 2) among the writes.
    let del = telemark_engine::DeleteRequest::new("m").filter_tag("device", ["d1", "d2"]).time_range(0, 20_000);
    let _ = db.delete("db", &del).unwrap();
    let _ = db.write("db", &b).unwrap();
    let wal_file = std::fs::read_dir(dir.path().join("wal")).unwrap().map(|e| e.unwrap().path()).max().unwrap();
    let wal = std::fs::read(wal_file).unwrap();
    db.flush().unwrap();
    let seg_file = std::fs::read_dir(dir.path().join("segments")).unwrap().map(|e| e.unwrap().path()).next().unwrap();
    (std::fs::read(seg_file).unwrap(), wal)
}

fn mutate(mut data: Vec<u8>, edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    for (at, x) in edits {
        if !data.is_empty() {
            let n = data.len();
            data[at % n] ^= x | 1;
        }
    }
    if let Some(c) = cut {
        let n = data.len();
        data.truncate(c % (n + 1));
    }
    data
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        fuzz::wal_payload(&data);
        fuzz::wal_file(&data);
        fuzz::segment_file(&data);
        fuzz::codecs(&data);
    }

    #[test]
    fn mutated_valid_files(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in prop::option::of(any::<usize>())) {
        let (seg, wal) = valid_files();
        fuzz::segment_file(&mutate(seg, &edits, cut));
        fuzz::wal_file(&mutate(wal, &edits, cut));
    }
}

#[test]
fn saved_fuzzer_inputs() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut n = 0;
    for (target, run) in
        [("segment_file", fuzz::segment_file as fn(&[u8])), ("wal_file", fuzz::wal_file), ("codecs", fuzz::codecs)]
    {
        let Ok(entries) = std::fs::read_dir(seeds.join(target)) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_file() && p.extension().is_none_or(|x| x != "md") {
                run(&std::fs::read(&p).unwrap());
                n += 1;
            }
        }
    }
    // The valid files themselves are seeds too.
    let (seg, wal) = valid_files();
    fuzz::segment_file(&seg);
    fuzz::wal_file(&wal);
    eprintln!("{n} saved inputs replayed");
}
