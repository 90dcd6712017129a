//! The one place failures become HTTP responses:
//! `{"status":401,"error":"UNAUTHORIZED","reason":"..."}` with the HTTP
//! status equal to the failure's code. Reasons are the server's (already
//! sanitised) or the node's own; internals only go to the logs.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use segchat_proto::{Failure, Status};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A failed API call.
#[derive(Debug)]
pub struct ApiError(pub Failure);

/// The JSON body of every error response.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub status: u16,
    pub error: &'static str,
    pub reason: String,
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> Self {
        ApiError(f)
    }
}

impl ApiError {
    /// The store (or something else local) failed; the details are logged.
    pub fn internal(what: &str, e: &dyn std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "{what}");
        ApiError(Failure::new(
            Status::ServerError,
            "internal error in the node; see its log",
        ))
    }

    /// The server answered with a reply this operation never gets.
    pub fn unexpected(op: &str, reply: &dyn std::fmt::Debug) -> ApiError {
        tracing::error!(op, ?reply, "unexpected answer from the server");
        ApiError(Failure::new(
            Status::ServerError,
            format!("unexpected answer from the server to {op}"),
        ))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.0.status.code();
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            status: code,
            error: self.0.status.name(),
            reason: self.0.reason,
        };
        (status, Json(body)).into_response()
    }
}

/// A JSON request body whose rejections are [`ApiError`]s.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(ApiError(Failure::bad_request(rejection_reason(&rejection)))),
        }
    }
}

fn rejection_reason(r: &JsonRejection) -> String {
    match r {
        JsonRejection::MissingJsonContentType(_) => {
            "send a JSON body with Content-Type: application/json".into()
        }
        other => other.body_text(),
    }
}

/// Unknown routes answer in the same shape.
pub(super) async fn not_found() -> ApiError {
    ApiError(Failure::not_found("no such API route"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_carry_the_failure_code_and_name() {
        let resp = ApiError(Failure::forbidden("visitors cannot do that")).into_response();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        let bytes = axum::body::to_bytes(resp.into_body(), 1024)
            .await
            .expect("body");
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["status"], 403);
        assert_eq!(v["error"], "FORBIDDEN");
        assert_eq!(v["reason"], "visitors cannot do that");
    }
}
