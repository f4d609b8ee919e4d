//! HTTP endpoints of alerting:
//!
//! - `GET /api/v3/alerts[?state=firing&rule=NAME&device=ID]`: the instances
//!   (pending, firing, recently resolved) of the rules whose database the
//!   token reads;
//! - `GET /api/v3/alerts/rules`: those rules, each with its `source`
//!   (`config` or `api`); `GET /api/v3/alerts/rules/NAME`: one;
//! - `PUT /api/v3/alerts/rules/NAME` with the rule as JSON (the fields of
//!   `[[alert.rule]]`; `name` may be left out): creates or replaces it
//!   (write access to its database), kept in the data directory;
//! - `DELETE /api/v3/alerts/rules/NAME`: removes it; its firing alerts resolve.
//!
//! Rules from the config file cannot be changed over HTTP (409).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use telemark_ingest::alerts::rule::RuleConfig;
use telemark_ingest::alerts::{Alerts, RuleError};

use crate::errors::{ApiError, Kind};
use crate::server::AppState;

use crate::admin::principal;
use crate::http::respond;

fn alerts(state: &AppState) -> Result<&Arc<Alerts>, ApiError> {
    state.alerts.get().ok_or_else(|| ApiError::new(Kind::Unavailable, "alerting is not running"))
}

/// A rule by name, with where it comes from.
fn find_rule(a: &Alerts, name: &str) -> Result<(RuleConfig, telemark_ingest::alerts::RuleSource), ApiError> {
    a.rules().into_iter().find(|(r, _)| r.name == name).ok_or_else(|| rule_error(RuleError::NotFound(name.into())))
}

fn rule_error(e: RuleError) -> ApiError {
    let kind = match e {
        RuleError::Invalid(_) => Kind::BadRequest,
        RuleError::NotFound(_) => Kind::NotFound,
        RuleError::FromConfig(_) => Kind::Conflict,
        RuleError::Storage(_) => Kind::Internal,
    };
    ApiError::new(kind, e.to_string())
}

fn rule_json(config: &RuleConfig, source: telemark_ingest::alerts::RuleSource) -> serde_json::Value {
    let mut v = serde_json::to_value(config).unwrap_or_default();
    v["source"] = serde_json::to_value(source).unwrap_or_default();
    v
}

/// Filters of `GET /api/v3/alerts`.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct InstanceFilter {
    state: Option<String>,
    rule: Option<String>,
    device: Option<String>,
}

/// `GET /api/v3/alerts[?state=firing&rule=NAME&device=ID]`
pub(crate) async fn instances(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Query(filter): axum::extract::Query<InstanceFilter>,
) -> Response {
    let result = (|| {
        let p = principal(&state, &headers)?;
        if let Some(s) = &filter.state
            && !["pending", "firing", "resolved"].contains(&s.as_str())
        {
            return Err(ApiError::new(Kind::BadRequest, format!("state {s:?}: use pending, firing or resolved")));
        }
        let a = alerts(&state)?;
        let databases: std::collections::HashMap<String, String> =
            a.rules().into_iter().map(|(r, _)| (r.name, r.database)).collect();
        let visible: Vec<_> = a
            .instances()
            .into_iter()
            .filter(|i| databases.get(&i.rule).is_some_and(|db| p.require_read(db).is_ok()))
            .filter(|i| filter.state.as_deref().is_none_or(|s| s == i.state))
            .filter(|i| filter.rule.as_deref().is_none_or(|r| r == i.rule))
            .filter(|i| filter.device.as_deref().is_none_or(|d| d == i.device))
            .collect();
        Ok(Json(serde_json::json!({ "alerts": visible })).into_response())
    })();
    respond(&state, result)
}

/// `GET /api/v3/alerts/rules`
pub(crate) async fn rules(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let result = (|| {
        let p = principal(&state, &headers)?;
        let rules: Vec<_> = alerts(&state)?
            .rules()
            .iter()
            .filter(|(r, _)| p.require_read(&r.database).is_ok())
            .map(|(r, source)| rule_json(r, *source))
            .collect();
        Ok(Json(serde_json::json!({ "rules": rules })).into_response())
    })();
    respond(&state, result)
}

/// `GET /api/v3/alerts/rules/NAME`
pub(crate) async fn rule_get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let result = (|| {
        let p = principal(&state, &headers)?;
        let (rule, source) = find_rule(alerts(&state)?, &name)?;
        p.require_read(&rule.database)?;
        Ok(Json(rule_json(&rule, source)).into_response())
    })();
    respond(&state, result)
}

/// `PUT /api/v3/alerts/rules/NAME`
pub(crate) async fn rule_put(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let result = (|| {
        let p = principal(&state, &headers)?;
        let mut value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(Kind::BadRequest, format!("the body must be a JSON alert rule: {e}")))?;
        let obj = value
            .as_object_mut()
            .ok_or_else(|| ApiError::new(Kind::BadRequest, "the body must be a JSON object (an alert rule)"))?;
        match obj.get("name") {
            None => {
                obj.insert("name".into(), serde_json::Value::String(name.clone()));
            }
            Some(n) if n.as_str() == Some(name.as_str()) => {}
            Some(n) => {
                return Err(ApiError::new(Kind::BadRequest, format!("the body names rule {n}, the path {name:?}")));
            }
        }
        let config: RuleConfig = serde_json::from_value(value)
            .map_err(|e| ApiError::new(Kind::BadRequest, format!("alert rule {name:?}: {e}")))?;
        p.require_write(&config.database)?;
        let a = alerts(&state)?;
        if let Ok((old, _)) = find_rule(a, &name) {
            p.require_write(&old.database)?;
        }
        let created = a.put_rule(config.clone()).map_err(rule_error)?;
        let status = if created { StatusCode::CREATED } else { StatusCode::OK };
        Ok((status, Json(rule_json(&config, telemark_ingest::alerts::RuleSource::Api))).into_response())
    })();
    respond(&state, result)
}

/// `DELETE /api/v3/alerts/rules/NAME`
pub(crate) async fn rule_delete(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let result = (|| {
        let p = principal(&state, &headers)?;
        let a = alerts(&state)?;
        let (rule, _) = find_rule(a, &name)?;
        p.require_write(&rule.database)?;
        a.delete_rule(&name).map_err(rule_error)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })();
    respond(&state, result)
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
