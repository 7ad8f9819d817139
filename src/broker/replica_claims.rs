//! What the members' consumers hold when the leader changes.
//!
//! The group's `OutMark` says how far the last leader handed messages out, not to whom
//! (`replica_takeover.rs`): its own consumers, or another member's (`replica_checkout.rs`
//! grants). A member's first ask to a new leader names the group ids its consumers hold
//! (`replica_holding`: delivered and not settled, or granted and not delivered yet); the
//! new leader moves those from what it holds for the last leader to that member's
//! holding (`take_claims`), under the member's lease, as if it had granted them itself.
//! They are not delivered again: RabbitMQ's next leader keeps the checkouts of live
//! consumers the same way, and only a dead consumer's come back counted.
//!
//! A claimed message may also be ready on the new leader: a redelivery or one of the last
//! leader's last round (the mark does not name those), or what a deposed leader made
//! ready again as it stopped leading. Those are taken for the member too, if the count
//! it names is the message's (otherwise the claim is stale: the message went back and
//! out again since). So after a change of leader the new one hands nothing out until
//! every live member has claimed, or `CLAIM_WAIT_MS` has passed (`holds_back`: dispatch,
//! basic.get, grants, expiry). When the last leader is dead, what is left of its
//! deliveries then is its own consumers', returned, counted, and they go out first, at
//! the head of the queue, as RabbitMQ's next leader has them. A member that does not
//! claim in time (paused, cut off) may have its holdings delivered again: at least
//! once. Nodes lent messages (no copy, no Raft to see a new leader by) do not claim.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::queue::Queue;
use super::replicated::{replica_of, LeaderGetWait, QueueRef};
use super::vhost::VHost;

/// The longest a new leader waits for the live members to name what their consumers hold
/// before it hands messages out, returning a dead leader's deliveries first
/// (milliseconds). A member asks at once on hearing of the new leader
/// (`replication/checkout.rs`), which its copy's Raft tells it with the leader's first
/// heartbeat; an ask already on its way to the last leader may take its whole timeout
/// (`cluster/checkout.rs`, 2 s) first.
pub const CLAIM_WAIT_MS: u64 = 2_500;

/// Whether the leader of `q` hands nothing out yet: it waits for the members' claims on
/// what a dead leader handed out (`CLAIM_WAIT_MS`; a queue timer ends the wait).
pub(super) fn holds_back(q: &Queue) -> bool {
    q.quorum
        .as_ref()
        .and_then(|qs| qs.replica.as_ref())
        .is_some_and(|r| r.leading && r.taken_over.claims_until != 0)
}

/// A basic.get on a leader that holds back (`holds_back`): what it waits for before it
/// is made again (the claims are in, or the wait's time is up; it resolves to no id:
/// `VHost::replica_get` then gets from this node's copy). `None`: nothing held back.
pub(super) fn claims_wait(q: &Queue) -> Option<LeaderGetWait> {
    let r = q.quorum.as_ref()?.replica.as_ref()?;
    if !r.leading || r.taken_over.claims_until == 0 {
        return None;
    }
    let waiting = r.taken_over.waiting.clone();
    // The queue timer ends the wait at `claims_until`; a little after, the get goes on
    // whatever happened.
    let until = r.taken_over.claims_until + 100;
    Some(Box::pin(async move {
        while waiting.load(Ordering::Acquire) && super::vhost::now_millis() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }))
}

impl VHost {
    /// On a member: the group ids of queue `queue` this node's consumers hold (delivered
    /// and not settled, whichever leader handed them out), and what the leader granted
    /// this node that no consumer took yet, each with the returns counted of it when it
    /// went out. Sorted.
    pub fn replica_holding(&mut self, (name, id): QueueRef<'_>) -> Vec<(u64, u32)> {
        let Some(q) = self.queues.get(name).filter(|q| q.id == id) else {
            return Vec::new();
        };
        let Some(r) = q.quorum.as_ref().and_then(|qs| qs.replica.as_ref()) else {
            return Vec::new();
        };
        let mut ids: Vec<u64> = r.awaited.iter().copied().collect();
        ids.extend(r.granted.iter().filter_map(|seq| r.id_of(*seq)));
        let delivered = self
            .channels
            .values()
            .flat_map(|ch| ch.unacked.iter().flatten())
            .filter(|u| u.queue_id == id && &*u.queue == name)
            .filter_map(|u| r.id_of(u.seq));
        ids.extend(delivered);
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().map(|id| (id, r.out_count(id))).collect()
    }

    /// On the leader: whether queue `queue` hands nothing out yet (`holds_back`). An ask
    /// answered with nothing is told so, and a basic.get on another node asks again
    /// rather than answering get-empty, as one on this node waits (`claims_wait`).
    pub fn replica_holds_back(&self, (name, id): QueueRef<'_>) -> bool {
        self.queues
            .get(name)
            .filter(|q| q.id == id)
            .is_some_and(|q| holds_back(q))
    }

    /// On a member: its copy's Raft shows a new leader (or a new term): its checkout task
    /// tells that leader at once what this node's consumers hold, idle or not.
    pub fn replica_new_leader(&mut self, (name, id): QueueRef<'_>) {
        if let Some(r) = self.replica_queue(name, id).and_then(replica_of) {
            r.leaders_seen += 1;
            r.room.notify_one();
        }
    }

    /// On the leader: the live members that have not claimed yet may hold some of what
    /// was handed out before this node led (held for the last leader, or ready here):
    /// nothing goes out until they have claimed, or `CLAIM_WAIT_MS` has passed; with
    /// none to wait for, the wait ends at once. `dead`: a node whose process that handed
    /// messages out is dead (this node took over from it, or it went since): what is
    /// held for it is returned when the wait ends, and it is no member to wait for.
    pub(super) fn await_claims(&mut self, queue: QueueRef<'_>, dead: Option<u64>, now: u64) {
        let Some(r) = self.replica_queue(queue.0, queue.1).and_then(replica_of) else {
            return;
        };
        let to = &mut r.taken_over;
        if let Some(dead) = dead {
            to.members.retain(|&n| n != dead);
            for t in to.held.values_mut().filter(|t| t.node == dead) {
                t.dead = true;
            }
        }
        if to.unclaimed().next().is_none() {
            self.finish_claims(queue, now);
            return;
        }
        let starts = to.claims_until == 0;
        if starts {
            to.claims_until = now + CLAIM_WAIT_MS;
            to.waiting.store(true, Ordering::Release);
        }
        let until = to.claims_until;
        for t in to.held.values_mut().filter(|t| t.dead) {
            t.until = until;
        }
        if starts {
            self.schedule(queue.0, until);
        }
    }

    /// On the leader: node `node`'s process `incarnation` claims, in its first ask to
    /// this leader, what its consumers hold (`held`: group id, and the returns counted of
    /// it when it went out to them). What of that this leader holds for the last leader,
    /// or has ready (a delivery the group's mark does not name: a redelivery, one of the
    /// last leader's last round, or one a deposed leader made ready again), with that
    /// count, is that node's now, under its lease, as if this leader had granted it (a
    /// message counted since went back and out again: the claim is stale). Once every
    /// awaited member has claimed, the wait ends.
    pub(super) fn take_claims(
        &mut self,
        queue: QueueRef<'_>,
        node: u64,
        incarnation: u64,
        held: &[(u64, u32)],
        now: u64,
    ) {
        let Some(q) = self.replica_queue(queue.0, queue.1) else {
            return;
        };
        let mut claimed = Vec::new();
        for &(id, count) in held {
            let Some(seq) = replica_of(q).and_then(|r| r.seq_of(id)) else {
                continue;
            };
            if q.returns_of(seq) != count {
                continue;
            }
            let r = replica_of(q).expect("a replica: checked above");
            if r.taken_over.held.remove(&id).is_some() {
                claimed.push((id, seq, count));
            } else if q.take_ready(seq) {
                q.store.mark_delivered(seq);
                q.unacked += 1;
                q.note_out(seq);
                claimed.push((id, seq, count));
            }
        }
        let Some(r) = replica_of(q) else {
            return;
        };
        r.taken_over.claimed.insert(node);
        if !claimed.is_empty() {
            let holder = r.remote.entry(node).or_default();
            holder.incarnation = incarnation;
            holder.last_seen = now;
            for &(id, seq, count) in &claimed {
                holder.held.insert(id, (seq, count));
            }
            tracing::info!(
                queue = queue.0,
                node,
                held = claimed.len(),
                "cluster: a member's consumers hold deliveries of before this leader; they stay with them"
            );
        }
        let to = &r.taken_over;
        if to.claims_until != 0 && to.unclaimed().next().is_none() {
            self.finish_claims(queue, now);
        }
    }

    /// On the leader: ends the wait for the members' claims if its time has run out (a
    /// queue timer, and the leader's lease checks).
    pub(super) fn end_claims(&mut self, name: &str, now: u64) {
        let Some(q) = self.queues.get_mut(name) else {
            return;
        };
        let id = q.id;
        let due = replica_of(q).is_some_and(|r| {
            let until = r.taken_over.claims_until;
            until != 0 && now >= until
        });
        if due {
            self.finish_claims((name, id), now);
        }
    }

    /// The wait for the members' claims is over (all claimed, nothing dead left, or its
    /// time ran out): the dead leader's deliveries left are returned, counted, and the
    /// queue hands messages out again.
    fn finish_claims(&mut self, queue: QueueRef<'_>, now: u64) {
        let Some(r) = self.replica_queue(queue.0, queue.1).and_then(replica_of) else {
            return;
        };
        let to = &mut r.taken_over;
        to.claims_until = 0;
        to.waiting.store(false, Ordering::Release);
        let mut silent: Vec<u64> = to.unclaimed().collect();
        if !silent.is_empty() {
            silent.sort_unstable();
            tracing::info!(
                queue = queue.0,
                ?silent,
                "cluster: members did not say in time what their consumers hold"
            );
        }
        // Returned, or nothing to return: either way the queue's consumers are served.
        self.return_taken_over(queue, |t| t.dead, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::replica_checkout::Ask;
    use crate::broker::replica_takeover::tests::{id, mark, state_of, with_copy, LAST, ME};
    use crate::broker::replica_takeover::Cluster;
    use crate::broker::vhost::now_millis;

    /// Node 1 (the last leader) is gone; node 3 lives.
    fn only_the_last_leader_gone(node: u64) -> bool {
        node == LAST.0
    }

    const MEMBERS: [u64; 3] = [1, 2, 3];

    /// The last leader handed out ids 0, 1 and 3 (2 had been returned before, so it is
    /// left ready) and died; node 2 takes over, node 3 lives.
    fn take_over_from_dead_leader(m: &mut VHost, queue: QueueRef<'_>) {
        let cluster = Cluster {
            me: ME,
            gone: &only_the_last_leader_gone,
            members: &MEMBERS,
        };
        m.replica_out_mark(queue, mark(id(3), LAST), &cluster);
        m.replica_leading(queue, true, true, &cluster);
    }

    /// Node 3's claim: its consumers hold `held` (id, returns counted when it went out).
    fn claim(held: &[(u64, u32)], want: u32) -> Ask<'_> {
        Ask {
            node: 3,
            incarnation: 5,
            want,
            first: None,
            get: false,
            held: Some(held),
            claim_only: want == 0,
        }
    }

    /// The three the dead leader handed out are ready again, counted once.
    fn all_three_returned(m: &mut VHost, queue: QueueRef<'_>) {
        assert_eq!(
            state_of(m, queue, 0),
            (5, 0, 1),
            "all three returned, counted"
        );
    }

    fn holds_back_now(m: &mut VHost, queue: QueueRef<'_>) -> bool {
        m.replica_holds_back(queue)
    }

    /// Node 3 says its consumer holds id 1: that one stays with node 3 (not counted, not
    /// ready); the other two, the dead leader's own consumers', are returned, counted,
    /// once node 3 (the only other live member) has spoken; and node 3's settle of id 1
    /// takes it off.
    #[test]
    fn what_a_live_member_holds_stays_and_the_rest_comes_back_once_it_has_spoken() {
        with_copy(|m, queue| {
            take_over_from_dead_leader(m, queue);
            assert_eq!(
                state_of(m, queue, 0),
                (2, 3, 0),
                "held while node 3 is awaited"
            );
            assert!(holds_back_now(m, queue), "nothing handed out meanwhile");
            let now = now_millis();
            let held = [(id(1), 0)];
            assert_eq!(
                m.replica_grant(queue, claim(&held, 0), now),
                Some(Vec::new())
            );
            assert!(!holds_back_now(m, queue));
            assert_eq!(
                state_of(m, queue, 0),
                (4, 1, 1),
                "ids 0 and 3 returned, counted"
            );
            assert_eq!(state_of(m, queue, 1).2, 0, "id 1 not counted");
            m.replica_settled(queue, &[id(1)]);
            assert_eq!(state_of(m, queue, 0), (4, 0, 1), "node 3's ack settles it");
        });
    }

    /// Node 3 never claims (paused, cut off): the queue timer ends the wait and the three
    /// are returned, counted. Until then nothing goes out, and no ask that is not node
    /// 3's claim (a basic.get of its own, a node lent messages) ends the wait.
    #[test]
    fn without_a_claim_the_timer_ends_the_wait_and_all_come_back() {
        with_copy(|m, queue| {
            take_over_from_dead_leader(m, queue);
            let now = now_millis();
            let get = Ask {
                held: None,
                get: true,
                claim_only: false,
                ..claim(&[], 1)
            };
            assert_eq!(m.replica_grant(queue, get, now), Some(Vec::new()));
            let lent_node = Ask {
                node: 4,
                held: None,
                claim_only: false,
                ..claim(&[], 5)
            };
            assert_eq!(m.replica_grant(queue, lent_node, now), Some(Vec::new()));
            m.run_timers(now + CLAIM_WAIT_MS / 2);
            assert!(holds_back_now(m, queue), "still waiting");
            assert_eq!(state_of(m, queue, 0), (2, 3, 0));
            m.run_timers(now + CLAIM_WAIT_MS + 10);
            assert!(!holds_back_now(m, queue));
            all_three_returned(m, queue);
        });
    }

    /// Node 3 goes while it is waited for: it will not claim, and the wait ends at once.
    #[test]
    fn a_member_gone_while_awaited_ends_the_wait() {
        with_copy(|m, queue| {
            take_over_from_dead_leader(m, queue);
            m.replica_node_gone(queue, 3, now_millis());
            assert!(!holds_back_now(m, queue));
            all_three_returned(m, queue);
        });
    }

    /// Node 3's consumer holds id 2 too, which the mark does not name (a redelivery: the
    /// group had seen it returned): ready here, it is held for node 3 as well rather
    /// than handed out a second time.
    #[test]
    fn a_claimed_message_the_mark_does_not_name_is_held_for_the_member() {
        with_copy(|m, queue| {
            take_over_from_dead_leader(m, queue);
            let held = [(id(1), 0), (id(2), 1)];
            assert_eq!(
                m.replica_grant(queue, claim(&held, 0), now_millis()),
                Some(Vec::new())
            );
            assert_eq!(
                state_of(m, queue, 2),
                (3, 2, 1),
                "ids 0 and 3 back, 1 and 2 held"
            );
            let q = m.replica_queue(queue.0, queue.1).unwrap();
            let r = replica_of(q).unwrap();
            let mut held_for_3: Vec<u64> = r.remote[&3].held.keys().copied().collect();
            held_for_3.sort_unstable();
            assert_eq!(held_for_3, [id(1), id(2)]);
        });
    }

    /// A claim naming a count the message no longer has is stale (the message was
    /// returned, counted, and is ready again): it is not taken for the member.
    #[test]
    fn a_stale_claim_takes_nothing() {
        with_copy(|m, queue| {
            take_over_from_dead_leader(m, queue);
            let held = [(id(2), 0)];
            let granted = m.replica_grant(queue, claim(&held, 0), now_millis());
            assert_eq!(granted, Some(Vec::new()));
            assert_eq!(
                state_of(m, queue, 2),
                (5, 0, 1),
                "id 2 ready; the three returned"
            );
        });
    }

    /// This process led before, stepped down (making what other nodes held ready again)
    /// and leads again: it takes nothing over, but hands nothing out until both live
    /// members have claimed, so a member's holding made ready is not delivered twice.
    #[test]
    fn a_leader_back_with_its_own_mark_waits_for_the_members() {
        with_copy(|m, queue| {
            let cluster = Cluster {
                me: ME,
                gone: &|_| false,
                members: &MEMBERS,
            };
            m.replica_out_mark(queue, mark(id(4), ME), &cluster);
            m.replica_leading(queue, true, true, &cluster);
            assert_eq!(state_of(m, queue, 0), (5, 0, 0), "nothing taken over");
            assert!(holds_back_now(m, queue), "the members are awaited");
            let now = now_millis();
            let held = [(id(3), 0)];
            assert_eq!(
                m.replica_grant(queue, claim(&held, 0), now),
                Some(Vec::new())
            );
            assert!(holds_back_now(m, queue), "node 1 is still awaited");
            assert_eq!(state_of(m, queue, 3), (4, 1, 0), "id 3 held for node 3");
            let node_1 = Ask {
                node: 1,
                ..claim(&[], 0)
            };
            assert_eq!(m.replica_grant(queue, node_1, now), Some(Vec::new()));
            assert!(!holds_back_now(m, queue));
        });
    }
}
