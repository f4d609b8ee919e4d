//! The alert journal: every state change and every delivery, appended and
//! fsynced before any notification leaves, so alert state and the
//! notification outbox survive a crash.
//!
//! File `<dir>/journal`: the engine's 16-byte file header (magic
//! `TMKALRT\0`, version 1, header checksum), then records, each
//! `u32 length, u32 CRC32C, JSON`. A torn or
//! damaged tail (a crash mid-append) is cut at the last good record when
//! the journal is opened. At open the journal is rewritten (to a temporary
//! file, fsynced, renamed) holding only what is still needed: the current
//! instances and the undelivered notifications.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::eval::{Instance, State};

/// Magic and version, in one place (the engine's 16-byte file header,
/// with its own checksum).
const HEADER: telemark_engine::FileHeader =
    telemark_engine::FileHeader { format: "alert journal", magic: *b"TMKALRT\0", version: 1, oldest: 1 };
const HEADER_LEN: usize = telemark_engine::FILE_HEADER_LEN;
/// Largest record accepted when reading (a damaged length is not trusted).
const MAX_RECORD: usize = 16 << 20;

/// One journal record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
pub enum Record {
    /// An instance's new state; with `sinks` when it is a notification
    /// still to deliver to them.
    Change {
        seq: u64,
        /// Wall clock (ms) of the change.
        at: i64,
        instance: Instance,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        sinks: Vec<String>,
    },
    /// Sequence numbers below `seq` are used (kept when the journal is rewritten:
    /// they are the notifications' idempotency keys and must never repeat).
    Next { seq: u64 },
    /// The notification `seq` was delivered to `sink` (or given up on).
    Delivered {
        seq: u64,
        sink: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        dropped: bool,
    },
}

/// What the journal held at open.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The last state of every instance, by (rule, device).
    pub instances: BTreeMap<(String, String), Instance>,
    /// Notifications not yet delivered: (seq, at, instance, the sinks it still owes).
    pub outbox: Vec<(u64, i64, Instance, Vec<String>)>,
    /// The next sequence number.
    pub next_seq: u64,
    /// Bytes cut from a torn tail.
    pub torn_bytes: u64,
}

/// The open journal.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: File,
}

fn frame(record: &Record, out: &mut Vec<u8>) {
    let json = serde_json::to_vec(record).unwrap_or_default();
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&json).to_le_bytes());
    out.extend_from_slice(&json);
}

fn io(path: &Path, e: std::io::Error) -> String {
    format!("alert journal {}: {e}", path.display())
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, recovers its contents and
    /// rewrites it compactly. Resolved instances older than `forget_ms`
    /// (wall clock) are dropped.
    pub fn open(dir: &Path, forget_before_ms: i64) -> Result<(Journal, Recovered), String> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let path = dir.join("journal");
        let mut rec = Recovered { next_seq: 1, ..Recovered::default() };
        match File::open(&path) {
            Ok(mut f) => {
                let mut data = Vec::new();
                f.read_to_end(&mut data).map_err(|e| io(&path, e))?;
                read_records(&path, &data, &mut rec)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path, e)),
        }
        rec.instances.retain(|_, i| {
            i.state != State::Inactive && !(i.state == State::Resolved && i.resolved_at.unwrap_or(0) < forget_before_ms)
        });
        // Rewrite: the outbox (in order), then the instances' current states
        // (a later record wins, and an owed notification may be older than
        // its instance's state).
        let mut out = Vec::from(&HEADER.encode()[..]);
        frame(&Record::Next { seq: rec.next_seq }, &mut out);
        for (seq, at, inst, sinks) in &rec.outbox {
            frame(&Record::Change { seq: *seq, at: *at, instance: inst.clone(), sinks: sinks.clone() }, &mut out);
        }
        for inst in rec.instances.values() {
            frame(&Record::Change { seq: 0, at: 0, instance: inst.clone(), sinks: Vec::new() }, &mut out);
        }
        telemark_engine::fs::write_file_atomic(&path, &out).map_err(|e| format!("alert journal: {e}"))?;
        let file = OpenOptions::new().append(true).open(&path).map_err(|e| io(&path, e))?;
        Ok((Journal { path, file }, rec))
    }

    /// Appends records and fsyncs them.
    pub fn append(&mut self, records: &[Record]) -> Result<(), String> {
        if records.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        records.iter().for_each(|r| frame(r, &mut out));
        self.file.write_all(&out).map_err(|e| io(&self.path, e))?;
        self.file.sync_data().map_err(|e| io(&self.path, e))
    }
}

fn read_records(path: &Path, data: &[u8], rec: &mut Recovered) -> Result<(), String> {
    if data.len() < HEADER_LEN {
        // A crash while creating it: nothing was ever appended.
        rec.torn_bytes = data.len() as u64;
        return Ok(());
    }
    HEADER.check(path, data).map_err(|e| e.to_string())?;
    let mut pos = HEADER_LEN;
    // seq -> index in rec.outbox
    let mut owed: BTreeMap<u64, usize> = BTreeMap::new();
    let mut delivered: BTreeSet<(u64, String)> = BTreeSet::new();
    while pos < data.len() {
        let Some(head) = data.get(pos..pos + 8) else { break };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len > MAX_RECORD {
            break;
        }
        let Some(body) = data.get(pos + 8..pos + 8 + len) else { break };
        if crc32c::crc32c(body) != crc {
            break;
        }
        let Ok(record) = serde_json::from_slice::<Record>(body) else { break };
        pos += 8 + len;
        match record {
            Record::Change { seq, at, instance, sinks } => {
                rec.next_seq = rec.next_seq.max(seq + 1);
                if !sinks.is_empty() {
                    owed.insert(seq, rec.outbox.len());
                    rec.outbox.push((seq, at, instance.clone(), sinks));
                }
                rec.instances.insert((instance.rule.clone(), instance.device.clone()), instance);
            }
            Record::Delivered { seq, sink, .. } => {
                delivered.insert((seq, sink));
            }
            Record::Next { seq } => rec.next_seq = rec.next_seq.max(seq),
        }
    }
    rec.torn_bytes = (data.len() - pos) as u64;
    for (seq, sink) in delivered {
        if let Some(&i) = owed.get(&seq) {
            rec.outbox[i].3.retain(|s| *s != sink);
        }
    }
    rec.outbox.retain(|(_, _, _, sinks)| !sinks.is_empty());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(state: State) -> Instance {
        Instance {
            rule: "r".into(),
            device: "d".into(),
            fingerprint: "f".into(),
            labels: BTreeMap::new(),
            state,
            value: 1.0,
            condition: true,
            active_at: 5,
            fired_at: None,
            resolved_at: None,
            cleared_at: None,
            last_time: 0,
            run: 1,
            clear_run: 0,
            seq: 0,
        }
    }

    #[test]
    fn state_and_outbox_survive_reopen_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, rec) = Journal::open(dir.path(), 0).unwrap();
        assert_eq!(rec.next_seq, 1);
        let sinks = vec!["mqtt".to_string(), "hook".to_string()];
        j.append(&[
            Record::Change { seq: 1, at: 10, instance: instance(State::Pending), sinks: vec![] },
            Record::Change { seq: 2, at: 20, instance: instance(State::Firing), sinks: sinks.clone() },
            Record::Delivered { seq: 2, sink: "mqtt".into(), dropped: false },
        ])
        .unwrap();
        drop(j);
        // A torn append: half a record.
        let path = dir.path().join("journal");
        let mut data = std::fs::read(&path).unwrap();
        let mut extra = Vec::new();
        frame(&Record::Delivered { seq: 2, sink: "hook".into(), dropped: false }, &mut extra);
        data.extend_from_slice(&extra[..extra.len() - 3]);
        std::fs::write(&path, &data).unwrap();

        let (mut j, rec) = Journal::open(dir.path(), 0).unwrap();
        assert!(rec.torn_bytes > 0);
        assert_eq!(rec.next_seq, 3);
        assert_eq!(rec.instances.values().next().unwrap().state, State::Firing);
        assert_eq!(rec.outbox.len(), 1);
        assert_eq!(rec.outbox[0].3, vec!["hook".to_string()], "mqtt was delivered, the hook was not");
        j.append(&[Record::Delivered { seq: 2, sink: "hook".into(), dropped: false }]).unwrap();
        drop(j);
        let (mut j, rec) = Journal::open(dir.path(), 0).unwrap();
        assert!(rec.outbox.is_empty());
        // An owed firing notification older than the instance's resolved state.
        let mut resolved = instance(State::Resolved);
        resolved.resolved_at = Some(30);
        j.append(&[
            Record::Change { seq: 3, at: 25, instance: instance(State::Firing), sinks: vec!["hook".into()] },
            Record::Change { seq: 4, at: 30, instance: resolved, sinks: vec!["hook".into()] },
            Record::Delivered { seq: 4, sink: "hook".into(), dropped: false },
        ])
        .unwrap();
        drop(j);
        for _ in 0..2 {
            let (_, rec) = Journal::open(dir.path(), 0).unwrap();
            assert_eq!(rec.instances.values().next().unwrap().state, State::Resolved);
            assert_eq!(rec.outbox.len(), 1);
            assert_eq!(rec.next_seq, 5);
        }
        let (mut j, _) = Journal::open(dir.path(), 0).unwrap();
        j.append(&[Record::Delivered { seq: 3, sink: "hook".into(), dropped: false }]).unwrap();
        drop(j);
        for _ in 0..2 {
            let (_, rec) = Journal::open(dir.path(), 0).unwrap();
            assert!(rec.outbox.is_empty());
            assert_eq!(rec.next_seq, 5, "the compacted journal keeps the sequence");
        }
    }

    #[test]
    fn damage_is_never_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        std::fs::write(&path, b"NOTAJOURNAL, BUT LONG ENOUGH").unwrap();
        assert!(Journal::open(dir.path(), 0).unwrap_err().contains("bad magic"));
        let newer = telemark_engine::FileHeader { version: 9, ..HEADER };
        let mut data = newer.encode().to_vec();
        data.extend_from_slice(&[0; 20]);
        std::fs::write(&path, &data).unwrap();
        let e = Journal::open(dir.path(), 0).unwrap_err();
        assert!(e.contains("version 9") && e.contains("upgrade"), "{e}");
        let mut damaged = HEADER.encode().to_vec();
        damaged[9] ^= 1;
        std::fs::write(&path, &damaged).unwrap();
        assert!(Journal::open(dir.path(), 0).unwrap_err().contains("checksum"));
        for cut in 0..40 {
            let mut data = HEADER.encode().to_vec();
            data.extend((0..cut).map(|i| (i * 37) as u8));
            std::fs::write(&path, &data).unwrap();
            Journal::open(dir.path(), 0).unwrap();
        }
    }
}
