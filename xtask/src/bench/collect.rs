//! The host report: cold and steady beats against the simulator, beside the floor and a
//! sequential peer.
//!
//! - cold: a later beat that is a full resync after the pool expired (a fresh client, the cache
//!   of the beat before, every config read again); floor: the beat's requests × the simulated
//!   latency / the concurrency;
//! - first: the daemon's first beat (fresh client, empty cache: the configs wait for the list);
//!   floor: the list, then ⌈guests / concurrency⌉ rounds of config reads (a figure for context);
//! - steady: the first beat's client and cache one beat later, nothing changed; floor: two
//!   round trips (the storage list, then the backups on it; everything else runs beside them);
//! - the peer: what proxmoxer-style collectors do, one request at a time, two per guest
//!   (`status/current` and `config`); its time per request is the simulator's measured
//!   service time (held latency plus both sides' work), printed beside the injected latency;
//! - the cold beat again at twice the default concurrency, beside its own floor (a figure for
//!   context: the budget is judged at the default).

use felhom_hub::collector::{CacheStats, GuestCache};

use super::*;

/// One measured beat.
#[derive(Debug, Clone, Copy)]
struct Measured {
    took: Duration,
    requests: u64,
    connections: u64,
    stats: CacheStats,
    /// CPU time run during the beat: (the agent's thread, the simulator's threads).
    cpu: (Duration, Duration),
}

/// CPU time run so far by this thread and by the simulator's threads (named `pve-sim*`):
/// the scheduler's own count, `/proc/self/task/*/schedstat`, in nanoseconds. Zero where
/// that is unreadable.
fn cpu_so_far() -> (Duration, Duration) {
    let read = |task: &Path| -> Option<(String, Duration)> {
        let name = fs::read_to_string(task.join("comm")).ok()?;
        let stat = fs::read_to_string(task.join("schedstat")).ok()?;
        let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
        Some((name.trim().to_owned(), Duration::from_nanos(ns)))
    };
    let mine = read(Path::new("/proc/thread-self")).map_or(Duration::ZERO, |(_, d)| d);
    let sim = fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.flatten()
                .filter_map(|t| read(&t.path()))
                .filter(|(name, _)| name.starts_with("pve-sim"))
                .map(|(_, d)| d)
                .sum()
        })
        .unwrap_or_default();
    (mine, sim)
}

/// A report of all `n` guests, each with its spec.
fn check(r: &HostReport, n: u32) -> Result<()> {
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
}

/// One beat through `cache`, with what it cost the simulator.
async fn beat(
    sim: &PveSim,
    client: &PveClient,
    cache: &GuestCache,
    options: &CollectOptions,
    n: u32,
) -> Result<Measured> {
    let (requests, connections) = (sim.state().total_requests(), sim.connections_accepted());
    let prober = FixedProber(ServiceState::Active);
    let cpu = cpu_so_far();
    let start = Instant::now();
    let (r, stats) =
        collector::collect_cached(client, &prober, options, cache, SystemTime::now()).await?;
    let took = start.elapsed();
    let after = cpu_so_far();
    check(&r, n)?;
    Ok(Measured {
        took,
        requests: sim.state().total_requests() - requests,
        connections: sim.connections_accepted() - connections,
        stats,
        cpu: (after.0.saturating_sub(cpu.0), after.1.saturating_sub(cpu.1)),
    })
}

/// A full resync as at a later beat: the cache knows every guest from the beat before, the
/// client's pool has expired (a new client), every config is read again.
async fn resync_beat(sim: &PveSim, options: &CollectOptions, n: u32) -> Result<Measured> {
    let cache = GuestCache::new(1);
    beat(sim, &pve_client(sim)?, &cache, options, n).await?;
    beat(sim, &pve_client(sim)?, &cache, options, n).await
}

/// What a proxmoxer-style collector does: every read one after the other, two per guest.
async fn sequential_peer(client: &PveClient) -> Result<usize> {
    client.node_status().await?;
    let guests = client.list_lxc().await?;
    for g in &guests {
        black_box(client.guest_status(g.vmid).await?);
        black_box(client.guest_config(g.vmid).await?);
    }
    for s in client.node_storage().await? {
        if collector::holds_backups(&s) {
            black_box(
                client
                    .storage_content(&s.storage, Some("backup"), None)
                    .await?,
            );
        }
    }
    Ok(guests.len())
}

pub(super) fn collect(ctx: &mut Ctx) -> Result<Vec<Row>> {
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
    let options = CollectOptions::new(HOST_ID);
    // Concurrency is a knob: the same cold beat at twice the default, beside its own floor.
    let wider = CollectOptions {
        concurrency: options.concurrency.max(1) * 2,
        ..options.clone()
    };
    let (first, cold, steady, peer, cold_wider) = agent_runtime()?.block_on(async {
        let mut first = Vec::new();
        let mut cold = Vec::new();
        let mut steady = Vec::new();
        let mut peer = Vec::new();
        let mut cold_wider = Vec::new();
        for _ in 0..3 {
            // The daemon's first beat: no connection, an empty cache.
            let client = pve_client(&sim)?;
            let cache = GuestCache::default();
            first.push(beat(&sim, &client, &cache, &options, n).await?);
            // Steady: the next beat, nothing changed.
            steady.push(beat(&sim, &client, &cache, &options, n).await?);

            // Cold: a later beat that is a full resync after the pool expired (a new client
            // has no connection; a cache resyncing every beat re-reads every config).
            cold.push(resync_beat(&sim, &options, n).await?);
            cold_wider.push(resync_beat(&sim, &wider, n).await?);

            let client = pve_client(&sim)?;
            let start = Instant::now();
            let guests = sequential_peer(&client).await?;
            peer.push(start.elapsed());
            ensure!(guests == n as usize, "the peer saw {guests} guests");
        }
        Ok::<_, anyhow::Error>((first, cold, steady, peer, cold_wider))
    })?;
    sim_rt.block_on(sim.shutdown());

    let mid = |v: &[Measured]| {
        let mut v = v.to_vec();
        v.sort_by_key(|m| m.took);
        v[v.len() / 2]
    };
    let (first, cold, steady, peer, cold_wider) = (
        mid(&first),
        mid(&cold),
        mid(&steady),
        median(peer),
        mid(&cold_wider),
    );
    ensure!(
        cold.stats.full_resync && cold.stats.configs_read == n as usize,
        "the cold beat did not read every config: {:?}",
        cold.stats
    );
    let concurrency = options.concurrency.max(1) as u32;
    let lat = COLLECT_LATENCY;
    // The floor: every request of the beat, each one latency, `concurrency` at once.
    let floor_of = |requests: u64, c: u32| lat.mul_f64(requests as f64 / f64::from(c));
    let cold_floor = floor_of(cold.requests, concurrency);
    // The first beat knows no guest: the list comes first, then the rounds of config reads.
    let first_floor = lat * (1 + n.div_ceil(concurrency));
    let steady_floor = lat * 2;
    let cold_budget = cold_floor.mul_f64(1.2);
    let wider_concurrency = wider.concurrency as u32;
    let wider_floor = floor_of(cold_wider.requests, wider_concurrency);
    let peer_requests = 2 * n + 3;
    // What one request really costs against the simulator, one at a time: its held latency
    // plus both sides' work (the floor counts the latency alone).
    let service = peer / peer_requests;
    let service_floor = service.mul_f64(cold.requests as f64 / f64::from(concurrency));
    let speedup = peer.as_secs_f64() / cold.took.as_secs_f64().max(f64::MIN_POSITIVE);
    let full = n == Sizes::full().collect_guests;
    let scaled = if full { "" } else { " (at this size)" };
    let cpu = |m: &Measured| {
        format!(
            "CPU run during the beat: the agent's thread {}, the simulator's threads {}",
            fmt_dur(m.cpu.0),
            fmt_dur(m.cpu.1)
        )
    };
    let mut rows = vec![
        Row {
            name: format!("cold beat, {n} guests"),
            figure: fmt_dur(cold.took),
            budget: format!("≤ 1.2× floor = {}", fmt_dur(cold_budget)),
            floor: format!(
                "{} ({} requests × {} / {concurrency})",
                fmt_dur(cold_floor),
                cold.requests,
                fmt_dur(lat)
            ),
            anchor: format!("sequential peer {}", fmt_dur(peer)),
            ratio: time_ratio(cold.took, cold_floor),
            verdict: within(cold.took, cold_budget),
            notes: vec![
                format!(
                    "a full resync at a later beat after the pool expired: fresh client, the \
                     cache from the beat before, every config read again; concurrency \
                     {concurrency}, {} per request over real TLS, median of 3; {} requests, {} \
                     connections opened",
                    fmt_dur(lat),
                    cold.requests,
                    cold.connections
                ),
                format!(
                    "beside the rig's own cost: {} requests × the measured service time {} / \
                     {concurrency} = {} ({:.2}×); informative, the verdict is on the floor",
                    cold.requests,
                    fmt_dur(service),
                    fmt_dur(service_floor),
                    cold.took.as_secs_f64() / service_floor.as_secs_f64().max(f64::MIN_POSITIVE)
                ),
                cpu(&cold),
            ],
        },
        Row {
            name: format!("first beat, {n} guests"),
            figure: fmt_dur(first.took),
            budget: "-".to_owned(),
            floor: format!(
                "{} (1 + ⌈{n}/{concurrency}⌉ × {})",
                fmt_dur(first_floor),
                fmt_dur(lat)
            ),
            anchor: format!("cold beat {}", fmt_dur(cold.took)),
            ratio: time_ratio(first.took, first_floor),
            verdict: Verdict::Info,
            notes: vec![
                format!(
                    "the daemon's first beat: fresh client and an empty cache, so the configs \
                     wait for the list; {} connections opened; median of 3",
                    first.connections
                ),
                cpu(&first),
            ],
        },
        Row {
            name: format!("cold beat vs sequential peer, {n} guests"),
            figure: format!("{speedup:.1}× faster"),
            budget: "≥ 8× faster".to_owned(),
            floor: format!(
                "peer's own floor {} ({} requests × {})",
                fmt_dur(lat * (2 * n + 3)),
                2 * n + 3,
                fmt_dur(lat)
            ),
            anchor: format!("sequential peer {}", fmt_dur(peer)),
            ratio: format!("{speedup:.1} (speed-up)"),
            verdict: at_least(speedup, 8.0),
            notes: vec![
                "the peer: node status, guest list, then per guest status/current and config, \
                 one request at a time (proxmoxer-style), fresh client; median of 3"
                    .to_owned(),
                format!(
                    "measured service time per request (peer time / {peer_requests} requests): \
                     {} against {} of injected latency",
                    fmt_dur(service),
                    fmt_dur(lat)
                ),
            ],
        },
        Row {
            name: format!("cold beat at concurrency {wider_concurrency}, {n} guests"),
            figure: fmt_dur(cold_wider.took),
            budget: "-".to_owned(),
            floor: format!(
                "{} ({} requests × {} / {wider_concurrency})",
                fmt_dur(wider_floor),
                cold_wider.requests,
                fmt_dur(lat)
            ),
            anchor: format!(
                "cold beat at concurrency {concurrency} {}",
                fmt_dur(cold.took)
            ),
            ratio: time_ratio(cold_wider.took, wider_floor),
            verdict: Verdict::Info,
            notes: vec![format!(
                "the knob, not the default: the same resync after the pool expired; {} \
                 connections opened; median of 3",
                cold_wider.connections
            )],
        },
        Row {
            name: format!("steady beat, {n} unchanged guests"),
            figure: fmt_dur(steady.took),
            budget: format!("≤ 50 ms{scaled}"),
            floor: format!(
                "{} (2 round trips × {})",
                fmt_dur(steady_floor),
                fmt_dur(lat)
            ),
            anchor: format!("cold beat {}", fmt_dur(cold.took)),
            ratio: time_ratio(steady.took, steady_floor),
            verdict: within(steady.took, Duration::from_millis(50)),
            notes: vec![format!(
                "the beat after the first one on its client and GuestCache: {} configs \
                 from the cache, {} read; median of 3",
                steady.stats.configs_cached, steady.stats.configs_read
            )],
        },
        Row {
            name: "steady beat, PVE requests".to_owned(),
            figure: steady.requests.to_string(),
            budget: "≤ 10".to_owned(),
            floor: "4 (node status, guest list, storage list, one backup listing)".to_owned(),
            anchor: format!("cold beat {}", cold.requests),
            ratio: "-".to_owned(),
            verdict: if steady.requests <= 10 {
                Verdict::Pass
            } else {
                Verdict::Miss
            },
            notes: Vec::new(),
        },
        Row {
            name: "steady beat, new connections".to_owned(),
            figure: steady.connections.to_string(),
            budget: "0".to_owned(),
            floor: "0".to_owned(),
            anchor: format!("cold beat {}", cold.connections),
            ratio: "-".to_owned(),
            verdict: if steady.connections == 0 {
                Verdict::Pass
            } else {
                Verdict::Miss
            },
            notes: vec!["counted by the simulator's accept loop".to_owned()],
        },
    ];
    if !full {
        for r in &mut rows {
            r.notes
                .push("quick run: not the 1,000 guests the budgets name".to_owned());
        }
    }
    Ok(rows)
}
