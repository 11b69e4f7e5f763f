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
                match &m.maps {
                    Some(b) => b.file_line(),
                    None => "smaps breakdown not read".to_owned(),
                },
                match &m.maps {
                    Some(b) => b.anon_line(),
                    None => String::new(),
                },
                m.threads.clone(),
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

#[derive(Debug, Clone)]
struct DaemonMemory {
    rss_kib: u64,
    hwm_kib: u64,
    /// Heap, stacks and other private memory.
    anon_kib: u64,
    /// The mapped binary and libraries (shared with the page cache).
    file_kib: u64,
    first_report: Duration,
    /// Rss by mapping, read from `/proc/PID/smaps` right after the status.
    maps: Option<SmapsBreakdown>,
    /// The thread count and names.
    threads: String,
}

/// Resident memory by mapping, in KiB, from `/proc/PID/smaps`: the file-backed part of each
/// mapping by what is mapped, and the anonymous part by where it lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SmapsBreakdown {
    /// File-backed pages of the daemon's own executable.
    binary: u64,
    libc: u64,
    libm: u64,
    libgcc_s: u64,
    ld_so: u64,
    other_files: u64,
    /// The brk heap (`[heap]`): glibc's main arena.
    heap: u64,
    /// Anonymous mappings without a name: glibc's other arenas, large (mmapped) allocations,
    /// thread stacks.
    anon_maps: u64,
    /// The main thread's stack.
    stack: u64,
    /// Anonymous (written, copy-on-write) pages inside file mappings: relocations, `.data`,
    /// `.bss` of the binary and the libraries.
    file_anon: u64,
    /// Everything else (`[vdso]`, ...).
    other: u64,
}

impl SmapsBreakdown {
    /// Parses smaps text; `exe` is the executable's path as the kernel names it.
    fn parse(smaps: &str, exe: &str) -> SmapsBreakdown {
        let mut b = SmapsBreakdown::default();
        let mut name = String::new();
        let mut rss = 0u64;
        let mut anon = 0u64;
        let flush = |b: &mut SmapsBreakdown, name: &str, rss: u64, anon: u64| {
            let file = rss.saturating_sub(anon);
            let lib = |stem: &str| {
                name.rsplit('/')
                    .next()
                    .is_some_and(|f| f.starts_with(stem) && f[stem.len()..].starts_with(".so"))
            };
            if name.starts_with('/') {
                b.file_anon += anon;
                let slot = if name == exe {
                    &mut b.binary
                } else if lib("libc") {
                    &mut b.libc
                } else if lib("libm") {
                    &mut b.libm
                } else if lib("libgcc_s") {
                    &mut b.libgcc_s
                } else if lib("ld-linux-x86-64") || lib("ld-linux-aarch64") || lib("ld") {
                    &mut b.ld_so
                } else {
                    &mut b.other_files
                };
                *slot += file;
            } else {
                match name {
                    "[heap]" => b.heap += rss,
                    "[stack]" => b.stack += rss,
                    "" => b.anon_maps += rss,
                    _ => b.other += rss,
                }
            }
        };
        for line in smaps.lines() {
            let mut words = line.split_whitespace();
            let first = words.next().unwrap_or("");
            if first.contains('-') && !first.ends_with(':') {
                flush(&mut b, &name, rss, anon);
                // address perms offset dev inode [name]
                name = words.nth(4).unwrap_or("").to_owned();
                // a name may contain spaces (" (deleted)"): keep the rest of the line
                if let Some(pos) = (!name.is_empty()).then(|| line.find(&name)).flatten() {
                    name = line[pos..].trim_end().to_owned();
                }
                rss = 0;
                anon = 0;
            } else if first == "Rss:" {
                rss = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            } else if first == "Anonymous:" {
                anon = words.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            }
        }
        flush(&mut b, &name, rss, anon);
        b
    }

    fn file_line(&self) -> String {
        let k = |kib: u64| fmt_mib(kib * 1024);
        format!(
            "RssFile by mapping: the binary {}, libc {}, libm {}, libgcc_s {}, ld.so {}, other \
             files {}",
            k(self.binary),
            k(self.libc),
            k(self.libm),
            k(self.libgcc_s),
            k(self.ld_so),
            k(self.other_files)
        )
    }

    fn anon_line(&self) -> String {
        let k = |kib: u64| fmt_mib(kib * 1024);
        format!(
            "RssAnon by mapping: brk heap (main arena) {}, unnamed anonymous mappings (other \
             arenas, large allocations, thread stacks) {}, main stack {}, written pages of the \
             binary and libraries (relocations, .data/.bss) {}; other {}",
            k(self.heap),
            k(self.anon_maps),
            k(self.stack),
            k(self.file_anon),
            k(self.other)
        )
    }
}

/// `/proc/PID/status`'s thread count and each thread's name.
fn threads_line(pid: u32, status: &str) -> String {
    let count = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| "?".to_owned());
    let mut names: Vec<String> = fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| fs::read_to_string(e.path().join("comm")).ok())
                .map(|n| n.trim().to_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    format!("threads {count}: {}", names.join(", "))
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
        let smaps = fs::read_to_string(format!("/proc/{}/smaps", child.id()));
        let threads = threads_line(child.id(), &status);
        let exe_name = fs::canonicalize(exe)
            .unwrap_or_else(|_| exe.to_owned())
            .to_string_lossy()
            .into_owned();
        Ok(DaemonMemory {
            maps: smaps
                .ok()
                .map(|text| SmapsBreakdown::parse(&text, &exe_name)),
            threads,
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
    fn smaps_split_by_mapping() {
        let smaps = "\
5600-5700 r-xp 00001000 fe:00 12 /opt/bin/felhom-agent
Size:                 4 kB
Rss:                 40 kB
Anonymous:            0 kB
5700-5800 rw-p 00002000 fe:00 12 /opt/bin/felhom-agent
Rss:                 12 kB
Anonymous:            8 kB
5900-5a00 rw-p 00000000 00:00 0                          [heap]
Rss:                300 kB
Anonymous:          300 kB
7f00-7f10 rw-p 00000000 00:00 0 
Rss:                 20 kB
Anonymous:           20 kB
7f10-7f20 r-xp 00026000 fe:00 3 /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                100 kB
Anonymous:            0 kB
7f20-7f30 r-xp 00010000 fe:00 4 /usr/lib/x86_64-linux-gnu/libm.so.6
Rss:                 30 kB
7f30-7f40 r-xp 00003000 fe:00 5 /usr/lib/x86_64-linux-gnu/libgcc_s.so.1
Rss:                  6 kB
7f40-7f50 r-xp 00001000 fe:00 6 /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
Rss:                 50 kB
7f50-7f60 r-xp 00001000 fe:00 7 /usr/lib/x86_64-linux-gnu/libcrypto.so.3
Rss:                  9 kB
7ffc-7ffd rw-p 00000000 00:00 0                          [stack]
Rss:                132 kB
Anonymous:          132 kB
7ffe-7fff r-xp 00000000 00:00 0                          [vdso]
Rss:                  4 kB
";
        let b = SmapsBreakdown::parse(smaps, "/opt/bin/felhom-agent");
        assert_eq!(
            b,
            SmapsBreakdown {
                binary: 44,
                libc: 100,
                libm: 30,
                libgcc_s: 6,
                ld_so: 50,
                other_files: 9,
                heap: 300,
                anon_maps: 20,
                stack: 132,
                file_anon: 8,
                other: 4,
            }
        );
    }

    #[test]
    fn the_shipped_unit_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        unit_environment(&root).unwrap();
    }
}
