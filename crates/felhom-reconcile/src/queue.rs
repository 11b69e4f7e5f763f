//! The per-guest job queue: the single choke point every mutation goes through.
//!
//! Jobs for one vmid run strictly one at a time in submit order (one lane per vmid, a FIFO
//! drained by one worker task); different vmids run in parallel under a global cap (a fair
//! semaphore: one permit per running job, released between jobs so lanes take turns).
//! `submit` never waits: it appends to the lane under a short lock and returns a handle.
//! A job is a closure returning a future, so nothing of it runs before it is dispatched.
//!
//! Dropping a [`JobHandle`] detaches the job; it still runs (a PVE task runs server-side
//! whatever we do, so a half-observed job is worse than an unobserved one). Only a job not yet
//! dispatched can be cancelled ([`JobHandle::cancel`]).

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures::FutureExt;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, Semaphore};
use tokio_util::task::TaskTracker;

/// A job, type-erased: checks its cancel flag, runs, and reports through its own channel.
type Task = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Job lifecycle, shared by a handle and its task.
const PENDING: u8 = 0;
const RUNNING: u8 = 1;
const CANCELLED: u8 = 2;

/// Longest panic message kept in a [`JobError::Panicked`].
const PANIC_MESSAGE_MAX: usize = 256;

/// Why a submitted job produced no value of its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The job panicked (building its future or running it). It may have acted before it
    /// panicked: read the guest's state before retrying. Later jobs for the guest still run.
    /// (Only in unwinding builds: with `panic = "abort"` a panic ends the process instead, and
    /// startup recovery takes over.)
    #[error("job for guest {vmid} panicked: {message}")]
    Panicked {
        /// The guest.
        vmid: u32,
        /// The panic message (truncated), or a placeholder for a non-string payload.
        message: String,
    },
    /// Cancelled before dispatch: nothing of it ran, resubmitting is safe.
    #[error("job for guest {vmid} was cancelled before it started")]
    Cancelled {
        /// The guest.
        vmid: u32,
    },
    /// The job was dropped without reporting, because the runtime shut down while it was
    /// queued or running. It may have acted: read the guest's state before retrying.
    #[error("job for guest {vmid} was dropped without a result (runtime shut down)")]
    Lost {
        /// The guest.
        vmid: u32,
    },
}

/// A submission the queue refused; the job comes back unrun inside (like tokio's
/// `TrySendError`).
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError<F> {
    /// The queue was closed: it takes no new jobs and will not reopen.
    #[error("job queue is closed")]
    Closed(F),
}

impl<F> SubmitError<F> {
    /// The job, never started.
    pub fn into_job(self) -> F {
        match self {
            Self::Closed(job) => job,
        }
    }
}

impl<F> fmt::Debug for SubmitError<F> {
    // Hand-written: the job is a closure and has no Debug.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

/// The result of one submitted job; await it for `Result<T, JobError>`.
pub struct JobHandle<T> {
    vmid: u32,
    state: Arc<AtomicU8>,
    result: oneshot::Receiver<Result<T, JobError>>,
}

impl<T> JobHandle<T> {
    /// The guest the job is for.
    pub fn vmid(&self) -> u32 {
        self.vmid
    }

    /// Cancels the job if it has not been dispatched yet; returns whether it was (then it never
    /// runs and the handle yields [`JobError::Cancelled`]). A job already running is not
    /// interrupted: it may have a PVE task in flight.
    pub fn cancel(&self) -> bool {
        self.state
            .compare_exchange(PENDING, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

impl<T> Future for JobHandle<T> {
    type Output = Result<T, JobError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let vmid = self.vmid;
        Pin::new(&mut self.result)
            .poll(cx)
            .map(|received| received.unwrap_or(Err(JobError::Lost { vmid })))
    }
}

impl<T> fmt::Debug for JobHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state.load(Ordering::Acquire) {
            PENDING => "pending",
            RUNNING => "running",
            _ => "cancelled",
        };
        f.debug_struct("JobHandle")
            .field("vmid", &self.vmid)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

/// The per-guest queue. Clones share one queue.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    lanes: Mutex<Lanes>,
    permits: Semaphore,
    max_concurrency: usize,
    tracker: TaskTracker,
    runtime: Handle,
}

#[derive(Default)]
struct Lanes {
    closed: bool,
    /// A vmid is present exactly while a lane worker for it is alive; its FIFO holds the jobs
    /// not yet dispatched.
    by_vmid: HashMap<u32, VecDeque<Task>>,
}

impl Queue {
    /// A queue running at most `max_concurrency` jobs at once, on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime (use [`Queue::with_runtime`] there).
    pub fn new(max_concurrency: NonZeroUsize) -> Self {
        Self::with_runtime(max_concurrency, Handle::current())
    }

    /// A queue whose lane workers run on `runtime`.
    pub fn with_runtime(max_concurrency: NonZeroUsize, runtime: Handle) -> Self {
        let max_concurrency = max_concurrency.get().min(Semaphore::MAX_PERMITS);
        Self {
            inner: Arc::new(Inner {
                lanes: Mutex::new(Lanes::default()),
                permits: Semaphore::new(max_concurrency),
                max_concurrency,
                tracker: TaskTracker::new(),
                runtime,
            }),
        }
    }

    /// The global cap on jobs running at once.
    pub fn max_concurrency(&self) -> usize {
        self.inner.max_concurrency
    }

    /// Queues `job` for guest `vmid` and returns at once with its handle. The closure is called
    /// when the job is dispatched: after every earlier job for `vmid` has finished and a global
    /// slot is free. After [`Queue::close`] the job comes back in [`SubmitError::Closed`].
    pub fn submit<F, Fut, T>(&self, vmid: u32, job: F) -> Result<JobHandle<T>, SubmitError<F>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let mut lanes = self.inner.lock();
        if lanes.closed {
            return Err(SubmitError::Closed(job));
        }
        let state = Arc::new(AtomicU8::new(PENDING));
        let (sender, result) = oneshot::channel();
        let task_state = Arc::clone(&state);
        let task: Task = Box::new(move || {
            if task_state
                .compare_exchange(PENDING, RUNNING, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                // The receiver may be gone; nobody is left to tell then.
                let _ = sender.send(Err(JobError::Cancelled { vmid }));
                return Box::pin(std::future::ready(()));
            }
            Box::pin(async move {
                let outcome = run_caught(vmid, job).await;
                let _ = sender.send(outcome);
            })
        });
        let worker = match lanes.by_vmid.get_mut(&vmid) {
            // A worker is alive for this vmid and will reach the job in order.
            Some(lane) => {
                lane.push_back(task);
                None
            }
            None => {
                lanes.by_vmid.insert(vmid, VecDeque::from([task]));
                // Tracked under the lock, so a concurrent `close` waits for this worker;
                // spawned after releasing it, because a runtime that is shutting down drops the
                // future on the spot and the worker's guard takes the lock.
                Some(
                    self.inner
                        .tracker
                        .track_future(lane_worker(Arc::clone(&self.inner), vmid)),
                )
            }
        };
        drop(lanes);
        if let Some(worker) = worker {
            self.inner.runtime.spawn(worker);
        }
        Ok(JobHandle {
            vmid,
            state,
            result,
        })
    }

    /// Stops accepting jobs, then waits until every job already queued has run and every
    /// running job has finished. Idempotent. Must not be awaited from inside a job (it would
    /// wait for itself); bound it with `tokio::time::timeout` for a shutdown grace period.
    pub async fn close(&self) {
        self.inner.lock().closed = true;
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    /// Whether [`Queue::close`] has been called.
    pub fn is_closed(&self) -> bool {
        self.inner.lock().closed
    }

    /// Jobs submitted but not yet dispatched, over all guests.
    pub fn queued(&self) -> usize {
        self.inner.lock().by_vmid.values().map(VecDeque::len).sum()
    }
}

impl fmt::Debug for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lanes = self.inner.lock();
        f.debug_struct("Queue")
            .field("max_concurrency", &self.inner.max_concurrency)
            .field("closed", &lanes.closed)
            .field("active_lanes", &lanes.by_vmid.len())
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Lanes> {
        // Nothing panics while holding the lock; if something ever did, the map is still whole.
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One guest's worker: runs its lane's jobs in order until the lane is empty.
///
/// The guard is built before the future is first polled, so even a worker dropped unpolled
/// (runtime shutdown) removes its lane.
fn lane_worker(inner: Arc<Inner>, vmid: u32) -> impl Future<Output = ()> + Send {
    let guard = LaneGuard {
        inner,
        vmid,
        done: false,
    };
    guard.run()
}

/// Owns one lane while its worker lives. If the worker is dropped before it empties the lane
/// (runtime shutdown), the lane is removed so its pending handles resolve as `Lost` instead of
/// waiting forever, and a later submit starts a fresh worker.
struct LaneGuard {
    inner: Arc<Inner>,
    vmid: u32,
    done: bool,
}

impl LaneGuard {
    async fn run(mut self) {
        loop {
            let task = {
                let mut lanes = self.inner.lock();
                match lanes
                    .by_vmid
                    .get_mut(&self.vmid)
                    .and_then(VecDeque::pop_front)
                {
                    Some(task) => task,
                    None => {
                        // Removed under the same lock `submit` checks: a later job starts a new
                        // worker instead of landing in a lane nobody drains.
                        lanes.by_vmid.remove(&self.vmid);
                        self.done = true;
                        return;
                    }
                }
            };
            // The semaphore is never closed, so acquiring cannot fail; if it somehow did, the
            // guard drops the lane and its handles report `Lost` rather than hang.
            let Ok(_permit) = self.inner.permits.acquire().await else {
                return;
            };
            task().await;
        }
    }
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        if !self.done {
            let orphaned = self.inner.lock().by_vmid.remove(&self.vmid);
            // Dropped outside the lock: dropping a task drops its result sender.
            drop(orphaned);
        }
    }
}

/// Runs `job`, turning a panic (in the closure or its future) into [`JobError::Panicked`].
async fn run_caught<F, Fut, T>(vmid: u32, job: F) -> Result<T, JobError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    // AssertUnwindSafe: after a panic the job's state is dropped, never observed again by the
    // queue; whatever the job shares with others, it shared knowingly.
    let future = match std::panic::catch_unwind(AssertUnwindSafe(job)) {
        Ok(future) => future,
        Err(payload) => return Err(panicked(vmid, payload.as_ref())),
    };
    AssertUnwindSafe(future)
        .catch_unwind()
        .await
        .map_err(|payload| panicked(vmid, payload.as_ref()))
}

fn panicked(vmid: u32, payload: &(dyn Any + Send)) -> JobError {
    let message = if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_owned()
    };
    let message = match message.char_indices().nth(PANIC_MESSAGE_MAX) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message,
    };
    tracing::error!(vmid, %message, "queued job panicked");
    JobError::Panicked { vmid, message }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize};
    use std::time::Duration;

    use tokio::time::{sleep, timeout};

    use super::*;

    fn queue(cap: usize) -> Queue {
        Queue::new(NonZeroUsize::new(cap).expect("non-zero cap"))
    }

    /// An in-flight counter and its high-water mark.
    type Gauge = (Arc<AtomicUsize>, Arc<AtomicUsize>);

    /// Raises the gauge, records the high-water mark; returns a guard lowering it.
    fn enter((current, max): &Gauge) -> impl Drop {
        let now = current.fetch_add(1, Ordering::SeqCst) + 1;
        max.fetch_max(now, Ordering::SeqCst);
        struct Leave(Arc<AtomicUsize>);
        impl Drop for Leave {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        Leave(Arc::clone(current))
    }

    #[tokio::test(start_paused = true)]
    async fn different_vmids_run_in_parallel() {
        // Job A (vmid 1) can only finish once job B (vmid 2) has run: serializing the two
        // vmids would deadlock, which the timeout turns into a failure.
        let queue = queue(4);
        let (release, released) = oneshot::channel::<()>();
        let a = queue
            .submit(1, move || async move { released.await.map(|()| "a") })
            .expect("open");
        let b = queue
            .submit(2, move || async move { release.send(()).map(|()| "b") })
            .expect("open");
        let (a, b) = timeout(Duration::from_secs(5), async { (a.await, b.await) })
            .await
            .expect("vmids 1 and 2 were serialized: deadlock");
        assert_eq!(a.expect("a ran").expect("released"), "a");
        assert_eq!(b.expect("b ran").expect("sent"), "b");
    }

    #[tokio::test(start_paused = true)]
    async fn deadlock_test_has_teeth_with_a_cap_of_one() {
        // The same two jobs under a global cap of 1 must time out: proof the test above would
        // catch serialization.
        let queue = queue(1);
        let (release, released) = oneshot::channel::<()>();
        let a = queue
            .submit(1, move || async move { released.await.is_ok() })
            .expect("open");
        let _b = queue
            .submit(2, move || async move { release.send(()).is_ok() })
            .expect("open");
        assert!(timeout(Duration::from_secs(5), a).await.is_err());
    }

    /// 1,000 jobs over 20 vmids: per-vmid in-flight never above 1, global cap respected and
    /// reached, submit order kept per vmid.
    #[tokio::test(start_paused = true)]
    async fn one_per_vmid_under_load_with_global_cap_and_order() {
        const VMIDS: u32 = 20;
        const JOBS: usize = 1_000;
        const CAP: usize = 4;
        let queue = queue(CAP);
        let per_vmid: Arc<BTreeMap<u32, Gauge>> = Arc::new(
            (0..VMIDS)
                .map(|vmid| (vmid, (Arc::default(), Arc::default())))
                .collect(),
        );
        let global: Gauge = Default::default();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::with_capacity(JOBS);
        for seq in 0..JOBS {
            let vmid = (seq as u32 * 7) % VMIDS; // interleaved submission
            let per_vmid = Arc::clone(&per_vmid);
            let global = global.clone();
            let order = Arc::clone(&order);
            let handle = queue
                .submit(vmid, move || async move {
                    let _lane = enter(&per_vmid[&vmid]);
                    let _global = enter(&global);
                    order.lock().expect("order").push((vmid, seq));
                    // uneven durations so lanes overtake each other
                    sleep(Duration::from_millis(1 + (seq % 5) as u64)).await;
                    seq
                })
                .expect("open");
            handles.push(handle);
        }
        for (seq, handle) in handles.into_iter().enumerate() {
            assert_eq!(handle.await.expect("job ran"), seq);
        }
        for (vmid, (_, max)) in per_vmid.iter() {
            assert_eq!(
                max.load(Ordering::SeqCst),
                1,
                "vmid {vmid} ran concurrently"
            );
        }
        let global_max = global.1.load(Ordering::SeqCst);
        assert_eq!(global_max, CAP, "global cap not respected or never reached");
        let order = order.lock().expect("order");
        assert_eq!(order.len(), JOBS);
        let mut last: BTreeMap<u32, usize> = BTreeMap::new();
        for &(vmid, seq) in order.iter() {
            if let Some(previous) = last.insert(vmid, seq) {
                assert!(
                    previous < seq,
                    "vmid {vmid}: job {seq} ran after {previous}"
                );
            }
        }
        assert_eq!(queue.queued(), 0);
    }

    /// The same invariant on a real multi-threaded runtime (no paused clock, no sleeps).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_per_vmid_on_a_multi_threaded_runtime() {
        let queue = queue(3);
        let lanes: Arc<Vec<Gauge>> = Arc::new((0..20).map(|_| Gauge::default()).collect());
        let global: Gauge = Default::default();
        let handles: Vec<_> = (0..1_000u32)
            .map(|seq| {
                let vmid = seq % 20;
                let lanes = Arc::clone(&lanes);
                let global = global.clone();
                queue
                    .submit(vmid, move || async move {
                        let _lane = enter(&lanes[vmid as usize]);
                        let _global = enter(&global);
                        for _ in 0..3 {
                            tokio::task::yield_now().await;
                        }
                    })
                    .expect("open")
            })
            .collect();
        for handle in handles {
            handle.await.expect("job ran");
        }
        for (vmid, (_, max)) in lanes.iter().enumerate() {
            assert_eq!(
                max.load(Ordering::SeqCst),
                1,
                "vmid {vmid} ran concurrently"
            );
        }
        assert!(global.1.load(Ordering::SeqCst) <= 3);
    }

    #[tokio::test(start_paused = true)]
    async fn close_drains_queued_jobs_and_refuses_new_ones() {
        let queue = queue(2);
        let done = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for seq in 0..50u32 {
            let done = Arc::clone(&done);
            handles.push(
                queue
                    .submit(100 + seq % 3, move || async move {
                        sleep(Duration::from_millis(10)).await;
                        done.fetch_add(1, Ordering::SeqCst);
                    })
                    .expect("open"),
            );
        }
        // Most jobs are still queued when close starts.
        assert!(queue.queued() > 40);
        queue.close().await;
        assert!(queue.is_closed());
        assert_eq!(
            done.load(Ordering::SeqCst),
            50,
            "close returned before the drain"
        );
        assert_eq!(queue.queued(), 0);
        for handle in handles {
            handle.await.expect("drained job reported");
        }

        // Submit after close hands the very job back, unrun.
        let ran = Arc::new(AtomicBool::new(false));
        let ran_in_job = Arc::clone(&ran);
        let err = queue
            .submit(100, move || async move {
                ran_in_job.store(true, Ordering::SeqCst);
                7
            })
            .expect_err("closed");
        assert_eq!(err.to_string(), "job queue is closed");
        assert_eq!(format!("{err:?}"), "Closed(..)");
        sleep(Duration::from_millis(100)).await;
        assert!(!ran.load(Ordering::SeqCst));
        let job = err.into_job();
        assert_eq!(job().await, 7);
        assert!(ran.load(Ordering::SeqCst));
        // closing twice is fine
        queue.close().await;
    }

    #[tokio::test]
    async fn close_on_an_idle_queue_returns() {
        let queue = queue(1);
        queue.close().await;
        assert!(queue.submit(100, || async {}).is_err());
    }

    #[derive(Debug, PartialEq, Eq)]
    struct Refused(&'static str);

    #[tokio::test]
    async fn job_errors_reach_the_submitter() {
        let queue = queue(2);
        let failed = queue
            .submit(100, || async { Err::<u32, _>(Refused("digest mismatch")) })
            .expect("open");
        let fine = queue
            .submit(100, || async { Ok::<u32, Refused>(3) })
            .expect("open");
        assert_eq!(failed.await, Ok(Err(Refused("digest mismatch"))));
        assert_eq!(fine.await, Ok(Ok(3)));
    }

    #[tokio::test]
    async fn a_panic_is_reported_and_isolated() {
        let queue = queue(2);
        let before = queue.submit(100, || async { 1 }).expect("open");
        let in_future = queue
            .submit(100, || async {
                if before_panic() {
                    panic!("boom in the future");
                }
                2
            })
            .expect("open");
        let in_closure = queue
            .submit(100, || -> std::future::Ready<u32> {
                panic!("boom {}", "in the closure")
            })
            .expect("open");
        let after = queue.submit(100, || async { 4 }).expect("open");
        let other = queue.submit(101, || async { 5 }).expect("open");
        assert_eq!(before.await, Ok(1));
        assert_eq!(
            in_future.await,
            Err(JobError::Panicked {
                vmid: 100,
                message: "boom in the future".to_owned()
            })
        );
        let err = in_closure.await.expect_err("panicked");
        assert_eq!(
            err.to_string(),
            "job for guest 100 panicked: boom in the closure"
        );
        assert_eq!(after.await, Ok(4), "the lane must survive a panic");
        assert_eq!(other.await, Ok(5));
    }

    fn before_panic() -> bool {
        true
    }

    #[tokio::test]
    async fn long_panic_messages_are_truncated() {
        let queue = queue(1);
        let handle = queue
            .submit(100, || async { std::panic::panic_any("x".repeat(10_000)) })
            .expect("open");
        match handle.await {
            Err(JobError::Panicked { message, .. }) => {
                assert_eq!(message.chars().count(), PANIC_MESSAGE_MAX + 1);
            }
            other => panic!("expected a panic report, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_starts_before_dispatch_and_pending_jobs_cancel() {
        let queue = queue(4);
        let (release, released) = oneshot::channel::<()>();
        let first = queue
            .submit(100, move || async move { released.await.is_ok() })
            .expect("open");
        let called = Arc::new(AtomicBool::new(false));
        let called_in_job = Arc::clone(&called);
        let second = queue
            .submit(100, move || {
                called_in_job.store(true, Ordering::SeqCst);
                async { "second" }
            })
            .expect("open");
        let cancelled_ran = Arc::new(AtomicBool::new(false));
        let cancelled_ran_in_job = Arc::clone(&cancelled_ran);
        let third = queue
            .submit(100, move || async move {
                cancelled_ran_in_job.store(true, Ordering::SeqCst);
            })
            .expect("open");
        sleep(Duration::from_secs(1)).await;
        assert!(
            !called.load(Ordering::SeqCst),
            "closure called before dispatch"
        );
        assert_eq!(queue.queued(), 2);
        assert!(format!("{third:?}").contains("pending"));
        assert!(third.cancel());
        assert!(!third.cancel(), "cancel twice");
        assert!(!first.cancel(), "a running job cannot be cancelled");
        release.send(()).expect("first waiting");
        assert_eq!(first.await, Ok(true));
        assert_eq!(second.await, Ok("second"));
        assert!(called.load(Ordering::SeqCst));
        assert_eq!(third.await, Err(JobError::Cancelled { vmid: 100 }));
        assert!(!cancelled_ran.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_handle_detaches_but_the_job_runs() {
        let queue = queue(1);
        let ran = Arc::new(AtomicBool::new(false));
        let ran_in_job = Arc::clone(&ran);
        drop(
            queue
                .submit(100, move || async move {
                    sleep(Duration::from_millis(5)).await;
                    ran_in_job.store(true, Ordering::SeqCst);
                })
                .expect("open"),
        );
        queue.close().await;
        assert!(ran.load(Ordering::SeqCst));
    }

    #[test]
    fn runtime_shutdown_reports_lost_instead_of_hanging() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let (queue, running, queued) = runtime.block_on(async {
            let queue = queue(1);
            let running = queue.submit(100, std::future::pending::<()>).expect("open");
            let queued = queue.submit(100, || async {}).expect("open");
            tokio::task::yield_now().await;
            (queue, running, queued)
        });
        drop(runtime);
        // now_or_never: a regression fails the test instead of hanging it
        assert_eq!(
            running.now_or_never(),
            Some(Err(JobError::Lost { vmid: 100 }))
        );
        assert_eq!(
            queued.now_or_never(),
            Some(Err(JobError::Lost { vmid: 100 }))
        );
        assert_eq!(queue.queued(), 0, "the orphaned lane was removed");

        // A submit after the runtime is gone: its worker is dropped unpolled, still no hang.
        let late = queue.submit(101, || async {}).expect("not closed");
        assert_eq!(late.now_or_never(), Some(Err(JobError::Lost { vmid: 101 })));
        assert_eq!(queue.queued(), 0);
    }

    #[test]
    fn a_worker_dropped_before_its_first_poll_still_reports_lost() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        // entered, never driven: the spawned worker is never polled
        let queue = {
            let _entered = runtime.enter();
            queue(1)
        };
        let handle = queue.submit(100, || async {}).expect("open");
        drop(runtime);
        // the queue is still alive, so only the worker's guard can have released the lane
        assert_eq!(queue.queued(), 0, "the orphaned lane was removed");
        assert_eq!(
            handle.now_or_never(),
            Some(Err(JobError::Lost { vmid: 100 }))
        );
    }

    #[tokio::test]
    async fn handles_and_queue_have_debug_and_accessors() {
        let queue = queue(3);
        assert_eq!(queue.max_concurrency(), 3);
        let handle = queue.submit(123, || async {}).expect("open");
        assert_eq!(handle.vmid(), 123);
        assert!(format!("{queue:?}").starts_with("Queue { max_concurrency: 3"));
        handle.await.expect("ran");
        let shared = queue.clone();
        assert!(format!("{shared:?}").contains("closed: false"));
        queue.close().await;
        assert!(
            format!("{shared:?}").contains("closed: true"),
            "clones share one queue"
        );
    }
}
