//! Injected latency, held precisely.
//!
//! tokio's timer ticks in whole milliseconds and rounds a deadline up to the next tick, so
//! `tokio::time::sleep(2 ms)` holds a request for 2–3 ms (measured: 3.1–3.2 ms median on the
//! bench's machine): a simulator set to 2 ms would really serve at ~3 ms and every bench
//! figure built on it would be off by half. [`hold`] waits for a deadline taken when the
//! request arrived, woken by one process-wide timer thread (a condvar wait with a
//! sub-millisecond timeout) [`HOT`] before the deadline and then waiting out the rest on its
//! worker, yielding; and also by tokio's own timer for the same deadline: under a paused test
//! clock tokio's timer fires first (time jumps), under a real clock the thread does. Alone, the
//! thread held 2.11 ms median for 2 ms (the OS's timer slack and wake-up, then the worker's
//! wake-up); with the hot stretch a hold ends at its deadline unless the worker is busy with
//! another request. A wake-up counts only once tokio's clock agrees the deadline has passed,
//! so a paused clock still decides alone there.
//!
//! No runtime thread ever blocks: the timer thread is not one of them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// Holds the caller until `arrived + latency` (tokio's clock; see the module doc).
pub(crate) async fn hold(arrived: Instant, latency: Duration) {
    if latency.is_zero() {
        return;
    }
    let deadline = arrived + latency;
    if Instant::now() >= deadline {
        return;
    }
    let (tx, rx) = oneshot::channel();
    let precise = deadline.into_std();
    TIMER.schedule(precise.checked_sub(HOT).unwrap_or(precise), tx);
    let coarse = tokio::time::sleep_until(deadline);
    tokio::pin!(coarse);
    tokio::select! {
        _ = &mut coarse => return,
        _ = rx => {}
    }
    // The last stretch hot, on the worker: a yielding loop lets everything else the worker
    // serves run between looks at the clock, and leaves no wake-up to arrive late.
    while std::time::Instant::now() < precise {
        tokio::task::yield_now().await;
    }
    // A paused clock has not moved: it alone decides.
    if Instant::now() < deadline {
        coarse.await;
    }
}

/// How long before its deadline the timer thread hands a held request back to its worker,
/// which waits out the rest hot (see [`hold`]). The thread itself wakes ~0.1 ms late on the
/// bench's VM and the worker's own wake-up adds as much: without this margin the median
/// hold at 2 ms was 2.25 ms under the cold beat's load, with it 2.12 ms (p10 2.000 ms).
/// Longer margins burn the CPU the agent under test needs on a 2-core machine.
const HOT: Duration = Duration::from_micros(300);

/// The process-wide wake-up thread, started on first use.
static TIMER: LazyLock<&'static Timer> = LazyLock::new(Timer::start);

#[derive(Debug)]
struct Timer {
    due: Mutex<BinaryHeap<Reverse<Entry>>>,
    changed: Condvar,
}

#[derive(Debug)]
struct Entry {
    at: std::time::Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

impl Timer {
    fn start() -> &'static Timer {
        let timer: &'static Timer = Box::leak(Box::new(Timer {
            due: Mutex::new(BinaryHeap::new()),
            changed: Condvar::new(),
        }));
        // If the thread cannot start, every hold falls back to tokio's timer (coarser, still
        // correct): nothing is lost but precision.
        let _ = std::thread::Builder::new()
            .name("pve-sim-latency".to_owned())
            .spawn(move || {
                precise_wakeups();
                timer.run()
            });
        timer
    }

    fn lock(&self) -> MutexGuard<'_, BinaryHeap<Reverse<Entry>>> {
        // the heap stays consistent whatever panicked while holding it
        self.due.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn schedule(&self, at: std::time::Instant, wake: oneshot::Sender<()>) {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut due = self.lock();
        let earliest = due.peek().is_none_or(|Reverse(e)| at < e.at);
        due.push(Reverse(Entry { at, seq, wake }));
        drop(due);
        if earliest {
            self.changed.notify_one();
        }
    }

    fn run(&self) {
        let mut due = self.lock();
        loop {
            let now = std::time::Instant::now();
            while due.peek().is_some_and(|Reverse(e)| e.at <= now) {
                if let Some(Reverse(e)) = due.pop() {
                    // the request may be gone (client hung up): nothing to wake then
                    let _ = e.wake.send(());
                }
            }
            due = match due.peek() {
                None => self.changed.wait(due).unwrap_or_else(|p| p.into_inner()),
                Some(Reverse(e)) => {
                    let wait = e.at.saturating_duration_since(now);
                    self.changed
                        .wait_timeout(due, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

/// Asks the kernel to wake this thread at its deadline rather than up to the default 50 µs
/// later (Linux timer slack, `prctl(PR_SET_TIMERSLACK)`): the thread's whole job is waking
/// held requests on time, so the injected latency is what the setting says. Best effort.
#[allow(unsafe_code)] // one libc call with integer arguments: see the SAFETY note
fn precise_wakeups() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes one integer (the slack in ns) and touches no memory of
    // ours; an error only leaves the default slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_paused_clock_alone_decides() {
        let t0 = Instant::now();
        hold(t0, Duration::from_secs(30)).await;
        assert_eq!(t0.elapsed(), Duration::from_secs(30));
        // a deadline already past does not wait
        let t1 = Instant::now();
        hold(t0, Duration::from_secs(1)).await;
        assert_eq!(t1.elapsed(), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_real_clock_holds_at_least_the_latency() {
        for ms in [1, 2, 3] {
            let t0 = Instant::now();
            hold(t0, Duration::from_millis(ms)).await;
            assert!(
                t0.elapsed() >= Duration::from_millis(ms),
                "{:?}",
                t0.elapsed()
            );
        }
    }

    #[test]
    fn entries_wake_in_deadline_order() {
        let base = std::time::Instant::now();
        let mut heap = BinaryHeap::new();
        for (i, ms) in [5u64, 1, 3].into_iter().enumerate() {
            let (tx, _rx) = oneshot::channel();
            heap.push(Reverse(Entry {
                at: base + Duration::from_millis(ms),
                seq: i as u64,
                wake: tx,
            }));
        }
        let order: Vec<u64> = std::iter::from_fn(|| heap.pop().map(|Reverse(e)| e.seq)).collect();
        assert_eq!(order, [1, 2, 0]);
    }
}
