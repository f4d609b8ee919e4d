//! The HTTP API: SQL queries, line protocol writes, health and metrics.
//!
//! - `POST /api/v2/write`, `POST /write`: InfluxDB line protocol (see [`crate::write`]);
//! - `GET|POST /api/v3/query_sql?db=DB&q=SQL&format=json|jsonl|csv|arrow|pretty`
//!   (POST may send the same fields as a JSON body);
//! - `GET /api/v3/last?db=DB&table=T[&tag=value…]`: the newest value of every
//!   field per series (see [`crate::last`]);
//! - `GET /api/v3/storage?db=DB`: bytes, values and codecs per column in segment
//!   files, and segment files per table;
//! - the lifecycle endpoints under `/api/v3/admin/` (see [`crate::admin`]);
//! - `GET /health`;
//! - `GET /metrics` (Prometheus text format).
//!
//! Errors are JSON `{"error": "…"}` with 400, 401, 403, 404, 413 or 500.

use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde::Deserialize;

use crate::errors::{ApiError, Kind};
use crate::server::AppState;

/// Builds the router.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/api/v3/query_sql", get(query_get).post(query_post))
        .route("/api/v2/write", post(crate::write::write_v2))
        .route("/write", post(crate::write::write_v1))
        .route("/api/v3/storage", get(storage))
        .route("/api/v3/last", get(crate::last::last_values))
        .route("/api/v3/admin/compact", post(crate::admin::compact))
        .route("/api/v3/admin/tier", post(crate::admin::tier))
        .route("/api/v3/admin/backup", post(crate::admin::backup))
        .route("/api/v3/admin/retention", get(crate::admin::retention_list).put(crate::admin::retention_put))
        .route("/api/v3/admin/deletes", get(crate::admin::deletes))
        .route("/api/v3/alerts", get(crate::alerts::instances))
        .route("/api/v3/alerts/rules", get(crate::alerts::rules))
        .route(
            "/api/v3/alerts/rules/{name}",
            get(crate::alerts::rule_get).put(crate::alerts::rule_put).delete(crate::alerts::rule_delete),
        )
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message }).to_string();
        (self.kind.http(), [(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

#[derive(Debug, Default, Deserialize)]
struct QueryParams {
    db: Option<String>,
    q: Option<String>,
    format: Option<String>,
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    match state.db.poisoned() {
        None => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], r#"{"status":"pass"}"#).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "status": "fail", "reason": reason }).to_string(),
        )
            .into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
struct StorageParams {
    db: Option<String>,
}

/// `GET /api/v3/storage?db=DB`: bytes, values and codecs per column in segment files.
async fn storage(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<StorageParams>,
) -> Response {
    state.metrics.request("http");
    let result = (|| -> Result<Response, ApiError> {
        let principal = state.auth.check(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()))?;
        let db = params.db.ok_or_else(|| ApiError::new(Kind::BadRequest, "missing `db` query parameter"))?;
        principal.require_read(&db)?;
        let columns = state.db.storage(&db);
        let total_bytes: u64 = columns.iter().map(|c| c.bytes).sum();
        let total_values: u64 = columns.iter().map(|c| c.values).sum();
        let body = serde_json::json!({
            "database": db,
            "bytes": total_bytes,
            "values": total_values,
            "columns": columns,
            "tables": crate::admin::tables(&state, &db),
        });
        Ok(([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response())
    })();
    result.unwrap_or_else(|e| {
        state.metrics.error("http", e.kind);
        e.into_response()
    })
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let alerts = state.alerts.get().map(|a| &**a);
    let text = state.metrics.render(
        &state.db.stats(),
        &state.db.partitions(None),
        &state.ingest_stats,
        alerts,
        state.db.last_value_bytes(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn query_get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<QueryParams>,
) -> Response {
    run_query(state, headers, params).await
}

async fn query_post(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(mut params): Query<QueryParams>,
    body: Bytes,
) -> Response {
    if !body.is_empty() {
        match serde_json::from_slice::<QueryParams>(&body) {
            Ok(b) => {
                params.db = b.db.or(params.db);
                params.q = b.q.or(params.q);
                params.format = b.format.or(params.format);
            }
            Err(e) => {
                state.metrics.error("http", Kind::BadRequest);
                return ApiError::new(
                    Kind::BadRequest,
                    format!("request body is not JSON with `q`, `db`, `format`: {e}"),
                )
                .into_response();
            }
        }
    }
    run_query(state, headers, params).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Jsonl,
    Csv,
    Arrow,
    Pretty,
}

impl Format {
    pub(crate) fn parse(s: Option<&str>) -> Result<Self, ApiError> {
        Ok(match s.unwrap_or("json") {
            "json" => Format::Json,
            "jsonl" => Format::Jsonl,
            "csv" => Format::Csv,
            "arrow" | "arrow-ipc" => Format::Arrow,
            "pretty" => Format::Pretty,
            other => {
                return Err(ApiError::new(
                    Kind::BadRequest,
                    format!("unknown format `{other}`: use json, jsonl, csv, arrow or pretty"),
                ));
            }
        })
    }

    /// A whole answer in this format.
    pub(crate) fn encode_whole(
        self,
        batches: &[RecordBatch],
        schema: &arrow::datatypes::SchemaRef,
    ) -> Result<Vec<u8>, ApiError> {
        let internal = |e: arrow::error::ArrowError| ApiError::new(Kind::Internal, e.to_string());
        Ok(match self {
            Format::Json => {
                let mut w = arrow::json::ArrayWriter::new(Vec::new());
                for b in batches {
                    w.write(b).map_err(internal)?;
                }
                w.finish().map_err(internal)?;
                let out = w.into_inner();
                if out.is_empty() { b"[]".to_vec() } else { out }
            }
            Format::Pretty => {
                arrow::util::pretty::pretty_format_batches(batches).map_err(internal)?.to_string().into_bytes()
            }
            Format::Jsonl | Format::Csv | Format::Arrow => {
                let mut enc = match self {
                    Format::Jsonl => Encoder::Jsonl,
                    Format::Csv => Encoder::Csv { header: true },
                    _ => Encoder::Arrow(Box::new(
                        arrow::ipc::writer::StreamWriter::try_new(Vec::new(), schema).map_err(internal)?,
                    )),
                };
                let io = |e: std::io::Error| ApiError::new(Kind::Internal, e.to_string());
                let mut out = Vec::new();
                for b in batches {
                    out.extend_from_slice(&enc.encode(b).map_err(io)?);
                }
                out.extend_from_slice(&enc.finish().map_err(io)?);
                out
            }
        })
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Jsonl => "application/jsonl",
            Format::Csv => "text/csv",
            Format::Arrow => "application/vnd.apache.arrow.stream",
            Format::Pretty => "text/plain; charset=utf-8",
        }
    }
}

async fn run_query(state: Arc<AppState>, headers: HeaderMap, params: QueryParams) -> Response {
    respond(&state, query(&state, &headers, params).await)
}

/// Counts an HTTP request and, if it failed, the error; the error as JSON.
pub(crate) fn respond(state: &AppState, result: Result<Response, ApiError>) -> Response {
    state.metrics.request("http");
    result.unwrap_or_else(|e| {
        state.metrics.error("http", e.kind);
        e.into_response()
    })
}

async fn query(state: &Arc<AppState>, headers: &HeaderMap, params: QueryParams) -> Result<Response, ApiError> {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let principal = state.auth.check(auth)?;
    let format = Format::parse(params.format.as_deref())?;
    let sql = params
        .q
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| ApiError::new(Kind::BadRequest, "missing query: pass `q`"))?;
    if let Some(db) = &params.db {
        principal.require_read(db)?;
    }
    let started = Instant::now();
    let ctx = state.engine.context_with_access(params.db.as_deref(), principal.access.clone());
    let df = telemark_engine::query::QueryEngine::plan(&ctx, &sql).await?;
    let stream = df.execute_stream().await?;
    let schema = crate::plain::plain_schema(&stream.schema());
    let out_schema = schema.clone();
    let stream = stream.map(move |b| {
        b.and_then(|b| crate::plain::plain_batch(b, &out_schema).map_err(datafusion::error::DataFusionError::from))
    });
    let body = match format {
        Format::Json | Format::Pretty => {
            let batches: Vec<RecordBatch> = stream.collect::<Vec<_>>().await.into_iter().collect::<Result<_, _>>()?;
            let bytes = format.encode_whole(&batches, &schema)?;
            state.metrics.query(started.elapsed());
            Body::from(bytes)
        }
        Format::Jsonl | Format::Csv | Format::Arrow => {
            // Streamed batch by batch: a large result never sits in memory whole.
            let encoder = match format {
                Format::Jsonl => Encoder::Jsonl,
                Format::Csv => Encoder::Csv { header: true },
                _ => Encoder::Arrow(Box::new(
                    arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &schema)
                        .map_err(|e| ApiError::new(Kind::Internal, e.to_string()))?,
                )),
            };
            let metrics = state.metrics.clone();
            let body = futures::stream::unfold((stream, encoder, false), move |(mut stream, mut enc, done)| {
                let metrics = metrics.clone();
                async move {
                    if done {
                        return None;
                    }
                    match stream.next().await {
                        Some(Ok(batch)) => Some((enc.encode(&batch), (stream, enc, false))),
                        Some(Err(e)) => Some((Err(std::io::Error::other(e)), (stream, enc, true))),
                        None => {
                            metrics.query(started.elapsed());
                            Some((enc.finish(), (stream, enc, true)))
                        }
                    }
                }
            });
            Body::from_stream(body)
        }
    };
    let mut response = Response::new(body);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    Ok(response)
}

/// Encodes record batches for a streamed response.
enum Encoder {
    Jsonl,
    Csv { header: bool },
    Arrow(Box<arrow::ipc::writer::StreamWriter<Vec<u8>>>),
}

impl Encoder {
    fn encode(&mut self, batch: &RecordBatch) -> Result<Bytes, std::io::Error> {
        let mut buf = Vec::new();
        match self {
            Encoder::Jsonl => {
                let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
                w.write(batch).map_err(std::io::Error::other)?;
                w.finish().map_err(std::io::Error::other)?;
            }
            Encoder::Csv { header } => {
                let mut w = arrow::csv::WriterBuilder::new().with_header(*header).build(&mut buf);
                w.write(batch).map_err(std::io::Error::other)?;
                *header = false;
            }
            Encoder::Arrow(w) => {
                w.write(batch).map_err(std::io::Error::other)?;
                buf = std::mem::take(w.get_mut());
            }
        }
        Ok(Bytes::from(buf))
    }

    fn finish(&mut self) -> Result<Bytes, std::io::Error> {
        match self {
            Encoder::Arrow(w) => {
                w.finish().map_err(std::io::Error::other)?;
                Ok(Bytes::from(std::mem::take(w.get_mut())))
            }
            _ => Ok(Bytes::new()),
        }
    }
}
