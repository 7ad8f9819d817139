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
//! compares the process's resident anonymous memory with what glibc has handed out
//! (`mallinfo2`: in use in its arenas, and mapped for large blocks) and trims when the
//! difference, memory freed but still resident, is over `TRIM_ABOVE`. (glibc's own count
//! of free bytes would not do: it keeps counting pages a trim has given back.) The trim
//! walks each arena under that arena's lock, stalling allocations there meanwhile, so it
//! is neither frequent nor done for little. `mallinfo2` needs glibc 2.33
//! or later (Debian 12 has 2.36).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the allocator is asked.
const TRIM_EVERY: Duration = Duration::from_secs(10);
/// Freed memory still resident that the allocator may hold before it is trimmed.
const TRIM_ABOVE: usize = 64 << 20;

static LAST: Mutex<Option<Instant>> = Mutex::new(None);

/// Trims the allocator's free memory if it is time to look and enough of it is resident;
/// returns how much was when it trimmed.
pub fn tick() -> Option<usize> {
    {
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| at.elapsed() < TRIM_EVERY) {
            return None;
        }
        *last = Some(Instant::now());
    }
    let idle = resident_free()?;
    if idle < TRIM_ABOVE {
        return None;
    }
    trim();
    Some(idle)
}

/// Resident anonymous memory beyond what the allocator has handed out: memory freed but
/// kept (thread stacks and other small mappings count too).
pub fn resident_free() -> Option<usize> {
    Some(anonymous_bytes()?.saturating_sub(handed_out()?))
}

/// The process's resident anonymous memory (`/proc/self/smaps_rollup`).
fn anonymous_bytes() -> Option<usize> {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let line = rollup.lines().find(|l| l.starts_with("Anonymous:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes the allocator has handed out: in use in its arenas, and mapped for large blocks.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn handed_out() -> Option<usize> {
    // SAFETY: mallinfo2 has no preconditions; it only reads the allocator's state.
    let info = unsafe { libc::mallinfo2() };
    Some(info.uordblks + info.hblkhd)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn handed_out() -> Option<usize> {
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
        let idle = resident_free().unwrap();
        assert!(idle >= 60 << 20, "{idle} bytes resident and free before");
        let resident = crate::alarms::resident_bytes().unwrap();
        *LAST.lock().unwrap() = None;
        assert!(tick().is_some_and(|held| held >= 60 << 20));
        // Other tests allocate meanwhile, so the check leaves them half of it.
        let after = crate::alarms::resident_bytes().unwrap();
        assert!(
            after + (40 << 20) < resident,
            "resident {resident} bytes before the trim, {after} after"
        );
        // Given back, it is not trimmed again at the next look.
        *LAST.lock().unwrap() = None;
        assert_eq!(tick(), None);
        drop(blocks);
    }
}
