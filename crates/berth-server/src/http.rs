//! HTTP: one port, AWS JSON 1.1 on `POST /`, a health probe, and the opt-in reset endpoint.

use crate::{Inner, Shared, limits, now_ms};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use berth_api::{ApiError, Service, Target};
use berth_core::agent_protocol::{AgentError, RegisterRequest, SyncRequest};
use berth_core::state::Ctx;
use std::sync::Arc;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let mut app = Router::new()
        .route("/", post(api))
        .route(
            "/service/{service}/operation/{operation}",
            post(rpc_v2_cbor),
        )
        .route("/healthz", get(healthz))
        .route("/_berth/agent/v1/register", post(agent_register))
        .route("/_berth/agent/v1/sync", post(agent_sync))
        .route("/_berth/agent/v1/logs", post(agent_logs))
        .route("/_berth/agent/v1/logs/packed", post(agent_logs_packed))
        .route(
            "/_berth/agent/v1/logs/ensure-group",
            post(agent_ensure_log_group),
        )
        .route(
            "/_berth/admin/v1/agent-tokens/{operation}",
            post(admin_agent_tokens),
        );
    if shared.config.allow_reset {
        app = app.route("/_berth/reset", post(reset));
    }
    app.fallback(not_found)
        // We enforce our own limit (with an AWS-shaped 413) in `api`.
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

fn agent_error(e: &AgentError) -> Response {
    let status = match e {
        AgentError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        AgentError::Deregistered(_) => StatusCode::GONE,
        AgentError::ClusterNotFound(_) => StatusCode::NOT_FOUND,
        AgentError::BadRequest(_) => StatusCode::BAD_REQUEST,
        AgentError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let body = serde_json::to_vec(e).unwrap_or_default();
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp
}

fn agent_json<T: serde::Serialize>(r: Result<T, AgentError>) -> Response {
    match r {
        Ok(v) => {
            let mut resp = Response::new(Body::from(serde_json::to_vec(&v).unwrap_or_default()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => agent_error(&e),
    }
}

async fn agent_body<T: serde::de::DeserializeOwned>(req: Request<Body>) -> Result<T, AgentError> {
    let bytes = axum::body::to_bytes(req.into_body(), limits::MAX_BODY_BYTES * 8)
        .await
        .map_err(|_| AgentError::BadRequest("body too large or unreadable".into()))?;
    serde_json::from_slice(&bytes).map_err(|e| AgentError::BadRequest(e.to_string()))
}

async fn agent_register(State(shared): State<Arc<Shared>>, req: Request<Body>) -> Response {
    let gw = crate::Gateway { shared };
    match agent_body::<RegisterRequest>(req).await {
        Ok(r) => agent_json(gw.register(r).await),
        Err(e) => agent_error(&e),
    }
}

async fn agent_sync(State(shared): State<Arc<Shared>>, req: Request<Body>) -> Response {
    let gw = crate::Gateway { shared };
    match agent_body::<SyncRequest>(req).await {
        Ok(r) => agent_json(gw.sync(r).await),
        Err(e) => agent_error(&e),
    }
}

async fn agent_logs(State(shared): State<Arc<Shared>>, req: Request<Body>) -> Response {
    let gw = crate::Gateway { shared };
    match agent_body::<berth_core::agent_protocol::PutLogsRequest>(req).await {
        Ok(r) => agent_json(gw.put_logs(r).await),
        Err(e) => agent_error(&e),
    }
}

/// The same request as [`agent_logs`] in the compact encoding
/// ([`berth_core::agent_protocol::packed_logs`]): no JSON to parse on a log flood.
async fn agent_logs_packed(State(shared): State<Arc<Shared>>, req: Request<Body>) -> Response {
    use berth_core::agent_protocol::packed_logs;
    let gw = crate::Gateway { shared };
    let body = match axum::body::to_bytes(req.into_body(), limits::MAX_BODY_BYTES * 8).await {
        Ok(b) => b,
        Err(_) => {
            return agent_error(&AgentError::BadRequest(
                "body too large or unreadable".into(),
            ));
        }
    };
    match packed_logs::decode(&body) {
        Ok(r) => agent_json(gw.put_logs(r).await),
        Err(e) => agent_error(&AgentError::BadRequest(e)),
    }
}

async fn agent_ensure_log_group(State(shared): State<Arc<Shared>>, req: Request<Body>) -> Response {
    let gw = crate::Gateway { shared };
    match agent_body::<berth_core::agent_protocol::EnsureLogGroupRequest>(req).await {
        Ok(r) => agent_json(gw.ensure_log_group(r).await),
        Err(e) => agent_error(&e),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn not_found() -> Response {
    let e = ApiError {
        status: 404,
        code: "UnknownOperationException",
        message: "Not found: Berth serves the AWS JSON protocol with POST / (and GET /healthz)."
            .into(),
        extra: None,
    };
    error_response(&e)
}

async fn reset(State(shared): State<Arc<Shared>>) -> Response {
    let wait = {
        let mut inner = shared
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.world.reset();
        let period_ms = shared.config.metrics_period_ms;
        *shared.metrics_book() = berth_core::metrics::MetricsBook::new(period_ms);
        shared.commits.reset()
    };
    if wait.await.is_err() {
        return error_response(&ApiError::internal(
            Service::Ecs,
            "the store is shutting down",
        ));
    }
    tracing::info!("state reset by POST /_berth/reset");
    (StatusCode::OK, "reset\n").into_response()
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn error_response(e: &ApiError) -> Response {
    let mut resp = Response::new(Body::from(e.body()));
    *resp.status_mut() = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    finish(resp)
}

fn finish(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(v) = HeaderValue::from_str(&request_id()) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

/// `POST /_berth/admin/v1/agent-tokens/{create,rotate,revoke,list}`: a cluster's agent
/// registration tokens (see `berth_core::agent_token`). Signed like the ECS API (service `ecs`)
/// and answered in its JSON error shapes; body `{"cluster": "...", "tokenId": "..."}`.
async fn admin_agent_tokens(
    State(shared): State<Arc<Shared>>,
    Path(operation): Path<String>,
    req: Request<Body>,
) -> Response {
    match admin_agent_tokens_inner(&shared, &operation, req).await {
        Ok(body) => finish(Response::new(Body::from(body))),
        Err(e) => error_response(&e),
    }
}

async fn admin_agent_tokens_inner(
    shared: &Shared,
    operation: &str,
    req: Request<Body>,
) -> Result<Vec<u8>, ApiError> {
    use berth_core::agent_token;
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Input {
        cluster: Option<String>,
        token_id: Option<String>,
    }
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, limits::MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::too_large(limits::MAX_BODY_BYTES))?;
    let caller = crate::auth::authenticate(&shared.config, &parts, &body)?;
    caller.check_service(Service::Ecs)?;
    let ecs = |e: berth_api::EcsError| ApiError::from(e);
    let input: Input = if body.is_empty() {
        Input {
            cluster: None,
            token_id: None,
        }
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::from(berth_api::EcsError::InvalidParameter(format!(
                "The request body is not valid: {e}"
            )))
        })?
    };
    let cluster = input.cluster.unwrap_or_else(|| "default".to_string());
    let (result, wait) = {
        let mut guard = shared
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Inner { world, rng } = &mut *guard;
        let mut ctx = Ctx::new(now_ms(), caller.partition, &caller.principal, rng);
        let p = world.partition(&ctx.partition.clone());
        let result = match operation {
            "create" => agent_token::create(p, &mut ctx, &cluster)
                .map(|t| serde_json::json!({ "agentToken": t })),
            "rotate" => agent_token::rotate(p, &mut ctx, &cluster)
                .map(|t| serde_json::json!({ "agentToken": t })),
            "revoke" => match input.token_id.as_deref() {
                Some(id) => agent_token::revoke(p, &mut ctx, &cluster, id)
                    .map(|t| serde_json::json!({ "agentToken": t })),
                None => Err(berth_api::EcsError::InvalidParameter(
                    "tokenId is required to revoke a token.".into(),
                )),
            },
            "list" => agent_token::list(p, &ctx, &cluster)
                .map(|t| serde_json::json!({ "agentTokens": t })),
            other => Err(berth_api::EcsError::InvalidParameter(format!(
                "Unknown agent-token operation {other}: use create, rotate, revoke or list."
            ))),
        }
        .map_err(ecs);
        let wait = if result.is_ok() {
            crate::gateway::finish_ctx(shared, &mut ctx)
        } else {
            None
        };
        (result, wait)
    };
    if let Some(wait) = wait {
        wait.await
            .map_err(|_| ApiError::internal(Service::Ecs, "the store is shutting down"))?;
    }
    if let Ok(v) = &result {
        tracing::info!(operation, cluster = %cluster, principal = %caller.principal, tokens = %v.get("agentToken").and_then(|t| t.get("tokenId")).map(ToString::to_string).unwrap_or_default(), "agent registration tokens changed or listed");
    }
    Ok(serde_json::to_vec(&result?).unwrap_or_default())
}

async fn api(State(shared): State<Arc<Shared>>, req: Request<Body>) -> Response {
    // CloudWatch speaks AWS JSON 1.0 (and its errors carry the query protocol's code); the
    // others 1.1. Decided from the header alone, before anything is verified, only to shape
    // the answer.
    let cloudwatch = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with(berth_api::cloudwatch::TARGET_PREFIX));
    let mut resp = match handle(&shared, req).await {
        Ok(body) => finish(Response::new(Body::from(body))),
        Err(e) => {
            tracing::debug!(code = e.code, message = %e.message, "request refused");
            let mut resp = error_response(&e);
            if cloudwatch && let Some(q) = berth_api::error::query_error(e.code) {
                resp.headers_mut()
                    .insert("x-amzn-query-error", HeaderValue::from_static(q));
            }
            resp
        }
    };
    if cloudwatch {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(Service::CloudWatch.content_type()),
        );
    }
    resp
}

/// A CloudWatch operation over the metrics (read under the metrics lock only, never the
/// world's).
fn cloudwatch(
    shared: &Shared,
    partition: &berth_core::PartitionKey,
    operation: &str,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let book = shared.metrics_book();
    let reader = berth_core::cloudwatch::Reader {
        book: &book,
        partition,
        now_ms: now_ms(),
        token_key: &shared.token_key,
    };
    berth_core::cloudwatch::handle(&reader, operation, body)
}

/// Members of CloudWatch's answers that are timestamps (tagged in CBOR).
const CLOUDWATCH_TIMESTAMPS: &[&str] = &["Timestamp", "Timestamps"];

/// Smithy RPC v2 CBOR: `POST /service/<ServiceName>/operation/<Operation>` with
/// `smithy-protocol: rpc-v2-cbor`, for CloudWatch (what newer AWS SDKs send; the CLI sends
/// AWS JSON 1.0). The same operations over the same documents, in CBOR.
async fn rpc_v2_cbor(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path((service, operation)): axum::extract::Path<(String, String)>,
    req: Request<Body>,
) -> Response {
    let result = async {
        let (parts, body) = req.into_parts();
        let body: Bytes = axum::body::to_bytes(body, limits::MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::too_large(limits::MAX_BODY_BYTES))?;
        let caller = crate::auth::authenticate(&shared.config, &parts, &body)?;
        let protocol = parts
            .headers
            .get("smithy-protocol")
            .and_then(|v| v.to_str().ok());
        if protocol != Some("rpc-v2-cbor") {
            return Err(ApiError::client(
                "UnknownOperationException",
                "Expected the header smithy-protocol: rpc-v2-cbor.",
            ));
        }
        let target = Target::parse(Some(&format!("{service}.{operation}")))?;
        if target.service != Service::CloudWatch {
            return Err(ApiError::unknown_operation(format!(
                "Berth serves the RPC v2 CBOR protocol for {} only.",
                berth_api::cloudwatch::TARGET_PREFIX
            )));
        }
        caller.check_service(target.service)?;
        let json = berth_api::cbor::to_json(&body)?;
        let json = serde_json::to_vec(&json).unwrap_or_default();
        let out = cloudwatch(&shared, &caller.partition, target.operation, &json)?;
        let out: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        Ok(berth_api::cbor::from_json(&out, CLOUDWATCH_TIMESTAMPS))
    }
    .await;
    let (status, body, query_error) = match result {
        Ok(body) => (StatusCode::OK, body, None),
        Err(e) => {
            tracing::debug!(code = e.code, message = %e.message, "request refused");
            let doc = serde_json::json!({"__type": e.code, "message": e.message});
            (
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
                berth_api::cbor::from_json(&doc, &[]),
                berth_api::error::query_error(e.code),
            )
        }
    };
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/cbor"),
    );
    h.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
    if let Some(q) = query_error {
        h.insert("x-amzn-query-error", HeaderValue::from_static(q));
    }
    if let Ok(v) = HeaderValue::from_str(&request_id()) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

async fn handle(shared: &Shared, req: Request<Body>) -> Result<Vec<u8>, ApiError> {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limits::MAX_BODY_BYTES) {
        return Err(ApiError::too_large(limits::MAX_BODY_BYTES));
    }
    let body: Bytes = axum::body::to_bytes(body, limits::MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::too_large(limits::MAX_BODY_BYTES))?;
    let caller = crate::auth::authenticate(&shared.config, &parts, &body)?;
    let target = Target::parse(
        parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok()),
    )?;
    caller.check_service(target.service)?;
    if target.service == Service::Logs {
        return crate::logs::api(shared, caller.partition, target.operation, body).await;
    }
    if target.service == Service::CloudWatch {
        return cloudwatch(shared, &caller.partition, target.operation, &body);
    }

    let (result, wait) = {
        let mut guard = shared
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Inner { world, rng } = &mut *guard;
        let mut ctx = Ctx::new(now_ms(), caller.partition, &caller.principal, rng)
            .with_token_key(shared.token_key.clone());
        // ECS answers are encoded after the lock is let go (see `ecs::Reply`).
        let result = match target.service {
            Service::Ecs => {
                berth_core::ecs::handle_deferred(world, &mut ctx, target.operation, &body)
                    .map(Answer::Later)
            }
            Service::ApplicationAutoScaling => {
                berth_core::autoscaling::handle(world, &mut ctx, target.operation, &body)
                    .map(Answer::Now)
            }
            Service::SecretsManager => {
                berth_core::secretsmanager::handle(world, &mut ctx, target.operation, &body)
                    .map(Answer::Now)
            }
            other => Err(ApiError::not_implemented(other, target.operation)),
        };
        let wait = if result.is_ok() {
            crate::gateway::finish_ctx(shared, &mut ctx)
        } else {
            None
        };
        (result, wait)
    };
    if let Some(wait) = wait {
        wait.await
            .map_err(|_| ApiError::internal(target.service, "the store is shutting down"))?;
    }
    tracing::debug!(operation = target.operation, ok = result.is_ok(), "request");
    result.map(|answer| match answer {
        Answer::Now(body) => body,
        Answer::Later(reply) => reply.encode(),
    })
}

/// An answer encoded under the world's lock, or one to encode after it.
enum Answer {
    Now(Vec<u8>),
    Later(berth_core::ecs::Reply),
}
