//! Message deduplication, compatible with the rabbitmq-message-deduplication plugin:
//!
//! - an exchange of type `x-message-deduplication` (it routes as fanout) drops a message
//!   whose `x-deduplication-header` value it has seen within `x-cache-ttl` ms (exchange
//!   argument, or the message's own `x-cache-ttl` header); its cache holds at most
//!   `x-cache-size` entries, the oldest making room for new ones;
//! - a queue declared with `x-message-deduplication: true` does not take a message whose
//!   `x-deduplication-header` value is carried by a message still in it (ready or unacked).
//!
//! Values are compared as encoded (type and bytes). A queue's set is rebuilt from its
//! stored messages at recovery, so it survives a restart with them. An exchange's cache is
//! in memory, or with `x-cache-persistence: disk` also in a file of the vhost's `dedup/`
//! directory, rewritten (temp file, rename) by the server's upkeep when it changed and
//! read back at start: a crash loses at most the last upkeep period's entries.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::{Path, PathBuf};

use amq_protocol_types::{AMQPValue, FieldTable};

use super::error::BrokerError;
use crate::protocol::{properties, table};

/// Where the cache of exchange `name` of the vhost in `vhost_dir` is kept on disk.
pub fn cache_path(vhost_dir: &Path, name: &str) -> PathBuf {
    let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
    vhost_dir.join("dedup").join(format!("{hex}.cache"))
}

/// Writes cache files (temp file, rename) and removes those of deleted exchanges.
pub fn write_cache_files(
    writes: Vec<(PathBuf, Vec<u8>)>,
    removals: Vec<PathBuf>,
) -> io::Result<()> {
    for (path, bytes) in writes {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("cache.tmp");
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, &path)?;
    }
    for path in removals {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// The exchange type the plugin registers.
pub const DEDUP_TYPE: &str = "x-message-deduplication";
/// The header whose value identifies a message.
const HEADER: &str = "x-deduplication-header";

/// The `x-deduplication-header` value of a content header (encoded, type tag included).
pub fn dedup_key(header: &[u8]) -> Option<Vec<u8>> {
    if properties::flags(header)? & (1 << 13) == 0 {
        return None; // No headers table: the common case costs one flag test.
    }
    let headers = properties::decode(header).ok()?.headers?;
    table::raw_value(headers, HEADER).map(<[u8]>::to_vec)
}

/// An integer argument as the plugin reads it: an integer type, or a string of digits.
fn positive(v: Option<&AMQPValue>) -> Option<Option<u64>> {
    let Some(v) = v else {
        return Some(None);
    };
    let n = match v {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.parse().ok()?,
        v => table::int_value(v)?,
    };
    (n > 0).then_some(Some(n as u64))
}

/// The cache of a deduplicating exchange.
#[derive(Debug)]
pub struct DedupCache {
    size: usize,
    ttl: Option<u64>,
    /// Key -> when it stops counting (u64::MAX: never).
    until: HashMap<Vec<u8>, u64>,
    /// Keys in insertion order, for making room.
    order: VecDeque<Vec<u8>>,
    /// `x-cache-persistence: disk`.
    pub on_disk: bool,
    /// Changed since last written.
    dirty: bool,
}

impl DedupCache {
    /// A cache from the exchange's arguments, refused as the plugin refuses them.
    pub fn from_args(args: &FieldTable) -> Result<DedupCache, BrokerError> {
        let t = args.inner();
        let refuse = |what: &str| Err(BrokerError::PreconditionFailed(what.into()));
        let Some(Some(size)) = positive(t.get("x-cache-size")) else {
            return refuse(
                "Missing or invalid argument, 'x-cache-size' must be an integer greater than 0",
            );
        };
        let Some(ttl) = positive(t.get("x-cache-ttl")) else {
            return refuse("Invalid argument, 'x-cache-ttl' must be an integer greater than 0");
        };
        let on_disk = match table::get_str(args, "x-cache-persistence") {
            None if !t.contains_key("x-cache-persistence") => false,
            Some("memory") => false,
            Some("disk") => true,
            _ => {
                return refuse(
                    "Invalid argument, 'x-cache-persistence' must be either 'disk' or 'memory'",
                )
            }
        };
        Ok(DedupCache {
            size: size.min(usize::MAX as u64) as usize,
            ttl,
            until: HashMap::new(),
            order: VecDeque::new(),
            on_disk,
            dirty: false,
        })
    }

    /// The cache file's contents if it changed since last taken: per entry, u32 (BE) key
    /// length, key, u64 (BE) expiry; a CRC32 of all that at the end.
    pub fn take_snapshot(&mut self) -> Option<Vec<u8>> {
        if !self.on_disk || !self.dirty {
            return None;
        }
        self.dirty = false;
        let mut out = Vec::new();
        for key in &self.order {
            if let Some(until) = self.until.get(key) {
                out.extend_from_slice(&(key.len() as u32).to_be_bytes());
                out.extend_from_slice(key);
                out.extend_from_slice(&until.to_be_bytes());
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        Some(out)
    }

    /// Loads a cache file written by `take_snapshot`; false (and nothing loaded) if it is
    /// damaged. Entries expired by `now` are skipped.
    pub fn load(&mut self, bytes: &[u8], now: u64) -> bool {
        let Some((body, crc)) = bytes.split_last_chunk::<4>() else {
            return false;
        };
        if crc32fast::hash(body) != u32::from_be_bytes(*crc) {
            return false;
        }
        let mut entries = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                return false;
            };
            let len = u32::from_be_bytes(*len) as usize;
            if tail.len() < len + 8 {
                return false;
            }
            let until = u64::from_be_bytes(tail[len..len + 8].try_into().expect("8 bytes"));
            entries.push((tail[..len].to_vec(), until));
            rest = &tail[len + 8..];
        }
        for (key, until) in entries.into_iter().filter(|&(_, u)| u > now) {
            if self.until.insert(key.clone(), until).is_none() {
                self.order.push_back(key);
            }
        }
        self.make_room();
        true
    }

    /// Drops the oldest entries beyond the cache's size.
    fn make_room(&mut self) {
        while self.until.len() > self.size {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.until.remove(&oldest);
        }
    }

    /// True if a message with this content header is a duplicate; otherwise remembers it.
    /// A message without the header is never a duplicate.
    pub fn seen(&mut self, header: &[u8], now: u64) -> bool {
        let Some(key) = dedup_key(header) else {
            return false;
        };
        if self.until.get(&key).is_some_and(|&until| until > now) {
            return true;
        }
        let own_ttl = properties::decode(header)
            .ok()
            .and_then(|h| table::decode(h.headers?).ok())
            .and_then(|t| positive(t.inner().get("x-cache-ttl")).flatten());
        let until = own_ttl.or(self.ttl).map_or(u64::MAX, |ttl| now + ttl);
        self.dirty = true;
        if self.until.insert(key.clone(), until).is_none() {
            self.order.push_back(key);
        }
        self.make_room();
        // Keys re-inserted after expiry leave stale order entries: keep the list bounded.
        if self.order.len() > 2 * self.size.max(1) {
            let until = &self.until;
            self.order.retain(|k| until.contains_key(k));
        }
        false
    }
}

/// The values carried by the messages of a deduplicating queue, with how many carry each.
#[derive(Debug, Default)]
pub struct QueueDedup {
    present: HashMap<Vec<u8>, u32>,
}

impl QueueDedup {
    /// True if a message with this key is in the queue.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.present.contains_key(key)
    }

    pub fn add(&mut self, key: Vec<u8>) {
        *self.present.entry(key).or_default() += 1;
    }

    /// A message carrying `header` left the queue.
    pub fn remove(&mut self, header: &[u8]) {
        let Some(key) = dedup_key(header) else {
            return;
        };
        if let Some(n) = self.present.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.present.remove(&key);
            }
        }
    }

    pub fn clear(&mut self) {
        self.present.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_with_key(key: &str) -> Vec<u8> {
        let mut t = FieldTable::default();
        t.insert(HEADER.into(), AMQPValue::LongString(key.into()));
        let raw = super::super::dead_letter::encode_table(&t);
        let mut h = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        h.extend_from_slice(&(1u16 << 13).to_be_bytes());
        h.extend_from_slice(&raw);
        h
    }

    #[test]
    fn disk_snapshot_round_trips_and_damage_is_refused() {
        let mut args = FieldTable::default();
        args.insert("x-cache-size".into(), AMQPValue::LongInt(10));
        args.insert(
            "x-cache-persistence".into(),
            AMQPValue::LongString("disk".into()),
        );
        let mut cache = DedupCache::from_args(&args).unwrap();
        assert!(!cache.seen(&header_with_key("a"), 1_000));
        assert!(cache.seen(&header_with_key("a"), 1_001));
        let snap = cache.take_snapshot().unwrap();
        assert!(cache.take_snapshot().is_none(), "unchanged since");
        let mut again = DedupCache::from_args(&args).unwrap();
        assert!(again.load(&snap, 2_000));
        assert!(again.seen(&header_with_key("a"), 2_000));
        let mut damaged = snap.clone();
        damaged[0] ^= 1;
        assert!(!DedupCache::from_args(&args).unwrap().load(&damaged, 0));
    }
}
