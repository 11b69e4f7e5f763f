//! `wait_task`: short-task notice over real TLS, long-task poll counts from the schedules.

use super::*;

/// One waited-on task: which schedule, how long after its stop it was noticed, and the polls.
#[derive(Debug, Clone, Copy)]
struct Notice {
    default_schedule: bool,
    after_stop: Duration,
    polls: u32,
}

pub(super) fn wait_task_notice(ctx: &mut Ctx) -> Result<Vec<Row>> {
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
        floor: NO_FLOOR.to_owned(),
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
pub(super) fn long_task_polls(
    schedule: &PollSchedule,
    baseline: &PollSchedule,
    tasks: &[Duration],
) -> Row {
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
        floor: NO_FLOOR.to_owned(),
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
