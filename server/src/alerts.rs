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
