//! A channel's delivery state in the model — delivery tags, the unacked ring, prefetch
//! limits, flow — and the vhost operations on channels and connections.

use std::collections::VecDeque;
use std::sync::Arc;

use super::admin::ConnectionInfo;
use super::error::BrokerError;
use super::fast_map::FastMap;
use super::grants::{Grants, Perm, Resource};
use super::outbox::{Outbox, Outgoing};
use super::reply_to::ReplyConsumer;
use super::tx::TxSettles;
use super::vhost::VHost;
use super::ChannelKey;

/// A delivered, unacked message.
#[derive(Debug, Clone)]
pub(super) struct Unacked {
    pub queue: Arc<str>,
    /// The queue's id: a queue deleted and declared again under the same name is another
    /// queue, and a stale tag must not settle its messages.
    pub queue_id: u64,
    pub seq: u64,
    /// The consumer it went to (by serial; None for basic.get).
    pub consumer: Option<u64>,
}

/// A connection attached to the vhost: its user's permissions here, and its outbox (for
/// closing it from the model, e.g. when the vhost is deleted).
pub(super) struct Attached {
    pub grants: Arc<Grants>,
    pub outbox: Arc<Outbox>,
    /// What the management API shows of it.
    pub info: Arc<ConnectionInfo>,
}

/// Per-channel delivery state kept by the model.
pub(super) struct ChannelState {
    pub outbox: Arc<Outbox>,
    pub next_tag: u64,
    /// Unacked deliveries by tag: `unacked[i]` is tag `first_tag + i`; settled ones (and
    /// no-ack deliveries between unacked ones) are None.
    pub first_tag: u64,
    pub unacked: VecDeque<Option<Unacked>>,
    pub unacked_count: usize,
    /// Unacked deliveries to consumers (not basic.get): what `channel_prefetch` limits,
    /// as RabbitMQ's limiter counts.
    pub consumer_unacked: usize,
    /// Prefetch for consumers created from now on (basic.qos global=false).
    pub consumer_prefetch: u16,
    /// Limit on the channel's unacked total (basic.qos global=true).
    pub channel_prefetch: u16,
    /// Consumer tag -> queue name.
    pub consumers: FastMap<Arc<str>, Arc<str>>,
    /// The direct reply-to consumer, if any (reply_to.rs).
    pub reply: Option<ReplyConsumer>,
    /// Acks, nacks and rejects of the open transaction (tx.rs): their tags stay in the
    /// ring, unacked, but can be settled no more until commit or rollback.
    pub tx: TxSettles,
    /// Confirm or transactional mode, as the connection selected it (for the API).
    pub mode: ChannelMode,
}

/// A channel's publishing mode.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum ChannelMode {
    #[default]
    Plain,
    Confirm,
    Tx,
}

impl ChannelState {
    pub fn new(outbox: Arc<Outbox>) -> Self {
        ChannelState {
            outbox,
            next_tag: 1,
            first_tag: 1,
            unacked: VecDeque::new(),
            unacked_count: 0,
            consumer_unacked: 0,
            consumer_prefetch: 0,
            channel_prefetch: 0,
            consumers: FastMap::default(),
            reply: None,
            tx: TxSettles::default(),
            mode: ChannelMode::Plain,
        }
    }

    #[inline]
    pub fn take_unacked(&mut self, tag: u64) -> Option<Unacked> {
        let i = tag.checked_sub(self.first_tag)? as usize;
        let u = self.unacked.get_mut(i)?.take()?;
        assert!(
            self.unacked_count > 0,
            "unacked count out of step with the ring"
        );
        self.unacked_count -= 1;
        if u.consumer.is_some() {
            assert!(
                self.consumer_unacked > 0,
                "consumer unacked count out of step"
            );
            self.consumer_unacked -= 1;
        }
        while matches!(self.unacked.front(), Some(None)) {
            self.unacked.pop_front();
            self.first_tag += 1;
        }
        Some(u)
    }

    /// Assigns the next delivery tag. `unacked` is what to remember until the message is
    /// settled, or None for a no-ack delivery (its slot stays empty so tags keep indexing
    /// the ring).
    #[inline]
    pub fn next_delivery(&mut self, unacked: Option<Unacked>) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        if self.unacked.is_empty() {
            self.first_tag = tag;
        }
        match unacked {
            Some(u) => {
                self.consumer_unacked += u.consumer.is_some() as usize;
                self.unacked.push_back(Some(u));
                self.unacked_count += 1;
            }
            None if self.unacked.is_empty() => self.first_tag = self.next_tag,
            None => self.unacked.push_back(None),
        }
        debug_assert_eq!(self.first_tag + self.unacked.len() as u64, self.next_tag);
        tag
    }

    /// Tags of every unacked delivery up to and including `tag` (not those settled in the
    /// open transaction).
    pub fn tags_through(&self, tag: u64) -> Vec<u64> {
        self.unacked
            .iter()
            .enumerate()
            .filter(|(_, u)| u.is_some())
            .map(|(i, _)| self.first_tag + i as u64)
            .take_while(|&t| t <= tag)
            .filter(|&t| !self.tx.holds(t))
            .collect()
    }

    /// The tag names an unacked delivery that may be settled (not one settled in the open
    /// transaction).
    #[inline]
    pub fn is_unacked(&self, tag: u64) -> bool {
        tag.checked_sub(self.first_tag)
            .and_then(|i| self.unacked.get(i as usize))
            .is_some_and(|u| u.is_some())
            && !self.tx.holds(tag)
    }
}

impl VHost {
    /// Attaches a connection to this vhost (after connection.open) with the user's
    /// permissions here; refused once the vhost is deleted (a connection that found it
    /// just before), or if the vhost's connection limit `limit` is reached — checked
    /// again here, under the lock that counts, so concurrent opens cannot pass it.
    pub fn attach_connection(
        &mut self,
        conn: u64,
        grants: Arc<Grants>,
        outbox: Arc<Outbox>,
        info: Arc<ConnectionInfo>,
        limit: Option<u64>,
    ) -> Result<(), BrokerError> {
        if self.is_deleted() {
            return Err(BrokerError::NotAllowed(format!(
                "vhost {} not found",
                self.name
            )));
        }
        if let Some(max) = limit.filter(|&max| self.connections.len() as u64 >= max) {
            return Err(BrokerError::NotAllowed(format!(
                "access to vhost '{}' refused for user '{}': connection limit ({max}) is \
                 reached",
                self.name, grants.user
            )));
        }
        self.connections.insert(
            conn,
            Attached {
                grants,
                outbox,
                info,
            },
        );
        Ok(())
    }

    /// How many connections are attached (for the vhost's connection limit).
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Replaces the permissions of every attached connection (they may have changed) by
    /// what `lookup` gives for its user: with none left, everything is refused, as
    /// RabbitMQ's channels refuse once permissions are cleared.
    pub fn refresh_grants(&mut self, lookup: impl Fn(&str) -> Option<Arc<Grants>>) {
        for a in self.connections.values_mut() {
            let user = a.grants.user.clone();
            a.grants =
                lookup(&user).unwrap_or_else(|| Arc::new(Grants::nothing(&user, &self.name)));
        }
    }

    /// May the connection's user do `perm` on `name`? Work that is not a connection's
    /// (conn not attached: definitions import, the model's own tests) is not checked.
    pub(super) fn authorize(
        &self,
        conn: u64,
        perm: Perm,
        resource: Resource,
        name: &str,
    ) -> Result<(), BrokerError> {
        match self.connections.get(&conn) {
            Some(a) => a.grants.check(perm, resource, name),
            None => Ok(()),
        }
    }

    /// The connection's permissions, if it is attached.
    pub(super) fn grants_of(&self, conn: u64) -> Option<&Arc<Grants>> {
        self.connections.get(&conn).map(|a| &a.grants)
    }

    /// Asks every attached connection of `user` (every one with `None`) to close with
    /// 320 and `text`; returns how many were asked.
    pub fn close_connections(&mut self, user: Option<&str>, text: &str) -> usize {
        let text: Arc<str> = text.into();
        let mut n = 0;
        for a in self.connections.values() {
            if user.is_none_or(|u| *a.grants.user == *u) {
                a.outbox.push(Outgoing::Close { text: text.clone() });
                n += 1;
            }
        }
        n
    }

    /// Closes everything a connection held: its channels (requeueing their unacked
    /// messages) and its exclusive queues.
    pub fn close_connection(&mut self, conn: u64) {
        if self.connections.remove(&conn).is_none() {
            return;
        }
        let keys: Vec<ChannelKey> = self
            .channels
            .keys()
            .filter(|k| k.0 == conn)
            .copied()
            .collect();
        for key in keys {
            self.close_channel(key);
        }
        let exclusive: Vec<Arc<str>> = self
            .queues
            .values()
            .filter(|q| q.exclusive_owner == Some(conn))
            .map(|q| q.name.clone())
            .collect();
        for name in exclusive {
            self.remove_queue(&name);
        }
    }

    /// The connection put the channel in confirm or transactional mode.
    pub fn set_channel_mode(&mut self, key: ChannelKey, mode: ChannelMode) {
        if let Some(ch) = self.channels.get_mut(&key) {
            ch.mode = mode;
        }
    }

    pub fn open_channel(&mut self, key: ChannelKey, outbox: Arc<Outbox>) {
        debug_assert!(
            self.connections.contains_key(&key.0),
            "channel of an unattached connection"
        );
        self.channels.insert(key, ChannelState::new(outbox));
        self.stats.channel_opened();
    }

    /// For tests: attaches connection `conn` (as guest, with every permission on this
    /// vhost) and opens its channel `channel`.
    #[cfg(test)]
    pub(crate) fn open_test_channel(&mut self, (conn, channel): ChannelKey) -> ChannelKey {
        if !self.connections.contains_key(&conn) {
            let peer = "127.0.0.1:1".parse().expect("literal");
            let info = ConnectionInfo::new(conn, (peer, peer), "guest", &self.name);
            let grants = Arc::new(Grants::everything("guest", &self.name));
            self.attach_connection(conn, grants, Outbox::new(0), Arc::new(info), None)
                .expect("attached");
        }
        self.open_channel((conn, channel), Outbox::new(0));
        (conn, channel)
    }

    /// Closes a channel: cancels its consumers and requeues its unacked messages.
    pub fn close_channel(&mut self, key: ChannelKey) {
        let Some(ch) = self.channels.remove(&key) else {
            return;
        };
        self.stats.channel_closed();
        if let Some(r) = &ch.reply {
            self.reply_names.remove(&r.name);
        }
        let mut touched: Vec<Arc<str>> = Vec::new();
        for (tag, queue) in &ch.consumers {
            self.detach_consumer(queue, key, tag);
            if !touched.contains(queue) {
                touched.push(queue.clone());
            }
        }
        for u in ch.unacked.into_iter().flatten() {
            // A stream's deliveries are not taken from it: nothing to give back.
            let owner = self.queues.get_mut(&u.queue);
            if let Some(q) = owner.filter(|q| q.id == u.queue_id && !q.is_stream()) {
                if let Err(e) = super::dispatch::return_delivery(q, u.seq, &mut self.pending_dead) {
                    tracing::error!(queue = %q.name, "dropping a message over its delivery limit: {e}");
                }
                if !touched.contains(&u.queue) {
                    touched.push(u.queue.clone());
                }
            }
        }
        self.drain_dead_letters();
        let now = super::vhost::now_millis();
        for q in touched {
            self.maybe_auto_delete(&q);
            self.dispatch(&q);
            // Requeued messages count against a length limit again, and an older message
            // may now be at the head of an expiring queue.
            self.trim(&q);
            if self.queues.get(&q).is_some_and(|q| q.can_expire()) {
                self.schedule(&q, now);
            }
        }
    }

    /// Called when a connection drained a full outbox: resume dispatch to its consumers.
    pub fn resume_connection(&mut self, conn: u64) {
        let queues: Vec<Arc<str>> = self
            .channels
            .iter()
            .filter(|(k, _)| k.0 == conn)
            .flat_map(|(_, ch)| ch.consumers.values().cloned())
            .collect();
        for q in queues {
            self.dispatch(&q);
        }
    }

    pub fn qos(&mut self, key: ChannelKey, prefetch_count: u16, global: bool) {
        let queues: Vec<Arc<str>> = match self.channels.get_mut(&key) {
            Some(ch) => {
                if global {
                    ch.channel_prefetch = prefetch_count;
                } else {
                    ch.consumer_prefetch = prefetch_count;
                }
                ch.consumers.values().cloned().collect()
            }
            None => return,
        };
        for q in queues {
            self.dispatch(&q);
        }
    }
}
