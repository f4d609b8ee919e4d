//! The devices offline rules know, kept across restarts so a restart still
//! knows the fleet (and a device silent since before it goes offline).
//!
//! A device is seen for the first time once: its rule, key and tags are
//! appended to `seen.log` (JSON lines, fsynced once per worker pass), so
//! meeting new devices costs in proportion to them, not to the fleet. The
//! log is folded into the snapshot `seen.json` (atomic replace) when it has
//! grown as long as the snapshot (so each device is rewritten O(1) times on
//! average), and at open. A torn last line (a crash during an append) is
//! ignored: that device is met again on its next row.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::eval::{Evaluator, Seen};

/// A device an offline rule met for the first time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NewDevice {
    pub(crate) rule: String,
    pub(crate) device: String,
    pub(crate) tags: Vec<(String, String)>,
}

/// The snapshot and log of seen devices.
#[derive(Debug)]
pub(crate) struct SeenStore {
    snapshot: PathBuf,
    log_path: PathBuf,
    log: Option<std::fs::File>,
    /// Lines in the log.
    logged: usize,
    /// Devices in the snapshot.
    saved: usize,
}

/// Fold the log into the snapshot once it has at least this many lines.
const MIN_FOLD: usize = 10_000;

impl SeenStore {
    /// Loads the snapshot and the log into `eval`: every device counts as
    /// seen no earlier than `started` (a restart or downtime is not silence).
    /// Then folds the log into a fresh snapshot.
    pub(crate) fn open(dir: &Path, eval: &mut Evaluator, started: i64) -> Self {
        let mut store = SeenStore {
            snapshot: dir.join("seen.json"),
            log_path: dir.join("seen.log"),
            log: None,
            logged: 0,
            saved: 0,
        };
        let position = |eval: &Evaluator, rule: &str| eval.rules.iter().position(|x| x.config.name == rule);
        if let Ok(data) = std::fs::read(&store.snapshot) {
            match serde_json::from_slice::<BTreeMap<String, BTreeMap<String, Seen>>>(&data) {
                Ok(saved) => {
                    for (rule, devices) in saved {
                        if let Some(r) = position(eval, &rule) {
                            for (device, s) in devices {
                                eval.seen[r].entry(device).or_insert(s);
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(
                    file = %store.snapshot.display(), error = %e, "ignoring a damaged list of seen devices"
                ),
            }
        }
        let mut replayed = 0usize;
        if let Ok(data) = std::fs::read(&store.log_path) {
            for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                // A line that does not parse is the tail a crash tore.
                let Ok(d) = serde_json::from_slice::<NewDevice>(line) else { break };
                replayed += 1;
                if let Some(r) = position(eval, &d.rule) {
                    eval.seen[r].entry(d.device).or_insert(Seen { at: started, tags: d.tags });
                }
            }
        }
        for seen in eval.seen.iter_mut() {
            for s in seen.values_mut() {
                s.at = s.at.max(started);
            }
        }
        store.saved = eval.seen.iter().map(HashMap::len).sum();
        if replayed > 0 || store.log_path.exists() {
            store.fold(eval);
        }
        store
    }

    /// Appends newly met devices and syncs the log.
    pub(crate) fn append(&mut self, devices: &[NewDevice]) -> std::io::Result<()> {
        if devices.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for d in devices {
            serde_json::to_writer(&mut buf, d).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        if self.log.is_none() {
            let f = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path)?;
            self.log = Some(f);
        }
        if let Some(f) = self.log.as_mut() {
            f.write_all(&buf)?;
            f.sync_data()?;
        }
        self.logged += devices.len();
        Ok(())
    }

    /// True when the log is long enough to fold into the snapshot.
    pub(crate) fn should_fold(&self) -> bool {
        self.logged >= MIN_FOLD.max(self.saved)
    }

    /// Writes the snapshot of `eval`'s devices, then empties the log.
    pub(crate) fn fold(&mut self, eval: &Evaluator) {
        let map: BTreeMap<&str, &HashMap<String, Seen>> = eval
            .rules
            .iter()
            .zip(&eval.seen)
            .filter(|(_, s)| !s.is_empty())
            .map(|(r, s)| (r.config.name.as_str(), s))
            .collect();
        let data = serde_json::to_vec(&map).unwrap_or_default();
        if let Err(e) = telemark_engine::fs::write_file_atomic(&self.snapshot, &data) {
            tracing::warn!(file = %self.snapshot.display(), error = %e, "saving the seen devices failed");
            return;
        }
        // Everything in the log is in the snapshot now.
        self.log = None;
        match std::fs::remove_file(&self.log_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(file = %self.log_path.display(), error = %e, "cannot remove the seen-device log"),
        }
        self.logged = 0;
        self.saved = eval.seen.iter().map(HashMap::len).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rule::{Rule, RuleConfig};

    fn evaluator() -> Evaluator {
        let c = serde_json::json!({"name": "silent", "database": "db", "table": "t", "kind": "offline",
                                   "after": "1m", "device_tag": "device"});
        let rule = Rule::compile(&serde_json::from_value::<RuleConfig>(c).unwrap()).unwrap();
        Evaluator::new(vec![rule], i64::MAX)
    }

    fn device(i: usize) -> NewDevice {
        NewDevice { rule: "silent".into(), device: format!("d{i}"), tags: vec![("device".into(), format!("d{i}"))] }
    }

    #[test]
    fn the_log_and_snapshot_survive_a_torn_tail_and_fold() {
        let dir = tempfile::tempdir().unwrap();
        let mut eval = evaluator();
        let mut store = SeenStore::open(dir.path(), &mut eval, 1_000);
        store.append(&(0..3).map(device).collect::<Vec<_>>()).unwrap();
        store.append(&[device(3)]).unwrap();
        drop(store);
        // A crash tore the last append.
        let log = dir.path().join("seen.log");
        let mut bytes = std::fs::read(&log).unwrap();
        bytes.extend_from_slice(br#"{"rule":"silent","devi"#);
        std::fs::write(&log, bytes).unwrap();

        let mut eval = evaluator();
        let store = SeenStore::open(dir.path(), &mut eval, 5_000);
        let mut devices: Vec<&String> = eval.seen[0].keys().collect();
        devices.sort();
        assert_eq!(devices, ["d0", "d1", "d2", "d3"]);
        assert!(eval.seen[0].values().all(|s| s.at == 5_000), "seen no earlier than the start");
        // Opening folded the log into the snapshot.
        assert!(!log.exists());
        assert!(dir.path().join("seen.json").exists());
        assert_eq!(store.saved, 4);

        // The log folds once it is as long as the snapshot (and at least MIN_FOLD).
        let mut store = store;
        assert!(!store.should_fold());
        store.logged = MIN_FOLD;
        assert!(store.should_fold());
        let mut eval2 = evaluator();
        let again = SeenStore::open(dir.path(), &mut eval2, 9_000);
        assert_eq!(again.saved, 4);
        assert_eq!(eval2.seen[0].get("d2").map(|s| s.tags.clone()), Some(vec![("device".into(), "d2".into())]));
    }
}
