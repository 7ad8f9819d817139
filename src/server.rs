//! The server: recovers the model from the data dir, then accepts AMQP connections and
//! runs periodic upkeep (ack batches, compaction).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::alarms::Alarms;
use crate::broker::confirms::ConfirmTracker;
use crate::broker::{Broker, BrokerConfig};
use crate::config::Config;
use crate::connection::{self, Limits, ServerContext};
use warren_storage::{GroupCommit, LogConfig};

/// How often pending acks are written and sparse segments compacted.
const MAINTENANCE_EVERY: Duration = Duration::from_millis(200);

/// A running broker.
pub struct Server {
    pub local_addr: SocketAddr,
    pub ctx: Arc<ServerContext>,
    listener: TcpListener,
}

impl Server {
    /// Recovers state from `config.data_dir` and binds the AMQP listener. Connections are
    /// accepted once `run` is called, i.e. after recovery has finished.
    pub async fn bind(config: &Config) -> io::Result<Server> {
        let commit = GroupCommit::start(config.fsync);
        let broker_config = BrokerConfig {
            data_dir: config.data_dir.clone(),
            log: LogConfig {
                segment_size: config.segment_size,
                ..LogConfig::default()
            },
            outbox_limit: 1024,
        };
        let (broker, report) = Broker::open(broker_config, commit.clone())?;
        for p in &report.problems {
            eprintln!("warren: recovery: {p}");
        }
        eprintln!(
            "warren: recovered {} durable queues, {} messages from {}",
            report.queues,
            report.messages,
            config.data_dir.display()
        );
        let limits = Limits {
            frame_max: config.frame_max,
            channel_max: config.channel_max,
            heartbeat: config.heartbeat,
            max_message_size: config.max_message_size,
            handshake_timeout: config.handshake_timeout,
            ..Limits::default()
        };
        let alarms = Arc::new(Alarms::new(
            &config.data_dir,
            config.memory_limit_bytes(),
            config.disk_free_limit,
        ));
        alarms.check();
        let ctx = Arc::new(ServerContext {
            broker: Mutex::new(broker),
            confirms: ConfirmTracker::new(commit),
            limits,
            alarms,
        });
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        Ok(Server {
            local_addr,
            ctx,
            listener,
        })
    }

    /// Accepts connections forever.
    pub async fn run(self) {
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(MAINTENANCE_EVERY);
            loop {
                tick.tick().await;
                if let Some(state) = ctx.alarms.check() {
                    match state.any() {
                        true => eprintln!(
                            "warren: resource alarm: {}; blocking publishers",
                            state.reason()
                        ),
                        false => eprintln!("warren: resource alarm cleared; unblocking publishers"),
                    }
                }
                // Ack files are written without the broker lock held, so upkeep I/O does
                // not stall publishers and consumers.
                let flushes = ctx.broker.lock().expect("broker").take_ack_flushes();
                let written = tokio::task::spawn_blocking(move || {
                    flushes
                        .into_iter()
                        .map(|f| f.write())
                        .filter_map(Result::err)
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
                for e in written {
                    eprintln!("warren: upkeep: writing acks: {e}");
                }
                for p in ctx.broker.lock().expect("broker").compact() {
                    eprintln!("warren: upkeep: {p}");
                }
            }
        });
        eprintln!("warren: accepting AMQP connections on {}", self.local_addr);
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    let ctx = self.ctx.clone();
                    tokio::spawn(connection::serve(stream, peer, ctx));
                }
                Err(e) => {
                    // Out of file descriptors (EMFILE/ENFILE) and the like: back off and
                    // keep serving the connections we have.
                    eprintln!("warren: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}
