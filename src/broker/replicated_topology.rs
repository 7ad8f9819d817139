//! Exchanges and bindings in a cluster: the model's side. In RabbitMQ every exchange and
//! every binding is known to every node, so a client publishing on any node routes as a
//! client declaring on another node set up. Here a node tells the cluster (through the
//! replication hook, `replicated.rs`) of each exchange declared or deleted and each
//! binding made or removed by its clients, and applies what the metadata group commits
//! from the other nodes (`apply_topology`).
//!
//! Bindings to classic queues stay on their node, as the queues do; bindings to quorum
//! queues and to exchanges go to every node. The predeclared exchanges (`amq.*` and the
//! default one) exist on every node already.

use serde::{Deserialize, Serialize};

use super::declare::{BindSpec, ExchangeSpec};
use super::exchange::{Dest, Exchange};
use super::replicated::NO_CONNECTION;
use super::vhost::VHost;

/// An exchange as a declaration gives it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExchangeDef {
    pub name: String,
    /// Its type as declared (`direct`, `x-delayed-message`, ...).
    pub kind: String,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    /// Its arguments as the client sent them (an AMQP field table).
    pub arguments: Vec<u8>,
}

/// A binding: from exchange `source` to the queue or exchange `destination`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BindingDef {
    pub source: String,
    pub destination: String,
    /// The destination is an exchange (exchange.bind), not a queue.
    pub to_exchange: bool,
    pub routing_key: String,
    pub arguments: Vec<u8>,
}

/// A change of a vhost's topology, as one node tells the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TopologyChange {
    Declared(ExchangeDef),
    /// The exchange of that name went (and its bindings with it).
    Deleted(String),
    Bound(BindingDef),
    Unbound(BindingDef),
}

fn def_of(ex: &Exchange) -> ExchangeDef {
    ExchangeDef {
        name: ex.name.to_string(),
        kind: ex.type_name().into(),
        durable: ex.durable,
        auto_delete: ex.auto_delete,
        internal: ex.internal,
        arguments: ex.args_raw.clone(),
    }
}

/// Whether an exchange is one every node has from the start.
fn predeclared(name: &str) -> bool {
    name.is_empty() || name.starts_with("amq.")
}

impl VHost {
    /// Tells the cluster of a change a client made here (nothing without a cluster, and
    /// nothing for a change the cluster made).
    fn replicate_topology(&self, change: TopologyChange) {
        if let Some(hook) = self.replication.get().filter(|_| !self.from_cluster) {
            hook.topology(&self.name, change);
        }
    }

    /// Exchange `name` was created here.
    pub(super) fn replicate_exchange_declared(&self, name: &str) {
        if let Some(ex) = self.exchanges.get(name).filter(|_| !predeclared(name)) {
            self.replicate_topology(TopologyChange::Declared(def_of(ex)));
        }
    }

    /// Exchange `name` was deleted here (by a client, or as an auto-delete exchange that
    /// lost its last binding).
    pub(super) fn replicate_exchange_deleted(&self, name: &str) {
        self.replicate_topology(TopologyChange::Deleted(name.into()));
    }

    /// A binding was made (`bind`) or removed here: told to the cluster unless it goes to
    /// a classic queue, which only this node has.
    pub(super) fn replicate_binding(&self, source: &str, dest: &Dest, spec: &BindSpec<'_>) {
        let (destination, to_exchange) = match dest {
            Dest::Exchange(e) => (e, true),
            Dest::Queue(q) => {
                let replicated = self.queues.get(&**q).is_some_and(|q| q.quorum.is_some());
                if !replicated {
                    return;
                }
                (q, false)
            }
        };
        let def = BindingDef {
            source: source.into(),
            destination: destination.to_string(),
            to_exchange,
            routing_key: spec.routing_key.into(),
            arguments: spec.args_raw.to_vec(),
        };
        self.replicate_topology(match spec.bind {
            true => TopologyChange::Bound(def),
            false => TopologyChange::Unbound(def),
        });
    }

    /// Applies a change the cluster committed (made by a client on some node, this one
    /// included: applying it again changes nothing). What cannot apply here is left out,
    /// with the reason: a declaration inequivalent to this node's exchange of that name,
    /// a binding whose source or destination this node does not have.
    pub fn apply_topology(&mut self, change: &TopologyChange) -> Result<(), super::BrokerError> {
        self.from_cluster = true;
        let applied = match change {
            TopologyChange::Declared(def) => {
                let spec = ExchangeSpec {
                    name: &def.name,
                    kind: &def.kind,
                    passive: false,
                    durable: def.durable,
                    auto_delete: def.auto_delete,
                    internal: def.internal,
                    args_raw: &def.arguments,
                };
                self.exchange_declare(NO_CONNECTION, &spec)
            }
            TopologyChange::Deleted(name) => self.exchange_delete(NO_CONNECTION, name, false),
            TopologyChange::Bound(def) | TopologyChange::Unbound(def) => {
                let spec = BindSpec {
                    source: &def.source,
                    routing_key: &def.routing_key,
                    args_raw: &def.arguments,
                    bind: matches!(change, TopologyChange::Bound(_)),
                };
                match def.to_exchange {
                    true => self.exchange_bind(NO_CONNECTION, &def.destination, &spec),
                    false => self.queue_bind(NO_CONNECTION, &def.destination, &spec),
                }
            }
        };
        self.from_cluster = false;
        applied
    }

    /// What of this vhost's topology the cluster shares: every exchange but the
    /// predeclared ones, and the bindings to exchanges and quorum queues (for a node that
    /// joins a cluster with definitions of its own).
    pub fn replicated_topology(&self) -> Vec<TopologyChange> {
        let mut changes: Vec<TopologyChange> = self
            .exchanges
            .values()
            .filter(|ex| !predeclared(&ex.name))
            .map(|ex| TopologyChange::Declared(def_of(ex)))
            .collect();
        let bindings = self.replicated_bindings(|_, _, _| true);
        changes.extend(bindings.into_iter().map(TopologyChange::Bound));
        changes
    }

    /// The bindings to exchanges and quorum queues for which `keep(source, destination,
    /// to_exchange)` holds (only those are copied).
    pub fn replicated_bindings(&self, keep: impl Fn(&str, &str, bool) -> bool) -> Vec<BindingDef> {
        let mut out = Vec::new();
        for ex in self.exchanges.values() {
            for b in &ex.bindings {
                let (destination, to_exchange) = match &b.dest {
                    Dest::Exchange(e) => (e, true),
                    Dest::Queue(q) if self.queues.get(&**q).is_some_and(|q| q.quorum.is_some()) => {
                        (q, false)
                    }
                    Dest::Queue(_) => continue,
                };
                if !keep(&ex.name, destination, to_exchange) {
                    continue;
                }
                out.push(BindingDef {
                    source: ex.name.to_string(),
                    destination: destination.to_string(),
                    to_exchange,
                    routing_key: b.routing_key.clone(),
                    arguments: b.args_raw.clone(),
                });
            }
        }
        out
    }
}
