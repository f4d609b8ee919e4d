//! HTTP endpoints of the data lifecycle: compaction on request, retention
//! rules, and the delete log.
//!
//! - `POST /api/v3/admin/compact?db=DB`: flushes, drops expired files and
//!   compacts the database now; answers when done with files and bytes
//!   before and after (write access to `DB`);
//! - `POST /api/v3/admin/tier?db=DB`: moves the database's partitions older
//!   than `[tiering] after` to object storage now; answers when done with
//!   partitions, files and bytes moved (write access; 400 without an object store);
//! - `POST /api/v3/admin/backup` with `{"to": "s3://bucket/prefix"}`: backs up
//!   a consistent snapshot of every database (write access to all, `*`);
//!   answers when done with the backup's name and what was copied;
//! - `GET /api/v3/admin/retention`: the rules of the databases the token reads;
//! - `PUT /api/v3/admin/retention` with `{"db": …, "table": … (optional),
//!   "keep": "30d"}` sets a rule, `"keep": null` removes it (write access);
//! - `GET /api/v3/admin/deletes?db=DB`: pending and purged deletes, with when
//!   they were requested and when their rows were gone from every file.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::errors::{ApiError, Kind};
use crate::server::AppState;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DbParam {
    db: Option<String>,
}

pub(crate) fn principal(state: &AppState, headers: &HeaderMap) -> Result<crate::auth::Principal, ApiError> {
    Ok(state.auth.check(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()))?)
}

fn required_db(p: DbParam) -> Result<String, ApiError> {
    p.db.filter(|d| !d.is_empty()).ok_or_else(|| ApiError::new(Kind::BadRequest, "missing `db` query parameter"))
}

fn respond(state: &AppState, result: Result<serde_json::Value, ApiError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            state.metrics.error("http", e.kind);
            e.into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupBody {
    to: String,
}

/// `POST /api/v3/admin/backup`
pub(crate) async fn backup(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    state.metrics.request("http");
    let result = async {
        let p = principal(&state, &headers)?;
        p.require_write("*")?;
        let body: BackupBody = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(Kind::BadRequest, format!("body must be JSON {{\"to\": \"s3://bucket/prefix\"}}: {e}"))
        })?;
        let target = telemark_engine::tiering::TierStore::from_url(&body.to)?;
        let engine = state.db.clone();
        let report = tokio::task::spawn_blocking(move || engine.backup(&target, &mut |_| {}))
            .await
            .map_err(|e| ApiError::new(Kind::Internal, format!("backup task failed: {e}")))??;
        let mut v = serde_json::to_value(&report).map_err(|e| ApiError::new(Kind::Internal, e.to_string()))?;
        v["to"] = serde_json::Value::String(body.to);
        Ok(v)
    }
    .await;
    respond(&state, result)
}

/// Runs `job` on a blocking thread for `?db=DB` after the checks every
/// per-database admin job shares: a token that writes `DB`, and `DB` exists.
async fn database_job<T: Send + 'static>(
    state: &AppState,
    headers: &HeaderMap,
    params: DbParam,
    what: &str,
    job: impl FnOnce(&telemark_engine::Database, &str) -> telemark_engine::Result<T> + Send + 'static,
) -> Result<(String, T), ApiError> {
    let p = principal(state, headers)?;
    let db = required_db(params)?;
    p.require_write(&db)?;
    if !state.db.databases().contains(&db) {
        return Err(ApiError::new(Kind::NotFound, format!("database `{db}` not found")));
    }
    let engine = state.db.clone();
    let name = db.clone();
    let out = tokio::task::spawn_blocking(move || job(&engine, &name))
        .await
        .map_err(|e| ApiError::new(Kind::Internal, format!("{what} task failed: {e}")))??;
    Ok((db, out))
}

/// `POST /api/v3/admin/tier?db=DB`
pub(crate) async fn tier(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<DbParam>,
) -> Response {
    state.metrics.request("http");
    let result = async {
        let (db, report) = database_job(&state, &headers, params, "tiering", |e, db| e.tier(Some(db))).await?;
        let mut v = serde_json::to_value(&report).map_err(|e| ApiError::new(Kind::Internal, e.to_string()))?;
        v["database"] = serde_json::Value::String(db);
        Ok(v)
    }
    .await;
    respond(&state, result)
}

/// `POST /api/v3/admin/compact?db=DB`
pub(crate) async fn compact(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<DbParam>,
) -> Response {
    state.metrics.request("http");
    let result = async {
        let (db, report) = database_job(&state, &headers, params, "compaction", |e, db| e.compact_database(db)).await?;
        Ok(serde_json::json!({
            "database": db,
            "jobs": report.jobs,
            "files_before": report.files_before,
            "files_after": report.files_after,
            "bytes_before": report.bytes_before,
            "bytes_after": report.bytes_after,
            "bytes_read": report.bytes_read,
            "bytes_written": report.bytes_written,
            "rows_written": report.rows_written,
            "elapsed_ms": report.elapsed_ms,
            "failures": report.failures,
            "cold_files_purged": report.cold_files_purged,
            "tables": tables(&state, &db),
        }))
    }
    .await;
    respond(&state, result)
}

/// Segment files and bytes per table of `db`, with its partitions.
pub(crate) fn tables(state: &AppState, db: &str) -> serde_json::Value {
    #[derive(Default)]
    struct Sum {
        files: usize,
        bytes: u64,
        partitions: usize,
        max: usize,
        cold_files: usize,
        cold_bytes: u64,
    }
    let mut by: std::collections::BTreeMap<String, Sum> = Default::default();
    for p in state.db.partitions(Some(db)) {
        let e = by.entry(p.table.clone()).or_default();
        e.files += p.files;
        e.bytes += p.bytes;
        e.partitions += 1;
        e.max = e.max.max(p.files);
        e.cold_files += p.cold_files;
        e.cold_bytes += p.cold_bytes;
    }
    by.into_iter()
        .map(|(table, e)| {
            serde_json::json!({
                "table": table,
                "files": e.files,
                "bytes": e.bytes,
                "partitions": e.partitions,
                "max_files_per_partition": e.max,
                "cold_files": e.cold_files,
                "cold_bytes": e.cold_bytes,
            })
        })
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionBody {
    db: String,
    #[serde(default)]
    table: Option<String>,
    /// `"30d"`, or null to remove the rule.
    keep: Option<String>,
}

/// `GET /api/v3/admin/retention`
pub(crate) async fn retention_list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    state.metrics.request("http");
    let result = (|| {
        let p = principal(&state, &headers)?;
        let rules: Vec<serde_json::Value> = state
            .db
            .retention()
            .into_iter()
            .filter(|r| p.access.can_read(&r.database))
            .map(|r| serde_json::json!({ "db": r.database, "table": r.table, "keep": r.keep_text() }))
            .collect();
        Ok(serde_json::json!({ "rules": rules }))
    })();
    respond(&state, result)
}

/// `PUT /api/v3/admin/retention`
pub(crate) async fn retention_put(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    state.metrics.request("http");
    let result = async {
        let p = principal(&state, &headers)?;
        let b: RetentionBody = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                Kind::BadRequest,
                format!(
                    "request body is not JSON {{\"db\": …, \"table\": … (optional), \"keep\": \"30d\" | null}}: {e}"
                ),
            )
        })?;
        p.require_write(&b.db)?;
        let keep = b.keep.as_deref().map(telemark_engine::parse_duration).transpose()?;
        let engine = state.db.clone();
        let (db, table) = (b.db.clone(), b.table.clone());
        tokio::task::spawn_blocking(move || engine.set_retention(&db, table.as_deref(), keep))
            .await
            .map_err(|e| ApiError::new(Kind::Internal, format!("retention task failed: {e}")))??;
        Ok(serde_json::json!({
            "db": b.db,
            "table": b.table,
            "keep": keep.map(telemark_engine::format_duration),
        }))
    }
    .await;
    respond(&state, result)
}

/// `GET /api/v3/admin/deletes?db=DB`
pub(crate) async fn deletes(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<DbParam>,
) -> Response {
    state.metrics.request("http");
    let result = (|| {
        let p = principal(&state, &headers)?;
        let db = required_db(params)?;
        p.require_read(&db)?;
        let (pending, purged) = state.db.deletes(Some(&db));
        let show = |t: &telemark_engine::Tombstone| {
            let bound = |v: i64, open: i64| (v != open).then_some(v);
            serde_json::json!({
                "seq": t.seq,
                "table": t.table,
                "tags": t.tags.iter().map(|(k, v)| serde_json::json!({ "tag": k, "values": v })).collect::<Vec<_>>(),
                "start": bound(t.start, i64::MIN),
                "end": bound(t.end, i64::MAX),
                "rows_matched": t.rows_matched,
                "requested_at": t.requested_at,
                "purged_at": t.purged_at,
            })
        };
        Ok(serde_json::json!({
            "database": db,
            "pending": pending.iter().map(show).collect::<Vec<_>>(),
            "purged": purged.iter().map(show).collect::<Vec<_>>(),
        }))
    })();
    respond(&state, result)
}
