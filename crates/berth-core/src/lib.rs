//! Berth's domain: the ECS resources (clusters, task definitions, and later tasks, services
//! and container instances), the rules ECS applies to them, and the state they live in.
//!
//! Everything here is synchronous and deterministic. The core never reads the wall clock,
//! never draws randomness it was not handed, and never does I/O: an operation takes the
//! current state, a request, and a [`state::Ctx`] carrying `now`, the caller and an RNG; it
//! returns a response and leaves the [`state::Mutation`]s the shell must make durable before
//! answering. It knows nothing about HTTP, SQLite or containers.

pub mod agent_protocol;
pub mod agent_token;
pub mod arn;
pub mod autoscaling;
pub mod cloudwatch;
pub mod cluster;
pub mod container_instance;
pub mod ecs;
pub mod metrics;
pub mod pagination;
pub mod placement;
pub mod query;
pub mod secretsmanager;
pub mod service;
pub mod service_deployment;
pub mod service_plan;
pub mod state;
pub mod tags;
pub mod task;
pub mod task_definition;
pub mod varint;

pub use state::{Ctx, Mutation, Partition, PartitionKey, Record, World};
