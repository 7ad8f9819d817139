//! Publishing: routing a batch of messages through the vhost's exchanges and appending
//! them to their queues' logs, one batch append per queue.

use std::sync::Arc;

use bytes::Bytes;
use warren_storage::{BatchRecord, Ticket};

use super::confirms::ConfirmTicket;
use super::dead_letter::{self, DeadLetter, DeathReason};
use super::dedup::dedup_key;
use super::delayed;
use super::error::BrokerError;
use super::exchange;
use super::flow;
use super::message;
use super::queue::{Overflow, Queue};
use super::reply_to::REPLY_PREFIX;
use super::vhost::{now_millis, VHost};
use crate::protocol::{properties, table};

/// A routed message on its way into one queue.
#[derive(Debug, Clone, Copy)]
pub(super) struct Incoming<'a> {
    /// The stored payload: prefix, content header, body parts.
    pub parts: &'a [&'a [u8]],
    pub header: &'a [u8],
    pub body_len: u64,
    /// delivery-mode 2 (stored durably only in a durable queue).
    pub persistent: bool,
}

/// The dead letter of a message `q` refused for its length limit, under
/// `reject-publish-dlx` (`None` under plain `reject-publish`).
pub(super) fn refused_dead_letter(q: &Queue, m: &Incoming<'_>) -> Option<DeadLetter> {
    (q.features.overflow == Overflow::RejectPublishDlx).then(|| DeadLetter {
        queue: q.name.clone(),
        queue_id: q.id,
        seq: None,
        payload: Bytes::from(m.parts.concat()),
        reason: DeathReason::MaxLen,
        died_at: None,
    })
}

fn has_bcc(m: &PublishRequest<'_>) -> bool {
    m.headers_table
        .is_some_and(|t| table::string_array(t, "BCC").next().is_some())
}

/// The content header without its `BCC` header (`None` if it cannot be re-encoded).
fn strip_bcc(header: &[u8]) -> Option<Vec<u8>> {
    let props = properties::decode(header).ok()?;
    let table = table::decode(props.headers?).ok()?;
    let mut entries = table.inner().clone();
    entries.remove("BCC");
    let raw = dead_letter::encode_table(&entries.into());
    let change = properties::Rewrite {
        headers: Some(&raw),
        ..Default::default()
    };
    properties::rewrite(header, &change)
}

/// Why a queue did not take a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// Over its length limit under `reject-publish[-dlx]`.
    Full,
    /// The append failed (storage error).
    Failed,
}

/// Result of routing and storing one published message.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    /// At least one queue received it.
    pub routed: bool,
    /// The sync covering every persistent copy (DONE if none needs one).
    pub ticket: ConfirmTicket,
    /// A queue failed to store it or refused it (`reject-publish`): the confirm must be
    /// a nack.
    pub failed: bool,
    /// The replication ticket its confirm also waits for (0: none; replicated.rs).
    pub replicated: u64,
}

/// A message to publish: routing information, the content header as received, whether it
/// is persistent (delivery-mode 2), its raw headers table, and its body frames.
#[derive(Debug, Clone, Copy)]
pub struct PublishRequest<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub header: &'a [u8],
    pub persistent: bool,
    pub headers_table: Option<&'a [u8]>,
    pub body: &'a [&'a [u8]],
}

impl VHost {
    /// Routes a message and appends it to every matching queue's log.
    pub fn publish(&mut self, msg: &PublishRequest<'_>) -> Result<Published, BrokerError> {
        self.publish_batch(std::slice::from_ref(msg))
            .pop()
            .expect("one result per message")
    }

    /// Routes a batch of messages (in order) and appends them to their queues' logs: one
    /// batch append per queue, so persistent messages cost one write system call per queue
    /// per batch rather than one each. Returns one result per message.
    pub fn publish_batch(
        &mut self,
        msgs: &[PublishRequest<'_>],
    ) -> Vec<Result<Published, BrokerError>> {
        let mut results: Vec<Result<Published, BrokerError>> = Vec::with_capacity(msgs.len());
        self.flow_pause = None;
        // (queue, message index) pairs in publish order.
        let mut deliveries: Vec<(Arc<str>, usize)> = Vec::new();
        let mut targets = std::mem::take(&mut self.route_scratch);
        // The last message routed, and its run in `deliveries`: the next one with the same
        // exchange and routing key and no headers goes to the same queues (routing has no
        // state that a publish changes), so it needs no lookup.
        let mut last_routed: Option<(usize, std::ops::Range<usize>)> = None;
        for (i, m) in msgs.iter().enumerate() {
            if let Some((prev, run)) = last_routed.as_ref() {
                let p = &msgs[*prev];
                let same_route = m.headers_table.is_none()
                    && p.headers_table.is_none()
                    && m.routing_key == p.routing_key
                    && m.exchange == p.exchange
                    && self.special_exchanges == 0;
                if same_route {
                    results.push(Ok(Published {
                        routed: !run.is_empty(),
                        ticket: Ticket::DONE,
                        failed: false,
                        replicated: 0,
                    }));
                    let start = deliveries.len();
                    deliveries.extend_from_within(run.clone());
                    for d in &mut deliveries[start..] {
                        d.1 = i;
                    }
                    last_routed = Some((i, start..deliveries.len()));
                    continue;
                }
            }
            last_routed = None;
            if m.exchange.is_empty() && m.routing_key.starts_with(REPLY_PREFIX) {
                self.deliver_reply(m);
                results.push(Ok(Published {
                    routed: false,
                    ticket: Ticket::DONE,
                    failed: false,
                    replicated: 0,
                }));
                continue;
            }
            if self.is_duplicate(m) {
                // Dropped by a deduplicating exchange: routed nowhere (dedup.rs).
                results.push(Ok(Published {
                    routed: false,
                    ticket: Ticket::DONE,
                    failed: false,
                    replicated: 0,
                }));
                continue;
            }
            if let Some(delay) = self.delay_for(m) {
                // Held by its delayed exchange (delayed.rs): routed when it is due.
                results.push(self.delay(m, delay, now_millis()).map(|ticket| Published {
                    routed: true,
                    ticket,
                    failed: false,
                    replicated: 0,
                }));
                continue;
            }
            match self.route(m, &mut targets) {
                Ok(()) => {
                    results.push(Ok(Published {
                        routed: !targets.is_empty(),
                        ticket: Ticket::DONE,
                        failed: false,
                        replicated: 0,
                    }));
                    let start = deliveries.len();
                    deliveries.extend(targets.drain(..).map(|q| (q, i)));
                    last_routed = Some((i, start..deliveries.len()));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        self.route_scratch = targets;
        self.stats.published(msgs.len() as u64);
        self.store_batch(msgs, &mut deliveries, &mut results);
        results
    }

    /// Whether the connection `conn` that made the last publish batch should pause (a
    /// queue it published to is in flow). A connection that consumes from that queue is
    /// not paused: pausing it would also stop its acks, on which the queue's draining
    /// depends.
    pub fn take_flow_pause(&mut self, conn: u64) -> Option<super::flow::FlowPause> {
        let pause = self.flow_pause.take()?;
        let q = self.queues.get(&pause.queue)?;
        if q.consumers.iter().any(|c| c.conn == conn) {
            return None;
        }
        Some(pause)
    }

    /// Appends messages to the queues they were routed to: `deliveries` pairs a queue with
    /// the index of a message in `msgs`, in publish order; a queue that no longer exists is
    /// skipped. Each message's result gets its sync ticket, or `failed`. Used by
    /// `publish_batch` and by tx.commit (`tx.rs`), whose messages were routed earlier.
    pub(super) fn store_batch(
        &mut self,
        msgs: &[PublishRequest<'_>],
        deliveries: &mut [(Arc<str>, usize)],
        results: &mut [Result<Published, BrokerError>],
    ) {
        if deliveries.is_empty() {
            return;
        }
        // Stored payload of each message: prefix (exchange, routing key, header length),
        // content header, body parts. Prefixes live in one buffer; parts in one list.
        let mut prefixes: Vec<u8> = Vec::with_capacity(msgs.len() * 32);
        let mut prefix_ranges: Vec<(usize, usize)> = Vec::with_capacity(msgs.len());
        for m in msgs {
            let mut prefix = [0u8; message::MAX_PREFIX];
            let n = message::encode_prefix(&mut prefix, m.exchange, m.routing_key, m.header.len());
            prefix_ranges.push((prefixes.len(), prefixes.len() + n));
            prefixes.extend_from_slice(&prefix[..n]);
        }
        // A BCC header routes but is not delivered (RabbitMQ strips it): such rare
        // messages get a rewritten header.
        let without_bcc: Vec<Option<Vec<u8>>> = if msgs.iter().any(has_bcc) {
            msgs.iter()
                .map(|m| has_bcc(m).then(|| strip_bcc(m.header)).flatten())
                .collect()
        } else {
            Vec::new()
        };
        let mut parts: Vec<&[u8]> = Vec::with_capacity(msgs.len() * 3);
        let mut part_ranges: Vec<(usize, usize)> = Vec::with_capacity(msgs.len());
        for (i, (m, (a, b))) in msgs.iter().zip(&prefix_ranges).enumerate() {
            let start = parts.len();
            parts.push(&prefixes[*a..*b]);
            parts.push(
                without_bcc
                    .get(i)
                    .and_then(Option::as_deref)
                    .unwrap_or(m.header),
            );
            parts.extend_from_slice(m.body);
            part_ranges.push((start, parts.len()));
        }
        // Group by queue, keeping publish order within each queue (already so when every
        // message went to the same one queue: the common case, checked without comparing
        // names).
        let one_queue = deliveries
            .iter()
            .all(|d| Arc::ptr_eq(&d.0, &deliveries[0].0));
        if !one_queue {
            deliveries.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        }
        let now = now_millis();
        let mut incoming: Vec<Incoming<'_>> = Vec::new();
        let mut outcomes: Vec<Result<Ticket, Refused>> = Vec::new();
        let mut k = 0;
        while k < deliveries.len() {
            let queue = deliveries[k].0.clone();
            let end = deliveries[k..]
                .iter()
                .position(|d| !Arc::ptr_eq(&d.0, &queue) && d.0 != queue)
                .map_or(deliveries.len(), |p| k + p);
            incoming.clear();
            incoming.extend(deliveries[k..end].iter().map(|&(_, i)| {
                let (a, b) = part_ranges[i];
                Incoming {
                    parts: &parts[a..b],
                    header: parts[a + 1],
                    body_len: msgs[i].body.iter().map(|b| b.len() as u64).sum(),
                    persistent: msgs[i].persistent,
                }
            }));
            outcomes.clear();
            self.store(&queue, &incoming, now, &mut outcomes);
            if !self.replica_issued.is_empty() {
                // A replicated quorum queue: the confirms wait for its group's commit.
                let tickets = &self.replication.tickets;
                for (&(_, i), &t) in deliveries[k..end].iter().zip(&self.replica_issued) {
                    match results[i].as_mut() {
                        Ok(p) => p.replicated = tickets.join(p.replicated, t),
                        Err(_) => tickets.complete(t, true),
                    }
                }
                self.replica_issued.clear();
            }
            for (&(_, i), outcome) in deliveries[k..end].iter().zip(&outcomes) {
                if let Ok(p) = results[i].as_mut() {
                    match outcome {
                        Ok(ticket) => p.ticket = p.ticket.max(*ticket),
                        Err(_) => p.failed = true,
                    }
                }
            }
            k = end;
        }
        self.drain_dead_letters();
    }

    /// Appends one message to one queue (a dead letter's copy).
    /// Stores one message the broker publishes itself (a dead letter, a delayed message
    /// fired) in `queue`: the sync that makes it durable here, and the replication ticket
    /// of its commit if `queue` is replicated (0 otherwise).
    pub(super) fn store_one(
        &mut self,
        queue: &Arc<str>,
        msg: &Incoming<'_>,
        now: u64,
    ) -> Result<(Ticket, u64), Refused> {
        let mut out = Vec::with_capacity(1);
        self.store(queue, std::slice::from_ref(msg), now, &mut out);
        let committed = self.replica_issued.pop().unwrap_or(0);
        debug_assert!(self.replica_issued.is_empty(), "one message, one ticket");
        self.replica_issued.clear();
        out.pop()
            .unwrap_or(Err(Refused::Failed))
            .map(|t| (t, committed))
    }

    /// Appends messages routed to `queue` (in publish order) as one batch, under the
    /// queue's length limit: `reject-publish` refuses what does not fit, `drop-head`
    /// drops (dead-letters) the oldest after the append. Then hands out what consumers
    /// can take, expires what a zero TTL does not let wait, and judges flow on what is
    /// left. One outcome per message.
    fn store(
        &mut self,
        queue: &Arc<str>,
        msgs: &[Incoming<'_>],
        now: u64,
        out: &mut Vec<Result<Ticket, Refused>>,
    ) {
        let Some(q) = self.queues.get_mut(queue) else {
            // Deleted since routing (a transaction's publishes are routed at publish and
            // stored at commit): as in RabbitMQ, the message just does not go there.
            out.extend(msgs.iter().map(|_| Ok(Ticket::DONE)));
            return;
        };
        if super::replicated::replica_of(q).is_some() {
            // Not stored here: handed to the queue's group (replicated.rs).
            return self.store_replicated(queue, msgs, out);
        }
        let refusing = q.features.has_length_limit() && q.features.overflow != Overflow::DropHead;
        if refusing || q.dedup.is_some() {
            // One at a time: whether a message fits depends on the ones before it.
            for m in msgs {
                let q = self.queues.get_mut(queue).expect("present");
                let key = q.dedup.as_ref().and(dedup_key(m.header));
                if let (Some(d), Some(key)) = (q.dedup.as_ref(), key.as_ref()) {
                    if d.contains(key) {
                        // A message with this value is in the queue: not taken (the
                        // plugin drops it; the publisher's confirm is an ack).
                        out.push(Ok(Ticket::DONE));
                        continue;
                    }
                }
                if refusing && q.is_full_for(m.body_len) {
                    out.push(Err(Refused::Full));
                    if let Some(dead) = refused_dead_letter(q, m) {
                        self.pending_dead.push_back(dead);
                    }
                    continue;
                }
                let outcome = Self::append(q, std::slice::from_ref(m), now);
                if let (Some(d), Some(key), Ok(_)) = (q.dedup.as_mut(), key, outcome) {
                    d.add(key);
                }
                out.push(outcome);
            }
        } else {
            let outcome = Self::append(q, msgs, now);
            out.extend(msgs.iter().map(|_| outcome));
            if q.stream.as_ref().is_some_and(|s| s.retention_due) {
                self.apply_retention(queue, now);
            }
        }
        self.dispatch_at(queue, now);
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        if q.can_expire() {
            // A message whose TTL is 0 is delivered at once or not at all.
            self.expire_head(queue, now + 1);
            self.schedule(queue, now);
        }
        self.trim(queue);
        self.judge_flow(queue, now);
    }

    /// After a batch was stored, dispatched, expired and trimmed: whether its publisher
    /// should pause for `queue` (`flow`, with `flow_bounds`).
    fn judge_flow(&mut self, queue: &Arc<str>, now: u64) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        let Some(bounds) = flow_bounds(q, now) else {
            return;
        };
        let (ready, counts) = (q.ready(), q.flow_counts());
        if let Some(pause) = q.flow.after_publish(queue, bounds, ready, counts, now) {
            self.flow_pause = Some(pause);
        }
    }

    /// Appends to a queue's store, one batch per priority level (one in all for a plain
    /// queue).
    fn append<'a>(q: &mut Queue, msgs: &[Incoming<'a>], now: u64) -> Result<Ticket, Refused> {
        let durable = q.durable;
        // Streams and quorum queues keep every message, whatever its delivery mode (as
        // RabbitMQ's).
        let all_persistent = q.is_stream() || q.is_quorum();
        q.counters.publish += msgs.len() as u64;
        let record = |m: &Incoming<'a>| BatchRecord {
            timestamp: now,
            persistent: (m.persistent || all_persistent) && durable,
            kind: 0,
            parts: m.parts,
        };
        if q.features.max_priority.is_none() {
            let before = q.stream_position();
            let batch: Vec<BatchRecord<'_>> = msgs.iter().map(record).collect();
            let ticket = q.append(0, &batch).map_err(|_| Refused::Failed)?;
            for m in msgs {
                q.appended(m.body_len, m.header);
            }
            if let Some(before) = before {
                q.stream_appended(before);
            }
            return Ok(ticket);
        }
        // Runs of one level keep their order; each run is one append.
        let mut ticket = Ticket::DONE;
        let mut start = 0;
        while start < msgs.len() {
            let level = q.level_of(msgs[start].header);
            let end = msgs[start..]
                .iter()
                .position(|m| q.level_of(m.header) != level)
                .map_or(msgs.len(), |p| start + p);
            let batch: Vec<BatchRecord<'_>> = msgs[start..end].iter().map(record).collect();
            let t = q.append(level, &batch).map_err(|_| Refused::Failed)?;
            for m in &msgs[start..end] {
                q.appended(m.body_len, m.header);
            }
            ticket = ticket.max(t);
            start = end;
        }
        Ok(ticket)
    }

    /// Drops the oldest ready messages of a queue over its length limit (`drop-head`),
    /// dead-lettering them as `maxlen`.
    pub(super) fn trim(&mut self, queue: &str) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        if !q.features.has_length_limit() || q.waits_for_leader() {
            // A replica that does not lead drops nothing itself: its copy loses what the
            // leader dropped when the leader's settles commit.
            return;
        }
        if q.is_quorum() && q.features.overflow != Overflow::DropHead {
            // A quorum queue's reject-publish limit is soft (quorum.rs): over it, publishes
            // are refused and nothing already in the queue is dropped.
            return;
        }
        while q.over_limit() {
            let Some((rec, after)) = q.peek() else {
                break;
            };
            q.take(&rec, after);
            self.pending_dead
                .push_back(q.hold_dead(rec.seq, rec.payload, DeathReason::MaxLen));
        }
        self.drain_dead_letters();
    }

    /// True if `m` goes to a deduplicating exchange that has seen its value (otherwise the
    /// exchange now remembers it).
    fn is_duplicate(&mut self, m: &PublishRequest<'_>) -> bool {
        if self.special_exchanges == 0 {
            return false;
        }
        match self.dedup_caches.get_mut(m.exchange) {
            Some(cache) => cache.seen(m.header, now_millis()),
            None => false,
        }
    }

    /// The delay of a message published to a delayed exchange with a positive `x-delay`.
    fn delay_for(&self, m: &PublishRequest<'_>) -> Option<u64> {
        if self.special_exchanges == 0 {
            return None;
        }
        let ex = self.exchanges.get(m.exchange)?;
        if !ex.delayed || ex.internal {
            return None;
        }
        delayed::delay_of(m.headers_table)
    }

    /// Finds the queues a message goes to (into `targets`, cleared first).
    pub(super) fn route(
        &self,
        m: &PublishRequest<'_>,
        targets: &mut Vec<Arc<str>>,
    ) -> Result<(), BrokerError> {
        targets.clear();
        let Some(ex) = self.exchanges.get(m.exchange) else {
            return Err(self.not_found("exchange", m.exchange));
        };
        if ex.internal {
            return Err(BrokerError::AccessRefused(format!(
                "cannot publish to internal exchange '{}' in vhost '{}'",
                m.exchange, self.name
            )));
        }
        self.route_unchecked(m.exchange, m.routing_key, m.headers_table, targets)
    }

    /// Routes through `exchange` (internal ones too: dead letters may go there) and, if
    /// nothing matched, through its `alternate-exchange` chain, as RabbitMQ does.
    pub(super) fn route_unchecked(
        &self,
        exchange: &str,
        routing_key: &str,
        headers: Option<&[u8]>,
        targets: &mut Vec<Arc<str>>,
    ) -> Result<(), BrokerError> {
        targets.clear();
        let Some(ex) = self.exchanges.get(exchange) else {
            return Err(self.not_found("exchange", exchange));
        };
        if exchange.is_empty() {
            let mut by_name = |key: &str| {
                if let Some((name, _)) = self.queues.get_key_value(key) {
                    if !targets.contains(name) {
                        targets.push(name.clone());
                    }
                }
            };
            by_name(routing_key);
            if let Some(raw) = headers {
                for key in ["CC", "BCC"] {
                    for extra in table::string_array(raw, key) {
                        by_name(std::str::from_utf8(extra).unwrap_or_default());
                    }
                }
            }
            return Ok(());
        }
        exchange::route_all(&self.exchanges, ex, routing_key, headers, targets);
        if let Some(raw) = headers {
            // Sender-selected distribution: the CC and BCC headers' keys route too.
            for key in ["CC", "BCC"] {
                for extra in table::string_array(raw, key) {
                    let extra = std::str::from_utf8(extra).unwrap_or_default();
                    exchange::route_all(&self.exchanges, ex, extra, headers, targets);
                }
            }
        }
        let mut tried: Vec<&str> = Vec::new();
        let mut current = ex;
        while targets.is_empty() {
            tried.push(&current.name);
            let Some(alternate) = current.alternate.as_deref() else {
                break;
            };
            if tried.contains(&alternate) {
                break;
            }
            let Some(ae) = self.exchanges.get(alternate) else {
                break;
            };
            exchange::route_all(&self.exchanges, ae, routing_key, headers, targets);
            current = ae;
        }
        Ok(())
    }
}

/// The flow bounds of queue `q` (`None`: flow does not apply to it). Judged on the
/// consumers that may be delivered to (`Queue::serving`: under single active consumer,
/// the active one, not those waiting their turn). Consumers that ack keep a short backlog
/// (latency); no-ack ones only keep publishers from outrunning them, and count as active
/// at a lower rate while their clients read all they are sent. A quorum queue's no-ack
/// consumers do not take part: its deliveries to other nodes' consumers are not counted
/// here, so its local consumers would look outrun.
pub(super) fn flow_bounds(q: &Queue, now: u64) -> Option<flow::Bounds> {
    let serving = q.serving();
    if q.is_stream() || serving.is_empty() {
        return None;
    }
    if serving.iter().any(|c| !c.no_ack) {
        return Some(flow::ACKING);
    }
    if q.is_quorum() {
        return None;
    }
    let span = 2 * flow::RATE_WINDOW_MS;
    Some(
        match serving.iter().all(|c| c.outbox.client_behind(now, span)) {
            true => flow::NO_ACK,
            false => flow::NO_ACK_CLIENTS_KEEPING_UP,
        },
    )
}

/// For tests: publishes `n` transient one-byte messages without properties to `queue` of
/// the default vhost, through the default exchange.
#[cfg(test)]
pub(crate) fn publish_for_test(broker: &super::BrokerHandle, queue: &str, n: usize) {
    // A basic content header: class 60, weight 0, a 1-byte body, no property flags.
    let header = [0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0];
    let body: [&[u8]; 1] = [b"x"];
    let req = PublishRequest {
        exchange: "",
        routing_key: queue,
        header: &header,
        persistent: false,
        headers_table: None,
        body: &body,
    };
    broker.vhost("/").expect("vhost").with(|m| {
        for _ in 0..n {
            m.publish(&req).expect("publish");
        }
    });
}
