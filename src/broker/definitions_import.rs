//! RabbitMQ's definitions JSON in and out: what `rabbitmqctl export_definitions` and the
//! management API's `/api/definitions` write, and `load_definitions` / `import_definitions`
//! read — users, vhosts, permissions, topic permissions, parameters, global parameters,
//! policies, queues, exchanges and bindings.
//!
//! Import is all or nothing: the whole file is parsed, checked and planned against the
//! running broker first (an error names the JSON path, e.g. `users[3].password_hash`, or
//! the item, and changes nothing); then the access database is replaced in one durable
//! write, and the queues, exchanges and bindings the broker does not have yet are
//! declared. Only a storage failure in that last step can leave part of a file applied
//! (it is reported). As in RabbitMQ, what already exists is left as it is.

use std::sync::Arc;

use serde::de::Deserializer;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use std::collections::{HashMap, HashSet};

use amq_protocol_types::AMQPValue;

use super::access_db::{
    AccessDb, GlobalParameterDef, ParameterDef, PermissionDef, PolicyDef, TopicPermissionDef,
    UserDef, UserLimits, VHostDef, VHostLimits,
};
use super::dead_letter::encode_table;
use super::declare::check_x_match;
use super::declare::{BindSpec, ExchangeSpec, QueueSpec};
use super::dedup::DedupCache;
use super::delayed::delayed_kind;
use super::error::BrokerError;
use super::exchange::ExchangeKind;
use super::handle::BrokerHandle;
use super::json_args;
use super::password::{HashAlgorithm, PasswordHash};
use super::queue::{args, stream_args, QueueType};

/// Largest definitions file accepted.
pub const MAX_FILE_BYTES: usize = 64 << 20;
/// The RabbitMQ version whose format Warren reads and writes.
const RABBIT_VERSION: &str = "3.10.8";
/// Work on behalf of no connection: no permission checks (see `VHost::authorize`).
const NO_CONNECTION: u64 = 0;

#[derive(Deserialize)]
struct File {
    #[serde(default)]
    users: Vec<UserIn>,
    #[serde(default)]
    vhosts: Vec<VHostIn>,
    #[serde(default)]
    permissions: Vec<PermissionDef>,
    #[serde(default)]
    topic_permissions: Vec<TopicPermissionDef>,
    #[serde(default)]
    parameters: Vec<ParameterDef>,
    #[serde(default)]
    global_parameters: Vec<GlobalParameterDef>,
    #[serde(default)]
    policies: Vec<PolicyIn>,
    #[serde(default)]
    queues: Vec<QueueIn>,
    #[serde(default)]
    exchanges: Vec<ExchangeIn>,
    #[serde(default)]
    bindings: Vec<BindingIn>,
}

#[derive(Deserialize)]
struct UserIn {
    name: String,
    #[serde(default)]
    password_hash: Option<String>,
    /// A plain password (RabbitMQ accepts one on import and hashes it).
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    hashing_algorithm: Option<String>,
    /// A list in 3.10's exports, a comma-separated string in older ones.
    #[serde(default, deserialize_with = "tags")]
    tags: Vec<String>,
    #[serde(default)]
    limits: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct VHostIn {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    metadata: Option<VHostMetadata>,
}

#[derive(Deserialize)]
struct VHostMetadata {
    #[serde(default)]
    description: Option<String>,
    #[serde(default, deserialize_with = "tags")]
    tags: Vec<String>,
}

#[derive(Deserialize)]
struct PolicyIn {
    vhost: String,
    name: String,
    pattern: String,
    #[serde(rename = "apply-to", default = "apply_to_all")]
    apply_to: String,
    definition: Map<String, Value>,
    #[serde(default)]
    priority: i64,
}

fn apply_to_all() -> String {
    "all".into()
}

#[derive(Deserialize)]
struct QueueIn {
    name: String,
    vhost: String,
    #[serde(default = "yes")]
    durable: bool,
    #[serde(default)]
    auto_delete: bool,
    #[serde(default)]
    arguments: Map<String, Value>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct ExchangeIn {
    name: String,
    vhost: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default = "yes")]
    durable: bool,
    #[serde(default)]
    auto_delete: bool,
    #[serde(default)]
    internal: bool,
    #[serde(default)]
    arguments: Map<String, Value>,
}

#[derive(Deserialize)]
struct BindingIn {
    source: String,
    vhost: String,
    destination: String,
    destination_type: String,
    #[serde(default)]
    routing_key: String,
    #[serde(default)]
    arguments: Map<String, Value>,
}

/// Tags as a list of strings or one comma-separated string.
fn tags<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Tags {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Tags::deserialize(d)? {
        Tags::List(l) => l,
        Tags::Text(t) => t
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect(),
    })
}

/// A limits object's value for `key`: an integer, or absent.
fn limit(m: &Map<String, Value>, key: &str, at: &str) -> Result<Option<i64>, String> {
    match m.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| format!("{at}.{key}: expected an integer, got {v}")),
    }
}

/// Parses a definitions file; errors name the JSON path and position.
fn parse(bytes: &[u8]) -> Result<File, String> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(format!(
            "the file is {} bytes, more than the {MAX_FILE_BYTES} accepted",
            bytes.len()
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let file: File = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })?;
    de.end()
        .map_err(|e| format!("after the definitions: {e}"))?;
    Ok(file)
}

/// What an import would do, checked: the new access database and the declarations.
struct Plan {
    exchanges: Vec<(String, String, ExchangeIn, Vec<u8>)>,
    queues: Vec<(String, QueueIn, Vec<u8>)>,
    bindings: Vec<(String, BindingIn, Vec<u8>)>,
}

/// Applies the file's access part to `db` (a copy the caller commits only if this
/// succeeds) and checks its queues, exchanges and bindings against what the model would
/// refuse, so that only a storage failure can stop them once the access part is written.
fn plan(broker: &BrokerHandle, db: &mut AccessDb, file: File) -> Result<Plan, String> {
    for (i, v) in file.vhosts.into_iter().enumerate() {
        let at = format!("vhosts[{i}]");
        if v.name.is_empty() || v.name.len() > 255 {
            return Err(format!("{at}: invalid vhost name '{}'", v.name));
        }
        let (meta_desc, tags) = v
            .metadata
            .map_or((None, vec![]), |m| (m.description, m.tags));
        let limits = db
            .vhost(&v.name)
            .map(|d| d.limits.clone())
            .unwrap_or_default();
        db.put_vhost(VHostDef {
            description: v.description.or(meta_desc).unwrap_or_default(),
            name: v.name,
            tags,
            limits,
        });
    }
    for (i, u) in file.users.into_iter().enumerate() {
        let at = format!("users[{i}]");
        let algorithm = u
            .hashing_algorithm
            .as_deref()
            .unwrap_or(HashAlgorithm::Sha256.rabbit_name());
        let alg = HashAlgorithm::from_rabbit_name(algorithm)
            .ok_or_else(|| format!("{at}.hashing_algorithm: unknown algorithm '{algorithm}'"))?;
        let hash = match (u.password_hash, u.password) {
            (Some(h), _) => PasswordHash::from_base64(alg, &h)
                .map_err(|e| format!("{at}.password_hash: {e}"))?,
            (None, Some(p)) => PasswordHash::hash_new(&p, alg),
            (None, None) => PasswordHash::none(),
        };
        let lim = u.limits.unwrap_or_default();
        let limits = UserLimits {
            max_connections: limit(&lim, "max-connections", &format!("{at}.limits"))?,
            max_channels: limit(&lim, "max-channels", &format!("{at}.limits"))?,
        };
        db.put_user(UserDef {
            name: u.name,
            password_hash: hash.to_base64(),
            hashing_algorithm: alg.rabbit_name().into(),
            tags: u.tags,
            limits,
        })
        .map_err(|e| format!("{at}: {e}"))?;
    }
    for (i, p) in file.permissions.into_iter().enumerate() {
        db.set_permission(p)
            .map_err(|e| format!("permissions[{i}]: {e}"))?;
    }
    for (i, t) in file.topic_permissions.into_iter().enumerate() {
        db.set_topic_permission(t)
            .map_err(|e| format!("topic_permissions[{i}]: {e}"))?;
    }
    for (i, p) in file.parameters.into_iter().enumerate() {
        let at = format!("parameters[{i}]");
        if db.vhost(&p.vhost).is_none() {
            return Err(format!("{at}: no vhost '{}'", p.vhost));
        }
        if p.component == "operator_policy" {
            // RabbitMQ keeps operator policies as parameters of this component.
            let mut value = p.value.clone();
            if !value.is_object() {
                return Err(format!("{at}.value: expected an object"));
            }
            // RabbitMQ 3.10 exports an operator policy's definition as [key, value] pairs.
            if let Some(pairs) = value.get("definition").and_then(Value::as_array) {
                let object: Option<Map<String, Value>> = pairs
                    .iter()
                    .map(|kv| Some((kv.get(0)?.as_str()?.to_owned(), kv.get(1)?.clone())))
                    .collect();
                let object = object.ok_or_else(|| format!("{at}.value.definition: bad pairs"))?;
                value["definition"] = Value::Object(object);
            }
            value["vhost"] = Value::String(p.vhost.clone());
            value["name"] = Value::String(p.name.clone());
            let def: PolicyIn =
                serde_json::from_value(value).map_err(|e| format!("{at}.value: {e}"))?;
            let policy = PolicyDef {
                vhost: p.vhost.clone(),
                name: p.name.clone(),
                pattern: def.pattern,
                apply_to: def.apply_to,
                definition: def.definition,
                priority: def.priority,
            };
            super::policy::validate(&policy, true).map_err(|e| format!("{at}.value.{e}"))?;
            db.set_policy(policy, true)
                .map_err(|e| format!("{at}: {e}"))?;
        } else if p.component == "vhost-limits" {
            let m = p
                .value
                .as_object()
                .ok_or_else(|| format!("{at}.value: expected an object"))?;
            let limits = VHostLimits {
                max_connections: limit(m, "max-connections", &format!("{at}.value"))?,
                max_queues: limit(m, "max-queues", &format!("{at}.value"))?,
            };
            db.set_vhost_limits(&p.vhost, limits)?;
        } else {
            db.parameters
                .retain(|q| (&q.vhost, &q.component, &q.name) != (&p.vhost, &p.component, &p.name));
            db.parameters.push(p);
        }
    }
    for g in file.global_parameters {
        db.global_parameters.retain(|q| q.name != g.name);
        db.global_parameters.push(g);
    }
    for (i, p) in file.policies.into_iter().enumerate() {
        let def = PolicyDef {
            vhost: p.vhost,
            name: p.name,
            pattern: p.pattern,
            apply_to: p.apply_to,
            definition: p.definition,
            priority: p.priority,
        };
        super::policy::validate(&def, false).map_err(|e| format!("policies[{i}].{e}"))?;
        db.set_policy(def, false)
            .map_err(|e| format!("policies[{i}]: {e}"))?;
    }
    let vhost_ok = |db: &AccessDb, v: &str, at: &str| {
        db.vhost(v)
            .map(|_| ())
            .ok_or_else(|| format!("{at}: no vhost '{v}'"))
    };
    let mut exchanges = Vec::new();
    for (i, x) in file.exchanges.into_iter().enumerate() {
        let at = format!("exchanges[{i}] ('{}' in vhost '{}')", x.name, x.vhost);
        vhost_ok(db, &x.vhost, &at)?;
        if x.name.is_empty() || x.name.starts_with("amq.") {
            continue; // built in: every vhost has them
        }
        if ExchangeKind::parse(&x.kind).is_none()
            && !matches!(
                x.kind.as_str(),
                "x-delayed-message" | "x-message-deduplication"
            )
        {
            return Err(format!("{at}: unknown exchange type '{}'", x.kind));
        }
        let table = json_args::to_field_table(&x.arguments).map_err(|e| format!("{at}: {e}"))?;
        match table.inner().get("alternate-exchange") {
            None | Some(AMQPValue::LongString(_)) => {}
            Some(_) => return Err(format!("{at}: alternate-exchange must be a string")),
        }
        match x.kind.as_str() {
            "x-delayed-message" => {
                delayed_kind(&table).map_err(|e| format!("{at}: {e}"))?;
            }
            "x-message-deduplication" => {
                DedupCache::from_args(&table).map_err(|e| format!("{at}: {e}"))?;
            }
            _ => {}
        }
        exchanges.push((at, x.vhost.clone(), x, encode_table(&table)));
    }
    let mut queues = Vec::new();
    for (i, q) in file.queues.into_iter().enumerate() {
        let at = format!("queues[{i}] ('{}' in vhost '{}')", q.name, q.vhost);
        vhost_ok(db, &q.vhost, &at)?;
        let mut table =
            json_args::to_field_table(&q.arguments).map_err(|e| format!("{at}: {e}"))?;
        if let Some(kind) = q.kind.as_deref().filter(|k| *k != "classic") {
            table.insert(
                "x-queue-type".into(),
                amq_protocol_types::AMQPValue::LongString(kind.into()),
            );
        }
        let kind = QueueType::from_args(&table).map_err(|e| format!("{at}: {e}"))?;
        args::validate_new(&table, &q.name, &q.vhost).map_err(|e| format!("{at}: {e}"))?;
        match kind {
            QueueType::Stream => stream_args::validate_flags(
                &table,
                q.durable,
                false,
                q.auto_delete,
                &q.name,
                &q.vhost,
            ),
            QueueType::Quorum => stream_args::check_replicated_flags(
                q.durable,
                false,
                q.auto_delete,
                &q.name,
                &q.vhost,
            ),
            QueueType::Classic => Ok(()),
        }
        .map_err(|e| format!("{at}: {e}"))?;
        if q.name.is_empty() {
            return Err(format!("{at}: a queue needs a name"));
        }
        if q.name.starts_with("amq.") {
            continue; // RabbitMQ's import skips reserved names too
        }
        queues.push((at, q, encode_table(&table)));
    }
    // What the vhosts will hold after the import: their queues and exchanges now, plus the
    // file's (for max-queues and for the bindings' ends).
    let mut present: HashMap<String, (HashSet<String>, HashMap<String, String>)> = HashMap::new();
    for name in queues
        .iter()
        .map(|(_, q, _)| &q.vhost)
        .chain(exchanges.iter().map(|x| &x.1))
    {
        if !present.contains_key(name) {
            let now = broker
                .vhost(name)
                .map(|vh| vh.with(|m| m.queue_and_exchange_names()))
                .unwrap_or_default();
            present.insert(name.clone(), now);
        }
    }
    let mut new_queues: HashMap<&str, u64> = HashMap::new();
    for (at, q, _) in &queues {
        let (names, _) = present.entry(q.vhost.clone()).or_default();
        if names.insert(q.name.clone()) {
            let n = new_queues.entry(&q.vhost).or_default();
            *n += 1;
            let limit = db
                .vhost(&q.vhost)
                .and_then(|v| super::access_db::limit_value(v.limits.max_queues));
            if limit.is_some_and(|max| names.len() as u64 > max) {
                return Err(format!(
                    "{at}: the queue limit of vhost '{}' ({}) would be passed",
                    q.vhost,
                    limit.unwrap_or(0)
                ));
            }
        }
    }
    for (_, vhost, x, _) in &exchanges {
        let (_, kinds) = present.entry(vhost.clone()).or_default();
        kinds
            .entry(x.name.clone())
            .or_insert_with(|| x.kind.clone());
    }
    let mut bindings = Vec::new();
    for (i, b) in file.bindings.into_iter().enumerate() {
        let at = format!("bindings[{i}]");
        vhost_ok(db, &b.vhost, &at)?;
        if !matches!(b.destination_type.as_str(), "queue" | "exchange") {
            return Err(format!(
                "{at}.destination_type: '{}' is not queue or exchange",
                b.destination_type
            ));
        }
        if b.source.is_empty() {
            continue; // the default exchange's implicit bindings
        }
        let table = json_args::to_field_table(&b.arguments).map_err(|e| format!("{at}: {e}"))?;
        if b.destination.is_empty() {
            return Err(format!(
                "{at}: the default exchange cannot be a destination"
            ));
        }
        let (queue_names, exchange_kinds) = match present.get(&b.vhost) {
            Some(p) => (Some(&p.0), Some(&p.1)),
            None => (None, None),
        };
        let builtin = |n: &str| n.starts_with("amq.");
        let source_kind = exchange_kinds
            .and_then(|k| k.get(&b.source))
            .cloned()
            .or_else(|| builtin(&b.source).then(|| builtin_kind(&b.source)))
            .or_else(|| {
                broker
                    .vhost(&b.vhost)
                    .and_then(|vh| vh.with(|m| m.exchange_type(&b.source)))
            })
            .ok_or_else(|| format!("{at}: no exchange '{}' in vhost '{}'", b.source, b.vhost))?;
        let dest_exists = match b.destination_type.as_str() {
            "queue" => queue_names.is_some_and(|q| q.contains(&b.destination)),
            _ => {
                builtin(&b.destination)
                    || exchange_kinds.is_some_and(|k| k.contains_key(&b.destination))
            }
        } || broker.vhost(&b.vhost).is_some_and(|vh| {
            vh.with(|m| match b.destination_type.as_str() {
                "queue" => m.has_queue(&b.destination),
                _ => m.has_exchange(&b.destination),
            })
        });
        if !dest_exists {
            return Err(format!(
                "{at}: no {} '{}' in vhost '{}'",
                b.destination_type, b.destination, b.vhost
            ));
        }
        if source_kind == "headers" {
            check_x_match(&table).map_err(|e| format!("{at}: {e}"))?;
        }
        bindings.push((at, b, encode_table(&table)));
    }
    Ok(Plan {
        exchanges,
        queues,
        bindings,
    })
}

/// The type of a built-in `amq.*` exchange.
fn builtin_kind(name: &str) -> String {
    match name {
        "amq.fanout" => "fanout",
        "amq.topic" | "amq.rabbitmq.trace" => "topic",
        "amq.headers" | "amq.match" => "headers",
        _ => "direct",
    }
    .into()
}

/// Imports a definitions file into the broker: all of it or, if anything in it is wrong,
/// none of it. Returns a one-line summary.
pub fn import_json(broker: &BrokerHandle, bytes: &[u8]) -> Result<String, String> {
    let file = parse(bytes)?;
    let counts = (
        file.users.len(),
        file.vhosts.len(),
        file.queues.len(),
        file.exchanges.len(),
        file.bindings.len(),
    );
    // Planned on a copy of the database, committed only if every part of the file checks
    // out; committing opens the vhosts it adds (`update_access`; in a cluster, on every
    // node, refused whole if another change came first and the result no longer holds).
    let plan = broker
        .update_access(|db| plan(broker, db, file))
        .map_err(|e| e.text().to_owned())?;
    let storage = |at: &str, e: BrokerError| format!("{at}: {e}");
    for (at, vhost, x, raw) in &plan.exchanges {
        let vh = broker
            .vhost(vhost)
            .ok_or_else(|| format!("{at}: vhost gone"))?;
        let spec = ExchangeSpec {
            name: &x.name,
            kind: &x.kind,
            passive: false,
            durable: x.durable,
            auto_delete: x.auto_delete,
            internal: x.internal,
            args_raw: raw,
        };
        vh.try_with(|m| {
            if m.has_exchange(&x.name) {
                return Ok(());
            }
            m.exchange_declare(NO_CONNECTION, &spec)
        })
        .map_err(|e| storage(at, e))?;
    }
    for (at, q, raw) in &plan.queues {
        let vh = broker
            .vhost(&q.vhost)
            .ok_or_else(|| format!("{at}: vhost gone"))?;
        let spec = QueueSpec {
            name: &q.name,
            passive: false,
            durable: q.durable,
            exclusive: false,
            auto_delete: q.auto_delete,
            args_raw: raw,
        };
        vh.try_with(|m| {
            if m.has_queue(&q.name) {
                return Ok(());
            }
            m.queue_declare(NO_CONNECTION, &spec).map(|_| ())
        })
        .map_err(|e| storage(at, e))?;
    }
    for (at, b, raw) in &plan.bindings {
        let vh = broker
            .vhost(&b.vhost)
            .ok_or_else(|| format!("{at}: vhost gone"))?;
        let spec = BindSpec {
            source: &b.source,
            routing_key: &b.routing_key,
            args_raw: raw,
            bind: true,
        };
        vh.try_with(|m| {
            if b.destination_type == "queue" {
                m.queue_bind(NO_CONNECTION, &b.destination, &spec)
            } else {
                m.exchange_bind(NO_CONNECTION, &b.destination, &spec)
            }
        })
        .map_err(|e| storage(at, e))?;
    }
    let (u, v, q, x, b) = counts;
    Ok(format!(
        "{u} users, {v} vhosts, {q} queues, {x} exchanges, {b} bindings"
    ))
}

/// The broker's definitions as RabbitMQ 3.10 exports them (one JSON document).
pub fn export_json(broker: &BrokerHandle) -> String {
    let mut doc = broker.read_access(|db| {
        let users: Vec<Value> = db
            .users()
            .map(|u| {
                let mut limits = Map::new();
                if let Some(n) = u.def.limits.max_connections {
                    limits.insert("max-connections".into(), n.into());
                }
                if let Some(n) = u.def.limits.max_channels {
                    limits.insert("max-channels".into(), n.into());
                }
                json!({
                    "name": u.def.name,
                    "password_hash": u.def.password_hash,
                    "hashing_algorithm": u.def.hashing_algorithm,
                    "tags": u.def.tags,
                    "limits": limits,
                })
            })
            .collect();
        let mut parameters: Vec<Value> = db
            .parameters
            .iter()
            .map(|p| serde_json::to_value(p).unwrap_or_default())
            .collect();
        let vhosts: Vec<Value> = db
            .vhosts()
            .map(|v| {
                let mut pairs = Vec::new();
                let mut value = Map::new();
                for (key, l) in [
                    ("max-connections", v.limits.max_connections),
                    ("max-queues", v.limits.max_queues),
                ] {
                    if let Some(n) = l {
                        pairs.push(json!([key, n]));
                        value.insert(key.into(), n.into());
                    }
                }
                if !value.is_empty() {
                    parameters.push(json!({
                        "vhost": v.name, "component": "vhost-limits", "name": "limits",
                        "value": value,
                    }));
                }
                json!({
                    "name": v.name,
                    "limits": pairs,
                    "metadata": {"description": v.description, "tags": v.tags},
                })
            })
            .collect();
        json!({
            "rabbit_version": RABBIT_VERSION,
            "rabbitmq_version": RABBIT_VERSION,
            "product_name": "Warren",
            "product_version": env!("CARGO_PKG_VERSION"),
            "users": users,
            "vhosts": vhosts,
            "permissions": db.permissions().collect::<Vec<_>>(),
            "topic_permissions": db.topic_permissions().collect::<Vec<_>>(),
            "parameters": parameters,
            "global_parameters": db.global_parameters,
            "policies": db.policies,
        })
    });
    let (mut queues, mut exchanges, mut bindings) = (Vec::new(), Vec::new(), Vec::new());
    let mut names: Vec<Arc<str>> = broker.vhost_names();
    names.sort();
    for name in names {
        let Some(vh) = broker.vhost(&name) else {
            continue;
        };
        let defs = vh.with(|m| m.durable_definitions());
        let args = |hex: &str| {
            super::definitions::from_hex(hex)
                .and_then(|raw| crate::protocol::table::decode(&raw).ok())
                .map(|t| Value::Object(json_args::to_json(&t)))
                .unwrap_or_else(|| json!({}))
        };
        for q in &defs.queues {
            let arguments = args(&q.arguments);
            let kind = match arguments.get("x-queue-type").and_then(Value::as_str) {
                Some("stream") => "stream",
                _ => "classic",
            };
            queues.push(json!({
                "name": q.name, "vhost": &*name, "durable": true,
                "auto_delete": q.auto_delete, "arguments": arguments, "type": kind,
            }));
        }
        for x in &defs.exchanges {
            exchanges.push(json!({
                "name": x.name, "vhost": &*name, "type": x.kind, "durable": true,
                "auto_delete": x.auto_delete, "internal": x.internal,
                "arguments": args(&x.arguments),
            }));
        }
        for b in &defs.bindings {
            bindings.push(json!({
                "source": b.source, "vhost": &*name, "destination": b.destination,
                "destination_type": b.destination_type, "routing_key": b.routing_key,
                "arguments": args(&b.arguments),
            }));
        }
    }
    doc["queues"] = Value::Array(queues);
    doc["exchanges"] = Value::Array(exchanges);
    doc["bindings"] = Value::Array(bindings);
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Imports `input` into a fresh broker on a temporary data dir (reused across inputs and
/// reset between them: `fuzz_broker`): must not panic, and an import that fails must
/// leave the export as it was. Used by the `definitions_json` fuzz target and its
/// regression replay.
#[doc(hidden)]
pub fn fuzz_import(input: &[u8]) {
    use super::fuzz_broker;
    fuzz_broker::with_broker("defs", fuzz_broker::fresh, |broker, _| {
        let before = export_json(broker);
        if import_json(broker, input).is_err() {
            assert_eq!(
                export_json(broker),
                before,
                "a failed import changed the broker"
            );
        }
    });
}
