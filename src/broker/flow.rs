//! Publisher flow control: when a queue's consumers fall behind the publishers feeding it,
//! those publishers' connections stop being read until the queue drains (RabbitMQ's `flow`
//! connection state; not `connection.blocked`, which is for resource alarms).
//!
//! Without it, a producer with confirms outruns delivery (a publish is cheaper than a
//! delivery and its ack) and a standing backlog forms: every message then waits behind it,
//! and end-to-end latency at saturation is tens of milliseconds. With it, the backlog stays
//! near `READY_HIGH` and the producer runs at the consumers' pace.
//!
//! A queue engages flow when more than its bounds' `high` messages are ready and its
//! consumers are active (they took at least the bounds' `active_floor` messages in the last
//! one or two rate windows), and, for a backlog longer than four times `high`, only while
//! it grows (more messages were published to it than left its ready set over those windows:
//! deliveries, basic.get, expiry, a length limit's drops and purges all count). So flow
//! matches a publisher to consumers that are working but not keeping up; it never holds
//! publishers for a queue without consumers, for slow consumers (a work queue whose workers
//! take seconds per job keeps accepting publishes at full speed and holds its backlog on
//! disk, as RabbitMQ's queues do), or for a backlog that is already shrinking. A paused
//! connection is read again when the queue's ready count falls to its bounds' `low`, when
//! the queue goes, or after `MAX_PAUSE`, whichever comes first: nothing waits on a gate for
//! long.
//!
//! Two sets of bounds (`Bounds`). A queue with a consumer that acks keeps a short backlog
//! (`ACKING`: 512 ready), for latency. A classic queue whose consumers are all no-ack
//! (`NO_ACK`) has no latency to keep short (its consumers' socket buffers set it), so it
//! holds publishers only when they outrun its consumers by more than a quarter, and lets
//! them go with thousands still ready so its consumers never run dry. Its activity floor is
//! a tenth of the usual while some consumer's client reads all it is sent (its socket was
//! not found full): such consumers are slow because the broker is, not their clients. One
//! publisher feeding one no-ack consumer runs close to its pace and is not paused (pausing
//! it at the acking bounds cost a tenth of its throughput). Many publishers sharing the
//! machine with their consumers are held back: without that, a broker short of CPU reads
//! publishes faster than it writes deliveries and the backlogs grow on disk (fanout to 100
//! no-ack queues: 0.11-0.15 M deliveries/s in most runs without, 1.85 M with).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A queue engages flow above this many ready messages...
pub const READY_HIGH: u64 = 512;
/// ...and releases its paused publishers when it is back down to this many.
pub const READY_LOW: u64 = READY_HIGH / 4;

/// Where a queue engages flow and where it lets its publishers go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Flow engages above this many ready messages...
    pub high: u64,
    /// ...and releases paused publishers (and ends) back down at this many.
    pub low: u64,
    /// Flow engages only while publishers outrun the queue by more than this share
    /// (percent) of what left its ready set; 0: whenever the backlog is past `high`
    /// (a long backlog: whenever it grows at all).
    pub outrun_pct: u64,
    /// Consumers that took fewer messages than this over the last one or two rate windows
    /// are slow: their queue does not engage flow...
    pub active_floor: u64,
    /// ...and once engaged it ends when they take fewer than this.
    pub keep_floor: u64,
}

impl Bounds {
    /// A backlog longer than this when flow engages is held where it is, not drained first.
    fn long_backlog(self) -> u64 {
        4 * self.high
    }
}

/// Queues with a consumer that acks: a short backlog, for latency.
pub const ACKING: Bounds = Bounds {
    high: READY_HIGH,
    low: READY_LOW,
    outrun_pct: 0,
    active_floor: ACTIVE_FLOOR,
    // Hysteresis: consumers slowed by a busy machine keep flow on; consumers that
    // (nearly) stopped end it.
    keep_floor: ACTIVE_FLOOR / 4,
};
/// Queues whose consumers are all no-ack: no latency to keep (their connections' socket
/// buffers set it), only publishers to keep from outrunning them. The low mark stays
/// several outboxes deep, so a consumer never runs dry while its publisher wakes. These
/// are for consumers whose clients leave their sockets full, reading slower than they are
/// sent to: no hysteresis, because what they took in a first burst into the socket
/// buffers (thousands) says nothing of the pace they read at.
pub const NO_ACK: Bounds = Bounds {
    high: 8192,
    low: 4096,
    outrun_pct: 25,
    active_floor: ACTIVE_FLOOR,
    keep_floor: ACTIVE_FLOOR,
};
/// `NO_ACK` for a queue where some consumer's client reads everything it is sent (its
/// socket was not found full over the rate windows): what holds such a consumer back is
/// the broker, busy reading publishes, not its client, so any steady rate counts as work
/// flow can help. With 100 queues on two cores half the broker-starved consumers took
/// under 1,420 messages a second (the least 306), under `ACTIVE_FLOOR`, so flow never
/// engaged and the backlogs grew by millions (measured, BENCHMARKS "Stop 64").
pub const NO_ACK_CLIENTS_KEEPING_UP: Bounds = Bounds {
    active_floor: ACTIVE_FLOOR / 10,
    keep_floor: ACTIVE_FLOOR / 40,
    ..NO_ACK
};
/// Publish and delivery rates are counted over windows of this length.
pub const RATE_WINDOW_MS: u64 = 500;
/// The usual `Bounds::active_floor`: a work queue whose workers take seconds per job, or a
/// no-ack client that reads slowly, keeps accepting publishes at full speed and holds its
/// backlog on disk, as RabbitMQ's queues do.
pub const ACTIVE_FLOOR: u64 = 1000;
/// The longest a connection stays paused by one engagement.
pub const MAX_PAUSE: Duration = Duration::from_millis(1000);

/// What a paused connection waits on: shared by the queue (which releases it) and its
/// paused publishers. A release bumps the epoch and wakes every waiter.
#[derive(Default)]
pub struct FlowGate {
    epoch: AtomicU64,
    notify: tokio::sync::Notify,
}

impl FlowGate {
    /// The current epoch: a waiter that saw epoch `e` is released once it moves on.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn release(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// Resolves once the gate has been released since `epoch` was read.
    pub async fn released(&self, epoch: u64) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so a release between the two is not missed.
            notified.as_mut().enable();
            if self.epoch() != epoch {
                return;
            }
            notified.await;
        }
    }
}

/// A publishing connection's reason to pause: the gate of a queue in flow and the epoch it
/// must see pass.
#[derive(Clone)]
pub struct FlowPause {
    pub queue: Arc<str>,
    pub gate: Arc<FlowGate>,
    pub epoch: u64,
}

/// One queue's flow state (kept in `Queue::flow`).
#[derive(Default)]
pub struct QueueFlow {
    gate: Option<Arc<FlowGate>>,
    /// The queue is in flow: publishers to it pause after each batch while it is above
    /// `hold_above`.
    engaged: bool,
    /// Publishers pause after a batch that leaves more than this ready, and the gate
    /// opens again once the consumers are down to `open_at`. A short backlog (flow engaged
    /// early, the latency case) is held under `READY_HIGH` and drained to `READY_LOW`
    /// before publishers go on; a long one (flow engaged late, or a backlog queued before)
    /// is held where it was, matching publishers to the consumers' pace without starving
    /// them while it drains.
    hold_above: u64,
    open_at: u64,
    /// Flow ends once the queue is down to this many ready (the bounds' low mark).
    end_at: u64,
    /// Some publisher waits on the gate.
    paused: bool,
    /// When the current rate window started, and the queue's publish and delivery counts
    /// then.
    window_start_ms: u64,
    at_start: Counts,
    /// What the last complete window added.
    last_window: Counts,
}

/// Messages published to a queue, delivered from it, and gone from its ready set by any
/// way (deliveries and basic.get, expiry, a length limit's drops, purges).
#[derive(Default, Clone, Copy)]
pub struct Counts {
    pub published: u64,
    pub delivered: u64,
    pub left: u64,
}

impl QueueFlow {
    /// Called after a batch was stored and dispatched, with the queue's ready messages and
    /// its running counts. Returns the pause for the publisher if the queue is in flow.
    pub fn after_publish(
        &mut self,
        queue: &Arc<str>,
        bounds: Bounds,
        ready: u64,
        counts: Counts,
        now_ms: u64,
    ) -> Option<FlowPause> {
        let recent = self.recent(counts, now_ms);
        let floor = match self.engaged {
            true => bounds.keep_floor,
            false => bounds.active_floor,
        };
        let active = recent.delivered >= floor;
        if self.engaged && !active {
            // The consumers stopped: flow cannot help, whoever waits may go.
            self.disengage();
        }
        if !self.engaged {
            // A long backlog only engages flow while it grows: one the consumers are
            // already shrinking is left alone. Whether publishers outrun the queue counts
            // all that left it: messages that expire or are dropped at the head keep a
            // backlog down as deliveries do, and a consumer's pace alone would hold
            // publishers of a queue that is not growing.
            let growing = recent.published > recent.left;
            let outrun = recent.published * 100 > recent.left * (100 + bounds.outrun_pct);
            let long = bounds.long_backlog();
            if ready <= bounds.high || !active || !outrun || (ready > long && !growing) {
                return None;
            }
            self.engaged = true;
            self.end_at = bounds.low;
            (self.hold_above, self.open_at) = match ready <= long {
                true => (bounds.high, bounds.low),
                false => (ready, ready),
            };
        }
        if ready <= self.hold_above {
            return None;
        }
        self.paused = true;
        let gate = self.gate.get_or_insert_with(Default::default).clone();
        let epoch = gate.epoch();
        Some(FlowPause {
            queue: queue.clone(),
            gate,
            epoch,
        })
    }

    /// Called after dispatch took messages out of the ready set: opens the gate once the
    /// consumers are back down to where flow began, and leaves flow once the queue is
    /// nearly empty. While engaged it also keeps the rate windows turning, since paused
    /// publishers do not: a publisher back from a long pause then sees what the consumers
    /// did meanwhile, not an empty window.
    #[inline]
    pub fn after_dispatch(&mut self, ready: u64, counts: Counts, now_ms: u64) {
        if !self.engaged {
            return;
        }
        self.recent(counts, now_ms);
        if ready <= self.end_at {
            self.disengage();
        } else if self.paused && ready <= self.open_at {
            self.open();
        }
    }

    /// True while the queue holds its publishers back.
    pub fn engaged(&self) -> bool {
        self.engaged
    }

    /// Leaves flow and lets every paused publisher go (the queue drained, its consumers
    /// stopped, or it is going away).
    pub fn disengage(&mut self) {
        self.engaged = false;
        if self.paused {
            self.open();
        }
    }

    fn open(&mut self) {
        self.paused = false;
        if let Some(gate) = &self.gate {
            gate.release();
        }
    }

    /// What was published and delivered over the last complete window and the current
    /// one so far.
    fn recent(&mut self, now: Counts, now_ms: u64) -> Counts {
        let elapsed = now_ms.saturating_sub(self.window_start_ms);
        if elapsed >= RATE_WINDOW_MS {
            // A window with no sample in it (no publish, and no delivery while engaged):
            // count it as idle, so an old busy window does not speak for consumers that
            // have since stopped.
            self.last_window = match elapsed < 2 * RATE_WINDOW_MS {
                true => Counts {
                    published: now.published.saturating_sub(self.at_start.published),
                    delivered: now.delivered.saturating_sub(self.at_start.delivered),
                    left: now.left.saturating_sub(self.at_start.left),
                },
                false => Counts::default(),
            };
            self.window_start_ms = now_ms;
            self.at_start = now;
        }
        Counts {
            published: self.last_window.published
                + now.published.saturating_sub(self.at_start.published),
            delivered: self.last_window.delivered
                + now.delivered.saturating_sub(self.at_start.delivered),
            left: self.last_window.left + now.left.saturating_sub(self.at_start.left),
        }
    }
}

impl Drop for QueueFlow {
    fn drop(&mut self) {
        // A deleted queue lets its paused publishers go at once.
        self.disengage();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts for calls where only the ready figure matters (within the same window).
    const NO_COUNTS: Counts = Counts {
        published: 0,
        delivered: 0,
        left: 0,
    };

    /// Counts of a queue whose messages leave it only by delivery.
    fn counts(published: u64, delivered: u64) -> Counts {
        Counts {
            published,
            delivered,
            left: delivered,
        }
    }

    #[test]
    fn active_consumers_falling_behind_pace_the_publisher() {
        let q: Arc<str> = "q".into();
        let mut f = QueueFlow::default();
        assert!(f
            .after_publish(&q, ACKING, 10, counts(10, 0), 10_000)
            .is_none());
        // 55,000 published, 50,000 delivered, 5,000 ready: flow engages at 5,000...
        assert!(f
            .after_publish(&q, ACKING, 5_000, counts(55_000, 50_000), 10_200)
            .is_none());
        assert!(f.engaged());
        // ...and the next batch above it pauses its publisher.
        let pause = f
            .after_publish(&q, ACKING, 5_300, counts(55_300, 50_000), 10_201)
            .expect("paused");
        let gate = pause.gate.clone();
        f.after_dispatch(5_001, NO_COUNTS, 10_400);
        assert_eq!(gate.epoch(), pause.epoch, "not back down yet");
        f.after_dispatch(5_000, NO_COUNTS, 10_400);
        assert_ne!(
            gate.epoch(),
            pause.epoch,
            "the consumers took what it added"
        );
        assert!(
            f.engaged(),
            "still in flow: the next batch above 5,000 pauses again"
        );
        let again = f
            .after_publish(&q, ACKING, 5_200, counts(55_500, 50_300), 10_202)
            .expect("paused again");
        // Nearly empty: out of flow, everyone goes.
        f.after_dispatch(READY_LOW, NO_COUNTS, 10_400);
        assert!(!f.engaged());
        assert_ne!(gate.epoch(), again.epoch);
        assert!(f
            .after_publish(&q, ACKING, 400, counts(56_000, 55_600), 10_300)
            .is_none());
    }

    #[test]
    fn no_ack_consumers_hold_only_publishers_that_outrun_them() {
        let q: Arc<str> = "q".into();
        let mut f = QueueFlow::default();
        // Publishers 10 % ahead of their no-ack consumers, 20,000 ready: balanced enough,
        // never held.
        for w in 1..10u64 {
            let c = counts(w * 110_000, w * 100_000);
            let now = 10_000 + w * RATE_WINDOW_MS;
            assert!(f.after_publish(&q, NO_ACK, 20_000, c, now).is_none());
            assert!(!f.engaged());
        }
        // Twice as fast as the consumers, past the high mark: held...
        let mut g = QueueFlow::default();
        g.after_publish(&q, NO_ACK, 10, counts(10, 0), 10_000);
        let pause = g
            .after_publish(&q, NO_ACK, 9_000, counts(20_000, 10_000), 10_100)
            .expect("paused");
        // ...and let go with thousands still ready, so the consumers never run dry.
        g.after_dispatch(NO_ACK.low + 1, NO_COUNTS, 10_200);
        assert_eq!(pause.gate.epoch(), pause.epoch);
        g.after_dispatch(NO_ACK.low, NO_COUNTS, 10_200);
        assert_ne!(pause.gate.epoch(), pause.epoch);
        assert!(!g.engaged(), "flow ends at the low mark");
    }

    #[test]
    fn no_ack_consumers_held_back_by_the_broker_count_as_active_at_a_lower_rate() {
        let q: Arc<str> = "q".into();
        // 300 deliveries a window (600 a second), publishers twice as fast, 9,000 ready.
        let at = |w: u64| (counts(w * 600, w * 300), 10_000 + w * RATE_WINDOW_MS);
        // Consumers whose clients read all they are sent: the broker is what keeps them
        // slow, so the publishers are held.
        let mut f = QueueFlow::default();
        let (c, now) = at(1);
        f.after_publish(&q, NO_ACK_CLIENTS_KEEPING_UP, 9_000, c, now);
        let (c, now) = at(2);
        assert!(f
            .after_publish(&q, NO_ACK_CLIENTS_KEEPING_UP, 9_000, c, now)
            .is_some());
        // Consumers whose clients leave their sockets full: slow of their own doing.
        let mut g = QueueFlow::default();
        for w in 1..10 {
            let (c, now) = at(w);
            assert!(g.after_publish(&q, NO_ACK, 9_000, c, now).is_none());
            assert!(!g.engaged());
        }
    }

    #[test]
    fn a_first_burst_into_slow_readers_sockets_does_not_keep_flow_on() {
        let q: Arc<str> = "q".into();
        let mut f = QueueFlow::default();
        // A first window of 5,000 deliveries (what the socket buffers took) engages flow...
        f.after_publish(&q, NO_ACK, 10, counts(10, 0), 10_000);
        let pause = f
            .after_publish(&q, NO_ACK, 9_000, counts(14_000, 5_000), 10_100)
            .expect("paused");
        assert!(f.engaged());
        // ...but at 300 a window after it, the consumers are slow readers: flow ends and
        // the paused publisher goes.
        f.after_publish(&q, NO_ACK, 9_000, counts(20_000, 5_300), 10_600);
        f.after_publish(&q, NO_ACK, 9_000, counts(26_000, 5_600), 11_100);
        assert!(!f.engaged());
        assert_ne!(pause.gate.epoch(), pause.epoch);
    }

    #[test]
    fn a_short_backlog_is_drained_before_the_publisher_goes_on() {
        let q: Arc<str> = "q".into();
        let mut f = QueueFlow::default();
        f.after_publish(&q, ACKING, 10, counts(10, 0), 10_000);
        // Engaged at 600 ready: held under READY_HIGH, so this publisher pauses at once.
        let pause = f
            .after_publish(&q, ACKING, 600, counts(50_600, 50_000), 10_100)
            .expect("paused");
        f.after_dispatch(READY_LOW + 1, NO_COUNTS, 10_400);
        assert_eq!(pause.gate.epoch(), pause.epoch, "not drained yet");
        f.after_dispatch(READY_LOW, NO_COUNTS, 10_400);
        assert_ne!(pause.gate.epoch(), pause.epoch, "drained: go on");
    }

    #[test]
    fn slow_or_absent_consumers_never_hold_publishers() {
        let q: Arc<str> = "q".into();
        let mut f = QueueFlow::default();
        // 200 deliveries a second against a growing backlog (a work queue).
        for (i, now) in (10_000..30_000).step_by(100).enumerate() {
            let i = i as u64;
            let c = counts(100_000 + i * 1_000, i * 20);
            assert!(f
                .after_publish(&q, ACKING, c.published - c.delivered, c, now)
                .is_none());
            assert!(!f.engaged());
        }
        // No consumer at all: never.
        let mut g = QueueFlow::default();
        assert!(g
            .after_publish(&q, ACKING, 1_000_000, counts(1_000_000, 0), 5_000)
            .is_none());
        assert!(!g.engaged());
    }

    #[test]
    fn a_shrinking_backlog_does_not_hold_publishers() {
        let q: Arc<str> = "q".into();
        let mut f = QueueFlow::default();
        // 10 M queued before; consumers take 100 k per window, publishers add 50 k.
        f.after_publish(&q, ACKING, 10_000_000, counts(10_000_000, 0), 10_000);
        for w in 1..10u64 {
            let c = counts(10_000_000 + w * 50_000, w * 100_000);
            let ready = c.published - c.delivered;
            let now = 10_000 + w * RATE_WINDOW_MS;
            assert!(f.after_publish(&q, ACKING, ready, c, now).is_none());
            assert!(!f.engaged());
        }
    }

    #[test]
    fn a_backlog_that_expiry_keeps_steady_does_not_hold_publishers() {
        let q: Arc<str> = "q".into();
        // Active consumers take 1,000 a window; publishers add 2,000; the other 1,000
        // expire at the head (or a length limit drops them). The backlog, short (1,000
        // ready) or long (9,000), does not grow: nothing to hold back.
        for ready in [1_000, 9_000] {
            let mut f = QueueFlow::default();
            for w in 1..10u64 {
                let c = Counts {
                    published: w * 2_000,
                    delivered: w * 1_000,
                    left: w * 2_000,
                };
                let now = 10_000 + w * RATE_WINDOW_MS;
                assert!(f.after_publish(&q, ACKING, ready, c, now).is_none());
                assert!(!f.engaged(), "{ready} ready, window {w}");
            }
        }
        // The same consumers with nothing expiring: the backlog grows, flow holds.
        let mut g = QueueFlow::default();
        let held = (1..10u64).any(|w| {
            let now = 10_000 + w * RATE_WINDOW_MS;
            let c = counts(w * 2_000, w * 1_000);
            g.after_publish(&q, ACKING, 8_000 + w * 1_000, c, now)
                .is_some()
        });
        assert!(held && g.engaged());
    }

    /// A real broker on a temporary data dir (kept as long as the first), holding what
    /// the definitions `defs` declare.
    fn broker_with(defs: &[u8]) -> (tempfile::TempDir, crate::broker::BrokerHandle) {
        let dir = tempfile::tempdir().unwrap();
        let broker = crate::broker::BrokerHandle::open_ephemeral(dir.path()).unwrap();
        crate::broker::definitions_import::import_json(&broker, defs).unwrap();
        (dir, broker)
    }

    /// A queue's flow counts take in every way a message leaves its ready set, not only
    /// deliveries: expiry, a length limit's drops, purges.
    #[test]
    fn what_expires_is_dropped_or_purged_counts_as_left() {
        use crate::broker::publish_for_test;
        let (_dir, broker) = broker_with(
            br#"{"queues": [
            {"name": "ttl", "vhost": "/", "durable": true, "auto_delete": false,
             "arguments": {"x-message-ttl": 1000}},
            {"name": "capped", "vhost": "/", "durable": true, "auto_delete": false,
             "arguments": {"x-max-length": 3}},
            {"name": "plain", "vhost": "/", "durable": true, "auto_delete": false,
             "arguments": {}}]}"#,
        );
        for queue in ["ttl", "capped", "plain"] {
            publish_for_test(&broker, queue, 5);
        }
        broker.vhost("/").unwrap().with(|m| {
            let counts = |m: &super::super::vhost::VHost, queue: &str| {
                let c = m.queues[queue].flow_counts();
                (c.published, c.delivered, c.left)
            };
            assert_eq!(counts(m, "capped"), (5, 0, 2), "two dropped at the head");
            assert_eq!(counts(m, "ttl"), (5, 0, 0));
            m.expire_head("ttl", super::super::vhost::now_millis() + 10_000);
            assert_eq!(counts(m, "ttl"), (5, 0, 5), "all five expired");
            assert_eq!(m.queues.get_mut("plain").unwrap().purge_ready().unwrap(), 5);
            assert_eq!(counts(m, "plain"), (5, 0, 5), "all five purged");
        });
    }

    /// Under single active consumer the bounds come from the active consumer alone: a
    /// no-ack one gives a no-ack queue's bounds though an acking consumer waits its turn
    /// behind it. Without single active consumer that acking consumer is served, and the
    /// queue keeps the short backlog of `ACKING`.
    #[test]
    fn single_active_consumer_bounds_come_from_the_active_consumer() {
        use crate::broker::publish::flow_bounds;
        use crate::broker::ConsumeSpec;
        let (_dir, broker) = broker_with(
            br#"{"queues": [
            {"name": "sac", "vhost": "/", "durable": true, "auto_delete": false,
             "arguments": {"x-single-active-consumer": true}},
            {"name": "shared", "vhost": "/", "durable": true, "auto_delete": false,
             "arguments": {}}]}"#,
        );
        broker.vhost("/").unwrap().with(|m| {
            let no_ack = m.open_test_channel((9, 1));
            let acking = m.open_test_channel((9, 2));
            for queue in ["sac", "shared"] {
                for (key, no_ack) in [(no_ack, true), (acking, false)] {
                    let spec = ConsumeSpec {
                        queue,
                        tag: "",
                        no_ack,
                        exclusive: false,
                        args_raw: &[],
                    };
                    m.consume(key, &spec).unwrap();
                }
            }
            let now = super::super::vhost::now_millis();
            let bounds =
                |m: &super::super::vhost::VHost, queue: &str| flow_bounds(&m.queues[queue], now);
            assert_eq!(bounds(m, "sac"), Some(NO_ACK_CLIENTS_KEEPING_UP));
            assert_eq!(bounds(m, "shared"), Some(ACKING));
        });
    }

    #[test]
    fn consumers_that_stop_release_the_gate() {
        let q: Arc<str> = "q".into();
        let mut f = QueueFlow::default();
        f.after_publish(&q, ACKING, 10, counts(10, 0), 10_000);
        f.after_publish(&q, ACKING, 4_000, counts(104_000, 100_000), 10_300);
        let pause = f
            .after_publish(&q, ACKING, 4_100, counts(104_100, 100_000), 10_301)
            .expect("paused");
        // Long after, nothing more was delivered: the next publish is not held, and
        // whoever waited is let go.
        assert!(f
            .after_publish(&q, ACKING, 5_000, counts(105_000, 100_000), 14_000)
            .is_none());
        assert!(!f.engaged());
        assert_ne!(pause.gate.epoch(), pause.epoch);
    }

    #[test]
    fn dropping_the_queue_releases_waiters() {
        let q: Arc<str> = "q".into();
        let mut f = QueueFlow::default();
        f.after_publish(&q, ACKING, 10, counts(10, 0), 10_000);
        f.after_publish(&q, ACKING, 2_000, counts(102_000, 100_000), 10_010);
        let pause = f
            .after_publish(&q, ACKING, 2_100, counts(102_100, 100_000), 10_011)
            .expect("paused");
        drop(f);
        assert_ne!(pause.gate.epoch(), pause.epoch);
    }

    #[tokio::test]
    async fn a_waiter_wakes_on_release_even_if_it_came_late() {
        let gate = Arc::new(FlowGate::default());
        let epoch = gate.epoch();
        let g = gate.clone();
        let waiter = tokio::spawn(async move { g.released(epoch).await });
        tokio::task::yield_now().await;
        gate.release();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("task");
        // Released before the wait started: returns at once.
        tokio::time::timeout(Duration::from_secs(5), gate.released(epoch))
            .await
            .expect("no wait");
    }
}
