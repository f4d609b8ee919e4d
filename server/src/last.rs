//! `GET /api/v3/last?db=DB&table=T[&TAG=VALUE…][&format=json|jsonl|csv|arrow|pretty]`:
//! the engine's last-value cache, one row per series with the newest value
//! of every field ([`telemark_engine::Database::last_values`]), without a
//! scan of history. Every other query parameter is a tag filter; a tag
//! given twice matches either value. The same rows are
//! `SELECT * FROM last_values('T')` in SQL.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use telemark_engine::TagFilter;

use crate::errors::{ApiError, Kind};
use crate::http::Format;
use crate::server::AppState;

/// The handler.
pub(crate) async fn last_values(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    crate::http::respond(&state, answer(&state, &headers, params).await)
}

async fn answer(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    params: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    let principal = crate::admin::principal(state, headers)?;
    let (mut db, mut table, mut format) = (None, None, None);
    let mut filters: Vec<TagFilter> = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "db" => db = Some(v),
            "table" => table = Some(v),
            "format" => format = Some(v),
            _ => match filters.iter_mut().find(|f| f.tag == k) {
                Some(f) => f.values.push(v),
                None => filters.push(TagFilter { tag: k, values: vec![v] }),
            },
        }
    }
    let missing = |what: &str| ApiError::new(Kind::BadRequest, format!("missing `{what}` query parameter"));
    let db = db.filter(|d| !d.is_empty()).ok_or_else(|| missing("db"))?;
    let table = table.filter(|t| !t.is_empty()).ok_or_else(|| missing("table"))?;
    let format = Format::parse(format.as_deref())?;
    principal.require_read(&db)?;
    let engine = state.engine.database().clone();
    if let Some(schema) = engine.table_schema(&db, &table) {
        for f in &filters {
            let kind = schema.id_of(&f.tag).and_then(|i| schema.column(i)).map(|c| c.kind);
            if kind != Some(telemark_engine::ColumnKind::Tag) {
                return Err(ApiError::new(
                    Kind::BadRequest,
                    format!("`{}` is not a tag of {db}.{table}: filter on tags (or pass db, table, format)", f.tag),
                ));
            }
        }
    }
    let batch = tokio::task::spawn_blocking(move || engine.last_values(&db, &table, &filters, None))
        .await
        .map_err(|e| ApiError::new(Kind::Internal, e.to_string()))??;
    let schema = crate::plain::plain_schema(&batch.schema());
    let batch = crate::plain::plain_batch(batch, &schema).map_err(|e| ApiError::new(Kind::Internal, e.to_string()))?;
    let body = format.encode_whole(&[batch], &schema)?;
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    Ok(response)
}
