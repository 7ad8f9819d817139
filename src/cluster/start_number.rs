//! A node's start time as the cluster sees it (`ClusterNode::started_at`): its `NodeUp`
//! entry carries it, and it numbers every write the node makes (`WriteId::started_at`,
//! metadata writes and queue rounds alike). The groups tell a write committed twice from
//! a new one by that number, and a start's writes from an earlier start's by comparing
//! it, so each start's must be above every earlier start's. The wall clock alone is not:
//! a node restarted with its clock set back would number its writes below its last
//! start's, and the groups would take each of them as a late write of an earlier start
//! (applied even when committed twice). So the number is the clock or the last start's
//! plus one, whichever is higher, kept in `cluster/started-at` and synced before the
//! node writes anything with it.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// The file's name in the node's `cluster` directory.
const FILE: &str = "started-at";

/// This start's number for the node whose cluster state is in `dir`, given the clock's
/// `now` (milliseconds since the epoch): above every earlier start's, recorded durably.
pub fn next(dir: &Path, now: u64) -> io::Result<u64> {
    let path = dir.join(FILE);
    let last = match std::fs::read(&path) {
        Ok(bytes) => match <[u8; 8]>::try_from(bytes.as_slice()) {
            Ok(b) => Some(u64::from_le_bytes(b)),
            Err(_) => {
                tracing::warn!(
                    "cluster: {} holds {} bytes, not 8; this start is numbered by the clock",
                    path.display(),
                    bytes.len()
                );
                None
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    };
    let number = match last {
        Some(last) if last >= now => {
            tracing::warn!(
                last_start = last,
                clock = now,
                "cluster: the clock is behind this node's last start; this start is numbered after it"
            );
            last.saturating_add(1)
        }
        _ => now,
    };
    // A new file renamed over the old one: a crash leaves one of the two whole.
    let fresh = dir.join(format!("{FILE}.new"));
    let mut file = File::create(&fresh)?;
    file.write_all(&number.to_le_bytes())?;
    file.sync_all()?;
    std::fs::rename(&fresh, &path)?;
    warren_storage::segment::sync_dir(dir)?;
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_is_numbered_above_the_last_even_with_the_clock_set_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            next(dir.path(), 1_000).unwrap(),
            1_000,
            "the first: the clock"
        );
        assert_eq!(
            next(dir.path(), 5_000).unwrap(),
            5_000,
            "clock ahead: the clock"
        );
        assert_eq!(
            next(dir.path(), 4_000).unwrap(),
            5_001,
            "clock behind: last + 1"
        );
        assert_eq!(
            next(dir.path(), 5_001).unwrap(),
            5_002,
            "the same ms: last + 1"
        );
        assert_eq!(
            std::fs::read(dir.path().join(FILE)).unwrap(),
            5_002u64.to_le_bytes()
        );
        assert!(!dir.path().join("started-at.new").exists());
    }

    #[test]
    fn a_damaged_record_numbers_the_start_by_the_clock_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"abc").unwrap();
        assert_eq!(next(dir.path(), 7_000).unwrap(), 7_000);
        assert_eq!(next(dir.path(), 6_000).unwrap(), 7_001);
    }
}
