//! One process per data dir: the broker and the offline `warren definitions` commands
//! take an exclusive advisory lock (`flock`) on `<data-dir>/warren.lock` and hold it until
//! they exit. The kernel drops it when the process dies, so a kill -9 leaves no stale lock.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Holds the data dir's lock while alive.
pub struct DataDirLock {
    _file: File,
}

/// Takes the lock, or says which process-wide user holds it.
pub fn lock(data_dir: &Path) -> io::Result<DataDirLock> {
    std::fs::create_dir_all(data_dir)?;
    let path = data_dir.join("warren.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "data dir {} is in use by another warren process",
                    data_dir.display()
                ),
            ));
        }
        return Err(e);
    }
    Ok(DataDirLock { _file: file })
}

#[cfg(test)]
mod tests {
    #[test]
    fn second_lock_is_refused_until_the_first_goes() {
        let dir = tempfile::tempdir().unwrap();
        let first = super::lock(dir.path()).unwrap();
        let e = super::lock(dir.path()).err().unwrap();
        assert!(e.to_string().contains("in use"), "{e}");
        drop(first);
        assert!(super::lock(dir.path()).is_ok());
    }
}
