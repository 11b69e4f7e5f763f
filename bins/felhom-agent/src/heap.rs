//! Handing freed heap back to the kernel once a beat and its reconcile pass are done.
//!
//! A beat over 1,000 guests builds and drops a few MiB of short-lived values (the guest list,
//! the report and its JSON); glibc keeps the freed chunks inside its arenas, and only the top
//! of the brk heap is returned by itself (`M_TRIM_THRESHOLD`). `malloc_trim(0)` also returns
//! the whole free pages in the middle of every arena (`MADV_DONTNEED`), so the daemon idles
//! between beats at what it actually holds. Issue 14 measured the effect on the daemon's idle
//! RSS (see `cargo xtask bench --only daemon`); it runs once a minute and takes well under a
//! millisecond on such a heap.

use std::time::Instant;

/// Returns the free pages of glibc's arenas to the kernel; logs (debug) how long it took.
/// A no-op on other C libraries.
pub fn release_freed() {
    let started = Instant::now();
    let released = trim();
    tracing::debug!(
        released,
        micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "freed heap returned to the kernel"
    );
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // one libc call, no pointers: see the SAFETY note
fn trim() -> bool {
    // SAFETY: malloc_trim takes a plain size (0: keep no padding) and touches only the
    // allocator's own state, under the allocator's own locks; it is safe to call at any time
    // from any thread.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn freed_heap_is_returned() {
        // Freed blocks in the middle of the heap (each held in place by a live one above it,
        // so none merges into the top that free() trims by itself) are returned by the trim:
        // the call reports that it released memory.
        let mut big = Vec::new();
        let mut keep = Vec::new();
        for i in 0..64u8 {
            big.push(vec![i; 64 * 1024]);
            keep.push(vec![i; 16]);
        }
        drop(big);
        let released = super::trim();
        assert_eq!(keep[63][0], 63);
        if cfg!(all(target_os = "linux", target_env = "gnu")) {
            assert!(
                released,
                "malloc_trim released nothing after 4 MiB were freed"
            );
        }
    }
}
