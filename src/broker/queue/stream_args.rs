//! RabbitMQ 3.10's rules for stream queues (`x-queue-type: stream`): the arguments a new
//! stream may carry (`rabbit_amqqueue:check_declare_arguments` with the stream type's
//! list), its flags (`rabbit_stream_queue:declare`), the ones compared on redeclare, and a
//! stream consumer's `x-stream-offset` (`rabbit_stream_queue:parse_offset_arg`). Texts are
//! RabbitMQ's, Erlang terms included.

use amq_protocol_types::{AMQPValue, FieldTable};

use super::args::{non_negative, one_of, string, type_name, Invalid};
use crate::broker::error::BrokerError;

/// The arguments a stream takes; also the ones compared on redeclare, in this order.
pub const STREAM_ARGS: [&str; 6] = [
    "x-max-length-bytes",
    "x-queue-type",
    "x-max-age",
    "x-stream-max-segment-size-bytes",
    "x-initial-cluster-size",
    "x-queue-leader-locator",
];

/// Arguments of the other queue types (classic, quorum): refused on a new stream.
const NOT_FOR_STREAM: [&str; 16] = [
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-dead-letter-strategy",
    "x-delivery-limit",
    "x-expires",
    "x-max-in-memory-bytes",
    "x-max-in-memory-length",
    "x-max-length",
    "x-max-priority",
    "x-message-ttl",
    "x-overflow",
    "x-queue-master-locator",
    "x-queue-mode",
    "x-queue-version",
    "x-quorum-initial-group-size",
    "x-single-active-consumer",
];

/// RabbitMQ's largest `x-stream-max-segment-size-bytes`.
pub const MAX_SEGMENT_SIZE: i64 = 3_000_000_000;

/// What `rabbit_amqqueue:check_max_age` makes of a duration string such as `7D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxAge {
    Millis(u64),
    /// A zero count or an unknown unit: `invalid_max_age`.
    Invalid,
    /// No leading digits: RabbitMQ's `list_to_integer("")` fails inside the broker, which
    /// answers 541 INTERNAL_ERROR.
    Crash,
}

/// Parses `<count><unit>`, the unit one of `Y M D h m s` (a year is 365 days, a month 30).
pub fn parse_max_age(s: &[u8]) -> MaxAge {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return MaxAge::Crash;
    }
    let count = s[..digits].iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    let unit_ms: u64 = match &s[digits..] {
        b"Y" => 365 * 86_400_000,
        b"M" => 30 * 86_400_000,
        b"D" => 86_400_000,
        b"h" => 3_600_000,
        b"m" => 60_000,
        b"s" => 1_000,
        _ => return MaxAge::Invalid,
    };
    match count {
        0 => MaxAge::Invalid,
        n => MaxAge::Millis(n.saturating_mul(unit_ms)),
    }
}

/// Checks one stream argument's value (RabbitMQ's validators for the stream's keys).
fn check_value(key: &str, v: &AMQPValue) -> Result<(), Result<Invalid, BrokerError>> {
    match key {
        "x-max-length-bytes" | "x-stream-max-segment-size-bytes" => {
            non_negative(v).map(drop).map_err(Ok)
        }
        "x-max-age" => {
            let s = string(v).ok_or(Ok(Invalid::Unacceptable(type_name(v))))?;
            match parse_max_age(s) {
                MaxAge::Millis(_) => Ok(()),
                MaxAge::Invalid => Err(Ok(Invalid::Word("invalid_max_age"))),
                MaxAge::Crash => Err(Err(BrokerError::Internal)),
            }
        }
        "x-initial-cluster-size" => match non_negative(v).map_err(Ok)? {
            0 => Err(Ok(Invalid::Zero)),
            _ => Ok(()),
        },
        "x-queue-leader-locator" => one_of(
            v,
            &["client-local", "balanced", "random", "least-leaders"],
            |_| Invalid::Word("invalid_queue_locator_arg"),
        )
        .map_err(Ok),
        _ => Ok(()),
    }
}

/// Validates a new stream's arguments in RabbitMQ's order: each stream argument's value
/// (its `declare_args()` order), then arguments of other queue types (refused); unknown
/// arguments are accepted.
pub fn validate_new(args: &FieldTable, queue: &str, vhost: &str) -> Result<(), BrokerError> {
    let rs = format!("queue '{queue}' in vhost '{vhost}'");
    const ORDER: [&str; 5] = [
        "x-max-length-bytes",
        "x-max-age",
        "x-stream-max-segment-size-bytes",
        "x-initial-cluster-size",
        "x-queue-leader-locator",
    ];
    for key in ORDER {
        if let Some(v) = args.inner().get(key) {
            check_value(key, v).map_err(|why| match why {
                Ok(why) => {
                    BrokerError::PreconditionFailed(format!("invalid arg '{key}' for {rs}: {why}"))
                }
                Err(e) => e,
            })?;
        }
    }
    if let Some(key) = args
        .inner()
        .keys()
        .find(|k| NOT_FOR_STREAM.contains(&k.as_str()))
    {
        return Err(BrokerError::PreconditionFailed(format!(
            "invalid arg '{}' for {rs} of queue type rabbit_stream_queue",
            key.as_str()
        )));
    }
    Ok(())
}

/// A replicated queue's flags (stream or quorum), in RabbitMQ's order of checks
/// (`rabbit_queue_type_util`): not auto-delete, not exclusive, durable.
pub fn check_replicated_flags(
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
    queue: &str,
    vhost: &str,
) -> Result<(), BrokerError> {
    let property = if auto_delete {
        Some("auto-delete")
    } else if exclusive {
        Some("exclusive-owner")
    } else if !durable {
        Some("non-durable")
    } else {
        None
    };
    match property {
        Some(p) => Err(BrokerError::PreconditionFailed(format!(
            "invalid property '{p}' for queue '{queue}' in vhost '{vhost}'"
        ))),
        None => Ok(()),
    }
}

/// The flags and limits `rabbit_stream_queue:declare` checks after the arguments: a
/// stream is durable, not auto-delete, not exclusive.
pub fn validate_flags(
    args: &FieldTable,
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
    queue: &str,
    vhost: &str,
) -> Result<(), BrokerError> {
    check_replicated_flags(durable, exclusive, auto_delete, queue, vhost)?;
    let size = args
        .inner()
        .get("x-stream-max-segment-size-bytes")
        .and_then(crate::protocol::table::int_value);
    if size.is_some_and(|n| n > MAX_SEGMENT_SIZE) {
        return Err(BrokerError::PreconditionFailed(
            "Exceeded max value for x-stream-max-segment-size-bytes".into(),
        ));
    }
    Ok(())
}

/// Where a stream consumer starts (`x-stream-offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The oldest message still in the stream.
    First,
    /// The start of the last chunk (batch) written.
    Last,
    /// Only messages written from now on (the default).
    Next,
    /// An absolute offset; below the first means the first, past the end waits for it.
    Offset(i64),
    /// The first message stored at or after this time (milliseconds since the epoch).
    Timestamp(u64),
}

/// Reads basic.consume's arguments on a stream: `x-stream-offset` (any string `first`,
/// `last` or `next`; an AMQP timestamp in seconds; a duration string meaning that long
/// ago; any integer an offset), then the consumer arguments streams do not take
/// (`x-priority`, `x-cancel-on-ha-failover`). Values RabbitMQ accepts and then fails on
/// (other types, a string without digits) are 541, as it answers them.
pub fn parse_consume(
    args: &FieldTable,
    now_ms: u64,
    queue: &str,
    vhost: &str,
) -> Result<OffsetSpec, BrokerError> {
    let rs = format!("queue '{queue}' in vhost '{vhost}'");
    let spec = match args.inner().get("x-stream-offset") {
        None => OffsetSpec::Next,
        Some(v) => match (string(v), v) {
            (Some(b"first"), _) => OffsetSpec::First,
            (Some(b"last"), _) => OffsetSpec::Last,
            (Some(b"next"), _) => OffsetSpec::Next,
            (_, AMQPValue::Timestamp(secs)) => OffsetSpec::Timestamp(secs.saturating_mul(1000)),
            (Some(s), _) => match parse_max_age(s) {
                MaxAge::Millis(ago) => OffsetSpec::Timestamp(now_ms.saturating_sub(ago)),
                MaxAge::Crash => return Err(BrokerError::Internal),
                MaxAge::Invalid => {
                    return Err(BrokerError::PreconditionFailed(format!(
                        "invalid arg 'x-stream-offset' for {rs}: \
                         {{invalid_stream_offset_arg,{{longstr,<<\"{}\">>}}}}",
                        String::from_utf8_lossy(s)
                    )))
                }
            },
            (None, v) => match crate::protocol::table::int_value(v) {
                Some(n) => OffsetSpec::Offset(n),
                None => return Err(BrokerError::Internal),
            },
        },
    };
    for key in ["x-cancel-on-ha-failover", "x-priority"] {
        if args.inner().contains_key(key) {
            return Err(BrokerError::PreconditionFailed(format!(
                "invalid arg '{key}' for {rs} of queue type rabbit_stream_queue"
            )));
        }
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in entries {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    fn text(r: Result<impl std::fmt::Debug, BrokerError>) -> String {
        r.unwrap_err().text().to_owned()
    }

    fn long(s: &str) -> AMQPValue {
        AMQPValue::LongString(s.into())
    }

    #[test]
    fn durations_parse_as_rabbitmq_does() {
        assert_eq!(parse_max_age(b"7D"), MaxAge::Millis(7 * 86_400_000));
        assert_eq!(parse_max_age(b"12h"), MaxAge::Millis(12 * 3_600_000));
        assert_eq!(parse_max_age(b"30m"), MaxAge::Millis(1_800_000));
        assert_eq!(parse_max_age(b"10s"), MaxAge::Millis(10_000));
        assert_eq!(parse_max_age(b"1Y"), MaxAge::Millis(365 * 86_400_000));
        assert_eq!(parse_max_age(b"2M"), MaxAge::Millis(60 * 86_400_000));
        assert_eq!(parse_max_age(b"0s"), MaxAge::Invalid);
        assert_eq!(parse_max_age(b"10x"), MaxAge::Invalid);
        assert_eq!(parse_max_age(b"10"), MaxAge::Invalid);
        assert_eq!(parse_max_age(b"bogus"), MaxAge::Crash);
        assert_eq!(parse_max_age(b""), MaxAge::Crash);
    }

    #[test]
    fn declare_answers_are_rabbitmqs() {
        // Each answer as a RabbitMQ 3.10.8 node gave it.
        let age = |v| table(&[("x-max-age", v)]);
        assert_eq!(
            text(validate_new(&age(long("10x")), "s", "/")),
            "invalid arg 'x-max-age' for queue 's' in vhost '/': invalid_max_age"
        );
        assert_eq!(
            text(validate_new(&age(AMQPValue::LongInt(10)), "s", "/")),
            "invalid arg 'x-max-age' for queue 's' in vhost '/': {unacceptable_type,signedint}"
        );
        assert_eq!(
            validate_new(&age(long("bogus")), "s", "/"),
            Err(BrokerError::Internal)
        );
        assert_eq!(
            text(validate_new(
                &table(&[("x-max-length-bytes", AMQPValue::LongInt(-1))]),
                "s",
                "/"
            )),
            "invalid arg 'x-max-length-bytes' for queue 's' in vhost '/': {value_negative,-1}"
        );
        assert_eq!(
            text(validate_new(
                &table(&[("x-stream-max-segment-size-bytes", long("x"))]),
                "s",
                "/"
            )),
            "invalid arg 'x-stream-max-segment-size-bytes' for queue 's' in vhost '/': \
             \"expected integer, got longstr\""
        );
        assert_eq!(
            text(validate_new(
                &table(&[("x-max-length", AMQPValue::LongInt(10))]),
                "s",
                "/"
            )),
            "invalid arg 'x-max-length' for queue 's' in vhost '/' of queue type \
             rabbit_stream_queue"
        );
        assert!(validate_new(
            &table(&[
                ("x-initial-cluster-size", AMQPValue::LongInt(1)),
                ("x-queue-leader-locator", long("client-local")),
                ("x-foo", AMQPValue::LongInt(1)),
            ]),
            "s",
            "/"
        )
        .is_ok());
        let huge = table(&[(
            "x-stream-max-segment-size-bytes",
            AMQPValue::LongLongInt(4 << 30),
        )]);
        assert_eq!(
            text(validate_flags(&huge, true, false, false, "s", "/")),
            "Exceeded max value for x-stream-max-segment-size-bytes"
        );
        let none = FieldTable::default();
        assert_eq!(
            text(validate_flags(&none, false, false, false, "s", "/")),
            "invalid property 'non-durable' for queue 's' in vhost '/'"
        );
        assert_eq!(
            text(validate_flags(&none, true, true, true, "s", "/")),
            "invalid property 'auto-delete' for queue 's' in vhost '/'"
        );
    }

    #[test]
    fn offsets_are_read_as_rabbitmq_reads_them() {
        let spec =
            |v: AMQPValue| parse_consume(&table(&[("x-stream-offset", v)]), 100_000, "s", "/");
        assert_eq!(
            parse_consume(&FieldTable::default(), 0, "s", "/"),
            Ok(OffsetSpec::Next)
        );
        assert_eq!(spec(long("first")), Ok(OffsetSpec::First));
        assert_eq!(spec(long("last")), Ok(OffsetSpec::Last));
        assert_eq!(spec(AMQPValue::LongLongInt(-1)), Ok(OffsetSpec::Offset(-1)));
        assert_eq!(spec(AMQPValue::ShortInt(7)), Ok(OffsetSpec::Offset(7)));
        assert_eq!(
            spec(AMQPValue::Timestamp(50)),
            Ok(OffsetSpec::Timestamp(50_000))
        );
        assert_eq!(spec(long("10s")), Ok(OffsetSpec::Timestamp(90_000)));
        assert_eq!(
            text(spec(long("0s"))),
            "invalid arg 'x-stream-offset' for queue 's' in vhost '/': \
             {invalid_stream_offset_arg,{longstr,<<\"0s\">>}}"
        );
        assert_eq!(spec(long("bogus")), Err(BrokerError::Internal));
        assert_eq!(spec(AMQPValue::Boolean(true)), Err(BrokerError::Internal));
        assert_eq!(
            text(parse_consume(
                &table(&[("x-priority", AMQPValue::LongInt(5))]),
                0,
                "s",
                "/"
            )),
            "invalid arg 'x-priority' for queue 's' in vhost '/' of queue type \
             rabbit_stream_queue"
        );
    }
}
