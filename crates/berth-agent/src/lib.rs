//! The agent: one per host, a container instance of a cluster. It receives the full set of
//! tasks the control plane wants on this instance, drives each one's containers through a
//! runtime to that desired state, and reports what it observes.
//!
//! It must not decide placement or restarts: the server owns `desiredStatus`, the agent owns
//! `lastStatus`.

pub mod agent;
pub mod engine;
pub mod logship;
pub mod plan;
pub mod reports;
pub mod runner;
pub mod runtime;
pub mod usage;
