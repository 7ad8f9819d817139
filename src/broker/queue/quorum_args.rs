//! RabbitMQ 3.10's rules for quorum queues (`x-queue-type: quorum`): the arguments a new
//! quorum queue may carry (`rabbit_amqqueue:check_declare_arguments` with the quorum
//! type's `queue_arguments`), the ones compared on redeclare, and the arguments of other
//! types it refuses. The flags (durable, not exclusive, not auto-delete) are checked after
//! the arguments, as for streams (`kind.rs`). Texts are RabbitMQ's, recorded in
//! `tests/fidelity/golden/quorum.json`.

use amq_protocol_types::{AMQPValue, FieldTable};

use super::args::{check_value, non_negative, one_of, Invalid};
use crate::broker::error::BrokerError;

/// The quorum type's `queue_arguments`, in RabbitMQ's order: the ones compared on
/// redeclare.
pub const QUORUM_ARGS: [&str; 15] = [
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-overflow",
    "x-single-active-consumer",
    "x-queue-type",
    "x-quorum-initial-group-size",
    "x-delivery-limit",
    "x-message-ttl",
    "x-queue-leader-locator",
];

/// Arguments RabbitMQ knows for other queue types: refused on a new quorum queue.
const NOT_FOR_QUORUM: [&str; 7] = [
    "x-initial-cluster-size",
    "x-max-age",
    "x-max-priority",
    "x-queue-master-locator",
    "x-queue-mode",
    "x-queue-version",
    "x-stream-max-segment-size-bytes",
];

/// RabbitMQ's `declare_args()` order for the keys a quorum queue takes and validates
/// (`x-delivery-limit` has no validator in 3.10: any value is taken, as recorded).
const VALIDATED: [&str; 13] = [
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-overflow",
    "x-single-active-consumer",
    "x-queue-type",
    "x-quorum-initial-group-size",
    "x-queue-leader-locator",
];

/// Checks one quorum argument's value: the classic validators where the key is shared,
/// the quorum and stream ones otherwise.
fn check_quorum_value(key: &str, v: &AMQPValue, args: &FieldTable) -> Result<(), Invalid> {
    match key {
        "x-dead-letter-strategy" => one_of(v, &["at-most-once", "at-least-once"], |_| {
            Invalid::Word("invalid_dlx_strategy")
        }),
        "x-max-in-memory-length" | "x-max-in-memory-bytes" => non_negative(v).map(drop),
        "x-quorum-initial-group-size" => match non_negative(v)? {
            0 => Err(Invalid::Zero),
            _ => Ok(()),
        },
        "x-queue-leader-locator" => one_of(
            v,
            &["client-local", "balanced", "random", "least-leaders"],
            |_| Invalid::Word("invalid_queue_locator_arg"),
        ),
        _ => check_value(key, v, args),
    }
}

/// How many nodes a quorum queue asks to be held by (`x-quorum-initial-group-size`,
/// positive once validated); `None` for every node.
pub fn initial_group_size(args: &FieldTable) -> Option<usize> {
    let size = non_negative(args.inner().get("x-quorum-initial-group-size")?).ok()?;
    usize::try_from(size).ok().filter(|n| *n > 0)
}

/// Validates a new quorum queue's arguments: each known value in RabbitMQ's order, then
/// the arguments of other queue types (refused). Unknown arguments are accepted.
pub fn validate_new(args: &FieldTable, queue: &str, vhost: &str) -> Result<(), BrokerError> {
    let rs = format!("queue '{queue}' in vhost '{vhost}'");
    for key in VALIDATED {
        if let Some(v) = args.inner().get(key) {
            check_quorum_value(key, v, args).map_err(|why| {
                BrokerError::PreconditionFailed(format!("invalid arg '{key}' for {rs}: {why}"))
            })?;
        }
    }
    if let Some(key) = args
        .inner()
        .keys()
        .find(|k| NOT_FOR_QUORUM.contains(&k.as_str()))
    {
        return Err(BrokerError::PreconditionFailed(format!(
            "invalid arg '{}' for {rs} of queue type rabbit_quorum_queue",
            key.as_str()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol_types::{LongString, ShortString};

    fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert(ShortString::from("x-queue-type"), long("quorum"));
        for (k, v) in entries {
            t.insert(ShortString::from(*k), v.clone());
        }
        t
    }

    fn long(s: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(s))
    }

    fn text(r: Result<(), BrokerError>) -> String {
        match r {
            Err(BrokerError::PreconditionFailed(t)) => t,
            other => panic!("expected a 406, got {other:?}"),
        }
    }

    #[test]
    fn quorum_arguments_are_checked_as_rabbitmq_checks_them() {
        let check = |k: &str, v: AMQPValue| validate_new(&table(&[(k, v)]), "q", "/");
        assert!(check("x-delivery-limit", AMQPValue::LongInt(-1)).is_ok());
        assert!(check("x-delivery-limit", long("5")).is_ok());
        assert!(check("x-dead-letter-strategy", long("at-least-once")).is_ok());
        assert!(check("x-quorum-initial-group-size", AMQPValue::LongInt(3)).is_ok());
        assert_eq!(
            text(check("x-dead-letter-strategy", long("bogus"))),
            "invalid arg 'x-dead-letter-strategy' for queue 'q' in vhost '/': invalid_dlx_strategy"
        );
        assert_eq!(
            text(check("x-quorum-initial-group-size", AMQPValue::LongInt(0))),
            "invalid arg 'x-quorum-initial-group-size' for queue 'q' in vhost '/': {value_zero,0}"
        );
        assert_eq!(
            text(check("x-quorum-initial-group-size", long("3"))),
            "invalid arg 'x-quorum-initial-group-size' for queue 'q' in vhost '/': \
             \"expected integer, got longstr\""
        );
        assert_eq!(
            text(check("x-max-priority", AMQPValue::LongInt(10))),
            "invalid arg 'x-max-priority' for queue 'q' in vhost '/' of queue type \
             rabbit_quorum_queue"
        );
    }
}
