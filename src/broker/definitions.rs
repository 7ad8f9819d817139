//! Durable definitions: durable exchanges, queues and the bindings between durable ends,
//! kept in `definitions.toml` in the data dir. The file's first line carries a CRC32 of the
//! rest; it is replaced atomically (write temp, fsync, rename, fsync dir), so a crash
//! leaves the old or the new file, never a mix.

use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub const FILE: &str = "definitions.toml";
const CRC_PREFIX: &str = "# crc32=";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Definitions {
    /// Next id for a queue's log directory.
    pub next_queue_id: u64,
    #[serde(default)]
    pub exchanges: Vec<ExchangeDef>,
    #[serde(default)]
    pub queues: Vec<QueueDef>,
    #[serde(default)]
    pub bindings: Vec<BindingDef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeDef {
    pub name: String,
    pub kind: String,
    pub auto_delete: bool,
    pub internal: bool,
    /// The arguments table, AMQP-encoded, as hex.
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueDef {
    pub name: String,
    pub id: u64,
    pub auto_delete: bool,
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingDef {
    pub source: String,
    pub destination: String,
    /// "queue" or "exchange".
    pub destination_type: String,
    pub routing_key: String,
    pub arguments: String,
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Seals a file body with its CRC line (`# crc32=XXXXXXXX`), so a torn or edited file is
/// noticed on load. Used for `definitions.toml` and `access.json`.
pub fn seal(body: &str) -> String {
    format!(
        "{CRC_PREFIX}{:08x}\n{body}",
        crc32fast::hash(body.as_bytes())
    )
}

/// The body of a sealed file, if its CRC line is there and matches.
pub fn unseal(text: &str) -> Result<&str, String> {
    let (first, rest) = text.split_once('\n').ok_or("file has no CRC line")?;
    let crc_hex = first
        .strip_prefix(CRC_PREFIX)
        .ok_or("file has no CRC line")?;
    let crc = u32::from_str_radix(crc_hex.trim(), 16).map_err(|_| "bad CRC line")?;
    if crc32fast::hash(rest.as_bytes()) != crc {
        return Err("file fails its CRC".into());
    }
    Ok(rest)
}

/// Parses a definitions file's text; errors name what is wrong.
pub fn parse(text: &str) -> Result<Definitions, String> {
    let body = unseal(text).map_err(|e| format!("definitions {e}"))?;
    toml::from_str(body).map_err(|e| format!("definitions file: {e}"))
}

/// Loads the definitions; a missing file means none.
pub fn load(dir: &Path) -> io::Result<Definitions> {
    match std::fs::read_to_string(dir.join(FILE)) {
        Ok(text) => parse(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Definitions::default()),
        Err(e) => Err(e),
    }
}

/// Renders the definitions file's text (CRC line and TOML): CPU work only, so the model
/// can do it under its lock and leave the writing (`write_rendered`) for after.
pub fn render(defs: &Definitions) -> io::Result<String> {
    let body = toml::to_string(defs).map_err(io::Error::other)?;
    Ok(seal(&body))
}

/// Replaces the file `name` in `dir` with `text` atomically and durably: temporary file,
/// fsync, rename, directory fsync.
pub fn write_rendered(dir: &Path, name: &str, text: &str) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()
}

/// Replaces the definitions file atomically and durably.
pub fn store(dir: &Path, defs: &Definitions) -> io::Result<()> {
    write_rendered(dir, FILE, &render(defs)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_crc() {
        let dir = tempfile::tempdir().unwrap();
        let defs = Definitions {
            next_queue_id: 3,
            queues: vec![QueueDef {
                name: "orders \"eu\"".into(),
                id: 2,
                auto_delete: false,
                arguments: to_hex(&[0, 0, 0, 0]),
            }],
            ..Default::default()
        };
        store(dir.path(), &defs).unwrap();
        assert_eq!(load(dir.path()).unwrap(), defs);
        let path = dir.path().join(FILE);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("orders", "ORDERS");
        std::fs::write(&path, text).unwrap();
        assert!(load(dir.path()).is_err());
        assert_eq!(from_hex("00ff"), Some(vec![0, 255]));
        assert_eq!(from_hex("0"), None);
    }
}
