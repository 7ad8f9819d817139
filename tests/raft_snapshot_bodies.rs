//! A quorum queue's snapshot refers to its messages' bodies in the group's log instead of
//! carrying them (`src/cluster/snapshot_bodies.rs`): the state machine holds no body, the
//! snapshot file holds ids and returns, a purge keeps the entries the snapshot still
//! needs, a member that installs the snapshot from the leader gets the bodies into its
//! own log, and both find every body again after a restart and after a kill -9 (the
//! files copied as they are). Real files, `--fsync always`'s group commit.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use openraft::storage::{
    RaftLogStorage, RaftLogStorageExt, RaftSnapshotBuilder, RaftStateMachine, Snapshot,
};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader};
use warren::cluster::codec;
use warren::cluster::log_store::LogStore;
use warren::cluster::machine::Applied;
use warren::cluster::queue_machine::{QueueMachine, QueueState};
use warren::cluster::shared_log::SharedLog;
use warren::cluster::snapshot_bodies::SnapshotBodies;
use warren::cluster::types::{message_id, QueueCommand, QueueRaft};
use warren_storage::{FsyncPolicy, GroupCommit, LogConfig};

use crate::raft_storage::snapshot_files;

const GROUP: u64 = 7;

fn config() -> LogConfig {
    LogConfig {
        segment_size: 16 << 10,
        compact_below: 0.5,
        ack_batch: 64,
        ..LogConfig::default()
    }
}

/// A node's queue-group storage: the shared log, the group's store over it, its machine.
struct Node {
    shared: Arc<SharedLog>,
    store: LogStore<QueueRaft>,
    machine: QueueMachine,
    bodies: SnapshotBodies,
}

async fn open_node(root: &Path) -> Node {
    let shared = SharedLog::open(
        &root.join("queue-log"),
        config(),
        GroupCommit::start(FsyncPolicy::Always),
    )
    .unwrap();
    let gdir = root.join("group");
    std::fs::create_dir_all(&gdir).unwrap();
    let store =
        LogStore::<QueueRaft>::open_keeping_bodies(shared.clone(), GROUP, &gdir, config()).unwrap();
    let bodies = SnapshotBodies::new(store.clone());
    let machine = QueueMachine::open_on_log(&gdir, bodies.clone())
        .await
        .unwrap();
    Node {
        shared,
        store,
        machine,
        bodies,
    }
}

/// How many records of the group the shared log under `root` holds unacked.
fn records_of_group(root: &Path) -> usize {
    let commit = GroupCommit::start(FsyncPolicy::Always);
    let shared = SharedLog::open(&root.join("queue-log"), config(), commit).unwrap();
    shared.claim(GROUP).len()
}

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn entry(index: u64, cmd: QueueCommand) -> Entry<QueueRaft> {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(cmd),
    }
}

/// The body of the `k`-th message of entry `index`: 1 KiB, different for each.
fn body(index: u64, k: usize) -> Bytes {
    let mut b = format!("entry {index} message {k} ").into_bytes();
    b.resize(1024, (index as u8).wrapping_mul(31) ^ k as u8);
    b.into()
}

/// Entries `indexes`, each enqueuing `per` messages (`body(index, k)`).
fn enqueue_batches(indexes: std::ops::RangeInclusive<u64>, per: usize) -> Vec<Entry<QueueRaft>> {
    indexes
        .map(|i| {
            let messages = (0..per).map(|k| body(i, k)).collect();
            entry(
                i,
                QueueCommand::EnqueueBatch {
                    messages,
                    enqueued_at: 0,
                },
            )
        })
        .collect()
}

/// Builds the machine's snapshot, as openraft asks it to.
async fn snapshot(machine: &QueueMachine) -> Snapshot<QueueRaft> {
    let mut builder = machine.clone().get_snapshot_builder().await;
    builder.build_snapshot().await.unwrap()
}

/// Appends `entries` to the node's log and applies them, as a member does.
async fn commit(node: &mut Node, entries: Vec<Entry<QueueRaft>>) {
    node.store.blocking_append(entries.clone()).await.unwrap();
    node.machine.apply(entries).await.unwrap();
}

/// The bodies of the messages the node's tap starts from, read from its log, by id (what
/// the broker's copy is rebuilt from); every message must have one.
async fn tapped_bodies(node: &Node) -> Vec<(u64, Bytes)> {
    let (state, _, _tap) = node.machine.tap::<QueueRaft>().await;
    assert!(state.messages.values().all(|h| h.message.is_none()));
    let ids: Vec<u64> = state.messages.keys().copied().collect();
    let found = node.bodies.read(&ids).await.unwrap();
    assert_eq!(found.len(), ids.len(), "a body for every message");
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_refers_to_bodies_in_the_log_and_a_follower_gets_them_into_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut leader = open_node(dir.path()).await;
    // Entries 1..=40 enqueue 4 messages each; 41..=60 settle every message of 1..=20 and
    // the first of 21..=40.
    let enqueues = enqueue_batches(1..=40, 4);
    commit(&mut leader, enqueues).await;
    let settles = (41..=60u64)
        .map(|i| {
            let mut ids: Vec<u64> = (0..4).map(|k| message_id(i - 40, k)).collect();
            ids.extend([message_id(i - 20, 0), message_id(i - 20 + 10, 0)]);
            entry(i, QueueCommand::SettleBatch { ids })
        })
        .collect();
    commit(&mut leader, settles).await;
    let want: Vec<(u64, Bytes)> = (21..=40u64)
        .flat_map(|i| (1..4).map(move |k| (message_id(i, k), body(i, k))))
        .collect();

    // The state holds ids and returns, no body; the snapshot file neither.
    let state = leader.machine.state().await;
    assert_eq!(state.messages.len(), want.len());
    assert!(state.messages.values().all(|h| h.message.is_none()));
    let built = snapshot(&leader.machine).await;
    let file = std::fs::metadata(dir.path().join("group").join("snapshot")).unwrap();
    assert!(
        file.len() < 4096,
        "{} bytes for {} KiB of messages",
        file.len(),
        want.len()
    );
    // openraft purges what the snapshot covers (keeping none here): the entries whose
    // messages it holds stay in the log all the same.
    leader.store.purge(log_id(60)).await.unwrap();
    assert!(leader
        .store
        .try_get_log_entries(0..)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(tapped_bodies(&leader).await, want);

    // The snapshot sent to a member carries the bodies, read from the log.
    let sent = leader
        .machine
        .get_current_snapshot()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sent.meta, built.meta);
    let data = sent.snapshot.into_inner();
    let decoded: Applied<QueueState> = codec::decode(&data).unwrap();
    let carried: Vec<(u64, Bytes)> = decoded
        .messages
        .iter()
        .map(|(id, h)| (*id, h.message.clone().unwrap()))
        .collect();
    assert_eq!(carried, want);

    // A member installs it: the bodies go into its own log, its state and file hold none.
    let other = tempfile::tempdir().unwrap();
    let mut follower = open_node(other.path()).await;
    follower
        .machine
        .install_snapshot(&sent.meta, Box::new(std::io::Cursor::new(data)))
        .await
        .unwrap();
    follower.store.purge(log_id(60)).await.unwrap();
    let state = follower.machine.state().await;
    assert!(state.messages.values().all(|h| h.message.is_none()));
    assert!(
        std::fs::metadata(other.path().join("group").join("snapshot"))
            .unwrap()
            .len()
            < 4096
    );
    assert_eq!(tapped_bodies(&follower).await, want);

    // Both find every body after a restart, and after a kill -9.
    let crashed = tempfile::tempdir().unwrap();
    let crashed_follower = tempfile::tempdir().unwrap();
    snapshot_files(dir.path(), crashed.path());
    snapshot_files(other.path(), crashed_follower.path());
    drop((leader, follower));
    for root in [
        dir.path(),
        other.path(),
        crashed.path(),
        crashed_follower.path(),
    ] {
        let node = open_node(root).await;
        let (applied, _) = node.machine.clone().applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(60)), "{}", root.display());
        assert_eq!(tapped_bodies(&node).await, want, "{}", root.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_no_snapshot_refers_to_are_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = open_node(dir.path()).await;
    let enqueues = enqueue_batches(1..=100, 8);
    commit(&mut node, enqueues).await;
    snapshot(&node.machine).await;
    node.store.purge(log_id(100)).await.unwrap();
    node.shared.upkeep().unwrap();
    drop(node);
    // The snapshot holds every message: the entries stay, purged or not.
    assert!(records_of_group(dir.path()) >= 100);
    // Every message settled: the next snapshot holds none, and the log lets go of them,
    // once a reader that pinned them (the broker's copy being rebuilt) is done.
    let mut node = open_node(dir.path()).await;
    let all: Vec<u64> = (1..=100u64)
        .flat_map(|i| (0..8).map(move |k| message_id(i, k)))
        .collect();
    let pinned = node.bodies.pin(&all).await;
    let settles = (101..=200u64)
        .map(|i| {
            let ids = (0..8).map(|k| message_id(i - 100, k)).collect();
            entry(i, QueueCommand::SettleBatch { ids })
        })
        .collect();
    commit(&mut node, settles).await;
    snapshot(&node.machine).await;
    node.store.purge(log_id(200)).await.unwrap();
    assert_eq!(node.bodies.read(&all).await.unwrap().len(), all.len());
    node.bodies.unpin(pinned).await.unwrap();
    assert!(node.bodies.read(&all).await.unwrap().is_empty());
    node.shared.upkeep().unwrap();
    drop(node);
    let left = records_of_group(dir.path());
    assert!(
        left <= 3,
        "{left} records left (vote, committed id, purge point at most)"
    );
    let node = open_node(dir.path()).await;
    assert!(tapped_bodies(&node).await.is_empty());
}

/// A snapshot written by an earlier build carries its bodies: opening the group on its log
/// writes them into the log, and the next snapshot (without them) still finds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_an_earlier_build_has_its_bodies_moved_into_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let gdir = dir.path().join("group");
    {
        let mut old = QueueMachine::open(&gdir, None).unwrap();
        let messages = (0..3).map(|k| body(5, k)).collect();
        old.apply([entry(
            5,
            QueueCommand::EnqueueBatch {
                messages,
                enqueued_at: 0,
            },
        )])
        .await
        .unwrap();
        snapshot(&old).await;
    }
    let want: Vec<(u64, Bytes)> = (0..3).map(|k| (message_id(5, k), body(5, k))).collect();
    let node = open_node(dir.path()).await;
    assert_eq!(tapped_bodies(&node).await, want);
    snapshot(&node.machine).await;
    drop(node);
    let node = open_node(dir.path()).await;
    assert_eq!(tapped_bodies(&node).await, want);
}

/// Bodies a snapshot from the leader brought stay until that snapshot is retained: a
/// reader that pinned the state before (the broker's copy being rebuilt) and lets go in
/// between does not take them with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_brought_by_a_snapshot_outlive_an_earlier_pin() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = open_node(dir.path()).await;
    let enqueues = (1..=3u64)
        .map(|i| {
            entry(
                i,
                QueueCommand::Enqueue {
                    message: body(i, 0),
                },
            )
        })
        .collect();
    commit(&mut node, enqueues).await;
    snapshot(&node.machine).await;
    let held: Vec<u64> = (1..=3).map(|i| message_id(i, 0)).collect();
    let pinned = node.bodies.pin(&held).await;
    let brought = vec![(message_id(20, 0), body(20, 0))];
    node.bodies
        .keep(brought.clone(), &[message_id(20, 0)])
        .await
        .unwrap();
    node.bodies.unpin(pinned).await.unwrap();
    assert_eq!(
        node.bodies.read(&[message_id(20, 0)]).await.unwrap(),
        brought
    );
}

/// With `wait_for_snapshots` (a node's queue groups), a purge waits until the state
/// machine has a durable snapshot that covers it: openraft purges a follower's log while
/// the snapshot from the leader is still being written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_waits_for_a_durable_snapshot_that_covers_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = open_node(dir.path()).await;
    node.store.wait_for_snapshots();
    let enqueues = (1..=10u64)
        .map(|i| {
            entry(
                i,
                QueueCommand::Enqueue {
                    message: body(i, 0),
                },
            )
        })
        .collect();
    commit(&mut node, enqueues).await;
    let mut store = node.store.clone();
    let purge = tokio::spawn(async move { store.purge(log_id(10)).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!purge.is_finished(), "purged past every durable snapshot");
    node.store.snapshot_reports().durable(10);
    tokio::time::timeout(std::time::Duration::from_secs(5), purge)
        .await
        .expect("the purge goes ahead once a snapshot covers it")
        .unwrap()
        .unwrap();
    assert!(node
        .store
        .try_get_log_entries(0..)
        .await
        .unwrap()
        .is_empty());
}
