//! The daemon: its stripped size and its idle RSS with 1,000 simulated guests.

use super::*;

pub(super) fn daemon(ctx: &mut Ctx) -> Result<Vec<Row>> {
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
        floor: NO_FLOOR.to_owned(),
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
            floor: NO_FLOOR.to_owned(),
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
            notes: vec![
                format!(
                    "VmRSS {} at {} after start (first report at {}), {DAEMON_GUESTS} simulated \
                     guests, poll 60 s; VmHWM (peak) {}; against the PVE and hub simulators on \
                     loopback, journal and nonce store in the scratch dir, no desired state",
                    fmt_mib(m.rss_kib * 1024),
                    fmt_dur(IDLE_SETTLE),
                    fmt_dur(m.first_report),
                    fmt_mib(m.hwm_kib * 1024)
                ),
                format!(
                    "of which RssAnon (heap, stacks) {} and RssFile (mapped binary and libraries) \
                     {}",
                    fmt_mib(m.anon_kib * 1024),
                    fmt_mib(m.file_kib * 1024)
                ),
            ],
        }),
        Err(e) => rows.push(Row {
            floor: NO_FLOOR.to_owned(),
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
    /// Heap, stacks and other private memory.
    anon_kib: u64,
    /// The mapped binary and libraries (shared with the page cache).
    file_kib: u64,
    first_report: Duration,
}

/// Starts the daemon against both simulators, waits for its first report, lets it idle, reads
/// its memory, then stops it with SIGTERM.
fn daemon_rss(ctx: &Ctx, exe: &Path) -> Result<DaemonMemory> {
    let sim_rt = sim_runtime()?;
    let (sim, hub) = sim_rt.block_on(async {
        let mut config = SimConfig::default().without_guests();
        for i in 0..DAEMON_GUESTS {
            let vmid = 1000 + i;
            config = config.guest(
                felhom_pve_sim::GuestSpec::new(vmid, &format!("ct{vmid}"))
                    .description("benched guest")
                    .running(i % 3 != 0),
            );
        }
        let sim = PveSim::start(config).await?;
        let hub = HubSim::start(HubSimConfig::default()).await?;
        Ok::<_, anyhow::Error>((sim, hub))
    })?;
    let dir = ctx.dir.join("daemon");
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("hub-ca.pem"), hub.ca_pem())?;
    // Test values only: the simulators' fixed token and key.
    let config = felhom_testkit::config::daemon_config(&sim, &hub.base_url(), &dir, "info");
    let config_path = dir.join("agent.json");
    felhom_testkit::config::write_json(&config_path, &config)?;
    let log_path = dir.join("agent.log");
    let log = File::create(&log_path)?;

    let started = Instant::now();
    let mut child = Command::new(exe)
        .arg("--config")
        .arg(&config_path)
        .arg("run")
        .env_clear()
        // The daemon as the shipped unit runs it: the unit's own Environment= settings.
        .envs(unit_environment(&ctx.root)?)
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
        std::thread::sleep(IDLE_SETTLE.saturating_sub(started.elapsed()));
        if let Some(status) = child.try_wait()? {
            bail!("the daemon exited early ({status})");
        }
        let status = fs::read_to_string(format!("/proc/{}/status", child.id()))?;
        Ok(DaemonMemory {
            rss_kib: status_kib(&status, "VmRSS").context("no VmRSS in /proc/PID/status")?,
            hwm_kib: status_kib(&status, "VmHWM").context("no VmHWM in /proc/PID/status")?,
            anon_kib: status_kib(&status, "RssAnon").unwrap_or(0),
            file_kib: status_kib(&status, "RssFile").unwrap_or(0),
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

/// The `Environment=` assignments of `configs/felhom-agent.service`, in order.
fn unit_environment(root: &Path) -> Result<Vec<(String, String)>> {
    let path = root.join("configs/felhom-agent.service");
    let text = fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    parse_unit_environment(&text).with_context(|| path.display().to_string())
}

/// systemd's `Environment=` lines: space-separated `KEY=VALUE` assignments, each optionally
/// in double quotes (no escapes are used in our unit, so none are decoded).
fn parse_unit_environment(unit: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for line in unit.lines() {
        let Some(rest) = line.trim().strip_prefix("Environment=") else {
            continue;
        };
        let mut words = Vec::new();
        let mut word = String::new();
        let mut quoted = false;
        for c in rest.chars() {
            match c {
                '"' => quoted = !quoted,
                c if c.is_whitespace() && !quoted => {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                }
                c => word.push(c),
            }
        }
        ensure!(!quoted, "unterminated quote in {line:?}");
        if !word.is_empty() {
            words.push(word);
        }
        for w in words {
            let (k, v) = w
                .split_once('=')
                .with_context(|| format!("{w:?} in {line:?} is not KEY=VALUE"))?;
            out.push((k.to_owned(), v.to_owned()));
        }
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_environment_lines_split_into_assignments() {
        let unit =
            "[Service]\nEnvironment=A=1 \"B=two words\"\n# Environment=C=3\nEnvironment=D=x:y=z\n";
        let env = parse_unit_environment(unit).unwrap();
        let want = [("A", "1"), ("B", "two words"), ("D", "x:y=z")];
        assert_eq!(env.len(), want.len());
        for ((k, v), (wk, wv)) in env.iter().zip(want) {
            assert_eq!((k.as_str(), v.as_str()), (wk, wv));
        }
        assert!(parse_unit_environment("Environment=NOEQUALS\n").is_err());
        assert!(parse_unit_environment("Environment=\"A=1\n").is_err());
    }

    #[test]
    fn the_shipped_unit_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        unit_environment(&root).unwrap();
    }
}
