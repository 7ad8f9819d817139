//! Warren: an AMQP 0-9-1 message broker built on an append-only segment log.
//!
//! - [`storage`]: the engine (segments, records, acks, compaction, recovery, fsync).

pub mod storage;
