//! ccwatch: a streaming detector for Salesforce OAuth 2.0 client-credentials
//! token grants.
//!
//! Salesforce's "Disable Client Credentials Flow" control rates an enabled flow
//! High (CVSS 7.0–8.9): one leaked client secret gives persistent, MFA-free
//! access as the app's run-as user. ccwatch reads Salesforce login and Setup
//! Audit Trail records, correlates every client-credentials grant with its
//! source IP and the run-as user's privileges *at the grant's event time*,
//! scores it with named, explained factors, and writes alerts. It then
//! follows each token: API activity (ApiEvent, Bulk API, reports, the
//! EventLogFile API types) is attributed to its grant and scored as data
//! access.
//!
//! # Layout
//!
//! Data flows one way; `app` is the only module that wires stages together.
//!
//! ```text
//! source ──bytes──▶ decode ──NormalizedEvent──▶ correlate ──Observation──▶ score ──Alert──▶ aggregate ──Emit──▶ sink
//! (replay files,   (pure)   (live: logins merged   (pure; setup facts on    (pure)           (pure)              (I/O)
//!  Kafka)                    by event time)         an event-time timeline)
//!    ▲                                                                                                         │
//!    └──────────────── live only: offsets stored (source::ledger) after every sink accepted ──────────────────┘
//! ```
//!
//! - `event`: the contract every stage shares: `NormalizedEvent`,
//!   `Observation`, `Alert`, `Emit` (an alert line to write) and `Format`
//!   (its encoding), plus key normalisation (`event::keys`), time, ids and
//!   IP ranges. Stages import `event` and `config` (and `correlate` reads
//!   `enrich`), never each other.
//! - `decode`: every Salesforce shape → `NormalizedEvent` (logins, audit,
//!   inventory, and post-grant API activity in `decode::activity`); rejects
//!   with reasons.
//! - `correlate`: the setup timeline (privileges, profile IP ranges, flow
//!   set-up, answered as of any event time), IP history and failure windows,
//!   grant sessions (`correlate::sessions`: activity attributed to its grant)
//!   and data access per (user, app) day (`correlate::access`).
//! - `enrich`: offline reference data (Tor exits, IOCs, an ASN database) and
//!   its reloading; like `config`, read by a stage, not a stage itself.
//! - `score`: factors, weights, severity (grant, enablement and data-access
//!   alerts); `score::aggregate` folds repeats into bounded open and closed
//!   alert sets.
//! - `sink`: alert encodings (native, OCSF, ECS) and writers; `sink::live` has
//!   the Kafka topic, file, webhook and dead-letter sinks and their typed
//!   `SinkError` (transient or permanent).
//! - `source`: replay of archived files in event-time order; `source::kafka`
//!   builds the live consumers (lag, stalls, rebalances); `source::intake`
//!   receives and decodes on threads of its own; `source::merge` orders live
//!   logins by event time; `source::ledger` decides which offsets may be
//!   stored and which redelivered messages were already processed. `source`
//!   calls `decode` (the one forward edge: bytes in, `Decoded` out) so that
//!   decoding runs on its reader threads.
//! - `telemetry`: Prometheus metrics on an owned registry, `/metrics`,
//!   `/healthz`, `/readyz`, and `telemetry::events`, the internal-events
//!   catalogue: one type per occurrence writes its log line and its metric.
//! - `app`: wiring, summary, rejects; `app::pipeline` is the pure core composed
//!   (shared by replay and live); `app::live` is `ccwatch run` (build, turn,
//!   shutdown); `app::produce` and `app::demo` load archives into Kafka and
//!   run the embedded demo.
//! - `config` (`config::live`: Kafka, sinks, dead letters, metrics, secrets),
//!   `cli`, `generate` (benchmark archive generator).

pub mod app;
pub mod cli;
pub mod config;
pub mod correlate;
pub mod decode;
pub mod enrich;
pub mod event;
pub mod generate;
pub mod score;
pub mod sink;
pub mod source;
pub mod telemetry;
