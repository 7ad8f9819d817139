//! The queue-type seam: each type reads its own `x-` arguments. Classic queues exist
//! today; streams and quorum queues (their issues) add variants here and a storage of their
//! own behind the same `Queue` operations.

use amq_protocol_types::{AMQPValue, FieldTable};

use crate::broker::declare::QueueSpec;
use crate::broker::error::BrokerError;

/// What kind of queue a declaration asks for (`x-queue-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    Classic,
}

impl QueueType {
    /// Reads `x-queue-type` (absent means classic, as in RabbitMQ).
    pub fn from_args(args: &FieldTable) -> Result<QueueType, BrokerError> {
        match args.inner().get("x-queue-type") {
            None => Ok(QueueType::Classic),
            Some(AMQPValue::LongString(s)) if s.as_bytes() == b"classic" => Ok(QueueType::Classic),
            Some(AMQPValue::ShortString(s)) if s.as_str() == "classic" => Ok(QueueType::Classic),
            Some(other) => Err(BrokerError::PreconditionFailed(format!(
                "invalid arg 'x-queue-type' for queue: {other:?} is not supported by this broker"
            ))),
        }
    }

    /// Checks a new queue's declaration against what this type allows.
    pub fn validate(self, _args: &FieldTable, _spec: &QueueSpec<'_>) -> Result<(), BrokerError> {
        match self {
            // Classic queues accept any flags; the x-arguments they act on arrive with the
            // queue-features issue.
            QueueType::Classic => Ok(()),
        }
    }
}
