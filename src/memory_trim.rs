//! Hands memory the allocator holds free back to the system.
//!
//! glibc's `free` returns memory to the system only from the top of a heap; what is freed
//! below a chunk still in use stays in the arena, counted in the process's resident size.
//! A node of a three-node cluster that took 400 MB of 8 KiB publishes into a quorum queue
//! held 268 MiB of anonymous memory once they were on disk, 49 MiB after `malloc_trim`
//! (BENCHMARKS.md, stop 47): the message buffers had been freed, but between them sat the
//! queue's own small, long-lived allocations. Resident size is what the memory alarm
//! compares with the high watermark, so memory held that way could block publishers.
//!
//! `tick` is called from the server's upkeep (on the blocking pool); every `TRIM_EVERY` it
//! asks glibc how much it holds free (`mallinfo2`) and trims when that is over
//! `TRIM_ABOVE`. The walk locks each arena in turn for its duration (milliseconds for a
//! heap of hundreds of megabytes), so it is neither frequent nor done for little.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the allocator is asked.
const TRIM_EVERY: Duration = Duration::from_secs(10);
/// Free memory the allocator may hold before it is trimmed.
const TRIM_ABOVE: usize = 64 << 20;

static LAST: Mutex<Option<Instant>> = Mutex::new(None);

/// Trims the allocator's free memory if it is time to look and there is enough of it;
/// returns the bytes it held free when it trimmed.
pub fn tick() -> Option<usize> {
    {
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < TRIM_EVERY) {
            return None;
        }
        *last = Some(Instant::now());
    }
    let free = held_free()?;
    if free < TRIM_ABOVE {
        return None;
    }
    trim();
    Some(free)
}

/// Bytes the allocator holds free in its arenas.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn held_free() -> Option<usize> {
    // SAFETY: mallinfo2 has no preconditions; it only reads the allocator's state.
    let info = unsafe { libc::mallinfo2() };
    Some(info.fordblks)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn held_free() -> Option<usize> {
    None
}

/// Returns the free memory of every arena to the system.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() {
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn freed_memory_held_by_the_allocator_is_trimmed() {
        // Many small blocks, nine in ten freed: the freed runs sit between live blocks, so
        // `free` alone cannot give them back.
        let mut blocks: Vec<Vec<u8>> = (0..25_000).map(|_| vec![1u8; 4000]).collect();
        let mut k = 0;
        blocks.retain(|_| {
            k += 1;
            k % 10 == 0
        });
        let free = held_free().unwrap();
        assert!(free >= 60 << 20, "{free} bytes free before");
        let resident = crate::alarms::resident_bytes().unwrap();
        *LAST.lock().unwrap() = None;
        assert!(tick().is_some_and(|held| held >= 60 << 20));
        // The arena still counts the space as free (its pages went back with madvise):
        // what drops is the process's resident size. Other tests allocate meanwhile, so
        // the check leaves them half of it.
        let after = crate::alarms::resident_bytes().unwrap();
        assert!(
            after + (40 << 20) < resident,
            "resident {resident} bytes before the trim, {after} after"
        );
        drop(blocks);
    }
}
