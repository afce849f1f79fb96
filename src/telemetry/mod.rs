//! Telemetry: Prometheus metrics on an owned registry (`metrics`) and the
//! HTTP endpoint that serves them with health and readiness (`server`).
//!
//! Every label value comes from a bounded set: record kinds, reject reasons,
//! grant classes, rules, severities, operator-named sinks and topics, and
//! partition numbers. No label ever carries a user, IP, app or org value.

pub mod events;
pub mod metrics;
pub mod server;

pub use metrics::Metrics;
