//! Resource alarms, as RabbitMQ has them: when the broker's resident memory passes the
//! high watermark, or the free space on the data dir's file system drops below the disk
//! free limit, connections that publish are blocked (sent `connection.blocked` if the
//! client supports it, and no longer read) until the alarm clears; consumers keep flowing.
//!
//! The limits can be changed at run time (as `rabbitmqctl set_vm_memory_high_watermark` /
//! `set_disk_free_limit` do).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why publishers are blocked, if they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlarmState {
    pub memory: bool,
    pub disk: bool,
}

impl AlarmState {
    pub fn any(&self) -> bool {
        self.memory || self.disk
    }

    /// The reason sent in connection.blocked.
    pub fn reason(&self) -> &'static str {
        match (self.memory, self.disk) {
            (true, true) => "low on memory and disk space",
            (true, false) => "low on memory",
            (false, true) => "low on disk space",
            (false, false) => "",
        }
    }
}

pub struct Alarms {
    data_dir: PathBuf,
    memory_limit: AtomicU64,
    disk_free_limit: AtomicU64,
    state: tokio::sync::watch::Sender<AlarmState>,
}

impl Alarms {
    pub fn new(data_dir: &Path, memory_limit: u64, disk_free_limit: u64) -> Self {
        Alarms {
            data_dir: data_dir.to_path_buf(),
            memory_limit: AtomicU64::new(memory_limit),
            disk_free_limit: AtomicU64::new(disk_free_limit),
            state: tokio::sync::watch::channel(AlarmState::default()).0,
        }
    }

    pub fn set_memory_limit(&self, bytes: u64) {
        self.memory_limit.store(bytes, Ordering::Relaxed);
    }

    pub fn set_disk_free_limit(&self, bytes: u64) {
        self.disk_free_limit.store(bytes, Ordering::Relaxed);
    }

    /// The resident memory above which the memory alarm goes on, in bytes.
    pub fn memory_limit(&self) -> u64 {
        self.memory_limit.load(Ordering::Relaxed)
    }

    /// The free disk space under which the disk alarm goes on, in bytes.
    pub fn disk_free_limit(&self) -> u64 {
        self.disk_free_limit.load(Ordering::Relaxed)
    }

    /// The directory whose file system the disk alarm watches.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<AlarmState> {
        self.state.subscribe()
    }

    pub fn state(&self) -> AlarmState {
        *self.state.borrow()
    }

    /// Measures memory and disk and updates the alarm state; returns it if it changed.
    pub fn check(&self) -> Option<AlarmState> {
        let now = AlarmState {
            memory: resident_bytes()
                .is_some_and(|rss| rss > self.memory_limit.load(Ordering::Relaxed)),
            disk: free_bytes(&self.data_dir)
                .is_some_and(|free| free < self.disk_free_limit.load(Ordering::Relaxed)),
        };
        let changed = *self.state.borrow() != now;
        if changed {
            self.state.send_replace(now);
        }
        changed.then_some(now)
    }
}

/// This process's resident set size.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * page.max(4096) as u64)
}

/// Total physical memory.
pub fn total_memory() -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages > 0 && size > 0).then(|| pages as u64 * size as u64)
}

/// Free bytes available to this process on the file system holding `path`.
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid C string and `st` a valid out-pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_drive_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let alarms = Alarms::new(dir.path(), u64::MAX, 0);
        assert_eq!(alarms.check(), None);
        assert!(!alarms.state().any());
        alarms.set_disk_free_limit(u64::MAX);
        let s = alarms.check().expect("changed");
        assert!(s.disk && !s.memory);
        assert_eq!(s.reason(), "low on disk space");
        alarms.set_memory_limit(1);
        assert!(alarms.check().unwrap().memory);
        alarms.set_memory_limit(u64::MAX);
        alarms.set_disk_free_limit(0);
        assert!(!alarms.check().unwrap().any());
    }
}
