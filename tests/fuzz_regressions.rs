//! Replays every input under `fuzz/regressions/<target>/` (inputs that once crashed a fuzz
//! target) and `fuzz/corpus/<target>/` (seeds from real traffic) through the same code the
//! fuzz targets run, so a parser's robustness regression fails `cargo test`.

use std::path::Path;

use bytes::BytesMut;
use warren::protocol::{frame, method, properties, table};
use warren_storage::{record, segment};

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for kind in ["regressions", "corpus"] {
        let dir = root.join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            out.push((
                e.path().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            ));
        }
    }
    out
}

#[test]
fn frame_inputs() {
    for (_, data) in inputs("frame") {
        let Some((&seed, stream)) = data.split_first() else {
            continue;
        };
        let frame_max = [0u32, 4096, 131072][(seed % 3) as usize];
        let mut buf = BytesMut::new();
        'feed: for piece in stream.chunks(1 + (seed as usize >> 2)) {
            buf.extend_from_slice(piece);
            loop {
                match frame::parse(&mut buf, frame_max) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => break 'feed,
                }
            }
        }
    }
}

#[test]
fn method_and_header_inputs() {
    for (_, data) in inputs("method") {
        let _ = method::decode(&data);
    }
    for (_, data) in inputs("content_header") {
        let _ = properties::decode(&data);
    }
}

#[test]
fn field_table_inputs() {
    for (name, data) in inputs("field_table") {
        if table::validate(&data, 0).is_ok() {
            let mut raw = (data.len() as u32).to_be_bytes().to_vec();
            raw.extend_from_slice(&data);
            assert!(
                table::decode(&raw).is_ok(),
                "{name}: validated but does not decode"
            );
        }
    }
}

#[test]
fn record_inputs() {
    for (_, data) in inputs("record") {
        let _ = record::decode(&data);
        for resync in [false, true] {
            segment::scan_records(&data, Path::new("x.seg"), 0, resync, |_| {});
        }
    }
}

#[test]
fn connection_inputs() {
    let all = inputs("connection");
    for (_, data) in &all {
        warren::connection::fuzz_session(data);
    }
}

#[test]
fn stream_session_inputs() {
    // On a thread of its own: the broker the inputs share lives until the thread ends.
    std::thread::spawn(|| {
        for (_, data) in inputs("stream_session") {
            warren::stream_protocol::session::fuzz_session(&data);
        }
    })
    .join()
    .unwrap();
    // The broker's data dir is removed with it (the only test here with this prefix).
    let prefix = format!("warren-fuzz-stream-{}-", std::process::id());
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "data dirs left behind: {left:?}");
}

#[test]
fn connection_model_inputs() {
    for (_, data) in inputs("connection_model") {
        warren::connection::fuzz_model::fuzz_model(&data);
    }
}

#[test]
fn queue_machine_inputs() {
    for (_, data) in inputs("queue_machine") {
        warren::cluster::fuzz_machine::fuzz_queue_machine(&data);
    }
}

#[test]
fn raft_rpc_inputs() {
    for (_, data) in inputs("raft_rpc") {
        warren::cluster::fuzz_rpc::fuzz_raft_rpc(&data);
    }
}

#[test]
fn http_request_inputs() {
    for (_, data) in inputs("http_request") {
        warren::http::fuzz::fuzz_request(&data);
    }
}

#[test]
fn definitions_json_inputs() {
    for (_, data) in inputs("definitions_json") {
        warren::broker::definitions_import::fuzz_import(&data);
    }
}

#[test]
fn policy_inputs() {
    for (_, data) in inputs("policy") {
        warren::broker::policy::fuzz_policy(&data);
    }
}
