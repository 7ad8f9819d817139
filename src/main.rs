//! The `warren` broker binary.

use clap::Parser;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use warren::config::{Cli, Config};
use warren::server::Server;

/// Logs to stderr, filtered by `RUST_LOG` if set, else by `--log-level`: a level
/// (`info`) or `target=level` directives (`warren=debug,info`). `Targets` rather than
/// `EnvFilter`: the same directives without a regex engine in the broker's memory.
fn init_logging(level: &str) -> Result<(), String> {
    let directives = match std::env::var("RUST_LOG") {
        Ok(d) if !d.is_empty() => d,
        _ => level.to_owned(),
    };
    let filter: Targets = directives
        .parse()
        .map_err(|e| format!("--log-level '{directives}': {e}"))?;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    tracing_subscriber::registry().with(fmt).with(filter).init();
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn termination() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

fn main() -> std::process::ExitCode {
    let config = match Config::from_cli(Cli::parse()).and_then(|c| {
        init_logging(&c.log_level)?;
        Ok(c)
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warren: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let server = match Server::bind(&config).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return std::process::ExitCode::from(1);
            }
        };
        server.run_until(termination()).await;
        std::process::ExitCode::SUCCESS
    })
}
