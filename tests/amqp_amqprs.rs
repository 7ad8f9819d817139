//! The broker driven by amqprs, a second independent client crate: declare, bind,
//! publish, consume with manual acks, basic.get.

use crate::common;

use std::time::Duration;

use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicGetArguments, BasicPublishArguments,
    BasicQosArguments, QueueBindArguments, QueueDeclareArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::BasicProperties;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqprs_publishes_and_consumes() {
    let b = common::start().await;
    let conn = Connection::open(&OpenConnectionArguments::new(
        "127.0.0.1",
        b.addr.port(),
        "guest",
        "guest",
    ))
    .await
    .unwrap();
    let ch = conn.open_channel(None).await.unwrap();
    let (queue, _, _) = ch
        .queue_declare(QueueDeclareArguments::new("amqprs-q"))
        .await
        .unwrap()
        .unwrap();
    ch.queue_bind(QueueBindArguments::new(&queue, "amq.topic", "amqprs.#"))
        .await
        .unwrap();
    for i in 0..10 {
        ch.basic_publish(
            BasicProperties::default().with_delivery_mode(2).finish(),
            format!("m{i}").into_bytes(),
            BasicPublishArguments::new("amq.topic", "amqprs.example"),
        )
        .await
        .unwrap();
    }
    // basic.get with message_count.
    let (get_ok, _props, body) = loop {
        if let Some(m) = ch.basic_get(BasicGetArguments::new(&queue)).await.unwrap() {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(body, b"m0");
    assert_eq!(get_ok.message_count(), 9);
    ch.basic_ack(BasicAckArguments::new(get_ok.delivery_tag(), false))
        .await
        .unwrap();

    ch.basic_qos(BasicQosArguments::new(0, 3, false))
        .await
        .unwrap();
    let (_tag, mut rx) = ch
        .basic_consume_rx(BasicConsumeArguments::new(&queue, "amqprs-consumer"))
        .await
        .unwrap();
    for i in 1..10 {
        let msg = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(msg.content.unwrap(), format!("m{i}").into_bytes());
        let deliver = msg.deliver.unwrap();
        assert!(!deliver.redelivered());
        ch.basic_ack(BasicAckArguments::new(deliver.delivery_tag(), false))
            .await
            .unwrap();
    }
    ch.close().await.unwrap();
    conn.close().await.unwrap();
}
