//! THE MODEL: vhosts with their exchanges, queues, bindings, consumers and routing.
//! Synchronous and socket-free: it never sees a frame or a socket, and returns its own
//! errors (`BrokerError`), which `connection` maps to AMQP reply codes.
//!
//! Everything reaches it through `BrokerHandle` / `VHostHandle`, which own the locking
//! (handle.rs). Each queue's messages live in its storage log; the heap holds per-message
//! state only for delivered, unacked messages. Durable definitions are persisted per vhost
//! in `definitions.toml`.

pub mod access;
pub mod access_change;
pub mod access_db;
pub mod admin;
pub mod confirms;
pub mod definitions;
pub mod definitions_import;
pub mod error;
pub mod exchange;
pub mod fast_map;
pub mod flow;
#[doc(hidden)]
pub mod fuzz_broker;
pub mod grants;
pub mod json_args;
pub mod message;
pub mod outbox;
pub mod password;
pub mod policy;
pub mod queue;
pub mod replica_checkout;
pub mod replica_claims;
mod replica_dead_letters;
mod replica_late_grants;
pub mod replica_sac;
pub mod replica_takeover;
pub mod replicated;
pub mod replicated_topology;
pub mod stats;

mod channel;
pub use channel::ChannelMode;
mod dead_letter;
mod declare;
mod dedup;
mod delayed;
mod dispatch;
mod expiry;
mod handle;
mod publish;
pub mod reply_to;
mod stream;
pub mod stream_access;
pub mod stream_convert;
mod timers;
mod tx;
mod vhost;

use std::path::PathBuf;

use warren_storage::LogConfig;

pub use dead_letter::{encode_table, DeathReason};
pub use declare::{BindSpec, ExchangeSpec, QueueInfo, QueueSpec};
pub use dispatch::{ConsumeSpec, GetAnswer, Got};
pub use error::BrokerError;
pub use handle::{vhost_dir, AccessReplication, BrokerHandle, VHostHandle, DEFAULT_VHOST};
#[cfg(test)]
pub(crate) use publish::publish_for_test;
pub use publish::{PublishRequest, Published};
pub use tx::TxRoute;
pub use vhost::{VHost, VHostTotals};

/// Key of a channel: (connection id, channel number).
pub type ChannelKey = (u64, u16);

/// Tuning the model needs.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    pub log: LogConfig,
    pub access: access::AccessConfig,
}

/// Startup summary.
#[derive(Debug, Default)]
pub struct OpenReport {
    pub queues: usize,
    pub messages: u64,
    /// Segment files a power cut left with nothing written, removed (not a problem).
    pub discarded_unwritten: usize,
    pub problems: Vec<String>,
}
