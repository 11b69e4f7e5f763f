//! Reconcile benches: the planner over 10,000 guests and the operation queue.

use super::*;

/// `n` desired guests and their actual state: every guest managed (run state, cores, memory,
/// swap, description); every 10th has drifted memory, every 7th is stopped, every 13th has
/// another description, and PVE's trailing newline is on every description. The actual list
/// comes in a scrambled order, as a real listing may.
pub(super) fn plan_inputs(n: u32) -> Result<(DesiredState, Vec<ActualGuest>)> {
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

pub(super) fn plan(ctx: &mut Ctx) -> Result<Vec<Row>> {
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
        floor: NO_FLOOR.to_owned(),
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

pub(super) fn queue(ctx: &mut Ctx) -> Result<Vec<Row>> {
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
        floor: NO_FLOOR.to_owned(),
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
