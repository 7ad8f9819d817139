//! THE WIRE: AMQP 0-9-1 frames, methods, content headers and field tables, and the
//! per-connection state machine that drives the broker model. Nothing here touches files.

pub mod auth;
pub mod connection;
pub mod error;
pub mod frame;
pub mod method;
pub mod properties;
pub mod table;
pub mod wire;

pub use error::{AmqpError, ReplyCode};
