//! `telemark backup` and `telemark restore`: the CLI side of the engine's
//! backups (`telemark_engine::backup`), with a progress bar on a terminal.
//! A running server is backed up over HTTP instead (`POST /api/v3/admin/backup`).

use std::io::{IsTerminal, Write};
use std::path::Path;

use telemark_engine::backup::Progress;
use telemark_engine::tiering::TierStore;

use crate::config::Config;

/// Draws `progress` on one terminal line of stderr; prints nothing when
/// stderr is not a terminal (logs and CI).
fn progress_bar(verb: &'static str) -> impl FnMut(&Progress) {
    let tty = std::io::stderr().is_terminal();
    move |p: &Progress| {
        if !tty {
            return;
        }
        let width = 30;
        let frac = if p.bytes_total == 0 { 1.0 } else { p.bytes_done as f64 / p.bytes_total as f64 };
        let filled = ((frac * width as f64) as usize).min(width);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{verb} [{}{}] {}/{} files, {:.1}/{:.1} MB",
            "#".repeat(filled),
            " ".repeat(width - filled),
            p.files_done,
            p.files_total,
            p.bytes_done as f64 / 1e6,
            p.bytes_total as f64 / 1e6
        );
        if p.files_done == p.files_total {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

/// `telemark backup --data-dir DIR --to URL`: the data directory must not be
/// in use (the engine's lock says so, pointing at the HTTP endpoint).
pub(crate) fn backup(config: Config, data_dir: &Path, to: &str) -> Result<(), String> {
    let target = TierStore::from_url(to).map_err(|e| e.to_string())?;
    let mut options = config.engine_options()?;
    options.background_flush = false;
    options.compaction.background = false;
    if let Some(t) = options.tiering.as_mut() {
        t.background = false;
    }
    let db = telemark_engine::Database::open(data_dir, options)
        .map_err(|e| format!("cannot open the data directory {}: {e}", data_dir.display()))?;
    let report = db.backup(&target, &mut progress_bar("backup")).map_err(|e| e.to_string())?;
    db.close().map_err(|e| e.to_string())?;
    println!(
        "backup {} written to {to}: {} files ({} copied, {} already there), {:.1} MB copied, {} cold objects referenced, {} ms",
        report.name,
        report.files,
        report.files_copied,
        report.files_skipped,
        report.bytes_copied as f64 / 1e6,
        report.cold_objects,
        report.elapsed_ms
    );
    Ok(())
}

/// `telemark restore --from URL --data-dir EMPTY_DIR [--backup NAME]`.
pub(crate) fn restore(from: &str, data_dir: &Path, name: Option<&str>) -> Result<(), String> {
    let source = TierStore::from_url(from).map_err(|e| e.to_string())?;
    let report = telemark_engine::backup::restore(&source, name, data_dir, &mut progress_bar("restore"))
        .map_err(|e| e.to_string())?;
    println!(
        "restored backup {} into {}: {} files, {:.1} MB, {} cold objects checked, {} ms",
        report.name,
        data_dir.display(),
        report.files,
        report.bytes as f64 / 1e6,
        report.cold_objects,
        report.elapsed_ms
    );
    Ok(())
}
