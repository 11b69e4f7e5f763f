//! The demo's `curl /metrics` step: the running daemon was started with
//! `metrics.listen = "127.0.0.1:0"` ([`enable`]); this step reads the address it logged, does a
//! plain TCP `GET /metrics` (what `curl` would), parses the answer with a Prometheus text parser
//! and checks it against what the earlier steps did, then prints an excerpt of the
//! interesting series.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use felhom_testkit::metrics::{self, Scrape};
use serde_json::{json, Value};

use super::Demo;

/// Longest the scrape may take.
const SCRAPE_WAIT: Duration = Duration::from_secs(10);
/// Series the excerpt shows (histograms by their `_count`/`_sum`), in this order.
const EXCERPT: &[&str] = &[
    "felhom_build_info",
    "felhom_reports_sent_total",
    "felhom_last_report_success_timestamp_seconds",
    "felhom_reconcile_passes_total",
    "felhom_actions_started_total",
    "felhom_actions_finished_total",
    "felhom_gate_decisions_total",
    "felhom_pve_requests_total{method=\"POST\"",
    "felhom_pve_request_duration_seconds_count{method=\"GET\",endpoint=\"/nodes/{node}/lxc/{vmid}/config\"}",
    "felhom_pve_task_wait_seconds_count",
    "felhom_journal_appends_total",
    "felhom_journal_fsync_seconds_count",
    "felhom_queue_depth",
];

/// Turns the listener on in the daemon's config: loopback, any free port (the daemon logs it).
pub fn enable(doc: &mut Value) {
    doc["metrics"] = json!({ "listen": "127.0.0.1:0" });
}

/// The step: scrape, check, print the excerpt. `log` is the daemon's log so far.
pub async fn excerpt(demo: &Demo, log: &[String]) -> Result<()> {
    const MARK: &str = "metrics listening on http://";
    let line = log
        .iter()
        .find(|l| l.contains(MARK))
        .context("the daemon logged no metrics listener")?;
    let addr = line
        .split(MARK)
        .nth(1)
        .and_then(|rest| rest.split("/metrics").next())
        .context("no address in the listener's log line")?
        .to_owned();
    println!("$ curl -s http://{addr}/metrics   (here: a plain TCP GET)");
    let (status, body) = metrics::get(&addr, SCRAPE_WAIT)
        .await
        .map_err(anyhow::Error::msg)?;
    ensure!(status.starts_with("HTTP/1.1 200"), "GET /metrics: {status}");
    let scrape = Scrape::parse(&body).map_err(|e| anyhow::anyhow!("unparsable scrape: {e}"))?;

    let series = scrape.series();
    let shown: Vec<&str> = EXCERPT
        .iter()
        .flat_map(|prefix| {
            body.lines()
                .filter(move |l| !l.starts_with('#') && l.starts_with(prefix))
        })
        .collect();
    for line in &shown {
        println!("  {line}");
    }
    println!(
        "  … {} series in {} bytes, parsed as the Prometheus text format",
        series.len(),
        body.len()
    );

    // What the earlier steps did, as the scrape says it.
    let sent = scrape
        .value("felhom_reports_sent_total", &[])
        .unwrap_or(0.0);
    ensure!(sent >= 2.0, "reports sent {sent}, the hub took at least 2");
    ensure!(
        sent <= demo.hub.report_count() as f64,
        "reports sent {sent} > the {} the hub took",
        demo.hub.report_count()
    );
    for kind in ["start", "set_config"] {
        let n = scrape.value("felhom_actions_started_total", &[("kind", kind)]);
        ensure!(n == Some(1.0), "actions started {kind}: {n:?}, expected 1");
    }
    let pending = scrape.sum(
        "felhom_gate_decisions_total",
        &[("class", "destructive"), ("decision", "pending_signature")],
    );
    ensure!(
        pending >= 1.0,
        "the held destroy of the scratch guest is not counted as pending"
    );
    for s in &series {
        for (name, value) in &s.labels {
            ensure!(
                !value
                    .split('/')
                    .any(|seg| !seg.is_empty() && seg.chars().all(|c| c.is_ascii_digit())),
                "{}{{{name}={value:?}}} names a guest",
                s.family
            );
        }
    }
    println!(
        "checked: {sent} reports sent, 1 start and 1 config write, {pending} destroy pending a \
         signature; every PVE endpoint label is a template (no vmid in any label)"
    );
    Ok(())
}
