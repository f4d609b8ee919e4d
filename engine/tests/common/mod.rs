//! Test helpers shared by the engine's integration tests.

#![allow(dead_code, reason = "each test file uses some of the helpers")]

use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use telemark_engine::fs::{DurableFile, FileBackend, StdBackend};

/// Called before every file `fsync`; an error fails that fsync.
pub(crate) type SyncHook = Arc<dyn Fn() -> io::Result<()> + Send + Sync>;

/// The real file system, with a hook on every file sync: to inject fsync
/// failures, count syncs or make them slow.
pub(crate) struct HookBackend {
    pub(crate) on_sync: SyncHook,
}

impl std::fmt::Debug for HookBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HookBackend")
    }
}

struct HookFile {
    inner: Box<dyn DurableFile>,
    on_sync: SyncHook,
}

impl std::fmt::Debug for HookFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HookFile")
    }
}

impl Write for HookFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl DurableFile for HookFile {
    fn sync_data(&mut self) -> io::Result<()> {
        (self.on_sync)()?;
        self.inner.sync_data()
    }
}

impl FileBackend for HookBackend {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn DurableFile>> {
        Ok(Box::new(HookFile { inner: StdBackend.create_new(path)?, on_sync: self.on_sync.clone() }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn DurableFile>> {
        Ok(Box::new(HookFile { inner: StdBackend.open_append(path)?, on_sync: self.on_sync.clone() }))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdBackend.sync_dir(dir)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdBackend.rename(from, to)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        StdBackend.truncate(path, len)
    }
}
