//! API errors: JSON `{code, message, details}` with the same diagnostics the
//! CLI prints (file = `request body`, line, column, field path, hint).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use paved_catalog::CatalogError;
use paved_control::ControlError;
use paved_engine::EngineError;
use serde::Serialize;
use utoipa::ToSchema;

/// One problem with a request, where it is.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Field path: `spec.region`, or a query/path parameter or header name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub message: String,
    /// Line and column in the request body, for spec documents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl ErrorDetail {
    pub fn field(path: impl Into<String>, message: impl Into<String>) -> ErrorDetail {
        ErrorDetail {
            path: Some(path.into()),
            message: message.into(),
            line: None,
            column: None,
            code: None,
            hint: None,
        }
    }
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable: `unauthenticated`, `forbidden`, `not-found`, `invalid`, `stale`, …
    pub code: String,
    pub message: String,
    pub details: Vec<ErrorDetail>,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// Seconds, for 429.
    pub retry_after: Option<axum::http::HeaderValue>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody { code: code.into(), message: message.into(), details: vec![] },
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: Vec<ErrorDetail>) -> ApiError {
        self.body.details = details;
        self
    }

    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", message)
    }

    pub fn bad_request(path: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", format!("{path}: {message}"))
            .with_details(vec![ErrorDetail::field(path, message)])
    }

    pub fn invalid(path: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", format!("{path}: {message}"))
            .with_details(vec![ErrorDetail::field(path, message)])
    }

    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(v) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        response
    }
}

/// A spec diagnostic as an error detail (field path, line, column, code, hint).
pub fn detail(d: &paved_spec::Diagnostic) -> ErrorDetail {
    ErrorDetail {
        path: d.path.clone(),
        message: d.message.clone(),
        line: Some(d.line),
        column: Some(d.column),
        code: Some(d.code.to_string()),
        hint: d.hint.clone(),
    }
}

/// The errors among spec diagnostics, as error details.
pub fn diagnostics(diags: &[paved_spec::Diagnostic]) -> Vec<ErrorDetail> {
    diags.iter().filter(|d| d.is_error()).map(detail).collect()
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> ApiError {
        match e {
            CatalogError::Invalid(batch) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                CatalogError::Invalid(batch.clone()).to_string(),
            )
            .with_details(diagnostics(&batch.diagnostics)),
            e @ CatalogError::NotFound { .. } => ApiError::not_found(e.to_string()),
            e @ CatalogError::HasDependents { .. } => {
                ApiError::new(StatusCode::CONFLICT, "has-dependents", e.to_string())
            }
            e @ CatalogError::Stale { .. } => ApiError::new(StatusCode::PRECONDITION_FAILED, "stale", e.to_string()),
            e @ CatalogError::Contended(_) => ApiError::new(StatusCode::CONFLICT, "contended", e.to_string()),
            CatalogError::PolicyDenied(d) => d.into(),
            e => ApiError::internal(e),
        }
    }
}

/// 403 `policy-denied`: each blocking finding a detail (path = `policy/rule`,
/// code = the rule), with how to get an exception.
impl From<paved_policy::Denied> for ApiError {
    fn from(d: paved_policy::Denied) -> ApiError {
        let details = d
            .findings
            .iter()
            .map(|f| ErrorDetail {
                code: Some(f.rule.clone()),
                hint: Some(format!(
                    "fix what the rule names, or ask an operator for a PolicyException (spec.policy: {}, spec.rules: [{}])",
                    f.policy, f.rule
                )),
                ..ErrorDetail::field(format!("{}/{}", f.policy, f.rule), f.message.clone())
            })
            .collect();
        let first = d.findings.first().map(|f| format!(": {}", f.message)).unwrap_or_default();
        ApiError::new(
            StatusCode::FORBIDDEN,
            "policy-denied",
            format!("{} of {} denied by policy{first}", d.decision, d.target),
        )
        .with_details(details)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            e @ EngineError::Locked { .. } => ApiError::new(StatusCode::CONFLICT, "locked", e.to_string()),
            e @ (EngineError::MissingDrivers { .. } | EngineError::Plan(_)) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "cannot-apply", e.to_string())
            }
            e => ApiError::internal(e),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        match e {
            ControlError::Catalog(e) => e.into(),
            ControlError::Engine(e) => e.into(),
            ControlError::Store(e) => ApiError::internal(e),
            e @ ControlError::Anchor(_) => ApiError::internal(e),
            ControlError::BadTokenRequest(e) => ApiError::invalid(e.field, e.message),
            e @ ControlError::NoLogs { .. } => ApiError::not_found(e.to_string()),
            e @ (ControlError::StillProvisioned { .. } | ControlError::HostsPreviews { .. }) => {
                ApiError::new(StatusCode::CONFLICT, "still-provisioned", e.to_string())
            }
            e @ ControlError::OtherRunner { .. } => ApiError::new(StatusCode::CONFLICT, "other-runner", e.to_string()),
            ControlError::Secret(e) => e.into(),
            ControlError::Identity(e) => e.into(),
            ControlError::Deploy(e) => e.into(),
            e @ ControlError::Git(paved_control::git::GitRefusal::Missing { .. }) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad-delivery", e.to_string())
            }
            e @ ControlError::Git(_) => ApiError::new(StatusCode::CONFLICT, "refused", e.to_string()),
            ControlError::Unplannable { environment, problems } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unplannable",
                format!("environment `{environment}` cannot be planned ({} problem(s))", problems.len()),
            )
            .with_details(problems.into_iter().map(|p| ErrorDetail::field("environment", p)).collect()),
            e @ ControlError::GitOps(paved_control::gitops::GitOpsError::ClearTextToken { .. }) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "insecure-repository", e.to_string())
            }
            e @ ControlError::GitOps(paved_control::gitops::GitOpsError::NoRepository { .. }) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "no-gitops-repository", e.to_string())
            }
            e @ ControlError::GitOps(_) => ApiError::new(StatusCode::BAD_GATEWAY, "delivery-failed", e.to_string()),
            e @ ControlError::Artifact(paved_control::ArtifactError::BadEndpoints { .. }) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "misconfigured", e.to_string())
            }
            e @ ControlError::Artifact(_) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "artifact-unavailable", e.to_string())
            }
            ControlError::Unrenderable { environment, problems } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unrenderable",
                format!(
                    "environment `{environment}` cannot be rendered for Kubernetes ({} problem(s))",
                    problems.len()
                ),
            )
            .with_details(problems.into_iter().map(|p| ErrorDetail::field("environment", p)).collect()),
        }
    }
}

impl From<paved_control::SecretError> for ApiError {
    fn from(e: paved_control::SecretError) -> ApiError {
        use paved_control::SecretError;
        use paved_secrets::SecretsError;
        match e {
            SecretError::Vault(SecretsError::NotFound { .. }) => ApiError::not_found(e.to_string()),
            SecretError::Vault(SecretsError::BadName { .. }) => ApiError::invalid("name", e.to_string()),
            SecretError::Vault(SecretsError::Store(e)) => ApiError::internal(e),
            e @ SecretError::ProductionShared { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
            }
            // Does not open, wrong KEK, KMS unreachable: the server's keys, not the request.
            e => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "secrets-unavailable", e.to_string()),
        }
    }
}

impl From<paved_control::DeployRefusal> for ApiError {
    fn from(e: paved_control::DeployRefusal) -> ApiError {
        use paved_control::DeployRefusal as R;
        match e {
            e @ R::NotADigest(_) => ApiError::invalid("artifact", e.to_string()),
            e @ (R::UnknownArtifact { .. } | R::UnknownService { .. }) => ApiError::not_found(e.to_string()),
            e @ R::Bundle(_) => ApiError::invalid("bundle", e.to_string()),
            e @ R::TagTaken { .. } => ApiError::new(StatusCode::CONFLICT, "tag-taken", e.to_string()),
            // Refused by the promotion rules: the request is fine, the state does not allow it.
            e => ApiError::new(StatusCode::CONFLICT, "not-deployable", e.to_string()),
        }
    }
}

impl From<paved_control::IdentityFailure> for ApiError {
    fn from(e: paved_control::IdentityFailure) -> ApiError {
        use paved_control::IdentityFailure;
        match e {
            e @ (IdentityFailure::NoAwsRole { .. } | IdentityFailure::NotAws { .. }) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "no-keyless-access", e.to_string())
            }
            e => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "identity-unavailable", e.to_string()),
        }
    }
}

impl From<paved_store::StoreError> for ApiError {
    fn from(e: paved_store::StoreError) -> ApiError {
        ApiError::internal(e)
    }
}
