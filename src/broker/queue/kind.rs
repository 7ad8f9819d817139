//! The queue-type seam: each type reads its own `x-` arguments. Classic queues, streams (the
//! same log read without consuming it: `stream.rs`) and quorum queues (on one node: the
//! same log with RabbitMQ's quorum rules, `quorum.rs`; replicated with the cluster).

use amq_protocol_types::{AMQPValue, FieldTable};

use super::stream_args;
use crate::broker::declare::QueueSpec;
use crate::broker::error::BrokerError;

/// What kind of queue a declaration asks for (`x-queue-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueType {
    Classic,
    Stream,
    Quorum,
}

impl QueueType {
    /// Reads `x-queue-type` (absent means classic, as in RabbitMQ).
    pub fn from_args(args: &FieldTable) -> Result<QueueType, BrokerError> {
        let name = match args.inner().get("x-queue-type") {
            None => return Ok(QueueType::Classic),
            Some(AMQPValue::LongString(s)) => s.as_bytes(),
            Some(AMQPValue::ShortString(s)) => s.as_str().as_bytes(),
            Some(other) => return Err(unsupported(other)),
        };
        match name {
            b"classic" => Ok(QueueType::Classic),
            b"stream" => Ok(QueueType::Stream),
            b"quorum" => Ok(QueueType::Quorum),
            _ => Err(unsupported(&args.inner()["x-queue-type"])),
        }
    }

    /// Checks a new queue's flags against what this type allows (after its arguments,
    /// as RabbitMQ orders the checks).
    pub fn validate(
        self,
        args: &FieldTable,
        spec: &QueueSpec<'_>,
        durable: bool,
        vhost: &str,
    ) -> Result<(), BrokerError> {
        match self {
            QueueType::Classic => Ok(()),
            QueueType::Stream => stream_args::validate_flags(
                args,
                durable,
                spec.exclusive,
                spec.auto_delete,
                spec.name,
                vhost,
            ),
            QueueType::Quorum => stream_args::check_replicated_flags(
                durable,
                spec.exclusive,
                spec.auto_delete,
                spec.name,
                vhost,
            ),
        }
    }
}

fn unsupported(v: &AMQPValue) -> BrokerError {
    BrokerError::PreconditionFailed(format!(
        "invalid arg 'x-queue-type' for queue: {v:?} is not supported by this broker"
    ))
}
