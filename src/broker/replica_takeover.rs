//! A leader's deliveries across a change of leader.
//!
//! Which consumer holds which message is not replicated (`cluster/queue_machine.rs`); the
//! leader's writer only tells the group how far it has handed messages out (an
//! `OutMark`). Messages go out first in id order, so every message up to the mark that
//! the group has never seen returned went out from that leader, and is still out unless
//! it has been settled since. A new leader takes those of its ready messages as held by
//! the node that led (`take_over_held`), as it holds what it grants a member:
//! - a dead leader's are returned at once, before the new leader hands anything out,
//!   each counting a return (`redelivered`, `x-delivery-count`, the delivery limit), at
//!   the head of the queue, as RabbitMQ's next leader returns a dead leader's checkouts
//!   (`tests/cluster_reference/rabbitmq_failover_redelivery.md`). Dead: no live
//!   connection carries its node's beacons (a killed process's sockets close with it), or
//!   it is an earlier start of this node. A leader that is silent but connected (paused,
//!   or its link gone quiet) gets a short lease (`TAKEN_OVER_LEASE_MS`) instead;
//! - a deposed leader that lives on keeps asking while its consumers hold deliveries, so
//!   they stay with it, and its acks settle them;
//! - a message the last leader had granted to a third node is taken as the last leader's
//!   too (which node has it is not known): any node's return of it frees it, and it is
//!   returned when the last leader's lease ends (counted, while that node's consumer may
//!   still hold it: at least once, as before, but now marked redelivered).
//!
//! Before this, the next leader had those messages ready at once and delivered them again
//! as first deliveries (`redelivered` false, no `x-delivery-count`).

use std::collections::HashSet;

use super::queue::replica::{OutMark, RemoteHolder};
use super::queue::Queue;
use super::replicated::{replica_of, QueueRef};
use super::vhost::VHost;

/// A node's process: its node id and incarnation (its start time, `WriteId::started_at`).
pub type Process = (u64, u64);

/// What a leader taking over knows of the cluster: its own process, and whether a node is
/// gone (no live connection carries its beacons: it died, or the link broke).
pub struct Cluster<'a> {
    pub me: Process,
    pub gone: &'a dyn Fn(u64) -> bool,
}

impl Cluster<'_> {
    /// Whether `mark`'s process is certainly not running: its node is gone, or it is an
    /// earlier start of this node.
    fn dead(&self, mark: &OutMark) -> bool {
        match mark.node == self.me.0 {
            true => mark.incarnation != self.me.1,
            false => (self.gone)(mark.node),
        }
    }
}

/// On the leader: takes what `mark` says its node handed out (ready here, never
/// returned, id up to `mark.through`) as held by that node, except `keep` (store seqs
/// that stay ready: what the last leader granted this node that no consumer here took).
/// Nothing when the mark is this process's own (its consumers have those, or it made
/// them ready itself as it stopped leading). Returns the node when what it took is to be
/// returned at once (that process is dead: RabbitMQ's leader returns a node's checkouts
/// as soon as it hears the node is down); otherwise it waits for that node to ask.
pub(super) fn take_over_held(
    q: &mut Queue,
    mark: OutMark,
    cluster: &Cluster<'_>,
    keep: &HashSet<u64>,
    now: u64,
) -> Option<u64> {
    if (mark.node, mark.incarnation) == cluster.me {
        return None;
    }
    let mut held = Vec::new();
    let mut put_back = Vec::new();
    // Requeued messages come first, then the log in order: the walk ends at the first
    // message of the log past the mark.
    while let Some((rec, at)) = q.peek() {
        let Some(id) = replica_of(q).and_then(|r| r.id_of(rec.seq)) else {
            break;
        };
        if !at.requeued() && id > mark.through {
            break;
        }
        let seq = rec.seq;
        q.take(&rec, at);
        match id <= mark.through && q.returns_of(seq) == 0 && !keep.contains(&seq) {
            true => held.push((id, seq)),
            false => put_back.push(seq),
        }
    }
    for seq in put_back {
        q.restore(seq);
    }
    if held.is_empty() {
        return None;
    }
    for &(_, seq) in &held {
        q.store.mark_delivered(seq);
        q.unacked += 1;
    }
    let dead = cluster.dead(&mark);
    tracing::info!(
        queue = %q.name,
        node = mark.node,
        taken = held.len(),
        dead,
        "cluster: the last leader's deliveries held for its node until it claims them"
    );
    let r = replica_of(q).expect("a replica: ids were found");
    let holder = r.remote.entry(mark.node).or_insert_with(|| RemoteHolder {
        incarnation: mark.incarnation,
        last_seen: now,
        ..RemoteHolder::default()
    });
    holder.taken_over = true;
    for (id, seq) in held {
        holder.held.insert(id, (seq, 0));
    }
    dead.then_some(mark.node)
}

impl VHost {
    /// On a leader taking over queue `queue` (before it dispatches): holds what the
    /// group's mark names for the last leader's node, returned at once if that process is
    /// dead (`keep`: as `take_over_held`).
    pub(super) fn take_over(
        &mut self,
        (name, id): QueueRef<'_>,
        cluster: &Cluster<'_>,
        keep: &HashSet<u64>,
        now: u64,
    ) {
        let Some(q) = self.replica_queue(name, id) else {
            return;
        };
        let Some(mark) = replica_of(q).and_then(|r| r.group_out) else {
            return;
        };
        if let Some(node) = take_over_held(q, mark, cluster, keep, now) {
            self.return_remote((name, id), &[node], now);
        }
    }

    /// The group's `OutMark` as a committed round (or a state the copy was rebuilt from)
    /// has it. On the leader, a mark of another process's (a deposed leader's round that
    /// committed after this node took over) takes what it names as that node's.
    pub fn replica_out_mark(&mut self, queue: QueueRef<'_>, mark: OutMark, cluster: &Cluster<'_>) {
        let Some(r) = self.replica_queue(queue.0, queue.1).and_then(replica_of) else {
            return;
        };
        let before = r.group_out;
        r.group_marked_out(mark);
        if r.leading && r.group_out != before && (mark.node, mark.incarnation) != cluster.me {
            self.take_over(queue, cluster, &HashSet::new(), super::vhost::now_millis());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::definitions_import::import_json;
    use crate::broker::queue::replica::GroupMessage;
    use crate::broker::replica_checkout::{Ask, TAKEN_OVER_LEASE_MS};
    use crate::broker::replicated::CommittedReturns;
    use crate::broker::BrokerHandle;

    /// A stored message (exchange, routing key, an empty content header, a body).
    fn stored_message() -> Vec<u8> {
        let mut prefix = [0u8; super::super::message::MAX_PREFIX];
        let header = [0u8, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0];
        let n = super::super::message::encode_prefix(&mut prefix, "", "q", header.len());
        [&prefix[..n], &header[..], b"m"].concat()
    }

    const ME: Process = (2, 9);
    /// Node 1's process that led before this node.
    const LAST: Process = (1, 7);

    fn none_gone(_: u64) -> bool {
        false
    }

    fn all_gone(_: u64) -> bool {
        true
    }

    /// Node 2, every other node's beacons coming in.
    const LINKED: Cluster<'static> = Cluster {
        me: ME,
        gone: &none_gone,
    };

    /// Node 2's copy of quorum queue `q` with five messages (ids `id(0)`..`id(4)`), the
    /// third returned once; `f` runs with the vhost and the queue.
    fn with_copy(f: impl FnOnce(&mut VHost, QueueRef<'_>)) {
        let dir = tempfile::tempdir().unwrap();
        let broker = BrokerHandle::open_ephemeral(dir.path()).unwrap();
        let q = r#"{"queues": [{"name": "q", "vhost": "/", "durable": true,
                    "auto_delete": false, "arguments": {"x-queue-type": "quorum"}}]}"#;
        import_json(&broker, q.as_bytes()).expect("declared");
        broker.vhost("/").unwrap().with(|m| {
            let (_, qid) = m.replica_attach("q", &[], false).unwrap();
            let stored = stored_message();
            let messages: Vec<GroupMessage<'_>> = (0..5)
                .map(|k| GroupMessage {
                    id: id(k),
                    stored: &stored,
                    returns: (k == 2) as u32,
                    enqueued_at: 0,
                })
                .collect();
            m.replica_add(("q", qid), &messages, &[]);
            f(m, ("q", qid));
        });
    }

    fn id(k: u64) -> u64 {
        (1 << 16) | k
    }

    fn mark(through: u64, (node, incarnation): Process) -> OutMark {
        OutMark {
            node,
            incarnation,
            through,
        }
    }

    /// (ready, unacked, returns of the first message) of the copy.
    fn state(m: &mut VHost, (name, qid): QueueRef<'_>) -> (u64, u64, u32) {
        let q = m.replica_queue(name, qid).unwrap();
        let seq = replica_of(q).unwrap().seq_of(id(0)).unwrap();
        (q.ready(), q.unacked, q.returns_of(seq))
    }

    /// The last leader handed out the first four (one of them a redelivery): the new
    /// leader holds the three never returned for the last leader's node, the returned one
    /// and the fifth stay ready. A dead leader never asks: a short lease later they are
    /// returned, each counted.
    #[test]
    fn a_new_leader_holds_what_the_last_one_handed_out_and_returns_it_counted() {
        with_copy(|m, queue| {
            // Followed as a member: the mark is only noted.
            m.replica_out_mark(queue, mark(id(3), LAST), &LINKED);
            assert_eq!(state(m, queue), (5, 0, 0));
            m.replica_leading(queue, true, true, &LINKED);
            assert_eq!(state(m, queue), (2, 3, 0), "ids 0, 1, 3 held");
            let now = super::super::vhost::now_millis();
            m.replica_expire_remote(queue, now + TAKEN_OVER_LEASE_MS / 2);
            assert_eq!(state(m, queue).1, 3, "within the lease");
            m.replica_expire_remote(queue, now + TAKEN_OVER_LEASE_MS + 500);
            assert_eq!(state(m, queue), (5, 0, 1), "returned, counted");
        });
    }

    /// The last leader's node is gone (its connection closed, or it is an earlier start
    /// of this node): what it handed out is returned at once, counted, at the head of the
    /// queue, before the new leader hands out anything.
    #[test]
    fn a_dead_leaders_deliveries_are_returned_at_once() {
        for (mark_of, gone) in [
            (LAST, &all_gone as &dyn Fn(u64) -> bool),
            ((2, 8), &none_gone),
        ] {
            with_copy(|m, queue| {
                let cluster = Cluster { me: ME, gone };
                m.replica_out_mark(queue, mark(id(3), mark_of), &cluster);
                m.replica_leading(queue, true, true, &cluster);
                assert_eq!(state(m, queue), (5, 0, 1), "returned, counted");
                let q = m.replica_queue(queue.0, queue.1).unwrap();
                let head = q.peek().map(|(rec, _)| rec.seq);
                let first = replica_of(q).unwrap().seq_of(id(0));
                assert_eq!(head, first, "at the head");
            });
        }
    }

    /// A deposed leader that lives on asks the new one (its consumers hold deliveries):
    /// what it handed out stays with it for the whole lease of a node that asks.
    #[test]
    fn a_last_leader_that_asks_keeps_what_it_handed_out() {
        with_copy(|m, queue| {
            m.replica_out_mark(queue, mark(id(1), LAST), &LINKED);
            m.replica_leading(queue, true, true, &LINKED);
            assert_eq!(state(m, queue), (3, 2, 0));
            let now = super::super::vhost::now_millis();
            let ask = Ask {
                node: LAST.0,
                incarnation: LAST.1,
                want: 0,
                first: None,
                get: false,
            };
            assert_eq!(m.replica_grant(queue, ask, now), Some(Vec::new()));
            m.replica_expire_remote(queue, now + TAKEN_OVER_LEASE_MS + 500);
            assert_eq!(state(m, queue), (3, 2, 0), "kept while it asks");
            // Restarted, it holds nothing: returned at its first request.
            let restarted = Ask {
                incarnation: LAST.1 + 1,
                ..ask
            };
            assert_eq!(
                m.replica_grant(queue, restarted, now).map(|g| g.len()),
                Some(0)
            );
            assert_eq!(state(m, queue), (5, 0, 1));
        });
    }

    /// Which node's consumer has a taken-over message is not known: a return of it from
    /// a third node frees it (the group counted that return).
    #[test]
    fn any_nodes_return_frees_a_taken_over_message() {
        with_copy(|m, queue| {
            m.replica_out_mark(queue, mark(id(0), LAST), &LINKED);
            m.replica_leading(queue, true, true, &LINKED);
            assert_eq!(state(m, queue), (4, 1, 0));
            let third = CommittedReturns {
                ids: &[id(0)],
                seen: &[0],
                from: Some(3),
                mine: false,
                stale: &[],
            };
            m.replica_returned(queue, third);
            assert_eq!(state(m, queue), (5, 0, 1));
        });
    }

    /// This process's own mark (it led, stopped, and leads again) takes nothing: its
    /// consumers have what it handed out. A deposed leader's round that commits late,
    /// its mark below the group's, changes nothing either.
    #[test]
    fn a_mark_of_this_process_takes_nothing() {
        with_copy(|m, queue| {
            m.replica_out_mark(queue, mark(id(4), ME), &LINKED);
            m.replica_leading(queue, true, true, &LINKED);
            assert_eq!(state(m, queue), (5, 0, 0));
            m.replica_out_mark(queue, mark(id(1), LAST), &LINKED);
            assert_eq!(state(m, queue), (5, 0, 0), "the mark only moves forwards");
        });
    }
}
