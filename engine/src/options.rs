//! Options for opening a [`crate::Database`].

use std::sync::Arc;
use std::time::Duration;

use crate::fs::{Backend, StdBackend};

/// When a write is acknowledged, and so what survives what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Acknowledge only after the WAL record is `fdatasync`ed. An
    /// acknowledged write survives a process crash, a kernel crash and power
    /// loss. Concurrent writers share one fsync (group commit). The default.
    #[default]
    Sync,
    /// Acknowledge once the WAL record is handed to the operating system
    /// (`write(2)`), without waiting for `fsync`. An acknowledged write
    /// survives a crash of the Telemark process, but the last moments of
    /// writes can be lost to a kernel crash or power loss. The WAL is still
    /// synced when a file is rotated, on flush and on close.
    Buffered,
}

/// How a [`crate::Database`] is opened and tuned. `Options::default()` is
/// what a server uses.
#[derive(Debug, Clone)]
pub struct Options {
    /// When writes are acknowledged. Default: [`Durability::Sync`].
    pub durability: Durability,
    /// Flush the write buffer to segments when it holds about this many
    /// bytes. Default: 64 MiB.
    pub max_buffer_bytes: usize,
    /// Flush the write buffer when its oldest row has waited this long.
    /// Default: 5 minutes.
    pub max_buffer_age: Duration,
    /// Width of a time partition: each segment holds one table's rows of one
    /// partition. Default: 1 day.
    pub partition_duration: Duration,
    /// Start a new WAL file when the current one passes this size. Default: 64 MiB.
    pub wal_file_bytes: u64,
    /// Run a background thread that flushes on the size and age limits.
    /// Default: true. With false, only [`crate::Database::flush`] and
    /// [`crate::Database::close`] flush.
    pub background_flush: bool,
    /// Writers wait (backpressure) while the write buffer, counting buffers
    /// being flushed, holds about this many bytes, instead of the buffer
    /// growing without bound when ingest outpaces flushing. Default: 256 MiB.
    pub max_buffer_memory: usize,
    /// Compaction and retention: the background thread and per-job caps.
    pub compaction: CompactionOptions,
    /// Rows per record batch a scan yields. Default: 8192.
    pub scan_batch_rows: usize,
    /// Keep the newest value of every field per series in memory
    /// ([`crate::Database::last_values`]); see [`crate::lastvalue`] for what
    /// it costs. Default: true.
    pub last_value_cache: bool,
    /// The file system. Tests substitute one that injects failures.
    pub backend: Backend,
    /// Tiering of old partitions to object storage; `None` (the default)
    /// keeps everything local.
    #[cfg(feature = "tiering")]
    pub tiering: Option<crate::tiering::TieringOptions>,
    /// Rollups kept as data arrives ([`crate::rollup`]). Default: none.
    pub rollups: Vec<crate::rollup::RollupRule>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Sync,
            max_buffer_bytes: 64 << 20,
            max_buffer_age: Duration::from_secs(300),
            partition_duration: Duration::from_secs(86_400),
            wal_file_bytes: 64 << 20,
            background_flush: true,
            max_buffer_memory: 256 << 20,
            compaction: CompactionOptions::default(),
            scan_batch_rows: 8192,
            last_value_cache: true,
            backend: Arc::new(StdBackend),
            #[cfg(feature = "tiering")]
            tiering: None,
            rollups: Vec::new(),
        }
    }
}

/// How compaction runs. One job runs at a time; a job merges files of one
/// table's time partition that are contiguous in WAL order, series by
/// series, so it holds about one series' decoded rows in memory.
#[derive(Debug, Clone)]
pub struct CompactionOptions {
    /// Run a background thread (at a lower CPU priority than the rest) that
    /// compacts and enforces retention. Default: true.
    pub background: bool,
    /// How often the background thread looks for work. Default: 30 s.
    pub interval: Duration,
    /// The background thread merges a partition once it has this many
    /// files. Default: 4.
    pub min_files: usize,
    /// Most input files per job. Default: 32.
    pub max_input_files: usize,
    /// Most input bytes per job; the output is at most about as large.
    /// Default: 1 GiB.
    pub max_input_bytes: u64,
    /// Read plus written bytes per second a job may use; 0 = unlimited.
    /// Default: 0.
    pub bytes_per_second: u64,
    /// A job starts only if the disk has at least its input size plus this
    /// many bytes free. Default: 64 MiB.
    pub min_free_bytes: u64,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            background: true,
            interval: Duration::from_secs(30),
            min_files: 4,
            max_input_files: 32,
            max_input_bytes: 1 << 30,
            bytes_per_second: 0,
            min_free_bytes: 64 << 20,
        }
    }
}

impl Options {
    /// The partition width in nanoseconds (at least 1 s).
    pub(crate) fn partition_nanos(&self) -> i64 {
        i64::try_from(self.partition_duration.as_nanos()).unwrap_or(i64::MAX).max(1_000_000_000)
    }

    /// The start of the partition holding `t`.
    pub(crate) fn partition_of(&self, t: i64) -> i64 {
        let p = self.partition_nanos();
        t.div_euclid(p).checked_mul(p).unwrap_or(i64::MIN)
    }
}
