//! The one mapping from Berth's errors to AWS exception names, HTTP statuses and bodies.

use crate::Service;

/// An error as it goes on the wire: `{"__type": code, "message": message}` with a status.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status (400 for client errors, 5xx for faults).
    pub status: u16,
    /// The exception name, e.g. `ClusterNotFoundException`.
    pub code: &'static str,
    /// Human-readable text.
    pub message: String,
    /// Extra members some exceptions carry (ECS `ConflictException.resourceIds`).
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
}

impl ApiError {
    /// A 400 with the given exception name.
    pub fn client(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            code,
            message: message.into(),
            extra: None,
        }
    }

    /// Malformed or mistyped JSON.
    pub fn serialization(message: impl Into<String>) -> ApiError {
        ApiError::client("SerializationException", message)
    }

    /// An `X-Amz-Target` that names no operation Berth knows.
    pub fn unknown_operation(message: impl Into<String>) -> ApiError {
        ApiError::client("UnknownOperationException", message)
    }

    /// A model constraint violation, named as each service names it. CloudWatch tells a
    /// missing required parameter (`MissingRequiredParameterException`) from a bad value
    /// (`InvalidParameterValueException`).
    pub fn validation(service: Service, message: impl Into<String>) -> ApiError {
        let message = message.into();
        let code = match service {
            Service::Ecs | Service::Logs | Service::SecretsManager => "InvalidParameterException",
            Service::ApplicationAutoScaling => "ValidationException",
            Service::CloudWatch if message.contains("Member must not be null") => {
                "MissingRequiredParameterException"
            }
            Service::CloudWatch => "InvalidParameterValueException",
        };
        ApiError::client(code, message)
    }

    /// The request body exceeds the size Berth accepts.
    pub fn too_large(limit_bytes: usize) -> ApiError {
        ApiError {
            status: 413,
            code: "RequestEntityTooLargeException",
            message: format!("Request body exceeds the limit of {limit_bytes} bytes"),
            extra: None,
        }
    }

    /// An operation that is in the service model but that Berth does not implement yet.
    pub fn not_implemented(service: Service, operation: &str) -> ApiError {
        let code = match service {
            Service::Ecs => "UnsupportedFeatureException",
            Service::Logs => "InvalidOperationException",
            Service::ApplicationAutoScaling => "ValidationException",
            // The query protocol's common error for an action the service does not offer.
            Service::CloudWatch => "InvalidAction",
            Service::SecretsManager => "InvalidRequestException",
        };
        ApiError::client(code, format!("Berth does not implement {operation} yet."))
    }

    /// An internal fault (the service's fault shape).
    pub fn internal(service: Service, message: impl Into<String>) -> ApiError {
        let code = match service {
            Service::Ecs => "ServerException",
            Service::Logs => "ServiceUnavailableException",
            Service::ApplicationAutoScaling => "InternalServiceException",
            Service::CloudWatch => "InternalServiceFault",
            Service::SecretsManager => "InternalServiceError",
        };
        ApiError {
            status: 500,
            code,
            message: message.into(),
            extra: None,
        }
    }

    /// The JSON body AWS sends for this error. Application Auto Scaling's shapes spell the
    /// member `Message`; botocore reads either, so both are sent.
    pub fn body(&self) -> Vec<u8> {
        let mut map = self.extra.clone().unwrap_or_default();
        map.insert("__type".into(), self.code.into());
        map.insert("message".into(), self.message.clone().into());
        map.insert("Message".into(), self.message.clone().into());
        serde_json::to_vec(&serde_json::Value::Object(map)).unwrap_or_default()
    }
}

/// CloudWatch is `awsQueryCompatible`: besides `__type` (the error shape's name), an error
/// carries the `x-amzn-query-error: Code;Fault` header with the code the query protocol used,
/// which botocore reports as the error code (`InvalidParameterValue`) and maps back to the
/// modelled exception. `None` for codes that are not CloudWatch's.
pub fn query_error(code: &str) -> Option<&'static str> {
    Some(match code {
        "InvalidParameterValueException" => "InvalidParameterValue;Sender",
        "MissingRequiredParameterException" => "MissingParameter;Sender",
        "InvalidParameterCombinationException" => "InvalidParameterCombination;Sender",
        "InvalidNextToken" => "InvalidNextToken;Sender",
        "InternalServiceFault" => "InternalServiceError;Receiver",
        "InvalidAction" => "InvalidAction;Sender",
        _ => return None,
    })
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// ECS's exceptions, each with the text ECS uses where it has a fixed one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EcsError {
    /// A client-side problem: bad reference, unusable resource (`ClientException`).
    #[error("{0}")]
    Client(String),
    /// A parameter is invalid (`InvalidParameterException`).
    #[error("{0}")]
    InvalidParameter(String),
    /// The named cluster does not exist (`ClusterNotFoundException`).
    #[error("Cluster not found.")]
    ClusterNotFound,
    /// DeleteCluster while services are active.
    #[error("The Cluster cannot be deleted while Services are active.")]
    ClusterContainsServices,
    /// DeleteCluster while container instances are registered.
    #[error("The Cluster cannot be deleted while Container Instances are active or draining.")]
    ClusterContainsContainerInstances,
    /// DeleteCluster while tasks are active.
    #[error("The Cluster cannot be deleted while Tasks are active.")]
    ClusterContainsTasks,
    /// The named service does not exist.
    #[error("Service not found.")]
    ServiceNotFound,
    /// The service is DRAINING or INACTIVE.
    #[error("Service was not ACTIVE.")]
    ServiceNotActive,
    /// A resource named by ARN does not exist (tagging).
    #[error("{0}")]
    ResourceNotFound(String),
    /// A limit was hit.
    #[error("{0}")]
    LimitExceeded(String),
    /// Idempotency token reused with different parameters.
    #[error("{message}")]
    Conflict {
        /// What conflicts.
        message: String,
        /// The resources the token already produced.
        resource_ids: Vec<String>,
    },
    /// A feature Berth (or the chosen launch type) does not support.
    #[error("{0}")]
    UnsupportedFeature(String),
    /// Internal fault.
    #[error("{0}")]
    Server(String),
}

impl EcsError {
    /// The ECS exception name.
    pub fn code(&self) -> &'static str {
        match self {
            EcsError::Client(_) => "ClientException",
            EcsError::InvalidParameter(_) => "InvalidParameterException",
            EcsError::ClusterNotFound => "ClusterNotFoundException",
            EcsError::ClusterContainsServices => "ClusterContainsServicesException",
            EcsError::ClusterContainsContainerInstances => {
                "ClusterContainsContainerInstancesException"
            }
            EcsError::ClusterContainsTasks => "ClusterContainsTasksException",
            EcsError::ServiceNotFound => "ServiceNotFoundException",
            EcsError::ServiceNotActive => "ServiceNotActiveException",
            EcsError::ResourceNotFound(_) => "ResourceNotFoundException",
            EcsError::LimitExceeded(_) => "LimitExceededException",
            EcsError::Conflict { .. } => "ConflictException",
            EcsError::UnsupportedFeature(_) => "UnsupportedFeatureException",
            EcsError::Server(_) => "ServerException",
        }
    }

    /// Shorthand for `InvalidParameter`.
    pub fn invalid(message: impl Into<String>) -> EcsError {
        EcsError::InvalidParameter(message.into())
    }

    /// Shorthand for `Client`.
    pub fn client(message: impl Into<String>) -> EcsError {
        EcsError::Client(message.into())
    }
}

impl From<EcsError> for ApiError {
    fn from(e: EcsError) -> ApiError {
        let status = if matches!(e, EcsError::Server(_)) {
            500
        } else {
            400
        };
        let extra = match &e {
            EcsError::Conflict { resource_ids, .. } => {
                let mut m = serde_json::Map::new();
                m.insert("resourceIds".into(), resource_ids.clone().into());
                Some(m)
            }
            _ => None,
        };
        ApiError {
            status,
            code: e.code(),
            message: e.to_string(),
            extra,
        }
    }
}

/// Application Auto Scaling's exceptions (`AnyScaleFrontendService`), as its model names them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AutoScalingError {
    /// Bad input, or a reference to something that cannot be scaled (`ValidationException`).
    #[error("{0}")]
    Validation(String),
    /// The named target, policy or scheduled action does not exist (`ObjectNotFoundException`).
    #[error("{0}")]
    ObjectNotFound(String),
    /// A tagged resource does not exist (`ResourceNotFoundException`).
    #[error("{0}")]
    ResourceNotFound(String),
    /// A paging token that this server did not issue for this request
    /// (`InvalidNextTokenException`).
    #[error("{0}")]
    InvalidNextToken(String),
    /// A quota was reached (`LimitExceededException`).
    #[error("{0}")]
    LimitExceeded(String),
    /// Too many tags on one resource (`TooManyTagsException`).
    #[error("{0}")]
    TooManyTags(String),
    /// Internal fault (`InternalServiceException`).
    #[error("{0}")]
    Internal(String),
}

impl AutoScalingError {
    /// The exception name.
    pub fn code(&self) -> &'static str {
        match self {
            AutoScalingError::Validation(_) => "ValidationException",
            AutoScalingError::ObjectNotFound(_) => "ObjectNotFoundException",
            AutoScalingError::ResourceNotFound(_) => "ResourceNotFoundException",
            AutoScalingError::InvalidNextToken(_) => "InvalidNextTokenException",
            AutoScalingError::LimitExceeded(_) => "LimitExceededException",
            AutoScalingError::TooManyTags(_) => "TooManyTagsException",
            AutoScalingError::Internal(_) => "InternalServiceException",
        }
    }

    /// Shorthand for `Validation`.
    pub fn validation(message: impl Into<String>) -> AutoScalingError {
        AutoScalingError::Validation(message.into())
    }
}

impl From<AutoScalingError> for ApiError {
    fn from(e: AutoScalingError) -> ApiError {
        let status = if matches!(e, AutoScalingError::Internal(_)) {
            500
        } else {
            400
        };
        ApiError {
            status,
            code: e.code(),
            message: e.to_string(),
            extra: None,
        }
    }
}

/// Secrets Manager's exceptions, as its model names them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SecretsManagerError {
    /// The secret (or the version asked for) does not exist (`ResourceNotFoundException`).
    #[error("{0}")]
    ResourceNotFound(String),
    /// A secret of that name, or a version of that id, already exists
    /// (`ResourceExistsException`).
    #[error("{0}")]
    ResourceExists(String),
    /// A parameter value is not valid (`InvalidParameterException`).
    #[error("{0}")]
    InvalidParameter(String),
    /// The request is not valid for the secret's state, e.g. it is scheduled for deletion
    /// (`InvalidRequestException`).
    #[error("{0}")]
    InvalidRequest(String),
    /// A paging token that this server did not issue for this request
    /// (`InvalidNextTokenException`).
    #[error("{0}")]
    InvalidNextToken(String),
    /// A quota was reached (`LimitExceededException`).
    #[error("{0}")]
    LimitExceeded(String),
    /// Internal fault (`InternalServiceError`).
    #[error("{0}")]
    Internal(String),
}

impl SecretsManagerError {
    /// AWS's text for a secret that does not exist.
    pub const NOT_FOUND: &'static str = "Secrets Manager can't find the specified secret.";

    /// The exception name.
    pub fn code(&self) -> &'static str {
        match self {
            SecretsManagerError::ResourceNotFound(_) => "ResourceNotFoundException",
            SecretsManagerError::ResourceExists(_) => "ResourceExistsException",
            SecretsManagerError::InvalidParameter(_) => "InvalidParameterException",
            SecretsManagerError::InvalidRequest(_) => "InvalidRequestException",
            SecretsManagerError::InvalidNextToken(_) => "InvalidNextTokenException",
            SecretsManagerError::LimitExceeded(_) => "LimitExceededException",
            SecretsManagerError::Internal(_) => "InternalServiceError",
        }
    }

    /// `ResourceNotFoundException` with AWS's text.
    pub fn not_found() -> SecretsManagerError {
        SecretsManagerError::ResourceNotFound(Self::NOT_FOUND.into())
    }

    /// Shorthand for `InvalidParameter`.
    pub fn invalid(message: impl Into<String>) -> SecretsManagerError {
        SecretsManagerError::InvalidParameter(message.into())
    }
}

impl From<SecretsManagerError> for ApiError {
    fn from(e: SecretsManagerError) -> ApiError {
        let status = if matches!(e, SecretsManagerError::Internal(_)) {
            500
        } else {
            400
        };
        ApiError {
            status,
            code: e.code(),
            message: e.to_string(),
            extra: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_aws_shaped() {
        let e: ApiError = EcsError::ClusterNotFound.into();
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["__type"], "ClusterNotFoundException");
        assert_eq!(v["message"], "Cluster not found.");
        assert_eq!(e.status, 400);
        let e: ApiError = EcsError::Server("boom".into()).into();
        assert_eq!(e.status, 500);
    }

    #[test]
    fn conflict_carries_resource_ids() {
        let e: ApiError = EcsError::Conflict {
            message: "x".into(),
            resource_ids: vec!["a".into()],
        }
        .into();
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["resourceIds"][0], "a");
    }
}
