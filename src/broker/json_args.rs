//! Arguments tables between AMQP and JSON, as RabbitMQ converts them for definitions
//! files and its HTTP API (`rabbit_misc:to_amqp_table/1` one way, `amqp_table/1` the
//! other): a JSON string is a long string, an integer a signed 64-bit integer, a
//! fraction a double, true/false a boolean, an array an array, an object a table and
//! null void. Every other AMQP type goes to the JSON value closest to it.

use amq_protocol_types::{AMQPValue, DecimalValue, FieldArray, FieldTable, LongString};
use serde_json::{Map, Number, Value};

use crate::protocol::table::MAX_DEPTH;

/// A JSON object of arguments as an AMQP table; errors name the key that cannot be
/// converted.
pub fn to_field_table(args: &Map<String, Value>) -> Result<FieldTable, String> {
    table(args, 0)
}

fn table(args: &Map<String, Value>, depth: usize) -> Result<FieldTable, String> {
    let mut t = FieldTable::default();
    for (k, v) in args {
        if k.len() > 255 {
            return Err(format!("argument name '{k:.40}…' is longer than 255 bytes"));
        }
        let v = value(v, depth + 1).map_err(|e| format!("argument '{k}': {e}"))?;
        t.insert(k.as_str().into(), v);
    }
    Ok(t)
}

fn value(v: &Value, depth: usize) -> Result<AMQPValue, String> {
    if depth > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH}"));
    }
    Ok(match v {
        // RabbitMQ's to_amqp_table refuses null (null_not_allowed).
        Value::Null => return Err("null is not allowed".into()),
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_bytes())),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => AMQPValue::LongLongInt(i),
            (None, Some(f)) if n.is_f64() => AMQPValue::Double(f),
            _ => return Err(format!("{n} does not fit a signed 64-bit integer")),
        },
        Value::Array(items) => {
            let mut a = FieldArray::default();
            for item in items {
                a.push(value(item, depth + 1)?);
            }
            AMQPValue::FieldArray(a)
        }
        Value::Object(m) => AMQPValue::FieldTable(table(m, depth)?),
    })
}

/// An AMQP table as a JSON object.
pub fn to_json(t: &FieldTable) -> Map<String, Value> {
    t.inner()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), json(v)))
        .collect()
}

fn json(v: &AMQPValue) -> Value {
    let num = |f: f64| Number::from_f64(f).map_or(Value::Null, Value::Number);
    match v {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(i) => (*i).into(),
        AMQPValue::ShortShortUInt(i) => (*i).into(),
        AMQPValue::ShortInt(i) => (*i).into(),
        AMQPValue::ShortUInt(i) => (*i).into(),
        AMQPValue::LongInt(i) => (*i).into(),
        AMQPValue::LongUInt(i) => (*i).into(),
        AMQPValue::LongLongInt(i) => (*i).into(),
        AMQPValue::Timestamp(t) => (*t).into(),
        AMQPValue::Float(f) => num(f64::from(*f)),
        AMQPValue::Double(f) => num(*f),
        AMQPValue::DecimalValue(DecimalValue { scale, value }) => {
            num(f64::from(*value) / 10f64.powi(i32::from(*scale)))
        }
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_owned()),
        AMQPValue::LongString(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into()),
        AMQPValue::ByteArray(b) => Value::String(String::from_utf8_lossy(b.as_slice()).into()),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(json).collect()),
        AMQPValue::FieldTable(t) => Value::Object(to_json(t)),
        AMQPValue::Void => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabbitmq_types_round_trip() {
        let src = serde_json::json!({
            "x-message-ttl": 60000,
            "x-dead-letter-exchange": "dlx",
            "x-single-active-consumer": true,
            "ratio": 0.5,
            "list": [1, "a", [true]],
            "nested": {"k": -3}
        });
        let t = to_field_table(src.as_object().unwrap()).unwrap();
        assert_eq!(
            t.inner().get("x-message-ttl"),
            Some(&AMQPValue::LongLongInt(60000))
        );
        assert!(matches!(
            t.inner().get("x-dead-letter-exchange"),
            Some(AMQPValue::LongString(_))
        ));
        assert_eq!(Value::Object(to_json(&t)), src);
    }

    #[test]
    fn what_cannot_be_converted_is_named() {
        let big = serde_json::json!({"x-max-length": 18446744073709551615u64});
        let e = to_field_table(big.as_object().unwrap()).unwrap_err();
        assert!(e.contains("x-max-length"), "{e}");
        let null = serde_json::json!({"x-max-length": null});
        assert!(to_field_table(null.as_object().unwrap()).is_err());
        let mut deep = Value::Bool(true);
        for _ in 0..(MAX_DEPTH + 5) {
            deep = Value::Array(vec![deep]);
        }
        let e = to_field_table(serde_json::json!({ "d": deep }).as_object().unwrap()).unwrap_err();
        assert!(e.contains("deeper"), "{e}");
    }
}
