//! Grants that arrive after a change of leader. A member asks the leader it knows for
//! messages (`replica_checkout.rs`) and the answer may come after that leader was
//! replaced. What the grant names is then held by no one the new leader knows of:
//!
//! - If this node leads now, the grant is of the last leader's, and no consumer here took
//!   what it names: as the grants that were waiting here when this node took over
//!   (`take_over`'s `undelivered`), those messages are not held for the last leader but
//!   ready here.
//! - If another node leads now, this node's claim to it (`replica_claims.rs`) names what
//!   its consumers hold. For consumers, the checkout task asks and claims in turn, so a
//!   late grant to them is taken and claimed next. A basic.get asks on its own: its grant
//!   may come after the claim went, and the new leader may hand the message out again.
//!   So a get's grant is delivered only if the copy has seen no change of leader since
//!   the ask (`GetGrant::leaders_seen`); otherwise it goes back to the group undelivered,
//!   as a grant whose channel closed does, and the get asks again.

use super::queue::Queue;
use super::replica_takeover::taken_over_done;
use super::replicated::{replica_of, GetGrant, QueueRef};
use super::vhost::VHost;

/// Whether a get's grant may go out here: this node does not lead the queue, and its copy
/// has seen no change of leader since it asked.
fn is_current(q: &mut Queue, grant: GetGrant) -> bool {
    replica_of(q).is_some_and(|r| !r.leading && r.leaders_seen == grant.leaders_seen)
}

/// Group message `id`, granted to this node by a leader replaced since: on a leader, ready
/// again if it was held for the last leader (and never taken for it by a later mark); on
/// a member, given back to the group undelivered.
pub(super) fn late_grant(q: &mut Queue, id: u64) {
    let Some(r) = replica_of(q) else {
        return;
    };
    if !r.leading {
        r.late_grant_given_back(id);
        return;
    }
    if let Some(seq) = r.seq_of(id) {
        r.taken_over.undelivered.insert(seq);
    }
    r.forget_out(id);
    taken_over_done(q, id, true);
}

impl VHost {
    /// On a member that does not lead queue `queue`: the changes of leader its copy has
    /// seen, which a basic.get's ask records (`None`: it leads, or has no copy).
    pub fn replica_leaders_seen(&mut self, (name, id): QueueRef<'_>) -> Option<u64> {
        let r = replica_of(self.replica_queue(name, id)?)?;
        (!r.leading).then_some(r.leaders_seen)
    }

    /// A basic.get's grant has come (and the copy has applied what the leader had): true
    /// if it may be delivered here; otherwise it is given back or made ready
    /// (`late_grant`), and the get asks again.
    pub fn replica_get_grant_current(&mut self, (name, id): QueueRef<'_>, grant: GetGrant) -> bool {
        let Some(q) = self.replica_queue(name, id) else {
            return false;
        };
        if is_current(q, grant) {
            return true;
        }
        tracing::debug!(
            queue = name,
            "cluster: a get's grant came after a change of leader; given back"
        );
        late_grant(q, grant.id);
        self.dispatch(name);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::replica_takeover::tests::{
        id, lead_after_last_through, mark, state, with_copy, LAST, LINKED,
    };

    /// A get asked before the copy saw a new leader: its grant goes back to the group
    /// with the count it was granted with, and nothing is delivered.
    #[test]
    fn a_get_grant_from_a_replaced_leader_goes_back_undelivered() {
        with_copy(|m, queue| {
            let key = m.open_test_channel((7, 1));
            let seen = m.replica_leaders_seen(queue).expect("a member");
            let grant = GetGrant {
                id: id(1),
                leaders_seen: seen,
            };
            m.replica_went_out(queue, &[id(1)], &[3]);
            m.replica_new_leader(queue);
            assert!(!m.replica_get_grant_current(queue, grant));
            let r = replica_of(m.replica_queue(queue.0, queue.1).unwrap()).unwrap();
            assert_eq!(r.returned, [id(1)], "given back to the group");
            assert_eq!(r.returned_seen, [3], "with the grant's count");
            let got = m.replica_get(key, queue, false, Some(grant)).unwrap();
            assert!(got.is_none(), "not delivered");
            let fresh = GetGrant {
                id: id(2),
                leaders_seen: seen + 1,
            };
            assert!(m
                .replica_get(key, queue, false, Some(fresh))
                .unwrap()
                .is_some());
        });
    }

    /// A grant of the last leader's that comes after this node took over: what it names
    /// is not held for the last leader any more but ready here, and a later mark of the
    /// last leader's does not take it.
    #[test]
    fn a_grant_that_comes_after_this_node_took_over_is_ready_here() {
        with_copy(|m, queue| {
            lead_after_last_through(m, queue, 0);
            let before = state(m, queue);
            m.replica_granted(queue, &[id(0)], &[0]);
            let (ready, held, returned) = state(m, queue);
            assert_eq!(
                (ready, held, returned),
                (before.0 + 1, before.1 - 1, before.2),
                "ready again, not counted"
            );
            let q = m.replica_queue(queue.0, queue.1).unwrap();
            let r = replica_of(q).unwrap();
            assert!(r.granted.is_empty() && r.awaited.is_empty());
            m.replica_out_mark(queue, mark(id(4), LAST), &LINKED);
            assert_eq!(
                state(m, queue),
                (2, 3, 0),
                "ids 1, 3 and 4 taken for the last leader, not the late grant's"
            );
        });
    }
}
