//! The `ccwatch` binary: parse the CLI, set up tracing, load config, run the
//! chosen command and map any error to a one-line message and exit code 1.

use ccwatch::app::{self, ReplayOptions};
use ccwatch::cli::{Cli, Command, LogFormat};
use ccwatch::config::Config;
use clap::Parser;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// mimalloc instead of glibc's allocator: the grant sessions, alert ids and
/// per-record strings of a grant-dense stream spent a third of replay's time
/// in glibc's free lists (malloc_consolidate, unlink_chunk); see
/// BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Logs to stderr, filtered by `--log`, else `$RUST_LOG`, else `warn`. An
/// invalid filter is an error (the caller exits 2), never silently widened.
fn init_tracing(filter: Option<&str>, format: LogFormat) -> Result<(), String> {
    let from_env = std::env::var("RUST_LOG").ok().filter(|s| !s.trim().is_empty());
    let (text, source) = match (filter, &from_env) {
        (Some(f), _) => (f.to_string(), "--log"),
        (None, Some(f)) => (f.clone(), "RUST_LOG"),
        (None, None) => ("warn".to_string(), "default"),
    };
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&text)
        .map_err(|e| format!("invalid {source} filter '{text}': {e}"))?;
    // Colour only on a terminal, and never with NO_COLOR (https://no-color.org).
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = !no_color && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

/// Writes to stderr, ignoring a closed stderr (a pipeline's reader gone).
fn say(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(text.as_bytes());
}

const SHUTDOWN_LIVE: &str = "Shutdown requested: finishing in-flight records, flushing sinks, committing offsets.";

/// Cancels the token on SIGINT or SIGTERM. `run`, `demo` and `replay` all
/// stop through it, so a job runner's SIGTERM ends each as cleanly as Ctrl-C.
fn shutdown_on_signals(what: &'static str) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
        tracing::warn!("{what}");
        t.cancel();
    });
    token
}

/// SIGHUP asks the file sinks to reopen their paths (logrotate's postrotate),
/// instead of ending the process as its default action would.
fn reopen_on_sighup() {
    tokio::spawn(async {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: file sinks reopen their paths before their next write.");
            ccwatch::sink::live::request_reopen();
        }
    });
}

fn load_or_default(path: &Option<std::path::PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    })
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::CheckConfig { file } => {
            let cfg = Config::load(&file)?;
            let enrichment = ccwatch::enrich::Enrichment::load(&cfg.enrichment)?;
            println!("{}: ok (enrichment: {})", file.display(), enrichment.describe());
            Ok(())
        }
        Command::Generate(args) => {
            let stats = tokio::task::spawn_blocking(move || match args.activity {
                true => ccwatch::generate::generate_activity(&args.out, args.events, args.seed),
                false => ccwatch::generate::generate(&args.out, args.events, args.seed),
            })
            .await??;
            eprintln!("{stats}");
            Ok(())
        }
        Command::Run { config } => {
            let cfg = Config::load(&config)?;
            reopen_on_sighup();
            let metrics = std::sync::Arc::new(ccwatch::telemetry::Metrics::new());
            let report = app::live::run(&cfg, shutdown_on_signals(SHUTDOWN_LIVE), metrics).await?;
            eprintln!(
                "ccwatch run: stopped; {} messages consumed, {} rejected, {} alert lines delivered, offsets committed: {}",
                report.messages, report.rejected, report.alert_lines, report.offsets_committed
            );
            Ok(())
        }
        Command::Produce(args) => {
            // Bulk loading: large batches. A config file's producer_properties override these.
            let defaults =
                [("linger.ms", "20"), ("batch.num.messages", "10000"), ("queue.buffering.max.messages", "1000000")];
            let client = match (&args.config, &args.brokers) {
                (Some(p), _) => {
                    let cfg = Config::load(p)?;
                    let k = cfg.live.kafka.ok_or_else(|| anyhow::anyhow!("{} has no [kafka] section", p.display()))?;
                    ccwatch::source::kafka::producer_config(&k, &defaults)
                }
                (None, Some(b)) => {
                    let mut c = rdkafka::ClientConfig::new();
                    c.set("bootstrap.servers", b);
                    for (key, v) in defaults {
                        c.set(key, v);
                    }
                    c
                }
                (None, None) => anyhow::bail!("give --brokers or --config"),
            };
            app::produce::ensure_topic(&client, &args.topic, args.partitions).await?;
            let producer: rdkafka::producer::FutureProducer = client.create()?;
            let units =
                tokio::task::spawn_blocking(move || app::produce::collect(&args.paths, args.keep_order)).await??;
            let n = app::produce::send(&producer, &args.topic, &units).await?;
            eprintln!("ccwatch produce: {n} records sent to {}", args.topic);
            Ok(())
        }
        // Answered in `main` before the runtime starts.
        Command::Completions { .. } | Command::Man => Ok(()),
        Command::Demo(args) => {
            reopen_on_sighup();
            let cfg = load_or_default(&args.config)?;
            let opts = app::demo::DemoOptions {
                samples: args.samples,
                listen: args.listen,
                exit_when_caught_up: args.exit_when_caught_up,
                format: args.format,
            };
            app::demo::demo(&cfg, opts, shutdown_on_signals(SHUTDOWN_LIVE)).await?;
            Ok(())
        }
        Command::Replay(args) => {
            let cfg = load_or_default(&args.config)?;
            let opts = ReplayOptions {
                paths: args.paths,
                inventory: args.inventory,
                since: args.since,
                until: args.until,
                rejects: args.rejects,
                output: args.output,
                format: args.format,
                progress: !args.no_progress,
                mmap: !args.no_mmap,
            };
            let cancel = Arc::new(AtomicBool::new(false));
            let flag = cancel.clone();
            let signalled = shutdown_on_signals("Interrupted; closing open alerts and flushing output.");
            tokio::spawn(async move {
                signalled.cancelled().await;
                flag.store(true, Ordering::Relaxed);
            });
            let summary = tokio::task::spawn_blocking(move || app::replay(&opts, &cfg, cancel)).await??;
            say(&summary.render());
            if let Some(read_errors) = summary.unreadable() {
                anyhow::bail!("no input could be read ({read_errors} read error(s); see the summary)");
            }
            Ok(())
        }
    }
}

/// How long exit waits for background threads after the work is done.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "ccwatch", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        Command::Man => {
            let man = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            return match man.render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    say(&format!("ccwatch: cannot write the man page: {e}\n"));
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    if let Err(e) = init_tracing(cli.log.as_deref(), cli.log_format) {
        say(&format!("ccwatch: {e}\n"));
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ccwatch: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(&format!("ccwatch: {}\n", format!("{e:#}").replace('\n', " ")));
            ExitCode::FAILURE
        }
    };
    // Everything that matters is done (offsets committed, sinks flushed, the
    // summary printed). What may remain are blocking threads tearing down
    // Kafka clients, which wait for a broker that may be gone: give them a
    // moment, never more.
    rt.shutdown_timeout(EXIT_GRACE);
    code
}
