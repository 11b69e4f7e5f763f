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

//!
//! Layout: this file is the harness (options, sizes, rows, verdicts, the table); each area
//! has its own file.

mod collect;
mod daemon;
mod journal;
mod reconcile;
mod sim;
mod verify;
mod wait_task;

use sim::{agent_runtime, pve_client, sim_runtime};
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
use felhom_hub::collector::{self, CollectOptions};
use felhom_hub_proto::{HostReport, ServiceState};
use felhom_journal::{codec, Log, RealFs};
use felhom_proxmox::{wait_task, PollSchedule, ProxmoxApi, PveClient, WaitOptions};
use felhom_pve_sim::{HubSim, HubSimConfig, PveSim, SimConfig};
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
/// How long the daemon has run when its RSS is read (issue 14: after 60 s).
const IDLE_SETTLE: Duration = Duration::from_secs(60);
/// Guests of the simulated host the daemon's RSS is read against.
const DAEMON_GUESTS: u32 = 1_000;
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
            Bench::JournalAppend => journal::journal_append(ctx),
            Bench::JournalReplay => journal::journal_replay(ctx),
            Bench::Verify => verify::verify(ctx),
            Bench::NonceOpen => journal::nonce_open(ctx),
            Bench::Plan => reconcile::plan(ctx),
            Bench::Queue => reconcile::queue(ctx),
            Bench::WaitTask => wait_task::wait_task_notice(ctx),
            Bench::Collect => collect::collect(ctx),
            Bench::Daemon => daemon::daemon(ctx),
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

/// A row without a physical floor.
const NO_FLOOR: &str = "-";

/// One line of the table, with notes printed under it.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    name: String,
    figure: String,
    budget: String,
    /// The physical floor under the figure where one exists (requests × latency /
    /// concurrency, the disk's write+fsync rate, ...): no implementation could do better.
    floor: String,
    anchor: String,
    ratio: String,
    verdict: Verdict,
    notes: Vec<String>,
}

impl Row {
    fn not_measured(name: &str, budget: &str, why: impl Into<String>) -> Row {
        Row {
            floor: NO_FLOOR.to_owned(),
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
    const HEAD: [&str; 7] = [
        "bench", "figure", "budget", "floor", "anchor", "ratio", "verdict",
    ];
    let cells = |r: &Row| {
        [
            r.name.clone(),
            r.figure.clone(),
            r.budget.clone(),
            r.floor.clone(),
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
    let line = |cols: [String; 7]| {
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
                "{}: {} (budget {}; floor {}; anchor {}; ratio {}) {}",
                r.name, r.figure, r.budget, r.floor, r.anchor, r.ratio, r.verdict
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
    use super::reconcile::plan_inputs;
    use super::wait_task::long_task_polls;
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
            floor: NO_FLOOR.to_owned(),
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
