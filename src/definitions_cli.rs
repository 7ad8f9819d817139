//! `warren definitions export|import FILE`. With the broker stopped they work on its data
//! dir directly (holding the data dir's lock); with it running (the lock is held) they go
//! through its management API (`--http`, as `--api-user`), as RabbitMQ's
//! `rabbitmqadmin export|import` do. Either way an import is all or nothing.

use std::io;
use std::path::Path;

use crate::admin_client;
use crate::broker::definitions_import;
use crate::config::{ApiLogin, Config, DefinitionsAction};

/// Runs the command; `Ok` is the line to print, `Err` the reason it failed.
pub fn run(config: &Config, action: DefinitionsAction) -> Result<String, String> {
    if !config.data_dir.is_dir() {
        // A mistyped --data-dir must not export an empty broker or start a new one.
        return Err(format!(
            "data dir {} does not exist",
            config.data_dir.display()
        ));
    }
    match crate::data_lock::lock(&config.data_dir) {
        Ok(_lock) => offline(config, action),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => online(config, action),
        Err(e) => Err(e.to_string()),
    }
}

fn offline(config: &Config, action: DefinitionsAction) -> Result<String, String> {
    let broker = crate::server::open_offline(config).map_err(|e| e.to_string())?;
    match action {
        DefinitionsAction::Export { file, .. } => {
            write_out(&file, definitions_import::export_json(&broker).as_bytes())?;
            Ok(format!("exported definitions to {}", file.display()))
        }
        DefinitionsAction::Import { file, .. } => {
            let bytes = read_in(&file)?;
            let summary = definitions_import::import_json(&broker, &bytes)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            broker.commit().flush().map_err(|e| e.to_string())?;
            Ok(format!("imported {}: {summary}", file.display()))
        }
    }
}

fn online(config: &Config, action: DefinitionsAction) -> Result<String, String> {
    let Some(addr) = config.http else {
        return Err(format!(
            "data dir {} is in use by a running broker, and --http is off: no way to reach it",
            config.data_dir.display()
        ));
    };
    let login = |api: &ApiLogin| (api.api_user.clone(), api.api_pass.clone());
    let call = |method, body: Option<&[u8]>, (user, pass): (String, String)| {
        admin_client::request(addr, method, "/api/definitions", (&user, &pass), body)
            .map_err(|e| format!("management API at {addr}: {e}"))
    };
    let refused = |status: u16, body: &[u8]| {
        let reason = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
        format!("management API at {addr} answered {status}: {reason}")
    };
    match action {
        DefinitionsAction::Export { file, api } => {
            let (status, body) = call("GET", None, login(&api))?;
            if status != 200 {
                return Err(refused(status, &body));
            }
            write_out(&file, &body)?;
            Ok(format!(
                "exported definitions to {} (from the running broker at {addr})",
                file.display()
            ))
        }
        DefinitionsAction::Import { file, api } => {
            let bytes = read_in(&file)?;
            let (status, body) = call("POST", Some(&bytes), login(&api))?;
            if !(200..300).contains(&status) {
                return Err(format!("{}: {}", file.display(), refused(status, &body)));
            }
            Ok(format!(
                "imported {} into the running broker at {addr}",
                file.display()
            ))
        }
    }
}

fn read_in(file: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))
}

/// Writes `bytes` to `file`, or to stdout for "-".
fn write_out(file: &Path, bytes: &[u8]) -> Result<(), String> {
    if file.as_os_str() == "-" {
        use std::io::Write;
        let mut out = io::stdout().lock();
        return out
            .write_all(bytes)
            .and_then(|_| out.write_all(b"\n"))
            .map_err(|e| e.to_string());
    }
    let mut text = bytes.to_vec();
    text.push(b'\n');
    std::fs::write(file, text).map_err(|e| format!("{}: {e}", file.display()))
}
