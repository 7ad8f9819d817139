//! The API's errors and how they are answered: a status code and RabbitMQ's body,
//! `{"error": ..., "reason": ...}` (rabbit_mgmt_util's `halt_response`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::broker::BrokerError;

/// The realm RabbitMQ's management challenges with.
const REALM: &str = "Basic realm=\"RabbitMQ Management\"";

/// An answer other than success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    /// Usually a string; some of RabbitMQ's reasons are Erlang terms shown as JSON lists.
    pub reason: Value,
    /// Adds the `www-authenticate` challenge.
    challenge: bool,
    /// No body at all (a request without credentials, as cowboy answers it).
    empty: bool,
}

pub type ApiResult<T = Response> = Result<T, ApiError>;

impl ApiError {
    fn new(status: StatusCode, error: &'static str, reason: impl Into<Value>) -> Self {
        ApiError {
            status,
            error,
            reason: reason.into(),
            challenge: false,
            empty: false,
        }
    }

    /// 404 for a missing object, in RabbitMQ's words.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Object Not Found", "Not Found")
    }

    /// 404 naming what is missing (`vhost_not_found`), as some handlers answer.
    pub fn not_found_because(reason: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", reason)
    }

    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", reason.into())
    }

    /// 400 with RabbitMQ's own error word (e.g. `invalid_pagination_parameters`).
    pub fn bad_request_kind(error: &'static str, reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, reason.into())
    }

    /// 400 whose reason is an Erlang term RabbitMQ shows as a list, e.g.
    /// `["no_such_user","bob"]`.
    pub fn bad_request_term(reason: Value) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    /// 400 for a value the broker's validation refused, worded as RabbitMQ's
    /// `rabbit_runtime_parameters` does.
    pub fn validation_failed(reason: &str) -> Self {
        Self::bad_request(format!("Validation failed\n\n{reason}\n"))
    }

    /// The same answer without the `www-authenticate` challenge: for the web console's
    /// script (it says so with `X-Requested-With`), where a challenge would make the
    /// browser open its own login dialog over the console's.
    pub fn without_challenge(mut self) -> Self {
        self.challenge = false;
        self
    }

    /// 401 for a known user that may not do this.
    pub fn not_authorised(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "not_authorised", reason.into())
    }

    /// 401 for wrong credentials (RabbitMQ spells this one with a z).
    pub fn login_failed() -> Self {
        ApiError {
            challenge: true,
            ..Self::new(StatusCode::UNAUTHORIZED, "not_authorized", "Login failed")
        }
    }

    /// 401 for a request without credentials: a challenge and no body.
    pub fn no_credentials() -> Self {
        ApiError {
            challenge: true,
            empty: true,
            ..Self::new(StatusCode::UNAUTHORIZED, "not_authorized", "")
        }
    }

    pub fn internal(reason: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            reason.into(),
        )
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::NotFound(_) => ApiError::not_found(),
            BrokerError::Storage(t) => ApiError::internal(t),
            other => ApiError::bad_request(other.text()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = if self.empty {
            self.status.into_response()
        } else {
            (
                self.status,
                Json(json!({"error": self.error, "reason": self.reason})),
            )
                .into_response()
        };
        if self.challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(REALM));
        }
        response
    }
}
