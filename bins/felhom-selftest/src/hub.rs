//! `hub`: one collect + report round trip, as the agent's heartbeat does it — collect this
//! host's `HostReport` (read-only), POST it to the hub with the API key, decode the
//! `ControlEnvelope` — and attach both to the report so they are printed.
//!
//! The summaries and the error lines (`describe_hub`, ...) are pure; only `run` does I/O.

use std::time::SystemTime;

use felhom_config::HubConfig;
use felhom_hub::cloudflared::CloudflaredProber;
use felhom_hub::collector::{collect_with, CollectError, CollectOptions};
use felhom_hub::hub::{HubClient, HubError};
use felhom_hub_proto::{ControlEnvelope, GuestStatus, HostReport, ServiceState};
use felhom_proxmox::{HttpError, ProxmoxApi, TlsFailure, TlsTrust};
use serde_json::Value;

use crate::report::{describe, Report};

/// `felhom-selftest hub`: `client` is built from `hub`; the report is stamped `now`. The hub
/// records the report like any heartbeat; nothing on the host changes.
pub async fn run<A, P>(
    api: &A,
    prober: &P,
    hub: &HubConfig,
    client: &HubClient,
    now: SystemTime,
    report: &mut Report,
) where
    A: ProxmoxApi,
    P: CloudflaredProber,
{
    report.pass("hub_config", config_detail(hub, client.report_url()));

    let options = CollectOptions::new(hub.host_id.clone());
    let host_report = match collect_with(api, prober, &options, now).await {
        Ok(r) => r,
        Err(e) => {
            // Nothing to send: the agent would not send a report without these either.
            report.fail("collect", describe_collect(&e));
            return;
        }
    };
    report.pass("collect", collect_summary(&host_report));
    report.attach("report", encoded(serde_json::to_value(&host_report)));

    match client.report(&host_report).await {
        Ok(envelope) => {
            report.pass(
                "hub_report",
                format!("{} accepted the report", client.report_url()),
            );
            report.pass("envelope", envelope_summary(&envelope));
            report.attach("envelope", encoded(serde_json::to_value(&envelope)));
        }
        Err(e @ HubError::Decode { .. }) => {
            // The POST itself went through: the hub answered 2xx.
            report.pass(
                "hub_report",
                format!("{} answered 2xx", client.report_url()),
            );
            report.fail("envelope", describe_hub(&e));
        }
        Err(e) => report.fail("hub_report", describe_hub(&e)),
    }
}

/// The encoded document; what could not be encoded (it never happens for these types)
/// becomes a string saying so rather than a missing document.
fn encoded(value: Result<Value, serde_json::Error>) -> Value {
    value.unwrap_or_else(|e| Value::String(format!("(not encodable: {e})")))
}

/// Where reports go, as whom, and whom the TLS connection trusts. Never the key.
pub fn config_detail(hub: &HubConfig, report_url: &str) -> String {
    let trust = match &hub.trust {
        TlsTrust::CaFile(path) => format!("ca {}", path.display()),
        TlsTrust::Pinned(pins) => format!(
            "the pinned certificate {}",
            pins.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" or ")
        ),
        _ => "the system roots".to_owned(),
    };
    format!(
        "reports go to {report_url} as host {}, trusting {trust}, timeout {}s",
        hub.host_id,
        hub.timeout.as_secs()
    )
}

/// `node pve (PVE 9.0.3), 3 guests (2 running, 1 stopped), 2 storage targets, 4 backups,
/// cloudflared active`.
pub fn collect_summary(r: &HostReport) -> String {
    let count = |s: GuestStatus| r.guests.iter().filter(|g| g.status == s).count();
    let mut states = Vec::new();
    for (state, name) in [
        (GuestStatus::Running, "running"),
        (GuestStatus::Stopped, "stopped"),
        (GuestStatus::Unknown, "unknown"),
    ] {
        let n = count(state);
        if n > 0 {
            states.push(format!("{n} {name}"));
        }
    }
    let without_spec = r.guests.iter().filter(|g| g.spec.is_none()).count();
    let mut guests = format!("{} guest{}", r.guests.len(), plural(r.guests.len()));
    if !states.is_empty() {
        guests.push_str(&format!(" ({})", states.join(", ")));
    }
    if without_spec > 0 {
        guests.push_str(&format!(", {without_spec} without a readable config"));
    }
    let cloudflared = match r.cloudflared {
        ServiceState::Active => "active",
        ServiceState::Inactive => "inactive",
        ServiceState::Unknown => "unknown",
    };
    format!(
        "node {} (PVE {}), {guests}, {} storage target{}, {} backup{}, cloudflared {cloudflared}",
        r.host.node,
        r.host.pve_version,
        r.storage_targets.len(),
        plural(r.storage_targets.len()),
        r.backups.len(),
        plural(r.backups.len()),
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The envelope's four fields, and what a block means.
pub fn envelope_summary(e: &ControlEnvelope) -> String {
    let poll = match e.poll_interval_seconds {
        Some(s) => s.to_string(),
        None => "absent (hub.poll_seconds applies)".to_owned(),
    };
    let blocked = match e.blocked {
        Some(b) => b.to_string(),
        None => "absent (the agent keeps its last state)".to_owned(),
    };
    let mut s = format!(
        "poll_interval_seconds {poll}, blocked {blocked}, desired_generation {}, has_signed_ops {}",
        e.desired_generation, e.has_signed_ops
    );
    if e.blocked == Some(true) {
        s.push_str(": the hub has blocked this host; the agent keeps reporting but applies no desired state");
    }
    s
}

/// Why no report was collected, with the hint for the Proxmox error behind it.
pub fn describe_collect(e: &CollectError) -> String {
    match e {
        CollectError::NodeStatus { node, source } => {
            format!("node status of {node} unreadable: {}", describe(source))
        }
        CollectError::GuestList { node, source } => {
            format!("guest list of {node} unreadable: {}", describe(source))
        }
        other => other.to_string(),
    }
}

/// One line for a failed round trip, naming the config key that is the usual cause. Hub
/// errors never carry the key (bodies echoing it are redacted), so neither does this.
pub fn describe_hub(e: &HubError) -> String {
    match e {
        HubError::Http {
            url,
            status: 401,
            body,
        } => format!(
            "{url} refused the api key (401): hub.api_key is most likely wrong (mistyped, \
             revoked, or issued for another hub or host); the hub said: {body}"
        ),
        HubError::Http { url, status, body } => {
            let hint = match status {
                403 => " (is hub.host_id the id this key was issued for?)",
                404 | 405 => " (is hub.url right, including any path prefix?)",
                500..=599 => " (the hub is unwell; the agent would retry on its next report)",
                _ => "",
            };
            format!("{url} answered {status}{hint}: {body}")
        }
        HubError::Transport(HttpError::Tls { url, kind }) => match kind {
            TlsFailure::UnknownIssuer => format!(
                "{url} presented a certificate not issued by a trusted ca (hub.ca_file, or the \
                 system roots when it is unset)"
            ),
            other => format!(
                "tls handshake with {url} failed: {other} (check hub.url's host name and \
                 hub.ca_file)"
            ),
        },
        HubError::Transport(h @ HttpError::Connect { .. }) => {
            format!("{h} (is hub.url right and the hub reachable from this host?)")
        }
        HubError::Transport(h @ HttpError::Timeout { .. }) => {
            format!("{h} (hub.timeout_seconds; is the hub overloaded or the network slow?)")
        }
        HubError::Transport(h) => {
            format!("{h} (the hub closed the connection or answered garbage)")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use felhom_config::Config;
    use felhom_hub_proto::{GuestReport, HostInfo, Timestamp};
    use serde_json::json;

    use super::*;

    const KEY: &str = "hub-key-that-must-not-show-0123456789";

    fn hub_config(ca_file: Option<&str>) -> HubConfig {
        let mut hub = json!({
            "url": "https://hub.example.test/felhom",
            "host_id": "pve-01",
            "api_key": KEY,
            "timeout_seconds": 10
        });
        if let Some(ca) = ca_file {
            hub["ca_file"] = json!(ca);
        }
        let doc = json!({
            "proxmox": {
                "api_url": "https://pve.example.test:8006",
                "node": "pve",
                "token_id": "felhom@pve!agent",
                "token_secret": "00000000-0000-0000-0000-000000000000",
                "tls": { "insecure_skip_verify": true }
            },
            "hub": hub
        });
        let text = serde_json::to_vec(&doc).unwrap();
        let env: [(&str, &str); 0] = [];
        Config::from_json(&text, std::path::Path::new("/c.json"), env)
            .unwrap()
            .hub
            .unwrap()
    }

    #[test]
    fn config_detail_names_url_host_and_trust_but_not_the_key() {
        let url = "https://hub.example.test/felhom/api/v1/host-report";
        let ca = config_detail(&hub_config(Some("/etc/felhom-agent/hub-ca.pem")), url);
        assert_eq!(
            ca,
            "reports go to https://hub.example.test/felhom/api/v1/host-report as host pve-01, \
             trusting ca /etc/felhom-agent/hub-ca.pem, timeout 10s"
        );
        let roots = config_detail(&hub_config(None), url);
        assert!(roots.contains("trusting the system roots"), "{roots}");
        assert!(!ca.contains(KEY) && !roots.contains(KEY));
    }

    fn host_report(statuses: &[GuestStatus]) -> HostReport {
        let host = HostInfo {
            node: "pve".into(),
            pve_version: "9.0.3".into(),
            kernel: "6.14.8-2-pve".into(),
            uptime_seconds: 1,
            cpu_usage: 0.1,
            cpu_count: 4,
            load_average: [0.0; 3],
            memory_total_bytes: 1,
            memory_used_bytes: 1,
            rootfs_total_bytes: 1,
            rootfs_used_bytes: 1,
        };
        let at: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let mut r = HostReport::new("pve-01", "0.1.0", at, host);
        r.guests = statuses
            .iter()
            .enumerate()
            .map(|(i, s)| GuestReport {
                vmid: 100 + i as u32,
                name: format!("ct{i}"),
                status: *s,
                spec: None,
                description: None,
            })
            .collect();
        r
    }

    #[test]
    fn collect_summary_counts_guests_by_state() {
        let r = host_report(&[
            GuestStatus::Running,
            GuestStatus::Stopped,
            GuestStatus::Running,
        ]);
        assert_eq!(
            collect_summary(&r),
            "node pve (PVE 9.0.3), 3 guests (2 running, 1 stopped), 3 without a readable \
             config, 0 storage targets, 0 backups, cloudflared unknown"
        );
        let mut empty = host_report(&[]);
        empty.cloudflared = ServiceState::Active;
        assert_eq!(
            collect_summary(&empty),
            "node pve (PVE 9.0.3), 0 guests, 0 storage targets, 0 backups, cloudflared active"
        );
    }

    #[test]
    fn envelope_summary_shows_every_field_and_explains_a_block() {
        let plain = ControlEnvelope {
            poll_interval_seconds: Some(60),
            ..ControlEnvelope::default()
        };
        assert_eq!(
            envelope_summary(&plain),
            "poll_interval_seconds 60, blocked absent (the agent keeps its last state), \
             desired_generation 0, has_signed_ops false"
        );
        let blocked = ControlEnvelope {
            poll_interval_seconds: None,
            blocked: Some(true),
            desired_generation: 7,
            has_signed_ops: true,
        };
        let s = envelope_summary(&blocked);
        assert!(
            s.starts_with(
                "poll_interval_seconds absent (hub.poll_seconds applies), blocked true, \
                 desired_generation 7, has_signed_ops true: the hub has blocked this host"
            ),
            "{s}"
        );
    }

    const URL: &str = "https://127.0.0.1:9443/api/v1/host-report";

    fn http(status: u16) -> HubError {
        HubError::Http {
            url: URL.into(),
            status,
            body: r#"{"error":"nope"}"#.into(),
        }
    }

    #[test]
    fn a_refused_key_points_at_hub_api_key() {
        let s = describe_hub(&http(401));
        assert!(
            s.starts_with(&format!("{URL} refused the api key (401)")),
            "{s}"
        );
        assert!(s.contains("hub.api_key is most likely wrong"), "{s}");
        assert!(s.ends_with(r#"the hub said: {"error":"nope"}"#), "{s}");
        assert!(describe_hub(&http(404)).contains("hub.url"));
        assert!(describe_hub(&http(503)).contains("503 (the hub is unwell"));
        assert_eq!(
            describe_hub(&http(418)),
            format!(r#"{URL} answered 418: {{"error":"nope"}}"#)
        );
    }

    #[test]
    fn transport_failures_name_the_config_key_to_check() {
        let tls = |kind| {
            describe_hub(&HubError::Transport(HttpError::Tls {
                url: URL.into(),
                kind,
            }))
        };
        assert!(tls(TlsFailure::UnknownIssuer).contains("hub.ca_file"));
        assert!(tls(TlsFailure::Other {
            detail: "name mismatch".into()
        })
        .contains("name mismatch (check hub.url's host name"));
        let connect = describe_hub(&HubError::Transport(HttpError::Connect {
            url: URL.into(),
            detail: "connection refused".into(),
        }));
        assert!(connect.contains("connection refused"), "{connect}");
        assert!(connect.contains("is hub.url right"), "{connect}");
        let timeout = describe_hub(&HubError::Transport(HttpError::Timeout {
            method: "POST".into(),
            url: URL.into(),
            after: Duration::from_secs(10),
        }));
        assert!(timeout.contains("hub.timeout_seconds"), "{timeout}");
    }
}
