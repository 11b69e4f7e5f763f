//! `privileges`: for each capability of the agent (SPEC §2's table), `ready` or which privilege
//! is missing on which path, judged from the token's effective permissions
//! (`GET /access/permissions`).
//!
//! The judgement is pure ([`evaluate`]). PVE's permissions endpoint lists, per ACL path, what
//! the token has there and whether it propagates; a deeper ACL replaces what is inherited. So
//! "on every guest" means: granted on `/vms` (or inherited onto it) with propagate, and not
//! taken away by an ACL on some `/vms/<vmid>` below.

use felhom_proxmox::{Permissions, ProxmoxApi};

use crate::report::{describe, Report};

/// Where a privilege is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `/nodes/{node}`, this host's node.
    Node,
    /// Every guest: `/vms/{vmid}` for any vmid.
    EveryGuest,
    /// Every storage: `/storage/{storage}` for any storage (lists are filtered per storage).
    EveryStorage,
    /// The storage the operation targets: any storage will do (an operator may grant it on the
    /// backup storage only).
    SomeStorage,
}

/// One privilege a capability needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// The privilege, e.g. `VM.Snapshot`.
    pub privilege: &'static str,
    /// Where.
    pub scope: Scope,
}

/// A row of the privilege table.
#[derive(Debug, Clone, Copy)]
pub struct Capability {
    /// What the agent can do with it.
    pub name: &'static str,
    /// Everything it needs.
    pub needs: &'static [Need],
}

const fn need(privilege: &'static str, scope: Scope) -> Need {
    Need { privilege, scope }
}

/// SPEC §2: what the agent needs, by capability.
pub const CAPABILITIES: &[Capability] = &[
    Capability {
        name: "host report",
        needs: &[
            need("Sys.Audit", Scope::Node),
            // Without these the guest and storage lists are silently filtered.
            need("VM.Audit", Scope::EveryGuest),
            need("Datastore.Audit", Scope::EveryStorage),
        ],
    },
    Capability {
        name: "start / stop",
        needs: &[need("VM.PowerMgmt", Scope::EveryGuest)],
    },
    Capability {
        name: "resize / describe",
        needs: &[
            need("VM.Config.CPU", Scope::EveryGuest),
            need("VM.Config.Memory", Scope::EveryGuest),
            need("VM.Config.Options", Scope::EveryGuest),
        ],
    },
    Capability {
        name: "snapshot / rollback",
        needs: &[
            need("VM.Snapshot", Scope::EveryGuest),
            need("VM.Snapshot.Rollback", Scope::EveryGuest),
        ],
    },
    Capability {
        name: "backup",
        needs: &[
            need("VM.Backup", Scope::EveryGuest),
            // Checked inside the vzdump task: a missing one fails the task, not the POST.
            need("Datastore.AllocateSpace", Scope::SomeStorage),
        ],
    },
    Capability {
        name: "restore / create",
        needs: &[
            need("VM.Allocate", Scope::EveryGuest),
            need("Datastore.AllocateSpace", Scope::SomeStorage),
        ],
    },
];

/// The verdict on one need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Granted; where (e.g. `/vms`, or `/storage/backup` for a storage-scoped grant).
    Granted(String),
    /// Missing on `path`; `note` says what partial grant exists, if any.
    Missing {
        /// The path it is missing on.
        path: String,
        /// E.g. `granted on /vms without propagate`.
        note: Option<String>,
    },
}

fn base(scope: Scope, node: &str) -> String {
    match scope {
        Scope::Node => format!("/nodes/{node}"),
        Scope::EveryGuest => "/vms".to_owned(),
        Scope::EveryStorage | Scope::SomeStorage => "/storage".to_owned(),
    }
}

/// Whether `privilege` holds on every path below `base`: `Some(true)` it does, `Some(false)`
/// granted on `base` itself but not propagated, `None` not granted there at all.
fn below(perms: &Permissions, base: &str, privilege: &str) -> Option<bool> {
    match perms.at(base) {
        // An entry at the path itself decides (it replaces whatever was inherited).
        Some(privs) => privs.get(privilege).copied(),
        // Otherwise it is inherited, which needs propagate on the ancestor: then it propagates
        // further down too.
        None => perms.allows(base, privilege).then_some(true),
    }
}

/// Listed paths strictly below `base`, in order.
fn children<'a>(perms: &'a Permissions, base: &str) -> impl Iterator<Item = &'a String> {
    let prefix = format!("{base}/");
    perms
        .0
        .keys()
        .filter(move |p| p.starts_with(&prefix) && p.len() > prefix.len())
}

/// Judges one need against the token's effective permissions.
pub fn judge(perms: &Permissions, node: &str, need: &Need) -> Verdict {
    let base = base(need.scope, node);
    let p = need.privilege;
    match need.scope {
        Scope::Node => {
            if perms.allows(&base, p) {
                Verdict::Granted(base)
            } else {
                Verdict::Missing {
                    path: base,
                    note: None,
                }
            }
        }
        Scope::EveryGuest | Scope::EveryStorage => {
            let partial: Vec<&String> = children(perms, &base)
                .filter(|c| perms.allows(c, p))
                .collect();
            match below(perms, &base, p) {
                Some(true) => {
                    // A deeper ACL that leaves the privilege out takes it away there.
                    match children(perms, &base).find(|c| !perms.allows(c, p)) {
                        Some(child) => Verdict::Missing {
                            path: child.clone(),
                            note: Some(format!("an acl on {child} replaces what {base} grants")),
                        },
                        None => Verdict::Granted(base),
                    }
                }
                Some(false) => Verdict::Missing {
                    note: Some(format!(
                        "granted on {base} without propagate, so not on anything below it"
                    )),
                    path: base,
                },
                None => Verdict::Missing {
                    note: (!partial.is_empty()).then(|| {
                        format!(
                            "granted only on {}",
                            partial
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }),
                    path: base,
                },
            }
        }
        Scope::SomeStorage => {
            if below(perms, &base, p) == Some(true)
                && children(perms, &base).all(|c| perms.allows(c, p))
            {
                return Verdict::Granted(base);
            }
            let some: Vec<&str> = children(perms, &base)
                .filter(|c| perms.allows(c, p))
                .map(|s| s.as_str())
                .collect();
            if some.is_empty() {
                Verdict::Missing {
                    path: base,
                    note: None,
                }
            } else {
                Verdict::Granted(some.join(", "))
            }
        }
    }
}

/// One capability's line: `ready (…)` or `missing <Priv> on <path>; …`.
pub fn evaluate_one(perms: &Permissions, node: &str, cap: &Capability) -> (bool, String) {
    let mut granted: Vec<(String, &str)> = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    for need in cap.needs {
        match judge(perms, node, need) {
            Verdict::Granted(path) => granted.push((path, need.privilege)),
            Verdict::Missing { path, note } => missing.push(match note {
                Some(n) => format!("missing {} on {path} ({n})", need.privilege),
                None => format!("missing {} on {path}", need.privilege),
            }),
        }
    }
    if !missing.is_empty() {
        return (false, missing.join("; "));
    }
    // Group privileges by path for a compact `ready (A, B on /vms; C on /nodes/pve)`.
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for (path, p) in granted {
        match groups.iter_mut().find(|(g, _)| *g == path) {
            Some((_, ps)) => ps.push(p),
            None => groups.push((path, vec![p])),
        }
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|(path, ps)| format!("{} on {path}", ps.join(", ")))
        .collect();
    (true, format!("ready ({})", parts.join("; ")))
}

/// Every capability row as a check.
pub fn evaluate(perms: &Permissions, node: &str, report: &mut Report) {
    for cap in CAPABILITIES {
        let (ok, detail) = evaluate_one(perms, node, cap);
        if ok {
            report.pass(cap.name, detail);
        } else {
            report.fail(cap.name, detail);
        }
    }
}

/// `felhom-selftest privileges`.
pub async fn run(api: &impl ProxmoxApi, report: &mut Report) {
    match api.permissions().await {
        Ok(perms) => evaluate(&perms, api.node(), report),
        Err(e) => report.fail("permissions", describe(&e)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// `[(path, [(priv, propagate)])]` → permissions, as the endpoint would answer.
    fn perms(entries: &[(&str, &[(&str, bool)])]) -> Permissions {
        Permissions(
            entries
                .iter()
                .map(|(path, privs)| {
                    (
                        path.to_string(),
                        privs
                            .iter()
                            .map(|(p, f)| (p.to_string(), *f))
                            .collect::<BTreeMap<_, _>>(),
                    )
                })
                .collect(),
        )
    }

    const ALL: &[&str] = &[
        "Datastore.AllocateSpace",
        "Datastore.Audit",
        "Sys.Audit",
        "VM.Allocate",
        "VM.Audit",
        "VM.Backup",
        "VM.Config.CPU",
        "VM.Config.Memory",
        "VM.Config.Options",
        "VM.PowerMgmt",
        "VM.Snapshot",
        "VM.Snapshot.Rollback",
    ];

    fn everywhere(except: &[&str]) -> Permissions {
        let privs: Vec<(&str, bool)> = ALL
            .iter()
            .filter(|p| !except.contains(p))
            .map(|p| (*p, true))
            .collect();
        // What PVE lists for a token with one ACL on `/`: the top-level paths, all alike.
        perms(&[
            ("/", &privs),
            ("/nodes", &privs),
            ("/storage", &privs),
            ("/vms", &privs),
        ])
    }

    fn check(p: &Permissions, cap: &str) -> (bool, String) {
        let cap = CAPABILITIES.iter().find(|c| c.name == cap).unwrap();
        evaluate_one(p, "pve", cap)
    }

    #[test]
    fn an_agent_token_on_root_is_ready_for_everything() {
        let p = everywhere(&[]);
        for cap in CAPABILITIES {
            let (ok, detail) = evaluate_one(&p, "pve", cap);
            assert!(ok, "{}: {detail}", cap.name);
            assert!(detail.starts_with("ready ("), "{detail}");
        }
        assert_eq!(
            check(&p, "host report").1,
            "ready (Sys.Audit on /nodes/pve; VM.Audit on /vms; Datastore.Audit on /storage)"
        );
        assert_eq!(
            check(&p, "snapshot / rollback").1,
            "ready (VM.Snapshot, VM.Snapshot.Rollback on /vms)"
        );
    }

    #[test]
    fn a_missing_privilege_is_named_with_its_path() {
        let p = everywhere(&["VM.Snapshot"]);
        assert_eq!(
            check(&p, "snapshot / rollback"),
            (false, "missing VM.Snapshot on /vms".to_owned())
        );
        assert!(check(&p, "start / stop").0);
        let p = everywhere(&["Sys.Audit", "VM.Audit"]);
        assert_eq!(
            check(&p, "host report").1,
            "missing Sys.Audit on /nodes/pve; missing VM.Audit on /vms"
        );
    }

    #[test]
    fn a_token_without_acls_has_nothing() {
        // A privsep token with no ACL of its own: the endpoint answers `{}`.
        let p = Permissions::default();
        for cap in CAPABILITIES {
            let (ok, detail) = evaluate_one(&p, "pve", cap);
            assert!(!ok, "{}", cap.name);
            assert!(detail.starts_with("missing "), "{detail}");
        }
    }

    #[test]
    fn without_propagate_the_guests_get_nothing() {
        let p = perms(&[("/vms", &[("VM.PowerMgmt", false)])]);
        assert_eq!(
            check(&p, "start / stop").1,
            "missing VM.PowerMgmt on /vms (granted on /vms without propagate, so not on \
             anything below it)"
        );
    }

    #[test]
    fn inherited_from_root_with_propagate_counts() {
        // `/vms` not listed: inherited from `/`, which propagates.
        let p = perms(&[("/", &[("VM.PowerMgmt", true)])]);
        assert!(check(&p, "start / stop").0);
        let p = perms(&[("/", &[("VM.PowerMgmt", false)])]);
        assert!(!check(&p, "start / stop").0);
    }

    #[test]
    fn a_grant_on_some_guests_is_not_every_guest() {
        let p = perms(&[("/vms/100", &[("VM.PowerMgmt", true)])]);
        assert_eq!(
            check(&p, "start / stop").1,
            "missing VM.PowerMgmt on /vms (granted only on /vms/100)"
        );
    }

    #[test]
    fn a_deeper_acl_replacing_the_inherited_set_is_found() {
        let p = perms(&[
            ("/vms", &[("VM.PowerMgmt", true), ("VM.Audit", true)]),
            ("/vms/105", &[("VM.Audit", false)]),
        ]);
        assert_eq!(
            check(&p, "start / stop").1,
            "missing VM.PowerMgmt on /vms/105 (an acl on /vms/105 replaces what /vms grants)"
        );
    }

    #[test]
    fn storage_space_may_be_granted_on_the_target_storage_only() {
        let mut p = everywhere(&["Datastore.AllocateSpace"]);
        assert_eq!(
            check(&p, "backup").1,
            "missing Datastore.AllocateSpace on /storage"
        );
        p.0.insert(
            "/storage/backup".into(),
            [("Datastore.AllocateSpace".to_owned(), false)].into(),
        );
        let (ok, detail) = check(&p, "backup");
        assert!(ok, "{detail}");
        assert_eq!(
            detail,
            "ready (VM.Backup on /vms; Datastore.AllocateSpace on /storage/backup)"
        );
    }

    #[test]
    fn every_row_of_the_spec_table_is_here() {
        let names: Vec<&str> = CAPABILITIES.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "host report",
                "start / stop",
                "resize / describe",
                "snapshot / rollback",
                "backup",
                "restore / create"
            ]
        );
        let mut privs: Vec<&str> = CAPABILITIES
            .iter()
            .flat_map(|c| c.needs.iter().map(|n| n.privilege))
            .collect();
        privs.sort_unstable();
        privs.dedup();
        assert_eq!(privs, ALL);
    }
}
