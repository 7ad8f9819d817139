//! What a peer's refusal of this node's vote request says about when to stand again.
//!
//! openraft refuses a candidate whose log is shorter than the voter's before it looks at
//! the candidate's term, so the voter does not move to that term. A node with the
//! longest log therefore learns of a newer term only when its own request is refused by
//! it, and then (`detector.rs` counts a new term's silence from when it is entered) waited
//! a whole silence before standing again, by which time the shorter-log node had stood in
//! a still newer term. With three nodes that chase can last a minute (seen in
//! `tools/jepsen.sh` runs after a leader was killed and restarted, its unreplicated
//! appends making its log the longest). openraft's own answer, waiting
//! `2 * election_timeout_max` longer after seeing a greater log, lives in its election
//! timer, which the queue groups turn off; this brings both halves to the detector:
//!
//! - refused by a longer log: hold back (`LONGER_LOG_HOLD`) so the longer log stands
//!   first;
//! - refused only by a newer term, by a voter whose log is not longer and which knows
//!   of no leader in that term: stand again after the group's short random pause, in a
//!   term above it, instead of after a whole silence;
//! - refused in the same term by a voter that stands in it itself with a log no longer
//!   than this node's: the same. Because openraft does not move a voter it refuses for a
//!   short log to the candidate's term, the node with the longest log keeps standing in
//!   a term a shorter log has already taken (seen after a restarted leader stepped down),
//!   and that voter would grant it the term above.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::raft::{VoteRequest, VoteResponse};
use tokio::time::Instant;

/// How much longer a node refused by a longer log waits before it stands again.
pub const LONGER_LOG_HOLD: Duration = Duration::from_millis(2000);

/// Why a vote request was refused, where it changes the next stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The voter's log is longer than the candidate's.
    LongerLog,
    /// The voter, whose log is no longer than the candidate's, knows of no leader in
    /// `term` (the voter's), which is newer than the candidate's or the same term with
    /// the voter standing in it: the candidate would win in a term above it.
    StaleTerm { term: u64 },
}

/// Which refusal, if either, `response` from node `voter` is to `request`.
pub fn classify(
    request: &VoteRequest<u64>,
    response: &VoteResponse<u64>,
    voter: u64,
) -> Option<Refusal> {
    if response.vote_granted {
        return None;
    }
    if response.last_log_id > request.last_log_id {
        return Some(Refusal::LongerLog);
    }
    if response.vote.is_committed() {
        return None;
    }
    let theirs = response.vote.leader_id();
    let ours = request.vote.leader_id().get_term();
    let stale = theirs.get_term() > ours
        || (theirs.get_term() == ours && theirs.voted_for() == Some(voter));
    stale.then_some(Refusal::StaleTerm {
        term: theirs.get_term(),
    })
}

/// The refusals seen since the detector last looked, per group name. A longer log wins
/// over a stale term in the same group: holding back is the safe side.
#[derive(Default)]
pub struct VoteRefusals {
    by_group: Mutex<HashMap<Arc<str>, (Instant, Refusal)>>,
}

impl VoteRefusals {
    /// Records `response` to this node's `request` in `group`, if it is a refusal that
    /// matters.
    pub fn observe(
        &self,
        group: &Arc<str>,
        request: &VoteRequest<u64>,
        response: &VoteResponse<u64>,
        voter: u64,
    ) {
        if let Some(refusal) = classify(request, response, voter) {
            self.record(group, refusal, Instant::now());
        }
    }

    fn record(&self, group: &Arc<str>, refusal: Refusal, at: Instant) {
        let mut seen = self.by_group.lock().expect("vote refusals");
        match seen.get(group) {
            Some((_, Refusal::LongerLog)) if refusal != Refusal::LongerLog => {}
            _ => {
                seen.insert(group.clone(), (at, refusal));
            }
        }
    }

    /// Everything recorded since the last call (nearly always nothing).
    pub fn take(&self) -> Vec<(Arc<str>, Instant, Refusal)> {
        let mut seen = self.by_group.lock().expect("vote refusals");
        if seen.is_empty() {
            return Vec::new();
        }
        seen.drain().map(|(g, (at, r))| (g, at, r)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId, Vote};

    fn log(term: u64, index: u64) -> Option<LogId<u64>> {
        Some(LogId::new(CommittedLeaderId::new(term, 0), index))
    }

    fn request(term: u64, last: Option<LogId<u64>>) -> VoteRequest<u64> {
        VoteRequest::new(Vote::new(term, 1), last)
    }

    #[test]
    fn refusals_are_told_apart_by_log_then_term() {
        let asked = request(5, log(3, 40));
        // Granted: nothing to record.
        let granted = VoteResponse::new(Vote::new(5, 1), log(3, 30), true);
        assert_eq!(classify(&asked, &granted, 2), None);
        // The voter holds entry 41: a longer log, whatever its term.
        let longer = VoteResponse::new(Vote::new(4, 2), log(3, 41), false);
        assert_eq!(classify(&asked, &longer, 2), Some(Refusal::LongerLog));
        let longer_by_term = VoteResponse::new(Vote::new(9, 2), log(4, 10), false);
        assert_eq!(
            classify(&asked, &longer_by_term, 2),
            Some(Refusal::LongerLog)
        );
        // A newer term, no leader in it, a shorter or equal log: stand again soon.
        let stale = VoteResponse::new(Vote::new(9, 3), log(3, 40), false);
        assert_eq!(
            classify(&asked, &stale, 2),
            Some(Refusal::StaleTerm { term: 9 })
        );
        // A newer term with a leader in it: the ordinary silence applies.
        let led = VoteResponse::new(Vote::new_committed(9, 2), log(3, 20), false);
        assert_eq!(classify(&asked, &led, 2), None);
        // The same term, the voter standing in it with a log no longer than ours: it
        // cannot win without us, and would grant us the term above.
        let rival = VoteResponse::new(Vote::new(5, 2), log(3, 20), false);
        assert_eq!(
            classify(&asked, &rival, 2),
            Some(Refusal::StaleTerm { term: 5 })
        );
        // The same term, the voter voted for a third node, which may be winning it: the
        // ordinary silence.
        let third = VoteResponse::new(Vote::new(5, 3), log(3, 20), false);
        assert_eq!(classify(&asked, &third, 2), None);
    }

    #[test]
    fn a_longer_log_is_kept_over_a_stale_term_and_taking_empties() {
        let refusals = VoteRefusals::default();
        let g: Arc<str> = Arc::from("queue-7");
        let t0 = Instant::now();
        refusals.record(&g, Refusal::LongerLog, t0);
        refusals.record(&g, Refusal::StaleTerm { term: 8 }, t0);
        let taken = refusals.take();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].2, Refusal::LongerLog);
        assert!(refusals.take().is_empty());
        refusals.record(&g, Refusal::StaleTerm { term: 8 }, t0);
        refusals.record(&g, Refusal::LongerLog, t0);
        assert_eq!(refusals.take()[0].2, Refusal::LongerLog);
    }
}
