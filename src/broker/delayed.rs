//! Delayed messages, compatible with the rabbitmq-delayed-message-exchange plugin: an
//! exchange of type `x-delayed-message` routes as its `x-delayed-type` (direct, fanout,
//! topic, headers), but a message published to it with a positive `x-delay` header
//! (milliseconds) is held and routed when the delay has passed, its `x-delay` then set to
//! minus the delay (as the plugin does, so it is not delayed again downstream).
//!
//! Held messages live on a log of their own (`delayed/` in the vhost's directory), the
//! record's timestamp being the time it is due; memory holds only (due, sequence number)
//! per message, 16 bytes, where the plugin keeps whole messages in Mnesia. A restart
//! rebuilds the schedule from the log. A fired message is acked in the log once its copies
//! in the queues are durable (`pending`: synced here, and committed by the group of a
//! replicated queue), so a crash or a lost commit in between can deliver it twice, never
//! lose it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use amq_protocol_types::{AMQPValue, FieldTable};
use warren_storage::{AckFlush, BatchRecord, Cursor, GroupCommit, Log, LogConfig, Ticket};

use super::confirms::durable;
use super::dead_letter::encode_table;
use super::error::BrokerError;
use super::exchange::ExchangeKind;
use super::message;
use super::publish::{Incoming, PublishRequest};
use super::vhost::VHost;
use crate::protocol::{properties, table};

/// The exchange type the plugin registers.
pub const DELAYED_TYPE: &str = "x-delayed-message";

/// How long a fired message whose copies failed waits before it is fired again, ms.
const REFIRE_AFTER_FAILURE_MS: u64 = 1_000;

/// The plugin's longest delay (Erlang's largest timer), milliseconds.
const MAX_DELAY_MS: i64 = (1 << 32) - 1;

/// The kind an `x-delayed-message` exchange routes as, from its `x-delayed-type`
/// argument, refused as the plugin refuses it.
pub fn delayed_kind(args: &FieldTable) -> Result<ExchangeKind, BrokerError> {
    let refuse = |text: &str| Err(BrokerError::PreconditionFailed(text.into()));
    match table::get_str(args, "x-delayed-type") {
        Some(DELAYED_TYPE) => {
            refuse("Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'")
        }
        Some(t) => ExchangeKind::parse(t).map_or_else(
            || {
                Err(BrokerError::CommandInvalid(format!(
                    "unknown exchange type '{t}'"
                )))
            },
            Ok,
        ),
        None => refuse("Invalid argument, 'x-delayed-type' must be an existing exchange type"),
    }
}

/// A message's delay as the plugin reads `x-delay`: an integer (a string of one, or a
/// float truncated), used only if positive and at most 2^32-1 ms.
pub fn delay_of(headers: Option<&[u8]>) -> Option<u64> {
    let t = table::decode(headers?).ok()?;
    let delay = match t.inner().get("x-delay")? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok()?.parse().ok()?,
        AMQPValue::ShortString(s) => s.as_str().parse().ok()?,
        AMQPValue::Float(f) => f.trunc() as i64,
        AMQPValue::Double(d) => d.trunc() as i64,
        v => table::int_value(v)?,
    };
    (delay > 0 && delay <= MAX_DELAY_MS).then_some(delay as u64)
}

/// A content header whose `x-delay` is set to minus `delay`.
fn swapped_header(header: &[u8], delay: u64) -> Option<Vec<u8>> {
    let props = properties::decode(header).ok()?;
    let mut entries = table::decode(props.headers?).ok()?.inner().clone();
    entries.insert("x-delay".into(), AMQPValue::LongLongInt(-(delay as i64)));
    let raw = encode_table(&entries.into());
    let change = properties::Rewrite {
        headers: Some(&raw),
        ..Default::default()
    };
    properties::rewrite(header, &change)
}

/// A vhost's held messages.
pub(super) struct DelayedStore {
    dir: PathBuf,
    config: LogConfig,
    commit: Arc<GroupCommit>,
    /// Opened on first use (or at start if the directory exists).
    log: Option<Log>,
    /// (due, sequence number), earliest first.
    schedule: BinaryHeap<Reverse<(u64, u64)>>,
    /// Fired messages whose copies wait before the record is acked: (the sync covering
    /// this node's copies, the commit of those in replicated queues (`ReplicaTickets`; 0:
    /// none), the record's sequence number).
    pending: Vec<(Ticket, u64, u64)>,
}

impl DelayedStore {
    /// Opens the store of the vhost in `vhost_dir`, rebuilding the schedule from the log.
    pub fn open(vhost_dir: &Path, config: LogConfig, commit: Arc<GroupCommit>) -> io::Result<Self> {
        let mut store = DelayedStore {
            dir: vhost_dir.join("delayed"),
            config,
            commit,
            log: None,
            schedule: BinaryHeap::new(),
            pending: Vec::new(),
        };
        if store.dir.exists() {
            let log = store.open_log()?;
            let mut cursor = Cursor::at(0);
            while let Some(rec) = log.read_next(&mut cursor) {
                store.schedule.push(Reverse((rec.timestamp, rec.seq)));
            }
            store.log = Some(log);
        }
        Ok(store)
    }

    fn open_log(&self) -> io::Result<Log> {
        Ok(Log::open(&self.dir, self.config.clone(), self.commit.clone())?.0)
    }

    /// Acks not yet written to the log's ack files.
    pub fn take_ack_flush(&mut self) -> Option<AckFlush> {
        let f = self.log.as_mut()?.take_ack_flush();
        (!f.is_empty()).then_some(f)
    }

    /// When the next message is due, or a pending sync should be looked at.
    pub fn next_due(&self, now: u64) -> Option<u64> {
        let due = self.schedule.peek().map(|Reverse((due, _))| *due);
        match (due, self.pending.is_empty()) {
            (d, true) => d,
            (d, false) => Some(d.map_or(now + 2, |d| d.min(now + 2))),
        }
    }
}

impl VHost {
    /// Holds `m`, published to the delayed exchange `m.exchange`, for `delay` ms. Returns
    /// the sync covering the held copy.
    pub(super) fn delay(
        &mut self,
        m: &PublishRequest<'_>,
        delay: u64,
        now: u64,
    ) -> Result<Ticket, BrokerError> {
        let durable = self.exchanges.get(m.exchange).is_some_and(|e| e.durable);
        let header = swapped_header(m.header, delay)
            .ok_or_else(|| BrokerError::storage(io::Error::other("unreadable content header")))?;
        let mut prefix = [0u8; message::MAX_PREFIX];
        let n = message::encode_prefix(&mut prefix, m.exchange, m.routing_key, header.len());
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 + m.body.len());
        parts.push(&prefix[..n]);
        parts.push(&header);
        parts.extend_from_slice(m.body);
        let due = now + delay;
        let store = &mut self.delayed;
        if store.log.is_none() {
            store.log = Some(store.open_log().map_err(BrokerError::storage)?);
        }
        let log = store.log.as_mut().expect("opened above");
        let batch = [BatchRecord {
            timestamp: due,
            persistent: m.persistent && durable,
            kind: 0,
            parts: &parts,
        }];
        let (seq, ticket) = log.append_batch(&batch).map_err(BrokerError::storage)?;
        store.schedule.push(Reverse((due, seq)));
        self.deadlines.wake_at(due);
        Ok(ticket)
    }

    /// Routes every held message that is due, then acks those whose copies are durable.
    /// Returns when the store is next due.
    pub(super) fn fire_delayed(&mut self, now: u64) -> Option<u64> {
        while let Some(&Reverse((due, seq))) = self.delayed.schedule.peek() {
            if due > now {
                break;
            }
            self.delayed.schedule.pop();
            let (ticket, committed) = self.route_delayed(seq, now);
            if ticket == Ticket::DONE && committed == 0 {
                self.ack_delayed(seq);
            } else {
                self.delayed.pending.push((ticket, committed, seq));
            }
        }
        let mut k = 0;
        while k < self.delayed.pending.len() {
            let (ticket, committed, seq) = self.delayed.pending[k];
            match durable(&self.commit, &self.replication.tickets, ticket, committed) {
                None => k += 1,
                Some(ok) => {
                    self.delayed.pending.swap_remove(k);
                    match ok {
                        true => self.ack_delayed(seq),
                        // Not durable in its queues: fire it again (a duplicate at worst),
                        // after a pause (a group without a majority fails every write).
                        false => {
                            let again = now + REFIRE_AFTER_FAILURE_MS;
                            self.delayed.schedule.push(Reverse((again, seq)));
                        }
                    }
                }
            }
        }
        self.delayed.next_due(now)
    }

    /// Routes the held message `seq` through its exchange now; returns the sync covering
    /// its copies (DONE if none needs one, or it went nowhere) and the commit of those in
    /// replicated queues (0: none).
    fn route_delayed(&mut self, seq: u64, now: u64) -> (Ticket, u64) {
        const NOTHING: (Ticket, u64) = (Ticket::DONE, 0);
        let Some(rec) = self.delayed.log.as_ref().and_then(|l| l.read(seq)) else {
            return NOTHING;
        };
        let Some(m) = message::view(&rec.payload) else {
            return NOTHING;
        };
        let exchange = String::from_utf8_lossy(m.exchange);
        let routing_key = String::from_utf8_lossy(m.routing_key);
        let props = properties::decode(m.header).ok();
        let headers = props.and_then(|p| p.headers);
        let mut targets = Vec::new();
        if self
            .route_unchecked(&exchange, &routing_key, headers, &mut targets)
            .is_err()
        {
            return NOTHING; // The exchange is gone: so is the message, as in the plugin.
        }
        let whole: [&[u8]; 1] = [&rec.payload];
        let incoming = Incoming {
            parts: &whole,
            header: m.header,
            body_len: m.body.len() as u64,
            persistent: props.is_some_and(|p| p.persistent()),
        };
        let (mut ticket, mut committed) = NOTHING;
        for target in targets {
            if let Ok((t, c)) = self.store_one(&target, &incoming, now) {
                ticket = ticket.max(t);
                committed = self.replication.tickets.join(committed, c);
            }
        }
        (ticket, committed)
    }

    fn ack_delayed(&mut self, seq: u64) {
        if let Some(log) = self.delayed.log.as_mut() {
            if let Err(e) = log.ack(seq) {
                tracing::error!(vhost = %self.name, "acking a delayed message: {e}");
            }
        }
    }
}
