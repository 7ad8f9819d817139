//! A Raft group's storage (issue 16): the log store over Warren segment logs and the
//! replicated queue's state machine, checked by openraft's own storage test suite
//! (`openraft::testing::Suite`: log state, reads, vote, purge, truncation, apply,
//! membership, snapshot transfer) with real files and `--fsync always`'s group commit,
//! then across a reopen and a simulated kill -9 (the files copied as they are).

use std::collections::BTreeSet;
use std::path::Path;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader, StorageError, Vote,
};
use warren::cluster::log_store::LogStore;
use warren::cluster::queue_machine::QueueMachine;
use warren::cluster::shared_log::SharedLog;
use warren::cluster::types::{message_id, QueueCommand, QueueRaft, QueueResponse};
use warren_storage::{FsyncPolicy, GroupCommit, LogConfig};

fn config() -> LogConfig {
    LogConfig {
        // Small segments: a few dozen entries span several files.
        segment_size: 4096,
        compact_below: 0.5,
        ack_batch: 64,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> LogStore<QueueRaft> {
    LogStore::open(dir, config(), GroupCommit::start(FsyncPolicy::Always)).unwrap()
}

/// A shared log of its own in `dir/log`, synced as `--fsync always` syncs.
fn shared_log(dir: &Path) -> std::sync::Arc<SharedLog> {
    let commit = GroupCommit::start(FsyncPolicy::Always);
    SharedLog::open(&dir.join("log"), config(), commit).unwrap()
}

struct Builder;

impl StoreBuilder<QueueRaft, LogStore<QueueRaft>, QueueMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore<QueueRaft>, QueueMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        Ok((dir, store, QueueMachine::new(None)))
    }
}

#[test]
fn openraft_storage_suite_passes() {
    Suite::test_all(Builder).unwrap();
}

/// The same suite with the state machine keeping its snapshots on disk.
struct OnDisk;

impl StoreBuilder<QueueRaft, LogStore<QueueRaft>, QueueMachine, tempfile::TempDir> for OnDisk {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore<QueueRaft>, QueueMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let machine = QueueMachine::open(dir.path(), None).unwrap();
        Ok((dir, store, machine))
    }
}

#[test]
fn openraft_storage_suite_passes_with_snapshots_on_disk() {
    Suite::test_all(OnDisk).unwrap();
}

/// The same suite with the machine a quorum queue's group runs on a node: message bodies
/// left in the group's log (`raft_snapshot_bodies.rs`).
struct OnLog;

impl StoreBuilder<QueueRaft, LogStore<QueueRaft>, QueueMachine, tempfile::TempDir> for OnLog {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore<QueueRaft>, QueueMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared_log(dir.path());
        let store =
            LogStore::open_keeping_bodies(shared, 0, &dir.path().join("g"), config()).unwrap();
        let bodies = warren::cluster::snapshot_bodies::SnapshotBodies::new(store.clone());
        let machine = QueueMachine::open_on_log(&dir.path().join("g"), bodies)
            .await
            .unwrap();
        Ok((dir, store, machine))
    }
}

#[test]
fn openraft_storage_suite_passes_with_bodies_in_the_log() {
    Suite::test_all(OnLog).unwrap();
}

/// A restarted node starts from its last snapshot: the entries it covers may be purged
/// from the log, so without it the state would be gone.
#[tokio::test]
async fn a_reopened_machine_starts_from_its_snapshot() {
    use openraft::RaftSnapshotBuilder;
    let dir = tempfile::tempdir().unwrap();
    let mut sm = QueueMachine::open(dir.path(), Some(2)).unwrap();
    sm.apply([enqueue(1, 1, "a"), enqueue(1, 2, "b")])
        .await
        .unwrap();
    let built = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    // Applied after the snapshot: not in it, replayed from the log after a restart.
    sm.apply([enqueue(1, 3, "c")]).await.unwrap();
    drop(sm);

    let mut again = QueueMachine::open(dir.path(), Some(2)).unwrap();
    let (applied, _) = again.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(1, 2)));
    let state = again.state().await;
    assert_eq!(
        state.messages.keys().copied().collect::<Vec<_>>(),
        [message_id(1, 0), message_id(2, 0)]
    );
    assert_eq!(state.delivery_limit, Some(2));
    let current = again.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, built.meta);

    // A snapshot installed from the leader is kept too.
    let other = tempfile::tempdir().unwrap();
    let mut follower = QueueMachine::open(other.path(), Some(2)).unwrap();
    follower
        .install_snapshot(&current.meta, current.snapshot)
        .await
        .unwrap();
    drop(follower);
    let follower = QueueMachine::open(other.path(), Some(2)).unwrap();
    assert_eq!(follower.state().await.messages.len(), 2);

    // A damaged snapshot is an error naming the file, not an empty queue.
    let path = dir.path().join("snapshot");
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let err = QueueMachine::open(dir.path(), Some(2)).err().unwrap();
    assert!(err.to_string().contains("snapshot"), "{err}");
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn enqueue(term: u64, index: u64, body: &str) -> Entry<QueueRaft> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(QueueCommand::Enqueue {
            message: body.as_bytes().to_vec().into(),
        }),
    }
}

async fn entries(store: &mut LogStore<QueueRaft>) -> Vec<(u64, u64)> {
    store
        .try_get_log_entries(0..)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.log_id.leader_id.term, e.log_id.index))
        .collect()
}

/// The files of `dir` as a kill -9 would leave them, in a new directory.
pub fn snapshot_files(dir: &Path, to: &Path) {
    for entry in walk(dir) {
        let rel = entry.strip_prefix(dir).unwrap();
        let target = to.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
    }
}

pub fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_suffix_stays_gone_and_the_vote_stays_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(dir.path());
    store.save_vote(&Vote::new(1, 1)).await.unwrap();
    let first: Vec<_> = (1..=30).map(|i| enqueue(1, i, "x")).collect();
    store.blocking_append(first).await.unwrap();
    // A new leader (term 2) disagrees from index 21: the follower drops 21..=30 and takes
    // the leader's entries there.
    store.save_vote(&Vote::new(2, 2)).await.unwrap();
    store.truncate(log_id(1, 21)).await.unwrap();
    let second: Vec<_> = (21..=25).map(|i| enqueue(2, i, "y")).collect();
    store.blocking_append(second).await.unwrap();
    store.purge(log_id(1, 10)).await.unwrap();
    let want: Vec<(u64, u64)> = (11..=20)
        .map(|i| (1, i))
        .chain((21..=25).map(|i| (2, i)))
        .collect();
    assert_eq!(entries(&mut store).await, want);

    let crashed = tempfile::tempdir().unwrap();
    snapshot_files(dir.path(), crashed.path());
    for path in [dir.path(), crashed.path()] {
        let mut again = open(path);
        assert_eq!(entries(&mut again).await, want, "{}", path.display());
        assert_eq!(again.read_vote().await.unwrap(), Some(Vote::new(2, 2)));
        let state = again.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 10)));
        assert_eq!(state.last_log_id, Some(log_id(2, 25)));
    }
}

#[tokio::test]
async fn the_machine_applies_queue_commands_and_a_snapshot_carries_them() {
    let mut sm = QueueMachine::new(Some(1));
    let members = Membership::new(vec![BTreeSet::from([1u64, 2, 3])], None);
    let replies = sm
        .apply([
            Entry {
                log_id: log_id(1, 1),
                payload: EntryPayload::Membership(members),
            },
            enqueue(1, 2, "a"),
            enqueue(1, 3, "b"),
            Entry {
                log_id: log_id(1, 4),
                payload: EntryPayload::Normal(QueueCommand::Return {
                    id: message_id(2, 0),
                }),
            },
            Entry {
                log_id: log_id(1, 5),
                payload: EntryPayload::Normal(QueueCommand::Settle {
                    id: message_id(3, 0),
                }),
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        replies,
        [
            QueueResponse::Nothing,
            QueueResponse::Enqueued {
                id: message_id(2, 0)
            },
            QueueResponse::Enqueued {
                id: message_id(3, 0)
            },
            QueueResponse::Returned {
                returns: 1,
                kept: true
            },
            QueueResponse::Settled { found: true },
        ]
    );
    let snap = {
        use openraft::RaftSnapshotBuilder;
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap()
    };
    let mut follower = QueueMachine::new(Some(1));
    follower
        .install_snapshot(&snap.meta, snap.snapshot)
        .await
        .unwrap();
    let state = follower.state().await;
    assert_eq!(state, sm.state().await);
    assert_eq!(state.messages.len(), 1);
    assert_eq!(state.messages[&message_id(2, 0)].returns, 1);
    assert_eq!(state.last_applied, Some(log_id(1, 5)));
}

/// Many groups in one shared log: each finds its own records again after a reopen and
/// a kill -9 (the files as they are), a group's reads never see another's, and a deleted
/// group's records are acked. The per-group directories hold no log of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_in_one_shared_log_keep_to_their_own_records() {
    let dir = tempfile::tempdir().unwrap();
    let commit = GroupCommit::start(FsyncPolicy::Always);
    let open_group = |shared: &std::sync::Arc<SharedLog>, group: u64, root: &Path| {
        let gdir = root.join(format!("g{group}"));
        std::fs::create_dir_all(&gdir).unwrap();
        LogStore::<QueueRaft>::open_in(shared.clone(), group, &gdir, config()).unwrap()
    };
    let shared = SharedLog::open(&dir.path().join("log"), config(), commit.clone()).unwrap();
    let mut stores: Vec<_> = (1..=3)
        .map(|g| open_group(&shared, g, dir.path()))
        .collect();
    for round in 1..=10u64 {
        for (k, store) in stores.iter_mut().enumerate() {
            let body = format!("g{}-{round}", k + 1);
            store
                .blocking_append(vec![enqueue(1, round, &body)])
                .await
                .unwrap();
        }
    }
    stores[2].forget().await.unwrap();
    stores[1].save_vote(&Vote::new(3, 2)).await.unwrap();
    // Nothing appended after the truncation, and its acks never written out: the
    // truncation's own record keeps 6..=10 out after the reopen.
    stores[1].truncate(log_id(1, 6)).await.unwrap();
    drop(stores);
    drop(shared);

    let crashed = tempfile::tempdir().unwrap();
    snapshot_files(dir.path(), crashed.path());
    for root in [dir.path(), crashed.path()] {
        let shared = SharedLog::open(&root.join("log"), config(), commit.clone()).unwrap();
        assert_eq!(
            shared.unclaimed_groups(),
            [1, 2],
            "group 3 forgotten ({})",
            root.display()
        );
        let mut one = open_group(&shared, 1, root);
        let mut two = open_group(&shared, 2, root);
        let bodies = |entries: Vec<Entry<QueueRaft>>| -> Vec<String> {
            entries
                .into_iter()
                .map(|e| match e.payload {
                    EntryPayload::Normal(QueueCommand::Enqueue { message }) => {
                        String::from_utf8(message.to_vec()).unwrap()
                    }
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        let want_one: Vec<String> = (1..=10).map(|r| format!("g1-{r}")).collect();
        let want_two: Vec<String> = (1..=5).map(|r| format!("g2-{r}")).collect();
        assert_eq!(
            bodies(one.try_get_log_entries(0..).await.unwrap()),
            want_one
        );
        assert_eq!(
            bodies(two.try_get_log_entries(0..).await.unwrap()),
            want_two
        );
        assert_eq!(two.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
        assert_eq!(one.read_vote().await.unwrap(), None);
        for g in 1..=3 {
            let gdir = root.join(format!("g{g}"));
            assert!(
                !gdir.exists() || std::fs::read_dir(&gdir).unwrap().next().is_none(),
                "{} holds files",
                gdir.display()
            );
        }
    }
}

/// The openraft suite on a group whose shared log also holds another group's records.
struct Neighbours;

impl StoreBuilder<QueueRaft, LogStore<QueueRaft>, QueueMachine, tempfile::TempDir> for Neighbours {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore<QueueRaft>, QueueMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared_log(dir.path());
        let mut other =
            LogStore::<QueueRaft>::open_in(shared.clone(), 8, &dir.path().join("8"), config())
                .unwrap();
        let entries: Vec<_> = (1..=20).map(|i| enqueue(5, i, "other")).collect();
        other.blocking_append(entries).await?;
        other.save_vote(&Vote::new(5, 3)).await?;
        let store =
            LogStore::<QueueRaft>::open_in(shared, 9, &dir.path().join("9"), config()).unwrap();
        Ok((dir, store, QueueMachine::new(None)))
    }
}

#[test]
fn openraft_storage_suite_passes_beside_another_group() {
    Suite::test_all(Neighbours).unwrap();
}

/// A group directory in the layout of earlier builds (`entries/` and `meta/`, two engine
/// logs of its own) is moved into the shared log at open, and then removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_log_of_an_earlier_build_moves_into_the_shared_log() {
    use warren::cluster::codec;
    use warren_storage::{BatchRecord, Log};
    let dir = tempfile::tempdir().unwrap();
    let commit = GroupCommit::start(FsyncPolicy::Always);
    let gdir = dir.path().join("queues/4");
    let append = |log: &mut Log, kind: u8, payload: Vec<u8>| {
        let parts = [&payload[..]];
        let rec = BatchRecord {
            timestamp: 0,
            persistent: true,
            kind,
            parts: &parts,
        };
        let (_, t) = log.append_batch(&[rec]).unwrap();
        commit.wait(t).unwrap();
    };
    {
        let (mut entries, _) = Log::open(&gdir.join("entries"), config(), commit.clone()).unwrap();
        let (mut meta, _) = Log::open(&gdir.join("meta"), config(), commit.clone()).unwrap();
        for i in 1..=12 {
            append(
                &mut entries,
                1,
                codec::encode(&enqueue(2, i, "old")).unwrap(),
            );
        }
        append(&mut meta, 2, codec::encode(&Vote::new(1, 1)).unwrap());
        append(&mut meta, 2, codec::encode(&Vote::new(2, 3)).unwrap());
        append(&mut meta, 4, codec::encode(&log_id(2, 4)).unwrap());
    }
    let shared = SharedLog::open(&dir.path().join("queue-log"), config(), commit.clone()).unwrap();
    let mut store = LogStore::<QueueRaft>::open_in(shared.clone(), 4, &gdir, config()).unwrap();
    let want: Vec<(u64, u64)> = (5..=12).map(|i| (2, i)).collect();
    assert_eq!(entries(&mut store).await, want);
    assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(2, 3)));
    assert!(!gdir.join("entries").exists() && !gdir.join("meta").exists());
    drop(store);
    drop(shared);
    let shared = SharedLog::open(&dir.path().join("queue-log"), config(), commit).unwrap();
    let mut again = LogStore::<QueueRaft>::open_in(shared, 4, &gdir, config()).unwrap();
    assert_eq!(entries(&mut again).await, want);
    let state = again.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(2, 4)));
}

/// The metadata group's store and machine as a node opens them.
fn open_metadata(
    dir: &Path,
) -> (
    LogStore<warren::cluster::meta_machine::MetaRaft>,
    warren::cluster::meta_machine::MetaMachine,
) {
    warren::cluster::node::open_metadata_group(shared_log(dir), dir, config()).unwrap()
}

/// The metadata group's log, like a queue group's, is purged only up to a durable
/// snapshot of its machine: one it built, one installed from the leader (openraft purges
/// a follower's log before the machine has written that one), or the one a restarted
/// machine opened from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metadata_purge_waits_for_a_durable_snapshot() {
    use openraft::RaftSnapshotBuilder;
    use std::time::Duration;
    use warren::cluster::meta_machine::MetaRaft;
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<Entry<MetaRaft>> = (1..=10)
        .map(|i| Entry {
            log_id: log_id(1, i),
            payload: EntryPayload::Blank,
        })
        .collect();
    // A purge to index 10 started, and still waiting 300 ms later.
    let purge_waits = |store: &LogStore<MetaRaft>| {
        let mut store = store.clone();
        let purge = tokio::spawn(async move { store.purge(log_id(1, 10)).await });
        std::thread::sleep(Duration::from_millis(300));
        assert!(!purge.is_finished(), "purged past every durable snapshot");
        purge
    };
    let finishes = |purge: tokio::task::JoinHandle<Result<(), StorageError<u64>>>| async move {
        tokio::time::timeout(Duration::from_secs(5), purge)
            .await
            .expect("the purge goes ahead once a snapshot covers it")
            .unwrap()
            .unwrap();
    };

    let (mut leader_store, mut leader) = open_metadata(&dir.path().join("leader"));
    leader_store.blocking_append(entries.clone()).await.unwrap();
    leader.apply(entries.clone()).await.unwrap();
    let purge = purge_waits(&leader_store);
    let snap = leader
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    finishes(purge).await;

    let (mut follower_store, mut follower) = open_metadata(&dir.path().join("follower"));
    follower_store
        .blocking_append(entries.clone())
        .await
        .unwrap();
    let purge = purge_waits(&follower_store);
    follower
        .install_snapshot(&snap.meta, snap.snapshot)
        .await
        .unwrap();
    finishes(purge).await;

    // A machine that built its snapshot and stopped before any purge.
    let restarted = dir.path().join("restarted");
    {
        let (mut store, mut machine) = open_metadata(&restarted);
        store.blocking_append(entries.clone()).await.unwrap();
        machine.apply(entries).await.unwrap();
        machine
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
    }
    let (mut store, _machine) = open_metadata(&restarted);
    tokio::time::timeout(Duration::from_secs(5), store.purge(log_id(1, 10)))
        .await
        .expect("the snapshot opened from covers the purge")
        .unwrap();
}
