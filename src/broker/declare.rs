//! Declaring, binding, purging and deleting exchanges and queues in a vhost, with
//! RabbitMQ's rules for reserved names, equivalence and exclusivity.

use std::sync::Arc;

use super::dedup::{DedupCache, DEDUP_TYPE};
use super::delayed::{delayed_kind, DELAYED_TYPE};
use super::error::BrokerError;
use super::exchange::{Binding, Dest, Exchange, ExchangeKind};
use super::grants::{Perm, Resource};
use super::queue::{args, Queue, QueueType};
use super::vhost::{now_millis, VHost};
use crate::protocol::table;
use amq_protocol_types::{AMQPValue, FieldTable};

/// Queue declare-ok figures.
#[derive(Debug, Clone)]
pub struct QueueInfo {
    pub name: Arc<str>,
    pub messages: u32,
    pub consumers: u32,
}

/// What an exchange.declare asks for.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeSpec<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub passive: bool,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub args_raw: &'a [u8],
}

/// What a queue.declare asks for.
#[derive(Debug, Clone, Copy)]
pub struct QueueSpec<'a> {
    pub name: &'a str,
    pub passive: bool,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub args_raw: &'a [u8],
}

/// A binding to add or remove: `source` exchange to `dest`.
#[derive(Debug, Clone, Copy)]
pub struct BindSpec<'a> {
    pub source: &'a str,
    pub routing_key: &'a str,
    pub args_raw: &'a [u8],
    /// true to bind, false to unbind.
    pub bind: bool,
}

/// Decodes an arguments table (already validated by the codec).
pub(super) fn decode_args(raw: &[u8]) -> Result<amq_protocol_types::FieldTable, BrokerError> {
    table::decode(raw).map_err(|e| BrokerError::Syntax(e.text))
}

/// A headers binding's `x-match` must be one of RabbitMQ's four words, as a long string.
pub(super) fn check_x_match(args: &FieldTable) -> Result<(), BrokerError> {
    let refuse = |why: String| Err(BrokerError::PreconditionFailed(why));
    match args.inner().get("x-match") {
        None => Ok(()),
        Some(AMQPValue::LongString(s)) => match s.as_bytes() {
            b"all" | b"any" | b"all-with-x" | b"any-with-x" => Ok(()),
            other => refuse(format!(
                "Invalid x-match field value {:?}; expected all, any, all-with-x, or any-with-x",
                String::from_utf8_lossy(other)
            )),
        },
        Some(v) => refuse(format!(
            "Invalid x-match field type {} (value {v:?}); expected longstr",
            args::type_name(v)
        )),
    }
}

impl VHost {
    fn reserved_exchange_refusal(&self, name: &str) -> BrokerError {
        BrokerError::AccessRefused(format!(
            "exchange name '{name}' contains reserved prefix 'amq.*'"
        ))
    }

    /// exchange.declare on connection `conn` (permissions checked where RabbitMQ checks
    /// them: configure on the exchange after its type and name; for a new exchange with an
    /// alternate exchange, read on it and write on the alternate).
    pub fn exchange_declare(
        &mut self,
        conn: u64,
        spec: &ExchangeSpec<'_>,
    ) -> Result<(), BrokerError> {
        let name = spec.name;
        if name.is_empty() {
            // RabbitMQ's check_not_default_exchange, passive or not.
            return Err(BrokerError::AccessRefused(
                "operation not permitted on the default exchange".into(),
            ));
        }
        if spec.passive {
            return match self.exchanges.get(name) {
                Some(_) => Ok(()),
                None => Err(self.not_found("exchange", name)),
            };
        }
        // RabbitMQ checks the type first, even for an existing exchange.
        let delayed = spec.kind == DELAYED_TYPE;
        let dedup = spec.kind == DEDUP_TYPE;
        let parsed = ExchangeKind::parse(spec.kind);
        if parsed.is_none() && !delayed && !dedup {
            return Err(BrokerError::CommandInvalid(format!(
                "unknown exchange type '{}'",
                spec.kind
            )));
        }
        let args = decode_args(spec.args_raw)?;
        let kind = match parsed {
            Some(kind) => kind,
            None if dedup => ExchangeKind::Fanout,
            None => delayed_kind(&args)?,
        };
        self.authorize(conn, Perm::Configure, Resource::Exchange, name)?;
        let rs = format!("exchange '{name}' in vhost '{}'", self.name);
        let Some(ex) = self.exchanges.get(name) else {
            // A reserved name may be redeclared equivalently; it may not be created.
            if name.starts_with("amq.") {
                return Err(self.reserved_exchange_refusal(name));
            }
            if let Some(v) = args.inner().get("alternate-exchange") {
                let AMQPValue::LongString(ae) = v else {
                    return Err(BrokerError::PreconditionFailed(format!(
                        "invalid type '{}' for arg 'alternate-exchange' in {rs}",
                        args::type_name(v)
                    )));
                };
                self.authorize(conn, Perm::Read, Resource::Exchange, name)?;
                let ae = String::from_utf8_lossy(ae.as_bytes());
                self.authorize(conn, Perm::Write, Resource::Exchange, &ae)?;
            }
            let cache = dedup.then(|| DedupCache::from_args(&args)).transpose()?;
            if let Some(cache) = cache {
                self.dedup_caches.insert(name.into(), cache);
            }
            return self.create_exchange(spec, kind, delayed, dedup, args);
        };
        // Equivalence, in RabbitMQ's order; of the arguments only alternate-exchange counts.
        let inequivalent = |what: &str, got: String, current: String| {
            Err(BrokerError::PreconditionFailed(format!(
                "inequivalent arg '{what}' for {rs}: received '{got}' but current is '{current}'"
            )))
        };
        if ex.kind != kind || ex.delayed != delayed || ex.dedup != dedup {
            return inequivalent("type", spec.kind.into(), ex.type_name().into());
        }
        for (what, got, current) in [
            ("durable", spec.durable, ex.durable),
            ("auto_delete", spec.auto_delete, ex.auto_delete),
            ("internal", spec.internal, ex.internal),
        ] {
            if got != current {
                return inequivalent(what, got.to_string(), current.to_string());
            }
        }
        let (current, got) = (
            ex.args.inner().get("alternate-exchange"),
            args.inner().get("alternate-exchange"),
        );
        if current != got {
            return Err(args::inequivalent("alternate-exchange", &rs, current, got));
        }
        Ok(())
    }

    fn create_exchange(
        &mut self,
        spec: &ExchangeSpec<'_>,
        kind: ExchangeKind,
        delayed: bool,
        dedup: bool,
        args: FieldTable,
    ) -> Result<(), BrokerError> {
        let name = spec.name;
        let mut ex = Exchange::new(
            name,
            kind,
            spec.durable,
            spec.auto_delete,
            spec.internal,
            spec.args_raw.to_vec(),
            args,
        );
        ex.delayed = delayed;
        ex.dedup = dedup;
        self.insert_exchange(ex);
        if spec.durable {
            self.definitions_changed();
        }
        self.replicate_exchange_declared(name);
        Ok(())
    }

    /// exchange.delete on connection `conn` (configure on the exchange).
    pub fn exchange_delete(
        &mut self,
        conn: u64,
        name: &str,
        if_unused: bool,
    ) -> Result<(), BrokerError> {
        if name.is_empty() {
            return Err(BrokerError::AccessRefused(
                "operation not permitted on the default exchange".into(),
            ));
        }
        if name.starts_with("amq.") {
            return Err(BrokerError::AccessRefused(format!(
                "deletion of system exchange '{name}' in vhost '{}' not allowed",
                self.name
            )));
        }
        self.authorize(conn, Perm::Configure, Resource::Exchange, name)?;
        let Some(ex) = self.exchanges.get(name) else {
            return Ok(()); // RabbitMQ: deleting a missing exchange succeeds.
        };
        if if_unused && !ex.bindings.is_empty() {
            return Err(BrokerError::PreconditionFailed(format!(
                "exchange '{name}' in vhost '{}' in use",
                self.name
            )));
        }
        self.remove_exchange(name);
        Ok(())
    }

    fn bind_common(
        &mut self,
        conn: u64,
        dest: Dest,
        spec: &BindSpec<'_>,
    ) -> Result<(), BrokerError> {
        let source = spec.source;
        // RabbitMQ's binding_action: write on the destination, then the default-exchange
        // rule, then read on the source and, for a topic source, read on the key.
        let (dest_kind, dest_name) = match &dest {
            Dest::Queue(q) => (Resource::Queue, &**q),
            Dest::Exchange(e) => (Resource::Exchange, &**e),
        };
        self.authorize(conn, Perm::Write, dest_kind, dest_name)?;
        if source.is_empty() || (matches!(dest, Dest::Exchange(ref d) if d.is_empty())) {
            return Err(BrokerError::AccessRefused(
                "operation not permitted on the default exchange".into(),
            ));
        }
        self.authorize(conn, Perm::Read, Resource::Exchange, source)?;
        if let Some(g) = self.grants_of(conn).filter(|g| g.has_topic_permissions()) {
            if self
                .exchanges
                .get(source)
                .is_some_and(|x| x.kind == ExchangeKind::Topic)
            {
                g.check_topic(Perm::Read, source, spec.routing_key)?;
            }
        }
        let dest_durable = match &dest {
            Dest::Queue(q) => self.check_queue_access(q, conn)?.durable,
            Dest::Exchange(e) => match self.exchanges.get(&**e) {
                Some(e) => e.durable,
                None => return Err(self.not_found("exchange", e)),
            },
        };
        let args = decode_args(spec.args_raw)?;
        let vhost = self.name.clone();
        let ex = self
            .exchanges
            .get_mut(source)
            .ok_or_else(|| BrokerError::not_found("exchange", source, &vhost))?;
        if spec.bind && ex.kind == ExchangeKind::Headers {
            check_x_match(&args)?;
        }
        let changed = if spec.bind {
            ex.bind(Binding {
                dest: dest.clone(),
                routing_key: spec.routing_key.to_owned(),
                args_raw: spec.args_raw.to_vec(),
                args,
            })
        } else {
            ex.unbind(&dest, spec.routing_key, &args)
        };
        let emptied = !spec.bind && changed && ex.auto_delete && ex.bindings.is_empty();
        if changed && ex.durable && dest_durable {
            self.definitions_changed();
        }
        if changed {
            self.replicate_binding(source, &dest, spec);
        }
        if emptied {
            // RabbitMQ deletes an auto-delete exchange when its last binding goes.
            self.remove_exchange(source);
        }
        Ok(())
    }

    /// exchange.bind / exchange.unbind: `dest` is an exchange.
    pub fn exchange_bind(
        &mut self,
        conn: u64,
        dest: &str,
        spec: &BindSpec<'_>,
    ) -> Result<(), BrokerError> {
        self.bind_common(conn, Dest::Exchange(dest.into()), spec)
    }

    /// queue.bind / queue.unbind.
    pub fn queue_bind(
        &mut self,
        conn: u64,
        queue: &str,
        spec: &BindSpec<'_>,
    ) -> Result<(), BrokerError> {
        // Whether the queue exists is asked after the permission checks (bind_common).
        let name = match self.queues.get_key_value(queue) {
            Some((name, _)) => name.clone(),
            None => queue.into(),
        };
        self.bind_common(conn, Dest::Queue(name), spec)
    }

    fn queue_info(q: &Queue) -> QueueInfo {
        QueueInfo {
            name: q.name.clone(),
            messages: q.ready().min(u32::MAX as u64) as u32,
            consumers: q.consumers.len() as u32,
        }
    }

    pub fn queue_declare(
        &mut self,
        conn: u64,
        spec: &QueueSpec<'_>,
    ) -> Result<QueueInfo, BrokerError> {
        if let Some(reply) = self.reply_queue_info(spec.name) {
            // Direct reply-to's pseudo-queue and reply names (reply_to.rs).
            return reply.map(|name| QueueInfo {
                name,
                messages: 0,
                consumers: 1,
            });
        }
        if spec.passive {
            let info = Self::queue_info(self.check_queue_access(spec.name, conn)?);
            if let Some(q) = self.queues.get_mut(spec.name).filter(|q| !q.is_quorum()) {
                // A declare, passive or not, is a use of a classic queue: it restarts
                // the x-expires countdown. Not of a quorum queue, whose state machine
                // counts only consumers and basic.get (RabbitMQ 3.10.8:
                // tests/cluster_reference/rabbitmq_quorum_ttl.md).
                q.last_used = now_millis();
            }
            return Ok(info);
        }
        let name = if spec.name.is_empty() {
            self.generated_name("amq.gen-")
        } else if spec.name.starts_with("amq.") {
            return Err(BrokerError::AccessRefused(format!(
                "queue name '{}' contains reserved prefix 'amq.*'",
                spec.name
            )));
        } else {
            spec.name.to_owned()
        };
        self.authorize(conn, Perm::Configure, Resource::Queue, &name)?;
        let args = decode_args(spec.args_raw)?;
        // Exclusive queues die with their connection, so they are never durable.
        let durable = spec.durable && !spec.exclusive;
        if let Some(q) = self.queues.get(name.as_str()) {
            self.check_queue_access(&name, conn)?;
            if q.exclusive_owner.is_some() != spec.exclusive {
                // RabbitMQ's check_exclusivity: a locked-queue error, not an inequivalence.
                return Err(BrokerError::ResourceLocked(format!(
                    "cannot obtain exclusive access to locked queue '{name}' in vhost '{}'. It \
                     could be originally declared on another connection or the exclusive \
                     property value does not match that of the original declaration.",
                    self.name
                )));
            }
            for (what, current) in [("durable", q.durable), ("auto_delete", q.auto_delete)] {
                let got = if what == "durable" {
                    durable
                } else {
                    spec.auto_delete
                };
                if got != current {
                    return Err(BrokerError::PreconditionFailed(format!(
                        "inequivalent arg '{what}' for queue '{name}' in vhost '{}': received \
                         '{got}' but current is '{current}'",
                        self.name
                    )));
                }
            }
            args::check_equivalent(q.compared_args(), &q.args, &args, &name, &self.name)?;
            let info = Self::queue_info(q);
            if let Some(q) = self
                .queues
                .get_mut(name.as_str())
                .filter(|q| !q.is_quorum())
            {
                // As the passive one above.
                q.last_used = now_millis();
            }
            return Ok(info);
        }
        if let Some(max) = self.max_queues {
            if self.queues.len() as u64 >= max {
                return Err(BrokerError::PreconditionFailed(format!(
                    "cannot declare queue '{name}': queue limit in vhost '{}' ({max}) is reached",
                    self.name
                )));
            }
        }
        if let Some(AMQPValue::LongString(dlx)) = args.inner().get("x-dead-letter-exchange") {
            // Dead letters are published in the queue's name: RabbitMQ asks for read on
            // the queue and write on the dead-letter exchange.
            self.authorize(conn, Perm::Read, Resource::Queue, &name)?;
            let dlx = String::from_utf8_lossy(dlx.as_bytes());
            self.authorize(conn, Perm::Write, Resource::Exchange, &dlx)?;
        }
        args::validate_new(&args, &name, &self.name)?;
        if self.is_deleted() {
            // A connection not yet closed by the deletion must not make files again.
            return Err(BrokerError::NotFound(format!(
                "vhost {} not found",
                self.name
            )));
        }
        let kind = QueueType::from_args(&args)?;
        kind.validate(&args, spec, spec.durable, &self.name)?;
        let id = self.next_queue_id;
        self.next_queue_id += 1;
        let dir = self.queue_dir(id);
        // A leftover of a queue with this id from before a crash (never durable, or its
        // definitions were never written): not ours.
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = self.open_store(&dir, &name, &args)?;
        let arc: Arc<str> = name.as_str().into();
        let owner = spec.exclusive.then_some(conn);
        let queue = Queue::new(
            arc.clone(),
            id,
            durable,
            owner,
            spec.auto_delete,
            spec.args_raw.to_vec(),
            args,
            store,
        );
        self.queues.insert(arc.clone(), Box::new(queue));
        // Policies may add limits, TTLs, expiry and dead-lettering (policy.rs).
        self.apply_policy(&arc);
        if let Some(ms) = self.queues.get(&arc).and_then(|q| q.features.expires) {
            self.schedule(&arc, now_millis() + ms);
        }
        // Every queue is bound to the default exchange by its name (implicitly: the
        // default exchange routes by queue name, see `route`).
        if durable {
            self.definitions_changed();
        }
        if kind == QueueType::Quorum {
            self.replicate_declared(&arc);
        }
        Ok(QueueInfo {
            name: arc,
            messages: 0,
            consumers: 0,
        })
    }

    pub fn queue_purge(&mut self, conn: u64, name: &str) -> Result<u32, BrokerError> {
        self.authorize(conn, Perm::Read, Resource::Queue, name)?;
        self.check_queue_access(name, conn)?;
        let q = self.queues.get_mut(name).expect("checked");
        if q.is_stream() {
            return Err(super::stream::not_supported(
                "queue.purge",
                name,
                &self.name,
            ));
        }
        let n = q.purge_ready()?;
        Ok(n.min(u32::MAX as u64) as u32)
    }

    pub fn queue_delete(
        &mut self,
        conn: u64,
        name: &str,
        if_unused: bool,
        if_empty: bool,
    ) -> Result<u32, BrokerError> {
        self.authorize(conn, Perm::Configure, Resource::Queue, name)?;
        let q = match self.check_queue_access(name, conn) {
            Ok(q) => q,
            Err(BrokerError::NotFound(_)) => return Ok(0),
            Err(e) => return Err(e),
        };
        if if_unused && !q.consumers.is_empty() {
            return Err(BrokerError::PreconditionFailed(format!(
                "queue '{name}' in vhost '{}' in use",
                self.name
            )));
        }
        if q.is_stream() {
            // RabbitMQ deletes a stream whatever if-empty says, and counts nothing.
            self.remove_queue(name);
            return Ok(0);
        }
        if if_empty && q.ready() > 0 {
            return Err(BrokerError::PreconditionFailed(format!(
                "queue '{name}' in vhost '{}' is not empty",
                self.name
            )));
        }
        if q.is_quorum() {
            self.replicate_deleted(name);
        }
        Ok(self.remove_queue(name))
    }
}
