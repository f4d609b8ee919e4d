//! HTTP endpoints of alerting:
//!
//! - `GET /api/v3/alerts`: the instances (pending, firing, recently
//!   resolved) of the rules whose database the token reads;
//! - `GET /api/v3/alerts/rules`: those rules, as configured.
//!
//! Without `[[alert.rule]]`s both answer with empty lists.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::errors::ApiError;
use crate::server::AppState;

fn listed(
    state: &AppState,
    headers: &HeaderMap,
    f: impl FnOnce(&crate::auth::Principal) -> serde_json::Value,
) -> Response {
    state.metrics.request("http");
    match state.auth.check(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())) {
        Ok(p) => Json(f(&p)).into_response(),
        Err(e) => {
            let e = ApiError::from(e);
            state.metrics.error("http", e.kind);
            e.into_response()
        }
    }
}

/// `GET /api/v3/alerts`
pub(crate) async fn instances(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    listed(&state, &headers, |p| {
        let Some(alerts) = state.alerts.get() else { return serde_json::json!({ "alerts": [] }) };
        let databases: std::collections::HashMap<&str, &str> =
            alerts.rules().iter().map(|r| (r.name.as_str(), r.database.as_str())).collect();
        let visible: Vec<_> = alerts
            .instances()
            .into_iter()
            .filter(|i| databases.get(i.rule.as_str()).is_some_and(|db| p.require_read(db).is_ok()))
            .collect();
        serde_json::json!({ "alerts": visible })
    })
}

/// `GET /api/v3/alerts/rules`
pub(crate) async fn rules(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    listed(&state, &headers, |p| {
        let rules: Vec<_> = state
            .alerts
            .get()
            .map(|a| a.rules().iter().filter(|r| p.require_read(&r.database).is_ok()).cloned().collect())
            .unwrap_or_default();
        serde_json::json!({ "rules": rules })
    })
}

/// Runs `sql` alert rules' queries on the query engine.
#[derive(Debug)]
pub(crate) struct Queries(pub(crate) telemark_engine::query::QueryEngine);

impl telemark_ingest::alerts::SqlRunner for Queries {
    fn run(
        &self,
        database: &str,
        sql: &str,
        at_ms: i64,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Vec<telemark_ingest::alerts::eval::SqlRow>, String>> + Send>,
    > {
        let engine = self.0.clone();
        let (database, sql) = (database.to_string(), sql.to_string());
        Box::pin(async move {
            let batches = engine.query_at(&database, &sql, at_ms).await.map_err(|e| e.to_string())?;
            Ok(batches.iter().flat_map(rows_of).collect())
        })
    }
}

/// An alert query's rows: string columns are labels, the first numeric column the value (1 without one).
fn rows_of(batch: &arrow::record_batch::RecordBatch) -> Vec<telemark_ingest::alerts::eval::SqlRow> {
    use arrow::array::Array;
    use arrow::datatypes::DataType;
    let schema = batch.schema();
    let strings: Vec<(String, arrow::array::ArrayRef)> = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| {
            matches!(
                f.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..)
            )
        })
        .filter_map(|(f, c)| arrow::compute::cast(c, &DataType::Utf8).ok().map(|c| (f.name().clone(), c)))
        .collect();
    let value = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .find(|(f, _)| f.data_type().is_numeric())
        .and_then(|(_, c)| arrow::compute::cast(c, &DataType::Float64).ok());
    (0..batch.num_rows())
        .map(|i| {
            let labels = strings
                .iter()
                .filter(|(_, c)| c.is_valid(i))
                .map(|(name, c)| {
                    (name.clone(), arrow::array::AsArray::as_string::<i32>(c.as_ref()).value(i).to_string())
                })
                .collect();
            let value = value.as_ref().filter(|v| v.is_valid(i)).map_or(1.0, |v| {
                arrow::array::AsArray::as_primitive::<arrow::datatypes::Float64Type>(v.as_ref()).value(i)
            });
            telemark_ingest::alerts::eval::SqlRow { labels, value }
        })
        .collect()
}
