//! Command-line interface: subcommands and runtime flags (clap derive).
//!
//! Detection settings live in the config file; flags here choose inputs,
//! outputs and the time window of one run.

use crate::event::time::parse_timestamp;
use crate::event::EventTime;
use crate::event::Format;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "ccwatch",
    version,
    about = "Detects Salesforce OAuth client-credentials token grants and scores their risk"
)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax, e.g. `info,ccwatch=debug`); logs go
    /// to stderr. Default: $RUST_LOG, else `warn`. Colour only on a terminal and
    /// never when $NO_COLOR is set.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay archived Salesforce exports (files or directories, plain or .gz) and write alerts.
    Replay(ReplayArgs),
    /// Validate a config file and exit.
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
    },
    /// Write a synthetic archive for benchmarks (logins, audit trail, inventory).
    Generate(GenerateArgs),
    /// Consume login and setup-audit records from Kafka and deliver alerts live.
    Run {
        /// TOML config file with [kafka], [[sinks]] and [metrics] sections.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Load archived files into a Kafka topic, one message per record.
    Produce(ProduceArgs),
    /// The live pipeline on the shipped samples, against an in-process mock Kafka cluster.
    Demo(DemoArgs),
    /// Print a shell completion script to stdout.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Destination topic.
    #[arg(long, value_name = "TOPIC")]
    pub topic: String,
    /// Broker list (host:port,…), when no config file gives [kafka].
    #[arg(long, value_name = "HOSTS", conflicts_with = "config", required_unless_present = "config")]
    pub brokers: Option<String>,
    /// Config file whose [kafka] client settings (bootstrap, TLS, SASL) are used.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Send records in file order instead of event-time order.
    #[arg(long)]
    pub keep_order: bool,
    /// Create the topic with this many partitions if it does not exist.
    #[arg(long, value_name = "N")]
    pub partitions: Option<i32>,
    /// Input files or directories (plain or .gz; JSON lines, JSON documents, ELF CSV).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Detection settings (weights, ranges); its [kafka]/[[sinks]] are replaced by the demo's.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The sample archive to load.
    #[arg(long, value_name = "DIR", default_value = "samples")]
    pub samples: PathBuf,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub listen: std::net::SocketAddr,
    /// Stop once every record is processed instead of waiting for Ctrl-C.
    #[arg(long)]
    pub exit_when_caught_up: bool,
    /// Alert encoding.
    #[arg(long, value_enum, default_value = "native")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Inventory export (User or PermissionSetAssignment query result); repeatable.
    #[arg(long = "inventory", value_name = "FILE")]
    pub inventory: Vec<PathBuf>,
    /// TOML config file (weights, bands, windows, allowed IP ranges).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Ignore logins before this time (audit records before it still build context).
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub since: Option<EventTime>,
    /// Ignore every record after this time.
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub until: Option<EventTime>,
    /// Write rejected records (file, line, reason) as JSON lines here.
    #[arg(long, value_name = "FILE")]
    pub rejects: Option<PathBuf>,
    /// Alert encoding.
    #[arg(long, value_enum, default_value = "native")]
    pub format: Format,
    /// Write alerts here instead of stdout (`-` is stdout).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Never draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Read input and inventory files through a buffer instead of mapping them
    /// into memory (for logs that may be truncated in place while replay reads them).
    #[arg(long)]
    pub no_mmap: bool,
    /// Input files or directories; `-` is standard input (pipes, FIFOs and /dev/stdin work too).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Output directory (created).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Login events to write.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Random seed (the same seed gives the same archive).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// An activity-heavy archive instead: about 40% client-credentials
    /// grants and 60% ApiEvent / ELF RestApi activity (`activity.jsonl`),
    /// over 8 hours, so about 100,000 grant sessions are open at once.
    #[arg(long)]
    pub activity: bool,
}

fn parse_time(s: &str) -> Result<EventTime, String> {
    parse_timestamp(s).ok_or_else(|| format!("{s:?} is not a timestamp (try 2024-07-08T07:26:18Z)"))
}
