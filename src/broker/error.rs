//! The model's own errors. They say what went wrong in the model's terms; `connection`
//! maps them to AMQP reply codes (and the HTTP API, `http/error.rs`, to status codes).

use std::fmt;

/// Why the model refused or failed an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerError {
    /// No such exchange, queue or vhost.
    NotFound(String),
    /// The operation is not permitted: reserved names, internal exchanges, exclusive
    /// consumers, bad credentials.
    AccessRefused(String),
    /// Another connection holds the queue exclusively.
    ResourceLocked(String),
    /// Inequivalent redeclaration, in use, not empty, unknown delivery tag, bad argument.
    PreconditionFailed(String),
    /// Not allowed on this connection at all (e.g. a reused consumer tag): the
    /// connection ends.
    NotAllowed(String),
    /// A request the model cannot make sense of (e.g. an unknown exchange type): the
    /// connection ends.
    CommandInvalid(String),
    /// The channel is not open in the model.
    ChannelNotOpen,
    /// Malformed arguments (a field table that does not decode).
    Syntax(String),
    /// Reading or writing the data directory failed.
    Storage(String),
    /// An operation this kind of queue does not do (basic.get on a stream): 540, the
    /// connection ends.
    NotImplemented(String),
    /// Input RabbitMQ accepts and then fails on inside (its process crashes): 541
    /// INTERNAL_ERROR with no detail, as it answers; the connection ends.
    Internal,
}

impl BrokerError {
    pub fn not_found(what: &str, name: &str, vhost: &str) -> Self {
        BrokerError::NotFound(format!("no {what} '{name}' in vhost '{vhost}'"))
    }

    pub fn storage(e: std::io::Error) -> Self {
        BrokerError::Storage(format!("storage error: {e}"))
    }

    /// The human-readable part, without a code.
    pub fn text(&self) -> &str {
        match self {
            BrokerError::NotFound(t)
            | BrokerError::AccessRefused(t)
            | BrokerError::ResourceLocked(t)
            | BrokerError::PreconditionFailed(t)
            | BrokerError::NotAllowed(t)
            | BrokerError::CommandInvalid(t)
            | BrokerError::Syntax(t)
            | BrokerError::Storage(t)
            | BrokerError::NotImplemented(t) => t,
            BrokerError::ChannelNotOpen => "channel not open",
            BrokerError::Internal => "",
        }
    }
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

impl std::error::Error for BrokerError {}

impl From<std::io::Error> for BrokerError {
    fn from(e: std::io::Error) -> Self {
        BrokerError::storage(e)
    }
}
