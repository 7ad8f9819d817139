//! Dead-lettering, as RabbitMQ 3.10 does it (`rabbit_dead_letter`): a message rejected
//! without requeue, expired, or dropped by a length limit is republished to its queue's
//! `x-dead-letter-exchange` with the `x-dead-letter-routing-key` (or its own routing key),
//! its `expiration` removed and its history in the `x-death` header.
//!
//! Order of durability: the copies are appended (and their sync registered) before the
//! original is acked, and the original is only acked once that sync completes and, for a
//! copy in a quorum queue of a cluster, once the queue's group has committed it
//! (`Queue::dead_lettering` holds it until then). A crash in between leaves both: the
//! dead letter may be duplicated, never lost. That is RabbitMQ's `x-dead-letter-strategy:
//! at-least-once`, here whatever the strategy says (RabbitMQ's `at-most-once` lets go of
//! the original first).
//!
//! A dead letter that routes to no queue is dropped, as RabbitMQ drops it, except from a
//! quorum queue under at-least-once (with `x-overflow: reject-publish`, as RabbitMQ
//! requires): that one stays in its queue, neither ready nor dropped, and is published
//! again every few seconds until it routes (`retry_unroutable`; RabbitMQ's dead-letter
//! worker tries every 180 s). One that some of its queues refuse (full under
//! `reject-publish`) is kept the same way once the others' copies are durable, and
//! published again only to the queues without a copy, as RabbitMQ 3.10 does. In a
//! cluster each such dead letter is recorded in its queue's group (a round's `discarded`): the other
//! copies set it aside (`queue/parked.rs`), and whichever node leads next publishes it
//! (`replica_dead_letters.rs`). On a single node it is marked in a log of the queue's own
//! (`queue/held_dead.rs`), so that after a restart it is held again, not ready.

use std::collections::BTreeMap;
use std::sync::Arc;

use amq_protocol_types::{AMQPValue, FieldArray, FieldTable, ShortString};
use bytes::Bytes;
use warren_storage::Ticket;

use super::confirms::durable;
use super::message;
use super::publish::Incoming;
use super::queue::{Dying, Queue};
use super::replica_checkout::drop_lent;
use super::replicated::replica_of;
use super::vhost::{now_millis, VHost};
use crate::protocol::{properties, table};

/// Why a message died (the `reason` of its `x-death` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathReason {
    Rejected,
    Expired,
    MaxLen,
    /// Returned more often than a quorum queue's `x-delivery-limit` allows.
    DeliveryLimit,
}

impl DeathReason {
    /// The reason as it is written down: in a replicated queue's group (a round's
    /// `DeadMark`) and in a held dead letter's mark on disk (`queue/held_dead.rs`).
    pub fn code(self) -> u8 {
        match self {
            DeathReason::Rejected => 0,
            DeathReason::Expired => 1,
            DeathReason::MaxLen => 2,
            DeathReason::DeliveryLimit => 3,
        }
    }

    /// The reason a code names; `rejected` for a code a later build may add.
    pub fn from_code(code: u8) -> DeathReason {
        match code {
            1 => DeathReason::Expired,
            2 => DeathReason::MaxLen,
            3 => DeathReason::DeliveryLimit,
            _ => DeathReason::Rejected,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::MaxLen => "maxlen",
            DeathReason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// A message on its way to its queue's dead-letter exchange.
pub(super) struct DeadLetter {
    pub queue: Arc<str>,
    pub queue_id: u64,
    /// The original in the queue's log (held in `Queue::dead_lettering` until its copies
    /// are durable); `None` for a publish the queue refused (`reject-publish-dlx`).
    pub seq: Option<u64>,
    pub payload: Bytes,
    pub reason: DeathReason,
    /// When it died, milliseconds since the epoch, if not now (a dead letter kept until
    /// it routes keeps the time of its death in `x-death`, as RabbitMQ's does).
    pub died_at: Option<u64>,
}

/// One `x-death` entry's facts.
pub struct Death<'a> {
    pub reason: DeathReason,
    pub queue: &'a str,
    pub exchange: &'a str,
    /// The message's routing key, then its CC keys.
    pub routing_keys: &'a [&'a str],
    /// The message's own `expiration`, kept as `original-expiration`.
    pub expiration: Option<&'a str>,
    /// Seconds since the epoch.
    pub time: u64,
}

fn longstr(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

fn str_of(t: &FieldTable, key: &str) -> Option<String> {
    table::get_str(t, key).map(str::to_owned)
}

/// The message's headers after this death: the `x-death` entry for (queue, reason) has
/// its count raised and moves to the front, or a new entry (count 1) is put there; the
/// first death also sets `x-first-death-{reason,queue,exchange}`.
pub fn headers_after_death(old: Option<&FieldTable>, death: &Death<'_>) -> FieldTable {
    let mut headers: BTreeMap<ShortString, AMQPValue> =
        old.map(|t| t.inner().clone()).unwrap_or_default();
    let reason = death.reason.as_str();
    let mut entry = FieldTable::default();
    entry.insert("reason".into(), longstr(reason));
    entry.insert("queue".into(), longstr(death.queue));
    entry.insert("time".into(), AMQPValue::Timestamp(death.time));
    entry.insert("exchange".into(), longstr(death.exchange));
    entry.insert(
        "routing-keys".into(),
        AMQPValue::FieldArray(
            death
                .routing_keys
                .iter()
                .map(|k| longstr(k))
                .collect::<Vec<_>>()
                .into(),
        ),
    );
    if let Some(e) = death.expiration {
        entry.insert("original-expiration".into(), longstr(e));
    }
    let deaths = match headers.get("x-death") {
        Some(AMQPValue::FieldArray(a)) => Some(a.as_slice().to_vec()),
        _ => None,
    };
    let new_deaths = match deaths {
        None => {
            if !headers.contains_key("x-death") {
                for (k, v) in [
                    ("x-first-death-reason", reason),
                    ("x-first-death-queue", death.queue),
                    ("x-first-death-exchange", death.exchange),
                ] {
                    headers.insert(k.into(), longstr(v));
                }
            }
            entry.insert("count".into(), AMQPValue::LongLongInt(1));
            vec![AMQPValue::FieldTable(entry)]
        }
        Some(mut deaths) => {
            let same = deaths.iter().position(|d| match d {
                AMQPValue::FieldTable(t) => {
                    str_of(t, "queue").as_deref() == Some(death.queue)
                        && str_of(t, "reason").as_deref() == Some(reason)
                }
                _ => false,
            });
            // A repeated (queue, reason) keeps its first entry (time, exchange, keys) with
            // the count raised, as RabbitMQ's increment_xdeath_event_count does.
            let entry = match same.map(|i| deaths.remove(i)) {
                Some(AMQPValue::FieldTable(t)) => {
                    let count = t
                        .inner()
                        .get("count")
                        .and_then(table::int_value)
                        .unwrap_or(0);
                    let mut t = t.inner().clone();
                    t.insert("count".into(), AMQPValue::LongLongInt(count + 1));
                    FieldTable::from(t)
                }
                _ => {
                    entry.insert("count".into(), AMQPValue::LongLongInt(1));
                    entry
                }
            };
            deaths.insert(0, AMQPValue::FieldTable(entry));
            deaths
        }
    };
    headers.insert("x-death".into(), AMQPValue::FieldArray(new_deaths.into()));
    headers.into()
}

/// RabbitMQ's cycle rule: dead-lettering into `queue` is a cycle if the message already
/// died in it and every death since (that one included) was automatic (not `rejected`).
pub fn is_cycle(queue: &str, deaths: &[AMQPValue]) -> bool {
    for d in deaths {
        let AMQPValue::FieldTable(t) = d else {
            // Something a client put there: not a fully automatic cycle.
            return false;
        };
        if table::get_str(t, "reason") == Some("rejected") {
            return false;
        }
        if table::get_str(t, "queue") == Some(queue) {
            return true;
        }
    }
    false
}

/// Encodes a field table with its u32 length prefix.
pub fn encode_table(t: &FieldTable) -> Vec<u8> {
    cookie_factory::gen_simple(
        amq_protocol_types::generation::gen_field_table(t),
        Vec::new(),
    )
    .unwrap_or_else(|_| vec![0, 0, 0, 0])
}

/// What publishing a dead letter's copies came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Republished {
    /// Nothing to publish: the queue has no dead-letter exchange, or the message is
    /// unreadable.
    Dropped,
    /// Routed to no queue (its dead-letter exchange does not exist, binds nothing that
    /// matches, or only back into a cycle).
    Nowhere,
    /// Copies published: the sync covering them and the commit of those in replicated
    /// queues.
    Copies(Ticket, u64),
    /// Copies published to some of the queues it routes to (sync and commit as for
    /// `Copies`), refused by the others.
    Partly(Ticket, u64),
}

/// Between two attempts to publish the dead letters routed nowhere that a queue keeps.
const UNROUTABLE_RETRY_MS: u64 = 5_000;
/// Dead letters routed nowhere tried in one attempt (the rest in the next, at once if
/// some of these went).
const UNROUTABLE_RETRY_BATCH: usize = 1024;

/// A dead letter whose copies could not be made durable goes back to its queue: ready
/// here and, on a member that does not lead a quorum queue, to the leader, which held it
/// for this node (a return through the group).
fn give_back(q: &mut Queue, seq: u64) {
    if q.settled_by_group(seq) {
        // Settled elsewhere meanwhile (this node's lease ran out and another consumer
        // acked it): it is gone from the group, so from here too.
        if let Err(e) = q.ack(seq) {
            tracing::error!(queue = %q.name, "acking a dead-lettered message: {e}");
        }
        return;
    }
    let member = replica_of(q)
        .filter(|r| !r.leading)
        .map(|r| r.handed_back(seq))
        .is_some();
    // A message lent by the leader to a node with no copy leaves with its return.
    if member && matches!(drop_lent(q, seq, false), Ok(true)) {
        return;
    }
    // Ready again: no longer a dead letter kept across a restart (held_dead.rs).
    if let Err(e) = q.store.forget_held_dead(seq) {
        tracing::error!(queue = %q.name, "letting go of a dead-letter mark: {e}");
    }
    q.restore(seq);
}

impl VHost {
    /// Processes queued dead letters until none is left.
    pub(super) fn drain_dead_letters(&mut self) {
        if self.draining_dead || self.pending_dead.is_empty() {
            return;
        }
        self.draining_dead = true;
        let mut stored = Vec::new();
        while let Some(dl) = self.pending_dead.pop_front() {
            stored.clear();
            let copies = self.republish_dead(&dl, &[], &mut stored);
            if let Some(seq) = dl.seq {
                self.release_dead(&dl, seq, copies, &stored);
            }
        }
        self.draining_dead = false;
    }

    /// Publishes a dead letter's copies to the queues it routes to, except those in
    /// `held` (they have one from an earlier attempt); the queues that took one are added
    /// to `stored`.
    fn republish_dead(
        &mut self,
        dl: &DeadLetter,
        held: &[Arc<str>],
        stored: &mut Vec<Arc<str>>,
    ) -> Republished {
        use Republished::Dropped;
        let Some(q) = self.queues.get(&dl.queue).filter(|q| q.id == dl.queue_id) else {
            return Dropped;
        };
        let Some(dlx) = q.features.dead_letter_exchange.clone() else {
            return Dropped;
        };
        let dlrk = q.features.dead_letter_routing_key.clone();
        let Some(m) = message::view(&dl.payload) else {
            return Dropped;
        };
        let Ok(props) = properties::decode(m.header) else {
            return Dropped;
        };
        let old_headers = props.headers.and_then(|raw| table::decode(raw).ok());
        let original_key = String::from_utf8_lossy(m.routing_key);
        let cc: Vec<String> = props
            .headers
            .map(|raw| {
                table::string_array(raw, "CC")
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let routing_keys: Vec<&str> = std::iter::once(&*original_key)
            .chain(cc.iter().map(String::as_str))
            .collect();
        let now = now_millis();
        let mut headers = headers_after_death(
            old_headers.as_ref(),
            &Death {
                reason: dl.reason,
                queue: &dl.queue,
                exchange: &String::from_utf8_lossy(m.exchange),
                routing_keys: &routing_keys,
                expiration: props.expiration,
                time: dl.died_at.unwrap_or(now) / 1000,
            },
        );
        if dlrk.is_some() {
            // Routed by the dead-letter routing key alone: CC no longer applies.
            let mut entries = headers.inner().clone();
            entries.remove("CC");
            headers = entries.into();
        }
        let headers_raw = encode_table(&headers);
        let Some(header) = properties::rewrite(
            m.header,
            &properties::Rewrite {
                headers: Some(&headers_raw),
                drop_expiration: true,
                reply_to: None,
            },
        ) else {
            return Dropped;
        };
        let routing_key: &str = dlrk.as_deref().unwrap_or(&original_key);
        let mut targets = Vec::new();
        if self
            .route_unchecked(&dlx, routing_key, Some(&headers_raw), &mut targets)
            .is_err()
        {
            return Republished::Nowhere; // The dead-letter exchange does not exist.
        }
        if targets.is_empty() && !held.is_empty() {
            // Unbound from the queues that refused it since: the copies it has are all it
            // needs (RabbitMQ's worker, too, lets go of it then).
            return Republished::Copies(Ticket::DONE, 0);
        }
        if dl.reason != DeathReason::Rejected {
            if let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") {
                let deaths: &FieldArray = deaths;
                targets.retain(|t| {
                    let cycle = is_cycle(t, deaths.as_slice());
                    if cycle {
                        tracing::debug!(queue = %t, "dead-letter cycle: message dropped");
                    }
                    !cycle
                });
            }
        }
        let mut prefix = [0u8; message::MAX_PREFIX];
        let n = message::encode_prefix(&mut prefix, &dlx, routing_key, header.len());
        let parts: [&[u8]; 3] = [&prefix[..n], &header, m.body];
        let incoming = Incoming {
            parts: &parts,
            header: &header,
            body_len: m.body.len() as u64,
            persistent: props.persistent(),
        };
        if targets.is_empty() {
            return Republished::Nowhere;
        }
        // Every queue it routes to that has no copy yet (when all have one, it is done:
        // their copies were durable before this attempt, see `settle_dead_lettering`).
        targets.retain(|t| !held.contains(t));
        let (mut ticket, mut committed, mut refused) = (Ticket::DONE, 0, false);
        let before = stored.len();
        for target in targets {
            match self.store_one(&target, &incoming, now) {
                Ok((t, c)) => {
                    ticket = ticket.max(t);
                    committed = self.replication.tickets.join(committed, c);
                    stored.push(target);
                }
                Err(_) => refused = true,
            }
        }
        match (stored.len() > before, refused) {
            (_, false) => Republished::Copies(ticket, committed),
            (true, true) => Republished::Partly(ticket, committed),
            // Refused by every queue it routes to (full under reject-publish): as unroutable.
            (false, true) => Republished::Nowhere,
        }
    }

    /// The original of a dead letter: acked now if its copies need no sync nor commit (or
    /// there are none), else once they are durable (`settle_dead_lettering`). One routed
    /// nowhere by a quorum queue under at-least-once dead-lettering is kept, and published
    /// again later (`retry_unroutable`), as RabbitMQ's dead-letter worker does; so is one
    /// that some of its queues refused, once the copies in the others (`stored`) are
    /// durable.
    fn release_dead(
        &mut self,
        dl: &DeadLetter,
        seq: u64,
        copies: Republished,
        stored: &[Arc<str>],
    ) {
        let Some(q) = self
            .queues
            .get_mut(&dl.queue)
            .filter(|q| q.id == dl.queue_id)
        else {
            return;
        };
        let Some(i) = q.dead_lettering.iter().position(|d| d.seq == seq) else {
            return;
        };
        let keep = q.quorum.is_some() && q.features.dead_letter_at_least_once;
        let now = now_millis();
        match copies {
            Republished::Partly(sync, committed) if keep => {
                q.dead_lettering[i] = Dying {
                    sync,
                    committed,
                    unroutable: None,
                    refused: Some((dl.reason, dl.died_at.unwrap_or(now))),
                    ..q.dead_lettering[i]
                };
                let copies = q.dead_letter_copies.entry(seq).or_default();
                copies.extend(stored.iter().cloned());
                let name = q.name.clone();
                self.schedule(&name, now);
            }
            Republished::Copies(sync, committed) | Republished::Partly(sync, committed)
                if sync != Ticket::DONE || committed != 0 =>
            {
                q.dead_lettering[i] = Dying {
                    sync,
                    committed,
                    unroutable: None,
                    refused: None,
                    ..q.dead_lettering[i]
                };
                let name = q.name.clone();
                self.schedule(&name, now);
            }
            Republished::Nowhere if keep => {
                let died_at = dl.died_at.unwrap_or(now);
                q.dead_lettering[i] = Dying {
                    sync: Ticket::DONE,
                    committed: 0,
                    unroutable: Some((dl.reason, died_at)),
                    refused: None,
                    ..q.dead_lettering[i]
                };
                q.mark_kept_dead(seq, dl.reason, died_at);
                if q.unroutable_retry_at == 0 {
                    tracing::warn!(vhost = %self.name, queue = %q.name,
                        "dead letters route to no queue; kept in the queue (at-least-once) until they do");
                    q.unroutable_retry_at = now + UNROUTABLE_RETRY_MS;
                    let (name, at) = (q.name.clone(), q.unroutable_retry_at);
                    self.schedule(&name, at);
                }
            }
            _ => {
                q.forget_dying(i);
                if let Err(e) = q.ack(seq) {
                    tracing::error!(queue = %q.name, "acking a dead-lettered message: {e}");
                }
            }
        }
    }

    /// Publishes again, once they are due, the dead letters of `queue` routed nowhere
    /// (`release_dead`): those that now route somewhere wait for their copies as any dead
    /// letter does; the others stay. Returns when to try next, if some are still kept.
    /// Whichever node holds them tries: a member that does not lead the queue holds them
    /// as it holds its consumers' deliveries (its lease with the leader).
    pub(super) fn retry_unroutable(&mut self, queue: &str, now: u64) -> Option<u64> {
        let q = self.queues.get_mut(queue)?;
        if q.unroutable_retry_at == 0 {
            return None;
        }
        if q.unroutable_retry_at > now {
            return Some(q.unroutable_retry_at);
        }
        let tried: Vec<(u64, (DeathReason, u64))> = q
            .dead_lettering
            .iter()
            .filter_map(|d| Some((d.seq, d.unroutable?)))
            .take(UNROUTABLE_RETRY_BATCH)
            .collect();
        let (name, id) = (q.name.clone(), q.id);
        let mut went = false;
        let mut stored = Vec::new();
        for (seq, (reason, died_at)) in tried {
            let q = self.queues.get_mut(queue)?;
            stored.clear();
            let held = q.dead_letter_copies.get(&seq).cloned().unwrap_or_default();
            let settled = q.settled_by_group(seq);
            let Some(rec) = q.store.read(seq).filter(|_| !settled) else {
                // Not in the store any more, or settled by another node meanwhile (this
                // node's lease ran out and a consumer there acked it, as `give_back`
                // checks): nothing to keep.
                if let Some(i) = q.dead_lettering.iter().position(|d| d.seq == seq) {
                    q.forget_dying(i);
                    if settled {
                        if let Err(e) = q.ack(seq) {
                            tracing::error!(queue = %q.name, "acking a dead-lettered message: {e}");
                        }
                    }
                }
                continue;
            };
            let payload = rec.payload;
            let dl = DeadLetter {
                queue: name.clone(),
                queue_id: id,
                seq: Some(seq),
                payload,
                reason,
                died_at: Some(died_at),
            };
            let copies = self.republish_dead(&dl, &held, &mut stored);
            went |= copies != Republished::Nowhere;
            self.release_dead(&dl, seq, copies, &stored);
            if copies == Republished::Nowhere {
                // To the back: the next attempt starts with the ones not tried now.
                let q = self.queues.get_mut(queue)?;
                if let Some(i) = q.dead_lettering.iter().position(|d| d.seq == seq) {
                    let d = q.dead_lettering.remove(i).expect("present");
                    q.dead_lettering.push_back(d);
                }
            }
        }
        // What those copies caused (a full target's reject-publish-dlx) is done now.
        self.drain_dead_letters();
        let q = self.queues.get_mut(queue)?;
        let kept = q.dead_lettering.iter().any(|d| d.unroutable.is_some());
        q.unroutable_retry_at = match (kept, went) {
            (false, _) => 0,
            (true, true) => now + 1,
            (true, false) => now + UNROUTABLE_RETRY_MS,
        };
        (q.unroutable_retry_at != 0).then_some(q.unroutable_retry_at)
    }

    /// Acks dead-lettered originals whose copies are durable (synced here, committed by
    /// their groups), or keeps those some queues refused (`Dying::refused`) for
    /// `retry_unroutable`; one whose copies failed goes back to the queue. Returns true if
    /// some are still waiting.
    pub(super) fn settle_dead_lettering(&mut self, queue: &str, now: u64) -> bool {
        let Some(q) = self.queues.get_mut(queue) else {
            return false;
        };
        // Under at-most-once since (a policy changed), one some queues refused is let go.
        let keep = q.quorum.is_some() && q.features.dead_letter_at_least_once;
        let mut k = 0;
        let mut waiting = false;
        while k < q.dead_lettering.len() {
            let d = q.dead_lettering[k];
            if d.unroutable.is_some() {
                k += 1; // Kept until it routes (`retry_unroutable`), not waiting for a sync.
                continue;
            }
            match durable(&self.commit, &self.replication.tickets, d.sync, d.committed) {
                None => {
                    waiting = true;
                    k += 1
                }
                Some(true) if d.refused.is_some() && keep => {
                    q.dead_lettering[k] = Dying {
                        sync: Ticket::DONE,
                        committed: 0,
                        unroutable: d.refused,
                        refused: None,
                        ..d
                    };
                    if let Some((reason, died_at)) = d.refused {
                        q.mark_kept_dead(d.seq, reason, died_at);
                    }
                    k += 1;
                    if q.unroutable_retry_at == 0 {
                        tracing::warn!(vhost = %self.name, queue = %q.name,
                            "dead letters refused by some of the queues they route to; kept in the queue (at-least-once) until those take them");
                        q.unroutable_retry_at = now + UNROUTABLE_RETRY_MS;
                    }
                }
                Some(ok) => {
                    q.forget_dying(k);
                    if !ok {
                        give_back(q, d.seq);
                    } else if let Err(e) = q.ack(d.seq) {
                        tracing::error!(queue = %q.name, "acking a dead-lettered message: {e}");
                    }
                }
            }
        }
        waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn death<'a>(reason: DeathReason, queue: &'a str) -> Death<'a> {
        Death {
            reason,
            queue,
            exchange: "ex",
            routing_keys: &["rk"],
            expiration: None,
            time: 1_700_000_000,
        }
    }

    fn deaths(t: &FieldTable) -> Vec<(String, String, i64)> {
        let Some(AMQPValue::FieldArray(a)) = t.inner().get("x-death") else {
            panic!("no x-death");
        };
        a.as_slice()
            .iter()
            .map(|d| {
                let AMQPValue::FieldTable(d) = d else {
                    panic!()
                };
                (
                    str_of(d, "queue").unwrap(),
                    str_of(d, "reason").unwrap(),
                    table::get_int(d, "count").unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn first_death_sets_first_death_headers_and_later_ones_count() {
        let h1 = headers_after_death(None, &death(DeathReason::Rejected, "a"));
        assert_eq!(table::get_str(&h1, "x-first-death-queue"), Some("a"));
        assert_eq!(
            table::get_str(&h1, "x-first-death-reason"),
            Some("rejected")
        );
        assert_eq!(table::get_str(&h1, "x-first-death-exchange"), Some("ex"));
        let h2 = headers_after_death(Some(&h1), &death(DeathReason::Expired, "b"));
        let h3 = headers_after_death(Some(&h2), &death(DeathReason::Rejected, "a"));
        assert_eq!(
            deaths(&h3),
            vec![
                ("a".into(), "rejected".into(), 2),
                ("b".into(), "expired".into(), 1)
            ]
        );
        assert_eq!(table::get_str(&h3, "x-first-death-queue"), Some("a"));
        // Encodes and decodes back.
        let raw = encode_table(&h3);
        assert_eq!(table::decode(&raw).unwrap(), h3);
    }

    #[test]
    fn cycles_are_automatic_deaths_only() {
        let h1 = headers_after_death(None, &death(DeathReason::Expired, "a"));
        let Some(AMQPValue::FieldArray(d)) = h1.inner().get("x-death") else {
            panic!()
        };
        assert!(is_cycle("a", d.as_slice()));
        assert!(!is_cycle("b", d.as_slice()));
        let h2 = headers_after_death(Some(&h1), &death(DeathReason::Rejected, "b"));
        let Some(AMQPValue::FieldArray(d)) = h2.inner().get("x-death") else {
            panic!()
        };
        assert!(!is_cycle("a", d.as_slice()));
    }
}
