//! Request bodies as RabbitMQ's management reads them (`rabbit_mgmt_util:decode`): a JSON
//! object (an empty body is an empty object), required keys reported all at once as
//! `[{key_missing,write},{key_missing,read}]`, tags as a list or a comma-separated string.

use amq_protocol_types::FieldTable;
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::broker::json_args;

/// The body as a JSON object; anything else is 400 `not_json`.
pub fn object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ApiError::bad_request("not_json")),
    }
}

/// 400 naming every key of `keys` the body lacks, in RabbitMQ's form.
pub fn require(body: &Map<String, Value>, keys: &[&str]) -> Result<(), ApiError> {
    let missing: Vec<String> = keys
        .iter()
        .filter(|k| !body.contains_key(**k))
        .map(|k| format!("{{key_missing,{k}}}"))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!("[{}]", missing.join(","))))
    }
}

/// A string field (required keys are checked first with `require`); a value of another
/// type is refused rather than guessed at.
pub fn string(body: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ApiError::bad_request(format!(
            "{key} should be a string, actually was {other}"
        ))),
    }
}

/// Tags as a list of strings or one comma-separated string (empty entries dropped).
/// A boolean field (`true`/`false`, or those words as strings, as RabbitMQ's form posts
/// send them); `default` when absent or null.
pub fn flag(body: &Map<String, Value>, key: &str, default: bool) -> Result<bool, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(v)) => Ok(*v),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a boolean"))),
    }
}

/// An `arguments` object of a request body as an AMQP table (absent, null or "" is
/// empty).
pub fn table(body: &Map<String, Value>, key: &str) -> Result<FieldTable, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(FieldTable::default()),
        Some(Value::Object(o)) => json_args::to_field_table(o).map_err(ApiError::bad_request),
        Some(Value::String(s)) if s.is_empty() => Ok(FieldTable::default()),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be an object"))),
    }
}

pub fn tags(value: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect()
    };
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(split(s)),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| match t {
                Value::String(s) => Ok(s.trim().to_owned()),
                other => Err(ApiError::bad_request(format!("invalid tag {other}"))),
            })
            .filter(|t| !matches!(t, Ok(s) if s.is_empty()))
            .collect(),
        Some(other) => Err(ApiError::bad_request(format!("invalid tags {other}"))),
    }
}

/// How a JSON value reads in RabbitMQ's validation messages (Erlang terms: a string is
/// a binary, `<<"x">>`).
pub fn erlang_term(v: &Value) -> String {
    match v {
        Value::String(s) => format!("<<\"{s}\">>"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_and_keys_as_rabbitmq_reads_them() {
        assert!(object(b"").unwrap().is_empty());
        assert_eq!(object(b"[1]").unwrap_err().reason, "not_json");
        assert_eq!(object(b"{nope").unwrap_err().reason, "not_json");
        let body = object(br#"{"configure": ".*"}"#).unwrap();
        assert_eq!(
            require(&body, &["configure", "write", "read"])
                .unwrap_err()
                .reason,
            "[{key_missing,write},{key_missing,read}]"
        );
        assert_eq!(tags(Some(&json!("a, b,,"))).unwrap(), ["a", "b"]);
        assert_eq!(tags(Some(&json!(["x", ""]))).unwrap(), ["x"]);
        assert_eq!(erlang_term(&json!("x")), "<<\"x\">>");
    }
}
