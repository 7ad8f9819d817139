//! The model without sockets: prefetch, requeue order, settling, stale delivery tags and
//! consumer tags, as RabbitMQ's channel does them.

use crate::model_support;

use model_support::*;
#[test]
fn consumer_prefetch_2_delivers_exactly_two_until_one_is_acked() {
    let fx = Fx::new();
    fx.declare("q");
    let key = (fx.conn, 2);
    let out = fx.channel(key);
    fx.qos(key, 2, false);
    fx.consume(key, "q", "c");
    for i in 0..5 {
        fx.publish("", "q", &format!("m{i}"));
    }
    let d = deliveries(&out);
    assert_eq!(bodies(&d), ["m0", "m1"]);
    assert_eq!(d.iter().map(|d| d.delivery_tag).collect::<Vec<_>>(), [1, 2]);
    assert!(d.iter().all(|d| d.consumer_tag == "c" && d.channel == 2));
    assert_eq!(fx.stats("q"), Some((3, 2, 1)));
    // Nothing more while two are unacked, however often dispatch runs.
    fx.vh.with(|m| m.dispatch("q"));
    assert!(deliveries(&out).is_empty());

    fx.ack(key, 1);
    let d = deliveries(&out);
    assert_eq!(bodies(&d), ["m2"]);
    assert_eq!(d[0].delivery_tag, 3);
    assert_eq!(fx.stats("q"), Some((2, 2, 1)));

    // Ack of two (multiple) frees two slots.
    fx.settle(key, 3, true, true, false).unwrap();
    assert_eq!(bodies(&deliveries(&out)), ["m3", "m4"]);
    assert_eq!(fx.stats("q"), Some((0, 2, 1)));
}

#[test]
fn consumer_prefetch_applies_to_consumers_created_after_basic_qos() {
    let fx = Fx::new();
    fx.declare("q");
    let key = (fx.conn, 2);
    let out = fx.channel(key);
    fx.consume(key, "q", "unlimited");
    fx.qos(key, 1, false);
    for i in 0..3 {
        fx.publish("", "q", &format!("m{i}"));
    }
    // The existing consumer keeps its (unlimited) prefetch.
    assert_eq!(bodies(&deliveries(&out)), ["m0", "m1", "m2"]);
}

#[test]
fn global_prefetch_limits_the_channel_across_its_consumers() {
    let fx = Fx::new();
    fx.declare("qa");
    fx.declare("qb");
    let key = (fx.conn, 2);
    let out = fx.channel(key);
    fx.qos(key, 3, true);
    fx.consume(key, "qa", "ca");
    fx.consume(key, "qb", "cb");
    for i in 0..4 {
        fx.publish("", "qa", &format!("a{i}"));
        fx.publish("", "qb", &format!("b{i}"));
    }
    let d = deliveries(&out);
    assert_eq!(d.len(), 3, "{d:?}");
    let (ready_a, unacked_a, _) = fx.stats("qa").unwrap();
    let (ready_b, unacked_b, _) = fx.stats("qb").unwrap();
    assert_eq!(unacked_a + unacked_b, 3);
    assert_eq!(ready_a + ready_b, 5);
    // Still capped on dispatch.
    fx.vh.with(|m| {
        m.dispatch("qa");
        m.dispatch("qb");
    });
    assert!(deliveries(&out).is_empty());
    // One ack frees exactly one slot for the channel.
    fx.ack(key, d[0].delivery_tag);
    assert_eq!(deliveries(&out).len(), 1);

    // Two consumers on the same queue share the channel's limit.
    fx.declare("qc");
    let key3 = (fx.conn, 3);
    let out3 = fx.channel(key3);
    fx.qos(key3, 2, true);
    fx.consume(key3, "qc", "c1");
    fx.consume(key3, "qc", "c2");
    for i in 0..6 {
        fx.publish("", "qc", &format!("c{i}"));
    }
    let d = deliveries(&out3);
    assert_eq!(bodies(&d), ["c0", "c1"]);
    // Round-robin between the two consumers.
    assert_ne!(d[0].consumer_tag, d[1].consumer_tag);
    assert_eq!(fx.stats("qc"), Some((4, 2, 2)));
}

#[test]
fn global_prefetch_credit_freed_by_an_ack_wakes_consumers_of_other_queues() {
    let fx = Fx::new();
    fx.declare("qa");
    fx.declare("qb");
    let key = (fx.conn, 2);
    let out = fx.channel(key);
    fx.qos(key, 2, true);
    fx.consume(key, "qa", "ca");
    fx.consume(key, "qb", "cb");
    fx.publish("", "qa", "a0");
    fx.publish("", "qa", "a1");
    fx.publish("", "qb", "b0");
    let d = deliveries(&out);
    assert_eq!(bodies(&d), ["a0", "a1"]);
    assert_eq!(fx.stats("qb"), Some((1, 0, 1)));
    // qa is now empty: the freed slot must go to qb's consumer.
    fx.ack(key, d[0].delivery_tag);
    let d = deliveries(&out);
    assert_eq!(bodies(&d), ["b0"], "qb's consumer was not woken by the ack");
    assert_eq!(d[0].consumer_tag, "cb");
}

#[test]
fn prefetch_0_is_unlimited() {
    let fx = Fx::new();
    fx.declare("q");
    let key = (fx.conn, 2);
    let out = fx.channel(key);
    fx.qos(key, 0, false);
    fx.qos(key, 0, true);
    fx.consume(key, "q", "c");
    for i in 0..100 {
        fx.publish("", "q", &format!("m{i}"));
    }
    let d = deliveries(&out);
    assert_eq!(d.len(), 100);
    assert_eq!(
        d.iter().map(|d| d.delivery_tag).collect::<Vec<_>>(),
        (1..=100).collect::<Vec<u64>>()
    );
    assert_eq!(fx.stats("q"), Some((0, 100, 1)));

    // Raising a limit back to 0 releases what it held back.
    fx.declare("q2");
    let key3 = (fx.conn, 3);
    let out3 = fx.channel(key3);
    fx.qos(key3, 1, true);
    fx.consume(key3, "q2", "c2");
    for i in 0..3 {
        fx.publish("", "q2", &format!("n{i}"));
    }
    assert_eq!(deliveries(&out3).len(), 1);
    fx.qos(key3, 0, true);
    assert_eq!(bodies(&deliveries(&out3)), ["n1", "n2"]);
}

#[test]
fn basic_get_deliveries_do_not_count_against_global_prefetch() {
    let fx = Fx::new();
    fx.declare("q");
    let key = (fx.conn, 2);
    let out = fx.channel(key);
    fx.qos(key, 1, true);
    fx.publish("", "q", "got");
    fx.publish("", "q", "consumed");
    let (tag, _, body) = fx.get_on(key, "q", false).unwrap().unwrap();
    assert_eq!(body, "got");
    fx.consume(key, "q", "c");
    assert_eq!(bodies(&deliveries(&out)), ["consumed"]);
    fx.ack(key, tag);
}

#[test]
fn basic_get_is_not_limited_by_prefetch() {
    let fx = Fx::new();
    fx.declare("q");
    let key = (fx.conn, 2);
    fx.channel(key);
    fx.qos(key, 1, false);
    fx.qos(key, 1, true);
    for i in 0..3 {
        fx.publish("", "q", &format!("m{i}"));
    }
    for i in 0..3 {
        let (_, _, body) = fx.get_on(key, "q", false).unwrap().unwrap();
        assert_eq!(body, format!("m{i}"));
    }
    assert_eq!(fx.stats("q"), Some((0, 3, 0)));
}

// ===== 3. requeue order ===============================================================

#[test]
fn nacked_messages_are_redelivered_in_original_order_before_new_ones() {
    let fx = Fx::new();
    fx.declare("q");
    for i in 0..5 {
        fx.publish("", "q", &format!("m{i}"));
    }
    let key = fx.key;
    let got: Vec<_> = (0..5).map(|_| fx.get("q", false).unwrap()).collect();
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert!(got.iter().all(|g| !g.1));
    // Nack tag 4 (m3), then tag 2 (m1).
    fx.nack_requeue(key, 4);
    fx.nack_requeue(key, 2);
    assert_eq!(fx.stats("q"), Some((2, 3, 0)));
    fx.publish("", "q", "new");
    let (tag, redelivered, body) = fx.get("q", false).unwrap();
    assert_eq!((tag, redelivered, body.as_str()), (6, true, "m1"));
    let (tag, redelivered, body) = fx.get("q", false).unwrap();
    assert_eq!((tag, redelivered, body.as_str()), (7, true, "m3"));
    let (tag, redelivered, body) = fx.get("q", false).unwrap();
    assert_eq!((tag, redelivered, body.as_str()), (8, false, "new"));
    assert!(fx.get("q", false).is_none());
}

#[test]
fn nacked_messages_reach_a_consumer_in_original_order_flagged_redelivered() {
    let fx = Fx::new();
    fx.declare("q");
    let key = (fx.conn, 2);
    let out = fx.channel(key);
    fx.consume(key, "q", "c");
    for i in 0..5 {
        fx.publish("", "q", &format!("m{i}"));
    }
    let d = deliveries(&out);
    assert_eq!(bodies(&d), ["m0", "m1", "m2", "m3", "m4"]);
    // Cancelling leaves the deliveries unacked on the channel (RabbitMQ does not requeue
    // on basic.cancel); nack two of them out of order while nobody consumes.
    assert!(fx.cancel(key, "c"));
    fx.nack_requeue(key, 4);
    fx.nack_requeue(key, 2);
    fx.publish("", "q", "new");
    fx.consume(key, "q", "c2");
    let d = deliveries(&out);
    assert_eq!(bodies(&d), ["m1", "m3", "new"]);
    assert_eq!(
        d.iter().map(|d| d.redelivered).collect::<Vec<_>>(),
        [true, true, false]
    );
    assert_eq!(
        d.iter().map(|d| d.delivery_tag).collect::<Vec<_>>(),
        [6, 7, 8]
    );
    // With the consumer attached, a nack redelivers at once.
    fx.nack_requeue(key, 8);
    let d = deliveries(&out);
    assert_eq!(bodies(&d), ["new"]);
    assert!(d[0].redelivered);
    assert_eq!(d[0].delivery_tag, 9);
}

#[test]
fn reject_without_requeue_discards_the_message() {
    let fx = Fx::new();
    fx.declare("q");
    fx.publish("", "q", "m0");
    fx.publish("", "q", "m1");
    let (tag, _, _) = fx.get("q", false).unwrap();
    fx.settle(fx.key, tag, false, false, false).unwrap();
    assert_eq!(fx.stats("q"), Some((1, 0, 0)));
    assert_eq!(fx.take_all("q"), ["m1"]);
}

#[test]
fn basic_recover_requeues_every_unacked_delivery_of_the_channel() {
    let fx = Fx::new();
    fx.declare("q");
    let key = (fx.conn, 2);
    let out = fx.channel(key);
    fx.consume(key, "q", "c");
    for i in 0..3 {
        fx.publish("", "q", &format!("m{i}"));
    }
    assert_eq!(deliveries(&out).len(), 3);
    fx.ack(key, 2);
    assert_eq!(fx.stats("q"), Some((0, 2, 1)));
    fx.vh.try_with(|m| m.recover(key)).unwrap();
    let d = deliveries(&out);
    assert_eq!(bodies(&d), ["m0", "m2"]);
    assert!(d.iter().all(|d| d.redelivered));
    assert_eq!(d.iter().map(|d| d.delivery_tag).collect::<Vec<_>>(), [4, 5]);
    // The old tags are gone.
    let r = fx.settle(key, 1, false, true, false);
    assert!(is_precondition_failed(&r), "{r:?}");
    assert_eq!(fx.stats("q"), Some((0, 2, 1)));

    // Without a consumer, recovered messages are ready again.
    fx.declare("g");
    fx.publish("", "g", "g0");
    fx.publish("", "g", "g1");
    let t0 = fx.get("g", false).unwrap();
    let t1 = fx.get("g", false).unwrap();
    assert!(!t0.1 && !t1.1);
    fx.vh.try_with(|m| m.recover(fx.key)).unwrap();
    assert_eq!(fx.stats("g"), Some((2, 0, 0)));
    let a = fx.get("g", true).unwrap();
    let b = fx.get("g", true).unwrap();
    assert_eq!((a.1, a.2.as_str()), (true, "g0"));
    assert_eq!((b.1, b.2.as_str()), (true, "g1"));
}

#[test]
fn closing_a_channel_requeues_its_unacked_deliveries_in_order() {
    let fx = Fx::new();
    fx.declare("q");
    let key = (fx.conn, 2);
    let out = fx.channel(key);
    fx.consume(key, "q", "c");
    for i in 0..4 {
        fx.publish("", "q", &format!("m{i}"));
    }
    assert_eq!(deliveries(&out).len(), 4);
    fx.ack(key, 3);
    fx.vh.with(|m| m.close_channel(key));
    // The consumer went with the channel; m0, m1, m3 are ready again.
    assert_eq!(fx.stats("q"), Some((3, 0, 0)));
    let got: Vec<_> = (0..3).map(|_| fx.get("q", true).unwrap()).collect();
    assert_eq!(
        got.iter().map(|g| (g.1, g.2.as_str())).collect::<Vec<_>>(),
        [(true, "m0"), (true, "m1"), (true, "m3")]
    );
    assert!(fx.get("q", true).is_none());
    // Settling on the closed channel does nothing to the queue.
    fx.publish("", "q", "later");
    let _ = fx.settle(key, 1, false, true, false);
    assert_eq!(fx.stats("q"), Some((1, 0, 0)));
}

#[test]
fn basic_get_reports_the_remaining_ready_count() {
    let fx = Fx::new();
    fx.declare("q");
    assert!(fx.get("q", false).is_none());
    for i in 0..3 {
        fx.publish("", "q", &format!("m{i}"));
    }
    let counts: Vec<(u32, bool)> = [false, true, false]
        .into_iter()
        .map(|no_ack| {
            let g = fx
                .vh
                .try_with(|m| m.get(fx.key, "q", no_ack))
                .unwrap()
                .unwrap();
            (g.message_count, g.redelivered)
        })
        .collect();
    assert_eq!(counts, [(2, false), (1, false), (0, false)]);
    assert!(fx.get("q", true).is_none());
    assert_eq!(fx.stats("q"), Some((0, 2, 0)));
}

#[test]
fn purge_removes_ready_messages_but_not_unacked_ones() {
    let fx = Fx::new();
    fx.declare("q");
    for i in 0..3 {
        fx.publish("", "q", &format!("m{i}"));
    }
    let (tag, _, _) = fx.get("q", false).unwrap();
    let n = fx.vh.try_with(|m| m.queue_purge(fx.conn, "q")).unwrap();
    assert_eq!(n, 2);
    assert_eq!(fx.stats("q"), Some((0, 1, 0)));
    // The unacked one comes back when requeued.
    fx.nack_requeue(fx.key, tag);
    assert_eq!(fx.stats("q"), Some((1, 0, 0)));
    let (_, redelivered, body) = fx.get("q", true).unwrap();
    assert_eq!((redelivered, body.as_str()), (true, "m0"));
    // Purging again, and publishing after a purge, behave.
    assert_eq!(fx.vh.try_with(|m| m.queue_purge(fx.conn, "q")).unwrap(), 0);
    fx.publish("", "q", "after");
    assert_eq!(fx.take_all("q"), ["after"]);
}

// ===== 4. settle errors ===============================================================

#[test]
fn ack_of_an_unknown_delivery_tag_is_precondition_failed() {
    let fx = Fx::new();
    fx.declare("q");
    for tag in [0, 1, 99] {
        let r = fx.settle(fx.key, tag, false, true, false);
        assert!(is_precondition_failed(&r), "tag {tag}: {r:?}");
    }
    fx.publish("", "q", "m");
    let (tag, _, _) = fx.get("q", false).unwrap();
    for bad in [tag + 1, 1000] {
        for (ack, requeue) in [(true, false), (false, true), (false, false)] {
            let r = fx.settle(fx.key, bad, false, ack, requeue);
            assert!(is_precondition_failed(&r), "tag {bad}: {r:?}");
        }
    }
    // A no-ack delivery's tag is not settleable either.
    fx.publish("", "q", "n");
    let (no_ack_tag, _, _) = fx.get("q", true).unwrap();
    let r = fx.settle(fx.key, no_ack_tag, false, true, false);
    assert!(is_precondition_failed(&r), "{r:?}");
    // The real one still is.
    fx.ack(fx.key, tag);
    assert_eq!(fx.stats("q"), Some((0, 0, 0)));
}

#[test]
fn delivery_tags_are_per_channel() {
    let fx = Fx::new();
    fx.declare("q");
    fx.publish("", "q", "m");
    let (tag, _, _) = fx.get("q", false).unwrap();
    let other = (fx.conn, 2);
    fx.channel(other);
    let r = fx.settle(other, tag, false, true, false);
    assert!(is_precondition_failed(&r), "{r:?}");
    assert_eq!(fx.stats("q"), Some((0, 1, 0)));
    fx.ack(fx.key, tag);
    assert_eq!(fx.stats("q"), Some((0, 0, 0)));
}

#[test]
fn ack_multiple_settles_every_unacked_tag_up_to_and_including_it() {
    let fx = Fx::new();
    fx.declare("q");
    for i in 0..6 {
        fx.publish("", "q", &format!("m{i}"));
    }
    let tags: Vec<u64> = (0..6).map(|_| fx.get("q", false).unwrap().0).collect();
    assert_eq!(tags, [1, 2, 3, 4, 5, 6]);
    fx.ack(fx.key, 2);
    fx.settle(fx.key, 4, true, true, false).unwrap();
    assert_eq!(fx.stats("q"), Some((0, 2, 0)));
    for t in [1, 3, 4] {
        let r = fx.settle(fx.key, t, false, true, false);
        assert!(is_precondition_failed(&r), "tag {t}: {r:?}");
    }
    // nack multiple with requeue puts 5 back; 6 stays unacked.
    fx.settle(fx.key, 5, true, false, true).unwrap();
    assert_eq!(fx.stats("q"), Some((1, 1, 0)));
    // multiple with tag 0 means everything outstanding.
    fx.settle(fx.key, 0, true, true, false).unwrap();
    assert_eq!(fx.stats("q"), Some((1, 0, 0)));
    let (_, redelivered, body) = fx.get("q", true).unwrap();
    assert!(redelivered);
    assert_eq!(body, "m4");
}

#[test]
fn double_ack_is_precondition_failed() {
    let fx = Fx::new();
    fx.declare("q");
    fx.publish("", "q", "m0");
    fx.publish("", "q", "m1");
    let (t0, _, _) = fx.get("q", false).unwrap();
    let (t1, _, _) = fx.get("q", false).unwrap();
    fx.ack(fx.key, t0);
    let r = fx.settle(fx.key, t0, false, true, false);
    assert!(is_precondition_failed(&r), "{r:?}");
    // A nack or reject of the settled tag too.
    let r = fx.settle(fx.key, t0, false, false, true);
    assert!(is_precondition_failed(&r), "{r:?}");
    // The other delivery is untouched.
    assert_eq!(fx.stats("q"), Some((0, 1, 0)));
    fx.ack(fx.key, t1);
    let r = fx.settle(fx.key, t1, true, true, false);
    assert!(is_precondition_failed(&r), "{r:?}");
    assert_eq!(fx.stats("q"), Some((0, 0, 0)));
}

#[test]
fn ack_multiple_of_a_tag_that_is_not_outstanding_is_precondition_failed() {
    let fx = Fx::new();
    fx.declare("q");
    for i in 0..3 {
        fx.publish("", "q", &format!("m{i}"));
    }
    let tags: Vec<u64> = (0..3).map(|_| fx.get("q", false).unwrap().0).collect();
    fx.ack(fx.key, tags[2]);
    // Tags 1 and 2 are outstanding, 3 was acked: "ack 3, multiple" is an unknown tag.
    let r = fx.settle(fx.key, tags[2], true, true, false);
    assert!(is_precondition_failed(&r), "{r:?}");
    // A tag never handed out, likewise.
    let r = fx.settle(fx.key, 50, true, true, false);
    assert!(is_precondition_failed(&r), "{r:?}");
    assert_eq!(fx.stats("q"), Some((0, 2, 0)));
}

// ===== 5. stale tags ==================================================================

#[test]
fn stale_tag_of_a_deleted_queue_does_not_settle_the_redeclared_queues_message() {
    let fx = Fx::new();
    fx.declare("q");
    fx.publish("", "q", "old");
    let (stale, _, _) = fx.get("q", false).unwrap();
    assert_eq!(fx.stats("q"), Some((0, 1, 0)));
    fx.vh
        .try_with(|m| m.queue_delete(fx.conn, "q", false, false))
        .unwrap();
    assert_eq!(fx.stats("q"), None);
    fx.declare("q");
    fx.publish("", "q", "new");
    assert_eq!(fx.stats("q"), Some((1, 0, 0)));
    // The stale tag is still known to the channel (RabbitMQ accepts it).
    fx.ack(fx.key, stale);
    assert_eq!(fx.stats("q"), Some((1, 0, 0)));
    // ... and a nack with requeue of another stale tag does not inflate the new queue.
    fx.declare("r");
    fx.publish("", "r", "r-old");
    let (stale_r, _, _) = fx.get("r", false).unwrap();
    fx.vh
        .try_with(|m| m.queue_delete(fx.conn, "r", false, false))
        .unwrap();
    fx.declare("r");
    fx.nack_requeue(fx.key, stale_r);
    assert_eq!(fx.stats("r"), Some((0, 0, 0)));
    // Closing the channel with stale tags outstanding leaves the new queues alone.
    fx.declare("s");
    fx.publish("", "s", "s-old");
    let _ = fx.get("s", false).unwrap();
    fx.vh
        .try_with(|m| m.queue_delete(fx.conn, "s", false, false))
        .unwrap();
    fx.declare("s");
    fx.publish("", "s", "s-new");
    fx.vh.with(|m| m.close_channel(fx.key));
    assert_eq!(fx.stats("s"), Some((1, 0, 0)));
    assert_eq!(fx.stats("q"), Some((1, 0, 0)));
    let key = (fx.conn, 2);
    fx.channel(key);
    let (_, redelivered, body) = fx.get_on(key, "q", true).unwrap().unwrap();
    assert_eq!((redelivered, body.as_str()), (false, "new"));
}

// ===== 6. consumer tag reuse ==========================================================

#[test]
fn reusing_a_cancelled_consumer_tag_keeps_prefetch_accounting_per_consumer() {
    let fx = Fx::new();
    fx.declare("q");
    let key = (fx.conn, 2);
    let out = fx.channel(key);
    fx.qos(key, 1, false);
    fx.consume(key, "q", "c");
    fx.publish("", "q", "m0");
    let d = deliveries(&out);
    assert_eq!(bodies(&d), ["m0"]);
    let old = d[0].delivery_tag;
    assert!(fx.cancel(key, "c"));
    // The delivery stays unacked on the channel after the cancel.
    assert_eq!(fx.stats("q"), Some((0, 1, 0)));

    fx.consume(key, "q", "c");
    // Acking the old delivery before the new consumer has any must not underflow it.
    fx.ack(key, old);
    assert_eq!(fx.stats("q"), Some((0, 0, 1)));
    fx.publish("", "q", "m1");
    let d = deliveries(&out);
    assert_eq!(
        bodies(&d),
        ["m1"],
        "new consumer with prefetch 1 gets its message"
    );
    assert_eq!(d[0].consumer_tag, "c");
    fx.ack(key, d[0].delivery_tag);
}

#[test]
fn acking_a_delivery_of_a_cancelled_consumer_does_not_lift_the_new_consumers_prefetch() {
    let fx = Fx::new();
    fx.declare("q");
    let key = (fx.conn, 2);
    let out = fx.channel(key);
    fx.qos(key, 1, false);
    fx.consume(key, "q", "c");
    fx.publish("", "q", "m0");
    let old = deliveries(&out)[0].delivery_tag;
    assert!(fx.cancel(key, "c"));
    fx.consume(key, "q", "c");
    fx.publish("", "q", "m1");
    let d = deliveries(&out);
    assert_eq!(bodies(&d), ["m1"]);
    let new = d[0].delivery_tag;
    // The new consumer is at its limit; acking the *old* delivery must not free it.
    fx.ack(key, old);
    fx.publish("", "q", "m2");
    assert!(deliveries(&out).is_empty(), "prefetch 1 exceeded");
    assert_eq!(fx.stats("q"), Some((1, 1, 1)));
    fx.ack(key, new);
    assert_eq!(bodies(&deliveries(&out)), ["m2"]);
}

#[test]
fn consuming_with_a_tag_in_use_on_the_channel_is_not_allowed() {
    let fx = Fx::new();
    fx.declare("q");
    fx.declare("q2");
    let key = (fx.conn, 2);
    fx.channel(key);
    fx.consume(key, "q", "c");
    let r = fx.try_consume(key, &consumer("q2", "c"));
    assert!(matches!(r, Err(BrokerError::NotAllowed(_))), "{r:?}");
    // The same tag on another channel is fine.
    let key3 = (fx.conn, 3);
    fx.channel(key3);
    fx.consume(key3, "q", "c");
    assert_eq!(fx.stats("q"), Some((0, 0, 2)));
    // A cancel of an unknown tag is answered (false), not an error.
    assert!(!fx.cancel(key, "nope"));
}

// ===== 7. exclusive ===================================================================

#[test]
fn broker_counters_follow_publishes_deliveries_and_acks() {
    let fx = Fx::new();
    fx.declare("q");
    let before = fx.broker.stats();
    let key = (fx.conn, 2);
    let out = fx.channel(key);
    fx.consume(key, "q", "c");
    for i in 0..4 {
        fx.publish("", "q", &format!("m{i}"));
    }
    let d = deliveries(&out);
    assert_eq!(d.len(), 4);
    fx.ack(key, d[1].delivery_tag);
    fx.settle(key, d[3].delivery_tag, true, false, false)
        .unwrap();
    let after = fx.broker.stats();
    assert_eq!(after.published - before.published, 4);
    assert_eq!(after.delivered - before.delivered, 4);
    assert_eq!(
        after.acked - before.acked,
        1,
        "only basic.ack counts as acknowledged (as RabbitMQ); the three nacked do not"
    );
    assert_eq!(after.channels_opened - before.channels_opened, 1);
}

#[test]
fn a_batch_with_runs_of_the_same_route_reaches_each_queue_in_publish_order() {
    // Consecutive messages with the same exchange and routing key share one routing
    // decision; a change of key in the middle of a batch must route afresh.
    let fx = Fx::new();
    fx.declare("a");
    fx.declare("b");
    fx.declare_exchange("x", "direct");
    fx.bind("a", "x", "ka");
    fx.bind("b", "x", "kb");
    fx.bind("b", "x", "both");
    fx.bind("a", "x", "both");
    let routed = fx.publish_batch(&[
        ("", "a", "1"),
        ("", "a", "2"),
        ("", "b", "3"),
        ("", "a", "4"),
        ("x", "ka", "5"),
        ("x", "ka", "6"),
        ("x", "none", "7"),
        ("x", "none", "8"),
        ("x", "both", "9"),
        ("x", "both", "10"),
        ("", "b", "11"),
    ]);
    assert_eq!(
        routed,
        [true, true, true, true, true, true, false, false, true, true, true]
    );
    assert_eq!(fx.take_all("a"), ["1", "2", "4", "5", "6", "9", "10"]);
    assert_eq!(fx.take_all("b"), ["3", "9", "10", "11"]);
}

#[test]
fn a_lone_consumer_takes_a_burst_up_to_its_prefetch_and_no_more() {
    let fx = Fx::new();
    fx.declare("q");
    let key = (fx.conn, 2);
    let out = fx.channel(key);
    fx.qos(key, 3, false);
    let batch: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let msgs: Vec<(&str, &str, &str)> = batch.iter().map(|b| ("", "q", b.as_str())).collect();
    fx.publish_batch(&msgs);
    fx.consume(key, "q", "c");
    fx.vh.with(|m| m.dispatch("q"));
    let d = deliveries(&out);
    assert_eq!(bodies(&d), ["m0", "m1", "m2"]);
    assert_eq!(
        d.iter().map(|d| d.delivery_tag).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(fx.stats("q"), Some((7, 3, 1)));
    // Two acked (multiple): exactly two more.
    fx.settle(key, 2, true, true, false).unwrap();
    assert_eq!(bodies(&deliveries(&out)), ["m3", "m4"]);
    assert_eq!(fx.stats("q"), Some((5, 3, 1)));
}

#[test]
fn several_consumers_still_alternate_one_message_at_a_time() {
    let fx = Fx::new();
    fx.declare("q");
    let (k1, k2) = ((fx.conn, 2), (fx.conn, 3));
    let (o1, o2) = (fx.channel(k1), fx.channel(k2));
    fx.consume(k1, "q", "c1");
    fx.consume(k2, "q", "c2");
    let batch: Vec<String> = (0..6).map(|i| format!("m{i}")).collect();
    let msgs: Vec<(&str, &str, &str)> = batch.iter().map(|b| ("", "q", b.as_str())).collect();
    fx.publish_batch(&msgs);
    assert_eq!(bodies(&deliveries(&o1)), ["m0", "m2", "m4"]);
    assert_eq!(bodies(&deliveries(&o2)), ["m1", "m3", "m5"]);
}

#[test]
fn ack_multiple_across_interleaved_queues_settles_each_delivery_of_each_queue() {
    // Settling takes runs of deliveries from the same queue with one lookup; tags that
    // alternate between queues must each be settled on their own queue.
    let fx = Fx::new();
    fx.declare("a");
    fx.declare("b");
    let key = (fx.conn, 2);
    let out = fx.channel(key);
    fx.consume(key, "a", "ca");
    fx.consume(key, "b", "cb");
    for i in 0..3 {
        fx.publish("", "a", &format!("a{i}"));
        fx.publish("", "b", &format!("b{i}"));
        fx.publish("", "b", &format!("bb{i}"));
    }
    assert_eq!(deliveries(&out).len(), 9);
    assert_eq!(fx.stats("a"), Some((0, 3, 1)));
    assert_eq!(fx.stats("b"), Some((0, 6, 1)));
    // Nack tags 1..=7 with requeue: they come back (to the same consumers, redelivered).
    fx.settle(key, 7, true, false, true).unwrap();
    let d = deliveries(&out);
    assert_eq!(d.len(), 7);
    assert!(d.iter().all(|d| d.redelivered));
    // Ack everything outstanding.
    fx.settle(key, 0, true, true, false).unwrap();
    assert_eq!(fx.stats("a"), Some((0, 0, 1)));
    assert_eq!(fx.stats("b"), Some((0, 0, 1)));
}
