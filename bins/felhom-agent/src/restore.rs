//! The daemon's restore tests (`restore_tests` in the config; see
//! `felhom_reconcile::restore_test`): the results file beside the op journal, startup recovery
//! of a scratch guest a crash left (before the loops start, so the first report already says
//! `interrupted`), and the round loop.
//!
//! Needs the op journal: without it nothing proves which scratch guest the agent created, so a
//! journal-less daemon runs no restore test. Startup recovery runs even with the tests
//! disabled: a scratch guest the journal proves is the agent's is cleaned up either way.
//! A round starts when one is due (`every_hours` after the last recorded one, at once when
//! none is) and never before the first poll of the hub (which may answer that it blocks this
//! host); no test starts while the hub blocks the host. A stop abandons the round: its
//! scratch guest is destroyed at the next start and reported `interrupted`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use felhom_config::RestoreTestsConfig;
use felhom_hub::collector::RestoreTail;
use felhom_metrics::{Metrics, RestoreOutcome};
use felhom_proxmox::{PveClient, WaitOptions};
use felhom_reconcile::restore_test::{
    store, Blocked, Outcome, RestoreSettings, RestoreTester, ResultStore, ScratchGate, TestResult,
    DEFAULT_BOOT_POLL,
};
use felhom_reconcile::{Queue, SharedJournal, StepProbe, Verdict};
use tokio_util::sync::CancellationToken;

use crate::gate::DaemonGate;
use crate::metrics::MeteredApi;

/// The daemon's PVE client: metered, so restore-test requests are counted too.
type Api = MeteredApi<PveClient>;

/// How often a blocked host looks again whether it may test (an in-memory check).
const BLOCKED_RECHECK: Duration = Duration::from_secs(5);
/// How often the loop looks whether the first poll happened.
const FIRST_POLL_RECHECK: Duration = Duration::from_millis(200);
/// Pause before retrying a round that could not read the host.
const RETRY_AFTER: Duration = Duration::from_secs(60);
/// Longest wait on one restore-test task (a large restore takes minutes).
const TASK_WAIT: Duration = Duration::from_secs(30 * 60);

impl ScratchGate for DaemonGate {
    fn decide_scratch_destroy(&self, vmid: u32, now: u64) -> Verdict {
        match self {
            DaemonGate::Signed(g) => g.decide_scratch_destroy(vmid, now),
            DaemonGate::Unsigned(g) => g.decide_scratch_destroy(vmid, now),
        }
    }
}

/// What the daemon wires in.
pub struct Inputs<'a> {
    pub config: &'a RestoreTestsConfig,
    pub api: Arc<Api>,
    pub gate: DaemonGate,
    pub queue: Queue,
    pub journal: Option<SharedJournal>,
    pub journal_path: &'a Path,
    pub blocked: Blocked,
    /// Whether the first poll of the hub was attempted: no round starts before the hub could
    /// say it blocks this host.
    pub polled: Blocked,
    pub stop: CancellationToken,
    pub probe: Option<StepProbe>,
    /// Counts results by outcome.
    pub metrics: Metrics,
}

/// Opens the results, recovers leftover scratch guests, and starts the round loop when
/// enabled (it ends when `stop` fires); returns the report's `restore_tests` reader.
pub async fn start(i: Inputs<'_>) -> RestoreTail {
    let Some(journal) = i.journal else {
        if i.config.enabled {
            tracing::warn!(
                "restore tests need the op journal (it proves which scratch guests the agent \
                 created): none run while the agent is journal-less"
            );
        }
        return RestoreTail::default();
    };
    let path = i
        .journal_path
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(store::FILE_NAME);
    let results = match ResultStore::open(&path) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "restore-test results cannot be opened: kept in memory only");
            Arc::new(ResultStore::in_memory())
        }
    };
    let reader = Arc::clone(&results);
    let tail = RestoreTail::new(move || reader.tail());
    let settings = RestoreSettings {
        // Recovery does not create anything; a disabled config may name no storage.
        storage: i.config.storage.clone().unwrap_or_default(),
        range: i.config.vmid_range,
        boot_timeout: i.config.boot_timeout,
        max_concurrent: i.config.max_concurrent,
        every: i.config.every,
        boot_poll: DEFAULT_BOOT_POLL,
        wait: WaitOptions {
            timeout: TASK_WAIT,
            cancel: i.stop.clone(),
            ..WaitOptions::default()
        },
    };
    let tester = RestoreTester::new(i.api, Arc::new(i.gate), i.queue, journal, results, settings)
        .with_probe(i.probe);
    let recovered = tester.recover().await;
    count(&i.metrics, &recovered);
    if !recovered.is_empty() {
        tracing::warn!(
            tests = recovered.len(),
            "restore tests interrupted by the last stop: scratch guests handled at startup"
        );
    }
    if i.config.enabled {
        tracing::info!(
            range = %i.config.vmid_range,
            every_hours = i.config.every.as_secs() / 3600,
            "restore tests enabled"
        );
        let (blocked, polled, stop, metrics) = (i.blocked, i.polled, i.stop, i.metrics);
        tokio::spawn(async move { run(tester, blocked, polled, stop, metrics).await });
    }
    tail
}

/// Each result into `felhom_restore_tests_total{outcome}`.
fn count(metrics: &Metrics, results: &[TestResult]) {
    for r in results {
        let outcome = match (r.outcome, r.reason) {
            (Outcome::Ok, _) => RestoreOutcome::Ok,
            (Outcome::RestoreFailed, _) => RestoreOutcome::RestoreFailed,
            (Outcome::BootFailed, _) => RestoreOutcome::BootFailed,
            (Outcome::CleanupFailed, _) => RestoreOutcome::CleanupFailed,
            (Outcome::Interrupted, _) => RestoreOutcome::Interrupted,
            (Outcome::Skipped, Some("no_free_vmid")) => RestoreOutcome::SkippedNoFreeVmid,
            (Outcome::Skipped, _) => RestoreOutcome::SkippedLowSpace,
        };
        metrics.restore_test(outcome);
    }
}

async fn run(
    tester: RestoreTester<Api, DaemonGate>,
    blocked: Blocked,
    polled: Blocked,
    stop: CancellationToken,
    metrics: Metrics,
) {
    while !polled() {
        tokio::select! {
            () = tokio::time::sleep(FIRST_POLL_RECHECK) => {}
            () = stop.cancelled() => return,
        }
    }
    loop {
        let wait = if blocked() {
            BLOCKED_RECHECK
        } else {
            tester.until_due()
        };
        if !wait.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => return,
            }
            continue;
        }
        tokio::select! {
            round = tester.run_round(Arc::clone(&blocked)) => match round {
                Ok(summary) => {
                    count(&metrics, &summary.results);
                    let ok = summary.results.iter().filter(|r| r.outcome.as_str() == "ok").count();
                    tracing::info!(
                        tests = summary.results.len(),
                        ok,
                        not_started = summary.not_started,
                        "restore tests: round done"
                    );
                    if summary.results.is_empty() && summary.not_started == 0 {
                        // Nothing to test: wait a whole interval rather than spin.
                        tokio::select! {
                            () = tokio::time::sleep(tester.settings().every) => {}
                            () = stop.cancelled() => return,
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "restore tests: round not run; retried later");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_AFTER) => {}
                        () = stop.cancelled() => return,
                    }
                }
            },
            () = stop.cancelled() => return,
        }
    }
}
