//! Named failpoints for crash tests (feature `failpoints`).
//!
//! With the feature on, `TELEMARK_FAILPOINT=<name>` in the environment makes
//! the process abort (as abruptly as `SIGKILL`: no destructors, no buffered
//! writes) the first time it reaches the point of that name, so a test can
//! crash a real process at every step of a flush, compaction, retention drop
//! or delete purge and check what reopening finds. `<name>=sleep:<ms>`
//! instead makes every pass through the point sleep that long (a slow disk,
//! for backpressure tests). Without the feature, [`hit`] is an empty inline
//! function.
//!
//! The points, in the order a job reaches them:
//!
//! | name | reached |
//! |---|---|
//! | `flush.segments_written` | a flush's segment files are durable, the manifest is not stored |
//! | `flush.manifest_stored` | the manifest lists them, the WAL is not trimmed |
//! | `compaction.output_written` | a compaction output is durable, the manifest is not swapped |
//! | `compaction.manifest_swapped` | the manifest lists the output, the inputs are not deleted |
//! | `compaction.inputs_deleted` | the inputs are unlinked |
//! | `retention.manifest_swapped` | expired files left the manifest, not the disk |
//! | `delete.logged` | a delete is durable in the WAL and applied, not yet acknowledged |
//! | `tier.uploaded` | a cold object is uploaded and verified, its index not written |
//! | `tier.index_written` | its local index is durable, the manifest is not swapped |
//! | `tier.manifest_swapped` | the manifest lists the cold file, the segments are not unlinked |
//! | `tier.part_uploaded` | a part of a multipart upload is stored (not in the crash matrix: its store has no multipart API; a real-client test kills the server mid-upload instead) |
//! | `backup.files_uploaded` | a backup's files and manifest are uploaded, its BACKUP file is not |

/// Every failpoint name, for tests that crash at each.
pub const NAMES: &[&str] = &[
    "flush.segments_written",
    "flush.manifest_stored",
    "flush.last_values_saved",
    "compaction.output_written",
    "compaction.manifest_swapped",
    "compaction.inputs_deleted",
    "retention.manifest_swapped",
    "delete.logged",
    "tier.uploaded",
    "tier.index_written",
    "tier.manifest_swapped",
    "tier.garbage_deleted",
    "backup.files_uploaded",
];

/// Aborts the process if `TELEMARK_FAILPOINT` names this point, or sleeps
/// if it says `<name>=sleep:<ms>`.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    static ARMED: std::sync::OnceLock<Option<(String, Option<u64>)>> = std::sync::OnceLock::new();
    let armed = ARMED.get_or_init(|| {
        let v = std::env::var("TELEMARK_FAILPOINT").ok()?;
        Some(match v.split_once("=sleep:") {
            Some((point, ms)) => (point.to_string(), Some(ms.parse().unwrap_or(100))),
            None => (v, None),
        })
    });
    match armed {
        Some((point, None)) if point == name => {
            eprintln!("failpoint {name}: aborting");
            std::process::abort();
        }
        Some((point, Some(ms))) if point == name => std::thread::sleep(std::time::Duration::from_millis(*ms)),
        _ => {}
    }
}

/// Failpoints are compiled out without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}
