//! ccwatch: a streaming detector for Salesforce OAuth 2.0 client-credentials
//! token grants.
//!
//! Salesforce's "Disable Client Credentials Flow" control rates an enabled flow
//! High (CVSS 7.0–8.9): one leaked client secret gives persistent, MFA-free
//! access as the app's run-as user. ccwatch reads Salesforce login and Setup
//! Audit Trail records, correlates every client-credentials grant with its
//! source IP and the run-as user's privileges *at the grant's event time*,
//! scores it with named, explained factors, and writes alerts.
//!
//! # Layout
//!
//! Data flows one way; `app` is the only module that knows more than one stage.
//!
//! ```text
//! source ──bytes──▶ decode ──NormalizedEvent──▶ correlate ──Observation──▶ score ──Alert──▶ aggregate ──▶ sink
//! (replay files,   (pure)   (live: event-time   (pure, event time)         (pure)           (pure)        (I/O)
//!  Kafka)                    merge first)
//!    ▲                                                                                                     │
//!    └──────────────── live only: offsets stored after every sink accepted ───────────────────────────────┘
//! ```
//!
//! - `event`: the domain contract (`NormalizedEvent`, `Observation`, `Alert`).
//! - `decode`: every Salesforce shape → `NormalizedEvent`; rejects with reasons.
//! - `correlate`: privileges, IP ranges, IP history, flow set-up, failures.
//! - `score`: factors, weights, severity; `score::aggregate` folds repeats.
//! - `sink`: alert encodings (native, OCSF, ECS) and writers; `sink::live` has
//!   the Kafka topic, file, webhook and dead-letter sinks.
//! - `source`: replay of archived files in event-time order; `source::kafka`
//!   builds the live consumers; `source::merge` orders live records by event
//!   time and decides which offsets may be stored.
//! - `telemetry`: Prometheus metrics on an owned registry, `/metrics`,
//!   `/healthz`, `/readyz`.
//! - `app`: wiring, summary, rejects; `app::pipeline` is the pure core composed
//!   (shared by replay and live); `app::live` is `ccwatch run`; `app::produce`
//!   and `app::demo` load archives into Kafka and run the embedded demo.
//! - `config` (`config::live`: Kafka, sinks, metrics, secrets), `cli`,
//!   `generate` (benchmark archive generator).

pub mod app;
pub mod cli;
pub mod config;
pub mod correlate;
pub mod decode;
pub mod event;
pub mod generate;
pub mod score;
pub mod sink;
pub mod source;
pub mod telemetry;
