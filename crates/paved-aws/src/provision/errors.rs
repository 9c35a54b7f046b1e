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

/// Error codes AWS answers for a moment and then stops answering: another
/// change of the same object in flight, an instance between states, an id
/// created a moment ago and not visible everywhere yet (EC2 is eventually
/// consistent: <https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html>).
const TRANSIENT: [&str; 10] = [
    // EKS takes one update of a cluster at a time:
    // <https://docs.aws.amazon.com/eks/latest/APIReference/API_UpdateClusterConfig.html>
    "ResourceInUseException",
    // IAM: <https://docs.aws.amazon.com/IAM/latest/APIReference/CommonErrors.html>
    "ConcurrentModification",
    "ConcurrentModificationException",
    // RDS: <https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/CommonErrors.html>
    "InvalidDBInstanceState",
    // S3: <https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html>
    "OperationAborted",
    // EC2, right after a create: <https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html>
    "InvalidVpcID.NotFound",
    "InvalidSubnetID.NotFound",
    "InvalidGroup.NotFound",
    "InvalidRouteTableID.NotFound",
    "InvalidAllocationID.NotFound",
];

/// Messages that mark an IAM role not yet usable where it was just created:
/// IAM is eventually consistent, and a role can be assumed seconds after
/// `CreateRole` returns (<https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency>).
/// EKS answers `InvalidParameterException` ("Role with arn: … could not be
/// assumed because it does not exist or the trusted entity is not correct").
const PROPAGATING: [&str; 2] = ["could not be assumed", "cannot be assumed"];

/// `operation` failed: retryable for throttling, server errors, the network
/// and the transient answers above (the engine retries within its
/// attempts); permanent otherwise. The message keeps AWS's code and text.
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
            code.as_deref().is_some_and(|c| THROTTLING.contains(&c) || TRANSIENT.contains(&c))
                || status.is_some_and(|s| s == 429 || s >= 500)
                || e.message().is_some_and(|m| PROPAGATING.iter().any(|p| m.contains(p)))
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
