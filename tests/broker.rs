//! The single-node integration tests, one binary (one module per file of `tests/`).
//! One binary instead of one per file: each test binary monomorphises lapin, tokio and
//! the broker's generics again, and building 44 of them in release mode was most of
//! CI's time. Run one file's tests with `cargo test --release --test broker FILE::`.

mod common;
mod model_support;

mod abuse;
mod access;
mod alarms;
mod amqp_amqprs;
mod amqp_lapin;
mod amqp_protocol;
mod amqp_tx;
mod console;
mod crash_features;
mod crash_loop;
mod definitions_roundtrip;
mod disk_full;
mod durability;
mod features;
mod features_restart;
mod fidelity;
mod flow_control;
mod fuzz_regressions;
mod http_api;
mod http_objects;
mod large_messages;
mod model_delivery;
mod model_lifecycle;
mod model_routing;
mod model_vs_rabbitmq;
mod pika_examples;
mod policies;
mod prometheus;
mod quorum_queues;
mod shutdown;
mod stream_protocol;
mod stream_reference;
mod streams;
mod sync_faults;
mod tls;
