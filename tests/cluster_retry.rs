//! A write sent again is taken once (issue 16). A round of publishes whose answer is lost
//! on its way back from the queue's leader (the link from the publishing node slowed,
//! then cut while the answer is on it) is sent again by that node's writer once the link
//! heals, and the leader commits it a second time. The group applies it once: the message
//! is in every node's copy once and is delivered once. Before writer rounds carried their
//! node and number (stop 57) the second entry enqueued the message again — the
//! duplicates of the Jepsen runs, and their reordered first deliveries.

use crate::cluster_support;

use std::time::{Duration, Instant};

use cluster_support::quorum::*;
use cluster_support::Cluster;
use lapin::BasicProperties;

/// How long the slowed link holds what crosses it, each way.
const SLOW: Duration = Duration::from_secs(1);
/// Tries of the scenario before the test gives up on setting it up (an election, say,
/// can change the group's term in between, and the entries counted then include a blank).
const TRIES: usize = 3;

/// The queue group's (leader, term, last applied index) on node `id`.
fn group_at(c: &Cluster, id: u64) -> Option<(u64, u64, u64)> {
    let g = queue_group(c, id)?;
    Some((
        g["leader"].as_u64()?,
        g["term"].as_u64()?,
        g["last_applied"].as_u64()?,
    ))
}

/// Publishes `body` with a confirm through node `publisher`, cutting the link to `leader`
/// while the round's answer is on it and healing it half a second later. Returns whether
/// the publish was confirmed.
fn publish_with_the_answer_lost(
    c: &Cluster,
    rt: &tokio::runtime::Runtime,
    (publisher, leader): (u64, u64),
    body: &str,
) -> bool {
    let link = &c.links[&(publisher, leader)];
    rt.block_on(async {
        let (_conn, ch) = confirm_channel(c.node(publisher).amqp).await;
        link.slow(SLOW);
        let sent = Instant::now();
        let confirm = ch
            .basic_publish(
                "".into(),
                "orders".into(),
                Default::default(),
                body.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap();
        // The round reaches the leader after SLOW and is committed at once; its answer
        // crosses the link until about 2 × SLOW. Cut halfway: the connection is closed with
        // the answer on it, and the writer sends the round again until the link is back.
        tokio::time::sleep_until((sent + SLOW + SLOW / 2).into()).await;
        link.cut();
        tokio::time::sleep(Duration::from_millis(500)).await;
        link.heal();
        let confirmed = tokio::time::timeout(Duration::from_secs(30), confirm)
            .await
            .expect("a confirm within 30 s");
        confirmed.unwrap().is_ack()
    })
}

#[test]
fn a_round_whose_answer_was_lost_is_sent_again_and_enqueued_once() {
    let c = Cluster::new(3, 0);
    c.agreed_leader(&[1, 2, 3], None, ELECTION);
    let rt = runtime();
    rt.block_on(declare(c.node(1).amqp, "orders", quorum()));

    // The scenario holds when the leader committed two entries in its term for the one
    // publish: the round and the round sent again.
    let mut twice = false;
    for attempt in 1..=TRIES {
        let leader = queue_leader(&c, &[1, 2, 3], None);
        let publisher = (1..=3).find(|id| *id != leader).unwrap();
        let body = format!("once-{attempt}");
        let before = group_at(&c, leader).expect("the leader's group");
        assert!(
            publish_with_the_answer_lost(&c, &rt, (publisher, leader), &body),
            "the publish confirmed"
        );
        let after = wait_for("the leader's group after the publish", &c, ELECTION, || {
            group_at(&c, leader)
        });
        let entries = after.2 - before.2;
        eprintln!("attempt {attempt}: before {before:?}, after {after:?}");
        if (after.0, after.1) == (before.0, before.1) && entries == 2 {
            twice = true;
            // Every node's copy holds the message once: the second entry changed nothing.
            wait_for("every copy holding one message", &c, ELECTION, || {
                (1..=3).all(|id| messages(&c, id) == Some(1)).then_some(())
            });
            std::thread::sleep(Duration::from_secs(1));
            for id in 1..=3 {
                assert_eq!(messages(&c, id), Some(1), "node {id}'s copy");
            }
            // And it is delivered once.
            let got = rt.block_on(async {
                let (_conn, ch) = confirm_channel(c.node(leader).amqp).await;
                consume(&ch, "orders", 2, Duration::from_secs(3)).await
            });
            assert_eq!(got, [body], "deliveries");
            break;
        }
        // Not set up (an election in between, or the answer crossed before the cut): the
        // queue emptied, and again.
        let got = rt.block_on(async {
            let (_conn, ch) = confirm_channel(c.node(leader).amqp).await;
            consume(&ch, "orders", 1, Duration::from_secs(10)).await
        });
        assert!(got.contains(&body), "the message of attempt {attempt}");
        wait_for("the queue empty everywhere", &c, ELECTION, || {
            (1..=3).all(|id| messages(&c, id) == Some(0)).then_some(())
        });
    }
    assert!(
        twice,
        "in {TRIES} tries the leader never committed the round twice"
    );
}
