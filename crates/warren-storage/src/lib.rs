//! The storage engine: every queue is an append-only log of mmap'd, preallocated segment
//! files holding CRC-checked records, with a per-segment ack bitmap persisted in batches,
//! compaction, crash recovery and group-committed fsync. It knows nothing of AMQP: a
//! record's payload is opaque bytes.

pub mod acks;
mod batch_write;
pub mod compact;
pub mod file;
pub mod log;
pub mod log_stats;
pub mod metrics;
pub mod record;
pub mod recovery;
pub mod segment;
pub mod spares;
pub mod stream;
pub mod sync;
mod truncate;

pub use compact::{Compacted, CompactionJob};
pub use log::{AckFlush, Appended, Cursor, Log, LogConfig};
pub use log_stats::LogStats;
pub use metrics::{HistogramSnapshot, StorageMetrics, StorageSnapshot};
pub use recovery::RecoveryReport;
pub use segment::{BatchRecord, StoredRecord};
pub use stream::Retention;
pub use sync::{FsyncPolicy, GroupCommit, Ticket};
