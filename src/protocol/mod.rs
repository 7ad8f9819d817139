//! The AMQP 0-9-1 codec, pure: frames, methods (with named class and method ids), field
//! tables, content properties and reply codes. It knows nothing of the broker, of
//! connections or of files; it imports nothing else of the crate.

pub mod error;
pub mod frame;
pub mod method;
pub mod properties;
pub mod table;
pub mod wire;

pub use error::{AmqpError, ReplyCode};
