//! SDK errors as driver errors: whether retrying can help, and AWS's message.

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use paved_engine::DriverError;

/// Error codes AWS uses for "slow down" (besides HTTP 429 and 5xx).
const THROTTLING: [&str; 8] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
    "PriorRequestNotComplete",
];

/// `operation` failed: retryable for throttling, server errors and the
/// network; permanent otherwise. The message keeps AWS's code and text.
pub(crate) fn failed<E>(operation: &str, e: SdkError<E, HttpResponse>) -> DriverError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.code().map(str::to_string);
    let message = match (&code, e.message()) {
        (Some(code), Some(m)) => format!("AWS {operation}: {code}: {m}"),
        (Some(code), None) => format!("AWS {operation}: {code}"),
        _ => {
            use std::error::Error;
            let mut m = format!("AWS {operation}: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                m = format!("{m}: {s}");
                source = s.source();
            }
            m
        }
    };
    let retryable = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(_) => {
            code.as_deref().is_some_and(|c| THROTTLING.contains(&c)) || status.is_some_and(|s| s == 429 || s >= 500)
        }
        _ => false,
    };
    if retryable { DriverError::Retryable(message) } else { DriverError::Permanent(message) }
}

/// `true` when `e` is a service error with one of `codes`.
pub(crate) fn is_code<E, R>(e: &SdkError<E, R>, codes: &[&str]) -> bool
where
    E: ProvideErrorMetadata,
{
    matches!(e, SdkError::ServiceError(_)) && e.code().is_some_and(|c| codes.contains(&c))
}
