//! Generated wire shapes, one module per service. Regenerate with `cargo xtask codegen`;
//! `xtask`'s test `generated_code_is_fresh` fails when they are stale. rustfmt leaves them
//! as generated so that the check is byte-for-byte.

#[rustfmt::skip]
pub mod application_autoscaling;
#[rustfmt::skip]
pub mod cloudwatch;
#[rustfmt::skip]
pub mod ecs;
#[rustfmt::skip]
pub mod logs;
#[rustfmt::skip]
pub mod secretsmanager;
