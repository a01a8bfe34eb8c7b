//! `X-Amz-Target` routing: which service and operation a request is for.

use crate::ApiError;
use crate::generated::{application_autoscaling, cloudwatch, ecs, logs, secretsmanager};

/// The AWS services served on Berth's one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// Amazon ECS (`AmazonEC2ContainerServiceV20141113`).
    Ecs,
    /// CloudWatch Logs (`Logs_20140328`).
    Logs,
    /// Application Auto Scaling (`AnyScaleFrontendService`).
    ApplicationAutoScaling,
    /// CloudWatch (`GraniteServiceVersion20100801`, AWS JSON 1.0 with query-compatible
    /// errors: what botocore sends, preferring `json` over `smithy-rpc-v2-cbor`).
    CloudWatch,
    /// AWS Secrets Manager (`secretsmanager`; a subset, see `berth_core::secretsmanager`).
    SecretsManager,
}

impl Service {
    /// Every service, in routing order.
    pub const ALL: [Service; 5] = [
        Service::Ecs,
        Service::Logs,
        Service::ApplicationAutoScaling,
        Service::CloudWatch,
        Service::SecretsManager,
    ];

    /// The `X-Amz-Target` prefix.
    pub fn target_prefix(self) -> &'static str {
        match self {
            Service::Ecs => ecs::TARGET_PREFIX,
            Service::Logs => logs::TARGET_PREFIX,
            Service::ApplicationAutoScaling => application_autoscaling::TARGET_PREFIX,
            Service::CloudWatch => cloudwatch::TARGET_PREFIX,
            Service::SecretsManager => secretsmanager::TARGET_PREFIX,
        }
    }

    /// The service name in a SigV4 credential scope.
    pub fn signing_name(self) -> &'static str {
        match self {
            Service::Ecs => "ecs",
            Service::Logs => "logs",
            Service::ApplicationAutoScaling => "application-autoscaling",
            Service::CloudWatch => "monitoring",
            Service::SecretsManager => "secretsmanager",
        }
    }

    /// Operations the service model defines: (name, input shape, output shape).
    pub fn operations(
        self,
    ) -> &'static [(&'static str, Option<&'static str>, Option<&'static str>)] {
        match self {
            Service::Ecs => ecs::OPERATIONS,
            Service::Logs => logs::OPERATIONS,
            Service::ApplicationAutoScaling => application_autoscaling::OPERATIONS,
            Service::CloudWatch => cloudwatch::OPERATIONS,
            Service::SecretsManager => secretsmanager::OPERATIONS,
        }
    }

    /// The media type of requests and responses (`application/x-amz-json-1.0` or `-1.1`).
    pub fn content_type(self) -> &'static str {
        match self {
            Service::CloudWatch => "application/x-amz-json-1.0",
            _ => "application/x-amz-json-1.1",
        }
    }
}

/// A parsed `X-Amz-Target` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The service the prefix names.
    pub service: Service,
    /// The operation, one of the model's (so handlers can match on `&str` safely).
    pub operation: &'static str,
}

impl Target {
    /// Parse `Prefix.Operation`. Unknown prefixes and operations are AWS's
    /// `UnknownOperationException`.
    pub fn parse(header: Option<&str>) -> Result<Target, ApiError> {
        let Some(header) = header else {
            return Err(ApiError::unknown_operation(
                "Missing X-Amz-Target header: expected <ServicePrefix>.<Operation>",
            ));
        };
        let (prefix, op) = header.split_once('.').ok_or_else(|| {
            ApiError::unknown_operation(format!(
                "X-Amz-Target '{}' is not of the form <ServicePrefix>.<Operation>",
                truncate(header)
            ))
        })?;
        let service = Service::ALL
            .into_iter()
            .find(|s| s.target_prefix() == prefix)
            .ok_or_else(|| {
                ApiError::unknown_operation(format!(
                    "Unknown service prefix '{}' in X-Amz-Target; Berth serves {}",
                    truncate(prefix),
                    Service::ALL.map(Service::target_prefix).join(", ")
                ))
            })?;
        let operation = service
            .operations()
            .iter()
            .find(|(name, _, _)| *name == op)
            .map(|(name, _, _)| *name)
            .ok_or_else(|| {
                ApiError::unknown_operation(format!(
                    "Unknown operation '{}' for {prefix}",
                    truncate(op)
                ))
            })?;
        Ok(Target { service, operation })
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(128).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_targets() {
        let t = Target::parse(Some("AmazonEC2ContainerServiceV20141113.ListClusters")).unwrap();
        assert_eq!(t.service, Service::Ecs);
        assert_eq!(t.operation, "ListClusters");
        let t = Target::parse(Some("Logs_20140328.PutLogEvents")).unwrap();
        assert_eq!(t.service, Service::Logs);
        let t = Target::parse(Some("AnyScaleFrontendService.DescribeScalableTargets")).unwrap();
        assert_eq!(t.service, Service::ApplicationAutoScaling);
        let t = Target::parse(Some("GraniteServiceVersion20100801.GetMetricStatistics")).unwrap();
        assert_eq!(t.service, Service::CloudWatch);
        assert_eq!(t.service.signing_name(), "monitoring");
        let t = Target::parse(Some("secretsmanager.GetSecretValue")).unwrap();
        assert_eq!(t.service, Service::SecretsManager);
        assert_eq!(t.service.signing_name(), "secretsmanager");
    }

    #[test]
    fn refuses_unknown_targets() {
        for bad in [
            None,
            Some(""),
            Some("NoDot"),
            Some("Bogus.ListClusters"),
            Some("AmazonEC2ContainerServiceV20141113.Nope"),
            Some("AmazonEC2ContainerServiceV20141113."),
        ] {
            let e = Target::parse(bad).unwrap_err();
            assert_eq!(e.code, "UnknownOperationException", "{bad:?}");
            assert_eq!(e.status, 400);
        }
    }
}
