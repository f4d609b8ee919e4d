//! One classification of errors, mapped to HTTP status codes and gRPC codes.

use datafusion::error::DataFusionError;
use telemark_engine::Error as EngineError;

use crate::auth::AuthError;

/// Who is to blame, and so which status a client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bad SQL, bad parameters, type errors: 400 / INVALID_ARGUMENT.
    BadRequest,
    /// Missing or wrong credentials: 401 / UNAUTHENTICATED.
    Unauthenticated,
    /// Valid credentials without the right: 403 / PERMISSION_DENIED.
    Forbidden,
    /// Unknown database, table or column: 404 / NOT_FOUND.
    NotFound,
    /// Request too large: 413 / RESOURCE_EXHAUSTED.
    TooLarge,
    /// Not supported: 501 / UNIMPLEMENTED.
    Unsupported,
    /// The database refuses writes (poisoned, closing): 503 / UNAVAILABLE.
    Unavailable,
    /// A bug or a damaged file: 500 / INTERNAL.
    Internal,
    /// The request conflicts with how things are set up (a rule from the config file): 409 / FAILED_PRECONDITION.
    Conflict,
}

impl Kind {
    /// Label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Kind::BadRequest => "bad_request",
            Kind::Unauthenticated => "unauthenticated",
            Kind::Forbidden => "forbidden",
            Kind::NotFound => "not_found",
            Kind::TooLarge => "too_large",
            Kind::Unsupported => "unsupported",
            Kind::Unavailable => "unavailable",
            Kind::Internal => "internal",
            Kind::Conflict => "conflict",
        }
    }

    /// The HTTP status.
    pub fn http(self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Kind::BadRequest => S::BAD_REQUEST,
            Kind::Unauthenticated => S::UNAUTHORIZED,
            Kind::Forbidden => S::FORBIDDEN,
            Kind::NotFound => S::NOT_FOUND,
            Kind::TooLarge => S::PAYLOAD_TOO_LARGE,
            Kind::Unsupported => S::NOT_IMPLEMENTED,
            Kind::Unavailable => S::SERVICE_UNAVAILABLE,
            Kind::Internal => S::INTERNAL_SERVER_ERROR,
            Kind::Conflict => S::CONFLICT,
        }
    }

    /// The gRPC status code.
    pub fn grpc(self) -> tonic::Code {
        use tonic::Code as C;
        match self {
            Kind::BadRequest => C::InvalidArgument,
            Kind::Unauthenticated => C::Unauthenticated,
            Kind::Forbidden => C::PermissionDenied,
            Kind::NotFound => C::NotFound,
            Kind::TooLarge => C::ResourceExhausted,
            Kind::Unsupported => C::Unimplemented,
            Kind::Unavailable => C::Unavailable,
            Kind::Internal => C::Internal,
            Kind::Conflict => C::FailedPrecondition,
        }
    }
}

/// An error with its classification and the message a client sees.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Classification.
    pub kind: Kind,
    /// Message for the client.
    pub message: String,
}

impl ApiError {
    /// Builds one.
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        ApiError { kind, message: message.into() }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Classifies an engine error.
pub fn engine_kind(e: &EngineError) -> Kind {
    match e {
        EngineError::NotFound { .. } => Kind::NotFound,
        EngineError::InvalidName { .. } | EngineError::InvalidInput(_) => Kind::BadRequest,
        EngineError::Poisoned(_) | EngineError::Closed | EngineError::ObjectStore(_) => Kind::Unavailable,
        EngineError::ResourceLimit(_) => Kind::TooLarge,
        _ => Kind::Internal,
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ApiError { kind: engine_kind(&e), message: e.to_string() }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(m) => ApiError::new(Kind::Unauthenticated, m),
            AuthError::PermissionDenied(m) => ApiError::new(Kind::Forbidden, m),
        }
    }
}

/// Classifies a DataFusion error, looking through to engine errors inside it.
pub fn datafusion_kind(e: &DataFusionError) -> Kind {
    if let Some(inner) = telemark_engine::query::engine_error(e) {
        return engine_kind(inner);
    }
    match e {
        DataFusionError::SQL(..) | DataFusionError::SchemaError(..) => {
            if e.to_string().contains("not found") {
                Kind::NotFound
            } else {
                Kind::BadRequest
            }
        }
        DataFusionError::Plan(m) => {
            if m.contains("permission denied") {
                Kind::Forbidden
            } else if m.contains("not found") {
                Kind::NotFound
            } else {
                Kind::BadRequest
            }
        }
        DataFusionError::NotImplemented(_) => Kind::Unsupported,
        DataFusionError::Execution(_) | DataFusionError::ArrowError(..) => Kind::BadRequest,
        DataFusionError::ResourcesExhausted(_) => Kind::TooLarge,
        DataFusionError::Context(_, inner) => datafusion_kind(inner),
        DataFusionError::Diagnostic(_, inner) => datafusion_kind(inner),
        DataFusionError::Shared(inner) => datafusion_kind(inner),
        _ => Kind::Internal,
    }
}

impl From<DataFusionError> for ApiError {
    fn from(e: DataFusionError) -> Self {
        let kind = datafusion_kind(&e);
        // DataFusion wraps our errors as "External error: …"; show ours plainly.
        let message = match telemark_engine::query::engine_error(&e) {
            Some(inner) => inner.to_string(),
            None => e.to_string(),
        };
        ApiError { kind, message }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        tonic::Status::new(e.kind.grpc(), e.message)
    }
}
