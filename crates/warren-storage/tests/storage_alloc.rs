//! A new segment's zero-fill takes no buffer from the heap (file.rs `ZEROS`): a 1 MiB
//! buffer allocated and freed for each segment raised glibc's dynamic mmap threshold, after
//! which the process's allocations below 1 MiB came from arenas that keep freed memory (a
//! cluster node with 1,000 idle quorum queues held 140 MiB more, measured with spares of
//! 8 MiB made ahead of time, an experiment left out). Its own test binary: it
//! installs a global allocator that records the largest allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use warren_storage::{FsyncPolicy, GroupCommit, Log, LogConfig};

struct RecordsLargest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for RecordsLargest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: RecordsLargest = RecordsLargest;

#[test]
fn making_an_8_mib_segment_takes_no_large_buffer_from_the_heap() {
    let dir = tempfile::tempdir().unwrap();
    let commit = GroupCommit::start(FsyncPolicy::Always);
    let config = LogConfig {
        segment_size: 8 << 20,
        first_segment_size: 8 << 20,
        ..LogConfig::default()
    };
    LARGEST.store(0, Ordering::Relaxed);
    let (mut log, _) = Log::open(&dir.path().join("q"), config, commit).unwrap();
    let body = vec![1u8; 4096];
    // Fill the first segment and start a second: two segments zero-filled.
    while log.segment_count() < 2 {
        log.append(0, true, &body).unwrap();
    }
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest < 256 * 1024,
        "largest allocation {largest} bytes while making two 8 MiB segments"
    );
}
