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
//! stored messages at recovery, so it survives a restart with them; an exchange's cache is
//! in memory (the plugin's default `x-cache-persistence: memory`).

use std::collections::{HashMap, VecDeque};

use amq_protocol_types::{AMQPValue, FieldTable};

use super::error::BrokerError;
use crate::protocol::{properties, table};

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
        match table::get_str(args, "x-cache-persistence") {
            None if !t.contains_key("x-cache-persistence") => {}
            Some("memory") | Some("disk") => {}
            _ => {
                return refuse(
                    "Invalid argument, 'x-cache-persistence' must be either 'disk' or 'memory'",
                )
            }
        }
        Ok(DedupCache {
            size: size.min(usize::MAX as u64) as usize,
            ttl,
            until: HashMap::new(),
            order: VecDeque::new(),
        })
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
        if self.until.insert(key.clone(), until).is_none() {
            self.order.push_back(key);
        }
        while self.until.len() > self.size {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.until.remove(&oldest);
        }
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
