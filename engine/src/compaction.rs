//! Compaction: merges a time partition's small and overlapping segment files
//! into fewer, larger ones, and rewrites files that deleted rows still sit in.
//!
//! **Precedence.** Every file records the WAL sequence range of the writes
//! it holds; the files of a partition never overlap in that range, and for
//! rows of the same series and time the file with the later range wins.
//! A job only merges files that are *contiguous* in that order, so its
//! output takes their place in it (its range is the union of theirs) and
//! last-write-wins holds after compaction exactly as before.
//!
//! **A job** reads its inputs series by series (the union of their series
//! keys, in key order), merges each series with the k-way last-write-wins
//! merge of the scan, drops rows that deletes or retention remove, and
//! re-encodes it with the adaptive codecs into one output file written
//! through [`crate::segment::SegmentWriter`]: memory holds about one series'
//! decoded rows, never the partition. Caps per job: at most
//! [`CompactionOptions::max_input_files`] inputs and
//! [`CompactionOptions::max_input_bytes`] input bytes (the output is at most
//! about as large); optional I/O rate limit
//! [`CompactionOptions::bytes_per_second`].
//!
//! **Crash safety.** The output is written under a temporary name, fsynced
//! and renamed into place; then the manifest is swapped atomically (inputs
//! out, output in); only then are the inputs deleted, each when the last
//! reader holding it (a running scan) lets go. A crash before the swap
//! leaves an unreferenced output, after it unreferenced inputs: opening the
//! database removes either. A job checks the free disk space first and, if
//! the disk fills up mid-job, removes its partial output and leaves its
//! inputs in place; a later run succeeds once there is room.
//!
//! **Choosing work.** The background thread ([`Mode::Tiered`]) merges a
//! partition once it has [`CompactionOptions::min_files`] files, picking the
//! run of contiguous files where no file outweighs the rest together: a big
//! compacted file is rewritten only once the small files after it (late
//! rows, say) add up to its size, so each byte is rewritten a logarithmic
//! number of times, not once per late point. [`Mode::Full`] (the
//! `compact` endpoint) merges every partition down to as few files as the
//! caps allow. Both rewrite every file a pending delete still applies to.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::db::{Inner, SegmentHandle, lock, read, sort_by_precedence, write};
use crate::manifest::SegmentEntry;
use crate::schema::{ColumnKind, TableSchema};
use crate::segment::{SegmentReader, SegmentWriter, TimeRange};
use crate::series::{SeriesData, SeriesKey, merge};
use crate::{CompactionOptions, Error, Result};

/// What a compaction run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CompactionReport {
    /// Jobs run (each merged or rewrote files of one partition).
    pub jobs: usize,
    /// Segment files before the run (of the databases it covered).
    pub files_before: usize,
    /// Segment files after it.
    pub files_after: usize,
    /// Bytes of segment files before.
    pub bytes_before: u64,
    /// Bytes of segment files after.
    pub bytes_after: u64,
    /// Bytes the jobs read.
    pub bytes_read: u64,
    /// Bytes the jobs wrote.
    pub bytes_written: u64,
    /// Rows in the files the jobs wrote.
    pub rows_written: u64,
    /// Wall time of the run, in milliseconds.
    pub elapsed_ms: u64,
    /// Jobs that failed, with their errors; their inputs stay in place.
    pub failures: Vec<String>,
    /// Cold files (object storage) rewritten or dropped to purge deleted rows.
    pub cold_files_purged: usize,
}

/// Segment files of one table's time partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionFiles {
    /// Database.
    pub database: String,
    /// Table.
    pub table: String,
    /// Start of the partition (ns since the epoch).
    pub partition_start: i64,
    /// Segment files.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Their rows (duplicates across files counted each time).
    pub rows: u64,
    /// Files of the partition in object storage (0 or 1).
    pub cold_files: usize,
    /// Their bytes.
    pub cold_bytes: u64,
}

/// How eagerly to compact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Background: size-tiered runs once a partition has `min_files` files.
    Tiered,
    /// On request: every partition down to as few files as the caps allow.
    Full,
}

/// One job: contiguous files (in precedence order) of one partition.
struct Job {
    database: String,
    table: String,
    partition_start: i64,
    inputs: Vec<Arc<SegmentHandle>>,
}

/// Most planning rounds of one run (each round shrinks the file count or
/// clears a pending delete from a file, so a run ends well before).
const MAX_ROUNDS: usize = 64;

/// Runs jobs until there is nothing left to do (or the database closes).
pub(crate) fn run(inner: &Inner, mode: Mode, database: Option<&str>) -> Result<CompactionReport> {
    let started = Instant::now();
    let _one_at_a_time = lock(&inner.compaction_lock);
    let mut report = CompactionReport::default();
    (report.files_before, report.bytes_before) = totals(inner, database);
    let mut failed: Vec<(String, String, i64)> = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let jobs: Vec<Job> = plan(inner, mode, database)
            .into_iter()
            .filter(|j| !failed.contains(&(j.database.clone(), j.table.clone(), j.partition_start)))
            .collect();
        if jobs.is_empty() {
            break;
        }
        for job in jobs {
            if inner.closed.load(Ordering::SeqCst) {
                break;
            }
            let name = format!("{}.{} partition {}", job.database, job.table, job.partition_start);
            let key = (job.database.clone(), job.table.clone(), job.partition_start);
            match run_job(inner, job, &mut report) {
                Ok(()) => {}
                Err(e) => {
                    inner.counters.compaction_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(job = %name, error = %e, "compaction job failed; its files stay as they are");
                    report.failures.push(format!("{name}: {e}"));
                    failed.push(key);
                }
            }
        }
        if inner.closed.load(Ordering::SeqCst) {
            break;
        }
    }
    (report.files_after, report.bytes_after) = totals(inner, database);
    report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    Ok(report)
}

fn totals(inner: &Inner, database: Option<&str>) -> (usize, u64) {
    let state = read(&inner.state);
    let handles = state.segments.iter().filter(|((db, _), _)| database.is_none_or(|d| d == db)).flat_map(|(_, l)| l);
    handles.fold((0, 0), |(n, b), h| (n + 1, b + h.entry.bytes))
}

/// Segment files per table and partition.
pub(crate) fn partitions(inner: &Inner, database: Option<&str>) -> Vec<PartitionFiles> {
    let state = read(&inner.state);
    let mut by: BTreeMap<(String, String, i64), PartitionFiles> = BTreeMap::new();
    fn entry<'a>(
        by: &'a mut BTreeMap<(String, String, i64), PartitionFiles>,
        database: Option<&str>,
        (db, table): &(String, String),
        start: i64,
    ) -> Option<&'a mut PartitionFiles> {
        if database.is_some_and(|d| d != db) {
            return None;
        }
        Some(by.entry((db.clone(), table.clone(), start)).or_insert_with(|| PartitionFiles {
            database: db.clone(),
            table: table.clone(),
            partition_start: start,
            files: 0,
            bytes: 0,
            rows: 0,
            cold_files: 0,
            cold_bytes: 0,
        }))
    }
    for (key, list) in &state.segments {
        for h in list {
            if let Some(p) = entry(&mut by, database, key, h.entry.partition_start) {
                p.files += 1;
                p.bytes += h.entry.bytes;
                p.rows += h.entry.rows;
            }
        }
    }
    #[cfg(feature = "tiering")]
    for (key, list) in &state.cold {
        for h in list {
            if let Some(p) = entry(&mut by, database, key, h.entry.partition_start) {
                p.cold_files += 1;
                p.cold_bytes += h.entry.bytes;
            }
        }
    }
    by.into_values().collect()
}

/// Picks at most one job per partition.
fn plan(inner: &Inner, mode: Mode, database: Option<&str>) -> Vec<Job> {
    let opts = &inner.options.compaction;
    let state = read(&inner.state);
    let mut jobs = Vec::new();
    for ((db, table), list) in &state.segments {
        if database.is_some_and(|d| d != db) {
            continue;
        }
        let tombstones: Vec<_> = state.tombstones.iter().filter(|t| t.is_for(db, table)).collect();
        let mut by_part: BTreeMap<i64, Vec<Arc<SegmentHandle>>> = BTreeMap::new();
        for h in list {
            by_part.entry(h.entry.partition_start).or_default().push(h.clone());
        }
        for (partition_start, files) in by_part {
            let needs_purge: Vec<bool> = files
                .iter()
                .map(|h| {
                    tombstones.iter().any(|t| {
                        t.applies_to(h.entry.max_seq, h.entry.purged_seq) && h.reader.may_hold(&t.tags, t.range())
                    })
                })
                .collect();
            let sizes: Vec<u64> = files.iter().map(|h| h.entry.bytes).collect();
            let run = match mode {
                Mode::Full => first_group(&sizes, &needs_purge, opts),
                Mode::Tiered if files.len() >= opts.min_files.max(2) => tiered_run(&sizes, opts),
                Mode::Tiered => None,
            };
            // A file a delete still applies to is rewritten on its own if no merge takes it.
            let run = run.or_else(|| needs_purge.iter().position(|n| *n).map(|i| (i, i + 1)));
            if let Some((lo, hi)) = run {
                jobs.push(Job {
                    database: db.clone(),
                    table: table.clone(),
                    partition_start,
                    inputs: files.get(lo..hi).map(<[_]>::to_vec).unwrap_or_default(),
                });
            }
        }
    }
    jobs
}

/// Whether a run of `n` files of `bytes` fits one job's caps (a single file always does).
fn fits(n: usize, bytes: u64, opts: &CompactionOptions) -> bool {
    n <= 1 || (n <= opts.max_input_files.max(2) && bytes <= opts.max_input_bytes)
}

/// Full mode: the first run from the oldest file that fits the caps and has
/// at least two files or a file to purge.
fn first_group(sizes: &[u64], needs_purge: &[bool], opts: &CompactionOptions) -> Option<(usize, usize)> {
    let mut lo = 0;
    while lo < sizes.len() {
        let mut hi = lo + 1;
        let mut bytes = sizes.get(lo).copied().unwrap_or(0);
        while hi < sizes.len() {
            let next = bytes + sizes.get(hi).copied().unwrap_or(0);
            if !fits(hi + 1 - lo, next, opts) {
                break;
            }
            bytes = next;
            hi += 1;
        }
        if hi - lo >= 2 || needs_purge.get(lo..hi).is_some_and(|p| p.iter().any(|x| *x)) {
            return Some((lo, hi));
        }
        lo = hi;
    }
    None
}

/// Tiered mode: the contiguous run of at least two files, within the caps,
/// in which no file is larger than all the others together; the longest
/// such run, the smallest in bytes among equals.
fn tiered_run(sizes: &[u64], opts: &CompactionOptions) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize, u64)> = None;
    for lo in 0..sizes.len() {
        let (mut total, mut largest) = (0u64, 0u64);
        for hi in lo..sizes.len() {
            let s = sizes.get(hi).copied().unwrap_or(0);
            total += s;
            largest = largest.max(s);
            let n = hi + 1 - lo;
            if !fits(n, total, opts) {
                break;
            }
            if n >= 2 && largest <= total - largest {
                let better = match best {
                    None => true,
                    Some((blo, bhi, bbytes)) => n > bhi - blo || (n == bhi - blo && total < bbytes),
                };
                if better {
                    best = Some((lo, hi + 1, total));
                }
            }
        }
    }
    best.map(|(lo, hi, _)| (lo, hi))
}

/// Bytes available to an unprivileged user on the file system holding `dir`.
#[cfg(unix)]
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path and `st` points to writable memory
    // of the right type; statvfs fills it on success and we read it only then.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::useless_conversion, reason = "the field types differ between platforms")]
    Some(u64::from(st.f_bavail).saturating_mul(u64::from(st.f_frsize)))
}

#[cfg(not(unix))]
fn free_bytes(_dir: &Path) -> Option<u64> {
    None
}

/// Limits a job's read plus written bytes per second.
struct RateLimiter {
    rate: u64,
    started: Instant,
    bytes: u64,
}

impl RateLimiter {
    fn new(rate: u64) -> Self {
        RateLimiter { rate, started: Instant::now(), bytes: 0 }
    }

    fn consume(&mut self, n: u64) {
        if self.rate == 0 {
            return;
        }
        self.bytes += n;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            std::thread::sleep((due - elapsed).min(Duration::from_secs(1)));
        }
    }
}

/// The schema of a table, from the catalog.
pub(crate) fn table_schema(inner: &Inner, database: &str, table: &str) -> Result<TableSchema> {
    read(&inner.catalog)
        .get(database)
        .and_then(|t| t.get(table))
        .cloned()
        .ok_or_else(|| Error::Internal(format!("table {database}.{table} is not in the catalog")))
}

/// Calls `f` with every series of `inputs` (files of one table, in
/// precedence order) in key order: its rows merged (last write wins), with
/// deleted and expired rows left out, and the chunk bytes read for it.
/// Memory holds about one series.
pub(crate) fn for_each_merged_series(
    inner: &Inner,
    database: &str,
    table: &str,
    inputs: &[Arc<SegmentHandle>],
    schema: &TableSchema,
    mut f: impl FnMut(&SeriesKey, SeriesData, u64) -> Result<()>,
) -> Result<()> {
    let tombstones: Vec<_> =
        read(&inner.state).tombstones.iter().filter(|t| t.is_for(database, table)).cloned().collect();
    let cutoff = crate::retention::cutoff(&read(&inner.retention), database, table, crate::delete::now_nanos());
    let wanted_owned = schema.field_columns();
    let wanted: Vec<(usize, &str, ColumnKind)> = wanted_owned.iter().map(|(i, n, k)| (*i, n.as_str(), *k)).collect();
    let width = schema.len();
    // Every series of the inputs, in key order, with where it is in each input (oldest first).
    let mut series: BTreeMap<SeriesKey, Vec<(usize, u32)>> = BTreeMap::new();
    for (i, h) in inputs.iter().enumerate() {
        for sid in 0..h.reader.footer().series.len() as u32 {
            series.entry(h.reader.series_key(sid)).or_default().push((i, sid));
        }
    }
    for (key, places) in &series {
        let mut sources = Vec::with_capacity(places.len());
        let mut read_now = 0u64;
        for &(i, sid) in places {
            let Some(h) = inputs.get(i) else { continue };
            let mut data = h.reader.read_series(sid, &wanted, width, TimeRange::ALL)?;
            read_now += series_bytes(&h.reader, sid);
            let hidden =
                crate::delete::hidden_ranges(&tombstones, database, table, key, h.entry.max_seq, h.entry.purged_seq);
            crate::delete::retain_rows(&mut data, &hidden, cutoff);
            sources.push(data);
        }
        f(key, merge(sources), read_now)?;
    }
    Ok(())
}

fn run_job(inner: &Inner, job: Job, report: &mut CompactionReport) -> Result<()> {
    let started = Instant::now();
    let opts = &inner.options.compaction;
    let input_bytes: u64 = job.inputs.iter().map(|h| h.entry.bytes).sum();
    if let Some(free) = free_bytes(&inner.segment_dir)
        && free < input_bytes.saturating_add(opts.min_free_bytes)
    {
        return Err(Error::ResourceLimit(format!(
            "compaction needs about {} MiB free on {} ({} MiB of input plus a {} MiB margin), {} MiB are available; \
             free disk space or shorten retention",
            (input_bytes + opts.min_free_bytes) >> 20,
            inner.segment_dir.display(),
            input_bytes >> 20,
            opts.min_free_bytes >> 20,
            free >> 20
        )));
    }
    let applied_seq = read(&inner.state).applied_seq;
    let schema = table_schema(inner, &job.database, &job.table)?;
    let id = {
        let mut m = lock(&inner.manifest);
        let id = m.next_segment_id;
        m.next_segment_id += 1;
        id
    };
    let path = inner.segment_dir.join(SegmentEntry::file_name(id));
    let mut writer = SegmentWriter::create(inner.backend.as_ref(), &path, &job.table, job.partition_start, &schema)?;
    let mut limiter = RateLimiter::new(opts.bytes_per_second);
    let mut bytes_read = 0u64;
    for_each_merged_series(inner, &job.database, &job.table, &job.inputs, &schema, |key, merged, read_now| {
        let before = writer.bytes_written();
        writer.add(key, &merged)?;
        bytes_read += read_now;
        limiter.consume(read_now + writer.bytes_written() - before);
        Ok(())
    })?;
    let output = if writer.series_count() == 0 {
        drop(writer); // every row was deleted or expired: no output file
        None
    } else {
        let stats = writer.finish()?;
        let reader = Arc::new(SegmentReader::open(&path)?);
        let entry = SegmentEntry {
            id,
            partition_start: job.partition_start,
            min_time: stats.min_time,
            max_time: stats.max_time,
            rows: stats.rows,
            bytes: stats.bytes,
            level: job.inputs.iter().map(|h| h.entry.level).max().unwrap_or(0) + 1,
            min_seq: job.inputs.iter().map(|h| h.entry.min_seq).min().unwrap_or(0),
            max_seq: job.inputs.iter().map(|h| h.entry.max_seq).max().unwrap_or(0),
            purged_seq: applied_seq,
        };
        Some(Arc::new(SegmentHandle { entry, reader }))
    };
    crate::failpoint::hit("compaction.output_written");
    let ids: Vec<u64> = job.inputs.iter().map(|h| h.entry.id).collect();
    let discard = |output: Option<Arc<SegmentHandle>>| {
        if let Some(o) = output {
            o.reader.mark_obsolete();
        }
    };
    {
        let mut manifest = lock(&inner.manifest);
        let mut next = manifest.clone();
        let Some(t) = next.databases.get_mut(&job.database).and_then(|d| d.tables.get_mut(&job.table)) else {
            discard(output);
            return Ok(());
        };
        if !ids.iter().all(|id| t.segments.iter().any(|s| s.id == *id)) {
            // Retention dropped an input meanwhile: this job's work is moot.
            discard(output);
            return Ok(());
        }
        t.segments.retain(|s| !ids.contains(&s.id));
        if let Some(o) = &output {
            t.segments.push(o.entry.clone());
        }
        {
            let mut state = write(&inner.state);
            let list = state.segments.entry((job.database.clone(), job.table.clone())).or_default();
            list.retain(|h| !ids.contains(&h.entry.id));
            if let Some(o) = &output {
                list.push(o.clone());
            }
            sort_by_precedence(list);
            inner.settle_tombstones(&mut next, &mut state);
        }
        if let Err(e) = next.store(inner.backend.as_ref(), &inner.dir) {
            inner.poison(format!("storing the manifest after a compaction failed: {e}"));
            return Err(e);
        }
        *manifest = next;
    }
    crate::failpoint::hit("compaction.manifest_swapped");
    let written = output.as_ref().map_or(0, |o| o.entry.bytes);
    report.jobs += 1;
    report.bytes_read += bytes_read;
    report.bytes_written += written;
    report.rows_written += output.as_ref().map_or(0, |o| o.entry.rows);
    for h in &job.inputs {
        h.reader.mark_obsolete();
    }
    drop(job.inputs); // the files go now, or when the last scan holding one ends
    crate::failpoint::hit("compaction.inputs_deleted");
    let c = &inner.counters;
    c.compactions.fetch_add(1, Ordering::Relaxed);
    c.compaction_bytes_read.fetch_add(bytes_read, Ordering::Relaxed);
    c.compaction_bytes_written.fetch_add(written, Ordering::Relaxed);
    c.compaction_nanos.fetch_add(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    tracing::debug!(
        database = %job.database, table = %job.table, partition = job.partition_start,
        inputs = ids.len(), bytes_read, bytes_written = written, "compacted"
    );
    Ok(())
}

/// Bytes of a series' chunks in a file.
fn series_bytes(reader: &SegmentReader, sid: u32) -> u64 {
    reader.footer().series.get(sid as usize).map_or(0, |s| s.chunks.iter().map(|c| u64::from(c.len)).sum())
}

/// Lowers the calling thread's CPU priority (nice 10), so flushes and
/// queries come first.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls without pointers; on Linux, a thread id
        // with PRIO_PROCESS changes only that thread's nice value.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10) };
        if rc != 0 {
            tracing::debug!("could not lower the compaction thread's priority");
        }
    }
}

/// The background compaction and retention thread.
pub(crate) fn background(weak: Weak<Inner>) {
    lower_priority();
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        {
            let (m, cv) = &inner.compact_signal;
            let mut signaled = lock(m);
            if !*signaled {
                let interval = inner.options.compaction.interval;
                signaled = cv.wait_timeout(signaled, interval).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
            }
            *signaled = false;
        }
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        if inner.poisoned().is_some() {
            continue;
        }
        if let Err(e) = inner.enforce_retention() {
            tracing::error!(error = %e, "retention pass failed");
        }
        match run(&inner, Mode::Tiered, None) {
            Ok(r) if r.jobs > 0 => tracing::info!(
                jobs = r.jobs,
                files_before = r.files_before,
                files_after = r.files_after,
                bytes_read = r.bytes_read,
                bytes_written = r.bytes_written,
                "background compaction"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "background compaction failed"),
        }
        #[cfg(feature = "tiering")]
        if let Some(tier) = inner.tier.clone().filter(|t| t.options.background) {
            if let Err(e) = crate::tiering::purge(&inner, &tier, None) {
                tracing::error!(error = %e, "purging deleted rows from cold files failed");
            }
            match crate::tiering::run(&inner, &tier, None) {
                // A failed upload may have left an object: collect it now, not at the next start.
                Ok(r) if !r.failures.is_empty() => {
                    if let Err(e) = crate::tiering::collect_garbage(&inner, &tier) {
                        tracing::warn!(error = %e, "cold-tier garbage collection failed");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "background tiering failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> CompactionOptions {
        CompactionOptions { max_input_files: 4, max_input_bytes: 1000, ..CompactionOptions::default() }
    }

    #[test]
    fn tiered_never_rewrites_a_dominant_file_for_a_small_one() {
        // A big compacted file and small late files after it: only the small ones merge.
        assert_eq!(tiered_run(&[500, 10, 10, 10], &opts()), Some((1, 4)));
        assert_eq!(tiered_run(&[500, 10], &opts()), None);
        // Equal files merge, up to the file cap.
        assert_eq!(tiered_run(&[10, 10, 10, 10, 10, 10], &opts()), Some((0, 4)));
        // The byte cap holds.
        assert_eq!(tiered_run(&[600, 600], &opts()), None);
    }

    #[test]
    fn full_mode_groups_within_caps_and_purges_single_files() {
        assert_eq!(first_group(&[10, 10, 10, 10, 10], &[false; 5], &opts()), Some((0, 4)));
        assert_eq!(first_group(&[900, 900, 10], &[false; 3], &opts()), Some((1, 3)));
        assert_eq!(first_group(&[10], &[false], &opts()), None);
        assert_eq!(first_group(&[10], &[true], &opts()), Some((0, 1)));
    }

    #[test]
    fn free_bytes_reads_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).is_some_and(|b| b > 0));
    }
}
