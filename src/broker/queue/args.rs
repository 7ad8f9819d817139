//! RabbitMQ 3.10's rules for classic queue arguments: which `x-` arguments a new queue may
//! carry and with which values (`rabbit_amqqueue:check_declare_arguments`), and which of
//! them must match when a queue is declared again (`assert_args_equivalence`). Errors are
//! 406 worded as RabbitMQ words them, Erlang terms included, so that clients matching on
//! reply texts see the same thing.

use amq_protocol_types::{AMQPValue, FieldTable};

use crate::broker::error::BrokerError;
use crate::protocol::table::int_value as integer;

/// RabbitMQ's longest TTL or expiry: ten years, in milliseconds.
const MAX_EXPIRY_MS: i64 = 315_360_000_000;

/// Arguments only quorum or stream queues accept; on a new classic queue they are refused
/// (quorum queues: `quorum_args.rs`).
const NOT_FOR_CLASSIC: [&str; 9] = [
    "x-dead-letter-strategy",
    "x-delivery-limit",
    "x-initial-cluster-size",
    "x-max-age",
    "x-max-in-memory-bytes",
    "x-max-in-memory-length",
    "x-queue-leader-locator",
    "x-quorum-initial-group-size",
    "x-stream-max-segment-size-bytes",
];

/// The arguments compared on redeclare of a classic queue, in RabbitMQ's order (the first
/// mismatch is named).
pub const COMPARED: [&str; 13] = [
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-version",
    "x-single-active-consumer",
    "x-queue-type",
    "x-queue-master-locator",
];

/// RabbitMQ's name for a field-table value's type (as its error texts print it).
pub fn type_name(v: &AMQPValue) -> &'static str {
    match v {
        AMQPValue::Boolean(_) => "bool",
        AMQPValue::ShortShortInt(_) => "byte",
        AMQPValue::ShortShortUInt(_) => "unsignedbyte",
        AMQPValue::ShortInt(_) => "short",
        AMQPValue::ShortUInt(_) => "unsignedshort",
        AMQPValue::LongInt(_) => "signedint",
        AMQPValue::LongUInt(_) => "unsignedint",
        AMQPValue::LongLongInt(_) => "long",
        AMQPValue::Float(_) => "float",
        AMQPValue::Double(_) => "double",
        AMQPValue::DecimalValue(_) => "decimal",
        AMQPValue::ShortString(_) | AMQPValue::LongString(_) => "longstr",
        AMQPValue::FieldArray(_) => "array",
        AMQPValue::Timestamp(_) => "timestamp",
        AMQPValue::FieldTable(_) => "table",
        AMQPValue::ByteArray(_) => "binary",
        AMQPValue::Void => "void",
    }
}

pub(super) fn string(v: &AMQPValue) -> Option<&[u8]> {
    match v {
        AMQPValue::LongString(s) => Some(s.as_bytes()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes()),
        _ => None,
    }
}

/// Why an argument's value is refused, printed as RabbitMQ's `~p` prints its reasons.
pub(super) enum Invalid {
    ExpectedInteger(&'static str),
    Unacceptable(&'static str),
    Negative(i64),
    Zero,
    TooLarge(i64),
    MaxExceeded(i64),
    Word(&'static str),
    Unsupported(&'static str, String),
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::ExpectedInteger(t) => write!(f, "\"expected integer, got {t}\""),
            Invalid::Unacceptable(t) => write!(f, "{{unacceptable_type,{t}}}"),
            Invalid::Negative(v) => write!(f, "{{value_negative,{v}}}"),
            Invalid::Zero => write!(f, "{{value_zero,0}}"),
            Invalid::TooLarge(v) => write!(f, "{{value_too_large,{v}}}"),
            Invalid::MaxExceeded(v) => write!(f, "{{max_value_exceeded,{v}}}"),
            Invalid::Word(w) => write!(f, "{w}"),
            Invalid::Unsupported(what, v) => write!(f, "\"unsupported {what} '{v}'\""),
        }
    }
}

pub(super) fn int_arg(v: &AMQPValue) -> Result<i64, Invalid> {
    integer(v).ok_or(Invalid::ExpectedInteger(type_name(v)))
}

pub(super) fn non_negative(v: &AMQPValue) -> Result<i64, Invalid> {
    match int_arg(v)? {
        n if n < 0 => Err(Invalid::Negative(n)),
        n => Ok(n),
    }
}

fn expiry(n: i64) -> Result<(), Invalid> {
    match n {
        n if n < 0 => Err(Invalid::Negative(n)),
        n if n > MAX_EXPIRY_MS => Err(Invalid::TooLarge(n)),
        _ => Ok(()),
    }
}

pub(super) fn one_of(
    v: &AMQPValue,
    allowed: &[&str],
    refusal: impl Fn(String) -> Invalid,
) -> Result<(), Invalid> {
    let s = string(v).ok_or(Invalid::Unacceptable(type_name(v)))?;
    match allowed.iter().any(|a| a.as_bytes() == s) {
        true => Ok(()),
        false => Err(refusal(String::from_utf8_lossy(s).into_owned())),
    }
}

/// Checks one known classic argument's value.
pub(super) fn check_value(key: &str, v: &AMQPValue, args: &FieldTable) -> Result<(), Invalid> {
    match key {
        "x-expires" => match int_arg(v)? {
            0 => Err(Invalid::Zero),
            n => expiry(n),
        },
        "x-message-ttl" => expiry(int_arg(v)?),
        "x-dead-letter-routing-key" => {
            string(v).ok_or(Invalid::Unacceptable(type_name(v)))?;
            match args.inner().contains_key("x-dead-letter-exchange") {
                true => Ok(()),
                false => Err(Invalid::Word("routing_key_but_no_dlx_defined")),
            }
        }
        "x-max-length" | "x-max-length-bytes" => non_negative(v).map(drop),
        "x-max-priority" => match non_negative(v)? {
            n if n > 255 => Err(Invalid::MaxExceeded(n)),
            _ => Ok(()),
        },
        "x-overflow" => one_of(
            v,
            &["drop-head", "reject-publish", "reject-publish-dlx"],
            |_| Invalid::Word("invalid_overflow"),
        ),
        "x-queue-mode" => one_of(v, &["default", "lazy"], |m| {
            Invalid::Unsupported("queue mode", m)
        }),
        "x-queue-version" => match non_negative(v)? {
            1 | 2 => Ok(()),
            n => Err(Invalid::Unsupported("queue version", n.to_string())),
        },
        "x-single-active-consumer" => match v {
            AMQPValue::Boolean(_) => Ok(()),
            _ => Err(Invalid::Unacceptable(type_name(v))),
        },
        "x-queue-type" => one_of(v, &["classic", "quorum", "stream"], |t| {
            Invalid::Unsupported("queue type", t)
        }),
        _ => Ok(()),
    }
}

/// Validates the arguments of a new queue, in RabbitMQ's order: the dead-letter
/// exchange's type (checked by its channel), `x-queue-type`, then each known argument of
/// the queue's type, then arguments that type does not take (stream queues:
/// `stream_args.rs`). Unknown arguments are accepted.
pub fn validate_new(args: &FieldTable, queue: &str, vhost: &str) -> Result<(), BrokerError> {
    let rs = format!("queue '{queue}' in vhost '{vhost}'");
    if let Some(v) = args.inner().get("x-dead-letter-exchange") {
        if string(v).is_none() {
            return Err(BrokerError::PreconditionFailed(format!(
                "invalid type '{}' for arg 'x-dead-letter-exchange' in {rs}",
                type_name(v)
            )));
        }
    }
    if let Some(v) = args.inner().get("x-queue-type") {
        check_value("x-queue-type", v, args).map_err(|why| {
            BrokerError::PreconditionFailed(format!("invalid arg 'x-queue-type' for {rs}: {why}"))
        })?;
        match string(v) {
            Some(b"stream") => return super::stream_args::validate_new(args, queue, vhost),
            Some(b"quorum") => return super::quorum_args::validate_new(args, queue, vhost),
            _ => {}
        }
    }
    // x-queue-type first, then RabbitMQ's declare_args() order.
    for key in std::iter::once("x-queue-type").chain(COMPARED) {
        if let Some(v) = args.inner().get(key) {
            check_value(key, v, args).map_err(|why| {
                BrokerError::PreconditionFailed(format!("invalid arg '{key}' for {rs}: {why}"))
            })?;
        }
    }
    if let Some(key) = NOT_FOR_CLASSIC
        .iter()
        .find(|k| args.inner().contains_key(**k))
    {
        return Err(BrokerError::PreconditionFailed(format!(
            "invalid arg '{key}' for {rs} of queue type rabbit_classic_queue"
        )));
    }
    Ok(())
}

/// Validates basic.consume arguments on a classic queue as RabbitMQ's
/// `check_consume_arguments` does; returns the consumer's `x-priority` (0 if absent).
pub fn validate_consume(args: &FieldTable, queue: &str, vhost: &str) -> Result<i32, BrokerError> {
    let refuse = |key: &str, why: Invalid| {
        BrokerError::PreconditionFailed(format!(
            "invalid arg '{key}' for queue '{queue}' in vhost '{vhost}': {why}"
        ))
    };
    let mut priority = 0;
    if let Some(v) = args.inner().get("x-priority") {
        let n = int_arg(v).map_err(|why| refuse("x-priority", why))?;
        priority = n.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
    }
    if let Some(v) = args.inner().get("x-cancel-on-ha-failover") {
        if !matches!(v, AMQPValue::Boolean(_)) {
            return Err(refuse(
                "x-cancel-on-ha-failover",
                Invalid::Unacceptable(type_name(v)),
            ));
        }
    }
    if args.inner().contains_key("x-stream-offset") {
        return Err(BrokerError::PreconditionFailed(format!(
            "invalid arg 'x-stream-offset' for queue '{queue}' in vhost '{vhost}' of queue \
             type rabbit_classic_queue"
        )));
    }
    Ok(priority)
}

/// How RabbitMQ prints one side of an inequivalence.
fn shown(v: Option<&AMQPValue>, typed: bool) -> String {
    match v {
        None => "none".into(),
        Some(v) if typed => format!("the value '{}' of type '{}'", bare(v), type_name(v)),
        Some(v) => format!("'{}'", bare(v)),
    }
}

fn bare(v: &AMQPValue) -> String {
    if let Some(n) = integer(v) {
        return n.to_string();
    }
    match v {
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::Float(f) => format!("{f:?}"),
        AMQPValue::Double(d) => format!("{d:?}"),
        AMQPValue::Timestamp(t) => t.to_string(),
        AMQPValue::ByteArray(b) => String::from_utf8_lossy(b.as_slice()).into_owned(),
        v => string(v).map_or_else(
            || format!("{v:?}"),
            |s| String::from_utf8_lossy(s).into_owned(),
        ),
    }
}

/// Whether two values match as RabbitMQ compares them: integers whatever their width,
/// floats whatever their width; across other types only identical bare values.
fn same(a: &AMQPValue, b: &AMQPValue) -> bool {
    if let (Some(x), Some(y)) = (integer(a), integer(b)) {
        return x == y;
    }
    let float = |v: &AMQPValue| match v {
        AMQPValue::Float(f) => Some(*f as f64),
        AMQPValue::Double(d) => Some(*d),
        _ => None,
    };
    if let (Some(x), Some(y)) = (float(a), float(b)) {
        return x == y;
    }
    match (string(a), string(b)) {
        (Some(x), Some(y)) => x == y,
        _ => match (a, b) {
            (AMQPValue::Timestamp(t), v) | (v, AMQPValue::Timestamp(t)) => {
                integer(v).is_some_and(|n| u64::try_from(n) == Ok(*t))
            }
            (AMQPValue::ByteArray(x), v) | (v, AMQPValue::ByteArray(x)) => {
                string(v).is_some_and(|s| s == x.as_slice())
            }
            _ => a == b,
        },
    }
}

/// RabbitMQ's inequivalent-argument error for `resource` ("queue 'q' in vhost '/'"): both
/// values bare when both are present, else the present one with its type.
pub fn inequivalent(
    key: &str,
    resource: &str,
    current: Option<&AMQPValue>,
    got: Option<&AMQPValue>,
) -> BrokerError {
    let typed = current.is_none() || got.is_none();
    BrokerError::PreconditionFailed(format!(
        "inequivalent arg '{key}' for {resource}: received {} but current is {}",
        shown(got, typed),
        shown(current, typed)
    ))
}

/// Checks a redeclaration's arguments against the queue's: only the keys its type compares
/// count (`COMPARED` for classic queues), and an absent `x-queue-type` is `classic`.
pub fn check_equivalent(
    compared: &[&str],
    current: &FieldTable,
    new: &FieldTable,
    queue: &str,
    vhost: &str,
) -> Result<(), BrokerError> {
    for &key in compared {
        let (old, got) = (current.inner().get(key), new.inner().get(key));
        let ok = match (old, got) {
            (None, None) => true,
            (Some(a), Some(b)) => same(a, b),
            (None, Some(v)) | (Some(v), None) => {
                key == "x-queue-type" && string(v) == Some(&b"classic"[..])
            }
        };
        if !ok {
            return Err(inequivalent(
                key,
                &format!("queue '{queue}' in vhost '{vhost}'"),
                old,
                got,
            ));
        }
    }
    Ok(())
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

    fn text(r: Result<(), BrokerError>) -> String {
        r.unwrap_err().text().to_owned()
    }

    #[test]
    fn values_are_refused_as_rabbitmq_words_it() {
        let check = |k: &str, v: AMQPValue| text(validate_new(&table(&[(k, v)]), "q", "/"));
        assert_eq!(
            check("x-expires", AMQPValue::LongString("1".into())),
            "invalid arg 'x-expires' for queue 'q' in vhost '/': \"expected integer, got longstr\""
        );
        assert_eq!(
            check("x-expires", AMQPValue::LongInt(0)),
            "invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}"
        );
        assert_eq!(
            check("x-max-priority", AMQPValue::LongInt(256)),
            "invalid arg 'x-max-priority' for queue 'q' in vhost '/': {max_value_exceeded,256}"
        );
        assert_eq!(
            check("x-delivery-limit", AMQPValue::LongInt(5)),
            "invalid arg 'x-delivery-limit' for queue 'q' in vhost '/' of queue type rabbit_classic_queue"
        );
        assert_eq!(
            check("x-dead-letter-exchange", AMQPValue::LongInt(5)),
            "invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'"
        );
        let ok = table(&[
            ("x-message-ttl", AMQPValue::LongInt(0)),
            ("x-foo", AMQPValue::Void),
        ]);
        assert!(validate_new(&ok, "q", "/").is_ok());
    }

    #[test]
    fn equivalence_ignores_integer_width_and_unknown_keys() {
        let a = table(&[
            ("x-max-length", AMQPValue::ShortInt(5)),
            ("x-foo", AMQPValue::Void),
        ]);
        let b = table(&[("x-max-length", AMQPValue::LongLongInt(5))]);
        assert!(check_equivalent(&COMPARED, &a, &b, "q", "/").is_ok());
        let classic = table(&[("x-queue-type", AMQPValue::LongString("classic".into()))]);
        assert!(check_equivalent(&COMPARED, &FieldTable::default(), &classic, "q", "/").is_ok());
        let c = table(&[("x-max-length", AMQPValue::LongLongInt(6))]);
        assert_eq!(
            text(check_equivalent(&COMPARED, &a, &c, "q", "/")),
            "inequivalent arg 'x-max-length' for queue 'q' in vhost '/': received '6' but current is '5'"
        );
        assert_eq!(
            text(check_equivalent(&COMPARED, &FieldTable::default(), &c, "q", "/")),
            "inequivalent arg 'x-max-length' for queue 'q' in vhost '/': received the value '6' of \
             type 'long' but current is none"
        );
    }
}
