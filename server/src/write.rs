//! InfluxDB-compatible line protocol writes over HTTP.
//!
//! - `POST /api/v2/write?bucket=DB&org=…&precision=ns|us|ms|s` (InfluxDB 2 clients, Telegraf `influxdb_v2`)
//! - `POST /write?db=DB&precision=n|ns|u|us|ms|s` (InfluxDB 1 clients, Telegraf `influxdb`)
//!
//! Bodies may be gzip-compressed (`Content-Encoding: gzip`). The answer is
//! 204 only once every stored line is durable. Lines that do not parse or
//! conflict with a table's schema are refused with 400 and a JSON body
//! naming each line, while the other lines of the body are stored.

use std::io::Read as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use telemark_ingest::line_protocol::Precision;
use telemark_ingest::lines::{BodyOutcome, parse_body};

use crate::errors::{ApiError, Kind, engine_kind};
use crate::server::AppState;

/// Query parameters of both write endpoints.
#[derive(Debug, Default, Deserialize)]
pub struct WriteParams {
    bucket: Option<String>,
    db: Option<String>,
    precision: Option<String>,
    /// InfluxDB 1 credentials in the query string: the password is the token.
    u: Option<String>,
    p: Option<String>,
}

/// Largest number of rejected lines listed in an error body.
const MAX_LISTED: usize = 100;

/// `POST /api/v2/write`.
pub async fn write_v2(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<WriteParams>,
    body: Body,
) -> Response {
    respond(&state, write(&state, &headers, params.bucket.as_deref(), "bucket", &params, body).await)
}

/// `POST /write` (InfluxDB 1).
pub async fn write_v1(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<WriteParams>,
    body: Body,
) -> Response {
    respond(&state, write(&state, &headers, params.db.as_deref(), "db", &params, body).await)
}

fn respond(state: &AppState, r: Result<Response, ApiError>) -> Response {
    match r {
        Ok(resp) => resp,
        Err(e) => {
            state.metrics.error("http", e.kind);
            let body = serde_json::json!({ "code": influx_code(e.kind), "message": e.message, "error": e.message });
            (e.kind.http(), [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
        }
    }
}

fn influx_code(kind: Kind) -> &'static str {
    match kind {
        Kind::BadRequest => "invalid",
        Kind::Unauthenticated => "unauthorized",
        Kind::Forbidden => "forbidden",
        Kind::NotFound => "not found",
        Kind::TooLarge => "request too large",
        Kind::Unavailable => "unavailable",
        Kind::Unsupported | Kind::Internal => "internal error",
        Kind::Conflict => "conflict",
    }
}

fn now_ns() -> i64 {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    let mut reader = flate2::read::MultiGzDecoder::new(body).take(limit as u64 + 1);
    reader
        .read_to_end(&mut out)
        .map_err(|e| ApiError::new(Kind::BadRequest, format!("the body is not valid gzip: {e}")))?;
    if out.len() > limit {
        return Err(ApiError::new(
            Kind::TooLarge,
            format!("the decompressed body is larger than max_body_bytes = {limit}; split the write"),
        ));
    }
    Ok(out)
}

async fn write(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    database: Option<&str>,
    param: &str,
    params: &WriteParams,
    body: Body,
) -> Result<Response, ApiError> {
    state.metrics.request("http");
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let principal = match (auth, &params.p) {
        (None, Some(p)) => state.auth.check_password(params.u.as_deref().unwrap_or(""), p)?,
        _ => state.auth.check(auth)?,
    };
    let database = database
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            ApiError::new(Kind::BadRequest, format!("missing `{param}` query parameter: the database to write to"))
        })?
        .to_string();
    principal.require_write(&database)?;
    let precision = match params.precision.as_deref() {
        None | Some("") => Precision::Nanoseconds,
        Some(p) => Precision::parse(p).ok_or_else(|| {
            ApiError::new(Kind::BadRequest, format!("unsupported precision `{p}`: use ns, us, ms or s"))
        })?,
    };
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
    let limit = state.config.max_body_bytes;
    let body = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_large {
            ApiError::new(
                Kind::TooLarge,
                format!("the request body is larger than max_body_bytes = {limit}; split the write"),
            )
        } else {
            ApiError::new(Kind::BadRequest, format!("reading the request body failed: {e}"))
        }
    })?;
    let body: Vec<u8> = match encoding.to_ascii_lowercase().as_str() {
        "gzip" | "x-gzip" => gunzip(&body, limit)?,
        "identity" | "" => body.into(),
        other => {
            return Err(ApiError::new(
                Kind::BadRequest,
                format!("unsupported Content-Encoding `{other}`: use gzip or none"),
            ));
        }
    };
    let db = state.db.clone();
    let stats = state.ingest_stats.clone();
    let outcome = tokio::task::spawn_blocking(move || -> Result<BodyOutcome, ApiError> {
        let parsed = parse_body(&body, precision, now_ns(), &[]);
        if parsed.lines_ok == 0 && parsed.errors.is_empty() {
            return Err(ApiError::new(Kind::BadRequest, "the request body holds no lines to write"));
        }
        let results = db.write_many(parsed.tables.iter().map(|t| (database.as_str(), &t.batch)));
        // A failure of the database itself (not of the input) fails the request.
        if let Some(Err(e)) = results.iter().find(|r| r.as_ref().is_err_and(|e| engine_kind(e) != Kind::BadRequest)) {
            return Err(ApiError::new(engine_kind(e), e.to_string()));
        }
        let outcome = BodyOutcome::collect(&parsed, results);
        stats.lines_written.fetch_add(outcome.rows_written as u64, Ordering::Relaxed);
        stats.lines_rejected.fetch_add(outcome.rejected.len() as u64, Ordering::Relaxed);
        Ok(outcome)
    })
    .await
    .map_err(|e| ApiError::new(Kind::Internal, format!("write task failed: {e}")))??;
    if outcome.rejected.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let listed: Vec<_> = outcome.rejected.iter().take(MAX_LISTED).collect();
    let first: Vec<String> = listed.iter().take(10).map(ToString::to_string).collect();
    let message = format!(
        "partial write: {} line(s) rejected, {} row(s) written; {}{}",
        outcome.rejected.len(),
        outcome.rows_written,
        first.join("; "),
        if outcome.rejected.len() > first.len() { "; …" } else { "" }
    );
    state.metrics.error("http", Kind::BadRequest);
    let body = serde_json::json!({
        "code": "invalid",
        "message": message,
        "line": listed.first().map(|r| r.line),
        "rows_written": outcome.rows_written,
        "rejected": listed,
    });
    Ok((StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response())
}
