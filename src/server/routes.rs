//! The router: endpoints with and without `/v1`, `/metrics`, JSON 404/405 fallbacks, and the
//! layers every route passes (router-level, so routes added here later are covered): the
//! request log and 500s ([`super::observe`]), one request count per route and status, the gate
//! ([`super::guard`]: `Host`/`Origin`, JSON content types, body size and read timeout), the body
//! limit, and authentication.

use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::BodyLimit;
use super::guard::{gate, Gate};
use super::{anthropic, auth, chat, completions, observe, responses, tokenize, AppState};

/// Builds the complete router for `state`, with bodies limited to `max_body_bytes`.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let gate_state = Gate {
        keyed: state.api_key.is_some(),
        access: state.access.clone(),
        max_body: max_body_bytes,
        body_read_timeout: state.body_read_timeout,
    };
    let api = Router::new()
        .route("/chat/completions", post(chat::chat_completions))
        .route("/completions", post(completions::completions))
        .route("/messages", post(anthropic::messages))
        .route("/messages/count_tokens", post(anthropic::count_tokens))
        .route("/responses", post(responses::create))
        .route(
            "/responses/{id}",
            get(responses::get).delete(responses::delete),
        )
        .route("/tokenize", post(tokenize::tokenize))
        .route("/detokenize", post(tokenize::detokenize))
        .route("/models", get(list_models))
        .route("/models/{*model}", get(get_model))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        .route("/health", get(health));
    let scrape =
        Router::new()
            .route("/metrics", get(metrics))
            .route_layer(middleware::from_fn_with_state(
                state.clone(),
                auth::require_key,
            ));
    Router::new()
        .nest("/v1", api.clone())
        .merge(api)
        .merge(scrape)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(Extension(BodyLimit(max_body_bytes)))
        .layer(middleware::from_fn_with_state(gate_state, gate))
        .layer(middleware::from_fn(observe::observe))
        // Counted after `observe`, so a panic counts as the 500 the client saw.
        .layer(middleware::from_fn_with_state(state.clone(), count_request))
        // Outermost: every error on Anthropic's routes (the gate's and 500s included)
        // leaves in Anthropic's shape.
        .layer(middleware::from_fn(anthropic::error_shape))
        .with_state(state)
}

fn model_json(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 0, "owned_by": "callm"})
}

async fn list_models(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"object": "list", "data": [model_json(state.backend.model_id())]}))
}

async fn get_model(State(state): State<AppState>, Path(model): Path<String>) -> Response {
    let id = state.backend.model_id();
    if model == id {
        Json(model_json(id)).into_response()
    } else {
        ApiError::model_not_found(&model).into_response()
    }
}

async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "model": state.backend.model_id(),
        "running": state.queue.running(),
        "waiting": state.queue.waiting(),
    }))
}

/// `GET /metrics`: the model's and the server's metrics in Prometheus' text format.
async fn metrics(State(state): State<AppState>) -> Response {
    state.metrics.waiting.set(state.queue.waiting() as i64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Counts each request by its route (the matched pattern, so unknown paths share one label)
/// and status.
async fn count_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let resp = next.run(req).await;
    state
        .metrics
        .requests
        .with_label_values(&[endpoint.as_str(), resp.status().as_str()])
        .inc();
    resp
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::route_not_found(method.as_str(), uri.path())
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::method_not_allowed(method.as_str(), uri.path())
}
