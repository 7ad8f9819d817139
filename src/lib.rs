//! Warren: an AMQP 0-9-1 message broker built on an append-only segment log.
//!
//! - [`storage`]: the engine (segments, records, acks, compaction, recovery, fsync). Knows
//!   nothing of AMQP.
//! - [`amqp`]: the wire (frames, methods, connection state machine). Knows nothing of files.
//! - [`broker`]: the model (exchanges, queues, bindings, consumers, routing).

pub mod alarms;
pub mod broker;
pub mod config;
pub mod connection;
pub mod protocol;
pub mod server;
