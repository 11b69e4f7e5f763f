//! `cargo xtask bench`: measures the SPEC §11 budgets on this machine, each printed next to an
//! anchor measured in the same run (raw write + fsync, raw ed25519 verify, plain tokio spawns, a
//! plain read of the same file, ...), so a reader can tell a slow machine from slow code.
//!
//! Release builds only (`cargo xtask bench` re-runs itself in release): a debug build's figures say
//! nothing about the product, so it refuses to run. `--quick` shrinks the sizes for a smoke run
//! (size-dependent budgets are then scaled linearly and marked so); `--only NAME[,NAME]` picks
//! benches by name or name fragment. A figure that could not be measured is printed as such,
//! with the reason; nothing is ever estimated in its place. Exit status 1 when a budget is
//! missed.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, ensure, Context, Result};
use felhom_authz::{MemoryNonceStore, NonceRecord, Role, Signer, Verifier};
use felhom_hub::cloudflared::FixedProber;
use felhom_hub::collector::{self, CollectOptions, DEFAULT_CONFIG_CONCURRENCY};
use felhom_hub_proto::{HostReport, ServiceState};
use felhom_journal::{codec, Log, RealFs};
use felhom_proxmox::{
    wait_task, ApiToken, PollSchedule, ProxmoxApi, PveClient, PveClientConfig, Secret, TlsTrust,
    WaitOptions,
};
use felhom_pve_sim::{
    HubSim, HubSimConfig, PveSim, SimConfig, DEFAULT_HUB_API_KEY, DEFAULT_TOKEN_ID,
    DEFAULT_TOKEN_SECRET,
};
use felhom_reconcile::{
    ActualConfig, ActualGuest, DesiredGuest, DesiredState, GuestSpec, GuestStatus,
    NormalizerRegistry, Queue, RunState,
};

/// `cargo xtask bench` options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BenchArgs {
    /// Smaller sizes for a smoke run; size-dependent budgets are scaled linearly and marked
    /// "(scaled)", so the verdicts are indicative only.
    #[arg(long)]
    pub quick: bool,
    /// Run only the benches whose name contains NAME (comma-separated for several), e.g.
    /// `journal`, `verify,plan`. Names: journal-append, journal-replay, verify, nonce-open,
    /// plan, queue, wait-task, collect, daemon.
    #[arg(long, value_name = "NAME")]
    pub only: Option<String>,
}

/// The daemon's queue cap (`felhom-agent`'s `QUEUE_CONCURRENCY`), so the queue bench measures
/// the queue as it runs there: on a current-thread runtime with this many jobs at once.
const DAEMON_QUEUE_CONCURRENCY: usize = 4;
/// The host id of the SSHSIG vectors and of the simulated hosts.
const HOST_ID: &str = "pve-01";
/// Simulated PVE latency of the collect bench (SPEC §11).
const COLLECT_LATENCY: Duration = Duration::from_millis(2);
/// How long the daemon is left idle after its first report before its RSS is read.
const IDLE_SETTLE: Duration = Duration::from_secs(2);
/// Longest wait for the daemon's first report.
const FIRST_REPORT_WAIT: Duration = Duration::from_secs(30);
/// The daemon's drain grace is 20 s; with nothing queued it stops at once.
const STOP_WAIT: Duration = Duration::from_secs(25);
/// Short task durations of the wait-task bench (ms); each round adds [`ROUND_SHIFT_MS`], so
/// the stops fall at other phases of the poll schedules.
const SHORT_TASKS_MS: [u64; 9] = [50, 100, 200, 300, 500, 750, 1000, 1500, 2000];
const ROUND_SHIFT_MS: u64 = 37;
/// Long tasks whose poll counts are compared with the baseline schedule.
const LONG_TASKS: [Duration; 2] = [Duration::from_secs(60), Duration::from_secs(600)];
const MIB: f64 = 1024.0 * 1024.0;

/// One bench; several budgets may come out of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bench {
    JournalAppend,
    JournalReplay,
    Verify,
    NonceOpen,
    Plan,
    Queue,
    WaitTask,
    Collect,
    Daemon,
}

impl Bench {
    const ALL: [Bench; 9] = [
        Bench::JournalAppend,
        Bench::JournalReplay,
        Bench::Verify,
        Bench::NonceOpen,
        Bench::Plan,
        Bench::Queue,
        Bench::WaitTask,
        Bench::Collect,
        Bench::Daemon,
    ];

    fn name(self) -> &'static str {
        match self {
            Bench::JournalAppend => "journal-append",
            Bench::JournalReplay => "journal-replay",
            Bench::Verify => "verify",
            Bench::NonceOpen => "nonce-open",
            Bench::Plan => "plan",
            Bench::Queue => "queue",
            Bench::WaitTask => "wait-task",
            Bench::Collect => "collect",
            Bench::Daemon => "daemon",
        }
    }

    fn run(self, ctx: &mut Ctx) -> Result<Vec<Row>> {
        match self {
            Bench::JournalAppend => journal_append(ctx),
            Bench::JournalReplay => journal_replay(ctx),
            Bench::Verify => verify(ctx),
            Bench::NonceOpen => nonce_open(ctx),
            Bench::Plan => plan(ctx),
            Bench::Queue => queue(ctx),
            Bench::WaitTask => wait_task_notice(ctx),
            Bench::Collect => collect(ctx),
            Bench::Daemon => daemon(ctx),
        }
    }
}

/// The benches `--only` picks: every bench whose name contains one of the comma-separated
/// fragments; all of them without `--only`.
fn select(only: Option<&str>) -> Result<Vec<Bench>> {
    let Some(only) = only else {
        return Ok(Bench::ALL.to_vec());
    };
    let fragments: Vec<&str> = only
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    let names = || {
        Bench::ALL
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    ensure!(
        !fragments.is_empty(),
        "bench: --only is empty; the benches are: {}",
        names()
    );
    for f in &fragments {
        ensure!(
            Bench::ALL.iter().any(|b| b.name().contains(f)),
            "bench: --only {f:?} matches no bench; the benches are: {}",
            names()
        );
    }
    Ok(Bench::ALL
        .into_iter()
        .filter(|b| fragments.iter().any(|f| b.name().contains(f)))
        .collect())
}

/// Problem sizes; `full` are the sizes SPEC §11 names.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sizes {
    appends: usize,
    records: usize,
    plan_guests: u32,
    queue_jobs: usize,
    queue_vmids: u32,
    collect_guests: u32,
    wait_rounds: u64,
    verify_time: Duration,
}

impl Sizes {
    fn full() -> Sizes {
        Sizes {
            appends: 2_000,
            records: 1_000_000,
            plan_guests: 10_000,
            queue_jobs: 100_000,
            queue_vmids: 1_000,
            collect_guests: 1_000,
            wait_rounds: 3,
            verify_time: Duration::from_secs(1),
        }
    }

    fn quick() -> Sizes {
        Sizes {
            appends: 200,
            records: 100_000,
            plan_guests: 1_000,
            queue_jobs: 10_000,
            queue_vmids: 100,
            collect_guests: 100,
            wait_rounds: 1,
            verify_time: Duration::from_millis(200),
        }
    }
}

/// A time budget for `size` units, given as `budget` for `full_size` units: unchanged at full
/// size, scaled linearly (and labelled so) for a smoke run.
fn scaled_budget(budget: Duration, size: u64, full_size: u64) -> (Duration, String) {
    if size == full_size || full_size == 0 {
        return (budget, format!("≤ {}", fmt_dur(budget)));
    }
    let scaled = budget.mul_f64(size as f64 / full_size as f64);
    (scaled, format!("≤ {} (scaled)", fmt_dur(scaled)))
}

/// What one budget came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Pass,
    Miss,
    /// A figure shown for context, judged against nothing.
    Info,
    /// Could not be measured; the reason.
    NotMeasured(String),
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Pass => f.write_str("PASS"),
            Verdict::Miss => f.write_str("MISS"),
            Verdict::Info => f.write_str("info"),
            Verdict::NotMeasured(why) => write!(f, "not measured: {why}"),
        }
    }
}

fn within(figure: Duration, budget: Duration) -> Verdict {
    if figure <= budget {
        Verdict::Pass
    } else {
        Verdict::Miss
    }
}

fn at_least(ratio: f64, min: f64) -> Verdict {
    if ratio >= min {
        Verdict::Pass
    } else {
        Verdict::Miss
    }
}

/// One line of the table, with notes printed under it.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    name: String,
    figure: String,
    budget: String,
    anchor: String,
    ratio: String,
    verdict: Verdict,
    notes: Vec<String>,
}

impl Row {
    fn not_measured(name: &str, budget: &str, why: impl Into<String>) -> Row {
        Row {
            name: name.to_owned(),
            figure: "-".to_owned(),
            budget: budget.to_owned(),
            anchor: "-".to_owned(),
            ratio: "-".to_owned(),
            verdict: Verdict::NotMeasured(why.into()),
            notes: Vec::new(),
        }
    }
}

/// A ratio of rates (figure's rate over the anchor's): higher is better.
fn rate_ratio(r: f64) -> String {
    format!("{r:.2} (rate)")
}

/// A ratio of times (figure over anchor): how many anchors the figure costs.
fn time_ratio(figure: Duration, anchor: Duration) -> String {
    if anchor.is_zero() {
        return "-".to_owned();
    }
    format!("{:.1}× (time)", figure.as_secs_f64() / anchor.as_secs_f64())
}

/// The table: aligned columns, notes indented under their row.
fn render(rows: &[Row]) -> String {
    const HEAD: [&str; 6] = ["bench", "figure", "budget", "anchor", "ratio", "verdict"];
    let cells = |r: &Row| {
        [
            r.name.clone(),
            r.figure.clone(),
            r.budget.clone(),
            r.anchor.clone(),
            r.ratio.clone(),
            r.verdict.to_string(),
        ]
    };
    let mut widths = HEAD.map(|h| h.chars().count());
    for r in rows {
        for (w, c) in widths.iter_mut().zip(cells(r)) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: [String; 6]| {
        let mut s = String::new();
        for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
            if i + 1 == cols.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(HEAD.map(str::to_owned));
    out.push_str(&line(widths.map(|w| "-".repeat(w))));
    for r in rows {
        out.push_str(&line(cells(r)));
        for n in &r.notes {
            out.push_str(&format!("    · {n}\n"));
        }
    }
    out
}

/// What the benches share: where to write, how big, and the records file two of them read.
#[derive(Debug)]
struct Ctx {
    root: PathBuf,
    dir: PathBuf,
    sizes: Sizes,
    records_file: Option<PathBuf>,
}

/// Runs the selected benches and prints the table. Refuses a debug build.
pub fn run(args: BenchArgs) -> Result<()> {
    if cfg!(debug_assertions) {
        bail!(
            "bench: this xtask is a debug build, whose figures say nothing about the product; \
             run `cargo xtask bench` (it re-runs itself in release; add `--quick` for a smoke run)"
        );
    }
    let benches = select(args.only.as_deref())?;
    let sizes = if args.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    let tmp = tempfile::Builder::new()
        .prefix("felhom-bench-")
        .tempdir()
        .context("bench: creating a temporary directory")?;
    let cpus = std::thread::available_parallelism().map_or(0, NonZeroUsize::get);
    println!(
        "felhom bench ({}), {cpus} cpus, /proc/loadavg at start: {}",
        if args.quick {
            "quick smoke run"
        } else {
            "full"
        },
        loadavg()
    );
    let fs_type = fs::read_to_string("/proc/self/mounts")
        .ok()
        .and_then(|m| fs_type_of(&m, tmp.path()))
        .unwrap_or_else(|| "file system unknown".to_owned());
    println!("scratch  {} ({fs_type})", tmp.path().display());

    let mut ctx = Ctx {
        root: crate::root(),
        dir: tmp.path().to_owned(),
        sizes,
        records_file: None,
    };
    let mut rows = Vec::new();
    for bench in benches {
        println!("\n=== {}", bench.name());
        let started = Instant::now();
        let got = bench.run(&mut ctx).unwrap_or_else(|e| {
            vec![Row::not_measured(
                bench.name(),
                "-",
                format!("the bench failed: {e:#}"),
            )]
        });
        for r in &got {
            println!(
                "{}: {} (budget {}; anchor {}; ratio {}) {}",
                r.name, r.figure, r.budget, r.anchor, r.ratio, r.verdict
            );
            for n in &r.notes {
                println!("    · {n}");
            }
        }
        println!("({} in {})", bench.name(), fmt_dur(started.elapsed()));
        rows.extend(got);
    }

    println!("\n=== results\n{}", render(&rows));
    println!("/proc/loadavg at end: {}", loadavg());
    let count = |f: fn(&Verdict) -> bool| rows.iter().filter(|r| f(&r.verdict)).count();
    println!(
        "{} PASS, {} MISS, {} not measured, {} info",
        count(|v| *v == Verdict::Pass),
        count(|v| *v == Verdict::Miss),
        count(|v| matches!(v, Verdict::NotMeasured(_))),
        count(|v| *v == Verdict::Info),
    );
    let missed: Vec<&str> = rows
        .iter()
        .filter(|r| r.verdict == Verdict::Miss)
        .map(|r| r.name.as_str())
        .collect();
    if !missed.is_empty() {
        bail!("bench: budgets missed: {}", missed.join(", "));
    }
    Ok(())
}

// ---------------------------------------------------------------- journal

/// A nonce-store record: the journal's most frequent small record.
fn nonce_record(i: usize) -> NonceRecord {
    let mixed = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    NonceRecord {
        nonce: format!("{mixed:016x}{i:016x}"),
        keep_until: 4_102_444_800, // 2100-01-01: never pruned while benched
    }
}

fn journal_append(ctx: &mut Ctx) -> Result<Vec<Row>> {
    let n = ctx.sizes.appends;
    let records: Vec<NonceRecord> = (0..n).map(nonce_record).collect();
    // The anchor writes the very bytes the journal writes, encoded beforehand: what is left
    // is the journal's own overhead (encoding, checksum, bookkeeping) on top of the disk's.
    let mut lines = Vec::with_capacity(n);
    for (i, r) in records.iter().enumerate() {
        let mut line = Vec::new();
        codec::encode_line(i as u64 + 1, r, &mut line)?;
        lines.push(line);
    }
    let mut log = Log::<NonceRecord>::open(ctx.dir.join("append.log"))?.log;
    let raw_path = ctx.dir.join("append.raw");
    let mut raw = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&raw_path)
        .with_context(|| format!("opening {}", raw_path.display()))?;

    // Interleaved in rounds, alternating which goes first, so a change in the machine's load
    // or the disk's mood hits both alike.
    let rounds = (n / 10).max(1);
    let (mut t_log, mut t_raw) = (Duration::ZERO, Duration::ZERO);
    for round in 0..rounds {
        let range = round * n / rounds..(round + 1) * n / rounds;
        for phase in 0..2 {
            let start = Instant::now();
            if (round + phase) % 2 == 0 {
                for r in &records[range.clone()] {
                    log.append(r)?;
                }
                t_log += start.elapsed();
            } else {
                for l in &lines[range.clone()] {
                    raw.write_all(l)?;
                    raw.sync_data()?;
                }
                t_raw += start.elapsed();
            }
        }
    }
    ensure!(
        log.len() == n as u64,
        "the journal holds {} records, not {n}",
        log.len()
    );
    let rate = |t: Duration| n as f64 / t.as_secs_f64().max(f64::MIN_POSITIVE);
    let (log_rate, raw_rate) = (rate(t_log), rate(t_raw));
    let ratio = log_rate / raw_rate;
    Ok(vec![Row {
        name: format!("journal append (N={n})"),
        figure: format!("{log_rate:.0} appends/s"),
        budget: "≥ 0.90× anchor rate".to_owned(),
        anchor: format!("raw write_all+sync_data {raw_rate:.0}/s"),
        ratio: rate_ratio(ratio),
        verdict: at_least(ratio, 0.9),
        notes: vec![format!(
            "one writer, {}-byte records (NonceRecord), same directory; {rounds} interleaved \
             rounds; mean {} per append vs {} raw",
            lines.first().map_or(0, Vec::len),
            fmt_dur(t_log / n.max(1) as u32),
            fmt_dur(t_raw / n.max(1) as u32)
        )],
    }])
}

/// The file of `sizes.records` nonce records the replay and nonce-store benches open, written
/// once per run with `Log::compact` (the journal's own bulk writer).
fn records_file(ctx: &mut Ctx) -> Result<PathBuf> {
    if let Some(p) = &ctx.records_file {
        return Ok(p.clone());
    }
    let n = ctx.sizes.records;
    let path = ctx.dir.join("records.log");
    let records: Vec<NonceRecord> = (0..n).map(nonce_record).collect();
    let start = Instant::now();
    let mut log = Log::<NonceRecord>::open(&path)?.log;
    log.compact(&records)?;
    drop(log);
    let size = fs::metadata(&path)?.len();
    println!(
        "(fixture: {n} records, {:.1} MiB, written with Log::compact in {})",
        size as f64 / MIB,
        fmt_dur(start.elapsed())
    );
    ctx.records_file = Some(path.clone());
    Ok(path)
}

/// The anchor of both open benches: read the file and split it into lines, nothing else.
fn raw_read_split(path: &Path) -> Result<(Duration, usize)> {
    let start = Instant::now();
    let buf = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let lines = buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
    Ok((start.elapsed(), black_box(lines)))
}

fn journal_replay(ctx: &mut Ctx) -> Result<Vec<Row>> {
    let n = ctx.sizes.records;
    let path = records_file(ctx)?;
    let (mut replays, mut anchors) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let (t, lines) = raw_read_split(&path)?;
        ensure!(lines == n, "the records file has {lines} lines, not {n}");
        anchors.push(t);

        let start = Instant::now();
        let mut seen = 0usize;
        let (log, torn) = Log::<NonceRecord>::open_visit(&path, Arc::new(RealFs), |r| {
            black_box(&r);
            seen += 1;
        })?;
        replays.push(start.elapsed());
        drop(log);
        ensure!(torn.is_none(), "the records file had a torn tail: {torn:?}");
        ensure!(seen == n, "replay visited {seen} records, not {n}");
    }
    let (replay, anchor) = (median(replays), median(anchors));
    let (budget, budget_text) = scaled_budget(
        Duration::from_secs(1),
        n as u64,
        Sizes::full().records as u64,
    );
    Ok(vec![Row {
        name: format!("journal replay (N={n})"),
        figure: fmt_dur(replay),
        budget: budget_text,
        anchor: format!("read+line split {}", fmt_dur(anchor)),
        ratio: time_ratio(replay, anchor),
        verdict: within(replay, budget),
        notes: vec![format!(
            "Log::open_visit (framing, seq, CRC-32, serde decode of every record), median of 3; \
             file in the page cache, as is the anchor's; {}",
            throughput(n, replay, "records")
        )],
    }])
}

fn nonce_open(ctx: &mut Ctx) -> Result<Vec<Row>> {
    let n = ctx.sizes.records;
    let path = records_file(ctx)?;
    let (mut opens, mut anchors) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let (t, lines) = raw_read_split(&path)?;
        ensure!(lines == n, "the records file has {lines} lines, not {n}");
        anchors.push(t);

        let start = Instant::now();
        let store = felhom_authz::FileNonceStore::open(&path)?;
        opens.push(start.elapsed());
        ensure!(
            store.len() == n,
            "the store holds {} nonces, not {n}",
            store.len()
        );
        drop(store);
    }
    let (open, anchor) = (median(opens), median(anchors));
    let (budget, budget_text) = scaled_budget(
        Duration::from_secs(1),
        n as u64,
        Sizes::full().records as u64,
    );
    Ok(vec![Row {
        name: format!("nonce store open (N={n})"),
        figure: fmt_dur(open),
        budget: budget_text,
        anchor: format!("read+line split {}", fmt_dur(anchor)),
        ratio: time_ratio(open, anchor),
        verdict: within(open, budget),
        notes: vec![
            "FileNonceStore::open: journal replay plus the nonce index, median of 3".to_owned(),
        ],
    }])
}

// ---------------------------------------------------------------- signatures

fn verify(ctx: &mut Ctx) -> Result<Vec<Row>> {
    let vectors = ctx.root.join("testdata/sshsig");
    let read = |name: &str| {
        let p = vectors.join(name);
        fs::read(&p).with_context(|| format!("reading {}", p.display()))
    };
    let blob = read("ed25519-sha512.json")?;
    let sig = read("ed25519-sha512.sig")?;
    let public = String::from_utf8(read("ed25519.pub")?).context("ed25519.pub is not UTF-8")?;
    let public = public.trim();

    let signer = Signer::from_authorized_key("ops-ed25519", Role::Operational, public)?;
    // The in-memory store: its lookup is a hash probe, so the pipeline is what is measured
    // (the durable store's cost is the nonce-open and journal-append benches).
    let verifier = Verifier::new(vec![signer], MemoryNonceStore::new(), HOST_ID);
    // Inside the vectors' window (testdata/sshsig/README.md).
    let now = time::macros::datetime!(2026-11-23 10:05:00 UTC);
    verifier
        .check(&blob, &sig, now)
        .context("the ed25519 vector does not verify with Verifier::check")?;

    let key = ssh_key::PublicKey::from_openssh(public).context("parsing ed25519.pub")?;
    let parsed = ssh_key::SshSig::from_pem(&sig).context("parsing the SSHSIG armor")?;
    key.verify(felhom_authz::NAMESPACE, &blob, &parsed)
        .context("ssh-key refuses the ed25519 vector")?;

    const BATCH: u32 = 50;
    let target = ctx.sizes.verify_time;
    let (mut t_check, mut t_raw, mut t_parse) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut n_batches, mut failures) = (0u32, 0u32);
    while t_check < target || t_raw < target {
        let start = Instant::now();
        for _ in 0..BATCH {
            failures += u32::from(
                verifier
                    .check(black_box(&blob), black_box(&sig), now)
                    .is_err(),
            );
        }
        t_check += start.elapsed();

        let start = Instant::now();
        for _ in 0..BATCH {
            failures += u32::from(
                key.verify(
                    felhom_authz::NAMESPACE,
                    black_box(&blob),
                    black_box(&parsed),
                )
                .is_err(),
            );
        }
        t_raw += start.elapsed();

        let start = Instant::now();
        for _ in 0..BATCH {
            failures += u32::from(
                ssh_key::SshSig::from_pem(black_box(&sig))
                    .and_then(|s| key.verify(felhom_authz::NAMESPACE, black_box(&blob), &s))
                    .is_err(),
            );
        }
        t_parse += start.elapsed();
        n_batches += 1;
    }
    ensure!(
        failures == 0,
        "{failures} verifications failed during the bench"
    );
    let n = f64::from(n_batches * BATCH);
    let rate = |t: Duration| n / t.as_secs_f64().max(f64::MIN_POSITIVE);
    let (check, raw, parse) = (rate(t_check), rate(t_raw), rate(t_parse));
    let ratio = check / raw;
    Ok(vec![Row {
        name: "signature verify (ed25519)".to_owned(),
        figure: format!("{check:.0} checks/s"),
        budget: "≥ 0.80× anchor rate".to_owned(),
        anchor: format!("ssh-key PublicKey::verify {raw:.0}/s"),
        ratio: rate_ratio(ratio),
        verdict: at_least(ratio, 0.8),
        notes: vec![
            format!(
                "Verifier::check (all stages, in-memory nonce lookup) over testdata/sshsig/\
                 ed25519-sha512; anchor verifies the pre-parsed SshSig; {} ops each, batches \
                 of {BATCH} interleaved",
                n as u64
            ),
            format!(
                "context: SshSig::from_pem + verify {parse:.0}/s (check is {:.2}× that)",
                check / parse
            ),
        ],
    }])
}

// ---------------------------------------------------------------- reconcile

/// `n` desired guests and their actual state: every guest managed (run state, cores, memory,
/// swap, description); every 10th has drifted memory, every 7th is stopped, every 13th has
/// another description, and PVE's trailing newline is on every description. The actual list
/// comes in a scrambled order, as a real listing may.
fn plan_inputs(n: u32) -> Result<(DesiredState, Vec<ActualGuest>)> {
    const GIB: u64 = 1 << 30;
    let desired = (0..n)
        .map(|i| {
            let vmid = 100 + i;
            DesiredGuest {
                run_state: Some(RunState::Running),
                spec: Some(GuestSpec {
                    cores: Some(2),
                    memory_bytes: Some(2 * GIB),
                    swap_bytes: Some(GIB / 2),
                    disk_bytes: None,
                }),
                description: Some(format!("guest {vmid}, managed by felhom")),
                ..DesiredGuest::new(vmid)
            }
        })
        .collect();
    let desired = DesiredState::new(desired).map_err(|e| anyhow!("desired state: {e}"))?;
    let actual = (0..n)
        .map(|k| {
            // A fixed permutation of 0..n (7919 is prime, so coprime with n unless n is a
            // multiple of it; then the identity is fine).
            let i = if n.is_multiple_of(7919) {
                k
            } else {
                ((u64::from(k) * 7919) % u64::from(n)) as u32
            };
            let vmid = 100 + i;
            let description = if i % 13 == 0 {
                format!("guest {vmid}, hand-edited\n")
            } else {
                format!("guest {vmid}, managed by felhom\n")
            };
            ActualGuest {
                vmid,
                status: if i % 7 == 0 {
                    GuestStatus::Stopped
                } else {
                    GuestStatus::Running
                },
                config: Some(ActualConfig {
                    cores: Some(2),
                    memory_mib: Some(if i % 10 == 0 { 1024 } else { 2048 }),
                    swap_mib: Some(512),
                    description: Some(description),
                    digest: Some(format!("{vmid:040x}")),
                }),
            }
        })
        .collect();
    Ok((desired, actual))
}

fn plan(ctx: &mut Ctx) -> Result<Vec<Row>> {
    let n = ctx.sizes.plan_guests;
    let (desired, actual) = plan_inputs(n)?;
    let normalizers = NormalizerRegistry::pve();
    let (mut plans, mut clones) = (Vec::new(), Vec::new());
    let mut actions = 0;
    for _ in 0..31 {
        let start = Instant::now();
        let cloned = black_box((desired.clone(), actual.clone()));
        clones.push(start.elapsed());
        drop(cloned);

        let start = Instant::now();
        let p = felhom_reconcile::plan(black_box(&desired), black_box(&actual), &normalizers);
        plans.push(start.elapsed());
        actions = p.actions.len();
        ensure!(
            p.skipped.is_empty(),
            "the plan skipped guests: {:?}",
            p.skipped.first()
        );
    }
    ensure!(actions > 0, "the plan found no drift to act on");
    let (planned, anchor) = (median(plans), median(clones));
    let (budget, budget_text) = scaled_budget(
        Duration::from_millis(5),
        u64::from(n),
        u64::from(Sizes::full().plan_guests),
    );
    Ok(vec![Row {
        name: format!("plan ({n} guests)"),
        figure: fmt_dur(planned),
        budget: budget_text,
        anchor: format!("clone inputs {}", fmt_dur(anchor)),
        ratio: time_ratio(planned, anchor),
        verdict: within(planned, budget),
        notes: vec![format!(
            "median of 31; pve normalizers; {actions} actions planned (drifted memory, stopped \
             guests, edited descriptions)"
        )],
    }])
}

fn queue(ctx: &mut Ctx) -> Result<Vec<Row>> {
    let (n, vmids) = (ctx.sizes.queue_jobs, ctx.sizes.queue_vmids);
    // As the daemon runs it: one current-thread runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cap = NonZeroUsize::new(DAEMON_QUEUE_CONCURRENCY).unwrap_or(NonZeroUsize::MIN);
    let (mut queued, mut spawned) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        spawned.push(rt.block_on(async {
            let start = Instant::now();
            let handles: Vec<_> = (0..n).map(|_| tokio::spawn(async {})).collect();
            for h in handles {
                h.await?;
            }
            Ok::<_, anyhow::Error>(start.elapsed())
        })?);

        queued.push(rt.block_on(async {
            let queue = Queue::new(cap);
            let start = Instant::now();
            let mut handles = Vec::with_capacity(n);
            for i in 0..n {
                let vmid = 100 + (i as u32 % vmids);
                let handle = queue
                    .submit(vmid, || async {})
                    .map_err(|_| anyhow!("the queue refused a job (closed)"))?;
                handles.push(handle);
            }
            for h in handles {
                h.await?;
            }
            let elapsed = start.elapsed();
            queue.close().await;
            Ok::<_, anyhow::Error>(elapsed)
        })?);
    }
    let (q, anchor) = (median(queued), median(spawned));
    let (budget, budget_text) = scaled_budget(
        Duration::from_millis(100),
        n as u64,
        Sizes::full().queue_jobs as u64,
    );
    Ok(vec![Row {
        name: format!("queue ({n} no-op jobs, {vmids} vmids)"),
        figure: fmt_dur(q),
        budget: budget_text,
        anchor: format!("{n} tokio::spawn {}", fmt_dur(anchor)),
        ratio: time_ratio(q, anchor),
        verdict: within(q, budget),
        notes: vec![format!(
            "submit all, then await every handle; current-thread runtime, cap \
             {DAEMON_QUEUE_CONCURRENCY} as in the daemon; median of 5, interleaved with the anchor"
        )],
    }])
}

// ---------------------------------------------------------------- PVE (simulated)

/// The simulator's server runs on its own runtime (one worker thread), like PVE in its own
/// process; the agent side runs on a current-thread runtime, like the daemon.
fn sim_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("pve-sim")
        .enable_all()
        .build()?)
}

fn agent_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The agent's client for `sim`, pinned to its certificate (as the daemon's config does).
fn pve_client(sim: &PveSim) -> Result<PveClient> {
    let token = ApiToken::new(DEFAULT_TOKEN_ID, Secret::new(DEFAULT_TOKEN_SECRET))?;
    let pin = sim
        .fingerprint()
        .parse()
        .map_err(|e| anyhow!("simulator fingerprint: {e}"))?;
    let mut cfg = PveClientConfig::new(
        sim.base_url(),
        sim.node(),
        token,
        TlsTrust::Pinned(vec![pin]),
    );
    cfg.timeout = Duration::from_secs(30);
    Ok(PveClient::new(cfg)?)
}

/// One waited-on task: which schedule, how long after its stop it was noticed, and the polls.
#[derive(Debug, Clone, Copy)]
struct Notice {
    default_schedule: bool,
    after_stop: Duration,
    polls: u32,
}

fn wait_task_notice(ctx: &mut Ctx) -> Result<Vec<Row>> {
    let rounds = ctx.sizes.wait_rounds;
    let waiters = SHORT_TASKS_MS.len() * 2;
    let mut config = SimConfig::default().without_guests();
    for k in 0..waiters {
        config = config.guest(felhom_pve_sim::GuestSpec::new(
            300 + k as u32,
            &format!("wait{k}"),
        ));
    }
    let sim_rt = sim_runtime()?;
    let sim = sim_rt.block_on(PveSim::start(config))?;
    let client = Arc::new(pve_client(&sim)?);
    let faults = sim.faults().clone();
    let started = Instant::now();
    let notices: Vec<Notice> = agent_runtime()?.block_on(async {
        // Task durations are a simulator-wide setting: the POSTs go one at a time, each after
        // setting its duration; the waits then run side by side.
        let post = Arc::new(tokio::sync::Mutex::new(()));
        let mut out = Vec::new();
        for round in 0..rounds {
            let mut set = tokio::task::JoinSet::new();
            for (k, ms) in SHORT_TASKS_MS.iter().enumerate() {
                for (s, schedule) in [PollSchedule::default(), PollSchedule::BASELINE]
                    .into_iter()
                    .enumerate()
                {
                    let vmid = 300 + (k * 2 + s) as u32;
                    let duration = Duration::from_millis(ms + round * ROUND_SHIFT_MS);
                    let (client, faults, post) =
                        (Arc::clone(&client), faults.clone(), Arc::clone(&post));
                    set.spawn(async move {
                        let guard = post.lock().await;
                        faults.slow_tasks(None, duration);
                        let sent = Instant::now();
                        let upid = client
                            .snapshot(vmid, &format!("bench{round}"), None)
                            .await?;
                        drop(guard);
                        let opts = WaitOptions {
                            schedule,
                            ..WaitOptions::default()
                        };
                        let outcome = wait_task(&*client, &upid, &opts).await?;
                        // The task was created after `sent`, so `sent + duration` is no later
                        // than its real stop: the delay is overstated, never understated.
                        let after_stop = Instant::now().saturating_duration_since(sent + duration);
                        Ok::<_, anyhow::Error>(Notice {
                            default_schedule: s == 0,
                            after_stop,
                            polls: outcome.polls,
                        })
                    });
                }
            }
            while let Some(joined) = set.join_next().await {
                out.push(joined??);
            }
        }
        Ok::<_, anyhow::Error>(out)
    })?;
    let elapsed = started.elapsed();
    sim_rt.block_on(sim.shutdown());

    let pick = |default_schedule: bool| {
        notices
            .iter()
            .filter(|n| n.default_schedule == default_schedule)
            .copied()
            .collect::<Vec<_>>()
    };
    let (fast, base) = (pick(true), pick(false));
    let med = |v: &[Notice]| median(v.iter().map(|n| n.after_stop).collect());
    let worst = |v: &[Notice]| v.iter().map(|n| n.after_stop).max().unwrap_or_default();
    let mean_polls =
        |v: &[Notice]| v.iter().map(|n| f64::from(n.polls)).sum::<f64>() / v.len().max(1) as f64;
    let (m_fast, m_base) = (med(&fast), med(&base));
    let budget = Duration::from_millis(250);
    let mut rows = vec![Row {
        name: "wait_task notice, short tasks".to_owned(),
        figure: format!("median {}", fmt_dur(m_fast)),
        budget: format!("≤ {} median", fmt_dur(budget)),
        anchor: format!("1 s→5 s baseline: median {}", fmt_dur(m_base)),
        ratio: time_ratio(m_fast, m_base),
        verdict: within(m_fast, budget),
        notes: vec![
            format!(
                "{} tasks per schedule over real TLS to the simulator ({}–{} ms, +{ROUND_SHIFT_MS} \
                 ms per round, {rounds} round(s), {} s wall); notice − stop, stop taken as POST \
                 sent + duration (overstates by the POST's round trip)",
                fast.len(),
                SHORT_TASKS_MS[0],
                SHORT_TASKS_MS[SHORT_TASKS_MS.len() - 1],
                elapsed.as_secs()
            ),
            format!(
                "worst: default {}, baseline {}; polls per task: default {:.1}, baseline {:.1}",
                fmt_dur(worst(&fast)),
                fmt_dur(worst(&base)),
                mean_polls(&fast),
                mean_polls(&base)
            ),
        ],
    }];

    rows.push(long_task_polls(
        &PollSchedule::default(),
        &PollSchedule::BASELINE,
        &LONG_TASKS,
    ));
    Ok(rows)
}

/// Poll counts of `schedule` against `baseline` for tasks of the given lengths. They follow
/// from the schedules alone (`wait_task` sleeps exactly `PollSchedule::delay` between polls), so
/// they are computed, not waited for.
fn long_task_polls(schedule: &PollSchedule, baseline: &PollSchedule, tasks: &[Duration]) -> Row {
    struct Count {
        task: Duration,
        ours: (Duration, u32),
        base: (Duration, u32),
    }
    let counts: Vec<Count> = tasks
        .iter()
        .map(|&task| Count {
            task,
            ours: schedule.notice(task),
            base: baseline.notice(task),
        })
        .collect();
    let list = |f: &dyn Fn(&Count) -> String| {
        counts
            .iter()
            .map(|c| format!("{} s: {}", c.task.as_secs(), f(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ok = counts.iter().all(|c| c.ours.1 <= c.base.1);
    Row {
        name: "wait_task polls, long tasks".to_owned(),
        figure: format!("{} polls", list(&|c| c.ours.1.to_string())),
        budget: "≤ baseline's polls".to_owned(),
        anchor: format!("baseline {} polls", list(&|c| c.base.1.to_string())),
        ratio: counts
            .iter()
            .map(|c| format!("{:.2}", f64::from(c.ours.1) / f64::from(c.base.1.max(1))))
            .collect::<Vec<_>>()
            .join(" / "),
        verdict: if ok { Verdict::Pass } else { Verdict::Miss },
        notes: vec![format!(
            "computed from PollSchedule::notice (ours {:?}×{} up to {:?}; baseline {:?}×{} up \
             to {:?}); stop noticed at {}",
            schedule.initial,
            schedule.factor,
            schedule.max,
            baseline.initial,
            baseline.factor,
            baseline.max,
            list(&|c| format!(
                "{:.1} s vs {:.1} s",
                c.ours.0.as_secs_f64(),
                c.base.0.as_secs_f64()
            ))
        )],
    }
}

fn collect(ctx: &mut Ctx) -> Result<Vec<Row>> {
    let n = ctx.sizes.collect_guests;
    let mut config = SimConfig::default().without_guests();
    for i in 0..n {
        let vmid = 1000 + i;
        config = config.guest(
            felhom_pve_sim::GuestSpec::new(vmid, &format!("ct{vmid}"))
                .description("benched guest")
                .running(i % 3 != 0),
        );
    }
    let sim_rt = sim_runtime()?;
    let sim = sim_rt.block_on(PveSim::start(config))?;
    sim.faults().set_latency(COLLECT_LATENCY);
    let client = pve_client(&sim)?;
    let prober = FixedProber(ServiceState::Active);
    let sequential = CollectOptions {
        concurrency: 1,
        ..CollectOptions::new(HOST_ID)
    };
    let wider: Vec<CollectOptions> = [16, 32]
        .into_iter()
        .map(|concurrency| CollectOptions {
            concurrency,
            ..CollectOptions::new(HOST_ID)
        })
        .collect();
    let check = |r: &HostReport| -> Result<()> {
        ensure!(
            r.guests.len() == n as usize,
            "the report has {} guests, not {n}",
            r.guests.len()
        );
        let without = r.guests.iter().filter(|g| g.spec.is_none()).count();
        ensure!(
            without == 0,
            "{without} guests came without a spec (config reads failed)"
        );
        Ok(())
    };
    let (bounded, seq, wide, floor) = agent_runtime()?.block_on(async {
        // One warm-up collection opens the client's connections, as a running daemon has.
        check(&collector::collect(&client, &prober, HOST_ID, SystemTime::now()).await?)?;
        let mut bounded = Vec::new();
        let mut wide = vec![Vec::new(); wider.len()];
        for _ in 0..3 {
            let start = Instant::now();
            let r = collector::collect(&client, &prober, HOST_ID, SystemTime::now()).await?;
            bounded.push(start.elapsed());
            check(&r)?;

            for (options, times) in wider.iter().zip(&mut wide) {
                let start = Instant::now();
                let r =
                    collector::collect_with(&client, &prober, options, SystemTime::now()).await?;
                times.push(start.elapsed());
                check(&r)?;
            }
        }
        let start = Instant::now();
        let r = collector::collect_with(&client, &prober, &sequential, SystemTime::now()).await?;
        let seq = start.elapsed();
        check(&r)?;

        // The same collection without the simulated latency: what the client and the
        // simulator cost in CPU on this machine, the floor under the figure.
        sim.faults().set_latency(Duration::ZERO);
        let mut floor = Vec::new();
        for _ in 0..3 {
            let start = Instant::now();
            let r = collector::collect(&client, &prober, HOST_ID, SystemTime::now()).await?;
            floor.push(start.elapsed());
            check(&r)?;
        }
        let wide: Vec<Duration> = wide.into_iter().map(median).collect();
        Ok::<_, anyhow::Error>((median(bounded), seq, wide, median(floor)))
    })?;
    let requests = sim.state().total_requests();
    sim_rt.block_on(sim.shutdown());

    let (budget, budget_text) = scaled_budget(
        Duration::from_millis(250),
        u64::from(n),
        u64::from(Sizes::full().collect_guests),
    );
    let mut rows = vec![Row {
        name: format!("host report, {n} guests"),
        figure: fmt_dur(bounded),
        budget: budget_text,
        anchor: format!("sequential {}", fmt_dur(seq)),
        ratio: time_ratio(bounded, seq),
        verdict: within(bounded, budget),
        notes: vec![
            format!(
                "collector::collect (concurrency {DEFAULT_CONFIG_CONCURRENCY}, the default) over \
                 real TLS, {} simulated latency per request, median of 3 after a warm-up; \
                 {requests} requests served in all",
                fmt_dur(COLLECT_LATENCY)
            ),
            format!(
                "with no simulated latency the same collection takes {} (client and simulator \
                 CPU on this machine; the simulator serves on one worker thread)",
                fmt_dur(floor)
            ),
        ],
    }];
    for (options, figure) in wider.iter().zip(wide) {
        rows.push(Row {
            name: format!(
                "host report, {n} guests, concurrency {}",
                options.concurrency
            ),
            figure: fmt_dur(figure),
            budget: "-".to_owned(),
            anchor: format!("sequential {}", fmt_dur(seq)),
            ratio: time_ratio(figure, seq),
            verdict: Verdict::Info,
            notes: vec!["context for tuning DEFAULT_CONFIG_CONCURRENCY; median of 3".to_owned()],
        });
    }
    Ok(rows)
}

// ---------------------------------------------------------------- daemon

fn daemon(ctx: &mut Ctx) -> Result<Vec<Row>> {
    const SIZE: &str = "daemon binary, stripped";
    const RSS: &str = "daemon idle RSS";
    const BUDGET: &str = "≤ 8.00 MiB";
    let budget_bytes = 8 * 1024 * 1024;
    let exe = match build_daemon(&ctx.root) {
        Ok(exe) => exe,
        Err(e) => {
            let why = format!("daemon not built: {e:#}");
            return Ok(vec![
                Row::not_measured(SIZE, BUDGET, why.clone()),
                Row::not_measured(RSS, BUDGET, why),
            ]);
        }
    };
    let mut rows = Vec::new();

    let bytes = fs::read(&exe).with_context(|| format!("reading {}", exe.display()))?;
    let size = bytes.len() as u64;
    let stripped = match elf_has_symtab(&bytes) {
        Some(false) => "no .symtab: stripped".to_owned(),
        Some(true) => "HAS a .symtab: not stripped, the size overstates".to_owned(),
        None => "not an ELF64 file the bench can read".to_owned(),
    };
    drop(bytes);
    rows.push(Row {
        name: SIZE.to_owned(),
        figure: fmt_mib(size),
        budget: BUDGET.to_owned(),
        anchor: "- (a size does not depend on the machine's speed)".to_owned(),
        ratio: "-".to_owned(),
        verdict: if size <= budget_bytes {
            Verdict::Pass
        } else {
            Verdict::Miss
        },
        notes: vec![format!("{} ({stripped})", exe.display())],
    });

    let anchor = sleep_rss();
    let anchor_text = match &anchor {
        Ok(kib) => format!("`sleep 10` {}", fmt_mib(kib * 1024)),
        Err(e) => format!("`sleep 10` not measured: {e:#}"),
    };
    match daemon_rss(ctx, &exe) {
        Ok(m) => rows.push(Row {
            name: RSS.to_owned(),
            figure: fmt_mib(m.rss_kib * 1024),
            budget: BUDGET.to_owned(),
            anchor: anchor_text,
            ratio: match &anchor {
                Ok(a) if *a > 0 => format!("{:.1}× (size)", m.rss_kib as f64 / *a as f64),
                _ => "-".to_owned(),
            },
            verdict: if m.rss_kib * 1024 <= budget_bytes {
                Verdict::Pass
            } else {
                Verdict::Miss
            },
            notes: vec![format!(
                "VmRSS {} after the first report (at {}) and {} idle; VmHWM (peak) {}; against \
                 the PVE and hub simulators on loopback, journal and nonce store in the scratch \
                 dir, no desired state",
                fmt_mib(m.rss_kib * 1024),
                fmt_dur(m.first_report),
                fmt_dur(IDLE_SETTLE),
                fmt_mib(m.hwm_kib * 1024)
            )],
        }),
        Err(e) => rows.push(Row {
            anchor: anchor_text,
            ..Row::not_measured(RSS, BUDGET, format!("{e:#}"))
        }),
    }
    Ok(rows)
}

/// `cargo build --release -p felhom-agent`; the binary's path from cargo's own messages.
fn build_daemon(root: &Path) -> Result<PathBuf> {
    println!("$ cargo build --release -p felhom-agent");
    let built = crate::cargo::build(root, &["felhom-agent"], crate::cargo::Profile::Release)?;
    built
        .into_iter()
        .map(|(_, path)| path)
        .next()
        .context("cargo reported no felhom-agent executable")
}

#[derive(Debug, Clone, Copy)]
struct DaemonMemory {
    rss_kib: u64,
    hwm_kib: u64,
    first_report: Duration,
}

/// Starts the daemon against both simulators, waits for its first report, lets it idle, reads
/// its memory, then stops it with SIGTERM.
fn daemon_rss(ctx: &Ctx, exe: &Path) -> Result<DaemonMemory> {
    let sim_rt = sim_runtime()?;
    let (sim, hub) = sim_rt.block_on(async {
        let sim = PveSim::start(SimConfig::default()).await?;
        let hub = HubSim::start(HubSimConfig::default()).await?;
        Ok::<_, anyhow::Error>((sim, hub))
    })?;
    let dir = ctx.dir.join("daemon");
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("hub-ca.pem"), hub.ca_pem())?;
    // Test values only: the simulators' fixed token and key.
    let config = serde_json::json!({
        "proxmox": {
            "api_url": sim.base_url(),
            "node": sim.node(),
            "token_id": DEFAULT_TOKEN_ID,
            "token_secret": DEFAULT_TOKEN_SECRET,
            "tls": { "fingerprint_sha256": [sim.fingerprint()] },
            "timeout_seconds": 10
        },
        "hub": {
            "url": hub.base_url(),
            "host_id": HOST_ID,
            "api_key": DEFAULT_HUB_API_KEY,
            "poll_seconds": 60,
            "timeout_seconds": 10,
            "ca_file": dir.join("hub-ca.pem")
        },
        "authz": { "nonce_store": dir.join("nonces.log"), "signers": [] },
        "journal": { "path": dir.join("journal.log") },
        "log": { "level": "info", "format": "text" }
    });
    let config_path = dir.join("agent.json");
    fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
    let log_path = dir.join("agent.log");
    let log = File::create(&log_path)?;

    let started = Instant::now();
    let mut child = Command::new(exe)
        .arg("--config")
        .arg(&config_path)
        .arg("run")
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let measured = (|| {
        sim_rt
            .block_on(hub.wait_for_reports(1, FIRST_REPORT_WAIT))
            .map_err(|e| anyhow!("{e}"))?;
        let first_report = started.elapsed();
        std::thread::sleep(IDLE_SETTLE);
        if let Some(status) = child.try_wait()? {
            bail!("the daemon exited early ({status})");
        }
        let status = fs::read_to_string(format!("/proc/{}/status", child.id()))?;
        Ok(DaemonMemory {
            rss_kib: status_kib(&status, "VmRSS").context("no VmRSS in /proc/PID/status")?,
            hwm_kib: status_kib(&status, "VmHWM").context("no VmHWM in /proc/PID/status")?,
            first_report,
        })
    })();
    let stopped = stop(&mut child);
    sim_rt.block_on(async {
        sim.shutdown().await;
        hub.shutdown().await;
    });
    match (measured, stopped) {
        (Ok(m), Ok(())) => Ok(m),
        (Ok(_), Err(e)) => Err(e.context("stopping the daemon")),
        (Err(e), _) => {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Err(e.context(format!("daemon log tail: {}", tail.join(" | "))))
        }
    }
}

/// SIGTERM to our own child by its pid, then wait; SIGKILL (also by pid, via the handle) if it
/// does not stop in time.
fn stop(child: &mut Child) -> Result<()> {
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status()?;
    ensure!(sent.success(), "kill -TERM {pid} failed");
    let deadline = Instant::now() + STOP_WAIT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            ensure!(
                status.success(),
                "the daemon exited with {status} on SIGTERM"
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?;
    child.wait()?;
    bail!("the daemon did not stop within {STOP_WAIT:?} of SIGTERM (killed)")
}

/// RSS of `sleep 10`: what the smallest C program costs on this machine.
fn sleep_rss() -> Result<u64> {
    let mut child = Command::new("sleep")
        .arg("10")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting sleep")?;
    std::thread::sleep(Duration::from_millis(200));
    let status = fs::read_to_string(format!("/proc/{}/status", child.id()));
    child.kill()?;
    child.wait()?;
    status_kib(&status?, "VmRSS").context("no VmRSS for sleep")
}

// ---------------------------------------------------------------- small pure helpers

/// A `Key:   1234 kB` field of `/proc/PID/status`, in KiB.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let mut parts = rest.split_whitespace();
        let n = parts.next()?.parse().ok()?;
        (parts.next()? == "kB").then_some(n)
    })
}

/// The type of the file system `path` is on, from `/proc/self/mounts` text: the mount point
/// that is the longest path prefix of `path`.
fn fs_type_of(mounts: &str, path: &Path) -> Option<String> {
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, point, kind) = (f.next()?, f.next()?, f.next()?);
            Some((point.replace("\\040", " "), kind))
        })
        .filter(|(point, _)| path.starts_with(point))
        .max_by_key(|(point, _)| point.len())
        .map(|(_, kind)| kind.to_owned())
}

/// Whether an ELF64 little-endian file has a `.symtab` section (`None`: not such a file, or
/// its section table is out of bounds).
fn elf_has_symtab(bytes: &[u8]) -> Option<bool> {
    let u16_at = |o: usize| Some(u16::from_le_bytes(bytes.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(bytes.get(o..o + 4)?.try_into().ok()?));
    let u64_at =
        |o: usize| usize::try_from(u64::from_le_bytes(bytes.get(o..o + 8)?.try_into().ok()?)).ok();
    // Magic, ELFCLASS64, little-endian.
    if bytes.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let shoff = u64_at(0x28)?;
    let shentsize = usize::from(u16_at(0x3A)?);
    let shnum = usize::from(u16_at(0x3C)?);
    let shstrndx = usize::from(u16_at(0x3E)?);
    if shentsize < 0x40 || shstrndx >= shnum {
        return None;
    }
    let header = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
    let strtab = header(shstrndx)?;
    let (str_off, str_size) = (u64_at(strtab + 0x18)?, u64_at(strtab + 0x20)?);
    let names = bytes.get(str_off..str_off.checked_add(str_size)?)?;
    for i in 0..shnum {
        let name_at = usize::try_from(u32_at(header(i)?)?).ok()?;
        let name = names.get(name_at..)?;
        let end = name.iter().position(|b| *b == 0)?;
        if &name[..end] == b".symtab" {
            return Some(true);
        }
    }
    Some(false)
}

/// The median (the mean of the middle two for an even count); zero for none.
fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

fn fmt_dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

fn fmt_mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / MIB)
}

fn throughput(n: usize, t: Duration, unit: &str) -> String {
    format!(
        "{:.2} M {unit}/s",
        n as f64 / t.as_secs_f64().max(f64::MIN_POSITIVE) / 1e6
    )
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|e| format!("unreadable ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_picks_benches_by_name_fragment() {
        assert_eq!(select(None).unwrap().len(), Bench::ALL.len());
        assert_eq!(
            select(Some("journal")).unwrap(),
            vec![Bench::JournalAppend, Bench::JournalReplay]
        );
        assert_eq!(
            select(Some("daemon, verify")).unwrap(),
            vec![Bench::Verify, Bench::Daemon]
        );
        let err = select(Some("nope")).unwrap_err().to_string();
        assert!(
            err.contains("\"nope\"") && err.contains("wait-task"),
            "{err}"
        );
        assert!(select(Some(" , ")).is_err());
    }

    #[test]
    fn every_bench_has_a_distinct_name() {
        let mut names: Vec<_> = Bench::ALL.iter().map(|b| b.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Bench::ALL.len());
    }

    #[test]
    fn verdicts_compare_with_the_budget_inclusively() {
        let ms = Duration::from_millis;
        assert_eq!(within(ms(250), ms(250)), Verdict::Pass);
        assert_eq!(within(ms(251), ms(250)), Verdict::Miss);
        assert_eq!(at_least(0.9, 0.9), Verdict::Pass);
        assert_eq!(at_least(0.89, 0.9), Verdict::Miss);
        assert_eq!(
            Verdict::NotMeasured("daemon not built".into()).to_string(),
            "not measured: daemon not built"
        );
    }

    #[test]
    fn budgets_scale_only_for_smaller_sizes() {
        let (b, text) = scaled_budget(Duration::from_secs(1), 1_000_000, 1_000_000);
        assert_eq!((b, text.as_str()), (Duration::from_secs(1), "≤ 1.00 s"));
        let (b, text) = scaled_budget(Duration::from_secs(1), 100_000, 1_000_000);
        assert_eq!(b, Duration::from_millis(100));
        assert_eq!(text, "≤ 100.0 ms (scaled)");
    }

    #[test]
    fn quick_sizes_are_smaller_than_full_ones() {
        let (q, f) = (Sizes::quick(), Sizes::full());
        assert!(q.appends < f.appends && q.records < f.records);
        assert!(q.plan_guests < f.plan_guests && q.queue_jobs < f.queue_jobs);
        assert!(q.collect_guests < f.collect_guests && q.wait_rounds <= f.wait_rounds);
        // The figures SPEC §11 names.
        assert_eq!((f.appends, f.records), (2_000, 1_000_000));
        assert_eq!(
            (f.plan_guests, f.queue_jobs, f.queue_vmids),
            (10_000, 100_000, 1_000)
        );
        assert_eq!(f.collect_guests, 1_000);
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        let ms = Duration::from_millis;
        assert_eq!(median(vec![ms(3), ms(1), ms(2)]), ms(2));
        assert_eq!(
            median(vec![ms(4), ms(1), ms(2), ms(3)]),
            Duration::from_micros(2500)
        );
        assert_eq!(median(Vec::new()), Duration::ZERO);
    }

    #[test]
    fn durations_and_sizes_print_in_readable_units() {
        assert_eq!(fmt_dur(Duration::from_micros(56)), "56.0 µs");
        assert_eq!(fmt_dur(Duration::from_micros(4_250)), "4.2 ms");
        assert_eq!(fmt_dur(Duration::from_millis(1_500)), "1.50 s");
        assert_eq!(fmt_mib(3 * 1024 * 1024 + 512 * 1024), "3.50 MiB");
        assert_eq!(
            time_ratio(Duration::from_millis(30), Duration::from_millis(10)),
            "3.0× (time)"
        );
        assert_eq!(time_ratio(Duration::from_millis(30), Duration::ZERO), "-");
    }

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\tfelhom-agent\nVmHWM:\t    6144 kB\nVmRSS:\t    4520 kB\nThreads:\t1\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(4520));
        assert_eq!(status_kib(status, "VmHWM"), Some(6144));
        assert_eq!(status_kib(status, "VmSwap"), None);
        assert_eq!(status_kib("VmRSS:\t12 MB\n", "VmRSS"), None);
        // A key that is a prefix of another is not confused with it.
        assert_eq!(status_kib("VmRSSX:\t1 kB\n", "VmRSS"), None);
    }

    #[test]
    fn the_file_system_is_the_longest_matching_mount() {
        let mounts = "/dev/vda / ext4 rw 0 0\ntmpfs /tmp tmpfs rw 0 0\n\
                      tmpfs /tmpx tmpfs rw 0 0\n/dev/vdb /mnt/my\\040disk xfs rw 0 0\n";
        assert_eq!(
            fs_type_of(mounts, Path::new("/tmp/a")).as_deref(),
            Some("tmpfs")
        );
        assert_eq!(
            fs_type_of(mounts, Path::new("/work/x")).as_deref(),
            Some("ext4")
        );
        // `/tmpfoo` is not under `/tmp`: whole components only.
        assert_eq!(
            fs_type_of(mounts, Path::new("/tmpfoo")).as_deref(),
            Some("ext4")
        );
        assert_eq!(
            fs_type_of(mounts, Path::new("/mnt/my disk/f")).as_deref(),
            Some("xfs")
        );
        assert_eq!(fs_type_of("", Path::new("/")), None);
    }

    /// A minimal ELF64 with a section-name table and sections named as given.
    fn elf_with_sections(names: &[&str]) -> Vec<u8> {
        let mut strtab = vec![0u8];
        let mut offsets = Vec::new();
        for n in names.iter().chain([&".shstrtab"]) {
            offsets.push(strtab.len() as u32);
            strtab.extend_from_slice(n.as_bytes());
            strtab.push(0);
        }
        let shnum = offsets.len();
        let str_off = 0x40u64;
        let shoff = str_off + strtab.len() as u64;
        let mut out = vec![0u8; 0x40];
        out[..6].copy_from_slice(b"\x7fELF\x02\x01");
        out[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        out[0x3A..0x3C].copy_from_slice(&0x40u16.to_le_bytes());
        out[0x3C..0x3E].copy_from_slice(&(shnum as u16).to_le_bytes());
        out[0x3E..0x40].copy_from_slice(&((shnum - 1) as u16).to_le_bytes());
        out.extend_from_slice(&strtab);
        for (i, name) in offsets.iter().enumerate() {
            let mut sh = vec![0u8; 0x40];
            sh[..4].copy_from_slice(&name.to_le_bytes());
            if i == shnum - 1 {
                sh[0x18..0x20].copy_from_slice(&str_off.to_le_bytes());
                sh[0x20..0x28].copy_from_slice(&(strtab.len() as u64).to_le_bytes());
            }
            out.extend_from_slice(&sh);
        }
        out
    }

    #[test]
    fn elf_symbol_tables_are_found() {
        assert_eq!(
            elf_has_symtab(&elf_with_sections(&[".text", ".symtab"])),
            Some(true)
        );
        assert_eq!(
            elf_has_symtab(&elf_with_sections(&[".text", ".dynsym"])),
            Some(false)
        );
        assert_eq!(elf_has_symtab(b"#!/bin/sh\n"), None);
        let mut cut = elf_with_sections(&[".text"]);
        // The section-name table's header loses its offset and size.
        cut.truncate(cut.len() - 0x30);
        assert_eq!(elf_has_symtab(&cut), None);
    }

    #[test]
    fn plan_inputs_are_valid_and_drift_in_places() {
        let (desired, actual) = plan_inputs(100).unwrap();
        assert_eq!(desired.len(), 100);
        let mut vmids: Vec<u32> = actual.iter().map(|g| g.vmid).collect();
        assert_ne!(vmids, (100..200).collect::<Vec<_>>(), "scrambled");
        vmids.sort_unstable();
        assert_eq!(vmids, (100..200).collect::<Vec<_>>(), "a permutation");
        let p = felhom_reconcile::plan(&desired, &actual, &NormalizerRegistry::pve());
        assert!(p.skipped.is_empty());
        // 10 memory drifts, 8 descriptions (every 13th), 15 stopped (every 7th): some guests
        // share a config write.
        assert!(p.actions.len() >= 15 + 10, "{} actions", p.actions.len());
    }

    #[test]
    fn long_task_polls_are_judged_against_the_baseline() {
        let tasks = [Duration::from_secs(60)];
        let same = long_task_polls(&PollSchedule::BASELINE, &PollSchedule::BASELINE, &tasks);
        assert_eq!(same.verdict, Verdict::Pass);
        // 1 s doubling to 5 s: polls at 1, 3, 7, 12, ... 57, 62 s.
        assert_eq!(same.figure, "60 s: 14 polls");
        assert_eq!(same.ratio, "1.00");
        let eager = PollSchedule {
            initial: Duration::from_millis(100),
            factor: 1.0,
            max: Duration::from_millis(100),
        };
        let more = long_task_polls(&eager, &PollSchedule::BASELINE, &tasks);
        assert_eq!(more.verdict, Verdict::Miss);
        assert_eq!(more.figure, "60 s: 600 polls");
    }

    #[test]
    fn the_table_aligns_columns_and_prints_notes() {
        let row = Row {
            name: "plan".into(),
            figure: "1.0 ms".into(),
            budget: "≤ 5.0 ms".into(),
            anchor: "clone 0.5 ms".into(),
            ratio: "2.0× (time)".into(),
            verdict: Verdict::Pass,
            notes: vec!["median of 31".into()],
        };
        let t = render(&[row]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("bench") && lines[0].ends_with("verdict"));
        assert_eq!(
            lines[0].find("figure"),
            lines[2].find("1.0 ms"),
            "columns line up"
        );
        assert!(lines[2].ends_with("PASS"));
        assert_eq!(lines[3], "    · median of 31");
    }
}
