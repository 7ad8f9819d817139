//! The model's checks can fail: each fabricated wrong answer below is caught.
use super::*;

fn model_after(op: Op) -> Model {
    let mut m = Model::new();
    assert!(m.send(op, &mut BytesMut::new()));
    m
}

fn publish(m: &mut Model, to: QueueName) {
    let op = Op::Publish {
        chan: Chan::One,
        exchange: Exchange::Default,
        key: Key::Queue(to),
        mandatory: false,
        persistent: false,
    };
    assert!(m.send(op, &mut BytesMut::new()));
    m.observe(vec![]);
}

/// The checks can fail: a wrong message count is caught.
#[test]
#[should_panic(expected = "DeclareOk")]
fn a_wrong_message_count_is_caught() {
    let mut m = Model::new();
    publish(&mut m, QueueName::Durable);
    assert!(m.send(
        Op::Declare(Chan::Two, QueueName::Durable),
        &mut BytesMut::new()
    ));
    m.observe(vec![Event::DeclareOk {
        chan: 2,
        messages: 0,
        consumers: 0,
    }]);
}

/// A delivery of the second message before the first is caught.
#[test]
#[should_panic(expected = "out of order")]
fn a_delivery_out_of_order_is_caught() {
    let mut m = Model::new();
    publish(&mut m, QueueName::Transient);
    publish(&mut m, QueueName::Transient);
    let get = Op::Get {
        chan: Chan::One,
        queue: QueueName::Transient,
        no_ack: false,
    };
    assert!(m.send(get, &mut BytesMut::new()));
    m.observe(vec![Event::GetOk {
        chan: 1,
        tag: 1,
        redelivered: false,
        remaining: 1,
        body: 2u64.to_le_bytes().to_vec(),
    }]);
}

/// An unknown delivery tag must close the channel with 406, not be ignored.
#[test]
#[should_panic(expected = "no answer")]
fn an_ignored_unknown_tag_is_caught() {
    let mut m = model_after(Op::Ack {
        chan: Chan::One,
        tag: TagPick::Beyond(0),
        multiple: false,
    });
    m.observe(vec![]);
}

/// A redelivery must say so.
#[test]
#[should_panic(expected = "redelivered flag")]
fn a_missing_redelivered_flag_is_caught() {
    let mut m = Model::new();
    publish(&mut m, QueueName::Durable);
    let get = |m: &mut Model| {
        let op = Op::Get {
            chan: Chan::One,
            queue: QueueName::Durable,
            no_ack: false,
        };
        assert!(m.send(op, &mut BytesMut::new()));
    };
    get(&mut m);
    let got = |tag| Event::GetOk {
        chan: 1,
        tag,
        redelivered: false,
        remaining: 0,
        body: 1u64.to_le_bytes().to_vec(),
    };
    m.observe(vec![got(1)]);
    assert!(m.send(Op::Recover(Chan::One), &mut BytesMut::new()));
    m.observe(vec![Event::Done(1, ids::BASIC_RECOVER_OK)]);
    get(&mut m);
    m.observe(vec![got(2)]);
}
