//! Runtimes: how a container definition becomes something running on this host.

pub mod process;
