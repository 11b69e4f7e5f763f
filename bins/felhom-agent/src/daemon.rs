//! The daemon: startup in a fixed order, the two loops sharing one queue, and the shutdown.
//!
//! Startup: config (exit 2 listing every problem) → logging → stop signals registered (and
//! SIGHUP/SIGUSR1/SIGQUIT, logged, never fatal) → clients (Proxmox, hub) → journal (held by
//! another live agent: exit 2; cannot open: journal-less mode, loudly, in `STATUS=` and every
//! report) → the hub's persisted block → the reversibility gate (signers, nonce store, audit
//! log: see [`crate::gate`])
//! → RECOVERY of in-flight ops, before anything can mutate → restore tests' recovery of a
//! scratch guest a crash left (and their round loop, when enabled: [`crate::restore`]) → the
//! heartbeat loop (first report
//! at once, then on the hub's cadence) and the reconcile loop (one pass after each poll, then
//! nonce pruning) → `READY=1` once the first poll was attempted.
//!
//! Shutdown on SIGTERM/SIGINT: `STOPPING=1`; the loops stop starting work; the queue stops
//! accepting and drains within [`DRAIN_GRACE`] (below systemd's `TimeoutStopSec=30s`); past
//! the grace the engine stops *waiting* on PVE tasks (they keep running server-side; startup
//! recovery closes them from the journal). Guests are never stopped. Exit 0.

use std::ffi::OsStr;
use std::future::Future;
use std::num::NonZeroUsize;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use felhom_authz::Signer;
use felhom_config::pve;
use felhom_config::{Config, ReconcileSource};
use felhom_hub::cloudflared::SystemctlProber;
use felhom_hub::heartbeat::{self, Beat, BeatOutcome, HeartbeatSettings};
use felhom_hub::hub::HubClient;
use felhom_hub_proto::JournalStatus;
use felhom_metrics::Metrics;
use felhom_proxmox::TlsTrust;
use felhom_proxmox::{ProxmoxApi, WaitOptions};
use felhom_reconcile::{
    recover_with, Engine, EngineOptions, HubProvider, Queue, RecoveryOptions, SharedJournal,
};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::block::HubBlock;
use crate::crash::{CrashAt, TEST_CRASH_AT_ENV};
use crate::durable::JournalOpen;
use crate::intent::{GatedSink, HubIntent, SignedOpSink};
use crate::metrics::{MeteredApi, MeteredFs, MeteredGate};
use crate::notify::Notifier;
use crate::reconcile::{Desired, Reconciler};
use crate::signals::{self, OtherSignals, StopSignals};
use crate::status::DaemonStatus;
use crate::{crash, durable, logging, metrics, setup};

/// How long a stop waits for queued and running jobs (systemd kills at 30 s).
pub const DRAIN_GRACE: Duration = Duration::from_secs(20);
/// After the grace: how long jobs get to notice the cancel and record it.
const CANCEL_GRACE: Duration = Duration::from_secs(3);
/// Longest wait on a task still running at startup: bounded so `READY=1` comes well within
/// systemd's start timeout; a task still running after it is left in flight (or failed, for a
/// convergent op) and the next pass re-plans from actual state.
pub const RECOVERY_WAIT: Duration = Duration::from_secs(45);
/// Longest a reconcile pass waits on its jobs: a guest whose PVE task runs longer is left to
/// finish in the background and skipped by later passes, so it never stalls the others.
pub const PASS_WAIT: Duration = Duration::from_secs(30);
/// Jobs run at once over all guests.
const QUEUE_CONCURRENCY: usize = 4;

/// Exit status for a usage or config error.
const EXIT_CONFIG: u8 = 2;

/// TEST ONLY: the lowest poll interval, in milliseconds, the daemon accepts from the hub
/// (instead of 60 s), so end-to-end tests and `cargo xtask demo` see interval adoption and a
/// second reconcile pass without waiting real minutes. Set only by test harnesses; the daemon
/// warns at every start while it is set. The config's environment overlay exempts it and
/// [`TEST_CRASH_AT_ENV`] (the crash seam, `crash`), the only test-only `FELHOM_AGENT_*`
/// variables.
pub const TEST_POLL_FLOOR_ENV: &str = felhom_config::TEST_POLL_FLOOR_ENV;
/// The range of [`TEST_POLL_FLOOR_ENV`], in milliseconds.
const POLL_FLOOR_MS: std::ops::RangeInclusive<u64> = 1..=3_600_000;

/// Where the Debian package puts the example config (`configs/agent.example.json` in the
/// source).
pub const EXAMPLE_CONFIG: &str = "/etc/felhom-agent/agent.json.example";

/// [`TEST_POLL_FLOOR_ENV`]'s value: `None` when unset, the floor, or the one-line reason it is
/// unusable.
pub fn poll_floor(raw: Option<&OsStr>) -> Result<Option<Duration>, String> {
    let Some(raw) = raw else { return Ok(None) };
    let ms = raw
        .to_str()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|ms| POLL_FLOOR_MS.contains(ms));
    match ms {
        Some(ms) => Ok(Some(Duration::from_millis(ms))),
        None => Err(format!(
            "{TEST_POLL_FLOOR_ENV}: expected whole milliseconds from {} to {}, got {:?} (a \
             test-only setting: unset it on a real host)",
            POLL_FLOOR_MS.start(),
            POLL_FLOOR_MS.end(),
            raw.to_string_lossy()
        )),
    }
}

/// One line for the journal when the config file does not exist (a fresh package install run
/// by hand, or a wrong `--config`): what to do about it. `None` when the file is there (then
/// its problems are reported as usual).
pub fn no_config_line(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(format!(
            "felhom-agent: no config file at {}: copy {EXAMPLE_CONFIG} (configs/agent.example.json \
             in the source) there, replace its placeholders and check it with `felhom-agent \
             check-config`",
            path.display()
        )),
        _ => None,
    }
}

/// `felhom-agent run`: loads the config and runs the daemon until SIGTERM/SIGINT.
pub fn main(config_path: &Path) -> ExitCode {
    let poll_floor = match poll_floor(std::env::var_os(TEST_POLL_FLOOR_ENV).as_deref()) {
        Ok(floor) => floor,
        Err(reason) => {
            eprintln!("felhom-agent: {reason}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let crash_at = match crash::parse(std::env::var_os(TEST_CRASH_AT_ENV).as_deref()) {
        Ok(at) => at,
        Err(reason) => {
            eprintln!("felhom-agent: {reason}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let (config, signers) = match setup::load(config_path) {
        Ok(loaded) => loaded,
        Err(problems) => {
            match no_config_line(config_path) {
                Some(line) => eprintln!("{line}"),
                None => eprintln!("felhom-agent: {problems}"),
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    logging::init(&config.log);
    // One thread is plenty for one host's API and the hub; blocking work (journal fsyncs,
    // nonce compaction) goes to the blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(config, signers, poll_floor, crash_at));
    // A blocking read that never returns (a hung mount) must not hold the exit: the runtime
    // would otherwise wait for its thread forever.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// What each heartbeat beat tells the rest of the daemon: status for systemd, a wake-up for the
/// reconcile loop, and `READY=1` after the first beat.
#[derive(Debug)]
pub struct PollObserver {
    status: Arc<DaemonStatus>,
    block: HubBlock,
    wake: Arc<Notify>,
    notifier: Notifier,
    ready_sent: bool,
    /// Told every well-formed envelope (desired generation, signed ops).
    intent: Option<Arc<HubIntent>>,
    /// Counts reports.
    metrics: Metrics,
}

impl PollObserver {
    /// One beat ended (reported, or failed and logged by the loop).
    pub fn on_beat(&mut self, beat: &Beat<'_>) {
        metrics::observe_beat(
            &self.metrics,
            beat,
            OffsetDateTime::now_utc().unix_timestamp(),
        );
        // Only a well-formed envelope gets here; only its explicit `blocked` changes the state.
        if let BeatOutcome::Reported { envelope, .. } = &beat.outcome {
            let now = u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or_default();
            if self.block.observe(envelope.blocked, now) {
                self.status.set_blocked(self.block.blocked());
            }
            if let Some(intent) = &self.intent {
                intent.observe(envelope);
            }
        }
        // After the block: whoever waits for the first poll (restore tests) then sees it.
        self.status.beat(beat.status);
        // Reconcile after each poll whatever the report did (a file's desired state, or the
        // last held hub state during an outage). The reconciler skips the pass, the desired-
        // state fetch and signed ops while the hub blocks this host.
        self.wake.notify_one();
        let line = self.status.line();
        if !self.ready_sent {
            self.ready_sent = true;
            tracing::info!(status = %line, "felhom-agent ready");
            self.notifier.ready(&line);
        } else {
            self.notifier.status(&line);
        }
    }
}

async fn run(
    config: Config,
    signers: Vec<Signer>,
    poll_floor: Option<Duration>,
    crash_at: Option<CrashAt>,
) -> ExitCode {
    let mut signals = match StopSignals::register() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot register the SIGTERM/SIGINT handlers");
            return ExitCode::FAILURE;
        }
    };
    let mut other_signals = match OtherSignals::register() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot register the SIGHUP/SIGUSR1/SIGQUIT handlers");
            return ExitCode::FAILURE;
        }
    };
    let notifier = Notifier::from_env();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        api = %config.proxmox.api_url,
        node = %config.proxmox.node,
        hub = %config.hub.as_ref().map(|h| h.url.to_string()).unwrap_or_default(),
        "felhom-agent starting"
    );
    if config.proxmox.tls == TlsTrust::InsecureSkipVerify {
        tracing::warn!(
            "proxmox.tls.insecure_skip_verify is true: the Proxmox API's certificate is NOT \
             verified, anyone on the path can read the API token. Pin the certificate \
             (proxmox.tls.fingerprint_sha256) or trust its CA (proxmox.tls.ca_file)"
        );
    }
    if let Some(floor) = poll_floor {
        tracing::warn!(
            floor_ms = floor.as_millis() as u64,
            "{TEST_POLL_FLOOR_ENV} is set: test-only poll interval floor; never set it on a \
             real host"
        );
    }
    if let Some(at) = &crash_at {
        tracing::warn!(
            crash_at = %at.spec(),
            "{TEST_CRASH_AT_ENV} is set: test-only crash seam, the daemon SIGKILLs itself at \
             that step of an op; never set it on a real host"
        );
    }
    let hub_config = match config.hub("the daemon") {
        Ok(hub) => hub.clone(),
        // setup::load refuses a config without it; this is the type system's view only.
        Err(e) => {
            eprintln!("felhom-agent: config: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // One registry for the whole daemon, fed through the seams (see `metrics`); served only
    // when `metrics.listen` is set.
    let metrics = Metrics::new(env!("CARGO_PKG_VERSION"));
    let api = match pve::client(&config.proxmox) {
        Ok(client) => Arc::new(MeteredApi::new(client, metrics.clone())),
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the Proxmox API client");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let hub = match HubClient::new(hub_config.client_config()) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the hub client");
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    let (mut journal, journal_less) = match durable::open_journal(
        &config.journal.path,
        Arc::new(MeteredFs::new(felhom_journal::RealFs, metrics.clone())),
    ) {
        JournalOpen::Open(j) => (Some(j), None),
        JournalOpen::Unavailable { reason } => (None, Some(reason)),
        JournalOpen::Held { holder } => {
            let who = match holder {
                Some(pid) => format!("process {pid}"),
                None => "another process".to_owned(),
            };
            let line = format!(
                "the op journal {} is locked by {who}: another felhom-agent is already running \
                 on this config (or a `felhom-agent journal repair`). Refusing to start a second \
                 daemon, which would send every action twice; stop the other one first",
                config.journal.path.display()
            );
            tracing::error!(path = %config.journal.path.display(), holder, "{line}");
            eprintln!("felhom-agent: {line}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let gate = crate::gate::open(
        &config.authz.nonce_store,
        &config.journal.path,
        signers,
        &hub_config.host_id,
        journal.clone(),
        &metrics,
    );
    let status = Arc::new(DaemonStatus::new(journal_less));
    let block = HubBlock::open(&HubBlock::path_beside(&config.journal.path));
    status.set_blocked(block.blocked());
    if journal.is_none() {
        notifier.status(&status.line());
    }

    // Recovery before anything can mutate; a stop signal during it is a clean exit.
    if let Some(j) = journal.clone() {
        notifier.status("recovering in-flight operations");
        tokio::select! {
            recovered = recover(&api, &j, &*gate.audit, &config.authz.nonce_store) => if let Err(reason) = recovered {
                status.set_journal_less(reason);
                journal = None;
            },
            sig = signals.recv() => {
                tracing::info!(signal = sig, "stopped during startup recovery");
                notifier.stopping("stopped during startup recovery");
                return ExitCode::SUCCESS;
            }
        }
    }

    // After recovery (in-flight ops are kept either way): drop finished ops past retention.
    if let Some(j) = journal.clone() {
        let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
        if let Err(e) =
            tokio::task::spawn_blocking(move || durable::compact_journal(&j, now, true)).await
        {
            tracing::error!(error = %e, "op journal: startup compaction did not finish");
        }
    }

    let queue = Queue::new(NonZeroUsize::new(QUEUE_CONCURRENCY).unwrap_or(NonZeroUsize::MIN));
    let engine_cancel = CancellationToken::new();
    let stop = CancellationToken::new();
    // Restore tests: leftover scratch guests recovered before the loops (see `restore`).
    let restore_tail = crate::restore::start(crate::restore::Inputs {
        config: &config.restore_tests,
        api: Arc::clone(&api),
        gate: gate.gate.clone(),
        queue: queue.clone(),
        journal: journal.clone(),
        journal_path: &config.journal.path,
        blocked: {
            let status = Arc::clone(&status);
            Arc::new(move || status.blocked())
        },
        polled: {
            let status = Arc::clone(&status);
            Arc::new(move || status.polled())
        },
        stop: stop.clone(),
        probe: crash_at.clone().and_then(CrashAt::probe),
        metrics: metrics.clone(),
    })
    .await;
    let engine = Engine::new(Arc::clone(&api), queue.clone(), journal.clone())
        .with_options(EngineOptions {
            cancel: engine_cancel.clone(),
            pass_wait: Some(PASS_WAIT),
            step_probe: crash_at.clone().and_then(CrashAt::probe),
            ..EngineOptions::default()
        })
        .with_gate(MeteredGate::new(gate.gate.clone(), metrics.clone()));
    let metrics_task = metrics::spawn_listener(&config.metrics, &metrics, &queue).await;
    // Hub-served signed ops run as signed jobs: the gate, the daemon's queue and journal, the
    // real PVE executor; never journal-less, never while the hub blocks this host.
    let jobs = crate::intent::daemon_jobs(
        &gate.gate,
        Arc::clone(&api),
        queue.clone(),
        journal.clone(),
        &config.authz.nonce_store,
        crash_at.and_then(CrashAt::fault),
    );
    let sink = Arc::new(GatedSink::new(
        jobs,
        Arc::clone(&status),
        Arc::clone(&gate.audit),
    ));
    let (desired, intent) = hub_intent(&config, &hub, sink);
    let guest_cache = felhom_hub::collector::GuestCache::default();
    let reconciler = Arc::new(Reconciler {
        engine,
        desired,
        nonces: gate.nonces.clone(),
        status: Arc::clone(&status),
        journal: journal.clone(),
        intent: Some(Arc::clone(&intent)),
        guest_cache: guest_cache.clone(),
        metrics: metrics.clone(),
    });

    let wake = Arc::new(Notify::new());
    let mut observer = PollObserver {
        status: Arc::clone(&status),
        block,
        wake: Arc::clone(&wake),
        notifier: notifier.clone(),
        ready_sent: false,
        intent: Some(intent),
        metrics: metrics.clone(),
    };
    let mut reconcile_task: JoinHandle<()> = tokio::spawn({
        let reconciler = Arc::clone(&reconciler);
        let stop = stop.clone();
        async move { reconciler.run(wake, stop).await }
    });
    let mut settings = HeartbeatSettings::new(hub_config.host_id.clone(), hub_config.poll_interval);
    settings.guest_cache = guest_cache;
    if let Some(floor) = poll_floor {
        settings.min_interval = floor;
    }
    // Every report says whether the journal works: the hub alerts on `journal_less`.
    settings.collect.journal = match status.journal_less() {
        None => JournalStatus::ok(),
        Some(reason) => JournalStatus::journal_less(reason),
    };
    settings.collect.audit_tail = gate.tail.clone();
    settings.collect.restore_tests = restore_tail;
    let mut heartbeat_task: JoinHandle<()> = tokio::spawn({
        let api = Arc::clone(&api);
        let stop = stop.clone();
        async move {
            let prober = SystemctlProber::new();
            let on_beat = move |beat: &Beat<'_>| observer.on_beat(beat);
            heartbeat::run(api.as_ref(), &prober, &hub, &settings, stop, on_beat).await;
        }
    });

    // Run until a stop signal, pinging the watchdog while the loops are healthy.
    let mut watchdog = notifier
        .watchdog_period()
        .map(|period| tokio::time::interval_at(tokio::time::Instant::now() + period, period));
    let mut failed = false;
    let reason = loop {
        tokio::select! {
            sig = signals.recv() => break sig.to_owned(),
            sig = other_signals.recv() => signals::log_other(sig),
            () = tick(&mut watchdog) => {
                if status.healthy(tokio::time::Instant::now()) {
                    notifier.watchdog();
                } else {
                    tracing::error!("a reconcile pass is stuck: withholding the watchdog ping");
                }
            }
            r = &mut heartbeat_task => {
                failed = true;
                break format!("the heartbeat loop ended unexpectedly ({})", join_text(r));
            }
            r = &mut reconcile_task => {
                failed = true;
                break format!("the reconcile loop ended unexpectedly ({})", join_text(r));
            }
        }
    };

    // Both loops return once `shutdown` cancels them: the heartbeat at once (an in-flight
    // report is dropped), the reconcile loop after its pass, which the queue drains.
    let heartbeat = async {
        if !heartbeat_task.is_finished() {
            let _ = heartbeat_task.await;
        }
    };
    let reconcile = async {
        if !reconcile_task.is_finished() {
            let _ = reconcile_task.await;
        }
    };
    shutdown(
        &reason,
        &notifier,
        &stop,
        &queue,
        &engine_cancel,
        &mut signals,
        async {
            tokio::join!(heartbeat, reconcile);
        },
    )
    .await;
    if let Some(task) = metrics_task {
        task.abort();
    }
    if failed {
        tracing::error!(%reason, "felhom-agent stopped after a failure");
        ExitCode::FAILURE
    } else {
        tracing::info!("felhom-agent stopped");
        ExitCode::SUCCESS
    }
}

/// The desired-state source from `reconcile.source` and the hub-intent state both loops share;
/// signed ops go to `sink`.
fn hub_intent(
    config: &Config,
    hub: &HubClient,
    sink: Arc<dyn SignedOpSink>,
) -> (Desired, Arc<HubIntent>) {
    let provider = match config.reconcile.source {
        ReconcileSource::Hub => {
            let path = HubProvider::path_beside(&config.journal.path);
            let provider = HubProvider::open(&path).unwrap_or_else(|e| {
                tracing::error!(error = %e, "hub desired state: kept in memory only (not \
                    persisted; a restart during a hub outage would reconcile nothing)");
                HubProvider::in_memory(&path)
            });
            tracing::info!(
                generation = provider.generation(),
                "desired state from the hub"
            );
            Some(Arc::new(provider))
        }
        ReconcileSource::File => None,
    };
    let desired = match &provider {
        Some(p) => Desired::Hub(Arc::clone(p)),
        None => Desired::from_config(config.reconcile.desired_state_file.as_deref()),
    };
    match &desired {
        Desired::Hub(_) => {}
        Desired::File(p) => tracing::info!(file = %p.path().display(), "desired state from file"),
        Desired::Empty(_) => tracing::info!("no desired state configured: nothing is reconciled"),
    }
    let intent = HubIntent::new(provider, hub.clone(), sink);
    (desired, Arc::new(intent))
}

/// The next watchdog tick; never, without a watchdog.
async fn tick(watchdog: &mut Option<tokio::time::Interval>) {
    match watchdog {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn join_text(r: Result<(), tokio::task::JoinError>) -> String {
    match r {
        Ok(()) => "returned".to_owned(),
        Err(e) => e.to_string(),
    }
}

/// Startup recovery, bounded; the reason when the journal became unusable (then journal-less).
async fn recover<A: ProxmoxApi>(
    api: &Arc<A>,
    journal: &SharedJournal,
    audit: &dyn felhom_reconcile::AuditSink,
    nonce_store: &std::path::Path,
) -> Result<(), String> {
    let now = u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or_default();
    let signers_file = felhom_reconcile::SignerStore::path_next_to(nonce_store);
    // Whether an interrupted rotation was persisted; unreadable, it reads as not persisted
    // (the rotation is then resumed, and fails on the same file if it is damaged).
    let signer_set_nonce = match felhom_reconcile::SignerStore::read_set(&signers_file) {
        Ok(set) => set.map(|s| s.nonce),
        Err(e) => {
            tracing::warn!(error = %e, "startup recovery cannot read the signers file");
            None
        }
    };
    let options = RecoveryOptions {
        wait: WaitOptions {
            timeout: RECOVERY_WAIT,
            ..WaitOptions::default()
        },
        signer_set_nonce,
        ..RecoveryOptions::default()
    };
    match recover_with(api.as_ref(), journal, now, &options).await {
        Ok(summary) => {
            if !summary.ops.is_empty() {
                tracing::info!(
                    succeeded = summary.succeeded(),
                    failed = summary.failed(),
                    left_in_flight = summary.left_in_flight(),
                    outcome_unknown = summary.outcome_unknown(),
                    not_sent = summary.not_sent(),
                    "startup recovery closed the ops a stop or crash interrupted"
                );
            }
            felhom_reconcile::recovery::audit_recovery(&summary, audit, now);
            Ok(())
        }
        Err(e) => {
            tracing::error!(
                error = %e,
                "{}: startup recovery cannot write to the op journal; continuing without it",
                durable::JOURNAL_LESS
            );
            Err(format!(
                "startup recovery cannot write to the op journal: {e}"
            ))
        }
    }
}

/// Stops the loops and drains the queue within the grace (a second signal cuts it short);
/// `loops` ends when both loops have returned.
async fn shutdown(
    reason: &str,
    notifier: &Notifier,
    stop: &CancellationToken,
    queue: &Queue,
    engine_cancel: &CancellationToken,
    signals: &mut StopSignals,
    loops: impl Future<Output = ()>,
) {
    tracing::info!(
        %reason,
        grace_secs = DRAIN_GRACE.as_secs(),
        queued = queue.queued(),
        "stopping: no new polls or passes; draining the queue (guests are not touched)"
    );
    notifier.stopping(&format!("stopping ({reason}): draining the queue"));
    stop.cancel();
    tokio::pin!(loops);
    let drain = async {
        queue.close().await;
        (&mut loops).await;
    };
    let drained = tokio::select! {
        r = tokio::time::timeout(DRAIN_GRACE, drain) => r.is_ok(),
        sig = signals.recv() => {
            tracing::warn!(signal = sig, "second stop signal: not waiting for the queue");
            false
        }
    };
    if drained {
        tracing::info!("queue drained");
        return;
    }
    tracing::warn!(
        "drain grace over: no longer waiting on Proxmox tasks (they keep running; the next \
         start recovers them from the journal)"
    );
    engine_cancel.cancel();
    let _ = tokio::time::timeout(CANCEL_GRACE, loops).await;
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    #[test]
    fn the_test_poll_floor_is_parsed_and_checked() {
        assert_eq!(poll_floor(None), Ok(None));
        assert_eq!(
            poll_floor(Some(OsStr::new("200"))),
            Ok(Some(Duration::from_millis(200)))
        );
        assert_eq!(
            poll_floor(Some(OsStr::new(" 3600000 "))),
            Ok(Some(Duration::from_secs(3600)))
        );
        for bad in ["0", "3600001", "soon", "", "-5", "1.5"] {
            let err = poll_floor(Some(OsStr::new(bad))).unwrap_err();
            assert!(
                err.starts_with("FELHOM_AGENT_TEST_POLL_FLOOR_MS: expected whole milliseconds"),
                "{err}"
            );
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        use std::os::unix::ffi::OsStringExt;
        let not_utf8 = OsString::from_vec(vec![0xff, b'1']);
        assert!(poll_floor(Some(&not_utf8)).is_err());
    }

    #[test]
    fn a_missing_config_names_the_example() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("agent.json");
        let line = no_config_line(&missing).unwrap();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains(&missing.display().to_string()), "{line}");
        assert!(
            line.contains("/etc/felhom-agent/agent.json.example"),
            "{line}"
        );
        assert!(line.contains("check-config"), "{line}");
        std::fs::write(&missing, b"{}").unwrap();
        assert_eq!(no_config_line(&missing), None);
    }
}
