//! Durable file operations, in one place.
//!
//! Every file the engine makes durable goes through a [`FileBackend`]: create
//! a file, write it, `fsync` it, rename it into place and `fsync` the
//! directory. Nothing else in the engine renames or syncs files, so the
//! durability argument can be read here once.
//!
//! Assumptions about the disk (see `docs/format.md`):
//! - `fsync`/`fdatasync` on a file makes its written bytes survive power loss;
//! - `rename` within one directory is atomic, and becomes durable once the
//!   directory is `fsync`ed;
//! - a crash can leave a file's tail torn (short, or filled with zeros or
//!   garbage) but never changes bytes that were synced before.
//!
//! The backend is a trait so tests can inject failures (a failing `fsync`, a
//! full disk) and check that the engine refuses writes instead of
//! acknowledging data it could not make durable.

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

/// A file opened for appending whose contents can be made durable.
pub trait DurableFile: Write + Send + Debug {
    /// Makes everything written so far survive power loss (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
}

/// The file-system operations the engine needs to make data durable.
pub trait FileBackend: Send + Sync + Debug {
    /// Creates a new file for writing; fails if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn DurableFile>>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn DurableFile>>;
    /// Makes the directory's entries (created, renamed, removed files) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Atomically renames `from` to `to` (same directory), without syncing.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Shortens a file to `len` bytes and syncs it.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdBackend;

#[derive(Debug)]
struct StdFile(File);

impl Write for StdFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl DurableFile for StdFile {
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl FileBackend for StdBackend {
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn DurableFile>> {
        let f = OpenOptions::new().write(true).create_new(true).open(path)?;
        Ok(Box::new(StdFile(f)))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn DurableFile>> {
        let f = OpenOptions::new().append(true).open(path)?;
        Ok(Box::new(StdFile(f)))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        #[expect(clippy::disallowed_methods, reason = "this is the one place that renames")]
        std::fs::rename(from, to)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(len)?;
        f.sync_all()
    }
}

/// Shared handle to a backend.
pub type Backend = Arc<dyn FileBackend>;

/// Writes `bytes` to `path` atomically and durably: write a temporary file
/// beside it, fsync it, rename it over `path`, fsync the directory. After a
/// crash `path` holds either the old or the new contents, never a mix.
pub(crate) fn write_atomic(backend: &dyn FileBackend, path: &Path, bytes: &[u8]) -> crate::Result<()> {
    let tmp = path.with_extension("tmp");
    // A leftover temp file from a crash is garbage: it was never renamed.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(crate::Error::io(&tmp, e)),
    }
    let mut f = backend.create_new(&tmp).map_err(|e| crate::Error::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| crate::Error::io(&tmp, e))?;
    f.sync_data().map_err(|e| crate::Error::io(&tmp, e))?;
    drop(f);
    rename_durable(backend, &tmp, path)
}

/// [`write_atomic`] on the real file system, for code embedding the engine
/// that keeps files of its own (alert state, say) with the same guarantee.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> crate::Result<()> {
    write_atomic(&StdBackend, path, bytes)
}

/// Renames `from` to `to` and fsyncs the directory, so the rename survives
/// power loss. Both paths must be in the same directory.
pub(crate) fn rename_durable(backend: &dyn FileBackend, from: &Path, to: &Path) -> crate::Result<()> {
    backend.rename(from, to).map_err(|e| crate::Error::io(to, e))?;
    let dir = parent(to)?;
    backend.sync_dir(dir).map_err(|e| crate::Error::io(dir, e))
}

/// Creates a directory (and parents) and fsyncs its parent so it survives power loss.
pub(crate) fn create_dir_durable(backend: &dyn FileBackend, dir: &Path) -> crate::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    let parent = parent(dir)?;
    backend.sync_dir(parent).map_err(|e| crate::Error::io(parent, e))
}

/// Removes a file and fsyncs its directory.
pub(crate) fn remove_durable(backend: &dyn FileBackend, path: &Path) -> crate::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(crate::Error::io(path, e)),
    }
    let dir = parent(path)?;
    backend.sync_dir(dir).map_err(|e| crate::Error::io(dir, e))
}

fn parent(path: &Path) -> crate::Result<&Path> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => Ok(p),
        _ => Ok(Path::new(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_contents() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m");
        write_atomic(&StdBackend, &p, b"one").unwrap();
        write_atomic(&StdBackend, &p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert!(!p.with_extension("tmp").exists());
    }
}
