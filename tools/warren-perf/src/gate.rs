//! The start and finish lines of a run. At the start each client connects and sets itself
//! up, then waits, and the timed part begins once all of them have arrived: with 1,000
//! queues, publishing while the 2,000th client was still connecting measured the
//! handshakes (piled onto a broker already under load), not the steady state. At the
//! finish a producer still blocked in a write is let go after a grace period: a broker
//! that stopped reading it (flow control, RabbitMQ's memory alarm under 1,000 unbounded
//! producers) would otherwise hold the run until it drained gigabytes. On the way to the
//! start, at most `CONNECTING_AT_ONCE` clients are in their handshake at a time: 2,000 at
//! once had RabbitMQ reset some of them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::client::{Client, Target};

/// Clients connecting (TCP and AMQP handshake) at the same time, at most.
const CONNECTING_AT_ONCE: usize = 64;

pub struct StartGate {
    arrived: AtomicUsize,
    open: watch::Sender<bool>,
    connecting: Semaphore,
}

impl StartGate {
    /// An open gate: scenarios that do not close it never wait at it.
    pub fn new() -> Self {
        Self {
            arrived: AtomicUsize::new(0),
            open: watch::Sender::new(true),
            connecting: Semaphore::new(CONNECTING_AT_ONCE),
        }
    }

    /// Connects a client, waiting for a handshake slot first.
    pub async fn connect(&self, target: &Target) -> std::io::Result<Client> {
        let _slot = self
            .connecting
            .acquire()
            .await
            .map_err(std::io::Error::other)?;
        Client::connect(target).await
    }

    /// Closes the gate and forgets earlier arrivals.
    pub fn close(&self) {
        self.arrived.store(0, Ordering::SeqCst);
        self.open.send_replace(false);
    }

    /// Called by a client once it is ready: counts it and waits for the gate to open.
    pub async fn arrive(&self) {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.subscribe();
        // The sender lives as long as the gate, so this cannot fail while we wait.
        let _ = open.wait_for(|o| *o).await;
    }

    /// Waits until `n` clients have arrived, then opens the gate. Fails if one of `tasks`
    /// ended first (its error is what the caller reports once it joins the tasks) or if
    /// `limit` passes.
    pub async fn open_when_arrived(
        &self,
        n: usize,
        tasks: &[&JoinHandle<std::io::Result<()>>],
        limit: Duration,
    ) -> std::io::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let arrived = self.arrived.load(Ordering::SeqCst);
            if arrived >= n {
                self.open.send_replace(true);
                return Ok(());
            }
            if tasks.iter().any(|t| t.is_finished()) {
                self.open.send_replace(true);
                return Err(std::io::Error::other(format!(
                    "a client stopped before the start ({arrived} of {n} ready)"
                )));
            }
            if Instant::now() > deadline {
                self.open.send_replace(true);
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("only {arrived} of {n} clients ready after {limit:?}"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Waits for a client task to end after `stop`, for at most `grace`; a task still running
/// then is aborted (what it did is already counted). Its own error is passed on.
pub async fn join_or_abort(
    task: JoinHandle<std::io::Result<()>>,
    grace: Duration,
) -> std::io::Result<()> {
    let abort = task.abort_handle();
    match tokio::time::timeout(grace, task).await {
        Ok(joined) => joined.map_err(std::io::Error::other)?,
        Err(_) => {
            abort.abort();
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn the_gate_opens_only_when_everyone_has_arrived() {
        let gate = Arc::new(StartGate::new());
        gate.close();
        let passed = Arc::new(AtomicUsize::new(0));
        let clients: Vec<_> = (0..3)
            .map(|_| {
                let (gate, passed) = (gate.clone(), passed.clone());
                tokio::spawn(async move {
                    gate.arrive().await;
                    passed.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            passed.load(Ordering::SeqCst),
            0,
            "nobody passes a closed gate"
        );
        let refs: Vec<_> = clients.iter().collect();
        gate.open_when_arrived(3, &refs, Duration::from_secs(5))
            .await
            .unwrap();
        for c in clients {
            c.await.unwrap().unwrap();
        }
        assert_eq!(passed.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_client_stuck_at_the_finish_is_let_go() {
        let stuck: JoinHandle<std::io::Result<()>> = tokio::spawn(std::future::pending());
        join_or_abort(stuck, Duration::from_millis(50))
            .await
            .unwrap();
        let failed: JoinHandle<std::io::Result<()>> =
            tokio::spawn(async { Err(std::io::Error::other("closed")) });
        let err = join_or_abort(failed, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "closed");
    }

    #[tokio::test]
    async fn a_client_that_fails_before_the_start_is_reported() {
        let gate = StartGate::new();
        gate.close();
        let failed: JoinHandle<std::io::Result<()>> =
            tokio::spawn(async { Err(std::io::Error::other("refused")) });
        let err = gate
            .open_when_arrived(2, &[&failed], Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("0 of 2"), "{err}");
    }
}
