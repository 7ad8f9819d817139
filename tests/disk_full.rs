//! A disk that fills during appends (a 1 MiB tmpfs as the data dir): publishes are nacked,
//! never acked without being stored; no segment is corrupted; every confirmed message is
//! delivered intact; and publishing works again once space returns.
//!
//! Needs permission to mount a tmpfs (root, as in CI); without it the test says so and
//! passes vacuously.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use lapin::options::*;
use lapin::types::FieldTable;

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn body(i: u32) -> Vec<u8> {
    let mut b = format!("message {i} ").into_bytes();
    b.resize(1024, b'#');
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_nacks_publishes_and_loses_nothing_confirmed() {
    let outer = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&outer.path().join("mnt"), "1m") else {
        eprintln!("disk_full: cannot mount a tmpfs here (not root?); nothing tested");
        return;
    };
    let data = fs.0.join("data");
    // Keep some space aside to give back later.
    let filler = fs.0.join("filler");
    std::fs::write(&filler, vec![1u8; 256 * 1024]).unwrap();
    let b = common::start_with(|c| {
        c.data_dir = data.clone();
        c.segment_size = 64 * 1024;
        c.disk_free_limit = 0; // test the write path itself, not the alarm
        c.fsync = warren_storage::FsyncPolicy::Always;
    })
    .await;
    let conn = common::lapin_connect(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "full".into(),
        QueueDeclareOptions::durable(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut acked = Vec::new();
    let mut nacks = 0;
    for i in 0..2_000u32 {
        let confirm = common::publish_confirmed(&ch, "", "full", &body(i), true).await;
        if confirm.is_ack() {
            acked.push(i);
        } else {
            nacks += 1;
            if nacks >= 5 {
                break;
            }
        }
    }
    assert!(nacks > 0, "1 MiB filled without a single nack");
    assert!(!acked.is_empty());

    // Space returns: publishing works again.
    std::fs::remove_file(&filler).unwrap();
    let confirm = common::publish_confirmed(&ch, "", "full", &body(99_999), true).await;
    assert!(confirm.is_ack(), "publishing recovers when space returns");
    acked.push(99_999);

    // Every confirmed message is there, intact, and nothing else but possibly the
    // nacked ones (a nack means "not known to be stored").
    let cch = conn.create_channel().await.unwrap();
    let mut got = Vec::new();
    while let Some(m) = tokio::time::timeout(
        Duration::from_secs(5),
        cch.basic_get("full".into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    .unwrap()
    {
        let text = String::from_utf8_lossy(&m.delivery.data).into_owned();
        let i: u32 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert_eq!(m.delivery.data, body(i), "message {i} intact");
        got.push(i);
    }
    for i in &acked {
        assert!(got.contains(i), "confirmed message {i} lost");
    }

    // No segment on the full disk is corrupt.
    for entry in common::walk(&data) {
        if entry.extension().is_some_and(|e| e == "seg") {
            let bytes = std::fs::read(&entry).unwrap();
            let base = warren_storage::segment::decode_file_header(&bytes).unwrap();
            let scan = warren_storage::segment::scan_records(&bytes, &entry, base, true, |_| {});
            assert!(
                scan.corruptions.is_empty(),
                "{}: {:?}",
                entry.display(),
                scan.corruptions
            );
        }
    }
}
