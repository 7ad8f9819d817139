//! The `warren` broker binary.

use clap::Parser;
use warren::config::{Cli, Config};
use warren::server::Server;

fn main() -> std::process::ExitCode {
    let config = match Config::from_cli(Cli::parse()) {
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
                eprintln!("warren: cannot start: {e}");
                return std::process::ExitCode::from(1);
            }
        };
        let ctx = server.ctx.clone();
        tokio::select! {
            _ = server.run() => {}
            _ = tokio::signal::ctrl_c() => {
                eprintln!("warren: shutting down");
                ctx.broker.lock().expect("broker").shutdown();
            }
        }
        std::process::ExitCode::SUCCESS
    })
}
