//! Warren: an AMQP 0-9-1 message broker built on an append-only segment log.
//!
//! Layers (docs/ARCHITECTURE.md), each importing only those below it:
//! - [`protocol`]: the pure AMQP 0-9-1 codec. Imports nothing else of the crate.
//! - [`broker`]: the model (vhosts, exchanges, queues, bindings, consumers, routing),
//!   synchronous and socket-free, over the `warren-storage` engine.
//! - [`connection`]: one AMQP connection; speaks `protocol`, calls `broker`.
//! - [`server`]: wires them together; [`tls`] serves AMQPS sockets into `connection`;
//!   [`http`] is the management API (RabbitMQ's `/api`) over the broker's public API;
//!   [`metrics`] is Prometheus' `/metrics` (RabbitMQ's names) over the same API;
//!   [`config`], [`alarms`] around it.
//! - [`stream_protocol`]: the pure RabbitMQ Stream protocol codec (port 5552) and AMQP 1.0
//!   message encoding. Imports nothing else of the crate.

pub mod admin_client;
pub mod alarms;
pub mod broker;
pub mod cluster;
pub mod cluster_cli;
pub mod config;
pub mod connection;
pub mod data_lock;
pub mod definitions_cli;
pub mod http;
pub mod memory_trim;
pub mod metrics;
pub mod protocol;
pub mod replication;
pub mod server;
pub mod stream_protocol;
pub mod tls;
