//! A short lapin session (declare, bind, publish with confirms, consume, ack, get, close),
//! used by `fuzz/capture_corpus.py --lapin` to record real lapin traffic as fuzz seeds.
//!
//! Usage: cargo run --release --example lapin_session -- PORT

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("usage: lapin_session PORT");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
        let conn = Connection::connect(&url, ConnectionProperties::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.exchange_declare(
            "lapin.topic".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        let mut args = FieldTable::default();
        args.insert("x-note".into(), AMQPValue::LongString("seed".into()));
        ch.queue_declare("lapin.q".into(), QueueDeclareOptions::durable(), args)
            .await
            .unwrap();
        ch.queue_bind(
            "lapin.q".into(),
            "lapin.topic".into(),
            "a.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .unwrap();
        let mut headers = FieldTable::default();
        headers.insert("k".into(), AMQPValue::LongString("v".into()));
        for i in 0..3u8 {
            ch.basic_publish(
                "lapin.topic".into(),
                "a.b".into(),
                BasicPublishOptions::default(),
                &[i; 20],
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_headers(headers.clone()),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
        ch.basic_qos(2, BasicQosOptions::default()).await.unwrap();
        let mut consumer = ch
            .basic_consume(
                "lapin.q".into(),
                "lapin-c".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        for _ in 0..2 {
            let d = consumer.next().await.unwrap().unwrap();
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
        ch.basic_cancel("lapin-c".into(), BasicCancelOptions::default())
            .await
            .unwrap();
        let _ = ch
            .basic_get("lapin.q".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap();
        ch.queue_delete("lapin.q".into(), QueueDeleteOptions::default())
            .await
            .unwrap();
        ch.close(200, "bye".into()).await.unwrap();
        conn.close(200, "bye".into()).await.unwrap();
    });
}
