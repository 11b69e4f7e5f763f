//! `cargo xtask soak --minutes N`: the real `felhom-agent` daemon for N minutes against
//! simulators that flap, sampling its RSS (`/proc/PID/status` VmRSS) and open file
//! descriptors (`/proc/PID/fd`) every second.
//!
//! Timeline: a quiet first minute (the guests converge; the 60 s sample is the baseline), then
//! fault phases one after another ([`PHASE`] of fault, [`REST`] without) cycling through every
//! [`Fault`] kind, then a quiet [`SETTLE`] before the final sample. The hub asks for a
//! [`INTERVAL_SECONDS`] poll interval (let through by the test-only poll floor).
//!
//! Passes when the daemon never exits; RSS stays within 2 MiB of its 60 s value; the open fds
//! of the final quiet window never all exceed the most of the quiet window before 60 s (a
//! leak raises every late sample; the warm pool's connection count moves a few fds between
//! beats, so two single samples would be noise); after every hub fault phase a report arrives within one
//! interval (plus [`REPORT_SLACK`] for collecting it) of the hub answering again; and every
//! mutating request PVE saw is one the desired state asks for (guest 100's config, guest
//! 101's start).

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use felhom_pve_sim::{
    GuestSpec, HttpFault, HubFault, HubSim, PveSim, SimConfig, DEFAULT_HUB_API_KEY,
};
use serde_json::json;

use crate::agentproc::{hub_and_config, write_json, Daemon, POLL_FLOOR_ENV};

/// The hub's poll interval during the soak.
pub const INTERVAL_SECONDS: u64 = 2;
/// How long a fault lasts.
const PHASE: Duration = Duration::from_secs(8);
/// Quiet time after each fault (several intervals: reports must resume in one).
const REST: Duration = Duration::from_secs(6);
/// Quiet time before the final sample.
const SETTLE: Duration = Duration::from_secs(20);
/// When the baseline sample is taken.
const BASELINE_AT: Duration = Duration::from_secs(60);
/// The quiet window before [`BASELINE_AT`] whose most open fds the final window is held to.
const FD_WINDOW: Duration = Duration::from_secs(20);
/// How far RSS may move from the baseline.
const RSS_BUDGET_KIB: i64 = 2 * 1024;
/// Time to collect and send a report once its beat starts.
const REPORT_SLACK: Duration = Duration::from_secs(1);
/// Bigger than the Proxmox client's 8 MiB body cap.
const OVERSIZED_BYTES: usize = 9 * 1024 * 1024;

/// `cargo xtask soak` arguments.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// How long to run, in minutes (at least 2: one quiet minute, faults, a quiet settle).
    #[arg(long, default_value_t = 5)]
    pub minutes: u64,
}

/// One kind of misbehaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// Every PVE connection is closed unanswered.
    PveDown,
    /// 500, 503 and 596 answers.
    Pve5xx,
    /// Every PVE answer delayed 4 s (odd rounds) or 12 s, past the client's 10 s timeout.
    PveSlow,
    /// A start task that never ends (guest 101 stopped behind the daemon's back first).
    TaskNeverEnds,
    /// Answers padded past the client's body cap.
    PveOversized,
    /// 200 answers whose body is not JSON or not the expected shape.
    PveMalformed,
    /// Every hub connection closed unanswered.
    HubDown,
    /// The hub rejects the API key (a real 401 from its auth).
    Hub401,
    /// 200 answers that are no control envelope.
    HubGarbage,
}

impl Fault {
    pub const ALL: [Fault; 9] = [
        Fault::PveDown,
        Fault::Pve5xx,
        Fault::PveSlow,
        Fault::TaskNeverEnds,
        Fault::PveOversized,
        Fault::PveMalformed,
        Fault::HubDown,
        Fault::Hub401,
        Fault::HubGarbage,
    ];

    fn is_hub(self) -> bool {
        matches!(self, Fault::HubDown | Fault::Hub401 | Fault::HubGarbage)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Fault::PveDown => "pve-down",
            Fault::Pve5xx => "pve-5xx",
            Fault::PveSlow => "pve-slow",
            Fault::TaskNeverEnds => "task-never-ends",
            Fault::PveOversized => "pve-oversized",
            Fault::PveMalformed => "pve-malformed",
            Fault::HubDown => "hub-down",
            Fault::Hub401 => "hub-401",
            Fault::HubGarbage => "hub-garbage",
        })
    }
}

/// The fault phases that fit between the baseline and the settle, in order. The never-ending
/// task is injected once (its guest stays busy for the rest of the run).
pub fn schedule(total: Duration) -> Vec<Fault> {
    let window = total.saturating_sub(BASELINE_AT + SETTLE);
    let phases = (window.as_secs() / (PHASE + REST).as_secs()) as usize;
    Fault::ALL
        .iter()
        .copied()
        .cycle()
        .enumerate()
        .filter(|(i, f)| *f != Fault::TaskNeverEnds || *i < Fault::ALL.len())
        .map(|(_, f)| f)
        .take(phases)
        .collect()
}

/// One `/proc` sample.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Duration,
    pub rss_kib: i64,
    pub fds: usize,
}

/// VmRSS in KiB from `/proc/PID/status` text.
pub fn vm_rss_kib(status: &str) -> Option<i64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

fn sample(pid: u32, at: Duration) -> Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rss_kib = vm_rss_kib(&status).context("no VmRSS in /proc/PID/status")?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing /proc/{pid}/fd"))?
        .count();
    Ok(Sample { at, rss_kib, fds })
}

/// What the soak measured.
#[derive(Debug, Default)]
pub struct Figures {
    pub samples: Vec<Sample>,
    pub phases: Vec<Fault>,
    /// Seconds from each hub phase's end to the next report.
    pub resumed_after: Vec<(Fault, Duration)>,
    pub pve_faulted_requests: usize,
    pub hub_faulted_requests: usize,
    pub asked_mutations: usize,
    pub unasked_mutations: Vec<String>,
    pub reports: usize,
    /// Start tasks still running when the never-ending-task phase ended.
    pub hanging_tasks: usize,
}

impl Figures {
    fn baseline(&self) -> Option<Sample> {
        self.samples.iter().copied().find(|s| s.at >= BASELINE_AT)
    }

    /// The fewest open fds over the final [`SETTLE`] window and the most over the
    /// [`FD_WINDOW`] before the baseline: the fd criterion compares these.
    pub fn fd_windows(&self) -> Option<(usize, usize)> {
        let base = self.baseline()?;
        let last = self.samples.last()?;
        let before = self
            .samples
            .iter()
            .filter(|s| s.at <= base.at && s.at + FD_WINDOW >= base.at)
            .map(|s| s.fds)
            .max()?;
        let end = self
            .samples
            .iter()
            .filter(|s| s.at > base.at && s.at + SETTLE >= last.at)
            .map(|s| s.fds)
            .min()?;
        Some((end, before))
    }

    /// Largest |RSS − baseline| after the baseline, in KiB.
    pub fn rss_drift_kib(&self) -> i64 {
        let Some(base) = self.baseline() else {
            return 0;
        };
        self.samples
            .iter()
            .filter(|s| s.at >= base.at)
            .map(|s| (s.rss_kib - base.rss_kib).abs())
            .max()
            .unwrap_or(0)
    }

    /// Every failed criterion.
    pub fn verdict(&self) -> Vec<String> {
        let mut failed = Vec::new();
        let (Some(base), Some(_)) = (self.baseline(), self.samples.last()) else {
            return vec!["no sample at or after 60 s".to_owned()];
        };
        if self.rss_drift_kib() > RSS_BUDGET_KIB {
            failed.push(format!(
                "RSS moved {} KiB from its 60 s value {} KiB (budget {RSS_BUDGET_KIB} KiB)",
                self.rss_drift_kib(),
                base.rss_kib
            ));
        }
        if let Some((end, before)) = self.fd_windows() {
            if end > before {
                failed.push(format!(
                    "open fds grew: at least {end} over the final {} s, at most {before} over \
                     the {} s before 60 s",
                    SETTLE.as_secs(),
                    FD_WINDOW.as_secs()
                ));
            }
        }
        let limit = Duration::from_secs(INTERVAL_SECONDS) + REPORT_SLACK;
        for (fault, after) in &self.resumed_after {
            if *after > limit {
                failed.push(format!(
                    "reports resumed {:.1} s after {fault} ended (limit {:.1} s)",
                    after.as_secs_f64(),
                    limit.as_secs_f64()
                ));
            }
        }
        if self.phases.contains(&Fault::TaskNeverEnds) && self.hanging_tasks == 0 {
            failed.push("the never-ending task was never started by the daemon".to_owned());
        }
        if !self.unasked_mutations.is_empty() {
            failed.push(format!(
                "mutations the desired state did not ask for: {:?}",
                self.unasked_mutations
            ));
        }
        failed
    }
}

/// Entry point of `cargo xtask soak`.
pub fn run(root: &Path, args: &SoakArgs) -> Result<()> {
    ensure!(args.minutes >= 2, "--minutes must be at least 2");
    let built = crate::cargo::build(root, &["felhom-agent"], crate::cargo::Profile::Dev)?;
    let bin = crate::agentproc::agent_binary(&built)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let total = Duration::from_secs(args.minutes * 60);
    let figures = runtime.block_on(soak(&bin, total))?;
    report(&figures, total)
}

async fn soak(bin: &Path, total: Duration) -> Result<Figures> {
    let sim = PveSim::start(
        SimConfig::default()
            .without_guests()
            .guest(GuestSpec::new(100, "web").running(true))
            .guest(GuestSpec::new(101, "db"))
            .guest(GuestSpec::new(102, "idle").running(true)),
    )
    .await
    .context("starting pve-sim")?;
    let (hub, dir, doc) = hub_and_config(&sim, INTERVAL_SECONDS).await?;
    let config = dir.path().join("agent.json");
    write_json(&config, &doc)?;
    write_json(
        &dir.path().join("desired.json"),
        &json!({ "guests": [
            { "vmid": 100, "spec": { "cores": 2, "memory_bytes": 1024u64 * 1024 * 1024 } },
            { "vmid": 101, "run_state": "running" },
            { "vmid": 102, "run_state": "running" }
        ]}),
    )?;
    let node = sim.node();
    let asked = [
        ("PUT".to_owned(), format!("/nodes/{node}/lxc/100/config")),
        (
            "POST".to_owned(),
            format!("/nodes/{node}/lxc/101/status/start"),
        ),
    ];

    let mut daemon = Daemon::spawn(
        bin,
        &config,
        &[(POLL_FLOOR_ENV, (INTERVAL_SECONDS * 1000).to_string())],
        None,
    )?;
    let pid = daemon.pid();
    let started = Instant::now();
    let planned = schedule(total);
    let mut figures = Figures::default();
    println!(
        "soak: daemon pid {pid}, {} min, {} fault phases of {} s (each followed by {} s quiet) \
         after a quiet minute; hub interval {INTERVAL_SECONDS} s",
        total.as_secs() / 60,
        planned.len(),
        PHASE.as_secs(),
        REST.as_secs()
    );

    // The sampler and the fault driver run side by side; the sampler fails fast on an exit.
    let mut next_sample = Instant::now();
    let mut phases = planned.into_iter().enumerate();
    let mut phase: Option<(Fault, Instant)> = None;
    let mut next_phase_at = started + BASELINE_AT + Duration::from_secs(1);
    let mut waiting_resume: Option<(Fault, Instant, usize)> = None;
    while started.elapsed() < total {
        let now = Instant::now();
        if now >= next_sample {
            if let Some(status) = daemon.exited() {
                bail!(
                    "the daemon exited ({status}) after {:.0} s: {}",
                    started.elapsed().as_secs_f64(),
                    daemon
                        .lines()
                        .iter()
                        .rev()
                        .take(10)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            let s = sample(pid, started.elapsed())?;
            if s.at.as_secs() % 30 == 0 {
                println!(
                    "  t={:>4} s  rss {:>6} KiB  fds {:>3}  reports {}",
                    s.at.as_secs(),
                    s.rss_kib,
                    s.fds,
                    hub.report_count()
                );
            }
            figures.samples.push(s);
            next_sample += Duration::from_secs(1);
        }
        // End of a fault phase.
        if let Some((fault, since)) = phase {
            if now >= since + PHASE {
                if fault == Fault::TaskNeverEnds {
                    let hanging = sim
                        .state()
                        .tasks()
                        .into_iter()
                        .filter(|t| t.task_type == "vzstart" && t.running)
                        .count();
                    println!("  hanging start tasks: {hanging}");
                    figures.hanging_tasks += hanging;
                }
                clear(&sim, &hub);
                if fault.is_hub() {
                    waiting_resume = Some((fault, Instant::now(), hub.report_count()));
                }
                phase = None;
                next_phase_at = now + REST;
            }
        }
        if let Some((fault, since, count)) = waiting_resume {
            // A report, or the whole rest without one (recorded as that long: a failure).
            if hub.report_count() > count || since.elapsed() > REST {
                figures.resumed_after.push((fault, since.elapsed()));
                waiting_resume = None;
            }
        }
        // Start of the next one (never inside the settle).
        if phase.is_none() && now >= next_phase_at && now + PHASE + SETTLE < started + total {
            if let Some((i, fault)) = phases.next() {
                inject(&sim, &hub, fault, u32::try_from(i).unwrap_or(u32::MAX));
                println!("  t={:>4} s  fault {fault}", started.elapsed().as_secs());
                figures.phases.push(fault);
                phase = Some((fault, now));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exit = daemon.terminate(Duration::from_secs(30)).await?;
    ensure!(exit.success(), "the daemon exited with {exit} on SIGTERM");

    let log = sim.state().request_log();
    figures.pve_faulted_requests = log
        .iter()
        .filter(|r| r.status == 0 || r.status >= 500)
        .count();
    figures.hub_faulted_requests = hub.requests().iter().filter(|r| r.status != 200).count();
    figures.reports = hub.report_count();
    for r in log.iter().filter(|r| r.method != "GET") {
        if asked.iter().any(|(m, p)| *m == r.method && *p == r.path) {
            figures.asked_mutations += 1;
        } else {
            figures
                .unasked_mutations
                .push(format!("{} {}", r.method, r.path));
        }
    }
    // The log keeps the last 10,000 requests; the counter counts every accepted mutation.
    let asked_total: u64 = asked.iter().map(|(m, p)| sim.state().requests(m, p)).sum();
    let accepted = sim.state().accepted_mutations();
    if accepted > asked_total {
        figures.unasked_mutations.push(format!(
            "{} accepted mutations, only {asked_total} asked for",
            accepted
        ));
    }
    sim.shutdown().await;
    hub.shutdown().await;
    Ok(figures)
}

/// Turns `fault` on.
fn inject(sim: &PveSim, hub: &HubSim, fault: Fault, round: u32) {
    let f = sim.faults();
    match fault {
        Fault::PveDown => f.drop_next(u32::MAX),
        Fault::Pve5xx => {
            f.fail_next(30, HttpFault::internal("soak: internal error"));
            f.fail_next(30, HttpFault::status(503, "Service Unavailable"));
            f.fail_next(30, HttpFault::timeout_596());
        }
        Fault::PveSlow => f.set_latency(if round % 2 == 1 {
            Duration::from_secs(4)
        } else {
            Duration::from_secs(12)
        }),
        Fault::TaskNeverEnds => {
            f.slow_tasks(Some("vzstart"), Duration::from_secs(24 * 3600));
            // The desired state wants 101 running: the daemon starts it, and the task hangs.
            sim.state().set_running(101, false);
        }
        Fault::PveOversized => f.pad_responses_to(Some(OVERSIZED_BYTES)),
        Fault::PveMalformed => {
            f.fail_next(30, HttpFault::body(200, "{\"data\": [{\"vmid\": "));
            f.fail_next(30, HttpFault::body(200, "<html>502 Bad Gateway</html>"));
            f.fail_next(30, HttpFault::body(200, "{\"data\": \"not a list\"}"));
        }
        Fault::HubDown => hub.faults().drop_next(u32::MAX),
        Fault::Hub401 => hub.set_api_key("soak-wrong-key-so-every-report-is-401"),
        Fault::HubGarbage => hub.faults().fail_next(
            u32::MAX,
            HubFault::Body(200, "not an envelope at all".into()),
        ),
    }
}

/// Every fault off (tasks already started keep their duration).
fn clear(sim: &PveSim, hub: &HubSim) {
    sim.faults().clear();
    hub.faults().clear();
    hub.set_api_key(DEFAULT_HUB_API_KEY);
}

fn report(figures: &Figures, total: Duration) -> Result<()> {
    let base = figures.baseline().context("no baseline sample")?;
    let last = figures.samples.last().context("no sample")?;
    let max_rss = figures.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let max_fds = figures.samples.iter().map(|s| s.fds).max().unwrap_or(0);
    let mut kinds: std::collections::BTreeMap<Fault, usize> = Default::default();
    for f in &figures.phases {
        *kinds.entry(*f).or_default() += 1;
    }
    println!(
        "\nsoak: {} min, {} samples",
        total.as_secs() / 60,
        figures.samples.len()
    );
    println!(
        "faults: {} phases ({}); {} PVE requests dropped or answered 5xx, {} hub requests \
         dropped or refused (slow, oversized and malformed answers not counted)",
        figures.phases.len(),
        kinds
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect::<Vec<_>>()
            .join(", "),
        figures.pve_faulted_requests,
        figures.hub_faulted_requests
    );
    println!(
        "RSS: {} KiB at 60 s, {} KiB at the end, max {} KiB; largest drift from 60 s: {} KiB \
         (budget {RSS_BUDGET_KIB})",
        base.rss_kib,
        last.rss_kib,
        max_rss,
        figures.rss_drift_kib()
    );
    let (end, before) = figures.fd_windows().unwrap_or_default();
    println!(
        "fds: {} at 60 s, {} at the end, max {}; fewest over the final {} s {end}, most over the \
         {} s before 60 s {before}",
        base.fds,
        last.fds,
        max_fds,
        SETTLE.as_secs(),
        FD_WINDOW.as_secs()
    );
    let worst = figures
        .resumed_after
        .iter()
        .map(|(_, d)| *d)
        .max()
        .unwrap_or_default();
    println!(
        "reports: {} received; after {} hub fault phases they resumed within {:.1} s at worst \
         (interval {INTERVAL_SECONDS} s)",
        figures.reports,
        figures.resumed_after.len(),
        worst.as_secs_f64()
    );
    println!(
        "mutations: {} asked for by the desired state, {} not",
        figures.asked_mutations,
        figures.unasked_mutations.len()
    );
    let failed = figures.verdict();
    if failed.is_empty() {
        println!("soak: passed (the daemon never exited)");
        Ok(())
    } else {
        bail!("soak failed:\n  {}", failed.join("\n  "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_proc_status() {
        let status =
            "Name:\tfelhom-agent\nVmPeak:\t  200000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(vm_rss_kib(status), Some(12345));
        assert_eq!(vm_rss_kib("Name:\tx\n"), None);
        // This process's own status parses.
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(vm_rss_kib(&own).unwrap() > 0);
    }

    #[test]
    fn five_minutes_inject_every_fault_kind_and_the_hanging_task_once() {
        let five = schedule(Duration::from_secs(300));
        for kind in Fault::ALL {
            assert!(five.contains(&kind), "{kind} missing from {five:?}");
        }
        let long = schedule(Duration::from_secs(3600));
        assert_eq!(
            long.iter().filter(|f| **f == Fault::TaskNeverEnds).count(),
            1
        );
        assert!(long.len() > five.len());
        assert!(schedule(Duration::from_secs(60)).is_empty());
    }

    fn figures(rss: &[i64], fds: &[usize]) -> Figures {
        Figures {
            samples: rss
                .iter()
                .zip(fds)
                .enumerate()
                .map(|(i, (r, f))| Sample {
                    at: Duration::from_secs(50 + 10 * i as u64),
                    rss_kib: *r,
                    fds: *f,
                })
                .collect(),
            ..Figures::default()
        }
    }

    #[test]
    fn the_verdict_holds_rss_to_two_mib_of_the_60_s_value_and_fds_to_it() {
        // Samples at 50, 60, 70, 80 s: the baseline is the 60 s one (9000 KiB); fds: the most
        // over 40–60 s against the fewest over the last 20 s (70 and 80 s).
        assert!(figures(&[1, 9000, 11000, 10000], &[12, 11, 14, 12])
            .verdict()
            .is_empty());
        // One late sample above the early window is noise, not growth.
        assert!(figures(&[9000, 9000, 9000, 9000], &[12, 11, 12, 13])
            .verdict()
            .is_empty());
        let grew = figures(&[1, 9000, 11049, 9000], &[12, 12, 13, 13]).verdict();
        assert_eq!(grew.len(), 2, "{grew:?}");
        assert!(grew[0].contains("2049 KiB"), "{grew:?}");
        assert!(
            grew[1].contains("at least 13 over the final 20 s, at most 12"),
            "{grew:?}"
        );
        let mut slow = figures(&[9000, 9000, 9000, 9000], &[9, 9, 9, 9]);
        slow.resumed_after
            .push((Fault::HubDown, Duration::from_millis(3500)));
        slow.unasked_mutations.push("POST stop".into());
        assert_eq!(slow.verdict().len(), 2);
    }
}
