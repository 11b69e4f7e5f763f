//! `read` (the default): read-only checks of everything the host report needs — version,
//! nodes and the certificate fingerprint, node status, guests and their configs, storage, the
//! token's permissions — and whether PVE is silently hiding guests or storage from the token
//! (the privsep trap: a token without an ACL of its own sees `[]`, not a 403).

use felhom_proxmox::privileges::{Need, Scope};
use felhom_proxmox::{
    Fingerprint, GuestStatus, LxcConfig, NodeInfo, NodeStatus, Permissions, ProxmoxApi,
    ProxmoxError, StorageInfo, TlsTrust,
};

use crate::privileges::{judge, Verdict};
use crate::report::{describe, Check, Report};

/// Longest guest or storage listing in one check line; the rest is counted.
const LIST_MAX: usize = 10;

/// `felhom-selftest read`. `trust` is the configured TLS trust (to compare the pin with what
/// `/nodes` reports), `token_id` names the token in hints.
pub async fn run(api: &impl ProxmoxApi, trust: &TlsTrust, token_id: &str, report: &mut Report) {
    let node = api.node().to_owned();

    match api.version().await {
        Ok(v) => report.pass("version", v.version),
        Err(e) => {
            let fatal = is_connection_level(&e);
            report.fail("version", describe(&e));
            if fatal {
                // Every further call would fail the same way; one clear line is better.
                return;
            }
        }
    }

    match api.nodes().await {
        Ok(nodes) => {
            report.pass("nodes", nodes_detail(&nodes));
            let this = nodes.iter().find(|n| n.node == node);
            match this {
                Some(n) => report.pass(format!("node {node}"), format!("{} in /nodes", n.status)),
                None => report.fail(
                    format!("node {node}"),
                    format!(
                        "not in /nodes (seen: {}): is proxmox.node this host's node name?",
                        names(nodes.iter().map(|n| n.node.clone()))
                    ),
                ),
            }
            report.push(fingerprint_check(this, trust));
        }
        Err(e) => report.fail("nodes", describe(&e)),
    }

    match api.node_status().await {
        Ok(s) => report.pass("node_status", node_status_detail(&s)),
        Err(e) => report.fail("node_status", describe(&e)),
    }

    let perms = match api.permissions().await {
        Ok(p) => {
            let detail = if p.0.is_empty() {
                "none: the token holds no privilege anywhere (a privilege-separated token \
                 without an acl of its own?)"
                    .to_owned()
            } else {
                format!("privileges on {} paths", p.0.len())
            };
            report.pass("permissions", detail);
            Some(p)
        }
        Err(e) => {
            report.fail("permissions", describe(&e));
            None
        }
    };

    match api.list_lxc().await {
        Ok(mut guests) => {
            guests.sort_by_key(|g| g.vmid);
            let listing = guests.iter().map(|g| {
                format!(
                    "{} ({}, {})",
                    g.vmid,
                    g.name.as_deref().unwrap_or("-"),
                    g.status
                )
            });
            report.pass(
                "guests",
                format!("{} visible: {}", guests.len(), names(listing)),
            );
            report.push(visibility_check(
                "guest_visibility",
                perms.as_ref(),
                &node,
                Need {
                    privilege: "VM.Audit",
                    scope: Scope::EveryGuest,
                },
                token_id,
                "guest",
            ));
            for g in &guests {
                let name = format!("guest_config {}", g.vmid);
                match api.guest_config(g.vmid).await {
                    Ok(c) => report.pass(name, config_detail(&c, &g.status)),
                    Err(e) => report.fail(name, describe(&e)),
                }
            }
        }
        Err(e) => report.fail("guests", describe(&e)),
    }

    match api.list_storage().await {
        Ok(storages) => {
            let listing = storages.iter().map(|s| {
                format!(
                    "{} ({})",
                    s.storage,
                    s.storage_type.as_deref().unwrap_or("?")
                )
            });
            report.pass(
                "storage",
                format!("{} configured: {}", storages.len(), names(listing)),
            );
            report.push(visibility_check(
                "storage_visibility",
                perms.as_ref(),
                &node,
                Need {
                    privilege: "Datastore.Audit",
                    scope: Scope::EveryStorage,
                },
                token_id,
                "storage",
            ));
        }
        Err(e) => report.fail("storage", describe(&e)),
    }

    match api.node_storage().await {
        Ok(storages) => report.pass(
            "node_storage",
            names(storages.iter().map(node_storage_item)).to_string(),
        ),
        Err(e) => report.fail("node_storage", describe(&e)),
    }
}

/// Transport, TLS and authentication failures: nothing else can work either.
fn is_connection_level(e: &ProxmoxError) -> bool {
    matches!(e, ProxmoxError::Http(_) | ProxmoxError::Unauthorized { .. })
}

/// `a, b, c … and 4 more`, or `none`.
fn names(items: impl Iterator<Item = String>) -> String {
    let all: Vec<String> = items.collect();
    if all.is_empty() {
        return "none".to_owned();
    }
    let shown = all[..all.len().min(LIST_MAX)].join(", ");
    if all.len() > LIST_MAX {
        format!("{shown} … and {} more", all.len() - LIST_MAX)
    } else {
        shown
    }
}

fn nodes_detail(nodes: &[NodeInfo]) -> String {
    names(nodes.iter().map(|n| format!("{} ({})", n.node, n.status)))
}

/// Compares the fingerprint `/nodes` reports for this node with the configured trust.
///
/// The TLS connection itself was already verified (a wrong pin fails the handshake), so a
/// mismatch here means the node reports another certificate than the one served on this URL
/// (a proxy in between, or a custom `pveproxy-ssl.pem`): worth a look, not a secret.
pub fn fingerprint_check(node: Option<&NodeInfo>, trust: &TlsTrust) -> Check {
    const NAME: &str = "fingerprint";
    let reported = node.and_then(|n| n.fingerprint());
    match (trust, reported) {
        (TlsTrust::InsecureSkipVerify, reported) => Check::fail(
            NAME,
            format!(
                "tls verification is off (proxmox.tls.insecure_skip_verify); pin the node's \
                 certificate instead: fingerprint_sha256 = {}",
                match reported {
                    Some(Ok(f)) => f.to_string(),
                    _ => "(not reported by /nodes; see pvenode cert info)".to_owned(),
                }
            ),
        ),
        (_, Some(Err(e))) => Check::fail(NAME, format!("/nodes reports an unusable one: {e}")),
        (TlsTrust::Pinned(pins), Some(Ok(seen))) => {
            if pins.iter().any(|p| p.ct_eq(&seen)) {
                Check::pass(NAME, format!("{seen} reported by /nodes is pinned"))
            } else {
                Check::fail(
                    NAME,
                    format!(
                        "/nodes reports {seen}, which is not pinned (pinned: {}): the api \
                         answered with another certificate than the node's own",
                        pins.iter()
                            .map(Fingerprint::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            }
        }
        (TlsTrust::Pinned(_), None) => Check::pass(
            NAME,
            "the connection matched the pin; /nodes reports no fingerprint to compare",
        ),
        (_, Some(Ok(seen))) => Check::pass(
            NAME,
            format!("verified by ca; /nodes reports {seen} (pinning it is an alternative)"),
        ),
        (_, None) => Check::pass(NAME, "verified by ca; /nodes reports no fingerprint"),
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1024.0 * 1024.0 * 1024.0))
}

fn duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m {}s", secs % 60)
    }
}

fn node_status_detail(s: &NodeStatus) -> String {
    let mut parts = vec![s.pveversion.clone()];
    if let Some(k) = s
        .current_kernel
        .as_ref()
        .and_then(|k| k.release.clone())
        .or_else(|| s.kversion.clone())
    {
        parts.push(format!("kernel {k}"));
    }
    if let Some(u) = s.uptime {
        parts.push(format!("up {}", duration(u)));
    }
    if let Some(cpus) = s.cpuinfo.cpus {
        parts.push(format!("{cpus} cpus at {:.0}%", s.cpu * 100.0));
    }
    parts.push(format!(
        "memory {} of {}",
        gib(s.memory.used),
        gib(s.memory.total)
    ));
    parts.push(format!(
        "rootfs {} of {}",
        gib(s.rootfs.used),
        gib(s.rootfs.total)
    ));
    parts.join(", ")
}

fn config_detail(c: &LxcConfig, status: &GuestStatus) -> String {
    let mut parts = vec![format!(
        "{}, {status}",
        c.hostname.as_deref().unwrap_or("(no hostname)")
    )];
    if let Some(cores) = c.cores {
        parts.push(format!("{cores} core{}", if cores == 1 { "" } else { "s" }));
    }
    if let Some(m) = c.memory {
        parts.push(format!("{m} MiB memory"));
    }
    if let Some(s) = c.swap {
        parts.push(format!("{s} MiB swap"));
    }
    if let Some(d) = c.rootfs_size_bytes() {
        parts.push(format!("rootfs {}", gib(d)));
    }
    if let Some(lock) = &c.lock {
        parts.push(format!("locked ({lock})"));
    }
    parts.join(", ")
}

fn node_storage_item(s: &StorageInfo) -> String {
    match (s.used, s.total, s.active) {
        (_, _, Some(false)) => format!("{} inactive", s.storage),
        (Some(u), Some(t), _) => format!("{} {} of {} used", s.storage, gib(u), gib(t)),
        _ => s.storage.clone(),
    }
}

/// Whether the token can see every guest (or storage): PVE filters its lists by `VM.Audit`
/// (`Datastore.Audit`) per object instead of answering 403, so an empty or short list is
/// indistinguishable from a host without them. Without `/access/permissions` this cannot be
/// judged, which fails too.
pub fn visibility_check(
    name: &str,
    perms: Option<&Permissions>,
    node: &str,
    need: Need,
    token_id: &str,
    what: &str,
) -> Check {
    let Some(perms) = perms else {
        return Check::fail(
            name,
            format!("cannot tell whether the token sees every {what}: /access/permissions failed"),
        );
    };
    let target = match need.scope {
        Scope::EveryStorage | Scope::SomeStorage => "/storage",
        _ => "/vms",
    };
    match judge(perms, node, &need) {
        Verdict::Granted(path) => Check::pass(
            name,
            format!("{} on {path}: every {what} is listed", need.privilege),
        ),
        Verdict::Missing { path, note } => Check::fail(
            name,
            format!(
                "the token lacks {p} on {path}{note}: PVE silently leaves out any {what} it \
                 may not audit, so the list above may be incomplete (a privilege-separated token \
                 needs an ACL of its own, e.g. pveum acl modify {target} --tokens '{token_id}' \
                 --roles PVEAuditor)",
                p = need.privilege,
                note = note.map(|n| format!(" ({n})")).unwrap_or_default(),
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const FP: &str =
        "5F:40:6C:F3:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:7F:23";
    const OTHER: &str =
        "00:40:6C:F3:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:7F:23";

    fn node(fp: Option<&str>) -> NodeInfo {
        NodeInfo {
            node: "pve".into(),
            ssl_fingerprint: fp.map(str::to_owned),
            ..NodeInfo::default()
        }
    }

    #[test]
    fn a_pinned_fingerprint_reported_by_the_node_passes() {
        let trust = TlsTrust::Pinned(vec![OTHER.parse().unwrap(), FP.parse().unwrap()]);
        let c = fingerprint_check(Some(&node(Some(&FP.to_lowercase()))), &trust);
        assert!(c.ok, "{}", c.detail);
        assert!(c.detail.starts_with(FP), "{}", c.detail);
    }

    #[test]
    fn a_different_reported_fingerprint_fails_naming_both() {
        let trust = TlsTrust::Pinned(vec![FP.parse().unwrap()]);
        let c = fingerprint_check(Some(&node(Some(OTHER))), &trust);
        assert!(!c.ok);
        assert!(
            c.detail.contains(OTHER) && c.detail.contains(FP),
            "{}",
            c.detail
        );
    }

    #[test]
    fn insecure_mode_fails_and_offers_the_fingerprint_to_pin() {
        let c = fingerprint_check(Some(&node(Some(FP))), &TlsTrust::InsecureSkipVerify);
        assert!(!c.ok);
        assert!(c.detail.contains(FP), "{}", c.detail);
        assert!(c.detail.contains("insecure_skip_verify"));
    }

    #[test]
    fn ca_mode_and_missing_reports_pass_with_a_note() {
        let ca = TlsTrust::CaFile("/etc/pve/pve-root-ca.pem".into());
        assert!(fingerprint_check(Some(&node(Some(FP))), &ca).ok);
        assert!(fingerprint_check(None, &ca).ok);
        let pinned = TlsTrust::Pinned(vec![FP.parse().unwrap()]);
        assert!(fingerprint_check(Some(&node(None)), &pinned).ok);
        assert!(!fingerprint_check(Some(&node(Some("garbage"))), &pinned).ok);
    }

    fn perms(entries: &[(&str, &[&str])]) -> Permissions {
        Permissions(
            entries
                .iter()
                .map(|(path, privs)| {
                    (
                        path.to_string(),
                        privs
                            .iter()
                            .map(|p| (p.to_string(), true))
                            .collect::<BTreeMap<_, _>>(),
                    )
                })
                .collect(),
        )
    }

    const VM_AUDIT: Need = Need {
        privilege: "VM.Audit",
        scope: Scope::EveryGuest,
    };

    #[test]
    fn the_privsep_trap_is_named() {
        let c = visibility_check(
            "guest_visibility",
            Some(&Permissions::default()),
            "pve",
            VM_AUDIT,
            "felhom@pve!agent",
            "guest",
        );
        assert!(!c.ok);
        assert!(c.detail.contains("lacks VM.Audit on /vms"), "{}", c.detail);
        assert!(
            c.detail.contains("--tokens 'felhom@pve!agent'"),
            "{}",
            c.detail
        );
        let ok = visibility_check(
            "guest_visibility",
            Some(&perms(&[("/vms", &["VM.Audit"])])),
            "pve",
            VM_AUDIT,
            "felhom@pve!agent",
            "guest",
        );
        assert!(ok.ok, "{}", ok.detail);
        let unknown = visibility_check("g", None, "pve", VM_AUDIT, "t@pve!x", "guest");
        assert!(!unknown.ok);
    }

    #[test]
    fn long_listings_are_cut() {
        assert_eq!(names(std::iter::empty()), "none");
        let many = names((0..13).map(|i| i.to_string()));
        assert!(many.ends_with("9 … and 3 more"), "{many}");
        assert_eq!(duration(90), "1m 30s");
        assert_eq!(duration(3 * 86_400 + 4 * 3600 + 5), "3d 4h");
        assert_eq!(gib(3 * 1024 * 1024 * 1024 / 2), "1.5 GiB");
    }
}
