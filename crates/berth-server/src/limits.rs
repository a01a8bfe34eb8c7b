//! Every bound the server enforces, in one place, each with its reason.

/// Largest request body accepted. ECS's biggest requests (RegisterTaskDefinition with ten
/// containers and long environments) stay well under 1 MiB; CloudWatch Logs' PutLogEvents
/// allows a 1 MiB batch plus JSON overhead, so 2 MiB covers every real client.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
