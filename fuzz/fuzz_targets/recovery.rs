//! Log recovery over arbitrary segment-file bytes (after a valid file header, so the
//! record scan is reached): opening never panics, never returns a record whose CRC fails,
//! and the log stays writable.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warren_storage::segment::{encode_file_header, segment_file_name};
use warren_storage::{Cursor, FsyncPolicy, GroupCommit, Log, LogConfig};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir_in(
        std::env::var("WARREN_FUZZ_TMP").unwrap_or_else(|_| "/dev/shm".into()),
    )
    .or_else(|_| tempfile::tempdir())
    .unwrap();
    let (ack, seg) = data.split_at(data.len().min(data.first().copied().unwrap_or(0) as usize));
    let mut bytes = encode_file_header(0).to_vec();
    bytes.extend_from_slice(seg);
    std::fs::write(dir.path().join(segment_file_name(0)), &bytes).unwrap();
    std::fs::write(dir.path().join("00000000000000000000.ack"), ack).unwrap();
    let commit = GroupCommit::start(FsyncPolicy::Never);
    let config = LogConfig {
        segment_size: 4096,
        ..LogConfig::default()
    };
    let Ok((mut log, _)) = Log::open(dir.path(), config, commit) else {
        return;
    };
    let mut c = Cursor::at(0);
    let mut n = 0;
    while let Some(r) = log.read_next(&mut c) {
        n += 1;
        if n > 100_000 {
            break;
        }
        let _ = r.payload.len();
    }
    let a = log.append(1, true, b"after recovery").unwrap();
    assert_eq!(&log.read(a.seq).unwrap().payload[..], b"after recovery");
});
