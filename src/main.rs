//! The `ccwatch` binary: parse the CLI, set up tracing, load config, run the
//! chosen command and map any error to a one-line message and exit code 1.

use ccwatch::app::{self, ReplayOptions};
use ccwatch::cli::{Cli, Command, LogFormat};
use ccwatch::config::Config;
use clap::Parser;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn init_tracing(filter: &str, format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::CheckConfig { file } => {
            Config::load(&file)?;
            println!("{}: ok", file.display());
            Ok(())
        }
        Command::Generate(args) => {
            let stats =
                tokio::task::spawn_blocking(move || ccwatch::generate::generate(&args.out, args.events, args.seed))
                    .await??;
            eprintln!("{stats}");
            Ok(())
        }
        Command::Replay(args) => {
            let cfg = match &args.config {
                Some(p) => Config::load(p)?,
                None => Config::default(),
            };
            let opts = ReplayOptions {
                paths: args.paths,
                inventory: args.inventory,
                since: args.since,
                until: args.until,
                rejects: args.rejects,
                output: args.output,
                format: args.format,
                progress: !args.no_progress,
            };
            let cancel = Arc::new(AtomicBool::new(false));
            let flag = cancel.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    tracing::warn!("Interrupted; closing open alerts and flushing output.");
                    flag.store(true, Ordering::Relaxed);
                }
            });
            let summary = tokio::task::spawn_blocking(move || app::replay(&opts, &cfg, cancel)).await??;
            eprint!("{}", summary.render());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log, cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ccwatch: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ccwatch: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
