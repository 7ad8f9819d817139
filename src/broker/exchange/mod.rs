//! Exchanges and their bindings, with an index per exchange type so that routing a
//! message costs what its matches cost, not the number of bindings.

use std::collections::HashSet;
use std::sync::Arc;

use amq_protocol_types::{AMQPValue, FieldTable};

use super::fast_map::FastMap;
use crate::protocol::table;
use topic::TopicTrie;

pub mod topic;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "direct" => Self::Direct,
            "fanout" => Self::Fanout,
            "topic" => Self::Topic,
            "headers" => Self::Headers,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Fanout => "fanout",
            Self::Topic => "topic",
            Self::Headers => "headers",
        }
    }
}

/// Where a binding leads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dest {
    Queue(Arc<str>),
    Exchange(Arc<str>),
}

impl Dest {
    pub fn name(&self) -> &str {
        match self {
            Dest::Queue(n) | Dest::Exchange(n) => n,
        }
    }
}

/// One binding of an exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub dest: Dest,
    pub routing_key: String,
    /// The arguments table as received (with length prefix), for equality and persistence.
    pub args_raw: Vec<u8>,
    pub args: FieldTable,
}

#[derive(Debug)]
pub struct Exchange {
    pub name: Arc<str>,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub args_raw: Vec<u8>,
    pub args: FieldTable,
    /// An `x-delayed-message` exchange (delayed.rs), routing as `kind`.
    pub delayed: bool,
    /// An `x-message-deduplication` exchange (dedup.rs), routing as fanout.
    pub dedup: bool,
    /// Where unroutable messages go: the `alternate-exchange` argument, else a policy's
    /// (set by the vhost, policy.rs).
    pub alternate: Option<Arc<str>>,
    pub bindings: Vec<Binding>,
    /// Destination ids for the indexes (`dest_ids[i]` is `dests[i]`).
    dests: Vec<Dest>,
    dest_ids: FastMap<Dest, usize>,
    direct: FastMap<String, Vec<usize>>,
    fanout: Vec<usize>,
    topic: TopicTrie,
}

impl Exchange {
    pub fn new(
        name: &str,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        args_raw: Vec<u8>,
        args: FieldTable,
    ) -> Self {
        Exchange {
            name: name.into(),
            kind,
            durable,
            auto_delete,
            internal,
            args_raw,
            alternate: crate::protocol::table::get_str(&args, "alternate-exchange").map(Arc::from),
            args,
            delayed: false,
            dedup: false,
            bindings: Vec::new(),
            dests: Vec::new(),
            dest_ids: FastMap::default(),
            direct: FastMap::default(),
            fanout: Vec::new(),
            topic: TopicTrie::default(),
        }
    }

    /// The type as declared: `x-delayed-message` for a delayed exchange.
    pub fn type_name(&self) -> &'static str {
        if self.delayed {
            "x-delayed-message"
        } else if self.dedup {
            "x-message-deduplication"
        } else {
            self.kind.as_str()
        }
    }

    fn dest_id(&mut self, dest: &Dest) -> usize {
        if let Some(&id) = self.dest_ids.get(dest) {
            return id;
        }
        let id = self.dests.len();
        self.dests.push(dest.clone());
        self.dest_ids.insert(dest.clone(), id);
        id
    }

    pub fn has_binding(&self, b: &Binding) -> bool {
        self.bindings
            .iter()
            .any(|x| x.dest == b.dest && x.routing_key == b.routing_key && x.args == b.args)
    }

    /// Adds a binding; returns false if an identical one exists.
    pub fn bind(&mut self, b: Binding) -> bool {
        if self.has_binding(&b) {
            return false;
        }
        let id = self.dest_id(&b.dest);
        match self.kind {
            ExchangeKind::Direct => self
                .direct
                .entry(b.routing_key.clone())
                .or_default()
                .push(id),
            ExchangeKind::Fanout => self.fanout.push(id),
            ExchangeKind::Topic => self.topic.insert(&b.routing_key, id),
            ExchangeKind::Headers => {}
        }
        self.bindings.push(b);
        true
    }

    /// Removes a binding; returns false if there was none.
    pub fn unbind(&mut self, dest: &Dest, routing_key: &str, args: &FieldTable) -> bool {
        let Some(i) = self
            .bindings
            .iter()
            .position(|x| &x.dest == dest && x.routing_key == routing_key && &x.args == args)
        else {
            return false;
        };
        let b = self.bindings.swap_remove(i);
        let id = self.dest_ids[&b.dest];
        match self.kind {
            ExchangeKind::Direct => {
                if let Some(v) = self.direct.get_mut(&b.routing_key) {
                    if let Some(p) = v.iter().position(|&d| d == id) {
                        v.swap_remove(p);
                    }
                    if v.is_empty() {
                        self.direct.remove(&b.routing_key);
                    }
                }
            }
            ExchangeKind::Fanout => {
                if let Some(p) = self.fanout.iter().position(|&d| d == id) {
                    self.fanout.swap_remove(p);
                }
            }
            ExchangeKind::Topic => self.topic.remove(&b.routing_key, id),
            ExchangeKind::Headers => {}
        }
        true
    }

    /// Removes every binding to `dest`; returns how many.
    pub fn unbind_all_to(&mut self, dest: &Dest) -> usize {
        let doomed: Vec<(String, FieldTable)> = self
            .bindings
            .iter()
            .filter(|b| &b.dest == dest)
            .map(|b| (b.routing_key.clone(), b.args.clone()))
            .collect();
        for (rk, args) in &doomed {
            self.unbind(dest, rk, args);
        }
        doomed.len()
    }

    /// Calls `out` with every destination the message matches (possibly repeated).
    pub fn route(
        &self,
        routing_key: &str,
        headers: Option<&FieldTable>,
        mut out: impl FnMut(&Dest),
    ) {
        match self.kind {
            ExchangeKind::Direct => {
                if let Some(ids) = self.direct.get(routing_key) {
                    ids.iter().for_each(|&id| out(&self.dests[id]));
                }
            }
            ExchangeKind::Fanout => self.fanout.iter().for_each(|&id| out(&self.dests[id])),
            ExchangeKind::Topic => self.topic.matches(routing_key, |id| out(&self.dests[id])),
            ExchangeKind::Headers => {
                let empty = FieldTable::default();
                let headers = headers.unwrap_or(&empty);
                for b in &self.bindings {
                    if headers_match(&b.args, headers) {
                        out(&b.dest);
                    }
                }
            }
        }
    }
}

/// The headers exchange rule: `x-match` = `all` (default) or `any` (and the `-with-x`
/// variants, which also compare `x-` keys); binding arguments with a void value only need
/// the header to be present.
pub fn headers_match(binding: &FieldTable, headers: &FieldTable) -> bool {
    let mode: &[u8] = match binding.inner().get("x-match") {
        Some(AMQPValue::LongString(s)) => s.as_bytes(),
        Some(AMQPValue::ShortString(s)) => s.as_str().as_bytes(),
        _ => b"all",
    };
    let (any, with_x) = match mode {
        b"any" => (true, false),
        b"any-with-x" => (true, true),
        b"all-with-x" => (false, true),
        _ => (false, false),
    };
    let mut considered = 0;
    let mut matched = 0;
    for (k, v) in binding {
        if k.as_str() == "x-match" || (!with_x && k.as_str().starts_with("x-")) {
            continue;
        }
        considered += 1;
        let hit = match (v, headers.inner().get(k.as_str())) {
            (_, None) => false,
            (AMQPValue::Void, Some(_)) => true,
            (v, Some(h)) => values_equal(v, h),
        };
        if hit {
            matched += 1;
            if any {
                return true;
            }
        } else if !any {
            return false;
        }
    }
    if any {
        false
    } else {
        considered == matched
    }
}

/// Equality that treats short and long strings with the same bytes as equal, since
/// clients differ in which they send.
fn values_equal(a: &AMQPValue, b: &AMQPValue) -> bool {
    fn text(v: &AMQPValue) -> Option<&[u8]> {
        match v {
            AMQPValue::LongString(s) => Some(s.as_bytes()),
            AMQPValue::ShortString(s) => Some(s.as_str().as_bytes()),
            _ => None,
        }
    }
    match (text(a), text(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// Routes from `start` through exchange-to-exchange bindings, collecting each reachable
/// queue once. Cycles are cut by a visited set. The message's headers table (raw, as in
/// its content header) is decoded only if a headers exchange with bindings is reached, and
/// then only once.
pub fn route_all(
    exchanges: &FastMap<Arc<str>, Exchange>,
    start: &Exchange,
    routing_key: &str,
    headers_raw: Option<&[u8]>,
    queues_out: &mut Vec<Arc<str>>,
) {
    let mut seen_exchanges: HashSet<Arc<str>> = HashSet::new();
    let mut pending: Vec<Arc<str>> = Vec::new();
    let mut headers: Option<FieldTable> = None;
    let mut visit = |ex: &Exchange, pending: &mut Vec<Arc<str>>, queues_out: &mut Vec<Arc<str>>| {
        if ex.kind == ExchangeKind::Headers && !ex.bindings.is_empty() && headers.is_none() {
            headers = Some(
                headers_raw
                    .and_then(|raw| table::decode(raw).ok())
                    .unwrap_or_default(),
            );
        }
        ex.route(routing_key, headers.as_ref(), |d| match d {
            Dest::Queue(q) => {
                if !queues_out.iter().any(|x| x == q) {
                    queues_out.push(q.clone());
                }
            }
            Dest::Exchange(e) => pending.push(e.clone()),
        });
    };
    visit(start, &mut pending, queues_out);
    if pending.is_empty() {
        return; // The common case: no exchange-to-exchange bindings, no allocation.
    }
    seen_exchanges.insert(start.name.clone());
    while let Some(name) = pending.pop() {
        if !seen_exchanges.insert(name.clone()) {
            continue;
        }
        if let Some(ex) = exchanges.get(&name) {
            visit(ex, &mut pending, queues_out);
        }
    }
}
