//! The `warren` broker binary.

use clap::Parser;
use std::process::ExitCode;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use warren::config::{Cli, ClusterAction, Command, Config, DefinitionsAction};
use warren::server::Server;

/// Logs to stderr, filtered by `RUST_LOG` if set, else by `--log-level`: a level
/// (`info`) or `target=level` directives (`warren=debug,info`). `Targets` rather than
/// `EnvFilter`: the same directives without a regex engine in the broker's memory.
fn init_logging(level: &str) -> Result<(), String> {
    let directives = match std::env::var("RUST_LOG") {
        Ok(d) if !d.is_empty() => d,
        _ => level.to_owned(),
    };
    // openraft narrates every vote and failed append at info/warn; the cluster logs what
    // an operator needs itself (leaders, unreachable peers, a group stopped), so openraft
    // is quiet unless asked for by name.
    let directives = match directives.contains("openraft") {
        true => directives,
        false => format!("{directives},openraft=off"),
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

/// `warren definitions export|import FILE` (definitions_cli.rs). Exit 0 done, 1 refused
/// or failed.
fn definitions_command(config: &Config, action: DefinitionsAction) -> ExitCode {
    match warren::definitions_cli::run(config, action) {
        Ok(done) => {
            eprintln!("warren: {done}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warren: {e}");
            ExitCode::from(1)
        }
    }
}

/// `warren cluster status|join|leave|rebalance` (cluster_cli.rs). Exit 0 done, 1 refused or the
/// node unreachable.
fn cluster_command(config: &Config, action: ClusterAction) -> ExitCode {
    match warren::cluster_cli::run(config, action) {
        Ok(out) => {
            use std::io::Write;
            // A closed pipe (`| head`) is not a failure of the command.
            let _ = writeln!(std::io::stdout(), "{}", out.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warren: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let command = cli.command.take();
    let config = match Config::from_cli(cli).and_then(|c| {
        init_logging(&c.log_level)?;
        Ok(c)
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warren: {e}");
            return ExitCode::from(2);
        }
    };
    match command {
        Some(Command::Definitions { action }) => return definitions_command(&config, action),
        Some(Command::Cluster { action }) => return cluster_command(&config, action),
        None => {}
    }
    // One broker per data dir; held until the process exits.
    let _lock = match warren::data_lock::lock(&config.data_dir) {
        Ok(lock) => lock,
        Err(e) => {
            eprintln!("warren: cannot start: {e}");
            return ExitCode::from(1);
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
                return ExitCode::from(1);
            }
        };
        server.run_until(termination()).await;
        ExitCode::SUCCESS
    })
}
