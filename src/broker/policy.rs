//! Policies and operator policies: queue and exchange settings chosen by name pattern
//! rather than by the application's x-arguments, resolved as RabbitMQ 3.10 resolves them.
//!
//! - Of the policies whose `apply-to` covers the object and whose pattern matches its
//!   name (searched, unanchored), the one with the highest priority applies; the same,
//!   separately, for operator policies (`rabbit_policy:match/2`).
//! - A key set by both the policy and the operator policy takes the smaller value
//!   (operator policies only hold numeric limits: `merge_policy_value`).
//! - Against the queue's own x-argument: `expires`, `message-ttl`, `max-length` and
//!   `max-length-bytes` take the smaller value; `dead-letter-exchange`,
//!   `dead-letter-routing-key` and `overflow` take the argument's
//!   (`rabbit_amqqueue_process:process_args_policy`). An exchange's `alternate-exchange`
//!   argument wins over a policy's (`rabbit_policy:get_arg/3`).
//!
//! The result is an arguments table as if the application had declared it, which
//! `QueueFeatures::from_args` reads: the hot paths never look at policies.

use std::sync::Arc;

use amq_protocol_types::{AMQPValue, FieldTable, LongString};
use regex::bytes::Regex;
use serde_json::{Map, Value};

use super::access_db::PolicyDef;
use super::grants;
use super::queue::quorum::QuorumState;
use super::queue::QueueFeatures;
use super::vhost::{now_millis, VHost};
use crate::protocol::table::int_value;

/// Keys a policy may set (RabbitMQ 3.10's policy validators). Those Warren acts on come
/// first; the others are accepted so that RabbitMQ's definitions import unchanged, and
/// have no effect (mirroring, federation, quorum and stream settings).
const QUEUE_KEYS_MIN: &[&str] = &[
    "expires",
    "message-ttl",
    "max-length",
    "max-length-bytes",
    "delivery-limit",
];
const QUEUE_KEYS_ARG: &[&str] = &[
    "dead-letter-exchange",
    "dead-letter-routing-key",
    "dead-letter-strategy",
    "overflow",
];
const ACCEPTED_KEYS: &[&str] = &[
    "alternate-exchange",
    "queue-mode",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "max-age",
    "stream-max-segment-size-bytes",
    "initial-cluster-size",
    "queue-leader-locator",
    "queue-master-locator",
    "ha-mode",
    "ha-params",
    "ha-sync-mode",
    "ha-sync-batch-size",
    "ha-promote-on-shutdown",
    "ha-promote-on-failure",
    "federation-upstream",
    "federation-upstream-set",
];
/// Keys an operator policy may set.
const OPERATOR_KEYS: &[&str] = &[
    "expires",
    "message-ttl",
    "max-length",
    "max-length-bytes",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "delivery-limit",
];

/// What a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Queue,
    Exchange,
}

/// A policy, compiled.
#[derive(Debug)]
struct Compiled {
    name: String,
    pattern: Regex,
    queues: bool,
    exchanges: bool,
    priority: i64,
    definition: Map<String, Value>,
}

/// A vhost's policies and operator policies, compiled. Shared (`Arc`) with the model.
#[derive(Debug, Default)]
pub struct PolicySet {
    policies: Vec<Compiled>,
    operator: Vec<Compiled>,
}

/// Checks one policy definition: known keys, values of the right type. `operator` for an
/// operator policy. Errors start with the field they are about (`apply-to: …`,
/// `definition.max-length: …`).
pub fn validate(p: &PolicyDef, operator: bool) -> Result<(), String> {
    if !matches!(p.apply_to.as_str(), "queues" | "exchanges" | "all") {
        return Err(format!(
            "apply-to: '{}' is not queues, exchanges or all",
            p.apply_to
        ));
    }
    grants::compile(&p.pattern).map_err(|e| format!("pattern: {e}"))?;
    if p.definition.is_empty() {
        return Err("definition: the definition is empty".into());
    }
    for (key, value) in &p.definition {
        let known = if operator {
            OPERATOR_KEYS.contains(&key.as_str())
        } else {
            QUEUE_KEYS_MIN.contains(&key.as_str())
                || QUEUE_KEYS_ARG.contains(&key.as_str())
                || ACCEPTED_KEYS.contains(&key.as_str())
        };
        if !known {
            return Err(format!(
                "definition.{key}: '{key}' is not a recognised policy setting"
            ));
        }
        let ok = match key.as_str() {
            "expires" => value.as_i64().is_some_and(|n| n >= 1),
            "message-ttl"
            | "max-length"
            | "max-length-bytes"
            | "delivery-limit"
            | "max-in-memory-length"
            | "max-in-memory-bytes" => value.as_i64().is_some_and(|n| n >= 0),
            "alternate-exchange" | "dead-letter-exchange" | "dead-letter-routing-key" => {
                value.is_string()
            }
            "overflow" => matches!(
                value.as_str(),
                Some("drop-head" | "reject-publish" | "reject-publish-dlx")
            ),
            "queue-mode" => matches!(value.as_str(), Some("default" | "lazy")),
            "dead-letter-strategy" => {
                matches!(value.as_str(), Some("at-most-once" | "at-least-once"))
            }
            _ => true,
        };
        if !ok {
            return Err(format!("definition.{key}: {value} is not a valid value"));
        }
    }
    Ok(())
}

fn compile(p: &PolicyDef) -> Option<Compiled> {
    Some(Compiled {
        name: p.name.clone(),
        pattern: grants::compile(&p.pattern).ok()?,
        queues: matches!(p.apply_to.as_str(), "queues" | "all"),
        exchanges: matches!(p.apply_to.as_str(), "exchanges" | "all"),
        priority: p.priority,
        definition: p.definition.clone(),
    })
}

impl PolicySet {
    /// The policies of `vhost` among `policies` and `operator` (validated already; one
    /// that does not compile is skipped).
    pub fn new(vhost: &str, policies: &[PolicyDef], operator: &[PolicyDef]) -> PolicySet {
        let pick = |list: &[PolicyDef]| {
            list.iter()
                .filter(|p| p.vhost == vhost)
                .filter_map(compile)
                .collect()
        };
        PolicySet {
            policies: pick(policies),
            operator: pick(operator),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty() && self.operator.is_empty()
    }

    /// The policy (of `list`) that applies to `name`: the highest priority among those
    /// that match; on a tie, the first defined.
    fn matching<'a>(list: &'a [Compiled], target: Target, name: &str) -> Option<&'a Compiled> {
        list.iter()
            .filter(|p| match target {
                Target::Queue => p.queues,
                Target::Exchange => p.exchanges,
            })
            .filter(|p| p.pattern.is_match(name.as_bytes()))
            .fold(None, |best: Option<&Compiled>, p| match best {
                Some(b) if b.priority >= p.priority => Some(b),
                _ => Some(p),
            })
    }

    /// The name of the policy applied to `name`, if any (shown by the management API).
    pub fn applied(&self, target: Target, name: &str) -> Option<&str> {
        Self::matching(&self.policies, target, name).map(|p| p.name.as_str())
    }

    /// The definition in effect for `name`: its policy's, with the operator policy's keys
    /// merged in (numbers: the smaller; others: the policy's own when it has the key).
    pub fn effective_definition(&self, target: Target, name: &str) -> Map<String, Value> {
        let mut out = Self::matching(&self.policies, target, name)
            .map(|p| p.definition.clone())
            .unwrap_or_default();
        if let Some(op) = Self::matching(&self.operator, target, name) {
            for (k, v) in &op.definition {
                let merged = match (out.get(k).and_then(Value::as_i64), v.as_i64()) {
                    (Some(a), Some(b)) => a.min(b).into(),
                    _ => out.get(k).cloned().unwrap_or_else(|| v.clone()),
                };
                out.insert(k.clone(), merged);
            }
        }
        out
    }

    /// The name of the operator policy applied to `name`, if any.
    pub fn applied_operator(&self, target: Target, name: &str) -> Option<&str> {
        Self::matching(&self.operator, target, name).map(|p| p.name.as_str())
    }

    /// A key's value from the policies: the policy's, the operator policy's, or the
    /// smaller of the two.
    fn value(&self, target: Target, name: &str, key: &str) -> Option<Value> {
        let get = |list| {
            Self::matching(list, target, name)?
                .definition
                .get(key)
                .cloned()
        };
        match (get(&self.policies), get(&self.operator)) {
            (Some(p), Some(o)) => match (p.as_i64(), o.as_i64()) {
                (Some(a), Some(b)) => Some(a.min(b).into()),
                _ => Some(p),
            },
            (p, o) => p.or(o),
        }
    }

    /// A stream's setting `key` (`max-age`, `max-length-bytes`,
    /// `stream-max-segment-size-bytes`): for streams the policy's value wins over the
    /// queue's argument, as RabbitMQ's `policy_precedence`. Returned as the argument would
    /// be: an integer or a string.
    pub fn stream_setting(&self, name: &str, args: &FieldTable, key: &str) -> Option<AMQPValue> {
        match self.value(Target::Queue, name, key) {
            Some(Value::String(s)) => Some(AMQPValue::LongString(s.as_bytes().into())),
            Some(v) => v.as_i64().map(AMQPValue::LongLongInt),
            None => args.inner().get(format!("x-{key}").as_str()).cloned(),
        }
    }

    /// The arguments a queue named `name` behaves by: its own `args` with the policy's
    /// settings merged in (see the module comment).
    pub fn queue_args(&self, name: &str, args: &FieldTable) -> FieldTable {
        let mut out = args.clone();
        if self.is_empty() {
            return out;
        }
        for key in QUEUE_KEYS_MIN {
            let Some(pol) = self
                .value(Target::Queue, name, key)
                .and_then(|v| v.as_i64())
            else {
                continue;
            };
            let x = format!("x-{key}");
            let merged = match out.inner().get(x.as_str()).and_then(int_value) {
                Some(arg) => arg.min(pol),
                None => pol,
            };
            out.insert(x.as_str().into(), AMQPValue::LongLongInt(merged));
        }
        for key in QUEUE_KEYS_ARG {
            let x = format!("x-{key}");
            if out.inner().contains_key(x.as_str()) {
                continue;
            }
            if let Some(Value::String(s)) = self.value(Target::Queue, name, key) {
                out.insert(
                    x.as_str().into(),
                    AMQPValue::LongString(LongString::from(s.as_bytes())),
                );
            }
        }
        out
    }

    /// The alternate exchange of exchange `name`: its argument, else its policy's.
    pub fn alternate_exchange(&self, name: &str, args: &FieldTable) -> Option<Arc<str>> {
        if let Some(ae) = crate::protocol::table::get_str(args, "alternate-exchange") {
            return Some(ae.into());
        }
        match self.value(Target::Exchange, name, "alternate-exchange")? {
            Value::String(s) => Some(s.into()),
            _ => None,
        }
    }
}

/// Validates a policy given as JSON (with `"operator": true` for an operator policy) and,
/// if valid, resolves it against names and arguments taken from the input: must not
/// panic. Used by the `policy` fuzz target and its regression replay.
#[doc(hidden)]
pub fn fuzz_policy(input: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(input) else {
        return;
    };
    let operator = value
        .get("operator")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let Ok(p) = serde_json::from_value::<PolicyDef>(value) else {
        return;
    };
    if validate(&p, operator).is_err() {
        return;
    }
    let list = std::slice::from_ref(&p);
    let set = if operator {
        PolicySet::new(&p.vhost, &[], list)
    } else {
        PolicySet::new(&p.vhost, list, &[])
    };
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(3));
    args.insert("x-message-ttl".into(), AMQPValue::LongString("bad".into()));
    for name in [p.pattern.as_str(), p.name.as_str(), "", "q"] {
        let _ = set.queue_args(name, &args);
        let _ = set.alternate_exchange(name, &FieldTable::default());
        let _ = set.applied(Target::Queue, name);
    }
}

impl VHost {
    /// Installs the vhost's policies and applies them at once to every queue and exchange
    /// (RabbitMQ applies a changed policy to existing queues too).
    pub fn set_policies(&mut self, set: Arc<PolicySet>) {
        self.policies = set;
        let queues: Vec<Arc<str>> = self.queues.keys().cloned().collect();
        for name in queues {
            self.apply_policy(&name);
        }
        let policies = self.policies.clone();
        for ex in self.exchanges.values_mut() {
            ex.alternate = policies.alternate_exchange(&ex.name, &ex.args);
        }
    }

    /// Recomputes a queue's features from its arguments and the policies, and acts on what
    /// changed: a new or shorter TTL is looked at now, x-expires counts from now, a length
    /// limit is enforced at once (dropped messages dead-lettered as `maxlen`).
    pub(super) fn apply_policy(&mut self, name: &Arc<str>) {
        let Some(q) = self.queues.get_mut(name) else {
            return;
        };
        if q.is_stream() {
            // Classic policy keys do not apply to streams (RabbitMQ's unsupported_policies).
            return self.apply_stream_policy(name);
        }
        let args = self.policies.queue_args(name, &q.args);
        let features = QueueFeatures::from_args(&args);
        if let Some(qs) = q.quorum.as_mut() {
            // `x-delivery-limit` merged with the policies' `delivery-limit`, the lower
            // winning (RabbitMQ's args_policy_lookup with min).
            qs.delivery_limit = QuorumState::from_args(&args).delivery_limit;
        }
        let old = q.set_features(features);
        let new = &q.features;
        let now = now_millis();
        let ttl_changed = new.message_ttl != old.message_ttl;
        let expires = new
            .expires
            .filter(|_| new.expires != old.expires || old.expires.is_none());
        let limited = new.has_length_limit();
        if ttl_changed && new.message_ttl.is_some() {
            self.schedule(name, now);
        }
        if let Some(ms) = expires {
            if let Some(q) = self.queues.get_mut(name) {
                q.last_used = now;
            }
            self.schedule(name, now + ms);
        }
        if limited {
            self.trim(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(name: &str, pattern: &str, apply_to: &str, priority: i64, def: Value) -> PolicyDef {
        PolicyDef {
            vhost: "/".into(),
            name: name.into(),
            pattern: pattern.into(),
            apply_to: apply_to.into(),
            definition: def.as_object().unwrap().clone(),
            priority,
        }
    }

    fn get(t: &FieldTable, key: &str) -> Option<AMQPValue> {
        t.inner().get(key).cloned()
    }

    #[test]
    fn highest_priority_wins_and_apply_to_counts() {
        let set = PolicySet::new(
            "/",
            &[
                policy("low", "^q", "queues", 1, json!({"message-ttl": 100})),
                policy("high", "^q", "all", 5, json!({"max-length": 7})),
                policy(
                    "ex",
                    ".*",
                    "exchanges",
                    9,
                    json!({"alternate-exchange": "ae"}),
                ),
            ],
            &[],
        );
        let t = set.queue_args("q1", &FieldTable::default());
        assert_eq!(get(&t, "x-max-length"), Some(AMQPValue::LongLongInt(7)));
        assert_eq!(get(&t, "x-message-ttl"), None, "only one policy applies");
        assert_eq!(set.applied(Target::Queue, "q1"), Some("high"));
        assert_eq!(set.applied(Target::Queue, "other"), None);
        assert_eq!(
            set.alternate_exchange("x", &FieldTable::default())
                .as_deref(),
            Some("ae")
        );
    }

    #[test]
    fn limits_take_the_smaller_and_arguments_win_the_rest() {
        let set = PolicySet::new(
            "/",
            &[policy(
                "p",
                ".*",
                "queues",
                0,
                json!({"max-length": 10, "message-ttl": 500, "dead-letter-exchange": "pol-dlx"}),
            )],
            &[policy("op", ".*", "queues", 0, json!({"max-length": 4}))],
        );
        let mut args = FieldTable::default();
        args.insert("x-message-ttl".into(), AMQPValue::LongInt(1000));
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("arg-dlx".into()),
        );
        let t = set.queue_args("q", &args);
        assert_eq!(get(&t, "x-max-length"), Some(AMQPValue::LongLongInt(4)));
        assert_eq!(get(&t, "x-message-ttl"), Some(AMQPValue::LongLongInt(500)));
        assert_eq!(
            get(&t, "x-dead-letter-exchange"),
            Some(AMQPValue::LongString("arg-dlx".into()))
        );
    }

    #[test]
    fn definitions_are_validated_as_rabbitmq_does() {
        let ok = policy(
            "p",
            ".*",
            "all",
            0,
            json!({"max-length": 1, "ha-mode": "all"}),
        );
        assert!(validate(&ok, false).is_ok());
        assert!(
            validate(&ok, true).is_err(),
            "ha-mode is no operator policy key"
        );
        for bad in [
            json!({"max-length": "ten"}),
            json!({"expires": 0}),
            json!({"overflow": "sideways"}),
            json!({"max-priority": 5}),
            json!({}),
        ] {
            assert!(
                validate(&policy("p", ".*", "all", 0, bad.clone()), false).is_err(),
                "{bad}"
            );
        }
        assert!(validate(&policy("p", "(", "all", 0, json!({"max-length": 1})), false).is_err());
        assert!(validate(
            &policy("p", ".*", "bogus", 0, json!({"max-length": 1})),
            false
        )
        .is_err());
    }
}
