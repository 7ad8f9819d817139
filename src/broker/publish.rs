//! Publishing: routing a batch of messages through the vhost's exchanges and appending
//! them to their queues' logs, one batch append per queue.

use std::sync::Arc;

use warren_storage::{BatchRecord, Ticket};

use super::confirms::ConfirmTicket;
use super::error::BrokerError;
use super::exchange;
use super::message;
use super::vhost::{now_millis, VHost};

/// Result of routing and storing one published message.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    /// At least one queue received it.
    pub routed: bool,
    /// The sync covering every persistent copy (DONE if none needs one).
    pub ticket: ConfirmTicket,
    /// A queue failed to store it: the confirm must be a nack.
    pub failed: bool,
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
        // (queue, message index) pairs in publish order.
        let mut deliveries: Vec<(Arc<str>, usize)> = Vec::new();
        let mut targets = std::mem::take(&mut self.route_scratch);
        for (i, m) in msgs.iter().enumerate() {
            match self.route(m, &mut targets) {
                Ok(()) => {
                    results.push(Ok(Published {
                        routed: !targets.is_empty(),
                        ticket: Ticket::DONE,
                        failed: false,
                    }));
                    deliveries.extend(targets.drain(..).map(|q| (q, i)));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        self.route_scratch = targets;
        self.stats.published(msgs.len() as u64);
        self.store_batch(msgs, &mut deliveries, &mut results);
        results
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
        let mut parts: Vec<&[u8]> = Vec::with_capacity(msgs.len() * 3);
        let mut part_ranges: Vec<(usize, usize)> = Vec::with_capacity(msgs.len());
        for (m, (a, b)) in msgs.iter().zip(&prefix_ranges) {
            let start = parts.len();
            parts.push(&prefixes[*a..*b]);
            parts.push(m.header);
            parts.extend_from_slice(m.body);
            part_ranges.push((start, parts.len()));
        }
        // Group by queue, keeping publish order within each queue.
        deliveries.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        let now = now_millis();
        let mut batch: Vec<BatchRecord<'_>> = Vec::new();
        let mut k = 0;
        while k < deliveries.len() {
            let queue = deliveries[k].0.clone();
            let end = deliveries[k..]
                .iter()
                .position(|d| d.0 != queue)
                .map_or(deliveries.len(), |p| k + p);
            if let Some(q) = self.queues.get_mut(&queue) {
                batch.clear();
                batch.extend(deliveries[k..end].iter().map(|&(_, i)| {
                    let (a, b) = part_ranges[i];
                    BatchRecord {
                        timestamp: now,
                        persistent: msgs[i].persistent && q.durable,
                        parts: &parts[a..b],
                    }
                }));
                let outcome = q.log.append_batch(&batch);
                for &(_, i) in &deliveries[k..end] {
                    if let Ok(p) = results[i].as_mut() {
                        match outcome {
                            Ok((_, ticket)) => p.ticket = p.ticket.max(ticket),
                            Err(_) => p.failed = true,
                        }
                    }
                }
                self.dispatch(&queue);
            }
            k = end;
        }
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
        if m.exchange.is_empty() {
            if let Some((name, _)) = self.queues.get_key_value(m.routing_key) {
                targets.push(name.clone());
            }
        } else {
            exchange::route_all(&self.exchanges, ex, m.routing_key, m.headers_table, targets);
        }
        Ok(())
    }
}
